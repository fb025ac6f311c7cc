//! State probes: a view function's answer against the healthy value. A
//! mismatch halts the probe's scope, a match resumes it. This catches halts
//! that emit no event, pauses that expire silently, and anything missed.

use alloy::dyn_abi::{DynSolValue, FunctionExt};
use alloy::primitives::{B256, keccak256};

use crate::config::{Expected, ProbeConfig};
use crate::decode::format_value;
use crate::model::{EventArg, Evidence, EvidenceKind, ProbeResult, Scope, ScopeChange};

/// The scope a probe speaks for: its `scope`, or the whole contract.
pub fn scope(probe: &ProbeConfig, contract: &str) -> Scope {
    match &probe.scope {
        Some(key) => Scope::keyed(contract, key.clone()),
        None => Scope::whole(contract),
    }
}

/// Whether the answer is the healthy one; `None` when it cannot be read.
pub fn healthy(probe: &ProbeConfig, output: &[u8]) -> Option<(bool, String)> {
    let values = probe.function.abi_decode_output(output).ok()?;
    let value = values.first()?;
    let ok = match (probe.expected, value) {
        (Expected::Bool(want), DynSolValue::Bool(got)) => want == *got,
        (Expected::Int(want), DynSolValue::Uint(got, _)) => {
            i128::try_from(*got).is_ok_and(|g| g == want)
        }
        (Expected::Int(want), DynSolValue::Int(got, _)) => {
            i128::try_from(*got).is_ok_and(|g| g == want)
        }
        _ => return None,
    };
    Some((ok, format_value(value)))
}

/// Evidence of a probe's answer, halting or resuming its scope. `first` marks
/// the first probe of this run: a halt then is "already halted when monitoring began".
/// What a probe's answer says, given whether its scope is halted in the
/// history now: evidence when it disagrees, `None` when it agrees, and why
/// not when the call failed or its answer does not decode.
pub fn decide(
    chain_id: u64,
    probe: &ProbeConfig,
    contract: (&str, alloy::primitives::Address),
    result: &ProbeResult,
    halted_now: bool,
    first: bool,
) -> Result<Option<Evidence>, String> {
    let output = result
        .output
        .as_ref()
        .map_err(|e| format!("the call failed: {e}"))?;
    let (healthy, value) =
        healthy(probe, output).ok_or_else(|| "the answer does not decode".to_string())?;
    if halted_now != healthy {
        return Ok(None);
    }
    Ok(Some(evidence(
        chain_id, probe, contract, result, healthy, &value, first,
    )))
}

fn evidence(
    chain_id: u64,
    probe: &ProbeConfig,
    contract: (&str, alloy::primitives::Address),
    result: &ProbeResult,
    healthy: bool,
    value: &str,
    first: bool,
) -> Evidence {
    let expected = match probe.expected {
        Expected::Bool(b) => b.to_string(),
        Expected::Int(i) => i.to_string(),
    };
    let mut event = format!(
        "probe {} returned {value} (healthy: {expected})",
        probe.function.signature()
    );
    if first && !healthy {
        event.push_str("; already paused when monitoring began");
    }
    let answer = EventArg {
        name: "result".into(),
        ty: probe.function.outputs[0].ty.clone(),
        value: value.to_string(),
    };
    let mut e = answered(
        chain_id,
        contract,
        result,
        result.probe.1 as u64,
        event,
        answer,
    );
    e.changes = vec![ScopeChange {
        scope: scope(probe, contract.0),
        halted: !healthy,
    }];
    e
}

/// Evidence of a complete set read again (`getReservesList()`), dating
/// the change of state it causes under scopes already halted. It changes
/// no scope; `verify` calls the function again at the block, like a probe.
pub fn set_evidence(
    chain_id: u64,
    contract: (&str, alloy::primitives::Address),
    function: &alloy::json_abi::Function,
    result: &ProbeResult,
    members: &[alloy::primitives::Address],
) -> Evidence {
    let listed: Vec<String> = members.iter().map(|a| a.to_checksum(None)).collect();
    let event = format!(
        "probe {} returned {} addresses: the complete set, read again",
        function.signature(),
        members.len()
    );
    let answer = EventArg {
        name: "result".into(),
        ty: "address[]".into(),
        value: listed.join(","),
    };
    // Indexed apart from the state probes' indices at the same block.
    let index = (1 << 32) + result.probe.1 as u64;
    answered(chain_id, contract, result, index, event, answer)
}

/// A view call's answer at its block as evidence that changes no scope;
/// `log_hash` is the hash of the answer, which `verify` asks for again.
fn answered(
    chain_id: u64,
    (name, address): (&str, alloy::primitives::Address),
    result: &ProbeResult,
    log_index: u64,
    event: String,
    answer: EventArg,
) -> Evidence {
    Evidence {
        kind: EvidenceKind::Probe,
        chain_id,
        contract: address,
        contract_name: name.to_string(),
        tx_hash: B256::ZERO,
        block_number: result.block.number,
        block_hash: result.block.hash,
        block_timestamp: result.block.timestamp,
        log_index,
        event,
        args: vec![answer],
        changes: Vec::new(),
        log_hash: keccak256(result.output.as_ref().map_or(&[][..], |b| &b[..])),
        at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::json_abi::Function;
    use alloy::primitives::U256;

    fn probe(sig: &str, expected: Expected) -> ProbeConfig {
        ProbeConfig {
            contract: 0,
            function: Function::parse(sig).unwrap(),
            expected,
            every_blocks: 1,
            scope: None,
        }
    }

    #[test]
    fn answers_against_the_healthy_value() {
        let word = |v: u64| U256::from(v).to_be_bytes::<32>().to_vec();
        let cases = [
            (
                probe(
                    "function paused() view returns (bool)",
                    Expected::Bool(false),
                ),
                word(0),
                Some(true),
            ),
            (
                probe(
                    "function paused() view returns (bool)",
                    Expected::Bool(false),
                ),
                word(1),
                Some(false),
            ),
            (
                probe("function live() view returns (uint256)", Expected::Int(1)),
                word(1),
                Some(true),
            ),
            (
                probe("function live() view returns (uint256)", Expected::Int(1)),
                word(0),
                Some(false),
            ),
            (
                probe(
                    "function paused() view returns (bool)",
                    Expected::Bool(false),
                ),
                vec![1, 2],
                None,
            ),
        ];
        for (p, out, want) in cases {
            assert_eq!(
                healthy(&p, &out).map(|h| h.0),
                want,
                "{}",
                p.function.signature()
            );
        }
    }
}
