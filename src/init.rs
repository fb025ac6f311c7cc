//! `haltwatch init`: a config snippet for one contract, written from its
//! ABI. A preset is proposed when the ABI declares every event of one;
//! otherwise, and for events a preset leaves out, the generic halt patterns
//! are proposed as rules: `Paused`/`Unpaused`, `Pause`/`Unpause`,
//! `Stopped`/`Resumed`, `*Paused(…, bool)`, `*Frozen(…, bool)`, `Cage`,
//! `Shutdown`; a `paused()`, `isPaused()` or `is_killed()` view as a probe.
//! What cannot be decided from the ABI alone is left as a commented
//! question, never guessed.

use std::fmt::Write;
use std::path::Path;

use alloy::json_abi::{Event, JsonAbi, StateMutability};
use alloy::primitives::Address;

use crate::presets;

/// Events that halt (`true`) or resume (`false`) the whole contract.
const WHOLE: &[(&str, bool)] = &[
    ("Paused", true),
    ("Unpaused", false),
    ("Pause", true),
    ("Unpause", false),
    ("Stopped", true),
    ("Resumed", false),
    ("Cage", true),
    ("Shutdown", true),
];

/// Views whose answer says the contract is halted when true.
const VIEWS: &[&str] = &["paused", "isPaused", "is_killed"];

/// What `init` says about one contract.
pub struct Snippet {
    pub text: String,
    /// True when some halt pattern was recognised.
    pub recognised: bool,
}

/// The snippet for `contract` at `address` on `chain`, in protocol `protocol`.
pub fn snippet(
    protocol: &str,
    chain: &str,
    contract: &str,
    address: Address,
    abi_path: &Path,
    abi: &JsonAbi,
) -> Snippet {
    let events: Vec<&Event> = abi.events().collect();
    let signatures: Vec<String> = events
        .iter()
        .map(|e| e.signature())
        .chain(abi.functions().map(|f| f.signature()))
        .collect();
    // Presets whose every event and marking function the ABI declares;
    // the fullest first.
    let mut presets_found: Vec<(&str, Vec<String>)> = presets::NAMES
        .iter()
        .filter_map(|name| {
            let specs = presets::rules(name, None)?;
            let wanted: Vec<String> = specs
                .into_iter()
                .map(|s| s.event)
                .chain(presets::functions(name).iter().map(|f| f.to_string()))
                .collect();
            (!wanted.is_empty() && wanted.iter().all(|w| signatures.contains(w)))
                .then_some((*name, wanted))
        })
        .collect();
    presets_found.sort_by_key(|(_, w)| std::cmp::Reverse(w.len()));
    let preset = presets_found.first().cloned();
    let covered: Vec<String> = preset.as_ref().map(|p| p.1.clone()).unwrap_or_default();

    let mut rules = String::new();
    let mut questions = Vec::new();
    for e in events.iter().filter(|e| !covered.contains(&e.signature())) {
        rule_for(contract, e, &mut rules, &mut questions);
    }
    let mut probes = String::new();
    for f in abi.functions().filter(|f| {
        VIEWS.contains(&f.name.as_str())
            && f.inputs.is_empty()
            && matches!(
                f.state_mutability,
                StateMutability::View | StateMutability::Pure
            )
            && f.outputs.len() == 1
            && f.outputs[0].ty == "bool"
    }) {
        let _ = write!(
            probes,
            "\n  [[protocols.probes]]\n  contract = \"{contract}\"\n  function = \"{}\"\n  expected = false\n  every_blocks = 10\n",
            f.signature()
        );
    }
    let errors: Vec<String> = abi
        .errors()
        .filter(|e| e.name == "EnforcedPause" || e.name.ends_with("Paused"))
        .map(|e| e.signature())
        .collect();
    let recognised = preset.is_some() || !rules.is_empty() || !probes.is_empty();

    let mut text = String::new();
    let _ = writeln!(
        text,
        "# haltwatch init: a starting point for {}. Check it with `haltwatch check-config`.",
        abi_path.display()
    );
    if !recognised {
        let _ = writeln!(
            text,
            "# No halt pattern found: no pause events, no paused() view. haltwatch still\n\
             # watches this contract's failed calls (revert spikes) with the entry below."
        );
    }
    let _ = write!(
        text,
        "[[protocols]]\nname = \"{protocol}\"\nchain = \"{chain}\"\nresponders = []  # who is told: fill in\n\n  [[protocols.contracts]]\n  name = \"{contract}\"\n  address = \"{address}\"\n  abi = \"{}\"\n",
        abi_path.display()
    );
    if let Some((name, events)) = &preset {
        let _ = writeln!(
            text,
            "  preset = \"{name}\"  # recognised by {}",
            events.join(", ")
        );
        for line in presets::pairing(name) {
            let _ = writeln!(text, "  # {line}");
        }
        for (other, _) in presets_found.iter().skip(1) {
            let _ = writeln!(
                text,
                "  # it also declares every event of preset \"{other}\""
            );
        }
    }
    text.push_str(&rules);
    text.push_str(&probes);
    if !errors.is_empty() {
        let _ = writeln!(
            text,
            "\n# Failed calls reverting with {} are watched as they are (failed_tx):\n\
             # one the contract raised itself is cited as evidence of a halt.",
            errors.join(", ")
        );
    }
    for q in questions {
        let _ = writeln!(text, "\n{q}");
    }
    Snippet { text, recognised }
}

