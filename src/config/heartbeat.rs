//! `[heartbeat]` (optional): a dead man's switch. While every chain is
//! followed and fresh, haltwatch GETs a URL every `every_seconds`; an
//! outside service (healthchecks.io, Alertmanager's Watchdog) pages someone
//! when the pings stop. The URL is a credential (anyone holding it can keep
//! the switch quiet): it may come from the environment (`url_env`), and it
//! is shown, in errors and logs, by scheme and host only.

use std::time::Duration;

use serde::Deserialize;

use super::Validator;
use super::parse::is_web_url;

/// `[heartbeat]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeartbeat {
    /// The URL to GET.
    #[serde(default)]
    url: Option<String>,
    /// Or: the environment variable holding it.
    #[serde(default)]
    url_env: Option<String>,
    /// Seconds between pings.
    #[serde(default = "default_every_seconds")]
    every_seconds: u64,
}

fn default_every_seconds() -> u64 {
    60
}

/// `[heartbeat]`, validated.
#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    /// Where the URL comes from.
    pub url: HeartbeatUrl,
    /// `every_seconds`.
    pub every: Duration,
}

/// The heartbeat URL, or the variable that holds it (read when pinging).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatUrl {
    Literal(String),
    Env(String),
}

impl HeartbeatConfig {
    /// The URL to ping, or why there is none.
    pub fn url(&self) -> Result<String, String> {
        match &self.url {
            HeartbeatUrl::Literal(u) => Ok(u.clone()),
            HeartbeatUrl::Env(var) => std::env::var(var)
                .map(|u| u.trim().to_string())
                .map_err(|_| format!("environment variable `{var}` is not set")),
        }
    }
}

impl Validator {
    pub(super) fn heartbeat(&mut self, value: toml::Value) -> Option<HeartbeatConfig> {
        let raw = self.element::<RawHeartbeat>("heartbeat", value)?;
        if !(1..=86_400).contains(&raw.every_seconds) {
            self.problem(
                "heartbeat.every_seconds",
                format!(
                    "expected seconds from 1 to 86400 (a day), found {}",
                    raw.every_seconds
                ),
            );
        }
        let url = match (raw.url, raw.url_env) {
            (Some(url), None) => {
                if !is_web_url(&url) {
                    self.problem(
                        "heartbeat.url",
                        format!(
                            "expected an http(s) URL, found `{}`",
                            crate::redact::redact_url(&url)
                        ),
                    );
                }
                HeartbeatUrl::Literal(url)
            }
            (None, Some(var)) => {
                match std::env::var(&var) {
                    Err(_) => self.problem(
                        "heartbeat.url_env",
                        format!("environment variable `{var}` is not set: it must hold the heartbeat URL"),
                    ),
                    // The value is a credential: never shown.
                    Ok(u) if !is_web_url(u.trim()) => self.problem(
                        "heartbeat.url_env",
                        format!("environment variable `{var}` does not hold an http(s) URL"),
                    ),
                    Ok(_) => {}
                }
                HeartbeatUrl::Env(var)
            }
            _ => {
                self.problem("heartbeat", "give either url or url_env");
                return None;
            }
        };
        Some(HeartbeatConfig {
            url,
            every: Duration::from_secs(raw.every_seconds),
        })
    }
}
