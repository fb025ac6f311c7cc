//! `[anchor]` (optional): the history head written to a chain now and then,
//! from a key of the operator's, so that a rewrite of the whole history
//! after an anchor is caught by `verify --history --anchors`. The key stays
//! in the environment: the config names the variable.

use std::time::Duration;

use serde::Deserialize;

use super::{ChainConfig, Validator};

/// `[anchor]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnchor {
    /// A configured chain's name.
    chain: String,
    /// The environment variable holding the anchoring key (hex).
    key_env: String,
    /// Minutes between anchors.
    #[serde(default = "default_every_minutes")]
    every_minutes: u64,
}

fn default_every_minutes() -> u64 {
    60
}

/// `[anchor]`, validated: the chain's index, and the key's variable (its
/// value checked to be a key at load, never kept here).
#[derive(Debug, Clone)]
pub struct AnchorConfig {
    /// Index into [`super::Config::chains`].
    pub chain: usize,
    /// The variable holding the anchoring key.
    pub key_env: String,
    /// `every_minutes`.
    pub every: Duration,
}

impl AnchorConfig {
    /// The anchoring key, read from the environment.
    pub fn signer(&self) -> Option<alloy::signers::local::PrivateKeySigner> {
        std::env::var(&self.key_env).ok()?.trim().parse().ok()
    }
}

impl Validator {
    pub(super) fn anchor(
        &mut self,
        value: toml::Value,
        chains: &[ChainConfig],
    ) -> Option<AnchorConfig> {
        let raw = self.element::<RawAnchor>("anchor", value)?;
        let chain = chains.iter().position(|c| c.name == raw.chain);
        if chain.is_none() {
            self.problem(
                "anchor.chain",
                format!("no chain named `{}` in [[chains]]", raw.chain),
            );
        }
        if !(1..=10_080).contains(&raw.every_minutes) {
            self.problem(
                "anchor.every_minutes",
                format!(
                    "expected minutes from 1 to 10080 (a week), found {}",
                    raw.every_minutes
                ),
            );
        }
        let config = AnchorConfig {
            chain: chain?,
            key_env: raw.key_env,
            every: Duration::from_secs(raw.every_minutes * 60),
        };
        match std::env::var(&config.key_env) {
            Err(_) => self.problem(
                "anchor.key_env",
                format!(
                    "environment variable `{}` is not set: it must hold the anchoring key (32 bytes, hex)",
                    config.key_env
                ),
            ),
            // The value is never shown, whatever it holds.
            Ok(_) if config.signer().is_none() => self.problem(
                "anchor.key_env",
                format!(
                    "environment variable `{}` does not hold a private key (32 bytes, hex)",
                    config.key_env
                ),
            ),
            Ok(_) => {}
        }
        Some(config)
    }
}
