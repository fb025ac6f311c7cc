//! Writing a committed range's incident updates in one transaction.
//!
//! Updates of incidents that already exist (a restart, a re-run over the
//! same blocks, a resolution in a later range) are written first, row by
//! row with conflict checks, so that nothing is recorded twice. Incidents
//! first seen in this batch (the common case while catching up or
//! backfilling) are then assembled in memory and inserted through the
//! backend's bulk insert (`insert_all`): their rows cannot
//! conflict with anything; the ledger's keccak chain is computed on a
//! blocking thread meanwhile. The text of every row and its ledger
//! encoding ([`Rows`]) come built by the caller, who can build them off the
//! store's path (the processor does, while the range before is written).
//! Both paths take row ids from one allocator (safe under the backend's
//! write lock, taken when the transaction begins) and chain one ledger cursor; within an incident, rows and
//! ledger records follow the update order.

use super::*;

use std::collections::{HashMap, HashSet};

use crate::model::{ProtocolState, TransitionKind};

/// Keys per `IN (…)` list and rows per multi-row INSERT: well under
/// SQLite's 32,766 bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

const INCIDENTS: Table = Table {
    head: "INSERT INTO incidents (id, key, protocol, chain, chain_id, state, severity, \
           started_at, start_block, ended_at, end_block, planned)",
    columns: 12,
    tail: "",
    what: "insert incidents",
};
const EVIDENCE: Table = Table {
    head: "INSERT INTO evidence (id, incident_id, kind, chain_id, contract, contract_name, \
           tx_hash, block_number, block_hash, block_timestamp, log_index, event, args, \
           changes, log_hash)",
    columns: 15,
    tail: "",
    what: "insert evidence",
};
/// Evidence of an incident stored before, which may be there already.
const EVIDENCE_AGAIN: Table = Table {
    tail: " ON CONFLICT (incident_id, kind, block_hash, log_index) DO NOTHING",
    ..EVIDENCE
};
const TRANSITIONS: Table = Table {
    head: "INSERT INTO transitions (id, incident_id, kind, from_state, to_state, at, \
           block_number, block_hash, log_index)",
    columns: 9,
    tail: "",
    what: "insert transitions",
};
const TRANSITIONS_AGAIN: Table = Table {
    tail: " ON CONFLICT (incident_id, block_hash, log_index) DO NOTHING",
    ..TRANSITIONS
};
const OUTBOX: Table = Table {
    head: "INSERT INTO outbox (id, incident_id, kind, message_id, created_ms, next_attempt_ms)",
    columns: 6,
    tail: "",
    what: "enqueue mail",
};

/// The next free id of each table, read once per transaction.
struct Ids {
    incident: i64,
    evidence: i64,
    transition: i64,
    outbox: i64,
}

impl Ids {
    async fn load(conn: &mut Conn) -> Result<Self> {
        let row = sqlx::query(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM incidents),
                    (SELECT COALESCE(MAX(id), 0) FROM evidence),
                    (SELECT COALESCE(MAX(id), 0) FROM transitions),
                    (SELECT COALESCE(MAX(id), 0) FROM outbox)",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(q("read next ids"))?;
        Ok(Ids {
            incident: row.get::<i64, _>(0) + 1,
            evidence: row.get::<i64, _>(1) + 1,
            transition: row.get::<i64, _>(2) + 1,
            outbox: row.get::<i64, _>(3) + 1,
        })
    }
}

fn take(next: &mut i64) -> i64 {
    let id = *next;
    *next += 1;
    id
}

/// An incident opened in this batch, written once with its final header.
struct NewIncident<'a> {
    id: i64,
    key: &'a str,
    protocol: &'a str,
    chain: &'a str,
    chain_id: i64,
    planned: bool,
    /// (kind, to, at, block) of its transitions, in order.
    transitions: Vec<(TransitionKind, ProtocolState, i64, i64)>,
    mails: i64,
}

impl NewIncident<'_> {
    /// The header its transitions in this batch give ([`super::header`]).
    fn header(&self) -> super::header::Header {
        // A new incident always has its opening transition.
        super::header::derive(&self.transitions).unwrap_or(super::header::Header {
            state: IncidentState::Open,
            severity: ProtocolState::Degraded,
            started_at: 0,
            start_block: 0,
            ended_at: None,
            end_block: None,
        })
    }
}

