//! The auditor's tools on a real chain and a real history (SQLite, or
//! PostgreSQL with `HALTWATCH_TEST_STORE=postgres`): backfill,
//! report, export, verify against the chain, and the tamper-evident history.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy::node_bindings::AnvilInstance;
use alloy::primitives::Address;
use alloy::providers::Provider;
use common::*;
use haltwatch::config::StoreBackend;
use haltwatch::demo::{Chain, selector};
use haltwatch::render;
use haltwatch::store::{IncidentFilter, Store};
use sqlx::{Column, Row};

const T0: u64 = 2_000_000_000;

struct World {
    _node: AnvilInstance,
    chain: Chain,
    dir: tempfile::TempDir,
    rpc: String,
    a: Address,
    b: Address,
    head: u64,
}

/// Two protocols; Vault A has a revenue figure for the cost estimate.
fn config(rpc: &str, a: Address, b: Address, store: &str) -> String {
    let vault_a = protocol("Vault A", "vault", a, "oz-pausable.json", "oz-pausable").replacen(
        "responders = [\"oncall@example.org\"]",
        "responders = [\"oncall@example.org\"]\nrevenue_per_hour_usd = 1000.0",
        1,
    );
    let vault_b = protocol("Vault B", "vault", b, "oz-pausable.json", "oz-pausable");
    config_text(rpc, &format!("{vault_a}\n{vault_b}"))
        .replace("sqlite://history.db", &format!("sqlite://{store}"))
}

impl World {
    /// A config over `rpc` (default: anvil's http endpoint) writing to `store`.
    fn config(&self, store: &str, rpc: Option<&str>) -> PathBuf {
        let path = self.dir.path().join(format!("{store}.toml"));
        let text = config(rpc.unwrap_or(&self.rpc), self.a, self.b, store);
        std::fs::write(&path, with_store(self.dir.path(), &text)).unwrap();
        path
    }
}

/// Two vaults, three pause episodes at known times, and a live history of them in `live.db`.
async fn world() -> World {
    let node = anvil(0);
    let chain = chain(&node).await;
    let a = chain.deploy(&bin("DemoPausable")).await.unwrap();
    let b = chain.deploy(&bin("DemoPausable")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let world = World {
        rpc: node.endpoint(),
        _node: node,
        chain,
        dir,
        a,
        b,
        head: 0,
    };
    let live = world.config("live.db", None);
    let running = start(&live).await;
    for (at, vault, call) in [
        (T0, a, "pause()"),
        (T0 + 600, b, "pause()"),
        // Users hitting the paused vault: a failed call, EnforcedPause().
        (T0 + 1000, a, "deposit()"),
        (T0 + 3600, a, "unpause()"),
        (T0 + 4000, b, "unpause()"),
        (T0 + 7200, a, "pause()"),
        (T0 + 7500, a, "unpause()"),
    ] {
        next_block_time(&world.chain, at).await;
        let receipt = world.chain.call(vault, selector(call)).await.unwrap();
        assert_eq!(receipt.status(), call != "deposit()", "{call}");
    }
    mine(&world.chain, 2).await;
    wait_caught_up(&running.store, &world.chain).await;
    running.stop().await;
    let head = world.chain.provider.get_block_number().await.unwrap();
    World { head, ..world }
}

fn haltwatch(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_haltwatch"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "error")
        .output()
        .expect("run haltwatch")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

async fn store(config: &Path) -> Store {
    Store::open(&haltwatch::config::load_store(config).unwrap())
        .await
        .unwrap()
}

async fn listing(config: &Path) -> String {
    let list = store(config)
        .await
        .list(&IncidentFilter {
            include_withdrawn: true,
            ..Default::default()
        })
        .await
        .unwrap();
    render::json(&list)
}

/// One row as `column=value` cells: integers, booleans as 0/1, text.
macro_rules! cells {
    ($row:expr) => {{
        let row = $row;
        (0..row.len())
            .map(|i| {
                let name = row.columns()[i].name().to_string();
                let v = row
                    .try_get::<i64, _>(i)
                    .map(|n| n.to_string())
                    .or_else(|_| row.try_get::<bool, _>(i).map(|b| i64::from(b).to_string()))
                    .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|n| format!("{n:?}")))
                    .or_else(|_| {
                        row.try_get::<Option<String>, _>(i)
                            .map(|s| format!("{s:?}"))
                    })
                    .unwrap_or_default();
                format!("{name}={v}")
            })
            .collect::<Vec<String>>()
    }};
}

