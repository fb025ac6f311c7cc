//! Follows one chain over JSON-RPC and turns it into [`ChainUpdate`]s.
//!
//! The source keeps a window of recent blocks (number and hash); the newest
//! is the checkpoint. Each round reads the blocks after the checkpoint up to
//! `head - confirmations` from the healthiest endpoint (`endpoints`) and
//! commits them; a block that cannot be fully read is read again, never
//! skipped.
//!
//! It believes hashes, not heights. A head below the checkpoint, a header
//! the node does not have, or an empty log answer for a block whose bloom
//! says it holds monitored logs means the endpoint is behind: it is demoted
//! and asked again later, and nothing is reverted. A reorg is a block of the
//! window whose hash is no longer the canonical one at its height, read from
//! an endpoint whose head is at or above it; the source then walks the
//! window back to the newest block still canonical and emits
//! [`ChainUpdate::Reverted`] before committing the new branch. A reorg
//! deeper than the window reverts and re-reads `reorg_rescan_blocks` below
//! the checkpoint, loudly.
//!
//! Near the head every header is read and the links checked; a block pushed
//! over ws (`newHeads`) needs no header read, and its logs are read by its
//! hash. Calls into monitored contracts (failed transactions, revert spikes)
//! come from every block's body and receipts (or call traces) near the
//! head, and from `trace_filter` over whole ranges further behind, where
//! the node serves it. A failed call whose revert says "paused" is traced
//! to the contract that raised it (`attribution`).

mod attribution;
mod blocks;
mod calls;
mod endpoints;
mod errors;
mod health;
mod logs;
mod replay;
mod step;
mod throttle;
mod traces;
mod window;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

pub use errors::{ErrorClass, classify_text};
pub use logs::{Fetched, LogFetcher};

use crate::config::ChainConfig;
use crate::model::{BlockRef, ChainUpdate};
use crate::telemetry;
use blocks::Block;
use endpoints::Endpoints;
use health::{ChainHealth, HealthEvent};
use window::Window;

/// Blocks per `eth_getLogs` call while catching up.
const MAX_RANGE_BLOCKS: u64 = 2_000;
/// Blocks per step when every block's transactions are read.
const MAX_FULL_RANGE_BLOCKS: u64 = 100;
/// Blocks fetched at once.
const BLOCKS_IN_FLIGHT: usize = 8;
/// Ranges at most this long are read header by header and link-checked.
const NEAR_HEAD_BLOCKS: u64 = 16;
/// A head read this recently is used again while blocks below it are still
/// unread: catching up from a remote node, an `eth_blockNumber` round trip
/// per range would double the requests' latency.
const HEAD_REUSE: Duration = Duration::from_secs(1);
/// How long the round in hand may still take once shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// A head read that takes longer is a hung endpoint (a silent WebSocket).
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Reads of a block whose bloom matches but whose logs answer is empty,
/// before the answer is believed (a bloom's false positive).
const BLOOM_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The detail is the transport's message with URLs redacted, so an API
    /// key in a URL never reaches a log line.
    #[error("{method} on {endpoint} failed: {detail}")]
    Rpc {
        endpoint: String,
        method: &'static str,
        class: ErrorClass,
        detail: String,
    },
    #[error("block {number} is not available from {endpoint} yet")]
    MissingBlock { endpoint: String, number: u64 },
    #[error("{endpoint} is behind: its head {head} is below block {checkpoint}, already processed")]
    Behind {
        endpoint: String,
        head: u64,
        checkpoint: u64,
    },
    #[error(
        "{endpoint} answered no logs for block {number}, whose bloom says it holds monitored logs"
    )]
    LogsNotIndexed { endpoint: String, number: u64 },
    #[error(
        "chain {chain}: endpoint {endpoint} serves chain id {actual}, the config says {expected}"
    )]
    WrongChain {
        chain: String,
        endpoint: String,
        expected: u64,
        actual: u64,
    },
    #[error("{endpoint} did not answer within {waited:?}")]
    Timeout { endpoint: String, waited: Duration },
    #[error("chain {chain}: no endpoint configured")]
    NoEndpoint { chain: String },
    #[error("chain {chain}: every endpoint is unusable")]
    AllBroken { chain: String },
}

