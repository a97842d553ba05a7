//! Node lifecycle: a node whose Lease is not renewed within the grace period gets its
//! conditions set to Unknown ("Kubelet stopped posting node status.") and the
//! `node.kubernetes.io/unreachable` NoSchedule and NoExecute taints; a node that reports
//! Ready=False gets the `not-ready` taints; the taints go when the node is Ready again.
//! Pods on a node with a NoExecute taint they do not tolerate are deleted, at once or after
//! their `tolerationSeconds` (upstream's taint-based eviction).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::events::{EventType, Recorder};
use crate::informer::Informer;

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const NOT_READY: &str = "node.kubernetes.io/not-ready";

#[derive(Clone)]
pub struct NodeLifecycleController {
    client: Client,
    nodes: Informer<Node>,
    leases: Informer<Lease>,
    pods: Informer<Pod>,
    grace: Duration,
    recorder: Recorder,
    /// When the controller first saw each node (a node is never judged before its grace).
    first_seen: Arc<Mutex<HashMap<String, DateTime<Utc>>>>,
}

fn ready_status(node: &Node) -> Option<String> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone())
}

/// Whether `t` tolerates `taint`, and for how long (None: for ever).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let key_ok = match t.operator.as_deref() {
        Some("Exists") => t
            .key
            .as_deref()
            .is_none_or(|k| k.is_empty() || k == taint.key),
        _ => {
            t.key.as_deref() == Some(taint.key.as_str())
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    };
    let effect_ok = t
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    key_ok && effect_ok
}

/// When a pod must leave a node with these NoExecute taints: None = may stay; Some(t) = at t.
pub fn eviction_time(pod: &Pod, taints: &[Taint], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut when: Option<DateTime<Utc>> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(now);
        }
        // The shortest tolerationSeconds among matching tolerations; any without one: for ever.
        if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            continue;
        }
        let secs = matching
            .iter()
            .filter_map(|t| t.toleration_seconds)
            .min()
            .unwrap_or(0)
            .max(0);
        let added = taint
            .time_added
            .as_ref()
            .map(|t| crate::util::chrono_time(&t.0))
            .unwrap_or(now);
        let at = added + chrono::Duration::seconds(secs);
        when = Some(when.map_or(at, |w| w.min(at)));
    }
    when
}

impl NodeLifecycleController {
    pub fn new(
        client: Client,
        nodes: Informer<Node>,
        leases: Informer<Lease>,
        pods: Informer<Pod>,
        grace: Duration,
    ) -> Self {
        pods.add_index("node", |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty())
                .into_iter()
                .collect()
        });
        NodeLifecycleController {
            recorder: Recorder::new(client.clone(), "node-controller"),
            client,
            nodes,
            leases,
            pods,
            grace,
            first_seen: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Checks every node once a second (upstream: every 5 s).
    pub async fn run(self) {
        self.nodes.wait_synced().await;
        self.leases.wait_synced().await;
        self.pods.wait_synced().await;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            for node in self.nodes.list() {
                if let Err(e) = self.check(&node).await {
                    warn!(node = %node.name_any(), error = %e, "node check failed");
                }
            }
        }
    }

    async fn check(&self, node: &Node) -> Result<(), kube::Error> {
        let name = node.name_any();
        let now = Utc::now();
        let seen = *self
            .first_seen
            .lock()
            .expect("nodes")
            .entry(name.clone())
            .or_insert(now);
        let renewed = self
            .leases
            .get(&format!("kube-node-lease/{name}"))
            .and_then(|l| {
                l.spec
                    .as_ref()
                    .and_then(|s| s.renew_time.as_ref())
                    .map(|t| crate::util::chrono_time(&t.0))
            });
        let last = renewed.unwrap_or(seen).max(seen);
        let stale = (now - last).to_std().unwrap_or_default() > self.grace;
        let ready = ready_status(node);
        let api: Api<Node> = Api::all(self.client.clone());
        if stale && ready.as_deref() != Some("Unknown") {
            info!(node = %name, "node stopped renewing its lease; marking it NotReady");
            let t = now.to_rfc3339_opts(SecondsFormat::Secs, true);
            let conditions: Vec<serde_json::Value> = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|c| {
                    json!({"type": c.type_, "status": "Unknown", "reason": "NodeStatusUnknown",
                           "message": "Kubelet stopped posting node status.",
                           "lastHeartbeatTime": c.last_heartbeat_time, "lastTransitionTime": t})
                })
                .collect();
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"conditions": conditions}})),
            )
            .await?;
            self.recorder.record(
                node,
                EventType::Normal,
                "NodeNotReady",
                &format!("Node {name} status is now: NodeNotReady"),
            );
        }
        // The taints the node should carry now.
        let want: Option<&str> = match (stale, ready.as_deref()) {
            (true, _) | (_, Some("Unknown")) => Some(UNREACHABLE),
            (false, Some("False")) => Some(NOT_READY),
            _ => None,
        };
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let ours = |t: &Taint| {
            (t.key == UNREACHABLE || t.key == NOT_READY)
                && (t.effect == "NoSchedule" || t.effect == "NoExecute")
        };
        let mut next: Vec<Taint> = taints
            .iter()
            .filter(|t| !ours(t) || Some(t.key.as_str()) == want)
            .cloned()
            .collect();
        if let Some(key) = want {
            for effect in ["NoSchedule", "NoExecute"] {
                if !next.iter().any(|t| t.key == key && t.effect == effect) {
                    next.push(serde_json::from_value(json!({"key": key, "effect": effect, "timeAdded": now.to_rfc3339_opts(SecondsFormat::Secs, true)})).expect("taint"));
                }
            }
        }
        if next != taints {
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"taints": next}})),
            )
            .await?;
        }
        // Taint-based eviction.
        if next.iter().any(|t| t.effect == "NoExecute") {
            for pod in self.pods.by_index("node", &name) {
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                if let Some(at) = eviction_time(&pod, &next, now)
                    && at <= now
                {
                    let ns = pod.namespace().unwrap_or_default();
                    self.recorder.record(
                        pod.as_ref(),
                        EventType::Normal,
                        "TaintManagerEviction",
                        &format!("Marking for deletion Pod {ns}/{}", pod.name_any()),
                    );
                    let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
                    match pods.delete(&pod.name_any(), &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, effect: &str, added: DateTime<Utc>) -> Taint {
        serde_json::from_value(
            json!({"key": key, "effect": effect, "timeAdded": added.to_rfc3339()}),
        )
        .unwrap()
    }

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}})).unwrap()
    }

    #[test]
    fn eviction_times() {
        let now = Utc::now();
        let t0 = now - chrono::Duration::seconds(10);
        let taints = [taint(UNREACHABLE, "NoExecute", t0)];
        assert_eq!(eviction_time(&pod(json!([])), &taints, now), Some(now));
        let p = pod(
            json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]),
        );
        assert_eq!(
            eviction_time(&p, &taints, now),
            Some(t0 + chrono::Duration::seconds(5))
        );
        let p = pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]));
        assert_eq!(eviction_time(&p, &taints, now), None);
        let p = pod(json!([{"operator": "Exists"}]));
        assert_eq!(eviction_time(&p, &taints, now), None);
        let ns_only = [taint(UNREACHABLE, "NoSchedule", t0)];
        assert_eq!(eviction_time(&pod(json!([])), &ns_only, now), None);
    }
}
