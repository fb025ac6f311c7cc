//! The configuration as validated: every reference resolved, every ABI
//! parsed once. These are what the rest of haltwatch reads.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::json_abi::{Event, JsonAbi};
use alloy::primitives::{Address, B256};
use serde::Deserialize;

use super::*;
use crate::model::ProtocolState;

/// A validated configuration: every reference resolved, every ABI parsed once.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[store]`: where the history lives.
    pub store: StoreConfig,
    /// `[[chains]]`, in file order.
    pub chains: Vec<ChainConfig>,
    /// `[[protocols]]`, in file order.
    pub protocols: Vec<ProtocolConfig>,
    /// Absent: incidents are recorded, nobody is mailed.
    pub email: Option<EmailConfig>,
    /// `[[maintenance]]`: planned halt windows.
    pub maintenance: Vec<MaintenanceWindow>,
    /// `[api]`, or its defaults.
    pub api: ApiConfig,
    /// `[anchor]`: the history head written to a chain now and then.
    pub anchor: Option<AnchorConfig>,
    /// `[heartbeat]`: pinged while every chain is followed and fresh.
    pub heartbeat: Option<HeartbeatConfig>,
    /// `shutdown_timeout_seconds`: how long `run` may take to stop after
    /// SIGTERM or SIGINT before it exits anyway (code 1).
    pub shutdown_timeout: Duration,
}

/// `shutdown_timeout_seconds` unless set.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// `[api]`, validated. The token is not here: only the variable's name.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Where the HTTP surface listens.
    pub listen: std::net::SocketAddr,
    /// The variable holding the bearer token for `/api/*`, if any.
    pub token_env: Option<String>,
    /// With a token: whether the status pages stay open.
    pub public_status_page: bool,
    /// With a token: whether `/metrics` needs it too.
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
    /// The SMTP relay's host name.
    pub smtp_host: String,
    /// Its port.
    pub smtp_port: u16,
    /// How the connection is encrypted.
    pub tls: TlsMode,
    /// Login for SMTP AUTH, if any.
    pub username: Option<String>,
    /// The variable holding the SMTP password (never the password).
    pub password_env: Option<String>,
    /// The sender of every mail.
    pub from: lettre::message::Mailbox,
    /// How long a new transition waits for others of its incident before it is mailed.
    pub group_wait: Duration,
    /// Mails per protocol per hour before a digest takes over.
    pub max_per_hour: u32,
    /// The first retry's delay after a temporary delivery failure (doubling).
    pub retry_initial: Duration,
    /// How long one SMTP exchange may take.
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
    /// End of the window, unix seconds.
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
    pub backend: StoreBackend,
}

/// Where the history lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// The SQLite database file, resolved against the config file's folder.
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by any number of `run` replicas.
    Postgres(PostgresStore),
}

/// `[store]` on PostgreSQL. The secrets stay in the environment until the
/// store connects ([`PostgresStore::credentials`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresStore {
    /// The URL as written, or the variable that holds it.
    pub url: SecretUrl,
    /// The variable that holds the password, if the URL has none.
    pub password_env: Option<String>,
    /// `lease_ttl_seconds`: a chain's lease lasts this long unrenewed.
    pub lease_ttl: Duration,
}

/// A URL written in the file, or the environment variable that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretUrl {
    Literal(String),
    Env(String),
}

/// `lease_ttl_seconds` unless set.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

impl StoreConfig {
    /// A SQLite history at `path`.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            backend: StoreBackend::Sqlite(path.into()),
        }
    }

    /// The SQLite file, if the history is one.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match &self.backend {
            StoreBackend::Sqlite(path) => Some(path),
            StoreBackend::Postgres(_) => None,
        }
    }

    /// Where the history is, for messages: the file, or the database's
    /// scheme, host, port and name (never its credentials).
    pub fn describe(&self) -> String {
        match &self.backend {
            StoreBackend::Sqlite(path) => path.display().to_string(),
            StoreBackend::Postgres(pg) => match &pg.url {
                SecretUrl::Literal(url) => crate::redact::redact_url(url),
                SecretUrl::Env(var) => format!("the PostgreSQL URL in ${var}"),
            },
        }
    }
}

