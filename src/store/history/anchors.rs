//! Anchors: the history heads haltwatch wrote to a chain, with their
//! transactions, so that `verify --history --anchors` can read them back.

use super::*;

use alloy::primitives::B256;

impl Store {
    /// Records an anchor just sent (or mined).
    pub async fn record_anchor(&self, a: &AnchorRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO anchors (record, head, chain, chain_id, tx_hash, block_number, anchored_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tx_hash) DO UPDATE SET block_number = excluded.block_number",
        )
        .bind(a.record)
        .bind(a.head.to_string())
        .bind(&a.chain)
        .bind(a.chain_id as i64)
        .bind(a.tx_hash.to_string())
        .bind(a.block_number.map(|b| b as i64))
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(q("record anchor"))
        .map(drop)
    }

    /// The newest anchor's (record, head), if any.
    pub async fn last_anchor(&self) -> Result<Option<(i64, B256)>> {
        let row = sqlx::query("SELECT record, head FROM anchors ORDER BY id DESC LIMIT 1")
            .fetch_optional(&self.reads)
            .await
            .map_err(q("read the last anchor"))?;
        row.map(|r| Ok((r.get(0), parse_b256(&r.get::<String, _>(1))?)))
            .transpose()
    }

    /// Every anchor, oldest first.
    pub async fn anchors(&self) -> Result<Vec<AnchorRecord>> {
        let rows = sqlx::query(
            "SELECT record, head, chain, chain_id, tx_hash, block_number FROM anchors ORDER BY id",
        )
        .fetch_all(&self.reads)
        .await
        .map_err(q("read anchors"))?;
        rows.iter()
            .map(|r| {
                Ok(AnchorRecord {
                    record: r.get(0),
                    head: parse_b256(&r.get::<String, _>(1))?,
                    chain: r.get(2),
                    chain_id: r.get::<i64, _>(3) as u64,
                    tx_hash: parse_b256(&r.get::<String, _>(4))?,
                    block_number: r.get::<Option<i64>, _>(5).map(|b| b as u64),
                })
            })
            .collect()
    }
}
