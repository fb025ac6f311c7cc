//! The halt history and the pipeline's own state (checkpoints, reorg window,
//! classifier snapshots) in SQLite. Everything one block range produced is
//! written in one transaction together with the new checkpoint, so a crash
//! leaves either all of it or none of it.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::config::StoreConfig;
pub use ledger::{HistoryReport, RecordKind, Tamper};

mod anchors;
mod bulk;
mod coverage;
mod header;
pub mod ledger;
mod notices;
mod read;
pub mod retry;
mod write;

use crate::model::{
    BlockRef, EventArg, EvidenceKind, IncidentUpdate, ProtocolState, ScopeChange, TransitionKind,
};
pub use anchors::AnchorRecord;
pub use coverage::{Observed, ObservedSpan};
pub use notices::Notice;
pub use write::Rows;

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_history.sql"),
    include_str!("../../migrations/sqlite/0002_outbox.sql"),
    include_str!("../../migrations/sqlite/0003_ledger.sql"),
    include_str!("../../migrations/sqlite/0004_detectors.sql"),
    include_str!("../../migrations/sqlite/0005_lean_indexes.sql"),
    include_str!("../../migrations/sqlite/0006_notices.sql"),
    include_str!("../../migrations/sqlite/0007_observed.sql"),
    include_str!("../../migrations/sqlite/0008_anchors.sql"),
];

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

/// Read-only connections to the history at `path`, waiting on locks like
/// the writer's.
async fn read_pool(path: &std::path::Path) -> std::result::Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT);
    SqlitePoolOptions::new()
        .max_connections(4)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(options)
        .await
}

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

