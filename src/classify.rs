//! The classifier: a pure state machine per protocol. Signals of one
//! transaction go in; at most one incident update comes out. No I/O: the
//! pipeline persists [`Tracker`] snapshots so restarts and reorgs restore it.
//!
//! A protocol is `halted` while a whole-contract halt is active or while every
//! scope of a complete set is halted, `degraded` while only some scopes are
//! halted, and `operational` otherwise. Scopes of rules with
//! `severity = "degraded"` never make it more than degraded.

use std::collections::{BTreeMap, BTreeSet};

use alloy::primitives::keccak256;
use serde::{Deserialize, Serialize};

use crate::config::ProtocolConfig;
use crate::model::{Evidence, IncidentUpdate, ProtocolState, Scope, Transition, TransitionKind};

/// Scope keys of one contract that, all halted together, halt the whole
/// protocol. A key also covers its member when it extends it by `:` and
/// the same rest for every member: with the markets of a comptroller as
/// members, `<market>:Mint` halted on every market is a complete set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteSet {
    pub contract: String,
    pub members: BTreeSet<String>,
    /// The rule whose set is read from the chain (`None`: fixed).
    pub read_for: Option<usize>,
}

impl CompleteSet {
    /// True when every member is halted (with one common rest). An empty
    /// set (not read yet, or nothing listed) never is.
    fn covered_by(&self, halted: &BTreeSet<Scope>) -> bool {
        if self.members.is_empty() {
            return false;
        }
        let mut by_rest: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let keys = halted
            .iter()
            .filter(|s| s.contract == self.contract && !s.degraded_only)
            .filter_map(|s| s.key.as_deref());
        for key in keys {
            if let Some(m) = self.members.get(key) {
                by_rest.entry("").or_default().insert(m);
            }
            for (i, _) in key.match_indices(':') {
                if let Some(m) = self.members.get(&key[..i]) {
                    by_rest.entry(&key[i + 1..]).or_default().insert(m);
                }
            }
        }
        by_rest.values().any(|ms| ms.len() == self.members.len())
    }
}

/// What the classifier needs to know about a protocol: fixed at start-up
/// but for complete sets read from the chain.
#[derive(Debug, Clone)]
pub struct ProtocolModel {
    pub index: usize,
    pub name: String,
    /// Sets of scopes that, all halted together, halt the whole protocol.
    pub complete_sets: Vec<CompleteSet>,
}

impl ProtocolModel {
    pub fn new(index: usize, protocol: &ProtocolConfig) -> Self {
        let mut complete_sets: Vec<CompleteSet> = Vec::new();
        for (r, rule) in protocol.rules.iter().enumerate() {
            let contract = protocol.contracts[rule.contract].name.clone();
            let set = match (&rule.complete_set, &rule.scopes_from) {
                (Some(members), _) => CompleteSet {
                    contract,
                    members: members.clone(),
                    read_for: None,
                },
                (None, Some(_)) => CompleteSet {
                    contract,
                    members: BTreeSet::new(),
                    read_for: Some(r),
                },
                (None, None) => continue,
            };
            if !complete_sets.contains(&set) {
                complete_sets.push(set);
            }
        }
        ProtocolModel {
            index,
            name: protocol.name.clone(),
            complete_sets,
        }
    }

    /// Replaces the members of rule `rule`'s set read from the chain;
    /// true when they changed.
    pub fn set_members(&mut self, rule: usize, members: BTreeSet<String>) -> bool {
        let mut changed = false;
        for set in &mut self.complete_sets {
            if set.read_for == Some(rule) && set.members != members {
                set.members = members.clone();
                changed = true;
            }
        }
        changed
    }
}

/// The open incident a tracker is following.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenIncident {
    pub key: String,
    pub state: ProtocolState,
}

/// The mutable state of one protocol: which scopes are halted, which incident is open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracker {
    pub halted: BTreeSet<Scope>,
    pub open: Option<OpenIncident>,
}

