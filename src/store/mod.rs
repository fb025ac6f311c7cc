//! The halt history and the pipeline's own state (checkpoints, reorg window,
//! classifier snapshots) in SQLite. Everything one block range produced is
//! written in one transaction together with the new checkpoint, so a crash
//! leaves either all of it or none of it.
//!
//! Here: the records read back and the errors. Beside it, by what they do:
//! `open` (connections, migrations), `commit` (a range, its trackers and
//! checkpoint) with `write` and `bulk` (the history rows) and `header` (an
//! incident's state from its transitions), `read` (incidents back),
//! `revert` (a reorg undone), `outbox` and `notices` (mails), `gaps` and
//! `coverage` (what was and was not observed), `ledger` (the hash chain and
//! its verification), `anchors`, and `retry` (riding out a busy or full
//! store).

use std::path::PathBuf;
use std::str::FromStr;

use alloy::primitives::{Address, B256};
use serde::Serialize;
use sqlx::SqlitePool;

pub use ledger::{HistoryReport, RecordKind, Tamper};

mod anchors;
mod bulk;
mod commit;
mod coverage;
mod gaps;
mod header;
pub mod ledger;
mod notices;
mod open;
mod outbox;
mod read;
pub mod retry;
mod revert;
mod run_lock;
mod write;

use crate::model::{
    BlockRef, EventArg, EvidenceKind, IncidentUpdate, ProtocolState, ScopeChange, TransitionKind,
};
pub use anchors::AnchorRecord;
pub use coverage::{Observed, ObservedSpan};
use gaps::insert_gap;
pub use notices::Notice;
use outbox::enqueue_row;
use revert::{rederive, reinstate_mail};
pub use run_lock::RunLock;
pub use write::Rows;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot migrate the store {path} to version {version}")]
    Migrate {
        path: PathBuf,
        version: usize,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "the store {path} was written by a newer haltwatch (schema {found}, this build knows {known})"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    #[error("there is no halt history at {path} yet: `haltwatch run` creates it")]
    Missing { path: PathBuf },
    #[error(
        "the history {} is in use by another `haltwatch run`{}: a SQLite history takes one `run` (stop the other, or give this one its own store.url); the read-only commands work beside it",
        path.display(),
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse { path: PathBuf, pid: Option<u32> },
    #[error("cannot take the run lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the history {path} is at schema {found}, this build needs {known}: `haltwatch run` (or `backfill`) brings it up to date"
    )]
    NotMigrated {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    #[error("store query failed: {what}")]
    Query {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("store query failed: {what}: {message} (SQLite code {code})")]
    Sqlite {
        what: &'static str,
        code: i32,
        message: String,
    },
    #[error("store holds a value it cannot read: {what}: {value}")]
    Corrupt { what: &'static str, value: String },
    #[error("incident {key} is not in the store (an update for it arrived before it was opened)")]
    UnknownIncident { key: String },
    #[error("chaining the ledger records of a commit failed")]
    LedgerTask(#[source] tokio::task::JoinError),
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

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

/// Wall clock in unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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

/// The SQLite store. Cheap to clone; every clone shares one pool.
#[derive(Clone, Debug)]
pub struct Store {
    /// The writer's connections (read-only ones in a read-only store).
    pool: SqlitePool,
    /// Read-only connections for the API, pages and commands: readers never
    /// take a connection the writer needs.
    reads: SqlitePool,
}

impl Store {
    /// The history's tamper-evidence: walks the ledger against the rows.
    pub async fn verify_history(&self) -> Result<HistoryReport> {
        let mut conn = self.reads.acquire().await.map_err(q("connect"))?;
        ledger::verify(&mut conn).await
    }

    /// Where ledger record `hash` stands now (its number), if it is still
    /// there; with `record`, only at that number. A head pinned earlier (from
    /// a mail, a report) that is gone means the history was truncated or
    /// rewritten since.
    pub async fn ledger_record(&self, record: Option<i64>, hash: B256) -> Result<Option<i64>> {
        sqlx::query_scalar(
            "SELECT seq FROM ledger WHERE hash = ?1 AND (?2 IS NULL OR seq = ?2) LIMIT 1",
        )
        .bind(hash.to_string())
        .bind(record)
        .fetch_optional(&self.reads)
        .await
        .map_err(q("find ledger record"))
    }

    /// The ledger head: (records, hash). Pin it to detect a rewritten history.
    pub async fn ledger_head(&self) -> Result<(i64, B256)> {
        let mut conn = self.reads.acquire().await.map_err(q("connect"))?;
        ledger::head(&mut conn).await
    }
}

impl Store {}

/// Unix seconds as SQLite stores them; a time past `i64::MAX` (an open end
/// such as `u64::MAX`) is the end of time, not a negative number.
fn seconds(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn parse_b256(s: &str) -> Result<B256> {
    B256::from_str(s).map_err(|_| StoreError::Corrupt {
        what: "hash",
        value: s.into(),
    })
}

fn parse_state(s: &str) -> Result<ProtocolState> {
    ProtocolState::parse(s).ok_or_else(|| StoreError::Corrupt {
        what: "protocol state",
        value: s.into(),
    })
}

fn parse_kind(s: &str) -> Result<TransitionKind> {
    TransitionKind::parse(s).ok_or_else(|| StoreError::Corrupt {
        what: "transition kind",
        value: s.into(),
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|_| StoreError::Corrupt {
        what,
        value: s.into(),
    })
}

/// Formats unix seconds as RFC 3339 UTC, e.g. `2026-11-20T14:03:00Z`.
pub fn format_time(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

pub(crate) mod rfc3339 {
    pub fn serialize<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(*v))
    }
}

mod rfc3339_opt {
    pub fn serialize<S: serde::Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&super::format_time(*v)),
            None => s.serialize_none(),
        }
    }
}
