//! The DaemonSet controller: one pod per eligible node, as upstream's.
//!
//! A node is eligible when it matches the template's nodeSelector and required node affinity
//! and the pod (with the automatic DaemonSet tolerations) tolerates its NoSchedule and NoExecute
//! taints; a node whose only untolerated taints are NoSchedule keeps a pod it already has.
//! Pods are created unbound with a required node affinity on `metadata.name` (the scheduler
//! binds them), labelled `controller-revision-hash` and `pod-template-generation`.
//!
//! reconcile(ds): `plan` (a pure function of the DaemonSet, nodes and owned pods) decides the
//! nodes needing a pod, the pods to delete (misscheduled, failed, duplicates, and old-revision
//! pods within the rolling update's maxUnavailable budget) and the status; then the history
//! (ControllerRevisions) is synced, the plan carried out and the status written if it changed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodTemplateSpec, Toleration,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::events::{EventType, Recorder};
use crate::informer::{Change, Informer, controller_uid_index, split_key};
use crate::nodelifecycle::tolerates;
use crate::queue::{Action, WorkQueue};
use crate::util::{
    Expectations, claim, controller_ref, int_or_percent, pod_active, pod_available,
    pod_from_template, pod_ready, pod_terminal, selector_matches, short_hash, sync_history,
    template_revision_data,
};

pub const REVISION_LABEL: &str = "controller-revision-hash";
pub const GENERATION_LABEL: &str = "pod-template-generation";

/// At most this many pods are created or deleted by one reconcile.
const BURST: usize = 250;

/// The tolerations every DaemonSet pod gets on top of its template's (upstream's
/// `AddOrUpdateDaemonPodTolerations`).
pub fn daemon_tolerations(template: &PodTemplateSpec) -> Vec<Toleration> {
    let spec = template.spec.as_ref();
    let mut out = spec.and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let mut auto = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        auto.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    for (key, effect) in auto {
        // Replaces a template toleration of the same key and effect (e.g. one with seconds).
        out.retain(|t| !(t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect)));
        out.push(Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        });
    }
    out
}

/// Whether a node should run the daemon pod, and whether a pod already there may stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fit {
    pub should_run: bool,
    pub should_continue: bool,
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if op == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

/// One node selector term: every expression (on labels) and field (`metadata.name`) matches;
/// a term without requirements matches nothing, as upstream.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.labels();
    let name = node.name_any();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let value = (r.key == "metadata.name").then_some(name.as_str());
            r.key == "metadata.name" && requirement_matches(r, value)
        })
}

/// Whether the template's node name, nodeSelector and required node affinity admit `node`.
pub fn node_matches(template: &PodTemplateSpec, node: &Node) -> bool {
    let Some(spec) = template.spec.as_ref() else {
        return true;
    };
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty())
        && n != node.name_any()
    {
        return false;
    }
    let labels = node.labels();
    if let Some(sel) = &spec.node_selector
        && sel.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    if let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        && !required
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node))
    {
        return false;
    }
    true
}

/// Upstream's `nodeShouldRunDaemonPod`: placement and taints.
pub fn node_fit(template: &PodTemplateSpec, node: &Node) -> Fit {
    if !node_matches(template, node) {
        return Fit::default();
    }
    let tolerations = daemon_tolerations(template);
    let mut fit = Fit {
        should_run: true,
        should_continue: true,
    };
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    for taint in taints {
        if !matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            || tolerations.iter().any(|t| tolerates(t, taint))
        {
            continue;
        }
        fit.should_run = false;
        if taint.effect == "NoExecute" {
            fit.should_continue = false;
        }
    }
    fit
}

/// The node a daemon pod is for: its `nodeName`, or the node its required affinity names.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref())
        .filter(|v| v.len() == 1)
        .map(|v| v[0].clone())
}

