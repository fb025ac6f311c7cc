//! Pause events on a real anvil chain become incidents in a real SQLite history.

mod common;

use alloy::primitives::{Address, B256, U256, address};
use alloy::providers::Provider;
use alloy::sol;
use alloy::sol_types::{SolCall, SolEvent};
use common::*;
use haltwatch::demo::selector;
use haltwatch::model::ProtocolState;
use haltwatch::store::IncidentState;

sol! {
    function setGlobalPaused(string action, bool state);
    function setMarketPaused(address cToken, string action, bool state);
    function _supportMarket(address cToken);
    function pause(bool supply, bool transfer, bool withdraw, bool absorb, bool buy);
    function cageIlk(bytes32 ilk);
    function emitRaw(bytes32[] topics, bytes data);
    event Paused(address account);
}

const WETH: Address = address!("0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2");
const USDC: Address = address!("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48");
const WBTC: Address = address!("0x2260FAC5E5542a773Aa44fBCfeDf7C193bc2C599");

#[tokio::test]
async fn pause_opens_an_incident_and_unpause_resolves_it_with_the_exact_duration() {
    let VaultChain {
        chain,
        vault,
        path,
        node: _node,
        dir: _dir,
    } = vault_chain(false, "").await;
    let spoofer = chain.deploy(&bin("DemoPausable")).await.unwrap();
    let running = start(&path).await;

    let t0 = 2_000_000_000;
    next_block_time(&chain, t0).await;
    let paused = chain.call(vault, selector("pause()")).await.unwrap();
    assert!(paused.status());
    wait_processed(&running.store, paused.block_number.unwrap()).await;

    // The same event from an address nobody configured changes nothing.
    let spoofed = chain.call(spoofer, selector("pause()")).await.unwrap();
    assert!(spoofed.status());
    wait_processed(&running.store, spoofed.block_number.unwrap()).await;

    let open = incidents(&running.store).await;
    assert_eq!(open.len(), 1, "one incident: the spoofed Paused is ignored");
    let i = &open[0];
    assert_eq!(i.state, IncidentState::Open);
    assert_eq!(i.severity, ProtocolState::Halted);
    assert_eq!(i.started_at, t0);
    assert_eq!(i.start_block, paused.block_number.unwrap());
    assert_eq!(i.scopes, vec!["vault".to_string()]);
    assert_eq!(i.evidence.len(), 1);
    let e = &i.evidence[0];
    assert_eq!(e.contract, vault);
    assert_eq!(e.tx_hash, paused.transaction_hash);
    assert_eq!(e.block_hash, paused.block_hash.unwrap());
    assert_eq!(e.log_index, 0);
    assert_eq!(e.event, "Paused(address)");
    assert_eq!(e.args[0].name, "account");
    assert_eq!(e.args[0].value, chain.from.to_checksum(None));

    next_block_time(&chain, t0 + 3600).await;
    let unpaused = chain.call(vault, selector("unpause()")).await.unwrap();
    wait_processed(&running.store, unpaused.block_number.unwrap()).await;
    let done = incidents(&running.store).await;
    assert_eq!(done.len(), 1);
    let i = &done[0];
    assert_eq!(i.state, IncidentState::Resolved);
    assert_eq!(i.ended_at, Some(t0 + 3600));
    assert_eq!(i.duration_seconds, Some(3600));
    assert_eq!(i.end_block, unpaused.block_number);
    let kinds: Vec<_> = i.transitions.iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(kinds, ["opened", "resolved"]);
    running.stop().await;
}

