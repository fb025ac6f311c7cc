//! What can go wrong with the store, with the context to act on it.

use std::path::PathBuf;

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
    #[error("cannot connect to the store {name}")]
    Connect {
        /// The database by scheme, host, port and name: never credentials.
        name: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot connect to the store {name}: {why}")]
    Credentials { name: String, why: String },
    #[error("there is no halt history in {name} yet: `haltwatch run` creates it")]
    MissingDatabase { name: String },
    #[error("cannot reach the chain leases in {name}")]
    Leases {
        name: String,
        #[source]
        source: crate::lease::LeaseError,
    },
    /// A replica's write of a chain it no longer holds the lease of.
    #[error("refused a write to chain {chain_id}: this replica no longer holds its lease")]
    Fenced {
        chain_id: u64,
        #[source]
        source: crate::lease::LeaseError,
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

pub(in crate::store) type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(in crate::store) fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}
