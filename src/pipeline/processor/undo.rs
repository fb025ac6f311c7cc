//! What a reorg must undo besides the stored history and the trackers: the
//! revert-spike windows. They are kept as of the end of each recent block
//! in which they changed; a revert returns them to the newest such state at
//! or below the common ancestor, so calls of orphaned blocks stop counting
//! and the new branch is evaluated from the ancestor on.

use std::collections::{HashMap, VecDeque};

use crate::detect::revert_spike::SpikeWindow;

type Windows = HashMap<(usize, usize), SpikeWindow>;

pub(super) struct SpikeHistory {
    /// Blocks below the newest whose states are kept: the chain's
    /// `reorg_rescan_blocks`, as deep as a revert goes.
    keep: u64,
    /// (block, the windows as of its end), oldest first.
    states: VecDeque<(u64, Windows)>,
    /// The windows before the oldest kept state (at first, at start-up).
    base: Windows,
}

impl SpikeHistory {
    pub fn new(start: &Windows, keep: u64) -> Self {
        SpikeHistory {
            keep,
            states: VecDeque::new(),
            base: start.clone(),
        }
    }

    /// `windows` as of the end of `block`.
    pub fn record(&mut self, block: u64, windows: &Windows) {
        self.states.push_back((block, windows.clone()));
        while self
            .states
            .front()
            .is_some_and(|(b, _)| b + self.keep < block)
        {
            if let Some((_, w)) = self.states.pop_front() {
                self.base = w;
            }
        }
    }

    /// The states of blocks this far below the newest are kept.
    pub fn keep(&self) -> u64 {
        self.keep
    }

    /// The windows as of the end of `ancestor`; the states above it are
    /// forgotten. Older than every kept state: the oldest known.
    pub fn restore(&mut self, ancestor: u64) -> Windows {
        while self.states.back().is_some_and(|(b, _)| *b > ancestor) {
            self.states.pop_back();
        }
        match self.states.back() {
            Some((_, w)) => w.clone(),
            None => self.base.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SpikeConfig;
    use crate::model::CallOutcome;
    use alloy::primitives::{Address, B256};

    fn windows(failed_calls: u64) -> Windows {
        let mut w = SpikeWindow::new(SpikeConfig::default());
        for i in 0..failed_calls {
            w.record(&CallOutcome {
                block_number: 1,
                block_hash: B256::ZERO,
                block_timestamp: 0,
                tx_hash: B256::with_last_byte(i as u8),
                tx_index: i,
                from: Address::ZERO,
                to: Address::ZERO,
                success: false,
                revert: None,
                nested: false,
                input: None,
                raised_here: None,
            });
        }
        HashMap::from([((0, 0), w)])
    }

    fn calls(w: &Windows) -> bool {
        !w[&(0, 0)].is_idle()
    }

    #[test]
    fn a_revert_returns_to_the_newest_state_at_or_below_the_ancestor() {
        let mut h = SpikeHistory::new(&windows(0), 256);
        h.record(10, &windows(1));
        h.record(12, &windows(2));
        assert!(calls(&h.restore(11)), "the state of block 10");
        assert!(!calls(&h.restore(9)), "before any kept state: the start");
    }

    #[test]
    fn states_older_than_the_kept_span_become_the_base() {
        let mut h = SpikeHistory::new(&windows(0), 256);
        h.record(1, &windows(1));
        h.record(1 + 256 + 1, &windows(0));
        assert_eq!(h.states.len(), 1);
        assert!(calls(&h.restore(5)), "the dropped state is the base");
    }
}
