//! Who raised a revert. A pause revert halts a contract only when that
//! contract raised it itself: a vault that forwards a call to a contract of
//! the caller's choosing (a flash-loan receiver, a hook) bubbles up whatever
//! that contract reverts with, `EnforcedPause()` included, and anyone could
//! then open a halted incident with one failed transaction.
//!
//! A call tracer answers exactly: the frame that reverted with the data
//! without a failed callee reverting with the same data raised it. Where the
//! node has no tracer, the contract's `paused()` is read on the block's
//! state and its parent's; a contract that says it is not paused (or has no
//! such view) did not raise a pause.

use std::collections::{HashMap, HashSet};

use alloy::eips::BlockId;
use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{DynProvider, Provider};
use serde_json::Value;

use super::SourceError;
use super::endpoints::Endpoint;
use super::endpoints::rpc_error;
use super::errors::{ErrorClass, classify};
use crate::model::CallOutcome;
use crate::telemetry;

/// `(address, revert data)` of every revert raised in a `callTracer` tree,
/// as opposed to passed on from a failed callee. Code run by
/// `DELEGATECALL` (a library, a module) raises in the caller's name.
pub(super) fn raisers(root: &Value) -> HashSet<(Address, Bytes)> {
    let mut out = HashSet::new();
    let addr = |f: &Value| f["to"].as_str().and_then(|a| a.parse::<Address>().ok());
    let failed = |f: &Value| f.get("error").is_some_and(|e| !e.is_null());
    let output = |f: &Value| {
        f["output"]
            .as_str()
            .and_then(|o| o.parse::<Bytes>().ok())
            .unwrap_or_default()
    };
    let Some(top) = addr(root) else { return out };
    let mut stack = vec![(root, top)];
    while let Some((frame, here)) = stack.pop() {
        let calls = frame["calls"].as_array().map_or(&[][..], Vec::as_slice);
        let data = output(frame);
        if failed(frame) && !data.is_empty() {
            let passed_on = calls.iter().any(|c| failed(c) && output(c) == data);
            if !passed_on {
                out.insert((here, data));
            }
        }
        for c in calls {
            let delegated = matches!(
                c["type"].as_str().map(str::to_ascii_uppercase).as_deref(),
                Some("DELEGATECALL" | "CALLCODE")
            );
            let Some(callee) = addr(c) else { continue };
            stack.push((c, if delegated { here } else { callee }));
        }
    }
    out
}

/// Decides, for every failed call whose revert says "paused" (or is one
/// of its contract's `halt_reverts`) and whose raiser is not known yet,
/// whether the contract called raised it: by tracing its transaction, else
/// by reading `paused()`.
pub(super) async fn attribute_pauses(
    p: &DynProvider,
    ep: &Endpoint,
    calls: &mut [CallOutcome],
    halt_reverts: &[(Address, Bytes)],
) -> Result<(), SourceError> {
    let open = |c: &CallOutcome| {
        let data = c.revert_data();
        !c.success
            && c.raised_here.is_none()
            && (crate::decode::looks_like_pause(data)
                || halt_reverts
                    .iter()
                    .any(|(a, d)| *a == c.to && !d.is_empty() && data.starts_with(d)))
    };
    let txs: HashSet<B256> = calls
        .iter()
        .filter(|c| open(c))
        .map(|c| c.tx_hash)
        .collect();
    let mut traced: HashMap<B256, Option<HashSet<(Address, Bytes)>>> = HashMap::new();
    for tx in txs {
        traced.insert(tx, trace_transaction(p, ep, tx).await?);
    }
    for c in calls.iter_mut().filter(|c| open(c)) {
        let here = match traced.get(&c.tx_hash) {
            Some(Some(raised)) => raised.contains(&(c.to, c.revert.clone().unwrap_or_default())),
            _ => says_paused(p, ep, c).await?,
        };
        if !here {
            tracing::info!(contract = %c.to, tx = %c.tx_hash,
                "a pause revert passed on from another contract; counted as a failed call, not a halt");
        }
        c.raised_here = Some(here);
    }
    Ok(())
}