impl SourceError {
    /// Errors that retrying cannot fix.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            SourceError::NoEndpoint { .. } | SourceError::AllBroken { .. }
        )
    }

    /// The connection itself may be bad (a transport error, no answer):
    /// worth a new one. A node that answered, however badly, keeps its own.
    pub fn transport_failed(&self) -> bool {
        match self {
            SourceError::Rpc { class, .. } => *class == ErrorClass::Transient,
            SourceError::Timeout { .. } => true,
            _ => false,
        }
    }

    /// What the error says about the endpoint.
    pub fn class(&self) -> ErrorClass {
        match self {
            SourceError::Rpc { class, .. } => *class,
            SourceError::WrongChain { .. } => ErrorClass::WrongChain,
            _ => ErrorClass::Transient,
        }
    }
}

/// What one step achieved.
enum Progress {
    /// More blocks are waiting: step again at once.
    More,
    /// Caught up with `head - confirmations`.
    Idle,
}

/// Calls and state to watch besides logs.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// Contracts whose calls are read from receipts (failed transactions, spikes).
    pub contracts: Vec<Address>,
    /// Trace every block for nested calls too (`debug_traceBlockByNumber`).
    pub trace: bool,
    pub probes: Vec<ProbeCall>,
    /// Revert data that means "halted here" per contract (an `Error(string)`
    /// encoding, or a custom error's selector): asked who raised it, like
    /// a pause revert.
    pub halt_reverts: Vec<(Address, Bytes)>,
}

impl Watch {
    fn needs_blocks(&self) -> bool {
        self.trace || !self.contracts.is_empty()
    }
}

/// A view call to make every `every_blocks` blocks, and after any log of
/// `refresh_on` (address, topic0).
#[derive(Debug, Clone)]
pub struct ProbeCall {
    pub kind: crate::model::ProbeKind,
    pub id: (usize, usize),
    pub refresh_on: Vec<(Address, B256)>,
    pub address: Address,
    pub calldata: Bytes,
    pub every_blocks: u64,
}

/// Follows one chain. Create with [`ChainSource::new`], then [`ChainSource::run`].
pub struct ChainSource {
    chain: ChainConfig,
    endpoints: Endpoints,
    /// The endpoint asked this round.
    current: usize,
    filter: Filter,
    window: Window,
    window_blocks: u64,
    /// The first block not yet processed, once known.
    next: Option<u64>,
    status: crate::status::Status,
    watch: Watch,
    /// Block each view call last ran at, and the block it is due again.
    probed: HashMap<(crate::model::ProbeKind, (usize, usize)), (u64, u64)>,
    /// The last head read from the current endpoint, and when.
    head_read: Option<(u64, Instant)>,
    /// The newest header the endpoint pushed (ws `newHeads`) that no round
    /// has used yet: that round needs no `eth_blockNumber` nor header read.
    pushed: Option<Block>,
    health: ChainHealth,
    /// A block whose empty logs answer was not believed, and how often.
    distrusted: Option<(B256, u32)>,
    /// After a reorg deeper than the window: the old checkpoint, until the
    /// re-read passes it.
    rescanning: Option<u64>,
    /// When the other endpoints' heads were last sampled.
    sampled: Option<Instant>,
    /// How long the round in hand may take to finish at shutdown.
    shutdown_grace: Duration,
}

