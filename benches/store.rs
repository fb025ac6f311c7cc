//! The store's write path: one committed range of the catch-up benchmark
//! (each block with one pause or unpause; per 1,000 blocks: 500 incidents
//! opened and resolved, 1,000 transitions, 1,000 pieces of evidence, 2,000
//! ledger records) written into a SQLite file, as the processor commits it.
//!
//! `cargo bench --bench store`. Each sample commits into a store that
//! already holds the ranges before it, as a catch-up does; like the
//! catch-up benchmark, no mail is queued (no `[email]`).
//! `RUST_LOG=haltwatch=debug` adds the store's stage timings.

use divan::Bencher;
use divan::counter::ItemsCount;
use haltwatch::config::StoreConfig;
use haltwatch::store::{Batch, Rows, Store, StoredUpdate};

#[path = "common/history.rs"]
mod history;
use history::{block_refs, runtime, updates};

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    divan::main();
}

/// `blocks`: the range one commit covers (the catch-up's range size).
#[divan::bench(args = [250, 500, 1000, 2000], sample_count = 40, sample_size = 1)]
fn commit_catch_up_range(bencher: Bencher, blocks: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = runtime()
        .block_on(Store::open(&StoreConfig::sqlite(
            dir.path().join("bench.sqlite"),
        )))
        .expect("store");
    let mut next = 2u64;
    bencher
        .counter(ItemsCount::new(blocks))
        .with_inputs(|| {
            let first = next;
            next += blocks;
            let updates = updates(first, blocks, |n| 1_700_000_000 + n);
            // Built ahead of the commit, as the processor does (`rows_of` below).
            let rows: Vec<Rows> = updates.iter().map(Rows::of).collect();
            (first, updates, rows, block_refs(first, blocks))
        })
        .bench_local_values(|(first, updates, rows, refs)| {
            let batch = Batch {
                chain_id: 31337,
                // The catch-up reads headers for the reorg window only.
                blocks: &refs[refs.len() - 64..],
                updates: updates
                    .iter()
                    .zip(rows)
                    .map(|(update, rows)| StoredUpdate {
                        protocol: "Vault",
                        chain: "anvil",
                        update,
                        notify: false,
                        planned: false,
                        rows,
                    })
                    .collect(),
                trackers: vec![(
                    "Vault",
                    first + blocks - 1,
                    String::from(r#"{"halted":[]}"#),
                )],
                window_blocks: 64,
                // As the processor commits a followed range.
                observed: Some(haltwatch::store::Observed {
                    chain: "anvil",
                    from_block: first,
                    to_block: first + blocks - 1,
                    first_time: 1_700_000_000 + first,
                    last_time: 1_700_000_000 + first + blocks - 1,
                }),
            };
            runtime().block_on(store.commit(batch)).expect("commit");
        });
}

/// The rows of a range's updates built ahead of its commit: hex, checksummed
/// addresses, JSON arguments and the ledger's canonical encodings.
#[divan::bench(args = [2000])]
fn rows_of(bencher: Bencher, blocks: u64) {
    let updates = updates(2, blocks, |n| 1_700_000_000 + n);
    bencher
        .counter(ItemsCount::new(blocks))
        .bench(|| updates.iter().map(Rows::of).collect::<Vec<_>>());
}
