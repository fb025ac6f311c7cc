//! The production Aave V3 market (`@aave/core-v3@1.19.3` bytecode) on anvil,
//! watched with the `aave-v3-configurator` and `aave-v3-pool` presets and no
//! hand-written scope list: the pool's reserve list is read from the chain.

mod common;

use alloy::primitives::{Address, U256};
use common::aave::{AaveMarket, send_failing};
use common::*;
use haltwatch::demo::Chain;
use haltwatch::model::{EvidenceKind, ProtocolState};
use haltwatch::store::{IncidentRecord, IncidentState};

/// The market's two contracts in one protocol, each with its preset.
fn aave_protocol(market: &AaveMarket) -> String {
    format!(
        r#"
[[protocols]]
name = "Aave"
chain = "anvil"
responders = ["oncall@example.org"]
  [[protocols.contracts]]
  name = "configurator"
  address = "{configurator}"
  abi = "{configurator_abi}"
  preset = "aave-v3-configurator"
  [[protocols.contracts]]
  name = "pool"
  address = "{pool}"
  abi = "{pool_abi}"
  preset = "aave-v3-pool"
"#,
        configurator = market.configurator,
        pool = market.pool,
        configurator_abi = abi("aave-v3-configurator.json"),
        pool_abi = abi("aave-v3-pool.json"),
    )
}

struct Setup {
    chain: Chain,
    market: AaveMarket,
    running: Running,
    /// The node and the config's folder, kept alive for the test.
    _keep: Keep,
}

struct Keep {
    _node: alloy::node_bindings::AnvilInstance,
    dir: tempfile::TempDir,
}

async fn setup(reserves: usize) -> Setup {
    let node = anvil(0);
    let chain = chain(&node).await;
    let market = AaveMarket::deploy(&chain, reserves).await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&node.endpoint(), &aave_protocol(&market));
    let path = write_config(dir.path(), &text);
    let running = start(&path).await;
    wait_caught_up(&running.store, &chain).await;
    Setup {
        chain,
        market,
        running,
        _keep: Keep { _node: node, dir },
    }
}

fn scope(prefix: &str, asset: Address) -> String {
    format!("configurator:{prefix}{}", asset.to_checksum(None))
}

fn one_pound() -> U256 {
    U256::from(10u64).pow(U256::from(18))
}

/// The evidence events of an incident, in order.
fn events(i: &IncidentRecord) -> Vec<String> {
    i.evidence.iter().map(|e| e.event.clone()).collect()
}

#[tokio::test]
async fn a_pool_pause_is_one_halted_incident_over_every_reserve_that_resolves_on_unpause() {
    let Setup {
        chain,
        market,
        running,
        _keep,
    } = setup(3).await;
    assert_eq!(market.reserves(&chain).await, market.assets);

    let paused = market.set_pool_pause(&chain, true).await;
    assert_eq!(
        paused.inner.logs().len(),
        3,
        "one ReservePaused per reserve"
    );
    wait_processed(&running.store, paused.block_number.unwrap()).await;
    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let i = &list[0];
    assert_eq!(
        i.severity,
        ProtocolState::Halted,
        "the reserve list is complete"
    );
    assert_eq!(i.state, IncidentState::Open);
    let mut want: Vec<String> = market.assets.iter().map(|a| scope("", *a)).collect();
    want.sort();
    let mut got = i.scopes.clone();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(i.evidence.len(), 3);

    // Aave emits the events even when nothing changes: a second pause adds
    // evidence to the same incident, never a second one.
    let again = market.set_pool_pause(&chain, true).await;
    wait_processed(&running.store, again.block_number.unwrap()).await;
    assert_eq!(incidents(&running.store).await.len(), 1);

    // One reserve back: degraded. The rest back: resolved.
    market
        .set_reserve_pause(&chain, market.assets[0], false)
        .await;
    let unpaused = market.set_pool_pause(&chain, false).await;
    wait_processed(&running.store, unpaused.block_number.unwrap()).await;
    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, IncidentState::Resolved);
    assert_eq!(list[0].end_block, unpaused.block_number);
    let path: Vec<_> = list[0]
        .transitions
        .iter()
        .map(|t| (t.kind.as_str(), t.to))
        .collect();
    use ProtocolState::*;
    assert_eq!(
        path,
        [
            ("opened", Halted),
            ("deescalated", Degraded),
            ("resolved", Operational)
        ]
    );

    // Unpausing reserves that are not paused still emits ReservePaused(…, false): nothing new.
    let noop = market.set_pool_pause(&chain, false).await;
    assert_eq!(noop.inner.logs().len(), 3);
    wait_processed(&running.store, noop.block_number.unwrap()).await;
    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0].evidence.len(),
        i.evidence.len() + 3 + 1 + 3,
        "the repeat, the one reserve, the rest; the no-op adds nothing: {:#?}",
        events(&list[0])
    );
    running.stop().await;
}