/// What each contract of one transaction raised, by `debug_traceTransaction`
/// (`callTracer`); `None` when the node does not trace.
async fn trace_transaction(
    p: &DynProvider,
    ep: &Endpoint,
    tx: B256,
) -> Result<Option<HashSet<(Address, Bytes)>>, SourceError> {
    use std::sync::atomic::Ordering::Relaxed;
    if !ep.debug_trace.load(Relaxed) {
        return Ok(None);
    }
    telemetry::rpc_request(&ep.redacted, "debug_traceTransaction");
    let params = (tx, serde_json::json!({"tracer": "callTracer"}));
    match p
        .raw_request::<_, Value>("debug_traceTransaction".into(), params)
        .await
    {
        Ok(trace) => Ok(Some(raisers(&trace))),
        Err(e) if classify(&e) == ErrorClass::Unsupported => {
            telemetry::rpc_error(&ep.redacted, "debug_traceTransaction");
            ep.debug_trace.store(false, Relaxed);
            tracing::info!(endpoint = %ep.redacted,
                error = %crate::redact_urls_in(&e.to_string()),
                "debug_traceTransaction not available; pause reverts are confirmed with paused()");
            Ok(None)
        }
        Err(e) => Err(rpc_error(ep, "debug_traceTransaction", &e)),
    }
}

/// Whether `paused()` of the contract called was true before or after the
/// call's block. A contract without that view (or whose answer is not a
/// bool) does not say so.
async fn says_paused(
    p: &DynProvider,
    ep: &Endpoint,
    call: &CallOutcome,
) -> Result<bool, SourceError> {
    use alloy::network::TransactionBuilder;
    const PAUSED: [u8; 4] = [0x5c, 0x97, 0x5a, 0xbb]; // paused()
    for block in [
        BlockId::number(call.block_number.saturating_sub(1)),
        BlockId::hash(call.block_hash),
    ] {
        let request = alloy::rpc::types::TransactionRequest::default()
            .with_to(call.to)
            .with_input(PAUSED.to_vec());
        telemetry::rpc_request(&ep.redacted, "eth_call");
        match p.call(request).block(block).await {
            Ok(out) if out.len() == 32 && out[31] == 1 && out[..31].iter().all(|b| *b == 0) => {
                return Ok(true);
            }
            Ok(_) => {}
            // A revert: no such view, or it refuses.
            Err(e)
                if e.as_error_resp().is_some_and(|r| {
                    r.as_revert_data().is_some()
                        || r.message.to_ascii_lowercase().contains("revert")
                }) => {}
            Err(e) => return Err(rpc_error(ep, "eth_call", &e)),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAUSE: &str = "0xd93c0665";

    fn frame(kind: &str, to: u8, output: Option<&str>, calls: Vec<Value>) -> Value {
        let mut f = serde_json::json!({
            "type": kind, "from": Address::repeat_byte(0xee), "to": Address::repeat_byte(to),
            "input": "0x", "calls": calls,
        });
        if let Some(o) = output {
            f["error"] = "execution reverted".into();
            f["output"] = o.into();
        }
        f
    }

    fn raised(tree: &Value) -> Vec<u8> {
        let mut v: Vec<u8> = raisers(tree).into_iter().map(|(a, _)| a[0]).collect();
        v.sort();
        v
    }

    #[test]
    fn a_revert_is_raised_by_the_deepest_frame_that_failed_with_its_data() {
        // The vault raises it itself.
        let own = frame("CALL", 0xaa, Some(PAUSE), vec![]);
        assert_eq!(raised(&own), vec![0xaa]);
        // The vault passes on its receiver's revert: the receiver raised it.
        let bubbled = frame(
            "CALL",
            0xaa,
            Some(PAUSE),
            vec![frame("CALL", 0xbb, Some(PAUSE), vec![])],
        );
        assert_eq!(raised(&bubbled), vec![0xbb]);
        // A router calls the paused vault: nested, raised by the vault.
        let nested = frame(
            "CALL",
            0x11,
            Some(PAUSE),
            vec![frame("CALL", 0xaa, Some(PAUSE), vec![])],
        );
        assert_eq!(raised(&nested), vec![0xaa]);
        // Code run by DELEGATECALL raises in the caller's name.
        let library = frame(
            "CALL",
            0xaa,
            Some(PAUSE),
            vec![frame("DELEGATECALL", 0xcc, Some(PAUSE), vec![])],
        );
        assert_eq!(raised(&library), vec![0xaa]);
        // A callee that failed with other data, then a revert of its own.
        let own_after = frame(
            "CALL",
            0xaa,
            Some(PAUSE),
            vec![frame("CALL", 0xbb, Some("0x12345678"), vec![])],
        );
        assert_eq!(raised(&own_after), vec![0xaa, 0xbb]);
        // A successful transaction raised nothing.
        assert!(raised(&frame("CALL", 0xaa, None, vec![])).is_empty());
    }
}
