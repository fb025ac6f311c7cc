//! The HTTP surface over a long history: the status page, the uptime API
//! and one page of the incident list, with 5,000 incidents (10,000 blocks
//! that alternately pause and unpause a vault, one every ten minutes over
//! the last 70 days) in a SQLite file. Each request goes through the real
//! server (`api::serve`) over loopback.
//!
//! `cargo bench --bench pages`

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use haltwatch::api::{AppState, router, serve::serve};
use haltwatch::status::Status;
use haltwatch::store::{Batch, Rows, Store, StoredUpdate};

#[path = "common/history.rs"]
mod history;
#[allow(dead_code)]
#[path = "../tests/common/http.rs"]
mod http;
use history::{block_refs, runtime, updates};

const INCIDENTS: u64 = 5_000;

fn main() {
    divan::main();
}

/// A monitor's HTTP surface over the seeded history (built once).
fn server() -> SocketAddr {
    static SERVER: OnceLock<(tempfile::TempDir, SocketAddr)> = OnceLock::new();
    SERVER.get_or_init(seed).1
}

fn seed() -> (tempfile::TempDir, SocketAddr) {
    let dir = tempfile::tempdir().expect("temp dir");
    let abi = concat!(env!("CARGO_MANIFEST_DIR"), "/abis/oz-pausable.json");
    let config = format!(
        r#"
[store]
url = "sqlite://history.db"

[[chains]]
name = "anvil"
chain_id = 31337
rpc = ["http://127.0.0.1:8545"]

[[protocols]]
name = "Vault"
chain = "anvil"
  [[protocols.contracts]]
  name = "vault"
  address = "0x5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f"
  abi = "{abi}"
  preset = "oz-pausable"
"#
    );
    let path = dir.path().join("haltwatch.toml");
    std::fs::write(&path, config).expect("write the config");
    let config = Arc::new(haltwatch::config::load(&path).expect("config"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let blocks = 2 * INCIDENTS;
    let t0 = now - 70 * 86_400;
    let addr = runtime().block_on(async {
        let store = Store::open(&config.store).await.expect("store");
        let all = updates(2, blocks, |n| t0 + n * 600);
        for (i, chunk) in all.chunks(1_000).enumerate() {
            let first = 2 + (i as u64) * 1_000;
            let refs = block_refs(first, chunk.len() as u64);
            let batch = Batch {
                chain_id: 31337,
                blocks: &refs[refs.len() - 64..],
                updates: chunk
                    .iter()
                    .map(|update| StoredUpdate {
                        protocol: "Vault",
                        chain: "anvil",
                        update,
                        notify: false,
                        planned: false,
                        rows: Rows::of(update),
                    })
                    .collect(),
                trackers: Vec::new(),
                window_blocks: 64,
                observed: Some(haltwatch::store::Observed {
                    chain: "anvil",
                    from_block: first,
                    to_block: first + chunk.len() as u64 - 1,
                    first_time: t0 + first * 600,
                    last_time: t0 + (first + chunk.len() as u64 - 1) * 600,
                }),
            };
            store.commit(batch).await.expect("commit");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let addr = listener.local_addr().expect("address");
        let app = router(AppState::new(config.clone(), store, Status::default()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        std::mem::forget(stop); // serves until the process ends
        tokio::spawn(serve(listener, app, stopped));
        addr
    });
    let list = http::get(addr, "/api/v1/incidents?limit=1", &[]).json();
    assert_eq!(list["total"], INCIDENTS, "seeded history");
    (dir, addr)
}

fn get_ok(path: &str) -> usize {
    let reply = http::get(server(), path, &[]);
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    reply.body.len()
}

/// The public status page: 90-day bars and the recent incidents.
#[divan::bench(sample_count = 20)]
fn status_page() -> usize {
    get_ok("/")
}

/// Uptime figures per protocol over the last 90 days.
#[divan::bench(sample_count = 20)]
fn uptime_90_days() -> usize {
    get_ok("/api/v1/uptime?since=90d")
}

/// The newest 50 incidents of the JSON API.
#[divan::bench(sample_count = 20)]
fn incident_list_page() -> usize {
    get_ok("/api/v1/incidents?limit=50")
}
