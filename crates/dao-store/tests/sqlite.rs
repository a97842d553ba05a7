//! The conformance suite against the embedded SQLite backend.

use std::sync::Arc;

use dao_store::conformance::Harness;
use dao_store::{SqliteConfig, SqliteStore};

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(SqliteConfig::new(dir.path().join("dao.db"))).unwrap();
    Harness {
        store: Arc::new(store),
        guard: Box::new(dir),
    }
}

dao_store::conformance_tests!(harness());
