//! Secrets never leave haltwatch. Endpoint URLs with keys in their user
//! info, path and query (one refusing connections, one behind a proxy that
//! fails now and then) and an SMTP password used for AUTH over STARTTLS,
//! with `haltwatch run` at `RUST_LOG=trace`: no log line, HTTP body, stored
//! row or mail holds any of them, in any form the libraries print.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alloy::primitives::Bytes;
use common::proxy::Action;
use common::smtp::{SmtpServer, email_section, free_port};
use common::*;
use haltwatch::demo::selector;

const USER_SECRET: &str = "USERPASSWORD7f3a91";
const DEAD_PATH_SECRET: &str = "DEADPATHKEY5b8e02c4";
const DEAD_QUERY_SECRET: &str = "DEADQUERYKEY9d1f77a0";
const PATH_SECRET: &str = "PATHKEY3c6d0e1b2a";
const QUERY_SECRET: &str = "QUERYKEY8e4f2a9c71";
const SMTP_PASSWORD: &str = "SMTPPASSWORD4a2b6c8d";
const WS_USER_SECRET: &str = "WSUSERPASS61c0de4f";
const WS_PATH_SECRET: &str = "WSPATHKEY2e9b7d13a5";
const WS_QUERY_SECRET: &str = "WSQUERYKEY0f3c8a6b92";

/// What the secrets look like once encoded: AUTH PLAIN and LOGIN send them in
/// base64, and a URL may be printed percent-encoded.
fn forms() -> Vec<(String, String)> {
    use alloy::primitives::hex;
    let b64 = |s: &[u8]| {
        // Standard base64, small and dependency-free.
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in s.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    };
    let mut forms: Vec<(String, String)> = [
        USER_SECRET,
        DEAD_PATH_SECRET,
        DEAD_QUERY_SECRET,
        PATH_SECRET,
        QUERY_SECRET,
        SMTP_PASSWORD,
        WS_USER_SECRET,
        WS_PATH_SECRET,
        WS_QUERY_SECRET,
    ]
    .iter()
    .map(|s| (s.to_string(), s.to_string()))
    .collect();
    let plain = format!("\0alerts\0{SMTP_PASSWORD}");
    forms.push(("AUTH PLAIN".into(), b64(plain.as_bytes())));
    forms.push(("AUTH LOGIN".into(), b64(SMTP_PASSWORD.as_bytes())));
    forms.push(("hex".into(), hex::encode(SMTP_PASSWORD)));
    // Basic auth from a ws URL's user info.
    let basic = format!("bob:{WS_USER_SECRET}");
    forms.push(("Basic auth".into(), b64(basic.as_bytes())));
    forms
}

