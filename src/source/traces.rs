//! Calls found by tracing: `trace_filter` over whole ranges where the node
//! serves it, `debug_traceBlockByNumber` (callTracer) per block for nested
//! calls.

use std::collections::{BTreeMap, HashSet};

use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::Log;
use futures::StreamExt;

use super::attribution::{attribute_pauses, raisers};
use super::blocks::{BlockTimes, TxCall};
use super::endpoints::Endpoint;
use super::endpoints::rpc_error;
use super::errors::{ErrorClass, classify};
use super::replay::replay;
use super::{BLOCKS_IN_FLIGHT, SourceError, Watch};
use crate::model::{BlockRef, CallOutcome};
use crate::telemetry;

/// A call frame into a watched contract, as `trace_filter` reports it; the
/// transaction's hash and index are in `call`.
pub(super) struct TracedCall {
    pub block_number: u64,
    pub block_hash: B256,
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
    /// The node does not serve `trace_filter`.
    Unsupported,
    /// The node answered with another error: read this range block by
    /// block, and try `trace_filter` again next time.
    Refused,
}

/// Every call frame into the watched contracts in `from..=to`, by
/// `trace_filter` in spans the node accepts (learned by halving), a few in
/// flight. `Ok(None)`: this endpoint does not serve it, and is marked so;
/// read blocks instead.
pub(super) async fn fetch_traces(
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
        let mut refused = false;
        for answer in answers {
            match answer? {
                TraceAnswer::Calls(c) => calls.extend(c),
                TraceAnswer::TooLong => too_long = true,
                TraceAnswer::Unsupported => unsupported = true,
                TraceAnswer::Refused => refused = true,
            }
        }
        if refused && !unsupported {
            return Ok(None);
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
            let class = classify(&e);
            let text = crate::redact_urls_in(&e.to_string());
            if class == ErrorClass::RangeTooLarge && to > from {
                return Ok(TraceAnswer::TooLong);
            }
            if class == ErrorClass::Unsupported {
                tracing::debug!(endpoint = %ep.redacted, error = %text, "trace_filter not served");
                return Ok(TraceAnswer::Unsupported);
            }
            // The node answered, with another error: this range is read
            // block by block. Transport errors and throttling are retried.
            if e.as_error_resp().is_some() && !matches!(class, ErrorClass::RateLimited { .. }) {
                tracing::debug!(endpoint = %ep.redacted, error = %text, "trace_filter refused");
                return Ok(TraceAnswer::Refused);
            }
            return Err(rpc_error(ep, "trace_filter", &e)); // counts the error
        }
    };
    let watched: HashSet<&Address> = watch.contracts.iter().collect();
    Ok(TraceAnswer::Calls(
        traces
            .iter()
            .filter_map(|t| traced_call(t, &watched, watch.trace))
            .collect(),
    ))
}

/// One `trace_filter` entry, if it is a call into a watched contract that
/// counts: top-level calls only, unless nested calls are traced too.
fn traced_call(
    t: &serde_json::Value,
    watched: &HashSet<&Address>,
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
pub(super) async fn trace_outcomes(
    p: &DynProvider,
    ep: &Endpoint,
    traces: Vec<TracedCall>,
    logs: &[Log],
    known: &BTreeMap<u64, BlockRef>,
    halt_reverts: &[(Address, Bytes)],
) -> Result<Vec<CallOutcome>, SourceError> {
    let mut times = BlockTimes::new(known).with_logs(logs);
    let mut out = Vec::with_capacity(traces.len());
    for t in traces {
        let block_timestamp = times.get(p, ep, t.block_number).await?;
        let revert = match (&t.output, t.success, t.nested) {
            (Some(o), _, _) => Some(o.clone()),
            // A failed transaction whose trace has no output: replay it.
            (None, false, false) => {
                replay(p, ep, &t.call, t.block_number.saturating_sub(1)).await?
            }
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
            input: (!t.success).then(|| t.call.input.clone()),
            nested: t.nested,
            raised_here: None,
        });
    }
    attribute_pauses(p, ep, &mut out, halt_reverts).await?;
    Ok(out)
}

/// Every call frame of a block (top level and nested) into a watched contract.
pub(super) async fn trace_block(
    p: &DynProvider,
    ep: &Endpoint,
    block: &BlockRef,
    watched: &HashSet<Address>,
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
        .map_err(|e| rpc_error(ep, "debug_traceBlockByNumber", &e))?;
    let mut out = Vec::new();
    for (index, trace) in traces.iter().enumerate() {
        let tx_hash = trace["txHash"]
            .as_str()
            .and_then(|h| h.parse::<B256>().ok())
            .unwrap_or_default();
        let raised = raisers(&trace["result"]);
        let mut stack = vec![(&trace["result"], false)];
        while let Some((frame, nested)) = stack.pop() {
            let addr = |k: &str| frame[k].as_str().and_then(|a| a.parse::<Address>().ok());
            if let Some(to) = addr("to").filter(|a| watched.contains(a)) {
                let failed = frame.get("error").is_some_and(|e| !e.is_null());
                let revert = failed
                    .then(|| {
                        frame["output"]
                            .as_str()
                            .and_then(|o| o.parse::<Bytes>().ok())
                    })
                    .flatten();
                let raised_here = revert.as_ref().map(|r| raised.contains(&(to, r.clone())));
                out.push(CallOutcome {
                    block_number: block.number,
                    block_hash: block.hash,
                    block_timestamp: block.timestamp,
                    tx_hash,
                    tx_index: index as u64,
                    from: addr("from").unwrap_or_default(),
                    to,
                    success: !failed,
                    revert,
                    input: failed
                        .then(|| {
                            frame["input"]
                                .as_str()
                                .and_then(|i| i.parse::<Bytes>().ok())
                        })
                        .flatten(),
                    nested,
                    raised_here,
                });
            }
            if let Some(calls) = frame["calls"].as_array() {
                stack.extend(calls.iter().rev().map(|c| (c, true)));
            }
        }
    }
    Ok(out)
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
}
