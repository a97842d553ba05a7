//! Pod garbage collection, as upstream's podgc controller. Every period it force-deletes (grace
//! 0, after marking the pod Failed if it is not finished):
//! - terminated pods (Succeeded/Failed) beyond `--terminated-pod-gc-threshold`, evicted ones
//!   first, then oldest first;
//! - terminating pods on a node that is not Ready and carries the
//!   `node.kubernetes.io/out-of-service` taint;
//! - orphaned pods: bound to a node that does not exist. A missing node is first quarantined
//!   (the node informer may lag), then looked up through the API; only pods of a node the API
//!   confirms gone are deleted, with a `DisruptionTarget` condition (`DeletionByPodGC`);
//! - unscheduled terminating pods: being deleted, never bound, so no node will finish them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::informer::Informer;

const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// upstream's `isPodTerminated`: any phase but Pending, Running and Unknown (a pod with no
/// phase yet is not finished: the API server gives every new pod `Pending`).
fn terminated(pod: &Pod) -> bool {
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        None | Some("Pending" | "Running" | "Unknown")
    )
}

/// Failed with reason Evicted (the kubelet's eviction): collected before other finished pods.
fn evicted(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Failed") && s.reason.as_deref() == Some("Evicted")
    })
}

fn node_of(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// What one pass collects, and the state of the orphan quarantine after it.
#[derive(Debug, Default)]
pub struct Plan {
    /// Finished pods beyond the threshold, in deletion order.
    pub terminated: Vec<Arc<Pod>>,
    /// Terminating pods on out-of-service nodes.
    pub out_of_service: Vec<Arc<Pod>>,
    /// Pods being deleted that were never bound.
    pub unscheduled_terminating: Vec<Arc<Pod>>,
    /// Nodes that pods are bound to but the cache does not have: since when.
    pub missing_since: HashMap<String, DateTime<Utc>>,
    /// Missing nodes whose quarantine is over: ask the API whether they are really gone.
    pub check: Vec<String>,
}

/// One pass over the cached pods and nodes. `missing_since` is the quarantine as the last pass
/// left it; `threshold` 0 turns the terminated-pod collection off.
pub fn plan(
    pods: &[Arc<Pod>],
    nodes: &[Arc<Node>],
    missing_since: &HashMap<String, DateTime<Utc>>,
    threshold: usize,
    quarantine: Duration,
    now: DateTime<Utc>,
) -> Plan {
    let mut plan = Plan::default();
    let by_name: HashMap<String, &Arc<Node>> = nodes.iter().map(|n| (n.name_any(), n)).collect();
    if threshold > 0 {
        let mut done: Vec<Arc<Pod>> = pods.iter().filter(|p| terminated(p)).cloned().collect();
        if done.len() > threshold {
            done.sort_by(|a, b| {
                evicted(b)
                    .cmp(&evicted(a))
                    .then_with(|| a.creation_timestamp().cmp(&b.creation_timestamp()))
                    .then_with(|| a.name_any().cmp(&b.name_any()))
            });
            done.truncate(done.len() - threshold);
            plan.terminated = done;
        }
    }
    for pod in pods {
        let node = node_of(pod);
        if pod.metadata.deletion_timestamp.is_some() {
            if node.is_empty() {
                plan.unscheduled_terminating.push(pod.clone());
            } else if let Some(n) = by_name.get(node)
                && !node_ready(n)
                && n.spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| t.iter().any(|t| t.key == OUT_OF_SERVICE))
            {
                plan.out_of_service.push(pod.clone());
            }
        }
        if !node.is_empty() && !by_name.contains_key(node) {
            let since = missing_since.get(node).copied().unwrap_or(now);
            plan.missing_since.insert(node.to_owned(), since);
        }
    }
    let quarantine = chrono::Duration::from_std(quarantine).unwrap_or(chrono::Duration::MAX);
    let mut check: Vec<String> = plan
        .missing_since
        .iter()
        .filter(|(_, since)| **since + quarantine <= now)
        .map(|(n, _)| n.clone())
        .collect();
    check.sort();
    plan.check = check;
    plan
}

/// The pods bound to nodes the API confirmed gone.
pub fn orphans(pods: &[Arc<Pod>], gone: &HashSet<String>) -> Vec<Arc<Pod>> {
    pods.iter()
        .filter(|p| gone.contains(node_of(p)))
        .cloned()
        .collect()
}

#[derive(Clone)]
pub struct PodGcController {
    client: Client,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    threshold: usize,
    period: Duration,
    quarantine: Duration,
    missing_since: Arc<Mutex<HashMap<String, DateTime<Utc>>>>,
}

