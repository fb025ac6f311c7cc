//! What the running pipeline knows right now, for health checks and the API:
//! per chain, when the head was last read and how far processing is; per
//! protocol, its state and halted scopes. Sources and processors write it,
//! the HTTP surface reads it. Short critical sections only.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::model::ProtocolState;

#[derive(Debug, Clone, Default)]
pub struct ChainStatus {
    pub chain_id: u64,
    pub stall_after: Duration,
    /// The latest head number read, and when.
    pub head: Option<(u64, Instant)>,
    /// The last block processed (the checkpoint) and its block time.
    pub processed: Option<(u64, u64)>,
    pub last_error: Option<String>,
    /// Problems that hold until they are mended: an endpoint that serves
    /// another chain, a deep reorg being re-read.
    pub problems: Vec<String>,
    /// The deep reorg being re-read, if any (also in `problems`).
    pub reorg: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProtocolStatus {
    pub protocol: String,
    pub chain: String,
    pub state: ProtocolState,
    /// Scopes halted now: `pool`, `configurator:0x…`.
    pub halted_scopes: Vec<String>,
    /// The key of the open incident, if any.
    pub open_incident: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    chains: BTreeMap<String, ChainStatus>,
    protocols: BTreeMap<String, ProtocolStatus>,
    api_addr: Option<std::net::SocketAddr>,
    /// Store operations failing now, by who is retrying them.
    store_problems: BTreeMap<String, String>,
    /// On a shared history: this replica's part.
    replica: Option<ReplicaStatus>,
}

/// A replica's part of the chains: those it follows, those it stands by
/// for, and those no replica holds the lease of now.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub name: String,
    pub follows: Vec<String>,
    pub stands_by: Vec<String>,
    pub unheld: Vec<String>,
    /// Before its first round: it does not know its part yet.
    #[serde(skip)]
    pub starting: bool,
}

/// Shared, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Status(Arc<RwLock<Inner>>);

impl Status {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data: keep serving it.
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register_chain(&self, name: &str, chain_id: u64, stall_after: Duration) {
        self.write().chains.insert(
            name.to_string(),
            ChainStatus {
                chain_id,
                stall_after,
                ..Default::default()
            },
        );
    }

    /// `chain` is no longer followed here (a replica handed it over or lost
    /// its lease): it is no longer this process's to be ready for.
    pub fn unregister_chain(&self, name: &str) {
        self.write().chains.remove(name);
    }

    /// This replica's part of the chains (see [`ReplicaStatus`]).
    pub fn set_replica(
        &self,
        name: &str,
        follows: Vec<String>,
        stands_by: Vec<String>,
        unheld: Vec<String>,
    ) {
        self.write().replica = Some(ReplicaStatus {
            name: name.to_string(),
            follows,
            stands_by,
            unheld,
            starting: false,
        });
    }

    /// A replica that has not taken its part of `chains` yet: not ready,
    /// and no chain counts as followed (the heartbeat waits).
    pub fn replica_starting(&self, name: &str, chains: Vec<String>) {
        self.write().replica = Some(ReplicaStatus {
            name: name.to_string(),
            follows: Vec::new(),
            stands_by: chains.clone(),
            unheld: chains,
            starting: true,
        });
    }

    /// This replica's part, on a shared history.
    pub fn replica(&self) -> Option<ReplicaStatus> {
        self.read().replica.clone()
    }

    /// The newest head of any endpoint of `chain`. Only a head that moved
    /// counts as fresh: a frozen head read again and again is a stall.
    pub fn head_seen(&self, chain: &str, number: u64) {
        if let Some(c) = self.write().chains.get_mut(chain) {
            if c.head.is_none_or(|(n, _)| n != number) {
                c.head = Some((number, Instant::now()));
            }
            c.last_error = None;
            crate::telemetry::chain_position(chain, Some(number), c.processed);
        }
    }

    pub fn chain_error(&self, chain: &str, error: String) {
        if let Some(c) = self.write().chains.get_mut(chain) {
            c.last_error = Some(error);
        }
    }

    /// An endpoint of `chain` is unusable for good (`reason` says why).
    pub fn endpoint_broken(&self, chain: &str, reason: String) {
        if let Some(c) = self.write().chains.get_mut(chain)
            && !c.problems.contains(&reason)
        {
            c.problems.push(reason);
        }
    }

    /// Sets or clears the deep reorg `chain` is re-reading.
    pub fn set_problem(&self, chain: &str, reorg: Option<String>) {
        if let Some(c) = self.write().chains.get_mut(chain) {
            c.reorg = reorg;
        }
    }

    pub fn processed(&self, chain: &str, number: u64, block_time: u64) {
        if let Some(c) = self.write().chains.get_mut(chain) {
            c.processed = Some((number, block_time));
            crate::telemetry::chain_position(chain, c.head.map(|h| h.0), c.processed);
        }
    }

    pub fn set_protocol(&self, status: ProtocolStatus) {
        crate::telemetry::incidents_open(&status.protocol, status.state);
        self.write()
            .protocols
            .insert(status.protocol.clone(), status);
    }

    /// `who` (a chain's writer, the mail sender) cannot reach the store
    /// and is retrying (`Some(reason)`), or can again (`None`).
    pub fn store_problem(&self, who: &str, reason: Option<String>) {
        let mut inner = self.write();
        match reason {
            Some(r) => inner.store_problems.insert(who.to_string(), r),
            None => inner.store_problems.remove(who),
        };
    }

    /// Every store operation failing now: `who: reason`.
    pub fn store_problems(&self) -> Vec<String> {
        self.read()
            .store_problems
            .iter()
            .map(|(who, reason)| format!("{who}: {reason}"))
            .collect()
    }

    pub fn set_api_addr(&self, addr: std::net::SocketAddr) {
        self.write().api_addr = Some(addr);
    }

    /// Where the HTTP surface listens, once bound.
    pub fn api_addr(&self) -> Option<std::net::SocketAddr> {
        self.read().api_addr
    }

    pub fn chains(&self) -> BTreeMap<String, ChainStatus> {
        self.read().chains.clone()
    }

    pub fn protocols(&self) -> Vec<ProtocolStatus> {
        self.read().protocols.values().cloned().collect()
    }

    /// Why each chain is not ready: no head moved within its stall limit, an
    /// endpoint serves another chain, or a deep reorg is being re-read.
    pub fn unready_chains(&self) -> Vec<(String, String)> {
        let now = Instant::now();
        self.read()
            .chains
            .iter()
            .filter_map(|(name, c)| {
                let stale = match c.head {
                    None => Some("no head read yet".to_string()),
                    Some((n, at)) if now.duration_since(at) > c.stall_after => Some(format!(
                        "head {n} has not moved for {} s (limit {} s)",
                        now.duration_since(at).as_secs(),
                        c.stall_after.as_secs()
                    )),
                    Some(_) => None,
                };
                let why: Vec<String> = stale
                    .into_iter()
                    .chain(c.problems.iter().cloned())
                    .chain(c.reorg.clone())
                    .collect();
                if why.is_empty() {
                    return None;
                }
                let why = why.join("; ");
                let why = match &c.last_error {
                    Some(e) => format!("{why}; last error: {e}"),
                    None => why,
                };
                Some((name.clone(), why))
            })
            .collect()
    }
}
