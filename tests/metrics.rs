//! Telemetry is counted: a recorder installed for this test binary sees the
//! counters the pipeline and the mail sender emit.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::smtp::SmtpServer;
use common::*;
use haltwatch::demo::selector;
use haltwatch::telemetry;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Sums every counter by name, across labels.
#[derive(Default)]
struct Counting(Mutex<HashMap<String, Arc<AtomicU64>>>);

impl Counting {
    fn get(&self, name: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }
}

impl Recorder for Counting {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let c = self
            .0
            .lock()
            .unwrap()
            .entry(key.name().to_string())
            .or_default()
            .clone();
        Counter::from_arc(c)
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn recorder() -> &'static Counting {
    static R: OnceLock<&'static Counting> = OnceLock::new();
    R.get_or_init(|| {
        let r: &'static Counting = Box::leak(Box::default());
        metrics::set_global_recorder(r).expect("the only recorder of this test binary");
        r
    })
}

#[tokio::test]
async fn a_permanent_smtp_rejection_is_counted_and_so_is_the_pipeline_s_work() {
    let counts = recorder();
    let smtp = SmtpServer::start(&["--always", "550"]);
    let node = anvil(0);
    let chain = chain(&node).await;
    let vault = chain.deploy(&bin("DemoPausable")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let email = format!(
        "[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\nfrom = \"alerts@haltwatch.test\"\ngroup_wait_seconds = 0\n",
        smtp.port
    );
    let text = config_text(
        &node.endpoint(),
        &format!(
            "{}\n{email}",
            protocol("Vault", "vault", vault, "oz-pausable.json", "oz-pausable")
        ),
    );
    let running = start(&write_config(dir.path(), &text)).await;
    let r = chain.call(vault, selector("pause()")).await.unwrap();
    wait_processed(&running.store, r.block_number.unwrap()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while counts.get(telemetry::EMAILS_FAILED_TOTAL) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed mail counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await;
    assert_eq!(counts.get(telemetry::EMAILS_FAILED_TOTAL), 1);
    assert_eq!(counts.get(telemetry::EMAILS_SENT_TOTAL), 0);
    assert_eq!(counts.get(telemetry::TRANSITIONS_TOTAL), 1);
    assert_eq!(counts.get(telemetry::LOGS_DECODED_TOTAL), 1);
    assert!(counts.get(telemetry::BLOCKS_PROCESSED_TOTAL) >= r.block_number.unwrap());
}

/// `[heartbeat]`: the URL is pinged while the chain is followed and fresh,
/// withheld (and counted so) while its head stands still, and pinged again
/// once blocks come. The URL, a credential, comes from the environment.
#[tokio::test]
async fn the_heartbeat_pings_while_the_chain_is_fresh_and_stops_when_it_is_not() {
    use common::http::PingServer;
    let recorder = recorder();
    let server = PingServer::start().await;
    // SAFETY: set once, before the config that names it is read.
    unsafe {
        std::env::set_var(
            "HALTWATCH_TEST_HEARTBEAT_URL",
            format!("http://{}/ping/0d6e-secret", server.addr),
        )
    };
    let node = anvil(0); // automine: the head moves only when we mine
    let chain = chain(&node).await;
    let vault = chain.deploy(&bin("DemoPausable")).await.unwrap();
    let text = config_text(
        &node.endpoint(),
        &protocol("Vault", "vault", vault, "oz-pausable.json", "oz-pausable"),
    )
    .replace(
        "start_block = 0",
        "start_block = 0\nstall_after_seconds = 2",
    ) + "\n[heartbeat]\nurl_env = \"HALTWATCH_TEST_HEARTBEAT_URL\"\nevery_seconds = 1\n";
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &text);
    let running = start(&path).await;

    async fn wait_for(what: &str, ok: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !ok() {
            assert!(tokio::time::Instant::now() < deadline, "{what} in 15 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    wait_for("a first ping", || server.count() >= 1).await;
    assert_eq!(
        server.paths.lock().unwrap()[0],
        "GET /ping/0d6e-secret",
        "a plain GET of the URL"
    );
    // No block for longer than stall_after_seconds: the chain is not fresh.
    wait_for("the chain to go stale", || {
        !running.status.unready_chains().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await; // a ping in flight lands
    let quiet = server.count();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(
        server.count(),
        quiet,
        "no ping while the chain stands still"
    );
    assert!(
        recorder.get(telemetry::HEARTBEATS_TOTAL) > server.count() as u64,
        "withheld pings are counted"
    );

    // Blocks again: pings again.
    for _ in 0..20 {
        mine(&chain, 1).await;
        if server.count() > quiet {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(server.count() > quiet, "pings resume with the blocks");
    running.stop().await;
}
