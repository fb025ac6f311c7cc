//! Endpoint URLs carry API keys in their paths, queries and user info;
//! they are reduced to scheme, host and port by structure wherever they may
//! be shown: error texts, stored rows, `/readyz`, log lines.

/// Reduces an endpoint URL to scheme and host, so API keys in paths, queries
/// or user info never reach a log line, an error or a page.
///
/// ```
/// use haltwatch::redact::redact_url;
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
/// use haltwatch::redact::redact_urls_in;
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
            .find(|c: char| {
                c.is_whitespace()
                    || matches!(
                        c,
                        ')' | '"' | '\'' | '>' | ',' | ']' | '\\' | '}' | '\u{1b}'
                    )
            })
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

/// A log writer that redacts every URL in each line it writes, whatever
/// printed it: alloy's transport spans carry the endpoint's whole URL, and
/// errors of the HTTP and WebSocket clients quote it, at DEBUG and TRACE.
/// The formatter hands over one whole event per write, so no URL is split.
///
/// ```
/// use std::io::Write;
/// let mut out = haltwatch::redact::Redacting(Vec::new());
/// out.write_all(b"url=http://h:1/v2/KEY?apikey=K ok\n").unwrap();
/// assert_eq!(String::from_utf8(out.0).unwrap(), "url=http://h:1/\u{2026} ok\n");
/// ```
pub struct Redacting<W>(pub W);

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.windows(3).any(|w| w == b"://") {
            let text = String::from_utf8_lossy(buf);
            self.0.write_all(redact_urls_in(&text).as_bytes())?;
        } else {
            self.0.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
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
        // Inside JSON log lines, quoted and escaped.
        let json = r#"{"url":"http://h:1/v2/K","error":"for url (\"http://h:1/?k=K\")"}"#;
        assert_eq!(
            redact_urls_in(json),
            r#"{"url":"http://h:1/…","error":"for url (\"http://h:1/…\")"}"#
        );
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
