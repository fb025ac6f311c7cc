//! The incidents table against the ledger. Reports, exports, pages and the
//! API read an incident's state, severity and times from its row; the row
//! must be what its ledger-covered transitions give ([`crate::store::header`]),
//! and its identity (key, protocol, chain, planned) must have its own ledger
//! record. Scopes and durations are not stored: they are computed from the
//! covered evidence and times whenever an incident is read.

use super::*;

use std::collections::{BTreeSet, HashMap};

/// Checks every incident row; returns how many predate identity records
/// (rows older than the first incident with one, whose identity columns
/// are therefore not covered).
pub(super) async fn check(
    conn: &mut Conn,
    covered: &BTreeSet<i64>,
    problems: &mut Vec<Tamper>,
) -> Result<usize> {
    let mut steps: HashMap<i64, (Vec<Step>, Vec<Step>)> = HashMap::new(); // (all, standing)
    for r in sqlx::query(
        "SELECT incident_id, kind, to_state, at, block_number, retracted FROM transitions ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read transitions"))?
    {
        let step = (
            parse_kind(&r.get::<String, _>(1))?,
            parse_state(&r.get::<String, _>(2))?,
            r.get::<i64, _>(3),
            r.get::<i64, _>(4),
        );
        let (all, standing) = steps.entry(r.get(0)).or_default();
        all.push(step);
        if !r.get::<bool, _>(5) {
            standing.push(step);
        }
    }
    let first_covered = covered.first().copied();
    let mut legacy = 0;
    for r in sqlx::query(
        "SELECT id, state, severity, started_at, start_block, ended_at, end_block
         FROM incidents ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read incidents"))?
    {
        let id: i64 = r.get(0);
        if !covered.contains(&id) {
            if first_covered.is_some_and(|first| id > first) {
                problems.push(Tamper::Inserted {
                    kind: RecordKind::Incident,
                    id,
                });
            } else {
                legacy += 1;
            }
        }
        let (all, standing) = steps.remove(&id).unwrap_or_default();
        let expected = header::derive(&standing).or_else(|| header::withdrawn(&all));
        let stored = [
            ("state", r.get::<String, _>(1)),
            ("severity", r.get::<String, _>(2)),
            ("started_at", text(r.get::<Option<i64>, _>(3))),
            ("start_block", text(r.get::<Option<i64>, _>(4))),
            ("ended_at", text(r.get::<Option<i64>, _>(5))),
            ("end_block", text(r.get::<Option<i64>, _>(6))),
        ];
        let recomputed = expected.map(columns);
        for (i, (column, stored)) in stored.into_iter().enumerate() {
            let want = recomputed.as_ref().map_or_else(
                || "nothing (it has no transitions)".to_string(),
                |c| c[i].clone(),
            );
            if stored != want {
                problems.push(Tamper::Column {
                    incident: id,
                    column,
                    stored,
                    recomputed: want,
                });
            }
        }
    }
    Ok(legacy)
}

fn text(v: Option<i64>) -> String {
    v.map_or_else(|| "NULL".to_string(), |v| v.to_string())
}

/// A header as the table's columns print, in the order `check` reads them.
fn columns(h: Header) -> [String; 6] {
    [
        h.state.as_str().to_string(),
        h.severity.as_str().to_string(),
        h.started_at.to_string(),
        h.start_block.to_string(),
        text(h.ended_at),
        text(h.end_block),
    ]
}

/// The identity columns of incident `id` that differ between its ledger
/// record's payload (`recorded`) and its row now (`now`, both
/// [`crate::store::ledger::incident_canonical`]); empty when they cannot be told apart.
pub(super) fn identity_columns(id: i64, recorded: &str, now: &str) -> Vec<Tamper> {
    const COLUMNS: [&str; 6] = ["", "key", "protocol", "chain", "chain_id", "planned"];
    let parse = |t: &str| serde_json::from_str::<Vec<serde_json::Value>>(t).ok();
    let (Some(recorded), Some(now)) = (parse(recorded), parse(now)) else {
        return Vec::new();
    };
    COLUMNS
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, _)| recorded.get(*i) != now.get(*i))
        .map(|(i, column)| Tamper::Column {
            incident: id,
            column,
            stored: now.get(i).map_or("nothing".into(), |v| v.to_string()),
            recomputed: recorded.get(i).map_or("nothing".into(), |v| v.to_string()),
        })
        .collect()
}
