//! Several processes open one SQLite history at once: `run` starting while
//! an auditor runs `incidents list`, or two readers and a writer. Each
//! store here has its own connections, so SQLite's real file locks decide.

use haltwatch::config::StoreConfig;
use haltwatch::store::{IncidentFilter, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_store_opened_by_several_at_once_migrates_and_answers_every_time() {
    for attempt in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            sqlite_path: dir.path().join("history.db"),
        };
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let config = config.clone();
                tokio::spawn(async move {
                    let store = Store::open(&config).await?;
                    store.list(&IncidentFilter::default()).await.map(drop)
                })
            })
            .collect();
        for open in opens {
            if let Err(e) = open.await.unwrap() {
                panic!(
                    "attempt {attempt}: {e} ({:?})",
                    std::error::Error::source(&e)
                );
            }
        }
    }
}