/// A catch-up reads far ranges of 2,000 blocks (from block 0 here: 0–1999,
/// 2000–3999, …) and reuses a head it read moments before; incidents whose
/// pause and unpause sit on both sides of a range edge must come out whole.
#[tokio::test]
async fn a_catch_up_over_several_ranges_finds_every_incident_across_range_edges() {
    let VaultChain {
        chain,
        vault,
        path,
        node: _node,
        dir: _dir,
    } = vault_chain(false, "").await;
    let mine_to = |block: u64| {
        let chain = &chain;
        async move {
            let now = chain.provider.get_block_number().await.unwrap();
            mine_blocks(chain, block - now).await;
        }
    };
    let mut expected = Vec::new();
    for edge in [2_000, 4_000] {
        mine_to(edge - 2).await;
        let paused = chain.call(vault, selector("pause()")).await.unwrap();
        let unpaused = chain.call(vault, selector("unpause()")).await.unwrap();
        assert_eq!(
            (paused.block_number, unpaused.block_number),
            (Some(edge - 1), Some(edge))
        );
        expected.push((edge - 1, Some(edge)));
    }
    mine_to(4_100).await;

    let running = start(&path).await;
    wait_processed(&running.store, 4_100).await;
    let found: Vec<(u64, Option<u64>)> = incidents(&running.store)
        .await
        .iter()
        .map(|i| {
            assert_eq!(i.state, IncidentState::Resolved);
            let kinds: Vec<_> = i.transitions.iter().map(|t| t.kind.as_str()).collect();
            assert_eq!(kinds, ["opened", "resolved"]);
            (i.start_block, i.end_block)
        })
        .collect();
    assert_eq!(found, expected);
    running.stop().await;
}

#[tokio::test]
async fn every_preset_family_classifies_its_own_events() {
    let node = anvil(0);
    let chain = chain(&node).await;
    let fiat = chain.deploy(&bin("FiatTokenMock")).await.unwrap();
    let lido = chain.deploy(&bin("LidoMock")).await.unwrap();
    let comet = chain.deploy(&bin("CometMock")).await.unwrap();
    let comptroller = chain.deploy(&bin("ComptrollerMock")).await.unwrap();
    let end = chain.deploy(&bin("EndMock")).await.unwrap();
    let protocols = [
        protocol("USDC", "token", fiat, "fiat-token.json", "fiat-token"),
        protocol("Lido", "steth", lido, "lido.json", "lido"),
        protocol("Comet", "comet", comet, "comet.json", "comet"),
        protocol(
            "Compound",
            "comptroller",
            comptroller,
            "compound-comptroller.json",
            "compound-comptroller",
        ),
        protocol("Maker", "end", end, "maker-end.json", "maker-end"),
    ]
    .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config_text(&node.endpoint(), &protocols));
    let running = start(&path).await;

    let c_token = address!("0x39AA39c021dfbaE8faC545936693aC917d5E7563");
    let calls: Vec<(Address, Vec<u8>)> = vec![
        // USDC emits Pause() twice: one incident, two pieces of evidence.
        (fiat, selector("pause()")),
        (fiat, selector("pause()")),
        (fiat, selector("unpause()")),
        // Lido: staking alone is degraded; stop() halts and escalates.
        (lido, selector("pauseStaking()")),
        (lido, selector("stop()")),
        (lido, selector("resume()")),
        // Comet: two flags degraded, then all five halted.
        (
            comet,
            pauseCall {
                supply: true,
                transfer: false,
                withdraw: true,
                absorb: false,
                buy: false,
            }
            .abi_encode(),
        ),
        (
            comet,
            pauseCall {
                supply: true,
                transfer: true,
                withdraw: true,
                absorb: true,
                buy: true,
            }
            .abi_encode(),
        ),
        (
            comet,
            pauseCall {
                supply: false,
                transfer: false,
                withdraw: false,
                absorb: false,
                buy: false,
            }
            .abi_encode(),
        ),
        // Compound: a global action and a market action, by overload.
        (
            comptroller,
            setGlobalPausedCall {
                action: "Transfer".into(),
                state: true,
            }
            .abi_encode(),
        ),
        (
            comptroller,
            setMarketPausedCall {
                cToken: c_token,
                action: "Mint".into(),
                state: true,
            }
            .abi_encode(),
        ),
        (
            comptroller,
            setGlobalPausedCall {
                action: "Transfer".into(),
                state: false,
            }
            .abi_encode(),
        ),
        (
            comptroller,
            setMarketPausedCall {
                cToken: c_token,
                action: "Mint".into(),
                state: false,
            }
            .abi_encode(),
        ),
        // Maker: one ilk caged is degraded; Cage() is global settlement.
        (
            end,
            cageIlkCall {
                ilk: B256::right_padding_from(b"ETH-A"),
            }
            .abi_encode(),
        ),
        (end, selector("cage()")),
    ];
    let mut last = 0;
    for (to, data) in calls {
        let r = chain.call(to, data).await.unwrap();
        assert!(r.status());
        last = r.block_number.unwrap();
    }
    wait_processed(&running.store, last).await;
    let list = incidents(&running.store).await;
    let of = |p: &str| {
        list.iter()
            .find(|i| i.protocol == p)
            .unwrap_or_else(|| panic!("no {p} incident"))
    };
    let path_of = |p: &str| -> Vec<(&str, ProtocolState)> {
        of(p)
            .transitions
            .iter()
            .map(|t| (t.kind.as_str(), t.to))
            .collect()
    };
    use ProtocolState::*;
    assert_eq!(list.len(), 5, "one incident per protocol: {list:#?}");

    assert_eq!(
        path_of("USDC"),
        [("opened", Halted), ("resolved", Operational)]
    );
    assert_eq!(
        of("USDC").evidence.len(),
        3,
        "both Pause() logs and the Unpause()"
    );

    assert_eq!(
        path_of("Lido"),
        [
            ("opened", Degraded),
            ("escalated", Halted),
            ("resolved", Operational)
        ]
    );
    assert_eq!(of("Lido").scopes, ["steth", "steth:staking"]);

    assert_eq!(
        path_of("Comet"),
        [
            ("opened", Degraded),
            ("escalated", Halted),
            ("resolved", Operational)
        ]
    );
    assert_eq!(of("Comet").scopes.len(), 5);

    assert_eq!(
        path_of("Compound"),
        [("opened", Degraded), ("resolved", Operational)]
    );
    assert_eq!(
        of("Compound").scopes,
        [
            format!("comptroller:{c_token}:Mint"),
            "comptroller:Transfer".to_string()
        ]
    );

    assert_eq!(
        path_of("Maker"),
        [("opened", Degraded), ("escalated", Halted)]
    );
    assert_eq!(of("Maker").state, IncidentState::Open);
    let ilk = format!("end:{}", B256::right_padding_from(b"ETH-A"));
    assert!(
        of("Maker").scopes.contains(&ilk),
        "{:?}",
        of("Maker").scopes
    );
    running.stop().await;
}

