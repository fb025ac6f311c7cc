//! Many rows written straight through SQLite's C API, on the connection —
//! and so inside the transaction — of a sqlx `SqliteConnection`.
//!
//! sqlx binds every value through an owned argument list, hands each
//! statement to its worker thread and lets SQLite copy every text; for the
//! thousands of rows of a catch-up commit that was most of the store's time
//! (BENCHMARKS.md). Here one prepared single-row INSERT is bound from
//! borrowed values and stepped once per row, on the calling thread.
//!
//! This is the crate's only `unsafe` code. What makes it sound:
//! - the raw handle is used only while sqlx's lock on the connection is
//!   held ([`Bulk`] owns the guard and every [`Insert`] borrows the `Bulk`),
//!   so sqlx's worker never touches the connection meanwhile;
//! - a statement is finalized before the guard is released (the borrow);
//! - text is bound with `SQLITE_STATIC` from a `&str` that outlives the
//!   step, and the bindings are cleared before [`Insert::row`] returns, so
//!   SQLite never holds a pointer past the borrow.

use std::ffi::{CStr, c_int};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;
use sqlx::sqlite::LockedSqliteHandle;

use crate::store::error::{Result, StoreError, q};
use crate::store::value::{Table, Value};

/// Inserts `rows` into `table`: one prepared statement stepped per row, on
/// this thread (see the module's doc).
pub(in crate::store) async fn insert_all<'v, const N: usize>(
    conn: &mut SqliteConnection,
    table: &Table,
    rows: impl IntoIterator<Item = [Value<'v>; N]>,
) -> Result<()> {
    insert(conn, table, rows, |_| ()).await
}

/// Inserts `rows` into `table` one by one; for each, whether it was
/// inserted (`false`: the conflict clause skipped it).
pub(in crate::store) async fn insert_each<'v, const N: usize>(
    conn: &mut SqliteConnection,
    table: &Table,
    rows: impl IntoIterator<Item = [Value<'v>; N]>,
) -> Result<Vec<bool>> {
    let mut added = Vec::new();
    insert(conn, table, rows, |changed| added.push(changed == 1)).await?;
    Ok(added)
}

async fn insert<'v, const N: usize>(
    conn: &mut SqliteConnection,
    table: &Table,
    rows: impl IntoIterator<Item = [Value<'v>; N]>,
    mut changed: impl FnMut(u64),
) -> Result<()> {
    debug_assert_eq!(table.columns, N, "{}", table.what);
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let params = vec!["?"; N].join(", ");
    let sql = format!("{} VALUES ({params}){}", table.head, table.tail);
    let bulk = Bulk::lock(conn).await?;
    blocking(|| {
        let mut insert = bulk.prepare(&sql, table.what)?;
        for row in rows {
            changed(insert.row(&row)?);
        }
        Ok(())
    })
}

/// A connection locked away from sqlx's worker for direct writes.
struct Bulk<'c> {
    db: NonNull<ffi::sqlite3>,
    _guard: LockedSqliteHandle<'c>,
}

impl<'c> Bulk<'c> {
    /// Takes the connection from sqlx's worker until the `Bulk` is dropped.
    pub async fn lock(conn: &'c mut SqliteConnection) -> Result<Self> {
        let mut guard = conn.lock_handle().await.map_err(q("lock the connection"))?;
        Ok(Bulk {
            db: guard.as_raw_handle(),
            _guard: guard,
        })
    }

    /// Prepares `sql`; `what` names it in errors.
    pub fn prepare(&self, sql: &str, what: &'static str) -> Result<Insert<'_>> {
        let mut stmt = ptr::null_mut();
        let len = c_int::try_from(sql.len()).map_err(|_| StoreError::Sqlite {
            what,
            code: ffi::SQLITE_TOOBIG,
            message: "statement too long".into(),
        })?;
        // SAFETY: `db` is a live connection that only this thread uses while
        // the guard is held; `sql` is valid for `len` bytes; SQLite writes
        // the statement pointer (or null) into `stmt`.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                self.db.as_ptr(),
                sql.as_ptr().cast(),
                len,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(error(self.db, what, rc));
        }
        let stmt = NonNull::new(stmt).ok_or_else(|| StoreError::Sqlite {
            what,
            code: ffi::SQLITE_MISUSE,
            message: "empty statement".into(),
        })?;
        Ok(Insert {
            db: self.db,
            stmt,
            what,
            _bulk: PhantomData,
        })
    }
}

fn error(db: NonNull<ffi::sqlite3>, what: &'static str, code: c_int) -> StoreError {
    // SAFETY: `db` is live (see `Bulk`); sqlite3_errmsg returns a
    // NUL-terminated string owned by SQLite, copied here at once.
    let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db.as_ptr())) }
        .to_string_lossy()
        .into_owned();
    StoreError::Sqlite {
        what,
        code,
        message,
    }
}

/// A prepared statement, stepped once per [`Insert::row`].
struct Insert<'b> {
    db: NonNull<ffi::sqlite3>,
    stmt: NonNull<ffi::sqlite3_stmt>,
    what: &'static str,
    _bulk: PhantomData<&'b ()>,
}

