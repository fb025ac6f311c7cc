//! The tamper-evident ledger over the halt history.
//!
//! Every history record (a transition, a piece of evidence, a retraction by
//! a reorg) appends one ledger record in the same transaction that writes it:
//! `hash = keccak256(prev_hash ‖ canonical)`, where `canonical` is a JSON
//! array of the record's immutable fields read back from its row. Verifying
//! recomputes the chain from the rows as they are now, so an edited, deleted
//! or inserted row, or an edited ledger, is named by its position.

use std::collections::BTreeSet;

use alloy::primitives::{B256, keccak256};
use serde::Serialize;
use sqlx::{Row, SqliteConnection};

use super::{Result, StoreError, parse_b256, q};

/// What kind of history record a ledger entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Transition,
    Evidence,
    Retraction,
}

impl RecordKind {
    fn as_str(self) -> &'static str {
        match self {
            RecordKind::Transition => "transition",
            RecordKind::Evidence => "evidence",
            RecordKind::Retraction => "retraction",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "transition" => Some(RecordKind::Transition),
            "evidence" => Some(RecordKind::Evidence),
            "retraction" => Some(RecordKind::Retraction),
            _ => None,
        }
    }
}

/// One way the history differs from what the ledger recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Tamper {
    /// The row behind ledger record `seq` no longer has the content it was written with.
    Edited { seq: i64, kind: RecordKind, id: i64 },
    /// The row behind ledger record `seq` is gone.
    Deleted { seq: i64, kind: RecordKind, id: i64 },
    /// A row that no ledger record covers.
    Inserted { kind: RecordKind, id: i64 },
    /// Ledger records are missing between `after` and `found`.
    LedgerGap { after: i64, found: i64 },
    /// Ledger record `seq` does not link to its predecessor, or its hash was changed.
    LedgerEdited { seq: i64 },
    /// A row's retracted flag disagrees with the retraction records.
    RetractedFlag { kind: RecordKind, id: i64 },
}

impl std::fmt::Display for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tamper::Edited { seq, kind, id } => {
                write!(f, "record {seq}: {} {id} was edited", kind.as_str())
            }
            Tamper::Deleted { seq, kind, id } => {
                write!(f, "record {seq}: {} {id} was deleted", kind.as_str())
            }
            Tamper::Inserted { kind, id } => write!(
                f,
                "{} {id} was inserted without a ledger record",
                kind.as_str()
            ),
            Tamper::LedgerGap { after, found } => write!(
                f,
                "ledger records {}..{} were deleted",
                after + 1,
                found - 1
            ),
            Tamper::LedgerEdited { seq } => write!(f, "ledger record {seq} was edited"),
            Tamper::RetractedFlag { kind, id } => {
                write!(f, "{} {id}: its retracted flag was changed", kind.as_str())
            }
        }
    }
}

/// The outcome of walking the ledger.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryReport {
    pub records: i64,
    /// The last record's hash: pin it to detect a rewrite of the whole ledger.
    pub head: B256,
    /// In ledger order; the first is the earliest point of tampering.
    pub problems: Vec<Tamper>,
}

