//! Decode → detect → classify over one committed range: logs and calls in
//! chain order, one transaction at a time; revert-spike windows closed at
//! the end of each block; probe answers at the tip; tracker snapshots where
//! a reorg could return to them.

use std::collections::{BTreeMap, HashMap};

use alloy::primitives::Address;
use alloy::rpc::types::Log;

use super::Processor;
use crate::classify::{ProtocolModel, Tracker};
use crate::detect;
use crate::detect::revert_spike::{SpikeChange, SpikeWindow};
use crate::model::{BlockRef, CallOutcome, Evidence, IncidentUpdate, ProbeKind, ProbeResult};
use crate::pipeline::WINDOW_BLOCKS;
use crate::telemetry;

/// What decode → detect → classify made of one committed range.
#[derive(Default)]
pub(super) struct Classified {
    pub updates: Vec<IncidentUpdate>,
    /// (protocol, block, tracker JSON) for each block where a tracker changed.
    pub snapshots: Vec<(usize, u64, String)>,
    /// Monitored logs that decoded.
    pub decoded: u64,
}

/// Evidence waiting to be applied as one transaction, and the trackers it changed.
#[derive(Default)]
struct Batching {
    pending: BTreeMap<usize, Vec<Evidence>>,
    changed: Vec<usize>,
    out: Classified,
    /// The newest block time seen: dates blocks whose header is not at hand.
    time: u64,
    /// Snapshots are kept only where a reorg could return to them: above
    /// this block, and the newest at or below it per protocol (held here as
    /// a copy and serialized once, at the end). `None`: all of them.
    cutoff: Option<u64>,
    below: BTreeMap<usize, (u64, Tracker)>,
    /// The spike windows' states are kept from this block on, for a reorg
    /// to return to (`None`: a backfill, which keeps none).
    undo_from: Option<u64>,
}

/// A log or a call, in chain order.
enum Item<'a> {
    Log(&'a Log),
    Call(&'a CallOutcome),
}

impl Item<'_> {
    /// (block, transaction index, log index): a log's place in the range.
    fn position_of_log(&self) -> (u64, u64, u64) {
        let (block, tx, _, index) = self.position();
        (block, tx, index)
    }

    /// (block, transaction index, logs before calls, log index).
    fn position(&self) -> (u64, u64, u8, u64) {
        match self {
            Item::Log(l) => (
                l.block_number.unwrap_or_default(),
                l.transaction_index.unwrap_or_default(),
                0,
                l.log_index.unwrap_or_default(),
            ),
            Item::Call(c) => (c.block_number, c.tx_index, 1, u64::from(c.nested)),
        }
    }
}

