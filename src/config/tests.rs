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
            valid("", "", "[store]\nurl = \"postgres://db/haltwatch\""),
            "store.url",
            "sqlite://",
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
