//! Renders incident mails: subject, plain text and HTML. Everything that came
//! from the chain (event arguments) is untrusted: control characters are
//! escaped and lengths capped everywhere, and it is HTML-escaped in the HTML
//! part. Headers are built by lettre, never by hand.

use std::fmt::Write;

use crate::model::sanitize_text;
use crate::render::{duration, esc};
use crate::store::{IncidentRecord, IncidentState, format_time};

/// Longest cause text in a subject line.
const SUBJECT_CAUSE_MAX_CHARS: usize = 80;
/// Longest decoded argument in a body.
const ARG_MAX_CHARS: usize = 200;

/// A rendered mail, ready for the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Where a responder goes from a mail: the incident's page (with `[api]
/// public_url`) and the protocol's runbook (`runbook_url`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Links<'a> {
    /// `public_url`, to which `/incidents/<id>` is added.
    pub public_url: Option<&'a str>,
    pub runbook: Option<&'a str>,
}

impl Links<'_> {
    /// (label, URL) of each link set, for the incident `id`.
    fn all(&self, id: i64) -> Vec<(&'static str, String)> {
        let page = self
            .public_url
            .map(|base| ("Incident page", format!("{base}/incidents/{id}")));
        let runbook = self.runbook.map(|u| ("Runbook", u.to_string()));
        page.into_iter().chain(runbook).collect()
    }
}

/// What the mail announces: the newest queued transition of the incident.
pub fn render(
    incident: &IncidentRecord,
    kinds: &[String],
    explorer_tx_url: Option<&str>,
    links: Links<'_>,
    now_secs: u64,
) -> Rendered {
    let links = links.all(incident.id);
    let latest = kinds.last().map(String::as_str).unwrap_or("opened");
    let label = match (latest, incident.state) {
        ("withdrawn", _) | (_, IncidentState::Withdrawn) => "WITHDRAWN".to_string(),
        (_, IncidentState::Resolved) => "RESOLVED".to_string(),
        _ => current_severity(incident).to_ascii_uppercase(),
    };
    let cause = cause(incident);
    let since = format_time(incident.started_at);
    let hhmm = since.get(11..16).unwrap_or(&since).to_string();
    let tail = match incident.state {
        IncidentState::Resolved => format!(
            "resolved after {}",
            duration(incident.duration_seconds.unwrap_or(0))
        ),
        IncidentState::Withdrawn => "withdrawn: a reorg removed its evidence".to_string(),
        IncidentState::Open => format!("since {hhmm} UTC"),
    };
    let tail = if latest == "reinstated" {
        format!("{tail} (back: the reorg that withdrew it was undone)")
    } else {
        tail
    };
    let subject = format!(
        "[{label}] {} on {}: {} {tail}",
        incident.protocol, incident.chain, cause
    );
    let subject = sanitize_text(&subject, 200);

    let ago = now_secs.saturating_sub(incident.started_at);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} on {} is {}.",
        incident.protocol,
        incident.chain,
        match incident.state {
            IncidentState::Open => current_severity(incident).to_string(),
            IncidentState::Resolved => "operational again".to_string(),
            IncidentState::Withdrawn => "not halted: the incident was withdrawn".to_string(),
        }
    );
    if latest == "reinstated" {
        let _ = writeln!(
            text,
            "It is back: the blocks a reorg had removed are on the chain again, and so is its evidence."
        );
    }
    let _ = writeln!(text);
    let _ = writeln!(text, "Incident:  {} ({})", incident.id, incident.key);
    let _ = writeln!(text, "Cause:     {cause}");
    let _ = writeln!(text, "Worst:     {}", incident.severity);
    let _ = writeln!(text, "Scopes:    {}", incident.scopes.join(", "));
    let _ = writeln!(
        text,
        "Since:     {} ({} ago, block {})",
        human_time(incident.started_at),
        duration(ago),
        incident.start_block
    );
    if let (Some(end), Some(d)) = (incident.ended_at, incident.duration_seconds) {
        let _ = writeln!(text, "Ended:     {}", human_time(end));
        let _ = writeln!(text, "Duration:  {} ({d} s)", duration(d));
    }
    for (label, url) in &links {
        let _ = writeln!(text, "{:<10} {url}", format!("{label}:"));
    }
    let _ = writeln!(text);
    let _ = writeln!(text, "Timeline:");
    for t in incident.transitions.iter().filter(|t| !t.retracted) {
        let _ = writeln!(
            text,
            "  {}  {}  {} -> {}  (block {})",
            human_time(t.at),
            t.kind.as_str(),
            t.from,
            t.to,
            t.block_number
        );
    }
    let _ = writeln!(text);
    let _ = writeln!(text, "Evidence:");
    for e in &incident.evidence {
        let _ = writeln!(
            text,
            "  block {} tx {} log {}{}",
            e.block_number,
            e.tx_hash,
            e.log_index,
            if e.retracted {
                " (removed by a reorg)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            text,
            "    {} {} {}({})",
            e.contract_name,
            e.contract,
            event_name(&e.event),
            args_text(&e.args)
        );
        if let Some(url) = explorer_tx_url {
            let _ = writeln!(
                text,
                "    {}",
                url.replace("{hash}", &e.tx_hash.to_string())
            );
        }
    }

    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><body style=\"font-family:sans-serif\"><h2>{}</h2><table>",
        esc(&subject)
    );
    let row = |html: &mut String, k: &str, v: &str| {
        let _ = write!(
            html,
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            esc(k),
            esc(v)
        );
    };
    row(&mut html, "Protocol", &incident.protocol);
    row(&mut html, "Chain", &incident.chain);
    row(
        &mut html,
        "State",
        &format!("{label} (worst: {})", incident.severity),
    );
    row(&mut html, "Cause", &cause);
    row(&mut html, "Scopes", &incident.scopes.join(", "));
    row(
        &mut html,
        "Since",
        &format!(
            "{} ({} ago)",
            human_time(incident.started_at),
            duration(ago)
        ),
    );
    if let Some(d) = incident.duration_seconds {
        row(&mut html, "Duration", &format!("{} ({d} s)", duration(d)));
    }
    for (label, url) in &links {
        let _ = write!(
            html,
            "<tr><th align=\"left\">{}</th><td><a href=\"{}\">{}</a></td></tr>",
            esc(label),
            esc(url),
            esc(url)
        );
    }
    let _ = write!(html, "</table><h3>Evidence</h3><ul>");
    for e in &incident.evidence {
        let tx = e.tx_hash.to_string();
        let link = match explorer_tx_url {
            Some(url) => format!(
                "<a href=\"{}\">{}</a>",
                esc(&url.replace("{hash}", &tx)),
                esc(&tx)
            ),
            None => esc(&tx),
        };
        let _ = write!(
            html,
            "<li>block {} tx {link} log {}: {} {} <code>{}({})</code></li>",
            e.block_number,
            e.log_index,
            esc(&e.contract_name),
            e.contract,
            esc(event_name(&e.event)),
            esc(&args_text(&e.args))
        );
    }
    let _ = write!(html, "</ul></body></html>");
    Rendered {
        subject,
        text,
        html,
    }
}

