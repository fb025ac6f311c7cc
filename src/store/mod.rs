//! The halt history and the pipeline's own state (checkpoints, reorg window,
//! classifier snapshots). Everything one block range produced is written in
//! one transaction together with the new checkpoint, so a crash leaves
//! either all of it or none of it.
//!
//! [`Store`] is the one interface, over two backends: `sqlite` (the
//! embedded default, one `run` per file) and `postgres` (one history shared
//! by replicas, writes fenced by chain leases). Their reads and writes are
//! written once, in `history/`, and compiled for each; what differs
//! (opening, migrations, bulk inserts, the write lock) is in each backend's
//! folder. Beside them, shared by both: `records` (what goes in and comes
//! out), `rows` (an update's rows, built ahead), `ledger` (the hash chain's
//! encodings), `header` (an incident's state from its transitions),
//! `codec`, `value`, `error`, `retry` (riding out a busy or full store) and
//! `run_lock` (one `run` per SQLite file).

mod codec;
mod error;
mod header;
pub mod ledger;
mod postgres;
mod records;
pub mod retry;
mod rows;
mod run_lock;
mod sqlite;
mod value;

use alloy::primitives::B256;

pub(crate) use codec::rfc3339;
pub use codec::{format_time, now_ms};
use error::Result;
pub use error::StoreError;
pub use ledger::{HistoryReport, RecordKind, Tamper};
pub use records::*;
pub use rows::Rows;
pub use run_lock::RunLock;

use crate::config::{StoreBackend, StoreConfig};
use crate::lease::Leases;
use crate::model::BlockRef;

/// The halt history, on whichever backend the config names. Cheap to
/// clone; every clone shares one pool.
#[derive(Clone, Debug)]
pub struct Store(Backend);

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(sqlite::Store),
    Postgres(postgres::Store),
}

impl Store {
    /// Opens (creating if missing) and migrates the history.
    pub async fn open(config: &StoreConfig) -> Result<Self> {
        Ok(Store(match &config.backend {
            StoreBackend::Sqlite(path) => Backend::Sqlite(sqlite::Store::open(path).await?),
            StoreBackend::Postgres(pg) => {
                Backend::Postgres(postgres::Store::open(pg, &config.describe()).await?)
            }
        }))
    }

    /// Opens the history only to read it: never creates, migrates or
    /// writes it, so it never takes a lock `run` waits for.
    pub async fn open_read_only(config: &StoreConfig) -> Result<Self> {
        Ok(Store(match &config.backend {
            StoreBackend::Sqlite(path) => {
                Backend::Sqlite(sqlite::Store::open_read_only(path).await?)
            }
            StoreBackend::Postgres(pg) => {
                Backend::Postgres(postgres::Store::open_read_only(pg, &config.describe()).await?)
            }
        }))
    }

    /// A replica's store: every write of a chain's history is fenced with
    /// this replica's lease of the chain. Only a PostgreSQL history has
    /// replicas; a SQLite one is returned as it is.
    pub fn fenced_by(self, leases: Leases) -> Self {
        match self.0 {
            Backend::Postgres(s) => Store(Backend::Postgres(s.fenced_by(leases))),
            sqlite => Store(sqlite),
        }
    }

    /// This process's chain leases on a shared history (a pool of their
    /// own), or `None` on SQLite, where one process follows every chain.
    pub async fn leases(&self, config: &StoreConfig) -> Result<Option<Leases>> {
        match (&self.0, &config.backend) {
            (Backend::Postgres(_), StoreBackend::Postgres(pg)) => {
                let name = config.describe();
                let options = postgres::connect_options(pg, &name)?;
                let leases =
                    Leases::connect_with(options, crate::lease::this_replica(), pg.lease_ttl)
                        .await
                        .map_err(|source| StoreError::Leases { name, source })?;
                Ok(Some(leases))
            }
            _ => Ok(None),
        }
    }
}

