//! Follows one chain over JSON-RPC and turns it into [`ChainUpdate`]s.
//!
//! The source keeps a window of recent blocks (number and hash); the newest
//! is the checkpoint. Each step fetches the blocks after the checkpoint up to
//! `head - confirmations` with one `eth_getLogs` for every monitored address
//! and topic. Near the head it fetches every header and checks the parent
//! links; a link that does not match is a reorg: the source walks its window
//! back to the newest block that is still canonical and emits
//! [`ChainUpdate::Reverted`] before committing the new branch. A block that
//! cannot be fetched is retried, never skipped: the checkpoint only moves past
//! blocks that were fully read.
//!
//! Calls into monitored contracts (failed transactions, revert spikes) come
//! from every block's body and receipts (or call traces) near the head, and
//! from `trace_filter` over whole ranges further behind, where the node
//! serves it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, Log};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::{mpsc, watch};

use crate::config::{ChainConfig, StartBlock};
use crate::model::{BlockRef, CallOutcome, ChainUpdate, CommittedRange, ProbeResult};
use crate::{redact_url, telemetry};

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
/// Longest wait between retries after RPC errors.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The detail is the transport's message with endpoint URLs redacted, so
    /// an API key in a URL never reaches a log line.
    #[error("{method} on {endpoint} failed: {detail}")]
    Rpc {
        endpoint: String,
        method: &'static str,
        detail: String,
    },
    #[error("block {number} is not available from {endpoint} yet")]
    MissingBlock { endpoint: String, number: u64 },
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
}

impl SourceError {
    /// Errors that retrying cannot fix.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            SourceError::WrongChain { .. } | SourceError::NoEndpoint { .. }
        )
    }
}

struct Endpoint {
    url: String,
    redacted: String,
    ws: bool,
    provider: Option<DynProvider>,
    /// Answers `trace_filter` (until it refuses): calls of a whole range in
    /// a few requests instead of every block's body and receipts.
    trace_filter: std::sync::atomic::AtomicBool,
    /// Blocks per `trace_filter` request; halved when the node refuses a range.
    trace_span: std::sync::atomic::AtomicU64,
    /// Answers `eth_getBlockReceipts` (until it refuses): a block's receipts
    /// in one request instead of one per failed-call candidate.
    block_receipts: std::sync::atomic::AtomicBool,
}

