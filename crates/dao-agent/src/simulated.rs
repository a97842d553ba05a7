//! Simulated nodes: register N nodes, renew their leases, and play the lifecycle of every pod
//! bound to them (Pending → Running and Ready with an IP from the node's pod CIDR; Job pods
//! succeed after a while; a deleted pod is stopped and removed) without running containers.
//!
//! One process holds thousands of nodes: there is one pod watcher and one node watcher for all
//! of them, lease renewals are spread over the renewal interval, and every write goes through
//! one bounded pool.
//!
//! The pod state machine, per pod on one of our nodes:
//! `bound` —start→ `Running` —(restartPolicy ≠ Always and a run time)→ `Succeeded`/`Failed`;
//! any state —deletionTimestamp→ stopped and deleted with grace 0 after `stop_time` (capped by
//! the pod's grace period).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::ipam::PodCidr;

/// The label every simulated node carries (KWOK uses `type=kwok`).
pub const SIMULATED_LABEL: (&str, &str) = ("type", "simulated");
/// Annotation: seconds a pod runs before it finishes (pods that do not restart only).
pub const RUN_SECONDS_ANNOTATION: &str = "simulate.dao.dev/run-seconds";
/// Annotation: the exit code a finishing pod reports (0 = Succeeded, else Failed).
pub const EXIT_CODE_ANNOTATION: &str = "simulate.dao.dev/exit-code";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("registering node {node}: {source}")]
    Register {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// A node taint given on the command line: `key=value:Effect` or `key:Effect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaintSpec {
    pub key: String,
    pub value: Option<String>,
    pub effect: String,
}

impl std::str::FromStr for TaintSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kv, effect) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("taint {s:?}: want key[=value]:Effect"))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(format!(
                "taint {s:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
            ));
        }
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (kv.to_owned(), None),
        };
        if key.is_empty() {
            return Err(format!("taint {s:?}: empty key"));
        }
        Ok(TaintSpec {
            key,
            value,
            effect: effect.to_owned(),
        })
    }
}

/// What the simulated nodes look like and how their pods behave.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    /// Nodes are named `{prefix}-{index}`.
    pub name_prefix: String,
    /// Index of the first node (several agents can share a prefix).
    pub first_index: usize,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub ephemeral_storage: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<TaintSpec>,
    pub lease_duration_seconds: i32,
    pub lease_renew_interval: Duration,
    /// Time a pod spends in ContainerCreating before it runs (0: straight to Running).
    pub pod_start_delay: Duration,
    /// Time a Job's pod (or any pod that does not restart) runs before it succeeds.
    pub job_run_time: Duration,
    /// Time a deleted pod takes to stop, capped by its grace period.
    pub pod_stop_time: Duration,
    /// /24 blocks for nodes that no controller gave a pod CIDR, one per node index.
    pub fallback_pod_cidr: String,
    /// Concurrent writes to the API.
    pub concurrency: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 1,
            name_prefix: "sim".into(),
            first_index: 0,
            cpu: "32".into(),
            memory: "256Gi".into(),
            pods: 110,
            ephemeral_storage: "100Gi".into(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            lease_duration_seconds: 40,
            lease_renew_interval: Duration::from_secs(10),
            pod_start_delay: Duration::ZERO,
            job_run_time: Duration::from_secs(5),
            pod_stop_time: Duration::ZERO,
            fallback_pod_cidr: "100.64.0.0/10".into(),
            concurrency: 64,
        }
    }
}

struct NodeState {
    index: u32,
    internal_ip: Ipv4Addr,
    cidr: Option<PodCidr>,
}

/// What we have done for a pod (by uid), so a repeated watch event does not repeat work.
#[derive(Default)]
struct PodTrack {
    node: String,
    ip: Option<String>,
    started: bool,
    finishing: bool,
    stopping: bool,
}

