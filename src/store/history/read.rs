//! Reading incidents back: lists, pages and one incident, each with its
//! transitions and evidence. A page costs four queries whatever its length
//! (the matching ids, then the incidents, their transitions and their
//! evidence by id), so a status page over thousands of incidents is not
//! thousands of round trips. Reads use the store's read-only connections,
//! so readers never wait for, or hold up, the writer.

use super::*;

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

use alloy::primitives::Address;

use crate::model::EvidenceKind;

impl Store {
    /// Incidents matching `filter`, newest first, with transitions and evidence.
    pub async fn list(&self, filter: &IncidentFilter) -> Result<Vec<IncidentRecord>> {
        Ok(self.page(filter, 0, usize::MAX).await?.0)
    }

    /// One page of [`Store::list`]: `limit` incidents from `offset`, and how many match in all.
    pub async fn page(
        &self,
        filter: &IncidentFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<IncidentRecord>, usize)> {
        let ids = self.ids(filter).await?;
        let wanted: Vec<i64> = ids.iter().skip(offset).take(limit).copied().collect();
        Ok((self.load(&wanted).await?, ids.len()))
    }

    /// One incident with its transitions and evidence.
    pub async fn incident(&self, id: i64) -> Result<Option<IncidentRecord>> {
        Ok(self.load(&[id]).await?.pop())
    }

    async fn ids(&self, filter: &IncidentFilter) -> Result<Vec<i64>> {
        let (open_only, include_withdrawn) = match filter.state {
            Some(_) => (false, true),
            None => (filter.open_only, filter.include_withdrawn),
        };
        sqlx::query_scalar(
            "SELECT id FROM incidents
             WHERE ($1 IS NULL OR protocol = $1) AND ($2 IS NULL OR chain = $2)
               AND (NOT $3 OR state = 'open') AND ($4 OR state != 'withdrawn')
               AND ($5 IS NULL OR started_at < $5) AND ($6 IS NULL OR ended_at IS NULL OR ended_at > $6)
               AND ($7 IS NULL OR state = $7)
             ORDER BY started_at DESC, id DESC",
        )
        .bind(&filter.protocol)
        .bind(&filter.chain)
        .bind(open_only)
        .bind(include_withdrawn)
        .bind(filter.until.map(|t| t as i64))
        .bind(filter.since.map(|t| t as i64))
        .bind(filter.state.map(IncidentState::as_str))
        .fetch_all(&self.reads)
        .await
        .map_err(q("list incidents"))
    }

    /// The incidents `ids`, in that order (missing ones left out), in
    /// three queries: incidents, transitions, evidence.
    async fn load(&self, ids: &[i64]) -> Result<Vec<IncidentRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One bound parameter whatever the count: a JSON array of ids.
        let set = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, key, protocol, chain, chain_id, state, severity, started_at, ended_at,
                    start_block, end_block, planned
             FROM incidents WHERE id IN ({IDS_IN})"
        )))
        .bind(&set)
        .fetch_all(&self.reads)
        .await
        .map_err(q("read incidents"))?;
        let mut transitions: HashMap<i64, Vec<TransitionRecord>> = HashMap::new();
        for r in sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT incident_id, kind, from_state, to_state, at, block_number, block_hash, retracted
             FROM transitions WHERE incident_id IN ({IDS_IN}) ORDER BY id"
        )))
        .bind(&set)
        .fetch_all(&self.reads)
        .await
        .map_err(q("read transitions"))?
        {
            transitions
                .entry(r.get(0))
                .or_default()
                .push(TransitionRecord {
                    kind: parse_kind(&r.get::<String, _>(1))?,
                    from: parse_state(&r.get::<String, _>(2))?,
                    to: parse_state(&r.get::<String, _>(3))?,
                    at: r.get::<i64, _>(4) as u64,
                    block_number: r.get::<i64, _>(5) as u64,
                    block_hash: parse_b256(&r.get::<String, _>(6))?,
                    retracted: r.get::<bool, _>(7),
                });
        }
        let mut evidence: HashMap<i64, Vec<EvidenceRecord>> = HashMap::new();
        for r in sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT incident_id, chain_id, contract, contract_name, tx_hash, block_number,
                    block_hash, block_timestamp, log_index, event, args, changes, retracted,
                    log_hash, kind
             FROM evidence WHERE incident_id IN ({IDS_IN}) ORDER BY id"
        )))
        .bind(&set)
        .fetch_all(&self.reads)
        .await
        .map_err(q("read evidence"))?
        {
            evidence
                .entry(r.get(0))
                .or_default()
                .push(evidence_row(&r)?);
        }
        let mut by_id = HashMap::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.get(0);
            let state = row.get::<String, _>(5);
            let state = IncidentState::parse(&state).ok_or(StoreError::Corrupt {
                what: "incident state",
                value: state,
            })?;
            let evidence = evidence.remove(&id).unwrap_or_default();
            let scopes: BTreeSet<String> = evidence
                .iter()
                .filter(|e| !e.retracted || state == IncidentState::Withdrawn)
                .flat_map(|e| &e.changes)
                .filter(|c| c.halted)
                .map(|c| c.scope.to_string())
                .collect();
            let started_at = row.get::<i64, _>(7) as u64;
            let ended_at = row.get::<Option<i64>, _>(8).map(|v| v as u64);
            by_id.insert(
                id,
                IncidentRecord {
                    id,
                    key: row.get(1),
                    protocol: row.get(2),
                    chain: row.get(3),
                    chain_id: row.get::<i64, _>(4) as u64,
                    state,
                    severity: parse_state(&row.get::<String, _>(6))?,
                    started_at,
                    ended_at,
                    duration_seconds: ended_at.map(|e| e.saturating_sub(started_at)),
                    start_block: row.get::<i64, _>(9) as u64,
                    end_block: row.get::<Option<i64>, _>(10).map(|v| v as u64),
                    planned: row.get::<bool, _>(11),
                    scopes: scopes.into_iter().collect(),
                    transitions: transitions.remove(&id).unwrap_or_default(),
                    evidence,
                },
            );
        }
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }
}

/// One evidence row (columns from `incident_id`, which is skipped).
fn evidence_row(r: &DbRow) -> Result<EvidenceRecord> {
    Ok(EvidenceRecord {
        chain_id: r.get::<i64, _>(1) as u64,
        contract: Address::from_str(&r.get::<String, _>(2)).map_err(|_| StoreError::Corrupt {
            what: "contract address",
            value: r.get(2),
        })?,
        contract_name: r.get(3),
        tx_hash: parse_b256(&r.get::<String, _>(4))?,
        block_number: r.get::<i64, _>(5) as u64,
        block_hash: parse_b256(&r.get::<String, _>(6))?,
        block_time: r.get::<i64, _>(7) as u64,
        log_index: r.get::<i64, _>(8) as u64,
        event: r.get(9),
        args: parse_json("evidence args", &r.get::<String, _>(10))?,
        changes: parse_json("evidence changes", &r.get::<String, _>(11))?,
        retracted: r.get::<bool, _>(12),
        log_hash: parse_b256(&r.get::<String, _>(13))?,
        kind: EvidenceKind::parse(&r.get::<String, _>(14)).ok_or_else(|| StoreError::Corrupt {
            what: "evidence kind",
            value: r.get(14),
        })?,
    })
}
