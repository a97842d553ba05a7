//! The garbage collector: deletes objects whose owners are all gone (background deletion),
//! and finishes owners deleted with the `orphan` finalizer (dependents lose their reference)
//! or the `foregroundDeletion` finalizer (dependents are deleted first), as upstream's.
//!
//! It knows the kinds whose informers Dao's controllers already run: dependents (pods,
//! replicasets, jobs, ...) and owners (deployments, replicasets, daemonsets, jobs, cronjobs,
//! nodes, ...). An owner of a kind it does not watch is looked up through the API; a
//! reference it cannot resolve is never treated as dangling.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy,
};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::debug;

use crate::informer::{Change, Informer, key_of};
use crate::queue::{Action, WorkQueue};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// What the collector needs to know of an object.
#[derive(Clone, Debug)]
struct Meta {
    namespace: String,
    name: String,
    uid: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

/// How soon a dependent that changed under a write is looked at again.
const RETRY: std::time::Duration = std::time::Duration::from_millis(100);

fn meta_of<K: Resource>(o: &K) -> Meta {
    Meta {
        namespace: o.meta().namespace.clone().unwrap_or_default(),
        name: o.meta().name.clone().unwrap_or_default(),
        uid: o.meta().uid.clone().unwrap_or_default(),
        owners: o.meta().owner_references.clone().unwrap_or_default(),
        deleting: o.meta().deletion_timestamp.is_some(),
        finalizers: o.meta().finalizers.clone().unwrap_or_default(),
    }
}

type ByOwner = Box<dyn Fn(&str) -> Vec<Meta> + Send + Sync>;
type Lookup = Box<dyn Fn(&str) -> Option<Meta> + Send + Sync>;
type Synced = Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

struct Kind {
    resource: ApiResource,
    namespaced: bool,
    by_owner: Option<ByOwner>,
    get: Lookup,
}

#[derive(Default)]
struct Kinds {
    dependents: HashMap<String, Kind>,
    owners: HashMap<String, Kind>,
    synced: Vec<Synced>,
}

#[derive(Clone)]
pub struct GarbageCollector {
    client: Client,
    kinds: Arc<RwLock<Kinds>>,
    /// Keys "Kind|namespace/name" of dependents to check.
    dependents_queue: WorkQueue,
    /// Keys "Kind|namespace/name" of owners being deleted with a finalizer.
    owners_queue: WorkQueue,
}

/// Whether a k8s-openapi kind is namespaced, from its scope type.
fn is_namespaced<K: Resource>() -> bool {
    std::any::type_name::<K::Scope>().ends_with("NamespaceResourceScope")
}

fn owner_uids<K: Resource>(o: &K) -> Vec<String> {
    o.owner_references().iter().map(|r| r.uid.clone()).collect()
}

fn split(key: &str) -> (&str, &str, &str) {
    let (kind, rest) = key.split_once('|').unwrap_or(("", key));
    let (ns, name) = rest.split_once('/').unwrap_or(("", rest));
    (kind, ns, name)
}

fn join_key(ns: &str, name: &str) -> String {
    if ns.is_empty() {
        name.to_owned()
    } else {
        format!("{ns}/{name}")
    }
}

impl GarbageCollector {
    pub fn new(client: Client) -> Self {
        GarbageCollector {
            client,
            kinds: Arc::new(RwLock::new(Kinds::default())),
            dependents_queue: WorkQueue::new(),
            owners_queue: WorkQueue::new(),
        }
    }

    fn synced<K>(&self, informer: &Informer<K>)
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let i = informer.clone();
        self.kinds
            .write()
            .expect("kinds")
            .synced
            .push(Box::new(move || {
                let i = i.clone();
                Box::pin(async move { i.wait_synced().await })
            }));
    }

