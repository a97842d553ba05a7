//! One conformance suite for every backend.
//!
//! Each case is a plain async function over `&dyn Store` that panics on a broken promise.
//! A backend's test file calls [`conformance_tests!`](crate::conformance_tests) with an
//! expression that builds a fresh [`Harness`]; the macro makes one `#[tokio::test]` per case,
//! so every backend runs exactly the same checks. Revisions are compared relative to what
//! the store reports, never as absolute numbers, because etcd counts from 1 and may have
//! written before the test began.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{
    Error, EventKind, Expect, Outcome, RangeRequest, Revision, Store, WatchMessage, WatchRequest,
    WatchStream,
};

/// A store under test and whatever keeps it alive (a temporary directory, an etcd process).
pub struct Harness {
    pub store: Arc<dyn Store>,
    pub guard: Box<dyn std::any::Any + Send>,
}

/// Makes one `#[tokio::test]` per conformance case. `$harness` is an expression of type
/// `impl Future<Output = Harness>`, evaluated afresh for each case.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@cases $harness;
            create_and_get, cas_update_and_conflict, delete_with_precondition,
            range_with_limit_and_continue, range_at_past_revision, watch_from_revision,
            watch_live_and_prev_values, watch_progress, watch_across_compaction,
            concurrent_cas_one_winner_per_round, large_value, hundred_thousand_keys,
            watch_fan_out, past_revisions_match_a_model);
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness: $crate::conformance::Harness = $harness.await;
                $crate::conformance::$case(&*harness.store).await;
                drop(harness);
            }
        )*
    };
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn applied(store: &dyn Store, key: &str, value: &str, expect: Expect) -> Revision {
    match store.put(key, b(value), expect).await.expect("put") {
        Outcome::Applied { revision, .. } => revision,
        other => panic!("put {key} with {expect:?} was rejected: {other:?}"),
    }
}

/// Read a watch until `n` events arrived, failing after `timeout`.
pub async fn collect_events(
    stream: &mut WatchStream,
    n: usize,
    timeout: Duration,
) -> Vec<crate::Event> {
    let mut events = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + timeout;
    while events.len() < n {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(WatchMessage::Events(batch)))) => events.extend(batch),
            Ok(Some(Ok(WatchMessage::Progress(_)))) => {}
            Ok(Some(Err(e))) => panic!("watch failed after {} events: {e}", events.len()),
            Ok(None) => panic!("watch ended after {} of {n} events", events.len()),
            Err(_) => panic!("timed out with {} of {n} events", events.len()),
        }
    }
    events
}

pub async fn create_and_get(store: &dyn Store) {
    let before = store.current_revision().await.unwrap();
    let out = store.put("/c/a", b("one"), Expect::Absent).await.unwrap();
    let Outcome::Applied { revision, kv } = out else {
        panic!("create rejected: {out:?}")
    };
    assert_eq!(revision, before + 1, "a write adds exactly one revision");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (revision, revision, 1)
    );
    assert_eq!(store.current_revision().await.unwrap(), revision);

    let (got, at) = store.get("/c/a", None).await.unwrap();
    assert_eq!(got.as_ref(), Some(&kv));
    assert_eq!(at, revision);
    assert_eq!(store.get("/c/missing", None).await.unwrap().0, None);

    // Create of an existing key fails and reports what is there; nothing changes.
    match store.put("/c/a", b("two"), Expect::Absent).await.unwrap() {
        Outcome::Rejected { current, .. } => assert_eq!(current, Some(kv.clone())),
        other => panic!("second create applied: {other:?}"),
    }
    assert_eq!(
        store.current_revision().await.unwrap(),
        revision,
        "a rejected write adds no revision"
    );
    assert_eq!(
        store.get("/c/a", None).await.unwrap().0.unwrap().value,
        b("one")
    );
}