/// Every row of the history tables, as text: to compare two stores exactly.
async fn dump(config: &Path) -> String {
    let store = haltwatch::config::load_store(config).unwrap();
    let mut out = String::new();
    for table in ["incidents", "transitions", "evidence", "ledger", "outbox"] {
        let sql = format!("SELECT * FROM {table} ORDER BY 1");
        // The same query and row reading on either backend's pool.
        macro_rules! rows {
            ($pool:expr) => {{
                let pool = $pool.await.unwrap();
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                rows.iter().map(|r| cells!(r)).collect::<Vec<Vec<String>>>()
            }};
        }
        let rows = match &store.backend {
            StoreBackend::Sqlite(path) => rows!(sqlx::SqlitePool::connect(&format!(
                "sqlite://{}",
                path.display()
            ))),
            StoreBackend::Postgres(pg) => {
                rows!(sqlx::PgPool::connect(&pg.credentials().unwrap().0))
            }
        };
        for cells in rows {
            out.push_str(&format!("{table}: {}\n", cells.join(" ")));
        }
    }
    out
}

#[tokio::test]
async fn backfill_rebuilds_the_history_run_recorded_and_a_rerun_changes_nothing() {
    let w = world().await;
    let live = w.config("live.db", None);
    let rebuilt = w.config("rebuilt.db", None);
    let to = w.head.to_string();
    let out = haltwatch(
        &rebuilt,
        &[
            "backfill",
            "--chain",
            "anvil",
            "--from-block",
            "0",
            "--to-block",
            &to,
        ],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!("{} blocks", w.head + 1)),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("backfill: ") || stdout(&out).contains("backfilled"));

    let want = listing(&live).await;
    assert_eq!(
        listing(&rebuilt).await,
        want,
        "backfill = what run saw live"
    );
    assert_eq!(want.matches("\"state\": \"resolved\"").count(), 3);
    assert!(
        want.contains("call reverted: EnforcedPause()"),
        "failed calls are backfilled too"
    );
    // What a backfill read counts as observed: one span, genesis to the head,
    // as following it live did.
    let observed = |db: &Path| {
        let db = db.to_path_buf();
        async move {
            store(&db)
                .await
                .observed(0, u64::MAX)
                .await
                .unwrap()
                .into_iter()
                .map(|o| (o.first_block, o.last_block, o.last_time))
                .collect::<Vec<_>>()
        }
    };
    let spans = observed(&rebuilt).await;
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!((spans[0].0, spans[0].1), (0, w.head));
    assert_eq!(spans, observed(&live).await, "backfill = live");

    let before = dump(&rebuilt).await;
    let again = haltwatch(
        &rebuilt,
        &[
            "backfill",
            "--chain",
            "anvil",
            "--from-block",
            "0",
            "--to-block",
            &to,
        ],
    );
    assert!(again.status.success());
    assert_eq!(
        dump(&rebuilt).await,
        before,
        "a re-run leaves the history byte-identical"
    );

    // Backfill and run share a store without double counting.
    let live_before = dump(&live).await;
    let shared = haltwatch(
        &live,
        &[
            "backfill",
            "--chain",
            "anvil",
            "--from-block",
            "0",
            "--to-block",
            &to,
        ],
    );
    assert!(shared.status.success());
    assert_eq!(dump(&live).await, live_before);
}

