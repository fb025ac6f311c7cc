//! The tamper-evident ledger over the halt history.
//!
//! Every history record (an incident's identity, a transition, a piece of
//! evidence, a retraction by a reorg) appends one ledger record in the same transaction that writes it:
//! `hash = keccak256(prev_hash ‖ canonical)`, where `canonical` is a JSON
//! array of the record's immutable fields read back from its row. Verifying
//! recomputes the chain from the rows as they are now, so an edited, deleted
//! or inserted row, or an edited ledger, is named by its position.

//!
//! Here: the records and their encodings, and the chaining, which need no
//! database. Reading the head, appending and verifying are per backend
//! (`history/ledger.rs`, `history/verify.rs`).

mod report;

use alloy::primitives::{B256, keccak256};
use serde::Serialize;

use crate::store::error::{Result, StoreError};
pub use report::{HistoryReport, Tamper};

/// What kind of history record a ledger entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// An incident's identity: key, protocol, chain, planned.
    Incident,
    Transition,
    Evidence,
    Retraction,
    /// Rows a retraction took back, standing again: their blocks became
    /// canonical again (a provider flapping between two branches).
    Reinstatement,
}

impl RecordKind {
    pub(in crate::store) fn as_str(self) -> &'static str {
        match self {
            RecordKind::Incident => "incident",
            RecordKind::Transition => "transition",
            RecordKind::Evidence => "evidence",
            RecordKind::Retraction => "retraction",
            RecordKind::Reinstatement => "reinstatement",
        }
    }

    pub(in crate::store) fn parse(s: &str) -> Option<Self> {
        match s {
            "incident" => Some(RecordKind::Incident),
            "transition" => Some(RecordKind::Transition),
            "evidence" => Some(RecordKind::Evidence),
            "retraction" => Some(RecordKind::Retraction),
            "reinstatement" => Some(RecordKind::Reinstatement),
            _ => None,
        }
    }
}

/// The hash that links a record with encoding `canonical` after `prev`.
pub(in crate::store) fn chain(prev: B256, canonical: &str) -> B256 {
    let mut bytes = Vec::with_capacity(32 + canonical.len());
    bytes.extend_from_slice(prev.as_slice());
    bytes.extend_from_slice(canonical.as_bytes());
    keccak256(bytes)
}

/// The payload of a retraction record: `[kind, chain id, ancestor,
/// evidence ids, transition ids]`.
pub(in crate::store) fn retraction(
    chain_id: u64,
    ancestor: u64,
    evidence: &[i64],
    transitions: &[i64],
) -> String {
    serde_json::json!(["retraction", chain_id, ancestor, evidence, transitions]).to_string()
}

/// The payload of a reinstatement record: `[kind, chain id, incident,
/// evidence ids, transition ids]`, the ids where a retraction has them.
pub(in crate::store) fn reinstatement(
    chain_id: u64,
    incident: i64,
    evidence: &[i64],
    transitions: &[i64],
) -> String {
    serde_json::json!(["reinstatement", chain_id, incident, evidence, transitions]).to_string()
}

/// The ledger encoding of an incident's identity, the columns its
/// transitions do not determine.
pub(in crate::store) fn incident_canonical(
    key: &str,
    protocol: &str,
    chain: &str,
    chain_id: i64,
    planned: bool,
) -> String {
    serde_json::to_string(&("incident", key, protocol, chain, chain_id, planned))
        .unwrap_or_default()
}

/// The immutable fields of a piece of evidence, exactly as bound and stored.
#[derive(Debug, Clone)]
pub(in crate::store) struct EvidenceValues {
    pub chain_id: i64,
    pub contract: String,
    pub contract_name: String,
    pub tx_hash: String,
    pub block_number: i64,
    pub block_hash: String,
    pub block_timestamp: i64,
    pub log_index: i64,
    pub event: String,
    pub args: String,
    pub changes: String,
    pub log_hash: String,
    pub kind: String,
}

impl EvidenceValues {
    pub fn from_evidence(e: &crate::model::Evidence) -> Self {
        EvidenceValues {
            chain_id: e.chain_id as i64,
            contract: e.contract.to_checksum(None),
            contract_name: e.contract_name.clone(),
            tx_hash: e.tx_hash.to_string(),
            block_number: e.block_number as i64,
            block_hash: e.block_hash.to_string(),
            block_timestamp: e.block_timestamp as i64,
            log_index: e.log_index as i64,
            event: e.event.clone(),
            args: serde_json::to_string(&e.args).unwrap_or_else(|_| "[]".into()),
            changes: serde_json::to_string(&e.changes).unwrap_or_else(|_| "[]".into()),
            log_hash: e.log_hash.to_string(),
            kind: e.kind.as_str().to_string(),
        }
    }

    /// The ledger encoding. Log evidence is encoded as before evidence had kinds.
    /// A JSON array serialized from borrowed fields (no intermediate tree).
    pub fn canonical(&self, key: &str) -> String {
        let fields = (
            "evidence",
            key,
            self.chain_id,
            &self.contract,
            &self.contract_name,
            &self.tx_hash,
            self.block_number,
            &self.block_hash,
            self.block_timestamp,
            self.log_index,
            &self.event,
            &self.args,
            &self.changes,
            &self.log_hash,
        );
        let encoded = if self.kind == "log" {
            serde_json::to_string(&fields)
        } else {
            let (a, b, c, d, e, f, g, h, i, j, k, l, m, n) = fields;
            serde_json::to_string(&(a, b, c, d, e, f, g, h, i, j, k, l, m, n, &self.kind))
        };
        // Strings and integers always serialize.
        encoded.unwrap_or_default()
    }
}

