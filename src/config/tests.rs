//! The validator, case by case: each broken config names its key and says
//! what was expected; a valid one loads. (`tests/cli.rs` runs the same
//! through `haltwatch check-config`.)

use std::path::Path;

use super::*;

/// A valid chain and protocol, into which the cases write their faults.
fn valid(chain_extra: &str, protocol_extra: &str, rest: &str) -> String {
    let abi = Path::new(env!("CARGO_MANIFEST_DIR")).join("abis/oz-pausable.json");
    format!(
        r#"{rest}
[[chains]]
name = "main"
chain_id = 1
rpc = ["https://eth.example.org"]
{chain_extra}

[[protocols]]
name = "Vault"
chain = "main"
responders = ["oncall@example.org"]
{protocol_extra}
  [[protocols.contracts]]
  name = "vault"
  address = "0x5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f"
  abi = "{}"
  preset = "oz-pausable"
"#,
        abi.display()
    )
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text, Path::new("/tmp/haltwatch-test.toml")) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn each_fault_is_named_by_its_key_with_what_was_expected() {
    let cases: &[(String, &str, &str)] = &[
        (
            valid("confirmations = -1", "", ""),
            "chains",
            "confirmations",
        ),
        (
            valid("poll_interval_ms = \"fast\"", "", ""),
            "chains",
            "poll_interval_ms",
        ),
        (
            valid("", "", "shutdown_timeout_seconds = 0"),
            "shutdown_timeout_seconds",
            "expected whole seconds from 1 to 3600",
        ),
        (
            valid("", "runbook_url = \"javascript:alert(1)\"", ""),
            "protocols[0].runbook_url",
            "expected an http(s) URL",
        ),
        (
            valid("", "", "[api]\npublic_url = \"status.example.org\""),
            "api.public_url",
            "expected an http(s) URL",
        ),
        (
            valid("", "", "[api]\nlisten = \"everywhere\""),
            "api.listen",
            "expected an address like 127.0.0.1:9464",
        ),
        (
            valid("", "", "[store]\nurl = \"mysql://db/haltwatch\""),
            "store.url",
            "expected `sqlite://PATH` or `postgres://…`, found `mysql:`",
        ),
        (
            valid(
                "",
                "",
                "[store]\nurl = \"postgres://hw:s3cret@db/haltwatch\"",
            ),
            "store.url",
            "the URL holds a password: keep it out of the file",
        ),
        (
            valid(
                "",
                "",
                "[store]\nurl = \"postgresql://hw@db/haltwatch?password=s3cret\"",
            ),
            "store.url",
            "the URL holds a password",
        ),
        (
            valid(
                "",
                "",
                "[store]\nurl = \"postgres://hw@db/haltwatch\"\npassword_env = \"HALTWATCH_UNIT_TEST_NO_SUCH_VAR\"",
            ),
            "store.password_env",
            "environment variable `HALTWATCH_UNIT_TEST_NO_SUCH_VAR` is not set",
        ),
        (
            valid(
                "",
                "",
                "[store]\nurl_env = \"HALTWATCH_UNIT_TEST_NO_SUCH_VAR\"",
            ),
            "store.url_env",
            "is not set",
        ),
        (
            valid(
                "",
                "",
                "[store]\nurl = \"postgres://hw@db/haltwatch\"\nlease_ttl_seconds = 1",
            ),
            "store.lease_ttl_seconds",
            "expected seconds from 3 to 3600, found 1",
        ),
        (
            valid(
                "",
                "",
                "[store]\nurl = \"sqlite://h.db\"\nlease_ttl_seconds = 30",
            ),
            "store.lease_ttl_seconds",
            "only a PostgreSQL store takes it",
        ),
        (
            valid(
                "",
                "",
                "[anchor]\nchain = \"nowhere\"\nkey_env = \"HALTWATCH_UNIT_TEST_NO_SUCH_VAR\"",
            ),
            "anchor.chain",
            "no chain named `nowhere`",
        ),
        (
            valid(
                "",
                "",
                "[anchor]\nchain = \"main\"\nkey_env = \"HALTWATCH_UNIT_TEST_NO_SUCH_VAR\"",
            ),
            "anchor.key_env",
            "is not set",
        ),
        (
            valid(
                "",
                "  [[protocols.probes]]\n  contract = \"ghost\"\n  function = \"paused()\"\n  expected = false",
                "",
            ),
            "protocols[0].probes[0].contract",
            "no contract named `ghost`",
        ),
        (
            valid("", "", "[heartbeat]\nurl = \"hc-ping.com/uuid\""),
            "heartbeat.url",
            "expected an http(s) URL",
        ),
        (
            valid(
                "",
                "",
                "[heartbeat]\nurl = \"https://hc-ping.com/x\"\nurl_env = \"X\"",
            ),
            "heartbeat",
            "either url or url_env",
        ),
        (
            valid(
                "",
                "",
                "[heartbeat]\nurl_env = \"HALTWATCH_UNIT_TEST_NO_SUCH_VAR\"",
            ),
            "heartbeat.url_env",
            "is not set",
        ),
        (
            valid(
                "",
                "",
                "[heartbeat]\nurl = \"https://hc-ping.com/x\"\nevery_seconds = 0",
            ),
            "heartbeat.every_seconds",
            "expected seconds from 1 to 86400",
        ),
        (
            valid("", "", "[alerts]\nx = 1"),
            "alerts",
            "unknown section or key",
        ),
        (
            valid("", "", "").replace(
                "chain = \"main\"\nresponders",
                "chain = \"side\"\nresponders",
            ),
            "protocols[0].chain",
            "side",
        ),
        (
            valid("", "", "").replace("0x5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f", "0x5f"),
            "protocols[0].contracts[0].address",
            "expected a 20-byte hex address",
        ),
        (
            valid("", "", "").replace("oz-pausable\"\n", "no-such-preset\"\n"),
            "protocols[0].contracts[0].preset",
            "no-such-preset",
        ),
    ];
    for (text, key, message) in cases {
        let found = problems(text);
        assert!(
            found
                .iter()
                .any(|p| p.key.starts_with(key) && p.to_string().contains(message)),
            "want `{key}: …{message}…`, got {found:#?}"
        );
    }
    assert!(problems(&valid("", "", "")).is_empty(), "the base is valid");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = valid(
        "confirmations = \"x\"",
        "runbook_url = \"ftp://x\"",
        "shutdown_timeout_seconds = 99999",
    );
    assert!(problems(&text).len() >= 3, "{:#?}", problems(&text));
}