#[tokio::test]
async fn backfill_splits_ranges_a_provider_refuses_and_still_gets_everything() {
    let w = world().await;
    let refused = Arc::new(AtomicUsize::new(0));
    let count = refused.clone();
    let proxy = common::proxy::spawn(
        w.rpc.trim_start_matches("http://").to_string(),
        Arc::new(move |req: &serde_json::Value| {
            if req["method"] != "eth_getLogs" {
                return None;
            }
            let block = |k: &str| {
                req["params"][0][k]
                    .as_str()
                    .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
            };
            let (from, to) = (block("fromBlock")?, block("toBlock")?);
            (to - from >= 4).then(|| {
                count.fetch_add(1, Ordering::SeqCst);
                serde_json::json!({
                    "jsonrpc": "2.0", "id": req["id"],
                    "error": {"code": -32005, "message": "query returned more than 10000 results"}
                })
                .to_string()
                .into_bytes()
            })
        }),
    );
    let through_proxy = w.config("proxied.db", Some(&proxy));
    let out = haltwatch(
        &through_proxy,
        &[
            "backfill",
            "--chain",
            "anvil",
            "--from-block",
            "0",
            "--to-block",
            &w.head.to_string(),
        ],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        refused.load(Ordering::SeqCst) > 0,
        "the proxy refused large ranges"
    );
    assert_eq!(
        listing(&through_proxy).await,
        listing(&w.config("live.db", None)).await
    );
}

