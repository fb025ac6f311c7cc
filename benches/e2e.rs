//! End-to-end benchmark against local anvil nodes:
//!
//! ```sh
//! scripts/setup.sh && cargo bench --bench e2e            # every scenario, ~5 min after the build
//! cargo bench --bench e2e -- latency catchup             # some of them
//! cargo bench --bench e2e -- soak --soak-seconds 3600    # the one-hour memory soak
//! cargo bench --bench e2e -- catchup --store postgres    # the history on PostgreSQL
//! ```
//!
//! Prints one table: each figure, its target, and the ratio to what the node
//! itself delivers. Scenarios: `latency` (pause mined → incident stored →
//! mail accepted), `catchup` (5,000 blocks with one event each), `backfill`
//! (20,000 blocks by default, 2% with events; `--backfill-blocks 100000` for
//! the full size, ~12 min with building the chain on anvil), `soak` (RSS of `haltwatch run`
//! following 3 chains, 20 protocols, 200 contracts under steady load) and
//! `startup` (config loaded and validated → first RPC request) and
//! `requests` (JSON-RPC requests per block at the head, by method, from
//! `/metrics` over 60 one-second blocks; `--request-blocks N` for another count).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::network::TransactionBuilder;
use alloy::node_bindings::AnvilInstance;
use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, TransactionRequest};
use haltwatch::demo::{Chain, selector, spawn_anvil};
use haltwatch::status::Status;
use haltwatch::store::Store;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The tests' PostgreSQL: `--store postgres` puts each history there.
#[allow(dead_code)]
#[path = "../tests/common/postgres.rs"]
mod postgres;

/// `--store postgres`: the scenarios write to a database of a local
/// PostgreSQL cluster instead of a SQLite file.
static ON_POSTGRES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The tests' JSON-RPC proxy: here it adds latency, like a remote node.
#[allow(dead_code)]
#[path = "../tests/common/proxy.rs"]
mod proxy;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One line of the result table.
struct Row {
    what: String,
    figure: String,
    target: String,
    node: String,
    ratio: String,
}

