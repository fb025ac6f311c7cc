//! The configuration contract (see `config/README.md`): TOML parsed into
//! serde types with `deny_unknown_fields`, then validated and resolved against
//! the ABIs. Every problem is collected with its key path before anything
//! starts; nothing half-valid is returned.
//!
//! - `schema`: the file's serde types; `types`: the validated ones, what the
//!   rest of haltwatch reads.
//! - `validate`: the validator that collects problems; one file per part it
//!   validates: `sections` (`[store]`, `[email]`, `[api]`, maintenance),
//!   `chains`, `protocols`, `rules` (rules and presets against the ABIs),
//!   `anchor`, `heartbeat`.
//! - `parse`: values parsed from text (times, addresses, ABI files).
//!
//! What a rule says (`RuleSpec`) lives in [`crate::presets`], which the
//! config reads; presets know nothing of the config.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod anchor;
mod chains;
mod heartbeat;
mod parse;
mod protocols;
mod rules;
mod schema;
mod sections;
mod types;
mod validate;

#[cfg(test)]
mod tests;

pub use crate::presets::{EffectSpec, HaltRevert, RuleSpec, ScopeSpec, ScopesFromSpec};
pub use anchor::AnchorConfig;
pub use heartbeat::{HeartbeatConfig, HeartbeatUrl};
pub use parse::{parse_address, parse_rfc3339, read_abi};
pub use schema::SpikeConfig;
use schema::*;
pub use types::*;
use validate::Validator;

/// Where the embedded default store lives when `[store]` is absent.
pub const DEFAULT_STORE_URL: &str = "sqlite://haltwatch.db";

/// A problem with one key of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `protocols[0].contracts[1].address`.
    pub key: String,
    /// What was expected, and what was found.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {} problem(s):\n{}", problems.len(), list(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads, validates and resolves the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Loads only `[store]`, for commands that just read the history: a config
/// whose chains or ABIs are broken still lets an auditor read the history.
pub fn load_store(path: &Path) -> Result<StoreConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut v = Validator::new(path);
    let table = v.table(&text);
    let store = v.store(table.as_ref().and_then(|t| t.get("store")).cloned());
    v.finish(store)
}

/// Validates `text` as if read from `path` (relative paths resolve against its folder).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut v = Validator::new(path);
    let Some(mut table) = v.table(text) else {
        return Err(v.into_error());
    };
    for key in table.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            v.problem(
                key,
                format!(
                    "unknown section or key, expected one of `{}`",
                    SECTIONS.join("`, `")
                ),
            );
        }
    }
    let store = v.store(table.remove("store"));
    let chains = v.chains(table.remove("chains"));
    let protocols = v.protocols(table.remove("protocols"), &chains);
    let email = table.remove("email").and_then(|e| v.email(e));
    let maintenance = v.maintenance(table.remove("maintenance"), &protocols);
    let anchor = table.remove("anchor").and_then(|a| v.anchor(a, &chains));
    let heartbeat = table.remove("heartbeat").and_then(|h| v.heartbeat(h));
    let api = match table.remove("api") {
        Some(a) => v.api(a),
        None => Some(ApiConfig::default()),
    };
    let shutdown_timeout = match table.remove(SHUTDOWN_TIMEOUT_KEY) {
        None => DEFAULT_SHUTDOWN_TIMEOUT,
        Some(toml::Value::Integer(n)) if (1..=3_600).contains(&n) => Duration::from_secs(n as u64),
        Some(other) => {
            v.problem(
                SHUTDOWN_TIMEOUT_KEY,
                format!("expected whole seconds from 1 to 3600, found {other}"),
            );
            DEFAULT_SHUTDOWN_TIMEOUT
        }
    };
    let config = store.zip(api).map(|(store, api)| Config {
        path: path.to_path_buf(),
        store,
        chains,
        protocols,
        email,
        maintenance,
        api,
        anchor,
        heartbeat,
        shutdown_timeout,
    });
    v.finish(config)
}

/// The one top-level key that is not a section.
const SHUTDOWN_TIMEOUT_KEY: &str = "shutdown_timeout_seconds";

const SECTIONS: &[&str] = &[
    "store",
    "chains",
    "protocols",
    "email",
    "maintenance",
    "api",
    "anchor",
    "heartbeat",
    SHUTDOWN_TIMEOUT_KEY,
];