    /// Watches `informer`'s objects as dependents.
    pub fn dependent<K>(&self, informer: &Informer<K>)
    where
        K: Resource<DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let kind = K::kind(&()).into_owned();
        informer.add_index("owner", owner_uids);
        let q = self.dependents_queue.clone();
        let k = kind.clone();
        informer.on_change(move |c| {
            if let Change::Upsert { new, .. } = c
                && !new.owner_references().is_empty()
            {
                q.add(format!("{k}|{}", key_of(new.as_ref())));
            }
        });
        let by_owner = informer.clone();
        let get = informer.clone();
        self.kinds.write().expect("kinds").dependents.insert(
            kind,
            Kind {
                resource: ApiResource::erase::<K>(&()),
                namespaced: is_namespaced::<K>(),
                by_owner: Some(Box::new(move |uid| {
                    by_owner
                        .by_index("owner", uid)
                        .iter()
                        .map(|o| meta_of(o.as_ref()))
                        .collect()
                })),
                get: Box::new(move |key| get.get(key).map(|o| meta_of(o.as_ref()))),
            },
        );
        self.synced(informer);
    }

    /// Watches `informer`'s objects as owners.
    pub fn owner<K>(&self, informer: &Informer<K>)
    where
        K: Resource<DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let kind = K::kind(&()).into_owned();
        let owners_q = self.owners_queue.clone();
        let deps_q = self.dependents_queue.clone();
        let kinds = self.kinds.clone();
        let k = kind.clone();
        informer.on_change(move |c| match c {
            Change::Upsert { new, .. } => {
                let m = meta_of(new.as_ref());
                if m.deleting
                    && m.finalizers
                        .iter()
                        .any(|f| f == "orphan" || f == "foregroundDeletion")
                {
                    owners_q.add(format!("{k}|{}", key_of(new.as_ref())));
                }
            }
            Change::Delete(old) => {
                // Its dependents may now be garbage.
                let uid = old.uid().unwrap_or_default();
                let kinds = kinds.read().expect("kinds");
                for (kind, dep) in &kinds.dependents {
                    for d in dep.by_owner.as_ref().map(|f| f(&uid)).unwrap_or_default() {
                        deps_q.add(format!("{kind}|{}", join_key(&d.namespace, &d.name)));
                    }
                }
            }
        });
        let get = informer.clone();
        self.kinds.write().expect("kinds").owners.insert(
            kind,
            Kind {
                resource: ApiResource::erase::<K>(&()),
                namespaced: is_namespaced::<K>(),
                by_owner: None,
                get: Box::new(move |key| get.get(key).map(|o| meta_of(o.as_ref()))),
            },
        );
        self.synced(informer);
    }

    pub async fn run(self, workers: usize) {
        let waits: Vec<BoxFuture<'static, ()>> = {
            let kinds = self.kinds.read().expect("kinds");
            kinds.synced.iter().map(|f| f()).collect()
        };
        futures::future::join_all(waits).await;
        let deps = self.clone();
        let owners = self.clone();
        tokio::join!(
            self.dependents_queue
                .clone()
                .run("garbage-collector", workers, move |key| {
                    let this = deps.clone();
                    async move { this.check_dependent(&key).await }
                }),
            self.owners_queue
                .clone()
                .run("garbage-collector-owners", 1, move |key| {
                    let this = owners.clone();
                    async move { this.finish_owner(&key).await }
                }),
        );
    }

    fn dynamic(&self, resource: &ApiResource, namespaced: bool, ns: &str) -> Api<DynamicObject> {
        if namespaced {
            Api::namespaced_with(self.client.clone(), ns, resource)
        } else {
            Api::all_with(self.client.clone(), resource)
        }
    }

    /// Whether the owner a reference names exists (same uid). `None`: unknown.
    async fn owner_exists(&self, ns: &str, r: &OwnerReference) -> Option<bool> {
        let (cached, resource) = {
            let kinds = self.kinds.read().expect("kinds");
            match kinds
                .owners
                .get(&r.kind)
                .or_else(|| kinds.dependents.get(&r.kind))
            {
                Some(k) => {
                    let key = if k.namespaced {
                        join_key(ns, &r.name)
                    } else {
                        r.name.clone()
                    };
                    ((k.get)(&key), Some((k.resource.clone(), k.namespaced)))
                }
                None => (None, None),
            }
        };
        if cached.as_ref().is_some_and(|m| m.uid == r.uid) {
            return Some(true);
        }
        // Not cached (or another uid): ask the API server, so a lagging cache deletes nothing.
        let (resource, namespaced) = resource?;
        match self
            .dynamic(&resource, namespaced, ns)
            .get_opt(&r.name)
            .await
        {
            Ok(Some(o)) => Some(o.uid().as_deref() == Some(r.uid.as_str())),
            Ok(None) => Some(false),
            Err(_) => None,
        }
    }

    /// Splits owner references into those whose owner may exist and the count of those whose
    /// owner is certainly gone.
    async fn classify(&self, ns: &str, owners: &[OwnerReference]) -> (Vec<OwnerReference>, usize) {
        let mut alive = Vec::new();
        let mut dangling = 0;
        for r in owners {
            match self.owner_exists(ns, r).await {
                Some(false) => dangling += 1,
                _ => alive.push(r.clone()),
            }
        }
        (alive, dangling)
    }

    async fn check_dependent(&self, key: &str) -> Result<Action, Error> {
        let (kind, ns, name) = split(key);
        let (meta, resource, namespaced) = {
            let kinds = self.kinds.read().expect("kinds");
            let Some(k) = kinds.dependents.get(kind) else {
                return Ok(Action::Done);
            };
            let Some(m) = (k.get)(&join_key(ns, name)) else {
                return Ok(Action::Done);
            };
            (m, k.resource.clone(), k.namespaced)
        };
        if meta.owners.is_empty() {
            return Ok(Action::Done);
        }
        let (alive, dangling) = self.classify(ns, &meta.owners).await;
        if dangling == 0 {
            return Ok(Action::Done);
        }
        // The cache may lag (an orphaning owner's patch may not have reached it yet): decide
        // on the live object's references, as upstream's collector does, and act only on the
        // version read, so a concurrent change makes the write fail instead of undoing it.
        let api = self.dynamic(&resource, namespaced, ns);
        let Some(live) = api.get_opt(name).await? else {
            return Ok(Action::Done);
        };
        if live.uid().as_deref() != Some(meta.uid.as_str()) {
            return Ok(Action::Done);
        }
        let (alive, dangling) = if live.owner_references() == meta.owners.as_slice() {
            (alive, dangling)
        } else {
            self.classify(ns, live.owner_references()).await
        };
        if dangling == 0 {
            return Ok(Action::Done);
        }
        let version = live.resource_version();
        if alive.is_empty() {
            if live.metadata.deletion_timestamp.is_some() {
                return Ok(Action::Done);
            }
            debug!(object = %key, "owner gone: deleting");
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                preconditions: Some(kube::api::Preconditions {
                    uid: Some(meta.uid.clone()),
                    resource_version: version,
                }),
                ..DeleteParams::default()
            };
            match api.delete(name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                // Changed since it was read: look again.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return Ok(Action::RequeueAfter(RETRY));
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            // Some owners remain: drop the references to the ones that are gone.
            let patch = json!({"metadata": {"ownerReferences": alive, "resourceVersion": version}});
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                // Changed since it was read: look again.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return Ok(Action::RequeueAfter(RETRY));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Action::Done)
    }

    fn dependents_of(&self, uid: &str) -> Vec<(ApiResource, bool, Meta)> {
        let kinds = self.kinds.read().expect("kinds");
        kinds
            .dependents
            .values()
            .flat_map(|k| {
                k.by_owner
                    .as_ref()
                    .map(|f| f(uid))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| (k.resource.clone(), k.namespaced, m))
            })
            .collect()
    }

    /// An owner deleted with `orphan` or `foregroundDeletion`: do what the finalizer asks,
    /// then remove it (the API server deletes the owner with its last finalizer).
    async fn finish_owner(&self, key: &str) -> Result<Action, Error> {
        let (kind, ns, name) = split(key);
        let (owner, resource, namespaced) = {
            let kinds = self.kinds.read().expect("kinds");
            let Some(k) = kinds.owners.get(kind) else {
                return Ok(Action::Done);
            };
            let Some(m) = (k.get)(&join_key(ns, name)) else {
                return Ok(Action::Done);
            };
            (m, k.resource.clone(), k.namespaced)
        };
        if !owner.deleting {
            return Ok(Action::Done);
        }
        let dependents = self.dependents_of(&owner.uid);
        let finalizer = if owner.finalizers.iter().any(|f| f == "orphan") {
            for (res, namespaced, d) in &dependents {
                let remaining: Vec<&OwnerReference> =
                    d.owners.iter().filter(|r| r.uid != owner.uid).collect();
                let patch = json!({"metadata": {"ownerReferences": remaining}});
                match self
                    .dynamic(res, *namespaced, &d.namespace)
                    .patch(&d.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            "orphan"
        } else if owner.finalizers.iter().any(|f| f == "foregroundDeletion") {
            let blocking: Vec<&(ApiResource, bool, Meta)> = dependents
                .iter()
                .filter(|(_, _, d)| {
                    d.owners
                        .iter()
                        .any(|r| r.uid == owner.uid && r.block_owner_deletion == Some(true))
                })
                .collect();
            if !blocking.is_empty() {
                for (res, namespaced, d) in &dependents {
                    if d.deleting {
                        continue;
                    }
                    let params = DeleteParams {
                        propagation_policy: Some(PropagationPolicy::Foreground),
                        ..DeleteParams::default()
                    };
                    match self
                        .dynamic(res, *namespaced, &d.namespace)
                        .delete(&d.name, &params)
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                // Finished when the blocking dependents are gone.
                return Ok(Action::RequeueAfter(std::time::Duration::from_millis(500)));
            }
            "foregroundDeletion"
        } else {
            return Ok(Action::Done);
        };
        let remaining: Vec<&String> = owner
            .finalizers
            .iter()
            .filter(|f| *f != finalizer)
            .collect();
        let patch = json!({"metadata": {"finalizers": remaining}});
        match self
            .dynamic(&resource, namespaced, ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Action::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(split("Pod|default/web-1"), ("Pod", "default", "web-1"));
        assert_eq!(split("Node|sim-1"), ("Node", "", "sim-1"));
        assert_eq!(join_key("", "n"), "n");
    }
}
