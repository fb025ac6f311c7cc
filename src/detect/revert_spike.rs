//! Revert spikes: per contract, the share of failed calls over a sliding
//! window of blocks, against thresholds and the contract's own baseline. The
//! baseline is call-weighted and exponentially decayed over earlier quiet
//! windows (decayed failures / decayed calls), so a window with two calls
//! weighs less than one with two hundred. A spike clears after
//! `clear_windows` quiet windows in a row: no flapping.

use std::collections::VecDeque;

use alloy::primitives::B256;

use crate::config::{ContractConfig, SpikeConfig};
use crate::decode::RevertReason;
use crate::model::{BlockRef, CallOutcome, Evidence, EvidenceKind, Scope, ScopeChange};

/// How much of the baseline's history each new window keeps (1 − weight of the newest).
const BASELINE_DECAY: f64 = 0.7;

/// The scope key a spike halts (degraded) on its contract.
pub const SCOPE_KEY: &str = "revert-spike";

/// A spike starting (with the failed calls that made it) or clearing.
#[derive(Debug, Clone, PartialEq)]
pub enum SpikeChange {
    Started {
        failed: Vec<CallOutcome>,
        calls: u64,
        baseline: f64,
    },
    Cleared {
        quiet_windows: u64,
    },
}

#[derive(Debug, Clone)]
struct Tally {
    block: u64,
    time: u64,
    calls: u64,
    failed: Vec<CallOutcome>,
}

/// The sliding window of one contract.
#[derive(Debug, Clone)]
pub struct SpikeWindow {
    config: SpikeConfig,
    blocks: VecDeque<Tally>,
    /// Decayed calls and failures of earlier quiet windows.
    history_calls: f64,
    history_failed: f64,
    /// Calls and failures recorded since the last window boundary.
    epoch_calls: u64,
    epoch_failed: u64,
    /// The last quiet window's (calls, failures): learned only once the
    /// window after it is quiet too, so the start of a burst that has not
    /// yet reached `min_failed` never becomes "normal".
    pending: Option<(u64, u64)>,
    spiking: bool,
    quiet: u64,
    /// Blocks ended since the last window boundary, and whether any of them
    /// met the spike condition.
    epoch_blocks: u64,
    /// Block time of the window's first block (for `window_seconds`).
    epoch_start: Option<u64>,
    epoch_hot: bool,
    last_block: Option<u64>,
}

impl SpikeWindow {
    pub fn new(config: SpikeConfig) -> Self {
        SpikeWindow {
            config,
            blocks: VecDeque::new(),
            history_calls: 0.0,
            history_failed: 0.0,
            epoch_calls: 0,
            epoch_failed: 0,
            pending: None,
            spiking: false,
            quiet: 0,
            epoch_blocks: 0,
            epoch_start: None,
            epoch_hot: false,
            last_block: None,
        }
    }

    /// After a restart, a spike the history still shows as open must be able to clear.
    pub fn resume_spiking(&mut self) {
        self.spiking = true;
    }

    pub fn is_spiking(&self) -> bool {
        self.spiking
    }

    /// Nothing to do until a call arrives: lets callers skip empty blocks.
    pub fn is_idle(&self) -> bool {
        self.blocks.is_empty() && !self.spiking
    }

    pub fn record(&mut self, call: &CallOutcome) {
        if self
            .blocks
            .back()
            .is_none_or(|t| t.block != call.block_number)
        {
            self.blocks.push_back(Tally {
                block: call.block_number,
                time: call.block_timestamp,
                calls: 0,
                failed: Vec::new(),
            });
        }
        if let Some(t) = self.blocks.back_mut() {
            t.calls += 1;
            if !call.success {
                t.failed.push(call.clone());
            }
        }
        self.epoch_calls += 1;
        self.epoch_failed += u64::from(!call.success);
    }

    /// The contract's usual failure ratio (0 until it has history).
    pub fn baseline(&self) -> f64 {
        if self.history_calls > 0.0 {
            self.history_failed / self.history_calls
        } else {
            0.0
        }
    }

    fn totals(&self) -> (u64, u64) {
        self.blocks
            .iter()
            .fold((0, 0), |(c, f), t| (c + t.calls, f + t.failed.len() as u64))
    }

    fn condition(&self, calls: u64, failed: u64) -> bool {
        if calls == 0 {
            return false;
        }
        let ratio = failed as f64 / calls as f64;
        failed >= self.config.min_failed
            && ratio >= self.config.min_ratio
            && ratio >= self.config.baseline_factor * self.baseline()
    }