/// WAL pages after which a commit checkpoints by itself (32 MiB).
const AUTOCHECKPOINT_PAGES: u32 = 8_192;

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
    /// Opens (creating if missing) and migrates the store.
    pub async fn open(config: &StoreConfig) -> Result<Self> {
        let path = config.sqlite_path.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            return Err(StoreError::Open {
                path: path.clone(),
                source: sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("folder {} does not exist", dir.display()),
                )),
            });
        }
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // A checkpoint copies the WAL into the database and syncs it:
            // tens of milliseconds on a commit that happens to cross the
            // threshold. The long-running pipeline checkpoints in the
            // background (`Store::checkpoint`); this larger threshold is the
            // safety net for everything else.
            .pragma("wal_autocheckpoint", AUTOCHECKPOINT_PAGES.to_string());
        // Connections live as long as the store: re-opening one every 30
        // minutes (sqlx's default) rebuilds its page cache and statement
        // cache, and a long soak showed the RSS step up by ~2 MB each time.
        // Switching a fresh file to WAL takes an exclusive lock that
        // SQLite's busy handler does not wait for: another process opening
        // or reading the same file at that moment makes it fail at once
        // (`run` starting while `incidents list` reads). It is waited for
        // here, as long as any other lock would be.
        let waited = std::time::Instant::now();
        let pool = loop {
            let connected = SqlitePoolOptions::new()
                .max_connections(4)
                .max_lifetime(None)
                .idle_timeout(None)
                // A transaction whose COMMIT failed on a full disk or an I/O
                // error was rolled back by SQLite itself; sqlx's ROLLBACK on
                // drop then fails and the connection stays "in a
                // transaction" for good, refusing every BEGIN. It is closed
                // rather than handed out again.
                .before_acquire(|conn, _| {
                    Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
                })
                .connect_with(options.clone())
                .await;
            match connected {
                Ok(pool) => break pool,
                Err(e) if is_busy(&e) && waited.elapsed() < BUSY_TIMEOUT => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(source) => {
                    return Err(StoreError::Open {
                        path: path.clone(),
                        source,
                    });
                }
            }
        };
        let reads = pool.clone();
        let mut store = Store { pool, reads };
        store.migrate(&path).await?;
        store.reads = read_pool(&path).await.map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        Ok(store)
    }

    /// Opens the history only to read it (the CLI's `incidents`, `report`
    /// and `verify`): it never creates, migrates or writes the file, so it
    /// never takes a lock `run` waits for. A history that `run` has not
    /// created or brought up to date yet is a clear error.
    pub async fn open_read_only(config: &StoreConfig) -> Result<Self> {
        let path = config.sqlite_path.clone();
        if !path.is_file() {
            return Err(StoreError::Missing { path });
        }
        let reads = read_pool(&path).await.map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let found: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&reads)
            .await
            .map_err(q("read schema version"))?;
        if found as usize > MIGRATIONS.len() {
            return Err(StoreError::TooNew {
                path,
                found,
                known: MIGRATIONS.len(),
            });
        }
        if (found as usize) < MIGRATIONS.len() {
            return Err(StoreError::NotMigrated {
                path,
                found,
                known: MIGRATIONS.len(),
            });
        }
        Ok(Store {
            pool: reads.clone(),
            reads,
        })
    }

    /// Brings the schema up to date. A store already up to date is only
    /// read (a reader never takes the write lock for it); otherwise the
    /// migration takes the write lock first (`BEGIN IMMEDIATE`, which waits
    /// for other writers), so it never fails half-way on a lock upgrade.
    async fn migrate(&self, path: &std::path::Path) -> Result<()> {
        let current: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&self.pool)
            .await
            .map_err(q("read schema version"))?;
        if current as usize == MIGRATIONS.len() {
            return Ok(());
        }
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(q("begin migration"))?;
        // Another process may have migrated while this one waited.
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut *tx)
            .await
            .map_err(q("read schema version"))?;
        if version as usize > MIGRATIONS.len() {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let fail = |source| StoreError::Migrate {
                path: path.to_path_buf(),
                version: i + 1,
                source,
            };
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            // The version is our own integer, not input.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "PRAGMA user_version = {}",
                i + 1
            )))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        }
        tx.commit().await.map_err(q("commit migration"))
    }

    /// Copies what the WAL holds into the database without blocking
    /// writers (a passive checkpoint), off the commit path.
    pub async fn checkpoint(&self) -> Result<()> {
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&self.pool)
            .await
            .map_err(q("checkpoint"))
            .map(drop)
    }

    /// Answers a trivial query: for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(q("ping"))
            .map(drop)
    }

    /// The remembered blocks of a chain, oldest first; the last is the checkpoint.
    pub async fn window(&self, chain_id: u64) -> Result<Vec<BlockRef>> {
        let rows = sqlx::query(
            "SELECT number, hash, parent_hash, timestamp FROM chain_blocks
             WHERE chain_id = ? ORDER BY number",
        )
        .bind(chain_id as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(q("read block window"))?;
        rows.iter()
            .map(|r| {
                Ok(BlockRef {
                    number: r.get::<i64, _>(0) as u64,
                    hash: parse_b256(&r.get::<String, _>(1))?,
                    parent_hash: parse_b256(&r.get::<String, _>(2))?,
                    timestamp: r.get::<i64, _>(3) as u64,
                })
            })
            .collect()
    }

    /// The newest tracker snapshot of a protocol (JSON), if any.
    pub async fn tracker(&self, protocol: &str) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT tracker FROM protocol_state WHERE protocol = ?
             ORDER BY block_number DESC LIMIT 1",
        )
        .bind(protocol)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read tracker"))
    }

    /// Writes one committed range: incidents, evidence, trackers and checkpoint.
    pub async fn commit(&self, mut batch: Batch<'_>) -> Result<()> {
        // A backfill writes history only: no blocks, no window, no trackers.
        let tip = batch.blocks.iter().map(|b| b.number).max();
        // IMMEDIATE: the write lock is taken at once, so ids allocated from
        // MAX(id) stay free and several chains' processors never deadlock.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(q("begin commit"))?;
        let started = std::time::Instant::now();
        let updates = batch.updates.len();
        if updates > 0 {
            write::write_updates(&mut tx, std::mem::take(&mut batch.updates)).await?;
        }
        let history = started.elapsed();
        let trackers = std::mem::take(&mut batch.trackers);
        write_trackers(&mut tx, trackers, batch.window_blocks, tip).await?;
        if let Some(observed) = &batch.observed {
            coverage::record(&mut tx, batch.chain_id, observed).await?;
        }
        if let Some(tip) = tip {
            write_state(&mut tx, &batch, tip).await?;
        }
        let state = started.elapsed();
        tx.commit().await.map_err(q("commit"))?;
        tracing::debug!(
            updates,
            history_us = history.as_micros() as u64,
            state_us = (state - history).as_micros() as u64,
            commit_us = (started.elapsed() - state).as_micros() as u64,
            "store batch committed"
        );
        Ok(())
    }

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

