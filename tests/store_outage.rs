//! The store is unavailable for a while: another process holds SQLite's
//! write lock for 5 s while a pause is mined, then for 12 s (past the busy
//! timeout: `database is locked`) while the unpause is. `haltwatch run`
//! waits instead of exiting, `/readyz` says why, both are recorded once the
//! lock is released, and each is mailed once, also across a restart. And
//! the disk fills up (every write fails, as SQLite sees a full disk) while
//! a pause is mined: the same.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::smtp::{SmtpServer, email_section, free_port};
use common::*;
use haltwatch::demo::selector;

/// A process that takes the write lock of the SQLite file at `path` and
/// holds it for `seconds`; returns once the lock is held.
fn hold_write_lock(path: &std::path::Path, seconds: u64) -> std::process::Child {
    let script = format!(
        "import sqlite3, sys, time\n\
         c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)\n\
         c.execute('BEGIN EXCLUSIVE')\n\
         print('LOCKED', flush=True)\n\
         time.sleep({seconds})\n\
         c.execute('COMMIT')\n"
    );
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (with its sqlite3 module) is needed: apt-get install python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "LOCKED", "the lock holder did not start");
    child
}

async fn readyz(api: std::net::SocketAddr) -> common::http::Reply {
    tokio::task::spawn_blocking(move || common::http::get(api, "/readyz", &[]))
        .await
        .unwrap()
}

