//! `haltwatch run` as an orchestrator stops it: SIGTERM (Kubernetes,
//! systemd, Docker) and SIGINT (Ctrl-C) end it cleanly, with exit code 0,
//! and what it had read is stored.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::smtp;
use common::*;
use haltwatch::demo::selector;
use haltwatch::store::IncidentState;

/// Sends `signal` and waits for the exit (at most 15 s): its status and how long it took.
fn stop(child: &mut Child, signal: &str) -> (std::process::ExitStatus, Duration) {
    let sent = Instant::now();
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal}");
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, sent.elapsed());
        }
        if sent.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("haltwatch did not stop within 15 s of {signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn run_and_stop(signal: &str) {
    let w = vault_chain(true, "").await;
    let store = w.store().await;
    let mut monitor = spawn_monitor(&w.path);
    let paused = w.chain.call(w.vault, selector("pause()")).await.unwrap();
    wait_caught_up(&store, &w.chain).await;
    let (status, took) = stop(&mut monitor, signal);
    assert!(status.success(), "{signal}: exit {status:?}");
    assert!(
        took < Duration::from_secs(10),
        "{signal}: stopped in {took:?}, over the 10 s limit"
    );
    eprintln!("{signal}: stopped in {took:?}");
    let list = incidents(&store).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, IncidentState::Open);
    assert_eq!(list[0].start_block, paused.block_number.unwrap());
}

#[tokio::test]
async fn sigterm_stops_the_monitor_cleanly_with_exit_code_0() {
    run_and_stop("-TERM").await;
}

#[tokio::test]
async fn sigint_stops_the_monitor_cleanly_with_exit_code_0() {
    run_and_stop("-INT").await;
}

/// A monitor whose node hangs every request once `hang` is set (a round is
/// then stuck in hand), with `extra` config; caught up before it returns.
async fn hanging_monitor(
    extra: &str,
) -> (
    VaultChain,
    Child,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let w = vault_chain(false, "").await;
    let hang = Arc::new(AtomicBool::new(false));
    let on = hang.clone();
    let url = proxy::spawn_with(
        w.node.endpoint().trim_start_matches("http://").to_string(),
        Arc::new(move |_: &serde_json::Value| {
            if on.load(Ordering::SeqCst) {
                proxy::Action::Hang
            } else {
                proxy::Action::Forward
            }
        }),
    );
    let text = std::fs::read_to_string(&w.path)
        .unwrap()
        .replace(&w.node.endpoint(), &url);
    std::fs::write(&w.path, format!("{extra}\n{text}")).unwrap();
    let monitor = spawn_monitor(&w.path);
    let store = w.store().await;
    wait_caught_up(&store, &w.chain).await;
    hang.store(true, Ordering::SeqCst);
    // The next round starts, and hangs.
    std::thread::sleep(Duration::from_millis(300));
    (w, monitor, hang)
}

#[tokio::test]
async fn a_round_that_hangs_at_sigterm_is_abandoned_within_shutdown_timeout_seconds() {
    let (_w, mut monitor, _hang) = hanging_monitor("shutdown_timeout_seconds = 2").await;
    let (status, took) = stop(&mut monitor, "-TERM");
    eprintln!("SIGTERM with a hanging round, shutdown_timeout_seconds = 2: stopped in {took:?}");
    assert!(status.success(), "exit {status:?}");
    assert!(took < Duration::from_secs(2), "stopped in {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "the round in hand got its grace: {took:?}"
    );
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let (_w, mut monitor, _hang) = hanging_monitor("").await;
    let first = Command::new("kill")
        .args(["-TERM", &monitor.id().to_string()])
        .status()
        .unwrap();
    assert!(first.success());
    // The first stop waits for the hanging round (up to 5 s of its 10).
    std::thread::sleep(Duration::from_millis(300));
    assert!(monitor.try_wait().unwrap().is_none(), "still stopping");
    let (status, took) = stop(&mut monitor, "-INT");
    eprintln!("second signal: exited in {took:?}");
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// A mail that cannot be delivered when SIGTERM comes stays in the outbox:
/// the restarted monitor sends it, once.
#[tokio::test]
async fn a_mail_pending_at_sigterm_is_sent_once_after_the_restart() {
    let port = smtp::free_port();
    let email = smtp::email_section(port, "").replace("timeout_seconds = 5", "timeout_seconds = 2");
    let w = vault_chain(false, &email).await;
    let store = w.store().await;
    let mut monitor = spawn_monitor(&w.path);
    w.chain.call(w.vault, selector("pause()")).await.unwrap();
    wait_caught_up(&store, &w.chain).await;
    // No SMTP server yet: the mail waits for a retry.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store
        .outbox()
        .await
        .unwrap()
        .iter()
        .any(|r| r.status == "pending" && r.attempts > 0)
    {
        assert!(Instant::now() < deadline, "no delivery attempt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = stop(&mut monitor, "-TERM");
    assert!(status.success());
    let pending = store.outbox().await.unwrap();
    assert!(
        pending.iter().all(|r| r.status == "pending"),
        "{pending:#?}"
    );

    let server = smtp::SmtpServer::start_on(port, &[]);
    let mut monitor = spawn_monitor(&w.path);
    let mails = server.wait_mails(1).await;
    assert!(mails[0].subject().starts_with("[HALTED] Vault"));
    mine(&w.chain, 2).await;
    wait_caught_up(&store, &w.chain).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _) = stop(&mut monitor, "-TERM");
    assert!(status.success());
    assert_eq!(server.mails().len(), 1, "sent once");
    let sent = store.outbox().await.unwrap();
    assert!(sent.iter().all(|r| r.status == "sent"), "{sent:#?}");
}

/// Two `run` on one SQLite history would both follow the chain and both
/// mail every incident. The second refuses to start, naming the file and
/// the first one's PID; the read-only commands work beside the first; and
/// after `kill -9` of the first, the leftover lock file blocks no restart.
#[tokio::test]
async fn a_second_run_on_one_sqlite_history_refuses_to_start() {
    let w = vault_chain(false, "").await;
    let config = haltwatch::config::load(&w.path).unwrap();
    let store = w.store().await;
    let mut first = spawn_monitor(&w.path);
    wait_caught_up(&store, &w.chain).await;

    let mut second = Command::new(env!("CARGO_BIN_EXE_haltwatch"))
        .args(["run", "--config"])
        .arg(&w.path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while second.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(15) {
            let _ = second.kill();
            let _ = first.kill();
            panic!("a second `run` on the same history kept running");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let out = second.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    let db = config.store.sqlite_path().unwrap().display().to_string();
    assert!(said.contains(&db), "names the file: {said}");
    assert!(
        said.contains(&format!("pid {}", first.id())),
        "names the other process: {said}"
    );

    let list = Command::new(env!("CARGO_BIN_EXE_haltwatch"))
        .args(["incidents", "list", "--config"])
        .arg(&w.path)
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );

    first.kill().unwrap();
    first.wait().unwrap();
    let mut again = spawn_monitor(&w.path);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        again.try_wait().unwrap().is_none(),
        "the lock of a killed run is gone with it"
    );
    let (status, _) = stop(&mut again, "-TERM");
    assert!(status.success());
}
