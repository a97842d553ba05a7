//! `dao server` with kube-rs as the client: typed and dynamic APIs, kube-runtime's watcher,
//! optimistic concurrency under 64 racing clients, and a kill -9 restart.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use kube::runtime::watcher;
use kube::{Client, Config};
use support::DaoServer;

async fn client(server: &DaoServer) -> Client {
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn configmap(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("app".to_owned(), "kube-test".to_owned())])),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_dynamic_watch_patch_delete() {
    let dir = tempfile::tempdir().unwrap();
    let server = DaoServer::start(&dir.path().join("data"), &[]);
    let client = client(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // kube-runtime's watcher, synced before the writes, must see them in order.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let watched = cms.clone();
    let collected = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut stream =
            watcher(watched, watcher::Config::default().labels("app=kube-test")).boxed();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            match stream
                .try_next()
                .await
                .expect("watcher")
                .expect("watcher ended")
            {
                watcher::Event::InitDone => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                watcher::Event::Apply(cm) => seen.push(format!(
                    "apply {} {:?}",
                    cm.metadata.name.unwrap(),
                    cm.data.unwrap_or_default().get("v")
                )),
                watcher::Event::Delete(cm) => {
                    seen.push(format!("delete {}", cm.metadata.name.unwrap()))
                }
                _ => {}
            }
        }
        seen
    });
    tokio::time::timeout(Duration::from_secs(20), ready_rx)
        .await
        .expect("watcher synced")
        .unwrap();

    let created = cms
        .create(&PostParams::default(), &configmap("k1", &[("v", "1")]))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    let patched = cms
        .patch(
            "k1",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"v": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["v"], "2");
    let listed = cms
        .list(&ListParams::default().labels("app=kube-test"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(listed.metadata.resource_version.is_some());

    // The same object through the dynamic API.
    let ar = ApiResource::erase::<ConfigMap>(&());
    let dynamic: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let obj = dynamic.get("k1").await.unwrap();
    assert_eq!(obj.data["data"]["v"], "2");
    let all = dynamic.list(&ListParams::default()).await.unwrap();
    assert!(
        all.items
            .iter()
            .any(|o| o.metadata.name.as_deref() == Some("k1"))
    );

    cms.delete("k1", &DeleteParams::default()).await.unwrap();
    let err = cms.get("k1").await.unwrap_err();
    match err {
        kube::Error::Api(status) => {
            assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"))
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let seen = tokio::time::timeout(Duration::from_secs(20), collected)
        .await
        .expect("watcher timed out")
        .unwrap();
    assert_eq!(
        seen,
        ["apply k1 Some(\"1\")", "apply k1 Some(\"2\")", "delete k1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_racing_on_one_object() {
    const CLIENTS: usize = 64;
    const ATTEMPTS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let server = DaoServer::start(&dir.path().join("data"), &[]);
    let client = client(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &configmap("counter", &[("n", "0")]))
        .await
        .unwrap();
    let successes = Arc::new(AtomicUsize::new(0));
    let conflicts = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let cms = cms.clone();
        let (successes, conflicts) = (successes.clone(), conflicts.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..ATTEMPTS {
                let mut cm = cms.get("counter").await.unwrap();
                let n: u64 = cm.data.as_ref().unwrap()["n"].parse().unwrap();
                cm.data
                    .as_mut()
                    .unwrap()
                    .insert("n".into(), (n + 1).to_string());
                match cms.replace("counter", &PostParams::default(), &cm).await {
                    Ok(_) => {
                        successes.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        assert_eq!(s.reason, "Conflict");
                        conflicts.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => panic!("update neither succeeded nor conflicted: {e:?}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (ok, conflict) = (
        successes.load(Ordering::SeqCst),
        conflicts.load(Ordering::SeqCst),
    );
    assert_eq!(ok + conflict, CLIENTS * ATTEMPTS);
    assert!(
        ok > 0 && conflict > 0,
        "both outcomes happen under contention: {ok} ok, {conflict} conflicts"
    );
    let n: usize = cms.get("counter").await.unwrap().data.unwrap()["n"]
        .parse()
        .unwrap();
    assert_eq!(n, ok, "the object reflects exactly the successful updates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_versions_and_watches_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = DaoServer::start(&data, &[]);
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let a = cms
        .create(&PostParams::default(), &configmap("a", &[("v", "1")]))
        .await
        .unwrap();
    let before = a.metadata.resource_version.clone().unwrap();
    let a2 = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"v": "2"}})),
        )
        .await
        .unwrap();
    let b = cms
        .create(&PostParams::default(), &configmap("b", &[("v", "1")]))
        .await
        .unwrap();
    server.kill9();

    let server = DaoServer::start(&data, &[]);
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let a_after = cms.get("a").await.unwrap();
    assert_eq!(
        a_after.metadata.resource_version,
        a2.metadata.resource_version
    );
    assert_eq!(a_after.metadata.uid, a.metadata.uid);
    assert_eq!(a_after.data.unwrap()["v"], "2");
    assert_eq!(
        cms.get("b").await.unwrap().metadata.resource_version,
        b.metadata.resource_version
    );

    // A watch resumed from a resourceVersion handed out before the crash replays what came
    // after it, then continues live.
    let mut stream = cms
        .watch(&WatchParams::default().labels("app=kube-test"), &before)
        .await
        .unwrap()
        .boxed();
    cms.create(&PostParams::default(), &configmap("c", &[("v", "1")]))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("watch event")
            .unwrap()
            .unwrap();
        match event {
            WatchEvent::Added(cm) => seen.push(format!("ADDED {}", cm.metadata.name.unwrap())),
            WatchEvent::Modified(cm) => {
                seen.push(format!("MODIFIED {}", cm.metadata.name.unwrap()))
            }
            WatchEvent::Deleted(cm) => seen.push(format!("DELETED {}", cm.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
    }
    assert_eq!(seen, ["MODIFIED a", "ADDED b", "ADDED c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paginated_and_selected_lists() {
    let dir = tempfile::tempdir().unwrap();
    let server = DaoServer::start(&dir.path().join("data"), &[]);
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    for i in 0..25 {
        let mut cm = configmap(&format!("p{i:02}"), &[("i", &i.to_string())]);
        cm.metadata.labels.as_mut().unwrap().insert(
            "parity".into(),
            if i % 2 == 0 { "even" } else { "odd" }.into(),
        );
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(10);
    let mut pages = 0;
    let mut first_rv = None;
    loop {
        let page = cms.list(&params).await.unwrap();
        pages += 1;
        first_rv.get_or_insert(page.metadata.resource_version.clone());
        // The namespace also holds the controllers' kube-root-ca.crt.
        names.extend(
            page.items
                .iter()
                .filter_map(|c| c.metadata.name.clone())
                .filter(|n| n != "kube-root-ca.crt"),
        );
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
        // A write between pages does not show up in the paginated snapshot.
        if pages == 1 {
            cms.create(&PostParams::default(), &configmap("p99-late", &[]))
                .await
                .unwrap();
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("p{i:02}")).collect();
    assert_eq!(
        (pages, names),
        (3, expected),
        "pages of one snapshot, in order, without the late write"
    );
    let odd = cms
        .list(&ListParams::default().labels("parity=odd"))
        .await
        .unwrap();
    assert_eq!(odd.items.len(), 12);
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=p07"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let bad = cms
        .list(&ListParams::default().labels("parity in even"))
        .await
        .unwrap_err();
    match bad {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (400, "BadRequest")),
        other => panic!("bad selector gave {other:?}"),
    }
}

/// A LIST of more objects than the server reads from its store at once (pages of 2,000)
/// goes out page by page as one response: every object once, in order, each with its
/// resourceVersion, also when a selector leaves whole pages empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_longer_than_a_store_page() {
    let dir = tempfile::tempdir().unwrap();
    let server = DaoServer::start(&dir.path().join("data"), &[]);
    let client = client(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // The namespace's kube-root-ca.crt sorts before the test's objects: wait for it, so that
    // the pages below are known.
    for _ in 0..100 {
        if cms.get_opt("kube-root-ca.crt").await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let total = 4500;
    futures::stream::iter(0..total)
        .map(|i| {
            let cms = cms.clone();
            async move {
                let mut cm = configmap(&format!("s{i:04}"), &[("i", &i.to_string())]);
                let band = if i < 2000 {
                    "first"
                } else if i < 4000 {
                    "second"
                } else {
                    "third"
                };
                cm.metadata
                    .labels
                    .as_mut()
                    .unwrap()
                    .insert("band".into(), band.into());
                cms.create(&PostParams::default(), &cm).await.unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    // The namespace also holds the controllers' kube-root-ca.crt.
    let ours = |name: &Option<String>| name.as_deref() != Some("kube-root-ca.crt");
    let names = |items: &[ConfigMap]| -> Vec<String> {
        items
            .iter()
            .filter(|c| ours(&c.metadata.name))
            .map(|c| c.metadata.name.clone().unwrap())
            .collect()
    };
    let want = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|i| format!("s{i:04}")).collect()
    };

    let all = cms.list(&ListParams::default()).await.unwrap();
    assert!(
        names(&all.items) == want(0..total),
        "not every object once, in order"
    );
    let list_rv: i64 = all.metadata.resource_version.unwrap().parse().unwrap();
    for cm in all.items.iter().filter(|c| ours(&c.metadata.name)) {
        let rv: i64 = cm
            .metadata
            .resource_version
            .as_ref()
            .unwrap()
            .parse()
            .unwrap();
        assert!(rv > 0 && rv <= list_rv, "item {rv} in a list at {list_rv}");
        let number: usize = cm.metadata.name.as_ref().unwrap()[1..].parse().unwrap();
        assert_eq!(cm.data.as_ref().unwrap()["i"], number.to_string());
    }
    // Only the last page matches: the first pages add nothing, the items stay one JSON array.
    let third = cms
        .list(&ListParams::default().labels("band=third"))
        .await
        .unwrap();
    assert_eq!(names(&third.items), want(4000..total));
    let second = cms
        .list(&ListParams::default().labels("band=second"))
        .await
        .unwrap();
    assert_eq!(names(&second.items), want(2000..4000));
    let metadata = cms.list_metadata(&ListParams::default()).await.unwrap();
    let listed = metadata.items.iter().filter(|m| ours(&m.metadata.name));
    assert_eq!(listed.count(), total);
    assert!(
        metadata
            .items
            .iter()
            .all(|m| m.metadata.resource_version.is_some())
    );
    // A limited list still pages through continue tokens (the first page holds
    // kube-root-ca.crt too).
    let page = cms.list(&ListParams::default().limit(2501)).await.unwrap();
    assert_eq!(names(&page.items), want(0..2500));
    let token = page.metadata.continue_.unwrap();
    let rest = cms
        .list(&ListParams::default().limit(2500).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(&rest.items), want(2500..total));
    assert!(rest.metadata.continue_.is_none_or(|t| t.is_empty()));
}

/// kube's metadata API (`Accept: ...;as=PartialObjectMetadataList`): lists, gets and watches
/// carry only metadata, with resourceVersions, and selectors still apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_only_reads() {
    let dir = tempfile::tempdir().unwrap();
    let server = DaoServer::start(&dir.path().join("data"), &[]);
    let client = client(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for name in ["m1", "m2"] {
        cms.create(&PostParams::default(), &configmap(name, &[("v", "1")]))
            .await
            .unwrap();
    }
    let list = cms
        .list_metadata(&ListParams::default().labels("app=kube-test"))
        .await
        .unwrap();
    let names: Vec<String> = list
        .items
        .iter()
        .map(|m| m.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["m1", "m2"]);
    assert!(list.metadata.resource_version.is_some());
    assert!(list.items.iter().all(|m| {
        m.metadata.resource_version.is_some()
            && m.types
                .as_ref()
                .is_some_and(|t| t.kind == "PartialObjectMetadata")
    }));

    let one = cms.get_metadata("m1").await.unwrap();
    assert_eq!(one.metadata.labels.unwrap()["app"], "kube-test");
    assert_eq!(one.types.unwrap().api_version, "meta.k8s.io/v1");

    // The raw body has no data: only metadata travels.
    let request = http::Request::get("/api/v1/namespaces/default/configmaps/m2")
        .header(
            "Accept",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )
        .body(Vec::new())
        .unwrap();
    let raw: serde_json::Value = client.request(request).await.unwrap();
    assert_eq!(raw["kind"], "PartialObjectMetadata");
    assert!(raw.get("data").is_none(), "{raw}");

    let mut events = cms
        .watch_metadata(
            &WatchParams::default().labels("app=kube-test"),
            &list.metadata.resource_version.unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    cms.patch(
        "m2",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"seen": "yes"}}})),
    )
    .await
    .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), events.try_next())
        .await
        .expect("a metadata watch event")
        .unwrap()
        .unwrap();
    match event {
        WatchEvent::Modified(m) => {
            assert_eq!(m.metadata.name.as_deref(), Some("m2"));
            assert_eq!(m.metadata.annotations.unwrap()["seen"], "yes");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_creates_then_updates() {
    use k8s_openapi::api::apps::v1::Deployment;
    let dir = tempfile::tempdir().unwrap();
    // No controllers: the resourceVersions compared below are the test's writes alone (the
    // deployment controller would write status in between).
    let server = DaoServer::start(&dir.path().join("data"), &["--no-controllers".into()]);
    let client = client(&server).await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let config = |image: &str| {
        serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "ctl", "labels": {"app": "ctl"}},
            "spec": {
                "selector": {"matchLabels": {"app": "ctl"}},
                "template": {"metadata": {"labels": {"app": "ctl"}},
                    "spec": {"containers": [{"name": "web", "image": image}]}},
            },
        })
    };
    let params = PatchParams::apply("my-controller").force();

    // Without a field manager: upstream's 422 for the PatchOptions.
    let request = http::Request::patch("/apis/apps/v1/namespaces/default/deployments/ctl")
        .header("Content-Type", "application/apply-patch+yaml")
        .body(serde_json::to_vec(&config("nginx:1")).unwrap())
        .unwrap();
    let err = client.request::<Deployment>(request).await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422, "{s:?}");
            assert_eq!(
                s.message,
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
            );
        }
        other => panic!("{other:?}"),
    }

    // The object does not exist yet: apply creates it, through the create path (defaults).
    let created = deploys
        .patch("ctl", &params, &Patch::Apply(config("nginx:1")))
        .await
        .unwrap();
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1), "defaulted");
    let managed = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(managed.len(), 1, "{managed:?}");
    assert_eq!(managed[0].manager.as_deref(), Some("my-controller"));
    assert_eq!(managed[0].operation.as_deref(), Some("Apply"));
    assert_eq!(managed[0].api_version.as_deref(), Some("apps/v1"));
    let fields = serde_json::to_value(&managed[0].fields_v1).unwrap();
    assert_eq!(
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"],
        serde_json::json!({".": {}, "f:image": {}, "f:name": {}}),
        "{fields}"
    );
    assert!(fields["f:spec"].get("f:replicas").is_none(), "{fields}");

    // Again with a changed field: an update of the same object, still one Apply entry.
    let updated = deploys
        .patch("ctl", &params, &Patch::Apply(config("nginx:2")))
        .await
        .unwrap();
    assert_eq!(updated.metadata.uid, created.metadata.uid);
    let containers = &updated
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers;
    assert_eq!(containers[0].image.as_deref(), Some("nginx:2"));
    assert_eq!(updated.metadata.generation, Some(2));
    let managed = updated.metadata.managed_fields.clone().unwrap();
    assert_eq!(managed.len(), 1, "{managed:?}");

    // The same configuration again changes nothing.
    let again = deploys
        .patch("ctl", &params, &Patch::Apply(config("nginx:2")))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        updated.metadata.resource_version
    );

    // dryRun=All stores nothing.
    let dry = deploys
        .patch(
            "ctl",
            &params.clone().dry_run(),
            &Patch::Apply(config("nginx:3")),
        )
        .await
        .unwrap();
    let dry_image = &dry.spec.unwrap().template.spec.unwrap().containers[0].image;
    assert_eq!(dry_image.as_deref(), Some("nginx:3"));
    let now = deploys.get("ctl").await.unwrap();
    assert_eq!(
        now.metadata.resource_version,
        updated.metadata.resource_version
    );
}

