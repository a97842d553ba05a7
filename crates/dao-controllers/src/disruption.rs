//! The disruption controller: keeps each PodDisruptionBudget's status current, as upstream's
//! (kube-controller-manager's `disruption` controller).
//!
//! For a budget, the pods its selector matches in its namespace give `expectedPods`,
//! `currentHealthy` (Ready, not being deleted, not recently evicted) and `desiredHealthy`
//! (`minAvailable`, or the controllers' scale minus `maxUnavailable`, percentages rounded up);
//! `disruptionsAllowed` is their difference (0 while no pod is expected). The `DisruptionAllowed`
//! condition says `SufficientPods` or `InsufficientPods`, or `SyncFailed` when the scale cannot
//! be worked out. `disruptedPods` holds the pods the eviction subresource approved but that the
//! cache does not show as deleted yet; an entry expires after two minutes.
//!
//! reconcile(pdb): `plan` (pure) over the cached pods and controllers, then one status write
//! guarded by the cached resourceVersion, so an eviction's concurrent decrement is never lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, LabelSelector, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

use crate::events::{EventType, Recorder};
use crate::informer::{Informer, controller_of, namespace_index, split_key};
use crate::queue::{Action, WorkQueue};
use crate::util::{chrono_time, pod_ready, selector_matches};

/// How long an approved eviction may take to show as a deletion before the pod counts again.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

pub const CONDITION: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// What the pods of one budget add up to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub expected: i32,
    pub desired: i32,
    pub current: i32,
    pub allowed: i32,
    /// `status.disruptedPods` to keep: approved evictions not yet seen as deletions.
    pub disrupted: BTreeMap<String, Time>,
    /// When the oldest kept entry of `disrupted` expires (look again then).
    pub recheck_at: Option<DateTime<Utc>>,
    /// Pods the eviction subresource approved that were never deleted.
    pub not_deleted: Vec<String>,
    /// Selected pods without a controller (their scale is unknown).
    pub unmanaged: Vec<String>,
}

/// The replicas of the controller a pod reference names, and that controller's uid (pods of
/// one controller count once): `Ok(None)` when the controller does not exist.
pub type ScaleOf<'a> = dyn FnMut(&OwnerReference) -> Result<Option<(String, i32)>, String> + 'a;

/// upstream's `GetScaledValueFromIntOrPercent`: an integer, or a percentage of `total`.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(p) = s.strip_suffix('%') else {
                return Err(
                    "invalid value for IntOrString: invalid type: string is not a percentage"
                        .into(),
                );
            };
            let p: i64 = p
                .parse()
                .map_err(|_| {
                format!(
                    "invalid value for IntOrString: invalid value {s:?}: strconv.Atoi: parsing {p:?}: invalid syntax"
                )
            })?;
            let scaled = p * total as i64;
            Ok(if round_up {
                scaled.div_euclid(100) + i64::from(scaled.rem_euclid(100) != 0)
            } else {
                scaled.div_euclid(100)
            } as i32)
        }
    }
}

/// The sum of the scales of the controllers of `pods`, and the pods without a controller.
fn expected_scale(
    pods: &[Arc<Pod>],
    scale_of: &mut ScaleOf<'_>,
) -> Result<(i32, Vec<String>), String> {
    let mut scales: HashMap<String, i32> = HashMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let Some(owner) = controller_of(pod.as_ref()) else {
            unmanaged.push(pod.name_any());
            continue;
        };
        if scales.contains_key(&owner.uid) {
            continue;
        }
        match scale_of(owner)? {
            Some((uid, replicas)) => {
                scales.insert(uid, replicas);
            }
            None => return Err(format!("found no controllers for pod {:?}", pod.name_any())),
        }
    }
    Ok((scales.values().sum(), unmanaged))
}

