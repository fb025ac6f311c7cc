//! The configuration as written: serde types with `deny_unknown_fields`,
//! one per section or element, before validation.

use std::path::PathBuf;

use serde::Deserialize;

use super::*;

/// `[store]`: where the halt history and the pipeline state live.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    /// `sqlite://PATH` (relative to the config file's folder; created if
    /// missing), or `postgres://USER@HOST:PORT/DB` without a password.
    #[serde(default)]
    pub(super) url: Option<String>,
    /// Or: the environment variable holding the whole URL.
    #[serde(default)]
    pub(super) url_env: Option<String>,
    /// PostgreSQL: the environment variable holding the password.
    #[serde(default)]
    pub(super) password_env: Option<String>,
    /// PostgreSQL: how long a replica's chain lease lasts unrenewed.
    #[serde(default)]
    pub(super) lease_ttl_seconds: Option<u64>,
}

/// `[[chains]]`: one EVM chain and how to reach it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChain {
    /// Unique name, used by protocols, logs and metrics.
    pub(super) name: String,
    /// The chain id every endpoint must serve.
    pub(super) chain_id: u64,
    /// One or more endpoints, `ws(s)://` and/or `http(s)://`, preferred in
    /// order: a URL, or `{ url = "…", max_requests_per_second = N }`.
    pub(super) rpc: Vec<RawRpc>,
    /// Blocks below the checkpoint read again after a reorg deeper than the
    /// reorg window.
    #[serde(default = "default_reorg_rescan_blocks")]
    pub(super) reorg_rescan_blocks: u64,
    /// Blocks behind the head before a block is processed.
    #[serde(default)]
    pub(super) confirmations: u64,
    /// How often HTTP endpoints are polled for a new head.
    #[serde(default = "default_poll_interval_ms")]
    pub(super) poll_interval_ms: u64,
    /// Where the first run starts: `"latest"` or a block number.
    #[serde(default)]
    pub(super) start_block: Option<toml::Value>,
    /// No new head for this long is a stalled chain (and `/readyz` fails).
    #[serde(default = "default_stall_after_seconds")]
    pub(super) stall_after_seconds: u64,
    /// Read receipts of calls into monitored contracts (failed transactions, revert spikes).
    #[serde(default = "default_true")]
    pub(super) failed_tx: bool,
    /// Trace every block (debug_traceBlockByNumber, callTracer) to also see
    /// failed nested calls into monitored contracts.
    #[serde(default)]
    pub(super) trace_calls: bool,
    /// Link template for a transaction, with `{hash}`.
    #[serde(default)]
    pub(super) explorer_tx_url: Option<String>,
}

/// One entry of a chain's `rpc` list.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a URL, or a table { url = \"…\", max_requests_per_second = N }"
)]
pub(super) enum RawRpc {
    Url(String),
    Limited(RawLimitedRpc),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimitedRpc {
    /// The endpoint's URL, `ws(s)://` or `http(s)://`.
    pub(super) url: String,
    /// At most this many requests a second to this endpoint (a token bucket).
    pub(super) max_requests_per_second: Option<u32>,
}

fn default_reorg_rescan_blocks() -> u64 {
    256
}

fn default_poll_interval_ms() -> u64 {
    2000
}

fn default_stall_after_seconds() -> u64 {
    60
}

/// `[email]`: how responders are reached.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmail {
    /// The SMTP relay's host name.
    pub(super) smtp_host: String,
    /// Its port (587 by default).
    #[serde(default = "default_smtp_port")]
    pub(super) smtp_port: u16,
    /// `none`, `starttls` or `tls`.
    #[serde(default = "default_tls")]
    pub(super) tls: String,
    /// Login for SMTP AUTH; the password comes from `password_env`.
    #[serde(default)]
    pub(super) username: Option<String>,
    /// Name of the environment variable that holds the SMTP password.
    #[serde(default)]
    pub(super) password_env: Option<String>,
    /// `Name <address>` or a bare address.
    pub(super) from: String,
    /// Transitions of one incident inside this window go out as one mail.
    #[serde(default = "default_group_wait_seconds")]
    pub(super) group_wait_seconds: u64,
    /// Mails per protocol per hour; beyond it, one digest.
    #[serde(default = "default_max_per_hour")]
    pub(super) max_per_hour: u32,
    /// First retry delay after a temporary SMTP failure; doubles up to 10 minutes.
    #[serde(default = "default_retry_initial_ms")]
    pub(super) retry_initial_ms: u64,
    /// SMTP connection and command timeout.
    #[serde(default = "default_smtp_timeout_seconds")]
    pub(super) timeout_seconds: u64,
    /// PEM certificates of a private CA to trust besides the public roots
    /// (a company relay), relative to the config file.
    #[serde(default)]
    pub(super) ca_file: Option<PathBuf>,
}

