//! Following the chain when providers misbehave: a JSON-RPC proxy in front
//! of a real anvil answers as a lagging node, a backend without the logs
//! yet, a frozen head, a rate limiter, a provider with a range cap or one
//! on another chain would. Each scenario compares the history with the
//! chain's truth: no missed halt, no spurious incident, nothing withdrawn
//! that still stands.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use alloy::providers::Provider;
use common::proxy::{Action, WS_DROP, WS_PASS, WS_SILENT, spawn_flapping, spawn_with, spawn_ws};
use common::smtp::SmtpServer;
use common::*;
use haltwatch::demo::selector;
use haltwatch::store::{IncidentRecord, IncidentState};
use serde_json::Value;

/// This run's seed (`FAULT_SEED`, default 1): scenarios draw the size and
/// timing of their faults from it, so runs with other seeds try other
/// shapes of the same fault (`scripts/fault-runs.sh` runs the suite with 5).
fn seed() -> u64 {
    std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// A number in `lo..=hi` drawn from the seed and `salt` (splitmix64).
fn draw(salt: u64, lo: u64, hi: u64) -> u64 {
    let mut z = seed()
        .wrapping_add(salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    lo + z % (hi - lo + 1)
}

/// A node (`block_time_secs`, 0: automine) with the demo vault deployed.
async fn vault_node(
    block_time_secs: u64,
) -> (
    alloy::node_bindings::AnvilInstance,
    haltwatch::demo::Chain,
    alloy::primitives::Address,
) {
    let node = anvil(block_time_secs);
    let chain = chain(&node).await;
    let vault = chain.deploy(&bin("DemoPausable")).await.unwrap();
    (node, chain, vault)
}

/// Pauses the vault, mines `then` more blocks, and checks that the monitor
/// caught up and recorded exactly that pause.
async fn pause_is_recorded(
    chain: &haltwatch::demo::Chain,
    vault: alloy::primitives::Address,
    running: &Running,
    then: u64,
) {
    let paused = chain.call(vault, selector("pause()")).await.unwrap();
    mine(chain, then).await;
    wait_caught_up(&running.store, chain).await;
    the_pause(
        &incidents(&running.store).await,
        paused.block_number.unwrap(),
    );
}

/// The vault monitored as protocol "Vault" through `rpc`, with `edit`
/// applied to the config text; the folder holds the config and the store.
async fn monitor(
    rpc: &str,
    vault: alloy::primitives::Address,
    edit: impl FnOnce(String) -> String,
) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        rpc,
        &protocol("Vault", "vault", vault, "oz-pausable.json", "oz-pausable"),
    );
    let path = write_config(dir.path(), &edit(text));
    (start(&path).await, dir)
}

/// `rpc = [first]` becomes `rpc = [entries]`.
fn rpc_list(first: &str, entries: &str) -> impl FnOnce(String) -> String {
    let (from, to) = (format!("rpc = [\"{first}\"]"), format!("rpc = [{entries}]"));
    move |text| text.replace(&from, &to)
}

fn upstream(node: &alloy::node_bindings::AnvilInstance) -> String {
    node.endpoint().trim_start_matches("http://").to_string()
}

/// A block number in a JSON-RPC parameter (`"0x1a"`), or `None` for tags.
fn number(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.strip_prefix("0x")?, 16).ok()
}

/// The only incident, after checking it is the vault's pause at `block`, open,
/// with nothing of it retracted.
fn the_pause(list: &[IncidentRecord], block: u64) -> &IncidentRecord {
    assert_eq!(list.len(), 1, "exactly one incident: {list:#?}");
    let i = &list[0];
    assert_eq!(i.protocol, "Vault");
    assert_eq!(i.state, IncidentState::Open, "{i:#?}");
    assert_eq!(i.start_block, block);
    assert!(
        i.evidence.iter().all(|e| !e.retracted) && i.transitions.iter().all(|t| !t.retracted),
        "nothing of a standing pause is retracted: {i:#?}"
    );
    i
}

