//! Writing a committed range's incident updates in one transaction.
//!
//! Incidents first seen in this batch (the common case while following the
//! head, catching up or backfilling) are built in memory and written with
//! multi-row INSERTs: their rows cannot conflict with anything. Updates of
//! incidents that already exist (a restart, a re-run over the same blocks)
//! are written row by row with conflict checks, so that nothing is recorded
//! twice. Both paths take row ids from one allocator (safe under
//! `BEGIN IMMEDIATE`) and chain the same ledger cursor in update order, with
//! the ledger encoding computed from the values as bound.

use std::collections::{HashMap, HashSet};

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::ledger::{Cursor, EvidenceValues, RecordKind, TransitionValues};
use super::{Result, StoreError, StoredUpdate, q};
use crate::model::{ProtocolState, TransitionKind};

/// Rows per multi-row INSERT (well under SQLite's 32,766 bound parameters).
const ROWS_PER_INSERT: usize = 500;

/// The next free id of each table, read once per transaction.
struct Ids {
    incident: i64,
    evidence: i64,
    transition: i64,
    outbox: i64,
}

impl Ids {
    async fn load(conn: &mut SqliteConnection) -> Result<Self> {
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
struct NewIncident {
    id: i64,
    key: String,
    protocol: String,
    chain: String,
    chain_id: i64,
    planned: bool,
    /// (kind, to, at, block) of its transitions, in order.
    transitions: Vec<(TransitionKind, ProtocolState, i64, i64)>,
    mails: i64,
}

impl NewIncident {
    /// The header, derived from the transitions exactly as `rederive` does.
    fn header(
        &self,
    ) -> (
        &'static str,
        &'static str,
        i64,
        i64,
        Option<i64>,
        Option<i64>,
    ) {
        let severity = self
            .transitions
            .iter()
            .map(|t| t.1)
            .fold(ProtocolState::Degraded, ProtocolState::max);
        let (first, last) = (
            self.transitions[0],
            self.transitions[self.transitions.len() - 1],
        );
        if last.0 == TransitionKind::Resolved {
            (
                "resolved",
                severity.as_str(),
                first.2,
                first.3,
                Some(last.2),
                Some(last.3),
            )
        } else {
            ("open", severity.as_str(), first.2, first.3, None, None)
        }
    }
}

/// Writes the updates of one batch; the caller owns the transaction.
pub(super) async fn write_updates(
    conn: &mut SqliteConnection,
    updates: &[StoredUpdate<'_>],
) -> Result<()> {
    let started = std::time::Instant::now();
    let mut ids = Ids::load(conn).await?;
    let mut ledger = Cursor::load(conn).await?;
    let existing = existing_incidents(conn, updates).await?;
    let loaded = started.elapsed();

    let mut new: Vec<NewIncident> = Vec::new();
    let mut new_index: HashMap<String, usize> = HashMap::new();
    let mut evidence: Vec<(i64, i64, EvidenceValues)> = Vec::new(); // (id, incident, values)
    let mut transitions: Vec<(i64, i64, TransitionValues)> = Vec::new();
    let mut outbox: Vec<(i64, i64, String, String)> = Vec::new(); // (id, incident, kind, message id)
    // (incident, kind, block hash, position): the evidence table's unique key.
    let mut seen: HashSet<(
        i64,
        crate::model::EvidenceKind,
        alloy::primitives::B256,
        u64,
    )> = HashSet::new();
    let now = super::now_ms();

    for u in updates {
        let update = u.update;
        if let Some(&id) = existing.get(&update.key) {
            write_existing(conn, &mut ids, &mut ledger, id, u).await?;
            continue;
        }
        let index = match new_index.get(&update.key) {
            Some(&i) => i,
            None => {
                let Some(t) = update
                    .transition
                    .as_ref()
                    .filter(|t| t.kind == TransitionKind::Opened)
                else {
                    return Err(StoreError::UnknownIncident {
                        key: update.key.clone(),
                    });
                };
                let _ = t;
                new.push(NewIncident {
                    id: take(&mut ids.incident),
                    key: update.key.clone(),
                    protocol: u.protocol.to_string(),
                    chain: u.chain.to_string(),
                    chain_id: update.evidence.first().map_or(0, |e| e.chain_id as i64),
                    planned: u.planned,
                    transitions: Vec::new(),
                    mails: 0,
                });
                new_index.insert(update.key.clone(), new.len() - 1);
                new.len() - 1
            }
        };
        let incident = &mut new[index];
        for e in &update.evidence {
            if !seen.insert((incident.id, e.kind, e.block_hash, e.log_index)) {
                continue;
            }
            let values = EvidenceValues::from_evidence(e);
            let id = take(&mut ids.evidence);
            ledger.push(
                RecordKind::Evidence,
                Some(id),
                None,
                &values.canonical(&incident.key),
            );
            evidence.push((id, incident.id, values));
        }
        if let Some(t) = &update.transition {
            let (block_hash, log_index) = update
                .evidence
                .first()
                .map_or((Default::default(), 0), |e| (e.block_hash, e.log_index));
            let values = TransitionValues {
                kind: t.kind.as_str().into(),
                from: t.from.as_str().into(),
                to: t.to.as_str().into(),
                at: t.at as i64,
                block_number: t.block_number as i64,
                block_hash: block_hash.to_string(),
                log_index: log_index as i64,
            };
            let id = take(&mut ids.transition);
            ledger.push(
                RecordKind::Transition,
                Some(id),
                None,
                &values.canonical(&incident.key),
            );
            transitions.push((id, incident.id, values));
            incident
                .transitions
                .push((t.kind, t.to, t.at as i64, t.block_number as i64));
            if u.notify && !incident.planned {
                let message_id = format!("{}.{}", incident.key, incident.mails);
                incident.mails += 1;
                outbox.push((
                    take(&mut ids.outbox),
                    incident.id,
                    t.kind.as_str().into(),
                    message_id,
                ));
            }
        }
    }

    let built = started.elapsed();
    let counts = (new.len(), evidence.len(), transitions.len());
    insert_incidents(conn, &new).await?;
    insert_evidence(conn, evidence).await?;
    insert_transitions(conn, transitions).await?;
    insert_outbox(conn, outbox, now).await?;
    ledger.flush(conn).await?;
    tracing::debug!(
        incidents = counts.0,
        evidence = counts.1,
        transitions = counts.2,
        load_us = loaded.as_micros() as u64,
        build_us = (built - loaded).as_micros() as u64,
        insert_us = (started.elapsed() - built).as_micros() as u64,
        "history rows written"
    );
    Ok(())
}

/// Ids of the incidents of this batch that are already stored.
async fn existing_incidents(
    conn: &mut SqliteConnection,
    updates: &[StoredUpdate<'_>],
) -> Result<HashMap<String, i64>> {
    let keys: Vec<&str> = updates
        .iter()
        .map(|u| u.update.key.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut out = HashMap::new();
    for chunk in keys.chunks(ROWS_PER_INSERT) {
        let mut sql = QueryBuilder::<Sqlite>::new("SELECT key, id FROM incidents WHERE key IN (");
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

/// `rows` in owned chunks of at most [`ROWS_PER_INSERT`].
fn chunks<T>(rows: Vec<T>) -> impl Iterator<Item = Vec<T>> {
    let mut rows = rows.into_iter().peekable();
    std::iter::from_fn(move || {
        rows.peek()?;
        Some(rows.by_ref().take(ROWS_PER_INSERT).collect())
    })
}

async fn insert_incidents(conn: &mut SqliteConnection, new: &[NewIncident]) -> Result<()> {
    for chunk in new.chunks(ROWS_PER_INSERT) {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "INSERT INTO incidents (id, key, protocol, chain, chain_id, state, severity, started_at,
                start_block, ended_at, end_block, planned) ",
        );
        sql.push_values(chunk, |mut b, i| {
            let (state, severity, started_at, start_block, ended_at, end_block) = i.header();
            b.push_bind(i.id)
                .push_bind(i.key.clone())
                .push_bind(i.protocol.clone())
                .push_bind(i.chain.clone())
                .push_bind(i.chain_id)
                .push_bind(state)
                .push_bind(severity)
                .push_bind(started_at)
                .push_bind(start_block)
                .push_bind(ended_at)
                .push_bind(end_block)
                .push_bind(i.planned);
        });
        sql.build()
            .execute(&mut *conn)
            .await
            .map_err(q("insert incidents"))?;
    }
    Ok(())
}

/// Rows are moved into the statement's arguments: no copies of their text.
async fn insert_evidence(
    conn: &mut SqliteConnection,
    rows: Vec<(i64, i64, EvidenceValues)>,
) -> Result<()> {
    for chunk in chunks(rows) {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "INSERT INTO evidence (id, incident_id, kind, chain_id, contract, contract_name, tx_hash,
                block_number, block_hash, block_timestamp, log_index, event, args, changes, log_hash) ",
        );
        sql.push_values(chunk, |mut b, (id, incident, v)| {
            b.push_bind(id)
                .push_bind(incident)
                .push_bind(v.kind)
                .push_bind(v.chain_id)
                .push_bind(v.contract)
                .push_bind(v.contract_name)
                .push_bind(v.tx_hash)
                .push_bind(v.block_number)
                .push_bind(v.block_hash)
                .push_bind(v.block_timestamp)
                .push_bind(v.log_index)
                .push_bind(v.event)
                .push_bind(v.args)
                .push_bind(v.changes)
                .push_bind(v.log_hash);
        });
        sql.build()
            .execute(&mut *conn)
            .await
            .map_err(q("insert evidence"))?;
    }
    Ok(())
}

async fn insert_transitions(
    conn: &mut SqliteConnection,
    rows: Vec<(i64, i64, TransitionValues)>,
) -> Result<()> {
    for chunk in chunks(rows) {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "INSERT INTO transitions (id, incident_id, kind, from_state, to_state, at, block_number,
                block_hash, log_index) ",
        );
        sql.push_values(chunk, |mut b, (id, incident, v)| {
            b.push_bind(id)
                .push_bind(incident)
                .push_bind(v.kind)
                .push_bind(v.from)
                .push_bind(v.to)
                .push_bind(v.at)
                .push_bind(v.block_number)
                .push_bind(v.block_hash)
                .push_bind(v.log_index);
        });
        sql.build()
            .execute(&mut *conn)
            .await
            .map_err(q("insert transitions"))?;
    }
    Ok(())
}

async fn insert_outbox(
    conn: &mut SqliteConnection,
    rows: Vec<(i64, i64, String, String)>,
    now: i64,
) -> Result<()> {
    for chunk in chunks(rows) {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "INSERT INTO outbox (id, incident_id, kind, message_id, created_ms, next_attempt_ms) ",
        );
        sql.push_values(chunk, |mut b, (id, incident, kind, message_id)| {
            b.push_bind(id)
                .push_bind(incident)
                .push_bind(kind)
                .push_bind(message_id)
                .push_bind(now)
                .push_bind(now);
        });
        sql.build()
            .execute(&mut *conn)
            .await
            .map_err(q("enqueue mail"))?;
    }
    Ok(())
}