/// Writes the updates of one batch; the caller owns the transaction.
pub(super) async fn write_updates(conn: &mut Conn, updates: Vec<StoredUpdate<'_>>) -> Result<()> {
    let started = std::time::Instant::now();
    let mut ids = Ids::load(conn).await?;
    let mut ledger = ledger::cursor(conn).await?;
    let existing = existing_incidents(conn, &updates).await?;
    // Incidents stored before this batch: row by row, with conflict checks.
    let mut fresh = Vec::with_capacity(updates.len());
    for u in updates {
        match existing.get(&u.update.key) {
            Some(&id) => write_existing(conn, &mut ids, &mut ledger, id, u).await?,
            None => fresh.push(u),
        }
    }
    if fresh.is_empty() {
        return ledger::flush(conn, ledger.chain()).await;
    }
    let loaded = started.elapsed();
    let rows = NewRows::build(fresh, &mut ids, &mut ledger)?;
    // The ledger's keccak chain is computed on a blocking thread while the
    // rows are inserted.
    let chained = ledger.chain();
    rows.insert(conn).await?;
    ledger::flush(conn, chained).await?;
    tracing::debug!(
        incidents = rows.incidents.len(),
        evidence = rows.evidence.len(),
        transitions = rows.transitions.len(),
        load_us = loaded.as_micros() as u64,
        write_us = (started.elapsed() - loaded).as_micros() as u64,
        "history rows written"
    );
    Ok(())
}

/// The rows of incidents first seen in one batch, built in memory: they
/// cannot conflict with anything stored.
struct NewRows<'a> {
    incidents: Vec<NewIncident<'a>>,
    evidence: Vec<(i64, i64, EvidenceValues)>, // (id, incident, values)
    transitions: Vec<(i64, i64, TransitionValues)>,
    outbox: Vec<(i64, i64, &'static str, String)>, // (id, incident, kind, message id)
}

impl<'a> NewRows<'a> {
    /// The incidents with their final headers (a header needs only the
    /// batch's transitions) and, in update order, their evidence,
    /// transitions and mails, each queued on the ledger as it takes its id.
    fn build(updates: Vec<StoredUpdate<'a>>, ids: &mut Ids, ledger: &mut Cursor) -> Result<Self> {
        let mut incidents: Vec<NewIncident> = Vec::new();
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        let mut at: Vec<usize> = Vec::with_capacity(updates.len()); // update → incident
        for u in &updates {
            let update = u.update;
            let index = match index_of.get(update.key.as_str()) {
                Some(&i) => i,
                None => {
                    let opens = update
                        .transition
                        .as_ref()
                        .is_some_and(|t| t.kind == TransitionKind::Opened);
                    if !opens {
                        return Err(StoreError::UnknownIncident {
                            key: update.key.clone(),
                        });
                    }
                    let incident = NewIncident {
                        id: take(&mut ids.incident),
                        key: &update.key,
                        protocol: u.protocol,
                        chain: u.chain,
                        chain_id: update.evidence.first().map_or(0, |e| e.chain_id as i64),
                        planned: u.planned,
                        transitions: Vec::new(),
                        mails: 0,
                    };
                    // Its identity first, then its evidence and transitions.
                    // Kept as the record's payload too, so that verify can
                    // name the column an edit changed.
                    let identity = crate::store::ledger::incident_canonical(
                        incident.key,
                        incident.protocol,
                        incident.chain,
                        incident.chain_id,
                        incident.planned,
                    );
                    ledger.push(
                        RecordKind::Incident,
                        Some(incident.id),
                        Some(identity.clone()),
                        identity,
                    );
                    incidents.push(incident);
                    index_of.insert(&update.key, incidents.len() - 1);
                    incidents.len() - 1
                }
            };
            if let Some(t) = &update.transition {
                incidents[index].transitions.push((
                    t.kind,
                    t.to,
                    t.at as i64,
                    t.block_number as i64,
                ));
            }
            at.push(index);
        }
        let mut rows = NewRows {
            incidents,
            evidence: Vec::with_capacity(updates.len()),
            transitions: Vec::with_capacity(updates.len()),
            outbox: Vec::new(),
        };
        // (incident, kind, block hash, position): the evidence table's unique key.
        let mut seen: HashSet<(
            i64,
            crate::model::EvidenceKind,
            alloy::primitives::B256,
            u64,
        )> = HashSet::new();
        for (u, index) in updates.into_iter().zip(at) {
            let update = u.update;
            let incident = &mut rows.incidents[index];
            for (e, (values, canonical)) in update.evidence.iter().zip(u.rows.evidence) {
                if !seen.insert((incident.id, e.kind, e.block_hash, e.log_index)) {
                    continue;
                }
                let id = take(&mut ids.evidence);
                ledger.push(RecordKind::Evidence, Some(id), None, canonical);
                rows.evidence.push((id, incident.id, values));
            }
            if let (Some(t), Some((values, canonical))) = (&update.transition, u.rows.transition) {
                let id = take(&mut ids.transition);
                ledger.push(RecordKind::Transition, Some(id), None, canonical);
                rows.transitions.push((id, incident.id, values));
                if u.notify && !incident.planned {
                    let message_id = format!("{}.{}", incident.key, incident.mails);
                    incident.mails += 1;
                    rows.outbox.push((
                        take(&mut ids.outbox),
                        incident.id,
                        t.kind.as_str(),
                        message_id,
                    ));
                }
            }
        }
        Ok(rows)
    }

