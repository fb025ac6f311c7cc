//! The shared vocabulary of every stage: blocks, chain updates, evidence,
//! signals, protocol states and incident updates. Plain data, no I/O.

use std::fmt;

use alloy::primitives::{Address, B256};
use alloy::rpc::types::Log;
use serde::{Deserialize, Serialize};

/// A block as the pipeline remembers it: enough to link parents and date evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    /// Unix seconds, from the block header.
    pub timestamp: u64,
}

/// What the source tells the rest of the pipeline. Every stage handles both
/// sides through one path: undo the reverted blocks, then apply the committed.
#[derive(Debug)]
pub enum ChainUpdate {
    /// Blocks `from..=tip.number` are canonical and fully fetched.
    Committed(CommittedRange),
    /// Every block above `ancestor` is no longer canonical.
    Reverted { ancestor: u64 },
    /// No new head since `head` for longer than the chain's stall limit;
    /// `since` is the wall-clock time (unix seconds) that head was first seen.
    Stalled { head: BlockRef, since: u64 },
    /// New heads again after a stall, at wall-clock time `at`.
    Resumed { head: BlockRef, at: u64 },
    /// The monitor cannot read the chain at all (every endpoint failing)
    /// since wall-clock `since`: a monitoring gap, not protocol downtime.
    GapOpened { since: u64, reason: String },
    /// The chain is readable again at `at`; the source backfills the gap.
    GapClosed { at: u64 },
    /// No block of the reorg window is canonical any more (since wall-clock
    /// `since`): a monitoring gap with the reason, until the blocks the
    /// `Reverted` that follows gives back are read again; responders of
    /// every protocol on the chain are told.
    DeepReorg { since: u64, reason: String },
}

/// A call into a monitored contract: a top-level transaction, or (with call
/// tracing) a nested call. Successes count for revert-spike ratios.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallOutcome {
    pub block_number: u64,
    pub block_hash: B256,
    pub block_timestamp: u64,
    pub tx_hash: B256,
    pub tx_index: u64,
    pub from: Address,
    pub to: Address,
    pub success: bool,
    /// Revert data (selector + arguments), when the call failed and it could be read.
    pub revert: Option<alloy::primitives::Bytes>,
    /// The calldata of a failed call (`None` for successes: not kept).
    pub input: Option<alloy::primitives::Bytes>,
    /// Found by tracing inside another transaction.
    pub nested: bool,
    /// For a failed call: whether the contract called raised the revert
    /// itself (`Some(true)`) or passed on one raised by a contract it called
    /// (`Some(false)`); `None` when nobody asked. Only a pause revert the
    /// contract raised itself halts it.
    pub raised_here: Option<bool>,
}

impl CallOutcome {
    /// The revert data, empty when unknown or the call succeeded.
    pub fn revert_data(&self) -> &[u8] {
        self.revert.as_ref().map_or(&[], |b| &b[..])
    }
}

/// What a view call is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// A `[[protocols.probes]]` entry: `probe` is (protocol, probe index).
    #[default]
    State,
    /// A rule's complete set (`scopes_from`): `probe` is (protocol, rule index).
    ScopeSet,
}

/// The answer of one view call at a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    pub kind: ProbeKind,
    /// (protocol index, probe or rule index within the protocol).
    pub probe: (usize, usize),
    pub block: BlockRef,
    /// Return data, or why the call failed.
    pub output: Result<alloy::primitives::Bytes, String>,
}

/// A contiguous run of processed blocks and the monitored logs in them.
#[derive(Debug)]
pub struct CommittedRange {
    pub from: u64,
    pub tip: BlockRef,
    /// Headers the source knows in this range (always the tip; near the head, every block).
    pub blocks: Vec<BlockRef>,
    /// Logs of monitored addresses and topics, in chain order.
    pub logs: Vec<Log>,
    /// Calls into watched contracts, in chain order (with failed-tx detection).
    pub calls: Vec<CallOutcome>,
    /// State probes taken at the tip.
    pub probes: Vec<ProbeResult>,
}

