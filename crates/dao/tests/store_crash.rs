//! Durability: SIGKILL a `dao` process that writes as fast as it can, restart, and find every
//! acknowledged write whole. Needs the etcd-server package for the etcd case.

mod support;

use std::time::Duration;

use dao_store::testing::EtcdServer;
use dao_store::{EtcdConfig, EtcdStore, SqliteConfig, SqliteStore};
use support::{Writer, verify_after_crash};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_sigkill_mid_write() {
    let dir = tempfile::tempdir().unwrap();
    let args = vec![
        "--store".to_owned(),
        "sqlite".to_owned(),
        "--data-dir".to_owned(),
        dir.path().display().to_string(),
    ];
    let mut all_acks = Vec::new();
    // Three crashes in a row; each restart recovers the previous crash's state first.
    for round in 0..3 {
        let writer = Writer::start(&args);
        writer.wait_for_acks(2000 * (round + 1), Duration::from_secs(60));
        let (acks, _) = writer.kill();
        all_acks.extend(acks);
        let store = SqliteStore::open(SqliteConfig::new(dir.path().join("dao.db")))
            .expect("reopen after SIGKILL");
        verify_after_crash(&store, &all_acks).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_backend_survives_sigkill_mid_write() {
    let etcd = EtcdServer::start().expect("start etcd (needs etcd-server)");
    let args = vec![
        "--store".to_owned(),
        "etcd".to_owned(),
        "--etcd-endpoints".to_owned(),
        etcd.endpoint(),
    ];
    let writer = Writer::start(&args);
    writer.wait_for_acks(2000, Duration::from_secs(60));
    let (acks, _) = writer.kill();
    let store = EtcdStore::connect(EtcdConfig::new(vec![etcd.endpoint()]))
        .await
        .unwrap();
    verify_after_crash(&store, &acks).await;
}