/// The current head: (records, hash).
pub(super) async fn head(conn: &mut SqliteConnection) -> Result<(i64, B256)> {
    let row = sqlx::query("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(q("read ledger head"))?;
    match row {
        Some(r) => Ok((r.get(0), parse_b256(&r.get::<String, _>(1))?)),
        None => Ok((0, B256::ZERO)),
    }
}

fn chain(prev: B256, canonical: &str) -> B256 {
    let mut bytes = Vec::with_capacity(32 + canonical.len());
    bytes.extend_from_slice(prev.as_slice());
    bytes.extend_from_slice(canonical.as_bytes());
    keccak256(bytes)
}

/// Appends a record for row `id` of `kind` (transition or evidence), reading its canonical form back.
pub(super) async fn append_row(
    conn: &mut SqliteConnection,
    kind: RecordKind,
    id: i64,
) -> Result<()> {
    let canonical = canonical(conn, kind, id)
        .await?
        .ok_or(StoreError::Corrupt {
            what: "row just written",
            value: id.to_string(),
        })?;
    append(conn, kind, Some(id), None, &canonical).await
}

/// Appends a self-contained retraction record.
pub(super) async fn append_retraction(
    conn: &mut SqliteConnection,
    chain_id: u64,
    ancestor: u64,
    evidence: &[i64],
    transitions: &[i64],
) -> Result<()> {
    let payload =
        serde_json::json!(["retraction", chain_id, ancestor, evidence, transitions]).to_string();
    append(conn, RecordKind::Retraction, None, Some(&payload), &payload).await
}

async fn append(
    conn: &mut SqliteConnection,
    kind: RecordKind,
    ref_id: Option<i64>,
    payload: Option<&str>,
    canonical: &str,
) -> Result<()> {
    let (seq, prev) = head(conn).await?;
    sqlx::query("INSERT INTO ledger (seq, kind, ref_id, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(seq + 1)
        .bind(kind.as_str())
        .bind(ref_id)
        .bind(payload)
        .bind(prev.to_string())
        .bind(chain(prev, canonical).to_string())
        .execute(&mut *conn)
        .await
        .map_err(q("append ledger record"))?;
    Ok(())
}

/// The canonical encoding of a row's immutable fields; `None` if the row is gone.
async fn canonical(
    conn: &mut SqliteConnection,
    kind: RecordKind,
    id: i64,
) -> Result<Option<String>> {
    let row = match kind {
        RecordKind::Evidence => sqlx::query(
            "SELECT i.key, e.chain_id, e.contract, e.contract_name, e.tx_hash, e.block_number,
                    e.block_hash, e.block_timestamp, e.log_index, e.event, e.args, e.changes, e.log_hash,
                    e.kind
             FROM evidence e JOIN incidents i ON i.id = e.incident_id WHERE e.id = ?",
        ),
        RecordKind::Transition => sqlx::query(
            "SELECT i.key, t.kind, t.from_state, t.to_state, t.at, t.block_number, t.block_hash, t.log_index
             FROM transitions t JOIN incidents i ON i.id = t.incident_id WHERE t.id = ?",
        ),
        RecordKind::Retraction => return Ok(None),
    }
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(q("read history row"))?;
    let Some(row) = row else { return Ok(None) };
    let mut fields = vec![serde_json::Value::from(kind.as_str())];
    let mut columns = row.len();
    if kind == RecordKind::Evidence
        && row
            .try_get::<String, _>(columns - 1)
            .is_ok_and(|k| k == "log")
    {
        // Log evidence is encoded as it was before evidence had kinds.
        columns -= 1;
    }
    for i in 0..columns {
        // Every column is TEXT or INTEGER; encode each as what it is.
        let v = match row.try_get::<i64, _>(i) {
            Ok(n) => serde_json::Value::from(n),
            Err(_) => serde_json::Value::from(row.try_get::<String, _>(i).unwrap_or_default()),
        };
        fields.push(v);
    }
    Ok(Some(serde_json::Value::Array(fields).to_string()))
}

/// Walks the whole ledger against the rows as they are now.
pub(super) async fn verify(conn: &mut SqliteConnection) -> Result<HistoryReport> {
    let rows =
        sqlx::query("SELECT seq, kind, ref_id, payload, prev_hash, hash FROM ledger ORDER BY seq")
            .fetch_all(&mut *conn)
            .await
            .map_err(q("read ledger"))?;
    let mut problems = Vec::new();
    let mut prev = B256::ZERO;
    let mut last_seq = 0;
    let mut covered: [BTreeSet<i64>; 2] = Default::default();
    let mut retracted: [BTreeSet<i64>; 2] = Default::default();
    for r in &rows {
        let seq: i64 = r.get(0);
        let kind_text: String = r.get(1);
        let kind = RecordKind::parse(&kind_text).ok_or(StoreError::Corrupt {
            what: "ledger record kind",
            value: kind_text,
        })?;
        let ref_id: Option<i64> = r.get(2);
        let payload: Option<String> = r.get(3);
        let stored_prev = parse_b256(&r.get::<String, _>(4))?;
        let stored_hash = parse_b256(&r.get::<String, _>(5))?;
        if seq != last_seq + 1 {
            problems.push(Tamper::LedgerGap {
                after: last_seq,
                found: seq,
            });
        }
        if stored_prev != prev {
            problems.push(Tamper::LedgerEdited { seq });
        }
        let canonical = match (kind, ref_id) {
            (RecordKind::Retraction, _) => {
                let text = payload.unwrap_or_default();
                if let Ok(serde_json::Value::Array(parts)) = serde_json::from_str(&text) {
                    for (slot, part) in [(0, 3), (1, 4)] {
                        if let Some(ids) = parts.get(part).and_then(|v| v.as_array()) {
                            retracted[slot].extend(ids.iter().filter_map(|v| v.as_i64()));
                        }
                    }
                }
                Some(text)
            }
            (_, Some(id)) => {
                covered[slot_of(kind)].insert(id);
                canonical(conn, kind, id).await?
            }
            (_, None) => None,
        };
        match canonical {
            None => problems.push(Tamper::Deleted {
                seq,
                kind,
                id: ref_id.unwrap_or_default(),
            }),
            Some(c) if chain(stored_prev, &c) != stored_hash => {
                problems.push(match ref_id {
                    Some(id) => Tamper::Edited { seq, kind, id },
                    None => Tamper::LedgerEdited { seq },
                });
            }
            Some(_) => {}
        }
        prev = stored_hash;
        last_seq = seq;
    }
    for (slot, kind, table) in [
        (0, RecordKind::Transition, "transitions"),
        (1, RecordKind::Evidence, "evidence"),
    ] {
        let sql = format!("SELECT id, retracted FROM {table} ORDER BY id");
        let all = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await
            .map_err(q("read history rows"))?;
        for row in all {
            let id: i64 = row.get(0);
            if !covered[slot].contains(&id) {
                problems.push(Tamper::Inserted { kind, id });
            }
            if row.get::<bool, _>(1) != retracted[slot].contains(&id) {
                problems.push(Tamper::RetractedFlag { kind, id });
            }
        }
    }
    Ok(HistoryReport {
        records: last_seq,
        head: prev,
        problems,
    })
}

fn slot_of(kind: RecordKind) -> usize {
    match kind {
        RecordKind::Transition => 0,
        _ => 1,
    }
}
