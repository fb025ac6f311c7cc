//! `[[protocols.rules]]` and presets resolved against the ABIs: argument
//! names to positions, complete scope sets.

use std::collections::BTreeSet;

use alloy::dyn_abi::DynSolType;
use alloy::json_abi::{Event, JsonAbi};

use super::*;

impl Validator {
    pub(super) fn rule(
        &mut self,
        key: &str,
        item: toml::Value,
        contracts: &[ContractConfig],
    ) -> Option<Rule> {
        let raw = self.element::<RawRule>(key, item)?;
        let c = self.contract_index(key, &raw.contract, contracts)?;
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
    pub(super) fn resolve(
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
