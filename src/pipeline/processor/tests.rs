//! The processor on synthetic chains: reorgs against writes in flight,
//! and what a reorg undoes.

use std::path::Path;

use alloy::primitives::{Bytes, LogData, keccak256};

use super::*;
use crate::config::StoreConfig;
use crate::model::CommittedRange;
use crate::store::{IncidentFilter, IncidentState};

const VAULT: Address = Address::repeat_byte(0x11);

fn config() -> Config {
    let abi = Path::new(env!("CARGO_MANIFEST_DIR")).join("abis/oz-pausable.json");
    let text = format!(
        "[[chains]]\nname = \"anvil\"\nchain_id = 31337\nrpc = [\"http://127.0.0.1:1\"]\n\
         [[protocols]]\nname = \"Vault\"\nchain = \"anvil\"\n\
         [[protocols.contracts]]\nname = \"vault\"\naddress = \"{VAULT}\"\nabi = \"{}\"\npreset = \"oz-pausable\"\n",
        abi.display()
    );
    crate::config::parse(&text, Path::new("test.toml")).expect("config")
}

/// Block `n` of a chain; `fork` tells two chains apart.
fn block(n: u64, fork: u8) -> BlockRef {
    let hash = |n: u64, fork: u8| {
        if n <= 550 {
            keccak256(n.to_be_bytes()) // both chains share blocks up to 550
        } else {
            keccak256([&n.to_be_bytes()[..], &[fork]].concat())
        }
    };
    BlockRef {
        number: n,
        hash: hash(n, fork),
        parent_hash: hash(n - 1, fork),
        timestamp: 1_700_000_000 + n * 12,
    }
}

/// `Paused(address)` (odd `n`) or `Unpaused(address)` (even) in block `b`.
fn toggle(b: &BlockRef) -> Log {
    let event: &[u8] = if b.number % 2 == 1 {
        b"Paused(address)"
    } else {
        b"Unpaused(address)"
    };
    Log {
        inner: alloy::primitives::Log {
            address: VAULT,
            data: LogData::new_unchecked(
                vec![keccak256(event)],
                Bytes::from(Address::repeat_byte(0x22).into_word().to_vec()),
            ),
        },
        block_hash: Some(b.hash),
        block_number: Some(b.number),
        block_timestamp: Some(b.timestamp),
        transaction_hash: Some(keccak256(b.hash)),
        transaction_index: Some(0),
        log_index: Some(0),
        removed: false,
    }
}

fn range(blocks: Vec<BlockRef>, logs: Vec<Log>) -> ChainUpdate {
    range_with_calls(blocks, logs, Vec::new())
}

fn range_with_calls(blocks: Vec<BlockRef>, logs: Vec<Log>, calls: Vec<CallOutcome>) -> ChainUpdate {
    ChainUpdate::Committed(CommittedRange {
        from: blocks[0].number,
        tip: blocks[blocks.len() - 1],
        blocks,
        logs,
        calls,
        probes: Vec::new(),
    })
}

/// Two calls into the vault in each of `blocks`: both fail in a burst.
fn calls(blocks: &[BlockRef], burst: bool) -> Vec<CallOutcome> {
    blocks
        .iter()
        .flat_map(|b| {
            (0..2).map(move |i| CallOutcome {
                block_number: b.number,
                block_hash: b.hash,
                block_timestamp: b.timestamp,
                tx_hash: keccak256([&b.hash[..], &[i]].concat()),
                tx_index: u64::from(i),
                from: Address::repeat_byte(0x33),
                to: VAULT,
                success: !burst,
                revert: None,
                nested: false,
                input: None,
                raised_here: None,
            })
        })
        .collect()
}

async fn live(store: Store, status: Status) -> Processor {
    let (wake, _) = mpsc::channel(1);
    Processor::new(Arc::new(config()), 0, store, Mode::Live { wake, status })
        .await
        .unwrap()
}

async fn store_in(dir: &tempfile::TempDir) -> Store {
    Store::open(&StoreConfig::sqlite(dir.path().join("history.db")))
        .await
        .unwrap()
}

/// The states of every incident, oldest first.
async fn states(store: &Store) -> Vec<IncidentState> {
    let mut all = store
        .list(&IncidentFilter {
            include_withdrawn: true,
            ..Default::default()
        })
        .await
        .unwrap();
    all.sort_by_key(|i| i.id);
    all.iter().map(|i| i.state).collect()
}

