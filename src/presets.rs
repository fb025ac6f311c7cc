//! Known halt/resume rules of real contract families. A preset is a list of
//! rule specs, resolved against the contract's ABI exactly like explicit
//! `[[protocols.rules]]`, so presets have no power that rules lack.

// What a rule says, as written in a config or a preset; the config
// resolves it against the contract's ABI ([`crate::config::Rule`]).

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

/// One rule of a preset, in the same terms as an explicit rule.
struct PresetRule {
    event: &'static str,
    effect: EffectSpec,
    scope: ScopeSpec,
    time_arg: Option<&'static str>,
}

/// Names of every preset, for error messages.
pub const NAMES: &[&str] = &[
    "oz-pausable",
    "fiat-token",
    "aave-v3-configurator",
    "compound-comptroller",
    "comet",
    "lido",
    "maker-end",
    "chainlink-sequencer-feed",
];

/// The rule specs of preset `name`, or `None` if there is no such preset.
pub fn rules(name: &str) -> Option<Vec<RuleSpec>> {
    use EffectSpec::{Flags, Halt, Resume, Toggle};
    let whole = || ScopeSpec::Whole;
    let args = |names: &[&str]| ScopeSpec::Args(names.iter().map(|s| s.to_string()).collect());
    let toggle = |arg: &str| Toggle(arg.to_string());
    let list: Vec<PresetRule> = match name {
        // OpenZeppelin Pausable (4.x and 5.x).
        "oz-pausable" => vec![
            rule("Paused(address)", Halt, whole()),
            rule("Unpaused(address)", Resume, whole()),
        ],
        // Circle FiatToken (USDC, EURC).
        "fiat-token" => vec![
            rule("Pause()", Halt, whole()),
            rule("Unpause()", Resume, whole()),
        ],
        // Aave v3 PoolConfigurator: one scope per reserve.
        "aave-v3-configurator" => vec![rule(
            "ReservePaused(address,bool)",
            toggle("paused"),
            args(&["asset"]),
        )],
        // Compound v2 Comptroller: global actions and per-market actions.
        "compound-comptroller" => vec![
            rule(
                "ActionPaused(string,bool)",
                toggle("pauseState"),
                args(&["action"]),
            ),
            rule(
                "ActionPaused(address,string,bool)",
                toggle("pauseState"),
                args(&["cToken", "action"]),
            ),
        ],
        // Compound v3 Comet: every flag of PauseAction is its own scope.
        "comet" => vec![rule(
            "PauseAction(bool,bool,bool,bool,bool)",
            Flags,
            ScopeSpec::Whole,
        )],
        // Lido stETH: the whole protocol, and staking alone.
        "lido" => vec![
            rule("Stopped()", Halt, whole()),
            rule("Resumed()", Resume, whole()),
            rule("StakingPaused()", Halt, ScopeSpec::Fixed("staking".into())),
            rule(
                "StakingResumed()",
                Resume,
                ScopeSpec::Fixed("staking".into()),
            ),
        ],
        // Maker End: global settlement (permanent) and per-ilk cages.
        "maker-end" => vec![
            rule("Cage()", Halt, whole()),
            rule("Cage(bytes32)", Halt, args(&["ilk"])),
        ],
        // Chainlink L2 sequencer uptime feed: current = 1 means down; the
        // halt's time is the feed's updatedAt, not the L2 block time.
        "chainlink-sequencer-feed" => vec![PresetRule {
            time_arg: Some("updatedAt"),
            ..rule(
                "AnswerUpdated(int256,uint256,uint256)",
                toggle("current"),
                whole(),
            )
        }],
        _ => return None,
    };
    Some(
        list.into_iter()
            .map(|r| RuleSpec {
                event: r.event.to_string(),
                effect: r.effect,
                scope: r.scope,
                scopes: None,
                time_arg: r.time_arg.map(str::to_string),
            })
            .collect(),
    )
}

fn rule(event: &'static str, effect: EffectSpec, scope: ScopeSpec) -> PresetRule {
    PresetRule {
        event,
        effect,
        scope,
        time_arg: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_preset_exists() {
        for name in NAMES {
            assert!(rules(name).is_some_and(|r| !r.is_empty()), "{name}");
        }
        assert!(rules("no-such-preset").is_none());
    }
}
