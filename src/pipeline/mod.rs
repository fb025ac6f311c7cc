//! Wires the stages together; the only module that knows every stage.
//!
//! Per chain: a [`ChainSource`] task sends [`ChainUpdate`](crate::model::ChainUpdate)s through a bounded
//! channel to a processor that decodes, detects, classifies and stores them.
//! Only the sources listen for shutdown; when they stop, their senders drop,
//! each processor drains what is queued and ends. No sleeps at exit.

mod backfill;
mod follow;
mod processor;
mod replica;

use std::future::Future;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

pub use backfill::{BackfillProgress, backfill};
pub use processor::{Mode, Processor};

use crate::config::Config;
use crate::notify::Notifier;
use crate::source::SourceError;
use crate::status::Status;
use crate::store::{Store, StoreError};
use follow::Follow;

/// Blocks remembered for reorg detection, per chain.
pub const WINDOW_BLOCKS: u64 = 128;
/// How often the store's WAL is checkpointed in the background.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
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
    #[error("chain leases")]
    Leases(#[source] StoreError),
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
    // On a shared (PostgreSQL) history this process is one replica: its
    // writes of a chain are fenced by its lease of that chain.
    let replica = store
        .leases(&config.store)
        .await
        .map_err(PipelineError::Leases)?;
    let store = match &replica {
        Some(leases) => store.fenced_by(leases.clone()),
        None => store,
    };
    // Every chain that will be followed is known to /readyz before the HTTP
    // surface answers: not ready until each has read a head. A replica
    // registers the chains it follows as it takes them.
    match &replica {
        None => {
            for (c, chain) in config.chains.iter().enumerate() {
                if config.follows(c) {
                    status.register_chain(&chain.name, chain.chain_id, chain.stall_after);
                }
            }
        }
        Some(leases) => {
            let chains = (0..config.chains.len())
                .filter(|c| config.follows(*c))
                .map(|c| config.chains[c].name.clone())
                .collect();
            status.replica_starting(leases.holder(), chains);
        }
    }
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
    let api_stop = stop_rx.clone();
    let addr = config.api.listen;
    tasks.spawn(async move {
        crate::api::serve::serve(listener, app, api_stop)
            .await
            .map_err(|source| PipelineError::Api { addr, source })
    });
    // WAL checkpoints in the background, so that no commit pays for one.
    let mut checkpoint_stop = stop_rx.clone();
    let checkpointer = store.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Warned once per outage (the store reports it on /readyz), not
        // on every tick.
        let mut failing = false;
        loop {
            tokio::select! {
                _ = checkpoint_stop.wait_for(|stop| *stop) => return Ok(()),
                _ = tick.tick() => {}
            }
            match checkpointer.checkpoint().await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "background WAL checkpoint failed; commits will checkpoint");
                }
                Err(e) => tracing::debug!(error = %e, "background WAL checkpoint failed again"),
            }
        }
    });
    // Processors wake the sender after committing a transition; when they
    // all end, the sender makes a last pass and ends too.
    let (wake, woken) = mpsc::channel(1);
    if let Some(notifier) = Notifier::new(config.clone(), store.clone(), status.clone())? {
        tasks.spawn(async move { notifier.run(woken).await.map_err(PipelineError::from) });
    }
    let follow = Follow {
        config: config.clone(),
        store: store.clone(),
        status: status.clone(),
        wake: wake.clone(),
    };
    match replica {
        // Replicas share the history: a chain is followed while this
        // replica holds its lease.
        Some(leases) => {
            let stop = stop_rx.clone();
            tasks.spawn(replica::run(follow, leases, stop));
        }
        None => {
            for c in (0..config.chains.len()).filter(|c| config.follows(*c)) {
                follow.start(c, stop_rx.clone(), &mut tasks).await?;
            }
            // Its wake-up sender: the mail sender ends once the processors have.
            drop(follow);
        }
    }
    for chain in (0..config.chains.len()).filter(|c| !config.follows(*c)) {
        let name = &config.chains[chain].name;
        tracing::info!(chain = %name, "no protocol on this chain; not following it");
    }
    if config.anchor.is_some() {
        let (config, store, status, stop) = (
            config.clone(),
            store.clone(),
            status.clone(),
            stop_rx.clone(),
        );
        tasks.spawn(async move {
            crate::anchor::run(config, store, status, stop).await;
            Ok(())
        });
    }
    if config.heartbeat.is_some() {
        let (config, status, stop) = (config.clone(), status.clone(), stop_rx.clone());
        tasks.spawn(async move {
            crate::heartbeat::run(config, status, stop).await;
            Ok(())
        });
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
    if result.is_ok() {
        crate::anchor::at_stop(&config, &store, &status).await;
    }
    result
}