impl Processor {
    /// Runs decode → detect → classify over blocks `from..=to`.
    pub(super) fn classify(
        &mut self,
        from: u64,
        to: u64,
        logs: &[Log],
        calls: &[CallOutcome],
        probes: &[ProbeResult],
        blocks: &[BlockRef],
    ) -> Classified {
        // A complete set read for the first time (at start-up) counts for
        // this range's logs: it must precede the first pause. A set read
        // again takes effect right after the range's last log that changes
        // it (a listing), or at the tip when none did (a periodic read).
        let (first_reads, rereads): (Vec<&ProbeResult>, Vec<&ProbeResult>) = probes
            .iter()
            .filter(|r| r.kind == ProbeKind::ScopeSet)
            .partition(|r| !self.sets_read.contains(&r.probe));
        for result in first_reads {
            self.read_set(result);
        }
        let mut after_log: HashMap<(u64, u64, u64), Vec<&ProbeResult>> = HashMap::new();
        let mut at_tip = Vec::new();
        for result in rereads {
            let (p, r) = result.probe;
            let last = logs.iter().rev().find(|l| {
                self.registry
                    .refreshes(l)
                    .iter()
                    .any(|x| x.protocol == p && x.rule == r)
            });
            match last {
                Some(l) => after_log
                    .entry(Item::Log(l).position_of_log())
                    .or_default()
                    .push(result),
                None => at_tip.push(result),
            }
        }
        let mut items: Vec<Item> = logs
            .iter()
            .map(Item::Log)
            .chain(calls.iter().map(Item::Call))
            .collect();
        items.sort_by_key(Item::position);
        let known: HashMap<u64, BlockRef> = blocks.iter().map(|b| (b.number, *b)).collect();
        let mut b = Batching {
            cutoff: (!blocks.is_empty()).then(|| to.saturating_sub(WINDOW_BLOCKS)),
            undo_from: (!self.backfill).then(|| to.saturating_sub(self.spike_history.keep())),
            ..Default::default()
        };
        let mut current_tx: Option<(u64, u64)> = None;
        let mut next_block = from;
        for item in &items {
            let (block, tx, _, _) = item.position();
            if current_tx != Some((block, tx)) {
                self.flush(&mut b);
            }
            if block > next_block {
                // Entering a later block: close the ones before it.
                self.end_blocks(next_block, block - 1, &known, &mut b);
                next_block = block;
            }
            current_tx = Some((block, tx));
            b.time = b.time.max(match item {
                Item::Log(l) => l.block_timestamp.unwrap_or_default(),
                Item::Call(c) => c.block_timestamp,
            });
            match item {
                Item::Log(log) => {
                    self.on_log(log, &mut b);
                    if let Some(results) = after_log.remove(&item.position_of_log()) {
                        self.flush(&mut b);
                        for result in results {
                            self.reread_set(result, Some(log), &mut b);
                        }
                    }
                }
                Item::Call(call) => self.on_call(call, &mut b),
            }
        }
        self.flush(&mut b);
        self.end_blocks(next_block, to, &known, &mut b);
        for result in at_tip {
            self.reread_set(result, None, &mut b);
        }
        for result in probes.iter().filter(|r| r.kind == ProbeKind::State) {
            self.on_probe(result, &mut b);
            self.flush(&mut b);
        }
        self.snapshot(to, &mut b);
        for (p, (block, tracker)) in std::mem::take(&mut b.below) {
            if let Ok(json) = serde_json::to_string(&tracker) {
                b.out.snapshots.push((p, block, json));
            }
        }
        b.out
    }

    /// The whole chain stalled (`halted`) or resumed: the same evidence for
    /// every protocol on it.
    pub(super) fn classify_chain_state(
        &mut self,
        head: BlockRef,
        wall_time: u64,
        halted: bool,
    ) -> Classified {
        let mut b = Batching::default();
        for m in &self.models {
            let e = detect::stall::evidence(
                self.chain_id(),
                self.chain_name(),
                head,
                wall_time,
                halted,
            );
            b.pending.entry(m.index).or_default().push(e);
        }
        self.flush(&mut b);
        self.snapshot(head.number, &mut b);
        b.out
    }

    fn on_log(&mut self, log: &Log, b: &mut Batching) {
        let Some(decoded) = self.registry.decode(log) else {
            return;
        };
        let decoded = match decoded {
            Ok(d) => {
                b.out.decoded += 1;
                d
            }
            Err(e) => {
                telemetry::decode_failed(self.chain_name());
                tracing::warn!(chain = %self.chain_name(), error = %e, source = %e.source, "log skipped: it does not decode with its ABI");
                return;
            }
        };
        match detect::pause::signals(&self.config, self.chain_id(), &decoded) {
            Ok(signals) => {
                for s in signals {
                    let halts = s.evidence.changes.iter().any(|c| c.halted);
                    telemetry::signal(if halts { "halt" } else { "resume" });
                    b.pending.entry(s.protocol).or_default().push(s.evidence);
                }
            }
            Err(e) => tracing::warn!(chain = %self.chain_name(), error = %e, "log skipped"),
        }
    }