pub async fn cas_update_and_conflict(store: &dyn Store) {
    let r1 = applied(store, "/u/k", "v1", Expect::Absent).await;
    let out = store
        .put("/u/k", b("v2"), Expect::ModRevision(r1))
        .await
        .unwrap();
    let Outcome::Applied { revision: r2, kv } = out else {
        panic!("CAS rejected: {out:?}")
    };
    assert_eq!(r2, r1 + 1);
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r2, 2)
    );

    // A stale guard is rejected with the current value.
    match store
        .put("/u/k", b("stale"), Expect::ModRevision(r1))
        .await
        .unwrap()
    {
        Outcome::Rejected {
            current: Some(current),
            ..
        } => {
            assert_eq!(current.mod_revision, r2);
            assert_eq!(current.value, b("v2"));
        }
        other => panic!("stale CAS applied: {other:?}"),
    }
    // Present on a missing key, ModRevision on a missing key.
    assert!(matches!(
        store.put("/u/none", b("x"), Expect::Present).await.unwrap(),
        Outcome::Rejected { current: None, .. }
    ));
    assert!(matches!(
        store
            .put("/u/none", b("x"), Expect::ModRevision(r2))
            .await
            .unwrap(),
        Outcome::Rejected { current: None, .. }
    ));
    // Unguarded puts apply.
    let r3 = applied(store, "/u/k", "v3", Expect::Any).await;
    let r4 = applied(store, "/u/k", "v4", Expect::Present).await;
    assert_eq!((r3, r4), (r2 + 1, r2 + 2));
    let got = store.get("/u/k", None).await.unwrap().0.unwrap();
    assert_eq!(
        (got.value, got.version, got.create_revision),
        (b("v4"), 4, r1)
    );
    assert_eq!(store.current_revision().await.unwrap(), r4);
}

pub async fn delete_with_precondition(store: &dyn Store) {
    let r1 = applied(store, "/d/k", "v", Expect::Absent).await;
    assert!(matches!(
        store
            .delete("/d/k", Expect::ModRevision(r1 - 1))
            .await
            .unwrap(),
        Outcome::Rejected {
            current: Some(_),
            ..
        }
    ));
    assert!(
        store.get("/d/k", None).await.unwrap().0.is_some(),
        "rejected delete kept the key"
    );
    let out = store.delete("/d/k", Expect::ModRevision(r1)).await.unwrap();
    let Outcome::Applied { revision, kv } = out else {
        panic!("delete rejected: {out:?}")
    };
    assert_eq!(revision, r1 + 1);
    assert_eq!(kv.value, b("v"), "delete returns the deleted value");
    assert_eq!(store.get("/d/k", None).await.unwrap().0, None);
    assert!(matches!(
        store.delete("/d/k", Expect::Any).await.unwrap(),
        Outcome::Rejected { current: None, .. }
    ));
    assert_eq!(store.current_revision().await.unwrap(), revision);
    // A re-create starts a new incarnation.
    let r3 = applied(store, "/d/k", "again", Expect::Absent).await;
    let got = store.get("/d/k", None).await.unwrap().0.unwrap();
    assert_eq!((got.create_revision, got.version), (r3, 1));
}

pub async fn range_with_limit_and_continue(store: &dyn Store) {
    for i in 0..25 {
        applied(
            store,
            &format!("/r/a/{i:03}"),
            &format!("v{i}"),
            Expect::Absent,
        )
        .await;
    }
    applied(store, "/r/b/000", "other", Expect::Absent).await;
    applied(store, "/r/a", "not under /r/a/", Expect::Absent).await;

    let all = store.range(RangeRequest::prefix("/r/a/")).await.unwrap();
    assert_eq!(all.kvs.len(), 25);
    assert_eq!((all.more, all.count), (false, 25));
    assert_eq!(all.revision, store.current_revision().await.unwrap());

    let mut keys = Vec::new();
    let mut start = None;
    let mut pages = 0;
    loop {
        let page = store
            .range(RangeRequest {
                prefix: "/r/a/".into(),
                start: start.clone(),
                limit: Some(10),
                revision: None,
            })
            .await
            .unwrap();
        pages += 1;
        assert_eq!(
            page.count,
            25 - keys.len() as i64,
            "count covers the rest of the range"
        );
        keys.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        if !page.more {
            break;
        }
        start = Some(format!("{}\0", page.kvs.last().unwrap().key));
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("/r/a/{i:03}")).collect();
    assert_eq!(
        keys, expected,
        "pages are in key order without gaps or repeats"
    );
}

