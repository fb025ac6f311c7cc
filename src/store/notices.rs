//! Mails about a chain rather than an incident: a reorg deeper than the
//! window. Queued with the monitoring gap they announce, in one transaction.

use sqlx::Row;

use super::{Result, Store, now_ms, q};

/// A queued chain notice, as the sender sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: i64,
    pub chain: String,
    pub chain_id: u64,
    pub kind: String,
    pub body: String,
    pub message_id: String,
    pub attempts: i64,
}

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
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(q("begin deep reorg"))?;
        super::insert_gap(&mut *tx, chain, chain_id, since, reason).await?;
        if notify {
            let now = now_ms();
            sqlx::query(
                "INSERT INTO notices (chain, chain_id, kind, body, message_id, created_ms, next_attempt_ms)
                 VALUES (?, ?, 'deep_reorg', ?, ?, ?, ?)",
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
             WHERE status = 'pending' AND next_attempt_ms <= ? ORDER BY id",
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
            "UPDATE notices SET status = ?, attempts = attempts + 1, last_error = ?,
                next_attempt_ms = COALESCE(?, next_attempt_ms),
                sent_ms = CASE WHEN ? = 'sent' THEN ? ELSE sent_ms END
             WHERE id = ?",
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
