//! `haltwatch run` as an orchestrator stops it: SIGTERM (Kubernetes,
//! systemd, Docker) and SIGINT (Ctrl-C) end it cleanly, with exit code 0,
//! and what it had read is stored.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

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
