//! `haltwatch report` and `haltwatch verify`: uptime figures over the
//! observed time, and the checks of the history against the chain, its hash
//! chain, a pinned head and its on-chain anchors.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use haltwatch::report::{ProtocolInfo, parse_time};
use haltwatch::store::{IncidentFilter, Store};
use haltwatch::{config, render};

use crate::{ReportFormat, now_secs};

pub async fn report(
    path: &Path,
    since: &str,
    until: &str,
    protocol: Option<String>,
    format: ReportFormat,
) -> anyhow::Result<ExitCode> {
    let config = config::load(path)?;
    let store = Store::open_read_only(&config.store).await?;
    let now = now_secs();
    let since = parse_time(since, now)
        .with_context(|| format!("bad --since `{since}`: expected RFC 3339 or a span like 30d"))?;
    let until = parse_time(until, now)
        .with_context(|| format!("bad --until `{until}`: expected RFC 3339, a span, or now"))?;
    anyhow::ensure!(since < until, "--since must be before --until");
    let protocols: Vec<ProtocolInfo> = config
        .protocols
        .iter()
        .filter(|p| protocol.as_ref().is_none_or(|want| &p.name == want))
        .map(|p| ProtocolInfo {
            name: p.name.clone(),
            chain: config.chains[p.chain].name.clone(),
            revenue_per_hour_usd: p.revenue_per_hour_usd,
        })
        .collect();
    if let Some(want) = &protocol {
        anyhow::ensure!(
            !protocols.is_empty(),
            "no protocol named `{want}` in the config"
        );
    }
    let incidents = store
        .list(&IncidentFilter {
            protocol,
            since: Some(since),
            until: Some(until),
            ..Default::default()
        })
        .await?;
    let gaps = store.gaps(since, until).await?;
    let observed = store.observed(since, until).await?;
    let reports = haltwatch::report::report(&protocols, &incidents, &gaps, &observed, since, until);
    let (records, head) = store.ledger_head().await?;
    match format {
        ReportFormat::Json => println!(
            "{}",
            render::json(&serde_json::json!({
                "protocols": reports,
                "monitoring_gaps": gaps,
                "history_head": { "records": records, "hash": head },
            }))
        ),
        ReportFormat::Table | ReportFormat::Markdown => print!(
            "{}",
            haltwatch::report::report_text(
                &reports,
                matches!(format, ReportFormat::Markdown),
                &format!("{head} ({records} records)")
            )
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `verify --history --anchors`: the ledger, then every anchor read back.
pub async fn verify_anchors(path: &Path) -> anyhow::Result<ExitCode> {
    let config = config::load(path)?;
    let store = Store::open_read_only(&config.store).await?;
    let report = store.verify_history().await?;
    let mut failed = !report.problems.is_empty();
    for p in &report.problems {
        println!("  - {p}");
    }
    let (checks, missing) = haltwatch::anchor::verify(&config, &store).await?;
    if checks.is_empty() {
        println!("no anchors recorded: nothing to check the history against");
        return Ok(ExitCode::from(1));
    }
    for c in &checks {
        let a = &c.anchor;
        match &c.problem {
            None => println!(
                "anchor of record {} ({}) in tx {} on {}: holds",
                a.record, a.head, a.tx_hash, a.chain
            ),
            Some(why) => {
                failed = true;
                println!(
                    "anchor of record {} ({}) in tx {} on {}: FAILS: {why}",
                    a.record, a.head, a.tx_hash, a.chain
                );
            }
        }
    }
    if let Some(why) = missing {
        failed = true;
        println!("anchors missing: {why}");
    }
    if failed {
        println!("history does NOT match its anchors");
        return Ok(ExitCode::from(1));
    }
    println!(
        "history intact and anchored: {} records, {} anchor(s)",
        report.records,
        checks.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// A pinned head: `0xHASH`, or `N 0xHASH` / `N:0xHASH` as mails carry it.
fn parse_head(text: &str) -> anyhow::Result<(Option<i64>, alloy::primitives::B256)> {
    let text = text.trim();
    let (record, hash) = match text.split_once([' ', ':']) {
        Some((n, h)) => (
            Some(n.trim().parse::<i64>().with_context(|| {
                format!("bad --head `{text}`: expected `N 0xHASH` or `0xHASH`")
            })?),
            h.trim(),
        ),
        None => (None, text),
    };
    let hash = hash
        .parse()
        .with_context(|| format!("bad --head `{text}`: expected a 32-byte hash, 0x…"))?;
    Ok((record, hash))
}

pub async fn verify(
    path: &Path,
    id: Option<i64>,
    all: bool,
    history: bool,
    head: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if history {
        let store = Store::open_read_only(&config::load_store(path)?).await?;
        if let Some(pinned) = head {
            let (record, hash) = parse_head(pinned)?;
            let at = store.ledger_record(record, hash).await?;
            let Some(at) = at else {
                let (records, now) = store.ledger_head().await?;
                println!(
                    "history TRUNCATED OR REWRITTEN: it no longer holds head {hash}{} (its head is now {now}, record {records})",
                    record
                        .map(|r| format!(" at record {r}"))
                        .unwrap_or_default()
                );
                return Ok(ExitCode::from(1));
            };
            println!("the history still holds head {hash} (record {at})");
        }
        let report = store.verify_history().await?;
        if report.identities_not_covered > 0 {
            println!(
                "note: {} incident(s) were recorded before their protocol, chain and planned flag went into the ledger; those columns of theirs are not covered",
                report.identities_not_covered
            );
        }
        if report.problems.is_empty() {
            println!(
                "history intact: {} records, head {}",
                report.records, report.head
            );
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "history TAMPERED: {} problem(s); the first:",
            report.problems.len()
        );
        for p in &report.problems {
            println!("  - {p}");
        }
        return Ok(ExitCode::from(1));
    }
    anyhow::ensure!(
        id.is_some() || all,
        "name an incident ID, or --all, or --history"
    );
    let config = config::load(path)?;
    let store = Store::open_read_only(&config.store).await?;
    let incidents = match id {
        Some(id) => vec![
            store
                .incident(id)
                .await?
                .with_context(|| format!("no incident with id {id}"))?,
        ],
        None => {
            store
                .list(&IncidentFilter {
                    include_withdrawn: true,
                    ..Default::default()
                })
                .await?
        }
    };
    let checks = haltwatch::verify::verify(&config.chains, &incidents).await;
    let mut failed = 0;
    for c in &checks {
        println!(
            "incident {} ({}): {}",
            c.id,
            c.protocol,
            serde_json::to_value(c.verdict)?.as_str().unwrap_or("")
        );
        for (block, log, check) in &c.evidence {
            println!(
                "  block {block} log {log}: {}",
                serde_json::to_string(check)?
            );
        }
        failed += usize::from(!c.ok());
    }
    println!(
        "{} incident(s) checked, {} verified, {failed} not",
        checks.len(),
        checks.len() - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