struct Shared {
    client: Client,
    cfg: SimConfig,
    writes: Semaphore,
    nodes: Mutex<HashMap<String, NodeState>>,
    pods: Mutex<HashMap<String, PodTrack>>,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn now_micro() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Runs the simulated nodes until `shutdown` resolves.
pub async fn run(
    client: Client,
    cfg: SimConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    if cfg.nodes == 0 {
        return Err(Error::Config("--simulate needs at least one node".into()));
    }
    let shared = Arc::new(Shared {
        client,
        writes: Semaphore::new(cfg.concurrency.max(1)),
        nodes: Mutex::new(HashMap::new()),
        pods: Mutex::new(HashMap::new()),
        cfg,
    });
    let started = std::time::Instant::now();
    register_all(&shared).await?;
    info!(
        nodes = shared.cfg.nodes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "simulated nodes registered"
    );
    let leases = tokio::spawn(renew_leases(shared.clone()));
    let node_watch = tokio::spawn(watch_nodes(shared.clone()));
    let pod_watch = tokio::spawn(watch_pods(shared.clone()));
    shutdown.await;
    leases.abort();
    node_watch.abort();
    pod_watch.abort();
    Ok(())
}

fn node_name(cfg: &SimConfig, index: usize) -> String {
    format!("{}-{}", cfg.name_prefix, index)
}

fn internal_ip(index: u32) -> Ipv4Addr {
    // 172.16.0.0/12, skipping .0: a distinct, stable address per node index.
    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + index + 1)
}

fn node_object(cfg: &SimConfig, name: &str) -> Value {
    let mut labels = json!({
        SIMULATED_LABEL.0: SIMULATED_LABEL.1,
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
    });
    for (k, v) in &cfg.labels {
        labels[k] = json!(v);
    }
    let taints: Vec<Value> = cfg
        .taints
        .iter()
        .map(|t| {
            let mut v = json!({"key": t.key, "effect": t.effect});
            if let Some(value) = &t.value {
                v["value"] = json!(value);
            }
            v
        })
        .collect();
    let mut node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {},
    });
    if !taints.is_empty() {
        node["spec"]["taints"] = json!(taints);
    }
    node
}

fn node_status(cfg: &SimConfig, ip: Ipv4Addr, name: &str) -> Value {
    let resources = json!({
        "cpu": cfg.cpu,
        "memory": cfg.memory,
        "pods": cfg.pods.to_string(),
        "ephemeral-storage": cfg.ephemeral_storage,
    });
    let t = now();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": t, "lastTransitionTime": t})
    };
    json!({
        "capacity": resources,
        "allocatable": resources,
        "phase": "Running",
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": ip.to_string()},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": "simulated",
            "osImage": "Dao simulated node",
            "containerRuntimeVersion": "dao-simulated://0.1.0",
            "kubeletVersion": "v1.33.0-dao",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    })
}

/// Retries a write on transport errors and 5xx/429 with backoff; gives up at once on answers
/// that another attempt cannot change (404, 409, 422).
async fn retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(kube::Error::Api(s)) if s.code < 500 && s.code != 429 => {
                return Err(kube::Error::Api(s));
            }
            Err(e) if attempt >= 8 => return Err(e),
            Err(e) => {
                warn!(%what, attempt, error = %e, "write failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn register_all(shared: &Arc<Shared>) -> Result<(), Error> {
    let cfg = &shared.cfg;
    let names: Vec<(u32, String)> = (0..cfg.nodes)
        .map(|i| {
            let index = cfg.first_index + i;
            (index as u32, node_name(cfg, index))
        })
        .collect();
    futures::stream::iter(names)
        .map(|(index, name)| {
            let shared = shared.clone();
            async move { register(&shared, index, name).await }
        })
        .buffer_unordered(cfg.concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn register(shared: &Shared, index: u32, name: String) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), "kube-node-lease");
    let ip = internal_ip(index);
    let err = |source| Error::Register {
        node: name.clone(),
        source,
    };
    let desired: Node =
        serde_json::from_value(node_object(&shared.cfg, &name)).expect("node object is valid");
    let post = PostParams::default();
    let pp = PatchParams::default();
    let node = match retry("create node", || nodes.create(&post, &desired)).await {
        Ok(n) => n,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Registered before (an agent restart): keep the node, refresh labels and taints.
            let patch = json!({"metadata": {"labels": desired.metadata.labels}, "spec": {"taints": desired.spec.as_ref().and_then(|s| s.taints.clone())}});
            let patch = Patch::Merge(&patch);
            retry("update node", || nodes.patch(&name, &pp, &patch))
                .await
                .map_err(err)?
        }
        Err(e) => return Err(err(e)),
    };
    let status = json!({"status": node_status(&shared.cfg, ip, &name)});
    let status = Patch::Merge(&status);
    retry("node status", || nodes.patch_status(&name, &pp, &status))
        .await
        .map_err(err)?;
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node.metadata.uid}],
        },
        "spec": {"holderIdentity": name, "leaseDurationSeconds": shared.cfg.lease_duration_seconds, "renewTime": now_micro()},
    }))
    .expect("lease object is valid");
    match retry("create lease", || leases.create(&post, &lease)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => renew(shared, &name).await,
        Err(e) => return Err(err(e)),
    }
    let cidr = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .and_then(PodCidr::parse);
    shared.nodes.lock().expect("nodes lock").insert(
        name,
        NodeState {
            index,
            internal_ip: ip,
            cidr,
        },
    );
    Ok(())
}