fn report_json(config: &Path) -> serde_json::Value {
    let since = haltwatch::store::format_time(T0 - 3600);
    let until = haltwatch::store::format_time(T0 + 86_400);
    let out = haltwatch(
        config,
        &[
            "report", "--since", &since, "--until", &until, "--format", "json",
        ],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn report_figures_match_hand_computed_durations() {
    let w = world().await;
    let live = w.config("live.db", None);
    let r = report_json(&live);
    // Observed: from the period's start (followed since genesis) to the
    // newest block; the rest of the day after it was not watched.
    let last = w
        .chain
        .provider
        .get_block_by_number(w.head.into())
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp;
    let observed = (last - (T0 - 3600)) as f64;
    let a = &r["protocols"][0];
    assert_eq!(a["protocol"], "Vault A");
    assert_eq!(a["incidents"], 2);
    assert_eq!(a["halted_seconds"], 3600 + 300);
    assert_eq!(a["degraded_seconds"], 0);
    assert_eq!(a["observed_seconds"].as_f64(), Some(observed));
    let coverage = a["coverage_percent"].as_f64().unwrap();
    assert!((coverage - 100.0 * observed / (3600.0 + 86_400.0)).abs() < 1e-9);
    let uptime = a["uptime_percent"].as_f64().unwrap();
    assert!(
        (uptime - 100.0 * (observed - 3900.0) / observed).abs() < 1e-9,
        "{uptime}"
    );
    assert_eq!(a["mttr_seconds"], 1950.0);
    assert_eq!(a["longest_halt_seconds"], 3600);
    let cost = a["estimated_cost_usd"].as_f64().unwrap();
    assert!((cost - 1000.0 * 3900.0 / 3600.0).abs() < 1e-6, "{cost}");
    let b = &r["protocols"][1];
    assert_eq!(
        (b["incidents"].as_u64(), b["halted_seconds"].as_u64()),
        (Some(1), Some(3400))
    );
    assert!(b["estimated_cost_usd"].is_null());
    let head = &r["history_head"];
    assert!(head["records"].as_u64().unwrap() >= 9, "{head}");

    let (since, until) = (
        haltwatch::store::format_time(T0 - 3600),
        haltwatch::store::format_time(T0 + 86_400),
    );
    let md = haltwatch(
        &live,
        &[
            "report", "--since", &since, "--until", &until, "--format", "markdown",
        ],
    );
    let md = stdout(&md);
    assert!(md.contains("| Vault A | anvil | 2 |"), "{md}");
    assert!(
        md.contains(head["hash"].as_str().unwrap()),
        "the report prints the head hash: {md}"
    );
}

#[tokio::test]
async fn csv_export_parses_back_into_the_incidents() {
    let w = world().await;
    let live = w.config("live.db", None);
    let out = haltwatch(&live, &["incidents", "export", "--format", "csv"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header, haltwatch::report::CSV_COLUMNS);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3);
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let durations: Vec<&str> = rows.iter().map(|r| r[col("duration_seconds")]).collect();
    assert_eq!(durations, ["3600", "3400", "300"], "oldest first");
    assert_eq!(rows[0][col("protocol")], "Vault A");
    assert_eq!(
        rows[0][col("started_at")],
        haltwatch::store::format_time(T0)
    );
    assert!(rows.iter().all(|r| r.len() == header.len()));

    let jsonl = haltwatch(
        &live,
        &[
            "incidents",
            "export",
            "--format",
            "jsonl",
            "--protocol",
            "Vault A",
        ],
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(jsonl.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["evidence"][0]["event"], "Paused(address)");

    let since = haltwatch::store::format_time(T0 + 5000);
    let late = haltwatch(
        &live,
        &["incidents", "export", "--format", "json", "--since", &since],
    );
    let late: serde_json::Value = serde_json::from_slice(&late.stdout).unwrap();
    assert_eq!(
        late.as_array().unwrap().len(),
        1,
        "only the incident after T0+5000"
    );
}

#[tokio::test]
async fn verify_confirms_the_evidence_and_reports_what_a_reorg_removed() {
    let w = world().await;
    let live = w.config("live.db", None);
    let ok = haltwatch(&live, &["verify", "--all"]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(
        stdout(&ok).contains("3 incident(s) checked, 3 verified"),
        "{}",
        stdout(&ok)
    );

    // The monitor is stopped; the chain drops the last unpause and grows past it.
    let _: serde_json::Value = w
        .chain
        .provider
        .raw_request("anvil_rollback".into(), (3u64,))
        .await
        .unwrap();
    mine(&w.chain, 5).await;
    let bad = haltwatch(&live, &["verify", "--all"]);
    let text = stdout(&bad);
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains("evidence_missing"), "{text}");
    assert!(
        text.contains("3 incident(s) checked, 2 verified, 1 not"),
        "{text}"
    );
    let one = haltwatch(&live, &["verify", "1"]);
    assert!(
        one.status.success(),
        "the first incident still stands: {}",
        stdout(&one)
    );
}

async fn sql(config: &Path, statement: &str) {
    sql_on_store(config, statement).await;
}

#[tokio::test]
async fn editing_deleting_or_inserting_history_rows_is_caught_by_verify_history() {
    let w = world().await;
    let live = w.config("live.db", None);
    let check = |want_ok: bool, needle: &str| {
        let out = haltwatch(&live, &["verify", "--history"]);
        let text = stdout(&out);
        assert_eq!(out.status.success(), want_ok, "{text}");
        assert!(text.contains(needle), "want `{needle}` in:\n{text}");
    };
    check(true, "history intact");

    // The original is kept aside (verify reads only the history's tables).
    sql(
        &live,
        "CREATE TABLE kept AS SELECT args FROM evidence WHERE id = 2",
    )
    .await;
    sql(
        &live,
        "UPDATE evidence SET args = replace(args, '0x', '0x00') WHERE id = 2",
    )
    .await;
    check(false, "evidence 2 was edited");
    sql(
        &live,
        "UPDATE evidence SET args = (SELECT args FROM kept) WHERE id = 2",
    )
    .await;
    check(true, "history intact");

    sql(&live, "DELETE FROM transitions WHERE id = 3").await;
    check(false, "transition 3 was deleted");
    sql(
        &live,
        "INSERT INTO evidence (id, incident_id, chain_id, contract, contract_name, tx_hash,
           block_number, block_hash, block_timestamp, log_index, event, args, changes)
         SELECT (SELECT MAX(id) + 1 FROM evidence), incident_id, chain_id, contract,
           contract_name, tx_hash, block_number, block_hash, block_timestamp, 99, event, args,
           changes FROM evidence WHERE id = 1",
    )
    .await;
    check(false, "was inserted without a ledger record");
}

/// Every mail carries the history head (header, text and HTML): each
/// responder's mailbox is a witness. Erasing the newest incident with its
/// rows and ledger records leaves a consistent prefix that `verify
/// --history` accepts; against the head of the last mail it fails.
#[tokio::test]
async fn every_mail_carries_the_history_head_and_a_truncated_history_fails_against_it() {
    let smtp = common::smtp::SmtpServer::start(&[]);
    let w = vault_chain(false, &common::smtp::email_section(smtp.port, "")).await;
    let running = start(&w.path).await;
    for (i, call) in ["pause()", "unpause()", "pause()"].iter().enumerate() {
        w.chain.call(w.vault, selector(call)).await.unwrap();
        // One mail per transition, each written after the one before.
        // (Counted from the start: the mail may arrive before the count
        // could be read after the call.)
        smtp.wait_mails(i + 1).await;
    }
    wait_caught_up(&running.store, &w.chain).await;
    running.stop().await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 3);
    let mut heads = Vec::new();
    for m in &mails {
        let head = m
            .header("X-Haltwatch-History-Head")
            .expect("the head header")
            .to_string();
        let (n, hash) = head.split_once(' ').expect("`N 0xHASH`");
        let line = format!("History head: {hash} (record {n})");
        assert_eq!(
            m.text().matches(&line).count(),
            2,
            "in the text and the HTML part: {}",
            m.text()
        );
        heads.push((n.parse::<i64>().unwrap(), head));
    }
    assert!(
        heads.windows(2).all(|h| h[0].0 < h[1].0),
        "the head moves with the history: {heads:?}"
    );
    let verify = |head: &str| {
        let out = haltwatch(&w.path, &["verify", "--history", "--head", head]);
        (out.status.success(), stdout(&out))
    };
    let last = heads[2].1.clone();
    let (ok, text) = verify(&last);
    assert!(ok && text.contains("still holds head"), "{text}");
    // The hash alone is enough.
    let (ok, text) = verify(last.split_once(' ').unwrap().1);
    assert!(ok, "{text}");

    // Erase the newest incident: its rows, its mail, its ledger records.
    let kept = heads[1].0;
    for statement in [
        format!("DELETE FROM ledger WHERE seq > {kept}"),
        "DELETE FROM evidence WHERE incident_id = 2".into(),
        "DELETE FROM transitions WHERE incident_id = 2".into(),
        "DELETE FROM outbox WHERE incident_id = 2".into(),
        "DELETE FROM incidents WHERE id = 2".into(),
    ] {
        sql(&w.path, &statement).await;
    }
    let out = haltwatch(&w.path, &["verify", "--history"]);
    assert!(
        out.status.success(),
        "a consistent prefix passes on its own: {}",
        stdout(&out)
    );
    let (ok, text) = verify(&last);
    assert!(
        !ok && text.contains("TRUNCATED OR REWRITTEN"),
        "the last mail's head catches it: {text}"
    );
    let (ok, text) = verify(&heads[1].1);
    assert!(ok, "an older head is still there: {text}");
    // A head that names the wrong record is not taken for the right one.
    let (n, hash) = heads[1].1.split_once(' ').unwrap();
    let (ok, _) = verify(&format!("{} {hash}", n.parse::<i64>().unwrap() - 1));
    assert!(!ok);
}

/// Every column of an incident row that readers see is covered: each edit
/// is named by `verify --history` with the incident and the column, and
/// putting the value back makes the history intact again. (Durations and
/// scopes are not stored: they are computed from the covered times and
/// evidence whenever an incident is read.)
#[tokio::test]
async fn editing_any_column_of_an_incident_row_is_named_by_verify_history() {
    let w = world().await;
    let live = w.config("live.db", None);
    let verify = || {
        let out = haltwatch(&live, &["verify", "--history"]);
        (out.status.success(), stdout(&out))
    };
    let (ok, text) = verify();
    assert!(ok && text.contains("history intact"), "{text}");
    assert!(!text.contains("not covered"), "{text}");
    for (column, edit) in [
        ("state", "'open'"),
        ("severity", "'degraded'"),
        ("started_at", "started_at - 7"),
        ("ended_at", "ended_at + 7"),
        ("start_block", "start_block + 1"),
        ("end_block", "NULL"),
        ("planned", "TRUE"),
        ("protocol", "'Vault B'"),
        ("chain", "'mainnet'"),
        ("chain_id", "1"),
        ("key", "'0123456789abcdef'"),
    ] {
        sql(
            &live,
            "CREATE TABLE kept AS SELECT * FROM incidents WHERE id = 1",
        )
        .await;
        sql(
            &live,
            &format!("UPDATE incidents SET {column} = {edit} WHERE id = 1"),
        )
        .await;
        let (ok, text) = verify();
        assert!(!ok, "{column}: {text}");
        assert!(
            text.contains(&format!("incident 1: {column} is ")),
            "{column} not named:\n{text}"
        );
        sql(
            &live,
            &format!("UPDATE incidents SET {column} = (SELECT {column} FROM kept) WHERE id = 1"),
        )
        .await;
        sql(&live, "DROP TABLE kept").await;
        let (ok, text) = verify();
        assert!(ok, "{column} restored: {text}");
    }
    // A row no ledger record covers.
    sql(
        &live,
        "INSERT INTO incidents (id, key, protocol, chain, chain_id, state, severity, started_at,
           start_block, planned)
         VALUES ((SELECT MAX(id) + 1 FROM incidents), 'feedfacefeedface', 'Vault A', 'anvil',
           31337, 'resolved', 'halted', 1, 1, FALSE)",
    )
    .await;
    let (ok, text) = verify();
    assert!(
        !ok && text.contains("was inserted without a ledger record"),
        "{text}"
    );
}

