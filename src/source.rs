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

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, Log};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::config::{ChainConfig, StartBlock};
use crate::model::{BlockRef, ChainUpdate, CommittedRange};
use crate::{redact_url, telemetry};

/// Blocks per `eth_getLogs` call while catching up.
const MAX_RANGE_BLOCKS: u64 = 2_000;
/// Ranges at most this long are read header by header and link-checked.
const NEAR_HEAD_BLOCKS: u64 = 16;
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
        let endpoints = chain
            .rpc
            .iter()
            .map(|url| Endpoint {
                redacted: redact_url(url),
                ws: url.starts_with("ws"),
                url: url.clone(),
                provider: None,
            })
            .collect();
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
        }
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
            match self.step(&tx).await {
                Ok(Some(Progress::More)) => {
                    failures = 0;
                    continue;
                }
                Ok(Some(Progress::Idle)) => failures = 0,
                Ok(None) => return Ok(()), // the pipeline is gone
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => {
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
                item = next_head(&mut heads) => {
                    if item.is_none() {
                        tracing::debug!(chain = %self.chain.name, "head subscription ended; polling");
                        heads = None;
                    }
                }
            }
        }
    }

    async fn subscribe_heads(&mut self) -> Option<HeadStream> {
        if !self.endpoints[self.current].ws {
            return None;
        }
        let provider = self.provider().await.ok()?;
        match provider.subscribe_blocks().await {
            Ok(sub) => Some(sub.into_stream().map(|_| ()).boxed()),
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
        let ep = &self.endpoints[self.current];
        telemetry::rpc_request(&ep.redacted, "eth_blockNumber");
        let head = p
            .get_block_number()
            .await
            .map_err(|e| rpc_error(ep, "eth_blockNumber", e))?;
        self.status.head_seen(&self.chain.name, head);
        let target = head.saturating_sub(self.chain.confirmations);
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

        let to = target.min(from + MAX_RANGE_BLOCKS - 1);
        let near = to - from < NEAR_HEAD_BLOCKS;
        let numbers: Vec<u64> = if near {
            (from..=to).collect()
        } else {
            vec![from, to]
        };
        let filter = self.filter.clone().from_block(from).to_block(to);
        telemetry::rpc_request(&self.endpoints[self.current].redacted, "eth_getLogs");
        let logs_call = p.get_logs(&filter);
        let ep = &self.endpoints[self.current];
        let headers_call = futures::future::try_join_all(numbers.iter().map(|&n| {
            let p = p.clone();
            async move { fetch_header(&p, ep, n).await }
        }));
        let (logs, headers) = tokio::join!(logs_call, headers_call);
        let ep = &self.endpoints[self.current];
        let mut logs = logs.map_err(|e| rpc_error(ep, "eth_getLogs", e))?;
        let headers: Vec<BlockRef> = headers?
            .into_iter()
            .zip(&numbers)
            .map(|(h, &n)| {
                h.ok_or_else(|| SourceError::MissingBlock {
                    endpoint: ep.redacted.clone(),
                    number: n,
                })
            })
            .collect::<Result<_, _>>()?;

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
        if !consistent {
            tracing::debug!(chain = %self.chain.name, from, to, "logs from another branch; reading again");
            return Ok(Some(Progress::More));
        }
        fill_timestamps(&p, &self.endpoints[self.current], &mut logs, &by_number).await?;

        let tip = headers[headers.len() - 1];
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
        });
        if tx.send(update).await.is_err() {
            return Ok(None);
        }
        Ok(Some(if to < target {
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
    let mut fetched: BTreeMap<u64, u64> = BTreeMap::new();
    for log in logs.iter_mut().filter(|l| l.block_timestamp.is_none()) {
        let Some(n) = log.block_number else { continue };
        let ts = match known
            .get(&n)
            .map(|b| b.timestamp)
            .or(fetched.get(&n).copied())
        {
            Some(ts) => ts,
            None => {
                let b = fetch_header(p, ep, n)
                    .await?
                    .ok_or_else(|| SourceError::MissingBlock {
                        endpoint: ep.redacted.clone(),
                        number: n,
                    })?;
                fetched.insert(n, b.timestamp);
                b.timestamp
            }
        };
        log.block_timestamp = Some(ts);
    }
    Ok(())
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
                        endpoint: Endpoint {
                            url: ep.url.clone(),
                            redacted: ep.redacted.clone(),
                            ws: ep.ws,
                            provider: None,
                        },
                        filter: source.filter.clone(),
                        chunk: BACKFILL_START_BLOCKS.into(),
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

    /// The size of the next chunk to ask for.
    pub fn chunk(&self) -> u64 {
        self.chunk.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// All monitored logs of `from..=to`, in chain order, timestamps filled in.
    pub async fn fetch(&self, from: u64, to: u64) -> Result<Vec<Log>, SourceError> {
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

type HeadStream = futures::stream::BoxStream<'static, ()>;

async fn next_head(heads: &mut Option<HeadStream>) -> Option<()> {
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
