//! The SQLite backend: the embedded default, one file for one `run`
//! (`RunLock`), WAL so that readers never wait for the writer.

mod bulk;
mod open;

// The history's logic is shared with the PostgreSQL backend: the same
// files, compiled here against SQLite's types (see `history/mod.rs`).
#[allow(clippy::duplicate_mod)]
#[path = "../history/mod.rs"]
mod history;

use sqlx::{Sqlite, SqlitePool, Transaction};

pub(super) use bulk::{insert_all, insert_each};

use crate::store::error::{Result, q};

type Db = Sqlite;
type Conn = sqlx::SqliteConnection;
type DbRow = sqlx::sqlite::SqliteRow;

/// Rows a claim reads are not locked: one process writes a SQLite history.
const SKIP_LOCKED: &str = "";

/// The ids of a JSON array bound as `$1`, for `id IN (…)`.
const IDS_IN: &str = "SELECT value FROM json_each($1)";

/// A SQLite history. Cheap to clone; every clone shares one pool.
#[derive(Clone, Debug)]
pub struct Store {
    /// The writer's connections (read-only ones in a read-only store).
    pool: SqlitePool,
    /// Read-only connections for the API, pages and commands: readers never
    /// take a connection the writer needs.
    reads: SqlitePool,
}

impl Store {
    /// A transaction holding the write lock from its first statement
    /// (`BEGIN IMMEDIATE`): a deferred one would fail where its first write
    /// met another writer, and ids taken from `MAX(id)` stay free. One
    /// process writes a SQLite history, so there is no lease to check.
    async fn begin_write(
        &self,
        what: &'static str,
        _chain_id: Option<u64>,
    ) -> Result<Transaction<'static, Db>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(q(what))
    }
}
