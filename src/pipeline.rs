//! Wires the stages together; the only module that knows every stage.
//!
//! Per chain: a [`ChainSource`] task sends [`ChainUpdate`]s through a bounded
//! channel to a processor that decodes, detects, classifies and stores them.
//! Only the sources listen for shutdown; when they stop, their senders drop,
//! each processor drains what is queued and ends. No sleeps at exit.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use alloy::primitives::B256;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::classify::{ProtocolModel, Tracker};
use crate::config::Config;
use crate::decode::AbiRegistry;
use crate::detect;
use crate::model::{ChainUpdate, CommittedRange, Evidence, IncidentUpdate};
use crate::notify::Notifier;
use crate::source::{ChainSource, SourceError};
use crate::store::{Batch, Store, StoreError, StoredUpdate};
use crate::telemetry;

/// Blocks remembered for reorg detection, per chain.
pub const WINDOW_BLOCKS: u64 = 128;
/// Chain updates queued between a source and its processor.
const CHANNEL_DEPTH: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("chain {chain}: source stopped")]
    Source {
        chain: String,
        #[source]
        source: SourceError,
    },
    #[error("chain {chain}: cannot record what the chain showed")]
    Store {
        chain: String,
        #[source]
        source: StoreError,
    },
    #[error("tracker snapshot of protocol {protocol} in the store is unreadable")]
    Snapshot {
        protocol: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("email")]
    Notify(#[from] crate::notify::NotifyError),
    #[error("a pipeline task panicked")]
    Panic(#[source] tokio::task::JoinError),
}

/// Runs the monitor until `shutdown` completes, then drains and returns.
pub async fn run(
    config: Config,
    store: Store,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), PipelineError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let config = std::sync::Arc::new(config);
    let mut tasks: JoinSet<Result<(), PipelineError>> = JoinSet::new();
    // Processors wake the sender after committing a transition; when they
    // all end, the sender makes a last pass and ends too.
    let (wake, woken) = mpsc::channel(1);
    if let Some(notifier) = Notifier::new(config.clone(), store.clone())? {
        tasks.spawn(async move { notifier.run(woken).await.map_err(PipelineError::from) });
    }
    for (c, chain) in config.chains.iter().enumerate() {
        let mut processor = Processor::new(config.clone(), c, store.clone()).await?;
        processor.wake = Some(wake.clone());
        if processor.registry.is_empty() {
            tracing::info!(chain = %chain.name, "no rules on this chain; not following it");
            continue;
        }
        let window = store
            .window(chain.chain_id)
            .await
            .map_err(|source| PipelineError::Store {
                chain: chain.name.clone(),
                source,
            })?;
        match window.last() {
            Some(cp) => {
                tracing::info!(chain = %chain.name, checkpoint = cp.number, "resuming from checkpoint")
            }
            None => {
                tracing::info!(chain = %chain.name, start = ?chain.start_block, "first run on this chain")
            }
        }
        let source = ChainSource::new(
            chain,
            processor.registry.addresses(),
            processor.registry.topics(),
            window,
            WINDOW_BLOCKS,
        );
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let name = chain.name.clone();
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            source
                .run(tx, stop)
                .await
                .map_err(|source| PipelineError::Source {
                    chain: name,
                    source,
                })
        });
        tasks.spawn(processor.run(rx));
    }
    drop((stop_rx, wake));
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.map_err(PipelineError::Panic).and_then(|r| r);
        if let Err(e) = outcome {
            // One failing stage stops the rest: nothing is recorded past a gap.
            if result.is_ok() {
                result = Err(e);
            }
            tasks.abort_all();
        }
    }
    result
}

/// What decode → detect → classify made of one committed range.
struct Classified {
    updates: Vec<IncidentUpdate>,
    /// (protocol, block, tracker JSON) for each block where a tracker changed.
    snapshots: Vec<(usize, u64, String)>,
    /// Monitored logs that decoded.
    decoded: u64,
}

/// Decodes, detects, classifies and stores the updates of one chain.
pub struct Processor {
    config: std::sync::Arc<Config>,
    chain: usize,
    registry: AbiRegistry,
    store: Store,
    models: Vec<ProtocolModel>,
    /// Tracker per protocol index (only this chain's protocols).
    trackers: HashMap<usize, Tracker>,
    /// Wakes the mail sender after a transition is committed.
    wake: Option<mpsc::Sender<()>>,
}

