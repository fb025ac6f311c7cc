//! The reorg window: the newest blocks processed (number and hash), oldest
//! first; the newest is the checkpoint. Plain data, no I/O.

use std::collections::VecDeque;

use crate::model::BlockRef;

#[derive(Debug, Default)]
pub(super) struct Window {
    blocks: VecDeque<BlockRef>,
    /// Blocks kept below the tip.
    keep: u64,
}

impl Window {
    /// `blocks` oldest first, as the store remembers them.
    pub fn new(blocks: Vec<BlockRef>, keep: u64) -> Self {
        Window {
            blocks: blocks.into(),
            keep,
        }
    }

    /// The checkpoint: the newest block processed.
    pub fn tip(&self) -> Option<BlockRef> {
        self.blocks.back().copied()
    }

    /// Newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &BlockRef> {
        self.blocks.iter().rev()
    }

    /// Blocks of a committed range, oldest first; blocks further than
    /// `keep` below the new tip are forgotten.
    pub fn extend(&mut self, blocks: &[BlockRef]) {
        self.blocks.extend(blocks.iter().copied());
        let Some(tip) = self.tip() else { return };
        while self
            .blocks
            .front()
            .is_some_and(|b| b.number + self.keep < tip.number)
        {
            self.blocks.pop_front();
        }
    }

    /// Forgets every block above `ancestor`.
    pub fn truncate_above(&mut self, ancestor: u64) {
        while self.blocks.back().is_some_and(|b| b.number > ancestor) {
            self.blocks.pop_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::B256;

    fn block(n: u64, fork: u8) -> BlockRef {
        BlockRef {
            number: n,
            hash: B256::repeat_byte(fork) ^ B256::left_padding_from(&n.to_be_bytes()),
            parent_hash: B256::ZERO,
            timestamp: n,
        }
    }

    #[test]
    fn the_window_keeps_exactly_its_size_below_the_tip() {
        let mut w = Window::new(Vec::new(), 3);
        w.extend(&(1..=10).map(|n| block(n, 1)).collect::<Vec<_>>());
        let kept: Vec<u64> = w.newest_first().map(|b| b.number).collect();
        assert_eq!(kept, vec![10, 9, 8, 7]);
        assert_eq!(w.tip().map(|b| b.number), Some(10));
    }

    #[test]
    fn truncating_forgets_the_orphaned_blocks_only() {
        let mut w = Window::new((1..=5).map(|n| block(n, 1)).collect(), 128);
        w.truncate_above(3);
        assert_eq!(w.tip().map(|b| b.number), Some(3));
        w.extend(&[block(4, 2)]);
        assert_eq!(w.tip(), Some(block(4, 2)));
    }
}
