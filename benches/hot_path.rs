//! The in-process hot path: decode → detect → classify, per log, as the
//! processor runs it; and the JSON-RPC answer → decoded path.
//!
//! `cargo bench --bench hot_path`. Counts allocations with divan's profiler:
//! a log that no rule asks for must allocate nothing.

use std::path::Path;

use alloy::primitives::{Address, B256, Bytes, LogData, U256, keccak256};
use alloy::rpc::types::Log;
use divan::counter::ItemsCount;
use divan::{AllocProfiler, Bencher, black_box};
use haltwatch::classify::{ProtocolModel, Tracker};
use haltwatch::config::Config;
use haltwatch::decode::AbiRegistry;
use haltwatch::detect;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

const LOGS: usize = 10_000;

/// 20 protocols × 10 OpenZeppelin-pausable contracts on one chain.
fn config() -> Config {
    let abi = Path::new(env!("CARGO_MANIFEST_DIR")).join("abis/oz-pausable.json");
    let mut text = String::from(
        "[[chains]]\nname = \"mainnet\"\nchain_id = 1\nrpc = [\"http://127.0.0.1:8545\"]\n",
    );
    for p in 0..20 {
        text.push_str(&format!(
            "[[protocols]]\nname = \"P{p}\"\nchain = \"mainnet\"\n"
        ));
        for c in 0..10 {
            text.push_str(&format!(
                "  [[protocols.contracts]]\n  name = \"c{c}\"\n  address = \"{}\"\n  abi = \"{}\"\n  preset = \"oz-pausable\"\n",
                contract(p * 10 + c),
                abi.display()
            ));
        }
    }
    haltwatch::config::parse(&text, Path::new("bench.toml")).expect("bench config")
}

fn contract(i: usize) -> Address {
    Address::from_word(keccak256((i as u64).to_be_bytes()))
}

fn log(address: Address, topics: Vec<B256>, data: Vec<u8>, n: usize) -> Log {
    Log {
        inner: alloy::primitives::Log {
            address,
            data: LogData::new_unchecked(topics, Bytes::from(data)),
        },
        block_hash: Some(B256::with_last_byte(1)),
        block_number: Some(n as u64),
        block_timestamp: Some(1_700_000_000 + n as u64),
        transaction_hash: Some(keccak256(n.to_be_bytes())),
        transaction_index: Some(0),
        log_index: Some(n as u64),
        removed: false,
    }
}

/// A realistic mix: 95% logs of other contracts (ERC-20 transfers), 4% other
/// events of monitored contracts, 1% pause / unpause of monitored contracts.
fn mix() -> Vec<Log> {
    let transfer = keccak256("Transfer(address,address,uint256)");
    let paused = keccak256("Paused(address)");
    let unpaused = keccak256("Unpaused(address)");
    let who = Address::repeat_byte(0x11).into_word().to_vec();
    (0..LOGS)
        .map(|n| match n % 100 {
            0 => {
                let topic = if n % 200 == 0 { paused } else { unpaused };
                log(contract(n / 100 % 200), vec![topic], who.clone(), n)
            }
            1..=4 => log(
                contract(n % 200),
                vec![transfer, B256::ZERO, B256::ZERO],
                U256::from(n).to_be_bytes::<32>().to_vec(),
                n,
            ),
            _ => log(
                Address::from_word(keccak256((n as u64 + 1_000_000).to_be_bytes())),
                vec![transfer, B256::ZERO, B256::ZERO],
                U256::from(n).to_be_bytes::<32>().to_vec(),
                n,
            ),
        })
        .collect()
}

struct World {
    config: Config,
    registry: AbiRegistry,
    models: Vec<ProtocolModel>,
}

fn world() -> World {
    let config = config();
    let registry = AbiRegistry::for_chain(&config, 0);
    let models = config
        .protocols
        .iter()
        .enumerate()
        .map(|(i, p)| ProtocolModel::new(i, p))
        .collect();
    World {
        config,
        registry,
        models,
    }
}

/// What the processor does per log: decode, detect, apply to the protocol's tracker.
fn process(w: &World, trackers: &mut [Tracker], logs: &[Log]) -> usize {
    let mut updates = 0;
    for log in logs {
        let Some(Ok(decoded)) = w.registry.decode(log) else {
            continue;
        };
        let Ok(signals) = detect::pause::signals(&w.config, 1, &decoded) else {
            continue;
        };
        for s in signals {
            if trackers[s.protocol]
                .apply(&w.models[s.protocol], vec![s.evidence])
                .is_some()
            {
                updates += 1;
            }
        }
    }
    updates
}

#[divan::bench]
fn decode_detect_classify_mix(bencher: Bencher) {
    let w = world();
    let logs = mix();
    bencher
        .counter(ItemsCount::new(logs.len()))
        .with_inputs(|| vec![Tracker::default(); w.models.len()])
        .bench_local_refs(|trackers| process(&w, trackers, black_box(&logs)));
}

/// Logs no rule asks for: the skip path. Must show zero allocations.
#[divan::bench]
fn skip_unmonitored(bencher: Bencher) {
    let w = world();
    let logs: Vec<Log> = mix()
        .into_iter()
        .filter(|l| w.registry.decode(l).is_none())
        .collect();
    let mut trackers = vec![Tracker::default(); w.models.len()];
    bencher
        .counter(ItemsCount::new(logs.len()))
        .bench_local(|| process(&w, &mut trackers, black_box(&logs)));
}

/// The node's JSON answer (eth_getLogs) → alloy logs → decoded.
#[divan::bench]
fn json_to_decoded(bencher: Bencher) {
    let w = world();
    let json = serde_json::to_string(&mix()).expect("encode logs");
    bencher.counter(ItemsCount::new(LOGS)).bench_local(|| {
        let logs: Vec<Log> = serde_json::from_str(black_box(&json)).expect("decode logs");
        logs.iter()
            .filter(|l| matches!(w.registry.decode(l), Some(Ok(_))))
            .count()
    });
}
