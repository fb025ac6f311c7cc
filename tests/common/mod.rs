//! Test harness: real anvil nodes, real SQLite files, the real pipeline.
#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::node_bindings::AnvilInstance;
use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use haltwatch::demo::{Chain, spawn_anvil};
use haltwatch::store::{IncidentFilter, IncidentRecord, Store};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const CHAIN_ID: u64 = 31337;

/// Starts anvil; `block_time_secs = 0` is automine (one block per transaction).
/// Fails (never skips) with the install instructions when anvil is missing.
pub fn anvil(block_time_secs: u64) -> AnvilInstance {
    spawn_anvil(block_time_secs).unwrap_or_else(|e| panic!("{e}"))
}

pub async fn chain(anvil: &AnvilInstance) -> Chain {
    Chain::connect(anvil).await.expect("connect to anvil")
}

/// Creation code of a contract compiled by `contracts/build.sh`.
pub fn bin(contract: &str) -> String {
    let path = root().join("contracts/out").join(format!("{contract}.bin"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Absolute path of an ABI in `abis/`, for configs written in temp folders.
pub fn abi(name: &str) -> String {
    root().join("abis").join(name).display().to_string()
}

/// A config with one anvil chain (polled every 50 ms) and the given protocols.
pub fn config_text(rpc: &str, protocols: &str) -> String {
    format!(
        r#"
[store]
url = "sqlite://history.db"

[api]
listen = "127.0.0.1:0"

[[chains]]
name = "anvil"
chain_id = {CHAIN_ID}
rpc = ["{rpc}"]
poll_interval_ms = 50
start_block = 0
explorer_tx_url = "https://explorer.example/tx/{{hash}}"

{protocols}
"#
    )
}

/// A protocol with one contract and a preset.
pub fn protocol(
    name: &str,
    contract: &str,
    address: Address,
    abi_file: &str,
    preset: &str,
) -> String {
    format!(
        r#"
[[protocols]]
name = "{name}"
chain = "anvil"
responders = ["oncall@example.org"]
  [[protocols.contracts]]
  name = "{contract}"
  address = "{address}"
  abi = "{abi}"
  preset = "{preset}"
"#,
        abi = abi(abi_file)
    )
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("haltwatch.toml");
    std::fs::write(&path, with_store(dir, text)).expect("write config");
    path
}

/// True when the store-touching tests run on PostgreSQL
/// (`HALTWATCH_TEST_STORE=postgres`, as `scripts/test.sh` runs them a
/// second time); SQLite otherwise.
pub fn on_postgres() -> bool {
    match std::env::var("HALTWATCH_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("HALTWATCH_TEST_STORE={other}: expected `sqlite` or `postgres`"),
    }
}

/// `text` with every `url = "sqlite://NAME"` in it on the backend under
/// test: as it is on SQLite; on PostgreSQL, a database of the shared
/// cluster for this folder and NAME.
pub fn with_store(dir: &Path, text: &str) -> String {
    if !on_postgres() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let name = line
            .trim()
            .strip_prefix("url = \"sqlite://")
            .and_then(|rest| rest.strip_suffix('"'));
        match name {
            Some(name) => {
                let url = postgres::database(&dir.join(name));
                out.push_str(&format!("url = \"{url}\"\n"));
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Runs one SQL statement on the history `config` names, as someone with
/// access to the database would (tampering tests): the SQLite file, or the
/// PostgreSQL database.
pub async fn sql_on_store(config: &Path, statement: &str) {
    let store = haltwatch::config::load_store(config).expect("load the store config");
    match &store.backend {
        haltwatch::config::StoreBackend::Sqlite(path) => sql_on(path, statement).await,
        haltwatch::config::StoreBackend::Postgres(pg) => {
            let (url, _) = pg.credentials().expect("the store's URL");
            let pool = sqlx::PgPool::connect(&url).await.expect("connect");
            sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
            pool.close().await;
        }
    }
}

/// The pipeline running in this process, stopped through its shutdown future.
pub struct Running {
    pub store: Store,
    pub status: haltwatch::status::Status,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), haltwatch::pipeline::PipelineError>>,
}

impl Running {
    /// Where the HTTP surface listens (waits for the bind, at most 10 s).
    pub async fn api(&self) -> std::net::SocketAddr {
        for _ in 0..400 {
            if let Some(a) = self.status.api_addr() {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the HTTP surface did not bind in 10 s")
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.handle)
            .await
            .expect("pipeline stops within 10 s")
            .expect("pipeline task")
            .expect("pipeline ends cleanly");
    }
}

/// Logs to the test's output when `RUST_LOG` is set (e.g. `RUST_LOG=haltwatch=debug`).
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub async fn start(config_path: &Path) -> Running {
    init_tracing();
    let config = haltwatch::config::load(config_path).unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(&config.store).await.expect("open store");
    let (tx, rx) = oneshot::channel::<()>();
    let status = haltwatch::status::Status::default();
    let handle = tokio::spawn(haltwatch::pipeline::run_with(
        config,
        store.clone(),
        status.clone(),
        async {
            let _ = rx.await;
        },
    ));
    Running {
        store,
        status,
        stop: Some(tx),
        handle,
    }
}

/// Waits until the store's checkpoint has reached `block` (at most 20 s).
pub async fn wait_processed(store: &Store, block: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let cp = store
            .window(CHAIN_ID)
            .await
            .expect("window")
            .last()
            .map(|b| b.number);
        if cp.is_some_and(|n| n >= block) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "checkpoint {cp:?} did not reach block {block} in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the pipeline has processed the current head.
pub async fn wait_caught_up(store: &Store, chain: &Chain) {
    let head = chain.provider.get_block_number().await.expect("head");
    wait_processed(store, head).await;
}

/// Every incident (withdrawn ones too), oldest first.
pub async fn incidents(store: &Store) -> Vec<IncidentRecord> {
    let mut list = store
        .list(&IncidentFilter {
            include_withdrawn: true,
            ..Default::default()
        })
        .await
        .expect("list");
    list.reverse();
    list
}

/// Sets the timestamp of the next block (automine mode).
pub async fn next_block_time(chain: &Chain, timestamp: u64) {
    let _: serde_json::Value = chain
        .provider
        .raw_request("evm_setNextBlockTimestamp".into(), (timestamp,))
        .await
        .expect("evm_setNextBlockTimestamp");
}

pub async fn mine(chain: &Chain, blocks: u64) {
    for _ in 0..blocks {
        let _: serde_json::Value = chain
            .provider
            .raw_request("evm_mine".into(), ())
            .await
            .expect("evm_mine");
    }
}

/// Mines `n` empty blocks in one request (`anvil_mine`).
pub async fn mine_blocks(chain: &Chain, n: u64) {
    let _: serde_json::Value = chain
        .provider
        .raw_request("anvil_mine".into(), (alloy::primitives::U256::from(n),))
        .await
        .expect("anvil_mine");
}

pub async fn block_hash(chain: &Chain, number: u64) -> B256 {
    chain
        .provider
        .get_block_by_number(number.into())
        .await
        .expect("get block")
        .expect("block exists")
        .header
        .hash
}

/// `haltwatch run --config CONFIG` as its own process (warnings on stderr).
pub fn spawn_monitor(config: &Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_haltwatch"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start haltwatch run")
}

/// Runs one SQL statement on the SQLite file `db`, as someone with access
/// to the file would (tampering tests).
pub async fn sql_on(db: &Path, statement: &str) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the SQLite file");
    sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    pool.close().await;
}

pub mod aave;
pub mod smtp;

/// anvil (automine) with the demo vault deployed, and a config in a temp
/// folder that monitors it as protocol "Vault" (over ws or http), with
/// `extra` config appended.
pub struct VaultChain {
    pub node: AnvilInstance,
    pub chain: Chain,
    pub vault: Address,
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl VaultChain {
    /// The store the config names: the SQLite file a monitor process writes.
    pub async fn store(&self) -> Store {
        let config = haltwatch::config::load(&self.path).expect("load the config");
        Store::open(&config.store).await.expect("open the store")
    }
}

pub async fn vault_chain(ws: bool, extra: &str) -> VaultChain {
    let node = anvil(0);
    let chain = chain(&node).await;
    let vault = chain
        .deploy(&bin("DemoPausable"))
        .await
        .expect("deploy the vault");
    let dir = tempfile::tempdir().expect("temp dir");
    let rpc = if ws {
        node.ws_endpoint()
    } else {
        node.endpoint()
    };
    let text = config_text(
        &rpc,
        &format!(
            "{}\n{extra}",
            protocol("Vault", "vault", vault, "oz-pausable.json", "oz-pausable")
        ),
    );
    let path = write_config(dir.path(), &text);
    VaultChain {
        node,
        chain,
        vault,
        dir,
        path,
    }
}
pub mod http;
pub mod postgres;
pub mod proxy;
