//! The configuration contract (see `config/README.md`): TOML parsed into
//! serde types with `deny_unknown_fields`, then validated and resolved against
//! the ABIs. Every problem is collected with its key path before anything
//! starts; nothing half-valid is returned.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use alloy::dyn_abi::DynSolType;
use alloy::json_abi::{Event, JsonAbi};
use alloy::primitives::{Address, B256};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::model::ProtocolState;
use crate::presets;

mod anchor;
pub use anchor::AnchorConfig;

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

// ---------------------------------------------------------------- raw (file) types

/// `[store]`: where the halt history and the pipeline state live.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    /// `sqlite://PATH` (relative to the config file's folder); created if missing.
    url: String,
}

/// `[[chains]]`: one EVM chain and how to reach it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChain {
    name: String,
    chain_id: u64,
    /// One or more endpoints, `ws(s)://` and/or `http(s)://`, preferred in
    /// order: a URL, or `{ url = "…", max_requests_per_second = N }`.
    rpc: Vec<RawRpc>,
    /// Blocks below the checkpoint read again after a reorg deeper than the
    /// reorg window.
    #[serde(default = "default_reorg_rescan_blocks")]
    reorg_rescan_blocks: u64,
    /// Blocks behind the head before a block is processed.
    #[serde(default)]
    confirmations: u64,
    /// How often HTTP endpoints are polled for a new head.
    #[serde(default = "default_poll_interval_ms")]
    poll_interval_ms: u64,
    /// Where the first run starts: `"latest"` or a block number.
    #[serde(default)]
    start_block: Option<toml::Value>,
    /// No new head for this long is a stalled chain (and `/readyz` fails).
    #[serde(default = "default_stall_after_seconds")]
    stall_after_seconds: u64,
    /// Read receipts of calls into monitored contracts (failed transactions, revert spikes).
    #[serde(default = "default_true")]
    failed_tx: bool,
    /// Trace every block (debug_traceBlockByNumber, callTracer) to also see
    /// failed nested calls into monitored contracts.
    #[serde(default)]
    trace_calls: bool,
    /// Link template for a transaction, with `{hash}`.
    #[serde(default)]
    explorer_tx_url: Option<String>,
}

/// One entry of a chain's `rpc` list.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a URL, or a table { url = \"…\", max_requests_per_second = N }"
)]
enum RawRpc {
    Url(String),
    Limited(RawLimitedRpc),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimitedRpc {
    url: String,
    /// At most this many requests a second to this endpoint (a token bucket).
    max_requests_per_second: Option<u32>,
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
struct RawEmail {
    smtp_host: String,
    #[serde(default = "default_smtp_port")]
    smtp_port: u16,
    /// `none`, `starttls` or `tls`.
    #[serde(default = "default_tls")]
    tls: String,
    #[serde(default)]
    username: Option<String>,
    /// Name of the environment variable that holds the SMTP password.
    #[serde(default)]
    password_env: Option<String>,
    /// `Name <address>` or a bare address.
    from: String,
    /// Transitions of one incident inside this window go out as one mail.
    #[serde(default = "default_group_wait_seconds")]
    group_wait_seconds: u64,
    /// Mails per protocol per hour; beyond it, one digest.
    #[serde(default = "default_max_per_hour")]
    max_per_hour: u32,
    /// First retry delay after a temporary SMTP failure; doubles up to 10 minutes.
    #[serde(default = "default_retry_initial_ms")]
    retry_initial_ms: u64,
    /// SMTP connection and command timeout.
    #[serde(default = "default_smtp_timeout_seconds")]
    timeout_seconds: u64,
    /// PEM certificates of a private CA to trust besides the public roots
    /// (a company relay), relative to the config file.
    #[serde(default)]
    ca_file: Option<PathBuf>,
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
struct RawApi {
    #[serde(default = "default_listen")]
    listen: String,
    /// Environment variable holding the bearer token for `/api/*`.
    #[serde(default)]
    token_env: Option<String>,
    /// With a token: whether `/` and `/incidents/*` stay open.
    #[serde(default = "default_true")]
    public_status_page: bool,
    /// With a token: whether `/metrics` needs it too.
    #[serde(default)]
    metrics_token: bool,
    /// Where people reach the status pages (`https://status.example.org`):
    /// mails link each incident's page under it.
    #[serde(default)]
    public_url: Option<String>,
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
struct RawMaintenance {
    protocol: String,
    start: String,
    end: String,
}

/// `[[protocols]]`: contracts and rules are parsed element by element.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProtocol {
    name: String,
    chain: String,
    #[serde(default)]
    responders: Vec<String>,
    #[serde(default)]
    severity_responders: SeverityResponders,
    /// Revenue lost per hour of halt, for the report's cost estimate.
    #[serde(default)]
    revenue_per_hour_usd: Option<f64>,
    /// The protocol's incident-response plan, linked from mails and pages.
    #[serde(default)]
    runbook_url: Option<String>,
    #[serde(default)]
    contracts: Vec<toml::Value>,
    #[serde(default)]
    rules: Vec<toml::Value>,
    #[serde(default)]
    probes: Vec<toml::Value>,
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
struct RawProbe {
    contract: String,
    /// A view function of the contract's ABI with no arguments: `paused()`.
    function: String,
    /// The healthy value: a bool or an integer.
    expected: toml::Value,
    #[serde(default = "default_every_blocks")]
    every_blocks: u64,
    #[serde(default)]
    scope: Option<String>,
}

fn default_every_blocks() -> u64 {
    1
}

/// `[[protocols.contracts]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContract {
    name: String,
    address: String,
    /// Path to a JSON ABI (plain array, or an artifact with an `abi` field).
    abi: String,
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    revert_spike: Option<SpikeConfig>,
}

/// `[[protocols.rules]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    contract: String,
    /// Event name, or full signature when overloaded.
    event: String,
    /// `halt`, `resume`, `toggle` or `flags`.
    effect: String,
    #[serde(default)]
    toggle_arg: Option<String>,
    /// One argument name, or several joined into one scope key.
    #[serde(default)]
    scope_arg: Option<OneOrMany>,
    /// A fixed scope key for every log of this rule.
    #[serde(default)]
    scope: Option<String>,
    /// The complete set of scopes: all halted means the protocol is halted.
    #[serde(default)]
    scopes: Option<Vec<String>>,
    /// An argument holding the real time of the halt (unix seconds), e.g. a feed's `updatedAt`.
    #[serde(default)]
    time_arg: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

// ---------------------------------------------------------------- resolved types

/// A validated configuration: every reference resolved, every ABI parsed once.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub store: StoreConfig,
    pub chains: Vec<ChainConfig>,
    pub protocols: Vec<ProtocolConfig>,
    /// Absent: incidents are recorded, nobody is mailed.
    pub email: Option<EmailConfig>,
    pub maintenance: Vec<MaintenanceWindow>,
    pub api: ApiConfig,
    /// `[anchor]`: the history head written to a chain now and then.
    pub anchor: Option<AnchorConfig>,
    /// `shutdown_timeout_seconds`: how long `run` may take to stop after
    /// SIGTERM or SIGINT before it exits anyway (code 1).
    pub shutdown_timeout: Duration,
}

/// `shutdown_timeout_seconds` unless set.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// `[api]`, validated. The token is not here: only the variable's name.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: std::net::SocketAddr,
    pub token_env: Option<String>,
    pub public_status_page: bool,
    pub metrics_token: bool,
    /// `public_url`, without a trailing slash.
    pub public_url: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9464)),
            token_env: None,
            public_status_page: true,
            metrics_token: false,
            public_url: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    None,
    StartTls,
    Tls,
}