fn default_smtp_port() -> u16 {
    587
}
fn default_tls() -> String {
    "starttls".into()
}
fn default_group_wait_seconds() -> u64 {
    10
}
fn default_max_per_hour() -> u32 {
    20
}
fn default_retry_initial_ms() -> u64 {
    1000
}
fn default_smtp_timeout_seconds() -> u64 {
    30
}

/// `[api]`: the HTTP surface of `run`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    /// Address and port the HTTP surface listens on.
    #[serde(default = "default_listen")]
    pub(super) listen: String,
    /// Environment variable holding the bearer token for `/api/*`.
    #[serde(default)]
    pub(super) token_env: Option<String>,
    /// With a token: whether `/` and `/incidents/*` stay open.
    #[serde(default = "default_true")]
    pub(super) public_status_page: bool,
    /// With a token: whether `/metrics` needs it too.
    #[serde(default)]
    pub(super) metrics_token: bool,
    /// Where people reach the status pages (`https://status.example.org`):
    /// mails link each incident's page under it.
    #[serde(default)]
    pub(super) public_url: Option<String>,
}

fn default_listen() -> String {
    "127.0.0.1:9464".into()
}
fn default_true() -> bool {
    true
}

/// `[[maintenance]]`: a planned halt window of one protocol.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMaintenance {
    /// The protocol whose incidents in the window are planned.
    pub(super) protocol: String,
    /// Start of the window, RFC 3339.
    pub(super) start: String,
    /// End of the window, RFC 3339.
    pub(super) end: String,
}

/// `[[protocols]]`: contracts and rules are parsed element by element.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProtocol {
    /// Unique name, shown in mails, pages and reports.
    pub(super) name: String,
    /// The `[[chains]]` name its contracts live on.
    pub(super) chain: String,
    /// Addresses mailed about every incident.
    #[serde(default)]
    pub(super) responders: Vec<String>,
    /// Addresses mailed besides `responders` about incidents that reached a severity.
    #[serde(default)]
    pub(super) severity_responders: SeverityResponders,
    /// Revenue lost per hour of halt, for the report's cost estimate.
    #[serde(default)]
    pub(super) revenue_per_hour_usd: Option<f64>,
    /// The protocol's incident-response plan, linked from mails and pages.
    #[serde(default)]
    pub(super) runbook_url: Option<String>,
    /// `[[protocols.contracts]]`, validated one by one.
    #[serde(default)]
    pub(super) contracts: Vec<toml::Value>,
    /// `[[protocols.rules]]`, validated one by one.
    #[serde(default)]
    pub(super) rules: Vec<toml::Value>,
    /// `[[protocols.probes]]`, validated one by one.
    #[serde(default)]
    pub(super) probes: Vec<toml::Value>,
}

/// `revert_spike = { … }` of a contract: overrides of the detector's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpikeConfig {
    /// Blocks in the sliding window.
    #[serde(default = "SpikeConfig::default_window_blocks")]
    pub window_blocks: u64,
    /// Instead of blocks: seconds of block time in the sliding window.
    #[serde(default)]
    pub window_seconds: Option<u64>,
    /// Failed calls in the window needed for a spike.
    #[serde(default = "SpikeConfig::default_min_failed")]
    pub min_failed: u64,
    /// Failed / all calls in the window needed for a spike.
    #[serde(default = "SpikeConfig::default_min_ratio")]
    pub min_ratio: f64,
    /// The window's ratio must also be this many times the contract's baseline.
    #[serde(default = "SpikeConfig::default_baseline_factor")]
    pub baseline_factor: f64,
    /// Quiet windows in a row before a spike clears.
    #[serde(default = "SpikeConfig::default_clear_windows")]
    pub clear_windows: u64,
}

impl SpikeConfig {
    fn default_window_blocks() -> u64 {
        10
    }
    fn default_min_failed() -> u64 {
        5
    }
    fn default_min_ratio() -> f64 {
        0.5
    }
    fn default_baseline_factor() -> f64 {
        3.0
    }
    fn default_clear_windows() -> u64 {
        3
    }
}

