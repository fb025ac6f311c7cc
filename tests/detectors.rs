//! Halts without pause events, on a real anvil chain: failed calls, revert
//! spikes, nested failures, probes, stalls, monitoring gaps, sequencer feeds.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use alloy::sol;
use alloy::sol_types::SolCall;
use common::*;
use haltwatch::demo::selector;
use haltwatch::model::{EvidenceKind, ProtocolState};
use haltwatch::store::{IncidentRecord, IncidentState, Store};

sol! {
    function setBroken(bool b);
    function route(address target, bytes data);
    function updateStatus(bool status, uint64 timestamp);
}

/// The compiled ABI of a test contract, for contracts without a preset ABI.
fn out_abi(contract: &str) -> String {
    root()
        .join("contracts/out")
        .join(format!("{contract}.abi"))
        .display()
        .to_string()
}

/// One protocol with one contract; `contract_extra` goes into the contract
/// table, `protocol_extra` after it (probes), `chain_extra` into the chain.
fn config(
    rpc: &str,
    address: Address,
    abi: &str,
    contract_extra: &str,
    protocol_extra: &str,
    chain_extra: &str,
) -> String {
    config_text(
        rpc,
        &format!(
            r#"
[[protocols]]
name = "Pool"
chain = "anvil"
  [[protocols.contracts]]
  name = "pool"
  address = "{address}"
  abi = "{abi}"
  {contract_extra}
{protocol_extra}
"#
        ),
    )
    .replace(
        "poll_interval_ms = 50",
        &format!("poll_interval_ms = 50\n{chain_extra}"),
    )
}

async fn setup(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), text);
    (dir, path)
}