/// anvil + the demo vault + a config mailing through `smtp_port`, its API on
/// a known port.
async fn monitored_vault(smtp_port: u16) -> (VaultChain, std::net::SocketAddr) {
    let email = email_section(smtp_port, "");
    let w = vault_chain(false, &email).await;
    let api_port = free_port();
    let text = std::fs::read_to_string(&w.path)
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{api_port}"));
    std::fs::write(&w.path, text).unwrap();
    (w, std::net::SocketAddr::from(([127, 0, 0, 1], api_port)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_locked_by_another_process_is_waited_for_and_nothing_is_lost_or_sent_twice() {
    let smtp = SmtpServer::start(&[]);
    let (w, api) = monitored_vault(smtp.port).await;
    let db = w.dir.path().join("history.db");

    let mut monitor = spawn_monitor(&w.path);
    let store = w.store().await;
    wait_caught_up(&store, &w.chain).await;

    let holder = hold_write_lock(&db, 5);
    let held_since = Instant::now();
    let paused = w.chain.call(w.vault, selector("pause()")).await.unwrap();
    // While the lock is held: still running, and not ready, naming the store.
    let mut said = None;
    while held_since.elapsed() < Duration::from_secs(4) {
        assert!(
            monitor.try_wait().unwrap().is_none(),
            "haltwatch exited while the store was locked"
        );
        let reply = readyz(api).await;
        if reply.status == 503 && reply.body.contains("\"store\"") {
            said = Some(reply.body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let said = said.expect("/readyz did not name the store while it was locked");
    eprintln!("/readyz while locked: {said}");
    assert!(
        said.contains("waiting") || said.contains("locked"),
        "{said}"
    );
    assert!(
        smtp.mails().is_empty(),
        "nothing recorded, nothing mailed yet"
    );
    let mut holder = holder;
    assert!(holder.wait().unwrap().success());

    // Released: the pause is recorded and mailed once; ready again.
    let mails = smtp.wait_mails(1).await;
    assert!(mails[0].subject().starts_with("[HALTED] Vault"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while readyz(api).await.status != 200 {
        assert!(Instant::now() < deadline, "not ready again after the lock");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = incidents(&store).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0].start_block, paused.block_number.unwrap());
    let metrics = tokio::task::spawn_blocking(move || common::http::get(api, "/metrics", &[]))
        .await
        .unwrap();
    let counted = metrics
        .body
        .lines()
        .find(|l| l.starts_with("haltwatch_store_unavailable_total{operation=\"commit\"}"));
    assert!(
        counted.is_some_and(|l| !l.ends_with(" 0")),
        "the wait is counted: {counted:?}"
    );

    // Held past SQLite's 10 s busy timeout, the commit fails with
    // `database is locked`: retried, not fatal.
    let mut holder = hold_write_lock(&db, 12);
    w.chain.call(w.vault, selector("unpause()")).await.unwrap();
    assert!(holder.wait().unwrap().success());
    assert!(
        monitor.try_wait().unwrap().is_none(),
        "haltwatch exited on a locked store"
    );
    let mails = smtp.wait_mails(2).await;
    assert!(
        mails[1].subject().starts_with("[RESOLVED] Vault"),
        "{}",
        mails[1].subject()
    );
    let list = incidents(&store).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert!(list[0].ended_at.is_some());

    // A restart sends nothing again.
    let _ = Command::new("kill")
        .args(["-TERM", &monitor.id().to_string()])
        .status();
    assert!(monitor.wait().unwrap().success());
    let mut monitor = spawn_monitor(&w.path);
    mine(&w.chain, 2).await;
    wait_caught_up(&store, &w.chain).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(smtp.mails().len(), 2, "mailed twice");
    let outbox = store.outbox().await.unwrap();
    assert!(outbox.iter().all(|r| r.status == "sent"), "{outbox:#?}");
    let _ = monitor.kill();
    let _ = monitor.wait();
}

/// Sets the file-size limit (`RLIMIT_FSIZE`, soft) of process `pid`: with
/// `Some(1)`, every write it makes to a file fails as on a full disk.
fn file_size_limit(pid: u32, bytes: Option<u64>) {
    let soft = bytes.map_or("unlimited".to_string(), |b| b.to_string());
    let status = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--fsize={soft}:unlimited"),
        ])
        .status()
        .expect("prlimit (util-linux) is needed: apt-get install util-linux");
    assert!(status.success(), "prlimit failed");
}

/// The disk fills up under a running monitor: every write to the store
/// fails (SQLite: disk full or I/O error) while a pause is mined. It stays
/// up, `/readyz` names the store, and once there is room again the pause is
/// recorded and mailed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_waited_out_and_nothing_is_lost_or_sent_twice() {
    let smtp = SmtpServer::start(&[]);
    let (w, api) = monitored_vault(smtp.port).await;
    // Writes past the file-size limit fail with EFBIG instead of killing
    // the process with SIGXFSZ: a full disk, as SQLite sees it.
    let mut monitor = Command::new("sh")
        .args(["-c", "trap '' XFSZ; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_haltwatch"))
        .args(["run", "--config"])
        .arg(&w.path)
        .env("RUST_LOG", "warn")
        // Its log is a file on the same full disk, which it must survive.
        .stderr(std::fs::File::create(w.dir.path().join("haltwatch.log")).unwrap())
        .spawn()
        .unwrap();
    let store = w.store().await;
    wait_caught_up(&store, &w.chain).await;

    file_size_limit(monitor.id(), Some(1));
    let paused = w.chain.call(w.vault, selector("pause()")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let said = loop {
        if let Some(status) = monitor.try_wait().unwrap() {
            panic!("haltwatch exited on a full disk: {status}");
        }
        let reply = readyz(api).await;
        if reply.status == 503 && reply.body.contains("\"store\"") {
            break reply.body;
        }
        assert!(Instant::now() < deadline, "/readyz did not name the store");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("/readyz on a full disk: {said}");
    assert!(said.contains("full") || said.contains("I/O"), "{said}");
    // A while on a full disk: still up, nothing recorded or mailed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(monitor.try_wait().unwrap().is_none());
    assert!(smtp.mails().is_empty());

    file_size_limit(monitor.id(), None);
    let mails = smtp.wait_mails(1).await;
    assert!(mails[0].subject().starts_with("[HALTED] Vault"));
    let list = incidents(&store).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0].start_block, paused.block_number.unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while readyz(api).await.status != 200 {
        assert!(Instant::now() < deadline, "not ready again after the disk");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &monitor.id().to_string()])
        .status();
    assert!(monitor.wait().unwrap().success());
    assert_eq!(smtp.mails().len(), 1, "mailed twice");
}
