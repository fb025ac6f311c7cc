//! A monitor killed mid-incident catches up with the truth; a reorg retracts
//! what the orphaned blocks said.

mod common;

use std::process::Command;
use std::time::Duration;

use alloy::providers::Provider;
use common::*;
use haltwatch::demo::selector;
use haltwatch::store::{IncidentFilter, IncidentState, Store};

async fn wait_for_state(store: &Store, want: IncidentState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !incidents(store).await.iter().any(|i| i.state == want) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {want:?} incident in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn killed_mid_incident_the_monitor_resumes_and_records_what_happened_while_down() {
    let VaultChain {
        chain,
        vault,
        path,
        node: _node,
        dir: _dir,
    } = vault_chain(true, "").await;
    // The test reads the same SQLite file the monitor process writes.
    let config = haltwatch::config::load(&path).unwrap();
    let store = Store::open(&config.store).await.unwrap();

    let mut monitor = spawn_monitor(&path);
    let t0 = 2_000_000_000;
    next_block_time(&chain, t0).await;
    let p1 = chain.call(vault, selector("pause()")).await.unwrap();
    wait_for_state(&store, IncidentState::Open).await;
    monitor.kill().expect("SIGKILL the monitor");
    monitor.wait().unwrap();

    // While it is down: the incident ends, and a whole second one happens.
    next_block_time(&chain, t0 + 600).await;
    let u1 = chain.call(vault, selector("unpause()")).await.unwrap();
    next_block_time(&chain, t0 + 900).await;
    let p2 = chain.call(vault, selector("pause()")).await.unwrap();
    next_block_time(&chain, t0 + 1000).await;
    let u2 = chain.call(vault, selector("unpause()")).await.unwrap();
    mine(&chain, 3).await;

    let mut monitor = spawn_monitor(&path);
    wait_caught_up(&store, &chain).await;
    // Ctrl-C stops it cleanly.
    let status = Command::new("kill")
        .args(["-INT", &monitor.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || monitor.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        exit.success(),
        "haltwatch run exits 0 on SIGINT, got {exit:?}"
    );

    let list = incidents(&store).await;
    assert_eq!(list.len(), 2, "no duplicate, no missed incident: {list:#?}");
    let (first, second) = (&list[0], &list[1]);
    assert_eq!(first.state, IncidentState::Resolved);
    assert_eq!(
        (first.start_block, first.end_block),
        (p1.block_number.unwrap(), u1.block_number)
    );
    assert_eq!(
        first.duration_seconds,
        Some(600),
        "true block time of the unpause"
    );
    assert_eq!(first.evidence.len(), 2);
    assert_eq!(second.state, IncidentState::Resolved);
    assert_eq!(
        (second.start_block, second.end_block),
        (p2.block_number.unwrap(), u2.block_number)
    );
    assert_eq!(
        (second.started_at, second.duration_seconds),
        (t0 + 900, Some(100))
    );
    assert_eq!(second.transitions.len(), 2);
}

#[tokio::test]
async fn an_incident_that_rested_on_an_orphaned_pause_is_withdrawn() {
    let VaultChain {
        chain,
        vault,
        path,
        node: _node,
        dir: _dir,
    } = vault_chain(false, "").await;
    let running = start(&path).await;
    mine(&chain, 2).await;
    let paused = chain.call(vault, selector("pause()")).await.unwrap();
    let n = paused.block_number.unwrap();
    wait_processed(&running.store, n).await;
    assert_eq!(
        incidents(&running.store).await[0].state,
        IncidentState::Open
    );

    // Replace the pause's block with a branch that has no pause, and is longer.
    let _: serde_json::Value = chain
        .provider
        .raw_request("anvil_rollback".into(), (1u64,))
        .await
        .expect("anvil_rollback");
    mine(&chain, 3).await;
    assert_ne!(
        block_hash(&chain, n).await,
        paused.block_hash.unwrap(),
        "block {n} was replaced"
    );
    wait_processed(&running.store, n + 2).await;
    // The checkpoint must be on the new branch.
    let cp = running.store.window(CHAIN_ID).await.unwrap();
    let tip = cp.last().unwrap();
    assert_eq!(tip.hash, block_hash(&chain, tip.number).await);

    let all = incidents(&running.store).await;
    assert_eq!(all.len(), 1);
    let i = &all[0];
    assert_eq!(i.state, IncidentState::Withdrawn);
    assert!(i.evidence.iter().all(|e| e.retracted) && i.transitions.iter().all(|t| t.retracted));
    let visible = running
        .store
        .list(&IncidentFilter::default())
        .await
        .unwrap();
    assert!(
        visible.is_empty(),
        "a withdrawn incident is not listed by default"
    );

    // A pause on the new branch is a new incident, not the withdrawn one.
    let again = chain.call(vault, selector("pause()")).await.unwrap();
    wait_processed(&running.store, again.block_number.unwrap()).await;
    let visible = running
        .store
        .list(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(visible.len(), 1);
    assert_eq!(visible[0].state, IncidentState::Open);
    assert_eq!(visible[0].evidence[0].block_hash, again.block_hash.unwrap());
    running.stop().await;
}

#[tokio::test]
async fn a_reorg_that_orphans_the_unpause_reopens_the_incident() {
    let VaultChain {
        chain,
        vault,
        path,
        node: _node,
        dir: _dir,
    } = vault_chain(false, "").await;
    let running = start(&path).await;
    let paused = chain.call(vault, selector("pause()")).await.unwrap();
    let unpaused = chain.call(vault, selector("unpause()")).await.unwrap();
    wait_processed(&running.store, unpaused.block_number.unwrap()).await;
    assert_eq!(
        incidents(&running.store).await[0].state,
        IncidentState::Resolved
    );

    let _: serde_json::Value = chain
        .provider
        .raw_request("anvil_rollback".into(), (1u64,))
        .await
        .expect("anvil_rollback");
    mine(&chain, 2).await;
    let head = chain.provider.get_block_number().await.unwrap();
    wait_processed(&running.store, head).await;
    // Wait for the revert to land (the checkpoint may briefly equal the head's number on the old branch).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let i = &incidents(&running.store).await[0];
        if i.state == IncidentState::Open {
            assert_eq!(i.start_block, paused.block_number.unwrap());
            assert_eq!(
                (i.ended_at, i.end_block, i.duration_seconds),
                (None, None, None)
            );
            assert_eq!(i.transitions.iter().filter(|t| !t.retracted).count(), 1);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "incident not reopened: {i:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await;
}