async fn wait_incident(
    store: &Store,
    what: &str,
    ok: impl Fn(&IncidentRecord) -> bool,
) -> IncidentRecord {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(i) = incidents(store).await.into_iter().find(|i| ok(i)) {
            return i;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {:#?}",
            incidents(store).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_burst_of_failed_calls_is_a_degraded_spike_and_the_same_failures_spread_thin_are_not() {
    let node = anvil(0);
    let chain = chain(&node).await;
    let pool = chain.deploy(&bin("FlakyPool")).await.unwrap();
    let spike = "revert_spike = { window_blocks = 10, min_failed = 5, min_ratio = 0.5, baseline_factor = 3.0, clear_windows = 3 }";
    let (_dir, path) = setup(&config(
        &node.endpoint(),
        pool,
        &out_abi("FlakyPool"),
        spike,
        "",
        "",
    ))
    .await;
    let running = start(&path).await;
    let act = selector("act()");
    for _ in 0..5 {
        chain.call(pool, act.clone()).await.unwrap();
    }
    // Spread thin: five failures, each among successful calls and alone in
    // its window (the baseline learns a failure rate of about one in six).
    for _ in 0..5 {
        chain
            .call(pool, setBrokenCall { b: true }.abi_encode())
            .await
            .unwrap();
        let r = chain.call(pool, act.clone()).await.unwrap();
        assert!(!r.status(), "a mined, failed transaction");
        chain
            .call(pool, setBrokenCall { b: false }.abi_encode())
            .await
            .unwrap();
        for _ in 0..3 {
            chain.call(pool, act.clone()).await.unwrap();
        }
        mine_blocks(&chain, 12).await;
    }
    wait_caught_up(&running.store, &chain).await;
    assert!(
        incidents(&running.store).await.is_empty(),
        "no spike from spread-out failures"
    );

    // A burst: six failures in six blocks.
    chain
        .call(pool, setBrokenCall { b: true }.abi_encode())
        .await
        .unwrap();
    let mut failed = Vec::new();
    for _ in 0..6 {
        failed.push(
            chain
                .call(pool, act.clone())
                .await
                .unwrap()
                .transaction_hash,
        );
    }
    let i = wait_incident(&running.store, "spike", |i| i.state == IncidentState::Open).await;
    assert_eq!(i.severity, ProtocolState::Degraded);
    assert_eq!(i.scopes, ["pool:revert-spike"]);
    let spike_evidence: Vec<_> = i
        .evidence
        .iter()
        .filter(|e| e.kind == EvidenceKind::Spike)
        .collect();
    assert_eq!(spike_evidence.len(), 1);
    let text = &spike_evidence[0].event;
    assert!(
        text.starts_with("revert spike: 5 of 6 calls failed in the last 10 blocks"),
        "{text}"
    );
    let calls: Vec<_> = i
        .evidence
        .iter()
        .filter(|e| e.kind == EvidenceKind::FailedCall)
        .collect();
    assert!(calls.len() >= 5);
    for e in &calls {
        assert!(failed.contains(&e.tx_hash));
        assert_eq!(
            e.event, "call reverted: Unavailable(uint256)",
            "decoded by name"
        );
        assert_eq!(
            (e.args[0].name.as_str(), e.args[0].value.as_str()),
            ("code", "42")
        );
    }

    // Quiet windows clear it.
    chain
        .call(pool, setBrokenCall { b: false }.abi_encode())
        .await
        .unwrap();
    mine_blocks(&chain, 45).await;
    let done = wait_incident(&running.store, "cleared", |i| {
        i.state == IncidentState::Resolved
    })
    .await;
    assert_eq!(done.id, i.id);
    running.stop().await;
}

#[tokio::test]
async fn enforced_pause_and_pausable_paused_reverts_are_halts_decoded_by_name() {
    let node = anvil(0);
    let chain = chain(&node).await;
    let vault = chain.deploy(&bin("DemoPausable")).await.unwrap();
    // No rules: only the failed calls can tell that the vault is paused.
    let (_dir, path) = setup(&config(
        &node.endpoint(),
        vault,
        &abi("oz-pausable.json"),
        "",
        "",
        "",
    ))
    .await;
    let running = start(&path).await;
    chain.call(vault, selector("pause()")).await.unwrap();
    let r = chain.call(vault, selector("deposit()")).await.unwrap();
    assert!(!r.status());
    let i = wait_incident(&running.store, "halt", |i| i.state == IncidentState::Open).await;
    assert_eq!(i.severity, ProtocolState::Halted);
    let e = &i.evidence[0];
    assert_eq!(
        (e.kind, e.event.as_str()),
        (EvidenceKind::FailedCall, "call reverted: EnforcedPause()")
    );
    assert_eq!(e.tx_hash, r.transaction_hash);
    running.stop().await;

    // OpenZeppelin 4's revert string.
    let pool = chain.deploy(&bin("FlakyPool")).await.unwrap();
    let (_dir2, path2) = setup(&config(
        &node.endpoint(),
        pool,
        &out_abi("FlakyPool"),
        "",
        "",
        "",
    ))
    .await;
    let text = std::fs::read_to_string(&path2)
        .unwrap()
        .replace("start_block = 0", "start_block = \"latest\"");
    std::fs::write(&path2, text).unwrap();
    let running = start(&path2).await;
    wait_caught_up(&running.store, &chain).await;
    chain
        .call(pool, setBrokenCall { b: true }.abi_encode())
        .await
        .unwrap();
    chain.call(pool, selector("legacy()")).await.unwrap();
    let i = wait_incident(&running.store, "legacy halt", |i| {
        i.state == IncidentState::Open
    })
    .await;
    assert_eq!(i.evidence[0].event, "call reverted: Error(string)");
    assert_eq!(i.evidence[0].args[0].value, "Pausable: paused");
    running.stop().await;
}

#[tokio::test]
async fn a_nested_failure_through_a_router_is_caught_only_with_trace_calls() {
    let node = anvil(0);
    let chain = chain(&node).await;
    let vault = chain.deploy(&bin("DemoPausable")).await.unwrap();
    let router = chain.deploy(&bin("Router")).await.unwrap();
    chain.call(vault, selector("pause()")).await.unwrap();
    let start_block = chain.provider.get_block_number().await.unwrap() + 1;
    let deposit: Bytes = selector("deposit()").into();
    let r = chain
        .call(
            router,
            routeCall {
                target: vault,
                data: deposit,
            }
            .abi_encode(),
        )
        .await
        .unwrap();
    assert!(
        r.status(),
        "the router swallows the failure: the top-level call succeeds"
    );
    mine_blocks(&chain, 2).await;

    for trace in [false, true] {
        let chain_extra = if trace { "trace_calls = true" } else { "" };
        let text = config(
            &node.endpoint(),
            vault,
            &abi("oz-pausable.json"),
            "",
            "",
            chain_extra,
        )
        .replace("start_block = 0", &format!("start_block = {start_block}"));
        let (_dir, path) = setup(&text).await;
        let running = start(&path).await;
        wait_caught_up(&running.store, &chain).await;
        let list = incidents(&running.store).await;
        if trace {
            assert_eq!(list.len(), 1, "{list:#?}");
            let e = &list[0].evidence[0];
            assert_eq!(e.event, "nested call reverted: EnforcedPause()");
            assert_eq!(e.tx_hash, r.transaction_hash);
        } else {
            assert!(
                list.is_empty(),
                "top-level receipts cannot see it: {list:#?}"
            );
        }
        running.stop().await;
    }
}

const KILLED_PROBE: &str = r#"
  [[protocols.probes]]
  contract = "pool"
  function = "is_killed()"
  expected = false
  every_blocks = 1
"#;

#[tokio::test]
async fn a_probe_catches_a_halt_that_emits_no_event_and_sees_it_end() {
    let node = anvil(0);
    let chain = chain(&node).await;
    let pool = chain.deploy(&bin("FlakyPool")).await.unwrap();
    let (_dir, path) = setup(&config(
        &node.endpoint(),
        pool,
        &out_abi("FlakyPool"),
        "",
        KILLED_PROBE,
        "",
    ))
    .await;
    let running = start(&path).await;
    wait_caught_up(&running.store, &chain).await;
    let killed = chain.call(pool, selector("killMe()")).await.unwrap();
    assert!(killed.logs().is_empty(), "killMe emits nothing");
    let i = wait_incident(&running.store, "probe halt", |i| {
        i.state == IncidentState::Open
    })
    .await;
    assert_eq!(
        (i.severity, i.start_block),
        (ProtocolState::Halted, killed.block_number.unwrap())
    );
    assert_eq!(i.evidence[0].kind, EvidenceKind::Probe);
    assert_eq!(
        i.evidence[0].event,
        "probe is_killed() returned true (healthy: false)"
    );
    let back = chain.call(pool, selector("unkillMe()")).await.unwrap();
    let done = wait_incident(&running.store, "probe resume", |i| {
        i.state == IncidentState::Resolved
    })
    .await;
    assert_eq!(done.end_block, back.block_number);
    running.stop().await;
}

#[tokio::test]
async fn a_contract_already_halted_when_monitoring_starts_opens_an_incident() {
    let node = anvil(0);
    let chain = chain(&node).await;
    let pool = chain.deploy(&bin("FlakyPool")).await.unwrap();
    chain.call(pool, selector("killMe()")).await.unwrap();
    mine_blocks(&chain, 3).await;
    let text = config(
        &node.endpoint(),
        pool,
        &out_abi("FlakyPool"),
        "",
        KILLED_PROBE,
        "",
    )
    .replace("start_block = 0", "start_block = \"latest\"");
    let (_dir, path) = setup(&text).await;
    let running = start(&path).await;
    let i = wait_incident(&running.store, "already halted", |i| {
        i.state == IncidentState::Open
    })
    .await;
    assert!(
        i.evidence[0]
            .event
            .ends_with("already paused when monitoring began"),
        "{}",
        i.evidence[0].event
    );
    running.stop().await;
}

#[tokio::test]
async fn a_stalled_chain_halts_every_protocol_in_wall_time_until_blocks_resume() {
    let w = vault_chain(false, "").await;
    let other = w.chain.deploy(&bin("DemoPausable")).await.unwrap();
    let mut text = std::fs::read_to_string(&w.path).unwrap().replace(
        "poll_interval_ms = 50",
        "poll_interval_ms = 50\nstall_after_seconds = 1",
    );
    text.push_str(&protocol(
        "Other",
        "vault",
        other,
        "oz-pausable.json",
        "oz-pausable",
    ));
    std::fs::write(&w.path, text).unwrap();
    let _: serde_json::Value = w
        .chain
        .provider
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let before = haltwatch::store::now_ms() as u64 / 1000;
    let running = start(&w.path).await;

    let stalled = wait_incident(&running.store, "stall", |i| i.state == IncidentState::Open).await;
    assert_eq!(stalled.scopes, ["chain anvil"]);
    assert_eq!(stalled.severity, ProtocolState::Halted);
    assert!(
        stalled.started_at >= before,
        "wall-clock start, not block time"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    mine(&w.chain, 1).await;
    let resumed = wait_incident(&running.store, "resume", |i| {
        i.state == IncidentState::Resolved
    })
    .await;
    let after = haltwatch::store::now_ms() as u64 / 1000;
    let d = resumed.duration_seconds.unwrap();
    assert!(
        (2..=after - before).contains(&d),
        "wall-clock duration {d} s"
    );
    // Every protocol on the chain had the stall. (The idle chain may stall
    // again a second after resuming: only the first episode is checked.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let all = incidents(&running.store).await;
        let resolved: std::collections::BTreeSet<String> = all
            .iter()
            .filter(|i| i.state == IncidentState::Resolved && i.scopes == ["chain anvil"])
            .map(|i| i.protocol.clone())
            .collect();
        if resolved.len() == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "every protocol on the chain: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await;
}

#[tokio::test]
async fn a_monitoring_gap_is_recorded_apart_and_the_gap_is_backfilled() {
    let w = vault_chain(false, "").await;
    let down = Arc::new(AtomicBool::new(false));
    let proxy = common::proxy::spawn_switchable(
        w.node.endpoint().trim_start_matches("http://").to_string(),
        Arc::new(|_: &serde_json::Value| None),
        down.clone(),
    );
    let text = std::fs::read_to_string(&w.path)
        .unwrap()
        .replace(&w.node.endpoint(), &proxy)
        .replace(
            "poll_interval_ms = 50",
            "poll_interval_ms = 50\nstall_after_seconds = 1",
        );
    std::fs::write(&w.path, text).unwrap();
    let running = start(&w.path).await;
    wait_caught_up(&running.store, &w.chain).await;

    down.store(true, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while running
        .store
        .gaps(0, u64::MAX / 2)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(tokio::time::Instant::now() < deadline, "no gap recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The protocol halts while the monitor is blind.
    let paused = w.chain.call(w.vault, selector("pause()")).await.unwrap();
    mine(&w.chain, 2).await;
    down.store(false, Ordering::SeqCst);
    wait_caught_up(&running.store, &w.chain).await;
    let i = wait_incident(&running.store, "backfilled pause", |i| {
        i.state == IncidentState::Open
    })
    .await;
    assert_eq!(
        i.start_block,
        paused.block_number.unwrap(),
        "recorded with its true block"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let gap = loop {
        let gaps = running.store.gaps(0, u64::MAX / 2).await.unwrap();
        if gaps.iter().all(|g| g.ended_at.is_some()) {
            break gaps[0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gap not closed: {gaps:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(gap.chain, "anvil");
    assert!(gap.ended_at.unwrap() >= gap.started_at);
    assert!(
        !gap.reason.contains(&proxy[7..]) || gap.reason.contains("http://"),
        "URLs redacted: {}",
        gap.reason
    );
    // With stall_after_seconds = 1, an idle automine chain may also (rightly)
    // stall, and a stall open when the pause lands shares its incident:
    // count the incidents with a halted scope other than the chain's.
    let protocol_incidents: Vec<_> = incidents(&running.store)
        .await
        .into_iter()
        .filter(|i| i.scopes.iter().any(|s| s != "chain anvil"))
        .collect();
    assert_eq!(
        protocol_incidents.len(),
        1,
        "the gap is not an incident: {protocol_incidents:#?}"
    );
    running.stop().await;
}

/// Chainlink's production L2 sequencer uptime feed (`ZKSyncSequencerUptimeFeed`,
/// compiled from `@chainlink/contracts@1.3.0`): its L1 sender reaches it
/// under an address alias, which anvil impersonates. The halt is dated by
/// the feed's own timestamp (the L1 time the sequencer went down), and an
/// update that repeats the status (a `RoundUpdated`, no `AnswerUpdated`) or
/// arrives late (`UpdateIgnored`) changes nothing.
#[tokio::test]
async fn a_sequencer_feed_halts_and_resumes_at_its_own_updated_at() {
    use alloy::providers::Provider;
    let node = anvil(0);
    let chain = chain(&node).await;
    let l1_sender = Address::repeat_byte(0x42);
    let offset = U256::from_be_slice(&alloy::hex!("1111000000000000000000000000000000001111"));
    let alias = Address::from_word((U256::from_be_slice(l1_sender.as_slice()) + offset).into());
    let args = alloy::sol_types::SolValue::abi_encode_params(&(l1_sender, false));
    let code = bin("ZKSyncSequencerUptimeFeed").trim().to_string() + &alloy::hex::encode(args);
    let feed = chain.deploy(&code).await.unwrap();
    let p = &chain.provider;
    let _: () = p
        .raw_request("anvil_impersonateAccount".into(), (alias,))
        .await
        .unwrap();
    let _: () = p
        .raw_request(
            "anvil_setBalance".into(),
            (alias, U256::from(10u64).pow(U256::from(18))),
        )
        .await
        .unwrap();
    // The L1 messenger's call, from the aliased sender.
    let update = |status: bool, timestamp: u64| async move {
        let call = updateStatusCall { status, timestamp };
        let tx = serde_json::json!({
            "from": alias,
            "to": feed,
            "data": alloy::hex::encode_prefixed(call.abi_encode()),
            "gas": "0x100000",
        });
        let hash: alloy::primitives::B256 = p
            .raw_request("eth_sendTransaction".into(), (tx,))
            .await
            .unwrap();
        for _ in 0..200 {
            if let Some(r) = p.get_transaction_receipt(hash).await.unwrap() {
                assert!(r.status(), "updateStatus reverted");
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("updateStatus not mined");
    };
    let text = config(
        &node.endpoint(),
        feed,
        &abi("chainlink-sequencer-feed.json"),
        "preset = \"chainlink-sequencer-feed\"",
        "",
        "",
    );
    let (_dir, path) = setup(&text).await;
    let running = start(&path).await;
    let now = p
        .get_block(alloy::eips::BlockId::latest())
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp;
    let (down_at, up_at) = (now + 100, now + 877);
    update(true, down_at).await;
    let i = wait_incident(&running.store, "sequencer down", |i| {
        i.state == IncidentState::Open
    })
    .await;
    assert_eq!((i.started_at, i.severity), (down_at, ProtocolState::Halted));
    // Down again (a repeat) and a stale "up" older than the round: nothing.
    update(true, down_at + 5).await;
    let stale = update(false, down_at - 50).await;
    wait_processed(&running.store, stale.block_number.unwrap()).await;
    let i = &incidents(&running.store).await[0];
    assert_eq!(
        i.state,
        IncidentState::Open,
        "a stale update is ignored by the feed"
    );
    assert_eq!(i.evidence.len(), 1);
    update(false, up_at).await;
    let done = wait_incident(&running.store, "sequencer up", |i| {
        i.state == IncidentState::Resolved
    })
    .await;
    assert_eq!(
        (done.ended_at, done.duration_seconds),
        (Some(up_at), Some(777))
    );
    running.stop().await;
}

/// Far behind the head, calls are read with `trace_filter` (a few requests
/// per range; anvil serves at most 300 blocks each, so the span is learned)
/// instead of every block's body and receipts or traces. Every way must find
/// the same failed calls, top-level and nested, with the same reasons: a
/// node without `trace_filter` is read block by block, and one without
/// `eth_getBlockReceipts` as well gives the candidates' receipts one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catching_up_with_trace_filter_finds_what_reading_every_block_finds() {
    let node = anvil(0);
    let chain = chain(&node).await;
    let vault = chain.deploy(&bin("DemoPausable")).await.unwrap();
    let router = chain.deploy(&bin("Router")).await.unwrap();
    let start_block = chain.provider.get_block_number().await.unwrap() + 1;
    chain.call(vault, selector("pause()")).await.unwrap();
    let top = chain.call(vault, selector("deposit()")).await.unwrap();
    assert!(!top.status());
    let routed = chain
        .call(
            router,
            routeCall {
                target: vault,
                data: selector("deposit()").into(),
            }
            .abi_encode(),
        )
        .await
        .unwrap();
    assert!(routed.status(), "the router swallows the failure");
    // Far enough behind the head for ranges that are traced, and longer
    // than anvil's 300-block trace_filter limit.
    mine_blocks(&chain, 320).await;

    // (trace_calls, methods the node refuses).
    let setups: [(bool, &[&str]); 5] = [
        (false, &[]),
        (false, &["trace_filter"]),
        (false, &["trace_filter", "eth_getBlockReceipts"]),
        (true, &[]),
        (true, &["trace_filter"]),
    ];
    let mut found = Vec::new();
    for (trace_calls, refused) in setups {
        // (method, refused) of every request, in order.
        let asked: Arc<std::sync::Mutex<Vec<(String, bool)>>> = Arc::default();
        let log = asked.clone();
        let url = proxy::spawn(
            node.endpoint().trim_start_matches("http://").to_string(),
            Arc::new(move |req: &serde_json::Value| {
                let method = req["method"].as_str().unwrap_or_default();
                let refuse = refused.contains(&method);
                log.lock().unwrap().push((method.to_string(), refuse));
                if !refuse {
                    return None;
                }
                Some(
                    serde_json::json!({
                        "jsonrpc": "2.0", "id": req["id"],
                        "error": {"code": -32601, "message": format!("the method {method} does not exist/is not available")}
                    })
                    .to_string()
                    .into_bytes(),
                )
            }),
        );
        let chain_extra = if trace_calls {
            "trace_calls = true"
        } else {
            ""
        };
        let text = config(&url, vault, &abi("oz-pausable.json"), "", "", chain_extra)
            .replace("start_block = 0", &format!("start_block = {start_block}"));
        let (_dir, path) = setup(&text).await;
        let running = start(&path).await;
        wait_caught_up(&running.store, &chain).await;
        let mut calls: Vec<(String, String)> = incidents(&running.store)
            .await
            .iter()
            .flat_map(|i| i.evidence.iter())
            .filter(|e| e.kind == EvidenceKind::FailedCall)
            .map(|e| (e.tx_hash.to_string(), e.event.clone()))
            .collect();
        calls.sort();
        running.stop().await;
        let asked = asked.lock().unwrap().clone();
        let served = |m: &str| asked.iter().filter(|(a, r)| a == m && !r).count();
        let refusals = |m: &str| asked.iter().filter(|(a, r)| a == m && *r).count();
        let what = format!("trace_calls = {trace_calls}, refused = {refused:?}");
        assert_eq!(
            served("trace_filter") > 0,
            !refused.contains(&"trace_filter"),
            "trace_filter used ({what})"
        );
        // A refused method is asked once per endpoint, not once per range.
        assert!(refusals("trace_filter") <= 1, "{what}");
        if refused.contains(&"eth_getBlockReceipts") {
            assert_eq!(refusals("eth_getBlockReceipts"), 1, "{what}");
            // Then receipts one by one: the failed deposit() and the
            // successful pause() are the vault's two candidates (the
            // router's call reaches it only as a nested call).
            assert_eq!(served("eth_getTransactionReceipt"), 2, "{what}");
        } else {
            assert_eq!(served("eth_getTransactionReceipt"), 0, "{what}");
        }
        found.push(calls);
    }
    let top_level = vec![(
        top.transaction_hash.to_string(),
        "call reverted: EnforcedPause()".to_string(),
    )];
    assert_eq!(found[0], top_level, "top-level calls, traced");
    assert_eq!(found[1], top_level, "top-level calls, from block receipts");
    assert_eq!(
        found[2], top_level,
        "top-level calls, from receipts one by one"
    );
    let mut both = vec![
        top_level[0].clone(),
        (
            routed.transaction_hash.to_string(),
            "nested call reverted: EnforcedPause()".to_string(),
        ),
    ];
    both.sort();
    assert_eq!(found[3], both, "nested calls, trace_filter");
    assert_eq!(found[4], both, "nested calls, traced block by block");
}