/// `[email]`, validated. The password is not here: only the name of the
/// variable that holds it, read when the transport is built.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub from: lettre::message::Mailbox,
    pub group_wait: Duration,
    pub max_per_hour: u32,
    pub retry_initial: Duration,
    pub timeout: Duration,
    /// The PEM text of `ca_file`, checked to hold certificates.
    pub ca_pem: Option<Vec<u8>>,
}

/// A planned halt: incidents of `protocol` that open inside it are recorded
/// as planned and nobody is paged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// Index into [`Config::protocols`].
    pub protocol: usize,
    /// Unix seconds.
    pub start: u64,
    pub end: u64,
}

impl Config {
    /// True when some protocol watches a contract on chain `chain`: only
    /// such chains are followed (and count for readiness).
    pub fn follows(&self, chain: usize) -> bool {
        self.protocols
            .iter()
            .any(|p| p.chain == chain && !p.contracts.is_empty())
    }

    /// True when `protocol` is inside a maintenance window at unix time `at`.
    pub fn in_maintenance(&self, protocol: usize, at: u64) -> bool {
        self.maintenance
            .iter()
            .any(|m| m.protocol == protocol && (m.start..m.end).contains(&at))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The SQLite database file, resolved against the config file's folder.
    pub sqlite_path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartBlock {
    Latest,
    Number(u64),
}

#[derive(Debug, Clone)]
pub struct ChainConfig {
    pub name: String,
    pub chain_id: u64,
    pub rpc: Vec<RpcEndpoint>,
    pub confirmations: u64,
    pub poll_interval: Duration,
    pub start_block: StartBlock,
    pub explorer_tx_url: Option<String>,
    pub stall_after: Duration,
    pub failed_tx: bool,
    pub trace_calls: bool,
    /// Blocks below the checkpoint read again after a reorg deeper than the window.
    pub reorg_rescan_blocks: u64,
}

/// One JSON-RPC endpoint of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcEndpoint {
    pub url: String,
    /// At most this many requests a second (http(s) endpoints only).
    pub max_requests_per_second: Option<u32>,
}

/// `severity_responders = { halted = [...] }`: who is mailed besides
/// `responders` about an incident that reached a severity, from the mail
/// that tells of it through the incident's end.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityResponders {
    #[serde(default)]
    pub degraded: Vec<String>,
    #[serde(default)]
    pub halted: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ProtocolConfig {
    pub name: String,
    /// Index into [`Config::chains`].
    pub chain: usize,
    pub responders: Vec<String>,
    pub severity_responders: SeverityResponders,
    pub revenue_per_hour_usd: Option<f64>,
    /// `runbook_url`: its incident-response plan (http or https).
    pub runbook_url: Option<String>,
    pub contracts: Vec<ContractConfig>,
    pub rules: Vec<Rule>,
    pub probes: Vec<ProbeConfig>,
}

impl ProtocolConfig {
    /// Who is mailed about an incident that reached `severity`: the
    /// responders, then those named for each severity up to it; each once.
    pub fn recipients(&self, severity: ProtocolState) -> Vec<String> {
        let by_severity = [
            (ProtocolState::Degraded, &self.severity_responders.degraded),
            (ProtocolState::Halted, &self.severity_responders.halted),
        ];
        let mut out: Vec<String> = Vec::new();
        let reached = by_severity
            .into_iter()
            .filter(|(s, _)| *s <= severity)
            .flat_map(|(_, list)| list);
        for r in self.responders.iter().chain(reached) {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(r)) {
                out.push(r.clone());
            }
        }
        out
    }

