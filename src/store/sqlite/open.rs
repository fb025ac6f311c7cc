//! Opening the history: the writer's connections (WAL, busy timeout,
//! migrations that take the write lock first) and the readers' read-only
//! ones; `open_read_only` for commands that only read.

use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use std::path::{Path, PathBuf};

use super::Store;
use crate::store::error::{Result, StoreError, q};

impl Store {
    /// Opens (creating if missing) and migrates the store.
    pub async fn open(path: &Path) -> Result<Self> {
        let path: PathBuf = path.to_path_buf();
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
    pub async fn open_read_only(path: &Path) -> Result<Self> {
        let path: PathBuf = path.to_path_buf();
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
}

/// How long a statement waits for another connection's lock.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Migrations, applied in order; `PRAGMA user_version` counts those applied.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_history.sql"),
    include_str!("../../../migrations/sqlite/0002_outbox.sql"),
    include_str!("../../../migrations/sqlite/0003_ledger.sql"),
    include_str!("../../../migrations/sqlite/0004_detectors.sql"),
    include_str!("../../../migrations/sqlite/0005_lean_indexes.sql"),
    include_str!("../../../migrations/sqlite/0006_notices.sql"),
    include_str!("../../../migrations/sqlite/0007_observed.sql"),
    include_str!("../../../migrations/sqlite/0008_anchors.sql"),
    include_str!("../../../migrations/sqlite/0009_claims.sql"),
];

/// WAL pages after which a commit checkpoints by itself (32 MiB).
pub(super) const AUTOCHECKPOINT_PAGES: u32 = 8_192;

/// Read-only connections to the history at `path`, waiting on locks like
/// the writer's.
pub(super) async fn read_pool(
    path: &std::path::Path,
) -> std::result::Result<SqlitePool, sqlx::Error> {
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

/// SQLite's "database is locked" (`SQLITE_BUSY`).
pub(super) fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("5"))
}