async fn renew(shared: &Shared, name: &str) {
    let patch = json!({"spec": {"renewTime": now_micro(), "holderIdentity": name, "leaseDurationSeconds": shared.cfg.lease_duration_seconds}});
    let _permit = shared.writes.acquire().await;
    let renewal = retry("renew lease", || {
        merge_patch::<Lease>(&shared.client, "kube-node-lease", name, None, &patch)
    });
    if let Err(e) = renewal.await {
        warn!(node = %name, error = %e, "lease renewal failed");
    }
}

/// Renews every node's lease once per interval, spread evenly over the interval.
async fn renew_leases(shared: Arc<Shared>) {
    let interval = shared.cfg.lease_renew_interval;
    loop {
        let round = tokio::time::Instant::now();
        let names: Vec<String> = shared
            .nodes
            .lock()
            .expect("nodes lock")
            .keys()
            .cloned()
            .collect();
        let gap = interval / (names.len().max(1) as u32);
        let mut tasks = Vec::with_capacity(names.len());
        for (i, name) in names.into_iter().enumerate() {
            tokio::time::sleep_until(round + gap * i as u32).await;
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move { renew(&shared, &name).await }));
        }
        for t in tasks {
            let _ = t.await;
        }
        tokio::time::sleep_until(round + interval).await;
    }
}

