//! Chain leases on a real PostgreSQL: one holder per chain, epochs that rise
//! on every takeover, expiry by the database's clock, and the fencing check
//! that keeps a replica that lost its lease from ever writing.

mod common;

use std::time::Duration;

use common::postgres::Postgres;
use haltwatch::lease::{LeaseError, Leases};

const TTL: Duration = Duration::from_millis(1500);

async fn replica(pg: &Postgres, name: &str) -> Leases {
    Leases::connect(&pg.url, name, TTL)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A write fenced with `lease`, in its own transaction: Ok when it committed.
async fn fenced_write(
    r: &Leases,
    lease: &haltwatch::lease::Lease,
    what: &str,
) -> Result<(), LeaseError> {
    let mut tx = r.pool().begin().await.unwrap();
    r.fence(&mut tx, lease).await?;
    sqlx::query("INSERT INTO writes (chain_id, what) VALUES ($1, $2)")
        .bind(lease.chain_id as i64)
        .bind(what)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    Ok(())
}

#[tokio::test]
async fn one_holder_per_chain_and_a_lost_lease_can_never_write() {
    let pg = Postgres::start();
    let a = replica(&pg, "a").await;
    let b = replica(&pg, "b").await;
    sqlx::query("CREATE TABLE writes (chain_id BIGINT, what TEXT)")
        .execute(a.pool())
        .await
        .unwrap();

    let la = a.try_acquire(1).await.unwrap().expect("a free chain");
    assert_eq!((la.epoch, la.taken_over), (1, false));
    assert!(b.try_acquire(1).await.unwrap().is_none(), "held by a");
    let lb2 = b.try_acquire(2).await.unwrap().expect("another chain");
    assert_eq!(lb2.epoch, 1);
    // Re-acquiring one's own live lease renews it: same epoch.
    assert_eq!(a.try_acquire(1).await.unwrap().unwrap().epoch, 1);
    assert!(a.renew(&la).await.unwrap());
    fenced_write(&a, &la, "a while it holds").await.unwrap();

    // a stops renewing (frozen): past the TTL, b takes chain 1 over.
    tokio::time::sleep(TTL + Duration::from_millis(300)).await;
    let lb = b
        .try_acquire(1)
        .await
        .unwrap()
        .expect("expired: free to take");
    assert_eq!((lb.epoch, lb.taken_over), (2, true));
    // a thaws: it cannot renew, and every write it tries is refused.
    assert!(!a.renew(&la).await.unwrap());
    match fenced_write(&a, &la, "a after thawing").await {
        Err(LeaseError::Lost {
            chain_id,
            epoch,
            holder,
        }) => {
            assert_eq!((chain_id, epoch, holder.as_str()), (1, 1, "a"));
        }
        other => panic!("expected Lost, got {other:?}"),
    }
    fenced_write(&b, &lb, "b after the takeover").await.unwrap();
    let writes: Vec<String> = sqlx::query_scalar("SELECT what FROM writes ORDER BY what")
        .fetch_all(a.pool())
        .await
        .unwrap();
    assert_eq!(writes, ["a while it holds", "b after the takeover"]);

    // Released at shutdown, a lease is free at once, with a new epoch.
    b.release(&lb).await.unwrap();
    let again = a.try_acquire(1).await.unwrap().expect("released");
    assert_eq!((again.epoch, again.taken_over), (3, true));
}

/// The fencing check holds the lease row: a takeover waits for the write
/// in flight to end, so no write of the old holder lands after it.
#[tokio::test]
async fn a_takeover_waits_for_the_fenced_write_in_flight() {
    let pg = Postgres::start();
    let a = replica(&pg, "a").await;
    let b = replica(&pg, "b").await;
    let la = a.try_acquire(7).await.unwrap().unwrap();
    let mut tx = a.pool().begin().await.unwrap();
    a.fence(&mut tx, &la).await.unwrap();
    tokio::time::sleep(TTL + Duration::from_millis(300)).await; // expired meanwhile
    let take = tokio::spawn(async move { b.try_acquire(7).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !take.is_finished(),
        "the takeover waits for a's transaction"
    );
    tx.commit().await.unwrap();
    let lb = take
        .await
        .unwrap()
        .unwrap()
        .expect("then it takes the chain");
    assert_eq!(lb.epoch, 2);
}

#[tokio::test]
async fn live_replicas_are_those_with_a_fresh_heartbeat() {
    let pg = Postgres::start();
    let a = replica(&pg, "a").await;
    let b = replica(&pg, "b").await;
    a.heartbeat().await.unwrap();
    b.heartbeat().await.unwrap();
    assert_eq!(a.live_replicas().await.unwrap(), 2);
    // b dies: only a keeps beating.
    tokio::time::sleep(TTL / 2).await;
    a.heartbeat().await.unwrap();
    tokio::time::sleep(TTL / 2 + Duration::from_millis(300)).await;
    a.heartbeat().await.unwrap();
    assert_eq!(a.live_replicas().await.unwrap(), 1);
    assert_eq!(haltwatch::lease::fair_share(6, 1), 6);
}

/// Every write of a chain's history in a replica's store runs the fence
/// inside its own transaction: once the lease has passed, the commit, the
/// revert, the gap and the deep reorg of the old holder are refused and
/// leave nothing behind, while the new holder's land.
#[tokio::test]
async fn history_writes_of_a_replica_that_lost_its_lease_are_refused_and_leave_nothing() {
    use alloy::primitives::B256;
    use haltwatch::model::BlockRef;
    use haltwatch::store::{Batch, Store, StoreError};

    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.toml");
    std::fs::write(&path, format!("[store]\nurl = \"{}\"\n", pg.url)).unwrap();
    let config = haltwatch::config::load_store(&path).unwrap();
    let a = replica(&pg, "a").await;
    let b = replica(&pg, "b").await;
    let store_a = Store::open(&config).await.unwrap().fenced_by(a.clone());
    let store_b = Store::open(&config).await.unwrap().fenced_by(b.clone());
    let block = |n: u64| BlockRef {
        number: n,
        hash: B256::repeat_byte(n as u8),
        parent_hash: B256::repeat_byte(n as u8 - 1),
        timestamp: 1_700_000_000 + n,
    };
    let commit = |store: &Store, blocks: Vec<BlockRef>| {
        let store = store.clone();
        async move {
            store
                .commit(Batch {
                    chain_id: 1,
                    blocks: &blocks,
                    updates: Vec::new(),
                    trackers: Vec::new(),
                    window_blocks: 128,
                    observed: None,
                })
                .await
        }
    };
    let fenced =
        |r: Result<(), StoreError>| matches!(r, Err(StoreError::Fenced { chain_id: 1, .. }));
    let window = |store: &Store| {
        let store = store.clone();
        async move {
            store
                .window(1)
                .await
                .unwrap()
                .iter()
                .map(|b| b.number)
                .collect::<Vec<_>>()
        }
    };

    a.try_acquire(1).await.unwrap().expect("a free chain");
    commit(&store_a, vec![block(1)]).await.unwrap();
    // A replica without the lease cannot write the chain.
    assert!(fenced(commit(&store_b, vec![block(2)]).await));

    // a freezes past its TTL; b takes the chain over.
    tokio::time::sleep(TTL + Duration::from_millis(300)).await;
    b.try_acquire(1)
        .await
        .unwrap()
        .expect("expired: free to take");
    // a thaws: every kind of chain write it tries is refused.
    assert!(fenced(commit(&store_a, vec![block(2)]).await));
    assert!(fenced(store_a.revert(1, &["Vault"], 0).await));
    assert!(fenced(store_a.gap_opened("c", 1, 5, "stale").await));
    assert!(fenced(store_a.deep_reorg("c", 1, 5, "stale", true).await));
    assert_eq!(window(&store_a).await, [1], "nothing of a's landed");
    assert!(store_a.gaps(0, u64::MAX).await.unwrap().is_empty());
    // The holder's writes land.
    commit(&store_b, vec![block(2)]).await.unwrap();
    assert_eq!(window(&store_b).await, [1, 2]);
}