    /// Whether anyone is mailed about this protocol's incidents.
    pub fn pages(&self) -> bool {
        !self.recipients(ProtocolState::Halted).is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct ContractConfig {
    pub name: String,
    pub address: Address,
    pub abi_path: PathBuf,
    pub abi: Arc<JsonAbi>,
    pub revert_spike: SpikeConfig,
}

/// The value a probe expects from a healthy contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Bool(bool),
    Int(i128),
}

/// A state probe, resolved against the ABI.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Index into the protocol's contracts.
    pub contract: usize,
    pub function: alloy::json_abi::Function,
    pub expected: Expected,
    pub every_blocks: u64,
    pub scope: Option<String>,
}

/// How a rule's log moves scopes in and out of a halt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EffectSpec {
    Halt,
    Resume,
    /// A bool argument (true = halt) or an integer argument (non-zero = halt).
    Toggle(String),
    /// Every bool argument is its own scope, named after the argument.
    Flags,
}

/// Which scope a rule's log concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeSpec {
    /// The whole contract.
    Whole,
    /// Always this key.
    Fixed(String),
    /// The values of these arguments, joined with `:`.
    Args(Vec<String>),
}

/// A rule as written (explicit or from a preset), before resolution.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub event: String,
    pub effect: EffectSpec,
    pub scope: ScopeSpec,
    pub scopes: Option<Vec<String>>,
    pub time_arg: Option<String>,
}

/// A rule resolved against its contract's ABI: argument positions, not names.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Index into the protocol's contracts.
    pub contract: usize,
    pub event: Event,
    pub selector: B256,
    pub effect: Effect,
    pub scope: RuleScope,
    /// Scope keys that together mean the whole protocol is halted.
    pub complete_set: Option<BTreeSet<String>>,
    /// Position of an argument holding the halt's real time (unix seconds).
    pub time_arg: Option<usize>,
}

/// [`EffectSpec`] with argument names resolved to positions in `event.inputs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Halt,
    Resume,
    Toggle(usize),
    /// (argument position, scope key) per flag.
    Flags(Vec<(usize, String)>),
}

/// [`ScopeSpec`] with argument names resolved to positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleScope {
    Whole,
    Fixed(String),
    Args(Vec<usize>),
}

// ---------------------------------------------------------------- loading

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
    SHUTDOWN_TIMEOUT_KEY,
];

struct Validator {
    path: PathBuf,
    dir: PathBuf,
    problems: Vec<Problem>,
    abis: HashMap<PathBuf, Option<Arc<JsonAbi>>>,
}