/// RBAC changes govern the very next request: a service account (token from the
/// TokenRequest API) is refused, allowed as soon as a RoleBinding is written, refused again as
/// soon as it is deleted, and a ClusterRole edited in between changes what the binding grants,
/// each checked with no pause after the write. The token is presented many times and keeps
/// working (verified signatures are remembered) until its service account is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_writes_govern_the_next_request() {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding, RoleRef, Subject};

    let dir = tempfile::tempdir().unwrap();
    let server = DaoServer::start(&dir.path().join("data"), &[]);
    let admin = client(&server).await;
    let meta = |name: &str| kube::api::ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    };
    let pp = PostParams::default();
    Api::<Namespace>::all(admin.clone())
        .create(
            &pp,
            &Namespace {
                metadata: meta("team"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "team");
    sas.create(
        &pp,
        &ServiceAccount {
            metadata: meta("app"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let token = sas
        .create_token_request(
            "app",
            &pp,
            &TokenRequest {
                spec: TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    let as_app: Api<ConfigMap> = Api::namespaced(Client::try_from(config).unwrap(), "team");
    let status = |r: kube::Result<_>| match r {
        Ok(_) => 200,
        Err(kube::Error::Api(s)) => s.code,
        Err(e) => panic!("{e}"),
    };
    let list = || async { status(as_app.list(&ListParams::default()).await.map(|_| ())) };
    let create = |name: &'static str| {
        let as_app = as_app.clone();
        async move {
            status(
                as_app
                    .create(&PostParams::default(), &configmap(name, &[]))
                    .await
                    .map(|_| ()),
            )
        }
    };
    assert_eq!(list().await, 403);

    let rule = |verbs: &[&str]| PolicyRule {
        api_groups: Some(vec!["".into()]),
        resources: Some(vec!["configmaps".into()]),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    };
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let mut role = ClusterRole {
        metadata: meta("cm-reader"),
        rules: Some(vec![rule(&["list"])]),
        ..Default::default()
    };
    roles.create(&pp, &role).await.unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), "team");
    let binding = RoleBinding {
        metadata: meta("app-reads"),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "cm-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "app".into(),
            namespace: Some("team".into()),
            ..Default::default()
        }]),
    };
    for round in 0..3 {
        bindings.create(&pp, &binding).await.unwrap();
        assert_eq!(list().await, 200, "round {round}: granted");
        assert_eq!(create("x").await, 403, "round {round}: only list");
        bindings
            .delete("app-reads", &DeleteParams::default())
            .await
            .unwrap();
        assert_eq!(list().await, 403, "round {round}: revoked");
    }
    bindings.create(&pp, &binding).await.unwrap();
    role.rules = Some(vec![rule(&["list", "create"])]);
    role.metadata = roles.get("cm-reader").await.unwrap().metadata;
    roles.replace("cm-reader", &pp, &role).await.unwrap();
    assert_eq!(
        create("made-by-app").await,
        200,
        "the edited role grants create"
    );
    assert_eq!(list().await, 200);

    sas.delete("app", &DeleteParams::default()).await.unwrap();
    assert_eq!(list().await, 401, "the token died with its service account");
}

