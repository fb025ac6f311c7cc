//! A replica on a shared history: it follows the chains whose leases it
//! holds, and no others. Every third of the lease's TTL it says it is
//! alive, renews its leases, and takes its fair share of the chains
//! (⌈chains / live replicas⌉, counting the replicas that follow the same
//! chains): free or expired leases are taken, and
//! beyond the share, leases are handed over (the chain is stopped, then
//! its lease released for another replica to take). A lease that could
//! not be renewed, or a write the fence refused, stops that chain at once.
//! A replica with no chain is a hot standby.
//!
//! A takeover resumes from the checkpoint the last holder committed (the
//! source re-reads the reorg window and catches up), so what was mined
//! while nobody held the lease is recorded with its true block and time.
//! When nobody followed the chain for longer than the TTL, that time is
//! recorded as a monitoring gap.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::PipelineError;
use super::follow::Follow;
use crate::error_text::with_sources;
use crate::lease::{Lease, Leases, fair_share};
use crate::store::StoreError;
use crate::telemetry;

/// How long after its first heartbeat a replica takes its first chains
/// (or a third of the TTL, if shorter).
const FIRST_ROUND: Duration = Duration::from_secs(1);

/// How often the chains' tasks are looked at between rounds.
const REAP_EVERY: Duration = Duration::from_millis(200);

/// One chain this replica follows.
struct Follower {
    lease: Lease,
    stop: watch::Sender<bool>,
    tasks: JoinSet<Result<(), PipelineError>>,
}

/// The lease loop; returns when `stop` turns true, after stopping its
/// chains and releasing their leases.
pub(super) async fn run(
    follow: Follow,
    leases: Leases,
    mut stop: watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    let config = follow.config.clone();
    let chains: Vec<usize> = (0..config.chains.len())
        .filter(|c| config.follows(*c))
        .collect();
    let ids: Vec<u64> = chains.iter().map(|c| config.chains[*c].chain_id).collect();
    let mut replica = Replica {
        follow,
        leases: leases.with_chains(&ids),
        chains,
        followers: BTreeMap::new(),
    };
    tracing::info!(
        replica = replica.leases.holder(),
        chains = replica.chains.len(),
        lease_ttl_ms = replica.leases.ttl().as_millis() as u64,
        "replica started: taking its share of the chains"
    );
    // Announced first, and a moment later the first round: replicas
    // starting together then see each other before any takes chains.
    if let Err(e) = replica.leases.heartbeat().await {
        tracing::warn!(error = %with_sources(&e), "replica heartbeat failed; retrying next round");
    }
    let every = replica.leases.ttl() / 3;
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + every.min(FIRST_ROUND), every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A chain whose write the fence refused stops within this, not at the
    // next round.
    let mut reap = tokio::time::interval(REAP_EVERY);
    reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        let round = tokio::select! {
            _ = stop.wait_for(|s| *s) => break Ok(()),
            _ = tick.tick() => true,
            _ = reap.tick() => false,
        };
        let done = if round {
            replica.round().await
        } else {
            replica.reap()
        };
        if let Err(e) = done {
            break Err(e);
        }
    };
    replica.stop_all().await;
    result
}

struct Replica {
    follow: Follow,
    leases: Leases,
    /// The chains that have protocols, by index.
    chains: Vec<usize>,
    followers: BTreeMap<usize, Follower>,
}

impl Replica {
    async fn round(&mut self) -> Result<(), PipelineError> {
        if let Err(e) = self.leases.heartbeat().await {
            tracing::warn!(error = %with_sources(&e), "replica heartbeat failed; retrying next round");
        }
        self.reap()?;
        self.renew().await;
        match self.leases.live_replicas().await {
            Ok(live) => {
                let share = fair_share(self.chains.len(), live);
                self.hand_over(share).await;
                self.take(share).await?;
            }
            Err(e) => tracing::warn!(error = %with_sources(&e), "cannot count live replicas"),
        }
        self.publish().await;
        Ok(())
    }

