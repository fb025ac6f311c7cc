//! Incidents for people (tables) and machines (JSON). Every string that came
//! from the chain is sanitised before it reaches a terminal.

use std::collections::HashMap;
use std::fmt::Write;

use crate::model::sanitize_text;
use crate::store::{IncidentRecord, format_time};

/// Longest decoded argument shown in a table.
const ARG_MAX_CHARS: usize = 120;

/// Explorer link templates by chain id (`https://etherscan.io/tx/{hash}`).
pub type Explorers = HashMap<u64, String>;

/// `1h 02m 03s`, `4m 05s`, `12s`.
pub fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s:02}s"),
        _ => format!("{h}h {m:02}m {s:02}s"),
    }
}

fn time(secs: u64) -> String {
    format_time(secs).replace('T', " ").replace('Z', " UTC")
}

/// One line per incident.
pub fn table(incidents: &[IncidentRecord]) -> String {
    if incidents.is_empty() {
        return "no incidents\n".to_string();
    }
    let rows: Vec<[String; 8]> = incidents
        .iter()
        .map(|i| {
            [
                i.id.to_string(),
                i.protocol.clone(),
                i.chain.clone(),
                serde_plain(&i.state),
                i.severity.to_string(),
                time(i.started_at),
                i.duration_seconds.map_or("ongoing".into(), duration),
                i.scopes.join(", "),
            ]
        })
        .collect();
    let header = [
        "ID", "PROTOCOL", "CHAIN", "STATE", "SEVERITY", "STARTED", "DURATION", "SCOPES",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, &header);
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(&mut out, &cells);
    }
    out
}

/// One incident in full: header, timeline, evidence.
pub fn detail(i: &IncidentRecord, explorers: &Explorers) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Incident {} ({})", i.id, i.key);
    let _ = writeln!(
        out,
        "Protocol:  {} on {} (chain id {})",
        i.protocol, i.chain, i.chain_id
    );
    let _ = writeln!(
        out,
        "State:     {} (worst: {})",
        serde_plain(&i.state),
        i.severity
    );
    let _ = writeln!(
        out,
        "Started:   {} (block {})",
        time(i.started_at),
        i.start_block
    );
    match (i.ended_at, i.end_block) {
        (Some(t), Some(b)) => {
            let _ = writeln!(out, "Ended:     {} (block {b})", time(t));
        }
        _ => {
            let _ = writeln!(out, "Ended:     -");
        }
    }
    let _ = writeln!(
        out,
        "Duration:  {}",
        i.duration_seconds
            .map_or("ongoing".to_string(), |d| format!(
                "{} ({d} s)",
                duration(d)
            ))
    );
    let _ = writeln!(out, "Scopes:    {}", i.scopes.join(", "));
    let _ = writeln!(out, "Transitions:");
    for t in &i.transitions {
        let _ = writeln!(
            out,
            "  {}  {:<11}  {} -> {}  block {}{}",
            time(t.at),
            serde_plain(&t.kind),
            t.from,
            t.to,
            t.block_number,
            if t.retracted {
                "  (retracted by reorg)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(out, "Evidence:");
    for e in &i.evidence {
        let args: Vec<String> = e
            .args
            .iter()
            .map(|a| format!("{}={}", a.name, sanitize_text(&a.value, ARG_MAX_CHARS)))
            .collect();
        let _ = writeln!(
            out,
            "  block {} {}  log {}  {} {}  {}({}){}",
            e.block_number,
            time(e.block_time),
            e.log_index,
            e.contract_name,
            e.contract,
            e.event.split('(').next().unwrap_or(&e.event),
            args.join(", "),
            if e.retracted {
                "  (retracted by reorg)"
            } else {
                ""
            }
        );
        let _ = writeln!(out, "    block hash {}", e.block_hash);
        let _ = writeln!(out, "    tx {}", e.tx_hash);
        if let Some(template) = explorers.get(&e.chain_id) {
            let _ = writeln!(
                out,
                "    {}",
                template.replace("{hash}", &e.tx_hash.to_string())
            );
        }
    }
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Pretty JSON; the field names are the stable output contract.
pub fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// A unit enum's serde name (`"resolved"`), for tables.
fn serde_plain<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(65), "1m 05s");
        assert_eq!(duration(3600), "1h 00m 00s");
        assert_eq!(duration(90061), "25h 01m 01s");
    }
}
