//! Verifying the ledger: the chain of hashes recomputed from the rows as
//! they are now, so an edited, deleted or inserted row, or an edited
//! ledger, is named by its position.

use super::*;

use std::collections::BTreeSet;

use alloy::primitives::B256;

/// The canonical encoding of a row's immutable fields as stored now; `None` if the row is gone.
async fn canonical(conn: &mut Conn, kind: RecordKind, id: i64) -> Result<Option<String>> {
    match kind {
        RecordKind::Incident => {
            let row = sqlx::query(
                "SELECT key, protocol, chain, chain_id, planned FROM incidents WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(q("read history row"))?;
            Ok(row.map(|r| {
                crate::store::ledger::incident_canonical(
                    &r.get::<String, _>(0),
                    &r.get::<String, _>(1),
                    &r.get::<String, _>(2),
                    r.get(3),
                    r.get(4),
                )
            }))
        }
        RecordKind::Evidence => {
            let row = sqlx::query(
                "SELECT i.key, e.chain_id, e.contract, e.contract_name, e.tx_hash, e.block_number,
                        e.block_hash, e.block_timestamp, e.log_index, e.event, e.args, e.changes,
                        e.log_hash, e.kind
                 FROM evidence e JOIN incidents i ON i.id = e.incident_id WHERE e.id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(q("read history row"))?;
            Ok(row.map(|r| {
                let v = EvidenceValues {
                    chain_id: r.get(1),
                    contract: r.get(2),
                    contract_name: r.get(3),
                    tx_hash: r.get(4),
                    block_number: r.get(5),
                    block_hash: r.get(6),
                    block_timestamp: r.get(7),
                    log_index: r.get(8),
                    event: r.get(9),
                    args: r.get(10),
                    changes: r.get(11),
                    log_hash: r.get(12),
                    kind: r.get(13),
                };
                v.canonical(&r.get::<String, _>(0))
            }))
        }
        RecordKind::Transition => {
            let row = sqlx::query(
                "SELECT i.key, t.kind, t.from_state, t.to_state, t.at, t.block_number, t.block_hash, t.log_index
                 FROM transitions t JOIN incidents i ON i.id = t.incident_id WHERE t.id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(q("read history row"))?;
            Ok(row.map(|r| {
                let v = TransitionValues {
                    kind: r.get(1),
                    from: r.get(2),
                    to: r.get(3),
                    at: r.get(4),
                    block_number: r.get(5),
                    block_hash: r.get(6),
                    log_index: r.get(7),
                };
                v.canonical(&r.get::<String, _>(0))
            }))
        }
        RecordKind::Retraction | RecordKind::Reinstatement => Ok(None),
    }
}

/// Walks the whole ledger against the rows as they are now.
pub(super) async fn verify(conn: &mut Conn) -> Result<HistoryReport> {
    let rows =
        sqlx::query("SELECT seq, kind, ref_id, payload, prev_hash, hash FROM ledger ORDER BY seq")
            .fetch_all(&mut *conn)
            .await
            .map_err(q("read ledger"))?;
    let mut problems = Vec::new();
    let mut prev = B256::ZERO;
    let mut last_seq = 0;
    let mut covered: [BTreeSet<i64>; 3] = Default::default();
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
            (RecordKind::Retraction | RecordKind::Reinstatement, _) => {
                let text = payload.clone().unwrap_or_default();
                if let Ok(serde_json::Value::Array(parts)) = serde_json::from_str(&text) {
                    for (slot, part) in [(0, 3), (1, 4)] {
                        let ids = parts.get(part).and_then(|v| v.as_array());
                        for id in ids.into_iter().flatten().filter_map(|v| v.as_i64()) {
                            if kind == RecordKind::Retraction {
                                retracted[slot].insert(id);
                            } else {
                                retracted[slot].remove(&id);
                            }
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
            Some(c) if crate::store::ledger::chain(stored_prev, &c) != stored_hash => {
                let named = match (kind, ref_id, &payload) {
                    (RecordKind::Incident, Some(id), Some(recorded)) => {
                        super::verify_incidents::identity_columns(id, recorded, &c)
                    }
                    _ => Vec::new(),
                };
                if named.is_empty() {
                    problems.push(match ref_id {
                        Some(id) => Tamper::Edited { seq, kind, id },
                        None => Tamper::LedgerEdited { seq },
                    });
                } else {
                    problems.extend(named);
                }
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
    let identities_not_covered =
        super::verify_incidents::check(conn, &covered[2], &mut problems).await?;
    Ok(HistoryReport {
        records: last_seq,
        head: prev,
        problems,
        identities_not_covered,
    })
}

fn slot_of(kind: RecordKind) -> usize {
    match kind {
        RecordKind::Transition => 0,
        RecordKind::Incident => 2,
        _ => 1,
    }
}
