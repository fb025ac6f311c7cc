//! The auditor's figures for a period, and the incident export formats.
//! Pure functions over stored incidents: the CLI and the API share them.

use std::fmt::Write;

use serde::Serialize;

use crate::model::{ProtocolState, sanitize_text};
use crate::render::duration;
use crate::store::{GapRecord, IncidentRecord, IncidentState, ObservedSpan, format_time};

mod coverage;
pub use coverage::watched_spans;

/// Parses `2026-11-01T00:00:00Z`, `now`, or a span before `now`: `30d`, `12h`, `90m`, `45s`.
pub fn parse_time(s: &str, now: u64) -> Option<u64> {
    let s = s.trim();
    if s == "now" {
        return Some(now);
    }
    if let Some(t) = crate::config::parse_rfc3339(s) {
        return Some(t);
    }
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = number.parse().ok()?;
    let unit_seconds: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    // A span that does not fit in 64 bits of seconds (`999999999999999d`)
    // is not a time; one before 1970 is the beginning.
    let seconds = n.checked_mul(unit_seconds)?;
    Some(now.saturating_sub(seconds))
}

/// What the report needs to know about a configured protocol.
#[derive(Debug, Clone)]
pub struct ProtocolInfo {
    pub name: String,
    pub chain: String,
    pub revenue_per_hour_usd: Option<f64>,
}

/// One protocol's figures for a period.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProtocolReport {
    pub protocol: String,
    pub chain: String,
    #[serde(with = "crate::store::rfc3339")]
    pub since: u64,
    #[serde(with = "crate::store::rfc3339")]
    pub until: u64,
    /// Incidents that overlap the period, planned ones excluded.
    pub incidents: usize,
    /// Halted and degraded time inside the observed time.
    pub halted_seconds: u64,
    pub degraded_seconds: u64,
    /// Time of the period the monitor observed of the protocol's chain: its
    /// observed spans, less its monitoring gaps.
    pub observed_seconds: u64,
    /// `observed / period`.
    pub coverage_percent: f64,
    /// `(observed − halted) / observed`; degraded time and planned
    /// maintenance do not count against it. `None` when nothing of the
    /// period was observed: no claim either way.
    pub uptime_percent: Option<f64>,
    /// Incidents inside maintenance windows, and their halted + degraded time.
    pub planned_incidents: usize,
    pub planned_seconds: u64,
    /// Mean duration of the resolved incidents.
    pub mttr_seconds: Option<f64>,
    /// Operational time divided by the number of incidents.
    pub mtbf_seconds: Option<f64>,
    pub longest_halt_seconds: u64,
    pub longest_halt_incident: Option<i64>,
    /// The monitor's own blind spots (not protocol downtime).
    pub monitoring_gaps: usize,
    pub monitoring_gap_seconds: u64,
    /// `halted hours × revenue_per_hour_usd`, when the protocol sets it.
    pub estimated_cost_usd: Option<f64>,
}

/// Seconds an incident spent halted and degraded inside `since..until`.
/// Open incidents run until `until`.
pub fn state_seconds(i: &IncidentRecord, since: u64, until: u64) -> (u64, u64) {
    let live: Vec<_> = i.transitions.iter().filter(|t| !t.retracted).collect();
    let (mut halted, mut degraded) = (0, 0);
    for (n, t) in live.iter().enumerate() {
        let end = live
            .get(n + 1)
            .map_or(i.ended_at.unwrap_or(until), |next| next.at);
        let (a, b) = (t.at.max(since), end.min(until));
        if b <= a {
            continue;
        }
        match t.to {
            ProtocolState::Halted => halted += b - a,
            ProtocolState::Degraded => degraded += b - a,
            ProtocolState::Operational => {}
        }
    }
    (halted, degraded)
}