/// The controller's view of one budget: upstream's `getExpectedPodCount`, `buildDisruptedPodMap`
/// and `countHealthyPods`. `pods` are the pods the selector matches in the budget's namespace.
/// An error is what upstream reports as `SyncFailed`.
pub fn plan(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    scale_of: &mut ScaleOf<'_>,
    now: DateTime<Utc>,
) -> Result<Plan, String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    let mut plan = Plan::default();
    if let Some(max_unavailable) = &spec.max_unavailable {
        let (expected, unmanaged) = expected_scale(pods, scale_of)?;
        plan.expected = expected;
        plan.unmanaged = unmanaged;
        plan.desired = (expected - scaled_value(max_unavailable, expected, true)?).max(0);
    } else if let Some(min_available) = &spec.min_available {
        match min_available {
            IntOrString::Int(i) => {
                plan.desired = *i;
                plan.expected = pods.len() as i32;
            }
            IntOrString::String(_) => {
                let (expected, unmanaged) = expected_scale(pods, scale_of)?;
                plan.expected = expected;
                plan.unmanaged = unmanaged;
                plan.desired = scaled_value(min_available, expected, true)?;
            }
        }
    }
    // Approved evictions: kept until the pod shows as deleted, or for DELETION_TIMEOUT.
    let recorded = pdb
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default();
    let timeout = chrono::Duration::from_std(DELETION_TIMEOUT).expect("small duration");
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.name_any();
        let Some(at) = recorded.get(&name) else {
            continue;
        };
        let expires = chrono_time(&at.0) + timeout;
        if expires < now {
            plan.not_deleted.push(name);
        } else {
            plan.recheck_at = Some(plan.recheck_at.map_or(expires, |r| r.min(expires)));
            plan.disrupted.insert(name, at.clone());
        }
    }
    plan.current = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !plan.disrupted.contains_key(&p.name_any())
                && pod_ready(p)
        })
        .count() as i32;
    plan.allowed = if plan.expected <= 0 {
        0
    } else {
        (plan.current - plan.desired).max(0)
    };
    Ok(plan)
}

/// A Kubernetes time for `t`, at upstream's one-second precision.
pub fn time(t: DateTime<Utc>) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).unwrap_or_default())
}

/// apimachinery's `SetStatusCondition`: add or update the condition of `type_`, moving
/// `lastTransitionTime` only when the status changes.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(c) => {
            if c.status != new.status {
                c.status = new.status;
                c.last_transition_time = new.last_transition_time;
            }
            c.reason = new.reason;
            c.message = new.message;
            c.observed_generation = new.observed_generation;
        }
        None => conditions.push(new),
    }
}

/// upstream's `UpdateDisruptionAllowedCondition`: True/SufficientPods while disruptions are
/// allowed, False/InsufficientPods otherwise.
pub fn update_allowed_condition(status: &mut PodDisruptionBudgetStatus, now: DateTime<Utc>) {
    let (state, reason) = if status.disruptions_allowed > 0 {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    set_condition(
        conditions,
        Condition {
            type_: CONDITION.into(),
            status: state.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: status.observed_generation,
            last_transition_time: time(now),
        },
    );
}

/// Whether the DisruptionAllowed condition matches `disruptionsAllowed` and the status is of
/// the budget's generation (upstream's `ConditionsAreUpToDate`).
fn conditions_up_to_date(pdb: &PodDisruptionBudget) -> bool {
    let Some(status) = pdb.status.as_ref() else {
        return false;
    };
    let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == CONDITION)
    else {
        return false;
    };
    if status.observed_generation != pdb.metadata.generation {
        return false;
    }
    if status.disruptions_allowed > 0 {
        c.status == "True" && c.reason == SUFFICIENT_PODS
    } else {
        c.status == "False" && c.reason == INSUFFICIENT_PODS
    }
}

