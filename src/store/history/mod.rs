//! The history's reads and writes, written once and compiled for each
//! backend: `sqlite/` and `postgres/` each include this folder as their own
//! module, with their own `Store`, connection type, transaction start and
//! bulk insert in scope (the `use super::…` below). The SQL here is the
//! subset both databases speak: `$n` parameters, `TRUE`/`FALSE`, `ON
//! CONFLICT`, `RETURNING`, `CASE`; what differs is the backend's own
//! (`IDS_IN`, the bulk insert, opening and migrating).

mod anchors;
mod commit;
mod coverage;
mod gaps;
mod ledger;
mod notices;
mod outbox;
mod read;
mod revert;
mod verify;
mod verify_incidents;
mod write;

use sqlx::{QueryBuilder, Row, Transaction};

use super::{Conn, Db, DbRow, IDS_IN, SKIP_LOCKED, Store, insert_all, insert_each};
use crate::model::BlockRef;
use crate::store::codec::{now_ms, parse_b256, parse_json, parse_kind, parse_state, seconds};
use crate::store::error::{Result, StoreError, q};
use crate::store::header::{self, Header, Step};
use crate::store::ledger::{
    Cursor, EvidenceValues, HistoryReport, RecordKind, Tamper, TransitionValues,
};
use crate::store::records::*;
use crate::store::value::{Table, Value};
use gaps::insert_gap;
use outbox::enqueue_row;
use revert::{rederive, reinstate_mail};

impl Store {
    /// Answers a trivial query: for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(q("ping"))
            .map(drop)
    }
}
