//! Faults a real node will not produce on demand: a proxy in front of anvil
//! answers `eth_getLogs` with garbage. The block is retried, never skipped.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use haltwatch::demo::selector;
use haltwatch::store::IncidentState;

#[tokio::test]
async fn an_unparseable_rpc_answer_is_retried_and_the_block_is_not_skipped() {
    let node = anvil(0);
    let chain = chain(&node).await;
    let vault = chain.deploy(&bin("DemoPausable")).await.unwrap();
    let corrupt = Arc::new(AtomicUsize::new(0));
    let corrupted = Arc::new(AtomicUsize::new(0));
    let upstream = node.endpoint().trim_start_matches("http://").to_string();
    let (c, n) = (corrupt.clone(), corrupted.clone());
    let proxy = common::proxy::spawn(
        upstream,
        Arc::new(move |req: &serde_json::Value| {
            if req["method"] != "eth_getLogs" || c.load(Ordering::SeqCst) == 0 {
                return None;
            }
            c.fetch_sub(1, Ordering::SeqCst);
            n.fetch_add(1, Ordering::SeqCst);
            Some(b"{\"jsonrpc\":\"2.0\",\"id\":".to_vec())
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config_text(
            &proxy,
            &protocol("Vault", "vault", vault, "oz-pausable.json", "oz-pausable"),
        ),
    );
    let running = start(&path).await;
    wait_caught_up(&running.store, &chain).await;

    // Every log read after the pause is mined fails three times.
    corrupt.store(3, Ordering::SeqCst);
    let paused = chain.call(vault, selector("pause()")).await.unwrap();
    mine(&chain, 2).await;
    wait_caught_up(&running.store, &chain).await;

    assert_eq!(
        corrupted.load(Ordering::SeqCst),
        3,
        "the proxy did corrupt three answers"
    );
    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1, "the pause block was read again, not skipped");
    assert_eq!(list[0].state, IncidentState::Open);
    assert_eq!(list[0].start_block, paused.block_number.unwrap());
    running.stop().await;
}