/// The required node affinity pinning a daemon pod to `node` (upstream's
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`): the template's required terms are replaced, its
/// preferred terms and pod (anti-)affinity kept.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_owned()]),
            }]),
            match_expressions: None,
        }],
    });
    affinity
}

/// The status counters of a DaemonSet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub desired: i32,
    pub current: i32,
    pub misscheduled: i32,
    pub ready: i32,
    pub available: i32,
    pub updated: i32,
}

/// What one reconcile does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Nodes that need a new pod, by name.
    pub create: Vec<String>,
    /// Pods to delete, by name.
    pub delete: Vec<String>,
    pub counts: Counts,
    /// Some pod is ready but not yet available (look again after minReadySeconds).
    pub awaiting_available: bool,
}

/// The controller's decision for `ds` given all nodes and the pods it owns. `hash` is the
/// current template's revision hash; `gone` names pods already being deleted that the cache
/// still shows as active.
pub fn plan(
    ds: &DaemonSet,
    hash: &str,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    gone: &HashSet<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Plan {
    let spec = ds.spec.clone().unwrap_or_default();
    let template = &spec.template;
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let deleting =
        |p: &Pod| p.metadata.deletion_timestamp.is_some() || gone.contains(&p.name_any());
    let mut plan = Plan::default();
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    let node_names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    for pod in pods {
        // Finished pods on their way out no longer hold their node.
        if pod_terminal(pod) && deleting(pod) {
            continue;
        }
        match target_node(pod) {
            Some(n) if node_names.contains(&n) => by_node.entry(n).or_default().push(pod.clone()),
            // For a node that no longer exists (or no node at all): nothing to keep it for.
            _ if !deleting(pod) => plan.delete.push(pod.name_any()),
            _ => {}
        }
    }
    let mut sorted: Vec<&Arc<Node>> = nodes.iter().collect();
    sorted.sort_by_key(|n| n.name_any());
    let fits: Vec<(String, Fit)> = sorted
        .iter()
        .map(|n| (n.name_any(), node_fit(template, n)))
        .collect();
    // Placement: pods on nodes that should (not) have one.
    for (node, fit) in &fits {
        let on_node = by_node.get(node).map(Vec::as_slice).unwrap_or_default();
        if fit.should_run && on_node.is_empty() {
            plan.create.push(node.clone());
        } else if fit.should_continue {
            let mut running: Vec<&Arc<Pod>> = Vec::new();
            for p in on_node.iter().filter(|p| !deleting(p)) {
                if pod_terminal(p) {
                    plan.delete.push(p.name_any());
                } else {
                    running.push(p);
                }
            }
            // Duplicates: keep the oldest.
            running.sort_by_key(|p| p.creation_timestamp());
            plan.delete
                .extend(running.iter().skip(1).map(|p| p.name_any()));
        } else {
            plan.delete.extend(
                on_node
                    .iter()
                    .filter(|p| !deleting(p))
                    .map(|p| p.name_any()),
            );
        }
    }
    // Status, from the pods as they are.
    let has_hash = |p: &Pod| p.labels().get(REVISION_LABEL).map(String::as_str) == Some(hash);
    for (node, fit) in &fits {
        let on_node = by_node.get(node).map(Vec::as_slice).unwrap_or_default();
        if !fit.should_run {
            if !on_node.is_empty() {
                plan.counts.misscheduled += 1;
            }
            continue;
        }
        plan.counts.desired += 1;
        let Some(first) = on_node
            .iter()
            .min_by_key(|p| (deleting(p), p.creation_timestamp()))
        else {
            continue;
        };
        plan.counts.current += 1;
        if pod_ready(first) {
            plan.counts.ready += 1;
            if pod_available(first, min_ready, now) {
                plan.counts.available += 1;
            } else {
                plan.awaiting_available = true;
            }
        }
        if has_hash(first) {
            plan.counts.updated += 1;
        }
    }
    // Rolling update: replace old pods, at most maxUnavailable nodes short at a time.
    let strategy = spec.update_strategy.unwrap_or_default();
    if strategy.type_.as_deref() == Some("OnDelete") {
        return plan;
    }
    let desired = plan.counts.desired;
    let mut max_unavailable = int_or_percent(
        strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.max_unavailable.as_ref()),
        desired,
        true,
        1,
    );
    if max_unavailable <= 0 {
        max_unavailable = 1;
    }
    let already: HashSet<String> = plan.delete.iter().cloned().collect();
    let mut unavailable = 0;
    let mut replace_now = Vec::new();
    let mut candidates = Vec::new();
    for (node, fit) in &fits {
        if !fit.should_run {
            continue;
        }
        let live: Vec<&Arc<Pod>> = by_node
            .get(node)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|p| !deleting(p) && !pod_terminal(p) && !already.contains(&p.name_any()))
            .collect();
        let (new, old): (Vec<&Arc<Pod>>, Vec<&Arc<Pod>>) =
            live.into_iter().partition(|p| has_hash(p));
        if new.len() > 1 || old.len() > 1 {
            unavailable += 1;
            continue;
        }
        match (new.first(), old.first()) {
            (None, None) | (Some(_), Some(_)) => unavailable += 1,
            (Some(n), None) => {
                if !pod_available(n, min_ready, now) {
                    unavailable += 1;
                }
            }
            (None, Some(o)) => {
                if !pod_available(o, min_ready, now) {
                    replace_now.push(o.name_any());
                } else if unavailable < max_unavailable {
                    candidates.push(o.name_any());
                }
            }
        }
    }
    let budget = (max_unavailable - unavailable).max(0) as usize;
    plan.delete.extend(replace_now);
    plan.delete.extend(candidates.into_iter().take(budget));
    plan
}

#[derive(Clone)]
pub struct DaemonSetController {
    client: Client,
    daemonsets: Informer<DaemonSet>,
    nodes: Informer<Node>,
    pods: Informer<Pod>,
    revisions: Informer<ControllerRevision>,
    queue: WorkQueue,
    expectations: Expectations,
    recorder: Recorder,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// The node fields that decide placement.
fn placement_view(n: &Node) -> (BTreeMap<String, String>, serde_json::Value) {
    (
        n.labels().clone(),
        json!(n.spec.as_ref().map(|s| (&s.taints, s.unschedulable))),
    )
}

impl DaemonSetController {
    /// Registers the controller's handlers; call before the informers run.
    pub fn new(
        client: Client,
        daemonsets: Informer<DaemonSet>,
        nodes: Informer<Node>,
        pods: Informer<Pod>,
        revisions: Informer<ControllerRevision>,
    ) -> Self {
        let queue = WorkQueue::new();
        daemonsets.enqueue_changes(&queue);
        let q = queue.clone();
        let all = daemonsets.clone();
        nodes.on_change(move |c| {
            let relevant = match c {
                Change::Upsert {
                    old: Some(old),
                    new,
                } => placement_view(old) != placement_view(new),
                _ => true,
            };
            if relevant {
                for key in all.keys() {
                    q.add(key);
                }
            }
        });
        pods.enqueue_controllers(&queue, &daemonsets);
        pods.add_index("controller", controller_uid_index);
        pods.enqueue_adopters(&queue, &daemonsets, |ds, pod| {
            selector_matches(ds.spec.as_ref().map(|s| &s.selector), pod.labels())
        });
        revisions.add_index("controller", controller_uid_index);
        DaemonSetController {
            recorder: Recorder::new(client.clone(), "daemonset-controller"),
            client,
            daemonsets,
            nodes,
            pods,
            revisions,
            queue,
            expectations: Expectations::default(),
        }
    }

    pub async fn run(self, workers: usize) {
        self.daemonsets.wait_synced().await;
        self.nodes.wait_synced().await;
        self.pods.wait_synced().await;
        self.revisions.wait_synced().await;
        for key in self.daemonsets.keys() {
            self.queue.add(key);
        }
        let this = self.clone();
        self.queue
            .clone()
            .run("daemonset", workers, move |key| {
                let this = this.clone();
                async move { this.reconcile(&key).await }
            })
            .await;
    }

    async fn reconcile(&self, key: &str) -> Result<Action, Error> {
        let Some(ds) = self.daemonsets.get(key) else {
            self.expectations.forget(key);
            return Ok(Action::Done);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let (ns, name) = split_key(key);
        let uid = ds.uid().unwrap_or_default();
        let spec = ds.spec.clone().unwrap_or_default();
        let template = &spec.template;
        let template_labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        if !selector_matches(Some(&spec.selector), &template_labels) {
            return Ok(Action::Done); // the API server rejects these; do nothing for one
        }
        let data = template_revision_data(template);
        let hash = short_hash(data.to_string().as_bytes());
        // Adopt matching orphaned pods; release those that stopped matching.
        let owned: Vec<Arc<Pod>> = claim(
            &Api::<Pod>::namespaced(self.client.clone(), ns),
            &controller_ref(ds.as_ref()),
            ds.metadata.deletion_timestamp.is_some(),
            Some(&spec.selector),
            self.pods.by_index("controller", &uid),
            self.pods.by_index("orphan", ns),
        )
        .await?
        .owned;

        // History: one ControllerRevision per template; keep those live pods still run.
        let in_use: HashSet<String> = owned
            .iter()
            .filter_map(|p| p.labels().get(REVISION_LABEL))
            .map(|h| format!("{name}-{h}"))
            .collect();
        let mut rev_labels = template_labels.clone();
        rev_labels.insert(REVISION_LABEL.into(), hash.clone());
        sync_history(
            &self.client,
            ds.as_ref(),
            &self.revisions.by_index("controller", &uid),
            &format!("{name}-{hash}"),
            rev_labels,
            data,
            &in_use,
            spec.revision_history_limit.unwrap_or(10),
        )
        .await?;

        let active: HashSet<String> = owned
            .iter()
            .filter(|p| pod_active(p))
            .map(|p| p.name_any())
            .collect();
        let (pending_adds, gone) = self.expectations.observe(key, &active);
        let nodes = self.nodes.list();
        let now = chrono::Utc::now();
        let plan = plan(&ds, &hash, &nodes, &owned, &gone, now);
        // Until the cache shows the pods created last time, counting would create them twice.
        if pending_adds == 0 {
            self.delete_pods(key, &ds, &plan.delete).await?;
            self.create_pods(key, &ds, &hash, &plan.create).await?;
        }

        let c = plan.counts;
        let old = ds.status.clone().unwrap_or_default();
        let unchanged = old.desired_number_scheduled == c.desired
            && old.current_number_scheduled == c.current
            && old.number_misscheduled == c.misscheduled
            && old.number_ready == c.ready
            && old.number_available.unwrap_or(0) == c.available
            && old.number_unavailable.unwrap_or(0) == c.desired - c.available
            && old.updated_number_scheduled.unwrap_or(0) == c.updated
            && old.observed_generation == ds.metadata.generation;
        if !unchanged {
            let status = json!({"status": {
                "desiredNumberScheduled": c.desired,
                "currentNumberScheduled": c.current,
                "numberMisscheduled": c.misscheduled,
                "numberReady": c.ready,
                "numberAvailable": c.available,
                "numberUnavailable": c.desired - c.available,
                "updatedNumberScheduled": c.updated,
                "observedGeneration": ds.metadata.generation,
            }});
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        if plan.awaiting_available && min_ready > 0 {
            return Ok(Action::RequeueAfter(Duration::from_secs(min_ready as u64)));
        }
        Ok(Action::Done)
    }

    async fn delete_pods(&self, key: &str, ds: &DaemonSet, names: &[String]) -> Result<(), Error> {
        let (ns, _) = split_key(key);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let victims: Vec<&String> = names.iter().take(BURST).collect();
        let results = join_all(victims.iter().map(|n| {
            self.expectations.deleted(key, n);
            let api = api.clone();
            async move { api.delete(n, &DeleteParams::default()).await }
        }))
        .await;
        for (r, n) in results.into_iter().zip(victims) {
            match r {
                Ok(_) => self.recorder.record(
                    ds,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {n}"),
                ),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn create_pods(
        &self,
        key: &str,
        ds: &DaemonSet,
        hash: &str,
        nodes: &[String],
    ) -> Result<(), Error> {
        let (ns, name) = split_key(key);
        let spec = ds.spec.clone().unwrap_or_default();
        let generation = ds.metadata.generation.unwrap_or(0).to_string();
        let mut base = pod_from_template(
            &spec.template,
            ns,
            name,
            &[(REVISION_LABEL, hash), (GENERATION_LABEL, &generation)],
            controller_ref(ds),
        );
        if let Some(s) = base.spec.as_mut() {
            s.tolerations = Some(daemon_tolerations(&spec.template));
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let post = PostParams::default();
        let nodes: Vec<&String> = nodes.iter().take(BURST).collect();
        let mut done = 0;
        let mut batch = 1;
        while done < nodes.len() {
            let chunk = &nodes[done..(done + batch).min(nodes.len())];
            let results = join_all(chunk.iter().map(|node| {
                let mut pod = base.clone();
                if let Some(s) = pod.spec.as_mut() {
                    s.affinity = Some(pin_to_node(s.affinity.take(), node));
                }
                let api = api.clone();
                let post = post.clone();
                async move { api.create(&post, &pod).await }
            }))
            .await;
            let mut failure = None;
            for (r, node) in results.into_iter().zip(chunk) {
                match r {
                    Ok(p) => {
                        self.expectations.created(key, &p.name_any());
                        self.recorder.record(
                            ds,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!("Created pod: {}", p.name_any()),
                        );
                    }
                    Err(e) => {
                        if let kube::Error::Api(s) = &e {
                            self.recorder.record(
                                ds,
                                EventType::Warning,
                                "FailedCreate",
                                &format!("Error creating pod for node {node}: {}", s.message),
                            );
                        }
                        failure = Some(e);
                    }
                }
            }
            if let Some(e) = failure {
                return Err(e.into());
            }
            done += chunk.len();
            batch *= 2;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::{Value, json};

    fn node(name: &str, labels: Value, taints: Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": labels},
                "spec": {"taints": taints},
            }))
            .unwrap(),
        )
    }

    fn ds(template_spec: Value, strategy: Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 1},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": template_spec},
                "updateStrategy": strategy,
            }
        }))
        .unwrap()
    }

    fn basic() -> Value {
        json!({"containers": [{"name": "a", "image": "a"}]})
    }

    /// A pod for `node` with revision `hash`, ready (and Running) or not.
    fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default",
                    "labels": {"app": "agent", REVISION_LABEL: hash},
                    "creationTimestamp": "2024-01-01T00:00:00Z"},
                "spec": {"containers": [{"name": "a"}], "affinity": pin_to_node(None, node)},
                "status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": if ready { "True" } else { "False" },
                     "lastTransitionTime": "2024-01-01T00:00:00Z"}]},
            }))
            .unwrap(),
        )
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        crate::util::chrono_time(&"2024-01-02T00:00:00Z".parse::<Timestamp>().unwrap())
    }

    #[test]
    fn eligible_nodes() {
        let taint = |k: &str, e: &str| json!([{"key": k, "effect": e}]);
        let cases: Vec<(&str, Value, Arc<Node>, Fit)> = vec![
            (
                "plain",
                basic(),
                node("n", json!({}), json!(null)),
                Fit {
                    should_run: true,
                    should_continue: true,
                },
            ),
            (
                "nodeSelector matches",
                json!({"containers": [], "nodeSelector": {"disk": "ssd"}}),
                node("n", json!({"disk": "ssd"}), json!(null)),
                Fit {
                    should_run: true,
                    should_continue: true,
                },
            ),
            (
                "nodeSelector differs",
                json!({"containers": [], "nodeSelector": {"disk": "ssd"}}),
                node("n", json!({"disk": "hdd"}), json!(null)),
                Fit::default(),
            ),
            (
                "required affinity In",
                json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}}}),
                node("n", json!({"zone": "b"}), json!(null)),
                Fit {
                    should_run: true,
                    should_continue: true,
                },
            ),
            (
                "required affinity terms are ORed, fields match names",
                json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}]}}}}),
                node("n", json!({"zone": "b"}), json!(null)),
                Fit {
                    should_run: true,
                    should_continue: true,
                },
            ),
            (
                "required affinity Gt fails",
                json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}]}}}}),
                node("n", json!({"cores": "4"}), json!(null)),
                Fit::default(),
            ),
            (
                "untolerated NoSchedule: no new pod, an old one stays",
                basic(),
                node("n", json!({}), taint("dedicated", "NoSchedule")),
                Fit {
                    should_run: false,
                    should_continue: true,
                },
            ),
            (
                "untolerated NoExecute",
                basic(),
                node("n", json!({}), taint("dedicated", "NoExecute")),
                Fit::default(),
            ),
            (
                "tolerated NoExecute",
                json!({"containers": [], "tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
                node("n", json!({}), taint("dedicated", "NoExecute")),
                Fit {
                    should_run: true,
                    should_continue: true,
                },
            ),
            (
                "PreferNoSchedule is ignored",
                basic(),
                node("n", json!({}), taint("dedicated", "PreferNoSchedule")),
                Fit {
                    should_run: true,
                    should_continue: true,
                },
            ),
            (
                "automatic tolerations: unschedulable, not-ready",
                basic(),
                node(
                    "n",
                    json!({}),
                    json!([
                    {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
                    {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}]),
                ),
                Fit {
                    should_run: true,
                    should_continue: true,
                },
            ),
            (
                "network-unavailable only for hostNetwork",
                basic(),
                node(
                    "n",
                    json!({}),
                    taint("node.kubernetes.io/network-unavailable", "NoSchedule"),
                ),
                Fit {
                    should_run: false,
                    should_continue: true,
                },
            ),
            (
                "network-unavailable tolerated with hostNetwork",
                json!({"containers": [], "hostNetwork": true}),
                node(
                    "n",
                    json!({}),
                    taint("node.kubernetes.io/network-unavailable", "NoSchedule"),
                ),
                Fit {
                    should_run: true,
                    should_continue: true,
                },
            ),
            (
                "nodeName elsewhere",
                json!({"containers": [], "nodeName": "other"}),
                node("n", json!({}), json!(null)),
                Fit::default(),
            ),
        ];
        for (what, spec, node, want) in cases {
            let t: PodTemplateSpec = serde_json::from_value(json!({"spec": spec})).unwrap();
            assert_eq!(node_fit(&t, &node), want, "{what}");
        }
    }

    #[test]
    fn pods_are_pinned_to_their_node() {
        let a = pin_to_node(
            serde_json::from_value(json!({"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "x", "operator": "Exists"}]}]},
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {"matchExpressions": [{"key": "y", "operator": "Exists"}]}}]}}))
            .unwrap(),
            "sim-1",
        );
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(
            v["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
            json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["sim-1"]}]}]})
        );
        assert_eq!(
            v["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"],
            1
        );
        let p = pod("p", "sim-1", "h", true);
        assert_eq!(target_node(&p).as_deref(), Some("sim-1"));
    }

    #[test]
    fn one_pod_per_eligible_node() {
        let d = ds(
            json!({"containers": [], "nodeSelector": {"role": "edge"}}),
            json!({"type": "RollingUpdate"}),
        );
        let nodes = vec![
            node("a", json!({"role": "edge"}), json!(null)),
            node("b", json!({"role": "edge"}), json!(null)),
            node("c", json!({"role": "core"}), json!(null)),
        ];
        // a has its pod, b has none, c should not have its pod, and a pod for a gone node.
        let pods = vec![
            pod("p-a", "a", "h1", true),
            pod("p-c", "c", "h1", true),
            pod("p-x", "x", "h1", true),
        ];
        let p = plan(&d, "h1", &nodes, &pods, &HashSet::new(), now());
        assert_eq!(p.create, vec!["b".to_string()]);
        let mut deleted = p.delete.clone();
        deleted.sort();
        assert_eq!(deleted, vec!["p-c".to_string(), "p-x".to_string()]);
        assert_eq!(
            p.counts,
            Counts {
                desired: 2,
                current: 1,
                misscheduled: 1,
                ready: 1,
                available: 1,
                updated: 1
            }
        );
    }

    #[test]
    fn duplicates_and_failed_pods_go() {
        let d = ds(basic(), json!({"type": "RollingUpdate"}));
        let nodes = vec![
            node("a", json!({}), json!(null)),
            node("b", json!({}), json!(null)),
        ];
        let mut newer = (*pod("p-a2", "a", "h", true)).clone();
        newer.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2024-01-01T01:00:00Z".parse().unwrap(),
            ));
        let mut failed = (*pod("p-b", "b", "h", false)).clone();
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let pods = vec![
            pod("p-a1", "a", "h", true),
            Arc::new(newer),
            Arc::new(failed),
        ];
        let p = plan(&d, "h", &nodes, &pods, &HashSet::new(), now());
        let mut deleted = p.delete.clone();
        deleted.sort();
        assert_eq!(deleted, vec!["p-a2".to_string(), "p-b".to_string()]);
        // A node whose pod is still there (even failed) gets its replacement once it is gone.
        assert!(p.create.is_empty());
    }

    #[test]
    fn rolling_update_respects_max_unavailable() {
        let nodes: Vec<Arc<Node>> = (0..5)
            .map(|i| node(&format!("n{i}"), json!({}), json!(null)))
            .collect();
        let old = |i: usize| pod(&format!("old-{i}"), &format!("n{i}"), "v1", true);
        struct Case {
            what: &'static str,
            strategy: Value,
            pods: Vec<Arc<Pod>>,
            gone: Vec<&'static str>,
            want_delete: usize,
            want_create: Vec<&'static str>,
        }
        let cases = vec![
            Case {
                what: "default maxUnavailable 1",
                strategy: json!({"type": "RollingUpdate"}),
                pods: (0..5).map(old).collect(),
                gone: vec![],
                want_delete: 1,
                want_create: vec![],
            },
            Case {
                what: "maxUnavailable 2",
                strategy: json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}),
                pods: (0..5).map(old).collect(),
                gone: vec![],
                want_delete: 2,
                want_create: vec![],
            },
            Case {
                what: "40% of 5 rounds up to 2",
                strategy: json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "40%"}}),
                pods: (0..5).map(old).collect(),
                gone: vec![],
                want_delete: 2,
                want_create: vec![],
            },
            Case {
                what: "one node already short (old pod terminating): wait",
                strategy: json!({"type": "RollingUpdate"}),
                pods: (0..5).map(old).collect(),
                gone: vec!["old-0"],
                want_delete: 0,
                want_create: vec![],
            },
            Case {
                what: "replaced pod not yet ready: wait",
                strategy: json!({"type": "RollingUpdate"}),
                pods: std::iter::once(pod("new-0", "n0", "v2", false))
                    .chain((1..5).map(old))
                    .collect(),
                gone: vec![],
                want_delete: 0,
                want_create: vec![],
            },
            Case {
                what: "replaced pod ready: next one",
                strategy: json!({"type": "RollingUpdate"}),
                pods: std::iter::once(pod("new-0", "n0", "v2", true))
                    .chain((1..5).map(old))
                    .collect(),
                gone: vec![],
                want_delete: 1,
                want_create: vec![],
            },
            Case {
                what: "missing pod: created, and counts as unavailable",
                strategy: json!({"type": "RollingUpdate"}),
                pods: (1..5).map(old).collect(),
                gone: vec![],
                want_delete: 0,
                want_create: vec!["n0"],
            },
            Case {
                what: "OnDelete replaces nothing",
                strategy: json!({"type": "OnDelete"}),
                pods: (0..5).map(old).collect(),
                gone: vec![],
                want_delete: 0,
                want_create: vec![],
            },
            Case {
                what: "OnDelete: a deleted pod is replaced",
                strategy: json!({"type": "OnDelete"}),
                pods: (1..5).map(old).collect(),
                gone: vec![],
                want_delete: 0,
                want_create: vec!["n0"],
            },
        ];
        for c in cases {
            let d = ds(basic(), c.strategy);
            let gone: HashSet<String> = c.gone.iter().map(|s| s.to_string()).collect();
            let p = plan(&d, "v2", &nodes, &c.pods, &gone, now());
            assert_eq!(p.delete.len(), c.want_delete, "{}: {:?}", c.what, p.delete);
            assert!(p.delete.iter().all(|n| n.starts_with("old-")), "{}", c.what);
            assert_eq!(p.create, c.want_create, "{}", c.what);
        }
        // Unavailable old pods are replaced at once and do not use the budget (as upstream).
        let d = ds(basic(), json!({"type": "RollingUpdate"}));
        let pods: Vec<Arc<Pod>> = (0..5)
            .map(|i| pod(&format!("old-{i}"), &format!("n{i}"), "v1", i >= 3))
            .collect();
        let p = plan(&d, "v2", &nodes, &pods, &HashSet::new(), now());
        let mut deleted = p.delete.clone();
        deleted.sort();
        assert_eq!(deleted, vec!["old-0", "old-1", "old-2", "old-3"]);
    }
}