impl Tracker {
    /// The protocol's state given the scopes now halted.
    pub fn state(&self, model: &ProtocolModel) -> ProtocolState {
        if self
            .halted
            .iter()
            .any(|s| s.key.is_none() && !s.degraded_only)
            || model
                .complete_sets
                .iter()
                .any(|set| set.covered_by(&self.halted))
        {
            ProtocolState::Halted
        } else if self.halted.is_empty() {
            ProtocolState::Operational
        } else {
            ProtocolState::Degraded
        }
    }

    /// Applies the evidence of one transaction (in log order) for this protocol.
    ///
    /// Returns an update when an incident opens, changes state, resolves, or
    /// gains evidence. A resume for scopes that are not halted changes nothing.
    pub fn apply(
        &mut self,
        model: &ProtocolModel,
        evidence: Vec<Evidence>,
    ) -> Option<IncidentUpdate> {
        let before = self.state(model);
        self.step(model, before, evidence)
    }

    /// The protocol's complete sets changed from `old` to `new` (a set read
    /// from the chain again): the same halted scopes may now mean another
    /// state. `evidence` (the read, changing no scope) dates the transition;
    /// nothing happens when the state stays.
    pub fn reclassify(
        &mut self,
        old: &ProtocolModel,
        new: &ProtocolModel,
        evidence: Evidence,
    ) -> Option<IncidentUpdate> {
        let before = self.state(old);
        if before == self.state(new) {
            return None;
        }
        self.step(new, before, vec![evidence])
    }

    /// Applies `evidence` to a protocol that was in state `before`.
    fn step(
        &mut self,
        model: &ProtocolModel,
        before: ProtocolState,
        evidence: Vec<Evidence>,
    ) -> Option<IncidentUpdate> {
        let first = evidence.first()?;
        let mut changed = false;
        let mut halts = false;
        for change in evidence.iter().flat_map(|e| &e.changes) {
            if change.halted {
                halts = true;
                changed |= self.halted.insert(change.scope.clone());
            } else {
                changed |= self.halted.remove(&change.scope);
            }
        }
        let after = self.state(model);
        let cites = evidence.iter().any(|e| e.changes.is_empty());
        let transition = TransitionKind::between(before, after).map(|kind| Transition {
            kind,
            from: before,
            to: after,
            at: first.time(),
            block_number: first.block_number,
        });
        let key = match (&mut self.open, &transition) {
            (None, None) => return None,
            (None, Some(_)) => {
                let key = incident_key(&model.name, first);
                self.open = Some(OpenIncident {
                    key: key.clone(),
                    state: after,
                });
                key
            }
            // Evidence that changes no scope (a failed call cited on the
            // open incident) is still added to it.
            (Some(_), None) if !changed && !halts && !cites => return None,
            (Some(open), _) => {
                open.state = after;
                open.key.clone()
            }
        };
        if after == ProtocolState::Operational {
            self.open = None;
        }
        Some(IncidentUpdate {
            key,
            protocol: model.index,
            transition,
            evidence,
        })
    }
}

