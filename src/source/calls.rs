//! Calls into watched contracts, from receipts (failed ones replayed for
//! their revert data), and state probes.

use std::collections::{HashMap, HashSet};

use alloy::eips::BlockId;
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};

use super::attribution::attribute_pauses;
use super::blocks::{Block, TxCall};
use super::endpoints::Endpoint;
use super::endpoints::rpc_error;
use super::errors::{ErrorClass, classify};
use super::replay::replay;
use super::traces::trace_block;
use super::{ProbeCall, SourceError, Watch};
use crate::model::{BlockRef, CallOutcome, ProbeResult};
use crate::telemetry;

/// The calls of `blocks` into watched contracts: from receipts (failed ones
/// replayed for their revert data), or from each block's call tracer, which
/// also sees nested calls.
pub(super) async fn watch_calls(
    p: &DynProvider,
    ep: &Endpoint,
    blocks: &[Block],
    watch: &Watch,
) -> Result<Vec<CallOutcome>, SourceError> {
    let watched: HashSet<Address> = watch.contracts.iter().copied().collect();
    let mut out = Vec::new();
    for Block { block, txs, .. } in blocks {
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
                replay(p, ep, t, block.number.saturating_sub(1)).await?
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
                input: (!success).then(|| t.input.clone()),
                nested: false,
                raised_here: None,
            });
        }
    }
    attribute_pauses(p, ep, &mut out, &watch.halt_reverts).await?;
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
            // The node says it does not serve the method; any other error
            // is retried, never taken as a missing capability.
            Err(e) if classify(&e) == ErrorClass::Unsupported => {
                telemetry::rpc_error(&ep.redacted, "eth_getBlockReceipts");
                ep.block_receipts.store(false, Relaxed);
                tracing::info!(endpoint = %ep.redacted,
                    error = %crate::redact_urls_in(&e.to_string()),
                    "eth_getBlockReceipts not available; reading receipts one by one");
            }
            Err(e) => return Err(rpc_error(ep, "eth_getBlockReceipts", &e)),
        }
    }
    let mut out = HashMap::new();
    for t in hits {
        telemetry::rpc_request(&ep.redacted, "eth_getTransactionReceipt");
        let r = p
            .get_transaction_receipt(t.hash)
            .await
            .map_err(|e| rpc_error(ep, "eth_getTransactionReceipt", &e))?
            .ok_or_else(|| SourceError::MissingBlock {
                endpoint: ep.redacted.clone(),
                number: block.number,
            })?;
        out.insert(t.hash, r.status());
    }
    Ok(out)
}

/// Runs the due probes at `tip` (by block hash, so a reorg cannot mix states).
pub(super) async fn run_probes(
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
                crate::redact_urls_in(&e.to_string())
            });
        out.push(ProbeResult {
            kind: probe.kind,
            probe: probe.id,
            block: tip,
            output,
        });
    }
    out
}