/// A rule for one event, if it matches a generic halt pattern; a question
/// where it nearly does.
fn rule_for(contract: &str, e: &Event, rules: &mut String, questions: &mut Vec<String>) {
    let sig = e.signature();
    if let Some((_, halts)) = WHOLE.iter().find(|(n, _)| *n == e.name) {
        let effect = if *halts { "halt" } else { "resume" };
        let _ = write!(
            rules,
            "\n  [[protocols.rules]]\n  contract = \"{contract}\"\n  event = \"{sig}\"\n  effect = \"{effect}\"\n"
        );
        return;
    }
    if !(e.name.ends_with("Paused") || e.name.ends_with("Frozen")) {
        return;
    }
    let flags: Vec<&str> = e
        .inputs
        .iter()
        .filter(|p| p.ty == "bool")
        .map(|p| p.name.as_str())
        .collect();
    let keys: Vec<&str> = e
        .inputs
        .iter()
        .filter(|p| p.ty != "bool" && !p.name.is_empty())
        .map(|p| p.name.as_str())
        .collect();
    match (flags.as_slice(), keys.len()) {
        ([flag], 0 | 1) if !flag.is_empty() => {
            let _ = write!(
                rules,
                "\n  [[protocols.rules]]\n  contract = \"{contract}\"\n  event = \"{sig}\"\n  effect = \"toggle\"\n  toggle_arg = \"{flag}\"\n"
            );
            if let Some(key) = keys.first() {
                let _ = writeln!(rules, "  scope_arg = \"{key}\"");
            }
        }
        _ => questions.push(format!(
            "# {sig} looks like a halt flag, but which argument halts, and which names\n\
             # the scope? Add a [[protocols.rules]] entry (effect = \"toggle\", toggle_arg,\n\
             # scope_arg) if it should count."
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abi(json: &str) -> JsonAbi {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_flag_event_with_two_keys_is_a_question_not_a_guess() {
        let a = abi(
            r#"[{"type":"event","name":"MarketPaused","anonymous":false,"inputs":[
                {"name":"market","type":"address","indexed":true},
                {"name":"action","type":"string","indexed":false},
                {"name":"paused","type":"bool","indexed":false}]}]"#,
        );
        let s = snippet("P", "c", "x", Address::ZERO, Path::new("x.json"), &a);
        assert!(
            !s.text.contains("\n  [[protocols.rules]]"),
            "no rule: {}",
            s.text
        );
        assert!(s.text.contains("which argument halts"), "{}", s.text);
        assert!(!s.recognised);
    }
}
