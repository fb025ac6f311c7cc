//! Chain leases on PostgreSQL: the building block of replicas sharing one
//! history. Each chain is followed by the replica holding its lease, a row
//! of holder, epoch and expiry, with every time taken from the database's
//! clock, never a replica's. A lease passes to another replica only once it
//! has expired, and each passing raises its epoch.
//!
//! Fencing: a transaction that writes a chain's checkpoint, history or
//! outbox first calls [`Leases::fence`] inside itself. That reads the lease
//! row `FOR SHARE`: it fails unless this replica still holds the lease with
//! the same epoch, and a takeover (an `UPDATE` of the row) waits until the
//! transaction has ended. A replica frozen past its lease (a long pause,
//! SIGSTOP, a VM migration) and then thawed can therefore never write.
//!
//! Live replicas announce themselves in a heartbeat row; each takes at most
//! ⌈chains / live replicas⌉ leases ([`fair_share`]).

use std::time::Duration;

use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};

/// `lease_ttl_seconds` unless set.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease query failed: {what}")]
    Query {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// The fencing check: the lease of `chain_id` is no longer this
    /// replica's with epoch `epoch`.
    #[error("the lease of chain {chain_id} (epoch {epoch}) is no longer held by {holder}")]
    Lost {
        chain_id: u64,
        epoch: i64,
        holder: String,
    },
}

fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> LeaseError {
    move |source| LeaseError::Query { what, source }
}

/// A lease held: the chain, and the epoch every write is fenced with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub chain_id: u64,
    pub epoch: i64,
    /// True when this acquisition took the chain from another holder (or
    /// from an expired lease of its own): a takeover.
    pub taken_over: bool,
}

/// This replica's view of the lease tables.
#[derive(Debug, Clone)]
pub struct Leases {
    pool: PgPool,
    holder: String,
    ttl: Duration,
}

impl Leases {
    /// Connects and creates the lease tables if missing.
    pub async fn connect(url: &str, holder: &str, ttl: Duration) -> Result<Self, LeaseError> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await
            .map_err(q("connect"))?;
        let leases = Leases {
            pool,
            holder: holder.to_string(),
            ttl,
        };
        leases.migrate().await?;
        Ok(leases)
    }

    async fn migrate(&self) -> Result<(), LeaseError> {
        for statement in [
            "CREATE TABLE IF NOT EXISTS chain_leases (
                chain_id   BIGINT PRIMARY KEY,
                holder     TEXT NOT NULL,
                epoch      BIGINT NOT NULL,
                expires_at TIMESTAMPTZ NOT NULL
            )",
            "CREATE TABLE IF NOT EXISTS replicas (
                holder  TEXT PRIMARY KEY,
                seen_at TIMESTAMPTZ NOT NULL
            )",
        ] {
            sqlx::query(statement)
                .execute(&self.pool)
                .await
                .map_err(q("create the lease tables"))?;
        }
        Ok(())
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// Says this replica is alive (its heartbeat row, at the database's now).
    pub async fn heartbeat(&self) -> Result<(), LeaseError> {
        sqlx::query(
            "INSERT INTO replicas (holder, seen_at) VALUES ($1, now())
             ON CONFLICT (holder) DO UPDATE SET seen_at = now()",
        )
        .bind(&self.holder)
        .execute(&self.pool)
        .await
        .map_err(q("heartbeat"))?;
        Ok(())
    }

    /// Replicas whose heartbeat is younger than the TTL, this one included
    /// once it has beaten.
    pub async fn live_replicas(&self) -> Result<u64, LeaseError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM replicas
             WHERE seen_at > now() - make_interval(secs => $1::double precision / 1000)",
        )
        .bind(self.ttl_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(q("count live replicas"))?;
        Ok(n.max(0) as u64)
    }

    /// Takes the lease of `chain_id` if it is free, expired, or already
    /// this replica's (then it is renewed, same epoch). `None`: another
    /// replica holds it.
    pub async fn try_acquire(&self, chain_id: u64) -> Result<Option<Lease>, LeaseError> {
        // The CTE reads the row as it was before the upsert.
        let row: Option<(i64, Option<i64>)> = sqlx::query_as(
            "WITH before AS (SELECT epoch FROM chain_leases WHERE chain_id = $1)
             INSERT INTO chain_leases AS l (chain_id, holder, epoch, expires_at)
             VALUES ($1, $2, 1, now() + make_interval(secs => $3::double precision / 1000))
             ON CONFLICT (chain_id) DO UPDATE SET
                 holder = EXCLUDED.holder,
                 epoch = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > now()
                              THEN l.epoch ELSE l.epoch + 1 END,
                 expires_at = EXCLUDED.expires_at
             WHERE l.expires_at <= now() OR l.holder = EXCLUDED.holder
             RETURNING epoch, (SELECT epoch FROM before)",
        )
        .bind(chain_id as i64)
        .bind(&self.holder)
        .bind(self.ttl_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(q("acquire a lease"))?;
        Ok(row.map(|(epoch, before)| Lease {
            chain_id,
            epoch,
            taken_over: before.is_some_and(|b| b != epoch),
        }))
    }

    /// Extends a lease still held; `false` when it was lost (expired, or
    /// taken with a new epoch): stop following the chain at once.
    pub async fn renew(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let done = sqlx::query(
            "UPDATE chain_leases
             SET expires_at = now() + make_interval(secs => $4::double precision / 1000)
             WHERE chain_id = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()",
        )
        .bind(lease.chain_id as i64)
        .bind(&self.holder)
        .bind(lease.epoch)
        .bind(self.ttl_ms())
        .execute(&self.pool)
        .await
        .map_err(q("renew a lease"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a lease up (at shutdown): it expires now, for another to take.
    pub async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        sqlx::query(
            "UPDATE chain_leases SET expires_at = now()
             WHERE chain_id = $1 AND holder = $2 AND epoch = $3",
        )
        .bind(lease.chain_id as i64)
        .bind(&self.holder)
        .bind(lease.epoch)
        .execute(&self.pool)
        .await
        .map_err(q("release a lease"))?;
        Ok(())
    }

    /// The fencing check, inside a writing transaction: fails unless
    /// `lease` is still this replica's, unexpired, with the same epoch, and
    /// holds the row against a takeover until the transaction ends.
    pub async fn fence(&self, tx: &mut PgConnection, lease: &Lease) -> Result<(), LeaseError> {
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT epoch FROM chain_leases
             WHERE chain_id = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()
             FOR SHARE",
        )
        .bind(lease.chain_id as i64)
        .bind(&self.holder)
        .bind(lease.epoch)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q("fence a write"))?;
        match held {
            Some(_) => Ok(()),
            None => Err(LeaseError::Lost {
                chain_id: lease.chain_id,
                epoch: lease.epoch,
                holder: self.holder.clone(),
            }),
        }
    }

    /// The pool, for the writing transactions that [`Leases::fence`] checks.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// How many leases one replica may hold: ⌈chains / live replicas⌉, so the
/// chains spread evenly and a replica with no chain is a hot standby.
pub fn fair_share(chains: usize, live: u64) -> usize {
    let live = usize::try_from(live.max(1)).unwrap_or(usize::MAX);
    chains.div_ceil(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_spread_chains_evenly_and_round_up() {
        let cases = [
            (6, 3, 2),
            (6, 2, 3),
            (6, 4, 2),
            (1, 3, 1),
            (0, 2, 0),
            (5, 0, 5),
        ];
        for (chains, live, want) in cases {
            assert_eq!(
                fair_share(chains, live),
                want,
                "{chains} chains, {live} live"
            );
        }
    }
}