    /// Closes block `block` with block time `time` (call once per block, in
    /// order, after its calls). The window spans `window_blocks` blocks, or
    /// `window_seconds` of block time when that is set.
    pub fn end_block(&mut self, block: u64, time: u64) -> Option<SpikeChange> {
        if self.last_block.is_some_and(|b| block <= b) {
            return None;
        }
        self.last_block = Some(block);
        match self.config.window_seconds {
            Some(secs) => {
                while self.blocks.front().is_some_and(|t| t.time + secs <= time) {
                    self.blocks.pop_front();
                }
            }
            None => {
                let horizon = block.saturating_sub(self.config.window_blocks);
                while self.blocks.front().is_some_and(|t| t.block <= horizon) {
                    self.blocks.pop_front();
                }
            }
        }
        let (calls, failed) = self.totals();
        let hot = self.condition(calls, failed);
        self.epoch_hot |= hot;
        self.epoch_blocks += 1;
        let epoch_start = *self.epoch_start.get_or_insert(time);
        let mut change = None;
        if hot && !self.spiking {
            self.spiking = true;
            self.quiet = 0;
            change = Some(SpikeChange::Started {
                failed: self.blocks.iter().flat_map(|t| t.failed.clone()).collect(),
                calls,
                baseline: self.baseline(),
            });
        }
        let boundary = match self.config.window_seconds {
            Some(secs) => time >= epoch_start + secs,
            None => self.epoch_blocks >= self.config.window_blocks,
        };
        if boundary {
            // A window boundary: learn the baseline from quiet windows only,
            // and count quiet windows towards clearing a spike.
            if self.epoch_hot || self.spiking {
                self.pending = None;
            } else {
                if let Some((c, f)) = self.pending.take() {
                    self.history_calls = self.history_calls * BASELINE_DECAY + c as f64;
                    self.history_failed = self.history_failed * BASELINE_DECAY + f as f64;
                }
                self.pending =
                    (self.epoch_calls > 0).then_some((self.epoch_calls, self.epoch_failed));
            }
            self.epoch_calls = 0;
            self.epoch_failed = 0;
            if self.spiking && change.is_none() {
                if self.epoch_hot {
                    self.quiet = 0;
                } else {
                    self.quiet += 1;
                    if self.quiet >= self.config.clear_windows {
                        self.spiking = false;
                        change = Some(SpikeChange::Cleared {
                            quiet_windows: self.quiet,
                        });
                        self.quiet = 0;
                    }
                }
            }
            self.epoch_blocks = 0;
            self.epoch_start = None;
            self.epoch_hot = false;
        }
        change
    }
}