impl Validator {
    fn new(path: &Path) -> Self {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Validator {
            path: path.to_path_buf(),
            dir,
            problems: Vec::new(),
            abis: HashMap::new(),
        }
    }

    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn into_error(self) -> ConfigError {
        ConfigError::Invalid {
            path: self.path,
            problems: self.problems,
        }
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, ConfigError> {
        match value {
            Some(v) if self.problems.is_empty() => Ok(v),
            _ => Err(self.into_error()),
        }
    }

    fn table(&mut self, text: &str) -> Option<toml::Table> {
        match text.parse::<toml::Table>() {
            Ok(t) => Some(t),
            Err(e) => {
                let key = match e.span() {
                    Some(span) => {
                        let line = text[..span.start].matches('\n').count() + 1;
                        format!("line {line}")
                    }
                    None => "(file)".to_string(),
                };
                self.problem(key, format!("not valid TOML: {}", e.message()));
                None
            }
        }
    }

    /// Deserializes one element, recording a problem with its full key path.
    fn element<T: DeserializeOwned>(&mut self, key: &str, value: toml::Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let full = if inner == "." || inner.is_empty() {
                    key.to_string()
                } else {
                    format!("{key}.{inner}")
                };
                let message = e.into_inner().to_string();
                self.problem(full, message.trim().to_string());
                None
            }
        }
    }

    /// `key.name` must be non-empty and unique among `seen` (its siblings).
    fn unique_name(&mut self, key: &str, what: &str, name: &str, seen: &mut HashSet<String>) {
        if name.trim().is_empty() {
            self.problem(format!("{key}.name"), "expected a non-empty name");
        }
        if !seen.insert(name.to_string()) {
            self.problem(
                format!("{key}.name"),
                format!("duplicate {what} name `{name}`"),
            );
        }
    }

    fn array(&mut self, key: &str, value: Option<toml::Value>) -> Vec<toml::Value> {
        match value {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items,
            Some(other) => {
                self.problem(
                    key,
                    format!(
                        "expected an array of tables ([[{key}]]), found a {}",
                        other.type_str()
                    ),
                );
                Vec::new()
            }
        }
    }

    fn store(&mut self, value: Option<toml::Value>) -> Option<StoreConfig> {
        let url = match value {
            None => DEFAULT_STORE_URL.to_string(),
            Some(v) => self.element::<RawStore>("store", v)?.url,
        };
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let rest = rest.split('?').next().unwrap_or(rest);
            if rest.is_empty() {
                self.problem("store.url", "expected a file path after `sqlite://`");
                return None;
            }
            return Some(StoreConfig {
                sqlite_path: self.dir.join(rest),
            });
        }
        let scheme = url.split(':').next().unwrap_or("");
        let message = if scheme.starts_with("postgres") {
            "PostgreSQL stores are not supported yet; expected `sqlite://PATH`".to_string()
        } else {
            format!("expected `sqlite://PATH`, found `{scheme}:`")
        };
        self.problem("store.url", message);
        None
    }

    fn email(&mut self, value: toml::Value) -> Option<EmailConfig> {
        let raw = self.element::<RawEmail>("email", value)?;
        let mut ok = true;
        let tls = match raw.tls.as_str() {
            "none" => TlsMode::None,
            "starttls" => TlsMode::StartTls,
            "tls" => TlsMode::Tls,
            other => {
                self.problem(
                    "email.tls",
                    format!("expected \"none\", \"starttls\" or \"tls\", found \"{other}\""),
                );
                ok = false;
                TlsMode::None
            }
        };
        if raw.smtp_host.trim().is_empty() {
            self.problem("email.smtp_host", "expected a host name");
            ok = false;
        }
        let from = match raw.from.parse::<lettre::message::Mailbox>() {
            Ok(m) => Some(m),
            Err(_) => {
                self.problem(
                    "email.from",
                    format!(
                        "expected an address like `haltwatch <alerts@example.org>`, found `{}`",
                        raw.from
                    ),
                );
                None
            }
        };
        if let Some(var) = &raw.password_env {
            if std::env::var_os(var).is_none() {
                self.problem(
                    "email.password_env",
                    format!("environment variable `{var}` is not set"),
                );
                ok = false;
            }
            if raw.username.is_none() {
                self.problem("email.username", "password_env needs a username");
                ok = false;
            }
        }
        if raw.max_per_hour == 0 {
            self.problem("email.max_per_hour", "expected at least 1");
            ok = false;
        }
        if raw.timeout_seconds == 0 {
            self.problem("email.timeout_seconds", "expected at least 1");
            ok = false;
        }
        let ca_pem = raw.ca_file.as_ref().and_then(|file| {
            let path = self.dir.join(file);
            let problem = match std::fs::read(&path) {
                // lettre accepts a file without certificates; an empty trust
                // list would fail only at the first mail.
                Ok(pem)
                    if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----")
                        && lettre::transport::smtp::client::Certificate::from_pem(&pem).is_ok() =>
                {
                    return Some(pem);
                }
                Ok(_) => format!("{} holds no PEM certificate", path.display()),
                Err(e) => format!("cannot read {}: {e}", path.display()),
            };
            self.problem("email.ca_file", problem);
            ok = false;
            None
        });
        let from = from.filter(|_| ok)?;
        Some(EmailConfig {
            smtp_host: raw.smtp_host,
            smtp_port: raw.smtp_port,
            tls,
            username: raw.username,
            password_env: raw.password_env,
            from,
            group_wait: Duration::from_secs(raw.group_wait_seconds),
            max_per_hour: raw.max_per_hour,
            retry_initial: Duration::from_millis(raw.retry_initial_ms.max(1)),
            timeout: Duration::from_secs(raw.timeout_seconds),
            ca_pem,
        })
    }

    fn api(&mut self, value: toml::Value) -> Option<ApiConfig> {
        let raw = self.element::<RawApi>("api", value)?;
        let listen = match raw.listen.parse() {
            Ok(a) => a,
            Err(_) => {
                self.problem(
                    "api.listen",
                    format!(
                        "expected an address like 127.0.0.1:9464, found `{}`",
                        raw.listen
                    ),
                );
                return None;
            }
        };
        if let Some(var) = &raw.token_env
            && std::env::var(var).map_or(true, |t| t.is_empty())
        {
            self.problem(
                "api.token_env",
                format!("environment variable `{var}` is not set (or empty)"),
            );
            return None;
        }
        let public_url = match raw.public_url {
            Some(u) => Some(self.web_url("api.public_url", u)?),
            None => None,
        };
        Some(ApiConfig {
            listen,
            token_env: raw.token_env,
            public_status_page: raw.public_status_page,
            metrics_token: raw.metrics_token,
            public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
        })
    }

    /// A link for people: an http(s) URL with a host, as written.
    fn web_url(&mut self, key: &str, url: String) -> Option<String> {
        let ok = ["https://", "http://"].iter().any(|scheme| {
            url.strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        }) && !url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>'));
        if ok {
            Some(url)
        } else {
            self.problem(
                key,
                format!("expected an http(s) URL like https://example.org/runbook, found `{url}`"),
            );
            None
        }
    }

    fn maintenance(
        &mut self,
        value: Option<toml::Value>,
        protocols: &[ProtocolConfig],
    ) -> Vec<MaintenanceWindow> {
        let mut out = Vec::new();
        for (i, item) in self.array("maintenance", value).into_iter().enumerate() {
            let key = format!("maintenance[{i}]");
            let Some(raw) = self.element::<RawMaintenance>(&key, item) else {
                continue;
            };
            let protocol = protocols.iter().position(|p| p.name == raw.protocol);
            if protocol.is_none() {
                self.problem(
                    format!("{key}.protocol"),
                    format!("no protocol named `{}`", raw.protocol),
                );
            }
            let mut time = |field: &str, s: &str| match parse_rfc3339(s) {
                Some(t) => Some(t),
                None => {
                    self.problem(
                        format!("{key}.{field}"),
                        format!("expected an RFC 3339 time like 2026-12-01T02:00:00Z, found `{s}`"),
                    );
                    None
                }
            };
            let (start, end) = (time("start", &raw.start), time("end", &raw.end));
            if let (Some(start), Some(end)) = (start, end)
                && end <= start
            {
                self.problem(format!("{key}.end"), "expected a time after start");
                continue;
            }
            if let (Some(protocol), Some(start), Some(end)) = (protocol, start, end) {
                out.push(MaintenanceWindow {
                    protocol,
                    start,
                    end,
                });
            }
        }
        out
    }

    fn chains(&mut self, value: Option<toml::Value>) -> Vec<ChainConfig> {
        let mut chains = Vec::new();
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for (i, item) in self.array("chains", value).into_iter().enumerate() {
            let key = format!("chains[{i}]");
            let Some(raw) = self.element::<RawChain>(&key, item) else {
                continue;
            };
            self.unique_name(&key, "chain", &raw.name, &mut names);
            if !ids.insert(raw.chain_id) {
                self.problem(
                    format!("{key}.chain_id"),
                    format!("chain_id {} is already used by another chain", raw.chain_id),
                );
            }
            if raw.rpc.is_empty() {
                self.problem(format!("{key}.rpc"), "expected at least one endpoint URL");
            }
            let rpc: Vec<RpcEndpoint> = raw
                .rpc
                .into_iter()
                .map(|r| match r {
                    RawRpc::Url(url) => RpcEndpoint {
                        url,
                        max_requests_per_second: None,
                    },
                    RawRpc::Limited(l) => RpcEndpoint {
                        url: l.url,
                        max_requests_per_second: l.max_requests_per_second,
                    },
                })
                .collect();
            for (j, endpoint) in rpc.iter().enumerate() {
                let url = &endpoint.url;
                match endpoint.max_requests_per_second {
                    Some(0) => self.problem(
                        format!("{key}.rpc[{j}].max_requests_per_second"),
                        "expected a positive number of requests",
                    ),
                    Some(_) if url.starts_with("ws") => self.problem(
                        format!("{key}.rpc[{j}].max_requests_per_second"),
                        "expected only on http(s) endpoints: a WebSocket's subscription cannot be throttled here",
                    ),
                    _ => {}
                }
                let scheme = url.split("://").next().unwrap_or("");
                let host_ok = url.split("://").nth(1).is_some_and(|h| !h.is_empty());
                if !["http", "https", "ws", "wss"].contains(&scheme) || !host_ok {
                    self.problem(
                        format!("{key}.rpc[{j}]"),
                        format!(
                            "expected an http(s):// or ws(s):// URL, found `{}`",
                            crate::redact_url(url)
                        ),
                    );
                }
            }
            if raw.reorg_rescan_blocks == 0 {
                self.problem(
                    format!("{key}.reorg_rescan_blocks"),
                    "expected a positive number of blocks",
                );
            }
            if raw.stall_after_seconds == 0 {
                self.problem(
                    format!("{key}.stall_after_seconds"),
                    "expected a positive number of seconds",
                );
            }
            if raw.poll_interval_ms == 0 {
                self.problem(
                    format!("{key}.poll_interval_ms"),
                    "expected a positive number of milliseconds",
                );
            }
            let start_block = match raw.start_block {
                None => StartBlock::Latest,
                Some(toml::Value::String(s)) if s == "latest" => StartBlock::Latest,
                Some(toml::Value::Integer(n)) if n >= 0 => StartBlock::Number(n as u64),
                Some(other) => {
                    self.problem(
                        format!("{key}.start_block"),
                        format!("expected \"latest\" or a block number, found `{other}`"),
                    );
                    StartBlock::Latest
                }
            };
            if let Some(t) = &raw.explorer_tx_url
                && !t.contains("{hash}")
            {
                self.problem(
                    format!("{key}.explorer_tx_url"),
                    "expected a URL template containing `{hash}`",
                );
            }
            chains.push(ChainConfig {
                name: raw.name,
                chain_id: raw.chain_id,
                rpc,
                confirmations: raw.confirmations,
                poll_interval: Duration::from_millis(raw.poll_interval_ms.max(1)),
                start_block,
                explorer_tx_url: raw.explorer_tx_url,
                stall_after: Duration::from_secs(raw.stall_after_seconds.max(1)),
                failed_tx: raw.failed_tx || raw.trace_calls,
                trace_calls: raw.trace_calls,
                reorg_rescan_blocks: raw.reorg_rescan_blocks,
            });
        }
        chains
    }

    fn protocols(
        &mut self,
        value: Option<toml::Value>,
        chains: &[ChainConfig],
    ) -> Vec<ProtocolConfig> {
        let mut protocols = Vec::new();
        let mut names = HashSet::new();
        for (i, item) in self.array("protocols", value).into_iter().enumerate() {
            let key = format!("protocols[{i}]");
            let Some(raw) = self.element::<RawProtocol>(&key, item) else {
                continue;
            };
            self.unique_name(&key, "protocol", &raw.name, &mut names);
            let chain = chains.iter().position(|c| c.name == raw.chain);
            if chain.is_none() {
                let known: Vec<_> = chains.iter().map(|c| c.name.as_str()).collect();
                self.problem(
                    format!("{key}.chain"),
                    format!(
                        "no chain named `{}` is defined (defined: {})",
                        raw.chain,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
            let lists = [
                ("responders", &raw.responders),
                (
                    "severity_responders.degraded",
                    &raw.severity_responders.degraded,
                ),
                (
                    "severity_responders.halted",
                    &raw.severity_responders.halted,
                ),
            ];
            for (list, addresses) in lists {
                for (j, r) in addresses.iter().enumerate() {
                    let ok = r
                        .split_once('@')
                        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'));
                    if !ok {
                        self.problem(
                            format!("{key}.{list}[{j}]"),
                            format!("expected an email address, found `{r}`"),
                        );
                    }
                }
            }
            if raw
                .revenue_per_hour_usd
                .is_some_and(|r| !(r.is_finite() && r >= 0.0))
            {
                self.problem(
                    format!("{key}.revenue_per_hour_usd"),
                    "expected a non-negative number of dollars",
                );
            }
            let (contracts, presets) = self.contracts(&key, raw.contracts);
            let mut rules = Vec::new();
            for (c, preset) in presets {
                let Some(specs) = presets::rules(&preset) else {
                    continue; // reported by contracts()
                };
                let pkey = format!("{key}.contracts[{c}].preset");
                for spec in specs {
                    if let Some(rule) = self.resolve(&pkey, &contracts[c], c, spec) {
                        rules.push(rule);
                    }
                }
            }
            for (j, item) in raw.rules.into_iter().enumerate() {
                let rkey = format!("{key}.rules[{j}]");
                if let Some(rule) = self.rule(&rkey, item, &contracts) {
                    rules.push(rule);
                }
            }
            let mut probes = Vec::new();
            for (j, item) in raw.probes.into_iter().enumerate() {
                let pkey = format!("{key}.probes[{j}]");
                if let Some(p) = self.probe(&pkey, item, &contracts) {
                    probes.push(p);
                }
            }
            let runbook_url = raw
                .runbook_url
                .and_then(|u| self.web_url(&format!("{key}.runbook_url"), u));
            if let Some(chain) = chain {
                protocols.push(ProtocolConfig {
                    name: raw.name,
                    chain,
                    responders: raw.responders,
                    severity_responders: raw.severity_responders,
                    revenue_per_hour_usd: raw.revenue_per_hour_usd,
                    runbook_url,
                    contracts,
                    rules,
                    probes,
                });
            }
        }
        protocols
    }

    fn probe(
        &mut self,
        key: &str,
        item: toml::Value,
        contracts: &[ContractConfig],
    ) -> Option<ProbeConfig> {
        let raw = self.element::<RawProbe>(key, item)?;
        let Some(c) = contracts.iter().position(|c| c.name == raw.contract) else {
            self.problem(
                format!("{key}.contract"),
                format!(
                    "no contract named `{}` in this protocol (or it has errors above)",
                    raw.contract
                ),
            );
            return None;
        };
        let wanted: String = raw
            .function
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let name = wanted.split('(').next().unwrap_or(&wanted).to_string();
        let candidates = contracts[c]
            .abi
            .functions
            .get(&name)
            .cloned()
            .unwrap_or_default();
        let Some(function) = candidates
            .into_iter()
            .find(|f| f.signature() == wanted || (!wanted.contains('(') && f.inputs.is_empty()))
        else {
            self.problem(
                format!("{key}.function"),
                format!(
                    "no function `{wanted}` in ABI {}",
                    contracts[c].abi_path.display()
                ),
            );
            return None;
        };
        if !function.inputs.is_empty() || function.outputs.len() != 1 {
            self.problem(
                format!("{key}.function"),
                format!(
                    "`{}` must take no arguments and return one value",
                    function.signature()
                ),
            );
            return None;
        }
        let out = function.outputs[0].ty.as_str();
        let expected = match (&raw.expected, out) {
            (toml::Value::Boolean(b), "bool") => Expected::Bool(*b),
            (toml::Value::Integer(i), t) if t.starts_with("uint") || t.starts_with("int") => {
                Expected::Int(i128::from(*i))
            }
            (v, t) => {
                self.problem(
                    format!("{key}.expected"),
                    format!(
                        "`{}` returns {t}; expected a matching bool or integer, found `{v}`",
                        function.signature()
                    ),
                );
                return None;
            }
        };
        if raw.every_blocks == 0 {
            self.problem(format!("{key}.every_blocks"), "expected at least 1");
            return None;
        }
        Some(ProbeConfig {
            contract: c,
            function,
            expected,
            every_blocks: raw.every_blocks,
            scope: raw.scope,
        })
    }

    /// Returns the valid contracts and, for those with a preset, (index, preset).
    fn contracts(
        &mut self,
        key: &str,
        items: Vec<toml::Value>,
    ) -> (Vec<ContractConfig>, Vec<(usize, String)>) {
        let mut contracts = Vec::new();
        let mut presets_of = Vec::new();
        let mut names = HashSet::new();
        for (j, item) in items.into_iter().enumerate() {
            let ckey = format!("{key}.contracts[{j}]");
            let Some(raw) = self.element::<RawContract>(&ckey, item) else {
                continue;
            };
            self.unique_name(&ckey, "contract", &raw.name, &mut names);
            let address = match parse_address(&raw.address) {
                Ok(a) => Some(a),
                Err(m) => {
                    self.problem(format!("{ckey}.address"), m);
                    None
                }
            };
            let abi_path = self.dir.join(&raw.abi);
            let abi = self.abi(&format!("{ckey}.abi"), &abi_path);
            if let Some(p) = &raw.preset
                && presets::rules(p).is_none()
            {
                self.problem(
                    format!("{ckey}.preset"),
                    format!(
                        "unknown preset `{p}`, expected one of: {}",
                        presets::NAMES.join(", ")
                    ),
                );
            }
            if let (Some(address), Some(abi)) = (address, abi) {
                if let Some(p) = raw.preset {
                    presets_of.push((contracts.len(), p));
                }
                let revert_spike = raw.revert_spike.unwrap_or_default();
                if revert_spike.window_blocks == 0
                    || revert_spike.window_seconds == Some(0)
                    || revert_spike.clear_windows == 0
                    || !(0.0..=1.0).contains(&revert_spike.min_ratio)
                    || !(revert_spike.baseline_factor.is_finite()
                        && revert_spike.baseline_factor >= 0.0)
                {
                    self.problem(
                        format!("{ckey}.revert_spike"),
                        "expected window_blocks ≥ 1, window_seconds ≥ 1, clear_windows ≥ 1, min_ratio in 0..=1, baseline_factor ≥ 0",
                    );
                }
                contracts.push(ContractConfig {
                    name: raw.name,
                    address,
                    abi_path,
                    abi,
                    revert_spike,
                });
            }
        }
        (contracts, presets_of)
    }

    /// Reads an ABI file once per path; a broken file is one problem, however many contracts use it.
    fn abi(&mut self, key: &str, path: &Path) -> Option<Arc<JsonAbi>> {
        if let Some(cached) = self.abis.get(path) {
            return cached.clone();
        }
        let loaded = match read_abi(path) {
            Ok(abi) => Some(Arc::new(abi)),
            Err(message) => {
                self.problem(key, message);
                None
            }
        };
        self.abis.insert(path.to_path_buf(), loaded.clone());
        loaded
    }

    fn rule(&mut self, key: &str, item: toml::Value, contracts: &[ContractConfig]) -> Option<Rule> {
        let raw = self.element::<RawRule>(key, item)?;
        let Some(c) = contracts.iter().position(|c| c.name == raw.contract) else {
            self.problem(
                format!("{key}.contract"),
                format!(
                    "no contract named `{}` in this protocol (or it has errors above)",
                    raw.contract
                ),
            );
            return None;
        };
        let effect = match (raw.effect.as_str(), raw.toggle_arg) {
            ("halt", None) => EffectSpec::Halt,
            ("resume", None) => EffectSpec::Resume,
            ("flags", None) => EffectSpec::Flags,
            ("toggle", Some(arg)) => EffectSpec::Toggle(arg),
            ("toggle", None) => {
                self.problem(
                    format!("{key}.toggle_arg"),
                    "effect = \"toggle\" needs toggle_arg: a bool or integer argument of the event",
                );
                return None;
            }
            ("halt" | "resume" | "flags", Some(_)) => {
                self.problem(
                    format!("{key}.toggle_arg"),
                    "toggle_arg is only used with effect = \"toggle\"",
                );
                return None;
            }
            (other, _) => {
                self.problem(
                    format!("{key}.effect"),
                    format!(
                        "expected \"halt\", \"resume\", \"toggle\" or \"flags\", found \"{other}\""
                    ),
                );
                return None;
            }
        };
        let scope = match (raw.scope_arg, raw.scope) {
            (Some(_), Some(_)) => {
                self.problem(
                    format!("{key}.scope"),
                    "give either scope_arg or scope, not both",
                );
                return None;
            }
            (Some(OneOrMany::One(a)), None) => ScopeSpec::Args(vec![a]),
            (Some(OneOrMany::Many(a)), None) => ScopeSpec::Args(a),
            (None, Some(s)) => ScopeSpec::Fixed(s),
            (None, None) => ScopeSpec::Whole,
        };
        let spec = RuleSpec {
            event: raw.event,
            effect,
            scope,
            scopes: raw.scopes,
            time_arg: raw.time_arg,
        };
        self.resolve(key, &contracts[c], c, spec)
    }

    /// Resolves a rule spec against the contract's ABI, reporting under `key`.
    fn resolve(
        &mut self,
        key: &str,
        contract: &ContractConfig,
        index: usize,
        spec: RuleSpec,
    ) -> Option<Rule> {
        let abi_name = contract.abi_path.display();
        let event = match find_event(&contract.abi, &spec.event) {
            Ok(e) => e.clone(),
            Err(m) => {
                self.problem(format!("{key}.event"), format!("{m} in ABI {abi_name}"));
                return None;
            }
        };
        let arg = |name: &str| -> Result<(usize, DynSolType), String> {
            let pos = event
                .inputs
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| {
                    let names: Vec<_> = event.inputs.iter().map(|p| p.name.as_str()).collect();
                    format!(
                        "event {} has no argument `{name}` (arguments: {})",
                        event.signature(),
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    )
                })?;
            let ty = DynSolType::parse(&event.inputs[pos].selector_type())
                .map_err(|e| format!("argument `{name}` has an unsupported type: {e}"))?;
            Ok((pos, ty))
        };
        let effect = match spec.effect {
            EffectSpec::Halt => Effect::Halt,
            EffectSpec::Resume => Effect::Resume,
            EffectSpec::Toggle(name) => match arg(&name) {
                Ok((pos, DynSolType::Bool | DynSolType::Uint(_) | DynSolType::Int(_))) => {
                    Effect::Toggle(pos)
                }
                Ok((_, ty)) => {
                    self.problem(
                        format!("{key}.toggle_arg"),
                        format!("argument `{name}` is {ty}, expected a bool or an integer"),
                    );
                    return None;
                }
                Err(m) => {
                    self.problem(format!("{key}.toggle_arg"), m);
                    return None;
                }
            },
            EffectSpec::Flags => {
                let flags: Vec<(usize, String)> = event
                    .inputs
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.ty == "bool")
                    .map(|(i, p)| (i, p.name.clone()))
                    .collect();
                if flags.is_empty() {
                    self.problem(
                        format!("{key}.effect"),
                        format!(
                            "effect = \"flags\" needs bool arguments; {} has none",
                            event.signature()
                        ),
                    );
                    return None;
                }
                Effect::Flags(flags)
            }
        };
        let (scope, scope_is_address) = match spec.scope {
            ScopeSpec::Whole => (RuleScope::Whole, false),
            ScopeSpec::Fixed(s) => (RuleScope::Fixed(s), false),
            ScopeSpec::Args(names) => {
                let mut positions = Vec::new();
                let mut single_address = names.len() == 1;
                for name in &names {
                    match arg(name) {
                        Ok((pos, ty)) => {
                            single_address &= ty == DynSolType::Address;
                            positions.push(pos);
                        }
                        Err(m) => {
                            self.problem(format!("{key}.scope_arg"), m);
                            return None;
                        }
                    }
                }
                (RuleScope::Args(positions), single_address)
            }
        };
        let complete_set = match (&effect, spec.scopes) {
            (Effect::Flags(flags), None) => Some(flags.iter().map(|(_, n)| n.clone()).collect()),
            (_, None) => None,
            (_, Some(_)) if scope == RuleScope::Whole => {
                self.problem(
                    format!("{key}.scopes"),
                    "scopes lists the complete set of scope keys; it needs scope_arg or scope",
                );
                return None;
            }
            (_, Some(list)) => {
                let mut set = BTreeSet::new();
                for (i, s) in list.iter().enumerate() {
                    // Address scopes are compared in checksummed form.
                    let normalised = if scope_is_address {
                        match parse_address(s) {
                            Ok(a) => a.to_checksum(None),
                            Err(m) => {
                                self.problem(format!("{key}.scopes[{i}]"), m);
                                return None;
                            }
                        }
                    } else {
                        s.clone()
                    };
                    set.insert(normalised);
                }
                if set.is_empty() {
                    self.problem(format!("{key}.scopes"), "expected at least one scope key");
                    return None;
                }
                Some(set)
            }
        };
        let time_arg = match spec.time_arg {
            None => None,
            Some(name) => match arg(&name) {
                Ok((pos, DynSolType::Uint(_))) => Some(pos),
                Ok((_, ty)) => {
                    self.problem(
                        format!("{key}.time_arg"),
                        format!("argument `{name}` is {ty}, expected a uint (unix seconds)"),
                    );
                    return None;
                }
                Err(m) => {
                    self.problem(format!("{key}.time_arg"), m);
                    return None;
                }
            },
        };
        Some(Rule {
            contract: index,
            selector: event.selector(),
            event,
            effect,
            scope,
            complete_set,
            time_arg,
        })
    }
}

