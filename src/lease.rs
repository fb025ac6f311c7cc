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
//! ⌈chains / live replicas⌉ leases ([`fair_share`]). Only replicas that
//! follow the same chains count for each other ([`Leases::with_chains`]):
//! a replica of another config sharing the database would otherwise shrink
//! this one's share, and leave some of its chains to nobody.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

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
    #[error("replica {holder} does not hold the lease of chain {chain_id}")]
    NotHeld { chain_id: u64, holder: String },
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
    /// On a takeover: when the previous holder last renewed (or released)
    /// the lease, and when it was taken, in unix milliseconds of the
    /// database's clock. Nobody followed the chain in between.
    pub unwatched: Option<(u64, u64)>,
}

/// This replica's view of the lease tables.
#[derive(Debug, Clone)]
pub struct Leases {
    pool: PgPool,
    holder: String,
    ttl: Duration,
    /// chain id → epoch of the leases this replica holds, as its last
    /// acquisition or renewal found them; shared by every clone.
    held: Arc<Mutex<BTreeMap<u64, i64>>>,
    /// The ids of the chains this replica follows, sorted, comma-separated.
    chains: String,
}

impl Leases {
    /// Connects and creates the lease tables if missing.
    pub async fn connect(url: &str, holder: &str, ttl: Duration) -> Result<Self, LeaseError> {
        let options = url.parse().map_err(q("parse the URL"))?;
        Self::connect_with(options, holder, ttl).await
    }

    /// [`Leases::connect`] with connect options: a pool of its own, so that
    /// renewals never wait behind the history's writers.
    pub async fn connect_with(
        options: PgConnectOptions,
        holder: &str,
        ttl: Duration,
    ) -> Result<Self, LeaseError> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(ttl / 3)
            .connect_with(options)
            .await
            .map_err(q("connect"))?;
        let leases = Leases {
            pool,
            holder: holder.to_string(),
            ttl,
            held: Arc::default(),
            chains: String::new(),
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
                expires_at TIMESTAMPTZ NOT NULL,
                renewed_at TIMESTAMPTZ NOT NULL
            )",
            "CREATE TABLE IF NOT EXISTS replicas (
                holder  TEXT PRIMARY KEY,
                seen_at TIMESTAMPTZ NOT NULL,
                chains  TEXT NOT NULL DEFAULT ''
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

    /// How long a lease lasts unrenewed.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// This replica follows `chains` (their ids): it counts only replicas
    /// that follow the same ones as live peers.
    pub fn with_chains(mut self, chains: &[u64]) -> Self {
        let mut ids = chains.to_vec();
        ids.sort_unstable();
        ids.dedup();
        self.chains = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        self
    }

    /// Says this replica is alive (its heartbeat row, at the database's now).
    pub async fn heartbeat(&self) -> Result<(), LeaseError> {
        sqlx::query(
            "INSERT INTO replicas (holder, seen_at, chains) VALUES ($1, now(), $2)
             ON CONFLICT (holder) DO UPDATE SET seen_at = now(), chains = EXCLUDED.chains",
        )
        .bind(&self.holder)
        .bind(&self.chains)
        .execute(&self.pool)
        .await
        .map_err(q("heartbeat"))?;
        Ok(())
    }