impl ChainSource {
    /// `window` is the remembered blocks from the store, oldest first.
    pub fn new(
        chain: &ChainConfig,
        addresses: Vec<Address>,
        topics: Vec<B256>,
        window: Vec<BlockRef>,
        window_blocks: u64,
    ) -> Self {
        let next = window.last().map(|b| b.number + 1);
        ChainSource {
            chain: chain.clone(),
            endpoints: Endpoints::new(&chain.rpc),
            current: 0,
            filter: Filter::new().address(addresses).event_signature(topics),
            window: Window::new(window, window_blocks),
            window_blocks,
            next,
            status: crate::status::Status::default(),
            watch: Watch::default(),
            probed: HashMap::new(),
            head_read: None,
            pushed: None,
            health: ChainHealth::new(chain.stall_after.as_secs()),
            distrusted: None,
            rescanning: None,
            sampled: None,
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }

    /// The round in hand at shutdown may finish within `grace` (at most
    /// 5 s), so that the whole stop fits its limit.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace.min(SHUTDOWN_GRACE);
        self
    }

    /// Also watch calls into contracts and run state probes.
    pub fn with_watch(mut self, watch: Watch) -> Self {
        self.watch = watch;
        self
    }

    /// Reports head reads and errors to `status`.
    pub fn with_status(mut self, status: crate::status::Status) -> Self {
        self.status = status;
        self
    }

    /// Follows the chain until `shutdown` turns true or the receiver is gone.
    pub async fn run(
        mut self,
        tx: mpsc::Sender<ChainUpdate>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), SourceError> {
        if self.endpoints.is_empty() {
            return Err(SourceError::NoEndpoint {
                chain: self.chain.name.clone(),
            });
        }
        let mut tick = tokio::time::interval(self.chain.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heads = None;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            match self.endpoints.pick(Instant::now()) {
                None => {
                    return Err(SourceError::AllBroken {
                        chain: self.chain.name.clone(),
                    });
                }
                // Every endpoint backs off: wait for the first to be free.
                Some(Err(wait)) => {
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
                Some(Ok(i)) if i != self.current => {
                    tracing::info!(chain = %self.chain.name,
                        from = %self.endpoints.get(self.current).redacted,
                        to = %self.endpoints.get(i).redacted, "switching endpoint");
                    self.current = i;
                    self.head_read = None;
                    self.pushed = None;
                    heads = None;
                }
                Some(Ok(_)) => {}
            }
            if heads.is_none() {
                heads = match self.subscribe_heads().await {
                    Ok(heads) => heads,
                    Err(e) if e.is_fatal() => return Err(e),
                    Err(e) => {
                        if !self.failed(&tx, &e).await {
                            return Ok(());
                        }
                        continue;
                    }
                };
            }
            self.sample_others().await;
            // A node that hangs is as blind as one that refuses.
            let limit = self.chain.stall_after.max(Duration::from_secs(5));
            // At shutdown the round in hand may finish (and commit) within
            // the shutdown grace; past it, it is abandoned: it commits nothing
            // until its very end, so the checkpoint stays behind it.
            let grace = self.shutdown_grace;
            let round = {
                let step = tokio::time::timeout(limit, self.step(&tx));
                tokio::pin!(step);
                tokio::select! {
                    round = &mut step => round,
                    _ = shutdown.changed() => match tokio::time::timeout(grace, &mut step).await {
                        Ok(round) => round,
                        Err(_) => return Ok(()),
                    },
                }
            };
            let outcome = match round {
                Ok(o) => o,
                Err(_) => Err(SourceError::Timeout {
                    endpoint: self.endpoints.get(self.current).redacted.clone(),
                    waited: limit,
                }),
            };
            let progress = match outcome {
                Ok(Some(progress)) => progress,
                Ok(None) => return Ok(()), // the pipeline is gone
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => {
                    if !self.failed(&tx, &e).await {
                        return Ok(());
                    }
                    heads = None;
                    continue;
                }
            };
            self.endpoints.succeeded(self.current);
            let now = wall_secs();
            if let Some(event) = self.health.succeeded(now)
                && !self.emit(&tx, event).await
            {
                return Ok(());
            }
            if matches!(progress, Progress::More) {
                continue;
            }
            if let Some(event) = self.health.check_stall(now)
                && !self.emit(&tx, event).await
            {
                return Ok(());
            }
            // Wait for a new head (ws), the poll interval, or shutdown.
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tick.tick() => {}
                item = next_head(&mut heads) => match item {
                    Some(block) => {
                        self.pushed = Some(block);
                        // Heads arrive: polling is only the fallback for
                        // when they stop (and a poll's exchange just before
                        // a block can hold that block's notification back
                        // by a delayed ACK, ~40 ms, on a node without
                        // TCP_NODELAY such as anvil).
                        tick.reset();
                    }
                    None => {
                        tracing::debug!(chain = %self.chain.name, "head subscription ended; polling");
                        heads = None;
                    }
                }
            }
        }
    }

