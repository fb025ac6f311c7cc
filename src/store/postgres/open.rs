//! Connecting to the shared history and migrating it: the schema version
//! is a row of `haltwatch_schema`, and migrations run in one transaction
//! under an advisory lock, so replicas starting together migrate once.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use super::Store;
use crate::config::PostgresStore;
use crate::store::error::{Result, StoreError, q};

/// Migrations, applied in order; `haltwatch_schema.version` counts those applied.
const MIGRATIONS: &[&str] = &[include_str!(
    "../../../migrations/postgres/0001_history.sql"
)];

/// The advisory lock a migration holds.
const MIGRATION_LOCK: i64 = 0x6861_6c74_6d69_6772; // "haltmigr"

/// How long a statement may wait for a connection from the pool.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Connects to the history and brings its schema up to date.
    pub async fn open(config: &PostgresStore, name: &str) -> Result<Self> {
        let pool = connect(config, name).await?;
        migrate(&pool, name).await?;
        Ok(Store {
            reads: pool.clone(),
            pool,
            leases: None,
        })
    }

    /// Connects to read only (the CLI's `incidents`, `report`, `verify`):
    /// nothing is created or migrated, and a schema older or newer than
    /// this build's is a clear error.
    pub async fn open_read_only(config: &PostgresStore, name: &str) -> Result<Self> {
        let pool = connect(config, name).await?;
        let found = version(&pool).await?.unwrap_or(0);
        let known = MIGRATIONS.len();
        if found == 0 {
            return Err(StoreError::MissingDatabase { name: name.into() });
        }
        if found as usize > known {
            return Err(StoreError::TooNew {
                path: name.into(),
                found,
                known,
            });
        }
        if (found as usize) < known {
            return Err(StoreError::NotMigrated {
                path: name.into(),
                found,
                known,
            });
        }
        Ok(Store {
            reads: pool.clone(),
            pool,
            leases: None,
        })
    }

    /// Nothing to do: PostgreSQL checkpoints by itself.
    pub async fn checkpoint(&self) -> Result<()> {
        Ok(())
    }
}

/// The pool. One connection is made first, on its own, so that a refused
/// port or a wrong password is reported as such (a pool only says it
/// timed out).
async fn connect(config: &PostgresStore, name: &str) -> Result<PgPool> {
    let fail = |source| StoreError::Connect {
        name: name.into(),
        source,
    };
    let options = connect_options(config, name)?;
    let first = tokio::time::timeout(ACQUIRE_TIMEOUT, options.connect())
        .await
        .map_err(|_| fail(sqlx::Error::PoolTimedOut))?
        .map_err(fail)?;
    first.close().await.map_err(fail)?;
    PgPoolOptions::new()
        // Writers queue on the write lock holding a connection each: room
        // for every chain's writer, the sender and the readers.
        .max_connections(8)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(fail)
}

/// How to connect: the URL with the password from the environment, both
/// read now (so a rotated secret takes effect on the next connection).
pub(in crate::store) fn connect_options(
    config: &PostgresStore,
    name: &str,
) -> Result<PgConnectOptions> {
    let (url, password) = config
        .credentials()
        .map_err(|why| StoreError::Credentials {
            name: name.into(),
            why,
        })?;
    let mut options = PgConnectOptions::from_str(&url).map_err(|source| StoreError::Connect {
        name: name.into(),
        source,
    })?;
    if let Some(password) = &password {
        options = options.password(password);
    }
    Ok(options)
}

/// The schema version, `None` before the first migration.
async fn version(pool: &PgPool) -> Result<Option<i64>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('haltwatch_schema') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(q("read schema version"))?;
    if !exists {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT version FROM haltwatch_schema")
        .fetch_optional(pool)
        .await
        .map_err(q("read schema version"))
}

/// Applies the migrations this database lacks, in one transaction.
async fn migrate(pool: &PgPool, name: &str) -> Result<()> {
    let known = MIGRATIONS.len();
    if version(pool).await? == Some(known as i64) {
        return Ok(());
    }
    let mut tx = pool.begin().await.map_err(q("begin migration"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(q("take the migration lock"))?;
    sqlx::query("CREATE TABLE IF NOT EXISTS haltwatch_schema (version BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await
        .map_err(q("create the schema table"))?;
    // Another replica may have migrated while this one waited.
    let found: i64 = sqlx::query_scalar("SELECT version FROM haltwatch_schema")
        .fetch_optional(&mut *tx)
        .await
        .map_err(q("read schema version"))?
        .unwrap_or(0);
    if found as usize > known {
        return Err(StoreError::TooNew {
            path: name.into(),
            found,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await
            .map_err(|source| StoreError::Migrate {
                path: name.into(),
                version: i + 1,
                source,
            })?;
    }
    sqlx::query("DELETE FROM haltwatch_schema")
        .execute(&mut *tx)
        .await
        .map_err(q("record schema version"))?;
    sqlx::query("INSERT INTO haltwatch_schema (version) VALUES ($1)")
        .bind(known as i64)
        .execute(&mut *tx)
        .await
        .map_err(q("record schema version"))?;
    tx.commit().await.map_err(q("commit migration"))
}
