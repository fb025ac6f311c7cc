//! One `run` per SQLite history. Two `haltwatch run` on one file would both
//! follow the chains and both mail every incident; the second refuses to
//! start instead, naming the file and the first one's PID. The lock is an
//! advisory `flock` on `<history>.run-lock`, held for the life of the
//! process (the kernel drops it when the process dies, `kill -9` included),
//! so a stale file never blocks a restart. Read-only commands do not take it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::error::StoreError;

/// Held while this process is the history's one `run`.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

impl RunLock {
    /// Takes the lock of the history at `db`, or says who holds it.
    pub fn acquire(db: &Path) -> Result<RunLock, StoreError> {
        let path = lock_path(db);
        let io = |source: std::io::Error| StoreError::Lock {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(StoreError::InUse {
                    path: db.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(RunLock { _file: file, path })
    }
}

/// `history.db` → `history.db.run-lock`, beside it.
fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".run-lock");
    db.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_history_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("history.db");
        let first = RunLock::acquire(&db).expect("first");
        match RunLock::acquire(&db) {
            Err(StoreError::InUse { path, pid }) => {
                assert_eq!(path, db);
                assert_eq!(pid, Some(std::process::id()));
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        let other = RunLock::acquire(&dir.path().join("other.db"));
        assert!(other.is_ok(), "another history is another lock");
        drop(first);
        assert!(RunLock::acquire(&db).is_ok(), "free again once dropped");
    }
}
