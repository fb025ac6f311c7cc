//! The ABI registry: built once per chain from the resolved configuration,
//! indexed by `(address, topic0)`. A log no rule asks for is skipped with one
//! hash lookup and no allocation; a log that fails to decode is reported as a
//! value, never a panic.

use std::collections::{BTreeSet, HashMap};

use alloy::dyn_abi::{DynSolEvent, DynSolValue, Specifier};
use alloy::json_abi::Event;
use alloy::primitives::{Address, B256};
use alloy::rpc::types::Log;

use crate::config::Config;
use crate::model::EventArg;

/// A rule of a protocol that asks for a given `(address, topic0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleRef {
    pub protocol: usize,
    pub rule: usize,
}

/// Everything needed to decode one event of one contract, resolved once.
#[derive(Debug)]
pub struct EventEntry {
    pub event: Event,
    /// `Paused(address)`.
    pub signature: String,
    decoder: DynSolEvent,
    pub rules: Vec<RuleRef>,
    /// Rules whose complete set this event changes (`ReserveDropped`):
    /// the set read again at the range's end takes effect after it.
    pub refreshes: Vec<RuleRef>,
}

/// A log decoded with its contract's ABI; `values` follow `event.inputs` order.
#[derive(Debug)]
pub struct DecodedLog<'a> {
    pub entry: &'a EventEntry,
    pub log: &'a Log,
    pub values: Vec<DynSolValue>,
}

