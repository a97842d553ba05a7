//! The scheduler's runtime: watches pods, nodes, namespaces and PodDisruptionBudgets through the
//! API, and the selectors of Services, ReplicationControllers, ReplicaSets and StatefulSets (for
//! default topology spread); keeps the [`Cache`] and [`SchedulingQueue`], binds through
//! `pods/binding`, and records `Scheduled` and `FailedScheduling` events, as upstream's
//! kube-scheduler.
//!
//! One task owns all state and runs an explicit event loop ([`Event`]): watch events update the
//! cache and the queue; between events it pops pods and schedules them one at a time; each bind
//! runs as its own task (at most `bind_concurrency` at once) and reports back as an event. A pod
//! is *assumed* on its node in the cache as soon as it is chosen, so the next decision already
//! sees its resources; a failed bind forgets it and puts the pod back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ReplicationController, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

use crate::cache::{SpreadSelector, SpreaderKind};
use crate::selector::Selector;
use crate::{Cache, Config, QueuedPod, Scheduler, SchedulingQueue};

/// The scheduler name pods ask for by default.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// Settings of the running scheduler.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub algorithm: Config,
    /// Pods whose `spec.schedulerName` is this one are ours.
    pub scheduler_name: String,
    pub bind_concurrency: usize,
    /// Record a `Scheduled` event for every bound pod, as upstream does.
    pub scheduled_events: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            algorithm: Config::default(),
            scheduler_name: DEFAULT_SCHEDULER.into(),
            bind_concurrency: 256,
            scheduled_events: true,
        }
    }
}

/// What the loop reacts to. Watch events are boxed: they are large and many.
enum Event {
    Pod(Box<watcher::Event<Pod>>),
    Node(Box<watcher::Event<Node>>),
    Namespace(Box<watcher::Event<Namespace>>),
    Pdb(Box<watcher::Event<PodDisruptionBudget>>),
    /// A Service, ReplicationController, ReplicaSet or StatefulSet changed; only its selector
    /// is kept (default topology spread).
    Spreader(SpreaderKind, SpreaderChange),
    Bound {
        pod: QueuedPod,
        node: String,
        result: Result<(), kube::Error>,
    },
}