/// Parses an RFC 3339 time into unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

/// Parses a 20-byte hex address; the message says what was expected.
pub fn parse_address(s: &str) -> Result<Address, String> {
    Address::from_str(s.trim())
        .map_err(|_| format!("expected a 20-byte hex address like 0x1f98…f984, found `{s}`"))
}

/// Reads a JSON ABI: a plain array, or a Hardhat/Foundry artifact with an `abi` field.
pub fn read_abi(path: &Path) -> Result<JsonAbi, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read ABI file {}: {e}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "ABI file {} is not valid JSON (truncated?): {e}",
            path.display()
        )
    })?;
    let abi = match value {
        serde_json::Value::Array(_) => value,
        serde_json::Value::Object(mut o) => o.remove("abi").ok_or_else(|| {
            format!(
                "ABI file {} is an object without an `abi` field; expected a JSON ABI array or a Hardhat/Foundry artifact",
                path.display()
            )
        })?,
        _ => {
            return Err(format!(
                "ABI file {} is not a JSON ABI array or artifact",
                path.display()
            ));
        }
    };
    serde_json::from_value(abi)
        .map_err(|e| format!("ABI file {} is not a valid ABI: {e}", path.display()))
}

/// Finds an event by name (when not overloaded) or by full signature.
fn find_event<'a>(abi: &'a JsonAbi, wanted: &str) -> Result<&'a Event, String> {
    let wanted = wanted.trim();
    if wanted.contains('(') {
        let compact: String = wanted.chars().filter(|c| !c.is_whitespace()).collect();
        return abi
            .events()
            .find(|e| e.signature() == compact)
            .ok_or_else(|| format!("no event with signature `{compact}`"));
    }
    let overloads = abi.events.get(wanted).map(Vec::as_slice).unwrap_or(&[]);
    match overloads {
        [one] => Ok(one),
        [] => {
            let names: Vec<_> = abi.events.keys().map(String::as_str).collect();
            Err(format!(
                "no event named `{wanted}` (events: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        }
        many => Err(format!(
            "event `{wanted}` is overloaded; give the full signature, one of: {}",
            many.iter()
                .map(|e| e.signature())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