fn row(what: &str, figure: String, target: &str, node: String, ratio: String) -> Row {
    Row {
        what: what.into(),
        figure,
        target: target.into(),
        node,
        ratio,
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn abi(name: &str) -> String {
    root().join("abis").join(name).display().to_string()
}

fn vault_protocol(name: &str, chain: &str, vault: Address) -> String {
    format!(
        "[[protocols]]\nname = \"{name}\"\nchain = \"{chain}\"\nresponders = [\"oncall@example.org\"]\n  [[protocols.contracts]]\n  name = \"vault\"\n  address = \"{vault}\"\n  abi = \"{}\"\n  preset = \"oz-pausable\"\n",
        abi("oz-pausable.json")
    )
}

fn chain_section(
    name: &str,
    chain_id: u64,
    rpc: &str,
    start_block: u64,
    failed_tx: bool,
) -> String {
    format!(
        "[[chains]]\nname = \"{name}\"\nchain_id = {chain_id}\nrpc = [\"{rpc}\"]\npoll_interval_ms = 1000\nstart_block = {start_block}\nfailed_tx = {failed_tx}\n"
    )
}

fn write_config(dir: &Path, text: &str) -> Result<PathBuf> {
    let path = dir.join("haltwatch.toml");
    let store = if ON_POSTGRES.load(std::sync::atomic::Ordering::Relaxed) {
        postgres::database(dir)
    } else {
        "sqlite://history.db".to_string()
    };
    std::fs::write(
        &path,
        format!("[store]\nurl = \"{store}\"\n[api]\nlisten = \"127.0.0.1:0\"\n{text}"),
    )?;
    Ok(path)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------- a minimal SMTP sink

/// Accepts every mail on loopback and records when each was accepted.
async fn smtp_sink() -> Result<(u16, Arc<Mutex<Vec<Instant>>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let log = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                let mut in_data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = if in_data {
                        if line != "." {
                            continue;
                        }
                        in_data = false;
                        if let Ok(mut l) = log.lock() {
                            l.push(Instant::now());
                        }
                        b"250 queued\r\n"
                    } else {
                        match line.get(..4).map(str::to_ascii_uppercase).as_deref() {
                            Some("EHLO") | Some("HELO") => b"250-sink\r\n250 8BITMIME\r\n",
                            Some("DATA") => {
                                in_data = true;
                                b"354 go ahead\r\n"
                            }
                            Some("QUIT") => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                return;
                            }
                            _ => b"250 ok\r\n",
                        }
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((port, accepted))
}

// ---------------------------------------------------------------- scenarios

struct Running {
    status: Status,
    store: Store,
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<std::result::Result<(), haltwatch::pipeline::PipelineError>>,
}

async fn start(path: &Path) -> Result<Running> {
    let config = haltwatch::config::load(path)?;
    let store = Store::open(&config.store).await?;
    let status = Status::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(haltwatch::pipeline::run_with(
        config,
        store.clone(),
        status.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    Ok(Running {
        status,
        store,
        stop,
        handle,
    })
}

impl Running {
    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.handle.await??;
        Ok(())
    }

    fn processed(&self, chain: &str) -> u64 {
        self.status
            .chains()
            .get(chain)
            .and_then(|c| c.processed)
            .map_or(0, |p| p.0)
    }

    async fn wait_processed(&self, chain: &str, block: u64, limit: Duration) -> Result<Instant> {
        let deadline = Instant::now() + limit;
        while self.processed(chain) < block {
            if Instant::now() > deadline {
                return Err(format!("block {block} not processed in {limit:?}").into());
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        Ok(Instant::now())
    }
}

/// The time between two rounds of the latency scenario: faster than any
/// production chain makes blocks (Arbitrum: 250 ms). Back to back, a round
/// would start while anvil still waits for the ACK of its last answer
/// (Linux delays it up to 40 ms) and anvil, which writes without
/// `TCP_NODELAY`, holds the next block's `newHeads` until then: the figure
/// would be that interplay, not haltwatch.
const ROUND_GAP: Duration = Duration::from_millis(100);

/// Pause mined → incident stored → mail accepted, over a ws endpoint with
/// automine: the block exists when the node answers the send, so the clock
/// starts there (block production subtracted).
async fn latency(rows: &mut Vec<Row>) -> Result<()> {
    const ROUNDS: usize = 100;
    let anvil = spawn_anvil(0)?;
    let chain = Chain::connect(&anvil).await?;
    let vault = chain.deploy(haltwatch::demo::DEMO_PAUSABLE_BIN).await?;
    let (port, accepted) = smtp_sink().await?;
    let dir = tempfile::tempdir()?;
    let head = chain.provider.get_block_number().await?;
    let text = format!(
        "{}{}[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"none\"\nfrom = \"bench@haltwatch.test\"\ngroup_wait_seconds = 0\nmax_per_hour = 100000\n",
        chain_section("anvil", 31337, &anvil.ws_endpoint(), head + 1, true),
        vault_protocol("Vault", "anvil", vault)
    );
    let running = start(&write_config(dir.path(), &text)?).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut samples = Vec::new();
    let mut stored = Vec::new();
    for round in 0..ROUNDS * 2 {
        // Blocks at least ROUND_GAP apart, as on any live chain; see there.
        tokio::time::sleep(ROUND_GAP).await;
        let call = if round % 2 == 0 {
            "pause()"
        } else {
            "unpause()"
        };
        let tx = TransactionRequest::default()
            .with_from(chain.from)
            .with_to(vault)
            .with_input(selector(call))
            .with_gas_limit(200_000);
        let pending = chain.provider.send_transaction(tx).await?;
        let mined = Instant::now();
        let receipt_block = pending
            .get_receipt()
            .await?
            .block_number
            .unwrap_or_default();
        let stored_at = running
            .wait_processed("anvil", receipt_block, Duration::from_secs(10))
            .await?;
        stored.push(stored_at.saturating_duration_since(mined));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = accepted
                .lock()
                .map(|l| l.get(round).copied())
                .unwrap_or(None);
            if let Some(at) = got {
                samples.push(at.saturating_duration_since(mined));
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("mail {round} not accepted in 10 s").into());
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    running.stop().await?;
    // The node's own limit: one eth_blockNumber + eth_getLogs round trip.
    let filter = Filter::new().address(vault).from_block(head).to_block(head);
    let mut bare = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        chain.provider.get_block_number().await?;
        chain.provider.get_logs(&filter).await?;
        bare.push(t.elapsed());
    }
    for v in [&mut samples, &mut stored, &mut bare] {
        v.sort();
    }
    let node_p50 = percentile(&bare, 0.5);
    for (what, p, target) in [("p50", 0.5, "≤ 50 ms"), ("p99", 0.99, "≤ 200 ms")] {
        let figure = percentile(&samples, p);
        rows.push(row(
            &format!("head latency {what}: mined → mail accepted"),
            ms(figure),
            target,
            format!("{} (RPC round trips)", ms(percentile(&bare, p))),
            format!(
                "{:.1}×",
                figure.as_secs_f64() / percentile(&bare, p).as_secs_f64().max(1e-9)
            ),
        ));
    }
    rows.push(row(
        "head latency p50: mined → incident stored",
        ms(percentile(&stored, 0.5)),
        "-",
        ms(node_p50),
        format!(
            "{:.1}×",
            percentile(&stored, 0.5).as_secs_f64() / node_p50.as_secs_f64().max(1e-9)
        ),
    ));
    Ok(())
}

/// Sends `n` transactions alternating pause/unpause without waiting for each
/// receipt; anvil mines one block per transaction.
async fn pause_storm(chain: &Chain, vault: Address, n: usize, mine_between: u64) -> Result<()> {
    let mut nonce = chain.provider.get_transaction_count(chain.from).await?;
    let chain_id = chain.provider.get_chain_id().await?;
    for i in 0..n {
        let call = if i.is_multiple_of(2) {
            "pause()"
        } else {
            "unpause()"
        };
        let tx = TransactionRequest::default()
            .with_from(chain.from)
            .with_to(vault)
            .with_input(selector(call))
            .with_nonce(nonce)
            .with_chain_id(chain_id)
            .with_gas_limit(100_000)
            .with_max_fee_per_gas(10_000_000_000)
            .with_max_priority_fee_per_gas(1);
        nonce += 1;
        // One transaction per block: wait for each to be mined (polling
        // every millisecond) before the next.
        let hash = *chain.provider.send_transaction(tx).await?.tx_hash();
        while chain
            .provider
            .get_transaction_receipt(hash)
            .await?
            .is_none()
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if mine_between > 0 {
            let _: serde_json::Value = chain
                .provider
                .raw_request("anvil_mine".into(), (U256::from(mine_between),))
                .await?;
        }
    }
    Ok(())
}

/// How fast the node answers the bare eth_getLogs needed for a range.
async fn bare_logs(
    provider: &DynProvider,
    vault: Address,
    from: u64,
    to: u64,
    chunk: u64,
) -> Result<f64> {
    let t = Instant::now();
    let mut a = from;
    let mut logs = 0;
    while a <= to {
        let b = to.min(a + chunk - 1);
        logs += provider
            .get_logs(&Filter::new().address(vault).from_block(a).to_block(b))
            .await?
            .len();
        a = b + 1;
    }
    let rate = (to - from + 1) as f64 / t.elapsed().as_secs_f64();
    eprintln!("bare eth_getLogs: {logs} logs in blocks {from}..={to}");
    Ok(rate)
}

/// A chain with `events` pause/unpause transactions and `mine_between` empty
/// blocks after each; [`PauseChain::node_rate`] measures the node on it.
struct PauseChain {
    anvil: AnvilInstance,
    vault: Address,
    first: u64,
    last: u64,
}

impl PauseChain {
    async fn build(events: usize, mine_between: u64) -> Result<Self> {
        let anvil = spawn_anvil(0)?;
        let chain = Chain::connect(&anvil).await?;
        let vault = chain.deploy(haltwatch::demo::DEMO_PAUSABLE_BIN).await?;
        let first = chain.provider.get_block_number().await? + 1;
        pause_storm(&chain, vault, events, mine_between).await?;
        let last = chain.provider.get_block_number().await?;
        Ok(PauseChain {
            anvil,
            vault,
            first,
            last,
        })
    }

    fn blocks(&self) -> u64 {
        self.last - self.first + 1
    }

    /// The node's bare `eth_getLogs` rate over the scenario, now, at `rpc`.
    async fn node_rate(&self, rpc: &str, chunk: u64) -> Result<f64> {
        let provider = alloy::providers::ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect(rpc)
            .await?
            .erased();
        bare_logs(&provider, self.vault, self.first, self.last, chunk).await
    }

    /// A config following it from its first block, in `dir`.
    fn config(&self, dir: &Path, failed_tx: bool) -> Result<PathBuf> {
        self.config_at(dir, failed_tx, &self.anvil.endpoint())
    }

    /// The same, reading the node at `rpc`.
    fn config_at(&self, dir: &Path, failed_tx: bool, rpc: &str) -> Result<PathBuf> {
        let text = format!(
            "{}{}",
            chain_section("anvil", 31337, rpc, self.first, failed_tx),
            vault_protocol("Vault", "anvil", self.vault)
        );
        write_config(dir, &text)
    }
}

fn calls_label(failed_tx: bool) -> &'static str {
    if failed_tx {
        "with failed-tx detection"
    } else {
        "logs only"
    }
}

/// One catch-up of the scenario from its first block into a new store.
struct CatchUp {
    rate: f64,
    /// The node's bare `eth_getLogs` rate, measured just before.
    node: f64,
    elapsed: Duration,
    /// CPU of haltwatch and of the node over the catch-up, in ns.
    cpu: (u64, u64),
}

/// One catch-up reading the node at `rpc`.
async fn catch_up_once(
    scenario: &PauseChain,
    rpc: &str,
    failed_tx: bool,
    incidents: usize,
) -> Result<CatchUp> {
    let node = scenario.node_rate(rpc, 2_000).await?;
    let dir = tempfile::tempdir()?;
    let path = scenario.config_at(dir.path(), failed_tx, rpc)?;
    let anvil_pid = scenario.anvil.child().id();
    let cpu_before = (own_cpu_ns(), thread_cpu_ns(anvil_pid));
    let running = start(&path).await?;
    // From the moment the chain is followed: a replica on PostgreSQL takes
    // its lease about a second after it starts.
    while !running.status.chains().contains_key("anvil") {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let t = Instant::now();
    let done = running
        .wait_processed("anvil", scenario.last, Duration::from_secs(300))
        .await?;
    let elapsed = done.duration_since(t);
    let cpu = (
        own_cpu_ns().saturating_sub(cpu_before.0),
        cpu_used_ns(&cpu_before.1, &thread_cpu_ns(anvil_pid)),
    );
    let found = running.store.list(&Default::default()).await?.len();
    running.stop().await?;
    if found != incidents {
        return Err(format!("expected {incidents} incidents, found {found}").into());
    }
    Ok(CatchUp {
        rate: scenario.blocks() as f64 / elapsed.as_secs_f64(),
        node,
        elapsed,
        cpu,
    })
}

/// Runs per mode: the node's own rate varies between runs by a third here,
/// so each catch-up is compared with the node measured just before it.
const CATCH_UP_RUNS: usize = 5;

/// Latency the proxy adds to every request of the remote-node catch-up:
/// a hosted endpoint in the same region answers small requests in about this.
const REMOTE_LATENCY: Duration = Duration::from_millis(25);

async fn catchup(rows: &mut Vec<Row>) -> Result<()> {
    const BLOCKS: usize = 5_000;
    let scenario = PauseChain::build(BLOCKS, 0).await?;
    let local = scenario.anvil.endpoint();
    let remote = proxy::spawn(
        local.trim_start_matches("http://").to_string(),
        Arc::new(|_: &serde_json::Value| {
            std::thread::sleep(REMOTE_LATENCY);
            None
        }),
    );
    let cases = [
        (calls_label(false).to_string(), &local, false, true),
        (calls_label(true).to_string(), &local, true, true),
        (
            format!(
                "{}, through a proxy adding {} ms to every request",
                calls_label(false),
                REMOTE_LATENCY.as_millis()
            ),
            &remote,
            false,
            false,
        ),
    ];
    for (label, rpc, failed_tx, targeted) in cases {
        let mut runs = Vec::with_capacity(CATCH_UP_RUNS);
        for _ in 0..CATCH_UP_RUNS {
            runs.push(catch_up_once(&scenario, rpc, failed_tx, BLOCKS / 2).await?);
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[0], v[v.len() - 1])
        };
        let (rate, rate_min, rate_max) = median(runs.iter().map(|r| r.rate).collect());
        let (node, node_min, node_max) = median(runs.iter().map(|r| r.node).collect());
        let (ratio, ratio_min, ratio_max) =
            median(runs.iter().map(|r| 100.0 * r.rate / r.node).collect());
        // The CPU of the run with the median rate.
        let typical = runs.iter().find(|r| r.rate == rate).ok_or("median run")?;
        rows.push(row(
            &format!("catch-up 5,000 blocks, 1 event each ({label}), median of {CATCH_UP_RUNS}"),
            format!(
                "{rate:.0} blocks/s ({rate_min:.0}–{rate_max:.0}; {} incidents)",
                BLOCKS / 2
            ),
            if targeted {
                "≥ 20,000 blocks/s, ≥ 50% of node"
            } else {
                "report"
            },
            format!(
                "{node:.0} blocks/s ({node_min:.0}–{node_max:.0}; bare eth_getLogs, same path)"
            ),
            format!(
                "{ratio:.0}% ({ratio_min:.0}–{ratio_max:.0}%, each run against the node just before it); \
                 CPU of the median run over {:.0} ms: haltwatch {:.0} ms, node {:.0} ms",
                typical.elapsed.as_secs_f64() * 1e3,
                typical.cpu.0 as f64 / 1e6,
                typical.cpu.1 as f64 / 1e6
            ),
        ));
    }
    Ok(())
}

/// CPU time of this process (every thread, finished ones too), in
/// nanoseconds: the pipeline runs in it.
fn own_cpu_ns() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// CPU time of another process's threads alive now, in nanoseconds, by
/// thread (`/proc/<pid>/task/*/schedstat`).
fn thread_cpu_ns(pid: u32) -> HashMap<String, u64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return HashMap::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            let ns = stat.split_whitespace().next()?.parse::<u64>().ok()?;
            Some((t.file_name().to_string_lossy().into_owned(), ns))
        })
        .collect()
}

/// The CPU another process used between two [`thread_cpu_ns`] readings:
/// threads started meanwhile count whole; a thread that ended meanwhile
/// is missed (anvil keeps its workers; its blocking threads idle out).
fn cpu_used_ns(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> u64 {
    after
        .iter()
        .map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum()
}

/// `blocks` blocks, 2% with a monitored event. anvil mines empty blocks at
/// about 270 blocks/s here, so the default is 20,000 blocks (~1.5 min to
/// build), within the benchmark's 10-minute budget; `--backfill-blocks
/// 100000` builds the full scenario (~12 min in all).
async fn backfill(rows: &mut Vec<Row>, blocks: usize) -> Result<()> {
    let scenario = PauseChain::build(blocks / 50, 49).await?;
    let node = scenario
        .node_rate(&scenario.anvil.endpoint(), 10_000)
        .await?;
    let (first, last) = (scenario.first, scenario.last);
    for failed_tx in [false, true] {
        let dir = tempfile::tempdir()?;
        let config = haltwatch::config::load(&scenario.config(dir.path(), failed_tx)?)?;
        let store = Store::open(&config.store).await?;
        let done =
            haltwatch::pipeline::backfill(config, store.clone(), "anvil", first, last, |_| {})
                .await?;
        let incidents = store.list(&Default::default()).await?.len();
        let rate = done.blocks_per_second();
        let waiting = 100.0 * done.node_wait.as_secs_f64() / done.elapsed.as_secs_f64();
        rows.push(row(
            &format!(
                "backfill {} blocks, 2% with events ({})",
                scenario.blocks(),
                calls_label(failed_tx)
            ),
            format!("{rate:.0} blocks/s ({incidents} incidents)"),
            "report",
            format!("{node:.0} blocks/s (bare eth_getLogs)"),
            format!(
                "{:.0}% in haltwatch, {waiting:.0}% waiting on the node",
                100.0 - waiting
            ),
        ));
    }
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `haltwatch run` (the release binary) on 3 chains, 20 protocols, 200
/// contracts, a pause or unpause every 500 ms on each chain.
async fn soak(rows: &mut Vec<Row>, seconds: u64) -> Result<()> {
    let mut anvils: Vec<AnvilInstance> = Vec::new();
    let mut text = String::new();
    let mut vaults = Vec::new();
    for c in 0..3u64 {
        let anvil = alloy::node_bindings::Anvil::at(haltwatch::demo::find_anvil()?)
            .chain_id(1000 + c)
            .args(["--block-time", "1", "--max-persisted-states", "0"])
            .try_spawn()?;
        let chain = Chain::connect(&anvil).await?;
        let vault = chain.deploy(haltwatch::demo::DEMO_PAUSABLE_BIN).await?;
        text.push_str(&chain_section(
            &format!("c{c}"),
            1000 + c,
            &anvil.ws_endpoint(),
            0,
            true,
        ));
        vaults.push((chain, vault));
        anvils.push(anvil);
    }
    for p in 0..20 {
        let c = p % 3;
        text.push_str(&format!(
            "[[protocols]]\nname = \"P{p}\"\nchain = \"c{c}\"\n"
        ));
        for k in 0..10 {
            let address = if k == 0 && p < 3 {
                vaults[c].1
            } else {
                Address::from_word(alloy::primitives::keccak256(
                    ((p * 10 + k) as u64).to_be_bytes(),
                ))
            };
            text.push_str(&format!(
                "  [[protocols.contracts]]\n  name = \"c{k}\"\n  address = \"{address}\"\n  abi = \"{}\"\n  preset = \"oz-pausable\"\n",
                abi("oz-pausable.json")
            ));
        }
    }
    let dir = tempfile::tempdir()?;
    let path = write_config(dir.path(), &text)?;
    // HALTWATCH_BIN: soak a copy, so that rebuilding meanwhile leaves it alone.
    let bin = std::env::var_os("HALTWATCH_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_haltwatch")),
        PathBuf::from,
    );
    let mut child = std::process::Command::new(bin)
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .spawn()?;
    let pid = child.id();
    let load = tokio::spawn(async move {
        let mut i = 0u64;
        loop {
            for (chain, vault) in &vaults {
                let call = if i.is_multiple_of(2) {
                    "pause()"
                } else {
                    "unpause()"
                };
                let tx = TransactionRequest::default()
                    .with_from(chain.from)
                    .with_to(*vault)
                    .with_input(selector(call))
                    .with_gas_limit(100_000);
                let _ = chain.provider.send_transaction(tx).await;
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if let Some(kib) = rss_kib(pid) {
            samples.push((started.elapsed().as_secs(), kib));
        }
    }
    load.abort();
    let _ = child.kill();
    let _ = child.wait();
    let path = root().join("target/soak-rss.csv");
    let mut csv = std::fs::File::create(&path)?;
    writeln!(csv, "seconds,rss_kib")?;
    for (s, k) in &samples {
        writeln!(csv, "{s},{k}")?;
    }
    let max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    // Flat means the second half adds (next to) nothing.
    let half = samples
        .iter()
        .find(|s| s.0 >= seconds / 2)
        .map_or(0, |s| s.1);
    let after_warmup: Vec<u64> = samples.iter().filter(|s| s.0 >= 30).map(|s| s.1).collect();
    let (first, last) = (
        after_warmup.first().copied().unwrap_or(0),
        after_warmup.last().copied().unwrap_or(0),
    );
    rows.push(row(
        &format!("memory: 3 chains, 20 protocols, 200 contracts, {seconds} s soak"),
        format!(
            "max {:.1} MB RSS; {:.1} → {:.1} MB after 30 s; {:+} KiB in the second half",
            max as f64 / 1024.0,
            first as f64 / 1024.0,
            last as f64 / 1024.0,
            last as i64 - half as i64
        ),
        "≤ 25 MB, flat",
        "-".into(),
        format!("samples in {}", path.display()),
    ));
    drop(anvils);
    Ok(())
}

/// Spawn → first RPC request, for the release binary with a 200-contract config.
async fn startup(rows: &mut Vec<Row>) -> Result<()> {
    let mut samples = Vec::new();
    for _ in 0..7 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let rpc = format!("http://{}", listener.local_addr()?);
        let mut text = chain_section("mainnet", 1, &rpc, 0, true);
        for p in 0..20 {
            text.push_str(&format!(
                "[[protocols]]\nname = \"P{p}\"\nchain = \"mainnet\"\n"
            ));
            for k in 0..10 {
                let address = Address::from_word(alloy::primitives::keccak256(
                    ((p * 10 + k) as u64).to_be_bytes(),
                ));
                text.push_str(&format!(
                    "  [[protocols.contracts]]\n  name = \"c{k}\"\n  address = \"{address}\"\n  abi = \"{}\"\n  preset = \"oz-pausable\"\n",
                    abi("oz-pausable.json")
                ));
            }
        }
        let dir = tempfile::tempdir()?;
        let path = write_config(dir.path(), &text)?;
        let t = Instant::now();
        // HALTWATCH_BIN: soak a copy, so that rebuilding meanwhile leaves it alone.
        let bin = std::env::var_os("HALTWATCH_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_haltwatch")),
            PathBuf::from,
        );
        let mut child = std::process::Command::new(bin)
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "error")
            .spawn()?;
        let (mut stream, _) =
            tokio::time::timeout(Duration::from_secs(10), listener.accept()).await??;
        let mut byte = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut byte).await?;
        samples.push(t.elapsed());
        let _ = child.kill();
        let _ = child.wait();
    }
    samples.sort();
    rows.push(row(
        "start-up: config loaded + validated (200 contracts) → first RPC request",
        ms(percentile(&samples, 0.5)),
        "≤ 100 ms",
        "-".into(),
        format!(
            "min {}, max {}",
            ms(samples[0]),
            ms(samples[samples.len() - 1])
        ),
    ));
    Ok(())
}