/// Whether a protocol works, works in part, or does not work.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolState {
    #[default]
    Operational,
    Degraded,
    Halted,
}

impl ProtocolState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolState::Operational => "operational",
            ProtocolState::Degraded => "degraded",
            ProtocolState::Halted => "halted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "operational" => Some(ProtocolState::Operational),
            "degraded" => Some(ProtocolState::Degraded),
            "halted" => Some(ProtocolState::Halted),
            _ => None,
        }
    }
}

impl fmt::Display for ProtocolState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The part of a protocol a halt concerns: a whole contract (`key = None`),
/// or one scope of it (an asset, an action, a flag).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Scope {
    pub contract: String,
    pub key: Option<String>,
    /// Halted, it makes the protocol at most degraded (a rule with
    /// `severity = "degraded"`: a frozen reserve still repays).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub degraded_only: bool,
}

impl Scope {
    pub fn whole(contract: impl Into<String>) -> Self {
        Scope {
            contract: contract.into(),
            key: None,
            degraded_only: false,
        }
    }

    pub fn keyed(contract: impl Into<String>, key: impl Into<String>) -> Self {
        Scope {
            contract: contract.into(),
            key: Some(key.into()),
            degraded_only: false,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            None => f.write_str(&self.contract),
            Some(k) => write!(f, "{}:{}", self.contract, k),
        }
    }
}

/// One scope entering (`halted = true`) or leaving a halt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeChange {
    pub scope: Scope,
    pub halted: bool,
}

/// One decoded event argument, kept as text so the history is self-describing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventArg {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    /// Addresses checksummed, integers in decimal, bytes as 0x-hex; strings
    /// exactly as on chain (untrusted: sanitise before display).
    pub value: String,
}

/// What a piece of evidence is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// An event log (`log_index` is its index in the block).
    #[default]
    Log,
    /// A failed call (`log_index` is the transaction's index in the block).
    FailedCall,
    /// A state probe (`log_index` is the probe's index; no transaction).
    Probe,
    /// The chain stopped producing blocks (`block_*` is the last head).
    Stall,
    /// A revert spike started or cleared (`block_*` is where it was decided).
    Spike,
}

impl EvidenceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::Log => "log",
            EvidenceKind::FailedCall => "failed_call",
            EvidenceKind::Probe => "probe",
            EvidenceKind::Stall => "stall",
            EvidenceKind::Spike => "spike",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            EvidenceKind::Log,
            EvidenceKind::FailedCall,
            EvidenceKind::Probe,
            EvidenceKind::Stall,
            EvidenceKind::Spike,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Where on the chain a signal came from: enough to re-read it later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub kind: EvidenceKind,
    pub chain_id: u64,
    pub contract: Address,
    pub contract_name: String,
    pub tx_hash: B256,
    pub block_number: u64,
    pub block_hash: B256,
    pub block_timestamp: u64,
    pub log_index: u64,
    /// Event signature, e.g. `Paused(address)`.
    pub event: String,
    pub args: Vec<EventArg>,
    pub changes: Vec<ScopeChange>,
    /// keccak256(address ‖ topics ‖ data) of the raw log: what `verify` compares.
    pub log_hash: B256,
    /// When the halt really happened, if the event says so (a sequencer
    /// feed's `updatedAt`, a stall's wall-clock time); else the block time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
}

impl Evidence {
    /// The time this evidence dates a transition with.
    pub fn time(&self) -> u64 {
        self.at.unwrap_or(self.block_timestamp)
    }
}

/// keccak256(address ‖ topics ‖ data): identifies a log's content exactly.
pub fn log_hash(log: &alloy::primitives::Log) -> B256 {
    let mut bytes = Vec::with_capacity(20 + 32 * log.topics().len() + log.data.data.len());
    bytes.extend_from_slice(log.address.as_slice());
    for t in log.topics() {
        bytes.extend_from_slice(t.as_slice());
    }
    bytes.extend_from_slice(&log.data.data);
    alloy::primitives::keccak256(bytes)
}