#[tokio::test]
async fn a_node_answering_blocks_behind_withdraws_nothing() {
    let (node, chain, vault) = vault_node(0).await;
    // While `lag_at` is set, the proxy is a node whose head is 1-3 blocks
    // below it: a lower eth_blockNumber, no header and no logs above that.
    let lag = draw(1, 1, 3);
    let lag_at = Arc::new(AtomicU64::new(0));
    let lagged = Arc::new(AtomicUsize::new(0));
    let (at, n) = (lag_at.clone(), lagged.clone());
    let proxy = spawn_with(
        upstream(&node),
        Arc::new(move |req: &Value| {
            let real = at.load(SeqCst);
            if real == 0 {
                return Action::Forward;
            }
            let head = real - lag;
            n.fetch_add(1, SeqCst);
            match req["method"].as_str().unwrap_or("") {
                "eth_blockNumber" => Action::result(req, format!("{head:#x}").into()),
                "eth_getBlockByNumber" if number(&req["params"][0]).is_none_or(|b| b > head) => {
                    Action::result(req, Value::Null)
                }
                "eth_getLogs" => Action::result(req, Value::Array(Vec::new())),
                _ => Action::Forward,
            }
        }),
    );
    let (running, _dir) = monitor(&proxy, vault, |t| t).await;
    let paused = chain.call(vault, selector("pause()")).await.unwrap();
    mine(&chain, 1).await;
    wait_caught_up(&running.store, &chain).await;
    let pause_block = paused.block_number.unwrap();
    the_pause(&incidents(&running.store).await, pause_block);

    let head = chain.provider.get_block_number().await.unwrap();
    lag_at.store(head, SeqCst);
    tokio::time::sleep(Duration::from_millis(draw(2, 1500, 4000))).await;
    lag_at.store(0, SeqCst);
    assert!(
        lagged.load(SeqCst) > 0,
        "the monitor asked the lagging node"
    );
    mine(&chain, 2).await;
    wait_caught_up(&running.store, &chain).await;
    the_pause(&incidents(&running.store).await, pause_block);
    running.stop().await;
}

#[tokio::test]
async fn an_empty_log_answer_for_a_block_whose_bloom_matches_is_read_again() {
    let (node, chain, vault) = vault_node(0).await;
    // The backend has the headers but answers `[]` for logs, 1-4 times.
    let hide = Arc::new(AtomicUsize::new(0));
    let h = hide.clone();
    let proxy = spawn_with(
        upstream(&node),
        Arc::new(move |req: &Value| {
            if req["method"] == "eth_getLogs" && h.load(SeqCst) > 0 {
                h.fetch_sub(1, SeqCst);
                return Action::result(req, Value::Array(Vec::new()));
            }
            Action::Forward
        }),
    );
    let (running, _dir) = monitor(&proxy, vault, |t| t).await;
    wait_caught_up(&running.store, &chain).await;
    hide.store(draw(3, 1, 4) as usize, SeqCst);
    let paused = chain.call(vault, selector("pause()")).await.unwrap();
    mine(&chain, 2).await;
    wait_caught_up(&running.store, &chain).await;
    assert_eq!(hide.load(SeqCst), 0, "the proxy hid its answers");
    the_pause(
        &incidents(&running.store).await,
        paused.block_number.unwrap(),
    );
    running.stop().await;
}

