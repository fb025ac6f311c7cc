//! An HTTP JSON-RPC proxy in front of anvil, for faults a real node will not
//! produce on demand. A rule sees each request and decides: forward it,
//! answer it instead (any HTTP status and headers), hang, delay, or forward
//! and rewrite the upstream answer (a lagging node, another chain id).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

/// Given a parsed JSON-RPC request, `Some(body)` answers it with `body`; `None` forwards it.
pub type Hook = Arc<dyn Fn(&Value) -> Option<Vec<u8>> + Send + Sync>;

/// Rewrites an upstream answer (`result` and all), given the request.
pub type Rewrite = Box<dyn FnOnce(&Value, Value) -> Value + Send>;

/// What the proxy does with one request.
pub enum Action {
    Forward,
    /// Answers 200 with this body.
    Answer(Vec<u8>),
    /// Answers with this status, extra headers and body.
    Status {
        code: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Never answers; the connection stays open.
    Hang,
    /// Waits, then does the inner action.
    Delay(Duration, Box<Action>),
    /// Forwards, then rewrites the answer.
    Rewrite(Rewrite),
}

impl Action {
    /// A JSON-RPC error answer for `request`, HTTP 200.
    pub fn rpc_error(request: &Value, code: i64, message: &str) -> Action {
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": request["id"],
            "error": {"code": code, "message": message}
        });
        Action::Answer(body.to_string().into_bytes())
    }

    /// A JSON-RPC result for `request`, HTTP 200.
    pub fn result(request: &Value, result: Value) -> Action {
        let body = serde_json::json!({"jsonrpc": "2.0", "id": request["id"], "result": result});
        Action::Answer(body.to_string().into_bytes())
    }
}

pub type Rule = Arc<dyn Fn(&Value) -> Action + Send + Sync>;

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

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn answer(w: &mut TcpStream, code: u16, headers: &[(String, String)], body: &[u8]) -> bool {
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        reason(code),
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    send(w, &head, body).is_ok()
}

/// Starts the proxy for `upstream` (`host:port`); returns its `http://` URL.
pub fn spawn(upstream: String, hook: Hook) -> String {
    spawn_switchable(upstream, hook, Arc::new(AtomicBool::new(false)))
}

/// As [`spawn`]; while `down` is true every connection is dropped unanswered,
/// like an endpoint that is gone.
pub fn spawn_switchable(upstream: String, hook: Hook, down: Arc<AtomicBool>) -> String {
    spawn_rules(
        upstream,
        Arc::new(move |req: &Value| {
            if down.load(Ordering::SeqCst) {
                return Action::Hang; // replaced by a drop below
            }
            match hook(req) {
                Some(body) => Action::Answer(body),
                None => Action::Forward,
            }
        }),
        true,
    )
}

/// Starts the proxy with a rule per request; returns its `http://` URL.
pub fn spawn_with(upstream: String, rule: Rule) -> String {
    spawn_rules(upstream, rule, false)
}

/// A load balancer over `upstreams` (`host:port` each) that sends every
/// request to the one `which` names at that moment: two nodes on different
/// branches make a provider that flaps between them.
pub fn spawn_flapping(
    upstreams: Vec<String>,
    which: Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    let pick: Upstream = Arc::new(move || upstreams[which.load(Ordering::SeqCst)].clone());
    spawn_on(pick, Arc::new(|_: &Value| Action::Forward), false)
}

/// Where the next request goes.
type Upstream = Arc<dyn Fn() -> String + Send + Sync>;

/// `hang_drops`: [`Action::Hang`] drops the connection instead of holding it.
fn spawn_rules(upstream: String, rule: Rule, hang_drops: bool) -> String {
    spawn_on(Arc::new(move || upstream.clone()), rule, hang_drops)
}

fn spawn_on(upstream: Upstream, rule: Rule, hang_drops: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (upstream, rule) = (upstream.clone(), rule.clone());
            std::thread::spawn(move || serve(client, &upstream, &rule, hang_drops));
        }
    });
    format!("http://{addr}")
}

/// The request head with its target made `/`: like a provider's gateway,
/// the proxy takes any path (an API key in it) to the node's one endpoint.
fn at_root(head: &str) -> String {
    let (line, rest) = head.split_once("\r\n").unwrap_or((head, ""));
    let mut parts = line.splitn(3, ' ');
    let (method, _target, version) = (parts.next(), parts.next(), parts.next());
    match (method, version) {
        (Some(m), Some(v)) => format!("{m} / {v}\r\n{rest}"),
        _ => head.to_string(),
    }
}