    /// After a failed round: the endpoint backs off (and is left for the
    /// next healthy one), and a monitoring gap opens once no endpoint could
    /// be read for the stall limit. `false` when the receiver is gone.
    async fn failed(&mut self, tx: &mpsc::Sender<ChainUpdate>, e: &SourceError) -> bool {
        let class = e.class();
        let endpoint = self.endpoints.get(self.current).redacted.clone();
        if class == ErrorClass::WrongChain {
            tracing::error!(chain = %self.chain.name, %endpoint, error = %e,
                "endpoint serves another chain; it is not used again");
            telemetry::endpoint_broken(&self.chain.name);
            self.status.endpoint_broken(&self.chain.name, e.to_string());
            return true;
        }
        let wait = self
            .endpoints
            .failed(self.current, class, e.transport_failed(), Instant::now());
        self.head_read = None;
        self.pushed = None;
        self.status.chain_error(&self.chain.name, e.to_string());
        tracing::warn!(chain = %self.chain.name, %endpoint, error = %e, ?class,
            retry_in_ms = wait.as_millis() as u64, "chain read failed; retrying");
        match self.health.failed(wall_secs()) {
            Some(event) => self.emit(tx, event).await,
            None => true,
        }
    }

    /// Sends what the health machine decided. `false` when the receiver is gone.
    async fn emit(&mut self, tx: &mpsc::Sender<ChainUpdate>, event: HealthEvent) -> bool {
        let update = match event {
            HealthEvent::Stalled { since } => {
                let Some(head) = self.window.tip() else {
                    return true;
                };
                tracing::error!(chain = %self.chain.name, head = head.number, since,
                    "chain stalled: no endpoint's head moved");
                ChainUpdate::Stalled { head, since }
            }
            HealthEvent::GapOpened { since } => {
                tracing::error!(chain = %self.chain.name, since,
                    "monitoring gap: the chain cannot be read; this is not protocol downtime");
                let reason = self
                    .status
                    .chains()
                    .get(&self.chain.name)
                    .and_then(|c| c.last_error.clone())
                    .unwrap_or_else(|| "every endpoint failing".into());
                ChainUpdate::GapOpened { since, reason }
            }
            HealthEvent::GapClosed { at } => {
                tracing::info!(chain = %self.chain.name, "chain readable again; monitoring gap closed, catching up");
                ChainUpdate::GapClosed { at }
            }
        };
        tx.send(update).await.is_ok()
    }

    /// A head read from endpoint `i` (or pushed by it).
    fn head_observed(&mut self, i: usize, head: u64) {
        let now = Instant::now();
        self.endpoints.head_seen(i, head, now);
        self.health.head(head, wall_secs());
        if let Some((best, _)) = self.health.best() {
            self.status.head_seen(&self.chain.name, best);
        }
    }

