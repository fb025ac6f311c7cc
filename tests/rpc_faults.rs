//! Faults a real node will not produce on demand: a proxy in front of anvil
//! answers `eth_getLogs` with garbage. The block is retried, never skipped.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use haltwatch::demo::selector;
use haltwatch::store::IncidentState;

/// Reads one HTTP/1.1 message (head + Content-Length body); `None` at EOF.
fn read_message(r: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// Forwards to `upstream`; while `corrupt` > 0, answers eth_getLogs with invalid JSON.
fn spawn_proxy(upstream: String, corrupt: Arc<AtomicUsize>, corrupted: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (upstream, corrupt, corrupted) =
                (upstream.clone(), corrupt.clone(), corrupted.clone());
            std::thread::spawn(move || {
                let mut writer = client.try_clone().unwrap();
                let mut reader = BufReader::new(client);
                while let Some((head, body)) = read_message(&mut reader) {
                    let is_logs = String::from_utf8_lossy(&body).contains("eth_getLogs");
                    if is_logs && corrupt.load(Ordering::SeqCst) > 0 {
                        corrupt.fetch_sub(1, Ordering::SeqCst);
                        corrupted.fetch_add(1, Ordering::SeqCst);
                        let garbage = b"{\"jsonrpc\":\"2.0\",\"id\":";
                        let _ = write!(
                            writer,
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            garbage.len()
                        );
                        let _ = writer.write_all(garbage);
                        continue;
                    }
                    let mut up = TcpStream::connect(&upstream).unwrap();
                    up.write_all(head.as_bytes()).unwrap();
                    up.write_all(&body).unwrap();
                    let mut up_reader = BufReader::new(up);
                    let Some((rhead, rbody)) = read_message(&mut up_reader) else {
                        return;
                    };
                    if writer
                        .write_all(rhead.as_bytes())
                        .and_then(|_| writer.write_all(&rbody))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_unparseable_rpc_answer_is_retried_and_the_block_is_not_skipped() {
    let node = anvil(0);
    let chain = chain(&node).await;
    let vault = chain.deploy(&bin("DemoPausable")).await.unwrap();
    let corrupt = Arc::new(AtomicUsize::new(0));
    let corrupted = Arc::new(AtomicUsize::new(0));
    let upstream = node.endpoint().trim_start_matches("http://").to_string();
    let proxy = spawn_proxy(upstream, corrupt.clone(), corrupted.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config_text(
            &proxy,
            &protocol("Vault", "vault", vault, "oz-pausable.json", "oz-pausable"),
        ),
    );
    let running = start(&path).await;
    wait_caught_up(&running.store, &chain).await;

    // Every log read after the pause is mined fails three times.
    corrupt.store(3, Ordering::SeqCst);
    let paused = chain.call(vault, selector("pause()")).await.unwrap();
    mine(&chain, 2).await;
    wait_caught_up(&running.store, &chain).await;

    assert_eq!(
        corrupted.load(Ordering::SeqCst),
        3,
        "the proxy did corrupt three answers"
    );
    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1, "the pause block was read again, not skipped");
    assert_eq!(list[0].state, IncidentState::Open);
    assert_eq!(list[0].start_block, paused.block_number.unwrap());
    running.stop().await;
}
