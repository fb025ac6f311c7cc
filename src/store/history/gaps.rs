//! Monitoring gaps: stretches of time the monitor could not read a chain.

use super::*;

impl Store {
    /// Records the start of a monitoring gap on a chain (a replica's
    /// write is fenced by its lease of the chain, as every chain write is).
    pub async fn gap_opened(
        &self,
        chain: &str,
        chain_id: u64,
        since: u64,
        reason: &str,
    ) -> Result<()> {
        let mut tx = self.begin_write("begin gap", Some(chain_id)).await?;
        insert_gap(&mut *tx, chain, chain_id, since, reason).await?;
        tx.commit().await.map_err(q("commit gap"))
    }

    /// Closes the open monitoring gaps of a chain.
    pub async fn gap_closed(&self, chain_id: u64, at: u64) -> Result<()> {
        let mut tx = self.begin_write("begin gap", Some(chain_id)).await?;
        sqlx::query(
            "UPDATE monitoring_gaps SET ended_at = $1 WHERE chain_id = $2 AND ended_at IS NULL",
        )
        .bind(at as i64)
        .bind(chain_id as i64)
        .execute(&mut *tx)
        .await
        .map_err(q("close gap"))?;
        tx.commit().await.map_err(q("commit gap"))
    }

    /// Monitoring gaps that overlap `since..until`, oldest first.
    pub async fn gaps(&self, since: u64, until: u64) -> Result<Vec<GapRecord>> {
        let rows = sqlx::query(
            "SELECT chain, chain_id, started_at, ended_at, reason FROM monitoring_gaps
             WHERE started_at < $1 AND (ended_at IS NULL OR ended_at > $2) ORDER BY started_at, id",
        )
        .bind(seconds(until))
        .bind(seconds(since))
        .fetch_all(&self.reads)
        .await
        .map_err(q("read gaps"))?;
        Ok(rows
            .iter()
            .map(|r| GapRecord {
                chain: r.get(0),
                chain_id: r.get::<i64, _>(1) as u64,
                started_at: r.get::<i64, _>(2) as u64,
                ended_at: r.get::<Option<i64>, _>(3).map(|t| t as u64),
                reason: r.get(4),
            })
            .collect())
    }
}

/// A monitoring gap of a chain from `since`, with its reason.
pub(super) async fn insert_gap<'e>(
    e: impl sqlx::Executor<'e, Database = Db>,
    chain: &str,
    chain_id: u64,
    since: u64,
    reason: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO monitoring_gaps (chain, chain_id, started_at, reason) VALUES ($1, $2, $3, $4)",
    )
    .bind(chain)
    .bind(chain_id as i64)
    .bind(since as i64)
    .bind(reason)
    .execute(e)
    .await
    .map_err(q("open gap"))?;
    Ok(())
}
