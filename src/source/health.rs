//! The chain's health as plain state: stalls (no endpoint's head moved for
//! the chain's limit) and monitoring gaps (no endpoint could be read for
//! that long). Wall-clock seconds in, events out; no I/O.

/// What changed in the chain's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HealthEvent {
    /// No head moved since wall-clock `since`.
    Stalled { since: u64 },
    /// Every endpoint has failed since `since`.
    GapOpened { since: u64 },
    /// An endpoint answered again at `at`.
    GapClosed { at: u64 },
}

#[derive(Debug)]
pub(super) struct ChainHealth {
    stall_after: u64,
    /// The newest head any endpoint reported, and when it first appeared.
    best: Option<(u64, u64)>,
    stalled: bool,
    /// Heads moved after a stall and the resume is not yet recorded.
    resuming: Option<u64>,
    failing_since: Option<u64>,
    gap_open: bool,
}

impl ChainHealth {
    pub fn new(stall_after_secs: u64) -> Self {
        ChainHealth {
            stall_after: stall_after_secs,
            best: None,
            stalled: false,
            resuming: None,
            failing_since: None,
            gap_open: false,
        }
    }

    /// A head reported by any endpoint at `now`. Only a head above the
    /// newest seen is progress: a lagging endpoint's lower head is not.
    pub fn head(&mut self, head: u64, now: u64) {
        if self.best.is_some_and(|(n, _)| head <= n) {
            return;
        }
        self.best = Some((head, now));
        if self.stalled {
            self.stalled = false;
            self.resuming = Some(now);
        }
    }

    /// The chain was reorganised to a lower head: progress counts from it.
    pub fn rebase(&mut self, head: u64, now: u64) {
        if self.best.is_some_and(|(n, _)| head < n) {
            self.best = Some((head, now));
        }
    }

    /// The newest head, and the wall-clock time it appeared.
    pub fn best(&self) -> Option<(u64, u64)> {
        self.best
    }

    /// A stall, once, when no head moved for the limit.
    pub fn check_stall(&mut self, now: u64) -> Option<HealthEvent> {
        let (_, since) = self.best?;
        if self.stalled || self.resuming.is_some() || now.saturating_sub(since) < self.stall_after {
            return None;
        }
        self.stalled = true;
        Some(HealthEvent::Stalled { since })
    }

    /// When heads moved again after a stall whose end is not yet recorded.
    pub fn resuming(&self) -> Option<u64> {
        self.resuming
    }

    /// The end of the stall was recorded.
    pub fn resumed(&mut self) {
        self.resuming = None;
    }

    /// No endpoint could be read at `now`: a gap once this lasted the limit.
    pub fn failed(&mut self, now: u64) -> Option<HealthEvent> {
        let since = *self.failing_since.get_or_insert(now);
        if self.gap_open || now.saturating_sub(since) < self.stall_after {
            return None;
        }
        self.gap_open = true;
        Some(HealthEvent::GapOpened { since })
    }

    /// An endpoint answered at `now`.
    pub fn succeeded(&mut self, now: u64) -> Option<HealthEvent> {
        self.failing_since = None;
        if !self.gap_open {
            return None;
        }
        self.gap_open = false;
        Some(HealthEvent::GapClosed { at: now })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_is_declared_once_when_no_head_moved_for_the_limit() {
        let mut h = ChainHealth::new(10);
        assert_eq!(h.check_stall(100), None, "no head yet: nothing to stall");
        h.head(5, 100);
        h.head(5, 105);
        assert_eq!(h.check_stall(109), None);
        assert_eq!(
            h.check_stall(110),
            Some(HealthEvent::Stalled { since: 100 })
        );
        assert_eq!(h.check_stall(200), None, "once");
    }

    #[test]
    fn a_lower_head_from_a_lagging_endpoint_is_not_progress() {
        let mut h = ChainHealth::new(10);
        h.head(7, 100);
        h.head(5, 108);
        assert_eq!(
            h.check_stall(110),
            Some(HealthEvent::Stalled { since: 100 })
        );
    }

    #[test]
    fn a_stall_always_ends_when_heads_move_and_stays_pending_until_recorded() {
        let mut h = ChainHealth::new(10);
        h.head(5, 100);
        h.check_stall(120);
        h.head(6, 130);
        assert_eq!(h.resuming(), Some(130));
        assert_eq!(
            h.check_stall(200),
            None,
            "no new stall while the end is unrecorded"
        );
        assert_eq!(
            h.resuming(),
            Some(130),
            "a failed header read leaves it pending"
        );
        h.resumed();
        assert_eq!(h.resuming(), None);
        assert_eq!(
            h.check_stall(200),
            Some(HealthEvent::Stalled { since: 130 })
        );
    }

    #[test]
    fn a_gap_opens_after_the_limit_of_failures_and_closes_on_the_first_answer() {
        let mut h = ChainHealth::new(10);
        assert_eq!(h.succeeded(90), None);
        assert_eq!(h.failed(100), None);
        assert_eq!(h.failed(105), None);
        assert_eq!(h.failed(110), Some(HealthEvent::GapOpened { since: 100 }));
        assert_eq!(h.failed(120), None);
        assert_eq!(h.succeeded(121), Some(HealthEvent::GapClosed { at: 121 }));
        assert_eq!(h.failed(130), None, "a new run of failures starts over");
    }

    #[test]
    fn a_reorg_to_a_lower_head_rebases_progress() {
        let mut h = ChainHealth::new(10);
        h.head(10, 100);
        h.rebase(8, 105);
        h.head(9, 106);
        assert_eq!(h.best(), Some((9, 106)));
    }
}