/// A stable key for an incident: the same opening evidence gives the same key
/// on every run, so a re-run or a restart never duplicates an incident.
pub fn incident_key(protocol: &str, opening: &Evidence) -> String {
    let material = format!(
        "{}|{}|{}|{}",
        protocol, opening.chain_id, opening.block_hash, opening.log_index
    );
    alloy::hex::encode(&keccak256(material.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ScopeChange;
    use alloy::primitives::{Address, B256};

    fn model(sets: &[&[&str]]) -> ProtocolModel {
        ProtocolModel {
            index: 0,
            name: "P".into(),
            complete_sets: sets
                .iter()
                .map(|s| CompleteSet {
                    contract: "c".into(),
                    members: s.iter().map(|k| k.to_string()).collect(),
                    read_for: None,
                })
                .collect(),
        }
    }

    /// Evidence at block `n` (timestamp 100 n) with the given changes.
    /// `"*"` stands for the whole contract; `+` halts, `-` resumes; `"="`
    /// alone is a citation (no change).
    fn ev(n: u64, changes: &[&str]) -> Evidence {
        Evidence {
            kind: Default::default(),
            at: None,
            chain_id: 1,
            contract: Address::ZERO,
            contract_name: "c".into(),
            tx_hash: B256::with_last_byte(n as u8),
            block_number: n,
            block_hash: B256::with_last_byte(n as u8),
            block_timestamp: 100 * n,
            log_index: 0,
            event: "E()".into(),
            args: vec![],
            log_hash: B256::ZERO,
            changes: changes
                .iter()
                .filter(|c| **c != "=")
                .map(|c| {
                    let (sign, key) = c.split_at(1);
                    // A trailing `!` marks a scope of a degraded-only rule.
                    let (key, capped) = match key.strip_suffix('!') {
                        Some(k) => (k, true),
                        None => (key, false),
                    };
                    let scope = if key == "*" {
                        Scope::whole("c")
                    } else {
                        Scope::keyed("c", key)
                    };
                    ScopeChange {
                        scope: Scope {
                            degraded_only: capped,
                            ..scope
                        },
                        halted: sign == "+",
                    }
                })
                .collect(),
        }
    }

    /// Runs transactions through a tracker; returns (transition kinds, states) per tx.
    fn run(model: &ProtocolModel, txs: &[&[&str]]) -> Vec<(Option<TransitionKind>, bool)> {
        let mut t = Tracker::default();
        txs.iter()
            .enumerate()
            .map(|(i, changes)| {
                let u = t.apply(model, vec![ev(i as u64 + 1, changes)]);
                (
                    u.as_ref()
                        .and_then(|u| u.transition.as_ref().map(|t| t.kind)),
                    u.is_some(),
                )
            })
            .collect()
    }

    #[test]
    fn table() {
        use TransitionKind::*;
        let none = model(&[]);
        let ab = model(&[&["a", "b"]]);
        let empty = model(&[&[]]);
        type Case<'a> = (
            &'a str,
            &'a ProtocolModel,
            Vec<&'a [&'a str]>,
            Vec<(Option<TransitionKind>, bool)>,
        );
        let cases: Vec<Case> = vec![
            (
                "pause then unpause",
                &none,
                vec![&["+*"], &["-*"]],
                vec![(Some(Opened), true), (Some(Resolved), true)],
            ),
            (
                "duplicate pause merges",
                &none,
                vec![&["+*"], &["+*"], &["-*"]],
                vec![(Some(Opened), true), (None, true), (Some(Resolved), true)],
            ),
            (
                "resume when nothing halted",
                &none,
                vec![&["-*"], &["-a"]],
                vec![(None, false), (None, false)],
            ),
            (
                "partial scope is degraded",
                &ab,
                vec![&["+a"], &["-a"]],
                vec![(Some(Opened), true), (Some(Resolved), true)],
            ),
            (
                "complete set escalates",
                &ab,
                vec![&["+a"], &["+b"], &["-b"], &["-a"]],
                vec![
                    (Some(Opened), true),
                    (Some(Escalated), true),
                    (Some(Deescalated), true),
                    (Some(Resolved), true),
                ],
            ),
            (
                "whole set in one tx opens halted",
                &ab,
                vec![&["+a", "+b"], &["-a", "-b"]],
                vec![(Some(Opened), true), (Some(Resolved), true)],
            ),
            (
                "flag false for unhalted scope is nothing",
                &ab,
                vec![&["-a", "-b"]],
                vec![(None, false)],
            ),
            (
                "resume of other scope while open adds nothing",
                &ab,
                vec![&["+a"], &["-b"], &["-a"]],
                vec![(Some(Opened), true), (None, false), (Some(Resolved), true)],
            ),
            (
                "a degraded-only whole halt is degraded",
                &none,
                vec![&["+*!"], &["+*"], &["-*"], &["-*!"]],
                vec![
                    (Some(Opened), true),
                    (Some(Escalated), true),
                    (Some(Deescalated), true),
                    (Some(Resolved), true),
                ],
            ),
            (
                "degraded-only scopes never complete a set",
                &ab,
                vec![&["+a!", "+b!"], &["+a"], &["+b"]],
                vec![(Some(Opened), true), (None, true), (Some(Escalated), true)],
            ),
            (
                "one rest on every member completes the set",
                &ab,
                vec![&["+a:Mint", "+b:Borrow"], &["+b:Mint"]],
                vec![(Some(Opened), true), (Some(Escalated), true)],
            ),
            (
                "an empty set (not read yet) never halts",
                &empty,
                vec![&["+a"]],
                vec![(Some(Opened), true)],
            ),
            (
                "a citation joins the open incident and nothing else",
                &ab,
                vec![&["="], &["+a"], &["="], &["-a"], &["="]],
                vec![
                    (None, false),
                    (Some(Opened), true),
                    (None, true),
                    (Some(Resolved), true),
                    (None, false),
                ],
            ),
        ];
        for (name, m, txs, want) in cases {
            assert_eq!(run(m, &txs), want, "{name}");
        }
    }

    #[test]
    fn opening_states_and_severity() {
        let ab = model(&[&["a", "b"]]);
        let mut t = Tracker::default();
        let u = t.apply(&ab, vec![ev(1, &["+a"]), ev(1, &["+b"])]).unwrap();
        let tr = u.transition.unwrap();
        assert_eq!(
            (tr.from, tr.to),
            (ProtocolState::Operational, ProtocolState::Halted)
        );
        assert_eq!(u.evidence.len(), 2);
        assert_eq!(t.open.as_ref().unwrap().state, ProtocolState::Halted);
        let u2 = t.apply(&ab, vec![ev(5, &["-a", "-b"])]).unwrap();
        assert_eq!(u2.key, u.key, "resolution belongs to the same incident");
        assert_eq!(u2.transition.unwrap().at, 500);
        assert!(t.open.is_none());
    }

    #[test]
    fn a_new_episode_is_a_new_incident() {
        let m = model(&[]);
        let mut t = Tracker::default();
        let first = t.apply(&m, vec![ev(1, &["+*"])]).unwrap().key;
        t.apply(&m, vec![ev(2, &["-*"])]);
        let second = t.apply(&m, vec![ev(3, &["+*"])]).unwrap().key;
        assert_ne!(first, second);
    }

    #[test]
    fn a_set_read_from_the_chain_changes_the_state() {
        let mut m = model(&[]);
        m.complete_sets.push(CompleteSet {
            contract: "c".into(),
            members: BTreeSet::new(),
            read_for: Some(3),
        });
        let mut t = Tracker::default();
        t.apply(&m, vec![ev(1, &["+a", "+b"])]);
        assert_eq!(t.state(&m), ProtocolState::Degraded, "nothing read yet");
        let read: BTreeSet<String> = ["a", "b"].map(String::from).into();
        assert!(m.set_members(3, read.clone()));
        assert!(!m.set_members(3, read), "the same set again is no change");
        assert!(!m.set_members(4, BTreeSet::new()), "another rule's set");
        assert_eq!(t.state(&m), ProtocolState::Halted);
    }

    #[test]
    fn a_set_that_changes_under_halted_scopes_moves_the_state() {
        let old = model(&[&["a", "b", "c"]]);
        let new = model(&[&["a", "b"]]);
        let mut t = Tracker::default();
        let opened = t.apply(&old, vec![ev(1, &["+a", "+b"])]).unwrap();
        assert_eq!(t.state(&old), ProtocolState::Degraded);
        // c dropped: every reserve left is paused.
        let u = t.reclassify(&old, &new, ev(2, &["="])).unwrap();
        assert_eq!(u.key, opened.key);
        assert_eq!(u.transition.unwrap().kind, TransitionKind::Escalated);
        // Read again, the same: nothing.
        assert!(t.reclassify(&new, &new, ev(3, &["="])).is_none());
        // c listed again: degraded again.
        let u = t.reclassify(&new, &old, ev(4, &["="])).unwrap();
        assert_eq!(u.transition.unwrap().kind, TransitionKind::Deescalated);
        // Nothing halted: a new set changes nothing.
        let mut idle = Tracker::default();
        assert!(idle.reclassify(&old, &new, ev(5, &["="])).is_none());
    }

    #[test]
    fn tracker_round_trips_through_json() {
        let m = model(&[]);
        let mut t = Tracker::default();
        t.apply(&m, vec![ev(1, &["+*", "+x"])]);
        let json = serde_json::to_string(&t).unwrap();
        let back: Tracker = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
    }
}