    fn on_call(&mut self, call: &CallOutcome, b: &mut Batching) {
        let Some(watchers) = self.watchers.get(&call.to) else {
            return;
        };
        let reason =
            (!call.success).then(|| self.registry.revert_reason(call.to, call.revert_data()));
        for &(p, c) in watchers {
            // Every call into the contract counts, nested ones included (with
            // call tracing each call frame is one call).
            if let Some(window) = self.spikes.get_mut(&(p, c)) {
                window.record(call);
            }
            let Some(reason) = &reason else { continue };
            // Only a pause the contract raised itself halts it: one passed
            // on from a contract it called is anybody's to forge.
            if reason.is_pause() && call.raised_here == Some(true) {
                let name = &self.config.protocols[p].contracts[c].name;
                let e = detect::failed_tx::evidence(self.chain_id(), name, call, reason);
                telemetry::signal("failed_call");
                b.pending.entry(p).or_default().push(e);
                continue;
            }
            let protocol = &self.config.protocols[p];
            let Some(meaning) = protocol.contracts[c]
                .halt_reverts
                .iter()
                .find(|h| detect::halt_revert::matches(h, reason))
            else {
                continue;
            };
            let tracker = self.trackers.get(&p);
            let halted = |s: &crate::model::Scope| tracker.is_some_and(|t| t.halted.contains(s));
            if let Some(e) = detect::halt_revert::evidence(
                self.chain_id(),
                (protocol, c),
                call,
                reason,
                meaning,
                halted,
            ) {
                telemetry::signal("failed_call");
                b.pending.entry(p).or_default().push(e);
            }
        }
    }

    /// Complete sets read apart from a range (a backfill's, once).
    pub(in crate::pipeline) fn apply_scope_sets(&mut self, results: &[ProbeResult]) {
        for r in results.iter().filter(|r| r.kind == ProbeKind::ScopeSet) {
            self.read_set(r);
        }
    }

    /// A complete set read from the chain: the addresses it lists become
    /// the rule's set; a failed or malformed read keeps the last one.
    /// Returns the protocol's model as it was and the list read, when the
    /// set changed.
    fn read_set(&mut self, result: &ProbeResult) -> Option<(ProtocolModel, Vec<Address>)> {
        use alloy::sol_types::SolValue;
        let (p, r) = result.probe;
        let name = &self.config.protocols[p].name;
        let list = match &result.output {
            Ok(out) => match <Vec<Address>>::abi_decode(out) {
                Ok(list) => list,
                Err(e) => {
                    tracing::warn!(protocol = %name, rule = r, block = result.block.number, error = %e,
                        "complete set skipped: the answer is not an address[]; the last set stays");
                    return None;
                }
            },
            Err(e) => {
                tracing::warn!(protocol = %name, rule = r, block = result.block.number, error = %e,
                    "complete set not read; the last set stays");
                return None;
            }
        };
        self.sets_read.insert(result.probe);
        let model = self.models.iter_mut().find(|m| m.index == p)?;
        let old = model.clone();
        let members = list.iter().map(|a| a.to_checksum(None)).collect();
        if !model.set_members(r, members) {
            return None;
        }
        tracing::info!(protocol = %name, rule = r, scopes = list.len(), block = result.block.number,
            "complete set read from the chain");
        Some((old, list))
    }

    /// A set read again: a protocol whose halted scopes mean another state
    /// under it moves there, on the evidence of the log that changed the
    /// set (`ReserveDropped`), or of the read itself when no log did.
    fn reread_set(&mut self, result: &ProbeResult, trigger: Option<&Log>, b: &mut Batching) {
        let Some((old, list)) = self.read_set(result) else {
            return;
        };
        let (p, r) = result.probe;
        let chain_id = self.chain_id();
        let protocol = &self.config.protocols[p];
        let evidence = match trigger.and_then(|l| self.registry.decode(l)) {
            Some(Ok(decoded)) => {
                let rule = &protocol.contracts[protocol.rules[r].contract];
                detect::pause::evidence(chain_id, (&rule.name, rule.address), &decoded).ok()
            }
            _ => protocol.rules[r].scopes_from.as_ref().map(|from| {
                let contract = &protocol.contracts[from.contract];
                detect::probe::set_evidence(
                    chain_id,
                    (&contract.name, contract.address),
                    &from.function,
                    result,
                    &list,
                )
            }),
        };
        let (Some(evidence), Some(model), Some(tracker)) = (
            evidence,
            self.models.iter().find(|m| m.index == p),
            self.trackers.get_mut(&p),
        ) else {
            return;
        };
        if let Some(u) = tracker.reclassify(&old, model, evidence) {
            telemetry::signal("complete_set");
            b.out.updates.push(u);
            if !b.changed.contains(&p) {
                b.changed.push(p);
            }
        }
    }