pub async fn range_at_past_revision(store: &dyn Store) {
    let a = applied(store, "/p/k1", "v1", Expect::Absent).await;
    let b_rev = applied(store, "/p/k1", "v2", Expect::ModRevision(a)).await;
    let c = applied(store, "/p/k2", "w1", Expect::Absent).await;
    let Outcome::Applied { revision: d, .. } = store.delete("/p/k1", Expect::Any).await.unwrap()
    else {
        panic!("delete rejected")
    };
    let at = |rev: Revision| async move {
        let r = store
            .range(RangeRequest {
                revision: Some(rev),
                ..RangeRequest::prefix("/p/")
            })
            .await
            .unwrap();
        assert_eq!(r.revision, rev);
        r.kvs
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect::<Vec<_>>()
    };
    assert_eq!(at(a).await, vec![("/p/k1".into(), b("v1"))]);
    assert_eq!(at(b_rev).await, vec![("/p/k1".into(), b("v2"))]);
    assert_eq!(
        at(c).await,
        vec![("/p/k1".into(), b("v2")), ("/p/k2".into(), b("w1"))]
    );
    assert_eq!(at(d).await, vec![("/p/k2".into(), b("w1"))]);
    assert_eq!(
        store.get("/p/k1", Some(a)).await.unwrap().0.unwrap().value,
        b("v1")
    );
    assert_eq!(store.get("/p/k1", Some(d)).await.unwrap().0, None);
    let limited = store
        .range(RangeRequest {
            revision: Some(c),
            limit: Some(1),
            ..RangeRequest::prefix("/p/")
        })
        .await
        .unwrap();
    assert_eq!(
        (limited.kvs.len(), limited.more, limited.count),
        (1, true, 2)
    );
    match store.get("/p/k1", Some(d + 100)).await {
        Err(Error::FutureRevision { .. }) => {}
        other => panic!("read at a future revision: {other:?}"),
    }
}

pub async fn watch_from_revision(store: &dyn Store) {
    let mut revs = Vec::new();
    for i in 0..40 {
        let key = format!("/w/{}", i % 7);
        revs.push(applied(store, &key, &format!("v{i}"), Expect::Any).await);
        applied(store, &format!("/x/{i}"), "noise", Expect::Any).await;
    }
    let from = revs[19];
    let mut stream = store
        .watch(WatchRequest::prefix("/w/", from))
        .await
        .unwrap();
    let events = collect_events(&mut stream, 20, Duration::from_secs(10)).await;
    let got: Vec<Revision> = events.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(
        got,
        revs[20..].to_vec(),
        "history after the revision, in order, once each"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.kv.value, b(&format!("v{}", i + 20)));
        assert!(e.kv.key.starts_with("/w/"));
    }
    // Live writes continue the same stream without a gap.
    let mut more = Vec::new();
    for i in 40..60 {
        more.push(
            applied(
                store,
                &format!("/w/{}", i % 7),
                &format!("v{i}"),
                Expect::Any,
            )
            .await,
        );
    }
    let live = collect_events(&mut stream, 20, Duration::from_secs(10)).await;
    assert_eq!(
        live.iter().map(|e| e.kv.mod_revision).collect::<Vec<_>>(),
        more
    );
}

pub async fn watch_live_and_prev_values(store: &dyn Store) {
    let start = store.current_revision().await.unwrap();
    let mut stream = store
        .watch(WatchRequest::prefix("/lv/", start))
        .await
        .unwrap();
    let r1 = applied(store, "/lv/a", "1", Expect::Absent).await;
    let r2 = applied(store, "/lv/a", "2", Expect::ModRevision(r1)).await;
    store
        .delete("/lv/a", Expect::ModRevision(r2))
        .await
        .unwrap();
    let events = collect_events(&mut stream, 3, Duration::from_secs(10)).await;
    assert_eq!(
        events.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![EventKind::Put, EventKind::Put, EventKind::Delete]
    );
    assert_eq!(events[0].prev, None);
    assert_eq!(events[1].prev.as_ref().unwrap().value, b("1"));
    assert_eq!(events[2].prev.as_ref().unwrap().value, b("2"));
    assert_eq!(events[2].kv.mod_revision, r2 + 1);
    assert_eq!(events[2].kv.key, "/lv/a");
}

pub async fn watch_progress(store: &dyn Store) {
    let start = store.current_revision().await.unwrap();
    let mut stream = store
        .watch(WatchRequest {
            progress_interval: Some(Duration::from_millis(200)),
            ..WatchRequest::prefix("/quiet/", start)
        })
        .await
        .unwrap();
    let elsewhere = applied(store, "/loud/x", "1", Expect::Any).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(WatchMessage::Progress(rev)))) if rev >= elsewhere => break,
            Ok(Some(Ok(WatchMessage::Progress(_)))) => {}
            other => panic!("expected progress up to {elsewhere}, got {other:?}"),
        }
    }
}

