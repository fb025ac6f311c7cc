//! The per-chain processor: decode → detect → classify → store.
//!
//! Within a committed range, logs and call outcomes are taken in chain order
//! and applied one transaction at a time; at the end of each block the
//! revert-spike windows are closed; at the tip the probe answers are
//! applied. Tracker snapshots are written per block in which they changed, so
//! a reorg restores the classifier exactly.
//!
//! Following a chain, a range is written on its own task while the next
//! one is classified; writes stay in order, and a range counts as
//! processed (status, logs, the sender) once its write has landed.

mod classify;
mod undo;
mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use alloy::primitives::Address;
use alloy::rpc::types::Log;
use tokio::sync::mpsc;

use super::PipelineError;
use crate::classify::{ProtocolModel, Tracker};
use crate::config::Config;
use crate::decode::AbiRegistry;
use crate::detect;
use crate::detect::revert_spike::SpikeWindow;
use crate::model::{BlockRef, CallOutcome, ChainUpdate, IncidentUpdate, Scope};
use crate::status::{ProtocolStatus, Status};
use crate::store::Store;
use undo::SpikeHistory;
use writer::{Prepared, Writing};

/// What a processor is for.
pub enum Mode {
    /// Following the chain: it wakes the mail sender after a transition is
    /// committed and publishes the protocols' states to `status`.
    Live {
        wake: mpsc::Sender<()>,
        status: Status,
    },
    /// Rebuilding history: trackers start operational, nothing but the
    /// history is written, nobody is mailed, nothing is published.
    Backfill,
}

/// Decodes, detects, classifies and stores the updates of one chain.
pub struct Processor {
    config: Arc<Config>,
    chain: usize,
    registry: AbiRegistry,
    store: Store,
    models: Vec<ProtocolModel>,
    /// Tracker per protocol index (only this chain's protocols).
    trackers: HashMap<usize, Tracker>,
    /// (protocol, contract) pairs watching each address.
    watchers: HashMap<Address, Vec<(usize, usize)>>,
    /// Revert-spike windows per (protocol, contract).
    spikes: HashMap<(usize, usize), SpikeWindow>,
    /// The spike windows as of recent blocks, for a reorg to return to.
    spike_history: SpikeHistory,
    /// Probes that have answered at least once in this run.
    probed: HashSet<(usize, usize)>,
    /// (protocol, rule) whose complete set has been read in this run.
    sets_read: HashSet<(usize, usize)>,
    /// Wakes the mail sender after a transition is committed (live only).
    wake: Option<mpsc::Sender<()>>,
    backfill: bool,
    status: Status,
}

impl Processor {
    pub async fn new(
        config: Arc<Config>,
        chain: usize,
        store: Store,
        mode: Mode,
    ) -> Result<Self, PipelineError> {
        let registry = AbiRegistry::for_chain(&config, chain);
        let mut models = Vec::new();
        let mut watchers: HashMap<Address, Vec<(usize, usize)>> = HashMap::new();
        let mut spikes = HashMap::new();
        for (i, p) in config
            .protocols
            .iter()
            .enumerate()
            .filter(|(_, p)| p.chain == chain)
        {
            models.push(ProtocolModel::new(i, p));
            for (c, contract) in p.contracts.iter().enumerate() {
                watchers.entry(contract.address).or_default().push((i, c));
                spikes.insert((i, c), SpikeWindow::new(contract.revert_spike));
            }
        }
        let keep = config.chains[chain].reorg_rescan_blocks;
        let (wake, status, backfill) = match mode {
            Mode::Live { wake, status } => (Some(wake), status, false),
            Mode::Backfill => (None, Status::default(), true),
        };
        let mut processor = Processor {
            config,
            chain,
            registry,
            store,
            models,
            trackers: HashMap::new(),
            watchers,
            spike_history: SpikeHistory::new(&spikes, keep),
            spikes,
            probed: HashSet::new(),
            sets_read: HashSet::new(),
            wake,
            backfill,
            status,
        };
        if backfill {
            processor.trackers = processor
                .models
                .iter()
                .map(|m| (m.index, Tracker::default()))
                .collect();
        } else {
            processor.load_trackers().await?;
            processor.publish();
        }
        Ok(processor)
    }