/// `haltwatch_rpc_requests_total` by method for the endpoint on `port`,
/// read from the running monitor's `/metrics`.
async fn rpc_requests(api: std::net::SocketAddr, port: u16) -> Result<HashMap<String, f64>> {
    let mut conn = tokio::net::TcpStream::connect(api).await?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut conn, &mut body).await?;
    let endpoint = format!(":{port}\"");
    let mut out = HashMap::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("haltwatch_rpc_requests_total{") else {
            continue;
        };
        if !rest.contains(&endpoint) {
            continue;
        }
        let method = rest
            .split("method=\"")
            .nth(1)
            .and_then(|m| m.split('"').next())
            .unwrap_or("?");
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        out.insert(method.to_string(), value);
    }
    Ok(out)
}

/// Requests per block at the head, by method, over `blocks` one-second
/// blocks with no monitored call in them: ws logs only, ws with failed_tx,
/// and http polled every second.
async fn requests(rows: &mut Vec<Row>, blocks: u64) -> Result<()> {
    let modes = [
        (
            "ws (poll after 2 s of silence), logs only",
            true,
            false,
            "1",
        ),
        (
            "ws (poll after 2 s of silence), failed_tx",
            true,
            true,
            "≤ 2",
        ),
        ("http (poll 1 s), logs only", false, false, "-"),
    ];
    for (i, (label, ws, failed_tx, target)) in modes.into_iter().enumerate() {
        let anvil = spawn_anvil(1)?;
        let chain = Chain::connect(&anvil).await?;
        let vault = chain.deploy(haltwatch::demo::DEMO_PAUSABLE_BIN).await?;
        let rpc = if ws {
            anvil.ws_endpoint()
        } else {
            anvil.endpoint()
        };
        let name = format!("requests{i}");
        let head = chain.provider.get_block_number().await?;
        let dir = tempfile::tempdir()?;
        let path = write_config(
            dir.path(),
            &(chain_section(&name, 31337, &rpc, head, failed_tx).replace(
                "poll_interval_ms = 1000",
                // ws: the default silence before a poll, longer than a block.
                if ws {
                    "poll_interval_ms = 2000"
                } else {
                    "poll_interval_ms = 1000"
                },
            ) + &vault_protocol("Vault", &name, vault)),
        )?;
        let running = start(&path).await?;
        running
            .wait_processed(&name, head, Duration::from_secs(30))
            .await?;
        let api = running
            .status
            .api_addr()
            .ok_or("the HTTP surface is not bound")?;
        let first = running.processed(&name);
        let before = rpc_requests(api, anvil.port()).await?;
        running
            .wait_processed(&name, first + blocks, Duration::from_secs(blocks * 3))
            .await?;
        let after = rpc_requests(api, anvil.port()).await?;
        let done = (running.processed(&name) - first) as f64;
        running.stop().await?;
        let mut methods: Vec<(String, f64)> = after
            .iter()
            .map(|(m, n)| {
                (
                    m.clone(),
                    (n - before.get(m).copied().unwrap_or(0.0)) / done,
                )
            })
            .filter(|(_, per)| *per > 0.0)
            .collect();
        methods.sort_by(|a, b| a.0.cmp(&b.0));
        let total: f64 = methods.iter().map(|(_, n)| n).sum();
        let detail: Vec<String> = methods.iter().map(|(m, n)| format!("{m} {n:.2}")).collect();
        rows.push(row(
            &format!("requests per block at the head, {label} ({done:.0} blocks)"),
            format!("{total:.2} ({})", detail.join(", ")),
            target,
            "-".into(),
            "-".into(),
        ));
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    // The in-process scenarios log as `haltwatch run` does (INFO, text), so
    // that what the log costs is measured; without RUST_LOG the lines go
    // nowhere instead of onto the table.
    use tracing_subscriber::{EnvFilter, fmt::writer::BoxMakeWriter};
    let (filter, writer) = match std::env::var_os("RUST_LOG") {
        Some(_) => (
            EnvFilter::from_default_env(),
            BoxMakeWriter::new(std::io::stderr),
        ),
        None => (EnvFilter::new("info"), BoxMakeWriter::new(std::io::sink)),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .init();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let soak_seconds = args
        .iter()
        .position(|a| a == "--soak-seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let named: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with("--")
                && a.parse::<u64>().is_err()
                && (*i == 0 || args[i - 1] != "--store")
        })
        .map(|(_, a)| a.as_str())
        .collect();
    let want = |s: &str| named.is_empty() || named.contains(&s);
    if args
        .windows(2)
        .any(|w| w[0] == "--store" && w[1] == "postgres")
    {
        ON_POSTGRES.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let mut rows = Vec::new();
    let started = Instant::now();
    if want("startup") {
        startup(&mut rows).await?;
    }
    if want("latency") {
        latency(&mut rows).await?;
    }
    if want("catchup") {
        catchup(&mut rows).await?;
    }
    if want("backfill") {
        let blocks = args
            .iter()
            .position(|a| a == "--backfill-blocks")
            .and_then(|i| args.get(i + 1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(20_000);
        backfill(&mut rows, blocks).await?;
    }
    if want("soak") {
        soak(&mut rows, soak_seconds).await?;
    }
    if want("requests") {
        let blocks = args
            .iter()
            .position(|a| a == "--request-blocks")
            .and_then(|i| args.get(i + 1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(60);
        requests(&mut rows, blocks).await?;
    }
    println!(
        "\n| what | figure | target | node's own limit | ratio / note |\n|---|---|---|---|---|"
    );
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.what, r.figure, r.target, r.node, r.ratio
        );
    }
    println!("\n(ran in {:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}