impl PodGcController {
    pub fn new(
        client: Client,
        pods: Informer<Pod>,
        nodes: Informer<Node>,
        threshold: usize,
        period: Duration,
        quarantine: Duration,
    ) -> Self {
        PodGcController {
            client,
            pods,
            nodes,
            threshold,
            period,
            quarantine,
            missing_since: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub async fn run(self) {
        self.pods.wait_synced().await;
        self.nodes.wait_synced().await;
        let mut tick = tokio::time::interval(self.period.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.gc().await;
        }
    }

    async fn gc(&self) {
        let pods = self.pods.list();
        let nodes = self.nodes.list();
        let previous = self.missing_since.lock().expect("podgc").clone();
        let mut plan = plan(
            &pods,
            &nodes,
            &previous,
            self.threshold,
            self.quarantine,
            Utc::now(),
        );
        if !plan.terminated.is_empty() {
            info!(
                pods = plan.terminated.len(),
                "garbage collecting terminated pods"
            );
        }
        for pod in plan.terminated.iter().chain(&plan.out_of_service) {
            self.mark_failed_and_delete(pod, None).await;
        }
        // Missing nodes past their quarantine: gone only if the API says so.
        let api: Api<Node> = Api::all(self.client.clone());
        let mut gone = HashSet::new();
        for name in &plan.check {
            match api.get_opt(name).await {
                Ok(None) => {
                    gone.insert(name.clone());
                }
                Ok(Some(_)) => {}
                Err(e) => warn!(node = %name, error = %e, "checking a node failed"),
            }
            // Checked: a node still missing next time starts a new quarantine.
            plan.missing_since.remove(name);
        }
        *self.missing_since.lock().expect("podgc") = plan.missing_since;
        for pod in orphans(&pods, &gone) {
            info!(pod = %format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()),
                node = node_of(&pod), "deleting orphaned pod: its node no longer exists");
            self.mark_failed_and_delete(
                &pod,
                Some(("DeletionByPodGC", "PodGC: node no longer exists")),
            )
            .await;
        }
        for pod in &plan.unscheduled_terminating {
            self.mark_failed_and_delete(pod, None).await;
        }
    }

    /// upstream's `markFailedAndDeletePodWithCondition`: an unfinished pod is marked Failed
    /// (no node will ever do it), with a DisruptionTarget condition if given; then the pod is
    /// deleted at once. Failures are logged; the next pass tries again.
    async fn mark_failed_and_delete(&self, pod: &Pod, condition: Option<(&str, &str)>) {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if !matches!(phase, Some("Succeeded" | "Failed")) {
            let mut conditions = crate::util::conditions_json(
                pod.status.as_ref().and_then(|s| s.conditions.as_ref()),
            );
            if let Some((reason, message)) = condition {
                let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
                let c = json!({"type": "DisruptionTarget", "status": "True", "reason": reason,
                    "message": message, "lastProbeTime": null, "lastTransitionTime": now});
                match conditions
                    .iter_mut()
                    .find(|c| c["type"] == "DisruptionTarget")
                {
                    Some(old) => *old = c,
                    None => conditions.push(c),
                }
            }
            let patch = json!({"status": {"phase": "Failed", "conditions": conditions}});
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => return,
                Err(e) => {
                    warn!(pod = %format!("{ns}/{name}"), error = %e, "marking a pod Failed failed");
                    return;
                }
            }
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => info!(pod = %format!("{ns}/{name}"), "PodGC force-deleted pod"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => warn!(pod = %format!("{ns}/{name}"), error = %e, "deleting a pod failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn now() -> DateTime<Utc> {
        "2025-03-01T12:00:00Z".parse().unwrap()
    }

    fn pod(name: &str, node: &str, phase: &str, created: &str, extra: Value) -> Arc<Pod> {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": phase},
        });
        if !node.is_empty() {
            p["spec"]["nodeName"] = json!(node);
        }
        merge(&mut p, &extra);
        Arc::new(serde_json::from_value(p).unwrap())
    }

    /// JSON merge: objects merge key by key, anything else replaces.
    fn merge(into: &mut Value, from: &Value) {
        match (into.as_object_mut(), from.as_object()) {
            (Some(a), Some(b)) => {
                for (k, v) in b {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
            _ => *into = from.clone(),
        }
    }

    fn node(name: &str, ready: bool, taints: Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"taints": taints},
                "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
            }))
            .unwrap(),
        )
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn terminated_pods_beyond_the_threshold_go_evicted_then_oldest_first() {
        let nodes = [node("n1", true, json!([]))];
        let pods = vec![
            pod("new", "n1", "Succeeded", "2025-03-01T11:00:00Z", json!({})),
            pod("old", "n1", "Failed", "2025-03-01T09:00:00Z", json!({})),
            pod("mid", "n1", "Succeeded", "2025-03-01T10:00:00Z", json!({})),
            pod(
                "evicted",
                "n1",
                "Failed",
                "2025-03-01T11:30:00Z",
                json!({"status": {"reason": "Evicted"}}),
            ),
            pod(
                "running",
                "n1",
                "Running",
                "2025-03-01T08:00:00Z",
                json!({}),
            ),
            pod("pending", "", "Pending", "2025-03-01T08:00:00Z", json!({})),
        ];
        let cases = [
            (0, vec![]),
            (5, vec![]),
            (4, vec![]),
            (3, vec!["evicted"]),
            (1, vec!["evicted", "old", "mid"]),
        ];
        for (threshold, want) in cases {
            let p = plan(
                &pods,
                &nodes,
                &HashMap::new(),
                threshold,
                Duration::from_secs(40),
                now(),
            );
            assert_eq!(names(&p.terminated), want, "threshold {threshold}");
        }
        // Same age: by name.
        let twins = vec![
            pod("b", "n1", "Succeeded", "2025-03-01T09:00:00Z", json!({})),
            pod("a", "n1", "Succeeded", "2025-03-01T09:00:00Z", json!({})),
        ];
        let p = plan(&twins, &nodes, &HashMap::new(), 1, Duration::ZERO, now());
        assert_eq!(names(&p.terminated), vec!["a"]);
    }

    #[test]
    fn orphans_wait_out_their_quarantine() {
        let nodes = [node("n1", true, json!([]))];
        let pods = vec![
            pod("here", "n1", "Running", "2025-03-01T09:00:00Z", json!({})),
            pod("lost", "gone", "Running", "2025-03-01T09:00:00Z", json!({})),
            pod(
                "lost2",
                "gone",
                "Pending",
                "2025-03-01T09:00:00Z",
                json!({}),
            ),
            pod("unbound", "", "Pending", "2025-03-01T09:00:00Z", json!({})),
        ];
        let q = Duration::from_secs(40);
        // First sight: quarantined from now, nothing to check.
        let p = plan(&pods, &nodes, &HashMap::new(), 0, q, now());
        assert_eq!(p.missing_since.get("gone"), Some(&now()));
        assert!(p.check.is_empty());
        // Before the end of the quarantine: still waiting, same start.
        let later = now() + chrono::Duration::seconds(39);
        let p2 = plan(&pods, &nodes, &p.missing_since, 0, q, later);
        assert_eq!(p2.missing_since.get("gone"), Some(&now()));
        assert!(p2.check.is_empty());
        // Over: ask the API.
        let p3 = plan(
            &pods,
            &nodes,
            &p.missing_since,
            0,
            q,
            now() + chrono::Duration::seconds(40),
        );
        assert_eq!(p3.check, vec!["gone".to_owned()]);
        let gone: HashSet<String> = p3.check.iter().cloned().collect();
        assert_eq!(names(&orphans(&pods, &gone)), vec!["lost", "lost2"]);
        // The node came back: no longer missing.
        let back = [node("n1", true, json!([])), node("gone", true, json!([]))];
        let p4 = plan(&pods, &back, &p.missing_since, 0, q, later);
        assert!(p4.missing_since.is_empty());
    }

    #[test]
    fn terminating_pods_that_no_node_will_finish() {
        let oos = json!([{"key": OUT_OF_SERVICE, "value": "nodeshutdown", "effect": "NoExecute"}]);
        let nodes = [
            node("ok", true, json!([])),
            node("down", false, json!([])),
            node("shut", false, oos.clone()),
            node("tainted-but-ready", true, oos),
        ];
        let deleting = json!({"metadata": {"deletionTimestamp": "2025-03-01T11:59:00Z"}});
        let pods = vec![
            pod(
                "unbound",
                "",
                "Pending",
                "2025-03-01T09:00:00Z",
                deleting.clone(),
            ),
            pod(
                "on-ok",
                "ok",
                "Running",
                "2025-03-01T09:00:00Z",
                deleting.clone(),
            ),
            pod(
                "on-down",
                "down",
                "Running",
                "2025-03-01T09:00:00Z",
                deleting.clone(),
            ),
            pod(
                "on-shut",
                "shut",
                "Running",
                "2025-03-01T09:00:00Z",
                deleting.clone(),
            ),
            pod(
                "alive-on-shut",
                "shut",
                "Running",
                "2025-03-01T09:00:00Z",
                json!({}),
            ),
            pod(
                "on-ready",
                "tainted-but-ready",
                "Running",
                "2025-03-01T09:00:00Z",
                deleting,
            ),
        ];
        let p = plan(
            &pods,
            &nodes,
            &HashMap::new(),
            0,
            Duration::from_secs(40),
            now(),
        );
        assert_eq!(names(&p.unscheduled_terminating), vec!["unbound"]);
        assert_eq!(names(&p.out_of_service), vec!["on-shut"]);
        assert!(p.missing_since.is_empty());
    }
}
