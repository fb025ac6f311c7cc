//! Replicas on PostgreSQL, measured on a real cluster and real processes:
//!
//! ```sh
//! scripts/setup.sh && cargo bench --bench replicas              # 10 kills, TTL 3 s (~2 min after the build)
//! cargo bench --bench replicas -- --kills 20 --ttl 15
//! ```
//!
//! Two `haltwatch run` replicas share one history and follow one anvil
//! chain that makes a block a second. The holder of the chain's lease is
//! killed (`kill -9`) again and again, and restarted as an orchestrator
//! would; each time, the figure is the time from the kill to the first
//! block the other replica commits. Then the RSS of both replicas, the
//! holder and the standby.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use haltwatch::demo::{Chain, spawn_anvil};
use haltwatch::store::Store;

#[allow(dead_code)]
#[path = "../tests/common/postgres.rs"]
mod postgres;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const CHAIN_ID: u64 = 31337;

fn replica(config: &Path) -> Result<Child> {
    Ok(Command::new(env!("CARGO_BIN_EXE_haltwatch"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// The checkpoint of the chain, as the shared history has it.
async fn checkpoint(store: &Store) -> Result<u64> {
    Ok(store.window(CHAIN_ID).await?.last().map_or(0, |b| b.number))
}

/// The PID of the replica holding the chain's live lease (replica names
/// are `host-PID-start`), once one does.
async fn holder_pid(pool: &sqlx::PgPool) -> Result<u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let holder: Option<String> = sqlx::query_scalar(
            "SELECT holder FROM chain_leases WHERE chain_id = $1 AND expires_at > now()",
        )
        .bind(CHAIN_ID as i64)
        .fetch_optional(pool)
        .await?;
        if let Some(pid) = holder
            .as_deref()
            .and_then(|h| h.rsplit('-').nth(1))
            .and_then(|p| p.parse().ok())
        {
            return Ok(pid);
        }
        if Instant::now() > deadline {
            return Err("no replica took the chain in 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let kills = arg(&args, "--kills", 10);
    let ttl = arg(&args, "--ttl", 3);
    let node = spawn_anvil(1)?;
    let chain = Chain::connect(&node).await?;
    let vault = chain.deploy(haltwatch::demo::DEMO_PAUSABLE_BIN).await?;
    let dir = tempfile::tempdir()?;
    let url = postgres::database(&dir.path().join("history"));
    let abi = Path::new(env!("CARGO_MANIFEST_DIR")).join("abis/oz-pausable.json");
    let text = format!(
        "[store]\nurl = \"{url}\"\nlease_ttl_seconds = {ttl}\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n\
         [[chains]]\nname = \"anvil\"\nchain_id = {CHAIN_ID}\nrpc = [\"{rpc}\"]\npoll_interval_ms = 100\n\n\
         [[protocols]]\nname = \"Vault\"\nchain = \"anvil\"\nresponders = [\"oncall@example.org\"]\n  \
         [[protocols.contracts]]\n  name = \"vault\"\n  address = \"{vault}\"\n  abi = \"{abi}\"\n  preset = \"oz-pausable\"\n",
        rpc = node.endpoint(),
        abi = abi.display(),
    );
    let config = dir.path().join("haltwatch.toml");
    std::fs::write(&config, text)?;
    let store = Store::open(&haltwatch::config::load(&config)?.store).await?;
    let pool = sqlx::PgPool::connect(&url).await?;
    let mut replicas = vec![replica(&config)?, replica(&config)?];
    let mut takeovers = Vec::new();
    for round in 0..kills {
        let pid = holder_pid(&pool).await?;
        // Following: the checkpoint moves with the chain.
        let before = checkpoint(&store).await?;
        while checkpoint(&store).await? == before {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let at_kill = checkpoint(&store).await?;
        let i = replicas
            .iter()
            .position(|c| c.id() == pid)
            .ok_or("the holder is not one of ours")?;
        replicas[i].kill()?;
        let killed = Instant::now();
        replicas[i].wait()?;
        while checkpoint(&store).await? <= at_kill {
            if killed.elapsed() > Duration::from_secs(ttl * 4 + 30) {
                return Err("no replica took the chain over".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = killed.elapsed();
        eprintln!(
            "kill {}: the next block committed {:.2} s after kill -9",
            round + 1,
            took.as_secs_f64()
        );
        takeovers.push(took);
        replicas[i] = replica(&config)?;
    }
    // Both replicas settled: one follows, one stands by.
    tokio::time::sleep(Duration::from_secs(ttl * 2)).await;
    let holder = holder_pid(&pool).await?;
    let rss: Vec<(String, Option<u64>)> = replicas
        .iter()
        .map(|c| {
            let role = if c.id() == holder {
                "holder"
            } else {
                "standby"
            };
            (role.to_string(), rss_kib(c.id()))
        })
        .collect();
    for c in &mut replicas {
        let _ = c.kill();
        let _ = c.wait();
    }
    takeovers.sort();
    let p50 = takeovers[takeovers.len() / 2];
    let max = takeovers[takeovers.len() - 1];
    println!("\n| what | figure |\n|---|---|");
    println!(
        "| takeover: kill -9 of the holder → first block committed by the other replica, {kills} kills, lease_ttl_seconds = {ttl} | p50 {:.2} s, max {:.2} s (all: {}) |",
        p50.as_secs_f64(),
        max.as_secs_f64(),
        takeovers
            .iter()
            .map(|t| format!("{:.2}", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (role, kib) in rss {
        println!(
            "| RSS of a replica ({role}, after {kills} takeovers, one chain) | {} |",
            kib.map_or("unknown".into(), |k| format!("{:.1} MB", k as f64 / 1024.0))
        );
    }
    Ok(())
}
