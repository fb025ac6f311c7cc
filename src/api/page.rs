//! The status page for people: server-rendered HTML with inline SVG and CSS,
//! no external assets, every string escaped.

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{AppState, html, internal};
use crate::model::{ProtocolState, sanitize_text};
use crate::render::{duration, esc};
use crate::report::state_seconds;
use crate::store::{IncidentFilter, IncidentRecord, IncidentState, format_time};

/// Days in the uptime bar.
const DAYS: u64 = 90;
const DAY: u64 = 86_400;
/// Incidents listed on the front page.
const RECENT: usize = 20;

const STYLE: &str = r#"
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:960px;color:#1b1f24;padding:0 1rem}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin:0}
section.protocol{border:1px solid #d0d7de;border-radius:8px;padding:1rem;margin:1rem 0}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:1rem;font-size:.8rem;font-weight:600;color:#fff;vertical-align:middle}
.operational{background:#2e7d32}.degraded{background:#b26a00}.halted{background:#c62828}.withdrawn,.resolved{background:#57606a}.open{background:#c62828}
.meta{color:#57606a;font-size:.85rem;margin:.3rem 0}
table{border-collapse:collapse;width:100%;font-size:.9rem} td,th{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eaeef2}
code{font-size:.85rem;word-break:break-all}
"#;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    )
}

fn badge(class: &str, text: &str) -> String {
    format!("<span class=\"badge {}\">{}</span>", esc(class), esc(text))
}

fn day_label(start: u64) -> String {
    format_time(start).get(..10).unwrap_or_default().to_string()
}

/// The 90-day bar of one protocol: one cell per UTC day, coloured by the
/// worst state observed that day, grey ("no data") where nothing of the day
/// was observed; a partly observed day says how much in its hover text.
/// `watched` is what was observed of the protocol's chain
/// ([`crate::report::watched_spans`]). Returns the bar and the uptime over
/// the observed time (`None` when none was).
fn uptime_bar(
    protocol: &str,
    incidents: &[IncidentRecord],
    watched: &[(u64, u64)],
    now: u64,
) -> (String, Option<f64>) {
    let today = now - now % DAY;
    let first = today - (DAYS - 1) * DAY;
    let mine: Vec<&IncidentRecord> = incidents
        .iter()
        .filter(|i| i.protocol == protocol && i.state != IncidentState::Withdrawn && !i.planned)
        .collect();
    let (cell, gap) = (8, 2);
    let mut svg = format!(
        "<svg role=\"img\" aria-label=\"90-day uptime of {}\" width=\"{}\" height=\"34\" viewBox=\"0 0 {} 34\">",
        esc(protocol),
        DAYS * (cell + gap),
        DAYS * (cell + gap)
    );
    let (mut halted_total, mut observed_total) = (0, 0);
    for d in 0..DAYS {
        let start = first + d * DAY;
        let end = (start + DAY).min(now.max(start + 1));
        // The observed parts of this day.
        let parts: Vec<(u64, u64)> = watched
            .iter()
            .map(|&(a, b)| (a.max(start), b.min(end)))
            .filter(|(a, b)| a < b)
            .collect();
        let observed: u64 = parts.iter().map(|(a, b)| b - a).sum();
        let (halted, degraded) = parts.iter().fold((0, 0), |(h, g), &(a, b)| {
            mine.iter().fold((h, g), |(h, g), i| {
                let (x, y) = state_seconds(i, a, b);
                (h + x, g + y)
            })
        });
        halted_total += halted;
        observed_total += observed;
        let x = d * (cell + gap);
        let label = day_label(start);
        if observed == 0 {
            let _ = write!(
                svg,
                "<rect class=\"day nodata\" x=\"{x}\" y=\"0\" width=\"{cell}\" height=\"34\" rx=\"1\" fill=\"#d0d7de\">\
                 <title>{label}: no data (not observed)</title></rect>"
            );
            continue;
        }
        let (colour, worst) = if halted > 0 {
            ("#c62828", "halted")
        } else if degraded > 0 {
            ("#e0a800", "degraded")
        } else {
            ("#2e7d32", "operational")
        };
        let up = 100.0 * observed.saturating_sub(halted) as f64 / observed as f64;
        let share = 100.0 * observed as f64 / (end - start) as f64;
        let seen = if share < 99.95 {
            format!("; observed {share:.1}% of the day")
        } else {
            String::new()
        };
        let _ = write!(
            svg,
            "<rect class=\"day {worst}\" x=\"{x}\" y=\"0\" width=\"{cell}\" height=\"34\" rx=\"1\" fill=\"{colour}\">\
             <title>{label}: {worst}; {up:.2}% up; halted {}, degraded {}{seen}</title></rect>",
            duration(halted),
            duration(degraded)
        );
    }
    svg.push_str("</svg>");
    let uptime = (observed_total > 0).then(|| {
        100.0 * observed_total.saturating_sub(halted_total) as f64 / observed_total as f64
    });
    (svg, uptime)
}

pub(super) async fn status_page(State(state): State<AppState>) -> Response {
    let now = state.now();
    let filter = IncidentFilter {
        since: Some(now - DAYS * DAY),
        ..Default::default()
    };
    let incidents = match state.store.list(&filter).await {
        Ok(l) => l,
        Err(e) => return internal(e),
    };
    let since = now - DAYS * DAY;
    let (gaps, observed) = match (
        state.store.gaps(since, now).await,
        state.store.observed(since, now).await,
    ) {
        (Ok(g), Ok(o)) => (g, o),
        (Err(e), _) | (_, Err(e)) => return internal(e),
    };
    let statuses = state.status.protocols();
    let mut body = String::from("<h1>Protocol status</h1>");
    for p in &state.config.protocols {
        let chain = &state.config.chains[p.chain].name;
        let live = statuses.iter().find(|s| s.protocol == p.name);
        let current = live.map_or(ProtocolState::Operational, |s| s.state);
        let watched = crate::report::watched_spans(chain, &observed, &gaps, since, now);
        let (bar, uptime) = uptime_bar(&p.name, &incidents, &watched, now);
        let uptime = uptime.map_or("nothing observed".to_string(), |u| {
            format!("{u:.3}% uptime over the observed time")
        });
        let scopes = live
            .filter(|s| !s.halted_scopes.is_empty())
            .map(|s| format!(" — halted: {}", esc(&s.halted_scopes.join(", "))))
            .unwrap_or_default();
        let runbook = p
            .runbook_url
            .as_deref()
            .map(|u| format!(" · <a class=\"runbook\" href=\"{}\">runbook</a>", esc(u)))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<section class=\"protocol\" id=\"protocol-{}\"><h2>{} {}</h2>\
             <p class=\"meta\">on {}{scopes}{runbook}</p>{bar}<p class=\"meta\">{uptime} of the last {DAYS} days</p></section>",
            esc(&p.name.replace(' ', "-")),
            esc(&p.name),
            badge(current.as_str(), &current.as_str().to_uppercase()),
            esc(chain)
        );
    }
    body.push_str("<h2>Recent incidents</h2><table id=\"incidents\"><tr><th>#</th><th>protocol</th><th>state</th><th>worst</th><th>started</th><th>duration</th><th>cause</th></tr>");
    for i in incidents.iter().take(RECENT) {
        let _ = write!(
            body,
            "<tr class=\"incident\"><td><a href=\"/incidents/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&i.protocol),
            badge(i.state.as_str(), i.state.as_str()),
            esc(i.severity.as_str()),
            esc(&format_time(i.started_at)),
            i.duration_seconds.map_or("ongoing".to_string(), duration),
            esc(&cause(i)),
            id = i.id
        );
    }
    if incidents.is_empty() {
        body.push_str("<tr><td colspan=\"7\">No incidents in the last 90 days.</td></tr>");
    }
    body.push_str("</table>");
    html(page("haltwatch status", &body))
}

fn cause(i: &IncidentRecord) -> String {
    i.evidence.first().map_or(String::new(), |e| {
        let args: Vec<String> = e
            .args
            .iter()
            .map(|a| format!("{}={}", a.name, sanitize_text(&a.value, 120)))
            .collect();
        format!(
            "{}({})",
            e.event.split('(').next().unwrap_or(""),
            args.join(", ")
        )
    })
}

pub(super) async fn incident_page(State(state): State<AppState>, Path(id): Path<i64>) -> Response {
    let i = match state.store.incident(id).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                html(page("not found", "<h1>No such incident</h1>")),
            )
                .into_response();
        }
        Err(e) => return internal(e),
    };
    let explorer = state
        .config
        .chains
        .iter()
        .find(|c| c.chain_id == i.chain_id)
        .and_then(|c| c.explorer_tx_url.clone());
    let mut body = format!(
        "<p><a href=\"/\">&larr; status</a></p><h1>Incident {} {}</h1>\
         <p class=\"meta\">{} on {} — worst: {} — {}</p>\
         <table><tr><th>started</th><td>{} (block {})</td></tr><tr><th>ended</th><td>{}</td></tr>\
         <tr><th>duration</th><td>{}</td></tr><tr><th>scopes</th><td>{}</td></tr></table>",
        i.id,
        badge(i.state.as_str(), i.state.as_str()),
        esc(&i.protocol),
        esc(&i.chain),
        esc(i.severity.as_str()),
        if i.planned {
            "planned maintenance"
        } else {
            "unplanned"
        },
        esc(&format_time(i.started_at)),
        i.start_block,
        i.ended_at.map_or("-".to_string(), |t| esc(&format_time(t))),
        i.duration_seconds.map_or("ongoing".to_string(), duration),
        esc(&i.scopes.join(", "))
    );
    body.push_str("<h2>Timeline</h2><table><tr><th>at</th><th>transition</th><th>state</th><th>block</th></tr>");
    for t in &i.transitions {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{} &rarr; {}</td><td>{}{}</td></tr>",
            esc(&format_time(t.at)),
            t.kind.as_str(),
            t.from,
            t.to,
            t.block_number,
            if t.retracted {
                " (retracted by a reorg)"
            } else {
                ""
            }
        );
    }
    body.push_str("</table><h2>Evidence</h2><table><tr><th>block</th><th>tx</th><th>log</th><th>contract</th><th>event</th></tr>");
    for e in &i.evidence {
        let tx = e.tx_hash.to_string();
        let tx_cell = match &explorer {
            Some(t) => format!(
                "<a href=\"{}\" rel=\"noreferrer\">{}</a>",
                esc(&t.replace("{hash}", &tx)),
                esc(&tx)
            ),
            None => esc(&tx),
        };
        let args: Vec<String> = e
            .args
            .iter()
            .map(|a| format!("{}={}", a.name, sanitize_text(&a.value, 200)))
            .collect();
        let _ = write!(
            body,
            "<tr><td>{} <code>{}</code></td><td><code>{tx_cell}</code></td><td>{}</td><td>{} <code>{}</code></td><td><code>{}({})</code>{}</td></tr>",
            e.block_number,
            esc(&e.block_hash.to_string()),
            e.log_index,
            esc(&e.contract_name),
            e.contract,
            esc(e.event.split('(').next().unwrap_or("")),
            esc(&args.join(", ")),
            if e.retracted { " (retracted)" } else { "" }
        );
    }
    body.push_str("</table>");
    html(page(&format!("incident {}", i.id), &body))
}