pub async fn watch_across_compaction(store: &dyn Store) {
    let mut revs = Vec::new();
    for i in 0..20 {
        revs.push(
            applied(
                store,
                &format!("/cp/{}", i % 3),
                &format!("v{i}"),
                Expect::Any,
            )
            .await,
        );
    }
    let compact_at = revs[14];
    store.compact(compact_at).await.unwrap();
    assert!(store.compacted_revision().await.unwrap() >= compact_at);

    match store.watch(WatchRequest::prefix("/cp/", revs[4])).await {
        Err(Error::Compacted { .. }) => {}
        Ok(mut s) => match s.next().await {
            Some(Err(Error::Compacted { .. })) => {}
            other => panic!("watch from a compacted revision gave {other:?}"),
        },
        Err(e) => panic!("watch from a compacted revision failed oddly: {e}"),
    }
    match store
        .range(RangeRequest {
            revision: Some(revs[4]),
            ..RangeRequest::prefix("/cp/")
        })
        .await
    {
        Err(Error::Compacted { .. }) => {}
        other => panic!("read at a compacted revision gave {other:?}"),
    }
    match store.compact(revs[10]).await {
        Err(Error::Compacted { .. }) => {}
        other => panic!("compacting backwards gave {other:?}"),
    }
    // At and after the compaction point everything still reads and watches.
    let state = store
        .range(RangeRequest {
            revision: Some(compact_at),
            ..RangeRequest::prefix("/cp/")
        })
        .await
        .unwrap();
    assert_eq!(state.kvs.len(), 3);
    let mut stream = store
        .watch(WatchRequest::prefix("/cp/", compact_at))
        .await
        .unwrap();
    let events = collect_events(&mut stream, 5, Duration::from_secs(10)).await;
    assert_eq!(
        events.iter().map(|e| e.kv.mod_revision).collect::<Vec<_>>(),
        revs[15..].to_vec()
    );
    // Previous values that straddle the compaction point survive it.
    assert!(
        events.iter().all(|e| e.prev.is_some()),
        "prev values kept across compaction"
    );
}

pub async fn concurrent_cas_one_winner_per_round(store: &dyn Store) {
    const WRITERS: usize = 16;
    const ROUNDS: usize = 25;
    applied(store, "/race/k", "0", Expect::Absent).await;
    let barrier = tokio::sync::Barrier::new(WRITERS);
    let wins = std::sync::Mutex::new(BTreeMap::<usize, usize>::new());
    let round = |writer: usize| {
        let barrier = &barrier;
        let wins = &wins;
        async move {
            for r in 0..ROUNDS {
                barrier.wait().await;
                let current = store.get("/race/k", None).await.unwrap().0.unwrap();
                barrier.wait().await;
                let out = store
                    .put(
                        "/race/k",
                        b(&format!("{r}:{writer}")),
                        Expect::ModRevision(current.mod_revision),
                    )
                    .await
                    .unwrap();
                if out.is_applied() {
                    *wins.lock().unwrap().entry(r).or_default() += 1;
                }
            }
        }
    };
    futures::future::join_all((0..WRITERS).map(round)).await;
    let wins = wins.into_inner().unwrap();
    for r in 0..ROUNDS {
        assert_eq!(wins.get(&r), Some(&1), "round {r}: exactly one CAS wins");
    }
    let last = store.get("/race/k", None).await.unwrap().0.unwrap();
    assert_eq!(last.version, ROUNDS as i64 + 1);
    assert!(String::from_utf8_lossy(&last.value).starts_with(&format!("{}:", ROUNDS - 1)));
}

pub async fn large_value(store: &dyn Store) {
    let big: Vec<u8> = (0..1536 * 1024).map(|i| (i % 251) as u8).collect();
    let big = Bytes::from(big);
    let out = store
        .put("/big/one", big.clone(), Expect::Absent)
        .await
        .unwrap();
    assert!(out.is_applied());
    let got = store.get("/big/one", None).await.unwrap().0.unwrap();
    assert_eq!(got.value.len(), big.len());
    assert!(got.value == big, "1.5 MiB value round-trips byte for byte");
    let too_big = Bytes::from(vec![b'x'; crate::MAX_VALUE_BYTES + 1]);
    match store.put("/big/two", too_big, Expect::Any).await {
        Err(Error::ValueTooLarge { .. }) => {}
        other => panic!("oversized value gave {other:?}"),
    }
    assert_eq!(store.get("/big/two", None).await.unwrap().0, None);
}