#[tokio::test]
async fn a_frozen_head_is_left_for_an_endpoint_whose_head_moves_and_no_stall_is_declared() {
    let (node, chain, vault) = vault_node(1).await;
    // From `frozen_at` on, the first endpoint's head stays there.
    let frozen_at = Arc::new(AtomicU64::new(0));
    let f = frozen_at.clone();
    let frozen = spawn_with(
        upstream(&node),
        Arc::new(move |req: &Value| {
            let head = f.load(SeqCst);
            if head == 0 {
                return Action::Forward;
            }
            match req["method"].as_str().unwrap_or("") {
                "eth_blockNumber" => Action::result(req, format!("{head:#x}").into()),
                "eth_getBlockByNumber" if number(&req["params"][0]).is_none_or(|b| b > head) => {
                    Action::result(req, Value::Null)
                }
                _ => Action::Forward,
            }
        }),
    );
    let entries = format!("\"{frozen}\", \"{}\"", node.endpoint());
    let list = rpc_list(&frozen, &entries);
    let edit = move |text: String| {
        list(text).replace(
            "poll_interval_ms = 50",
            "poll_interval_ms = 50\nstall_after_seconds = 4",
        )
    };
    let (running, _dir) = monitor(&frozen, vault, edit).await;
    wait_caught_up(&running.store, &chain).await;
    frozen_at.store(chain.provider.get_block_number().await.unwrap(), SeqCst);
    let paused = chain.call(vault, selector("pause()")).await.unwrap();
    let pause_block = paused.block_number.unwrap();
    wait_processed(&running.store, pause_block).await;
    // Past the stall limit, with the first endpoint still frozen.
    tokio::time::sleep(Duration::from_secs(5)).await;
    wait_caught_up(&running.store, &chain).await;
    the_pause(&incidents(&running.store).await, pause_block);
    assert!(
        running.status.unready_chains().is_empty(),
        "ready while another endpoint's head moves: {:?}",
        running.status.unready_chains()
    );
    running.stop().await;
}

#[tokio::test]
async fn rate_limits_with_retry_after_slow_the_monitor_down_but_miss_nothing() {
    let (node, chain, vault) = vault_node(0).await;
    // Every second (or third) request: HTTP 429 with Retry-After: 1.
    let every = draw(4, 2, 3) as usize;
    let count = Arc::new(AtomicUsize::new(0));
    let limited = Arc::new(AtomicBool::new(false));
    let (c, on) = (count.clone(), limited.clone());
    let proxy = spawn_with(
        upstream(&node),
        Arc::new(move |_req: &Value| {
            if on.load(SeqCst) && c.fetch_add(1, SeqCst) % every == every - 1 {
                return Action::Status {
                    code: 429,
                    headers: vec![("retry-after".into(), "1".into())],
                    body: b"rate limited".to_vec(),
                };
            }
            Action::Forward
        }),
    );
    let (running, _dir) = monitor(&proxy, vault, |t| t).await;
    wait_caught_up(&running.store, &chain).await;
    limited.store(true, SeqCst);
    let paused = chain.call(vault, selector("pause()")).await.unwrap();
    mine(&chain, 2).await;
    wait_caught_up(&running.store, &chain).await;
    assert!(
        count.load(SeqCst) > 2,
        "requests went through the rate limiter"
    );
    the_pause(
        &incidents(&running.store).await,
        paused.block_number.unwrap(),
    );
    running.stop().await;
}

#[tokio::test]
async fn a_provider_range_cap_is_split_by_the_live_follower() {
    let (node, chain, vault) = vault_node(0).await;
    mine_blocks(&chain, draw(5, 250, 350)).await;
    let paused = chain.call(vault, selector("pause()")).await.unwrap();
    mine_blocks(&chain, 300).await;
    // A real provider's wording for its cap of N blocks per eth_getLogs.
    let cap = draw(6, 50, 150);
    let refused = Arc::new(AtomicUsize::new(0));
    let r = refused.clone();
    let proxy = spawn_with(
        upstream(&node),
        Arc::new(move |req: &Value| {
            let filter = &req["params"][0];
            let span = number(&filter["toBlock"])
                .zip(number(&filter["fromBlock"]))
                .map(|(to, from)| to - from + 1);
            if req["method"] == "eth_getLogs" && span.is_some_and(|s| s > cap) {
                r.fetch_add(1, SeqCst);
                let text = format!("eth_getLogs is limited to a {cap} range");
                return Action::rpc_error(req, -32614, &text);
            }
            Action::Forward
        }),
    );
    let (running, _dir) = monitor(&proxy, vault, |t| t).await;
    wait_caught_up(&running.store, &chain).await;
    assert!(refused.load(SeqCst) > 0, "the cap was hit");
    the_pause(
        &incidents(&running.store).await,
        paused.block_number.unwrap(),
    );
    running.stop().await;
}

