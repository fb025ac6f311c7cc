//! Writing a committed range's incident updates in one transaction.
//!
//! Updates of incidents that already exist (a restart, a re-run over the
//! same blocks, a resolution in a later range) are written first, row by
//! row with conflict checks, so that nothing is recorded twice. Incidents
//! first seen in this batch (the common case while catching up or
//! backfilling) are then built in memory and written with multi-row
//! INSERTs: their rows cannot conflict with anything. Those statements are
//! built on the calling task while the ones before them run on sqlx's
//! worker thread, and the ledger's keccak chain is computed on a blocking
//! thread meanwhile. Both paths take row ids from one allocator (safe under
//! `BEGIN IMMEDIATE`) and chain one ledger cursor, with the ledger encoding
//! computed from the values as bound; within an incident, rows and ledger
//! records follow the update order.

use std::collections::{HashMap, HashSet};

use sqlx::query_builder::Separated;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::ledger::{Cursor, EvidenceValues, RecordKind, TransitionValues};
use super::{Result, StoreError, StoredUpdate, q};
use crate::model::{IncidentUpdate, ProtocolState, TransitionKind};

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
    // Incidents stored before this batch: row by row, with conflict checks.
    for u in updates {
        if let Some(&id) = existing.get(&u.update.key) {
            write_existing(conn, &mut ids, &mut ledger, id, u).await?;
        }
    }
    let fresh: Vec<&StoredUpdate<'_>> = updates
        .iter()
        .filter(|u| !existing.contains_key(&u.update.key))
        .collect();
    if fresh.is_empty() {
        return ledger.chain().flush(conn).await;
    }
    let loaded = started.elapsed();
    // The statements are built on this task while the ones before them run
    // on sqlx's worker thread.
    let (sink, statements) = futures::channel::mpsc::unbounded();
    let (counts, ()) = futures::try_join!(
        build_new(fresh, ids, ledger, sink),
        execute_all(conn, statements),
    )?;
    tracing::debug!(
        incidents = counts.0,
        evidence = counts.1,
        transitions = counts.2,
        load_us = loaded.as_micros() as u64,
        write_us = (started.elapsed() - loaded).as_micros() as u64,
        "history rows written"
    );
    Ok(())
}

