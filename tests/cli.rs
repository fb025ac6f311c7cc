//! The `haltwatch` binary as a user runs it: check-config and incidents.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use haltwatch::demo::selector;

fn haltwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_haltwatch"))
        .args(args)
        .env_remove("HALTWATCH_CONFIG")
        .env("RUST_LOG", "error")
        .output()
        .expect("run haltwatch")
}

fn check(dir: &Path, text: &str) -> (i32, String) {
    let path = dir.join("check.toml");
    std::fs::write(&path, text).unwrap();
    let out = haltwatch(&["check-config", "--config", path.to_str().unwrap()]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

const CHAIN: &str = r#"
[[chains]]
name = "mainnet"
chain_id = 1
rpc = ["https://rpc.example/v3/SECRETKEY"]
"#;

fn contract(name: &str, address: &str, abi_file: &str, extra: &str) -> String {
    format!(
        "  [[protocols.contracts]]\n  name = \"{name}\"\n  address = \"{address}\"\n  abi = \"{abi_file}\"\n  {extra}\n"
    )
}

#[test]
fn the_shipped_config_is_valid() {
    let out = haltwatch(&[
        "check-config",
        "--config",
        root().join("config/haltwatch.toml").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --config also works after the subcommand and before it.
    let out = haltwatch(&[
        "--config",
        root().join("config/haltwatch.toml").to_str().unwrap(),
        "check-config",
    ]);
    assert!(out.status.success());
}

#[test]
fn check_config_reports_every_problem_at_once_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("truncated.json"),
        r#"[{"type":"event","name":"Paused","inp"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("object.json"), r#"{"bytecode": "0x"}"#).unwrap();
    let pausable = abi("oz-pausable.json");
    let comptroller = abi("compound-comptroller.json");
    let good = "0x0000000000000000000000000000000000000001";
    let text = format!(
        r#"
[store]
url = "sqlite://h.db"
colour = "red"
{CHAIN}
[[chains]]
name = "mainnet"
chain_id = 10
rpc = ["https://other.example"]

[[protocols]]
name = "Lending"
chain = "polygon"
{c1}{c2}{c3}{c4}{c5}{c6}
  [[protocols.rules]]
  contract = "comptroller"
  event = "ActionPaused"
  effect = "toggle"
  toggle_arg = "pauseState"
  [[protocols.rules]]
  contract = "comptroller"
  event = "ActionPaused(string,bool)"
  effect = "toggle"
  toggle_arg = "paused"
  [[protocols.rules]]
  contract = "pool"
  event = "Frozen"
  effect = "halt"
  [[protocols.rules]]
  contract = "ghost"
  event = "Paused"
  effect = "halt"
  [[protocols.rules]]
  contract = "pool"
  event = "Paused"
  effect = "toggle"
  toggle_arg = "account"

[[protocols]]
name = "Lending"
chain = "mainnet"
"#,
        c1 = contract("pool", good, &pausable, "preset = \"oz-pausable\""),
        c2 = contract("pool", good, &pausable, ""),
        c3 = contract("bad-address", "0x12", &pausable, ""),
        c4 = contract("missing-abi", good, "does-not-exist.json", ""),
        c5 = contract(
            "truncated",
            good,
            "truncated.json",
            "preset = \"oz-pausable\""
        ),
        c6 = contract(
            "comptroller",
            good,
            &comptroller,
            "preset = \"not-a-preset\""
        ) + &contract("object", good, "object.json", ""),
    );
    let (code, out) = check(dir.path(), &text);
    assert_eq!(code, 2, "{out}");
    let expected: &[(&str, &str)] = &[
        ("store.colour", "unknown field `colour`"),
        ("chains[1].name", "duplicate chain name `mainnet`"),
        ("protocols[0].chain", "no chain named `polygon`"),
        (
            "protocols[0].contracts[1].name",
            "duplicate contract name `pool`",
        ),
        (
            "protocols[0].contracts[2].address",
            "expected a 20-byte hex address",
        ),
        ("protocols[0].contracts[3].abi", "does-not-exist.json"),
        (
            "protocols[0].contracts[4].abi",
            "not valid JSON (truncated?)",
        ),
        (
            "protocols[0].contracts[5].preset",
            "unknown preset `not-a-preset`",
        ),
        ("protocols[0].contracts[6].abi", "without an `abi` field"),
        ("protocols[0].rules[0].event", "overloaded"),
        (
            "protocols[0].rules[1].toggle_arg",
            "has no argument `paused`",
        ),
        ("protocols[0].rules[2].event", "no event named `Frozen`"),
        (
            "protocols[0].rules[3].contract",
            "no contract named `ghost`",
        ),
        (
            "protocols[0].rules[4].toggle_arg",
            "expected a bool or an integer",
        ),
        ("protocols[1].name", "duplicate protocol name `Lending`"),
    ];
    for (key, message) in expected {
        let found = out
            .lines()
            .any(|l| l.contains(&format!("{key}:")) && l.contains(message));
        assert!(found, "missing `{key}: …{message}…` in:\n{out}");
    }
    assert!(
        out.contains(&format!("{} problem(s)", expected.len())),
        "{out}"
    );
    assert!(out.contains("check.toml"), "names the file: {out}");
    assert!(
        !out.contains("SECRETKEY"),
        "never prints a URL's secret part: {out}"
    );
}

#[test]
fn check_config_names_unknown_keys_bad_values_and_broken_toml() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!("{CHAIN}poll_interval = 5\n"),
            "chains[0].poll_interval",
            "unknown field",
        ),
        (
            "[[chains]]\nname = \"x\"\nchain_id = \"one\"\nrpc = []\n".into(),
            "chains[0].chain_id",
            "invalid type",
        ),
        (
            format!("{CHAIN}start_block = \"earliest\"\n"),
            "chains[0].start_block",
            "expected \"latest\" or a block number",
        ),
        (
            "[[chains]]\nname = \"x\"\nchain_id = 1\nrpc = [\"ftp://h\"]\n".into(),
            "chains[0].rpc[0]",
            "http(s):// or ws(s)://",
        ),
        (
            "[store]\nurl = \"postgres://hw:hunter2@db/h\"\n".into(),
            "store.url",
            "the URL holds a password: keep it out of the file",
        ),
        (
            "[[chains]]\nname = \"x\"\nchain_id = 1\nrpc = [{ url = \"ws://h:1\", max_requests_per_second = 5 }]\n".into(),
            "chains[0].rpc[0].max_requests_per_second",
            "only on http(s) endpoints",
        ),
        (
            "[[chains]]\nname = \"x\"\nchain_id = 1\nrpc = [{ url = \"http://h:1\", max_requests_per_second = 0 }]\n".into(),
            "chains[0].rpc[0].max_requests_per_second",
            "expected a positive number",
        ),
        (
            "[[chains]]\nname = \"x\"\nchain_id = 1\nrpc = [{ url = \"http://h:1\", rps = 5 }]\n".into(),
            "chains[0].rpc[0]",
            "a URL, or a table",
        ),
        (
            format!("{CHAIN}reorg_rescan_blocks = 0\n"),
            "chains[0].reorg_rescan_blocks",
            "expected a positive number of blocks",
        ),
        ("[[chains]\nname = 1".into(), "line 1", "not valid TOML"),
        ("[alerts]\nx = 1\n".into(), "alerts", "unknown section"),
        (
            format!("shutdown_timeout_seconds = 0\n{CHAIN}"),
            "shutdown_timeout_seconds",
            "expected whole seconds from 1 to 3600, found 0",
        ),
    ];
    for (text, key, message) in cases {
        let (code, out) = check(dir.path(), &text);
        assert_eq!(code, 2, "{text}\n{out}");
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("{key}:")) && l.contains(message)),
            "want `{key}: …{message}…` for\n{text}\ngot:\n{out}"
        );
        assert!(!out.contains("hunter2"), "a password was echoed: {out}");
    }
    let (code, out) = check(dir.path(), CHAIN);
    assert_eq!(code, 0, "{out}");
    let (code, out) = check(
        dir.path(),
        &format!("shutdown_timeout_seconds = 30\n{CHAIN}"),
    );
    assert_eq!(code, 0, "{out}");
    let limited = "[[chains]]\nname = \"x\"\nchain_id = 1\nreorg_rescan_blocks = 512\n\
                   rpc = [\"wss://a.example\", { url = \"https://b.example\", max_requests_per_second = 25 }]\n";
    let (code, out) = check(dir.path(), limited);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn incidents_list_and_show_read_the_history_as_table_and_json() {
    let VaultChain {
        chain,
        vault,
        path,
        node: _node,
        dir: _dir,
    } = vault_chain(false, "").await;
    let running = start(&path).await;
    next_block_time(&chain, 2_000_000_000).await;
    let paused = chain.call(vault, selector("pause()")).await.unwrap();
    next_block_time(&chain, 2_000_000_090).await;
    let unpaused = chain.call(vault, selector("unpause()")).await.unwrap();
    chain.call(vault, selector("pause()")).await.unwrap();
    wait_caught_up(&running.store, &chain).await;
    running.stop().await;
    let config = path.to_str().unwrap();

    let out = haltwatch(&["incidents", "list", "--config", config, "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let resolved = &list[1];
    for field in [
        "id",
        "protocol",
        "chain",
        "state",
        "severity",
        "started_at",
        "ended_at",
        "duration_seconds",
        "start_block",
        "end_block",
        "scopes",
        "transitions",
        "evidence",
    ] {
        assert!(resolved.get(field).is_some(), "field {field} in {resolved}");
    }
    assert_eq!(resolved["state"], "resolved");
    assert_eq!(resolved["severity"], "halted");
    assert_eq!(resolved["started_at"], "2033-05-18T03:33:20Z");
    assert_eq!(resolved["ended_at"], "2033-05-18T03:34:50Z");
    assert_eq!(resolved["duration_seconds"], 90);
    assert_eq!(resolved["start_block"], paused.block_number.unwrap());
    assert_eq!(resolved["end_block"], unpaused.block_number.unwrap());
    assert_eq!(
        resolved["evidence"][0]["tx_hash"],
        paused.transaction_hash.to_string()
    );
    assert_eq!(list[0]["state"], "open");
    assert!(list[0]["ended_at"].is_null() && list[0]["duration_seconds"].is_null());

    let open = haltwatch(&[
        "--config",
        config,
        "incidents",
        "list",
        "--open",
        "--format",
        "json",
    ]);
    let open: serde_json::Value = serde_json::from_slice(&open.stdout).unwrap();
    assert_eq!(open.as_array().unwrap().len(), 1);
    let other = haltwatch(&[
        "incidents",
        "list",
        "--protocol",
        "Nope",
        "--format",
        "json",
        "--config",
        config,
    ]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&other.stdout).unwrap(),
        serde_json::json!([])
    );

    let id = resolved["id"].as_i64().unwrap().to_string();
    let show = haltwatch(&["incidents", "show", &id, "--config", config]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("1m 30s (90 s)"), "{text}");
    assert!(
        text.contains(&format!(
            "https://explorer.example/tx/{}",
            paused.transaction_hash
        )),
        "{text}"
    );
    let json = haltwatch(&[
        "incidents",
        "show",
        &id,
        "--format",
        "json",
        "--config",
        config,
    ]);
    let one: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(&one, resolved);

    let table = haltwatch(&["incidents", "list", "--config", config]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("Vault") && table.contains("ongoing") && table.contains("1m 30s"),
        "{table}"
    );

    let missing = haltwatch(&["incidents", "show", "999", "--config", config]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no incident with id 999"));
}

#[tokio::test]
async fn a_busy_catch_up_logs_one_summary_and_a_transition_at_the_head_logs_itself() {
    let VaultChain {
        chain,
        vault,
        path,
        node: _node,
        dir,
    } = vault_chain(false, "").await;
    // Ten incidents before haltwatch starts: one catch-up range of 20 transitions.
    for _ in 0..10 {
        chain.call(vault, selector("pause()")).await.unwrap();
        chain.call(vault, selector("unpause()")).await.unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_haltwatch"))
        .args(["run", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run haltwatch");
    let db = dir.path().join("history.db");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !db.exists() {
        assert!(std::time::Instant::now() < deadline, "no store created");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let store = haltwatch::store::Store::open(&haltwatch::config::load_store(&path).unwrap())
        .await
        .unwrap();
    wait_caught_up(&store, &chain).await;
    // One more at the head.
    chain.call(vault, selector("pause()")).await.unwrap();
    wait_caught_up(&store, &chain).await;
    assert_eq!(incidents(&store).await.len(), 11);
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(child.wait().unwrap().success(), "{log}");

    let summaries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("incident transitions recorded"))
        .collect();
    assert_eq!(summaries.len(), 1, "{log}");
    for field in ["opened=10", "resolved=10", "escalated=0", "evidence_only=0"] {
        assert!(summaries[0].contains(field), "{field} in {}", summaries[0]);
    }
    let each: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("incident transition protocol="))
        .collect();
    assert_eq!(each.len(), 1, "{log}");
    assert!(
        each[0].contains("INFO") && each[0].contains("transition=\"opened\""),
        "{}",
        each[0]
    );
}

#[test]
fn check_config_names_each_bad_responder_address_and_severity() {
    let dir = tempfile::tempdir().unwrap();
    let protocol = |extra: &str| {
        format!(
            "{CHAIN}\n[[protocols]]\nname = \"Lending\"\nchain = \"mainnet\"\nresponders = [\"oncall@example.org\", \"nobody\"]\n{extra}\n"
        )
    };
    let (code, text) = check(
        dir.path(),
        &protocol(
            "severity_responders = { degraded = [\"ops@example.org\"], halted = [\"@example.org\"] }",
        ),
    );
    assert_ne!(code, 0, "{text}");
    for (key, found) in [
        ("protocols[0].responders[1]", "nobody"),
        ("protocols[0].severity_responders.halted[0]", "@example.org"),
    ] {
        assert!(
            text.contains(key)
                && text.contains(&format!("expected an email address, found `{found}`")),
            "{key}: {text}"
        );
    }
    assert!(!text.contains("ops@example.org"), "{text}");
    let (code, text) = check(
        dir.path(),
        &protocol("severity_responders = { critical = [\"cto@example.org\"] }"),
    );
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("severity_responders") && text.contains("unknown field `critical`"),
        "{text}"
    );
}

#[test]
fn check_config_names_a_ca_file_that_is_missing_or_holds_no_certificate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-cert.pem"), "hello").unwrap();
    let email = |ca: &str| {
        format!(
            "{CHAIN}\n[email]\nsmtp_host = \"relay.example\"\nfrom = \"alerts@example.org\"\nca_file = \"{ca}\"\n"
        )
    };
    for (ca, expected) in [
        ("missing.pem", "cannot read"),
        ("not-a-cert.pem", "holds no PEM certificate"),
    ] {
        let (code, text) = check(dir.path(), &email(ca));
        assert_ne!(code, 0, "{text}");
        assert!(text.contains("email.ca_file"), "{text}");
        assert!(text.contains(expected) && text.contains(ca), "{text}");
    }
    let (code, text) = check(
        dir.path(),
        &email(root().join("tests/smtp/tls/ca.pem").to_str().unwrap()),
    );
    assert_eq!(code, 0, "{text}");
}

/// `haltwatch demo` tells its story and nothing else: no library's log line
/// (alloy's "Pubsub service request channel closed" used to land in it).
#[test]
fn the_demo_prints_its_story_and_no_library_log_lines() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_haltwatch"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.lines().filter(|l| l.starts_with("· ")).count() >= 3,
        "{stdout}"
    );
    for line in stdout.lines().chain(stderr.lines()) {
        let log_line = [" TRACE ", " DEBUG ", " INFO ", " WARN ", " ERROR "]
            .iter()
            .any(|level| line.contains(level));
        assert!(
            !log_line || line.contains(" haltwatch"),
            "a library's log line in the demo: {line}"
        );
    }
}

