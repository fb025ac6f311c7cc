//! An HTTP JSON-RPC proxy in front of anvil, for faults a real node will not
//! produce on demand: `hook` sees each request and may answer it instead.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Given a parsed JSON-RPC request, `Some(body)` answers it with `body`; `None` forwards it.
pub type Hook = Arc<dyn Fn(&serde_json::Value) -> Option<Vec<u8>> + Send + Sync>;

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

/// Starts the proxy for `upstream` (`host:port`); returns its `http://` URL.
pub fn spawn(upstream: String, hook: Hook) -> String {
    spawn_switchable(upstream, hook, Arc::new(AtomicBool::new(false)))
}

/// As [`spawn`]; while `down` is true every connection is dropped unanswered,
/// like an endpoint that is gone.
pub fn spawn_switchable(upstream: String, hook: Hook, down: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (upstream, hook, down) = (upstream.clone(), hook.clone(), down.clone());
            std::thread::spawn(move || {
                let mut writer = client.try_clone().unwrap();
                let mut reader = BufReader::new(client);
                while let Some((head, body)) = read_message(&mut reader) {
                    if down.load(Ordering::SeqCst) {
                        return; // drops the connection
                    }
                    let request: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    if let Some(answer) = hook(&request) {
                        let _ = write!(
                            writer,
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            answer.len()
                        );
                        let _ = writer.write_all(&answer);
                        continue;
                    }
                    let mut up = TcpStream::connect(&upstream).unwrap();
                    up.write_all(head.as_bytes()).unwrap();
                    up.write_all(&body).unwrap();
                    let Some((rhead, rbody)) = read_message(&mut BufReader::new(up)) else {
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
