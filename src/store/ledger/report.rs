//! What verifying the ledger finds: the problems, each named by its
//! position, and the report around them.

use alloy::primitives::B256;
use serde::Serialize;

use super::RecordKind;

/// One way the history differs from what the ledger recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Tamper {
    /// The row behind ledger record `seq` no longer has the content it was written with.
    Edited { seq: i64, kind: RecordKind, id: i64 },
    /// The row behind ledger record `seq` is gone.
    Deleted { seq: i64, kind: RecordKind, id: i64 },
    /// A row that no ledger record covers.
    Inserted { kind: RecordKind, id: i64 },
    /// Ledger records are missing between `after` and `found`.
    LedgerGap { after: i64, found: i64 },
    /// Ledger record `seq` does not link to its predecessor, or its hash was changed.
    LedgerEdited { seq: i64 },
    /// A row's retracted flag disagrees with the retraction records.
    RetractedFlag { kind: RecordKind, id: i64 },
    /// A column of an incident's row differs from what the ledger says: its
    /// identity record, or what its covered transitions give.
    Column {
        incident: i64,
        column: &'static str,
        stored: String,
        recomputed: String,
    },
}

impl std::fmt::Display for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tamper::Edited { seq, kind, id } => {
                write!(f, "record {seq}: {} {id} was edited", kind.as_str())
            }
            Tamper::Deleted { seq, kind, id } => {
                write!(f, "record {seq}: {} {id} was deleted", kind.as_str())
            }
            Tamper::Inserted { kind, id } => write!(
                f,
                "{} {id} was inserted without a ledger record",
                kind.as_str()
            ),
            Tamper::LedgerGap { after, found } => write!(
                f,
                "ledger records {}..{} were deleted",
                after + 1,
                found - 1
            ),
            Tamper::LedgerEdited { seq } => write!(f, "ledger record {seq} was edited"),
            Tamper::RetractedFlag { kind, id } => {
                write!(f, "{} {id}: its retracted flag was changed", kind.as_str())
            }
            Tamper::Column {
                incident,
                column,
                stored,
                recomputed,
            } => write!(
                f,
                "incident {incident}: {column} is {stored} in the incidents table, {recomputed} by the ledger"
            ),
        }
    }
}

/// The outcome of walking the ledger.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryReport {
    pub records: i64,
    /// The last record's hash: pin it to detect a rewrite of the whole ledger.
    pub head: B256,
    /// In ledger order; the first is the earliest point of tampering.
    /// Incident rows checked against their transitions come last.
    pub problems: Vec<Tamper>,
    /// Incidents recorded before their identity (protocol, chain, planned)
    /// went into the ledger: those columns of theirs are not covered.
    pub identities_not_covered: usize,
}