    /// Chains whose tasks ended: a write the fence refused means the lease
    /// was lost; any other error stops this replica, as it stops a
    /// process that has the history to itself.
    fn reap(&mut self) -> Result<(), PipelineError> {
        let mut lost = Vec::new();
        for (c, f) in &mut self.followers {
            while let Some(joined) = f.tasks.try_join_next() {
                match joined.map_err(PipelineError::Panic).and_then(|r| r) {
                    Ok(()) => {}
                    Err(e) if is_fenced(&e) => {
                        lost.push(*c);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        for c in lost {
            self.lose(
                c,
                "a write was refused: the lease passed to another replica",
            );
        }
        Ok(())
    }

    /// Renews every lease held; a lease lost stops its chain at once.
    async fn renew(&mut self) {
        let held: Vec<(usize, Lease)> = self
            .followers
            .iter()
            .map(|(c, f)| (*c, f.lease.clone()))
            .collect();
        for (c, lease) in held {
            match self.leases.renew(&lease).await {
                Ok(true) => {}
                Ok(false) => self.lose(c, "the lease expired before it was renewed"),
                // The database is unreachable: the lease may still be
                // ours; if it expires meanwhile, the fence refuses our
                // writes and the next renewal finds it lost.
                Err(e) => {
                    tracing::warn!(chain = %self.name(c), error = %with_sources(&e), "cannot renew a lease; retrying next round")
                }
            }
        }
    }

    /// Stops following chain `c` at once: its lease is no longer ours.
    fn lose(&mut self, c: usize, why: &str) {
        if let Some(mut f) = self.followers.remove(&c) {
            f.tasks.abort_all();
            let name = self.name(c);
            self.follow.status.unregister_chain(&name);
            tracing::warn!(chain = %name, epoch = f.lease.epoch, reason = why,
                "lost the lease of a chain: stopped following it");
        }
    }

    /// Beyond `share`, chains are stopped and their leases released, for
    /// the replicas that have fewer to take.
    async fn hand_over(&mut self, share: usize) {
        while self.followers.len() > share {
            let Some((c, f)) = self.followers.pop_last() else {
                return;
            };
            let name = self.name(c);
            tracing::info!(chain = %name, share, "handing a chain over to another replica");
            self.stop_follower(c, f).await;
        }
    }

    /// Takes free or expired leases up to `share`, starting each chain from
    /// its checkpoint.
    async fn take(&mut self, share: usize) -> Result<(), PipelineError> {
        for c in self.chains.clone() {
            if self.followers.len() >= share {
                return Ok(());
            }
            if self.followers.contains_key(&c) {
                continue;
            }
            let chain = &self.follow.config.chains[c];
            let lease = match self.leases.try_acquire(chain.chain_id).await {
                Ok(Some(lease)) => lease,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(chain = %chain.name, error = %with_sources(&e), "cannot take a lease; retrying next round");
                    continue;
                }
            };
            if lease.taken_over {
                telemetry::lease_takeover(&chain.name);
                self.record_unwatched(c, &lease).await;
            }
            tracing::info!(chain = %chain.name, epoch = lease.epoch, takeover = lease.taken_over,
                "took the lease of a chain: following it from its checkpoint");
            let (stop, stop_rx) = watch::channel(false);
            let mut tasks = JoinSet::new();
            self.follow
                .status
                .register_chain(&chain.name, chain.chain_id, chain.stall_after);
            if let Err(e) = self.follow.start(c, stop_rx, &mut tasks).await {
                // Give the chain back at once rather than hold it unfollowed.
                let _ = self.leases.release(&lease).await;
                self.follow.status.unregister_chain(&chain.name);
                return Err(e);
            }
            self.followers.insert(c, Follower { lease, stop, tasks });
        }
        Ok(())
    }

    /// After a takeover: the time nobody followed the chain, as a
    /// monitoring gap, when it was longer than the TTL.
    async fn record_unwatched(&self, c: usize, lease: &Lease) {
        let Some((since, until)) = lease.unwatched else {
            return;
        };
        let unwatched = Duration::from_millis(until.saturating_sub(since));
        if unwatched <= self.leases.ttl() {
            return;
        }
        let chain = &self.follow.config.chains[c];
        let reason = format!(
            "no replica followed the chain for {:.1} s: its lease ran out before another replica took it",
            unwatched.as_secs_f64()
        );
        let (since, until) = (since / 1000, until.div_ceil(1000));
        let store = &self.follow.store;
        let recorded = async {
            store
                .gap_opened(&chain.name, chain.chain_id, since, &reason)
                .await?;
            store.gap_closed(chain.chain_id, until).await
        };
        match recorded.await {
            Ok(()) => {
                tracing::warn!(chain = %chain.name, since, until, "recorded the time nobody followed the chain as a monitoring gap")
            }
            Err(e) => {
                tracing::error!(chain = %chain.name, error = %e, "cannot record the unwatched time as a monitoring gap")
            }
        }
    }

    /// Stops chain `c` (its source drains, its processor writes what it
    /// read) within the shutdown limit, then releases its lease.
    async fn stop_follower(&mut self, c: usize, mut f: Follower) {
        let _ = f.stop.send(true);
        let limit = self.follow.config.shutdown_timeout;
        let drained = tokio::time::timeout(limit, async {
            while let Some(joined) = f.tasks.join_next().await {
                if let Ok(Err(e)) = joined {
                    tracing::warn!(chain = %self.name(c), error = %e, "a chain stopped with an error");
                }
            }
        })
        .await;
        if drained.is_err() {
            f.tasks.abort_all();
        }
        self.follow.status.unregister_chain(&self.name(c));
        if let Err(e) = self.leases.release(&f.lease).await {
            tracing::warn!(chain = %self.name(c), error = %with_sources(&e), "cannot release a lease; it expires by itself");
        }
    }

    /// At shutdown: every chain stopped, every lease released, so that the
    /// other replicas take them at once rather than after the TTL.
    async fn stop_all(&mut self) {
        while let Some((c, f)) = self.followers.pop_first() {
            self.stop_follower(c, f).await;
        }
        self.publish().await;
    }

    /// What `/readyz`, `/metrics` and the heartbeat show of this replica.
    async fn publish(&self) {
        let follows: Vec<String> = self.followers.keys().map(|c| self.name(*c)).collect();
        let stands_by: Vec<String> = self
            .chains
            .iter()
            .filter(|c| !self.followers.contains_key(c))
            .map(|c| self.name(*c))
            .collect();
        let ids: Vec<u64> = self
            .chains
            .iter()
            .map(|c| self.follow.config.chains[*c].chain_id)
            .collect();
        let unheld = match self.leases.unheld(&ids).await {
            Ok(unheld) => self
                .chains
                .iter()
                .filter(|c| unheld.contains(&self.follow.config.chains[**c].chain_id))
                .map(|c| self.name(*c))
                .collect(),
            // Unknown: say so rather than claim every chain is followed.
            Err(_) => stands_by.clone(),
        };
        telemetry::leases_held(follows.len());
        self.follow
            .status
            .set_replica(self.leases.holder(), follows, stands_by, unheld);
    }

    fn name(&self, c: usize) -> String {
        self.follow.config.chains[c].name.clone()
    }
}

/// Whether `e` is a write the lease fence refused.
fn is_fenced(e: &PipelineError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if matches!(
            s.downcast_ref::<StoreError>(),
            Some(StoreError::Fenced { .. })
        ) {
            return true;
        }
        source = s.source();
    }
    false
}
