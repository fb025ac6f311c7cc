//! Committing a range: history, trackers, window and checkpoint, what was
//! observed, in one transaction that holds the write lock; and reading back the window and
//! the trackers a restart resumes from.

use super::*;

impl Store {
    /// The remembered blocks of a chain, oldest first; the last is the checkpoint.
    pub async fn window(&self, chain_id: u64) -> Result<Vec<BlockRef>> {
        let rows = sqlx::query(
            "SELECT number, hash, parent_hash, timestamp FROM chain_blocks
             WHERE chain_id = $1 ORDER BY number",
        )
        .bind(chain_id as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(q("read block window"))?;
        rows.iter()
            .map(|r| {
                Ok(BlockRef {
                    number: r.get::<i64, _>(0) as u64,
                    hash: parse_b256(&r.get::<String, _>(1))?,
                    parent_hash: parse_b256(&r.get::<String, _>(2))?,
                    timestamp: r.get::<i64, _>(3) as u64,
                })
            })
            .collect()
    }

    /// The newest tracker snapshot of a protocol (JSON), if any.
    pub async fn tracker(&self, protocol: &str) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT tracker FROM protocol_state WHERE protocol = $1
             ORDER BY block_number DESC LIMIT 1",
        )
        .bind(protocol)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read tracker"))
    }

    /// Writes one committed range: incidents, evidence, trackers and checkpoint.
    pub async fn commit(&self, mut batch: Batch<'_>) -> Result<()> {
        // A backfill writes history only: no blocks, no window, no trackers.
        let tip = batch.blocks.iter().map(|b| b.number).max();
        // The write lock is taken at once, so ids allocated from MAX(id)
        // stay free and several chains' processors never deadlock.
        let mut tx = self
            .begin_write("begin commit", Some(batch.chain_id))
            .await?;
        let started = std::time::Instant::now();
        let updates = batch.updates.len();
        if updates > 0 {
            write::write_updates(&mut tx, std::mem::take(&mut batch.updates)).await?;
        }
        let history = started.elapsed();
        let trackers = std::mem::take(&mut batch.trackers);
        write_trackers(&mut tx, trackers, batch.window_blocks, tip).await?;
        if let Some(observed) = &batch.observed {
            coverage::record(&mut tx, batch.chain_id, observed).await?;
        }
        if let Some(tip) = tip {
            write_state(&mut tx, &batch, tip).await?;
        }
        let state = started.elapsed();
        tx.commit().await.map_err(q("commit"))?;
        tracing::debug!(
            updates,
            history_us = history.as_micros() as u64,
            state_us = (state - history).as_micros() as u64,
            commit_us = (started.elapsed() - state).as_micros() as u64,
            "store batch committed"
        );
        Ok(())
    }
}

/// The pipeline's own state for a committed range: trackers, window, checkpoint.
/// Classifier snapshots. Only those a reorg could return to are written:
/// every snapshot inside the window, and per protocol the newest one below
/// it; older ones are pruned when the checkpoint moves.
pub(super) async fn write_trackers(
    tx: &mut Transaction<'static, Db>,
    trackers: Vec<(&str, u64, String)>,
    window_blocks: u64,
    tip: Option<u64>,
) -> Result<()> {
    if trackers.is_empty() {
        return Ok(());
    }
    let protocols: std::collections::BTreeSet<&str> = trackers.iter().map(|t| t.0).collect();
    write::insert_rows(
        tx,
        "INSERT INTO protocol_state (protocol, block_number, tracker) ",
        " ON CONFLICT (protocol, block_number) DO UPDATE SET tracker = excluded.tracker",
        trackers,
        "write trackers",
        |mut b, (protocol, block, tracker)| {
            b.push_bind(protocol)
                .push_bind(block as i64)
                .push_bind(tracker);
        },
    )
    .await?;
    let Some(cutoff) = tip.map(|t| t.saturating_sub(window_blocks)) else {
        return Ok(());
    };
    for protocol in protocols {
        // Keep the snapshots inside the window, and the newest one below it.
        sqlx::query(
            "DELETE FROM protocol_state WHERE protocol = $1 AND block_number <
               (SELECT MAX(block_number) FROM protocol_state
                WHERE protocol = $1 AND block_number <= $2)",
        )
        .bind(protocol)
        .bind(cutoff as i64)
        .execute(&mut **tx)
        .await
        .map_err(q("prune trackers"))?;
    }
    Ok(())
}

/// The window of recent blocks and so the checkpoint.
pub(super) async fn write_state(
    tx: &mut Transaction<'static, Db>,
    batch: &Batch<'_>,
    tip: u64,
) -> Result<()> {
    {
        write::insert_rows(
            tx,
            "INSERT INTO chain_blocks (chain_id, number, hash, parent_hash, timestamp) ",
            " ON CONFLICT (chain_id, number) DO UPDATE SET hash = excluded.hash,
               parent_hash = excluded.parent_hash, timestamp = excluded.timestamp",
            batch.blocks,
            "write blocks",
            |mut row, b| {
                row.push_bind(batch.chain_id as i64)
                    .push_bind(b.number as i64)
                    .push_bind(b.hash.to_string())
                    .push_bind(b.parent_hash.to_string())
                    .push_bind(b.timestamp as i64);
            },
        )
        .await?;
        sqlx::query("DELETE FROM chain_blocks WHERE chain_id = $1 AND number < $2")
            .bind(batch.chain_id as i64)
            .bind(tip.saturating_sub(batch.window_blocks) as i64)
            .execute(&mut **tx)
            .await
            .map_err(q("prune blocks"))?;
    }
    Ok(())
}
