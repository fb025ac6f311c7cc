//! The ledger in the database: its head, and records appended in the
//! writing transaction ([`crate::store::ledger`] has the encodings and the
//! chaining).

use alloy::primitives::B256;

use super::*;
use crate::store::ledger::Chained;

/// The ledger table's insert.
const LEDGER: Table = Table {
    head: "INSERT INTO ledger (seq, kind, ref_id, payload, prev_hash, hash)",
    columns: 6,
    tail: "",
    what: "append ledger records",
};

/// The current head: (records, hash).
pub(super) async fn head(conn: &mut Conn) -> Result<(i64, B256)> {
    let row = sqlx::query("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(q("read ledger head"))?;
    match row {
        Some(r) => Ok((r.get(0), parse_b256(&r.get::<String, _>(1))?)),
        None => Ok((0, B256::ZERO)),
    }
}

/// A cursor on the head, for records appended in this transaction.
pub(super) async fn cursor(conn: &mut Conn) -> Result<Cursor> {
    Ok(Cursor::at(head(conn).await?))
}

/// Appends a self-contained retraction record.
pub(super) async fn append_retraction(
    conn: &mut Conn,
    chain_id: u64,
    ancestor: u64,
    evidence: &[i64],
    transitions: &[i64],
) -> Result<()> {
    let payload = crate::store::ledger::retraction(chain_id, ancestor, evidence, transitions);
    let mut cursor = cursor(conn).await?;
    cursor.push(RecordKind::Retraction, None, Some(payload.clone()), payload);
    flush(conn, cursor.chain()).await
}

/// Inserts the chained records.
pub(super) async fn flush(conn: &mut Conn, chained: Chained) -> Result<()> {
    let rows = chained.rows().await?;
    if rows.is_empty() {
        return Ok(());
    }
    let text: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.prev.to_string(), r.hash.to_string()))
        .collect();
    let values: Vec<[Value; 6]> = rows
        .iter()
        .zip(&text)
        .map(|(r, (prev, hash))| {
            [
                r.seq.into(),
                r.kind.as_str().into(),
                r.ref_id.into(),
                r.payload.as_ref().into(),
                prev.into(),
                hash.into(),
            ]
        })
        .collect();
    insert_all(conn, &LEDGER, values).await
}

impl Store {
    /// The history's tamper-evidence: walks the ledger against the rows.
    pub async fn verify_history(&self) -> Result<HistoryReport> {
        let mut conn = self.reads.acquire().await.map_err(q("connect"))?;
        super::verify::verify(&mut conn).await
    }

    /// Where ledger record `hash` stands now (its number), if it is still
    /// there; with `record`, only at that number. A head pinned earlier (from
    /// a mail, a report) that is gone means the history was truncated or
    /// rewritten since.
    pub async fn ledger_record(&self, record: Option<i64>, hash: B256) -> Result<Option<i64>> {
        sqlx::query_scalar(
            "SELECT seq FROM ledger WHERE hash = $1 AND ($2 IS NULL OR seq = $2) LIMIT 1",
        )
        .bind(hash.to_string())
        .bind(record)
        .fetch_optional(&self.reads)
        .await
        .map_err(q("find ledger record"))
    }

    /// The ledger head: (records, hash). Pin it to detect a rewritten history.
    pub async fn ledger_head(&self) -> Result<(i64, B256)> {
        let mut conn = self.reads.acquire().await.map_err(q("connect"))?;
        head(&mut conn).await
    }
}