#[tokio::test]
async fn one_paused_reserve_is_degraded_and_a_supply_into_it_is_cited_as_reserve_paused() {
    let Setup {
        chain,
        market,
        running,
        _keep,
    } = setup(2).await;
    let (paused_asset, open_asset) = (market.assets[0], market.assets[1]);
    market.fund(&chain, paused_asset, one_pound()).await;
    market.fund(&chain, open_asset, one_pound()).await;

    let r = market.set_reserve_pause(&chain, paused_asset, true).await;
    wait_processed(&running.store, r.block_number.unwrap()).await;
    let supply = market.supply_call(&chain, paused_asset, one_pound());
    let failed = send_failing(&chain, market.pool, supply).await;
    // A supply into the other reserve goes through and cites nothing.
    let ok = common::aave::send(
        &chain,
        market.pool,
        market.supply_call(&chain, open_asset, one_pound()),
        "supply",
    )
    .await;
    wait_processed(&running.store, ok.block_number.unwrap()).await;

    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let i = &list[0];
    assert_eq!(i.severity, ProtocolState::Degraded, "one reserve of two");
    assert_eq!(i.scopes, vec![scope("", paused_asset)]);
    let cited: Vec<_> = i
        .evidence
        .iter()
        .filter(|e| e.kind == EvidenceKind::FailedCall)
        .collect();
    assert_eq!(cited.len(), 1, "{:#?}", events(i));
    let e = cited[0];
    assert_eq!(e.event, "call reverted: RESERVE_PAUSED (29)");
    assert_eq!(e.tx_hash, failed.transaction_hash);
    assert_eq!(e.contract, market.pool);
    assert!(e.changes.is_empty(), "a citation changes no scope");
    assert!(
        e.args
            .iter()
            .any(|a| a.name == "asset" && a.value == paused_asset.to_checksum(None)),
        "{:?}",
        e.args
    );
    assert_eq!(i.transitions.len(), 1, "cited, not escalated");
    running.stop().await;
}

#[tokio::test]
async fn frozen_reserves_are_degraded_at_most_and_a_supply_into_one_is_cited_as_reserve_frozen() {
    let Setup {
        chain,
        market,
        running,
        _keep,
    } = setup(2).await;
    let asset = market.assets[0];
    market.fund(&chain, asset, one_pound()).await;
    // Every reserve frozen: still degraded, for withdrawals and repayments go on.
    for a in &market.assets {
        market.set_reserve_freeze(&chain, *a, true).await;
    }
    let failed = send_failing(
        &chain,
        market.pool,
        market.supply_call(&chain, asset, one_pound()),
    )
    .await;
    wait_processed(&running.store, failed.block_number.unwrap()).await;
    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let i = &list[0];
    assert_eq!(i.severity, ProtocolState::Degraded, "a freeze never halts");
    let mut want: Vec<String> = market.assets.iter().map(|a| scope("frozen:", *a)).collect();
    want.sort();
    let mut got = i.scopes.clone();
    got.sort();
    assert_eq!(got, want);
    assert!(
        events(i).contains(&"call reverted: RESERVE_FROZEN (28)".to_string()),
        "{:#?}",
        events(i)
    );

    for a in &market.assets {
        market.set_reserve_freeze(&chain, *a, false).await;
    }
    wait_caught_up(&running.store, &chain).await;
    let list = incidents(&running.store).await;
    assert_eq!(list[0].state, IncidentState::Resolved);
    running.stop().await;
}

#[tokio::test]
async fn a_reserve_listed_later_joins_the_complete_set() {
    let Setup {
        chain,
        mut market,
        running,
        _keep,
    } = setup(2).await;
    let third = market.list_reserve(&chain).await;
    assert_eq!(market.reserves(&chain).await.len(), 3);
    // The first two paused one by one: the third still works, so degraded.
    for a in &market.assets[..2] {
        market.set_reserve_pause(&chain, *a, true).await;
    }
    wait_caught_up(&running.store, &chain).await;
    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].severity, ProtocolState::Degraded, "{list:#?}");
    // The third too: now the whole market.
    let r = market.set_reserve_pause(&chain, third, true).await;
    wait_processed(&running.store, r.block_number.unwrap()).await;
    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].severity, ProtocolState::Halted, "{list:#?}");
    running.stop().await;
}