#[tokio::test]
async fn a_fallback_endpoint_on_another_chain_is_marked_broken_and_following_goes_on() {
    let (node, chain, vault) = vault_node(0).await;
    let other = spawn_with(
        upstream(&node),
        Arc::new(|req: &Value| match req["method"].as_str() {
            Some("eth_chainId") => Action::result(req, "0x5".into()),
            _ => Action::Forward,
        }),
    );
    let direct = node.endpoint();
    let entries = format!("\"{direct}\", \"{other}\"");
    let (running, _dir) = monitor(&direct, vault, rpc_list(&direct, &entries)).await;
    pause_is_recorded(&chain, vault, &running, 1).await;
    // The standby is sampled within a second or so; its chain id is read then.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let problems = running.status.unready_chains();
        if problems
            .iter()
            .any(|(_, why)| why.contains("serves chain id 5"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broken endpoint is a /readyz problem: {problems:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.stop().await;
}

/// Replaces the newest `depth` blocks (anvil_reorg): the new branch's first
/// block holds a transfer of `depth` wei, so every block of it differs from
/// the old one (and from an earlier reorg's).
async fn reorg(
    chain: &haltwatch::demo::Chain,
    node: &alloy::node_bindings::AnvilInstance,
    depth: u64,
) {
    let head = chain.provider.get_block_number().await.unwrap();
    let old = block_hash(chain, head + 1 - depth).await;
    let transfer = serde_json::json!({
        "from": node.addresses()[1], "to": node.addresses()[2], "value": format!("{depth:#x}")
    });
    let _: Value = chain
        .provider
        .raw_request("anvil_reorg".into(), (depth, vec![(transfer, 0u64)]))
        .await
        .expect("anvil_reorg");
    assert_ne!(
        block_hash(chain, head + 1 - depth).await,
        old,
        "block {} was replaced",
        head + 1 - depth
    );
}

#[tokio::test]
async fn after_a_catch_up_a_reorg_of_depth_d_reverts_exactly_d_blocks() {
    let (node, chain, vault) = vault_node(0).await;
    let (running, dir) = monitor(&node.endpoint(), vault, |t| t).await;
    wait_caught_up(&running.store, &chain).await;
    running.stop().await;
    // While the monitor is down: 100 blocks, the pause, 20 more. The restart
    // catches up in one range; a window holding only its two ends would
    // take the range's first block for the ancestor of any reorg at the
    // head, and retract the pause with the rest.
    mine_blocks(&chain, 100).await;
    let paused = chain.call(vault, selector("pause()")).await.unwrap();
    mine_blocks(&chain, 20).await;
    let running = start(&dir.path().join("haltwatch.toml")).await;
    wait_caught_up(&running.store, &chain).await;
    let pause_block = paused.block_number.unwrap();
    for depth in [1, 2, 5] {
        reorg(&chain, &node, depth).await;
        mine(&chain, 1).await;
        wait_caught_up(&running.store, &chain).await;
        let window = running.store.window(CHAIN_ID).await.unwrap();
        let tip = window.last().unwrap();
        assert_eq!(
            tip.hash,
            block_hash(&chain, tip.number).await,
            "on the new branch"
        );
        the_pause(&incidents(&running.store).await, pause_block);
    }
    running.stop().await;
}

#[tokio::test]
async fn a_reorg_deeper_than_the_window_is_repaired_and_recorded_as_a_gap() {
    let (node, chain, vault) = vault_node(0).await;
    let smtp = SmtpServer::start(&[]);
    let (running, _dir) = monitor(&node.endpoint(), vault, with_email(smtp.port)).await;
    let paused = chain.call(vault, selector("pause()")).await.unwrap();
    mine_blocks(&chain, 140).await;
    wait_caught_up(&running.store, &chain).await;
    the_pause(
        &incidents(&running.store).await,
        paused.block_number.unwrap(),
    );

    // 141 blocks, the pause's among them, replaced by empty ones.
    reorg(&chain, &node, 141).await;
    mine(&chain, 1).await;
    wait_caught_up(&running.store, &chain).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = incidents(&running.store).await;
        if list.iter().all(|i| i.state == IncidentState::Withdrawn) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pause that is no longer on the chain is withdrawn: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gaps = running.store.gaps(0, u64::MAX / 2).await.unwrap();
    assert!(
        gaps.iter().any(|g| g.reason.contains("reorg deeper than")),
        "the deep reorg is on record: {gaps:?}"
    );
    assert!(
        running.status.unready_chains().is_empty(),
        "ready again once the re-read passed the old checkpoint"
    );
    // Opened, the deep reorg's notice, withdrawn: in some order.
    let mails = smtp.wait_mails(3).await;
    let notice = mails
        .iter()
        .find(|m| m.subject().contains("[DEEP REORG] anvil"))
        .unwrap_or_else(|| {
            panic!(
                "a notice among {:?}",
                mails
                    .iter()
                    .map(|m| m.subject().to_string())
                    .collect::<Vec<_>>()
            )
        });
    assert!(notice.text().contains("Vault"), "{}", notice.text());
    assert!(notice.text().contains("read again"), "{}", notice.text());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        smtp.mails().len(),
        3,
        "opened, the notice, withdrawn: once each"
    );
    running.stop().await;
}

/// Mail to an SMTP server on `port`, without waiting to group.
fn with_email(port: u16) -> impl FnOnce(String) -> String {
    move |text| {
        text.replace(
            "[api]",
            &format!("{}\n[api]", common::smtp::email_section(port, "")),
        )
    }
}

/// A second node that forks `node` at its current head: from the next block
/// on, the two are different branches of one chain.
fn fork_of(
    node: &alloy::node_bindings::AnvilInstance,
    at: u64,
) -> alloy::node_bindings::AnvilInstance {
    let path = root().join(".tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    alloy::node_bindings::Anvil::at(path)
        .args([
            "--fork-url",
            &node.endpoint(),
            "--fork-block-number",
            &at.to_string(),
            "--max-persisted-states",
            "0",
        ])
        .try_spawn()
        .expect("start a forked anvil")
}

async fn wait_state(store: &haltwatch::store::Store, want: IncidentState) -> IncidentRecord {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = incidents(store).await;
        if let Some(i) = list.iter().find(|i| i.state == want) {
            return i.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {want:?} incident in 20 s: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_provider_flapping_between_branches_withdraws_then_reinstates_the_same_incident() {
    let a = anvil(0);
    let chain_a = chain(&a).await;
    let vault = chain_a.deploy(&bin("DemoPausable")).await.unwrap();
    mine(&chain_a, 2).await;
    let fork_at = chain_a.provider.get_block_number().await.unwrap();
    let b = fork_of(&a, fork_at);
    let chain_b = chain(&b).await;
    // Branch A pauses; branch B, longer, never does.
    let paused = chain_a.call(vault, selector("pause()")).await.unwrap();
    mine(&chain_a, 2).await;
    mine(&chain_b, 5).await;

    let which = Arc::new(AtomicUsize::new(0));
    let proxy = spawn_flapping(vec![upstream(&a), upstream(&b)], which.clone());
    let smtp = SmtpServer::start(&[]);
    let (running, _dir) = monitor(&proxy, vault, with_email(smtp.port)).await;
    let opened = wait_state(&running.store, IncidentState::Open).await;
    smtp.wait_mails(1).await;

    // The balancer now answers from B: the pause's block is not canonical.
    which.store(1, SeqCst);
    let withdrawn = wait_state(&running.store, IncidentState::Withdrawn).await;
    assert_eq!(withdrawn.id, opened.id);
    smtp.wait_mails(2).await;

    // And from A again, which grew past B: the same blocks, the same hashes.
    mine(&chain_a, 5).await;
    which.store(0, SeqCst);
    let back = wait_state(&running.store, IncidentState::Open).await;
    assert_eq!(
        (back.id, &back.key),
        (opened.id, &opened.key),
        "the same incident"
    );
    the_pause(
        &incidents(&running.store).await,
        paused.block_number.unwrap(),
    );
    let mails = smtp.wait_mails(3).await;
    assert!(
        mails[1].subject().contains("WITHDRAWN"),
        "{}",
        mails[1].subject()
    );
    assert!(
        mails[2].subject().contains("back"),
        "{}",
        mails[2].subject()
    );
    assert!(
        mails[2].text().contains("It is back"),
        "{}",
        mails[2].text()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        smtp.mails().len(),
        3,
        "one mail each: opened, withdrawn, back"
    );
    let report = running.store.verify_history().await.unwrap();
    assert!(
        report.problems.is_empty(),
        "the ledger covers the reinstatement: {:?}",
        report.problems
    );
    running.stop().await;
}

#[tokio::test]
async fn a_websocket_that_goes_silent_is_left_for_the_http_endpoint() {
    let (node, chain, vault) = vault_node(0).await;
    let mode = Arc::new(AtomicU8::new(WS_PASS));
    let ws = spawn_ws(
        node.ws_endpoint().trim_start_matches("ws://").to_string(),
        mode.clone(),
    );
    let entries = format!("\"{ws}\", \"{}\"", node.endpoint());
    let (running, _dir) = monitor(&ws, vault, rpc_list(&ws, &entries)).await;
    wait_caught_up(&running.store, &chain).await;
    // The connection stays open; neither heads nor answers arrive.
    mode.store(WS_SILENT, SeqCst);
    pause_is_recorded(&chain, vault, &running, 1).await;
    // Still silent while the ws endpoint is tried again (its backoff is
    // over): new connections hang too, and following goes on over http.
    tokio::time::sleep(Duration::from_secs(6)).await;
    chain.call(vault, selector("unpause()")).await.unwrap();
    mine(&chain, 1).await;
    wait_caught_up(&running.store, &chain).await;
    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, IncidentState::Resolved, "{list:#?}");
    running.stop().await;
}

#[tokio::test]
async fn max_requests_per_second_holds_the_monitor_to_the_rate() {
    let (node, chain, vault) = vault_node(0).await;
    mine_blocks(&chain, 50).await;
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let proxy = spawn_with(
        upstream(&node),
        Arc::new(move |_req: &Value| {
            c.fetch_add(1, SeqCst);
            Action::Forward
        }),
    );
    let entries = format!("{{ url = \"{proxy}\", max_requests_per_second = 4 }}");
    let started = std::time::Instant::now();
    let (running, _dir) = monitor(&proxy, vault, rpc_list(&proxy, &entries)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = count.load(SeqCst);
    let elapsed = started.elapsed().as_secs_f64();
    running.stop().await;
    // A bucket of 4 and 4 a second: never more than 4 + 4 t, polling every 50 ms.
    let bound = 4.0 + 4.0 * elapsed;
    assert!(sent > 0, "the monitor read the chain");
    assert!(
        (sent as f64) <= bound,
        "{sent} requests in {elapsed:.1} s exceed the bucket's {bound:.0}"
    );
}

#[tokio::test]
async fn a_websocket_that_drops_is_reconnected_and_nothing_from_the_gap_is_missed() {
    let (node, chain, vault) = vault_node(0).await;
    let mode = Arc::new(AtomicU8::new(WS_PASS));
    let ws = spawn_ws(
        node.ws_endpoint().trim_start_matches("ws://").to_string(),
        mode.clone(),
    );
    // The only endpoint: whatever is mined while it is down must be read
    // when it is back, not lost with the subscription.
    let (running, _dir) = monitor(&ws, vault, |t| t).await;
    wait_caught_up(&running.store, &chain).await;
    mode.store(WS_DROP, SeqCst);
    let paused = chain.call(vault, selector("pause()")).await.unwrap();
    mine(&chain, 2).await;
    tokio::time::sleep(Duration::from_millis(draw(7, 500, 2500))).await;
    mode.store(WS_PASS, SeqCst);
    wait_caught_up(&running.store, &chain).await;
    the_pause(
        &incidents(&running.store).await,
        paused.block_number.unwrap(),
    );
    running.stop().await;
}

#[tokio::test]
async fn an_endpoint_that_answers_503_hangs_or_crawls_is_left_for_the_next() {
    let (node, chain, vault) = vault_node(0).await;
    // From `broken` on, the first endpoint answers every request with one of
    // a failing load balancer's habits, drawn from the seed.
    let habit = draw(8, 0, 2);
    let broken = Arc::new(AtomicBool::new(false));
    let b = broken.clone();
    let first = spawn_with(
        upstream(&node),
        Arc::new(move |req: &Value| {
            if !b.load(SeqCst) || req["method"] == "eth_chainId" {
                return Action::Forward;
            }
            match habit {
                0 => Action::Status {
                    code: 503,
                    headers: Vec::new(),
                    body: b"upstream unavailable".to_vec(),
                },
                1 => Action::Hang,
                // Slower than the stall limit allows for: left for its latency.
                _ => Action::Delay(Duration::from_secs(3), Box::new(Action::Forward)),
            }
        }),
    );
    let entries = format!("\"{first}\", \"{}\"", node.endpoint());
    let list = rpc_list(&first, &entries);
    let edit = move |text: String| {
        list(text).replace(
            "poll_interval_ms = 50",
            "poll_interval_ms = 50\nstall_after_seconds = 8",
        )
    };
    let (running, _dir) = monitor(&first, vault, edit).await;
    wait_caught_up(&running.store, &chain).await;
    broken.store(true, SeqCst);
    pause_is_recorded(&chain, vault, &running, 1).await;
    running.stop().await;
}

#[tokio::test]
async fn a_stall_closes_even_when_the_first_header_reads_after_it_fail() {
    let (node, chain, vault) = vault_node(0).await;
    // After the stall, the first 1-3 header reads are answered 503.
    let fail = Arc::new(AtomicUsize::new(0));
    let f = fail.clone();
    let proxy = spawn_with(
        upstream(&node),
        Arc::new(move |req: &Value| {
            let headers =
                req["method"] == "eth_getBlockByNumber" || req["method"] == "eth_getBlockByHash";
            if headers && f.load(SeqCst) > 0 {
                f.fetch_sub(1, SeqCst);
                return Action::Status {
                    code: 503,
                    headers: Vec::new(),
                    body: b"upstream unavailable".to_vec(),
                };
            }
            Action::Forward
        }),
    );
    let _: Value = chain
        .provider
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let edit = |text: String| {
        text.replace(
            "poll_interval_ms = 50",
            "poll_interval_ms = 50\nstall_after_seconds = 1",
        )
    };
    let (running, _dir) = monitor(&proxy, vault, edit).await;
    let stalled = wait_state(&running.store, IncidentState::Open).await;
    assert_eq!(stalled.scopes, ["chain anvil"]);
    fail.store(draw(9, 1, 3) as usize, SeqCst);
    mine(&chain, 1).await;
    let resolved = wait_state(&running.store, IncidentState::Resolved).await;
    assert_eq!(resolved.id, stalled.id, "the stall itself closed");
    assert_eq!(fail.load(SeqCst), 0, "the header reads did fail");
    running.stop().await;
}