/// Methods that each backend implements alike, passed on to it.
macro_rules! on_backend {
    ($(
        $(#[$doc:meta])*
        pub async fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;
    )*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match &self.0 {
                        Backend::Sqlite(s) => s.$name($($arg),*).await,
                        Backend::Postgres(s) => s.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

on_backend! {
    /// The remembered blocks of a chain, oldest first; the last is the checkpoint.
    pub async fn window(&self, chain_id: u64) -> Result<Vec<BlockRef>>;
    /// The newest tracker snapshot of a protocol (JSON), if any.
    pub async fn tracker(&self, protocol: &str) -> Result<Option<String>>;
    /// Writes one committed range: incidents, evidence, trackers and checkpoint.
    pub async fn commit(&self, batch: Batch<'_>) -> Result<()>;
    /// Undoes everything above block `ancestor` of a chain.
    pub async fn revert(&self, chain_id: u64, protocols: &[&str], ancestor: u64) -> Result<()>;
    /// Incidents matching `filter`, newest first, with transitions and evidence.
    pub async fn list(&self, filter: &IncidentFilter) -> Result<Vec<IncidentRecord>>;
    /// One page of [`Store::list`]: `limit` incidents from `offset`, and how many match in all.
    pub async fn page(
        &self,
        filter: &IncidentFilter,
        offset: usize,
        limit: usize
    ) -> Result<(Vec<IncidentRecord>, usize)>;
    /// One incident with its transitions and evidence.
    pub async fn incident(&self, id: i64) -> Result<Option<IncidentRecord>>;
    /// Records the start of a monitoring gap on a chain.
    pub async fn gap_opened(&self, chain: &str, chain_id: u64, since: u64, reason: &str) -> Result<()>;
    /// Closes the open monitoring gaps of a chain.
    pub async fn gap_closed(&self, chain_id: u64, at: u64) -> Result<()>;
    /// Monitoring gaps that overlap `since..until`, oldest first.
    pub async fn gaps(&self, since: u64, until: u64) -> Result<Vec<GapRecord>>;
    /// Every observed span overlapping `since..until` (chain time), oldest first.
    pub async fn observed(&self, since: u64, until: u64) -> Result<Vec<ObservedSpan>>;
    /// A reorg deeper than the window: a monitoring gap and, when `notify`, a notice.
    pub async fn deep_reorg(
        &self,
        chain: &str,
        chain_id: u64,
        since: u64,
        reason: &str,
        notify: bool
    ) -> Result<()>;
    /// Notices due at `now`, oldest first.
    pub async fn notices_due(&self, now: i64) -> Result<Vec<Notice>>;
    /// What became of one notice's delivery attempt.
    pub async fn notice_attempted(&self, id: i64, error: Option<&str>, retry_at: Option<i64>) -> Result<()>;
    /// Queued mails due at `now`, oldest first.
    pub async fn outbox_due(&self, now: i64) -> Result<Vec<OutboxItem>>;
    /// Mails waiting to be sent.
    pub async fn outbox_pending(&self) -> Result<usize>;
    /// Mails carried by one message: marks them sent.
    pub async fn outbox_sent(&self, ids: &[i64], sent_as: &str) -> Result<()>;
    /// Claims pending mails for `sender` until `until_ms`; the ids claimed.
    pub async fn outbox_claim(&self, ids: &[i64], sender: &str, until_ms: i64) -> Result<Vec<i64>>;
    /// Claims notice `id` for `sender` until `until_ms`; whether it was.
    pub async fn notice_claim(&self, id: i64, sender: &str, until_ms: i64) -> Result<bool>;
    /// A temporary failure: try again at `next_ms`.
    pub async fn outbox_retry(&self, ids: &[i64], next_ms: i64, error: &str) -> Result<()>;
    /// A permanent failure: never retried.
    pub async fn outbox_failed(&self, ids: &[i64], error: &str) -> Result<()>;
    /// Mails nobody is to receive: never sent, `why` kept.
    pub async fn outbox_cancelled(&self, ids: &[i64], why: &str) -> Result<()>;
    /// Distinct mails sent for `protocol` since `since_ms` (a digest counts once).
    pub async fn mails_sent_since(&self, protocol: &str, since_ms: i64) -> Result<i64>;
    /// Every queued mail with its delivery state, oldest first.
    pub async fn outbox(&self) -> Result<Vec<OutboxRecord>>;
    /// Records an anchor just sent (or mined).
    pub async fn record_anchor(&self, a: &AnchorRecord) -> Result<()>;
    /// The newest anchor's (record, head), if any.
    pub async fn last_anchor(&self) -> Result<Option<(i64, B256)>>;
    /// Every anchor, oldest first.
    pub async fn anchors(&self) -> Result<Vec<AnchorRecord>>;
    /// The history's tamper-evidence: walks the ledger against the rows.
    pub async fn verify_history(&self) -> Result<HistoryReport>;
    /// Where ledger record `hash` stands now (its number), if it is still there.
    pub async fn ledger_record(&self, record: Option<i64>, hash: B256) -> Result<Option<i64>>;
    /// The ledger head: (records, hash). Pin it to detect a rewritten history.
    pub async fn ledger_head(&self) -> Result<(i64, B256)>;
    /// Copies SQLite's WAL into the database off the commit path (PostgreSQL: nothing).
    pub async fn checkpoint(&self) -> Result<()>;
    /// Answers a trivial query: for readiness checks.
    pub async fn ping(&self) -> Result<()>;
}
