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
        let effect = match (raw.effect.as_str(), raw.toggle_arg, raw.halt_when) {
            ("halt", None, None) => EffectSpec::Halt,
            ("resume", None, None) => EffectSpec::Resume,
            ("flags", None, None) => EffectSpec::Flags,
            ("toggle", Some(arg), None | Some(true)) => EffectSpec::Toggle(arg),
            ("toggle", Some(arg), Some(false)) => EffectSpec::ToggleOff(arg),
            ("toggle", None, _) => {
                self.problem(
                    format!("{key}.toggle_arg"),
                    "effect = \"toggle\" needs toggle_arg: a bool or integer argument of the event",
                );
                return None;
            }
            ("halt" | "resume" | "flags", arg, when) => {
                let field = if arg.is_some() {
                    "toggle_arg"
                } else {
                    "halt_when"
                };
                debug_assert!(arg.is_some() || when.is_some());
                self.problem(
                    format!("{key}.{field}"),
                    format!("{field} is only used with effect = \"toggle\""),
                );
                return None;
            }
            (other, _, _) => {
                self.problem(
                    format!("{key}.effect"),
                    format!(
                        "expected \"halt\", \"resume\", \"toggle\" or \"flags\", found \"{other}\""
                    ),
                );
                return None;
            }
        };
        let args = raw.scope_arg.map(|a| match a {
            OneOrMany::One(a) => vec![a],
            OneOrMany::Many(a) => a,
        });
        let scope = match (args, raw.scope) {
            (Some(a), Some(prefix)) => ScopeSpec::Prefixed(prefix, a),
            (Some(a), None) => ScopeSpec::Args(a),
            (None, Some(s)) => ScopeSpec::Fixed(s),
            (None, None) => ScopeSpec::Whole,
        };
        let degraded_only = match raw.severity.as_deref() {
            None | Some("halted") => false,
            Some("degraded") => true,
            Some(other) => {
                self.problem(
                    format!("{key}.severity"),
                    format!("expected \"degraded\" or \"halted\", found \"{other}\""),
                );
                return None;
            }
        };
        let scopes_from = match raw.scopes_from {
            None => {
                if !raw.scopes_refresh_on.is_empty() || raw.scopes_refresh_blocks.is_some() {
                    self.problem(
                        format!("{key}.scopes_from"),
                        "scopes_refresh_on and scopes_refresh_blocks need scopes_from",
                    );
                    return None;
                }
                None
            }
            Some(text) => {
                let Some((contract, function)) = text.split_once('.') else {
                    self.problem(
                        format!("{key}.scopes_from"),
                        format!("expected `contract.function()`, found `{text}`"),
                    );
                    return None;
                };
                Some(ScopesFromSpec {
                    contract: contract.trim().to_string(),
                    function: function.trim().to_string(),
                    refresh_on: raw.scopes_refresh_on,
                    refresh_blocks: raw
                        .scopes_refresh_blocks
                        .unwrap_or(crate::presets::DEFAULT_SCOPES_REFRESH_BLOCKS),
                })
            }
        };
        let spec = RuleSpec {
            event: raw.event,
            effect,
            scope,
            // A list written here wins over one read from the chain.
            scopes_from: if raw.scopes.is_some() {
                None
            } else {
                scopes_from
            },
            scopes: raw.scopes,
            time_arg: raw.time_arg,
            degraded_only,
        };
        self.resolve(key, contracts, c, spec)
    }

    /// Resolves where a complete set is read from: the contract, a view
    /// returning `address[]`, and the rule contract's events that change it.
    fn scopes_from(
        &mut self,
        key: &str,
        contracts: &[ContractConfig],
        rule_contract: usize,
        spec: ScopesFromSpec,
    ) -> Option<ScopesFrom> {
        let fkey = format!("{key}.scopes_from");
        let c = self.contract_index(&fkey, &spec.contract, contracts)?;
        let wanted: String = spec
            .function
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let name = wanted.split('(').next().unwrap_or(&wanted);
        let function = contracts[c]
            .abi
            .functions
            .get(name)
            .and_then(|fs| {
                fs.iter()
                    .find(|f| f.signature() == wanted || !wanted.contains('('))
            })
            .cloned();
        let Some(function) = function else {
            self.problem(
                fkey,
                format!(
                    "no function `{wanted}` in ABI {}",
                    contracts[c].abi_path.display()
                ),
            );
            return None;
        };
        let returns_addresses = function.inputs.is_empty()
            && function.outputs.len() == 1
            && function.outputs[0].ty == "address[]";
        if !returns_addresses {
            self.problem(
                fkey,
                format!(
                    "`{}` must take no arguments and return address[]",
                    function.signature()
                ),
            );
            return None;
        }
        if spec.refresh_blocks == 0 {
            self.problem(
                format!("{key}.scopes_refresh_blocks"),
                "expected at least 1",
            );
            return None;
        }
        let mut refresh_on = Vec::new();
        for (i, event) in spec.refresh_on.iter().enumerate() {
            match find_event(&contracts[rule_contract].abi, event) {
                Ok(e) => refresh_on.push(e.selector()),
                Err(m) => {
                    self.problem(
                        format!("{key}.scopes_refresh_on[{i}]"),
                        format!("{m} in ABI {}", contracts[rule_contract].abi_path.display()),
                    );
                    return None;
                }
            }
        }
        Some(ScopesFrom {
            contract: c,
            function,
            refresh_on,
            refresh_blocks: spec.refresh_blocks,
        })
    }

    /// Resolves a rule spec against the contract's ABI, reporting under `key`.
    pub(super) fn resolve(
        &mut self,
        key: &str,
        contracts: &[ContractConfig],
        index: usize,
        spec: RuleSpec,
    ) -> Option<Rule> {
        let contract = &contracts[index];
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
            EffectSpec::Toggle(ref name) | EffectSpec::ToggleOff(ref name) => match arg(name) {
                Ok((pos, DynSolType::Bool | DynSolType::Uint(_) | DynSolType::Int(_))) => {
                    if matches!(spec.effect, EffectSpec::ToggleOff(_)) {
                        Effect::ToggleOff(pos)
                    } else {
                        Effect::Toggle(pos)
                    }
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
            ScopeSpec::Args(ref names) | ScopeSpec::Prefixed(_, ref names) => {
                let mut positions = Vec::new();
                let mut single_address = names.len() == 1;
                for name in names {
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
                match spec.scope {
                    ScopeSpec::Prefixed(prefix, _) => {
                        (RuleScope::Prefixed(prefix, positions), false)
                    }
                    _ => (RuleScope::Args(positions), single_address),
                }
            }
        };
        // A set read from the chain lists addresses: the scope's first
        // argument must be one.
        let scopes_from = match spec.scopes_from {
            None => None,
            Some(from) => {
                let first_is_address = match &scope {
                    RuleScope::Args(p) => {
                        p.first().is_some_and(|&i| event.inputs[i].ty == "address")
                    }
                    _ => false,
                };
                if !first_is_address {
                    self.problem(
                        format!("{key}.scopes_from"),
                        "scopes_from lists addresses; the rule's scope_arg must start with an address argument",
                    );
                    return None;
                }
                Some(self.scopes_from(key, contracts, index, from)?)
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
            scopes_from,
            time_arg,
            degraded_only: spec.degraded_only,
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