/// Figures per protocol for `since..until` from the incidents and the
/// monitoring gaps (of the protocol's chain) that overlap it.
pub fn report(
    protocols: &[ProtocolInfo],
    incidents: &[IncidentRecord],
    gaps: &[GapRecord],
    observed: &[ObservedSpan],
    since: u64,
    until: u64,
) -> Vec<ProtocolReport> {
    let period = until.saturating_sub(since).max(1);
    protocols
        .iter()
        .map(|p| {
            let watched = watched_spans(&p.chain, observed, gaps, since, until);
            let observed_seconds: u64 = watched.iter().map(|(a, b)| b - a).sum();
            let mine = incidents
                .iter()
                .filter(|i| i.protocol == p.name && i.state != IncidentState::Withdrawn);
            let mut r = ProtocolReport {
                protocol: p.name.clone(),
                chain: p.chain.clone(),
                since,
                until,
                incidents: 0,
                halted_seconds: 0,
                degraded_seconds: 0,
                observed_seconds,
                coverage_percent: 100.0 * observed_seconds as f64 / period as f64,
                uptime_percent: None,
                planned_incidents: 0,
                planned_seconds: 0,
                mttr_seconds: None,
                mtbf_seconds: None,
                longest_halt_seconds: 0,
                longest_halt_incident: None,
                monitoring_gaps: 0,
                monitoring_gap_seconds: 0,
                estimated_cost_usd: None,
            };
            let mut repairs = Vec::new();
            for i in mine {
                // Only what was observed counts, for or against.
                let (halted, degraded) = watched.iter().fold((0, 0), |(h, d), &(a, b)| {
                    let (x, y) = state_seconds(i, a, b);
                    (h + x, d + y)
                });
                if i.planned {
                    r.planned_incidents += 1;
                    r.planned_seconds += halted + degraded;
                    continue;
                }
                r.incidents += 1;
                r.halted_seconds += halted;
                r.degraded_seconds += degraded;
                if halted > r.longest_halt_seconds {
                    r.longest_halt_seconds = halted;
                    r.longest_halt_incident = Some(i.id);
                }
                if let Some(d) = i.duration_seconds {
                    repairs.push(d as f64);
                }
            }
            r.uptime_percent = (observed_seconds > 0).then(|| {
                100.0 * (observed_seconds - r.halted_seconds.min(observed_seconds)) as f64
                    / observed_seconds as f64
            });
            if !repairs.is_empty() {
                r.mttr_seconds = Some(repairs.iter().sum::<f64>() / repairs.len() as f64);
            }
            if r.incidents > 0 {
                let operational =
                    observed_seconds.saturating_sub(r.halted_seconds + r.degraded_seconds);
                r.mtbf_seconds = Some(operational as f64 / r.incidents as f64);
            }
            for g in gaps.iter().filter(|g| g.chain == p.chain) {
                let (a, b) = (
                    g.started_at.max(since),
                    g.ended_at.unwrap_or(until).min(until),
                );
                r.monitoring_gaps += 1;
                r.monitoring_gap_seconds += b.saturating_sub(a);
            }
            r.estimated_cost_usd = p
                .revenue_per_hour_usd
                .map(|usd| usd * r.halted_seconds as f64 / 3600.0);
            r
        })
        .collect()
}

/// A human table, or Markdown (`markdown = true`) for pasting into a review.
pub fn report_text(reports: &[ProtocolReport], markdown: bool, head: &str) -> String {
    let header = [
        "protocol",
        "chain",
        "incidents",
        "halted",
        "degraded",
        "uptime",
        "observed",
        "planned",
        "MTTR",
        "MTBF",
        "longest halt",
        "gaps",
        "est. cost",
    ];
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.protocol.clone(),
                r.chain.clone(),
                r.incidents.to_string(),
                duration(r.halted_seconds),
                duration(r.degraded_seconds),
                r.uptime_percent
                    .map_or("no data".to_string(), |u| format!("{u:.3}%")),
                format!(
                    "{} ({:.1}%)",
                    duration(r.observed_seconds),
                    r.coverage_percent
                ),
                format!("{} ({})", r.planned_incidents, duration(r.planned_seconds)),
                r.mttr_seconds
                    .map_or("-".into(), |s| duration(s.round() as u64)),
                r.mtbf_seconds
                    .map_or("-".into(), |s| duration(s.round() as u64)),
                match r.longest_halt_incident {
                    Some(id) => format!("{} (#{id})", duration(r.longest_halt_seconds)),
                    None => "-".into(),
                },
                r.monitoring_gaps.to_string(),
                r.estimated_cost_usd
                    .map_or("-".into(), |c| format!("${c:.2}")),
            ]
        })
        .collect();
    let mut out = String::new();
    if let Some(r) = reports.first() {
        let _ = writeln!(
            out,
            "Period: {} to {}",
            format_time(r.since),
            format_time(r.until)
        );
        let _ = writeln!(out);
    }
    if markdown {
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
        for row in &rows {
            let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    } else {
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let _ = writeln!(out, "{}", line(header.to_vec()));
        for row in &rows {
            let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "History head: {head}");
    out
}

/// The stable CSV columns of `incidents export --format csv`.
pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "key",
    "protocol",
    "chain",
    "chain_id",
    "state",
    "severity",
    "planned",
    "started_at",
    "ended_at",
    "duration_seconds",
    "start_block",
    "end_block",
    "scopes",
    "cause",
    "opening_tx_hash",
    "evidence_count",
];