/// The production Aave ABIs with one explicit rule, into which the cases
/// write their faults.
fn aave(rule: &str) -> String {
    let abis = Path::new(env!("CARGO_MANIFEST_DIR")).join("abis");
    format!(
        r#"
[[chains]]
name = "main"
chain_id = 1
rpc = ["https://eth.example.org"]

[[protocols]]
name = "Aave"
chain = "main"
  [[protocols.contracts]]
  name = "configurator"
  address = "0x64b761D848206f447Fe2dd461b0c635Ec39EbB27"
  abi = "{configurator}"
  [[protocols.contracts]]
  name = "pool"
  address = "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2"
  abi = "{pool}"
  halt_reverts = [{{ reason = "29", meaning = "RESERVE_PAUSED" }}]
  [[protocols.rules]]
  contract = "configurator"
{rule}
"#,
        configurator = abis.join("aave-v3-configurator.json").display(),
        pool = abis.join("aave-v3-pool.json").display(),
    )
}

#[test]
fn rules_that_read_their_set_from_the_chain_are_checked_against_both_abis() {
    let paused = "  event = \"ReservePaused\"\n  effect = \"toggle\"\n  toggle_arg = \"paused\"\n  scope_arg = \"asset\"\n";
    let ok = format!(
        "{paused}  scopes_from = \"pool.getReservesList()\"\n  scopes_refresh_on = [\"ReserveInitialized\", \"ReserveDropped\"]\n"
    );
    let config = parse(&aave(&ok), Path::new("/tmp/x.toml")).expect("valid");
    let rule = &config.protocols[0].rules[0];
    let from = rule.scopes_from.as_ref().expect("scopes_from");
    assert_eq!((from.contract, from.refresh_on.len()), (1, 2));
    assert_eq!(
        from.refresh_blocks,
        crate::presets::DEFAULT_SCOPES_REFRESH_BLOCKS
    );
    assert_eq!(config.protocols[0].contracts[1].halt_reverts.len(), 1);
    // A written list wins over the chain's.
    let both = format!("{ok}  scopes = [\"0x64b761D848206f447Fe2dd461b0c635Ec39EbB27\"]\n");
    let config = parse(&aave(&both), Path::new("/tmp/x.toml")).expect("valid");
    assert!(config.protocols[0].rules[0].scopes_from.is_none());
    assert!(config.protocols[0].rules[0].complete_set.is_some());

    let cases: &[(String, &str, &str)] = &[
        (
            format!("{paused}  scopes_from = \"getReservesList()\"\n"),
            "protocols[0].rules[0].scopes_from",
            "expected `contract.function()`",
        ),
        (
            format!("{paused}  scopes_from = \"vault.getReservesList()\"\n"),
            "protocols[0].rules[0].scopes_from",
            "no contract named `vault`",
        ),
        (
            format!("{paused}  scopes_from = \"pool.getReserveData(address)\"\n"),
            "protocols[0].rules[0].scopes_from",
            "must take no arguments and return address[]",
        ),
        (
            format!("{paused}  scopes_from = \"pool.noSuchList()\"\n"),
            "protocols[0].rules[0].scopes_from",
            "no function `noSuchList()`",
        ),
        (
            format!("{paused}  scopes_from = \"pool.getReservesList()\"\n  scopes_refresh_on = [\"Listed\"]\n"),
            "protocols[0].rules[0].scopes_refresh_on[0]",
            "no event named `Listed`",
        ),
        (
            format!("{paused}  scopes_from = \"pool.getReservesList()\"\n  scopes_refresh_blocks = 0\n"),
            "protocols[0].rules[0].scopes_refresh_blocks",
            "at least 1",
        ),
        (
            format!("{paused}  scopes_refresh_blocks = 10\n"),
            "protocols[0].rules[0].scopes_from",
            "need scopes_from",
        ),
        (
            "  event = \"ReservePaused\"\n  effect = \"toggle\"\n  toggle_arg = \"paused\"\n  scopes_from = \"pool.getReservesList()\"\n".to_string(),
            "protocols[0].rules[0].scopes_from",
            "must start with an address argument",
        ),
        (
            format!("{paused}  severity = \"critical\"\n"),
            "protocols[0].rules[0].severity",
            "expected \"degraded\" or \"halted\"",
        ),
        (
            "  event = \"ReserveDropped\"\n  effect = \"halt\"\n  halt_when = false\n".to_string(),
            "protocols[0].rules[0].halt_when",
            "only used with effect = \"toggle\"",
        ),
    ];
    for (rule, key, message) in cases {
        let found = problems(&aave(rule));
        assert!(
            found
                .iter()
                .any(|p| p.key.starts_with(key) && p.to_string().contains(message)),
            "want `{key}: …{message}…`, got {found:#?}"
        );
    }
    let empty_meaning = aave(paused).replace("meaning = \"RESERVE_PAUSED\"", "meaning = \"\"");
    assert!(
        problems(&empty_meaning)
            .iter()
            .any(|p| p.key == "protocols[0].contracts[1].halt_reverts[0]"),
        "{:#?}",
        problems(&empty_meaning)
    );
}