    /// The ABIs of this chain's contracts: what the source must read.
    pub fn registry(&self) -> &AbiRegistry {
        &self.registry
    }

    fn chain_name(&self) -> &str {
        &self.config.chains[self.chain].name
    }

    fn chain_id(&self) -> u64 {
        self.config.chains[self.chain].chain_id
    }

    fn store_error(&self) -> impl FnOnce(crate::store::StoreError) -> PipelineError + use<> {
        let chain = self.chain_name().to_string();
        move |source| PipelineError::Store { chain, source }
    }

    /// A store operation of this chain's, retried while the store is busy,
    /// locked or full (reported on `/readyz`); other errors end the chain.
    async fn stored<T, F, Fut>(&self, operation: &'static str, op: F) -> Result<T, PipelineError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, crate::store::StoreError>>,
    {
        let who = writer_name(self.chain_name());
        crate::store::retry::until_stored(
            operation,
            |reason| self.status.store_problem(&who, reason),
            op,
        )
        .await
        .map_err(self.store_error())
    }

    async fn load_trackers(&mut self) -> Result<(), PipelineError> {
        self.trackers.clear();
        for m in &self.models {
            let json = self
                .stored("read tracker", || self.store.tracker(&m.name))
                .await?;
            let tracker = match json {
                Some(j) => serde_json::from_str(&j).map_err(|source| PipelineError::Snapshot {
                    protocol: m.name.clone(),
                    source,
                })?,
                None => Tracker::default(),
            };
            self.trackers.insert(m.index, tracker);
        }
        // A spike the history shows as open must still be able to clear.
        for ((p, c), window) in &mut self.spikes {
            let name = &self.config.protocols[*p].contracts[*c].name;
            let scope = Scope::keyed(name.clone(), detect::revert_spike::SCOPE_KEY);
            if self
                .trackers
                .get(p)
                .is_some_and(|t| t.halted.contains(&scope))
            {
                window.resume_spiking();
            }
        }
        Ok(())
    }

    /// Handles the source's updates in order, see [`Self::handle`].
    pub(super) async fn run(
        mut self,
        mut rx: mpsc::Receiver<ChainUpdate>,
    ) -> Result<(), PipelineError> {
        let mut writing: Option<Writing> = None;
        loop {
            let update = match writing.as_mut() {
                None => rx.recv().await,
                Some(w) => tokio::select! {
                    biased;
                    done = &mut w.task => {
                        if let Some(w) = writing.take() {
                            self.landed(w.range, done)?;
                        }
                        continue;
                    }
                    update = rx.recv() => update,
                },
            };
            let Some(update) = update else { break };
            self.handle(update, &mut writing).await?;
        }
        self.land(&mut writing).await
    }

    /// Applies one chain update. A committed range is classified while the
    /// range before it is still being written (`writing`), then written on
    /// its own task; ranges are written in order, and the status, the logs
    /// and the sender learn of a range once it is stored. Any other update
    /// first lands the write in flight: a revert undoes only what is stored.
    async fn handle(
        &mut self,
        update: ChainUpdate,
        writing: &mut Option<Writing>,
    ) -> Result<(), PipelineError> {
        if !matches!(update, ChainUpdate::Committed(_)) {
            self.land(writing).await?;
        }
        match update {
            ChainUpdate::Committed(range) => {
                let prepared = self.prepare(range);
                self.land(writing).await?;
                *writing = Some(self.write(prepared));
                // The write was spawned into this worker's LIFO slot,
                // which other workers do not steal: without a yield it
                // would wait until the next range's classification
                // (milliseconds of CPU when far behind) is done.
                tokio::task::yield_now().await;
            }
            // The one undo path: the stored history and trackers, and the
            // spike windows as of the ancestor.
            ChainUpdate::Reverted { ancestor } => {
                let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
                self.stored("revert", || {
                    self.store.revert(self.chain_id(), &names, ancestor)
                })
                .await?;
                self.spikes = self.spike_history.restore(ancestor);
                self.load_trackers().await?;
                self.publish();
                tracing::info!(chain = %self.chain_name(), ancestor, "reverted history above the common ancestor");
                self.wake_sender();
            }
            ChainUpdate::Stalled { head, since } => self.chain_state(head, since, true).await?,
            ChainUpdate::Resumed { head, at } => self.chain_state(head, at, false).await?,
            ChainUpdate::GapOpened { since, reason } => {
                self.stored("open gap", || {
                    self.store
                        .gap_opened(self.chain_name(), self.chain_id(), since, &reason)
                })
                .await?;
            }
            ChainUpdate::DeepReorg { since, reason } => {
                let notify = self.config.email.is_some() && !self.models.is_empty();
                self.stored("record deep reorg", || {
                    self.store.deep_reorg(
                        self.chain_name(),
                        self.chain_id(),
                        since,
                        &reason,
                        notify,
                    )
                })
                .await?;
                self.wake_sender();
            }
            ChainUpdate::GapClosed { at } => {
                self.stored("close gap", || self.store.gap_closed(self.chain_id(), at))
                    .await?;
            }
        }
        Ok(())
    }

    /// The whole chain stalled (`halted`) or resumed: every protocol on it.
    async fn chain_state(
        &mut self,
        head: BlockRef,
        wall_time: u64,
        halted: bool,
    ) -> Result<(), PipelineError> {
        let started = std::time::Instant::now();
        let classified = self.classify_chain_state(head, wall_time, halted);
        let at = head.number;
        self.store(Prepared::new(
            at,
            at,
            Vec::new(),
            [0; 3],
            classified,
            started,
        ))
        .await
    }

    /// Rebuilds the history of blocks `from..=to` from their logs and calls
    /// (a backfill: no window, no checkpoint, nobody mailed).
    pub async fn apply_backfill(
        &mut self,
        from: u64,
        to: u64,
        logs: &[Log],
        calls: &[CallOutcome],
        times: (u64, u64),
    ) -> Result<(), PipelineError> {
        let started = std::time::Instant::now();
        let classified = self.classify(from, to, logs, calls, &[], &[]);
        let read = [logs.len(), calls.len(), 0];
        self.store(
            Prepared::new(from, to, Vec::new(), read, classified, started)
                .observing(times.0, times.1),
        )
        .await
    }

    fn wake_sender(&self) {
        if let Some(wake) = &self.wake {
            // A full channel already holds a wake-up: nothing is lost.
            let _ = wake.try_send(());
        }
    }

    /// Publishes every protocol's current state to the shared status.
    pub(super) fn publish(&self) {
        for s in self.statuses() {
            self.status.set_protocol(s);
        }
    }

    /// Each protocol's state as classified so far.
    fn statuses(&self) -> Vec<ProtocolStatus> {
        let chain = self.chain_name();
        let untouched = Tracker::default();
        self.models
            .iter()
            .map(|m| {
                let tracker = self.trackers.get(&m.index).unwrap_or(&untouched);
                ProtocolStatus {
                    protocol: m.name.clone(),
                    chain: chain.to_string(),
                    state: tracker.state(m),
                    halted_scopes: tracker.halted.iter().map(|s| s.to_string()).collect(),
                    open_incident: tracker.open.as_ref().map(|o| o.key.clone()),
                }
            })
            .collect()
    }

    /// What to publish once `updates` are stored: the states now, unless
    /// nothing changed or this is a backfill (which publishes nothing).
    fn statuses_after(&self, updates: &[IncidentUpdate]) -> Vec<ProtocolStatus> {
        if self.backfill || updates.is_empty() {
            Vec::new()
        } else {
            self.statuses()
        }
    }
}

/// Who a chain's store problems are reported as on `/readyz`.
fn writer_name(chain: &str) -> String {
    format!("chain {chain} writer")
}

#[cfg(test)]
mod set_tests;
#[cfg(test)]
mod tests;