impl DecodedLog<'_> {
    /// The decoded arguments as self-describing text.
    pub fn args(&self) -> Vec<EventArg> {
        self.entry
            .event
            .inputs
            .iter()
            .zip(&self.values)
            .map(|(p, v)| EventArg {
                name: p.name.clone(),
                ty: p.ty.clone(),
                value: format_value(v),
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("log {log_index:?} of tx {tx_hash:?} from {address} does not decode as {signature}")]
pub struct DecodeError {
    pub address: Address,
    pub signature: String,
    pub tx_hash: Option<B256>,
    pub log_index: Option<u64>,
    #[source]
    pub source: alloy::dyn_abi::Error,
}

/// A decoded revert: `EnforcedPause()`, `Error(string)`, `Panic(uint256)`, a custom error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevertReason {
    /// `EnforcedPause()`, `Unavailable(uint256)`, `Error(string)`, or `unknown(0x12345678)`.
    pub signature: String,
    pub args: Vec<EventArg>,
}

impl RevertReason {
    /// True when the revert says the contract is paused: OpenZeppelin 5's
    /// `EnforcedPause()` or 4's `"Pausable: paused"`.
    pub fn is_pause(&self) -> bool {
        self.signature == "EnforcedPause()"
            || (self.signature == "Error(string)"
                && self
                    .args
                    .first()
                    .is_some_and(|a| a.value == "Pausable: paused"))
    }
}

/// True when raw revert data says "paused" the way [`RevertReason::is_pause`]
/// reads it, without an ABI: `EnforcedPause()`'s selector alone, or
/// `Error(string)` with `"Pausable: paused"`.
pub fn looks_like_pause(data: &[u8]) -> bool {
    use alloy::sol_types::SolError;
    const ENFORCED_PAUSE: [u8; 4] = [0xd9, 0x3c, 0x06, 0x65];
    data == ENFORCED_PAUSE
        || alloy::sol_types::Revert::abi_decode(data).is_ok_and(|r| r.reason == "Pausable: paused")
}

/// Resolved decoders for the monitored contracts of one chain.
#[derive(Debug, Default)]
pub struct AbiRegistry {
    entries: HashMap<(Address, B256), EventEntry>,
    /// Custom errors of every contract of the chain's protocols, by selector.
    errors: HashMap<(Address, [u8; 4]), alloy::json_abi::Error>,
    /// Every contract of the chain's protocols (failed calls are watched for all).
    contracts: BTreeSet<Address>,
}

impl AbiRegistry {
    /// Builds the registry for chain `chain` of a validated configuration.
    pub fn for_chain(config: &Config, chain: usize) -> Self {
        let mut entries: HashMap<(Address, B256), EventEntry> = HashMap::new();
        let mut errors = HashMap::new();
        let mut contracts = BTreeSet::new();
        for (p, protocol) in config.protocols.iter().enumerate() {
            if protocol.chain != chain {
                continue;
            }
            for c in &protocol.contracts {
                contracts.insert(c.address);
                for e in c.abi.errors() {
                    errors.insert((c.address, e.selector().0), e.clone());
                }
            }
            for (r, rule) in protocol.rules.iter().enumerate() {
                let contract = &protocol.contracts[rule.contract];
                let here = RuleRef {
                    protocol: p,
                    rule: r,
                };
                if let Some(entry) = entry_for(&mut entries, contract.address, &rule.event) {
                    entry.rules.push(here);
                }
                let refresh_on = rule.scopes_from.iter().flat_map(|f| &f.refresh_on);
                for topic in refresh_on {
                    let Some(event) = contract.abi.events().find(|e| e.selector() == *topic) else {
                        continue;
                    };
                    if let Some(entry) = entry_for(&mut entries, contract.address, event) {
                        entry.refreshes.push(here);
                    }
                }
            }
        }
        AbiRegistry {
            entries,
            errors,
            contracts,
        }
    }

    /// Every contract of the chain's protocols, sorted.
    pub fn contracts(&self) -> Vec<Address> {
        self.contracts.iter().copied().collect()
    }

    /// Decodes revert data with the contract's custom errors, `Error(string)`
    /// and `Panic(uint256)`. Unknown data is named by its selector.
    pub fn revert_reason(&self, contract: Address, data: &[u8]) -> RevertReason {
        use alloy::dyn_abi::JsonAbiExt;
        use alloy::sol_types::SolError;
        let Some(selector) = data.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()) else {
            return RevertReason {
                signature: "unknown()".into(),
                args: Vec::new(),
            };
        };
        if let Some(error) = self.errors.get(&(contract, selector))
            && let Ok(values) = error.abi_decode_input(&data[4..])
        {
            return RevertReason {
                signature: error.signature(),
                args: error
                    .inputs
                    .iter()
                    .zip(&values)
                    .map(|(p, v)| EventArg {
                        name: p.name.clone(),
                        ty: p.ty.clone(),
                        value: format_value(v),
                    })
                    .collect(),
            };
        }
        if let Ok(e) = alloy::sol_types::Revert::abi_decode(data) {
            return RevertReason {
                signature: "Error(string)".into(),
                args: vec![EventArg {
                    name: "reason".into(),
                    ty: "string".into(),
                    value: capped(e.reason),
                }],
            };
        }
        if let Ok(p) = alloy::sol_types::Panic::abi_decode(data) {
            return RevertReason {
                signature: "Panic(uint256)".into(),
                args: vec![EventArg {
                    name: "code".into(),
                    ty: "uint256".into(),
                    value: p.code.to_string(),
                }],
            };
        }
        RevertReason {
            signature: format!("unknown({})", alloy::hex::encode_prefixed(selector)),
            args: Vec::new(),
        }
    }

    /// Addresses to ask the node for logs of, sorted.
    pub fn addresses(&self) -> Vec<Address> {
        let set: BTreeSet<Address> = self.entries.keys().map(|(a, _)| *a).collect();
        set.into_iter().collect()
    }

    /// Topics (event selectors) to ask the node for, sorted.
    pub fn topics(&self) -> Vec<B256> {
        let set: BTreeSet<B256> = self.entries.keys().map(|(_, t)| *t).collect();
        set.into_iter().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The rules whose complete set `log` changes (read again after it).
    pub fn refreshes(&self, log: &Log) -> &[RuleRef] {
        log.topics()
            .first()
            .and_then(|t| self.entries.get(&(log.address(), *t)))
            .map_or(&[], |e| &e.refreshes)
    }

    /// `None` when no rule asks for this log (nor reads a set it changes);
    /// otherwise the decoded log or why it did not decode.
    pub fn decode<'a>(&'a self, log: &'a Log) -> Option<Result<DecodedLog<'a>, DecodeError>> {
        let topic0 = *log.topics().first()?;
        let entry = self.entries.get(&(log.address(), topic0))?;
        Some(
            entry
                .decoder
                .decode_log_data(&log.inner.data)
                .map(|decoded| DecodedLog {
                    entry,
                    log,
                    values: in_input_order(&entry.event, decoded.indexed, decoded.body),
                })
                .map_err(|source| DecodeError {
                    address: log.address(),
                    signature: entry.signature.clone(),
                    tx_hash: log.transaction_hash,
                    log_index: log.log_index,
                    source,
                }),
        )
    }
}

/// The entry of `event` at `address`, made on first use.
fn entry_for<'a>(
    entries: &'a mut HashMap<(Address, B256), EventEntry>,
    address: Address,
    event: &Event,
) -> Option<&'a mut EventEntry> {
    use std::collections::hash_map::Entry;
    match entries.entry((address, event.selector())) {
        Entry::Occupied(o) => Some(o.into_mut()),
        Entry::Vacant(v) => Some(v.insert(new_entry(event)?)),
    }
}