#[test]
fn the_aave_presets_pair_up_and_a_frozen_reserve_is_capped() {
    let text = aave("  event = \"ReserveDropped\"\n  effect = \"halt\"\n  scope_arg = \"asset\"\n")
        .replace("abi = \"", "preset = \"PRESET\"\n  abi = \"")
        .replacen("PRESET", "aave-v3-configurator", 1)
        .replacen("PRESET", "aave-v3-pool", 1);
    let config = parse(&text, Path::new("/tmp/x.toml")).expect("valid");
    let p = &config.protocols[0];
    let by_event = |name: &str| {
        p.rules
            .iter()
            .find(|r| r.event.name == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    let paused = by_event("ReservePaused");
    assert_eq!(paused.scopes_from.as_ref().map(|f| f.contract), Some(1));
    let frozen = by_event("ReserveFrozen");
    assert!(frozen.degraded_only);
    assert!(matches!(&frozen.scope, RuleScope::Prefixed(p, _) if p == "frozen"));
    assert!(matches!(
        by_event("ReserveActive").effect,
        Effect::ToggleOff(_)
    ));
    let reasons: Vec<_> = p.contracts[1]
        .halt_reverts
        .iter()
        .map(|h| h.describe())
        .collect();
    assert_eq!(
        reasons,
        [
            "RESERVE_PAUSED (29)",
            "RESERVE_FROZEN (28)",
            "RESERVE_PAUSED (29)"
        ]
    );
}

#[test]
fn a_postgres_store_takes_its_password_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.toml");
    // Set only for this test's own variable name.
    unsafe { std::env::set_var("HALTWATCH_UNIT_TEST_PG_PASSWORD", "pa:ss@word") };
    std::fs::write(
        &path,
        valid(
            "",
            "",
            "[store]\nurl = \"postgres://hw@db.internal:5433/history\"\npassword_env = \"HALTWATCH_UNIT_TEST_PG_PASSWORD\"",
        ),
    )
    .unwrap();
    let config = load(&path).unwrap();
    let StoreBackend::Postgres(pg) = &config.store.backend else {
        panic!("expected a PostgreSQL store: {:?}", config.store);
    };
    assert_eq!(pg.lease_ttl, DEFAULT_LEASE_TTL);
    assert_eq!(
        pg.credentials().unwrap(),
        (
            "postgres://hw@db.internal:5433/history".to_string(),
            Some("pa:ss@word".to_string())
        )
    );
    let shown = config.store.describe();
    assert_eq!(shown, "postgres://db.internal:5433/…");
    assert!(!format!("{:?}", config.store).contains("pa:ss"));
}