/// Learns pod CIDRs the controller assigns, and re-posts a node's status when something else
/// (the node lifecycle controller) marked it not Ready while we were renewing its lease.
async fn watch_nodes(shared: Arc<Shared>) {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let selector = format!("{}={}", SIMULATED_LABEL.0, SIMULATED_LABEL.1);
    let mut stream = watcher(nodes.clone(), watcher::Config::default().labels(&selector)).boxed();
    while let Some(event) = stream.next().await {
        let node = match event {
            Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => n,
            Ok(_) => continue,
            Err(e) => {
                warn!(error = %e, "node watch failed; the watcher retries");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let name = node.name_any();
        let repost = {
            let mut map = shared.nodes.lock().expect("nodes lock");
            let Some(state) = map.get_mut(&name) else {
                continue;
            };
            if state.cidr.is_none()
                && let Some(c) = node
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.as_deref())
                    .and_then(PodCidr::parse)
            {
                state.cidr = Some(c);
            }
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .map(|c| c.status.as_str());
            (ready != Some("True")).then_some(state.internal_ip)
        };
        if let Some(ip) = repost {
            let shared = shared.clone();
            tokio::spawn(async move {
                let status = json!({"status": node_status(&shared.cfg, ip, &name)});
                let nodes: Api<Node> = Api::all(shared.client.clone());
                let _permit = shared.writes.acquire().await;
                if let Err(e) = nodes
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                {
                    warn!(node = %name, error = %e, "node status update failed");
                }
            });
        }
    }
}

async fn watch_pods(shared: Arc<Shared>) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let mut stream = watcher(pods, watcher::Config::default().fields("spec.nodeName!=")).boxed();
    let mut seen_in_relist: Option<HashSet<String>> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => seen_in_relist = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let Some(seen) = seen_in_relist.as_mut() {
                    seen.insert(pod.uid().unwrap_or_default());
                }
                on_pod(&shared, pod);
            }
            Ok(watcher::Event::InitDone) => {
                // Pods deleted while the watch was down: forget them and free their IPs.
                if let Some(seen) = seen_in_relist.take() {
                    let gone: Vec<String> = shared
                        .pods
                        .lock()
                        .expect("pods lock")
                        .keys()
                        .filter(|uid| !seen.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in gone {
                        forget(&shared, &uid);
                    }
                }
            }
            Ok(watcher::Event::Apply(pod)) => on_pod(&shared, pod),
            Ok(watcher::Event::Delete(pod)) => forget(&shared, &pod.uid().unwrap_or_default()),
            Err(e) => {
                warn!(error = %e, "pod watch failed; the watcher retries");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn forget(shared: &Shared, uid: &str) {
    let track = shared.pods.lock().expect("pods lock").remove(uid);
    if let Some(PodTrack {
        node, ip: Some(ip), ..
    }) = track
        && let Some(state) = shared.nodes.lock().expect("nodes lock").get_mut(&node)
        && let Some(cidr) = state.cidr.as_mut()
    {
        cidr.release(&ip);
    }
}

/// The step a pod needs next, decided from what the watch shows and what we already did.
enum Step {
    Start,
    Finish(Duration),
    Stop(Duration),
}

fn on_pod(shared: &Arc<Shared>, pod: Pod) {
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    if !shared.nodes.lock().expect("nodes lock").contains_key(&node) {
        return;
    }
    let uid = pod.uid().unwrap_or_default();
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let step = {
        let mut pods = shared.pods.lock().expect("pods lock");
        let track = pods.entry(uid.clone()).or_insert_with(|| PodTrack {
            node: node.clone(),
            ..PodTrack::default()
        });
        if let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone())
            && track.ip.is_none()
        {
            // Running from before an agent restart: keep its address.
            track.ip = Some(ip.clone());
            track.started = true;
            if let Some(c) = shared
                .nodes
                .lock()
                .expect("nodes lock")
                .get_mut(&node)
                .and_then(|s| s.cidr.as_mut())
            {
                c.claim(&ip);
            }
        }
        if pod.metadata.deletion_timestamp.is_some() {
            if track.stopping {
                return;
            }
            track.stopping = true;
            let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0) as u64;
            Step::Stop(shared.cfg.pod_stop_time.min(Duration::from_secs(grace)))
        } else if phase == "Succeeded" || phase == "Failed" {
            return;
        } else if !track.started {
            track.started = true;
            Step::Start
        } else if phase == "Running" && !track.finishing {
            match run_time(&shared.cfg, &pod) {
                Some(d) => {
                    track.finishing = true;
                    Step::Finish(d)
                }
                None => return,
            }
        } else {
            return;
        }
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let result = match step {
            Step::Start => start(&shared, &pod).await,
            Step::Finish(after) => {
                tokio::time::sleep(after).await;
                finish(&shared, &pod).await
            }
            Step::Stop(after) => {
                tokio::time::sleep(after).await;
                stop(&shared, &pod).await
            }
        };
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => warn!(pod = %format!("{ns}/{name}"), error = %e, "pod update failed"),
        }
    });
}

/// How long a pod runs before it finishes, if it ever does: pods that restart never finish;
/// the run-seconds annotation wins; Job pods run `job_run_time`.
fn run_time(cfg: &SimConfig, pod: &Pod) -> Option<Duration> {
    let restart = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    if restart == "Always" {
        return None;
    }
    if let Some(secs) = pod
        .annotations()
        .get(RUN_SECONDS_ANNOTATION)
        .and_then(|s| s.parse::<f64>().ok())
    {
        return Some(Duration::from_secs_f64(secs.max(0.0)));
    }
    let owned_by_job = pod
        .owner_references()
        .iter()
        .any(|o| o.kind == "Job" && o.controller == Some(true));
    owned_by_job.then_some(cfg.job_run_time)
}

