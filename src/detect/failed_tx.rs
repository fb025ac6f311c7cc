//! Failed calls into a monitored contract. A revert that says the contract
//! is paused (`EnforcedPause()`, `"Pausable: paused"`) and that the contract
//! raised itself (the source asks its call tree, or `paused()`) is evidence
//! of a halt of that contract in its own right; other failures, pause
//! reverts passed on from a contract it called included, feed the spike
//! detector.

use alloy::primitives::keccak256;

use crate::decode::RevertReason;
use crate::model::{CallOutcome, EventArg, Evidence, EvidenceKind, Scope, ScopeChange};

/// Evidence of one failed call into `contract` (named as in the protocol).
pub fn evidence(
    chain_id: u64,
    contract: &str,
    call: &CallOutcome,
    reason: &RevertReason,
) -> Evidence {
    let mut args = reason.args.clone();
    args.push(EventArg {
        name: "caller".into(),
        ty: "address".into(),
        value: call.from.to_checksum(None),
    });
    let changes = if reason.is_pause() {
        vec![ScopeChange {
            scope: Scope::whole(contract),
            halted: true,
        }]
    } else {
        Vec::new()
    };
    Evidence {
        kind: EvidenceKind::FailedCall,
        chain_id,
        contract: call.to,
        contract_name: contract.to_string(),
        tx_hash: call.tx_hash,
        block_number: call.block_number,
        block_hash: call.block_hash,
        block_timestamp: call.block_timestamp,
        log_index: call.tx_index,
        event: if call.nested {
            format!("nested call reverted: {}", reason.signature)
        } else {
            format!("call reverted: {}", reason.signature)
        },
        args,
        changes,
        log_hash: keccak256(call.revert_data()),
        at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Address, B256};

    fn call(nested: bool) -> CallOutcome {
        CallOutcome {
            block_number: 7,
            block_hash: B256::repeat_byte(7),
            block_timestamp: 700,
            tx_hash: B256::repeat_byte(1),
            tx_index: 3,
            from: Address::repeat_byte(0xaa),
            to: Address::repeat_byte(0xbb),
            success: false,
            revert: None,
            nested,
            input: None,
            raised_here: Some(true),
        }
    }

    fn reason(signature: &str, arg: Option<&str>) -> RevertReason {
        RevertReason {
            signature: signature.into(),
            args: arg
                .map(|v| EventArg {
                    name: "reason".into(),
                    ty: "string".into(),
                    value: v.into(),
                })
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn pause_reverts_halt_the_contract_and_others_do_not() {
        let cases = [
            (reason("EnforcedPause()", None), true),
            (reason("Error(string)", Some("Pausable: paused")), true),
            (reason("Error(string)", Some("insufficient balance")), false),
            (reason("Unavailable(uint256)", None), false),
            (reason("Panic(uint256)", None), false),
        ];
        for (r, halts) in cases {
            let e = evidence(1, "pool", &call(false), &r);
            assert_eq!(!e.changes.is_empty(), halts, "{}", r.signature);
            assert_eq!(e.log_index, 3, "positioned by transaction index");
            assert_eq!(e.kind, EvidenceKind::FailedCall);
        }
        let nested = evidence(1, "pool", &call(true), &reason("EnforcedPause()", None));
        assert!(nested.event.starts_with("nested call reverted"));
    }
}
