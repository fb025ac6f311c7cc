//! Mails about a chain rather than an incident: a reorg deeper than the
//! window. Queued with the monitoring gap they announce, in one transaction.

use super::*;

impl Store {
    /// A reorg deeper than the window on a chain: a monitoring gap from
    /// `since` with the reason and, when `notify`, a notice to its responders.
    pub async fn deep_reorg(
        &self,
        chain: &str,
        chain_id: u64,
        since: u64,
        reason: &str,
        notify: bool,
    ) -> Result<()> {
        let mut tx = self.begin_write("begin deep reorg", Some(chain_id)).await?;
        super::insert_gap(&mut *tx, chain, chain_id, since, reason).await?;
        if notify {
            let now = now_ms();
            sqlx::query(
                "INSERT INTO notices (chain, chain_id, kind, body, message_id, created_ms, next_attempt_ms)
                 VALUES ($1, $2, 'deep_reorg', $3, $4, $5, $6)",
            )
            .bind(chain)
            .bind(chain_id as i64)
            .bind(reason)
            .bind(format!("notice.{chain_id}.{now}"))
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(q("queue notice"))?;
        }
        tx.commit().await.map_err(q("commit deep reorg"))
    }

    /// Notices due at `now`, oldest first.
    pub async fn notices_due(&self, now: i64) -> Result<Vec<Notice>> {
        let rows = sqlx::query(
            "SELECT id, chain, chain_id, kind, body, message_id, attempts FROM notices
             WHERE status = 'pending' AND next_attempt_ms <= $1 ORDER BY id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(q("read notices"))?;
        Ok(rows
            .iter()
            .map(|r| Notice {
                id: r.get(0),
                chain: r.get(1),
                chain_id: r.get::<i64, _>(2) as u64,
                kind: r.get(3),
                body: r.get(4),
                message_id: r.get(5),
                attempts: r.get(6),
            })
            .collect())
    }

    /// Claims notice `id` for `sender` until `until_ms`, unless another
    /// sender holds an unexpired claim on it (see [`Store::outbox_claim`]).
    pub async fn notice_claim(&self, id: i64, sender: &str, until_ms: i64) -> Result<bool> {
        let claimed: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "UPDATE notices SET claimed_by = $2, claimed_until_ms = $3
             WHERE id IN (SELECT id FROM notices WHERE id = $1 AND status = 'pending'
                 AND (claimed_by IS NULL OR claimed_by = $2 OR claimed_until_ms <= $4)
                 {SKIP_LOCKED})
             RETURNING id"
        )))
        .bind(id)
        .bind(sender)
        .bind(until_ms)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(q("claim notice"))?;
        Ok(claimed.is_some())
    }

    /// What became of one delivery attempt: sent, to be retried at
    /// `retry_at`, or failed for good (`retry_at` `None` with an error).
    pub async fn notice_attempted(
        &self,
        id: i64,
        error: Option<&str>,
        retry_at: Option<i64>,
    ) -> Result<()> {
        let status = match (error, retry_at) {
            (None, _) => "sent",
            (Some(_), Some(_)) => "pending",
            (Some(_), None) => "failed",
        };
        sqlx::query(
            "UPDATE notices SET status = $1, attempts = attempts + 1, last_error = $2,
                claimed_by = NULL, claimed_until_ms = NULL,
                next_attempt_ms = COALESCE($3, next_attempt_ms),
                sent_ms = CASE WHEN $4 = 'sent' THEN $5 ELSE sent_ms END
             WHERE id = $6",
        )
        .bind(status)
        .bind(error)
        .bind(retry_at)
        .bind(status)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(q("record notice delivery"))?;
        Ok(())
    }
}