fn containers(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

fn init_containers(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .map(|cs| {
            cs.iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

fn allocate_ip(shared: &Shared, pod: &Pod) -> (String, String) {
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let mut nodes = shared.nodes.lock().expect("nodes lock");
    let Some(state) = nodes.get_mut(&node) else {
        return (String::new(), String::new());
    };
    let host_ip = state.internal_ip.to_string();
    if host_network {
        return (host_ip.clone(), host_ip);
    }
    if state.cidr.is_none() {
        state.cidr = PodCidr::nth_24(&shared.cfg.fallback_pod_cidr, state.index)
            .and_then(|c| PodCidr::parse(&c));
    }
    let ip = state
        .cidr
        .as_mut()
        .and_then(PodCidr::allocate)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    drop(nodes);
    if let Some(track) = shared
        .pods
        .lock()
        .expect("pods lock")
        .get_mut(&pod.uid().unwrap_or_default())
    {
        track.ip = Some(ip.clone());
    }
    (host_ip, ip)
}

fn condition(kind: &str, status: &str, reason: Option<&str>, t: &str) -> Value {
    let mut c =
        json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": t});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

/// A JSON merge patch of a namespaced object (or its `subresource`) whose answer is checked
/// for its status only: the simulated kubelet never reads the object the server sends back,
/// and decoding it (managedFields included) for every pod status and lease renewal was a fifth
/// of the agent's CPU with 5,000 nodes.
async fn merge_patch<K>(
    client: &Client,
    ns: &str,
    name: &str,
    subresource: Option<&str>,
    body: &Value,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()>,
{
    let request = kube::core::Request::new(K::url_path(&(), Some(ns)));
    let (pp, patch) = (PatchParams::default(), Patch::Merge(body));
    let request = match subresource {
        Some(sub) => request.patch_subresource(sub, name, &pp, &patch),
        None => request.patch(name, &pp, &patch),
    }
    .map_err(kube::Error::BuildRequest)?;
    client.request_text(request).await.map(|_| ())
}

async fn patch_pod_status(shared: &Shared, pod: &Pod, status: Value) -> Result<(), kube::Error> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let body = json!({"status": status});
    let _permit = shared.writes.acquire().await;
    retry("pod status", || {
        merge_patch::<Pod>(&shared.client, &ns, &name, Some("status"), &body)
    })
    .await
}

async fn start(shared: &Shared, pod: &Pod) -> Result<(), kube::Error> {
    let (host_ip, pod_ip) = allocate_ip(shared, pod);
    let t = now();
    if !shared.cfg.pod_start_delay.is_zero() {
        let waiting: Vec<Value> = containers(pod)
            .into_iter()
            .map(|(name, image)| json!({"name": name, "image": image, "imageID": "", "ready": false, "started": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}))
            .collect();
        patch_pod_status(
            shared,
            pod,
            json!({
                "phase": "Pending",
                "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                "startTime": t,
                "conditions": [
                    condition("PodReadyToStartContainers", "False", None, &t),
                    condition("Initialized", "True", None, &t),
                    condition("Ready", "False", Some("ContainersNotReady"), &t),
                    condition("ContainersReady", "False", Some("ContainersNotReady"), &t),
                    condition("PodScheduled", "True", None, &t),
                ],
                "containerStatuses": waiting,
            }),
        )
        .await?;
        tokio::time::sleep(shared.cfg.pod_start_delay).await;
    }
    let uid = pod.uid().unwrap_or_default();
    let running = now();
    let statuses: Vec<Value> = containers(pod)
        .into_iter()
        .map(|(name, image)| {
            json!({
                "name": name, "image": image, "imageID": "",
                "containerID": format!("simulated://{uid}/{name}"),
                "ready": true, "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": running}},
            })
        })
        .collect();
    let init: Vec<Value> = init_containers(pod)
        .into_iter()
        .map(|(name, image)| json!({
            "name": name, "image": image, "imageID": "",
            "containerID": format!("simulated://{uid}/{name}"),
            "ready": true, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": t, "finishedAt": running}},
        }))
        .collect();
    let mut status = json!({
        "phase": "Running",
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
        "startTime": t,
        "conditions": [
            condition("PodReadyToStartContainers", "True", None, &running),
            condition("Initialized", "True", None, &t),
            condition("Ready", "True", None, &running),
            condition("ContainersReady", "True", None, &running),
            condition("PodScheduled", "True", None, &t),
        ],
        "containerStatuses": statuses,
    });
    if !init.is_empty() {
        status["initContainerStatuses"] = json!(init);
    }
    debug!(pod = %pod.name_any(), ip = %pod_ip, "pod running");
    patch_pod_status(shared, pod, status).await
}

async fn finish(shared: &Shared, pod: &Pod) -> Result<(), kube::Error> {
    let code: i64 = pod
        .annotations()
        .get(EXIT_CODE_ANNOTATION)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let t = now();
    let uid = pod.uid().unwrap_or_default();
    let (phase, reason) = if code == 0 {
        ("Succeeded", "Completed")
    } else {
        ("Failed", "Error")
    };
    let statuses: Vec<Value> = containers(pod)
        .into_iter()
        .map(|(name, image)| {
            json!({
                "name": name, "image": image, "imageID": "",
                "containerID": format!("simulated://{uid}/{name}"),
                "ready": false, "started": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "reason": reason, "finishedAt": t,
                    "containerID": format!("simulated://{uid}/{name}")}},
            })
        })
        .collect();
    let started = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|s| s.0.to_string());
    let mut status = json!({
        "phase": phase,
        "conditions": [
            condition("PodReadyToStartContainers", "False", None, &t),
            condition("Initialized", "True", Some("PodCompleted"), &t),
            condition("Ready", "False", Some("PodCompleted"), &t),
            condition("ContainersReady", "False", Some("PodCompleted"), &t),
            condition("PodScheduled", "True", None, &t),
        ],
        "containerStatuses": statuses,
    });
    if let Some(s) = started {
        status["startTime"] = json!(s);
    }
    patch_pod_status(shared, pod, status).await
}

