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
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    if !chunked {
        let mut body = vec![0; len];
        r.read_exact(&mut body).ok()?;
        return Some((head, body));
    }
    // Reassembled and passed on with a length (anvil streams large answers).
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        let mut chunk = vec![0; size + 2]; // the data and its CR LF
        r.read_exact(&mut chunk).ok()?;
        if size == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..size]);
    }
    let head: String = head
        .lines()
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("transfer-encoding"))
        .map(|l| format!("{l}\r\n"))
        .collect::<String>()
        + &format!("content-length: {}\r\n\r\n", body.len());
    Some((head, body))
}

/// Writes one HTTP message in one write.
fn send(w: &mut TcpStream, head: &str, body: &[u8]) -> std::io::Result<()> {
    let mut message = Vec::with_capacity(head.len() + body.len());
    message.extend_from_slice(head.as_bytes());
    message.extend_from_slice(body);
    w.write_all(&message)
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
                // Without NODELAY, Nagle's algorithm holds answers for 40 ms.
                let _ = client.set_nodelay(true);
                let mut writer = client.try_clone().unwrap();
                let mut reader = BufReader::new(client);
                let mut up: Option<(TcpStream, BufReader<TcpStream>)> = None;
                while let Some((head, body)) = read_message(&mut reader) {
                    if down.load(Ordering::SeqCst) {
                        return; // drops the connection
                    }
                    let request: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    if let Some(answer) = hook(&request) {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            answer.len()
                        );
                        let _ = send(&mut writer, &head, &answer);
                        continue;
                    }
                    // One upstream connection per client connection, kept
                    // alive like the client's: thousands of requests must not
                    // mean thousands of sockets.
                    if up.is_none() {
                        let Ok(conn) = TcpStream::connect(&upstream) else {
                            return; // drops the client too
                        };
                        let _ = conn.set_nodelay(true);
                        let Ok(reader) = conn.try_clone() else { return };
                        up = Some((conn, BufReader::new(reader)));
                    }
                    let Some((conn, reader)) = up.as_mut() else {
                        return;
                    };
                    if send(conn, &head, &body).is_err() {
                        return;
                    }
                    let Some((rhead, rbody)) = read_message(reader) else {
                        return;
                    };
                    if send(&mut writer, &rhead, &rbody).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}
