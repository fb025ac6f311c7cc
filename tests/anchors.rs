//! On-chain anchors of the history head, on a real anvil chain: written at
//! each stop with the right calldata from the operator's key to itself,
//! read back by `verify --history --anchors`, which fails once the history
//! is rewritten after an anchor, an anchor row is edited or one is deleted.

mod common;

use std::process::{Command, Output};

use alloy::consensus::Transaction as _;
use alloy::providers::Provider;
use common::*;
use haltwatch::demo::selector;

const KEY_ENV: &str = "HALTWATCH_TEST_ANCHOR_KEY";

fn haltwatch(config: &std::path::Path, key: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_haltwatch"));
    c.args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn");
    match key {
        Some(k) => c.env(KEY_ENV, k),
        None => c.env_remove(KEY_ENV),
    };
    c.output().expect("run haltwatch")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// The monitor's store (the test process has no anchoring key, so it reads
/// only `[store]` of the config).
async fn store(w: &VaultChain) -> haltwatch::Store {
    let config = haltwatch::config::load_store(&w.path).unwrap();
    haltwatch::Store::open(&config).await.unwrap()
}

/// Runs the monitor with the anchoring key until `call` is processed, then
/// stops it with SIGTERM (the stop anchors the head).
async fn run_once(w: &VaultChain, key: &str, call: &str) {
    let mut monitor = Stopped(
        Command::new(env!("CARGO_BIN_EXE_haltwatch"))
            .args(["run", "--config"])
            .arg(&w.path)
            .env("RUST_LOG", "warn")
            .env(KEY_ENV, key)
            .spawn()
            .unwrap(),
    );
    w.chain.call(w.vault, selector(call)).await.unwrap();
    wait_caught_up(&store(w).await, &w.chain).await;
    let _ = Command::new("kill")
        .args(["-TERM", &monitor.0.id().to_string()])
        .status();
    assert!(monitor.0.wait().unwrap().success());
}

/// A monitor process killed if the test fails while it runs.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchors_are_written_to_the_chain_and_catch_a_history_rewritten_after_them() {
    let w = vault_chain(
        false,
        &format!("[anchor]\nchain = \"anvil\"\nkey_env = \"{KEY_ENV}\"\nevery_minutes = 60\n"),
    )
    .await;
    let signer: alloy::signers::local::PrivateKeySigner = w.node.keys()[2].clone().into();
    let key = alloy::primitives::hex::encode(w.node.keys()[2].to_bytes());

    // Without the key, check-config says what is missing.
    let out = haltwatch(&w.path, None, &["check-config"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "anchor.key_env: environment variable `{KEY_ENV}` is not set"
        )),
        "{}",
        text(&out)
    );
    let out = haltwatch(&w.path, Some("0xnot-a-key"), &["check-config"]);
    assert!(
        text(&out).contains("does not hold a private key"),
        "{}",
        text(&out)
    );

    // Two runs, each stopped after a transition: two anchors.
    run_once(&w, &key, "pause()").await;
    run_once(&w, &key, "unpause()").await;
    let store = store(&w).await;
    let anchors = store.anchors().await.unwrap();
    assert_eq!(anchors.len(), 2, "{anchors:#?}");
    let (records, head) = store.ledger_head().await.unwrap();
    assert_eq!((anchors[1].record, anchors[1].head), (records, head));
    assert!(anchors[0].record < anchors[1].record);
    for a in &anchors {
        let tx = w
            .chain
            .provider
            .get_transaction_by_hash(a.tx_hash)
            .await
            .unwrap()
            .expect("the anchor is on the chain");
        assert_eq!(tx.inner.signer(), signer.address());
        assert_eq!(tx.to(), Some(signer.address()), "sent to itself");
        assert_eq!(
            String::from_utf8(tx.input().to_vec()).unwrap(),
            format!("haltwatch:v1:{}:{}", a.record, a.head)
        );
        assert!(a.block_number.is_some(), "its receipt was seen");
    }
    let verify = |key: Option<&str>| {
        let out = haltwatch(&w.path, key, &["verify", "--history", "--anchors"]);
        (out.status.success(), text(&out))
    };
    let (ok, out) = verify(Some(&key));
    assert!(ok && out.contains("2 anchor(s)"), "{out}");
    let db = w.dir.path().join("history.db");

    // An edited anchor row no longer matches its transaction.
    sql_on(&db, "UPDATE anchors SET record = record + 1 WHERE id = 1").await;
    let (ok, out) = verify(Some(&key));
    assert!(!ok && out.contains("does not carry this anchor"), "{out}");
    sql_on(&db, "UPDATE anchors SET record = record - 1 WHERE id = 1").await;

    // A deleted anchor: the key's nonce says so.
    sql_on(
        &db,
        "CREATE TABLE kept AS SELECT * FROM anchors WHERE id = (SELECT MAX(id) FROM anchors)",
    )
    .await;
    sql_on(&db, "DELETE FROM anchors WHERE id = (SELECT id FROM kept)").await;
    let (ok, out) = verify(Some(&key));
    assert!(!ok && out.contains("anchors were deleted"), "{out}");
    sql_on(&db, "INSERT INTO anchors SELECT * FROM kept").await;
    sql_on(&db, "DROP TABLE kept").await;
    assert!(verify(Some(&key)).0);

    // Rewritten after the first anchor: the resolution taken out, with its
    // ledger records and the incident's row made to match. The ledger alone
    // is a consistent prefix; the second anchor no longer holds.
    let first = anchors[0].record;
    for statement in [
        format!("DELETE FROM ledger WHERE seq > {first}"),
        "DELETE FROM transitions WHERE kind = 'resolved'".to_string(),
        "DELETE FROM evidence WHERE id NOT IN (SELECT ref_id FROM ledger WHERE kind = 'evidence')"
            .to_string(),
        "UPDATE incidents SET state = 'open', ended_at = NULL, end_block = NULL".to_string(),
    ] {
        sql_on(&db, &statement).await;
    }
    let out = haltwatch(&w.path, Some(&key), &["verify", "--history"]);
    assert!(
        out.status.success(),
        "the prefix alone passes: {}",
        text(&out)
    );
    let (ok, out) = verify(Some(&key));
    assert!(
        !ok && out.contains("rewritten after this anchor"),
        "the anchor catches it: {out}"
    );
    // An auditor without the key drops [anchor] from their copy.
    let copy = w.dir.path().join("auditor.toml");
    let text_without = std::fs::read_to_string(&w.path)
        .unwrap()
        .replace("[anchor]", "[no_anchor_here]");
    let text_without = text_without
        .split("[no_anchor_here]")
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&copy, text_without).unwrap();
    let out = haltwatch(&copy, None, &["verify", "--history", "--anchors"]);
    assert!(
        !out.status.success() && text(&out).contains("rewritten after this anchor"),
        "{}",
        text(&out)
    );
}