async fn stop(shared: &Shared, pod: &Pod) -> Result<(), kube::Error> {
    let api: Api<Pod> =
        Api::namespaced(shared.client.clone(), &pod.namespace().unwrap_or_default());
    let name = pod.name_any();
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let _permit = shared.writes.acquire().await;
    match retry("delete pod", || api.delete(&name, &params)).await {
        Ok(_) => Ok(()),
        // Someone else removed it, or it is a newer pod with the same name.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taint_specs() {
        let t: TaintSpec = "dedicated=gpu:NoSchedule".parse().unwrap();
        assert_eq!(
            t,
            TaintSpec {
                key: "dedicated".into(),
                value: Some("gpu".into()),
                effect: "NoSchedule".into()
            }
        );
        let t: TaintSpec = "example.com/x:NoExecute".parse().unwrap();
        assert_eq!(t.value, None);
        assert!("x=y".parse::<TaintSpec>().is_err());
        assert!("x=y:Sometimes".parse::<TaintSpec>().is_err());
    }

    #[test]
    fn run_times() {
        let cfg = SimConfig::default();
        let pod = |restart: &str, annotations: Value, job: bool| -> Pod {
            let mut v = json!({"metadata": {"name": "p", "annotations": annotations}, "spec": {"restartPolicy": restart, "containers": [{"name": "c"}]}});
            if job {
                v["metadata"]["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u", "controller": true}]);
            }
            serde_json::from_value(v).unwrap()
        };
        assert_eq!(run_time(&cfg, &pod("Always", json!({}), true)), None);
        assert_eq!(run_time(&cfg, &pod("Never", json!({}), false)), None);
        assert_eq!(
            run_time(&cfg, &pod("Never", json!({}), true)),
            Some(cfg.job_run_time)
        );
        assert_eq!(
            run_time(
                &cfg,
                &pod("OnFailure", json!({RUN_SECONDS_ANNOTATION: "1.5"}), false)
            ),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn node_objects_carry_labels_and_taints() {
        let mut cfg = SimConfig::default();
        cfg.labels.insert("zone".into(), "a".into());
        cfg.taints.push("k=v:NoSchedule".parse().unwrap());
        let n = node_object(&cfg, "sim-3");
        assert_eq!(n["metadata"]["labels"]["type"], "simulated");
        assert_eq!(n["metadata"]["labels"]["zone"], "a");
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], "sim-3");
        assert_eq!(n["spec"]["taints"][0]["key"], "k");
        let node: Node = serde_json::from_value(n).unwrap();
        assert_eq!(node.name_any(), "sim-3");
        assert_eq!(internal_ip(0).to_string(), "172.16.0.1");
        assert_eq!(internal_ip(300).to_string(), "172.16.1.45");
    }
}