    /// Replicas following the same chains whose heartbeat is younger than
    /// the TTL, this one included once it has beaten.
    pub async fn live_replicas(&self) -> Result<u64, LeaseError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM replicas
             WHERE seen_at > now() - make_interval(secs => $1::double precision / 1000)
               AND chains = $2",
        )
        .bind(self.ttl_ms())
        .bind(&self.chains)
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
        let row: Option<(i64, Option<i64>, Option<i64>, i64)> = sqlx::query_as(
            "WITH before AS (SELECT epoch, renewed_at FROM chain_leases WHERE chain_id = $1)
             INSERT INTO chain_leases AS l (chain_id, holder, epoch, expires_at, renewed_at)
             VALUES ($1, $2, 1, now() + make_interval(secs => $3::double precision / 1000), now())
             ON CONFLICT (chain_id) DO UPDATE SET
                 holder = EXCLUDED.holder,
                 epoch = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > now()
                              THEN l.epoch ELSE l.epoch + 1 END,
                 expires_at = EXCLUDED.expires_at,
                 renewed_at = now()
             WHERE l.expires_at <= now() OR l.holder = EXCLUDED.holder
             RETURNING epoch, (SELECT epoch FROM before),
                 (SELECT (extract(epoch FROM renewed_at) * 1000)::bigint FROM before),
                 (extract(epoch FROM now()) * 1000)::bigint",
        )
        .bind(chain_id as i64)
        .bind(&self.holder)
        .bind(self.ttl_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(q("acquire a lease"))?;
        let lease = row.map(|(epoch, before, renewed, now)| {
            let taken_over = before.is_some_and(|b| b != epoch);
            Lease {
                chain_id,
                epoch,
                taken_over,
                unwatched: renewed
                    .filter(|_| taken_over)
                    .map(|r| (r.max(0) as u64, now.max(0) as u64)),
            }
        });
        if let Some(l) = &lease {
            self.hold(chain_id, Some(l.epoch));
        }
        Ok(lease)
    }

    /// Extends a lease still held; `false` when it was lost (expired, or
    /// taken with a new epoch): stop following the chain at once.
    pub async fn renew(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let done = sqlx::query(
            "UPDATE chain_leases
             SET expires_at = now() + make_interval(secs => $4::double precision / 1000),
                 renewed_at = now()
             WHERE chain_id = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()",
        )
        .bind(lease.chain_id as i64)
        .bind(&self.holder)
        .bind(lease.epoch)
        .bind(self.ttl_ms())
        .execute(&self.pool)
        .await
        .map_err(q("renew a lease"))?;
        let kept = done.rows_affected() == 1;
        if !kept {
            self.hold(lease.chain_id, None);
        }
        Ok(kept)
    }

    /// Gives a lease up (at shutdown): it expires now, for another to take.
    pub async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        sqlx::query(
            "UPDATE chain_leases SET expires_at = now(), renewed_at = now()
             WHERE chain_id = $1 AND holder = $2 AND epoch = $3",
        )
        .bind(lease.chain_id as i64)
        .bind(&self.holder)
        .bind(lease.epoch)
        .execute(&self.pool)
        .await
        .map_err(q("release a lease"))?;
        self.hold(lease.chain_id, None);
        Ok(())
    }

    fn hold(&self, chain_id: u64, epoch: Option<i64>) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        match epoch {
            Some(e) => held.insert(chain_id, e),
            None => held.remove(&chain_id),
        };
    }

    /// [`Leases::fence`] with the lease this replica holds of `chain_id`;
    /// fails when it holds none.
    pub async fn fence_chain(
        &self,
        tx: &mut PgConnection,
        chain_id: u64,
    ) -> Result<(), LeaseError> {
        let epoch = {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.get(&chain_id).copied()
        };
        let Some(epoch) = epoch else {
            return Err(LeaseError::NotHeld {
                chain_id,
                holder: self.holder.clone(),
            });
        };
        let lease = Lease {
            chain_id,
            epoch,
            taken_over: false,
            unwatched: None,
        };
        self.fence(tx, &lease).await
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

    /// Of `chains`, those no replica holds an unexpired lease of.
    pub async fn unheld(&self, chains: &[u64]) -> Result<Vec<u64>, LeaseError> {
        let ids: Vec<i64> = chains.iter().map(|c| *c as i64).collect();
        let held: Vec<i64> = sqlx::query_scalar(
            "SELECT chain_id FROM chain_leases WHERE chain_id = ANY($1) AND expires_at > now()",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(q("read the leases"))?;
        Ok(chains
            .iter()
            .filter(|c| !held.contains(&(**c as i64)))
            .copied()
            .collect())
    }

    /// The pool, for the writing transactions that [`Leases::fence`] checks.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// This process's name among replicas and mail senders: host, PID and
/// start time, so that a restarted process is a new replica (it must not
/// inherit the leases, or the claims, of the one before it).
pub fn this_replica() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".into());
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("{host}-{}-{started:x}", std::process::id())
    })
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