    /// Inserts the rows, incidents first (the others refer to them).
    /// Each table's rows are collected before the insert is awaited: a
    /// lazy iterator of borrowed rows would make the commit's future
    /// lifetime-generic, and so not `Send`.
    async fn insert(&self, conn: &mut Conn) -> Result<()> {
        let incidents: Vec<_> = self.incidents.iter().map(incident_row).collect();
        insert_all(conn, &INCIDENTS, incidents).await?;
        let evidence: Vec<_> = self
            .evidence
            .iter()
            .map(|(id, i, v)| evidence_row(*id, *i, v))
            .collect();
        insert_all(conn, &EVIDENCE, evidence).await?;
        let transitions: Vec<_> = self
            .transitions
            .iter()
            .map(|(id, i, v)| transition_row(*id, *i, v))
            .collect();
        insert_all(conn, &TRANSITIONS, transitions).await?;
        let now = now_ms();
        let outbox: Vec<[Value; 6]> = self
            .outbox
            .iter()
            .map(|(id, incident, kind, message_id)| {
                [
                    (*id).into(),
                    (*incident).into(),
                    (*kind).into(),
                    message_id.into(),
                    now.into(),
                    now.into(),
                ]
            })
            .collect();
        insert_all(conn, &OUTBOX, outbox).await
    }
}

/// Ids of the incidents of this batch that are already stored.
async fn existing_incidents(
    conn: &mut Conn,
    updates: &[StoredUpdate<'_>],
) -> Result<HashMap<String, i64>> {
    let keys: Vec<&str> = updates
        .iter()
        .map(|u| u.update.key.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut out = HashMap::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut sql = QueryBuilder::<Db>::new("SELECT key, id FROM incidents WHERE key IN (");
        let mut list = sql.separated(", ");
        for k in chunk {
            list.push_bind(*k);
        }
        list.push_unseparated(")");
        for row in sql
            .build()
            .fetch_all(&mut *conn)
            .await
            .map_err(q("find stored incidents"))?
        {
            out.insert(row.get::<String, _>(0), row.get::<i64, _>(1));
        }
    }
    Ok(out)
}

/// Multi-row INSERTs of `rows`, at most [`ROWS_PER_STATEMENT`] per statement,
/// run in order: `head` names the table and columns, `bind` binds one row
/// in that order, `tail` follows the VALUES (a conflict clause). Returns
/// the rows affected.
pub(super) async fn insert_rows<T>(
    conn: &mut Conn,
    head: &str,
    tail: &str,
    rows: impl IntoIterator<Item = T>,
    what: &'static str,
    mut bind: impl FnMut(sqlx::query_builder::Separated<'_, Db, &'static str>, T),
) -> Result<u64> {
    let mut rows = rows.into_iter().peekable();
    let mut affected = 0;
    while rows.peek().is_some() {
        let mut sql = QueryBuilder::<Db>::new(head);
        sql.push_values(rows.by_ref().take(ROWS_PER_STATEMENT), &mut bind);
        sql.push(tail);
        affected += sql
            .build()
            .execute(&mut *conn)
            .await
            .map_err(q(what))?
            .rows_affected();
    }
    Ok(affected)
}

/// A new incident's row, in the order of [`INCIDENTS`].
fn incident_row<'a>(i: &NewIncident<'a>) -> [Value<'a>; 12] {
    let h = i.header();
    [
        i.id.into(),
        i.key.into(),
        i.protocol.into(),
        i.chain.into(),
        i.chain_id.into(),
        h.state.as_str().into(),
        h.severity.as_str().into(),
        h.started_at.into(),
        h.start_block.into(),
        h.ended_at.into(),
        h.end_block.into(),
        i.planned.into(),
    ]
}

