//! An incident's header — state, worst severity, start, end — as its
//! transitions determine it. The incidents table stores it for readers;
//! the writer, the revert path and `verify --history` all derive it here,
//! so the stored row can be checked against the ledger-covered transitions.

use crate::model::{ProtocolState, TransitionKind};

use super::records::IncidentState;

/// One transition as the header needs it: (kind, to, at, block).
pub(super) type Step = (TransitionKind, ProtocolState, i64, i64);

/// What the incidents table holds of an incident beyond its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub state: IncidentState,
    pub severity: ProtocolState,
    pub started_at: i64,
    pub start_block: i64,
    pub ended_at: Option<i64>,
    pub end_block: Option<i64>,
}

/// The header of an incident whose transitions still standing are `steps`
/// (in order); `None` when none stand (the incident is withdrawn, see
/// [`withdrawn`]).
pub(super) fn derive(steps: &[Step]) -> Option<Header> {
    let (first, last) = (steps.first()?, steps.last()?);
    let severity = steps
        .iter()
        .map(|s| s.1)
        .fold(ProtocolState::Degraded, ProtocolState::max);
    let resolved = last.0 == TransitionKind::Resolved;
    Some(Header {
        state: if resolved {
            IncidentState::Resolved
        } else {
            IncidentState::Open
        },
        severity,
        started_at: first.2,
        start_block: first.3,
        ended_at: resolved.then_some(last.2),
        end_block: resolved.then_some(last.3),
    })
}

/// A withdrawn incident keeps the start and severity its transitions had
/// (all of them, retracted now) and has no end.
pub(super) fn withdrawn(all: &[Step]) -> Option<Header> {
    derive(all).map(|h| Header {
        state: IncidentState::Withdrawn,
        ended_at: None,
        end_block: None,
        ..h
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProtocolState::{Degraded, Halted};
    use TransitionKind::{Escalated, Opened, Resolved};

    #[test]
    fn the_header_follows_the_transitions() {
        assert_eq!(derive(&[]), None);
        let open = derive(&[(Opened, Degraded, 10, 1), (Escalated, Halted, 20, 2)]).unwrap();
        assert_eq!(
            (open.state, open.severity, open.started_at, open.ended_at),
            (IncidentState::Open, Halted, 10, None)
        );
        let steps = [
            (Opened, Halted, 10, 1),
            (Resolved, ProtocolState::Operational, 70, 7),
        ];
        let done = derive(&steps).unwrap();
        assert_eq!(
            (done.state, done.severity, done.ended_at, done.end_block),
            (IncidentState::Resolved, Halted, Some(70), Some(7))
        );
        let gone = withdrawn(&steps).unwrap();
        assert_eq!(
            (gone.state, gone.started_at, gone.ended_at),
            (IncidentState::Withdrawn, 10, None)
        );
    }
}