/// One INSERT, ready to run, and what it does (for errors).
pub(super) type Statement = (QueryBuilder<Sqlite>, &'static str);
type Sink = futures::channel::mpsc::UnboundedSender<Statement>;

/// Runs the statements in the order they arrive.
async fn execute_all(
    conn: &mut SqliteConnection,
    mut statements: futures::channel::mpsc::UnboundedReceiver<Statement>,
) -> Result<()> {
    use futures::StreamExt;
    while let Some((mut sql, what)) = statements.next().await {
        sql.build().execute(&mut *conn).await.map_err(q(what))?;
    }
    Ok(())
}

/// Hands statements to [`execute_all`] and lets it start them before
/// building more.
async fn send(sink: &Sink, statements: Vec<Statement>) {
    for s in statements {
        // The receiver lives until the join ends: sending cannot fail
        // while it runs, and after an error nothing more is needed.
        let _ = sink.unbounded_send(s);
    }
    tokio::task::yield_now().await;
}

/// Builds the rows of incidents first seen in this batch as multi-row
/// INSERTs: the incidents with their final headers first (a header needs
/// only the batch's transitions), then, in update order, evidence and
/// transitions as each fills a statement, the mail queue and the ledger.
/// Returns (incidents, evidence, transitions) written.
async fn build_new(
    updates: Vec<&StoredUpdate<'_>>,
    mut ids: Ids,
    mut ledger: Cursor,
    sink: Sink,
) -> Result<(usize, usize, usize)> {
    let mut new: Vec<NewIncident> = Vec::new();
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
                index_of.insert(&update.key, new.len() - 1);
                new.len() - 1
            }
        };
        if let Some(t) = &update.transition {
            new[index]
                .transitions
                .push((t.kind, t.to, t.at as i64, t.block_number as i64));
        }
        at.push(index);
    }
    send(
        &sink,
        statements(
            INCIDENT_COLUMNS,
            "",
            &new,
            "insert incidents",
            bind_incident,
        ),
    )
    .await;

    let mut evidence: Vec<(i64, i64, EvidenceValues)> = Vec::new(); // (id, incident, values)
    let mut transitions: Vec<(i64, i64, TransitionValues)> = Vec::new();
    let mut outbox: Vec<(i64, i64, String, String)> = Vec::new(); // (id, incident, kind, message id)
    let first = (ids.evidence, ids.transition);
    // (incident, kind, block hash, position): the evidence table's unique key.
    let mut seen: HashSet<(
        i64,
        crate::model::EvidenceKind,
        alloy::primitives::B256,
        u64,
    )> = HashSet::new();
    let now = super::now_ms();
    for (u, index) in updates.iter().zip(at) {
        let update = u.update;
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
                values.canonical(&incident.key),
            );
            evidence.push((id, incident.id, values));
        }
        if let Some((t, values)) = transition_values(update) {
            let id = take(&mut ids.transition);
            ledger.push(
                RecordKind::Transition,
                Some(id),
                None,
                values.canonical(&incident.key),
            );
            transitions.push((id, incident.id, values));
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
        if evidence.len() >= ROWS_PER_INSERT {
            send(&sink, evidence_statements(std::mem::take(&mut evidence))).await;
        }
        if transitions.len() >= ROWS_PER_INSERT {
            send(
                &sink,
                transition_statements(std::mem::take(&mut transitions)),
            )
            .await;
        }
    }
    // The ledger's keccak chain is computed on a blocking thread meanwhile.
    let ledger = ledger.chain();
    send(&sink, evidence_statements(evidence)).await;
    send(&sink, transition_statements(transitions)).await;
    send(
        &sink,
        statements(
            OUTBOX_COLUMNS,
            "",
            outbox,
            "enqueue mail",
            |mut b, (id, incident, kind, message_id)| {
                b.push_bind(id)
                    .push_bind(incident)
                    .push_bind(kind)
                    .push_bind(message_id)
                    .push_bind(now)
                    .push_bind(now);
            },
        ),
    )
    .await;
    send(&sink, ledger.statements().await?).await;
    Ok((
        new.len(),
        (ids.evidence - first.0) as usize,
        (ids.transition - first.1) as usize,
    ))
}

fn evidence_statements(rows: Vec<(i64, i64, EvidenceValues)>) -> Vec<Statement> {
    statements(EVIDENCE_COLUMNS, "", rows, "insert evidence", bind_evidence)
}

