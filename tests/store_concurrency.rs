//! Several processes open one SQLite history at once: `run` starting while
//! an auditor runs `incidents list`, or two readers and a writer. Each
//! store here has its own connections, so SQLite's real file locks decide.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use haltwatch::config::StoreConfig;
use haltwatch::store::{IncidentFilter, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_store_opened_by_several_at_once_migrates_and_answers_every_time() {
    for attempt in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::sqlite(dir.path().join("history.db"));
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let config = config.clone();
                tokio::spawn(async move {
                    let store = Store::open(&config).await?;
                    store.list(&IncidentFilter::default()).await.map(drop)
                })
            })
            .collect();
        for open in opens {
            if let Err(e) = open.await.unwrap() {
                panic!(
                    "attempt {attempt}: {e} ({:?})",
                    std::error::Error::source(&e)
                );
            }
        }
    }
}

/// `run` started on a fresh store while an auditor's `incidents list` runs
/// in a loop in other processes: `run` starts every time, and the lister
/// either reads the history or says it is not there yet; it never locks
/// `run` out, and never creates or migrates the file itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_starts_on_a_fresh_store_while_incidents_are_listed_in_a_loop() {
    let w = vault_chain(false, "").await;
    let text = std::fs::read_to_string(&w.path).unwrap();
    for attempt in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), &text);
        let stop = Arc::new(AtomicBool::new(false));
        let listers: Vec<_> = (0..2)
            .map(|_| {
                let (path, stop) = (path.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut answers = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let out = Command::new(env!("CARGO_BIN_EXE_haltwatch"))
                            .args(["incidents", "list", "--config"])
                            .arg(&path)
                            .stdin(Stdio::null())
                            .output()
                            .unwrap();
                        answers.push((
                            out.status.success(),
                            String::from_utf8_lossy(&out.stderr).to_string(),
                        ));
                    }
                    answers
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + 7 * attempt));
        let mut run = spawn_monitor(&path);
        let started = Instant::now();
        loop {
            if let Some(status) = run.try_wait().unwrap() {
                stop.store(true, Ordering::Relaxed);
                panic!("attempt {attempt}: run exited with {status} while incidents were listed");
            }
            let store = StoreConfig::sqlite(dir.path().join("history.db"));
            if let Ok(store) = Store::open_read_only(&store).await
                && store.window(CHAIN_ID).await.is_ok_and(|w| !w.is_empty())
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "attempt {attempt}: run did not start in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let _ = run.kill();
        let _ = run.wait();
        for lister in listers {
            for (ok, stderr) in lister.join().unwrap() {
                assert!(
                    ok || stderr.contains("no halt history") || stderr.contains("at schema"),
                    "attempt {attempt}: incidents list failed otherwise: {stderr}"
                );
            }
        }
    }
}

#[tokio::test]
async fn reading_commands_never_create_a_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config_text(
            "http://127.0.0.1:9",
            &protocol(
                "Vault",
                "vault",
                alloy::primitives::Address::ZERO,
                "oz-pausable.json",
                "oz-pausable",
            ),
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_haltwatch"))
        .args(["incidents", "list", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("there is no halt history at") && stderr.contains("history.db"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("history.db").exists(),
        "nothing was created"
    );
}
