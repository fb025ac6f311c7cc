//! An update's rows, built ahead of the commit.

use super::ledger::{EvidenceValues, TransitionValues};
use crate::model::IncidentUpdate;

/// An update's rows as the store writes them — hashes and addresses as
/// text, arguments as JSON — with the ledger's canonical encoding of each.
/// They depend on the update alone, so a caller can build them ahead of
/// the commit, off the store's path ([`Rows::of`]).
pub struct Rows {
    pub(in crate::store) evidence: Vec<(EvidenceValues, String)>,
    pub(in crate::store) transition: Option<(TransitionValues, String)>,
}

impl Rows {
    pub fn of(update: &IncidentUpdate) -> Self {
        let evidence = update
            .evidence
            .iter()
            .map(|e| {
                let values = EvidenceValues::from_evidence(e);
                let canonical = values.canonical(&update.key);
                (values, canonical)
            })
            .collect();
        // A transition is identified by the block hash and log index of
        // its first evidence.
        let transition = update.transition.as_ref().map(|t| {
            let (block_hash, log_index) = update
                .evidence
                .first()
                .map_or((Default::default(), 0), |e| (e.block_hash, e.log_index));
            let values = TransitionValues {
                kind: t.kind.as_str().into(),
                from: t.from.as_str().into(),
                to: t.to.as_str().into(),
                at: t.at as i64,
                block_number: t.block_number as i64,
                block_hash: alloy::primitives::B256::to_string(&block_hash),
                log_index: log_index as i64,
            };
            let canonical = values.canonical(&update.key);
            (values, canonical)
        });
        Rows {
            evidence,
            transition,
        }
    }
}