/// The pipeline's own state for a committed range: trackers, window, checkpoint.
/// Classifier snapshots. Only those a reorg could return to are written:
/// every snapshot inside the window, and per protocol the newest one below
/// it; older ones are pruned when the checkpoint moves.
async fn write_trackers(
    tx: &mut Transaction<'static, Sqlite>,
    trackers: Vec<(&str, u64, String)>,
    window_blocks: u64,
    tip: Option<u64>,
) -> Result<()> {
    if trackers.is_empty() {
        return Ok(());
    }
    let protocols: std::collections::BTreeSet<&str> = trackers.iter().map(|t| t.0).collect();
    write::insert_rows(
        tx,
        "INSERT INTO protocol_state (protocol, block_number, tracker) ",
        " ON CONFLICT (protocol, block_number) DO UPDATE SET tracker = excluded.tracker",
        trackers,
        "write trackers",
        |mut b, (protocol, block, tracker)| {
            b.push_bind(protocol)
                .push_bind(block as i64)
                .push_bind(tracker);
        },
    )
    .await?;
    let Some(cutoff) = tip.map(|t| t.saturating_sub(window_blocks)) else {
        return Ok(());
    };
    for protocol in protocols {
        // Keep the snapshots inside the window, and the newest one below it.
        sqlx::query(
            "DELETE FROM protocol_state WHERE protocol = ?1 AND block_number <
               (SELECT MAX(block_number) FROM protocol_state
                WHERE protocol = ?1 AND block_number <= ?2)",
        )
        .bind(protocol)
        .bind(cutoff as i64)
        .execute(&mut **tx)
        .await
        .map_err(q("prune trackers"))?;
    }
    Ok(())
}

/// The window of recent blocks and so the checkpoint.
async fn write_state(
    tx: &mut Transaction<'static, Sqlite>,
    batch: &Batch<'_>,
    tip: u64,
) -> Result<()> {
    {
        write::insert_rows(
            tx,
            "INSERT INTO chain_blocks (chain_id, number, hash, parent_hash, timestamp) ",
            " ON CONFLICT (chain_id, number) DO UPDATE SET hash = excluded.hash,
               parent_hash = excluded.parent_hash, timestamp = excluded.timestamp",
            batch.blocks,
            "write blocks",
            |mut row, b| {
                row.push_bind(batch.chain_id as i64)
                    .push_bind(b.number as i64)
                    .push_bind(b.hash.to_string())
                    .push_bind(b.parent_hash.to_string())
                    .push_bind(b.timestamp as i64);
            },
        )
        .await?;
        sqlx::query("DELETE FROM chain_blocks WHERE chain_id = ? AND number < ?")
            .bind(batch.chain_id as i64)
            .bind(tip.saturating_sub(batch.window_blocks) as i64)
            .execute(&mut **tx)
            .await
            .map_err(q("prune blocks"))?;
    }
    Ok(())
}

/// SQLite's "database is locked" (`SQLITE_BUSY`).
fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("5"))
}