async fn forward<K, F>(api: Api<K>, tx: mpsc::Sender<Event>, wrap: F)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: Fn(Box<watcher::Event<K>>) -> Event + Send + 'static,
{
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(ev) => {
                if tx.send(wrap(Box::new(ev))).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                warn!(error = %e, "scheduler watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

enum SpreaderChange {
    /// A relist begins: forget every object of the kind.
    Clear,
    /// An object's selector; `None` when it selects nothing and so spreads nothing.
    Set(String, String, Option<SpreadSelector>),
    Remove(String, String),
    /// The relist is complete; nothing to do.
    Listed,
}

/// Maps the watch events of a spreading kind to [`Event::Spreader`], keeping just the selector.
fn spreader<K: ResourceExt>(
    kind: SpreaderKind,
    selector: fn(&K) -> Option<SpreadSelector>,
) -> impl Fn(Box<watcher::Event<K>>) -> Event {
    move |ev| {
        let key = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
        let change = match *ev {
            watcher::Event::Init => SpreaderChange::Clear,
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                let (ns, name) = key(&o);
                SpreaderChange::Set(ns, name, selector(&o))
            }
            watcher::Event::Delete(o) => {
                let (ns, name) = key(&o);
                SpreaderChange::Remove(ns, name)
            }
            watcher::Event::InitDone => SpreaderChange::Listed,
        };
        Event::Spreader(kind, change)
    }
}

/// A label map as a spread selector. A Service without a selector selects nothing (upstream
/// skips it), and so does an empty one here.
fn labels_selector(
    map: Option<&std::collections::BTreeMap<String, String>>,
) -> Option<SpreadSelector> {
    map.filter(|m| !m.is_empty())
        .map(|m| SpreadSelector::Labels(m.clone()))
}

fn set_selector(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Option<SpreadSelector> {
    let s = Selector::from_api(Some(selector));
    (!s.selects_nothing()).then_some(SpreadSelector::Selector(s))
}

fn is_bound(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

// Lives on the stack for one match; boxing it again would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Unboxed {
    Pod(watcher::Event<Pod>),
    Node(watcher::Event<Node>),
    Namespace(watcher::Event<Namespace>),
    Pdb(watcher::Event<PodDisruptionBudget>),
}

struct State {
    client: Client,
    cfg: RunConfig,
    cache: Cache,
    queue: SchedulingQueue,
    scheduler: Scheduler,
    binds: Arc<Semaphore>,
    tx: mpsc::Sender<Event>,
    recorder: Recorder,
    decisions: u64,
}

/// Runs the scheduler until the future is dropped.
pub async fn run(client: Client, cfg: RunConfig) {
    let (tx, mut rx) = mpsc::channel::<Event>(4096);
    let mut watches = tokio::task::JoinSet::new();
    watches.spawn(forward(
        Api::<Pod>::all(client.clone()),
        tx.clone(),
        Event::Pod,
    ));
    watches.spawn(forward(
        Api::<Node>::all(client.clone()),
        tx.clone(),
        Event::Node,
    ));
    watches.spawn(forward(
        Api::<Namespace>::all(client.clone()),
        tx.clone(),
        Event::Namespace,
    ));
    // Budgets weigh preemption's choice of victims.
    watches.spawn(forward(
        Api::<PodDisruptionBudget>::all(client.clone()),
        tx.clone(),
        Event::Pdb,
    ));
    // What upstream's default topology spread constraints select pods by.
    watches.spawn(forward(
        Api::<Service>::all(client.clone()),
        tx.clone(),
        spreader(SpreaderKind::Service, |s: &Service| {
            labels_selector(s.spec.as_ref().and_then(|s| s.selector.as_ref()))
        }),
    ));
    watches.spawn(forward(
        Api::<ReplicationController>::all(client.clone()),
        tx.clone(),
        spreader(
            SpreaderKind::ReplicationController,
            |rc: &ReplicationController| {
                labels_selector(rc.spec.as_ref().and_then(|s| s.selector.as_ref()))
            },
        ),
    ));
    watches.spawn(forward(
        Api::<ReplicaSet>::all(client.clone()),
        tx.clone(),
        spreader(SpreaderKind::ReplicaSet, |rs: &ReplicaSet| {
            rs.spec.as_ref().and_then(|s| set_selector(&s.selector))
        }),
    ));
    watches.spawn(forward(
        Api::<StatefulSet>::all(client.clone()),
        tx.clone(),
        spreader(SpreaderKind::StatefulSet, |ss: &StatefulSet| {
            ss.spec.as_ref().and_then(|s| set_selector(&s.selector))
        }),
    ));
    let mut state = State {
        recorder: Recorder::new(client.clone()),
        client,
        binds: Arc::new(Semaphore::new(cfg.bind_concurrency.max(1))),
        scheduler: Scheduler::new(cfg.algorithm.clone()),
        cfg,
        cache: Cache::new(),
        queue: SchedulingQueue::new(Duration::from_secs(1), Duration::from_secs(10)),
        tx,
        decisions: 0,
    };
    let mut flush = tokio::time::interval(Duration::from_secs(30));
    info!("scheduler started");
    loop {
        // Schedule whatever is ready, but keep up with events in between.
        let mut budget = 256;
        while budget > 0 {
            match rx.try_recv() {
                Ok(ev) => state.handle(ev),
                Err(_) => break,
            }
            budget -= 1;
        }
        if let Some(pod) = state.queue.pop(Instant::now()) {
            state.schedule_one(pod).await;
            continue;
        }
        let wake = state
            .queue
            .next_ready_at()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => state.handle(ev),
                None => return,
            },
            _ = tokio::time::sleep(wake) => {}
            _ = flush.tick() => {
                state.queue.flush_unschedulable_older_than(Duration::from_secs(300), Instant::now());
            }
        }
    }
}

impl State {
    fn ours(&self, pod: &Pod) -> bool {
        pod.spec
            .as_ref()
            .map(|s| s.scheduler_name.as_deref().unwrap_or(DEFAULT_SCHEDULER))
            == Some(self.cfg.scheduler_name.as_str())
    }

    fn handle(&mut self, ev: Event) {
        let now = Instant::now();
        let ev = match ev {
            Event::Pod(e) => Unboxed::Pod(*e),
            Event::Node(e) => Unboxed::Node(*e),
            Event::Namespace(e) => Unboxed::Namespace(*e),
            Event::Pdb(e) => Unboxed::Pdb(*e),
            Event::Bound { pod, node, result } => return self.bound(pod, node, result, now),
            Event::Spreader(kind, change) => {
                match change {
                    SpreaderChange::Clear => self.cache.clear_spreaders(kind),
                    SpreaderChange::Set(ns, name, Some(selector)) => {
                        self.cache.upsert_spreader(kind, &ns, &name, selector)
                    }
                    SpreaderChange::Set(ns, name, None) | SpreaderChange::Remove(ns, name) => {
                        self.cache.remove_spreader(kind, &ns, &name)
                    }
                    SpreaderChange::Listed => {}
                }
                return;
            }
        };
        match ev {
            Unboxed::Pod(watcher::Event::Apply(mut pod) | watcher::Event::InitApply(mut pod)) => {
                // Queued pods are kept whole; managedFields are no business of the scheduler's.
                pod.metadata.managed_fields = None;
                self.pod_changed(pod, now)
            }
            Unboxed::Pod(watcher::Event::Delete(pod)) => {
                let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
                self.queue.delete(&ns, &name);
                if self.cache.contains_pod(&ns, &name) {
                    self.cache.remove_pod(&ns, &name);
                    self.queue.move_all_to_active_or_backoff(now);
                }
            }
            Unboxed::Pod(_) => {}
            Unboxed::Node(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) => {
                self.cache.upsert_node(&node);
                self.queue.move_all_to_active_or_backoff(now);
            }
            Unboxed::Node(watcher::Event::Delete(node)) => {
                self.cache.remove_node(&node.name_any());
            }
            Unboxed::Node(_) => {}
            Unboxed::Namespace(watcher::Event::Apply(ns) | watcher::Event::InitApply(ns)) => {
                self.cache.upsert_namespace(&ns)
            }
            Unboxed::Namespace(watcher::Event::Delete(ns)) => {
                self.cache.remove_namespace(&ns.name_any())
            }
            Unboxed::Namespace(_) => {}
            // A relist starts from scratch: budgets deleted while the watch was down go too.
            Unboxed::Pdb(watcher::Event::Init) => self.cache.pdbs.clear(),
            Unboxed::Pdb(watcher::Event::Apply(pdb) | watcher::Event::InitApply(pdb)) => {
                self.cache.upsert_pdb(&pdb)
            }
            Unboxed::Pdb(watcher::Event::Delete(pdb)) => self
                .cache
                .remove_pdb(&pdb.namespace().unwrap_or_default(), &pdb.name_any()),
            Unboxed::Pdb(_) => {}
        }
    }

    fn pod_changed(&mut self, pod: Pod, now: Instant) {
        let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        if is_bound(&pod) {
            let was_terminal = !self.cache.contains_pod(&ns, &name);
            if is_finished(&pod) {
                if !was_terminal {
                    self.cache.remove_pod(&ns, &name);
                    self.queue.move_all_to_active_or_backoff(now);
                }
            } else {
                self.cache.add_pod(&pod);
            }
            self.queue.delete(&ns, &name);
            return;
        }
        if !self.ours(&pod) || pod.metadata.deletion_timestamp.is_some() || is_finished(&pod) {
            self.queue.delete(&ns, &name);
            return;
        }
        // An unbound pod we assumed is still ours until the bind answers.
        if self.cache.contains_pod(&ns, &name) {
            return;
        }
        self.queue.add(&pod, now);
    }

    async fn schedule_one(&mut self, queued: QueuedPod) {
        let pod = queued.pod.clone();
        let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        self.decisions += 1;
        match self.scheduler.schedule(&self.cache, &pod) {
            Ok(result) => {
                let mut assumed = (*pod).clone();
                assumed.spec.get_or_insert_with(Default::default).node_name =
                    Some(result.node.clone());
                self.cache.add_pod(&assumed);
                let permit = self.binds.clone().acquire_owned().await.expect("semaphore");
                let client = self.client.clone();
                let tx = self.tx.clone();
                let node = result.node;
                let uid = pod.uid();
                tokio::spawn(async move {
                    let result = bind(&client, &ns, &name, uid.as_deref(), &node).await;
                    drop(permit);
                    let _ = tx
                        .send(Event::Bound {
                            pod: queued,
                            node,
                            result,
                        })
                        .await;
                });
            }
            Err(fit) => {
                let (note, preemption) = match self.scheduler.try_preempt(&self.cache, &pod) {
                    Ok(p) => (String::new(), Some(p)),
                    Err(no) => (no.message, None),
                };
                let message = fit.message_with_preemption(&note);
                debug!(pod = %format!("{ns}/{name}"), %message, "unschedulable");
                self.recorder.warning(&pod, "FailedScheduling", &message);
                let client = self.client.clone();
                let nominated = preemption.as_ref().map(|p| p.node.clone());
                let victims = preemption.map(|p| p.victims).unwrap_or_default();
                tokio::spawn(async move {
                    unschedulable(&client, &ns, &name, &message, nominated.as_deref()).await;
                    for (vns, vname) in victims {
                        let api: Api<Pod> = Api::namespaced(client.clone(), &vns);
                        if let Err(e) = api.delete(&vname, &DeleteParams::default()).await {
                            debug!(pod = %format!("{vns}/{vname}"), error = %e, "preemption delete failed");
                        }
                    }
                });
                self.queue.requeue_unschedulable(queued, Instant::now());
            }
        }
    }

    fn bound(
        &mut self,
        pod: QueuedPod,
        node: String,
        result: Result<(), kube::Error>,
        now: Instant,
    ) {
        let (ns, name) = (pod.pod.namespace().unwrap_or_default(), pod.pod.name_any());
        match result {
            Ok(()) => {
                self.queue.done(&ns, &name);
                if self.cfg.scheduled_events {
                    self.recorder.normal(
                        &pod.pod,
                        "Scheduled",
                        &format!("Successfully assigned {ns}/{name} to {node}"),
                    );
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                self.cache.remove_pod(&ns, &name);
                self.queue.done(&ns, &name);
            }
            Err(e) => {
                // Already bound elsewhere (409) shows up through the watch; anything else: retry.
                debug!(pod = %format!("{ns}/{name}"), error = %e, "bind failed");
                if self.cache.pod_node(&ns, &name) == Some(node.as_str()) {
                    self.cache.remove_pod(&ns, &name);
                }
                self.queue.requeue_error(pod, now);
            }
        }
    }
}

async fn bind(
    client: &Client,
    ns: &str,
    name: &str,
    uid: Option<&str>,
    node: &str,
) -> Result<(), kube::Error> {
    let body = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/binding"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("request");
    client.request::<serde_json::Value>(req).await.map(|_| ())
}

/// Records upstream's PodScheduled=False condition (and the nominated node after preemption).
async fn unschedulable(
    client: &Client,
    ns: &str,
    name: &str,
    message: &str,
    nominated: Option<&str>,
) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut status = json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastProbeTime": null, "lastTransitionTime": now}]});
    if let Some(n) = nominated {
        status["nominatedNodeName"] = json!(n);
    }
    // Strategic merge keeps the pod's other conditions (merge key: type).
    if let Err(e) = api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": status})),
        )
        .await
    {
        debug!(pod = %format!("{ns}/{name}"), error = %e, "status update failed");
    }
}