fn new_entry(event: &Event) -> Option<EventEntry> {
    // Resolution was checked while validating the config; an event that cannot
    // resolve has no argument a rule could use.
    let decoder = event.resolve().ok()?;
    Some(EventEntry {
        signature: event.signature(),
        event: event.clone(),
        decoder,
        rules: Vec::new(),
        refreshes: Vec::new(),
    })
}

/// Interleaves indexed and body values back into the event's declared order.
fn in_input_order(
    event: &Event,
    indexed: Vec<DynSolValue>,
    body: Vec<DynSolValue>,
) -> Vec<DynSolValue> {
    let mut indexed = indexed.into_iter();
    let mut body = body.into_iter();
    event
        .inputs
        .iter()
        .filter_map(|p| {
            if p.indexed {
                indexed.next()
            } else {
                body.next()
            }
        })
        .collect()
}

/// Text form of a decoded value: checksummed addresses, decimal integers, 0x-hex bytes.
/// The most text one argument keeps; the rest is cut at a character
/// boundary and [`truncated_marker`] says how long it was. Anyone who can
/// emit a log can make an argument as large as the block's gas allows.
pub const MAX_ARG_BYTES: usize = 4096;

/// What ends an argument cut to [`MAX_ARG_BYTES`].
pub fn truncated_marker(total_bytes: usize) -> String {
    format!("… [truncated: {total_bytes} bytes in all]")
}

/// An argument as text (addresses checksummed, bytes as hex, arrays and
/// tuples in brackets), capped at [`MAX_ARG_BYTES`].
pub fn format_value(v: &DynSolValue) -> String {
    capped(format_uncapped(v))
}

/// `text` cut to [`MAX_ARG_BYTES`] with a marker, if longer.
fn capped(mut text: String) -> String {
    if text.len() > MAX_ARG_BYTES {
        let total = text.len();
        let mut cut = MAX_ARG_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(&truncated_marker(total));
    }
    text
}