impl Insert<'_> {
    /// Binds `values` to the parameters in order, runs the statement and
    /// returns the rows it changed.
    pub fn row(&mut self, values: &[Value<'_>]) -> Result<u64> {
        let result = self.bind_and_step(values);
        // SAFETY: `stmt` is a live statement of this connection. Reset
        // makes it runnable again; clearing drops the borrowed text
        // pointers bound above before their borrow ends.
        unsafe {
            ffi::sqlite3_reset(self.stmt.as_ptr());
            ffi::sqlite3_clear_bindings(self.stmt.as_ptr());
        }
        result
    }

    fn bind_and_step(&mut self, values: &[Value<'_>]) -> Result<u64> {
        let stmt = self.stmt.as_ptr();
        for (i, v) in values.iter().enumerate() {
            let index = c_int::try_from(i + 1).unwrap_or(c_int::MAX);
            // SAFETY: `stmt` is live; text is valid for its length until
            // the bindings are cleared in `row`, and SQLITE_STATIC tells
            // SQLite not to free it.
            let rc = unsafe {
                match *v {
                    Value::Int(Some(n)) => ffi::sqlite3_bind_int64(stmt, index, n),
                    Value::Bool(b) => ffi::sqlite3_bind_int64(stmt, index, i64::from(b)),
                    Value::Int(None) | Value::Text(None) => ffi::sqlite3_bind_null(stmt, index),
                    Value::Text(Some(s)) => ffi::sqlite3_bind_text64(
                        stmt,
                        index,
                        s.as_ptr().cast(),
                        s.len() as u64,
                        ffi::SQLITE_STATIC(),
                        ffi::SQLITE_UTF8 as u8,
                    ),
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(error(self.db, self.what, rc));
            }
        }
        // SAFETY: as above; the connection is used by this thread only.
        let rc = unsafe { ffi::sqlite3_step(stmt) };
        if rc != ffi::SQLITE_DONE {
            return Err(error(self.db, self.what, rc));
        }
        // SAFETY: as above.
        Ok(unsafe { ffi::sqlite3_changes64(self.db.as_ptr()) } as u64)
    }
}

impl Drop for Insert<'_> {
    fn drop(&mut self) {
        // SAFETY: finalized once, while the connection is still locked
        // (the statement borrows its `Bulk`).
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

/// Runs `f`, a stretch of synchronous SQLite work, telling a multi-threaded
/// runtime that this worker is busy so that its other tasks move on.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, Row};

    use super::*;

    async fn connection(dir: &tempfile::TempDir) -> SqliteConnection {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INTEGER)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn
    }

    async fn rows(conn: &mut SqliteConnection) -> Vec<(i64, String, Option<i64>)> {
        sqlx::query("SELECT id, name, n FROM t ORDER BY id")
            .fetch_all(conn)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    #[tokio::test]
    async fn rows_bound_from_borrowed_values_are_stored_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connection(&dir).await;
        {
            let bulk = Bulk::lock(&mut conn).await.unwrap();
            let mut insert = bulk
                .prepare("INSERT INTO t (id, name, n) VALUES (?, ?, ?)", "insert t")
                .unwrap();
            for i in 0..3_i64 {
                // A fresh string per row: the binding must not outlive it.
                let name = format!("row ‘{i}’ \u{202e}");
                let n = (i != 1).then_some(i * 10);
                assert_eq!(
                    insert.row(&[i.into(), (&name).into(), n.into()]).unwrap(),
                    1
                );
            }
        }
        assert_eq!(
            rows(&mut conn).await,
            vec![
                (0, "row ‘0’ \u{202e}".to_string(), Some(0)),
                (1, "row ‘1’ \u{202e}".to_string(), None),
                (2, "row ‘2’ \u{202e}".to_string(), Some(20)),
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_row_names_the_statement_and_the_next_row_still_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connection(&dir).await;
        let bulk = Bulk::lock(&mut conn).await.unwrap();
        let mut insert = bulk
            .prepare("INSERT INTO t (id, name) VALUES (?, ?)", "insert t")
            .unwrap();
        insert.row(&[1.into(), "a".into()]).unwrap();
        let err = insert.row(&[2.into(), "a".into()]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("insert t") && text.contains("UNIQUE constraint failed: t.name"),
            "{text}"
        );
        assert!(
            matches!(err, StoreError::Sqlite { code, .. } if code & 0xff == ffi::SQLITE_CONSTRAINT)
        );
        assert_eq!(insert.row(&[3.into(), "b".into()]).unwrap(), 1);
        // A conflict clause that skips the row reports no change.
        let mut ignore = bulk
            .prepare(
                "INSERT INTO t (id, name) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                "insert t",
            )
            .unwrap();
        assert_eq!(ignore.row(&[4.into(), "b".into()]).unwrap(), 0);
        let err = bulk.prepare("INSERT INTO nowhere VALUES (?)", "insert nowhere");
        assert!(
            matches!(&err, Err(StoreError::Sqlite { what: "insert nowhere", message, .. }) if message.contains("no such table")),
            "{:?}",
            err.err()
        );
    }

    #[tokio::test]
    async fn rows_written_in_a_transaction_roll_back_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connection(&dir).await;
        let mut tx = conn.begin().await.unwrap();
        {
            let bulk = Bulk::lock(&mut tx).await.unwrap();
            let mut insert = bulk
                .prepare("INSERT INTO t (id, name) VALUES (?, ?)", "insert t")
                .unwrap();
            insert.row(&[1.into(), "a".into()]).unwrap();
        }
        // sqlx sees the row inside the transaction ...
        assert_eq!(rows(&mut tx).await.len(), 1);
        tx.rollback().await.unwrap();
        // ... and it is gone with it.
        assert!(rows(&mut conn).await.is_empty());
    }
}
