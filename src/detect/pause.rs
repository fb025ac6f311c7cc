//! Halt and resume events: a decoded log of a configured rule becomes one
//! signal per protocol, with the scopes it halts or resumes.

use alloy::dyn_abi::DynSolValue;

use crate::config::{Config, Effect, Rule, RuleScope};
use crate::decode::{DecodedLog, format_value};
use crate::model::{Evidence, EvidenceKind, Scope, ScopeChange, Signal, log_hash, sanitize_text};

/// Scope keys taken from event arguments are capped to this many characters.
const SCOPE_KEY_MAX_CHARS: usize = 80;

/// Why a decoded log could not become a signal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    #[error("log has no {0} (a pending log?)")]
    Missing(&'static str),
}

/// The signals one decoded log produces: one per protocol that has rules for it.
pub fn signals(
    config: &Config,
    chain_id: u64,
    decoded: &DecodedLog<'_>,
) -> Result<Vec<Signal>, DetectError> {
    let mut out: Vec<Signal> = Vec::new();
    for r in &decoded.entry.rules {
        let protocol = &config.protocols[r.protocol];
        let rule = &protocol.rules[r.rule];
        let contract = &protocol.contracts[rule.contract];
        let changes = changes(rule, &contract.name, &decoded.values);
        // A feed's own time (e.g. updatedAt) dates the halt, not the block.
        let at = rule.time_arg.and_then(|i| match decoded.values.get(i) {
            Some(DynSolValue::Uint(t, _)) => u64::try_from(*t).ok(),
            _ => None,
        });
        match out.iter_mut().find(|s| s.protocol == r.protocol) {
            Some(signal) => {
                signal.evidence.changes.extend(changes);
                signal.evidence.at = signal.evidence.at.or(at);
            }
            None => {
                let mut evidence = evidence(chain_id, (&contract.name, contract.address), decoded)?;
                evidence.changes = changes;
                evidence.at = at;
                out.push(Signal {
                    protocol: r.protocol,
                    evidence,
                });
            }
        }
    }
    Ok(out)
}

/// A decoded log of `contract` as evidence that changes no scope yet.
pub fn evidence(
    chain_id: u64,
    (name, address): (&str, alloy::primitives::Address),
    decoded: &DecodedLog<'_>,
) -> Result<Evidence, DetectError> {
    let log = decoded.log;
    Ok(Evidence {
        kind: EvidenceKind::Log,
        at: None,
        chain_id,
        contract: address,
        contract_name: name.to_string(),
        tx_hash: log
            .transaction_hash
            .ok_or(DetectError::Missing("tx hash"))?,
        block_number: log
            .block_number
            .ok_or(DetectError::Missing("block number"))?,
        block_hash: log.block_hash.ok_or(DetectError::Missing("block hash"))?,
        block_timestamp: log
            .block_timestamp
            .ok_or(DetectError::Missing("block timestamp"))?,
        log_index: log.log_index.ok_or(DetectError::Missing("log index"))?,
        event: decoded.entry.signature.clone(),
        args: decoded.args(),
        changes: Vec::new(),
        log_hash: log_hash(&log.inner),
    })
}

/// What one rule says about the scopes of one decoded log.
pub fn changes(rule: &Rule, contract: &str, values: &[DynSolValue]) -> Vec<ScopeChange> {
    let joined = |positions: &[usize]| {
        positions
            .iter()
            .filter_map(|&i| values.get(i))
            .map(|v| sanitize_text(&format_value(v), SCOPE_KEY_MAX_CHARS))
            .collect::<Vec<_>>()
            .join(":")
    };
    let capped = |s: Scope| Scope {
        degraded_only: rule.degraded_only,
        ..s
    };
    let scope = || {
        capped(match &rule.scope {
            RuleScope::Whole => Scope::whole(contract),
            RuleScope::Fixed(key) => Scope::keyed(contract, key.clone()),
            RuleScope::Args(positions) => Scope::keyed(contract, joined(positions)),
            RuleScope::Prefixed(prefix, positions) => {
                Scope::keyed(contract, format!("{prefix}:{}", joined(positions)))
            }
        })
    };
    match &rule.effect {
        Effect::Halt => vec![ScopeChange {
            scope: scope(),
            halted: true,
        }],
        Effect::Resume => vec![ScopeChange {
            scope: scope(),
            halted: false,
        }],
        Effect::Toggle(i) => vec![ScopeChange {
            scope: scope(),
            halted: values.get(*i).is_some_and(is_truthy),
        }],
        Effect::ToggleOff(i) => vec![ScopeChange {
            scope: scope(),
            halted: !values.get(*i).is_some_and(is_truthy),
        }],
        Effect::Flags(flags) => flags
            .iter()
            .map(|(i, name)| ScopeChange {
                scope: capped(Scope::keyed(contract, name.clone())),
                halted: values.get(*i).is_some_and(is_truthy),
            })
            .collect(),
    }
}

