//! Failed calls whose revert a preset or the config names as "halted
//! here" (Aave's `"29"`, `RESERVE_PAUSED`). Such a failure is cited on the
//! open incident of its scope, its meaning spelled out. It opens a halt by
//! itself only when the call trace shows the contract called raised it:
//! anyone can revert with `"29"` from a contract of their own.
//!
//! The scope is named by the call's address arguments (the reserve of a
//! `supply`), with the revert's prefix (`frozen:`), on the contract whose
//! rules own such scopes: for Aave, the configurator whose rule reads this
//! pool's reserve list.

use alloy::dyn_abi::{DynSolValue, JsonAbiExt};
use alloy::primitives::Address;

use crate::config::{HaltRevert, ProtocolConfig, RuleScope};
use crate::decode::RevertReason;
use crate::model::{CallOutcome, EventArg, Evidence, Scope, ScopeChange};

/// Evidence of a failed call into contract `c` of `protocol` that reverted
/// with `meaning`: a citation when a scope it names is `halted`, a halt of
/// that scope when the contract raised it itself, otherwise nothing.
pub fn evidence(
    chain_id: u64,
    (protocol, c): (&ProtocolConfig, usize),
    call: &CallOutcome,
    reason: &RevertReason,
    meaning: &HaltRevert,
    halted: impl Fn(&Scope) -> bool,
) -> Option<Evidence> {
    let contract = &protocol.contracts[c];
    let arguments = address_arguments(
        &contract.abi,
        call.input.as_ref().map_or(&[][..], |b| &b[..]),
    );
    let candidates: Vec<Scope> = arguments
        .iter()
        .flat_map(|(_, a)| scopes_named(protocol, c, meaning, *a))
        .collect();
    let changes = if candidates.iter().any(&halted) {
        Vec::new()
    } else if call.raised_here == Some(true) {
        vec![ScopeChange {
            scope: candidates.first()?.clone(),
            halted: true,
        }]
    } else {
        return None;
    };
    let mut e = super::failed_tx::evidence(chain_id, &contract.name, call, reason);
    e.event = format!("call reverted: {}", meaning.describe());
    e.args.extend(arguments.iter().map(|(name, a)| EventArg {
        name: name.clone(),
        ty: "address".into(),
        value: a.to_checksum(None),
    }));
    e.changes = changes;
    Some(e)
}

/// True when a decoded revert is `meaning`'s: `Error(string)` with its
/// text, or the custom error of its name.
pub fn matches(meaning: &HaltRevert, reason: &RevertReason) -> bool {
    if reason.signature == "Error(string)" {
        return reason
            .args
            .first()
            .is_some_and(|a| a.value == meaning.reason);
    }
    reason.signature.split('(').next() == Some(meaning.reason.as_str())
}

/// The scopes that address `a` names with `meaning`'s prefix: on each rule
/// that owns such keys (a rule reading its set from contract `c`, or one
/// with that prefix), else on contract `c` itself.
fn scopes_named(
    protocol: &ProtocolConfig,
    c: usize,
    meaning: &HaltRevert,
    a: Address,
) -> Vec<Scope> {
    let key = format!("{}{}", meaning.scope_prefix, a.to_checksum(None));
    let mut out: Vec<Scope> = protocol
        .rules
        .iter()
        .filter(|r| match &r.scope {
            RuleScope::Args(_) => {
                meaning.scope_prefix.is_empty()
                    && (r.contract == c || r.scopes_from.as_ref().is_some_and(|f| f.contract == c))
            }
            RuleScope::Prefixed(prefix, _) => format!("{prefix}:") == meaning.scope_prefix,
            _ => false,
        })
        .map(|r| Scope {
            degraded_only: r.degraded_only,
            ..Scope::keyed(protocol.contracts[r.contract].name.clone(), key.clone())
        })
        .collect();
    out.push(Scope::keyed(protocol.contracts[c].name.clone(), key));
    out.dedup();
    out
}

/// The address arguments of `input`, decoded with the ABI's function of
/// its selector: `(name, address)` in argument order. Undecodable input
/// has none.
fn address_arguments(abi: &alloy::json_abi::JsonAbi, input: &[u8]) -> Vec<(String, Address)> {
    let Some(selector) = input.get(..4) else {
        return Vec::new();
    };
    let Some(function) = abi
        .functions()
        .find(|f| f.selector().as_slice() == selector)
    else {
        return Vec::new();
    };
    let Ok(values) = function.abi_decode_input(&input[4..]) else {
        return Vec::new();
    };
    function
        .inputs
        .iter()
        .zip(values)
        .filter_map(|(p, v)| match v {
            DynSolValue::Address(a) => Some((p.name.clone(), a)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_matches_by_its_text_or_its_error_name() {
        let h = |reason: &str| HaltRevert {
            reason: reason.into(),
            meaning: "M".into(),
            scope_prefix: String::new(),
        };
        let text = |t: &str| RevertReason {
            signature: "Error(string)".into(),
            args: vec![EventArg {
                name: "reason".into(),
                ty: "string".into(),
                value: t.into(),
            }],
        };
        let custom = |sig: &str| RevertReason {
            signature: sig.into(),
            args: Vec::new(),
        };
        assert!(matches(&h("29"), &text("29")));
        assert!(!matches(&h("29"), &text("290")));
        assert!(!matches(&h("29"), &text("28")));
        assert!(matches(
            &h("ReservePaused"),
            &custom("ReservePaused(address)")
        ));
        assert!(!matches(&h("ReservePaused"), &custom("ReservePausedNot()")));
        assert!(
            !matches(&h("Error"), &text("x")),
            "a text reason is not an error name"
        );
    }
}