/// `haltwatch init` recognises presets and generic halt patterns from an
/// ABI, says so when there is none, and what it prints passes check-config
/// once pasted into a config.
#[test]
fn init_writes_a_snippet_that_check_config_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            root().join("abis/oz-pausable.json"),
            Some("preset = \"oz-pausable\""),
            true,
        ),
        (
            root().join("abis/fiat-token.json"),
            Some("preset = \"fiat-token\""),
            true,
        ),
        // The production Aave V3 ABIs (from @aave/core-v3): each names the other.
        (
            root().join("abis/aave-v3-configurator.json"),
            Some("preset = \"aave-v3-configurator\""),
            true,
        ),
        (
            root().join("abis/aave-v3-configurator.json"),
            Some("with preset = \"aave-v3-pool\""),
            true,
        ),
        (
            root().join("abis/aave-v3-pool.json"),
            Some("preset = \"aave-v3-pool\"  # recognised by getReservesList()"),
            true,
        ),
        (
            root().join("abis/compound-comptroller.json"),
            Some("preset = \"compound-comptroller\""),
            true,
        ),
        (
            root().join("abis/lido.json"),
            Some("preset = \"lido\""),
            true,
        ),
        // No events: its is_killed() view becomes a probe.
        (
            root().join("contracts/out/FlakyPool.abi"),
            Some("function = \"is_killed()\""),
            true,
        ),
        (root().join("contracts/out/Router.abi"), None, false),
    ];
    for (abi, want, recognised) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_haltwatch"))
            .args(["init", "--chain", "main", "--address"])
            .arg("0x5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f")
            .arg("--abi")
            .arg(&abi)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(want) = want {
            assert!(text.contains(want), "{}: {text}", abi.display());
        }
        assert_eq!(
            text.contains("No halt pattern found"),
            !recognised,
            "{}: {text}",
            abi.display()
        );
        let config = format!("{CHAIN}\n{text}").replace("name = \"mainnet\"", "name = \"main\"");
        let (code, said) = check(dir.path(), &config);
        assert_eq!(
            code,
            0,
            "{}: pasted into a config: {said}\n{text}",
            abi.display()
        );
    }
}