/// `true` for a true bool or a non-zero integer.
fn is_truthy(v: &DynSolValue) -> bool {
    match v {
        DynSolValue::Bool(b) => *b,
        DynSolValue::Uint(u, _) => !u.is_zero(),
        DynSolValue::Int(i, _) => !i.is_zero(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::json_abi::Event;
    use alloy::primitives::{I256, U256};

    fn rule(effect: Effect, scope: RuleScope) -> Rule {
        let event = Event::parse("event E(address a, bool b, int8 c)").unwrap();
        Rule {
            contract: 0,
            selector: event.selector(),
            event,
            effect,
            scope,
            complete_set: None,
            scopes_from: None,
            time_arg: None,
            degraded_only: false,
        }
    }

    #[test]
    fn effects_and_scopes() {
        let asset = alloy::primitives::Address::repeat_byte(0x11);
        let values = vec![
            DynSolValue::Address(asset),
            DynSolValue::Bool(false),
            DynSolValue::Int(I256::try_from(-1).unwrap(), 8),
        ];
        let key = asset.to_checksum(None);
        let cases = vec![
            (
                rule(Effect::Halt, RuleScope::Whole),
                vec![("c", None, true)],
            ),
            (
                rule(Effect::Resume, RuleScope::Whole),
                vec![("c", None, false)],
            ),
            (
                rule(Effect::Toggle(1), RuleScope::Args(vec![0])),
                vec![("c", Some(key.clone()), false)],
            ),
            (
                rule(Effect::Toggle(2), RuleScope::Fixed("x".into())),
                vec![("c", Some("x".to_string()), true)],
            ),
            (
                rule(Effect::Halt, RuleScope::Args(vec![0, 1])),
                vec![("c", Some(format!("{key}:false")), true)],
            ),
            (
                rule(
                    Effect::Flags(vec![(1, "b".into()), (2, "c".into())]),
                    RuleScope::Whole,
                ),
                vec![
                    ("c", Some("b".into()), false),
                    ("c", Some("c".into()), true),
                ],
            ),
        ];
        for (rule, want) in cases {
            let got = changes(&rule, "c", &values);
            let want: Vec<ScopeChange> = want
                .into_iter()
                .map(|(c, k, halted)| ScopeChange {
                    scope: Scope {
                        contract: c.into(),
                        key: k,
                        degraded_only: false,
                    },
                    halted,
                })
                .collect();
            assert_eq!(got, want, "{:?}", rule.effect);
        }
    }

    #[test]
    fn integers_toggle_on_non_zero() {
        assert!(is_truthy(&DynSolValue::Uint(U256::from(2), 256)));
        assert!(!is_truthy(&DynSolValue::Uint(U256::ZERO, 256)));
        assert!(!is_truthy(&DynSolValue::String("true".into())));
    }

    #[test]
    fn hostile_scope_keys_are_sanitised() {
        let r = rule(Effect::Halt, RuleScope::Args(vec![0]));
        let values = vec![DynSolValue::String("Mint\r\nBcc: x".into())];
        let got = changes(&r, "c", &values);
        assert_eq!(got[0].scope.key.as_deref(), Some("Mint\\u{d}\\u{a}Bcc: x"));
    }
}