#[tokio::test]
async fn a_deactivated_reserve_is_a_halt_of_that_reserve() {
    let Setup {
        chain,
        market,
        running,
        _keep,
    } = setup(2).await;
    let asset = market.assets[1];
    let r = market.set_reserve_active(&chain, asset, false).await;
    wait_processed(&running.store, r.block_number.unwrap()).await;
    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0].scopes, vec![scope("inactive:", asset)]);
    assert_eq!(list[0].severity, ProtocolState::Degraded);
    let r = market.set_reserve_active(&chain, asset, true).await;
    wait_processed(&running.store, r.block_number.unwrap()).await;
    assert_eq!(
        incidents(&running.store).await[0].state,
        IncidentState::Resolved
    );
    running.stop().await;
}

#[tokio::test]
async fn a_reserve_paused_revert_passed_on_from_a_flash_loan_receiver_opens_nothing() {
    let Setup {
        chain,
        market,
        running,
        _keep,
    } = setup(2).await;
    let asset = market.assets[0];
    // Liquidity to lend, and flash loans on.
    market.fund(&chain, asset, one_pound()).await;
    common::aave::send(
        &chain,
        market.pool,
        market.supply_call(&chain, asset, one_pound()),
        "supply",
    )
    .await;
    market.enable_flash_loans(&chain, asset).await;
    // The attacker's receiver reverts with "29"; the pool passes it on.
    let spoofer = chain.deploy(&bin("AaveFlashSpoofer")).await.unwrap();
    let call = market.flash_loan_call(spoofer, asset, U256::from(1000u64));
    let mut last = None;
    for _ in 0..3 {
        last = Some(send_failing(&chain, market.pool, call.clone()).await);
    }
    wait_processed(&running.store, last.unwrap().block_number.unwrap()).await;
    assert!(
        incidents(&running.store).await.is_empty(),
        "a \"29\" the pool did not raise is no halt"
    );
    running.stop().await;
}

/// A backfill reads the reserve list once, on its last block: a pool pause
/// in the history is halted there too.
#[tokio::test]
async fn a_backfill_reads_the_reserve_list_and_records_the_pool_pause_as_halted() {
    let node = anvil(0);
    let chain = chain(&node).await;
    let market = AaveMarket::deploy(&chain, 2).await;
    market.set_pool_pause(&chain, true).await;
    let last = market.set_pool_pause(&chain, false).await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&node.endpoint(), &aave_protocol(&market));
    let path = write_config(dir.path(), &text);
    let config = haltwatch::config::load(&path).unwrap();
    let store = haltwatch::store::Store::open(&config.store).await.unwrap();
    let to = last.block_number.unwrap();
    haltwatch::pipeline::backfill(config, store.clone(), "anvil", 0, to, |_| {})
        .await
        .expect("backfill");
    let list = incidents(&store).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0].severity, ProtocolState::Halted);
    assert_eq!(list[0].state, IncidentState::Resolved);
}

/// A `scopes` list written in the config wins over the pool's reserve list:
/// the two reserves it names, paused, are the whole protocol.
#[tokio::test]
async fn a_scopes_list_written_in_the_config_wins_over_the_chain() {
    let node = anvil(0);
    let chain = chain(&node).await;
    let market = AaveMarket::deploy(&chain, 3).await;
    let listed = format!(
        r#"
  [[protocols.rules]]
  contract = "configurator"
  event = "ReservePaused"
  effect = "toggle"
  toggle_arg = "paused"
  scope_arg = "asset"
  scopes = ["{}", "{}"]
"#,
        market.assets[0], market.assets[1]
    );
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&node.endpoint(), &(aave_protocol(&market) + &listed));
    let path = write_config(dir.path(), &text);
    let running = start(&path).await;
    wait_caught_up(&running.store, &chain).await;
    market
        .set_reserve_pause(&chain, market.assets[0], true)
        .await;
    let r = market
        .set_reserve_pause(&chain, market.assets[1], true)
        .await;
    wait_processed(&running.store, r.block_number.unwrap()).await;
    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(
        list[0].severity,
        ProtocolState::Halted,
        "the written list, not the chain's three reserves"
    );
    running.stop().await;
}

