//! A synthetic halt history for the benchmarks: blocks that alternately
//! pause and unpause one vault, as the processor commits them.
#![allow(dead_code)]

use std::sync::OnceLock;

use alloy::primitives::{Address, B256, keccak256};
use haltwatch::model::{
    BlockRef, EventArg, Evidence, EvidenceKind, IncidentUpdate, ProtocolState, Scope, ScopeChange,
    Transition, TransitionKind,
};

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// The updates of blocks `first..first + count`: a pause in even blocks,
/// the unpause in the next; block `n` is mined at `time_of(n)`.
pub fn updates(first: u64, count: u64, time_of: impl Fn(u64) -> u64) -> Vec<IncidentUpdate> {
    let contract = Address::repeat_byte(0x5f);
    let mut out = Vec::with_capacity(count as usize);
    let mut key = String::new();
    for n in first..first + count {
        let paused = n % 2 == 0;
        let evidence = Evidence {
            kind: EvidenceKind::Log,
            chain_id: 31337,
            contract,
            contract_name: "vault".into(),
            tx_hash: keccak256(n.to_be_bytes()),
            block_number: n,
            block_hash: block_hash(n),
            block_timestamp: time_of(n),
            log_index: 0,
            event: if paused {
                "Paused(address)"
            } else {
                "Unpaused(address)"
            }
            .into(),
            args: vec![EventArg {
                name: "account".into(),
                ty: "address".into(),
                value: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".into(),
            }],
            changes: vec![ScopeChange {
                scope: Scope::whole("vault"),
                halted: paused,
            }],
            log_hash: keccak256(n.to_le_bytes()),
            at: None,
        };
        if paused {
            key = haltwatch::classify::incident_key("Vault", &evidence);
        }
        let (kind, from, to) = if paused {
            (
                TransitionKind::Opened,
                ProtocolState::Operational,
                ProtocolState::Halted,
            )
        } else {
            (
                TransitionKind::Resolved,
                ProtocolState::Halted,
                ProtocolState::Operational,
            )
        };
        out.push(IncidentUpdate {
            key: key.clone(),
            protocol: 0,
            transition: Some(Transition {
                kind,
                from,
                to,
                at: evidence.block_timestamp,
                block_number: n,
            }),
            evidence: vec![evidence],
        });
    }
    out
}

pub fn block_hash(n: u64) -> B256 {
    keccak256([b"block".as_slice(), &n.to_be_bytes()].concat())
}

pub fn block_refs(first: u64, count: u64) -> Vec<BlockRef> {
    (first..first + count)
        .map(|n| BlockRef {
            number: n,
            hash: block_hash(n),
            parent_hash: block_hash(n.saturating_sub(1)),
            timestamp: 1_700_000_000 + n,
        })
        .collect()
}