fn transition_statements(rows: Vec<(i64, i64, TransitionValues)>) -> Vec<Statement> {
    statements(
        TRANSITION_COLUMNS,
        "",
        rows,
        "insert transitions",
        bind_transition,
    )
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

/// Multi-row INSERTs of `rows`, at most [`ROWS_PER_INSERT`] per statement:
/// `head` names the table and columns, `bind` binds one row in that order,
/// `tail` follows the VALUES (a conflict clause). Rows are moved into the
/// statements' arguments, so their text is not copied.
pub(super) fn statements<T>(
    head: &str,
    tail: &str,
    rows: impl IntoIterator<Item = T>,
    what: &'static str,
    mut bind: impl FnMut(Separated<'_, Sqlite, &'static str>, T),
) -> Vec<Statement> {
    let mut rows = rows.into_iter().peekable();
    let mut out = Vec::new();
    while rows.peek().is_some() {
        let mut sql = QueryBuilder::<Sqlite>::new(head);
        sql.push_values(rows.by_ref().take(ROWS_PER_INSERT), &mut bind);
        sql.push(tail);
        out.push((sql, what));
    }
    out
}

/// Runs [`statements`] of `rows` at once; returns the rows affected.
pub(super) async fn insert_rows<T>(
    conn: &mut SqliteConnection,
    head: &str,
    tail: &str,
    rows: impl IntoIterator<Item = T>,
    what: &'static str,
    bind: impl FnMut(Separated<'_, Sqlite, &'static str>, T),
) -> Result<u64> {
    run(conn, statements(head, tail, rows, what, bind)).await
}

/// Runs statements in order; returns the rows affected.
pub(super) async fn run(conn: &mut SqliteConnection, statements: Vec<Statement>) -> Result<u64> {
    let mut affected = 0;
    for (mut sql, what) in statements {
        affected += sql
            .build()
            .execute(&mut *conn)
            .await
            .map_err(q(what))?
            .rows_affected();
    }
    Ok(affected)
}

const INCIDENT_COLUMNS: &str = "INSERT INTO incidents (id, key, protocol, chain, chain_id, state, \
    severity, started_at, start_block, ended_at, end_block, planned) ";
const EVIDENCE_COLUMNS: &str = "INSERT INTO evidence (id, incident_id, kind, chain_id, contract, \
    contract_name, tx_hash, block_number, block_hash, block_timestamp, log_index, event, args, \
    changes, log_hash) ";
const TRANSITION_COLUMNS: &str = "INSERT INTO transitions (id, incident_id, kind, from_state, \
    to_state, at, block_number, block_hash, log_index) ";
const OUTBOX_COLUMNS: &str =
    "INSERT INTO outbox (id, incident_id, kind, message_id, created_ms, next_attempt_ms) ";

fn bind_incident(mut b: Separated<'_, Sqlite, &'static str>, i: &NewIncident) {
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
}

/// (id, incident id, values), in the order of [`EVIDENCE_COLUMNS`].
fn bind_evidence(
    mut b: Separated<'_, Sqlite, &'static str>,
    (id, incident, v): (i64, i64, EvidenceValues),
) {
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
}

/// (id, incident id, values), in the order of [`TRANSITION_COLUMNS`].
fn bind_transition(
    mut b: Separated<'_, Sqlite, &'static str>,
    (id, incident, v): (i64, i64, TransitionValues),
) {
    b.push_bind(id)
        .push_bind(incident)
        .push_bind(v.kind)
        .push_bind(v.from)
        .push_bind(v.to)
        .push_bind(v.at)
        .push_bind(v.block_number)
        .push_bind(v.block_hash)
        .push_bind(v.log_index);
}

/// The stored fields of an update's transition: a transition is identified
/// by the block hash and log index of its first evidence.
fn transition_values(
    update: &IncidentUpdate,
) -> Option<(&crate::model::Transition, TransitionValues)> {
    let t = update.transition.as_ref()?;
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
        block_hash: alloy::primitives::B256::to_string(&block_hash),
        log_index: log_index as i64,
    };
    Some((t, values))
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
        let canonical = v.canonical(&update.key);
        let id = take(&mut ids.evidence);
        let added = insert_rows(
            conn,
            EVIDENCE_COLUMNS,
            " ON CONFLICT (incident_id, kind, block_hash, log_index) DO NOTHING",
            [(id, incident, v)],
            "insert evidence",
            bind_evidence,
        )
        .await?;
        if added == 1 {
            ledger.push(RecordKind::Evidence, Some(id), None, canonical);
        }
    }
    let Some((t, v)) = transition_values(update) else {
        return Ok(());
    };
    let canonical = v.canonical(&update.key);
    let id = take(&mut ids.transition);
    let added = insert_rows(
        conn,
        TRANSITION_COLUMNS,
        " ON CONFLICT (incident_id, block_hash, log_index) DO NOTHING",
        [(id, incident, v)],
        "insert transition",
        bind_transition,
    )
    .await?;
    if added == 0 {
        return Ok(()); // already recorded
    }
    ledger.push(RecordKind::Transition, Some(id), None, canonical);
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