/// A reserve already paused when monitoring began: the pool's own "29",
/// raised by the pool (its call trace says so), opens the halt of that
/// reserve, and the unpause the configurator emits resolves it.
#[tokio::test]
async fn a_reserve_already_paused_when_monitoring_began_is_found_by_the_pools_own_revert() {
    let node = anvil(0);
    let chain = chain(&node).await;
    let market = AaveMarket::deploy(&chain, 2).await;
    let asset = market.assets[0];
    market.fund(&chain, asset, one_pound()).await;
    market.set_reserve_pause(&chain, asset, true).await;
    mine(&chain, 1).await; // the pause is history when monitoring starts
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&node.endpoint(), &aave_protocol(&market))
        .replace("start_block = 0", "start_block = \"latest\"");
    let path = write_config(dir.path(), &text);
    let running = start(&path).await;
    wait_caught_up(&running.store, &chain).await;
    assert!(incidents(&running.store).await.is_empty());

    let failed = send_failing(
        &chain,
        market.pool,
        market.supply_call(&chain, asset, one_pound()),
    )
    .await;
    wait_processed(&running.store, failed.block_number.unwrap()).await;
    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0].scopes, vec![scope("", asset)]);
    assert_eq!(list[0].severity, ProtocolState::Degraded);
    assert_eq!(
        events(&list[0]),
        ["call reverted: RESERVE_PAUSED (29)".to_string()]
    );

    let r = market.set_reserve_pause(&chain, asset, false).await;
    wait_processed(&running.store, r.block_number.unwrap()).await;
    let list = incidents(&running.store).await;
    assert_eq!(list[0].state, IncidentState::Resolved, "{list:#?}");
    running.stop().await;
}

/// A reserve dropped while every other one is paused leaves a market that
/// does nothing: `ReserveDropped` makes the list be read again, and the
/// incident escalates to halted right after it, with that log as its
/// evidence (which `verify` checks against the chain).
#[tokio::test]
async fn dropping_the_last_working_reserve_escalates_the_incident_to_halted() {
    let Setup {
        chain,
        market,
        running,
        _keep,
    } = setup(3).await;
    for a in &market.assets[..2] {
        market.set_reserve_pause(&chain, *a, true).await;
    }
    let dropped = market.drop_reserve(&chain, market.assets[2]).await;
    wait_processed(&running.store, dropped.block_number.unwrap()).await;
    assert_eq!(market.reserves(&chain).await.len(), 2);
    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let path: Vec<_> = list[0]
        .transitions
        .iter()
        .map(|t| (t.kind.as_str(), t.to))
        .collect();
    use ProtocolState::*;
    assert_eq!(path, [("opened", Degraded), ("escalated", Halted)]);
    assert_eq!(
        list[0].transitions[1].block_number,
        dropped.block_number.unwrap(),
        "at the drop"
    );
    let cause = list[0]
        .evidence
        .iter()
        .find(|e| e.tx_hash == dropped.transaction_hash)
        .expect("the drop is evidence");
    assert_eq!(cause.event, "ReserveDropped(address)");
    assert_eq!(cause.contract, market.configurator);
    assert!(cause.changes.is_empty());
    let config = haltwatch::config::load(&_keep.dir.path().join("haltwatch.toml")).unwrap();
    let checks = haltwatch::verify::verify(&config.chains, &list).await;
    assert!(checks.iter().all(|c| c.ok()), "{checks:#?}");
    running.stop().await;
}

/// The provider fails the first reads of the reserve list (a node that
/// lost the state): the read is tried again a few blocks on, not after
/// `scopes_refresh_blocks` (1,000), so a pool pause soon after start-up is
/// still halted.
#[tokio::test]
async fn a_failed_read_of_the_reserve_list_is_tried_again_blocks_later() {
    use common::proxy::{Action, spawn_with};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let node = anvil(0);
    let chain = chain(&node).await;
    let market = AaveMarket::deploy(&chain, 2).await;
    let refused = Arc::new(AtomicUsize::new(0));
    let count = refused.clone();
    let proxy = spawn_with(
        node.endpoint().trim_start_matches("http://").to_string(),
        Arc::new(move |req: &serde_json::Value| {
            if req["method"] == "eth_call" && count.fetch_add(1, SeqCst) < 2 {
                return Action::rpc_error(req, -32000, "missing trie node");
            }
            Action::Forward
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config_text(&proxy, &aave_protocol(&market)));
    let running = start(&path).await;
    wait_caught_up(&running.store, &chain).await;
    for _ in 0..12 {
        mine(&chain, 1).await;
        wait_caught_up(&running.store, &chain).await;
    }
    assert!(
        refused.load(SeqCst) >= 3,
        "the first reads failed, a later one went through"
    );
    let r = market.set_pool_pause(&chain, true).await;
    wait_processed(&running.store, r.block_number.unwrap()).await;
    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0].severity, ProtocolState::Halted);
    running.stop().await;
}