type SeenKey = (String, String);

/// Core/v1 events about pods, with repeats folded into a growing `count`.
#[derive(Clone)]
struct Recorder {
    client: Client,
    /// (pod uid, reason and message) → (event name, count).
    seen: Arc<std::sync::Mutex<std::collections::HashMap<SeenKey, (String, i32)>>>,
}

impl Recorder {
    fn new(client: Client) -> Self {
        Recorder {
            client,
            seen: Default::default(),
        }
    }

    fn normal(&self, pod: &Pod, reason: &str, message: &str) {
        self.emit(pod, "Normal", reason, message);
    }

    fn warning(&self, pod: &Pod, reason: &str, message: &str) {
        self.emit(pod, "Warning", reason, message);
    }

    fn emit(&self, pod: &Pod, kind: &str, reason: &str, message: &str) {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let uid = pod.uid().unwrap_or_default();
        let key = (uid.clone(), format!("{reason}\n{message}"));
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let previous = self.seen.lock().expect("events").get(&key).cloned();
        let this = self.clone();
        let (kind, reason, message) = (kind.to_owned(), reason.to_owned(), message.to_owned());
        tokio::spawn(async move {
            let api: Api<k8s_openapi::api::core::v1::Event> =
                Api::namespaced(this.client.clone(), &ns);
            if let Some((ev, count)) = previous {
                let patch = json!({"count": count + 1, "lastTimestamp": now});
                if api
                    .patch(&ev, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .is_ok()
                {
                    this.seen
                        .lock()
                        .expect("events")
                        .insert(key, (ev, count + 1));
                    return;
                }
            }
            let ev_name = format!("{name}.{:016x}", rand_u64());
            let event = json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": ev_name, "namespace": ns},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns, "uid": uid},
                "reason": reason, "message": message, "type": kind,
                "source": {"component": "default-scheduler"},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "reportingComponent": "default-scheduler", "reportingInstance": "",
            });
            // One per scheduled pod: sent as JSON and the answer left undecoded (the typed
            // round trip through kube's Api was as costly as the server's side of the create).
            let req = http::Request::post(format!("/api/v1/namespaces/{ns}/events"))
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&event).expect("json"))
                .expect("request");
            if this.client.request_text(req).await.is_ok() {
                let mut seen = this.seen.lock().expect("events");
                if seen.len() > 10_000 {
                    seen.clear();
                }
                seen.insert(key, (ev_name, 1));
            }
        });
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
