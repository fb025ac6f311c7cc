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
    /// The same, inverted: false (zero) halts, true resumes (`ReserveActive`).
    ToggleOff(String),
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
    /// A fixed key, `:`, then the values of these arguments (`frozen:<asset>`).
    Prefixed(String, Vec<String>),
}

/// Where a rule's complete scope set is read from: a view function
/// returning `address[]` of a contract of the same protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopesFromSpec {
    /// The contract, by name.
    pub contract: String,
    /// The function's signature: `getReservesList()`.
    pub function: String,
    /// Events of the rule's contract that change the set (read it again).
    pub refresh_on: Vec<String>,
    /// Read it again every this many blocks.
    pub refresh_blocks: u64,
}

/// `scopes_refresh_blocks` unless set.
pub const DEFAULT_SCOPES_REFRESH_BLOCKS: u64 = 1000;

/// A rule as written (explicit or from a preset), before resolution.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub event: String,
    pub effect: EffectSpec,
    pub scope: ScopeSpec,
    pub scopes: Option<Vec<String>>,
    pub scopes_from: Option<ScopesFromSpec>,
    pub time_arg: Option<String>,
    /// The rule's halts make the protocol at most degraded.
    pub degraded_only: bool,
}

/// One rule of a preset, in the same terms as an explicit rule.
struct PresetRule {
    event: &'static str,
    effect: EffectSpec,
    scope: ScopeSpec,
    time_arg: Option<&'static str>,
    degraded_only: bool,
    /// The complete set: (function of the sibling contract with `set_from`
    /// preset, events of this contract that change it).
    set: Option<(&'static str, &'static [&'static str])>,
}

/// A revert reason that means "halted here" (Aave's `"29"`): a failed call
/// with it is cited on the open incident of its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaltRevert {
    /// The `Error(string)` text, or a custom error's name.
    pub reason: String,
    /// Spelled out in evidence: `RESERVE_PAUSED (29)`.
    pub meaning: String,
    /// The cited scope's key is this prefix and an address argument of the call.
    pub scope_prefix: String,
}

impl HaltRevert {
    /// The revert data it starts with: the selector of the ABI's custom
    /// error of that name, else the whole `Error(string)` encoding of the text.
    pub fn revert_data(&self, abi: &alloy::json_abi::JsonAbi) -> alloy::primitives::Bytes {
        use alloy::sol_types::SolError;
        match abi.errors.get(&self.reason).and_then(|e| e.first()) {
            Some(error) => error.selector().to_vec().into(),
            None => alloy::sol_types::Revert::from(self.reason.clone())
                .abi_encode()
                .into(),
        }
    }

    /// `RESERVE_PAUSED (29)`.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.meaning, self.reason)
    }
}

/// Names of every preset, for error messages.
pub const NAMES: &[&str] = &[
    "oz-pausable",
    "fiat-token",
    "aave-v3-configurator",
    "aave-v3-pool",
    "compound-comptroller",
    "comet",
    "lido",
    "maker-end",
    "chainlink-sequencer-feed",
];

/// Function signatures that mark a preset's contract besides its events
/// (a preset with no events of its own is known by these alone).
pub fn functions(name: &str) -> &'static [&'static str] {
    match name {
        "aave-v3-pool" => &[
            "getReservesList()",
            "supply(address,uint256,address,uint16)",
            "withdraw(address,uint256,address)",
        ],
        "compound-comptroller" => &["getAllMarkets()"],
        _ => &[],
    }
}

/// What the protocol should also list for a preset's complete sets to be
/// read from the chain, as comment lines for `init`.
pub fn pairing(name: &str) -> &'static [&'static str] {
    match name {
        "aave-v3-configurator" => &[
            "list the market's Pool in this protocol too, with preset = \"aave-v3-pool\":",
            "its getReservesList() is the complete set, so a pool pause is halted",
        ],
        "aave-v3-pool" => &[
            "list the market's PoolConfigurator in this protocol too, with",
            "preset = \"aave-v3-configurator\": its events are the pauses and freezes;",
            "this contract gives the reserve list, and its reverts \"29\" (RESERVE_PAUSED)",
            "and \"28\" (RESERVE_FROZEN) are cited on the reserve's incident",
        ],
        _ => &[],
    }
}