/// An evidence row, in the order of [`EVIDENCE`].
fn evidence_row(id: i64, incident: i64, v: &EvidenceValues) -> [Value<'_>; 15] {
    [
        id.into(),
        incident.into(),
        (&v.kind).into(),
        v.chain_id.into(),
        (&v.contract).into(),
        (&v.contract_name).into(),
        (&v.tx_hash).into(),
        v.block_number.into(),
        (&v.block_hash).into(),
        v.block_timestamp.into(),
        v.log_index.into(),
        (&v.event).into(),
        (&v.args).into(),
        (&v.changes).into(),
        (&v.log_hash).into(),
    ]
}

/// A transition row, in the order of [`TRANSITIONS`].
fn transition_row(id: i64, incident: i64, v: &TransitionValues) -> [Value<'_>; 9] {
    [
        id.into(),
        incident.into(),
        (&v.kind).into(),
        (&v.from).into(),
        (&v.to).into(),
        v.at.into(),
        v.block_number.into(),
        (&v.block_hash).into(),
        v.log_index.into(),
    ]
}

/// An update of an incident stored before this batch: row by row, skipping
/// what is already there (a restart or a re-run over the same blocks), and
/// reinstating what a reorg retracted when its blocks are canonical again.
async fn write_existing(
    conn: &mut Conn,
    ids: &mut Ids,
    ledger: &mut Cursor,
    incident: i64,
    u: StoredUpdate<'_>,
) -> Result<()> {
    let update = u.update;
    let mut already = Vec::new();
    let evidence: Vec<(i64, EvidenceValues, String)> = u
        .rows
        .evidence
        .into_iter()
        .map(|(v, canonical)| (take(&mut ids.evidence), v, canonical))
        .collect();
    let rows: Vec<_> = evidence
        .iter()
        .map(|(id, v, _)| evidence_row(*id, incident, v))
        .collect();
    let added = insert_each(conn, &EVIDENCE_AGAIN, rows).await?;
    for ((id, v, canonical), added) in evidence.into_iter().zip(added) {
        if added {
            ledger.push(RecordKind::Evidence, Some(id), None, canonical);
        } else {
            already.push(v);
        }
    }
    let mut reinstated = (Vec::new(), Vec::new());
    for v in &already {
        let sql = "UPDATE evidence SET retracted = FALSE WHERE incident_id = $1 AND kind = $2
                   AND block_hash = $3 AND log_index = $4 AND retracted = TRUE RETURNING id";
        let back: Vec<i64> = sqlx::query_scalar(sql)
            .bind(incident)
            .bind(&v.kind)
            .bind(&v.block_hash)
            .bind(v.log_index)
            .fetch_all(&mut *conn)
            .await
            .map_err(q("reinstate evidence"))?;
        reinstated.0.extend(back);
    }
    let transition = match (&update.transition, u.rows.transition) {
        (Some(t), Some((v, canonical))) => {
            let id = take(&mut ids.transition);
            let added = insert_each(conn, &TRANSITIONS_AGAIN, [transition_row(id, incident, &v)])
                .await?
                .first()
                .is_some_and(|a| *a);
            if added {
                ledger.push(RecordKind::Transition, Some(id), None, canonical);
            } else {
                let sql = "UPDATE transitions SET retracted = FALSE WHERE incident_id = $1
                           AND block_hash = $2 AND log_index = $3 AND retracted = TRUE RETURNING id";
                let back: Vec<i64> = sqlx::query_scalar(sql)
                    .bind(incident)
                    .bind(&v.block_hash)
                    .bind(v.log_index)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(q("reinstate a transition"))?;
                reinstated.1.extend(back);
            }
            Some((t, added))
        }
        _ => None,
    };
    let back = !reinstated.0.is_empty() || !reinstated.1.is_empty();
    if back {
        let chain_id = update.evidence.first().map_or(0, |e| e.chain_id);
        let payload =
            crate::store::ledger::reinstatement(chain_id, incident, &reinstated.0, &reinstated.1);
        ledger.push(
            RecordKind::Reinstatement,
            None,
            Some(payload.clone()),
            payload,
        );
        tracing::warn!(incident = %update.key, evidence = reinstated.0.len(),
            transitions = reinstated.1.len(),
            "evidence a reorg withdrew is canonical again: reinstated");
    }
    let added = transition.is_some_and(|(_, added)| added);
    if !added && !back {
        return Ok(()); // already recorded
    }
    super::rederive(conn, incident).await?;
    if !u.notify {
        return Ok(());
    }
    if back && !reinstated.1.is_empty() {
        super::reinstate_mail(conn, Some(take(&mut ids.outbox)), incident, &update.key).await?;
    } else if let Some((t, true)) = transition {
        super::enqueue_row(
            conn,
            Some(take(&mut ids.outbox)),
            incident,
            &update.key,
            t.kind.as_str(),
        )
        .await?;
    }
    Ok(())
}