/// The immutable fields of a transition, exactly as bound and stored.
#[derive(Debug, Clone)]
pub(in crate::store) struct TransitionValues {
    pub kind: String,
    pub from: String,
    pub to: String,
    pub at: i64,
    pub block_number: i64,
    pub block_hash: String,
    pub log_index: i64,
}

impl TransitionValues {
    pub fn canonical(&self, key: &str) -> String {
        serde_json::to_string(&(
            "transition",
            key,
            &self.kind,
            &self.from,
            &self.to,
            self.at,
            self.block_number,
            &self.block_hash,
            self.log_index,
        ))
        .unwrap_or_default()
    }
}

/// A ledger record in the order written, not yet chained.
#[derive(Debug, Clone)]
struct Pending {
    kind: RecordKind,
    ref_id: Option<i64>,
    payload: Option<String>,
    canonical: String,
}

/// A ledger record chained in memory, not yet inserted.
#[derive(Debug, Clone)]
pub(in crate::store) struct LedgerRow {
    pub seq: i64,
    pub kind: RecordKind,
    pub ref_id: Option<i64>,
    pub payload: Option<String>,
    pub prev: B256,
    pub hash: B256,
}

/// The ledger's head during a write: records are queued in order with
/// [`Cursor::push`], chained by [`Cursor::chain`] (on a blocking thread, so
/// the keccak work overlaps the history's INSERTs) and written by
/// [`Chained::flush`].
#[derive(Debug, Clone)]
pub(in crate::store) struct Cursor {
    seq: i64,
    hash: B256,
    pending: Vec<Pending>,
}

/// Records hashed below this count are chained in place: a thread hand-off
/// costs more than their keccak.
const CHAIN_IN_PLACE: usize = 64;

impl Cursor {
    /// A cursor on the head `(seq, hash)` as read inside the writing transaction.
    pub fn at((seq, hash): (i64, B256)) -> Self {
        Cursor {
            seq,
            hash,
            pending: Vec::new(),
        }
    }

    /// Queues a record; it takes the next sequence number.
    pub fn push(
        &mut self,
        kind: RecordKind,
        ref_id: Option<i64>,
        payload: Option<String>,
        canonical: String,
    ) {
        self.pending.push(Pending {
            kind,
            ref_id,
            payload,
            canonical,
        });
    }

    /// Starts chaining the queued records onto the head.
    pub fn chain(self) -> Chained {
        let Cursor { seq, hash, pending } = self;
        if pending.len() < CHAIN_IN_PLACE {
            Chained(Chaining::Ready(link(seq, hash, pending)))
        } else {
            Chained(Chaining::Running(tokio::task::spawn_blocking(move || {
                link(seq, hash, pending)
            })))
        }
    }
}

fn link(mut seq: i64, mut hash: B256, pending: Vec<Pending>) -> Vec<LedgerRow> {
    pending
        .into_iter()
        .map(|p| {
            let prev = hash;
            seq += 1;
            hash = chain(prev, &p.canonical);
            LedgerRow {
                seq,
                kind: p.kind,
                ref_id: p.ref_id,
                payload: p.payload,
                prev,
                hash,
            }
        })
        .collect()
}

/// Ledger records being chained, or chained.
pub(in crate::store) struct Chained(Chaining);

enum Chaining {
    Ready(Vec<LedgerRow>),
    Running(tokio::task::JoinHandle<Vec<LedgerRow>>),
}

impl Chained {
    /// The chained records, once chained.
    pub async fn rows(self) -> Result<Vec<LedgerRow>> {
        match self.0 {
            Chaining::Ready(rows) => Ok(rows),
            Chaining::Running(task) => task.await.map_err(StoreError::LedgerTask),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(kind: &str) -> EvidenceValues {
        EvidenceValues {
            chain_id: 1,
            contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
            contract_name: "vault \"main\" ü\u{1}".into(),
            tx_hash: B256::repeat_byte(1).to_string(),
            block_number: 7,
            block_hash: B256::repeat_byte(2).to_string(),
            block_timestamp: 1_700_000_000,
            log_index: -1,
            event: "Paused\n<script>".into(),
            args: r#"[["account","0x01"]]"#.into(),
            changes: "[]".into(),
            log_hash: B256::repeat_byte(3).to_string(),
            kind: kind.into(),
        }
    }

    /// Ledgers written before the encoding was made allocation-light must
    /// still verify: the bytes are those of the `json!` tree it replaced.
    #[test]
    fn canonical_encoding_is_unchanged() {
        for kind in ["log", "failed_call"] {
            let v = values(kind);
            let mut old = serde_json::json!([
                "evidence",
                "key\\1",
                v.chain_id,
                v.contract,
                v.contract_name,
                v.tx_hash,
                v.block_number,
                v.block_hash,
                v.block_timestamp,
                v.log_index,
                v.event,
                v.args,
                v.changes,
                v.log_hash
            ]);
            if kind != "log" {
                old.as_array_mut().unwrap().push(kind.into());
            }
            assert_eq!(v.canonical("key\\1"), old.to_string());
        }
        let t = TransitionValues {
            kind: "opened".into(),
            from: "operational".into(),
            to: "halted".into(),
            at: 12,
            block_number: 7,
            block_hash: B256::repeat_byte(2).to_string(),
            log_index: 3,
        };
        let old = serde_json::json!([
            "transition",
            "k",
            t.kind,
            t.from,
            t.to,
            t.at,
            t.block_number,
            t.block_hash,
            t.log_index
        ]);
        assert_eq!(t.canonical("k"), old.to_string());
    }
}