/// The status to write for `plan`, or None when the stored one already says it.
pub fn next_status(
    pdb: &PodDisruptionBudget,
    plan: &Plan,
    now: DateTime<Utc>,
) -> Option<PodDisruptionBudgetStatus> {
    let old = pdb.status.clone().unwrap_or_default();
    let disrupted = (!plan.disrupted.is_empty()).then(|| plan.disrupted.clone());
    if old.current_healthy == plan.current
        && old.desired_healthy == plan.desired
        && old.expected_pods == plan.expected
        && old.disruptions_allowed == plan.allowed
        && old.disrupted_pods.clone().unwrap_or_default() == plan.disrupted
        && old.observed_generation == pdb.metadata.generation
        && conditions_up_to_date(pdb)
    {
        return None;
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy: plan.current,
        desired_healthy: plan.desired,
        expected_pods: plan.expected,
        disruptions_allowed: plan.allowed,
        disrupted_pods: disrupted,
        observed_generation: pdb.metadata.generation,
        conditions: old.conditions,
    };
    update_allowed_condition(&mut status, now);
    Some(status)
}

/// upstream's `failSafe`: no disruptions, and a False/SyncFailed condition saying why.
pub fn fail_safe_status(
    pdb: &PodDisruptionBudget,
    message: &str,
    now: DateTime<Utc>,
) -> PodDisruptionBudgetStatus {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let observed = status.observed_generation;
    set_condition(
        status.conditions.get_or_insert_with(Vec::new),
        Condition {
            type_: CONDITION.into(),
            status: "False".into(),
            reason: SYNC_FAILED.into(),
            message: message.to_owned(),
            observed_generation: observed,
            last_transition_time: time(now),
        },
    );
    status
}

/// A LabelSelector as Go's `%v` prints it (upstream's UnmanagedPods event quotes it).
fn go_selector(sel: Option<&LabelSelector>) -> String {
    let Some(sel) = sel else {
        return "nil".into();
    };
    let labels: String = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}: {v},"))
        .collect();
    let exprs: Vec<String> = sel
        .match_expressions
        .iter()
        .flatten()
        .map(|e| {
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}}",
                e.key,
                e.operator,
                e.values.clone().unwrap_or_default().join(" ")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{}}},}}",
        exprs.join(",")
    )
}

/// The group of an `apiVersion`: "" for "v1", "apps" for "apps/v1".
fn group_of(api_version: &str) -> &str {
    api_version
        .split_once('/')
        .map(|(g, _)| g)
        .unwrap_or_default()
}

#[derive(Clone)]
pub struct DisruptionController {
    client: Client,
    pdbs: Informer<PodDisruptionBudget>,
    pods: Informer<Pod>,
    replicasets: Informer<ReplicaSet>,
    deployments: Informer<Deployment>,
    statefulsets: Informer<StatefulSet>,
    rcs: Informer<ReplicationController>,
    queue: WorkQueue,
    recorder: Recorder,
}

impl DisruptionController {
    /// Registers the controller's handlers; call before the informers run.
    pub fn new(
        client: Client,
        pdbs: Informer<PodDisruptionBudget>,
        pods: Informer<Pod>,
        replicasets: Informer<ReplicaSet>,
        deployments: Informer<Deployment>,
        statefulsets: Informer<StatefulSet>,
        rcs: Informer<ReplicationController>,
    ) -> Self {
        let queue = WorkQueue::new();
        pdbs.enqueue_changes(&queue);
        pdbs.add_index("namespace", namespace_index);
        pods.add_index("namespace", namespace_index);
        pods.enqueue_selecting(&queue, &pdbs, |pdb, pod| {
            let sel = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
            selector_matches(sel, pod.labels())
        });
        DisruptionController {
            recorder: Recorder::new(client.clone(), "controllermanager"),
            client,
            pdbs,
            pods,
            replicasets,
            deployments,
            statefulsets,
            rcs,
            queue,
        }
    }

    pub async fn run(self, workers: usize) {
        self.pdbs.wait_synced().await;
        self.pods.wait_synced().await;
        self.replicasets.wait_synced().await;
        self.deployments.wait_synced().await;
        self.statefulsets.wait_synced().await;
        self.rcs.wait_synced().await;
        for key in self.pdbs.keys() {
            self.queue.add(key);
        }
        let this = self.clone();
        self.queue
            .clone()
            .run("disruption", workers, move |key| {
                let this = this.clone();
                async move { this.reconcile(&key).await }
            })
            .await;
    }

