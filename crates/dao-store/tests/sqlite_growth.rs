//! Bounded growth: with automatic compaction on (the default), one million updates to 1,000
//! keys leave the SQLite database small. k8s/kine users' most common complaint about an
//! SQLite-backed cluster is a file that grows to gigabytes.

use std::sync::Arc;

use bytes::Bytes;
use dao_store::{Expect, RangeRequest, SqliteConfig, SqliteStore, Store};

/// The bound this test promises, for the database file and its WAL together.
const BOUND_BYTES: u64 = 40 * 1024 * 1024;

fn size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_updates_to_thousand_keys_stay_bounded() {
    const KEYS: usize = 1000;
    const UPDATES: usize = 1_000_000;
    const WRITERS: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dao.db");
    let store = Arc::new(SqliteStore::open(SqliteConfig::new(&db)).unwrap());
    let value = Bytes::from(vec![b'v'; 256]);
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..UPDATES).step_by(WRITERS) {
                let key = format!("/grow/{:04}", i % KEYS);
                assert!(
                    store
                        .put(&key, value.clone(), Expect::Any)
                        .await
                        .unwrap()
                        .is_applied()
                );
            }
        }));
    }
    let mut peak = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        peak = peak.max(size(&db) + size(&db.with_extension("db-wal")));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let current = store.current_revision().await.unwrap();
    assert!(current >= UPDATES as i64);
    let compacted = store.compacted_revision().await.unwrap();
    assert!(
        current - compacted <= 12_500,
        "history window kept near the configured 10,000 revisions: {current} - {compacted}"
    );
    let live = store.range(RangeRequest::prefix("/grow/")).await.unwrap();
    assert_eq!(live.kvs.len(), KEYS);
    let db_size = size(&db);
    let wal_size = size(&db.with_extension("db-wal"));
    eprintln!(
        "after {UPDATES} updates: db {db_size} bytes, wal {wal_size} bytes, peak {peak} bytes"
    );
    assert!(
        peak <= BOUND_BYTES,
        "database and WAL peaked at {peak} bytes, over {BOUND_BYTES}"
    );
    assert!(db_size + wal_size <= BOUND_BYTES);
    assert!(
        db_size <= 16 * 1024 * 1024,
        "the database file itself stays under 16 MiB: {db_size}"
    );
}
