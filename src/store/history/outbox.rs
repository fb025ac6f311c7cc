//! The outbox: mails queued with the history they tell of, drained by the
//! sender, marked sent, retried, failed or cancelled.

use super::*;

impl Store {
    /// Queued mails due at `now`, oldest first.
    pub async fn outbox_due(&self, now: i64) -> Result<Vec<OutboxItem>> {
        let rows = sqlx::query(
            "SELECT o.id, o.incident_id, i.protocol, o.kind, o.message_id, o.created_ms, o.attempts
             FROM outbox o JOIN incidents i ON i.id = o.incident_id
             WHERE o.status = 'pending' AND o.next_attempt_ms <= $1 ORDER BY o.id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(q("read outbox"))?;
        Ok(rows
            .iter()
            .map(|r| OutboxItem {
                id: r.get(0),
                incident_id: r.get(1),
                protocol: r.get(2),
                kind: r.get(3),
                message_id: r.get(4),
                created_ms: r.get(5),
                attempts: r.get(6),
            })
            .collect())
    }

    /// Mails waiting to be sent.
    pub async fn outbox_pending(&self) -> Result<usize> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await
            .map_err(q("count outbox"))?;
        Ok(n as usize)
    }

    /// Mails carried by one message: marks them sent.
    pub async fn outbox_sent(&self, ids: &[i64], sent_as: &str) -> Result<()> {
        let now = now_ms();
        for id in ids {
            sqlx::query(
                "UPDATE outbox SET status = 'sent', sent_ms = $1, sent_as = $2, attempts = attempts + 1
                 WHERE id = $3",
            )
            .bind(now)
            .bind(sent_as)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("mark mail sent"))?;
        }
        Ok(())
    }

    /// Claims the pending mails `ids` for `sender` until `until_ms`: those
    /// no other sender holds an unexpired claim on. Returns the ids claimed.
    /// The send happens after this statement has committed, never inside
    /// a transaction; a sender that dies after sending and before marking
    /// sent leaves its claim to expire, and the mail goes out once more,
    /// with the same Message-ID.
    pub async fn outbox_claim(&self, ids: &[i64], sender: &str, until_ms: i64) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let set = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "UPDATE outbox SET claimed_by = $2, claimed_until_ms = $3
             WHERE id IN (SELECT id FROM outbox WHERE id IN ({IDS_IN}) AND status = 'pending'
                 AND (claimed_by IS NULL OR claimed_by = $2 OR claimed_until_ms <= $4)
                 {SKIP_LOCKED})
             RETURNING id"
        )))
        .bind(&set)
        .bind(sender)
        .bind(until_ms)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await
        .map_err(q("claim mail"))
    }

    /// A temporary failure: try again at `next_ms`.
    pub async fn outbox_retry(&self, ids: &[i64], next_ms: i64, error: &str) -> Result<()> {
        for id in ids {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = $1, last_error = $2,
                    claimed_by = NULL, claimed_until_ms = NULL WHERE id = $3",
            )
            .bind(next_ms)
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("reschedule mail"))?;
        }
        Ok(())
    }

    /// A permanent failure: never retried.
    pub async fn outbox_failed(&self, ids: &[i64], error: &str) -> Result<()> {
        for id in ids {
            sqlx::query(
                "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = $1 WHERE id = $2",
            )
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("mark mail failed"))?;
        }
        Ok(())
    }

    /// Mails nobody is to receive: never sent, `why` kept.
    pub async fn outbox_cancelled(&self, ids: &[i64], why: &str) -> Result<()> {
        for id in ids {
            sqlx::query("UPDATE outbox SET status = 'cancelled', last_error = $1 WHERE id = $2")
                .bind(why)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(q("cancel mail"))?;
        }
        Ok(())
    }

    /// Distinct mails sent for `protocol` since `since_ms` (a digest counts once).
    pub async fn mails_sent_since(&self, protocol: &str, since_ms: i64) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(DISTINCT o.sent_as) FROM outbox o JOIN incidents i ON i.id = o.incident_id
             WHERE i.protocol = $1 AND o.status = 'sent' AND o.sent_ms >= $2",
        )
        .bind(protocol)
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(q("count sent mail"))
    }

    /// Every queued mail with its delivery state, oldest first.
    pub async fn outbox(&self) -> Result<Vec<OutboxRecord>> {
        let rows = sqlx::query(
            "SELECT id, incident_id, kind, message_id, status, attempts, last_error, sent_as
             FROM outbox ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("read outbox"))?;
        Ok(rows
            .iter()
            .map(|r| OutboxRecord {
                id: r.get(0),
                incident_id: r.get(1),
                kind: r.get(2),
                message_id: r.get(3),
                status: r.get(4),
                attempts: r.get(5),
                last_error: r.get(6),
                sent_as: r.get(7),
            })
            .collect())
    }
}

/// Queues a mail for an incident, unless it is planned (maintenance). The
/// Message-ID is `<key>.<n>`, n counting the incident's mails: stable across resends.
pub(super) async fn enqueue_row(
    conn: &mut Conn,
    outbox_id: Option<i64>,
    id: i64,
    key: &str,
    kind: &str,
) -> Result<()> {
    let planned: bool = sqlx::query_scalar("SELECT planned FROM incidents WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *conn)
        .await
        .map_err(q("read planned"))?;
    if planned {
        return Ok(());
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE incident_id = $1")
        .bind(id)
        .fetch_one(&mut *conn)
        .await
        .map_err(q("count outbox"))?;
    let now = now_ms();
    // Without an id from the batch's allocator, the next one: writers are
    // serialized (the backend's write lock), so MAX(id) is stable here.
    sqlx::query(
        "INSERT INTO outbox (id, incident_id, kind, message_id, created_ms, next_attempt_ms)
         VALUES (COALESCE($1, (SELECT COALESCE(MAX(id), 0) + 1 FROM outbox)), $2, $3, $4, $5, $6)",
    )
    .bind(outbox_id)
    .bind(id)
    .bind(kind)
    .bind(format!("{key}.{n}"))
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(q("enqueue mail"))?;
    Ok(())
}
