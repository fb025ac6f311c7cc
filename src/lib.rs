//! haltwatch: a circuit-breaker monitor for DeFi protocols.
//!
//! It follows EVM chains over JSON-RPC, decodes the logs of a protocol's
//! contracts with their JSON ABIs, and turns pause events into downtime
//! incidents (start, end, duration, cause, evidence) in a halt history.
//!
//! # Layout
//!
//! Data flows one way: source → decode → detect → classify → store → notify. Stages
//! know the shared model, not each other; only [`pipeline`] wires them.
//!
//! - [`api`]: the HTTP surface: health, readiness, metrics, JSON API, status page.
//! - [`config`]: the TOML contract; load, validate (every problem at once), resolve rules against ABIs.
//! - [`presets`]: halt/resume rules of known contract families (OpenZeppelin, USDC, Aave, …).
//! - [`model`]: the shared vocabulary: blocks, chain updates, evidence, signals, transitions.
//! - [`source`]: follows a chain (ws heads or polling), checkpoints, reorgs, catch-up.
//! - [`decode`]: the ABI registry, `(address, topic0)` → resolved decoder.
//! - [`detect`]: detectors that turn decoded logs into signals.
//! - [`classify`]: the pure per-protocol state machine: signals → incident updates.
//! - [`store`]: the SQLite halt history, checkpoints and classifier snapshots.
//! - [`notify`]: the outbox sender: email rendering, threading, retries, SMTP (lettre).
//! - [`status`]: what the running pipeline knows now (heads, protocol states), for the API.
//! - [`pipeline`]: tasks and channels; shutdown and draining.
//! - [`telemetry`]: metric names and the functions that emit them.
//! - [`render`]: incidents as tables and JSON for the CLI.
//! - [`report`]: uptime figures per period, and the incident export formats.
//! - [`verify`]: re-reads recorded evidence from the chain.
//! - [`demo`]: the self-contained demo on a local anvil chain.

pub mod api;
pub mod classify;
pub mod config;
pub mod decode;
pub mod demo;
pub mod detect;
pub mod model;
pub mod notify;
pub mod pipeline;
pub mod presets;
pub mod render;
pub mod report;
pub mod source;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod verify;

pub use config::{Config, ConfigError};
pub use store::Store;

/// Reduces an endpoint URL to scheme and host, so API keys in paths, queries
/// or user info never reach a log line, an error or a page.
///
/// ```
/// use haltwatch::redact_url;
/// assert_eq!(redact_url("https://user:pw@eth.example.com/v3/KEY?x=1"), "https://eth.example.com/…");
/// assert_eq!(redact_url("ws://127.0.0.1:8546"), "ws://127.0.0.1:8546");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<invalid url>".to_string();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let hidden = authority.contains('@') || rest.len() > authority.len();
    format!("{scheme}://{host}{}", if hidden { "/…" } else { "" })
}

/// Redacts every URL in `text` by structure, whatever form the transport
/// printed it in (`http://host:port?key=K` may come back as
/// `http://host:port/?key=K`): error texts can reach logs, the store and
/// `/readyz`.
///
/// ```
/// use haltwatch::redact_urls_in;
/// let text = "error sending request for url (http://127.0.0.1:8545/?apikey=SECRET)";
/// assert_eq!(redact_urls_in(text), "error sending request for url (http://127.0.0.1:8545/…)");
/// ```
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: the letters right before `://`.
        let scheme_len = rest[..at]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .map(char::len_utf8)
            .sum::<usize>();
        let start = at - scheme_len;
        let len = rest[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ',' | ']'))
            .unwrap_or(rest.len() - start);
        out.push_str(&rest[..start]);
        if scheme_len == 0 {
            out.push_str("://");
            rest = &rest[at + 3..];
            continue;
        }
        out.push_str(&redact_url(&rest[start..start + len]));
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{redact_url, redact_urls_in};

    #[test]
    fn redacts_every_url_in_a_text_in_whatever_form_it_was_printed() {
        let text = "a (http://127.0.0.1:1/?apikey=K) and wss://u:pw@h:2/v3/K2, ok";
        let out = redact_urls_in(text);
        assert_eq!(out, "a (http://127.0.0.1:1/…) and wss://h:2/…, ok");
        assert_eq!(redact_urls_in("no url :// here"), "no url :// here");
    }

    #[test]
    fn redacts_keys_from_urls() {
        let cases = [
            (
                "https://eth.example.com/v3/KEY",
                "https://eth.example.com/…",
            ),
            (
                "wss://u:pw@eth.example.com:8546",
                "wss://eth.example.com:8546/…",
            ),
            ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
            ("https://x.io?apikey=K", "https://x.io/…"),
            ("nonsense", "<invalid url>"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }
}