impl PostgresStore {
    /// The URL to connect with and the password from the environment, read
    /// now (so a rotated secret takes effect on the next connection).
    pub fn credentials(&self) -> Result<(String, Option<String>), String> {
        let url = match &self.url {
            SecretUrl::Literal(u) => u.clone(),
            SecretUrl::Env(var) => std::env::var(var)
                .map(|u| u.trim().to_string())
                .map_err(|_| format!("environment variable `{var}` is not set"))?,
        };
        let password = match &self.password_env {
            Some(var) => Some(
                std::env::var(var)
                    .map_err(|_| format!("environment variable `{var}` is not set"))?,
            ),
            None => None,
        };
        Ok((url, password))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartBlock {
    Latest,
    Number(u64),
}

#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// Unique name.
    pub name: String,
    /// The chain id every endpoint must serve.
    pub chain_id: u64,
    /// Endpoints, preferred in order.
    pub rpc: Vec<RpcEndpoint>,
    /// Blocks behind the head before a block is processed.
    pub confirmations: u64,
    /// How often http endpoints are polled for a new head.
    pub poll_interval: Duration,
    /// Where the first run starts; later runs resume from the checkpoint.
    pub start_block: StartBlock,
    /// A block explorer's transaction URL with `{hash}`, for links in mails and pages.
    pub explorer_tx_url: Option<String>,
    /// A head that has not moved for this long is a stall.
    pub stall_after: Duration,
    /// Watch failed calls into the contracts (failed transactions, revert spikes).
    pub failed_tx: bool,
    /// Trace every block for nested calls too.
    pub trace_calls: bool,
    /// Blocks below the checkpoint read again after a reorg deeper than the window.
    pub reorg_rescan_blocks: u64,
}

/// One JSON-RPC endpoint of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcEndpoint {
    /// `ws(s)://` or `http(s)://`; may carry an API key (always redacted when shown).
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
    /// Also mailed about incidents that reached degraded.
    #[serde(default)]
    pub degraded: Vec<String>,
    /// Also mailed about incidents that reached halted.
    #[serde(default)]
    pub halted: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ProtocolConfig {
    /// Unique name.
    pub name: String,
    /// Index into [`Config::chains`].
    pub chain: usize,
    /// Addresses mailed about every incident.
    pub responders: Vec<String>,
    /// Addresses mailed besides `responders`, by severity reached.
    pub severity_responders: SeverityResponders,
    /// Revenue lost per hour of halt, for the report's cost estimate.
    pub revenue_per_hour_usd: Option<f64>,
    /// `runbook_url`: its incident-response plan (http or https).
    pub runbook_url: Option<String>,
    /// Its contracts, each with its ABI.
    pub contracts: Vec<ContractConfig>,
    /// Its rules, explicit and from presets, resolved against the ABIs.
    pub rules: Vec<Rule>,
    /// Its state probes.
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
    /// Unique within the protocol; used in scopes.
    pub name: String,
    /// Only logs and calls at this address count.
    pub address: Address,
    /// The ABI file, as resolved.
    pub abi_path: PathBuf,
    /// The parsed ABI (shared between contracts that name one file).
    pub abi: Arc<JsonAbi>,
    /// The revert-spike detector's settings for this contract.
    pub revert_spike: SpikeConfig,
    /// Reverts that mean "halted here": the preset's, then the config's.
    pub halt_reverts: Vec<HaltRevert>,
}

/// A rule's complete scope set, read from the chain.
#[derive(Debug, Clone)]
pub struct ScopesFrom {
    /// Index into the protocol's contracts.
    pub contract: usize,
    /// A view with no arguments returning `address[]`.
    pub function: alloy::json_abi::Function,
    /// topic0s of the rule's contract after which the set is read again.
    pub refresh_on: Vec<B256>,
    /// Read again every this many blocks.
    pub refresh_blocks: u64,
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
    /// The view function called.
    pub function: alloy::json_abi::Function,
    /// The answer that means operational.
    pub expected: Expected,
    /// Called every this many blocks.
    pub every_blocks: u64,
    /// The scope a failed expectation halts, if not the function's name.
    pub scope: Option<String>,
}

/// A rule resolved against its contract's ABI: argument positions, not names.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Index into the protocol's contracts.
    pub contract: usize,
    /// The event, from the contract's ABI.
    pub event: Event,
    /// The event's topic0.
    pub selector: B256,
    /// How the event moves scopes.
    pub effect: Effect,
    /// Which scope the event concerns.
    pub scope: RuleScope,
    /// Scope keys that together mean the whole protocol is halted.
    pub complete_set: Option<BTreeSet<String>>,
    /// Or: the complete set, read from the chain.
    pub scopes_from: Option<ScopesFrom>,
    /// Position of an argument holding the halt's real time (unix seconds).
    pub time_arg: Option<usize>,
    /// Its halts make the protocol at most degraded.
    pub degraded_only: bool,
}

/// [`EffectSpec`] with argument names resolved to positions in `event.inputs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Halt,
    Resume,
    Toggle(usize),
    /// Halts when the argument is false or zero.
    ToggleOff(usize),
    /// (argument position, scope key) per flag.
    Flags(Vec<(usize, String)>),
}

/// [`ScopeSpec`] with argument names resolved to positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleScope {
    Whole,
    Fixed(String),
    Args(Vec<usize>),
    /// `prefix:` then the arguments' values.
    Prefixed(String, Vec<usize>),
}
