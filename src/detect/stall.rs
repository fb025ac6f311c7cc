//! Chain stalls: no new head for the chain's limit halts every protocol on
//! it, in wall-clock time, until blocks come again.

use alloy::primitives::{Address, B256};

use crate::model::{BlockRef, Evidence, EvidenceKind, Scope, ScopeChange};

/// The scope a stall halts: the whole chain, as seen by each protocol on it.
pub fn scope(chain: &str) -> Scope {
    Scope::whole(format!("chain {chain}"))
}

/// Evidence that `chain` stalled after `head` (`halted`), or resumed at `head`.
pub fn evidence(
    chain_id: u64,
    chain: &str,
    head: BlockRef,
    wall_time: u64,
    halted: bool,
) -> Evidence {
    Evidence {
        kind: EvidenceKind::Stall,
        chain_id,
        contract: Address::ZERO,
        contract_name: format!("chain {chain}"),
        tx_hash: B256::ZERO,
        block_number: head.number,
        block_hash: head.hash,
        block_timestamp: head.timestamp,
        log_index: 0,
        event: if halted {
            format!("chain stalled: no new head after block {}", head.number)
        } else {
            format!("chain producing blocks again at block {}", head.number)
        },
        args: Vec::new(),
        changes: vec![ScopeChange {
            scope: scope(chain),
            halted,
        }],
        log_hash: B256::ZERO,
        at: Some(wall_time),
    }
}