#[tokio::test]
async fn a_log_that_does_not_decode_is_skipped_and_the_chain_is_still_followed() {
    let node = anvil(0);
    let chain = chain(&node).await;
    let emitter = chain.deploy(&bin("RawEmitter")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config_text(
            &node.endpoint(),
            &protocol(
                "Weird",
                "emitter",
                emitter,
                "oz-pausable.json",
                "oz-pausable",
            ),
        ),
    );
    let running = start(&path).await;

    // `Paused(address)`'s topic with 3 bytes of data, then with an extra topic.
    let topic = Paused::SIGNATURE_HASH;
    for (topics, data) in [
        (vec![topic], vec![1u8, 2, 3]),
        (
            vec![topic, B256::ZERO],
            U256::from(1).to_be_bytes::<32>().to_vec(),
        ),
    ] {
        let r = chain
            .call(
                emitter,
                emitRawCall {
                    topics,
                    data: data.into(),
                }
                .abi_encode(),
            )
            .await
            .unwrap();
        assert!(r.status());
        wait_processed(&running.store, r.block_number.unwrap()).await;
    }
    assert!(incidents(&running.store).await.is_empty());

    // A well-formed Paused from the same address still opens an incident.
    let good = Paused {
        account: chain.from,
    }
    .encode_data();
    let r = chain
        .call(
            emitter,
            emitRawCall {
                topics: vec![topic],
                data: good.into(),
            }
            .abi_encode(),
        )
        .await
        .unwrap();
    wait_processed(&running.store, r.block_number.unwrap()).await;
    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].start_block, r.block_number.unwrap());
    running.stop().await;
}