    /// upstream's pod controller finders, in their order: ReplicationController, Deployment
    /// (through its ReplicaSet), ReplicaSet, StatefulSet, then the scale subresource.
    fn scale_of(&self, ns: &str, r: &OwnerReference) -> Result<Option<(String, i32)>, String> {
        let group = group_of(&r.api_version);
        let key = format!("{ns}/{}", r.name);
        match (r.kind.as_str(), group) {
            ("ReplicationController", "") => Ok(self
                .rcs
                .get(&key)
                .filter(|rc| rc.uid().as_deref() == Some(r.uid.as_str()))
                .map(|rc| {
                    let replicas = rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    (r.uid.clone(), replicas)
                })),
            ("ReplicaSet", "apps" | "extensions") => {
                let Some(rs) = self
                    .replicasets
                    .get(&key)
                    .filter(|rs| rs.uid().as_deref() == Some(r.uid.as_str()))
                else {
                    return Ok(None);
                };
                if let Some(owner) = controller_of(rs.as_ref())
                    && owner.kind == "Deployment"
                    && matches!(group_of(&owner.api_version), "apps" | "extensions")
                    && let Some(d) = self
                        .deployments
                        .get(&format!("{ns}/{}", owner.name))
                        .filter(|d| d.uid().as_deref() == Some(owner.uid.as_str()))
                {
                    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    return Ok(Some((owner.uid.clone(), replicas)));
                }
                // Not a Deployment's (or its Deployment is gone): the ReplicaSet's own scale.
                let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Ok(Some((r.uid.clone(), replicas)))
            }
            ("StatefulSet", "apps") => Ok(self
                .statefulsets
                .get(&key)
                .filter(|s| s.uid().as_deref() == Some(r.uid.as_str()))
                .map(|s| {
                    let replicas = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    (r.uid.clone(), replicas)
                })),
            ("Deployment", "apps") => Ok(self
                .deployments
                .get(&key)
                .filter(|d| d.uid().as_deref() == Some(r.uid.as_str()))
                .map(|d| {
                    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    (r.uid.clone(), replicas)
                })),
            ("DaemonSet", "apps") => {
                Err("daemonsets.apps does not implement the scale subresource".into())
            }
            ("Job", "batch") => Err("jobs.batch does not implement the scale subresource".into()),
            (kind, _) => Err(format!(
                "no matches for kind {kind:?} in version {:?}",
                r.api_version
            )),
        }
    }

    async fn reconcile(&self, key: &str) -> Result<Action, Error> {
        let Some(pdb) = self.pdbs.get(key) else {
            return Ok(Action::Done);
        };
        let (ns, name) = split_key(key);
        let sel = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
        let pods: Vec<Arc<Pod>> = self
            .pods
            .by_index("namespace", ns)
            .into_iter()
            .filter(|p| selector_matches(sel, p.labels()))
            .collect();
        if pods.is_empty() {
            self.recorder.record(
                pdb.as_ref(),
                EventType::Normal,
                "NoPods",
                "No matching pods found",
            );
        }
        let now = Utc::now();
        let mut scale_of = |r: &OwnerReference| self.scale_of(ns, r);
        let status = match plan(&pdb, &pods, &mut scale_of, now) {
            Ok(plan) => {
                if !plan.unmanaged.is_empty() {
                    self.recorder.record(
                        pdb.as_ref(),
                        EventType::Warning,
                        "UnmanagedPods",
                        &format!(
                            "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                            go_selector(sel)
                        ),
                    );
                }
                for pod in &plan.not_deleted {
                    if let Some(p) = self.pods.get(&format!("{ns}/{pod}")) {
                        self.recorder.record(
                            p.as_ref(),
                            EventType::Warning,
                            "NotDeleted",
                            &format!(
                                "Pod was expected by PDB {ns}/{name} to be deleted but it wasn't"
                            ),
                        );
                    }
                }
                let recheck = plan
                    .recheck_at
                    .and_then(|at| (at - now).to_std().ok())
                    .map(|d| d + Duration::from_millis(100));
                let Some(status) = next_status(&pdb, &plan, now) else {
                    return Ok(recheck.map_or(Action::Done, Action::RequeueAfter));
                };
                self.write(&pdb, status).await?;
                return Ok(recheck.map_or(Action::Done, Action::RequeueAfter));
            }
            Err(message) => {
                self.recorder.record(
                    pdb.as_ref(),
                    EventType::Warning,
                    "CalculateExpectedPodCountFailed",
                    &format!("Failed to calculate the number of expected pods: {message}"),
                );
                fail_safe_status(&pdb, &message, now)
            }
        };
        if pdb.status.as_ref() != Some(&status) {
            self.write(&pdb, status).await?;
        }
        Ok(Action::Done)
    }