impl Default for SpikeConfig {
    fn default() -> Self {
        SpikeConfig {
            window_blocks: Self::default_window_blocks(),
            window_seconds: None,
            min_failed: Self::default_min_failed(),
            min_ratio: Self::default_min_ratio(),
            baseline_factor: Self::default_baseline_factor(),
            clear_windows: Self::default_clear_windows(),
        }
    }
}

/// `[[protocols.probes]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    /// The contract (by name) whose view function is called.
    pub(super) contract: String,
    /// A view function of the contract's ABI with no arguments: `paused()`.
    pub(super) function: String,
    /// The healthy value: a bool or an integer.
    pub(super) expected: toml::Value,
    /// Call it every this many blocks.
    #[serde(default = "default_every_blocks")]
    pub(super) every_blocks: u64,
    /// The scope a failed expectation halts (default: the probe's function).
    #[serde(default)]
    pub(super) scope: Option<String>,
}

fn default_every_blocks() -> u64 {
    1
}

/// `[[protocols.contracts]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContract {
    /// Unique within the protocol; used in scopes.
    pub(super) name: String,
    /// The contract's address; only its logs count.
    pub(super) address: String,
    /// Path to a JSON ABI (plain array, or an artifact with an `abi` field).
    pub(super) abi: String,
    /// A preset family whose rules apply (`oz-pausable`, …).
    #[serde(default)]
    pub(super) preset: Option<String>,
    /// Overrides of the revert-spike detector for this contract.
    #[serde(default)]
    pub(super) revert_spike: Option<SpikeConfig>,
    /// Reverts that mean "halted here", besides the preset's.
    #[serde(default)]
    pub(super) halt_reverts: Vec<RawHaltRevert>,
}

/// One entry of a contract's `halt_reverts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHaltRevert {
    /// The `Error(string)` text (`"29"`) or a custom error's name (`EnforcedPause`).
    pub(super) reason: String,
    /// What it means, shown in evidence as `MEANING (reason)`.
    pub(super) meaning: String,
    /// Prefix of the scope key the failed call is cited on (`frozen:`);
    /// the key ends with an address argument of the call.
    #[serde(default)]
    pub(super) scope_prefix: String,
}

/// `[[protocols.rules]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    /// The contract (by name) whose event the rule reads.
    pub(super) contract: String,
    /// Event name, or full signature when overloaded.
    pub(super) event: String,
    /// `halt`, `resume`, `toggle` or `flags`.
    pub(super) effect: String,
    /// A bool or integer argument whose value halts (true, non-zero) or resumes.
    #[serde(default)]
    pub(super) toggle_arg: Option<String>,
    /// With `toggle`: the value that halts; `false` inverts the toggle
    /// (`ReserveActive(asset, false)` halts).
    #[serde(default)]
    pub(super) halt_when: Option<bool>,
    /// One argument name, or several joined into one scope key.
    #[serde(default)]
    pub(super) scope_arg: Option<OneOrMany>,
    /// A fixed scope key for every log of this rule; with `scope_arg`, the
    /// key's prefix (`frozen` gives `frozen:<asset>`).
    #[serde(default)]
    pub(super) scope: Option<String>,
    /// The complete set of scopes: all halted means the protocol is halted.
    /// Wins over `scopes_from`.
    #[serde(default)]
    pub(super) scopes: Option<Vec<String>>,
    /// The complete set read from the chain: `contract.function()`, a view
    /// of a contract of this protocol returning `address[]`
    /// (`pool.getReservesList()`).
    #[serde(default)]
    pub(super) scopes_from: Option<String>,
    /// Events of this rule's contract after which the set is read again
    /// (`ReserveInitialized`).
    #[serde(default)]
    pub(super) scopes_refresh_on: Vec<String>,
    /// The set is also read again every this many blocks.
    #[serde(default)]
    pub(super) scopes_refresh_blocks: Option<u64>,
    /// `"degraded"`: this rule's halts never make the protocol more than
    /// degraded (a frozen market still repays). `"halted"` is the default.
    #[serde(default)]
    pub(super) severity: Option<String>,
    /// An argument holding the real time of the halt (unix seconds), e.g. a feed's `updatedAt`.
    #[serde(default)]
    pub(super) time_arg: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}
