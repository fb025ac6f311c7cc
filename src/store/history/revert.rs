//! Undoing a reorg: rows above the ancestor retracted, incidents re-derived
//! (withdrawn when nothing stands), their mails withdrawn or reinstated.

use super::*;

impl Store {
    /// Undoes everything above block `ancestor` of a chain: its evidence and
    /// transitions are marked retracted, the incidents they touched are
    /// re-derived (withdrawn when nothing remains), and the window and
    /// tracker snapshots above it are dropped.
    pub async fn revert(&self, chain_id: u64, protocols: &[&str], ancestor: u64) -> Result<()> {
        // The write lock first: a deferred transaction would fail at once
        // where its first write meets another writer.
        let mut tx = self.begin_write("begin revert", Some(chain_id)).await?;
        let touched: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT incident_id FROM evidence
             WHERE chain_id = $1 AND block_number > $2 AND retracted = FALSE",
        )
        .bind(chain_id as i64)
        .bind(ancestor as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(q("find reverted incidents"))?;
        let evidence_ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM evidence WHERE chain_id = $1 AND block_number > $2 AND retracted = FALSE ORDER BY id",
        )
        .bind(chain_id as i64)
        .bind(ancestor as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(q("find reverted evidence"))?;
        let transition_ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM transitions WHERE block_number > $1 AND retracted = FALSE
             AND incident_id IN (SELECT id FROM incidents WHERE chain_id = $2) ORDER BY id",
        )
        .bind(ancestor as i64)
        .bind(chain_id as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(q("find reverted transitions"))?;
        if !evidence_ids.is_empty() || !transition_ids.is_empty() {
            ledger::append_retraction(&mut tx, chain_id, ancestor, &evidence_ids, &transition_ids)
                .await?;
        }
        sqlx::query(
            "UPDATE evidence SET retracted = TRUE WHERE chain_id = $1 AND block_number > $2 AND retracted = FALSE",
        )
        .bind(chain_id as i64)
        .bind(ancestor as i64)
        .execute(&mut *tx)
        .await
        .map_err(q("retract evidence"))?;
        sqlx::query(
            "UPDATE transitions SET retracted = TRUE WHERE block_number > $1 AND retracted = FALSE
             AND incident_id IN (SELECT id FROM incidents WHERE chain_id = $2)",
        )
        .bind(ancestor as i64)
        .bind(chain_id as i64)
        .execute(&mut *tx)
        .await
        .map_err(q("retract transitions"))?;
        for id in touched {
            rederive(&mut tx, id).await?;
            withdraw_mail(&mut tx, id).await?;
        }
        sqlx::query("DELETE FROM chain_blocks WHERE chain_id = $1 AND number > $2")
            .bind(chain_id as i64)
            .bind(ancestor as i64)
            .execute(&mut *tx)
            .await
            .map_err(q("drop reverted blocks"))?;
        for p in protocols {
            sqlx::query("DELETE FROM protocol_state WHERE protocol = $1 AND block_number > $2")
                .bind(p)
                .bind(ancestor as i64)
                .execute(&mut *tx)
                .await
                .map_err(q("drop reverted trackers"))?;
        }
        tx.commit().await.map_err(q("commit revert"))
    }
}

/// For an incident a reorg withdrew: unsent mails are cancelled, and if
/// responders were already told, they are told it was withdrawn.
pub(super) async fn withdraw_mail(tx: &mut Transaction<'static, Db>, id: i64) -> Result<()> {
    let row = sqlx::query("SELECT state, key FROM incidents WHERE id = $1")
        .bind(id)
        .fetch_one(&mut **tx)
        .await
        .map_err(q("read incident"))?;
    if row.get::<String, _>(0) != "withdrawn" {
        return Ok(());
    }
    sqlx::query(
        "UPDATE outbox SET status = 'cancelled' WHERE incident_id = $1 AND status = 'pending'",
    )
    .bind(id)
    .execute(&mut **tx)
    .await
    .map_err(q("cancel mail"))?;
    let told: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE incident_id = $1 AND status = 'sent' AND kind != 'withdrawn'",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await
    .map_err(q("count sent mail"))?;
    if told > 0 {
        enqueue_row(tx, None, id, &row.get::<String, _>(1), "withdrawn").await?;
    }
    Ok(())
}

/// For an incident whose evidence a reorg had withdrawn and which is
/// canonical again: a withdrawal not yet sent is cancelled; responders told
/// it was withdrawn get one mail that says it is back, and if nobody was
/// told of it at all (its mails were cancelled), they are told now.
pub(super) async fn reinstate_mail(
    conn: &mut Conn,
    outbox_id: Option<i64>,
    id: i64,
    key: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE outbox SET status = 'cancelled'
         WHERE incident_id = $1 AND kind = 'withdrawn' AND status = 'pending'",
    )
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(q("cancel the withdrawal mail"))?;
    let (told_withdrawn, queued_or_told): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(CASE WHEN kind = 'withdrawn' AND status = 'sent' THEN 1 END),
                COUNT(CASE WHEN status IN ('pending', 'sent') THEN 1 END)
         FROM outbox WHERE incident_id = $1",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await
    .map_err(q("count mail"))?;
    let kind = match (told_withdrawn, queued_or_told) {
        (0, 0) => "opened",
        (0, _) => return Ok(()),
        _ => "reinstated",
    };
    enqueue_row(conn, outbox_id, id, key, kind).await
}

/// Recomputes an incident's header (state, severity, start, end) from its
/// transitions that still stand. The header is derived data: one code path
/// serves both new transitions and reorgs.
pub(super) async fn rederive(conn: &mut Conn, id: i64) -> Result<()> {
    let rows = sqlx::query(
        "SELECT kind, to_state, at, block_number FROM transitions
         WHERE incident_id = $1 AND retracted = FALSE ORDER BY id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read transitions"))?;
    let steps = rows
        .iter()
        .map(|r| {
            Ok((
                parse_kind(&r.get::<String, _>(0))?,
                parse_state(&r.get::<String, _>(1))?,
                r.get::<i64, _>(2),
                r.get::<i64, _>(3),
            ))
        })
        .collect::<Result<Vec<header::Step>>>()?;
    let Some(h) = header::derive(&steps) else {
        sqlx::query("UPDATE incidents SET state = 'withdrawn', ended_at = NULL, end_block = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(q("withdraw incident"))?;
        return Ok(());
    };
    sqlx::query(
        "UPDATE incidents SET state = $1, severity = $2, started_at = $3, start_block = $4,
            ended_at = $5, end_block = $6 WHERE id = $7",
    )
    .bind(h.state.as_str())
    .bind(h.severity.as_str())
    .bind(h.started_at)
    .bind(h.start_block)
    .bind(h.ended_at)
    .bind(h.end_block)
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(q("update incident"))?;
    Ok(())
}
