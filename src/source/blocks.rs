//! Headers and blocks: by number or by hash, with the bloom that says
//! whether a block can hold monitored logs, and block times for logs that
//! come without one.

use std::collections::BTreeMap;

use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::primitives::{Address, B256, Bloom, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::Log;
use futures::{StreamExt, TryStreamExt};

use super::endpoints::Endpoint;
use super::endpoints::rpc_error;
use super::{BLOCKS_IN_FLIGHT, SourceError};
use crate::model::BlockRef;
use crate::telemetry;

/// A block as the source needs it: its place in the chain, its logs bloom
/// and (when calls are watched) its transactions.
#[derive(Debug, Clone)]
pub(super) struct Block {
    pub block: BlockRef,
    pub bloom: Bloom,
    pub txs: Vec<TxCall>,
}

impl Block {
    pub fn of_header(h: &alloy::rpc::types::Header) -> Self {
        Block {
            block: BlockRef {
                number: h.number,
                hash: h.hash,
                parent_hash: h.parent_hash,
                timestamp: h.timestamp,
            },
            bloom: h.logs_bloom,
            txs: Vec::new(),
        }
    }
}

/// A transaction of a block, as far as call watching needs it.
#[derive(Debug, Clone)]
pub(super) struct TxCall {
    pub hash: B256,
    pub index: u64,
    pub from: Address,
    pub to: Option<Address>,
    pub input: Bytes,
    pub value: U256,
    pub gas: u64,
}

/// Nodes that omit `blockTimestamp` on logs get it from the block header.
pub(super) async fn fill_timestamps(
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
pub(super) struct BlockTimes(BTreeMap<u64, u64>);

impl BlockTimes {
    pub fn new(known: &BTreeMap<u64, BlockRef>) -> Self {
        BlockTimes(known.iter().map(|(n, b)| (*n, b.timestamp)).collect())
    }

    /// Also the block times the logs carry.
    pub fn with_logs(mut self, logs: &[Log]) -> Self {
        for l in logs {
            if let (Some(n), Some(ts)) = (l.block_number, l.block_timestamp) {
                self.0.entry(n).or_insert(ts);
            }
        }
        self
    }

    pub async fn get(
        &mut self,
        p: &DynProvider,
        ep: &Endpoint,
        n: u64,
    ) -> Result<u64, SourceError> {
        if let Some(ts) = self.0.get(&n) {
            return Ok(*ts);
        }
        let b = fetch_header(p, ep, n)
            .await?
            .ok_or_else(|| SourceError::MissingBlock {
                endpoint: ep.redacted.clone(),
                number: n,
            })?;
        self.0.insert(n, b.block.timestamp);
        Ok(b.block.timestamp)
    }
}

/// The canonical header at `number`, if the node has it.
pub(super) async fn fetch_header(
    p: &DynProvider,
    ep: &Endpoint,
    number: u64,
) -> Result<Option<Block>, SourceError> {
    telemetry::rpc_request(&ep.redacted, "eth_getBlockByNumber");
    let block = p
        .get_block_by_number(BlockNumberOrTag::Number(number))
        .await
        .map_err(|e| rpc_error(ep, "eth_getBlockByNumber", &e))?;
    Ok(block.map(|b| Block::of_header(&b.header)))
}

/// The headers of `numbers`, in order, in one JSON-RPC batch: the reorg
/// window's worth of a catch-up's last range without a round trip each
/// (16 of them through a remote node). A node that refuses batches is asked
/// header by header.
pub(super) async fn fetch_headers_batch(
    p: &DynProvider,
    ep: &Endpoint,
    numbers: &[u64],
) -> Result<Vec<Block>, SourceError> {
    let method = "eth_getBlockByNumber";
    let client = p.client();
    let mut batch = alloy::rpc::client::BatchRequest::new(client);
    let mut waiters = Vec::with_capacity(numbers.len());
    for &n in numbers {
        telemetry::rpc_request(&ep.redacted, method);
        let call = batch
            .add_call::<_, Option<alloy::rpc::types::Block>>(
                method,
                &(BlockNumberOrTag::Number(n), false),
            )
            .map_err(|e| rpc_error(ep, method, &e))?;
        waiters.push((n, call));
    }
    if let Err(e) = batch.send().await {
        tracing::debug!(endpoint = %ep.redacted, error = %crate::redact_urls_in(&e.to_string()),
            "batch refused; reading headers one by one");
        return fetch_blocks(p, ep, numbers, false).await;
    }
    let mut out = Vec::with_capacity(numbers.len());
    for (number, call) in waiters {
        let block = call
            .await
            .map_err(|e| rpc_error(ep, method, &e))?
            .ok_or_else(|| SourceError::MissingBlock {
                endpoint: ep.redacted.clone(),
                number,
            })?;
        out.push(Block::of_header(&block.header));
    }
    Ok(out)
}

/// Blocks `numbers` in order (with `full`, their transactions too); a block
/// the node does not have is an error.
pub(super) async fn fetch_blocks(
    p: &DynProvider,
    ep: &Endpoint,
    numbers: &[u64],
    full: bool,
) -> Result<Vec<Block>, SourceError> {
    futures::stream::iter(numbers.iter().copied())
        .map(|n| async move {
            let block = if full {
                fetch_full_block(p, ep, BlockId::number(n)).await?
            } else {
                fetch_header(p, ep, n).await?
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

/// A block with its transactions, by number or by hash.
pub(super) async fn fetch_full_block(
    p: &DynProvider,
    ep: &Endpoint,
    id: BlockId,
) -> Result<Option<Block>, SourceError> {
    use alloy::consensus::Transaction as _;
    let method = match id {
        BlockId::Hash(_) => "eth_getBlockByHash",
        BlockId::Number(_) => "eth_getBlockByNumber",
    };
    telemetry::rpc_request(&ep.redacted, method);
    let block = p
        .get_block(id)
        .full()
        .await
        .map_err(|e| rpc_error(ep, method, &e))?;
    Ok(block.map(|b| {
        let mut out = Block::of_header(&b.header);
        out.txs = b
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
        out
    }))
}
