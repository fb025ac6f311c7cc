//! `[[protocols]]`: contracts and their ABIs, probes, responders.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use alloy::json_abi::JsonAbi;

use super::*;
use crate::presets;

impl Validator {
    pub(super) fn protocols(
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
            for (c, preset) in &presets {
                // The contract a preset reads its complete sets from.
                let set_from = presets::set_source(preset).and_then(|wanted| {
                    presets
                        .iter()
                        .find(|(_, p)| p == wanted)
                        .map(|(i, _)| contracts[*i].name.as_str())
                });
                let Some(specs) = presets::rules(preset, set_from) else {
                    continue; // reported by contracts()
                };
                let pkey = format!("{key}.contracts[{c}].preset");
                for spec in specs {
                    if let Some(rule) = self.resolve(&pkey, &contracts, *c, spec) {
                        rules.push(rule);
                    }
                }
            }
            let from_presets = rules.len();
            for (j, item) in raw.rules.into_iter().enumerate() {
                let rkey = format!("{key}.rules[{j}]");
                if let Some(rule) = self.rule(&rkey, item, &contracts) {
                    rules.push(rule);
                }
            }
            // A `scopes` list written for a preset's event wins over the
            // set the preset reads from the chain.
            let (preset_rules, written) = rules.split_at_mut(from_presets);
            for r in preset_rules.iter_mut() {
                if written.iter().any(|w| {
                    w.contract == r.contract && w.selector == r.selector && w.complete_set.is_some()
                }) {
                    r.scopes_from = None;
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

    pub(super) fn probe(
        &mut self,
        key: &str,
        item: toml::Value,
        contracts: &[ContractConfig],
    ) -> Option<ProbeConfig> {
        let raw = self.element::<RawProbe>(key, item)?;
        let c = self.contract_index(key, &raw.contract, contracts)?;
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
    pub(super) fn contracts(
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
                && presets::rules(p, None).is_none()
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
                if let Some(p) = raw.preset.clone() {
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
                let mut halt_reverts = raw
                    .preset
                    .as_deref()
                    .map(presets::halt_reverts)
                    .unwrap_or_default();
                for (k, h) in raw.halt_reverts.into_iter().enumerate() {
                    if h.reason.is_empty() || h.meaning.is_empty() {
                        self.problem(
                            format!("{ckey}.halt_reverts[{k}]"),
                            "expected a non-empty reason and meaning",
                        );
                        continue;
                    }
                    halt_reverts.push(HaltRevert {
                        reason: h.reason,
                        meaning: h.meaning,
                        scope_prefix: h.scope_prefix,
                    });
                }
                contracts.push(ContractConfig {
                    name: raw.name,
                    address,
                    abi_path,
                    abi,
                    revert_spike,
                    halt_reverts,
                });
            }
        }
        (contracts, presets_of)
    }

    /// Reads an ABI file once per path; a broken file is one problem, however many contracts use it.
    pub(super) fn abi(&mut self, key: &str, path: &Path) -> Option<Arc<JsonAbi>> {
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
}
