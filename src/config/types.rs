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