/// An anchor chain that cannot be reached: the attempt fails, is counted in
/// `/metrics`, and the pipeline goes on recording; the stop is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_anchor_chain_is_counted_and_holds_nothing_up() {
    let w = vault_chain(false, "").await;
    let key = alloy::primitives::hex::encode(w.node.keys()[2].to_bytes());
    run_once(&w, &key, "pause()").await; // a history to anchor
    let api_port = common::smtp::free_port();
    let dead = common::smtp::free_port();
    let text = std::fs::read_to_string(&w.path)
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{api_port}"));
    std::fs::write(
        &w.path,
        format!(
            "{text}\n[[chains]]\nname = \"anchors\"\nchain_id = 1\nrpc = [\"http://127.0.0.1:{dead}\"]\n\
             [anchor]\nchain = \"anchors\"\nkey_env = \"{KEY_ENV}\"\nevery_minutes = 60\n"
        ),
    )
    .unwrap();
    let mut monitor = Stopped(
        Command::new(env!("CARGO_BIN_EXE_haltwatch"))
            .args(["run", "--config"])
            .arg(&w.path)
            .env("RUST_LOG", "error")
            .env(KEY_ENV, &key)
            .spawn()
            .unwrap(),
    );
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], api_port));
    let unpaused = w.chain.call(w.vault, selector("unpause()")).await.unwrap();
    let store = store(&w).await;
    wait_caught_up(&store, &w.chain).await;
    let list = incidents(&store).await;
    assert_eq!(list[0].end_block, unpaused.block_number, "still recording");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = tokio::task::spawn_blocking(move || common::http::get(api, "/metrics", &[]))
            .await
            .unwrap();
        let failed = metrics
            .body
            .lines()
            .find(|l| l.starts_with("haltwatch_anchors_total{outcome=\"failed\"}"))
            .map(str::to_string);
        if failed.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed anchor counted: {}",
            metrics.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(store.anchors().await.unwrap().is_empty());
    let started = std::time::Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &monitor.0.id().to_string()])
        .status();
    assert!(monitor.0.wait().unwrap().success());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