fn format_uncapped(v: &DynSolValue) -> String {
    match v {
        DynSolValue::Address(a) => a.to_checksum(None),
        DynSolValue::Bool(b) => b.to_string(),
        DynSolValue::Int(i, _) => i.to_string(),
        DynSolValue::Uint(u, _) => u.to_string(),
        DynSolValue::FixedBytes(w, size) => alloy::hex::encode_prefixed(&w[..*size]),
        DynSolValue::Bytes(b) => alloy::hex::encode_prefixed(b),
        DynSolValue::String(s) => s.clone(),
        DynSolValue::Function(f) => alloy::hex::encode_prefixed(f.as_slice()),
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) | DynSolValue::Tuple(items) => {
            let inner: Vec<String> = items.iter().map(format_uncapped).collect();
            format!("[{}]", inner.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{LogData, U256, address, b256};

    #[test]
    fn long_strings_and_bytes_are_capped_with_a_marker() {
        let long = "é".repeat(3_000); // 6,000 bytes, two per character
        let text = format_value(&DynSolValue::String(long));
        let kept = text.strip_suffix(&truncated_marker(6_000)).expect("marked");
        assert!(kept.len() <= MAX_ARG_BYTES && kept.chars().all(|c| c == 'é'));
        let bytes = format_value(&DynSolValue::Bytes(vec![0xab; 3_000]));
        assert!(
            bytes.ends_with(&truncated_marker(6_002)),
            "0x + 6,000 hex digits"
        );
        assert!(bytes.len() <= MAX_ARG_BYTES + truncated_marker(6_002).len());
        let array = DynSolValue::Array(vec![DynSolValue::Bool(true); 2_000]);
        assert!(format_value(&array).contains("[truncated:"));
        assert_eq!(format_value(&DynSolValue::String("short".into())), "short");
    }

    fn registry() -> (Config, AbiRegistry) {
        let dir = env!("CARGO_MANIFEST_DIR");
        let toml = format!(
            r#"
            [[chains]]
            name = "local"
            chain_id = 31337
            rpc = ["http://127.0.0.1:8545"]
            [[protocols]]
            name = "Aave"
            chain = "local"
              [[protocols.contracts]]
              name = "configurator"
              address = "0x00000000000000000000000000000000000000aa"
              abi = "{dir}/abis/aave-v3-configurator.json"
              preset = "aave-v3-configurator"
            "#
        );
        let config = crate::config::parse(&toml, std::path::Path::new("x.toml")).unwrap();
        let registry = AbiRegistry::for_chain(&config, 0);
        (config, registry)
    }

    fn log(address: Address, topics: Vec<B256>, data: Vec<u8>) -> Log {
        Log {
            inner: alloy::primitives::Log {
                address,
                data: LogData::new_unchecked(topics, data.into()),
            },
            ..Default::default()
        }
    }

    const RESERVE_PAUSED: B256 =
        b256!("0xe188d542a5f11925d3a3af33703cdd30a43cb3e8066a3cf68b1b57f61a5a94b5");
    const CONFIGURATOR: Address = address!("0x00000000000000000000000000000000000000aa");

    #[test]
    fn selector_is_the_real_one() {
        let (_, registry) = registry();
        assert!(registry.topics().contains(&RESERVE_PAUSED));
        assert_eq!(registry.topics().len(), 3, "paused, frozen, active");
        assert_eq!(registry.addresses(), vec![CONFIGURATOR]);
    }

    #[test]
    fn decodes_indexed_and_body_in_declared_order() {
        let (_, registry) = registry();
        let asset = address!("0x1f9840a85d5aF5bf1D1762F925BDADdC4201F984");
        let l = log(
            CONFIGURATOR,
            vec![RESERVE_PAUSED, asset.into_word()],
            U256::from(1).to_be_bytes::<32>().to_vec(),
        );
        let decoded = registry.decode(&l).unwrap().unwrap();
        let args = decoded.args();
        assert_eq!(args[0].name, "asset");
        assert_eq!(args[0].value, asset.to_checksum(None));
        assert_eq!(args[1].name, "paused");
        assert_eq!(args[1].value, "true");
    }

    #[test]
    fn unmonitored_logs_are_skipped_and_bad_logs_are_errors() {
        let (_, registry) = registry();
        let other = address!("0x00000000000000000000000000000000000000bb");
        let cases: Vec<(Log, &str)> = vec![
            (log(other, vec![RESERVE_PAUSED], vec![]), "other address"),
            (log(CONFIGURATOR, vec![B256::ZERO], vec![]), "other topic"),
            (log(CONFIGURATOR, vec![], vec![]), "anonymous"),
        ];
        for (l, why) in &cases {
            assert!(registry.decode(l).is_none(), "{why}");
        }
        // Monitored topic, but the asset topic is missing and the data is short.
        let bad = log(CONFIGURATOR, vec![RESERVE_PAUSED], vec![1, 2, 3]);
        assert!(registry.decode(&bad).unwrap().is_err());
        let short = log(CONFIGURATOR, vec![RESERVE_PAUSED, B256::ZERO], vec![0; 7]);
        assert!(registry.decode(&short).unwrap().is_err());
    }
}
