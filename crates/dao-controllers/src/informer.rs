//! Informers: a watcher-fed cache of one kind with change handlers and indexes, as client-go's
//! shared informers. One informer per kind is shared by every controller that needs it.
//!
//! State machine (kube-runtime's `watcher` drives list → watch → resume → relist): `Init`
//! starts a new buffer, `InitApply` fills it, `InitDone` swaps it in atomically and reports the
//! objects that vanished during the gap as deletions; `Apply`/`Delete` change one entry. Readers
//! take a read lock for a lookup and never across an `.await`.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::warn;

/// `namespace/name`, or `name` for cluster-scoped objects: the key of caches and work queues.
pub fn key_of<K: Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", obj.meta().name.as_deref().unwrap_or("")),
        _ => obj.meta().name.clone().unwrap_or_default(),
    }
}

/// Splits a key back into namespace (empty for cluster-scoped) and name.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// A change as handlers see it.
pub enum Change<'a, K> {
    /// Added or modified; `old` is the cached object before, if any.
    Upsert {
        old: Option<&'a Arc<K>>,
        new: &'a Arc<K>,
    },
    Delete(&'a Arc<K>),
}

type Handler<K> = Box<dyn Fn(&Change<'_, K>) + Send + Sync>;
type IndexFn<K> = Box<dyn Fn(&K) -> Vec<String> + Send + Sync>;

struct Index<K> {
    func: IndexFn<K>,
    entries: HashMap<String, HashSet<String>>,
}

struct Inner<K> {
    objects: HashMap<String, Arc<K>>,
    indexes: HashMap<&'static str, Index<K>>,
}

impl<K> Inner<K> {
    fn unindex(&mut self, key: &str, obj: &K) {
        for index in self.indexes.values_mut() {
            for value in (index.func)(obj) {
                if let Some(set) = index.entries.get_mut(&value) {
                    set.remove(key);
                    if set.is_empty() {
                        index.entries.remove(&value);
                    }
                }
            }
        }
    }

    fn index(&mut self, key: &str, obj: &K) {
        for index in self.indexes.values_mut() {
            for value in (index.func)(obj) {
                index
                    .entries
                    .entry(value)
                    .or_default()
                    .insert(key.to_owned());
            }
        }
    }
}

/// A cache of one kind kept current by a watch; cheap to clone.
pub struct Informer<K> {
    inner: Arc<RwLock<Inner<K>>>,
    handlers: Arc<RwLock<Vec<Handler<K>>>>,
    synced: watch::Receiver<bool>,
    synced_tx: Arc<watch::Sender<bool>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            inner: self.inner.clone(),
            handlers: self.handlers.clone(),
            synced: self.synced.clone(),
            synced_tx: self.synced_tx.clone(),
        }
    }
}