/// A detector's finding for one protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    /// Index of the protocol in the configuration.
    pub protocol: usize,
    pub evidence: Evidence,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    Opened,
    Escalated,
    Deescalated,
    Resolved,
}

impl TransitionKind {
    pub fn between(from: ProtocolState, to: ProtocolState) -> Option<Self> {
        use ProtocolState::Operational;
        match (from, to) {
            _ if from == to => None,
            (Operational, _) => Some(TransitionKind::Opened),
            (_, Operational) => Some(TransitionKind::Resolved),
            _ if to > from => Some(TransitionKind::Escalated),
            _ => Some(TransitionKind::Deescalated),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TransitionKind::Opened => "opened",
            TransitionKind::Escalated => "escalated",
            TransitionKind::Deescalated => "deescalated",
            TransitionKind::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            TransitionKind::Opened,
            TransitionKind::Escalated,
            TransitionKind::Deescalated,
            TransitionKind::Resolved,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A change of a protocol's state, dated by the block that caused it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub kind: TransitionKind,
    pub from: ProtocolState,
    pub to: ProtocolState,
    /// Unix seconds (chain time).
    pub at: u64,
    pub block_number: u64,
}

/// What the classifier tells the store about one transaction's signals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentUpdate {
    /// Stable across restarts and re-runs: derived from the opening evidence.
    pub key: String,
    pub protocol: usize,
    pub transition: Option<Transition>,
    pub evidence: Vec<Evidence>,
}

/// Makes untrusted on-chain text safe to print on a terminal or in a log:
/// control characters (CR, LF, ESC, …) become `\u{..}` escapes and the text is
/// capped at `max_chars` characters.
/// Unicode format characters (general category Cf): invisible, and some
/// (the bidi embeddings, overrides and isolates) reorder the text around
/// them, so an on-chain string could make a table or a subject read as
/// something else.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{ad}'
        | '\u{600}'..='\u{605}'
        | '\u{61c}'
        | '\u{6dd}'
        | '\u{70f}'
        | '\u{890}'..='\u{891}'
        | '\u{8e2}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{110bd}'
        | '\u{110cd}'
        | '\u{13430}'..='\u{1343f}'
        | '\u{1bca0}'..='\u{1bca3}'
        | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0001}'
        | '\u{e0020}'..='\u{e007f}')
}

pub fn sanitize_text(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars));
    for (count, c) in s.chars().enumerate() {
        if count == max_chars {
            out.push('…');
            break;
        }
        if c.is_control() || is_format(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_isolates_and_other_format_characters_are_escaped() {
        for c in [
            '\u{202e}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{feff}',
            '\u{ad}',
            '\u{e0041}',
        ] {
            let text = format!("paused{c}by admin");
            let out = sanitize_text(&text, 100);
            assert!(!out.contains(c), "{:?} passed through: {out}", c);
            assert!(out.contains(&c.escape_unicode().to_string()), "{out}");
        }
        assert_eq!(sanitize_text("plain text é ü 中", 100), "plain text é ü 中");
    }

    #[test]
    fn transition_kinds() {
        use ProtocolState::*;
        let cases = [
            (Operational, Degraded, Some(TransitionKind::Opened)),
            (Operational, Halted, Some(TransitionKind::Opened)),
            (Degraded, Halted, Some(TransitionKind::Escalated)),
            (Halted, Degraded, Some(TransitionKind::Deescalated)),
            (Halted, Operational, Some(TransitionKind::Resolved)),
            (Degraded, Operational, Some(TransitionKind::Resolved)),
            (Halted, Halted, None),
        ];
        for (from, to, want) in cases {
            assert_eq!(TransitionKind::between(from, to), want, "{from} -> {to}");
        }
    }

    #[test]
    fn sanitize_escapes_control_characters_and_caps_length() {
        assert_eq!(sanitize_text("a\r\nBcc: x", 100), "a\\u{d}\\u{a}Bcc: x");
        assert_eq!(sanitize_text("abcdef", 3), "abc…");
        assert_eq!(sanitize_text("\u{202e}evil", 100), "\\u{202e}evil");
    }
}