impl Store {
    /// Undoes everything above block `ancestor` of a chain: its evidence and
    /// transitions are marked retracted, the incidents they touched are
    /// re-derived (withdrawn when nothing remains), and the window and
    /// tracker snapshots above it are dropped.
    pub async fn revert(&self, chain_id: u64, protocols: &[&str], ancestor: u64) -> Result<()> {
        // The write lock first: a deferred transaction would fail at once
        // where its first write meets another writer.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(q("begin revert"))?;
        let touched: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT incident_id FROM evidence
             WHERE chain_id = ? AND block_number > ? AND retracted = 0",
        )
        .bind(chain_id as i64)
        .bind(ancestor as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(q("find reverted incidents"))?;
        let evidence_ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM evidence WHERE chain_id = ? AND block_number > ? AND retracted = 0 ORDER BY id",
        )
        .bind(chain_id as i64)
        .bind(ancestor as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(q("find reverted evidence"))?;
        let transition_ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM transitions WHERE block_number > ? AND retracted = 0
             AND incident_id IN (SELECT id FROM incidents WHERE chain_id = ?) ORDER BY id",
        )
        .bind(ancestor as i64)
        .bind(chain_id as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(q("find reverted transitions"))?;
        if !evidence_ids.is_empty() || !transition_ids.is_empty() {
            ledger::append_retraction(&mut tx, chain_id, ancestor, &evidence_ids, &transition_ids)
                .await?;
        }
        sqlx::query(
            "UPDATE evidence SET retracted = 1 WHERE chain_id = ? AND block_number > ? AND retracted = 0",
        )
        .bind(chain_id as i64)
        .bind(ancestor as i64)
        .execute(&mut *tx)
        .await
        .map_err(q("retract evidence"))?;
        sqlx::query(
            "UPDATE transitions SET retracted = 1 WHERE block_number > ? AND retracted = 0
             AND incident_id IN (SELECT id FROM incidents WHERE chain_id = ?)",
        )
        .bind(ancestor as i64)
        .bind(chain_id as i64)
        .execute(&mut *tx)
        .await
        .map_err(q("retract transitions"))?;
        for id in touched {
            rederive(&mut tx, id).await?;
            withdraw_mail(&mut tx, id).await?;
        }
        sqlx::query("DELETE FROM chain_blocks WHERE chain_id = ? AND number > ?")
            .bind(chain_id as i64)
            .bind(ancestor as i64)
            .execute(&mut *tx)
            .await
            .map_err(q("drop reverted blocks"))?;
        for p in protocols {
            sqlx::query("DELETE FROM protocol_state WHERE protocol = ? AND block_number > ?")
                .bind(p)
                .bind(ancestor as i64)
                .execute(&mut *tx)
                .await
                .map_err(q("drop reverted trackers"))?;
        }
        tx.commit().await.map_err(q("commit revert"))
    }

    /// Queued mails due at `now`, oldest first.
    pub async fn outbox_due(&self, now: i64) -> Result<Vec<OutboxItem>> {
        let rows = sqlx::query(
            "SELECT o.id, o.incident_id, i.protocol, o.kind, o.message_id, o.created_ms, o.attempts
             FROM outbox o JOIN incidents i ON i.id = o.incident_id
             WHERE o.status = 'pending' AND o.next_attempt_ms <= ? ORDER BY o.id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(q("read outbox"))?;
        Ok(rows
            .iter()
            .map(|r| OutboxItem {
                id: r.get(0),
                incident_id: r.get(1),
                protocol: r.get(2),
                kind: r.get(3),
                message_id: r.get(4),
                created_ms: r.get(5),
                attempts: r.get(6),
            })
            .collect())
    }

    /// Records the start of a monitoring gap on a chain.
    pub async fn gap_opened(
        &self,
        chain: &str,
        chain_id: u64,
        since: u64,
        reason: &str,
    ) -> Result<()> {
        insert_gap(&self.pool, chain, chain_id, since, reason).await
    }

    /// Closes the open monitoring gaps of a chain.
    pub async fn gap_closed(&self, chain_id: u64, at: u64) -> Result<()> {
        sqlx::query(
            "UPDATE monitoring_gaps SET ended_at = ? WHERE chain_id = ? AND ended_at IS NULL",
        )
        .bind(at as i64)
        .bind(chain_id as i64)
        .execute(&self.pool)
        .await
        .map_err(q("close gap"))?;
        Ok(())
    }

    /// Monitoring gaps that overlap `since..until`, oldest first.
    pub async fn gaps(&self, since: u64, until: u64) -> Result<Vec<GapRecord>> {
        let rows = sqlx::query(
            "SELECT chain, chain_id, started_at, ended_at, reason FROM monitoring_gaps
             WHERE started_at < ? AND (ended_at IS NULL OR ended_at > ?) ORDER BY started_at, id",
        )
        .bind(seconds(until))
        .bind(seconds(since))
        .fetch_all(&self.reads)
        .await
        .map_err(q("read gaps"))?;
        Ok(rows
            .iter()
            .map(|r| GapRecord {
                chain: r.get(0),
                chain_id: r.get::<i64, _>(1) as u64,
                started_at: r.get::<i64, _>(2) as u64,
                ended_at: r.get::<Option<i64>, _>(3).map(|t| t as u64),
                reason: r.get(4),
            })
            .collect())
    }

    /// Mails waiting to be sent.
    pub async fn outbox_pending(&self) -> Result<usize> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await
            .map_err(q("count outbox"))?;
        Ok(n as usize)
    }

