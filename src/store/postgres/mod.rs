//! The PostgreSQL backend: one history shared by any number of `run`
//! replicas. Writers take one transaction-scoped advisory lock, as SQLite's
//! `BEGIN IMMEDIATE` takes its write lock: the ledger is one hash chain and
//! row ids come from `MAX(id)`, so writes are serialized (they are a few
//! milliseconds each). A replica that follows chains under leases fences
//! every write of a chain's history with its lease ([`crate::lease`]).

mod bulk;
mod open;

// The history's logic is shared with the SQLite backend: the same files,
// compiled here against PostgreSQL's types (see `history/mod.rs`).
#[allow(clippy::duplicate_mod)]
#[path = "../history/mod.rs"]
mod history;

use sqlx::{PgPool, Postgres, Transaction};

pub(super) use bulk::{insert_all, insert_each};
pub(super) use open::connect_options;

use crate::lease::Leases;
use crate::store::error::{Result, StoreError, q};

type Db = Postgres;
type Conn = sqlx::PgConnection;
type DbRow = sqlx::postgres::PgRow;

/// Rows a claim reads are locked, and those another sender is claiming skipped.
const SKIP_LOCKED: &str = "FOR UPDATE SKIP LOCKED";

/// The ids of a JSON array bound as `$1`, for `id IN (…)`.
const IDS_IN: &str = "SELECT (jsonb_array_elements_text($1::jsonb))::bigint";

/// The advisory lock every writing transaction takes first.
const WRITE_LOCK: i64 = 0x6861_6c74_7761_7463; // "haltwatc"

/// A PostgreSQL history. Cheap to clone; every clone shares one pool.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    /// The same pool: PostgreSQL readers never block the writer.
    reads: PgPool,
    /// The leases this replica's chain writes are fenced with; `None` for
    /// the commands (backfill, the CLI), which follow no chain.
    leases: Option<Leases>,
}

impl Store {
    /// Fences every later write of a chain's history with this replica's
    /// lease of that chain.
    pub fn fenced_by(mut self, leases: Leases) -> Self {
        self.leases = Some(leases);
        self
    }

    /// A transaction holding the write lock; for a chain's write in a
    /// replica, also the lease check ([`Leases::fence`]), which keeps the
    /// lease from passing until this transaction ends.
    async fn begin_write(
        &self,
        what: &'static str,
        chain_id: Option<u64>,
    ) -> Result<Transaction<'static, Db>> {
        let mut tx = self.pool.begin().await.map_err(q(what))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(q("take the write lock"))?;
        if let (Some(leases), Some(chain_id)) = (&self.leases, chain_id) {
            leases
                .fence_chain(&mut tx, chain_id)
                .await
                .map_err(|source| StoreError::Fenced { chain_id, source })?;
        }
        Ok(tx)
    }
}