    /// Replaces the status, guarded by the cached resourceVersion: a budget changed since (an
    /// eviction took a disruption) conflicts, and the reconcile runs again on fresh state.
    async fn write(
        &self,
        pdb: &PodDisruptionBudget,
        status: PodDisruptionBudgetStatus,
    ) -> Result<(), Error> {
        let mut new = pdb.clone();
        new.status = Some(status);
        let api: Api<PodDisruptionBudget> =
            Api::namespaced(self.client.clone(), &pdb.namespace().unwrap_or_default());
        match api
            .replace_status(&pdb.name_any(), &PostParams::default(), &new)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const NOW: &str = "2025-03-01T12:00:00Z";

    fn now() -> DateTime<Utc> {
        NOW.parse().unwrap()
    }

    fn pdb(spec: Value, status: Value) -> PodDisruptionBudget {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "web"}});
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "generation": 2},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    /// A pod of controller `owner` (kind/uid), ready or not, deleting or not.
    fn pod(name: &str, owner: Option<(&str, &str)>, ready: bool, deleting: bool) -> Arc<Pod> {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        });
        if let Some((kind, uid)) = owner {
            let api_version = if kind == "ReplicationController" {
                "v1"
            } else {
                "apps/v1"
            };
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": api_version, "kind": kind, "name": uid, "uid": uid, "controller": true}]);
        }
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!(NOW);
        }
        Arc::new(serde_json::from_value(p).unwrap())
    }

    /// Controllers by uid: (replicas); "gone" does not exist.
    fn scales(r: &OwnerReference) -> Result<Option<(String, i32)>, String> {
        match r.uid.as_str() {
            "rs-a" => Ok(Some(("deploy-a".into(), 4))),
            "rs-b" => Ok(Some(("deploy-a".into(), 4))),
            "sts" => Ok(Some(("sts".into(), 5))),
            "gone" => Ok(None),
            "ds" => Err("daemonsets.apps does not implement the scale subresource".into()),
            other => panic!("unexpected controller {other}"),
        }
    }

    fn run(pdb: &PodDisruptionBudget, pods: &[Arc<Pod>]) -> Result<Plan, String> {
        plan(pdb, pods, &mut scales, now())
    }

    /// (expected, desired, current, allowed)
    type Counts = (i32, i32, i32, i32);

    #[test]
    fn budgets() {
        let rs = Some(("ReplicaSet", "rs-a"));
        let three_ready = vec![
            pod("a", rs, true, false),
            pod("b", rs, true, false),
            pod("c", rs, true, false),
        ];
        let mut one_down = three_ready.clone();
        one_down[2] = pod("c", rs, false, false);
        let mut one_leaving = three_ready.clone();
        one_leaving[2] = pod("c", rs, true, true);
        // (spec, pods, (expected, desired, current, allowed))
        let cases: Vec<(Value, Vec<Arc<Pod>>, Counts)> = vec![
            // minAvailable as a number: expected is the pods that match.
            (
                json!({"minAvailable": 2}),
                three_ready.clone(),
                (3, 2, 3, 1),
            ),
            (json!({"minAvailable": 2}), one_down.clone(), (3, 2, 2, 0)),
            (
                json!({"minAvailable": 2}),
                one_leaving.clone(),
                (3, 2, 2, 0),
            ),
            (
                json!({"minAvailable": 5}),
                three_ready.clone(),
                (3, 5, 3, 0),
            ),
            // No pods: nothing may be disrupted, whatever the numbers say.
            (json!({"minAvailable": 0}), vec![], (0, 0, 0, 0)),
            // Percentages use the controllers' scale (a Deployment of 4 through two
            // ReplicaSets counts once) and round up.
            (
                json!({"minAvailable": "50%"}),
                three_ready.clone(),
                (4, 2, 3, 1),
            ),
            (
                json!({"minAvailable": "60%"}),
                three_ready.clone(),
                (4, 3, 3, 0),
            ),
            (
                json!({"minAvailable": "50%"}),
                vec![
                    pod("a", rs, true, false),
                    pod("x", Some(("ReplicaSet", "rs-b")), true, false),
                ],
                (4, 2, 2, 0),
            ),
            // maxUnavailable: scale minus the (rounded up) number.
            (
                json!({"maxUnavailable": 1}),
                three_ready.clone(),
                (4, 3, 3, 0),
            ),
            (
                json!({"maxUnavailable": "25%"}),
                three_ready.clone(),
                (4, 3, 3, 0),
            ),
            (
                json!({"maxUnavailable": "26%"}),
                three_ready.clone(),
                (4, 2, 3, 1),
            ),
            (
                json!({"maxUnavailable": 10}),
                three_ready.clone(),
                (4, 0, 3, 3),
            ),
            (
                json!({"maxUnavailable": "20%"}),
                vec![pod("s", Some(("StatefulSet", "sts")), true, false)],
                (5, 4, 1, 0),
            ),
            // Neither: nothing desired, all ready pods may go.
            (json!({}), three_ready.clone(), (0, 0, 3, 0)),
        ];
        for (spec, pods, (expected, desired, current, allowed)) in cases {
            let p = run(&pdb(spec.clone(), json!({})), &pods).unwrap();
            assert_eq!(
                (p.expected, p.desired, p.current, p.allowed),
                (expected, desired, current, allowed),
                "{spec}"
            );
        }
    }

    #[test]
    fn scale_failures_and_unmanaged_pods() {
        let budget = pdb(json!({"maxUnavailable": 1}), json!({}));
        let err = run(&budget, &[pod("d", Some(("DaemonSet", "ds")), true, false)]).unwrap_err();
        assert_eq!(
            err,
            "daemonsets.apps does not implement the scale subresource"
        );
        let err = run(
            &budget,
            &[pod("g", Some(("ReplicaSet", "gone")), true, false)],
        )
        .unwrap_err();
        assert_eq!(err, "found no controllers for pod \"g\"");
        // Bare pods are skipped (and reported), not an error.
        let p = run(
            &budget,
            &[
                pod("bare", None, true, false),
                pod("a", Some(("ReplicaSet", "rs-a")), true, false),
            ],
        )
        .unwrap();
        assert_eq!(p.unmanaged, vec!["bare".to_owned()]);
        assert_eq!((p.expected, p.desired), (4, 3));
        // An integer minAvailable never looks at controllers.
        let p = run(
            &pdb(json!({"minAvailable": 1}), json!({})),
            &[pod("d", Some(("DaemonSet", "ds")), true, false)],
        )
        .unwrap();
        assert_eq!(p.allowed, 0);
        let err = run(
            &pdb(json!({"minAvailable": "half"}), json!({})),
            &[pod("a", Some(("ReplicaSet", "rs-a")), true, false)],
        )
        .unwrap_err();
        assert!(err.contains("not a percentage"), "{err}");
    }

    #[test]
    fn disrupted_pods_do_not_count_until_they_expire() {
        let rs = Some(("ReplicaSet", "rs-a"));
        let pods = vec![
            pod("a", rs, true, false),
            pod("b", rs, true, false),
            pod("c", rs, true, false),
            pod("d", rs, true, true),
        ];
        let recent = "2025-03-01T11:59:30Z";
        let old = "2025-03-01T11:50:00Z";
        let budget = pdb(
            json!({"minAvailable": 1}),
            json!({"disruptedPods": {"a": recent, "b": old, "d": recent, "gone": recent}}),
        );
        let p = run(&budget, &pods).unwrap();
        // a: evicted 30 s ago, not deleted yet: kept, not healthy. b: expired. d: being
        // deleted now. gone: no such pod.
        assert_eq!(p.disrupted.keys().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(p.not_deleted, vec!["b".to_owned()]);
        assert_eq!(p.current, 2);
        assert_eq!(p.allowed, 1);
        assert_eq!(p.recheck_at, Some("2025-03-01T12:01:30Z".parse().unwrap()));
    }

    #[test]
    fn status_is_written_only_when_it_changes() {
        let pods = vec![pod("a", None, true, false), pod("b", None, true, false)];
        let budget = pdb(json!({"minAvailable": 1}), json!({}));
        let p = run(&budget, &pods).unwrap();
        let status = next_status(&budget, &p, now()).expect("a first status");
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            json!({
                "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2,
                "disruptionsAllowed": 1, "observedGeneration": 2,
                "conditions": [{"type": "DisruptionAllowed", "status": "True",
                    "reason": "SufficientPods", "message": "", "observedGeneration": 2,
                    "lastTransitionTime": NOW}],
            })
        );
        let mut written = budget.clone();
        written.status = Some(status);
        assert_eq!(next_status(&written, &p, now()), None);
        // A new generation (the spec changed) is written even with the same numbers.
        let mut newer = written.clone();
        newer.metadata.generation = Some(3);
        assert!(next_status(&newer, &p, now()).is_some());
        // An eviction took the disruption: the condition flips, its time moves.
        let p2 = run(&written, &[pods[0].clone()]).unwrap();
        let later: DateTime<Utc> = "2025-03-01T12:05:00Z".parse().unwrap();
        let s = next_status(&written, &p2, later).unwrap();
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InsufficientPods")
        );
        assert_eq!(c.last_transition_time, time(later));
        // The same status again: the transition time stays.
        let mut again = written.clone();
        again.status = Some(s.clone());
        let s2 = next_status(&again, &p, now()).unwrap();
        assert_eq!(s2.conditions.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn fail_safe_allows_nothing() {
        let budget = pdb(
            json!({"maxUnavailable": 1}),
            json!({"disruptionsAllowed": 2, "observedGeneration": 1, "currentHealthy": 3}),
        );
        let s = fail_safe_status(&budget, "found no controllers for pod \"g\"", now());
        assert_eq!(s.disruptions_allowed, 0);
        assert_eq!(s.current_healthy, 3);
        let c = &s.conditions.unwrap()[0];
        assert_eq!(
            (
                c.status.as_str(),
                c.reason.as_str(),
                c.message.as_str(),
                c.observed_generation
            ),
            (
                "False",
                "SyncFailed",
                "found no controllers for pod \"g\"",
                Some(1)
            )
        );
    }

    #[test]
    fn scaled_values() {
        let s = |v: &str| IntOrString::String(v.into());
        assert_eq!(scaled_value(&s("50%"), 7, true), Ok(4));
        assert_eq!(scaled_value(&s("50%"), 7, false), Ok(3));
        assert_eq!(scaled_value(&s("0%"), 7, true), Ok(0));
        assert_eq!(scaled_value(&s("100%"), 7, true), Ok(7));
        assert_eq!(scaled_value(&IntOrString::Int(3), 7, true), Ok(3));
        assert!(scaled_value(&s("3"), 7, true).is_err());
        assert!(scaled_value(&s("x%"), 7, true).is_err());
    }

    #[test]
    fn selectors_print_as_go_does() {
        let sel: LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"app": "web"}})).unwrap();
        assert_eq!(
            go_selector(Some(&sel)),
            "&LabelSelector{MatchLabels:map[string]string{app: web,},MatchExpressions:[]LabelSelectorRequirement{},}"
        );
    }
}