/// A report over a period that starts before monitoring began claims
/// uptime only for what was observed: a monitor started at Vault A's first
/// pause saw it halted 3,900 s of ~7,500 s, about 48%, not 96%.
#[tokio::test]
async fn uptime_is_claimed_only_for_the_time_that_was_observed() {
    let w = world().await;
    let live = w.config("live.db", None);
    let first_pause = store(&live)
        .await
        .incident(1)
        .await
        .unwrap()
        .unwrap()
        .start_block;
    let late = w.config("late.db", None);
    let text = std::fs::read_to_string(&late)
        .unwrap()
        .replace("start_block = 0", &format!("start_block = {first_pause}"));
    std::fs::write(&late, text).unwrap();
    let running = start(&late).await;
    wait_caught_up(&running.store, &w.chain).await;
    running.stop().await;
    let (since, until) = (
        haltwatch::store::format_time(T0 - 86_400),
        haltwatch::store::format_time(T0 + 7_500),
    );
    let out = haltwatch(
        &late,
        &[
            "report", "--since", &since, "--until", &until, "--format", "json",
        ],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &r["protocols"][0];
    assert_eq!(a["halted_seconds"], 3900);
    assert_eq!(a["observed_seconds"], 7_500, "from the first pause on");
    let coverage = a["coverage_percent"].as_f64().unwrap();
    assert!(coverage < 100.0 && (coverage - 100.0 * 7_500.0 / 93_900.0).abs() < 1e-9);
    let uptime = a["uptime_percent"].as_f64().unwrap();
    assert!(
        (uptime - 100.0 * 3_600.0 / 7_500.0).abs() < 1e-9,
        "48%, not 96%: {uptime}"
    );
    let table = stdout(&haltwatch(
        &late,
        &["report", "--since", &since, "--until", &until],
    ));
    assert!(
        table.contains("(8.0%)"),
        "the table shows the coverage: {table}"
    );
}