impl Processor {
    pub async fn new(
        config: std::sync::Arc<Config>,
        chain: usize,
        store: Store,
    ) -> Result<Self, PipelineError> {
        let registry = AbiRegistry::for_chain(&config, chain);
        let models: Vec<ProtocolModel> = config
            .protocols
            .iter()
            .enumerate()
            .filter(|(_, p)| p.chain == chain)
            .map(|(i, p)| ProtocolModel::new(i, p))
            .collect();
        let mut processor = Processor {
            config,
            chain,
            registry,
            store,
            models,
            trackers: HashMap::new(),
            wake: None,
        };
        processor.load_trackers().await?;
        Ok(processor)
    }

    fn chain_name(&self) -> &str {
        &self.config.chains[self.chain].name
    }

    async fn load_trackers(&mut self) -> Result<(), PipelineError> {
        self.trackers.clear();
        for m in &self.models {
            let json =
                self.store
                    .tracker(&m.name)
                    .await
                    .map_err(|source| PipelineError::Store {
                        chain: self.config.chains[self.chain].name.clone(),
                        source,
                    })?;
            let tracker = match json {
                Some(j) => serde_json::from_str(&j).map_err(|source| PipelineError::Snapshot {
                    protocol: m.name.clone(),
                    source,
                })?,
                None => Tracker::default(),
            };
            self.trackers.insert(m.index, tracker);
        }
        Ok(())
    }

    async fn run(mut self, mut rx: mpsc::Receiver<ChainUpdate>) -> Result<(), PipelineError> {
        while let Some(update) = rx.recv().await {
            self.handle(update).await?;
        }
        Ok(())
    }

    /// Applies one chain update: the reverted side first undoes, then the committed side applies.
    pub async fn handle(&mut self, update: ChainUpdate) -> Result<(), PipelineError> {
        let store_err = |chain: &str| {
            let chain = chain.to_string();
            move |source| PipelineError::Store { chain, source }
        };
        match update {
            ChainUpdate::Reverted { ancestor } => {
                let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
                let chain_id = self.config.chains[self.chain].chain_id;
                self.store
                    .revert(chain_id, &names, ancestor)
                    .await
                    .map_err(store_err(self.chain_name()))?;
                self.load_trackers().await?;
                tracing::info!(chain = %self.chain_name(), ancestor, "reverted history above the common ancestor");
                if let Some(wake) = &self.wake {
                    let _ = wake.try_send(());
                }
            }
            ChainUpdate::Committed(range) => {
                let Classified {
                    updates,
                    snapshots,
                    decoded,
                } = self.classify(&range);
                let chain = &self.config.chains[self.chain];
                let stored: Vec<StoredUpdate> = updates
                    .iter()
                    .map(|u| {
                        let protocol = &self.config.protocols[u.protocol];
                        let opened_at = u.transition.as_ref().map(|t| t.at);
                        StoredUpdate {
                            protocol: &protocol.name,
                            chain: &chain.name,
                            update: u,
                            notify: self.config.email.is_some() && !protocol.responders.is_empty(),
                            planned: opened_at
                                .is_some_and(|at| self.config.in_maintenance(u.protocol, at)),
                        }
                    })
                    .collect();
                let trackers = snapshots
                    .iter()
                    .map(|(p, block, json)| {
                        (
                            self.config.protocols[*p].name.as_str(),
                            *block,
                            json.clone(),
                        )
                    })
                    .collect();
                self.store
                    .commit(Batch {
                        chain_id: chain.chain_id,
                        blocks: &range.blocks,
                        updates: stored,
                        trackers,
                        window_blocks: WINDOW_BLOCKS,
                    })
                    .await
                    .map_err(store_err(&chain.name))?;
                for u in &updates {
                    log_update(&self.config, chain, u);
                }
                telemetry::blocks_processed(&chain.name, range.tip.number + 1 - range.from);
                telemetry::logs_decoded(&chain.name, decoded);
                if updates.iter().any(|u| u.transition.is_some())
                    && let Some(wake) = &self.wake
                {
                    // A full channel already holds a wake-up: nothing is lost.
                    let _ = wake.try_send(());
                }
                tracing::debug!(chain = %chain.name, from = range.from, to = range.tip.number,
                    logs = range.logs.len(), "blocks processed");
            }
        }
        Ok(())
    }

