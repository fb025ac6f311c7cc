//! A pause revert halts a contract only when that contract raised it. An
//! OpenZeppelin 5 flash-loan vault forwards calls to a receiver its caller
//! chooses; an attacker's receiver reverting with `EnforcedPause()` or
//! `"Pausable: paused"` must not open a halt, top-level or nested, however
//! the calls are read. The vault's own pause still halts.

mod common;

use std::sync::Arc;

use alloy::primitives::Address;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::sol;
use alloy::sol_types::SolCall;
use common::*;
use haltwatch::demo::{Chain, selector};
use haltwatch::model::EvidenceKind;

sol! {
    function flashLoan(address receiver, bytes data);
    function route(address target, bytes data);
}

fn loan(receiver: Address, what: &str) -> Vec<u8> {
    flashLoanCall {
        receiver,
        data: selector(what).into(),
    }
    .abi_encode()
}

fn routed(target: Address, data: Vec<u8>) -> Vec<u8> {
    routeCall {
        target,
        data: data.into(),
    }
    .abi_encode()
}

/// A protocol with one contract, the vault, and no rules: only failed calls
/// can say it is halted.
fn protocol_without_rules(name: &str, vault: Address) -> String {
    format!(
        r#"
[[protocols]]
name = "{name}"
chain = "anvil"
  [[protocols.contracts]]
  name = "vault"
  address = "{vault}"
  abi = "{abi}"
"#,
        abi = root().join("contracts/out/FlashVault.abi").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_revert_passed_on_from_an_attackers_contract_is_not_a_halt() {
    let node = anvil(0);
    let owner = chain(&node).await;
    // An account with no rights over anything, sending through the node.
    let attacker = Chain {
        provider: ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect(&node.endpoint())
            .await
            .unwrap()
            .erased(),
        from: node.addresses()[1],
    };
    let spoofed = owner.deploy(&bin("FlashVault")).await.unwrap();
    let paused = owner.deploy(&bin("FlashVault")).await.unwrap();
    let spoofer = owner.deploy(&bin("PauseSpoofer")).await.unwrap();
    let router = owner.deploy(&bin("Router")).await.unwrap();
    let start_block = node_head(&owner).await + 1;

    for what in ["spoofEnforcedPause()", "spoofPausableString()"] {
        let r = attacker.call(spoofed, loan(spoofer, what)).await.unwrap();
        assert!(!r.status(), "the vault passes the receiver's revert on");
    }
    // Nested: a router calls the vault, which passes the revert on.
    let r = attacker
        .call(
            router,
            routed(spoofed, loan(spoofer, "spoofEnforcedPause()")),
        )
        .await
        .unwrap();
    assert!(r.status(), "the router swallows the failure");

    // The other vault is really paused: its own revert, top-level and nested.
    owner.call(paused, selector("pause()")).await.unwrap();
    let top = attacker
        .call(paused, loan(spoofer, "spoofEnforcedPause()"))
        .await
        .unwrap();
    assert!(!top.status());
    let nested = attacker
        .call(
            router,
            routed(paused, loan(spoofer, "spoofEnforcedPause()")),
        )
        .await
        .unwrap();
    assert!(nested.status());
    // Far enough behind for trace_filter ranges while catching up.
    mine_blocks(&owner, 320).await;

    // (trace_calls, methods the node refuses, what decides who raised it).
    let setups: [(bool, &[&str], &str); 5] = [
        (false, &[], "trace_filter, then debug_traceTransaction"),
        (
            false,
            &["trace_filter"],
            "receipts, then debug_traceTransaction",
        ),
        (
            false,
            &["trace_filter", "debug_traceTransaction"],
            "receipts, then paused()",
        ),
        (
            true,
            &[],
            "nested calls by trace_filter, debug_traceTransaction",
        ),
        (true, &["trace_filter"], "each block's call tracer"),
    ];
    for (trace_calls, refused, how) in setups {
        let asked: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let log = asked.clone();
        let url = proxy::spawn(
            node.endpoint().trim_start_matches("http://").to_string(),
            Arc::new(move |req: &serde_json::Value| {
                let method = req["method"].as_str().unwrap_or_default();
                log.lock().unwrap().push(method.to_string());
                refused.contains(&method).then(|| {
                    serde_json::json!({
                        "jsonrpc": "2.0", "id": req["id"],
                        "error": {"code": -32601, "message": format!("the method {method} does not exist/is not available")}
                    })
                    .to_string()
                    .into_bytes()
                })
            }),
        );
        let text = config_text(
            &url,
            &format!(
                "{}\n{}",
                protocol_without_rules("Spoofed", spoofed),
                protocol_without_rules("Paused", paused)
            ),
        )
        .replace("start_block = 0", &format!("start_block = {start_block}"))
        .replace(
            "poll_interval_ms = 50",
            &format!("poll_interval_ms = 50\ntrace_calls = {trace_calls}"),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), &text);
        let running = start(&path).await;
        wait_caught_up(&running.store, &owner).await;
        let list = incidents(&running.store).await;
        running.stop().await;

        assert!(
            list.iter().all(|i| i.protocol != "Spoofed"),
            "{how}: an attacker opened a halt: {list:#?}"
        );
        let halts: Vec<_> = list.iter().filter(|i| i.protocol == "Paused").collect();
        assert_eq!(halts.len(), 1, "{how}: the real pause halts: {list:#?}");
        let mut seen: Vec<(alloy::primitives::B256, String)> = halts[0]
            .evidence
            .iter()
            .filter(|e| e.kind == EvidenceKind::FailedCall)
            .map(|e| (e.tx_hash, e.event.clone()))
            .collect();
        seen.sort();
        let mut expected = vec![(
            top.transaction_hash,
            "call reverted: EnforcedPause()".to_string(),
        )];
        if trace_calls {
            expected.push((
                nested.transaction_hash,
                "nested call reverted: EnforcedPause()".to_string(),
            ));
        }
        expected.sort();
        assert_eq!(seen, expected, "{how}");
        let asked = asked.lock().unwrap().clone();
        let who = |m: &str| asked.iter().any(|a| a == m);
        if refused.contains(&"debug_traceTransaction") {
            assert!(who("eth_call"), "{how}: paused() read: {asked:?}");
        } else if !(trace_calls && refused.contains(&"trace_filter")) {
            assert!(who("debug_traceTransaction"), "{how}: {asked:?}");
        }
    }
}

async fn node_head(chain: &Chain) -> u64 {
    chain.provider.get_block_number().await.unwrap()
}