/// A notice about a chain: a reorg deeper than the window, with what
/// haltwatch did about it (`body`, the monitoring gap's reason).
pub fn render_notice(chain: &str, protocols: &[&str], body: &str) -> Rendered {
    let subject = sanitize_text(
        &format!("[DEEP REORG] {chain}: the chain reorganised deeper than haltwatch remembers"),
        200,
    );
    let lines = [
        format!("{chain} reorganised deeper than the reorg window: {body}."),
        String::new(),
        format!("Protocols on this chain: {}.", protocols.join(", ")),
        "Incidents whose evidence was in the replaced blocks are withdrawn, and those on the new branch recorded, each in its own mail.".to_string(),
        "Until the re-read passes the old checkpoint, /readyz reports the chain as not ready; the interval is recorded as a monitoring gap.".to_string(),
    ];
    let text = lines.join("\n") + "\n";
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><h2>{}</h2>{}</body></html>",
        esc(&subject),
        lines
            .iter()
            .filter(|l| !l.is_empty())
            .map(|l| format!("<p>{}</p>", esc(l)))
            .collect::<String>()
    );
    Rendered {
        subject,
        text,
        html,
    }
}

/// A digest: several incidents' mails over the hourly cap, in one message.
pub fn render_digest(protocol: &str, incidents: &[(&IncidentRecord, String)]) -> Rendered {
    let subject = sanitize_text(
        &format!(
            "[DIGEST] {protocol}: {} incident update(s) over the hourly mail limit",
            incidents.len()
        ),
        200,
    );
    let mut text = format!("{subject}\n\n");
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><h2>{}</h2><ul>",
        esc(&subject)
    );
    for (i, kind) in incidents {
        let line = format!(
            "incident {} {kind}: {} {} since {} ({})",
            i.id,
            current_severity(i),
            cause(i),
            human_time(i.started_at),
            match i.duration_seconds {
                Some(d) => format!("lasted {}", duration(d)),
                None => "ongoing".into(),
            }
        );
        let _ = writeln!(text, "  - {line}");
        let _ = write!(html, "<li>{}</li>", esc(&line));
    }
    html.push_str("</ul></body></html>");
    Rendered {
        subject,
        text,
        html,
    }
}

fn current_severity(i: &IncidentRecord) -> &'static str {
    i.transitions
        .iter()
        .rfind(|t| !t.retracted)
        .map_or(i.severity, |t| t.to)
        .as_str()
}

/// The opening evidence as `Paused(account=0x…)`, sanitised and capped.
fn cause(i: &IncidentRecord) -> String {
    let Some(e) = i
        .evidence
        .iter()
        .find(|e| !e.retracted)
        .or(i.evidence.first())
    else {
        return "unknown cause".into();
    };
    let text = format!("{}({})", event_name(&e.event), args_text(&e.args));
    sanitize_text(&text, SUBJECT_CAUSE_MAX_CHARS)
}

fn event_name(signature: &str) -> &str {
    signature.split('(').next().unwrap_or(signature)
}

fn args_text(args: &[crate::model::EventArg]) -> String {
    args.iter()
        .map(|a| format!("{}={}", a.name, sanitize_text(&a.value, ARG_MAX_CHARS)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn human_time(secs: u64) -> String {
    format_time(secs).replace('T', " ").replace('Z', " UTC")
}