    /// Mails carried by one message: marks them sent.
    pub async fn outbox_sent(&self, ids: &[i64], sent_as: &str) -> Result<()> {
        let now = now_ms();
        for id in ids {
            sqlx::query(
                "UPDATE outbox SET status = 'sent', sent_ms = ?, sent_as = ?, attempts = attempts + 1
                 WHERE id = ?",
            )
            .bind(now)
            .bind(sent_as)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("mark mail sent"))?;
        }
        Ok(())
    }

    /// A temporary failure: try again at `next_ms`.
    pub async fn outbox_retry(&self, ids: &[i64], next_ms: i64, error: &str) -> Result<()> {
        for id in ids {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?, last_error = ? WHERE id = ?",
            )
            .bind(next_ms)
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("reschedule mail"))?;
        }
        Ok(())
    }

    /// A permanent failure: never retried.
    pub async fn outbox_failed(&self, ids: &[i64], error: &str) -> Result<()> {
        for id in ids {
            sqlx::query(
                "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ? WHERE id = ?",
            )
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("mark mail failed"))?;
        }
        Ok(())
    }

    /// Mails nobody is to receive: never sent, `why` kept.
    pub async fn outbox_cancelled(&self, ids: &[i64], why: &str) -> Result<()> {
        for id in ids {
            sqlx::query("UPDATE outbox SET status = 'cancelled', last_error = ? WHERE id = ?")
                .bind(why)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(q("cancel mail"))?;
        }
        Ok(())
    }

    /// Distinct mails sent for `protocol` since `since_ms` (a digest counts once).
    pub async fn mails_sent_since(&self, protocol: &str, since_ms: i64) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(DISTINCT o.sent_as) FROM outbox o JOIN incidents i ON i.id = o.incident_id
             WHERE i.protocol = ? AND o.status = 'sent' AND o.sent_ms >= ?",
        )
        .bind(protocol)
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(q("count sent mail"))
    }

    /// Every queued mail with its delivery state, oldest first.
    pub async fn outbox(&self) -> Result<Vec<OutboxRecord>> {
        let rows = sqlx::query(
            "SELECT id, incident_id, kind, message_id, status, attempts, last_error, sent_as
             FROM outbox ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("read outbox"))?;
        Ok(rows
            .iter()
            .map(|r| OutboxRecord {
                id: r.get(0),
                incident_id: r.get(1),
                kind: r.get(2),
                message_id: r.get(3),
                status: r.get(4),
                attempts: r.get(5),
                last_error: r.get(6),
                sent_as: r.get(7),
            })
            .collect())
    }
}

/// Queues a mail for an incident, unless it is planned (maintenance). The
/// Message-ID is `<key>.<n>`, n counting the incident's mails: stable across resends.
async fn enqueue_row(
    conn: &mut SqliteConnection,
    outbox_id: Option<i64>,
    id: i64,
    key: &str,
    kind: &str,
) -> Result<()> {
    let planned: bool = sqlx::query_scalar("SELECT planned FROM incidents WHERE id = ?")
        .bind(id)
        .fetch_one(&mut *conn)
        .await
        .map_err(q("read planned"))?;
    if planned {
        return Ok(());
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE incident_id = ?")
        .bind(id)
        .fetch_one(&mut *conn)
        .await
        .map_err(q("count outbox"))?;
    let now = now_ms();
    sqlx::query(write::INSERT_OUTBOX)
        .bind(outbox_id)
        .bind(id)
        .bind(kind)
        .bind(format!("{key}.{n}"))
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(q("enqueue mail"))?;
    Ok(())
}

/// A monitoring gap of a chain from `since`, with its reason.
async fn insert_gap<'e>(
    e: impl sqlx::Executor<'e, Database = Sqlite>,
    chain: &str,
    chain_id: u64,
    since: u64,
    reason: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO monitoring_gaps (chain, chain_id, started_at, reason) VALUES (?, ?, ?, ?)",
    )
    .bind(chain)
    .bind(chain_id as i64)
    .bind(since as i64)
    .bind(reason)
    .execute(e)
    .await
    .map_err(q("open gap"))?;
    Ok(())
}

