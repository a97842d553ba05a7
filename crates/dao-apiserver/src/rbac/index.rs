//! RBAC's copy of the stored Roles, ClusterRoles, RoleBindings and ClusterRoleBindings.
//!
//! Loaded with one range read when the server starts and kept current by a watch on their
//! prefix, so that authorizing a request reads nothing from the store and decodes nothing (as
//! upstream's RBAC authorizer works from informer caches). A write of an RBAC object through
//! this server returns only once the index holds it ([`RbacIndex::caught_up`]), so a client
//! that grants or revokes is authorized by what it wrote on its next request; writes through
//! another server (an etcd cluster shared by several) arrive with the watch's delay, as on
//! upstream.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dao_store::{Event, EventKind, RangeRequest, Revision, Store, WatchMessage, WatchRequest};
use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use tokio::sync::watch;
use tracing::{info, warn};

use super::PREFIX;

/// How long a write waits for the index to hold it before answering anyway.
const CATCH_UP: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The decoded RBAC objects, by name.
#[derive(Debug, Default)]
pub(crate) struct Objects {
    /// ClusterRole name → its rules.
    pub(crate) cluster_roles: BTreeMap<String, Arc<[PolicyRule]>>,
    /// Namespace → Role name → its rules.
    pub(crate) roles: HashMap<String, BTreeMap<String, Arc<[PolicyRule]>>>,
    /// ClusterRoleBindings in name order (the order RBAC reports the first that allows).
    pub(crate) cluster_bindings: BTreeMap<String, ClusterRoleBinding>,
    /// Namespace → RoleBindings there in name order.
    pub(crate) bindings: HashMap<String, BTreeMap<String, RoleBinding>>,
}

impl Objects {
    /// Take in the stored value of `key` (`None`: the key was deleted). A value that does
    /// not decode counts as absent, as it would for a reader of the store.
    fn apply(&mut self, key: &str, value: Option<&[u8]>) {
        let Some((plural, rest)) = key
            .strip_prefix(PREFIX)
            .and_then(|tail| tail.split_once('/'))
        else {
            return;
        };
        fn decoded<T: serde::de::DeserializeOwned>(value: Option<&[u8]>) -> Option<T> {
            value.and_then(|v| serde_json::from_slice(v).ok())
        }
        let rules = |rules: Option<Vec<PolicyRule>>| -> Arc<[PolicyRule]> {
            rules.unwrap_or_default().into()
        };
        match plural {
            "clusterroles" => set(
                &mut self.cluster_roles,
                rest,
                decoded::<ClusterRole>(value).map(|r| rules(r.rules)),
            ),
            "roles" => set_namespaced(
                &mut self.roles,
                rest,
                decoded::<Role>(value).map(|r| rules(r.rules)),
            ),
            "clusterrolebindings" => set(&mut self.cluster_bindings, rest, decoded(value)),
            "rolebindings" => set_namespaced(&mut self.bindings, rest, decoded(value)),
            _ => {}
        }
    }

    fn apply_event(&mut self, e: &Event) {
        match e.kind {
            EventKind::Put => self.apply(&e.kv.key, Some(&e.kv.value)),
            EventKind::Delete => self.apply(&e.kv.key, None),
        }
    }
}

/// Hold `value` under `name`, or forget `name` when there is none.
fn set<V>(map: &mut BTreeMap<String, V>, name: &str, value: Option<V>) {
    match value {
        Some(v) => {
            map.insert(name.to_owned(), v);
        }
        None => {
            map.remove(name);
        }
    }
}

/// [`set`] for `ns/name`, in the namespace's map; a namespace left empty is forgotten. A
/// key without a namespace is ignored.
fn set_namespaced<V>(
    by_ns: &mut HashMap<String, BTreeMap<String, V>>,
    ns_name: &str,
    value: Option<V>,
) {
    let Some((ns, name)) = ns_name.split_once('/') else {
        return;
    };
    match value {
        Some(v) => set(by_ns.entry(ns.to_owned()).or_default(), name, Some(v)),
        None => {
            if let Some(in_ns) = by_ns.get_mut(ns) {
                set(in_ns, name, None);
                if in_ns.is_empty() {
                    by_ns.remove(ns);
                }
            }
        }
    }
}

/// Every RBAC object in the store and the revision they were read at.
async fn load(store: &dyn Store) -> dao_store::Result<(Objects, Revision)> {
    let page = store.range(RangeRequest::prefix(PREFIX)).await?;
    let mut objects = Objects::default();
    for kv in &page.kvs {
        objects.apply(&kv.key, Some(&kv.value));
    }
    Ok((objects, page.revision))
}

/// RBAC's index of roles and bindings; see the module documentation.
pub struct RbacIndex {
    objects: RwLock<Objects>,
    /// The store revision the index is current to.
    seen: watch::Sender<Revision>,
}

