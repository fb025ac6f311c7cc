//! The records the store takes and gives back: a committed range's batch,
//! incidents with their transitions and evidence, gaps, mails, notices,
//! anchors and observed spans. The same for every backend.

use alloy::primitives::{Address, B256};
use serde::Serialize;

use super::codec::{rfc3339, rfc3339_opt};
use super::rows::Rows;
use crate::model::{
    BlockRef, EventArg, EvidenceKind, IncidentUpdate, ProtocolState, ScopeChange, TransitionKind,
};

/// Lifecycle of a stored incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Open,
    Resolved,
    /// Every piece of evidence it rested on was removed by a reorg.
    Withdrawn,
}

impl IncidentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Resolved => "resolved",
            IncidentState::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(IncidentState::Open),
            "resolved" => Some(IncidentState::Resolved),
            "withdrawn" => Some(IncidentState::Withdrawn),
            _ => None,
        }
    }
}

/// One update ready to be written, with the names the store records.
pub struct StoredUpdate<'a> {
    pub protocol: &'a str,
    pub chain: &'a str,
    pub update: &'a IncidentUpdate,
    /// Queue a mail for this update's transition (email configured, responders set).
    pub notify: bool,
    /// The incident opened inside a maintenance window: record it as planned, page nobody.
    pub planned: bool,
    /// Its rows, built from `update` ([`Rows::of`]).
    pub rows: Rows,
}

/// A stretch of time in which the monitor could not read a chain.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GapRecord {
    pub chain: String,
    pub chain_id: u64,
    #[serde(with = "rfc3339")]
    pub started_at: u64,
    #[serde(with = "rfc3339_opt")]
    pub ended_at: Option<u64>,
    pub reason: String,
}

/// A queued mail, as the sender sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub incident_id: i64,
    pub protocol: String,
    pub kind: String,
    /// `<incident key>.<n>`; the sender adds the domain.
    pub message_id: String,
    pub created_ms: i64,
    pub attempts: i64,
}

/// A queued mail's delivery record.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxRecord {
    pub id: i64,
    pub incident_id: i64,
    pub kind: String,
    pub message_id: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent_as: Option<String>,
}

/// Everything one committed block range produced, written atomically.
pub struct Batch<'a> {
    pub chain_id: u64,
    /// Blocks to remember for reorg detection; the highest is the new checkpoint.
    pub blocks: &'a [BlockRef],
    pub updates: Vec<StoredUpdate<'a>>,
    /// (protocol, block, tracker JSON after that block) for blocks in which
    /// a protocol's tracker changed. The store keeps, per protocol, those
    /// inside the window and the newest below it (older ones are pruned).
    pub trackers: Vec<(&'a str, u64, String)>,
    /// Blocks below `checkpoint - window` are forgotten.
    pub window_blocks: u64,
    /// The blocks this batch covers, for the record of what was observed
    /// (none when no block time of the range is known).
    pub observed: Option<Observed<'a>>,
}

/// Filters for [`Store::list`].
#[derive(Debug, Default, Clone)]
pub struct IncidentFilter {
    pub protocol: Option<String>,
    pub chain: Option<String>,
    pub open_only: bool,
    pub include_withdrawn: bool,
    /// Only incidents that overlap `since..until` (unix seconds).
    pub since: Option<u64>,
    pub until: Option<u64>,
    /// Only incidents in this state (overrides `open_only` / `include_withdrawn`).
    pub state: Option<IncidentState>,
}

/// An incident as the history tells it: what `incidents list/show` print.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentRecord {
    pub id: i64,
    pub key: String,
    pub protocol: String,
    pub chain: String,
    pub chain_id: u64,
    pub state: IncidentState,
    pub severity: ProtocolState,
    #[serde(with = "rfc3339")]
    pub started_at: u64,
    #[serde(with = "rfc3339_opt")]
    pub ended_at: Option<u64>,
    pub duration_seconds: Option<u64>,
    pub start_block: u64,
    pub end_block: Option<u64>,
    /// Opened inside a maintenance window: recorded, not paged.
    pub planned: bool,
    /// Every scope halted during the incident, e.g. `pool` or `configurator:0x…`.
    pub scopes: Vec<String>,
    pub transitions: Vec<TransitionRecord>,
    pub evidence: Vec<EvidenceRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransitionRecord {
    pub kind: TransitionKind,
    pub from: ProtocolState,
    pub to: ProtocolState,
    #[serde(with = "rfc3339")]
    pub at: u64,
    pub block_number: u64,
    pub block_hash: B256,
    pub retracted: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvidenceRecord {
    pub kind: EvidenceKind,
    pub chain_id: u64,
    pub contract: Address,
    pub contract_name: String,
    pub tx_hash: B256,
    pub block_number: u64,
    pub block_hash: B256,
    #[serde(with = "rfc3339")]
    pub block_time: u64,
    pub log_index: u64,
    pub event: String,
    pub args: Vec<EventArg>,
    pub changes: Vec<ScopeChange>,
    /// keccak256(address ‖ topics ‖ data) of the log as it was read.
    pub log_hash: B256,
    pub retracted: bool,
}

/// One anchor transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchorRecord {
    pub record: i64,
    pub head: B256,
    pub chain: String,
    pub chain_id: u64,
    pub tx_hash: B256,
    /// `None` while its receipt has not been seen.
    pub block_number: Option<u64>,
}

/// A queued chain notice, as the sender sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: i64,
    pub chain: String,
    pub chain_id: u64,
    pub kind: String,
    pub body: String,
    pub message_id: String,
    pub attempts: i64,
}

/// Blocks `from_block..=to_block` of a chain, committed; the earliest time
/// read among them and the time of the last.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub chain: &'a str,
    pub from_block: u64,
    pub to_block: u64,
    pub first_time: u64,
    pub last_time: u64,
}

/// A span of a chain the monitor observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedSpan {
    pub chain: String,
    pub chain_id: u64,
    pub first_block: u64,
    #[serde(with = "rfc3339")]
    pub first_time: u64,
    pub last_block: u64,
    #[serde(with = "rfc3339")]
    pub last_time: u64,
}
