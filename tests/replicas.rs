//! Replicas: `haltwatch run` processes sharing one history on a real
//! PostgreSQL, each with its own config (its own HTTP port), following
//! real anvil chains and mailing a real SMTP server. Each chain is followed
//! by one replica at a time; when the holder dies or freezes, another takes
//! the chain over from the checkpoint, and the one that lost its turn can
//! never write.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::Address;
use common::smtp::{SmtpServer, email_section, free_port};
use common::*;
use haltwatch::demo::{Chain, selector};
use haltwatch::store::{IncidentState, Store};

/// Seconds a lease lasts unrenewed in these tests (the least allowed).
const TTL: u64 = 3;

/// One `haltwatch run` process.
struct Replica {
    name: String,
    child: Child,
    api: u16,
    log: PathBuf,
}

impl Replica {
    /// Starts a replica with `text` as its config, on its own HTTP port.
    fn start(dir: &Path, name: &str, text: &str) -> Replica {
        Self::start_with(dir, name, text, &[])
    }

    /// [`Replica::start`] with more environment (`RUST_LOG` included).
    fn start_with(dir: &Path, name: &str, text: &str, env: &[(&str, &str)]) -> Replica {
        let api = free_port();
        let config = dir.join(format!("{name}.toml"));
        let text = text.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{api}\""),
        );
        std::fs::write(&config, text).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_haltwatch"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "haltwatch=info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start haltwatch run");
        Replica {
            name: name.into(),
            child,
            api,
            log,
        }
    }

    /// `/readyz` as JSON, or `None` while the replica does not answer.
    async fn readyz(&self) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/readyz", self.api);
        let response = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// The chains `/readyz` says this replica follows.
    async fn follows(&self) -> Vec<String> {
        let Some(ready) = self.readyz().await else {
            return Vec::new();
        };
        ready["replica"]["follows"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {}", self.name);
    }

    fn kill9(&mut self) {
        self.signal("-KILL");
        self.child.wait().unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/metrics` as text.
    async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.api);
        let response = reqwest::get(url).await.expect("GET /metrics");
        response.text().await.unwrap()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `ok` holds (at most `limit`), polling every 100 ms.
async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut ok: impl FnMut() -> F,
) -> Duration {
    let started = Instant::now();
    while !ok().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// A vault on anvil, an SMTP server and a config for replicas of one
/// PostgreSQL history with a 3 s lease.
struct World {
    _node: AnvilInstance,
    chain: Chain,
    vault: Address,
    smtp: SmtpServer,
    dir: tempfile::TempDir,
    text: String,
    /// The config of a reader (the CLI, an auditor): the same history.
    reader: PathBuf,
    store: Store,
}

async fn world() -> World {
    world_with(&[]).await
}

/// [`world`] with the SMTP server started with `smtp_args`.
async fn world_with(smtp_args: &[&str]) -> World {
    let node = anvil(0);
    let chain = chain(&node).await;
    let vault = chain.deploy(&bin("DemoPausable")).await.unwrap();
    let smtp = SmtpServer::start(smtp_args);
    let dir = tempfile::tempdir().unwrap();
    let url = common::postgres::database(&dir.path().join("history"));
    let text = config_text(
        &node.endpoint(),
        &format!(
            "{}\n{}",
            protocol("Vault", "vault", vault, "oz-pausable.json", "oz-pausable"),
            email_section(smtp.port, "")
        ),
    )
    .replace(
        "url = \"sqlite://history.db\"",
        &format!("url = \"{url}\"\nlease_ttl_seconds = {TTL}"),
    );
    let reader = dir.path().join("reader.toml");
    std::fs::write(&reader, &text).unwrap();
    let config = haltwatch::config::load(&reader).unwrap();
    let store = Store::open(&config.store).await.unwrap();
    World {
        _node: node,
        chain,
        vault,
        smtp,
        dir,
        text,
        reader,
        store,
    }
}

impl World {
    fn replica(&self, name: &str) -> Replica {
        Replica::start(self.dir.path(), name, &self.text)
    }

    /// The replica of `replicas` that follows the chain, once one does.
    async fn holder(&self, replicas: &[&Replica]) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for (i, r) in replicas.iter().enumerate() {
                if r.follows().await == ["anvil"] {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no replica follows the chain");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn pause(&self) -> u64 {
        let r = self
            .chain
            .call(self.vault, selector("pause()"))
            .await
            .unwrap();
        r.block_number.unwrap()
    }

    async fn unpause(&self) -> u64 {
        let r = self
            .chain
            .call(self.vault, selector("unpause()"))
            .await
            .unwrap();
        r.block_number.unwrap()
    }
}

#[tokio::test]
async fn two_replicas_record_a_pause_once_and_mail_it_once() {
    // A slow relay: while one replica sends, the other's sender looks at
    // the same pending mail many times.
    let w = world_with(&["--delay-ms", "1500"]).await;
    // The password comes from the environment and is never logged, even
    // at debug level (the test cluster trusts loopback, so any will do).
    const PASSWORD: &str = "pg-s3cret-of-the-replicas";
    let text = w.text.replace(
        "lease_ttl_seconds",
        "password_env = \"HALTWATCH_TEST_DB_PASSWORD\"\nlease_ttl_seconds",
    );
    let env = [
        ("HALTWATCH_TEST_DB_PASSWORD", PASSWORD),
        ("RUST_LOG", "debug"),
    ];
    let a = Replica::start_with(w.dir.path(), "a", &text, &env);
    // From its first answer a replica says what it is: starting (not
    // ready), or its part of the chains; never a bare "ready".
    let first = loop {
        if let Some(r) = a.readyz().await {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let starting = first["ready"] == false && first["problems"][0]["part"] == "replica";
    assert!(
        starting || first["replica"]["stands_by"].is_array(),
        "{first}"
    );
    let b = Replica::start_with(w.dir.path(), "b", &text, &env);
    let holder = w.holder(&[&a, &b]).await;
    let standby = [&a, &b][1 - holder];
    // The standby is ready, follows nothing and stands by for the chain.
    let ready = standby.readyz().await.expect("the standby answers");
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["replica"]["stands_by"], serde_json::json!(["anvil"]));
    let paused = w.pause().await;
    wait_caught_up(&w.store, &w.chain).await;
    let unpaused = w.unpause().await;
    wait_caught_up(&w.store, &w.chain).await;
    let mails = w.smtp.wait_mails(2).await;
    // Both replicas had every chance to send it too.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let list = incidents(&w.store).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(
        (list[0].start_block, list[0].end_block),
        (paused, Some(unpaused))
    );
    assert_eq!(list[0].state, IncidentState::Resolved);
    let mails = {
        let again = w.smtp.mails();
        assert_eq!(
            again.len(),
            mails.len(),
            "a mail was sent twice: {again:#?}"
        );
        again
    };
    assert_eq!(mails.len(), 2, "opened and resolved, once each");
    let report = w.store.verify_history().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // An auditor reads the shared history from anywhere.
    let out = Command::new(env!("CARGO_BIN_EXE_haltwatch"))
        .args(["incidents", "list", "--format", "json", "--config"])
        .arg(&w.reader)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    for r in [&a, &b] {
        let log = r.log();
        assert!(log.contains("DEBUG"), "debug logs were written");
        assert!(
            !log.contains(PASSWORD),
            "the password reached the log of {}",
            r.name
        );
    }
}

#[tokio::test]
async fn killing_each_holder_in_turn_the_other_records_the_next_halt() {
    let w = world().await;
    let mut replicas = [w.replica("a"), w.replica("b")];
    for round in 0..2 {
        let expected = round + 1;
        let refs: Vec<&Replica> = replicas.iter().collect();
        let holder = w.holder(&refs).await;
        wait_caught_up(&w.store, &w.chain).await;
        replicas[holder].kill9();
        let killed = Instant::now();
        // Mined right after the kill: nobody holds a live lease for up to the TTL.
        let block = if round == 0 {
            w.pause().await
        } else {
            w.unpause().await
        };
        let took = until(
            "the other replica records the transition",
            Duration::from_secs(TTL + 15),
            || async {
                let list = incidents(&w.store).await;
                list.len() == 1 && list[0].transitions.len() == expected
            },
        )
        .await;
        let list = incidents(&w.store).await;
        let last = list[0].transitions.last().unwrap();
        assert_eq!(last.block_number, block, "recorded with its true block");
        let taker = &replicas[1 - holder];
        let metrics = taker.metrics().await;
        assert!(
            metrics.contains("haltwatch_lease_takeovers_total{chain=\"anvil\"} 1")
                && metrics.contains("haltwatch_leases_held 1"),
            "{metrics}"
        );
        eprintln!(
            "round {round}: recorded {:.1} s after kill -9 (TTL {TTL} s)",
            killed.elapsed().as_secs_f64().min(took.as_secs_f64() + 0.5)
        );
        // The killed replica comes back, as an orchestrator restarts it.
        let name = replicas[holder].name.clone();
        replicas[holder] = w.replica(&format!("{name}{round}"));
    }
    wait_caught_up(&w.store, &w.chain).await;
    let list = incidents(&w.store).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0].state, IncidentState::Resolved);
    // At most one duplicate per crash, and only of a mail in flight.
    let mails = w.smtp.wait_mails(2).await;
    assert!(mails.len() <= 4, "{} mails: {mails:#?}", mails.len());
    // The time nobody followed the chain is a monitoring gap.
    let gaps = w.store.gaps(0, u64::MAX).await.unwrap();
    assert!(
        gaps.iter()
            .any(|g| g.reason.contains("no replica followed the chain")),
        "{gaps:#?}"
    );
    let report = w.store.verify_history().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[tokio::test]
async fn a_holder_frozen_past_its_lease_writes_nothing_when_thawed() {
    let w = world().await;
    let a = w.replica("a");
    let b = w.replica("b");
    let holder = w.holder(&[&a, &b]).await;
    let (frozen, other) = if holder == 0 { (&a, &b) } else { (&b, &a) };
    wait_caught_up(&w.store, &w.chain).await;
    frozen.signal("-STOP");
    let paused = w.pause().await;
    until(
        "the other replica takes the chain and records the pause",
        Duration::from_secs(TTL + 15),
        || async { other.follows().await == ["anvil"] && incidents(&w.store).await.len() == 1 },
    )
    .await;
    frozen.signal("-CONT");
    // The thawed replica finds its lease gone and stops following.
    until(
        "the thawed replica says it lost the lease",
        Duration::from_secs(10),
        || async { frozen.log().contains("lost the lease of a chain") },
    )
    .await;
    let unpaused = w.unpause().await;
    wait_caught_up(&w.store, &w.chain).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let list = incidents(&w.store).await;
    assert_eq!(list.len(), 1, "no second incident: {list:#?}");
    assert_eq!(
        (list[0].start_block, list[0].end_block),
        (paused, Some(unpaused))
    );
    assert_eq!(frozen.follows().await, Vec::<String>::new());
    let report = w.store.verify_history().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[tokio::test]
async fn six_chains_spread_over_the_live_replicas_as_they_join_and_die() {
    let (_nodes, dir, text) = chains(6).await;
    let mut replicas: Vec<Replica> = ["a", "b"]
        .iter()
        .map(|n| Replica::start(dir.path(), n, &text))
        .collect();
    until(
        "two replicas take three chains each",
        Duration::from_secs(40),
        || async { spread(&replicas).await == (vec![3, 3], 6) },
    )
    .await;
    // A third joins: the two hand a chain over each, at a renewal.
    replicas.push(Replica::start(dir.path(), "c", &text));
    until(
        "the chains spread 2/2/2",
        Duration::from_secs(40),
        || async { spread(&replicas).await == (vec![2, 2, 2], 6) },
    )
    .await;
    for r in &replicas[..2] {
        assert!(
            r.log().contains("handing a chain over"),
            "{} handed a chain over",
            r.name
        );
    }
    let mut dead = replicas.remove(2);
    dead.kill9();
    until(
        "the two left take three chains each",
        Duration::from_secs(TTL * 4 + 20),
        || async { spread(&replicas).await == (vec![3, 3], 6) },
    )
    .await;
}

/// How many chains each replica follows, and how many distinct chains are
/// followed in all.
async fn spread(replicas: &[Replica]) -> (Vec<usize>, usize) {
    let mut counts = Vec::new();
    let mut all = Vec::new();
    for r in replicas {
        let f = r.follows().await;
        counts.push(f.len());
        all.extend(f);
    }
    all.sort();
    all.dedup();
    (counts, all.len())
}

/// `n` anvil chains (ids 1000, 1001, …) with a vault each, and a config
/// for replicas of one PostgreSQL history following all of them.
async fn chains(n: u64) -> (Vec<AnvilInstance>, tempfile::TempDir, String) {
    let anvil = haltwatch::demo::find_anvil().unwrap_or_else(|e| panic!("{e}"));
    let nodes: Vec<AnvilInstance> = (0..n)
        .map(|i| {
            Anvil::at(&anvil)
                .args(["--chain-id", &(1000 + i).to_string()])
                .try_spawn()
                .expect("start anvil")
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let url = common::postgres::database(&dir.path().join("history"));
    let mut text = format!(
        "[store]\nurl = \"{url}\"\nlease_ttl_seconds = {TTL}\n\n[api]\nlisten = \"127.0.0.1:0\"\n"
    );
    for (i, node) in nodes.iter().enumerate() {
        let vault = chain(node)
            .await
            .deploy(&bin("DemoPausable"))
            .await
            .unwrap();
        text.push_str(&format!(
            "\n[[chains]]\nname = \"c{i}\"\nchain_id = {}\nrpc = [\"{}\"]\npoll_interval_ms = 100\nstart_block = 0\n",
            1000 + i,
            node.endpoint()
        ));
        text.push_str(
            &protocol(
                &format!("P{i}"),
                "vault",
                vault,
                "oz-pausable.json",
                "oz-pausable",
            )
            .replace("chain = \"anvil\"", &format!("chain = \"c{i}\"")),
        );
    }
    (nodes, dir, text)
}

/// Two monitors of different protocols share one database: the first
/// follows chains c0 and c1, the second only c2. Each counts only the
/// replicas of its own chains, so neither leaves a chain to nobody.
#[tokio::test]
async fn replicas_of_different_chains_on_one_database_follow_every_chain() {
    let (_nodes, dir, text) = chains(3).await;
    // The store and api sections, then one chain with its protocol per part.
    let parts: Vec<&str> = text.split("\n[[chains]]").collect();
    let config = |chains: &[usize]| {
        let mut t = parts[0].to_string();
        for c in chains {
            t.push_str("\n[[chains]]");
            t.push_str(parts[c + 1]);
        }
        t
    };
    let a = Replica::start(dir.path(), "a", &config(&[0, 1]));
    let b = Replica::start(dir.path(), "b", &config(&[2]));
    until(
        "every chain is followed",
        Duration::from_secs(30),
        || async {
            let (mut fa, fb) = (a.follows().await, b.follows().await);
            fa.sort();
            fa == ["c0", "c1"] && fb == ["c2"]
        },
    )
    .await;
}