/// An update of an incident stored before this batch: row by row, skipping
/// what is already there (a restart or a re-run over the same blocks).
async fn write_existing(
    conn: &mut SqliteConnection,
    ids: &mut Ids,
    ledger: &mut Cursor,
    incident: i64,
    u: &StoredUpdate<'_>,
) -> Result<()> {
    let update = u.update;
    for e in &update.evidence {
        let v = EvidenceValues::from_evidence(e);
        let id = take(&mut ids.evidence);
        let done = sqlx::query(
            "INSERT INTO evidence (id, incident_id, kind, chain_id, contract, contract_name, tx_hash,
                block_number, block_hash, block_timestamp, log_index, event, args, changes, log_hash)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (incident_id, kind, block_hash, log_index) DO NOTHING",
        )
        .bind(id)
        .bind(incident)
        .bind(&v.kind)
        .bind(v.chain_id)
        .bind(&v.contract)
        .bind(&v.contract_name)
        .bind(&v.tx_hash)
        .bind(v.block_number)
        .bind(&v.block_hash)
        .bind(v.block_timestamp)
        .bind(v.log_index)
        .bind(&v.event)
        .bind(&v.args)
        .bind(&v.changes)
        .bind(&v.log_hash)
        .execute(&mut *conn)
        .await
        .map_err(q("insert evidence"))?;
        if done.rows_affected() == 1 {
            ledger.push(
                RecordKind::Evidence,
                Some(id),
                None,
                &v.canonical(&update.key),
            );
        }
    }
    let Some(t) = &update.transition else {
        return Ok(());
    };
    let (block_hash, log_index) = update
        .evidence
        .first()
        .map_or((Default::default(), 0), |e| (e.block_hash, e.log_index));
    let v = TransitionValues {
        kind: t.kind.as_str().into(),
        from: t.from.as_str().into(),
        to: t.to.as_str().into(),
        at: t.at as i64,
        block_number: t.block_number as i64,
        block_hash: alloy::primitives::B256::to_string(&block_hash),
        log_index: log_index as i64,
    };
    let id = take(&mut ids.transition);
    let done = sqlx::query(
        "INSERT INTO transitions (id, incident_id, kind, from_state, to_state, at, block_number, block_hash, log_index)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (incident_id, block_hash, log_index) DO NOTHING",
    )
    .bind(id)
    .bind(incident)
    .bind(&v.kind)
    .bind(&v.from)
    .bind(&v.to)
    .bind(v.at)
    .bind(v.block_number)
    .bind(&v.block_hash)
    .bind(v.log_index)
    .execute(&mut *conn)
    .await
    .map_err(q("insert transition"))?;
    if done.rows_affected() == 0 {
        return Ok(()); // already recorded
    }
    ledger.push(
        RecordKind::Transition,
        Some(id),
        None,
        &v.canonical(&update.key),
    );
    super::rederive(conn, incident).await?;
    if u.notify {
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