/// The status subresource changes only status, and the main resource never changes status,
/// as upstream's strategies keep them apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_spec_are_written_apart() {
    use k8s_openapi::api::apps::v1::Deployment;

    let dir = tempfile::tempdir().unwrap();
    // No controllers: nothing else writes the Deployment's status.
    let server = DaoServer::start(&dir.path().join("data"), &["--no-controllers".into()]);
    let deployments: Api<Deployment> = Api::namespaced(client(&server).await, "default");
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let pp = PatchParams::default();
    // Through status: the status lands, the spec and label changes do not.
    let patched = deployments
        .patch_status(
            "web",
            &pp,
            &Patch::Merge(serde_json::json!({
                "metadata": {"labels": {"sneaky": "yes"}},
                "spec": {"replicas": 7},
                "status": {"replicas": 2, "observedGeneration": 1}
            })),
        )
        .await
        .unwrap();
    let status = patched.status.clone().unwrap_or_default();
    assert_eq!(status.replicas, Some(2));
    assert_eq!(status.observed_generation, Some(1));
    let spec = patched.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(2));
    assert!(!patched.metadata.labels.unwrap().contains_key("sneaky"));
    assert_eq!(patched.metadata.generation, Some(1));
    // Through the main resource: the spec lands (a new generation), the status does not.
    let patched = deployments
        .patch(
            "web",
            &pp,
            &Patch::Merge(serde_json::json!({
                "spec": {"replicas": 3},
                "status": {"replicas": 9}
            })),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().replicas, Some(3));
    assert_eq!(patched.status.unwrap().replicas, Some(2));
    assert_eq!(patched.metadata.generation, Some(2));
    // And what is stored is what was answered.
    let stored = deployments.get("web").await.unwrap();
    assert_eq!(stored.spec.unwrap().replicas, Some(3));
    assert_eq!(stored.status.unwrap().replicas, Some(2));
}