    /// Reads the heads of the endpoints not in use, now and then, so that
    /// a frozen or lagging current endpoint is noticed while others move
    /// (one `eth_blockNumber` each).
    async fn sample_others(&mut self) {
        if self.endpoints.len() < 2 {
            return;
        }
        let every =
            (self.chain.stall_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(15));
        if self.sampled.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.sampled = Some(Instant::now());
        let (name, chain_id) = (self.chain.name.clone(), self.chain.chain_id);
        let current = self.current;
        for i in (0..self.endpoints.len()).filter(|&i| i != current) {
            // A broken endpoint is never asked; one backing off is asked
            // when its backoff is over, not before (it may hang each time).
            if self.endpoints.get(i).broken().is_some() || !self.endpoints.ready(i, Instant::now())
            {
                continue;
            }
            let ep = self.endpoints.get_mut(i);
            let started = Instant::now();
            let read = tokio::time::timeout(HEAD_TIMEOUT, async {
                let p = ep.provider(&name, chain_id).await?;
                telemetry::rpc_request(&ep.redacted, "eth_blockNumber");
                p.get_block_number()
                    .await
                    .map_err(|e| endpoints::rpc_error(ep, "eth_blockNumber", &e))
            })
            .await;
            match read {
                Ok(Ok(head)) => {
                    self.endpoints.latency_seen(i, started.elapsed());
                    self.head_observed(i, head);
                }
                Ok(Err(e)) => {
                    tracing::debug!(chain = %name, endpoint = %self.endpoints.get(i).redacted,
                        error = %e, "sampling a standby endpoint's head failed");
                    if e.class() == ErrorClass::WrongChain {
                        telemetry::endpoint_broken(&name);
                        self.status.endpoint_broken(&name, e.to_string());
                    } else {
                        self.endpoints
                            .failed(i, e.class(), e.transport_failed(), Instant::now());
                    }
                }
                Err(_) => {
                    self.endpoints
                        .failed(i, ErrorClass::Transient, true, Instant::now());
                }
            }
        }
    }

    /// The current endpoint's `newHeads`, if it is a ws endpoint that
    /// subscribes. `Err` when connecting or subscribing hangs past
    /// [`HEAD_TIMEOUT`] (a WebSocket that takes connections and answers
    /// nothing): the endpoint has failed.
    async fn subscribe_heads(&mut self) -> Result<Option<HeadStream>, SourceError> {
        let (name, chain_id) = (self.chain.name.clone(), self.chain.chain_id);
        let ep = self.endpoints.get_mut(self.current);
        if !ep.ws {
            return Ok(None);
        }
        let subscribed = tokio::time::timeout(HEAD_TIMEOUT, async {
            let provider = ep.provider(&name, chain_id).await?;
            Ok::<_, SourceError>(provider.subscribe_blocks().await)
        })
        .await;
        match subscribed {
            Err(_) => Err(SourceError::Timeout {
                endpoint: ep.redacted.clone(),
                waited: HEAD_TIMEOUT,
            }),
            Ok(Err(e)) => Err(e),
            Ok(Ok(Ok(sub))) => Ok(Some(
                sub.into_stream().map(|h| Block::of_header(&h)).boxed(),
            )),
            Ok(Ok(Err(e))) => {
                tracing::warn!(chain = %name, endpoint = %ep.redacted,
                    error = %crate::redact_urls_in(&e.to_string()), "newHeads subscription failed; polling");
                Ok(None)
            }
        }
    }
}

/// A provider for `chain`: the first endpoint, in config order, that
/// answers with the chain's id.
pub async fn connect(chain: &ChainConfig) -> Result<alloy::providers::DynProvider, SourceError> {
    connect_endpoint(chain).await.map(|(p, _)| p)
}

async fn connect_endpoint(
    chain: &ChainConfig,
) -> Result<(alloy::providers::DynProvider, endpoints::Endpoint), SourceError> {
    let mut last = None;
    for rpc in &chain.rpc {
        let mut endpoint = endpoints::Endpoint::new(rpc);
        match endpoint.provider(&chain.name, chain.chain_id).await {
            Ok(provider) => return Ok((provider, endpoint)),
            Err(e) => {
                tracing::warn!(chain = %chain.name, error = %e, "endpoint unusable; trying the next");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(SourceError::NoEndpoint {
        chain: chain.name.clone(),
    }))
}

fn wall_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The headers an endpoint pushes.
type HeadStream = futures::stream::BoxStream<'static, Block>;

async fn next_head(heads: &mut Option<HeadStream>) -> Option<Block> {
    match heads {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}
