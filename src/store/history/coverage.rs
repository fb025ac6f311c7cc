//! What the monitor observed: per chain, spans of consecutive blocks it read
//! and committed, with the chain times of their ends. A committed range
//! joins the span it continues or overlaps (by block number), or starts a
//! new one. A span starts at the first block whose time was read: a range
//! caught up from far behind may start a little later than its first block,
//! so coverage is claimed for less than was observed, never for more.

use super::*;

/// Joins `o` to the spans of `chain_id`, in the commit's transaction.
pub(super) async fn record(conn: &mut Conn, chain_id: u64, o: &Observed<'_>) -> Result<()> {
    let touching = sqlx::query(
        "SELECT id, first_block, first_time, last_block, last_time FROM observed
         WHERE chain_id = $1 AND last_block + 1 >= $2 AND first_block <= $3 + 1",
    )
    .bind(chain_id as i64)
    .bind(o.from_block as i64)
    .bind(o.to_block as i64)
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read observed spans"))?;
    let (mut first, mut last) = (
        (o.from_block as i64, o.first_time as i64),
        (o.to_block as i64, o.last_time as i64),
    );
    for r in &touching {
        let (fb, ft, lb, lt): (i64, i64, i64, i64) = (r.get(1), r.get(2), r.get(3), r.get(4));
        if fb <= first.0 {
            first = (fb, ft.min(first.1));
        }
        if lb >= last.0 {
            last = (lb, lt.max(last.1));
        }
    }
    for r in &touching {
        sqlx::query("DELETE FROM observed WHERE id = $1")
            .bind(r.get::<i64, _>(0))
            .execute(&mut *conn)
            .await
            .map_err(q("merge observed spans"))?;
    }
    sqlx::query(
        "INSERT INTO observed (chain, chain_id, first_block, first_time, last_block, last_time)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(o.chain)
    .bind(chain_id as i64)
    .bind(first.0)
    .bind(first.1)
    .bind(last.0)
    .bind(last.1.max(first.1))
    .execute(&mut *conn)
    .await
    .map_err(q("record observed span"))?;
    Ok(())
}

impl Store {
    /// Every observed span overlapping `since..until` (chain time), oldest first.
    pub async fn observed(&self, since: u64, until: u64) -> Result<Vec<ObservedSpan>> {
        let rows = sqlx::query(
            "SELECT chain, chain_id, first_block, first_time, last_block, last_time FROM observed
             WHERE first_time < $1 AND last_time > $2 ORDER BY first_time, id",
        )
        .bind(seconds(until))
        .bind(seconds(since))
        .fetch_all(&self.reads)
        .await
        .map_err(q("read observed spans"))?;
        Ok(rows
            .iter()
            .map(|r| ObservedSpan {
                chain: r.get(0),
                chain_id: r.get::<i64, _>(1) as u64,
                first_block: r.get::<i64, _>(2) as u64,
                first_time: r.get::<i64, _>(3) as u64,
                last_block: r.get::<i64, _>(4) as u64,
                last_time: r.get::<i64, _>(5) as u64,
            })
            .collect())
    }
}