/// One CSV row per incident, with a header row. Text that came from the
/// chain is sanitised, and cells that a spreadsheet would run as a formula
/// are prefixed with `'`.
pub fn csv(incidents: &[IncidentRecord]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for i in incidents {
        let opening = i.evidence.first();
        let cause = opening.map_or(String::new(), |e| {
            let args: Vec<String> = e
                .args
                .iter()
                .map(|a| format!("{}={}", a.name, a.value))
                .collect();
            sanitize_text(
                &format!(
                    "{}({})",
                    e.event.split('(').next().unwrap_or(""),
                    args.join(", ")
                ),
                500,
            )
        });
        let cells = [
            i.id.to_string(),
            i.key.clone(),
            i.protocol.clone(),
            i.chain.clone(),
            i.chain_id.to_string(),
            plain(&i.state),
            i.severity.to_string(),
            i.planned.to_string(),
            format_time(i.started_at),
            i.ended_at.map(format_time).unwrap_or_default(),
            i.duration_seconds
                .map(|d| d.to_string())
                .unwrap_or_default(),
            i.start_block.to_string(),
            i.end_block.map(|b| b.to_string()).unwrap_or_default(),
            i.scopes.join(";"),
            cause,
            opening.map(|e| e.tx_hash.to_string()).unwrap_or_default(),
            i.evidence.len().to_string(),
        ];
        let cells: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

fn plain<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Quotes a cell when needed and defuses spreadsheet formulas.
pub fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::coverage::tests::span;
    use super::*;
    use crate::model::TransitionKind;
    use crate::store::TransitionRecord;
    use alloy::primitives::B256;

    fn incident(
        id: i64,
        planned: bool,
        steps: &[(u64, ProtocolState)],
        ended: Option<u64>,
    ) -> IncidentRecord {
        let transitions = steps
            .iter()
            .enumerate()
            .map(|(n, (at, to))| TransitionRecord {
                kind: if n == 0 {
                    TransitionKind::Opened
                } else {
                    TransitionKind::Escalated
                },
                from: ProtocolState::Operational,
                to: *to,
                at: *at,
                block_number: 0,
                block_hash: B256::ZERO,
                retracted: false,
            })
            .chain(ended.map(|at| TransitionRecord {
                kind: TransitionKind::Resolved,
                from: ProtocolState::Halted,
                to: ProtocolState::Operational,
                at,
                block_number: 0,
                block_hash: B256::ZERO,
                retracted: false,
            }))
            .collect();
        IncidentRecord {
            id,
            key: format!("k{id}"),
            protocol: "P".into(),
            chain: "c".into(),
            chain_id: 1,
            state: if ended.is_some() {
                IncidentState::Resolved
            } else {
                IncidentState::Open
            },
            severity: ProtocolState::Halted,
            started_at: steps[0].0,
            ended_at: ended,
            duration_seconds: ended.map(|e| e - steps[0].0),
            start_block: 0,
            end_block: None,
            planned,
            scopes: vec![],
            transitions,
            evidence: vec![],
        }
    }

    #[test]
    fn figures_from_hand_computed_timelines() {
        use ProtocolState::*;
        let p = [ProtocolInfo {
            name: "P".into(),
            chain: "c".into(),
            revenue_per_hour_usd: Some(1000.0),
        }];
        // Period 0..100_000.
        let incidents = vec![
            // 1000 s degraded, then 2000 s halted.
            incident(
                1,
                false,
                &[(10_000, Degraded), (11_000, Halted)],
                Some(13_000),
            ),
            // Halted 3600 s.
            incident(2, false, &[(50_000, Halted)], Some(53_600)),
            // Planned: 500 s, not counted against uptime.
            incident(3, true, &[(60_000, Halted)], Some(60_500)),
            // Still open, halted from 99_000: 1000 s inside the period.
            incident(4, false, &[(99_000, Halted)], None),
        ];
        let gaps = vec![
            GapRecord {
                chain: "c".into(),
                chain_id: 1,
                started_at: 70_000,
                ended_at: Some(70_600),
                reason: "refused".into(),
            },
            GapRecord {
                chain: "other".into(),
                chain_id: 2,
                started_at: 70_000,
                ended_at: None,
                reason: "refused".into(),
            },
        ];
        let all = [span("c", 0, 100_000)];
        let r = &report(&p, &incidents, &gaps, &all, 0, 100_000)[0];
        assert_eq!(
            (r.monitoring_gaps, r.monitoring_gap_seconds),
            (1, 600),
            "only its chain's gaps, not downtime"
        );
        assert_eq!(r.incidents, 3);
        assert_eq!(r.halted_seconds, 2000 + 3600 + 1000);
        assert_eq!(r.degraded_seconds, 1000);
        // Observed: the whole period less the 600 s gap.
        assert_eq!(r.observed_seconds, 99_400);
        let uptime = r.uptime_percent.unwrap();
        assert!(
            (uptime - 100.0 * (99_400.0 - 6600.0) / 99_400.0).abs() < 1e-9,
            "{uptime}"
        );
        assert_eq!((r.planned_incidents, r.planned_seconds), (1, 500));
        assert_eq!(r.mttr_seconds, Some((3000.0 + 3600.0) / 2.0));
        assert_eq!(r.mtbf_seconds, Some((99_400.0 - 7600.0) / 3.0));
        assert_eq!(
            (r.longest_halt_seconds, r.longest_halt_incident),
            (3600, Some(2))
        );
        assert_eq!(r.estimated_cost_usd, Some(1000.0 * 6600.0 / 3600.0));
    }

    #[test]
    fn uptime_is_claimed_only_for_observed_time() {
        let p = [ProtocolInfo {
            name: "P".into(),
            chain: "c".into(),
            revenue_per_hour_usd: None,
        }];
        // Halted 6,000 s; the monitor started at 88,000 of a 0..100,000 period.
        let incidents = vec![incident(
            1,
            false,
            &[(90_000, ProtocolState::Halted)],
            Some(96_000),
        )];
        let spans = [span("c", 88_000, 100_000), span("other", 0, 100_000)];
        let r = &report(&p, &incidents, &[], &spans, 0, 100_000)[0];
        assert_eq!(r.observed_seconds, 12_000);
        assert!((r.coverage_percent - 12.0).abs() < 1e-9);
        assert_eq!(r.uptime_percent, Some(50.0), "6,000 s of 12,000 observed");
        // Nothing observed: no claim.
        let r = &report(&p, &incidents, &[], &[], 0, 100_000)[0];
        assert_eq!((r.observed_seconds, r.uptime_percent), (0, None));
        assert_eq!(r.halted_seconds, 0, "nothing counts that was not observed");
    }

    #[test]
    fn clipping_to_the_period() {
        let i = incident(1, false, &[(100, ProtocolState::Halted)], Some(1_000));
        assert_eq!(state_seconds(&i, 500, 800), (300, 0));
        assert_eq!(state_seconds(&i, 2_000, 3_000), (0, 0));
    }

    #[test]
    fn relative_and_absolute_times() {
        let now = 10_000_000;
        assert_eq!(parse_time("30d", now), Some(now - 30 * 86_400));
        assert_eq!(parse_time("12h", now), Some(now - 12 * 3600));
        assert_eq!(parse_time("now", now), Some(now));
        assert_eq!(parse_time("2026-11-01T00:00:00Z", now), Some(1_793_491_200));
        assert_eq!(parse_time("soon", now), None);
        assert_eq!(parse_time("5y", now), None);
        assert_eq!(
            parse_time("999999999999d", now),
            Some(0),
            "before 1970: the beginning"
        );
        assert_eq!(
            parse_time("99999999999999999w", now),
            None,
            "overflows: an error, not a panic"
        );
    }

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
    }
}