    /// Closes blocks `first..=last`: revert-spike windows decide per block.
    fn end_blocks(
        &mut self,
        first: u64,
        last: u64,
        known: &HashMap<u64, BlockRef>,
        b: &mut Batching,
    ) {
        if first > last {
            return;
        }
        if self.spikes.values().all(SpikeWindow::is_idle) {
            // Changes pending a snapshot happened in `first`: date them there,
            // so a reorg above `first` keeps them.
            self.snapshot(first, b);
            return;
        }
        for block in first..=last {
            if let Some(h) = known.get(&block) {
                b.time = b.time.max(h.timestamp);
            }
            let time = b.time;
            let mut changes: Vec<((usize, usize), SpikeChange)> = Vec::new();
            for (key, window) in &mut self.spikes {
                if window.is_idle() {
                    continue;
                }
                if let Some(change) = window.end_block(block, time) {
                    changes.push((*key, change));
                }
            }
            changes.sort_by_key(|(k, _)| *k);
            for ((p, c), change) in changes {
                let contract = &self.config.protocols[p].contracts[c];
                let registry = &self.registry;
                let evidence = detect::revert_spike::evidence(
                    self.chain_id(),
                    contract,
                    block,
                    known.get(&block),
                    change,
                    |call| registry.revert_reason(call.to, call.revert_data()),
                );
                telemetry::signal("revert_spike");
                b.pending.entry(p).or_default().extend(evidence);
                self.flush(b);
            }
            self.snapshot(block, b);
            if b.undo_from.is_some_and(|from| block >= from) {
                self.spike_history.record(block, &self.spikes);
            }
        }
    }

    fn on_probe(&mut self, result: &ProbeResult, b: &mut Batching) {
        let (p, i) = result.probe;
        let protocol = &self.config.protocols[p];
        let probe = &protocol.probes[i];
        let contract = &protocol.contracts[probe.contract];
        let first = self.probed.insert(result.probe);
        let scope = detect::probe::scope(probe, &contract.name);
        let halted_now = self
            .trackers
            .get(&p)
            .is_some_and(|t| t.halted.contains(&scope));
        let e = match detect::probe::decide(
            self.chain_id(),
            probe,
            (&contract.name, contract.address),
            result,
            halted_now,
            first,
        ) {
            Ok(Some(e)) => e,
            Ok(None) => return, // agrees with what the history says: nothing new
            Err(why) => {
                tracing::warn!(protocol = %protocol.name, probe = %probe.function.signature(), error = %why, "probe skipped");
                return;
            }
        };
        telemetry::signal("probe");
        b.pending.entry(p).or_default().push(e);
    }

    /// Applies the pending evidence as one transaction per protocol.
    fn flush(&mut self, b: &mut Batching) {
        for (protocol, evidence) in std::mem::take(&mut b.pending) {
            let Some(model) = self.models.iter().find(|m| m.index == protocol) else {
                continue;
            };
            let tracker = self.trackers.entry(protocol).or_default();
            let before = tracker.clone();
            if let Some(u) = tracker.apply(model, evidence) {
                b.out.updates.push(u);
            }
            if *tracker != before && !b.changed.contains(&protocol) {
                b.changed.push(protocol);
            }
        }
    }

    /// Snapshots the trackers that changed, as of the end of `block`.
    fn snapshot(&self, block: u64, b: &mut Batching) {
        for p in b.changed.drain(..) {
            // A backfill writes no snapshots.
            let Some(t) = self.trackers.get(&p).filter(|_| !self.backfill) else {
                continue;
            };
            if b.cutoff.is_some_and(|c| block <= c) {
                b.below.insert(p, (block, t.clone()));
            } else if let Ok(json) = serde_json::to_string(t) {
                b.out.snapshots.push((p, block, json));
            }
        }
    }
}