fn assert_clean(what: &str, text: &str) {
    for (name, form) in forms() {
        assert!(
            !text.contains(&form),
            "{what} holds the secret {name} ({form}):\n{}",
            text.lines()
                .filter(|l| l.contains(&form))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_line_a_page_a_row_or_a_mail_even_at_trace_level() {
    let tls = root().join("tests/smtp/tls");
    let auth = format!("alerts:{SMTP_PASSWORD}");
    let smtp = SmtpServer::start(&[
        "--tls-cert",
        tls.join("server.pem").to_str().unwrap(),
        "--tls-key",
        tls.join("server.key").to_str().unwrap(),
        "--auth",
        &auth,
    ]);
    let api_port = free_port();
    let email = email_section(
        smtp.port,
        &format!(
            "ca_file = \"{}\"\nusername = \"alerts\"\npassword_env = \"HALTWATCH_TEST_SMTP_PASSWORD\"",
            tls.join("ca.pem").display()
        ),
    )
    .replace("tls = \"none\"", "tls = \"starttls\"");
    let w = vault_chain(false, &email).await;

    // One request in ten through the proxy fails: a 503, or a rate limit.
    let n = Arc::new(AtomicU64::new(0));
    let proxied = proxy::spawn_with(
        w.node.endpoint().trim_start_matches("http://").to_string(),
        Arc::new(
            move |req: &serde_json::Value| match n.fetch_add(1, Ordering::Relaxed) % 20 {
                7 => Action::Status {
                    code: 503,
                    headers: vec![],
                    body: b"upstream unavailable".to_vec(),
                },
                17 => Action::rpc_error(req, -32005, "rate limited"),
                _ => Action::Forward,
            },
        ),
    );
    let dead = format!(
        "http://alice:{USER_SECRET}@127.0.0.1:{}/v3/{DEAD_PATH_SECRET}?apikey={DEAD_QUERY_SECRET}",
        free_port()
    );
    let live = format!("{proxied}/v2/{PATH_SECRET}?apikey={QUERY_SECRET}&chain=1");
    // A WebSocket endpoint whose handshake carries the key in its request
    // line (and user info as Basic auth); anvil may refuse the path.
    let ws = common::proxy::spawn_ws(
        w.node.ws_endpoint().trim_start_matches("ws://").to_string(),
        Arc::new(std::sync::atomic::AtomicU8::new(common::proxy::WS_PASS)),
    );
    let ws = ws.replacen("ws://", &format!("ws://bob:{WS_USER_SECRET}@"), 1)
        + &format!("/v1/{WS_PATH_SECRET}?apikey={WS_QUERY_SECRET}");
    let text = std::fs::read_to_string(&w.path)
        .unwrap()
        .replace(
            &format!("rpc = [\"{}\"]", w.node.endpoint()),
            &format!("rpc = [\"{ws}\", \"{dead}\", \"{live}\"]"),
        )
        .replace("127.0.0.1:0", &format!("127.0.0.1:{api_port}"));
    assert!(text.contains(PATH_SECRET), "the endpoints are configured");
    std::fs::write(&w.path, &text).unwrap();

    let logs = w.dir.path().join("haltwatch.log");
    let log_file = std::fs::File::create(&logs).unwrap();
    let mut monitor = std::process::Command::new(env!("CARGO_BIN_EXE_haltwatch"))
        .args(["run", "--config"])
        .arg(&w.path)
        .env("RUST_LOG", "trace")
        .env("HALTWATCH_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();

    w.chain.call(w.vault, selector("pause()")).await.unwrap();
    // A failed call too: its revert data is replayed and traced.
    let r = w.chain.call(w.vault, selector("deposit()")).await.unwrap();
    assert!(!r.status());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while smtp.mails().is_empty() {
        if std::time::Instant::now() > deadline {
            let _ = monitor.kill();
            let log = std::fs::read_to_string(&logs).unwrap();
            let problems: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .take(20)
                .collect();
            panic!("no mail in 30 s; warnings:\n{}", problems.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mails = smtp.mails();
    assert!(
        mails[0].subject().starts_with("[HALTED] Vault"),
        "mailed after AUTH over STARTTLS"
    );

    let api = std::net::SocketAddr::from(([127, 0, 0, 1], api_port));
    let mut bodies = Vec::new();
    for path in [
        "/readyz",
        "/metrics",
        "/api/v1/protocols",
        "/api/v1/incidents",
        "/api/v1/incidents/1",
        "/api/v1/uptime",
        "/",
        "/incidents/1",
    ] {
        let reply = http::get(api, path, &[]);
        bodies.push((path, format!("{}\n{}", reply.headers, reply.body)));
    }
    let metrics = &bodies[1].1;
    assert!(
        metrics.contains(&format!("{proxied}/…")),
        "/metrics names the endpoints, redacted: {metrics}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &monitor.id().to_string()])
        .status();
    assert!(monitor.wait().unwrap().success());

    let log = std::fs::read_to_string(&logs).unwrap();
    assert!(
        log.contains("TRACE") && log.lines().count() > 200,
        "the run logged at trace level ({} lines)",
        log.lines().count()
    );
    assert!(
        log.contains(&format!("{proxied}/…")),
        "the endpoint is named, redacted, in the logs"
    );
    assert!(
        log.contains("ReqwestTransport{url=http://127.0.0.1:"),
        "the transport's span, which carries the whole URL, is in the logs"
    );
    assert_clean("the log", &log);
    for (path, body) in &bodies {
        assert_clean(&format!("GET {path}"), body);
    }
    for mail in smtp.mails() {
        assert_clean("a mail", &format!("{:?}\n{}", mail.headers, mail.body));
    }
    for entry in std::fs::read_dir(w.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("history.db") {
            let bytes = Bytes::from(std::fs::read(&path).unwrap());
            assert_clean(
                &path.display().to_string(),
                &String::from_utf8_lossy(&bytes),
            );
        }
    }
}