fn blocks(range: std::ops::RangeInclusive<u64>, fork: u8) -> Vec<BlockRef> {
    range.map(|n| block(n, fork)).collect()
}

/// One update of a scripted chain: blocks `range` of branch `fork`, two
/// calls into the vault in each (failing in a `burst`), or a revert.
enum Scripted {
    Calls(std::ops::RangeInclusive<u64>, u8, bool),
    Revert(u64),
}

/// The states of the incidents a live processor records from `script`.
async fn spike_states(script: Vec<Scripted>) -> Vec<IncidentState> {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir).await;
    let processor = live(store.clone(), Status::default()).await;
    let (tx, rx) = mpsc::channel(script.len());
    for step in script {
        let update = match step {
            Scripted::Calls(range, fork, burst) => {
                let b = blocks(range, fork);
                let c = calls(&b, burst);
                range_with_calls(b, vec![], c)
            }
            Scripted::Revert(ancestor) => ChainUpdate::Reverted { ancestor },
        };
        tx.send(update).await.unwrap();
    }
    drop(tx);
    processor.run(rx).await.unwrap();
    states(&store).await
}

#[tokio::test]
async fn a_burst_reorged_out_for_a_quiet_branch_leaves_no_incident_and_later_bursts_count() {
    use Scripted::*;
    let states = spike_states(vec![
        Calls(541..=550, 0, false),
        Calls(551..=556, 0, true),
        Revert(550),
        Calls(551..=570, 1, false),
        Calls(571..=576, 1, true),
    ])
    .await;
    // The orphaned burst's spike is withdrawn; its calls and its
    // "spiking" no longer count, so the new branch's burst opens one.
    assert_eq!(states, vec![IncidentState::Withdrawn, IncidentState::Open]);
}

#[tokio::test]
async fn a_quiet_branch_replaced_by_a_burst_opens_a_spike_at_once() {
    use Scripted::*;
    // The new branch ends at the old tip: its blocks are evaluated, though
    // the windows had closed blocks up to 560 before.
    let states = spike_states(vec![
        Calls(541..=560, 0, false),
        Revert(550),
        Calls(551..=560, 1, true),
    ])
    .await;
    assert_eq!(states, vec![IncidentState::Open]);
}

/// A reorg arriving while the range before it is still being written
/// (300 incidents make the write take a while; the revert is already
/// queued): the write lands first, then the revert withdraws what the
/// orphaned blocks opened, and the new branch is applied on top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_queued_behind_a_range_being_written_applies_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::sqlite(dir.path().join("history.db")))
        .await
        .unwrap();
    let status = Status::default();
    status.register_chain("anvil", 31337, std::time::Duration::from_secs(60));
    let processor = live(store.clone(), status.clone()).await;
    let (tx, rx) = mpsc::channel(4);
    let first: Vec<BlockRef> = (1..=600).map(|n| block(n, 0)).collect();
    let logs = first.iter().map(toggle).collect();
    tx.send(range(first, logs)).await.unwrap();
    tx.send(ChainUpdate::Reverted { ancestor: 550 })
        .await
        .unwrap();
    let branch = block(551, 1);
    tx.send(range(vec![branch], vec![toggle(&branch)]))
        .await
        .unwrap();
    drop(tx);
    processor.run(rx).await.unwrap();

    let all = store
        .list(&IncidentFilter {
            include_withdrawn: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let count = |s: IncidentState| all.iter().filter(|i| i.state == s).count();
    // Paused at 1, 3, …, 549 and resolved a block later: 275 stand.
    assert_eq!(count(IncidentState::Resolved), 275);
    // Opened at 551, 553, …, 599 on the orphaned branch.
    assert_eq!(count(IncidentState::Withdrawn), 25);
    // Paused at 551 on the new branch.
    assert_eq!(count(IncidentState::Open), 1);
    assert_eq!(all.len(), 301);
    let window = store.window(31337).await.unwrap();
    assert_eq!(window.last().copied(), Some(branch));
    assert_eq!(
        status.chains()["anvil"].processed,
        Some((551, branch.timestamp))
    );
    assert!(store.verify_history().await.unwrap().problems.is_empty());
}
