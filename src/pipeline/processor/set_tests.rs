//! Complete sets read from the chain, on synthetic ranges: a set read
//! again takes effect right after the log that changed it, so a listing
//! and pauses in one range are classified against the set of their moment.

use std::path::Path;

use alloy::primitives::{Bytes, LogData, keccak256};
use alloy::sol_types::SolValue;

use super::*;
use crate::config::StoreConfig;
use crate::model::{CommittedRange, ProbeKind, ProbeResult, ProtocolState};
use crate::store::IncidentFilter;

const CONFIGURATOR: Address = Address::repeat_byte(0xc0);
const POOL: Address = Address::repeat_byte(0xb0);
const A: Address = Address::repeat_byte(0x0a);
const B: Address = Address::repeat_byte(0x0b);
const C: Address = Address::repeat_byte(0x0c);

fn config() -> Config {
    let abis = Path::new(env!("CARGO_MANIFEST_DIR")).join("abis");
    let text = format!(
        "[[chains]]\nname = \"anvil\"\nchain_id = 31337\nrpc = [\"http://127.0.0.1:1\"]\n\
         [[protocols]]\nname = \"Aave\"\nchain = \"anvil\"\n\
         [[protocols.contracts]]\nname = \"configurator\"\naddress = \"{CONFIGURATOR}\"\nabi = \"{}\"\npreset = \"aave-v3-configurator\"\n\
         [[protocols.contracts]]\nname = \"pool\"\naddress = \"{POOL}\"\nabi = \"{}\"\npreset = \"aave-v3-pool\"\n",
        abis.join("aave-v3-configurator.json").display(),
        abis.join("aave-v3-pool.json").display(),
    );
    crate::config::parse(&text, Path::new("test.toml")).expect("config")
}

fn block(n: u64) -> BlockRef {
    BlockRef {
        number: n,
        hash: keccak256(n.to_be_bytes()),
        parent_hash: keccak256((n - 1).to_be_bytes()),
        timestamp: 1_700_000_000 + n * 12,
    }
}

/// A configurator log in block `b`, transaction `tx`.
fn log(b: &BlockRef, tx: u64, signature: &str, asset: Address, data: Vec<u8>) -> Log {
    Log {
        inner: alloy::primitives::Log {
            address: CONFIGURATOR,
            data: LogData::new_unchecked(
                vec![keccak256(signature.as_bytes()), asset.into_word()],
                Bytes::from(data),
            ),
        },
        block_hash: Some(b.hash),
        block_number: Some(b.number),
        block_timestamp: Some(b.timestamp),
        transaction_hash: Some(keccak256([&b.hash[..], &[tx as u8]].concat())),
        transaction_index: Some(tx),
        log_index: Some(tx),
        removed: false,
    }
}

fn paused(b: &BlockRef, tx: u64, asset: Address) -> Log {
    log(
        b,
        tx,
        "ReservePaused(address,bool)",
        asset,
        true.abi_encode(),
    )
}

fn listed(b: &BlockRef, tx: u64, asset: Address) -> Log {
    let rest = (Address::ZERO, Address::ZERO, Address::ZERO, Address::ZERO);
    log(
        b,
        tx,
        "ReserveInitialized(address,address,address,address,address)",
        asset,
        rest.abi_encode_params(),
    )
}

/// The pool's reserve list, read at `b`.
fn reserves(b: &BlockRef, list: &[Address]) -> ProbeResult {
    ProbeResult {
        kind: ProbeKind::ScopeSet,
        probe: (0, 0), // protocol 0, rule 0: the configurator's ReservePaused
        block: *b,
        output: Ok(Bytes::from(list.to_vec().abi_encode())),
    }
}

fn range(blocks: Vec<BlockRef>, logs: Vec<Log>, probes: Vec<ProbeResult>) -> ChainUpdate {
    ChainUpdate::Committed(CommittedRange {
        from: blocks[0].number,
        tip: blocks[blocks.len() - 1],
        blocks,
        logs,
        calls: Vec::new(),
        probes,
    })
}

/// Runs the ranges through a live processor on a fresh history; its
/// incidents, oldest first (and the folder that holds it).
async fn run(updates: Vec<ChainUpdate>) -> (Vec<crate::store::IncidentRecord>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::sqlite(dir.path().join("history.db")))
        .await
        .unwrap();
    let (wake, _) = mpsc::channel(1);
    let status = Status::default();
    let processor = Processor::new(
        Arc::new(config()),
        0,
        store.clone(),
        Mode::Live { wake, status },
    )
    .await
    .unwrap();
    let (tx, rx) = mpsc::channel(updates.len());
    for u in updates {
        tx.send(u).await.unwrap();
    }
    drop(tx);
    processor.run(rx).await.unwrap();
    let mut all = store.list(&IncidentFilter::default()).await.unwrap();
    all.sort_by_key(|i| i.id);
    (all, dir)
}

/// The severities each incident went through.
async fn severities(updates: Vec<ChainUpdate>) -> Vec<Vec<ProtocolState>> {
    let (all, _dir) = run(updates).await;
    all.iter()
        .map(|i| i.transitions.iter().map(|t| t.to).collect())
        .collect()
}

#[tokio::test]
async fn a_listing_and_pauses_in_one_range_count_against_the_set_after_the_listing() {
    use ProtocolState::*;
    let (b1, b2) = (block(1), block(2));
    let got = severities(vec![
        range(vec![b1], vec![], vec![reserves(&b1, &[A, B])]),
        // C listed, then A and B paused, all in one range: read at its tip,
        // the list has C, which still works.
        range(
            vec![b2],
            vec![listed(&b2, 0, C), paused(&b2, 1, A), paused(&b2, 2, B)],
            vec![reserves(&b2, &[A, B, C])],
        ),
    ])
    .await;
    assert_eq!(got, [vec![Degraded]], "never halted");
}

/// The first read, taken at the first range's tip, counts from its first
/// block: B's pause completes the set there, not at some later event.
#[tokio::test]
async fn the_first_read_counts_from_the_first_block() {
    use ProtocolState::*;
    let b1 = block(1);
    let got = severities(vec![range(
        vec![b1],
        vec![paused(&b1, 0, A), paused(&b1, 1, B)],
        vec![reserves(&b1, &[A, B])],
    )])
    .await;
    assert_eq!(got, [vec![Degraded, Halted]]);
}

/// A periodic read (no listing log in the range) that shrinks the set
/// under a paused reserve moves the incident at the range's tip, with the
/// read itself as evidence.
#[tokio::test]
async fn a_periodic_read_moves_the_incident_with_the_read_as_evidence() {
    use ProtocolState::*;
    let (b1, b2) = (block(1), block(2));
    let (all, _dir) = run(vec![
        range(
            vec![b1],
            vec![paused(&b1, 0, A)],
            vec![reserves(&b1, &[A, B])],
        ),
        range(vec![b2], vec![], vec![reserves(&b2, &[A])]),
    ])
    .await;
    assert_eq!(all.len(), 1);
    let states: Vec<_> = all[0].transitions.iter().map(|t| t.to).collect();
    assert_eq!(states, [Degraded, Halted]);
    let read = all[0].evidence.last().unwrap();
    assert_eq!(
        read.event,
        "probe getReservesList() returned 1 addresses: the complete set, read again"
    );
    assert_eq!((read.contract, read.block_number), (POOL, 2));
    assert!(read.changes.is_empty());
}
