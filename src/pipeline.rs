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
use alloy::rpc::types::Log;

use crate::model::{BlockRef, ChainUpdate, Evidence, IncidentUpdate};
use crate::notify::Notifier;
use crate::source::{ChainSource, LogFetcher, SourceError};
use crate::status::{ProtocolStatus, Status};
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
    #[error("HTTP surface on {addr}")]
    Api {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("no chain named `{0}` in the config")]
    UnknownChain(String),
    #[error("a pipeline task panicked")]
    Panic(#[source] tokio::task::JoinError),
}

/// Runs the monitor until `shutdown` completes, then drains and returns.
pub async fn run(
    config: Config,
    store: Store,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), PipelineError> {
    run_with(config, store, Status::default(), shutdown).await
}

/// [`run`], reporting into `status` (which the caller may also read).
pub async fn run_with(
    config: Config,
    store: Store,
    status: Status,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), PipelineError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let config = std::sync::Arc::new(config);
    let mut tasks: JoinSet<Result<(), PipelineError>> = JoinSet::new();
    // The HTTP surface stops with the sources: it answers until shutdown.
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .map_err(|source| PipelineError::Api {
            addr: config.api.listen,
            source,
        })?;
    if let Ok(addr) = listener.local_addr() {
        status.set_api_addr(addr);
        tracing::info!(%addr, "HTTP surface listening");
    }
    let app = crate::api::router(crate::api::AppState::new(
        config.clone(),
        store.clone(),
        status.clone(),
    ));
    let mut api_stop = stop_rx.clone();
    let addr = config.api.listen;
    tasks.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = api_stop.wait_for(|stop| *stop).await;
            })
            .await
            .map_err(|source| PipelineError::Api { addr, source })
    });
    // Processors wake the sender after committing a transition; when they
    // all end, the sender makes a last pass and ends too.
    let (wake, woken) = mpsc::channel(1);
    if let Some(notifier) = Notifier::new(config.clone(), store.clone())? {
        tasks.spawn(async move { notifier.run(woken).await.map_err(PipelineError::from) });
    }
    for (c, chain) in config.chains.iter().enumerate() {
        status.register_chain(&chain.name, chain.chain_id, chain.stall_after);
        let mut processor = Processor::new(config.clone(), c, store.clone()).await?;
        processor.wake = Some(wake.clone());
        processor.status = status.clone();
        processor.publish();
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
        )
        .with_status(status.clone());
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
    /// Rebuilding history: trackers start operational, nothing but the
    /// history is written, nobody is mailed.
    backfill: bool,
    status: Status,
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
            backfill: false,
            status: Status::default(),
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
                self.publish();
                tracing::info!(chain = %self.chain_name(), ancestor, "reverted history above the common ancestor");
                if let Some(wake) = &self.wake {
                    let _ = wake.try_send(());
                }
            }
            ChainUpdate::Committed(range) => {
                self.apply(range.from, range.tip.number, &range.logs, &range.blocks)
                    .await?;
            }
        }
        Ok(())
    }

    /// Decodes, detects, classifies and stores the logs of blocks `from..=to`.
    /// `blocks` become the new window and checkpoint (empty in a backfill).
    pub async fn apply(
        &mut self,
        from: u64,
        to: u64,
        logs: &[Log],
        blocks: &[BlockRef],
    ) -> Result<(), PipelineError> {
        let Classified {
            updates,
            snapshots,
            decoded,
        } = self.classify(logs);
        let chain = &self.config.chains[self.chain];
        let live = !self.backfill;
        let stored: Vec<StoredUpdate> = updates
            .iter()
            .map(|u| {
                let protocol = &self.config.protocols[u.protocol];
                let opened_at = u.transition.as_ref().map(|t| t.at);
                StoredUpdate {
                    protocol: &protocol.name,
                    chain: &chain.name,
                    update: u,
                    // History rebuilt by a backfill pages nobody.
                    notify: live && self.config.email.is_some() && !protocol.responders.is_empty(),
                    planned: opened_at.is_some_and(|at| self.config.in_maintenance(u.protocol, at)),
                }
            })
            .collect();
        let trackers = if live {
            snapshots
                .iter()
                .map(|(p, block, json)| {
                    (
                        self.config.protocols[*p].name.as_str(),
                        *block,
                        json.clone(),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        self.store
            .commit(Batch {
                chain_id: chain.chain_id,
                blocks: if live { blocks } else { &[] },
                updates: stored,
                trackers,
                window_blocks: WINDOW_BLOCKS,
            })
            .await
            .map_err(|source| PipelineError::Store {
                chain: chain.name.clone(),
                source,
            })?;
        for u in &updates {
            log_update(&self.config, chain, u);
        }
        telemetry::blocks_processed(&chain.name, to + 1 - from);
        if let Some(tip) = blocks.iter().max_by_key(|b| b.number)
            && live
        {
            self.status
                .processed(&chain.name, tip.number, tip.timestamp);
        }
        if live && !updates.is_empty() {
            self.publish();
        }
        telemetry::logs_decoded(&chain.name, decoded);
        if updates.iter().any(|u| u.transition.is_some())
            && let Some(wake) = &self.wake
        {
            // A full channel already holds a wake-up: nothing is lost.
            let _ = wake.try_send(());
        }
        tracing::debug!(chain = %chain.name, from, to, logs = logs.len(), "blocks processed");
        Ok(())
    }

    /// Runs decode → detect → classify over a range. Returns the incident
    /// updates and, per block where a tracker changed, its snapshot.
    fn classify(&mut self, logs: &[Log]) -> Classified {
        let chain_id = self.config.chains[self.chain].chain_id;
        let mut updates = Vec::new();
        let mut snapshots = Vec::new();
        // Evidence of the current transaction, per protocol, in log order.
        let mut pending: BTreeMap<usize, Vec<Evidence>> = BTreeMap::new();
        let mut current: Option<(u64, B256)> = None;
        let mut changed_in_block: Vec<usize> = Vec::new();
        let mut decoded_count = 0u64;

        for log in logs {
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
                let halts = s.evidence.changes.iter().any(|c| c.halted);
                telemetry::signal(if halts { "halt" } else { "resume" });
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

    /// Publishes every protocol's current state to the shared status.
    fn publish(&self) {
        let chain = &self.config.chains[self.chain].name;
        for m in &self.models {
            let tracker = self.trackers.get(&m.index).cloned().unwrap_or_default();
            self.status.set_protocol(ProtocolStatus {
                protocol: m.name.clone(),
                chain: chain.clone(),
                state: tracker.state(m),
                halted_scopes: tracker.halted.iter().map(|s| s.to_string()).collect(),
                open_incident: tracker.open.map(|o| o.key),
            });
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

/// How far a backfill is, for progress lines and the final summary.
#[derive(Debug, Clone, Default)]
pub struct BackfillProgress {
    pub done_blocks: u64,
    pub total_blocks: u64,
    pub logs: u64,
    pub elapsed: std::time::Duration,
    /// Time the pipeline spent waiting for the node's answers.
    pub node_wait: std::time::Duration,
}

impl BackfillProgress {
    pub fn blocks_per_second(&self) -> f64 {
        self.done_blocks as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn eta(&self) -> std::time::Duration {
        let left = self.total_blocks.saturating_sub(self.done_blocks) as f64;
        std::time::Duration::from_secs_f64(left / self.blocks_per_second().max(1e-9))
    }
}

/// Ranges of a backfill being read at once.
const BACKFILL_IN_FLIGHT: usize = 4;

/// Rebuilds the halt history of `from..=to` on chain `chain_name` through the
/// same decode → detect → classify → store path as `run`. Incidents, evidence
/// and transitions are keyed by chain data, so a re-run, or a range `run`
/// already saw, adds nothing. Trackers start operational at `from`.
pub async fn backfill(
    config: Config,
    store: Store,
    chain_name: &str,
    from: u64,
    to: u64,
    mut progress: impl FnMut(&BackfillProgress),
) -> Result<BackfillProgress, PipelineError> {
    use futures::StreamExt;
    let chain = config
        .chains
        .iter()
        .position(|c| c.name == chain_name)
        .ok_or_else(|| PipelineError::UnknownChain(chain_name.to_string()))?;
    let config = std::sync::Arc::new(config);
    let mut processor = Processor::new(config.clone(), chain, store).await?;
    processor.backfill = true;
    processor
        .trackers
        .values_mut()
        .for_each(|t| *t = Tracker::default());
    let source_err = |source| PipelineError::Source {
        chain: chain_name.to_string(),
        source,
    };
    let fetcher = LogFetcher::connect(
        &config.chains[chain],
        processor.registry.addresses(),
        processor.registry.topics(),
    )
    .await
    .map_err(source_err)?;
    let fetcher = &fetcher;
    let ranges = futures::stream::unfold(from, move |next| async move {
        (next <= to).then(|| {
            let end = to.min(next.saturating_add(fetcher.chunk() - 1));
            ((next, end), end + 1)
        })
    });
    let results = ranges
        .map(|(a, b)| async move { (a, b, fetcher.fetch(a, b).await) })
        .buffered(BACKFILL_IN_FLIGHT);
    let mut results = std::pin::pin!(results);
    let started = std::time::Instant::now();
    let mut state = BackfillProgress {
        total_blocks: to.saturating_sub(from) + 1,
        ..Default::default()
    };
    loop {
        let waiting = std::time::Instant::now();
        let Some((a, b, logs)) = results.next().await else {
            break;
        };
        state.node_wait += waiting.elapsed();
        let logs = logs.map_err(source_err)?;
        processor.apply(a, b, &logs, &[]).await?;
        state.done_blocks += b - a + 1;
        state.logs += logs.len() as u64;
        state.elapsed = started.elapsed();
        progress(&state);
    }
    state.elapsed = started.elapsed();
    Ok(state)
}