impl RbacIndex {
    /// Read every RBAC object from `store`, then follow their changes until `stop` changes
    /// or its sender goes away.
    pub async fn start(
        store: Arc<dyn Store>,
        stop: watch::Receiver<bool>,
    ) -> dao_store::Result<Arc<RbacIndex>> {
        let (objects, revision) = load(&*store).await?;
        let index = Arc::new(RbacIndex {
            objects: RwLock::new(objects),
            seen: watch::channel(revision).0,
        });
        tokio::spawn(follow(index.clone(), store, revision, stop));
        Ok(index)
    }

    /// An index of exactly `objects` (key, stored value) that follows nothing.
    #[cfg(test)]
    pub(crate) fn fixed<'a>(objects: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut o = Objects::default();
        for (key, value) in objects {
            o.apply(key, Some(value));
        }
        RbacIndex {
            objects: RwLock::new(o),
            seen: watch::channel(0).0,
        }
    }

    /// Run `f` over the current objects (under a read lock: `f` must not block).
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Objects) -> R) -> R {
        f(&self.objects.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Wait until the index holds every change up to `revision`; `false` if it did not get
    /// there within a few seconds (the watch is failing; the caller goes on regardless).
    pub async fn caught_up(&self, revision: Revision) -> bool {
        let mut seen = self.seen.subscribe();
        let reached = tokio::time::timeout(CATCH_UP, seen.wait_for(|&r| r >= revision)).await;
        let ok = matches!(reached, Ok(Ok(_)));
        if !ok {
            warn!(
                revision,
                seen = *self.seen.borrow(),
                "RBAC: the authorizer's index has not caught up with a write to roles or bindings"
            );
        }
        ok
    }

    fn replace(&self, objects: Objects, revision: Revision) {
        *self.objects.write().unwrap_or_else(|e| e.into_inner()) = objects;
        self.seen.send_replace(revision);
    }

    /// Apply what one watch stream delivers until it fails; `after` tracks the last revision
    /// taken in.
    async fn follow_stream(
        &self,
        store: &dyn Store,
        after: &mut Revision,
        backoff: &mut Duration,
    ) -> dao_store::Error {
        let mut stream = match store.watch(WatchRequest::prefix(PREFIX, *after)).await {
            Ok(s) => s,
            Err(e) => return e,
        };
        while let Some(message) = stream.next().await {
            *backoff = BACKOFF_MIN;
            match message {
                Ok(WatchMessage::Events(events)) => {
                    {
                        let mut objects = self.objects.write().unwrap_or_else(|e| e.into_inner());
                        for e in &events {
                            objects.apply_event(e);
                        }
                    }
                    if let Some(last) = events.last() {
                        *after = last.revision();
                    }
                    self.seen.send_replace(*after);
                }
                Ok(WatchMessage::Progress(revision)) => {
                    *after = revision.max(*after);
                    self.seen.send_replace(*after);
                }
                Err(e) => return e,
            }
        }
        dao_store::Error::Unavailable("the watch of roles and bindings ended".into())
    }
}

/// Keep `index` current: follow the watch, start over from a fresh read when the history it
/// needs was compacted, retry with backoff (and say so) when the store fails.
async fn follow(
    index: Arc<RbacIndex>,
    store: Arc<dyn Store>,
    mut after: Revision,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let error = tokio::select! {
            _ = stop.changed() => return,
            e = index.follow_stream(&*store, &mut after, &mut backoff) => e,
        };
        if matches!(error, dao_store::Error::Compacted { .. }) {
            match load(&*store).await {
                Ok((objects, revision)) => {
                    info!(
                        revision,
                        "RBAC: roles and bindings read again after compaction"
                    );
                    index.replace(objects, revision);
                    after = revision;
                    continue;
                }
                Err(e) => warn!(error = %e, "RBAC: reading roles and bindings failed"),
            }
        } else {
            warn!(error = %error, retry_in = ?backoff, "RBAC: watching roles and bindings failed; retrying");
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use bytes::Bytes;
    use dao_store::{Expect, KeyValue, Outcome, RangeResult, SqliteConfig, SqliteStore};
    use serde_json::json;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn key(plural: &str, rest: &str) -> String {
        format!("{PREFIX}{plural}/{rest}")
    }

    fn role(kind: &str, name: &str, verb: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "kind": kind, "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": [verb]}],
        }))
        .unwrap()
    }

    fn binding(kind: &str, name: &str, role: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "kind": kind, "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "User", "name": "carol"}],
        }))
        .unwrap()
    }

    fn verbs(rules: Option<&Arc<[PolicyRule]>>) -> Vec<String> {
        rules
            .map(|r| r.iter().flat_map(|r| r.verbs.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn objects_follow_puts_and_deletes_by_kind_and_namespace() {
        let mut o = Objects::default();
        o.apply(
            &key("clusterroles", "reader"),
            Some(&role("ClusterRole", "reader", "get")),
        );
        o.apply(
            &key("roles", "team/lister"),
            Some(&role("Role", "lister", "list")),
        );
        o.apply(
            &key("clusterrolebindings", "b"),
            Some(&binding("ClusterRoleBinding", "b", "reader")),
        );
        o.apply(
            &key("rolebindings", "team/a"),
            Some(&binding("RoleBinding", "a", "reader")),
        );
        assert_eq!(verbs(o.cluster_roles.get("reader")), ["get"]);
        assert_eq!(verbs(o.roles["team"].get("lister")), ["list"]);
        assert_eq!(o.cluster_bindings["b"].role_ref.name, "reader");
        assert_eq!(o.bindings["team"]["a"].role_ref.name, "reader");

        // A changed role replaces the old rules; an undecodable one counts as gone.
        o.apply(
            &key("clusterroles", "reader"),
            Some(&role("ClusterRole", "reader", "watch")),
        );
        assert_eq!(verbs(o.cluster_roles.get("reader")), ["watch"]);
        o.apply(&key("clusterroles", "reader"), Some(b"{not json"));
        assert!(!o.cluster_roles.contains_key("reader"));

        o.apply(&key("roles", "team/lister"), None);
        o.apply(&key("rolebindings", "team/a"), None);
        o.apply(&key("clusterrolebindings", "b"), None);
        assert!(o.roles.is_empty() && o.bindings.is_empty() && o.cluster_bindings.is_empty());
        // Keys of other shapes are ignored.
        o.apply(&format!("{PREFIX}roles"), Some(b"{}"));
        o.apply("/registry/pods/team/p", Some(b"{}"));
        assert!(o.roles.is_empty());
    }

    /// A store whose first watch fails as compacted, as when the index fell behind compaction.
    struct CompactedOnce {
        inner: SqliteStore,
        failed: AtomicBool,
    }

    #[async_trait]
    impl Store for CompactedOnce {
        async fn get(
            &self,
            key: &str,
            revision: Option<Revision>,
        ) -> dao_store::Result<(Option<KeyValue>, Revision)> {
            self.inner.get(key, revision).await
        }
        async fn range(&self, req: RangeRequest) -> dao_store::Result<RangeResult> {
            self.inner.range(req).await
        }
        async fn put(&self, key: &str, value: Bytes, expect: Expect) -> dao_store::Result<Outcome> {
            self.inner.put(key, value, expect).await
        }
        async fn delete(&self, key: &str, expect: Expect) -> dao_store::Result<Outcome> {
            self.inner.delete(key, expect).await
        }
        async fn watch(&self, req: WatchRequest) -> dao_store::Result<dao_store::WatchStream> {
            if !self.failed.swap(true, Ordering::SeqCst) {
                return Err(dao_store::Error::Compacted {
                    requested: req.after,
                    compacted: req.after + 1,
                });
            }
            self.inner.watch(req).await
        }
        async fn compact(&self, revision: Revision) -> dao_store::Result<()> {
            self.inner.compact(revision).await
        }
        async fn current_revision(&self) -> dao_store::Result<Revision> {
            self.inner.current_revision().await
        }
        async fn compacted_revision(&self) -> dao_store::Result<Revision> {
            self.inner.compacted_revision().await
        }
        fn backend(&self) -> &'static str {
            "compacted-once"
        }
    }

    fn applied(outcome: Outcome) -> Revision {
        match outcome {
            Outcome::Applied { revision, .. } => revision,
            other => panic!("not applied: {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_index_follows_the_store_and_reads_again_after_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let inner = SqliteStore::open(SqliteConfig::new(dir.path().join("db"))).unwrap();
        let store = Arc::new(CompactedOnce {
            inner,
            failed: AtomicBool::new(false),
        });
        let reader = key("clusterroles", "reader");
        store
            .put(
                &reader,
                role("ClusterRole", "reader", "get").into(),
                Expect::Absent,
            )
            .await
            .unwrap();
        let (stop, stopped) = watch::channel(false);
        let index = RbacIndex::start(store.clone(), stopped).await.unwrap();
        let held = || index.read(|o| verbs(o.cluster_roles.get("reader")));
        assert_eq!(held(), ["get"], "loaded at start");

        // Written while the first watch fails as compacted: the index reads everything again,
        // then follows the watch.
        let rev = applied(
            store
                .put(
                    &reader,
                    role("ClusterRole", "reader", "list").into(),
                    Expect::Any,
                )
                .await
                .unwrap(),
        );
        assert!(index.caught_up(rev).await);
        assert_eq!(held(), ["list"]);
        let rev = applied(store.delete(&reader, Expect::Any).await.unwrap());
        assert!(index.caught_up(rev).await);
        assert!(held().is_empty(), "deleted");

        // After the stop it follows nothing.
        stop.send_replace(true);
        tokio::time::sleep(Duration::from_millis(50)).await;
        store
            .put(
                &reader,
                role("ClusterRole", "reader", "get").into(),
                Expect::Any,
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(held().is_empty(), "stopped");
    }
}