impl Endpoint {
    fn new(url: &str) -> Self {
        Endpoint {
            redacted: redact_url(url),
            ws: url.starts_with("ws"),
            url: url.to_string(),
            provider: None,
            trace_filter: true.into(),
            trace_span: MAX_RANGE_BLOCKS.into(),
            block_receipts: true.into(),
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

/// Follows one chain. Create with [`ChainSource::new`], then [`ChainSource::run`].
pub struct ChainSource {
    chain: ChainConfig,
    endpoints: Vec<Endpoint>,
    current: usize,
    chain_checked: bool,
    filter: Filter,
    window: VecDeque<BlockRef>,
    window_blocks: u64,
    /// The first block not yet processed, once known.
    next: Option<u64>,
    status: crate::status::Status,
    watch: Watch,
    /// Block each probe last ran at.
    probed: HashMap<(usize, usize), u64>,
    /// The head number and the wall-clock time it was first seen.
    head_seen: Option<(u64, u64)>,
    /// The last head read from the current endpoint, and when.
    head_read: Option<(u64, std::time::Instant)>,
    /// The number of the newest head the endpoint pushed (ws `newHeads`)
    /// that no round has used yet: that round needs no `eth_blockNumber`.
    pushed_head: Option<u64>,
    stalled: bool,
    /// Wall-clock time of the first failure in a row, and whether a gap was reported.
    failing_since: Option<u64>,
    gap_open: bool,
}

/// Calls and state to watch besides logs.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// Contracts whose calls are read from receipts (failed transactions, spikes).
    pub contracts: Vec<Address>,
    /// Trace every block for nested calls too (`debug_traceBlockByNumber`).
    pub trace: bool,
    pub probes: Vec<ProbeCall>,
}

impl Watch {
    fn needs_blocks(&self) -> bool {
        self.trace || !self.contracts.is_empty()
    }
}

/// A view call to make every `every_blocks` blocks.
#[derive(Debug, Clone)]
pub struct ProbeCall {
    pub id: (usize, usize),
    pub address: Address,
    pub calldata: Bytes,
    pub every_blocks: u64,
}

/// A transaction of a block, as far as call watching needs it.
#[derive(Debug, Clone)]
struct TxCall {
    hash: B256,
    index: u64,
    from: Address,
    to: Option<Address>,
    input: Bytes,
    value: U256,
    gas: u64,
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
        let endpoints = chain.rpc.iter().map(|url| Endpoint::new(url)).collect();
        let next = window.last().map(|b| b.number + 1);
        ChainSource {
            chain: chain.clone(),
            endpoints,
            current: 0,
            chain_checked: false,
            filter: Filter::new().address(addresses).event_signature(topics),
            window: window.into(),
            window_blocks,
            next,
            status: crate::status::Status::default(),
            watch: Watch::default(),
            probed: HashMap::new(),
            head_seen: None,
            head_read: None,
            pushed_head: None,
            stalled: false,
            failing_since: None,
            gap_open: false,
        }
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
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            if heads.is_none() {
                heads = self.subscribe_heads().await;
            }
            // A node that hangs is as blind as one that refuses.
            let limit = self.chain.stall_after.max(Duration::from_secs(5));
            let outcome = match tokio::time::timeout(limit, self.step(&tx)).await {
                Ok(o) => o,
                Err(_) => Err(SourceError::Timeout {
                    endpoint: self.endpoints[self.current].redacted.clone(),
                    waited: limit,
                }),
            };
            if outcome.is_ok() && !self.seeing(&tx).await {
                return Ok(());
            }
            match outcome {
                Ok(Some(Progress::More)) => {
                    failures = 0;
                    continue;
                }
                Ok(Some(Progress::Idle)) => failures = 0,
                Ok(None) => return Ok(()), // the pipeline is gone
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => {
                    if !self.blind(&tx, &e).await {
                        return Ok(());
                    }
                    failures += 1;
                    self.status.chain_error(&self.chain.name, e.to_string());
                    tracing::warn!(chain = %self.chain.name, error = %e, failures, "chain read failed; retrying");
                    self.fail_over();
                    heads = None;
                    let wait = backoff(failures, self.chain.poll_interval);
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            }
            // Wait for a new head (ws), the poll interval, or shutdown.
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tick.tick() => {}
                item = next_head(&mut heads) => match item {
                    Some(number) => {
                        self.pushed_head = Some(number);
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

    /// After a successful step: closes a monitoring gap if one was open.
    /// `false` when the receiver is gone.
    async fn seeing(&mut self, tx: &mpsc::Sender<ChainUpdate>) -> bool {
        self.failing_since = None;
        if self.gap_open {
            self.gap_open = false;
            tracing::info!(chain = %self.chain.name, "chain readable again; monitoring gap closed, catching up");
            return tx
                .send(ChainUpdate::GapClosed { at: wall_secs() })
                .await
                .is_ok();
        }
        true
    }

    /// After a failed step: opens a monitoring gap once every endpoint has
    /// failed for longer than the stall limit. `false` when the receiver is gone.
    async fn blind(&mut self, tx: &mpsc::Sender<ChainUpdate>, e: &SourceError) -> bool {
        let now = wall_secs();
        let since = *self.failing_since.get_or_insert(now);
        if !self.gap_open && now.saturating_sub(since) >= self.chain.stall_after.as_secs() {
            self.gap_open = true;
            tracing::error!(chain = %self.chain.name, since, error = %e,
                "monitoring gap: the chain cannot be read; this is not protocol downtime");
            return tx
                .send(ChainUpdate::GapOpened {
                    since,
                    reason: e.to_string(),
                })
                .await
                .is_ok();
        }
        true
    }

    /// A head read or pushed now. `false` when the receiver is gone.
    async fn head_observed(
        &mut self,
        p: &DynProvider,
        head: u64,
        tx: &mpsc::Sender<ChainUpdate>,
    ) -> Result<bool, SourceError> {
        self.head_read = Some((head, std::time::Instant::now()));
        self.status.head_seen(&self.chain.name, head);
        self.track_head(p, head, tx).await
    }

    /// Tracks head progress: a stall when the head has not moved for the
    /// chain's limit, a resume when it moves again. `false` when the receiver is gone.
    async fn track_head(
        &mut self,
        p: &DynProvider,
        head: u64,
        tx: &mpsc::Sender<ChainUpdate>,
    ) -> Result<bool, SourceError> {
        let now = wall_secs();
        match self.head_seen {
            Some((n, since)) if n == head => {
                let stalled_for = now.saturating_sub(since);
                if !self.stalled && stalled_for >= self.chain.stall_after.as_secs() {
                    let Some(last) = self.window.back().copied() else {
                        return Ok(true);
                    };
                    self.stalled = true;
                    tracing::error!(chain = %self.chain.name, head, stalled_for, "chain stalled: no new head");
                    return Ok(tx
                        .send(ChainUpdate::Stalled { head: last, since })
                        .await
                        .is_ok());
                }
            }
            _ => {
                self.head_seen = Some((head, now));
                if self.stalled {
                    self.stalled = false;
                    let Some(block) = self.header(p, head).await? else {
                        return Ok(true);
                    };
                    tracing::info!(chain = %self.chain.name, head, "chain producing blocks again");
                    return Ok(tx
                        .send(ChainUpdate::Resumed {
                            head: block,
                            at: now,
                        })
                        .await
                        .is_ok());
                }
            }
        }
        Ok(true)
    }

    async fn subscribe_heads(&mut self) -> Option<HeadStream> {
        if !self.endpoints[self.current].ws {
            return None;
        }
        let provider = self.provider().await.ok()?;
        match provider.subscribe_blocks().await {
            Ok(sub) => Some(sub.into_stream().map(|header| header.number).boxed()),
            Err(e) => {
                let ep = &self.endpoints[self.current];
                tracing::warn!(chain = %self.chain.name, endpoint = %ep.redacted,
                    error = %redact_in(&e.to_string(), &ep.url), "newHeads subscription failed; polling");
                None
            }
        }
    }

    fn fail_over(&mut self) {
        self.endpoints[self.current].provider = None;
        self.head_read = None;
        self.pushed_head = None;
        if self.endpoints.len() > 1 {
            self.current = (self.current + 1) % self.endpoints.len();
            tracing::info!(chain = %self.chain.name, endpoint = %self.endpoints[self.current].redacted, "switching endpoint");
        }
    }

    async fn provider(&mut self) -> Result<DynProvider, SourceError> {
        let ep = &mut self.endpoints[self.current];
        if let Some(p) = &ep.provider {
            return Ok(p.clone());
        }
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect(&ep.url)
            .await
            .map_err(|e| rpc_error(ep, "connect", e))?
            .erased();
        if !self.chain_checked || ep.provider.is_none() {
            let actual = provider
                .get_chain_id()
                .await
                .map_err(|e| rpc_error(ep, "eth_chainId", e))?;
            if actual != self.chain.chain_id {
                return Err(SourceError::WrongChain {
                    chain: self.chain.name.clone(),
                    endpoint: ep.redacted.clone(),
                    expected: self.chain.chain_id,
                    actual,
                });
            }
            self.chain_checked = true;
        }
        ep.provider = Some(provider.clone());
        Ok(provider)
    }

    /// One round: `Ok(None)` when the receiver is gone.
    async fn step(
        &mut self,
        tx: &mpsc::Sender<ChainUpdate>,
    ) -> Result<Option<Progress>, SourceError> {
        let p = self.provider().await?;
        let confirmations = self.chain.confirmations;
        let behind = |head: u64, next: Option<u64>| {
            next.is_some_and(|n| n <= head.saturating_sub(confirmations))
        };
        // A round that reads up to a head read before is not the last one:
        // the next reads the head again before it may go idle.
        let mut reused = false;
        let head = match (self.pushed_head.take(), self.head_read) {
            // Pushed by the endpoint just now: as good as read.
            (Some(head), _) => {
                if !self.head_observed(&p, head, tx).await? {
                    return Ok(None);
                }
                head
            }
            (None, Some((head, at))) if at.elapsed() < HEAD_REUSE && behind(head, self.next) => {
                reused = true;
                head
            }
            _ => {
                let ep = &self.endpoints[self.current];
                telemetry::rpc_request(&ep.redacted, "eth_blockNumber");
                let head = p
                    .get_block_number()
                    .await
                    .map_err(|e| rpc_error(ep, "eth_blockNumber", e))?;
                if !self.head_observed(&p, head, tx).await? {
                    return Ok(None);
                }
                head
            }
        };
        let target = head.saturating_sub(confirmations);
        let from = *self.next.get_or_insert(match self.chain.start_block {
            StartBlock::Latest => target,
            StartBlock::Number(n) => n,
        });
        let checkpoint = self.window.back().copied();

        if from > target {
            // Nothing new: make sure the checkpoint is still canonical (a
            // same-height reorg or a rollback shows up only here).
            let Some(cp) = checkpoint else {
                return Ok(Some(Progress::Idle));
            };
            let canonical = self.header(&p, cp.number.min(target)).await?;
            if cp.number > target || canonical.is_none_or(|h| h.hash != cp.hash) {
                return self.revert(&p, tx).await;
            }
            return Ok(Some(Progress::Idle));
        }

        // Watching calls needs every block's transactions (smaller steps),
        // unless the node can filter traces for a range far from the head.
        let watching = self.watch.needs_blocks();
        let traced = watching
            && self.endpoints[self.current]
                .trace_filter
                .load(std::sync::atomic::Ordering::Relaxed)
            && target - from >= NEAR_HEAD_BLOCKS;
        let full = watching && !traced;
        let max_range = if full {
            MAX_FULL_RANGE_BLOCKS
        } else {
            MAX_RANGE_BLOCKS
        };
        let to = target.min(from + max_range - 1);
        let near = full || to - from < NEAR_HEAD_BLOCKS;
        let numbers: Vec<u64> = if near {
            (from..=to).collect()
        } else {
            vec![from, to]
        };
        let filter = self.filter.clone().from_block(from).to_block(to);
        let ep = &self.endpoints[self.current];
        telemetry::rpc_request(&ep.redacted, "eth_getLogs");
        let logs_call = p.get_logs(&filter);
        let blocks_call = fetch_blocks(&p, ep, &numbers, full);
        let traces_call = async {
            match traced {
                true => fetch_traces(&p, ep, from, to, &self.watch).await,
                false => Ok(Some(Vec::new())),
            }
        };
        let (logs, blocks, traces) = tokio::join!(logs_call, blocks_call, traces_call);
        let Some(traces) = traces? else {
            return Ok(Some(Progress::More)); // read again, block by block
        };
        let mut logs = logs.map_err(|e| rpc_error(ep, "eth_getLogs", e))?;
        let (headers, txs): (Vec<BlockRef>, Vec<Vec<TxCall>>) = blocks?.into_iter().unzip();

        // The new range must hang off the checkpoint.
        if let Some(cp) = checkpoint
            && cp.number + 1 == from
            && headers[0].parent_hash != cp.hash
        {
            return self.revert(&p, tx).await;
        }
        // Near the head, the headers must link; the chain may have moved
        // between calls, in which case this round is simply read again.
        if near && headers.windows(2).any(|w| w[1].parent_hash != w[0].hash) {
            tracing::debug!(chain = %self.chain.name, from, to, "chain moved while reading; reading again");
            return Ok(Some(Progress::More));
        }
        let by_number: BTreeMap<u64, BlockRef> = headers.iter().map(|b| (b.number, *b)).collect();
        let consistent = logs.iter().all(|l| match (l.block_number, l.block_hash) {
            (Some(n), Some(h)) => {
                (from..=to).contains(&n) && by_number.get(&n).is_none_or(|b| b.hash == h)
            }
            _ => false,
        });
        let consistent = consistent
            && traces.iter().all(|t| {
                (from..=to).contains(&t.block_number)
                    && by_number
                        .get(&t.block_number)
                        .is_none_or(|b| b.hash == t.block_hash)
            });
        if !consistent {
            tracing::debug!(chain = %self.chain.name, from, to, "logs from another branch; reading again");
            return Ok(Some(Progress::More));
        }
        let ep = &self.endpoints[self.current];
        fill_timestamps(&p, ep, &mut logs, &by_number).await?;
        let calls = if full {
            watch_calls(&p, ep, &headers, &txs, &self.watch).await?
        } else if traced {
            trace_outcomes(&p, ep, traces, &logs, &by_number).await?
        } else {
            Vec::new()
        };

        let tip = headers[headers.len() - 1];
        let due: Vec<&ProbeCall> = self
            .watch
            .probes
            .iter()
            .filter(|pc| {
                self.probed
                    .get(&pc.id)
                    .is_none_or(|&last| tip.number >= last + pc.every_blocks)
            })
            .collect();
        let probes = run_probes(&p, ep, tip, &due).await;
        for r in &probes {
            self.probed.insert(r.probe, tip.number);
        }
        for b in &headers {
            self.window.push_back(*b);
        }
        while self
            .window
            .front()
            .is_some_and(|b| b.number + self.window_blocks < tip.number)
        {
            self.window.pop_front();
        }
        self.next = Some(to + 1);
        let update = ChainUpdate::Committed(CommittedRange {
            from,
            tip,
            blocks: headers,
            logs,
            calls,
            probes,
        });
        if tx.send(update).await.is_err() {
            return Ok(None);
        }
        Ok(Some(if to < target || reused {
            Progress::More
        } else {
            Progress::Idle
        }))
    }

    /// Walks the window back to the newest block that is still canonical and
    /// reports every block above it as reverted.
    async fn revert(
        &mut self,
        p: &DynProvider,
        tx: &mpsc::Sender<ChainUpdate>,
    ) -> Result<Option<Progress>, SourceError> {
        self.head_read = None; // the chain changed: read the head again
        let newest = self.window.back().map(|b| b.number);
        let mut oldest_dropped = None;
        while let Some(b) = self.window.back().copied() {
            match self.header(p, b.number).await? {
                Some(h) if h.hash == b.hash => break,
                _ => {
                    oldest_dropped = Some(b.number);
                    self.window.pop_back();
                }
            }
        }
        let ancestor = match (self.window.back(), oldest_dropped) {
            (Some(b), _) => b.number,
            (None, Some(n)) => {
                tracing::error!(chain = %self.chain.name, window = self.window_blocks,
                    "reorg deeper than the remembered window; reverting all of it");
                n.saturating_sub(1)
            }
            (None, None) => return Ok(Some(Progress::More)),
        };
        tracing::warn!(chain = %self.chain.name, ancestor, reverted_from = ancestor + 1,
            old_head = newest, "reorg: blocks above the common ancestor are reverted");
        self.next = Some(ancestor + 1);
        if tx.send(ChainUpdate::Reverted { ancestor }).await.is_err() {
            return Ok(None);
        }
        Ok(Some(Progress::More))
    }

    async fn header(&self, p: &DynProvider, number: u64) -> Result<Option<BlockRef>, SourceError> {
        fetch_header(p, &self.endpoints[self.current], number).await
    }
}

/// Nodes that omit `blockTimestamp` on logs get it from the block header.
async fn fill_timestamps(
    p: &DynProvider,
    ep: &Endpoint,
    logs: &mut [Log],
    known: &BTreeMap<u64, BlockRef>,
) -> Result<(), SourceError> {
    let mut times = BlockTimes::new(known);
    for log in logs.iter_mut().filter(|l| l.block_timestamp.is_none()) {
        let Some(n) = log.block_number else { continue };
        log.block_timestamp = Some(times.get(p, ep, n).await?);
    }
    Ok(())
}

/// Block times by number: from the headers at hand, else fetched, once each.
struct BlockTimes(BTreeMap<u64, u64>);

impl BlockTimes {
    fn new(known: &BTreeMap<u64, BlockRef>) -> Self {
        BlockTimes(known.iter().map(|(n, b)| (*n, b.timestamp)).collect())
    }

    /// Also the block times the logs carry.
    fn with_logs(mut self, logs: &[Log]) -> Self {
        for l in logs {
            if let (Some(n), Some(ts)) = (l.block_number, l.block_timestamp) {
                self.0.entry(n).or_insert(ts);
            }
        }
        self
    }

    async fn get(&mut self, p: &DynProvider, ep: &Endpoint, n: u64) -> Result<u64, SourceError> {
        if let Some(ts) = self.0.get(&n) {
            return Ok(*ts);
        }
        let b = fetch_header(p, ep, n)
            .await?
            .ok_or_else(|| SourceError::MissingBlock {
                endpoint: ep.redacted.clone(),
                number: n,
            })?;
        self.0.insert(n, b.timestamp);
        Ok(b.timestamp)
    }
}

/// Error texts real providers return when one `eth_getLogs` asks for too much.
const RANGE_ERRORS: &[&str] = &[
    "query returned more than",
    "block range is too large",
    "block range too large",
    "range is too large",
    "exceeds max results",
    "exceed maximum block range",
    "max block range",
    "too many results",
    "response size exceeded",
    "response is too big",
    "log response size exceeded",
    "limit exceeded",
    "-32005",
];

/// True when an RPC error says the log query was too large (split it and retry).
pub fn is_range_error(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    RANGE_ERRORS.iter().any(|e| t.contains(e))
}

/// Blocks per `eth_getLogs` a backfill starts with.
const BACKFILL_START_BLOCKS: u64 = 10_000;
/// The largest range a backfill asks for at once.
const BACKFILL_MAX_BLOCKS: u64 = 100_000;
/// Attempts at one range on errors that are not about its size.
const BACKFILL_ATTEMPTS: u32 = 5;

/// Reads the logs of a historical range in adaptive chunks: starts large,
/// halves a chunk the provider refuses as too large, grows again after
/// successes. Safe to share between several fetches in flight.
pub struct LogFetcher {
    provider: DynProvider,
    endpoint: Endpoint,
    filter: Filter,
    chunk: std::sync::atomic::AtomicU64,
    watch: Watch,
}

/// What a backfill chunk holds: the logs and (when calls are watched) the call outcomes.
pub struct Fetched {
    pub logs: Vec<Log>,
    pub calls: Vec<CallOutcome>,
}

impl LogFetcher {
    /// Connects to the first endpoint of `chain` that answers with the right chain id.
    pub async fn connect(
        chain: &ChainConfig,
        addresses: Vec<Address>,
        topics: Vec<B256>,
    ) -> Result<Self, SourceError> {
        let mut source = ChainSource::new(chain, addresses, topics, Vec::new(), 0);
        let mut last = None;
        for i in 0..source.endpoints.len() {
            source.current = i;
            match source.provider().await {
                Ok(provider) => {
                    let ep = &source.endpoints[i];
                    return Ok(LogFetcher {
                        provider,
                        endpoint: Endpoint::new(&ep.url),
                        filter: source.filter.clone(),
                        chunk: BACKFILL_START_BLOCKS.into(),
                        watch: Watch::default(),
                    });
                }
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(SourceError::NoEndpoint {
            chain: chain.name.clone(),
        }))
    }

    /// Also read calls into these contracts (failed transactions, spikes):
    /// every block's transactions, and receipts where a block calls them.
    pub fn with_watch(mut self, watch: Watch) -> Self {
        if watch.needs_blocks() {
            // Full blocks per block: keep chunks of a size that stays responsive.
            self.chunk = MAX_FULL_RANGE_BLOCKS.into();
        }
        self.watch = watch;
        self
    }

    /// The size of the next chunk to ask for.
    pub fn chunk(&self) -> u64 {
        self.chunk.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The monitored logs of `from..=to` (timestamps filled in) and, when
    /// calls are watched, the calls into the watched contracts.
    pub async fn fetch(&self, from: u64, to: u64) -> Result<Fetched, SourceError> {
        let logs = self.fetch_logs(from, to).await?;
        if !self.watch.needs_blocks() {
            return Ok(Fetched {
                logs,
                calls: Vec::new(),
            });
        }
        if let Some(calls) = self.fetch_traced(from, to, &logs).await? {
            return Ok(Fetched { logs, calls });
        }
        let numbers: Vec<u64> = (from..=to).collect();
        let (headers, txs): (Vec<BlockRef>, Vec<Vec<TxCall>>) =
            fetch_blocks(&self.provider, &self.endpoint, &numbers, true)
                .await?
                .into_iter()
                .unzip();
        let calls =
            watch_calls(&self.provider, &self.endpoint, &headers, &txs, &self.watch).await?;
        Ok(Fetched { logs, calls })
    }

    /// The calls of `from..=to` by `trace_filter`; `None` once the endpoint
    /// has refused it.
    async fn fetch_traced(
        &self,
        from: u64,
        to: u64,
        logs: &[Log],
    ) -> Result<Option<Vec<CallOutcome>>, SourceError> {
        if !self
            .endpoint
            .trace_filter
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(None);
        }
        let Some(traces) =
            fetch_traces(&self.provider, &self.endpoint, from, to, &self.watch).await?
        else {
            return Ok(None);
        };
        let known = BTreeMap::new();
        let calls = trace_outcomes(&self.provider, &self.endpoint, traces, logs, &known).await?;
        Ok(Some(calls))
    }

    async fn fetch_logs(&self, from: u64, to: u64) -> Result<Vec<Log>, SourceError> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = Vec::new();
        let mut pending = VecDeque::from([(from, to)]);
        let mut failures = 0;
        while let Some((a, b)) = pending.pop_front() {
            let filter = self.filter.clone().from_block(a).to_block(b);
            telemetry::rpc_request(&self.endpoint.redacted, "eth_getLogs");
            match self.provider.get_logs(&filter).await {
                Ok(logs) => {
                    out.extend(logs);
                    failures = 0;
                    let size = b - a + 1;
                    if size >= self.chunk() {
                        let grown = (size * 2).min(BACKFILL_MAX_BLOCKS);
                        self.chunk.fetch_max(grown, Relaxed);
                    }
                }
                Err(e) => {
                    let text = redact_in(&e.to_string(), &self.endpoint.url);
                    if is_range_error(&text) && b > a {
                        let mid = a + (b - a) / 2;
                        pending.push_front((mid + 1, b));
                        pending.push_front((a, mid));
                        self.chunk.fetch_min((mid - a + 1).max(1), Relaxed);
                        tracing::debug!(from = a, to = b, error = %text, "range refused; splitting");
                        continue;
                    }
                    failures += 1;
                    if failures >= BACKFILL_ATTEMPTS {
                        return Err(rpc_error(&self.endpoint, "eth_getLogs", text));
                    }
                    tracing::warn!(from = a, to = b, error = %text, failures, "log read failed; retrying");
                    tokio::time::sleep(backoff(failures, Duration::from_millis(200))).await;
                    pending.push_front((a, b));
                }
            }
        }
        fill_timestamps(&self.provider, &self.endpoint, &mut out, &BTreeMap::new()).await?;
        Ok(out)
    }
}

async fn fetch_header(
    p: &DynProvider,
    ep: &Endpoint,
    number: u64,
) -> Result<Option<BlockRef>, SourceError> {
    telemetry::rpc_request(&ep.redacted, "eth_getBlockByNumber");
    let block = p
        .get_block_by_number(BlockNumberOrTag::Number(number))
        .await
        .map_err(|e| rpc_error(ep, "eth_getBlockByNumber", e))?;
    Ok(block.map(|b| BlockRef {
        number: b.header.number,
        hash: b.header.hash,
        parent_hash: b.header.parent_hash,
        timestamp: b.header.timestamp,
    }))
}

fn wall_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Headers (and with `full`, transactions) of `numbers`, in order.
async fn fetch_blocks(
    p: &DynProvider,
    ep: &Endpoint,
    numbers: &[u64],
    full: bool,
) -> Result<Vec<(BlockRef, Vec<TxCall>)>, SourceError> {
    futures::stream::iter(numbers.iter().copied())
        .map(|n| async move {
            let block = if full {
                fetch_full_block(p, ep, n).await?
            } else {
                fetch_header(p, ep, n).await?.map(|b| (b, Vec::new()))
            };
            block.ok_or_else(|| SourceError::MissingBlock {
                endpoint: ep.redacted.clone(),
                number: n,
            })
        })
        .buffered(BLOCKS_IN_FLIGHT)
        .try_collect()
        .await
}

async fn fetch_full_block(
    p: &DynProvider,
    ep: &Endpoint,
    number: u64,
) -> Result<Option<(BlockRef, Vec<TxCall>)>, SourceError> {
    use alloy::consensus::Transaction as _;
    telemetry::rpc_request(&ep.redacted, "eth_getBlockByNumber");
    let block = p
        .get_block_by_number(BlockNumberOrTag::Number(number))
        .full()
        .await
        .map_err(|e| rpc_error(ep, "eth_getBlockByNumber", e))?;
    Ok(block.map(|b| {
        let header = BlockRef {
            number: b.header.number,
            hash: b.header.hash,
            parent_hash: b.header.parent_hash,
            timestamp: b.header.timestamp,
        };
        let txs = b
            .transactions
            .txns()
            .enumerate()
            .map(|(i, t)| TxCall {
                hash: *t.inner.tx_hash(),
                index: t.transaction_index.unwrap_or(i as u64),
                from: t.inner.signer(),
                to: t.to(),
                input: t.input().clone(),
                value: t.value(),
                gas: t.gas_limit(),
            })
            .collect();
        (header, txs)
    }))
}

/// Calls into watched contracts in these blocks: from receipts (failed ones
/// replayed at the parent block for their revert data), or from the call
/// tracer, which also sees nested calls.
async fn watch_calls(
    p: &DynProvider,
    ep: &Endpoint,
    headers: &[BlockRef],
    txs: &[Vec<TxCall>],
    watch: &Watch,
) -> Result<Vec<CallOutcome>, SourceError> {
    let watched: std::collections::HashSet<Address> = watch.contracts.iter().copied().collect();
    let mut out = Vec::new();
    for (block, txs) in headers.iter().zip(txs) {
        if watch.trace {
            out.extend(trace_block(p, ep, block, &watched).await?);
            continue;
        }
        let hits: Vec<&TxCall> = txs
            .iter()
            .filter(|t| t.to.is_some_and(|a| watched.contains(&a)))
            .collect();
        if hits.is_empty() {
            continue;
        }
        let statuses = receipt_statuses(p, ep, block, &hits).await?;
        for t in hits {
            let success = statuses.get(&t.hash).copied().unwrap_or(true);
            let revert = if success {
                None
            } else {
                replay(p, ep, t, block.number.saturating_sub(1)).await
            };
            out.push(CallOutcome {
                block_number: block.number,
                block_hash: block.hash,
                block_timestamp: block.timestamp,
                tx_hash: t.hash,
                tx_index: t.index,
                from: t.from,
                to: t.to.unwrap_or_default(),
                success,
                revert,
                nested: false,
            });
        }
    }
    Ok(out)
}

/// Receipt status per transaction: `eth_getBlockReceipts`, or the receipts
/// of just these transactions where the node lacks it.
async fn receipt_statuses(
    p: &DynProvider,
    ep: &Endpoint,
    block: &BlockRef,
    hits: &[&TxCall],
) -> Result<HashMap<B256, bool>, SourceError> {
    use std::sync::atomic::Ordering::Relaxed;
    if ep.block_receipts.load(Relaxed) {
        telemetry::rpc_request(&ep.redacted, "eth_getBlockReceipts");
        match p.get_block_receipts(BlockId::hash(block.hash)).await {
            Ok(Some(receipts)) => {
                return Ok(receipts
                    .iter()
                    .map(|r| (r.transaction_hash, r.status()))
                    .collect());
            }
            Ok(None) => {}
            // The node answered, with an error: it does not serve the method.
            Err(e) if e.as_error_resp().is_some() => {
                telemetry::rpc_error(&ep.redacted, "eth_getBlockReceipts");
                ep.block_receipts.store(false, Relaxed);
                tracing::info!(endpoint = %ep.redacted,
                    error = %redact_in(&e.to_string(), &ep.url),
                    "eth_getBlockReceipts not available; reading receipts one by one");
            }
            Err(e) => return Err(rpc_error(ep, "eth_getBlockReceipts", e)),
        }
    }
    let mut out = HashMap::new();
    for t in hits {
        telemetry::rpc_request(&ep.redacted, "eth_getTransactionReceipt");
        let r = p
            .get_transaction_receipt(t.hash)
            .await
            .map_err(|e| rpc_error(ep, "eth_getTransactionReceipt", e))?
            .ok_or_else(|| SourceError::MissingBlock {
                endpoint: ep.redacted.clone(),
                number: block.number,
            })?;
        out.insert(t.hash, r.status());
    }
    Ok(out)
}

/// The revert data of a failed transaction, replayed with `eth_call` on the parent block's state.
async fn replay(p: &DynProvider, ep: &Endpoint, t: &TxCall, parent: u64) -> Option<Bytes> {
    use alloy::network::TransactionBuilder;
    let request = alloy::rpc::types::TransactionRequest::default()
        .with_from(t.from)
        .with_to(t.to?)
        .with_input(t.input.clone())
        .with_value(t.value)
        .with_gas_limit(t.gas);
    telemetry::rpc_request(&ep.redacted, "eth_call");
    match p.call(request).block(BlockId::number(parent)).await {
        Ok(_) => None, // succeeds on the parent state: it failed for a reason of its block
        Err(e) => e.as_error_resp().and_then(|r| r.as_revert_data()),
    }
}

/// A call frame into a watched contract, as `trace_filter` reports it; the
/// transaction's hash and index are in `call`.
struct TracedCall {
    block_number: u64,
    block_hash: B256,
    nested: bool,
    call: TxCall,
    success: bool,
    output: Option<Bytes>,
}

/// What a node said to one `trace_filter` request.
enum TraceAnswer {
    Calls(Vec<TracedCall>),
    /// The range is longer than the node serves.
    TooLong,
    Unsupported,
}

/// Every call frame into the watched contracts in `from..=to`, by
/// `trace_filter` in spans the node accepts (learned by halving), a few in
/// flight. `Ok(None)`: this endpoint does not serve it, and is marked so;
/// read blocks instead.
async fn fetch_traces(
    p: &DynProvider,
    ep: &Endpoint,
    from: u64,
    to: u64,
    watch: &Watch,
) -> Result<Option<Vec<TracedCall>>, SourceError> {
    use std::sync::atomic::Ordering::Relaxed;
    loop {
        let span = ep.trace_span.load(Relaxed).max(1);
        let spans = (from..=to)
            .step_by(span as usize)
            .map(|a| (a, to.min(a + span - 1)));
        let answers: Vec<Result<TraceAnswer, SourceError>> = futures::stream::iter(spans)
            .map(|(a, b)| trace_span(p, ep, a, b, watch))
            .buffered(BLOCKS_IN_FLIGHT)
            .collect()
            .await;
        let mut calls = Vec::new();
        let mut too_long = false;
        let mut unsupported = false;
        for answer in answers {
            match answer? {
                TraceAnswer::Calls(c) => calls.extend(c),
                TraceAnswer::TooLong => too_long = true,
                TraceAnswer::Unsupported => unsupported = true,
            }
        }
        if unsupported || (too_long && span == 1) {
            ep.trace_filter.store(false, Relaxed);
            tracing::info!(endpoint = %ep.redacted,
                "trace_filter not available; reading calls block by block");
            return Ok(None);
        }
        if !too_long {
            return Ok(Some(calls));
        }
        ep.trace_span.fetch_min(span / 2, Relaxed);
        tracing::debug!(endpoint = %ep.redacted, span = span / 2, "trace_filter range refused; halving");
    }
}

async fn trace_span(
    p: &DynProvider,
    ep: &Endpoint,
    from: u64,
    to: u64,
    watch: &Watch,
) -> Result<TraceAnswer, SourceError> {
    telemetry::rpc_request(&ep.redacted, "trace_filter");
    let filter = serde_json::json!([{
        "fromBlock": alloy::primitives::U64::from(from),
        "toBlock": alloy::primitives::U64::from(to),
        "toAddress": watch.contracts,
    }]);
    let traces: Vec<serde_json::Value> = match p.raw_request("trace_filter".into(), filter).await {
        Ok(t) => t,
        Err(e) => {
            let text = redact_in(&e.to_string(), &ep.url);
            if is_range_error(&text) && to > from {
                return Ok(TraceAnswer::TooLong);
            }
            // Any JSON-RPC error answer means this node will not serve it
            // (method missing, disabled, or failing): read blocks instead
            // rather than retry forever. Transport errors are retried.
            let unsupported = e.as_error_resp().is_some() || is_unsupported(&text);
            if unsupported {
                tracing::debug!(endpoint = %ep.redacted, error = %text, "trace_filter refused");
                return Ok(TraceAnswer::Unsupported);
            }
            return Err(rpc_error(ep, "trace_filter", text)); // counts the error
        }
    };
    let watched: std::collections::HashSet<&Address> = watch.contracts.iter().collect();
    Ok(TraceAnswer::Calls(
        traces
            .iter()
            .filter_map(|t| traced_call(t, &watched, watch.trace))
            .collect(),
    ))
}

fn is_unsupported(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "method not found",
        "not supported",
        "unsupported",
        "does not exist",
        "not available",
    ]
    .iter()
    .any(|e| t.contains(e))
}

/// One `trace_filter` entry, if it is a call into a watched contract that
/// counts: top-level calls only, unless nested calls are traced too.
fn traced_call(
    t: &serde_json::Value,
    watched: &std::collections::HashSet<&Address>,
    nested_too: bool,
) -> Option<TracedCall> {
    if t["type"].as_str() != Some("call") {
        return None;
    }
    let action = &t["action"];
    let addr = |k: &str| action[k].as_str().and_then(|a| a.parse::<Address>().ok());
    let to = addr("to").filter(|a| watched.contains(a))?;
    let nested = t["traceAddress"].as_array().is_some_and(|a| !a.is_empty());
    if nested && !nested_too {
        return None;
    }
    let hex_u64 = |v: &serde_json::Value| match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16).ok(),
        _ => None,
    };
    let failed = t.get("error").is_some_and(|e| !e.is_null());
    Some(TracedCall {
        block_number: hex_u64(&t["blockNumber"])?,
        block_hash: t["blockHash"].as_str()?.parse().ok()?,
        nested,
        call: TxCall {
            hash: t["transactionHash"].as_str()?.parse().ok()?,
            index: hex_u64(&t["transactionPosition"])?,
            from: addr("from").unwrap_or_default(),
            to: Some(to),
            input: action["input"]
                .as_str()
                .and_then(|i| i.parse().ok())
                .unwrap_or_default(),
            value: action["value"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
            gas: hex_u64(&action["gas"]).unwrap_or_default(),
        },
        success: !failed,
        output: failed
            .then(|| t["result"]["output"].as_str().and_then(|o| o.parse().ok()))
            .flatten()
            .filter(|o: &Bytes| !o.is_empty()),
    })
}

/// Dates traced calls (by the headers at hand, the logs' block times, else
/// by fetching the header) and reads the revert data a trace left out.
async fn trace_outcomes(
    p: &DynProvider,
    ep: &Endpoint,
    traces: Vec<TracedCall>,
    logs: &[Log],
    known: &BTreeMap<u64, BlockRef>,
) -> Result<Vec<CallOutcome>, SourceError> {
    let mut times = BlockTimes::new(known).with_logs(logs);
    let mut out = Vec::with_capacity(traces.len());
    for t in traces {
        let block_timestamp = times.get(p, ep, t.block_number).await?;
        let revert = match (&t.output, t.success, t.nested) {
            (Some(o), _, _) => Some(o.clone()),
            // A failed transaction whose trace has no output: replay it.
            (None, false, false) => replay(p, ep, &t.call, t.block_number.saturating_sub(1)).await,
            _ => None,
        };
        out.push(CallOutcome {
            block_number: t.block_number,
            block_hash: t.block_hash,
            block_timestamp,
            tx_hash: t.call.hash,
            tx_index: t.call.index,
            from: t.call.from,
            to: t.call.to.unwrap_or_default(),
            success: t.success,
            revert,
            nested: t.nested,
        });
    }
    Ok(out)
}

/// Every call frame of a block (top level and nested) into a watched contract.
async fn trace_block(
    p: &DynProvider,
    ep: &Endpoint,
    block: &BlockRef,
    watched: &std::collections::HashSet<Address>,
) -> Result<Vec<CallOutcome>, SourceError> {
    telemetry::rpc_request(&ep.redacted, "debug_traceBlockByNumber");
    let traces: Vec<serde_json::Value> = p
        .raw_request(
            "debug_traceBlockByNumber".into(),
            (
                alloy::primitives::U64::from(block.number),
                serde_json::json!({"tracer": "callTracer"}),
            ),
        )
        .await
        .map_err(|e| rpc_error(ep, "debug_traceBlockByNumber", e))?;
    let mut out = Vec::new();
    for (index, trace) in traces.iter().enumerate() {
        let tx_hash = trace["txHash"]
            .as_str()
            .and_then(|h| h.parse::<B256>().ok())
            .unwrap_or_default();
        let mut stack = vec![(&trace["result"], false)];
        while let Some((frame, nested)) = stack.pop() {
            let addr = |k: &str| frame[k].as_str().and_then(|a| a.parse::<Address>().ok());
            if let Some(to) = addr("to").filter(|a| watched.contains(a)) {
                let failed = frame.get("error").is_some_and(|e| !e.is_null());
                out.push(CallOutcome {
                    block_number: block.number,
                    block_hash: block.hash,
                    block_timestamp: block.timestamp,
                    tx_hash,
                    tx_index: index as u64,
                    from: addr("from").unwrap_or_default(),
                    to,
                    success: !failed,
                    revert: failed
                        .then(|| {
                            frame["output"]
                                .as_str()
                                .and_then(|o| o.parse::<Bytes>().ok())
                        })
                        .flatten(),
                    nested,
                });
            }
            if let Some(calls) = frame["calls"].as_array() {
                stack.extend(calls.iter().rev().map(|c| (c, true)));
            }
        }
    }
    Ok(out)
}

/// Runs the due probes at `tip` (by block hash, so a reorg cannot mix states).
async fn run_probes(
    p: &DynProvider,
    ep: &Endpoint,
    tip: BlockRef,
    due: &[&ProbeCall],
) -> Vec<ProbeResult> {
    use alloy::network::TransactionBuilder;
    let mut out = Vec::new();
    for probe in due {
        let request = alloy::rpc::types::TransactionRequest::default()
            .with_to(probe.address)
            .with_input(probe.calldata.clone());
        telemetry::rpc_request(&ep.redacted, "eth_call");
        let output = p
            .call(request)
            .block(BlockId::hash(tip.hash))
            .await
            .map_err(|e| {
                telemetry::rpc_error(&ep.redacted, "eth_call");
                redact_in(&e.to_string(), &ep.url)
            });
        out.push(ProbeResult {
            probe: probe.id,
            block: tip,
            output,
        });
    }
    out
}

/// The numbers of the heads an endpoint pushes.
type HeadStream = futures::stream::BoxStream<'static, u64>;

async fn next_head(heads: &mut Option<HeadStream>) -> Option<u64> {
    match heads {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

fn rpc_error(ep: &Endpoint, method: &'static str, e: impl std::fmt::Display) -> SourceError {
    telemetry::rpc_error(&ep.redacted, method);
    SourceError::Rpc {
        endpoint: ep.redacted.clone(),
        method,
        detail: redact_in(&e.to_string(), &ep.url),
    }
}

/// Replaces every occurrence of `url` (and its path-less prefix) in `text` with its redacted form.
fn redact_in(text: &str, url: &str) -> String {
    text.replace(url, &redact_url(url))
}

/// Exponential backoff from the poll interval, capped.
fn backoff(failures: u32, base: Duration) -> Duration {
    let factor = 1u32 << failures.min(6);
    (base.max(Duration::from_millis(200)) * factor).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_filter_entries_become_calls_of_watched_contracts_only() {
        let vault: Address = "0x00000000000000000000000000000000000000aa"
            .parse()
            .unwrap();
        let other: Address = "0x00000000000000000000000000000000000000bb"
            .parse()
            .unwrap();
        let watched: std::collections::HashSet<&Address> = [&vault].into_iter().collect();
        let entry = |to: Address, trace_address: serde_json::Value, error: bool| {
            let mut t = serde_json::json!({
                "action": {"from": other, "callType": "call", "gas": "0x5208",
                           "input": "0x8456cb59", "to": to, "value": "0x0"},
                "blockHash": B256::repeat_byte(7), "blockNumber": 12,
                "result": {"gasUsed": "0x10", "output": "0xd93c0665"},
                "subtraces": 0, "traceAddress": trace_address,
                "transactionHash": B256::repeat_byte(9), "transactionPosition": 3,
                "type": "call"
            });
            if error {
                t["error"] = "Reverted".into();
            }
            t
        };
        let top = traced_call(&entry(vault, serde_json::json!([]), true), &watched, false)
            .expect("a failed top-level call into the vault");
        assert_eq!(
            (top.block_number, top.call.index, top.nested),
            (12, 3, false)
        );
        assert_eq!(top.block_hash, B256::repeat_byte(7));
        assert!(!top.success);
        // EnforcedPause()'s selector, read from the trace's output.
        assert_eq!(
            top.output.as_ref().map(|o| o.to_vec()),
            Some(vec![0xd9, 0x3c, 0x06, 0x65])
        );
        assert_eq!(top.call.gas, 0x5208);
        let ok = traced_call(&entry(vault, serde_json::json!([]), false), &watched, false).unwrap();
        assert!(ok.success && ok.output.is_none());
        let nested = entry(vault, serde_json::json!([0, 1]), true);
        assert!(
            traced_call(&nested, &watched, false).is_none(),
            "top-level only"
        );
        assert!(traced_call(&nested, &watched, true).is_some_and(|c| c.nested));
        assert!(traced_call(&entry(other, serde_json::json!([]), true), &watched, true).is_none());
    }

    #[test]
    fn provider_range_errors_are_recognised() {
        for text in [
            "server returned an error response: error code -32005: query returned more than 10000 results",
            "block range is too large",
            "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
            "query exceeds max results 20000, retry with the range 1-500",
        ] {
            assert!(is_range_error(text), "{text}");
        }
        assert!(!is_range_error("connection refused"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(500);
        assert_eq!(backoff(1, base), Duration::from_secs(1));
        assert_eq!(backoff(2, base), Duration::from_secs(2));
        assert_eq!(backoff(30, base), MAX_BACKOFF);
    }

    #[test]
    fn errors_never_carry_the_secret_part_of_a_url() {
        let url = "https://eth.example.com/v3/SECRETKEY";
        let text = format!("error sending request for url ({url})");
        let redacted = redact_in(&text, url);
        assert!(!redacted.contains("SECRETKEY"), "{redacted}");
        assert!(redacted.contains("eth.example.com"));
    }
}