/// The evidence of a spike starting or clearing at `block` of `contract`:
/// the decision, dated by the block's header where it is at hand (else by
/// the newest failed call), then each failed call that made it, with its
/// revert reason.
pub fn evidence(
    chain_id: u64,
    contract: &ContractConfig,
    block: u64,
    header: Option<&BlockRef>,
    change: SpikeChange,
    reason: impl Fn(&CallOutcome) -> RevertReason,
) -> Vec<Evidence> {
    let scope = Scope::keyed(contract.name.clone(), SCOPE_KEY);
    let (failed, halted, text) = match change {
        SpikeChange::Started {
            failed,
            calls,
            baseline,
        } => {
            let text = format!(
                "revert spike: {} of {calls} calls failed in the last {} blocks (baseline {:.1}%)",
                failed.len(),
                contract.revert_spike.window_blocks,
                baseline * 100.0
            );
            (failed, true, text)
        }
        SpikeChange::Cleared { quiet_windows } => (
            Vec::new(),
            false,
            format!("revert spike cleared after {quiet_windows} quiet windows"),
        ),
    };
    let (hash, timestamp) = header
        .map(|h| (h.hash, h.timestamp))
        .or_else(|| failed.last().map(|f| (f.block_hash, f.block_timestamp)))
        .unwrap_or((B256::ZERO, 0));
    let mut out = vec![Evidence {
        kind: EvidenceKind::Spike,
        chain_id,
        contract: contract.address,
        contract_name: contract.name.clone(),
        tx_hash: B256::ZERO,
        block_number: block,
        block_hash: hash,
        block_timestamp: timestamp,
        log_index: 0,
        event: text,
        args: Vec::new(),
        changes: vec![ScopeChange { scope, halted }],
        log_hash: B256::ZERO,
        at: (timestamp == 0).then_some(crate::store::now_ms() as u64 / 1000),
    }];
    for call in &failed {
        let mut e = super::failed_tx::evidence(chain_id, &contract.name, call, &reason(call));
        e.changes.clear(); // the spike evidence carries the change
        out.push(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Address, B256};

    fn call(block: u64, success: bool) -> CallOutcome {
        CallOutcome {
            block_number: block,
            block_hash: B256::ZERO,
            block_timestamp: block * 12,
            tx_hash: B256::with_last_byte(block as u8),
            tx_index: 0,
            from: Address::ZERO,
            to: Address::ZERO,
            success,
            revert: None,
            nested: false,
            input: None,
            raised_here: None,
        }
    }

    /// Feeds blocks 1..=n; `f(block)` gives (calls, failures) for that block.
    fn run(config: SpikeConfig, n: u64, f: impl Fn(u64) -> (u64, u64)) -> Vec<(u64, &'static str)> {
        let mut w = SpikeWindow::new(config);
        let mut out = Vec::new();
        for b in 1..=n {
            let (calls, failed) = f(b);
            for i in 0..calls {
                w.record(&call(b, i >= failed));
            }
            match w.end_block(b, b * 12) {
                Some(SpikeChange::Started { .. }) => out.push((b, "started")),
                Some(SpikeChange::Cleared { .. }) => out.push((b, "cleared")),
                None => {}
            }
        }
        out
    }

    #[test]
    fn a_burst_spikes_and_clears_after_quiet_windows() {
        let cfg = SpikeConfig::default(); // 10 blocks, ≥5 failed, ≥50%, 3× baseline, 3 quiet windows
        // One good call per block; blocks 21..=23 have 4 calls that all fail.
        // At block 22 the window (13..=22) holds 8 good + 8 failed: 50%, ≥ 5 → spike.
        // Windows end every 10 blocks; the failures leave the sliding window at
        // block 33, so windows 31..=40 are still hot; 41..=50, 51..=60 and
        // 61..=70 are quiet → cleared at 70.
        let got = run(cfg, 80, |b| {
            if (21..=23).contains(&b) {
                (4, 4)
            } else {
                (1, 0)
            }
        });
        assert_eq!(got, [(22, "started"), (70, "cleared")]);
    }

    #[test]
    fn the_start_of_a_burst_is_not_learned_as_normal() {
        // Low traffic: 5 rounds of one failure among five successes, each
        // followed by 12 empty blocks; then one success and six failures in a
        // row. A window boundary falls inside the burst (4 of 5 failed, below
        // min_failed): learning it at once would lift the baseline to ~0.4
        // and hide the spike (3 × 0.4 > 5/6).
        let mut pattern: Vec<(u64, u64)> = Vec::new();
        for _ in 0..5 {
            pattern.extend([(1, 0), (1, 1), (1, 0), (1, 0), (1, 0), (1, 0)]);
            pattern.extend(std::iter::repeat_n((0, 0), 12));
        }
        pattern.push((1, 0));
        pattern.extend(std::iter::repeat_n((1, 1), 6));
        let n = pattern.len() as u64;
        let got = run(SpikeConfig::default(), n, |b| pattern[(b - 1) as usize]);
        assert_eq!(
            got,
            [(n - 1, "started")],
            "the 5th failure of the burst starts it"
        );
    }

    #[test]
    fn a_window_in_seconds_follows_block_time() {
        // 12-second blocks and a 120-second window hold the same 10 blocks,
        // so the spike starts at the same block. Window boundaries are by
        // time (a window spans its first block's time + 120 s, inclusive):
        // blocks 11, 22, 33, …; the last hot window ends at 33, and three
        // quiet ones later the spike clears at 66.
        let by_time = SpikeConfig {
            window_seconds: Some(120),
            ..SpikeConfig::default()
        };
        let burst = |b: u64| {
            if (21..=23).contains(&b) {
                (4, 4)
            } else {
                (1, 0)
            }
        };
        assert_eq!(run(by_time, 80, burst), [(22, "started"), (66, "cleared")]);
        // A 24-second window holds two blocks: 8 failures of 9 calls, still a spike...
        let short = SpikeConfig {
            window_seconds: Some(24),
            ..SpikeConfig::default()
        };
        assert_eq!(run(short, 80, burst).first(), Some(&(22, "started")));
        // ...but one failing call per block never reaches 5 in 24 seconds.
        let thin = |b: u64| {
            if (21..=40).contains(&b) {
                (1, 1)
            } else {
                (1, 0)
            }
        };
        assert!(run(short, 80, thin).is_empty());
    }

    #[test]
    fn the_same_failures_spread_thin_are_nothing() {
        let cfg = SpikeConfig::default();
        // One failure every 10 blocks, among successes: never 5 in a window.
        let got = run(cfg, 200, |b| if b % 10 == 0 { (2, 1) } else { (1, 0) });
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn a_contract_that_always_fails_a_lot_has_a_high_baseline() {
        let cfg = SpikeConfig {
            min_failed: 2,
            min_ratio: 0.3,
            ..SpikeConfig::default()
        };
        // 40% failures forever: the baseline learns it; 3 × 0.4 > 1, so no spike after warm-up.
        let got = run(cfg, 300, |b| (5, if b % 5 < 2 { 5 } else { 0 }));
        assert!(
            got.iter().all(|(b, _)| *b <= 10),
            "only the cold start may spike: {got:?}"
        );
    }

    #[test]
    fn flapping_around_the_threshold_does_not_clear_early() {
        let cfg = SpikeConfig::default();
        // Until block 100, every other window fails completely (2 of 2 calls
        // per block); the others are healthy (2 good calls per block). The
        // sliding window overlaps each healthy window with the hot one before
        // it, so no window boundary is quiet until block 100: one spike (at
        // block 3, once 6 calls have failed) and one clear, three quiet
        // windows after the last hot one: at 130.
        let got = run(cfg, 200, |b| {
            let window = (b - 1) / 10;
            if b <= 100 && window % 2 == 0 {
                (2, 2)
            } else {
                (2, 0)
            }
        });
        assert_eq!(got, [(3, "started"), (130, "cleared")]);
    }
}