impl<K> Default for Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Informer {
            inner: Arc::new(RwLock::new(Inner {
                objects: HashMap::new(),
                indexes: HashMap::new(),
            })),
            handlers: Arc::new(RwLock::new(Vec::new())),
            synced: rx,
            synced_tx: Arc::new(tx),
        }
    }

    /// Registers a change handler; handlers run on the informer's task and must not block.
    pub fn on_change(&self, f: impl Fn(&Change<'_, K>) + Send + Sync + 'static) {
        self.handlers.write().expect("handlers").push(Box::new(f));
    }

    /// Adds an index (before `run`): `f` returns the index values of an object.
    pub fn add_index(
        &self,
        name: &'static str,
        f: impl Fn(&K) -> Vec<String> + Send + Sync + 'static,
    ) {
        let mut inner = self.inner.write().expect("informer");
        let mut index = Index {
            func: Box::new(f),
            entries: HashMap::new(),
        };
        for (key, obj) in &inner.objects {
            for value in (index.func)(obj) {
                index.entries.entry(value).or_default().insert(key.clone());
            }
        }
        inner.indexes.insert(name, index);
    }

    /// Enqueues the key of every added, changed or deleted object: a controller's primary kind.
    pub fn enqueue_changes(&self, queue: &crate::queue::WorkQueue) {
        let q = queue.clone();
        self.on_change(move |c| match c {
            Change::Upsert { new, .. } => q.add(key_of(new.as_ref())),
            Change::Delete(old) => q.add(key_of(old.as_ref())),
        });
    }

    /// Enqueues `namespace/name` of the controller (an `O` that `owners` still has) of every
    /// object before and after a change: a controller's owned kind.
    pub fn enqueue_controllers<O>(&self, queue: &crate::queue::WorkQueue, owners: &Informer<O>)
    where
        K: Resource<DynamicType = ()>,
        O: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let q = queue.clone();
        let owners = owners.clone();
        let kind = O::kind(&()).into_owned();
        self.on_change(move |c| {
            let (old, new) = match c {
                Change::Upsert { old, new } => (old.map(|o| o.as_ref()), Some(new.as_ref())),
                Change::Delete(old) => (Some(old.as_ref()), None),
            };
            for obj in [old, new].into_iter().flatten() {
                if let Some(owner) = controller_of(obj).filter(|o| o.kind == kind) {
                    let key = format!("{}/{}", obj.namespace().unwrap_or_default(), owner.name);
                    if owners.get(&key).is_some() {
                        q.add(key);
                    }
                }
            }
        });
    }

    /// Enqueues every object of `selectors` in a changed object's namespace that `selects` it
    /// before or after the change: Services or PodDisruptionBudgets for pod changes. `selectors`
    /// must have the "namespace" index ([`namespace_index`]).
    pub fn enqueue_selecting<O>(
        &self,
        queue: &crate::queue::WorkQueue,
        selectors: &Informer<O>,
        selects: impl Fn(&O, &K) -> bool + Send + Sync + 'static,
    ) where
        K: Resource<DynamicType = ()>,
        O: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let q = queue.clone();
        let selectors = selectors.clone();
        self.on_change(move |c| {
            let (old, new) = match c {
                Change::Upsert { old, new } => (old.map(|o| o.as_ref()), Some(new.as_ref())),
                Change::Delete(old) => (Some(old.as_ref()), None),
            };
            let Some(ns) = new.or(old).and_then(|o| o.namespace()) else {
                return;
            };
            for selector in selectors.by_index("namespace", &ns) {
                if [old, new]
                    .into_iter()
                    .flatten()
                    .any(|o| selects(&selector, o))
                {
                    q.add(key_of(selector.as_ref()));
                }
            }
        });
    }

    /// Enqueues every `owners` object that would adopt a changed object: one in its namespace
    /// that `selects` it while it has no controller and is not being deleted (upstream's
    /// orphan handling, so a ReplicaSet adopts matching bare pods). Adds what that and the
    /// owner's claim need: the "namespace" index ([`namespace_index`]) on `owners`, and the
    /// "orphan" index ([`orphan_index`]) on this informer.
    pub fn enqueue_adopters<O>(
        &self,
        queue: &crate::queue::WorkQueue,
        owners: &Informer<O>,
        selects: impl Fn(&O, &K) -> bool + Send + Sync + 'static,
    ) where
        K: Resource<DynamicType = ()>,
        O: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        owners.add_index("namespace", namespace_index);
        self.add_index("orphan", orphan_index);
        let q = queue.clone();
        let owners = owners.clone();
        self.on_change(move |c| {
            let Change::Upsert { new, .. } = c else {
                return;
            };
            let obj = new.as_ref();
            if controller_of(obj).is_some() || obj.meta().deletion_timestamp.is_some() {
                return;
            }
            let Some(ns) = obj.namespace() else {
                return;
            };
            for owner in owners.by_index("namespace", &ns) {
                if owner.meta().deletion_timestamp.is_none() && selects(&owner, obj) {
                    q.add(key_of(owner.as_ref()));
                }
            }
        });
    }

    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.inner
            .read()
            .expect("informer")
            .objects
            .get(key)
            .cloned()
    }

    /// Objects whose index `name` has `value`.
    pub fn by_index(&self, name: &str, value: &str) -> Vec<Arc<K>> {
        let inner = self.inner.read().expect("informer");
        let Some(index) = inner.indexes.get(name) else {
            return Vec::new();
        };
        index
            .entries
            .get(value)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| inner.objects.get(k).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.inner
            .read()
            .expect("informer")
            .objects
            .values()
            .cloned()
            .collect()
    }

    pub fn keys(&self) -> Vec<String> {
        self.inner
            .read()
            .expect("informer")
            .objects
            .keys()
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner.read().expect("informer").objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the first list has been loaded.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    fn notify(&self, change: &Change<'_, K>) {
        for h in self.handlers.read().expect("handlers").iter() {
            h(change);
        }
    }

    fn upsert(&self, mut obj: K) {
        // No controller reads managedFields; like upstream's informers (TransformStripManagedFields)
        // the cache does not keep them, which is a good part of a pod's or node's size.
        obj.meta_mut().managed_fields = None;
        let key = key_of(&obj);
        let new = Arc::new(obj);
        let old = {
            let mut inner = self.inner.write().expect("informer");
            let old = inner.objects.insert(key.clone(), new.clone());
            if let Some(o) = &old {
                inner.unindex(&key, o);
            }
            inner.index(&key, &new);
            old
        };
        self.notify(&Change::Upsert {
            old: old.as_ref(),
            new: &new,
        });
    }

    fn remove(&self, key: &str) {
        let old = {
            let mut inner = self.inner.write().expect("informer");
            let old = inner.objects.remove(key);
            if let Some(o) = &old {
                inner.unindex(key, o);
            }
            old
        };
        if let Some(o) = old {
            self.notify(&Change::Delete(&o));
        }
    }

    /// Runs the watch until the task is dropped.
    pub async fn run(self, api: Api<K>, config: watcher::Config) {
        let mut stream = watcher(api, config).boxed();
        let mut relist: Option<HashSet<String>> = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => relist = Some(HashSet::new()),
                Ok(watcher::Event::InitApply(obj)) => {
                    if let Some(seen) = relist.as_mut() {
                        seen.insert(key_of(&obj));
                    }
                    self.upsert(obj);
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(seen) = relist.take() {
                        for key in self.keys() {
                            if !seen.contains(&key) {
                                self.remove(&key);
                            }
                        }
                    }
                    self.synced_tx.send_replace(true);
                }
                Ok(watcher::Event::Apply(obj)) => self.upsert(obj),
                Ok(watcher::Event::Delete(obj)) => self.remove(&key_of(&obj)),
                Err(e) => {
                    warn!(kind = std::any::type_name::<K>(), error = %e, "watch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// The controller owner reference of an object, if any.
pub fn controller_of<K: Resource>(
    obj: &K,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    obj.owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
}

/// Index values: the uid of the object's controller owner.
pub fn controller_uid_index<K: Resource>(obj: &K) -> Vec<String> {
    controller_of(obj)
        .map(|o| vec![o.uid.clone()])
        .unwrap_or_default()
}

/// Index: the namespace of an object that has no controller, for controllers looking for
/// orphans to adopt without scanning every object of the namespace.
pub fn orphan_index<K: Resource>(obj: &K) -> Vec<String> {
    if controller_of(obj).is_some() {
        return Vec::new();
    }
    vec![obj.meta().namespace.clone().unwrap_or_default()]
}

/// Index values: the object's namespace.
pub fn namespace_index<K: Resource>(obj: &K) -> Vec<String> {
    vec![obj.meta().namespace.clone().unwrap_or_default()]
}
