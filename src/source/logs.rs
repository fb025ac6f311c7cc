//! Monitored logs: over ranges in adaptive chunks (the live follower and
//! backfill share the splitting), and by block hash at the head. An empty
//! answer is checked against the block's bloom before it is believed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, Log};

use super::blocks::{Block, fetch_blocks, fetch_headers_batch, fill_timestamps};
use super::calls::watch_calls;
use super::endpoints::{Endpoint, backoff};
use super::errors::ErrorClass;
use super::traces::{fetch_traces, trace_outcomes};
use super::{MAX_FULL_RANGE_BLOCKS, MAX_RANGE_BLOCKS, SourceError, Watch};
use crate::config::ChainConfig;
use crate::model::CallOutcome;
use crate::telemetry;

/// Blocks per `eth_getLogs` a backfill starts with.
const BACKFILL_START_BLOCKS: u64 = 10_000;
/// The largest range a backfill asks for at once.
const BACKFILL_MAX_BLOCKS: u64 = 100_000;
/// Attempts at one range on errors that are not about its size.
const BACKFILL_ATTEMPTS: u32 = 5;

/// The logs of `from..=to` matching `filter`, in as many requests as the
/// node needs: a range it refuses as too large is halved (and `span`, the
/// range to ask for next time, shrinks to what it took); a range taken at
/// full `span` lets `span` grow again, up to `max`. Any other error ends
/// the read: the caller decides whether to retry or go elsewhere.
pub(super) async fn get_logs_split(
    p: &DynProvider,
    ep: &Endpoint,
    filter: &Filter,
    (from, to): (u64, u64),
    span: &AtomicU64,
    max: u64,
) -> Result<Vec<Log>, SourceError> {
    let mut out = Vec::new();
    let mut pending = VecDeque::from([(from, to)]);
    while let Some((a, b)) = pending.pop_front() {
        let range = filter.clone().from_block(a).to_block(b);
        telemetry::rpc_request(&ep.redacted, "eth_getLogs");
        match p.get_logs(&range).await {
            Ok(logs) => {
                out.extend(logs);
                let size = b - a + 1;
                if size >= span.load(Relaxed) {
                    span.fetch_max((size * 2).min(max), Relaxed);
                }
            }
            Err(e) => {
                let e = super::endpoints::rpc_error(ep, "eth_getLogs", &e);
                if e.class() != ErrorClass::RangeTooLarge || a == b {
                    return Err(e);
                }
                let mid = a + (b - a) / 2;
                pending.push_front((mid + 1, b));
                pending.push_front((a, mid));
                span.fetch_min(mid - a + 1, Relaxed);
                tracing::debug!(endpoint = %ep.redacted, from = a, to = b, error = %e, "range refused; splitting");
            }
        }
    }
    Ok(out)
}

/// The monitored logs of one block, by its hash: a node that does not have
/// the block answers with an error, never with an empty list.
async fn get_logs_by_hash(
    p: &DynProvider,
    ep: &Endpoint,
    filter: &Filter,
    hash: B256,
) -> Result<Vec<Log>, SourceError> {
    telemetry::rpc_request(&ep.redacted, "eth_getLogs");
    p.get_logs(&filter.clone().at_block_hash(hash))
        .await
        .map_err(|e| super::endpoints::rpc_error(ep, "eth_getLogs", &e))
}

/// The monitored logs of `blocks`, each read by its hash, a few at once, in
/// the blocks' order.
pub(super) async fn get_logs_by_hashes(
    p: &DynProvider,
    ep: &Endpoint,
    filter: &Filter,
    blocks: &[Block],
) -> Result<Vec<Log>, SourceError> {
    use futures::{StreamExt, TryStreamExt};
    let hashes: Vec<B256> = blocks.iter().map(|b| b.block.hash).collect();
    let per_block: Vec<Vec<Log>> = futures::stream::iter(hashes)
        .map(|hash| get_logs_by_hash(p, ep, filter, hash))
        .buffered(super::BLOCKS_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(per_block.into_iter().flatten().collect())
}

/// The first block whose bloom says it may hold a monitored log while the
/// answer holds none of it: the node has the header but (not yet) the logs.
pub(super) fn unindexed<'a>(
    filter: &Filter,
    blocks: &'a [Block],
    logs: &[Log],
) -> Option<&'a Block> {
    blocks.iter().find(|b| {
        filter.matches_bloom(b.bloom) && !logs.iter().any(|l| l.block_hash == Some(b.block.hash))
    })
}

/// Reads the logs of a historical range in adaptive chunks: starts large,
/// halves a chunk the provider refuses as too large, grows again after
/// successes. Safe to share between several fetches in flight.
pub struct LogFetcher {
    provider: DynProvider,
    endpoint: Endpoint,
    filter: Filter,
    chunk: AtomicU64,
    watch: Watch,
}