    /// Runs decode → detect → classify over a range. Returns the incident
    /// updates and, per block where a tracker changed, its snapshot.
    fn classify(&mut self, range: &CommittedRange) -> Classified {
        let chain_id = self.config.chains[self.chain].chain_id;
        let mut updates = Vec::new();
        let mut snapshots = Vec::new();
        // Evidence of the current transaction, per protocol, in log order.
        let mut pending: BTreeMap<usize, Vec<Evidence>> = BTreeMap::new();
        let mut current: Option<(u64, B256)> = None;
        let mut changed_in_block: Vec<usize> = Vec::new();
        let mut decoded_count = 0u64;

        for log in &range.logs {
            let Some(decoded) = self.registry.decode(log) else {
                continue;
            };
            let decoded = match decoded {
                Ok(d) => {
                    decoded_count += 1;
                    d
                }
                Err(e) => {
                    telemetry::decode_failed(self.chain_name());
                    tracing::warn!(chain = %self.chain_name(), error = %e, source = %e.source, "log skipped: it does not decode with its ABI");
                    continue;
                }
            };
            let signals = match detect::pause::signals(&self.config, chain_id, &decoded) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(chain = %self.chain_name(), error = %e, "log skipped");
                    continue;
                }
            };
            let position = (
                log.block_number.unwrap_or_default(),
                log.transaction_hash.unwrap_or_default(),
            );
            if current.is_some_and(|c| c != position) {
                let block_changed = current.is_some_and(|c| c.0 != position.0);
                self.flush(&mut pending, &mut updates, &mut changed_in_block);
                if block_changed {
                    self.snapshot(
                        current.map_or(0, |c| c.0),
                        &mut changed_in_block,
                        &mut snapshots,
                    );
                }
            }
            current = Some(position);
            for s in signals {
                pending.entry(s.protocol).or_default().push(s.evidence);
            }
        }
        self.flush(&mut pending, &mut updates, &mut changed_in_block);
        if let Some((block, _)) = current {
            self.snapshot(block, &mut changed_in_block, &mut snapshots);
        }
        Classified {
            updates,
            snapshots,
            decoded: decoded_count,
        }
    }

    fn flush(
        &mut self,
        pending: &mut BTreeMap<usize, Vec<Evidence>>,
        updates: &mut Vec<IncidentUpdate>,
        changed: &mut Vec<usize>,
    ) {
        for (protocol, evidence) in std::mem::take(pending) {
            let Some(model) = self.models.iter().find(|m| m.index == protocol) else {
                continue;
            };
            let tracker = self.trackers.entry(protocol).or_default();
            let before = tracker.clone();
            if let Some(u) = tracker.apply(model, evidence) {
                updates.push(u);
            }
            if *tracker != before && !changed.contains(&protocol) {
                changed.push(protocol);
            }
        }
    }

    fn snapshot(&self, block: u64, changed: &mut Vec<usize>, out: &mut Vec<(usize, u64, String)>) {
        for p in changed.drain(..) {
            if let Some(t) = self.trackers.get(&p)
                && let Ok(json) = serde_json::to_string(t)
            {
                out.push((p, block, json));
            }
        }
    }
}

fn log_update(config: &Config, chain: &crate::config::ChainConfig, u: &IncidentUpdate) {
    let protocol = &config.protocols[u.protocol].name;
    match &u.transition {
        Some(t) => {
            telemetry::transition(protocol, t.kind.as_str());
            tracing::info!(
            protocol = %protocol, chain = %chain.name, incident = %u.key,
            transition = t.kind.as_str(), from = %t.from, to = %t.to, block = t.block_number,
            "incident transition"
            )
        }
        None => tracing::info!(
            protocol = %protocol, chain = %chain.name, incident = %u.key,
            evidence = u.evidence.len(), "evidence added to open incident"
        ),
    }
}