fn serve(client: TcpStream, upstream: &Upstream, rule: &Rule, hang_drops: bool) {
    // Without NODELAY, Nagle's algorithm holds answers for 40 ms.
    let _ = client.set_nodelay(true);
    let mut writer = client.try_clone().unwrap();
    let mut reader = BufReader::new(client);
    let mut up: Option<(String, TcpStream, BufReader<TcpStream>)> = None;
    while let Some((head, body)) = read_message(&mut reader) {
        let request: Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut action = rule(&request);
        while let Action::Delay(d, inner) = action {
            std::thread::sleep(d);
            action = *inner;
        }
        let rewrite = match action {
            Action::Forward => None,
            Action::Rewrite(f) => Some(f),
            Action::Answer(body) => {
                if !answer(&mut writer, 200, &[], &body) {
                    return;
                }
                continue;
            }
            Action::Status {
                code,
                headers,
                body,
            } => {
                if !answer(&mut writer, code, &headers, &body) {
                    return;
                }
                continue;
            }
            Action::Hang if hang_drops => return, // drops the connection
            Action::Hang => {
                // Holds the connection open and answers nothing, until the
                // client gives up and closes it.
                let mut sink = [0u8; 1024];
                while matches!(reader.get_mut().read(&mut sink), Ok(n) if n > 0) {}
                return;
            }
            Action::Delay(..) => unreachable!("delays are unwrapped above"),
        };
        // One upstream connection per client connection, kept alive like
        // the client's: thousands of requests must not mean thousands of
        // sockets.
        let target = upstream();
        if up.as_ref().is_none_or(|(t, _, _)| *t != target) {
            let Ok(conn) = TcpStream::connect(&target) else {
                return; // drops the client too
            };
            let _ = conn.set_nodelay(true);
            let Ok(reader) = conn.try_clone() else { return };
            up = Some((target, conn, BufReader::new(reader)));
        }
        let Some((_, conn, up_reader)) = up.as_mut() else {
            return;
        };
        if send(conn, &at_root(&head), &body).is_err() {
            return;
        }
        let Some((rhead, rbody)) = read_message(up_reader) else {
            return;
        };
        let sent = match rewrite {
            None => send(&mut writer, &rhead, &rbody).is_ok(),
            Some(f) => {
                let upstream: Value = serde_json::from_slice(&rbody).unwrap_or_default();
                let body = f(&request, upstream).to_string();
                answer(&mut writer, 200, &[], body.as_bytes())
            }
        };
        if !sent {
            return;
        }
    }
}

/// What the WebSocket proxy does with the bytes it is given.
pub const WS_PASS: u8 = 0;
/// Nothing passes either way; the connections stay open (a stalled subscription).
pub const WS_SILENT: u8 = 1;
/// Every connection is closed, and new ones are closed at once (a provider
/// dropping its WebSockets, for as long as this lasts).
pub const WS_DROP: u8 = 2;

/// A TCP proxy for a WebSocket endpoint (`host:port`) whose behaviour
/// `mode` sets ([`WS_PASS`], [`WS_SILENT`], [`WS_DROP`]) at any moment.
/// Returns its `ws://` URL.
pub fn spawn_ws(upstream: String, mode: Arc<std::sync::atomic::AtomicU8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            if mode.load(Ordering::SeqCst) == WS_DROP {
                continue; // closed at once
            }
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            for (from, to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                let mode = mode.clone();
                std::thread::spawn(move || pipe(from, to, &mode));
            }
        }
    });
    format!("ws://{addr}")
}

fn pipe(mut from: TcpStream, mut to: TcpStream, mode: &std::sync::atomic::AtomicU8) {
    let _ = to.set_nodelay(true);
    // Woken now and then to notice a drop while nothing is sent.
    let _ = from.set_read_timeout(Some(std::time::Duration::from_millis(100)));
    let mut buf = [0u8; 16 * 1024];
    loop {
        if mode.load(Ordering::SeqCst) == WS_DROP {
            let _ = from.shutdown(std::net::Shutdown::Both);
            let _ = to.shutdown(std::net::Shutdown::Both);
            return;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        };
        if mode.load(Ordering::SeqCst) == WS_SILENT {
            continue; // swallowed: the connection stays open, nothing arrives
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}
