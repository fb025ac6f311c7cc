//! The store's write path: one committed range of the catch-up benchmark
//! (each block with one pause or unpause; per 1,000 blocks: 500 incidents
//! opened and resolved, 1,000 transitions, 1,000 pieces of evidence, 2,000
//! ledger records) written into a SQLite file, as the processor commits it.
//!
//! `cargo bench --bench store`. Each sample commits into a store that
//! already holds the ranges before it, as a catch-up does; like the
//! catch-up benchmark, no mail is queued (no `[email]`).
//! `RUST_LOG=haltwatch=debug` adds the store's stage timings.

use std::sync::OnceLock;

use alloy::primitives::{Address, B256, keccak256};
use divan::Bencher;
use divan::counter::ItemsCount;
use haltwatch::config::StoreConfig;
use haltwatch::model::{
    BlockRef, EventArg, Evidence, EvidenceKind, IncidentUpdate, ProtocolState, Scope, ScopeChange,
    Transition, TransitionKind,
};
use haltwatch::store::{Batch, Rows, Store, StoredUpdate};

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    divan::main();
}

fn runtime() -> &'static tokio::runtime::Runtime {
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
/// the unpause in the next.
fn updates(first: u64, count: u64) -> Vec<IncidentUpdate> {
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
            block_timestamp: 1_700_000_000 + n,
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

fn block_hash(n: u64) -> B256 {
    keccak256([b"block".as_slice(), &n.to_be_bytes()].concat())
}

fn block_refs(first: u64, count: u64) -> Vec<BlockRef> {
    (first..first + count)
        .map(|n| BlockRef {
            number: n,
            hash: block_hash(n),
            parent_hash: block_hash(n.saturating_sub(1)),
            timestamp: 1_700_000_000 + n,
        })
        .collect()
}

/// `blocks`: the range one commit covers (the catch-up's range size).
#[divan::bench(args = [250, 500, 1000, 2000], sample_count = 40, sample_size = 1)]
fn commit_catch_up_range(bencher: Bencher, blocks: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = runtime()
        .block_on(Store::open(&StoreConfig {
            sqlite_path: dir.path().join("bench.sqlite"),
        }))
        .expect("store");
    let mut next = 2u64;
    bencher
        .counter(ItemsCount::new(blocks))
        .with_inputs(|| {
            let first = next;
            next += blocks;
            let updates = updates(first, blocks);
            // Built ahead of the commit, as the processor does (`rows_of` below).
            let rows: Vec<Rows> = updates.iter().map(Rows::of).collect();
            (first, updates, rows, block_refs(first, blocks))
        })
        .bench_local_values(|(first, updates, rows, refs)| {
            let batch = Batch {
                chain_id: 31337,
                // The catch-up reads headers for the reorg window only.
                blocks: &refs[refs.len() - 64..],
                updates: updates
                    .iter()
                    .zip(rows)
                    .map(|(update, rows)| StoredUpdate {
                        protocol: "Vault",
                        chain: "anvil",
                        update,
                        notify: false,
                        planned: false,
                        rows,
                    })
                    .collect(),
                trackers: vec![(
                    "Vault",
                    first + blocks - 1,
                    String::from(r#"{"halted":[]}"#),
                )],
                window_blocks: 64,
            };
            runtime().block_on(store.commit(batch)).expect("commit");
        });
}

/// The rows of a range's updates built ahead of its commit: hex, checksummed
/// addresses, JSON arguments and the ledger's canonical encodings.
#[divan::bench(args = [2000])]
fn rows_of(bencher: Bencher, blocks: u64) {
    let updates = updates(2, blocks);
    bencher
        .counter(ItemsCount::new(blocks))
        .bench(|| updates.iter().map(Rows::of).collect::<Vec<_>>());
}