pub async fn hundred_thousand_keys(store: &dyn Store) {
    const KEYS: usize = 100_000;
    const WRITERS: usize = 64;
    let writer = |w: usize| async move {
        for i in (w..KEYS).step_by(WRITERS) {
            let key = format!("/many/{i:06}");
            let out = store
                .put(&key, b("value-of-a-small-object"), Expect::Absent)
                .await
                .unwrap();
            assert!(out.is_applied());
        }
    };
    futures::future::join_all((0..WRITERS).map(writer)).await;
    let all = store.range(RangeRequest::prefix("/many/")).await.unwrap();
    assert_eq!(
        (all.kvs.len(), all.count, all.more),
        (KEYS, KEYS as i64, false)
    );
    assert!(
        all.kvs.windows(2).all(|w| w[0].key < w[1].key),
        "keys sorted"
    );
    let mut seen = 0;
    let mut start = None;
    loop {
        let page = store
            .range(RangeRequest {
                start: start.clone(),
                limit: Some(5000),
                ..RangeRequest::prefix("/many/")
            })
            .await
            .unwrap();
        seen += page.kvs.len();
        if !page.more {
            break;
        }
        start = Some(format!("{}\0", page.kvs.last().unwrap().key));
    }
    assert_eq!(seen, KEYS);
}

/// 1,000 watchers on one prefix each see every event of a write burst, in order.
pub async fn watch_fan_out(store: &dyn Store) {
    const WATCHERS: usize = 1000;
    const EVENTS: usize = 200;
    let start = store.current_revision().await.unwrap();
    let mut streams = Vec::with_capacity(WATCHERS);
    for _ in 0..WATCHERS {
        streams.push(
            store
                .watch(WatchRequest::prefix("/fan/", start))
                .await
                .unwrap(),
        );
    }
    let writes = async {
        let mut revs = Vec::with_capacity(EVENTS);
        for i in 0..EVENTS {
            revs.push(
                applied(
                    store,
                    &format!("/fan/{}", i % 10),
                    &i.to_string(),
                    Expect::Any,
                )
                .await,
            );
        }
        revs
    };
    let readers = futures::future::join_all(streams.iter_mut().map(|s| async move {
        collect_events(s, EVENTS, Duration::from_secs(120))
            .await
            .into_iter()
            .map(|e| e.kv.mod_revision)
            .collect::<Vec<_>>()
    }));
    let (revs, seen) = tokio::join!(writes, readers);
    for got in seen {
        assert_eq!(got, revs, "every watcher sees every event in order");
    }
}

/// Random puts and deletes, then every past revision read back (get, full range and pages)
/// and compared with an in-memory model of the history.
pub async fn past_revisions_match_a_model(store: &dyn Store) {
    let mut seed = 0x2545f4914f6cdd1du64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut model = BTreeMap::<String, String>::new();
    let mut history = Vec::new();
    for i in 0..300 {
        let key = format!("/m/{:02}", rand(30));
        if rand(4) == 0 {
            if let Outcome::Applied { revision, .. } =
                store.delete(&key, Expect::Any).await.unwrap()
            {
                model.remove(&key);
                history.push((revision, model.clone()));
            }
        } else {
            let value = format!("v{i}");
            let revision = applied(store, &key, &value, Expect::Any).await;
            model.insert(key, value);
            history.push((revision, model.clone()));
        }
        applied(store, "/n/noise", "x", Expect::Any).await;
    }
    for (revision, expected) in history.iter().step_by(7) {
        let expected: Vec<(String, Bytes)> =
            expected.iter().map(|(k, v)| (k.clone(), b(v))).collect();
        let full = store
            .range(RangeRequest {
                revision: Some(*revision),
                ..RangeRequest::prefix("/m/")
            })
            .await
            .unwrap();
        let got: Vec<(String, Bytes)> = full.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
        assert_eq!(got, expected, "range at {revision}");
        assert_eq!(full.count, expected.len() as i64);
        let mut paged = Vec::new();
        let mut start = None;
        loop {
            let page = store
                .range(RangeRequest {
                    revision: Some(*revision),
                    start: start.clone(),
                    limit: Some(7),
                    ..RangeRequest::prefix("/m/")
                })
                .await
                .unwrap();
            assert_eq!(
                page.count,
                (expected.len() - paged.len()) as i64,
                "count at {revision}"
            );
            paged.extend(page.kvs.iter().map(|kv| (kv.key.clone(), kv.value.clone())));
            if !page.more {
                break;
            }
            start = Some(format!("{}\0", page.kvs.last().unwrap().key));
        }
        assert_eq!(paged, expected, "pages at {revision}");
        for k in 0..30 {
            let key = format!("/m/{k:02}");
            let got = store
                .get(&key, Some(*revision))
                .await
                .unwrap()
                .0
                .map(|kv| kv.value);
            let want = expected
                .iter()
                .find(|(ek, _)| *ek == key)
                .map(|(_, v)| v.clone());
            assert_eq!(got, want, "get {key} at {revision}");
        }
    }
}