/// Which sibling preset a preset's complete sets are read from, if any:
/// the Aave configurator reads the reserve list of the protocol's
/// `aave-v3-pool` contract; the Compound comptroller reads its own markets.
pub fn set_source(name: &str) -> Option<&'static str> {
    match name {
        "aave-v3-configurator" => Some("aave-v3-pool"),
        "compound-comptroller" => Some("compound-comptroller"),
        _ => None,
    }
}

/// The reverts that mean "halted here" for preset `name`.
pub fn halt_reverts(name: &str) -> Vec<HaltRevert> {
    let spec = |reason: &str, meaning: &str, scope_prefix: &str| HaltRevert {
        reason: reason.into(),
        meaning: meaning.into(),
        scope_prefix: scope_prefix.into(),
    };
    match name {
        // Aave's Errors library: supply, borrow and the rest into a paused
        // or frozen reserve revert with these codes.
        "aave-v3-pool" => vec![
            spec("29", "RESERVE_PAUSED", ""),
            spec("28", "RESERVE_FROZEN", "frozen:"),
        ],
        _ => Vec::new(),
    }
}

/// The rule specs of preset `name`, or `None` if there is no such preset.
/// `set_from` names the contract of the protocol that [`set_source`]
/// points at, when the protocol lists one: the complete sets are read from it.
pub fn rules(name: &str, set_from: Option<&str>) -> Option<Vec<RuleSpec>> {
    use EffectSpec::{Flags, Halt, Resume, Toggle, ToggleOff};
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
        // Aave v3 PoolConfigurator: one scope per reserve; the pool's
        // reserve list is the complete set. A frozen reserve still repays
        // and withdraws: degraded at most. An inactive reserve is halted.
        "aave-v3-configurator" => {
            const LISTING: &[&str] = &["ReserveInitialized", "ReserveDropped"];
            vec![
                PresetRule {
                    set: Some(("getReservesList()", LISTING)),
                    ..rule(
                        "ReservePaused(address,bool)",
                        toggle("paused"),
                        args(&["asset"]),
                    )
                },
                PresetRule {
                    degraded_only: true,
                    ..rule(
                        "ReserveFrozen(address,bool)",
                        toggle("frozen"),
                        ScopeSpec::Prefixed("frozen".into(), vec!["asset".into()]),
                    )
                },
                rule(
                    "ReserveActive(address,bool)",
                    ToggleOff("active".to_string()),
                    ScopeSpec::Prefixed("inactive".into(), vec!["asset".into()]),
                ),
            ]
        }
        // Aave v3 Pool: no halt events of its own; its reserve list and
        // its pause reverts serve the configurator's rules.
        "aave-v3-pool" => vec![],
        // Compound v2 Comptroller: global actions and per-market actions;
        // its markets are the complete set of each per-market action.
        "compound-comptroller" => {
            const LISTING: &[&str] = &["MarketListed"];
            vec![
                rule(
                    "ActionPaused(string,bool)",
                    toggle("pauseState"),
                    args(&["action"]),
                ),
                PresetRule {
                    set: Some(("getAllMarkets()", LISTING)),
                    ..rule(
                        "ActionPaused(address,string,bool)",
                        toggle("pauseState"),
                        args(&["cToken", "action"]),
                    )
                },
            ]
        }
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
                scopes_from: r
                    .set
                    .zip(set_from)
                    .map(|((function, refresh_on), contract)| ScopesFromSpec {
                        contract: contract.to_string(),
                        function: function.to_string(),
                        refresh_on: refresh_on.iter().map(|e| e.to_string()).collect(),
                        refresh_blocks: DEFAULT_SCOPES_REFRESH_BLOCKS,
                    }),
                time_arg: r.time_arg.map(str::to_string),
                degraded_only: r.degraded_only,
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
        degraded_only: false,
        set: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_preset_exists() {
        for name in NAMES {
            let has_rules = rules(name, None).is_some_and(|r| !r.is_empty());
            let has_reverts = !halt_reverts(name).is_empty();
            assert!(has_rules || has_reverts, "{name}");
        }
        assert!(rules("no-such-preset", None).is_none());
    }
}
