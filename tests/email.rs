//! Responders are emailed through a real SMTP server process.

mod common;

use std::time::Duration;

use alloy::sol;
use alloy::sol_types::SolCall;
use common::smtp::{SmtpServer, email_section, free_port};
use common::*;
use haltwatch::demo::selector;
use haltwatch::store::{IncidentState, OutboxRecord, Store};

sol! {
    function setGlobalPaused(string action, bool state);
}

/// The outbox rows whose status is `status`.
async fn outbox_in(store: &Store, status: &str) -> Vec<OutboxRecord> {
    let rows = store.outbox().await.unwrap();
    rows.into_iter().filter(|r| r.status == status).collect()
}

/// anvil + the demo vault + a config mailing oncall@example.org via `port`.
async fn setup(port: u16, email_extra: &str, more: &str) -> VaultChain {
    vault_chain(
        false,
        &format!("{more}\n{}", email_section(port, email_extra)),
    )
    .await
}

async fn wait_outbox(
    store: &Store,
    what: &str,
    ok: impl Fn(&[haltwatch::store::OutboxRecord]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rows = store.outbox().await.unwrap();
        if ok(&rows) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {rows:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_pause_mails_the_responders_once_and_the_unpause_mails_in_the_same_thread() {
    let smtp = SmtpServer::start(&[]);
    let s = setup(smtp.port, "", "").await;
    let running = start(&s.path).await;
    next_block_time(&s.chain, 2_000_000_000).await;
    s.chain.call(s.vault, selector("pause()")).await.unwrap();
    let mails = smtp.wait_mails(1).await;
    let opened = &mails[0];
    let account = s.chain.from.to_checksum(None);
    assert_eq!(
        opened.subject(),
        format!("[HALTED] Vault on anvil: Paused(account={account}) since 03:33 UTC")
    );
    assert_eq!(opened.header("X-Envelope-To"), Some("oncall@example.org"));
    assert_eq!(opened.header("To"), Some("oncall@example.org"));
    assert!(
        opened
            .header("From")
            .unwrap()
            .contains("alerts@haltwatch.test")
    );
    let root_id = opened.header("Message-ID").unwrap().to_string();
    assert!(root_id.ends_with("@haltwatch.test>"), "{root_id}");
    assert!(opened.header("In-Reply-To").is_none());
    let body = opened.text();
    assert!(body.contains("Content-Type: text/plain") && body.contains("Content-Type: text/html"));
    assert!(
        body.contains("https://explorer.example/tx/0x"),
        "explorer link: {body}"
    );

    next_block_time(&s.chain, 2_000_003_600).await;
    s.chain.call(s.vault, selector("unpause()")).await.unwrap();
    let mails = smtp.wait_mails(2).await;
    let resolved = &mails[1];
    assert_eq!(
        resolved.subject(),
        format!("[RESOLVED] Vault on anvil: Paused(account={account}) resolved after 1h 00m 00s")
    );
    assert_eq!(resolved.header("In-Reply-To"), Some(root_id.as_str()));
    assert_eq!(resolved.header("References"), Some(root_id.as_str()));
    assert_ne!(resolved.header("Message-ID"), Some(root_id.as_str()));
    assert!(resolved.text().contains("Duration:  1h 00m 00s (3600 s)"));
    running.stop().await;
    assert_eq!(smtp.mails().len(), 2, "exactly one mail per transition");
}

#[tokio::test]
async fn temporary_smtp_failures_are_retried_and_the_mail_is_delivered_once() {
    let smtp = SmtpServer::start(&["--fail", "451,421"]);
    let s = setup(smtp.port, "", "").await;
    let running = start(&s.path).await;
    s.chain.call(s.vault, selector("pause()")).await.unwrap();
    smtp.wait_mails(1).await;
    wait_outbox(&running.store, "sent after 3 attempts", |rows| {
        rows.len() == 1 && rows[0].status == "sent" && rows[0].attempts == 3
    })
    .await;
    let row = &running.store.outbox().await.unwrap()[0];
    assert!(
        row.last_error.as_deref().unwrap_or("").contains("421"),
        "{row:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.mails().len(), 1);
    running.stop().await;
}

#[tokio::test]
async fn a_permanent_rejection_marks_the_mail_failed_and_the_monitor_goes_on() {
    let smtp = SmtpServer::start(&["--always", "550"]);
    let s = setup(smtp.port, "", "").await;
    let running = start(&s.path).await;
    s.chain.call(s.vault, selector("pause()")).await.unwrap();
    wait_outbox(&running.store, "failed", |rows| {
        rows.len() == 1 && rows[0].status == "failed"
    })
    .await;
    // No retry loop: the attempt count stays at one.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let rows = running.store.outbox().await.unwrap();
    assert_eq!(rows[0].attempts, 1);
    assert!(
        rows[0].last_error.as_deref().unwrap().contains("550"),
        "{rows:?}"
    );
    // The pipeline still follows the chain.
    let r = s.chain.call(s.vault, selector("unpause()")).await.unwrap();
    wait_processed(&running.store, r.block_number.unwrap()).await;
    assert_eq!(
        incidents(&running.store).await[0].state,
        IncidentState::Resolved
    );
    running.stop().await;
}

#[tokio::test]
async fn mail_waits_while_smtp_is_down_and_is_delivered_once_it_is_back() {
    let port = free_port();
    let s = setup(port, "", "").await;
    let running = start(&s.path).await;
    s.chain.call(s.vault, selector("pause()")).await.unwrap();
    wait_outbox(&running.store, "a failed attempt", |rows| {
        rows.len() == 1 && rows[0].attempts >= 1 && rows[0].status == "pending"
    })
    .await;
    let smtp = SmtpServer::start_on(port, &[]);
    let mails = smtp.wait_mails(1).await;
    assert!(mails[0].subject().starts_with("[HALTED] Vault"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.mails().len(), 1);
    running.stop().await;
}

#[tokio::test]
async fn a_mail_pending_at_shutdown_is_sent_once_after_restart_with_the_same_message_id() {
    let port = free_port();
    let s = setup(port, "", "").await;
    let running = start(&s.path).await;
    s.chain.call(s.vault, selector("pause()")).await.unwrap();
    wait_outbox(&running.store, "queued", |rows| rows.len() == 1).await;
    let queued_id = running.store.outbox().await.unwrap()[0].message_id.clone();
    running.stop().await;

    let smtp = SmtpServer::start_on(port, &[]);
    let running = start(&s.path).await;
    let mails = smtp.wait_mails(1).await;
    assert!(
        mails[0].header("Message-ID").unwrap().contains(&queued_id),
        "{:?} vs {queued_id}",
        mails[0].header("Message-ID")
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    running.stop().await;
    assert_eq!(smtp.mails().len(), 1);
}

/// anvil + Compound's comptroller mock, monitored with its preset and
/// mailing through `smtp_port`, running. Bind `_node` and `_dir`: they
/// keep the node and the folder alive.
struct Compound {
    _node: alloy::node_bindings::AnvilInstance,
    chain: haltwatch::demo::Chain,
    comptroller: alloy::primitives::Address,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    running: Running,
}

async fn compound(smtp_port: u16) -> Compound {
    let node = anvil(0);
    let chain = chain(&node).await;
    let comptroller = chain.deploy(&bin("ComptrollerMock")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        &node.endpoint(),
        &format!(
            "{}\n{}",
            protocol(
                "Compound",
                "comptroller",
                comptroller,
                "compound-comptroller.json",
                "compound-comptroller"
            ),
            email_section(smtp_port, "")
        ),
    );
    let path = write_config(dir.path(), &text);
    let running = start(&path).await;
    Compound {
        _node: node,
        chain,
        comptroller,
        _dir: dir,
        path,
        running,
    }
}

#[tokio::test]
async fn hostile_event_strings_cannot_inject_headers_or_html() {
    let smtp = SmtpServer::start(&[]);
    let Compound {
        _node,
        chain,
        comptroller,
        _dir,
        running,
        ..
    } = compound(smtp.port).await;
    let evil = "Mint\r\nBcc: evil@attacker.example\r\nX-Injected: 1\r\n<script>alert(1)</script>";
    chain
        .call(
            comptroller,
            setGlobalPausedCall {
                action: evil.into(),
                state: true,
            }
            .abi_encode(),
        )
        .await
        .unwrap();
    let mails = smtp.wait_mails(1).await;
    let m = &mails[0];
    assert!(
        m.header("Bcc").is_none() && m.header("X-Injected").is_none(),
        "{:?}",
        m.headers
    );
    assert_eq!(
        m.header("X-Envelope-To"),
        Some("oncall@example.org"),
        "no extra recipient"
    );
    assert!(!m.subject().contains('\r') && !m.subject().contains('\n'));
    assert!(
        m.subject()
            .starts_with("[DEGRADED] Compound on anvil: ActionPaused(action=Mint"),
        "{}",
        m.subject()
    );
    let body = m.text();
    let html = body
        .split("Content-Type: text/html")
        .nth(1)
        .expect("an HTML part");
    assert!(
        !html.contains("<script>"),
        "raw script in the HTML part: {html}"
    );
    assert!(html.contains("&lt;script&gt;"), "escaped in HTML: {html}");
    let plain = body.split("Content-Type: text/html").next().unwrap();
    assert!(
        !plain.contains("Mint\r\nBcc") && plain.contains("Mint\\u{d}\\u{a}Bcc"),
        "control characters escaped: {plain}"
    );
    running.stop().await;
}

#[tokio::test]
async fn transitions_within_group_wait_go_out_as_one_mail() {
    let smtp = SmtpServer::start(&[]);
    let node = anvil(0);
    let chain = chain(&node).await;
    let lido = chain.deploy(&bin("LidoMock")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        &node.endpoint(),
        &format!(
            "{}\n{}",
            protocol("Lido", "steth", lido, "lido.json", "lido"),
            email_section(smtp.port, "")
                .replace("group_wait_seconds = 0", "group_wait_seconds = 2")
        ),
    );
    let path = write_config(dir.path(), &text);
    let running = start(&path).await;
    chain.call(lido, selector("pauseStaking()")).await.unwrap(); // opened (degraded)
    chain.call(lido, selector("stop()")).await.unwrap(); // escalated (halted)
    let mails = smtp.wait_mails(1).await;
    assert!(
        mails[0].subject().starts_with("[HALTED] Lido on anvil"),
        "{}",
        mails[0].subject()
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(smtp.mails().len(), 1, "opened + escalated coalesced");
    let rows = running.store.outbox().await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.status == "sent" && r.sent_as == rows[0].sent_as)
    );
    running.stop().await;
}

#[tokio::test]
async fn severity_responders_hear_of_an_incident_from_the_mail_that_it_reached_their_severity() {
    let smtp = SmtpServer::start(&[]);
    let node = anvil(0);
    let chain = chain(&node).await;
    let (lido, quiet) = (
        chain.deploy(&bin("LidoMock")).await.unwrap(),
        chain.deploy(&bin("LidoMock")).await.unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let halted = "severity_responders = { halted = [\"cto@example.org\", \"ONCALL@example.org\"] }";
    let text = config_text(
        &node.endpoint(),
        &format!(
            "{}\n{}\n{}",
            protocol("Lido", "steth", lido, "lido.json", "lido").replace(
                "responders = [\"oncall@example.org\"]",
                &format!("responders = [\"oncall@example.org\"]\n{halted}")
            ),
            // Nobody but the halted list.
            protocol("Quiet", "steth", quiet, "lido.json", "lido").replace(
                "responders = [\"oncall@example.org\"]",
                "severity_responders = { halted = [\"cto@example.org\"] }"
            ),
            email_section(smtp.port, "")
        ),
    );
    let path = write_config(dir.path(), &text);
    let running = start(&path).await;
    // Each protocol: opened (degraded), escalated (halted), resolved.
    let mut expected = 0;
    for call in ["pauseStaking()", "stop()", "resume()"] {
        for contract in [lido, quiet] {
            chain.call(contract, selector(call)).await.unwrap();
        }
        // Quiet's degraded opening goes to nobody.
        expected += if call == "pauseStaking()" { 1 } else { 2 };
        smtp.wait_mails(expected).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent: Vec<(String, String)> = smtp
        .mails()
        .iter()
        .map(|m| {
            let state = m
                .subject()
                .split(']')
                .next()
                .unwrap_or_default()
                .to_string();
            let protocol = m.subject().split_whitespace().nth(1).unwrap_or_default();
            (
                format!("{state}] {protocol}"),
                m.header("X-Envelope-To").unwrap_or_default().to_string(),
            )
        })
        .collect();
    let both = "oncall@example.org, cto@example.org";
    let mut want = vec![
        (
            "[DEGRADED] Lido".to_string(),
            "oncall@example.org".to_string(),
        ),
        ("[HALTED] Lido".to_string(), both.to_string()),
        ("[HALTED] Quiet".to_string(), "cto@example.org".to_string()),
        ("[RESOLVED] Lido".to_string(), both.to_string()),
        (
            "[RESOLVED] Quiet".to_string(),
            "cto@example.org".to_string(),
        ),
    ];
    let mut got = sent.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{sent:?}");
    // The mail nobody was to receive is kept as cancelled, with the reason.
    let quiet_opened = outbox_in(&running.store, "cancelled").await;
    assert_eq!(quiet_opened.len(), 1, "{quiet_opened:?}");
    assert_eq!(quiet_opened[0].kind, "opened");
    assert_eq!(
        quiet_opened[0].last_error.as_deref(),
        Some("nobody is mailed about degraded incidents")
    );
    running.stop().await;
}

#[tokio::test]
async fn beyond_max_per_hour_one_digest_carries_the_overflow() {
    let smtp = SmtpServer::start(&[]);
    let s = setup(smtp.port, "", "").await;
    let text = std::fs::read_to_string(&s.path)
        .unwrap()
        .replace("max_per_hour = 20", "");
    let text = text.replace("[email]", "[email]\nmax_per_hour = 2");
    std::fs::write(&s.path, text).unwrap();
    let running = start(&s.path).await;
    for (n, call) in ["pause()", "unpause()", "pause()"].iter().enumerate() {
        s.chain.call(s.vault, selector(call)).await.unwrap();
        smtp.wait_mails(n + 1).await;
    }
    s.chain.call(s.vault, selector("unpause()")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mails = smtp.mails();
    assert_eq!(
        mails.len(),
        3,
        "two mails, one digest, then silence for the hour"
    );
    assert!(
        mails[2].subject().starts_with("[DIGEST] Vault"),
        "{}",
        mails[2].subject()
    );
    let pending = outbox_in(&running.store, "pending").await.len();
    assert_eq!(pending, 1, "the last transition waits for the window");
    running.stop().await;
}

#[tokio::test]
async fn a_halt_inside_a_maintenance_window_is_recorded_as_planned_and_pages_nobody() {
    let smtp = SmtpServer::start(&[]);
    let maintenance = r#"
[[maintenance]]
protocol = "Vault"
start = "2033-05-18T03:00:00Z"
end = "2033-05-18T04:00:00Z"
"#;
    let s = setup(smtp.port, "", maintenance).await;
    let running = start(&s.path).await;
    next_block_time(&s.chain, 2_000_000_000).await; // 2033-05-18T03:33:20Z
    s.chain.call(s.vault, selector("pause()")).await.unwrap();
    let r = s.chain.call(s.vault, selector("unpause()")).await.unwrap();
    wait_processed(&running.store, r.block_number.unwrap()).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(smtp.mails().is_empty());
    assert!(running.store.outbox().await.unwrap().is_empty());
    let i = &incidents(&running.store).await[0];
    assert!(i.planned && i.state == IncidentState::Resolved, "{i:#?}");
    running.stop().await;
}

#[test]
fn send_test_email_checks_the_settings_end_to_end() {
    let smtp = SmtpServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &email_section(smtp.port, ""));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_haltwatch"))
        .args(["send-test-email", "--to", "someone@example.org", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("accepted: 250"), "{stdout}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails[0].header("X-Envelope-To"),
        Some("someone@example.org")
    );
}

/// `tls = mode` against a server using the test certificate: refused while
/// haltwatch does not trust the test CA, sent once `ca_file` names it.
fn tls_is_checked_against_the_configured_ca(mode: &str, server_flags: &[&str]) {
    let tls = root().join("tests/smtp/tls");
    let (cert, key) = (tls.join("server.pem"), tls.join("server.key"));
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(server_flags);
    let smtp = SmtpServer::start(&args);
    let dir = tempfile::tempdir().unwrap();
    let send = |extra: &str| {
        let text =
            email_section(smtp.port, extra).replace("tls = \"none\"", &format!("tls = \"{mode}\""));
        let path = write_config(dir.path(), &text);
        std::process::Command::new(env!("CARGO_BIN_EXE_haltwatch"))
            .args(["send-test-email", "--to", "someone@example.org", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    // A server whose certificate no trusted CA signed is refused.
    let refused = send("");
    let text = String::from_utf8_lossy(&refused.stdout).to_string()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert!(smtp.mails().is_empty());
    // Trusting the test CA, the mail goes over the encrypted connection
    // (the server takes mail over nothing else).
    let ca = tls.join("ca.pem");
    let sent = send(&format!("ca_file = \"{}\"", ca.display()));
    let text =
        String::from_utf8_lossy(&sent.stdout).to_string() + &String::from_utf8_lossy(&sent.stderr);
    assert!(sent.status.success(), "{text}");
    assert!(text.contains("accepted: 250"), "{text}");
    assert_eq!(smtp.mails().len(), 1);
}

#[test]
fn starttls_is_required_and_the_server_is_checked_against_the_configured_ca() {
    tls_is_checked_against_the_configured_ca("starttls", &[]);
}

#[test]
fn implicit_tls_is_checked_against_the_configured_ca() {
    tls_is_checked_against_the_configured_ca("tls", &["--implicit-tls"]);
}

#[tokio::test]
async fn responders_told_of_an_incident_a_reorg_removed_are_told_it_was_withdrawn() {
    let smtp = SmtpServer::start(&[]);
    let s = setup(smtp.port, "", "").await;
    let running = start(&s.path).await;
    mine(&s.chain, 2).await;
    s.chain.call(s.vault, selector("pause()")).await.unwrap();
    let opened = smtp.wait_mails(1).await.remove(0);
    let _: serde_json::Value = alloy::providers::Provider::raw_request(
        &s.chain.provider,
        "anvil_rollback".into(),
        (1u64,),
    )
    .await
    .unwrap();
    mine(&s.chain, 3).await;
    let mails = smtp.wait_mails(2).await;
    let withdrawn = &mails[1];
    assert!(
        withdrawn
            .subject()
            .starts_with("[WITHDRAWN] Vault on anvil"),
        "{}",
        withdrawn.subject()
    );
    assert_eq!(withdrawn.header("In-Reply-To"), opened.header("Message-ID"));
    running.stop().await;
    assert_eq!(smtp.mails().len(), 2);
}

/// An event string with a right-to-left override (U+202E), a bidi isolate
/// (U+2066) and 5,000 bytes more: escaped in the mail, the CLI table and the
/// CSV export, and stored capped at 4 KiB with a marker.
#[tokio::test]
async fn bidi_controls_and_oversized_event_strings_are_escaped_and_capped_everywhere() {
    let smtp = SmtpServer::start(&[]);
    let Compound {
        _node,
        chain,
        comptroller,
        _dir,
        path,
        running,
    } = compound(smtp.port).await;
    let evil = format!("Mint\u{202e}fdp.exe\u{2066}x{}", "A".repeat(5_000));
    chain
        .call(
            comptroller,
            setGlobalPausedCall {
                action: evil.clone(),
                state: true,
            }
            .abi_encode(),
        )
        .await
        .unwrap();
    let raw = ['\u{202e}', '\u{2066}'];
    let escaped = ["\\u{202e}", "\\u{2066}"];

    // The mail: subject and body escape both; the decoded body holds neither.
    let mails = smtp.wait_mails(1).await;
    let m = &mails[0];
    let subject = m.decoded_subject();
    for e in escaped {
        assert!(subject.contains(e), "{subject}");
    }
    assert!(!subject.contains(raw), "{subject}");
    let bytes: Vec<u8> = m.text().chars().map(|c| c as u32 as u8).collect();
    let body = String::from_utf8_lossy(&bytes);
    assert!(!body.contains(raw), "a raw bidi control in the mail body");
    assert!(body.contains(escaped[0]) && body.contains(escaped[1]));

    // Stored capped, with the marker.
    let list = incidents(&running.store).await;
    let action = &list[0].evidence[0].args[0].value;
    assert!(
        action.len() <= haltwatch::decode::MAX_ARG_BYTES + 64
            && action.ends_with(&haltwatch::decode::truncated_marker(evil.len())),
        "stored {} bytes: …{}",
        action.len(),
        &action[action.len().saturating_sub(60)..]
    );
    running.stop().await;

    // The CLI table and the CSV export.
    for args in [
        &["incidents", "list"][..],
        &["incidents", "show", "1"],
        &["incidents", "export", "--format", "csv"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_haltwatch"))
            .args(args)
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            !text.contains(raw),
            "{args:?} prints a raw bidi control:\n{text}"
        );
        assert!(
            text.contains(escaped[0]),
            "{args:?} shows the string, escaped:\n{text}"
        );
    }
}

/// With `[api] public_url` and a protocol's `runbook_url`, every mail links
/// the incident's page and the runbook (text and HTML), and the status page
/// links the runbook; a runbook that is not an http(s) URL is refused.
#[tokio::test]
async fn mails_link_the_incident_page_and_the_runbook() {
    let smtp = SmtpServer::start(&[]);
    let s = setup(smtp.port, "", "").await;
    let text = std::fs::read_to_string(&s.path)
        .unwrap()
        .replace(
            "responders = [\"oncall@example.org\"]",
            "responders = [\"oncall@example.org\"]\nrunbook_url = \"https://runbooks.example.org/vault?step=1&x=2\"",
        )
        .replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\npublic_url = \"https://status.example.org/\"",
        );
    std::fs::write(&s.path, &text).unwrap();
    let running = start(&s.path).await;
    s.chain.call(s.vault, selector("pause()")).await.unwrap();
    let mails = smtp.wait_mails(1).await;
    let body = mails[0].text();
    assert!(
        body.contains("Incident page: https://status.example.org/incidents/1"),
        "{body}"
    );
    assert!(
        body.contains("Runbook:   https://runbooks.example.org/vault?step=1&x=2"),
        "{body}"
    );
    assert!(
        body.contains("<a href=\"https://status.example.org/incidents/1\">")
            && body.contains("<a href=\"https://runbooks.example.org/vault?step=1&amp;x=2\">"),
        "linked in the HTML part, escaped: {body}"
    );
    let api = running.api().await;
    let page = tokio::task::spawn_blocking(move || common::http::get(api, "/", &[]))
        .await
        .unwrap();
    assert!(
        page.body.contains(
            "class=\"runbook\" href=\"https://runbooks.example.org/vault?step=1&amp;x=2\""
        ),
        "{}",
        page.body
    );
    running.stop().await;

    let bad = text.replace(
        "https://runbooks.example.org/vault?step=1&x=2",
        "javascript:alert(1)",
    );
    std::fs::write(&s.path, bad).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_haltwatch"))
        .args(["check-config", "--config"])
        .arg(&s.path)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("protocols[0].runbook_url: expected an http(s) URL"),
        "{said}"
    );
}