/// What a backfill chunk holds: the logs and (when calls are watched) the call outcomes.
pub struct Fetched {
    pub logs: Vec<Log>,
    pub calls: Vec<CallOutcome>,
    /// The chain times of the range's first and last blocks: what was observed.
    pub times: (u64, u64),
}

impl LogFetcher {
    /// Connects to the first endpoint of `chain` that answers with the right chain id.
    pub async fn connect(
        chain: &ChainConfig,
        addresses: Vec<Address>,
        topics: Vec<B256>,
    ) -> Result<Self, SourceError> {
        let (provider, endpoint) = super::connect_endpoint(chain).await?;
        Ok(LogFetcher {
            provider,
            endpoint,
            filter: Filter::new().address(addresses).event_signature(topics),
            chunk: BACKFILL_START_BLOCKS.into(),
            watch: Watch::default(),
        })
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

    /// The view calls of `probes` on block `at`'s state (a backfill reads
    /// the complete sets once, at the end of its range).
    pub async fn read_at(
        &self,
        at: u64,
        probes: &[super::ProbeCall],
    ) -> Result<Vec<crate::model::ProbeResult>, SourceError> {
        let header = fetch_headers_batch(&self.provider, &self.endpoint, &[at]).await?;
        let Some(tip) = header.first().map(|b| b.block) else {
            return Ok(Vec::new());
        };
        let due: Vec<&super::ProbeCall> = probes.iter().collect();
        Ok(super::calls::run_probes(&self.provider, &self.endpoint, tip, &due).await)
    }

    /// The size of the next chunk to ask for.
    pub fn chunk(&self) -> u64 {
        self.chunk.load(Relaxed)
    }

    /// The monitored logs of `from..=to` (timestamps filled in) and, when
    /// calls are watched, the calls into the watched contracts.
    pub async fn fetch(&self, from: u64, to: u64) -> Result<Fetched, SourceError> {
        let logs = self.fetch_logs(from, to).await?;
        // Both ends' headers in one batch request: the span observed.
        let ends = fetch_headers_batch(&self.provider, &self.endpoint, &[from, to]).await?;
        let time = |i: usize| ends.get(i).map_or(0, |b| b.block.timestamp);
        let times = (time(0), time(1));
        if !self.watch.needs_blocks() {
            return Ok(Fetched {
                logs,
                calls: Vec::new(),
                times,
            });
        }
        if let Some(calls) = self.fetch_traced(from, to, &logs).await? {
            return Ok(Fetched { logs, calls, times });
        }
        let numbers: Vec<u64> = (from..=to).collect();
        let blocks = fetch_blocks(&self.provider, &self.endpoint, &numbers, true).await?;
        let calls = watch_calls(&self.provider, &self.endpoint, &blocks, &self.watch).await?;
        Ok(Fetched { logs, calls, times })
    }

    /// The calls of `from..=to` by `trace_filter`; `None` once the endpoint
    /// has said it does not serve it.
    async fn fetch_traced(
        &self,
        from: u64,
        to: u64,
        logs: &[Log],
    ) -> Result<Option<Vec<CallOutcome>>, SourceError> {
        if !self.endpoint.trace_filter.load(Relaxed) {
            return Ok(None);
        }
        let Some(traces) =
            fetch_traces(&self.provider, &self.endpoint, from, to, &self.watch).await?
        else {
            return Ok(None);
        };
        let known = BTreeMap::new();
        let calls = trace_outcomes(
            &self.provider,
            &self.endpoint,
            traces,
            logs,
            &known,
            &self.watch.halt_reverts,
        )
        .await?;
        Ok(Some(calls))
    }

    /// Logs of the range, split as the node needs; other errors are retried
    /// a few times with backoff (a backfill has one endpoint at a time).
    async fn fetch_logs(&self, from: u64, to: u64) -> Result<Vec<Log>, SourceError> {
        let mut failures = 0;
        let mut logs = loop {
            let read = get_logs_split(
                &self.provider,
                &self.endpoint,
                &self.filter,
                (from, to),
                &self.chunk,
                BACKFILL_MAX_BLOCKS,
            )
            .await;
            match read {
                Ok(logs) => break logs,
                Err(e) => {
                    failures += 1;
                    if failures >= BACKFILL_ATTEMPTS {
                        return Err(e);
                    }
                    let wait = match e.class() {
                        ErrorClass::RateLimited {
                            retry_after: Some(d),
                        } => d,
                        _ => backoff(failures + 1),
                    };
                    tracing::warn!(from, to, error = %e, failures, "log read failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        };
        fill_timestamps(&self.provider, &self.endpoint, &mut logs, &BTreeMap::new()).await?;
        Ok(logs)
    }
}

/// The live follower's learned log span starts here.
pub(super) const LIVE_MAX_SPAN: u64 = MAX_RANGE_BLOCKS;
