//! The dead man's switch: while every followed chain is fresh and the
//! history can be written, `[heartbeat]`'s URL is fetched every
//! `every_seconds` (the convention of healthchecks.io and Alertmanager's
//! Watchdog). When haltwatch dies, hangs, loses its chains or its store,
//! the pings stop and the outside service pages someone: the monitor's
//! own downtime does not go unseen.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use crate::redact::{redact_url, redact_urls_in};
use crate::status::Status;
use crate::telemetry;

/// A ping that takes longer than this has failed.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no ping is due now: the chains or the store that are not healthy.
pub fn withheld_because(status: &Status) -> Option<String> {
    let mut why: Vec<String> = status
        .unready_chains()
        .into_iter()
        .map(|(chain, reason)| format!("chain {chain}: {reason}"))
        .collect();
    // On a shared history: every chain must be followed by some replica.
    if let Some(replica) = status.replica() {
        why.extend(
            replica
                .unheld
                .iter()
                .map(|chain| format!("chain {chain}: no replica follows it")),
        );
    }
    why.extend(
        status
            .store_problems()
            .into_iter()
            .map(|r| format!("store: {r}")),
    );
    (!why.is_empty()).then(|| why.join("; "))
}

/// Pings until `stop` turns true; returns at once without `[heartbeat]`.
pub async fn run(config: Arc<Config>, status: Status, mut stop: watch::Receiver<bool>) {
    let Some(heartbeat) = config.heartbeat.clone() else {
        return;
    };
    let client = match reqwest::Client::builder()
        .timeout(PING_TIMEOUT.min(heartbeat.every))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "heartbeat disabled: no HTTP client");
            return;
        }
    };
    let mut tick = tokio::time::interval(heartbeat.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut withheld = false;
    loop {
        tokio::select! {
            _ = stop.changed() => {}
            _ = tick.tick() => {}
        }
        if *stop.borrow() {
            return;
        }
        if let Some(why) = withheld_because(&status) {
            telemetry::heartbeat("withheld");
            if !withheld {
                tracing::warn!(reason = %why, "heartbeat withheld: not every chain is followed and fresh");
            }
            withheld = true;
            continue;
        }
        let url = match heartbeat.url() {
            Ok(u) => u,
            Err(why) => {
                telemetry::heartbeat("failed");
                tracing::warn!(reason = %why, "heartbeat not sent");
                continue;
            }
        };
        match client
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
        {
            Ok(_) => {
                telemetry::heartbeat("sent");
                if withheld {
                    tracing::info!(url = %redact_url(&url), "heartbeat resumed");
                }
                withheld = false;
            }
            Err(e) => {
                telemetry::heartbeat("failed");
                tracing::warn!(url = %redact_url(&url),
                    error = %redact_urls_in(&e.to_string()), "heartbeat ping failed");
            }
        }
    }
}