#[tokio::test]
async fn compound_markets_read_from_the_comptroller_are_the_complete_set_of_each_action() {
    let node = anvil(0);
    let chain = chain(&node).await;
    let comptroller = chain.deploy(&bin("ComptrollerMock")).await.unwrap();
    let markets = [WETH, USDC, WBTC];
    let list = |m: Address| (comptroller, _supportMarketCall { cToken: m }.abi_encode());
    let pause = |m: Address, action: &str| {
        let call = setMarketPausedCall {
            cToken: m,
            action: action.into(),
            state: true,
        };
        (comptroller, call.abi_encode())
    };
    for m in &markets[..2] {
        let (to, data) = list(*m);
        assert!(chain.call(to, data).await.unwrap().status());
    }
    let text = protocol(
        "Compound",
        "comptroller",
        comptroller,
        "compound-comptroller.json",
        "compound-comptroller",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config_text(&node.endpoint(), &text));
    let running = start(&path).await;
    wait_caught_up(&running.store, &chain).await;
    // A third market, listed while haltwatch watches: MarketListed makes
    // it read the list again.
    let steps = [
        list(markets[2]),
        pause(markets[0], "Mint"),
        pause(markets[1], "Borrow"),
        pause(markets[1], "Mint"),
        pause(markets[2], "Mint"),
    ];
    let mut last = 0;
    for (to, data) in steps {
        let r = chain.call(to, data).await.unwrap();
        assert!(r.status());
        last = r.block_number.unwrap();
    }
    wait_processed(&running.store, last).await;
    let incidents = incidents(&running.store).await;
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let path: Vec<_> = incidents[0]
        .transitions
        .iter()
        .map(|t| (t.kind.as_str(), t.to, t.block_number))
        .collect();
    use ProtocolState::*;
    assert_eq!(
        path,
        [("opened", Degraded, last - 3), ("escalated", Halted, last)],
        "Mint paused on two markets of three is degraded; on all three, halted"
    );
    running.stop().await;
}

/// Without a listing event to watch, a set read from the chain is still
/// read again every `scopes_refresh_blocks`.
#[tokio::test]
async fn a_set_read_from_the_chain_is_read_again_every_scopes_refresh_blocks() {
    let node = anvil(0);
    let chain = chain(&node).await;
    let comptroller = chain.deploy(&bin("ComptrollerMock")).await.unwrap();
    let text = format!(
        r#"
[[protocols]]
name = "Compound"
chain = "anvil"
  [[protocols.contracts]]
  name = "comptroller"
  address = "{comptroller}"
  abi = "{abi}"
  [[protocols.rules]]
  contract = "comptroller"
  event = "ActionPaused(address,string,bool)"
  effect = "toggle"
  toggle_arg = "pauseState"
  scope_arg = ["cToken", "action"]
  scopes_from = "comptroller.getAllMarkets()"
  scopes_refresh_blocks = 2
"#,
        abi = abi("compound-comptroller.json")
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config_text(&node.endpoint(), &text));
    let running = start(&path).await;
    wait_caught_up(&running.store, &chain).await;
    // Listed while watched, and no rule asks for MarketListed.
    for m in [WETH, USDC] {
        let call = _supportMarketCall { cToken: m };
        assert!(
            chain
                .call(comptroller, call.abi_encode())
                .await
                .unwrap()
                .status()
        );
    }
    mine(&chain, 3).await;
    wait_caught_up(&running.store, &chain).await;
    let mut last = 0;
    for m in [WETH, USDC] {
        let call = setMarketPausedCall {
            cToken: m,
            action: "Mint".into(),
            state: true,
        };
        let r = chain.call(comptroller, call.abi_encode()).await.unwrap();
        last = r.block_number.unwrap();
    }
    wait_processed(&running.store, last).await;
    let list = incidents(&running.store).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0].severity, ProtocolState::Halted, "{list:#?}");
    running.stop().await;
}
