//! Faults and bad input around the store: a corrupt, read-only or locked database file, etcd
//! unreachable at start, etcd stopped and restarted mid-run. Each must give a clear error or
//! a logged retry, never a panic, and never a half-applied write.
//! Needs the etcd-server package; the read-only case runs the check as `nobody` through
//! setpriv (util-linux) when the test runs as root, since root ignores file modes.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

use dao_store::testing::EtcdServer;
use dao_store::{EtcdConfig, EtcdStore, Expect, Store, WatchMessage, WatchRequest};
use futures::StreamExt;
use support::{Writer, dao, verify_after_crash};

fn store_open(args: &[&str]) -> Output {
    dao()
        .args(["debug", "store-open"])
        .args(args)
        .output()
        .expect("run dao")
}

fn assert_clean_failure(out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr:\n{stderr}");
    assert!(
        stderr.contains(expected),
        "stderr should mention {expected:?}:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "no panic:\n{stderr}");
}

#[test]
fn corrupt_database_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(dir.path().join("dao.db"), &garbage).unwrap();
    let out = store_open(&["--data-dir", dir.path().to_str().unwrap()]);
    assert_clean_failure(&out, "file is not a database");
    assert_eq!(
        std::fs::read(dir.path().join("dao.db")).unwrap(),
        garbage,
        "the file is left untouched"
    );
}

#[test]
fn read_only_database_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    assert!(store_open(&["--data-dir", path]).status.success());
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(
        dir.path().join("dao.db"),
        std::fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    let _ = std::fs::remove_file(dir.path().join("dao.lock"));
    let root = String::from_utf8(
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
        == "0";
    let out = if root {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_dao"))
            .args(["debug", "store-open", "--data-dir", path])
            .output()
            .expect("setpriv (util-linux)")
    } else {
        store_open(&["--data-dir", path])
    };
    assert_clean_failure(&out, "readonly database");
}

#[test]
fn second_process_on_the_same_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().display().to_string();
    let writer = Writer::start(&["--data-dir".to_owned(), path.clone()]);
    writer.wait_for_acks(100, Duration::from_secs(30));
    let out = store_open(&["--data-dir", &path]);
    assert_clean_failure(&out, "locked by another process");
    let (acks, _) = writer.kill();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store =
        dao_store::SqliteStore::open(dao_store::SqliteConfig::new(dir.path().join("dao.db")))
            .unwrap();
    rt.block_on(verify_after_crash(&store, &acks));
}

#[test]
fn etcd_unreachable_at_start_retries_then_fails_clearly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = store_open(&[
        "--store",
        "etcd",
        "--etcd-endpoints",
        &endpoint,
        "--etcd-startup-timeout",
        "3",
    ]);
    assert_clean_failure(&out, "no answer from etcd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.matches("etcd not reachable; retrying").count() >= 2,
        "retries are logged:\n{stderr}"
    );
}

#[test]
fn etcd_that_comes_up_late_is_waited_for() {
    let mut etcd = EtcdServer::start().expect("start etcd (needs etcd-server)");
    etcd.stop();
    let child = dao()
        .args([
            "debug",
            "store-open",
            "--store",
            "etcd",
            "--etcd-endpoints",
            &etcd.endpoint(),
            "--etcd-startup-timeout",
            "60",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    etcd.restart().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "connects once etcd is up:\n{stderr}");
    assert!(
        stderr.contains("etcd not reachable; retrying"),
        "the wait is logged:\n{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("revision "));
}

#[test]
fn etcd_restart_mid_run_loses_no_acknowledged_write() {
    let mut etcd = EtcdServer::start().expect("start etcd (needs etcd-server)");
    let writer = Writer::start(&[
        "--store".to_owned(),
        "etcd".to_owned(),
        "--etcd-endpoints".to_owned(),
        etcd.endpoint(),
    ]);
    writer.wait_for_acks(1000, Duration::from_secs(60));
    etcd.stop();
    std::thread::sleep(Duration::from_secs(3));
    let during = writer.ack_count();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        writer.ack_count(),
        during,
        "nothing is acknowledged while etcd is down"
    );
    etcd.restart().unwrap();
    writer.wait_for_acks(during + 1000, Duration::from_secs(60));
    let (acks, stderr) = writer.kill();
    assert!(
        stderr.contains("failed"),
        "failed writes are reported:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "no panic:\n{stderr}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EtcdStore::connect(EtcdConfig::new(vec![etcd.endpoint()]))
            .await
            .unwrap();
        verify_after_crash(&store, &acks).await;
    });
}

#[test]
fn etcd_watch_resumes_after_restart() {
    let mut etcd = EtcdServer::start().expect("start etcd (needs etcd-server)");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EtcdStore::connect(EtcdConfig::new(vec![etcd.endpoint()]))
            .await
            .unwrap();
        let first = store.put("/wr/a", "1".into(), Expect::Any).await.unwrap();
        assert!(first.is_applied());
        let mut watch = store
            .watch(WatchRequest::prefix(
                "/wr/",
                store.current_revision().await.unwrap(),
            ))
            .await
            .unwrap();
        etcd.restart().unwrap();
        // The client reconnects by itself; writes may fail until it does.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let rev = loop {
            match store.put("/wr/b", "2".into(), Expect::Any).await {
                Ok(out) if out.is_applied() => break out,
                _ if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                other => panic!("no write after restart: {other:?}"),
            }
        };
        let dao_store::Outcome::Applied { revision, .. } = rev else {
            unreachable!()
        };
        loop {
            match tokio::time::timeout(Duration::from_secs(30), watch.next()).await {
                Ok(Some(Ok(WatchMessage::Events(events)))) => {
                    assert_eq!(events[0].kv.key, "/wr/b");
                    assert_eq!(events[0].kv.mod_revision, revision);
                    break;
                }
                Ok(Some(Ok(WatchMessage::Progress(_)))) => {}
                other => panic!("watch did not resume: {other:?}"),
            }
        }
    });
}