/// For an incident a reorg withdrew: unsent mails are cancelled, and if
/// responders were already told, they are told it was withdrawn.
async fn withdraw_mail(tx: &mut Transaction<'static, Sqlite>, id: i64) -> Result<()> {
    let row = sqlx::query("SELECT state, key FROM incidents WHERE id = ?")
        .bind(id)
        .fetch_one(&mut **tx)
        .await
        .map_err(q("read incident"))?;
    if row.get::<String, _>(0) != "withdrawn" {
        return Ok(());
    }
    sqlx::query(
        "UPDATE outbox SET status = 'cancelled' WHERE incident_id = ? AND status = 'pending'",
    )
    .bind(id)
    .execute(&mut **tx)
    .await
    .map_err(q("cancel mail"))?;
    let told: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE incident_id = ? AND status = 'sent' AND kind != 'withdrawn'",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await
    .map_err(q("count sent mail"))?;
    if told > 0 {
        enqueue_row(tx, None, id, &row.get::<String, _>(1), "withdrawn").await?;
    }
    Ok(())
}

/// For an incident whose evidence a reorg had withdrawn and which is
/// canonical again: a withdrawal not yet sent is cancelled; responders told
/// it was withdrawn get one mail that says it is back, and if nobody was
/// told of it at all (its mails were cancelled), they are told now.
async fn reinstate_mail(
    conn: &mut SqliteConnection,
    outbox_id: Option<i64>,
    id: i64,
    key: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE outbox SET status = 'cancelled'
         WHERE incident_id = ? AND kind = 'withdrawn' AND status = 'pending'",
    )
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(q("cancel the withdrawal mail"))?;
    let (told_withdrawn, queued_or_told): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(kind = 'withdrawn' AND status = 'sent'), 0),
                COALESCE(SUM(status IN ('pending', 'sent')), 0)
         FROM outbox WHERE incident_id = ?",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await
    .map_err(q("count mail"))?;
    let kind = match (told_withdrawn, queued_or_told) {
        (0, 0) => "opened",
        (0, _) => return Ok(()),
        _ => "reinstated",
    };
    enqueue_row(conn, outbox_id, id, key, kind).await
}

/// Recomputes an incident's header (state, severity, start, end) from its
/// transitions that still stand. The header is derived data: one code path
/// serves both new transitions and reorgs.
async fn rederive(conn: &mut SqliteConnection, id: i64) -> Result<()> {
    let rows = sqlx::query(
        "SELECT kind, to_state, at, block_number FROM transitions
         WHERE incident_id = ? AND retracted = 0 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read transitions"))?;
    let steps = rows
        .iter()
        .map(|r| {
            Ok((
                parse_kind(&r.get::<String, _>(0))?,
                parse_state(&r.get::<String, _>(1))?,
                r.get::<i64, _>(2),
                r.get::<i64, _>(3),
            ))
        })
        .collect::<Result<Vec<header::Step>>>()?;
    let Some(h) = header::derive(&steps) else {
        sqlx::query("UPDATE incidents SET state = 'withdrawn', ended_at = NULL, end_block = NULL WHERE id = ?")
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(q("withdraw incident"))?;
        return Ok(());
    };
    sqlx::query(
        "UPDATE incidents SET state = ?, severity = ?, started_at = ?, start_block = ?,
            ended_at = ?, end_block = ? WHERE id = ?",
    )
    .bind(h.state.as_str())
    .bind(h.severity.as_str())
    .bind(h.started_at)
    .bind(h.start_block)
    .bind(h.ended_at)
    .bind(h.end_block)
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(q("update incident"))?;
    Ok(())
}

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
