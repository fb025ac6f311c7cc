//! Store errors that pass: another process holding the write lock longer
//! than the busy timeout, a full disk, an I/O error. The pipeline does not
//! stop for them (a supervisor restarting it would only fail again, and
//! re-send what was not yet marked sent): the operation is retried with
//! backoff until it lands, and meanwhile the problem is reported (to
//! `/readyz` and a metric) through the caller's `report`.

use std::future::Future;
use std::time::Duration;

use super::error::StoreError;
use crate::telemetry;

/// The first wait after a failure; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// An operation that has not landed after this long is reported while it waits.
const SLOW_AFTER: Duration = Duration::from_secs(2);

impl StoreError {
    /// True for errors that may pass by themselves: busy or locked, a full
    /// disk, I/O errors, no connection free in time.
    pub fn is_transient(&self) -> bool {
        // SQLite's primary result codes (the low byte of extended ones).
        const BUSY: i32 = 5;
        const LOCKED: i32 = 6;
        const IOERR: i32 = 10;
        const FULL: i32 = 13;
        const CANTOPEN: i32 = 14;
        let passes = |code: i32| matches!(code & 0xff, BUSY | LOCKED | IOERR | FULL | CANTOPEN);
        let sqlx_passes = |e: &sqlx::Error| match e {
            sqlx::Error::Database(d) => {
                match d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    Some(pg) => pg_passes(pg.code()),
                    None => d
                        .code()
                        .and_then(|c| c.parse::<i32>().ok())
                        .is_some_and(passes),
                }
            }
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
            _ => false,
        };
        match self {
            StoreError::Query { source, .. } => sqlx_passes(source),
            StoreError::Sqlite { code, .. } => passes(*code),
            _ => false,
        }
    }
}

/// PostgreSQL's SQLSTATEs that pass: a lost connection (08), no resources
/// (53: disk full, out of memory, too many connections), the server
/// shutting down or restarting (57P), an I/O error (58), and a
/// serialization failure or deadlock (40001, 40P01).
fn pg_passes(code: &str) -> bool {
    ["08", "53", "57P", "58", "40001", "40P01"]
        .iter()
        .any(|prefix| code.starts_with(prefix))
}

/// Runs `op` until it succeeds or fails for good. Each transient failure is
/// counted (`haltwatch_store_unavailable_total{operation}`), logged, and passed
/// to `report` as a reason, as is an attempt still waiting after
/// 2 s; `report(None)` once it lands after either.
pub async fn until_stored<T, F, Fut>(
    operation: &'static str,
    report: impl Fn(Option<String>),
    mut op: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut failed = false;
    loop {
        // SQLite waits for a lock for up to its busy timeout before it
        // fails: say so while it does.
        let attempt = op();
        tokio::pin!(attempt);
        let result = tokio::select! {
            r = &mut attempt => r,
            _ = tokio::time::sleep(SLOW_AFTER) => {
                telemetry::store_unavailable(operation);
                report(Some(format!(
                    "{operation}: waiting over {} s for the store (another process may hold its write lock, or the disk is slow)",
                    SLOW_AFTER.as_secs()
                )));
                failed = true;
                attempt.await
            }
        };
        match result {
            Ok(v) => {
                if failed {
                    report(None);
                    tracing::info!(operation, "the store answers again");
                }
                return Ok(v);
            }
            Err(e) if e.is_transient() => {
                let reason = crate::error_text::with_sources(&e);
                telemetry::store_unavailable(operation);
                tracing::warn!(operation, error = %reason, retry_in_ms = backoff.as_millis() as u64,
                    "store unavailable; retrying, nothing is lost");
                report(Some(format!("{operation}: {reason}")));
                failed = true;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn sqlite(code: i32) -> StoreError {
        StoreError::Sqlite {
            what: "insert",
            code,
            message: "m".into(),
        }
    }

    #[test]
    fn busy_locked_full_and_io_errors_pass_and_others_do_not() {
        for code in [5, 6, 10, 13, 14, 261, 517, 3338] {
            assert!(sqlite(code).is_transient(), "{code}");
        }
        for code in [1, 11, 19, 26] {
            assert!(!sqlite(code).is_transient(), "{code}");
        }
        let corrupt = StoreError::Corrupt {
            what: "x",
            value: "y".into(),
        };
        assert!(!corrupt.is_transient());
    }

    #[test]
    fn postgres_connection_resource_and_shutdown_errors_pass_and_others_do_not() {
        for code in [
            "08006", "08001", "53100", "53300", "57P01", "57P03", "58030", "40001", "40P01",
        ] {
            assert!(pg_passes(code), "{code}");
        }
        // Unique and foreign-key violations, bad SQL, a lock not granted.
        for code in ["23505", "23503", "42601", "55P03", "22P02"] {
            assert!(!pg_passes(code), "{code}");
        }
        let fenced = StoreError::Fenced {
            chain_id: 1,
            source: crate::lease::LeaseError::NotHeld {
                chain_id: 1,
                holder: "h".into(),
            },
        };
        assert!(!fenced.is_transient(), "a refused write is never retried");
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_error_is_retried_and_reported_until_it_lands() {
        let reports = Mutex::new(Vec::new());
        let mut left = 3;
        let out = until_stored(
            "commit",
            |r| reports.lock().unwrap().push(r),
            || {
                left -= 1;
                let result = if left > 0 { Err(sqlite(13)) } else { Ok(7) };
                async move { result }
            },
        )
        .await;
        assert_eq!(out.unwrap(), 7);
        let reports = reports.into_inner().unwrap();
        assert_eq!(reports.len(), 3, "{reports:?}");
        assert!(reports[0].as_deref().unwrap().starts_with("commit: "));
        assert_eq!(reports[2], None, "cleared once it landed");
        // A permanent error is returned at once.
        let e = until_stored("commit", |_| {}, || async { Err::<(), _>(sqlite(19)) }).await;
        assert!(e.is_err());
    }
}
