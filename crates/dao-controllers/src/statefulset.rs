//! The StatefulSet controller: pods with stable names (`{set}-{ordinal}`), hostnames and
//! claims, as upstream's.
//!
//! OrderedReady creates ordinal i only when every lower ordinal is Running and Ready and
//! removes pods from the highest ordinal, one at a time, each gone before the next; Parallel
//! creates and removes without waiting. RollingUpdate replaces pods whose revision is not the
//! update revision, from the highest ordinal down to `partition`, one at a time, each Ready
//! before the next; OnDelete only recreates deleted pods (with the update revision).
//!
//! Revisions are ControllerRevisions named `{set}-{hash}`; a pod's `controller-revision-hash`
//! label names its revision. `currentRevision` is the revision of the pods below the partition
//! and becomes `updateRevision` when a rolling update has updated every pod.
//!
//! reconcile(set): `plan` (a pure function of the set, its revisions and pods) decides the pods
//! to create (and with which revision) and to delete; claims are created before their pod.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::events::{EventType, Recorder};
use crate::informer::{Informer, controller_uid_index, split_key};
use crate::queue::{Action, WorkQueue};
use crate::util::{
    Expectations, claim, controller_ref, pod_active, pod_available, pod_running_and_ready,
    pod_terminal, selector_matches, short_hash, sync_history, template_from_revision,
    template_revision_data,
};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The ordinal of a pod of set `set`, from its name.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let n = pod.strip_prefix(set)?.strip_prefix('-')?;
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) || !n.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    n.parse().ok()
}

fn revision_of(pod: &Pod) -> &str {
    pod.labels()
        .get(REVISION_LABEL)
        .map(String::as_str)
        .unwrap_or("")
}

/// What one reconcile does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// (ordinal, revision name) of pods to create.
    pub create: Vec<(i32, String)>,
    /// Names of pods to delete.
    pub delete: Vec<String>,
}

/// The status counters of a StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counts {
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    pub current: i32,
    pub updated: i32,
    pub current_revision: String,
    pub update_revision: String,
}

struct View<'a> {
    gone: &'a HashSet<String>,
    min_ready: i32,
    now: chrono::DateTime<chrono::Utc>,
}

impl View<'_> {
    fn terminating(&self, p: &Pod) -> bool {
        p.metadata.deletion_timestamp.is_some() || self.gone.contains(&p.name_any())
    }

    /// Running, Ready (for minReadySeconds) and not on its way out.
    fn healthy(&self, p: &Pod) -> bool {
        !self.terminating(p)
            && pod_running_and_ready(p)
            && pod_available(p, self.min_ready, self.now)
    }
}

/// The revision a new pod at `index` (its position from the first ordinal) gets.
fn revision_for(set: &StatefulSet, index: i32, current: &str, update: &str) -> String {
    let spec = set.spec.as_ref();
    let strategy = spec.and_then(|s| s.update_strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
        return update.to_owned();
    }
    let partition = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition);
    let keep_current = match partition {
        Some(p) => index < p,
        None => {
            index
                < set
                    .status
                    .as_ref()
                    .and_then(|s| s.current_replicas)
                    .unwrap_or(0)
        }
    };
    if keep_current { current } else { update }.to_owned()
}

/// The controller's decision for `set` given its pods (`gone`: pods already being deleted that
/// the cache still shows), the current and the update revision.
pub fn plan(
    set: &StatefulSet,
    current: &str,
    update: &str,
    pods: &[Arc<Pod>],
    gone: &HashSet<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Plan {
    let name = set.name_any();
    let spec = set.spec.clone().unwrap_or_default();
    let view = View {
        gone,
        min_ready: spec.min_ready_seconds.unwrap_or(0),
        now,
    };
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let start = spec
        .ordinals
        .as_ref()
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0);
    let end = start + replicas;
    let mut by_ordinal: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
    for p in pods {
        if let Some(o) = ordinal_of(&name, &p.name_any()) {
            by_ordinal.insert(o, p.clone());
        }
    }
    let mut plan = Plan::default();
    // The pods within [start, end), lowest first.
    for ord in start..end {
        match by_ordinal.get(&ord) {
            None => {
                plan.create
                    .push((ord, revision_for(set, ord - start, current, update)));
                if monotonic {
                    return plan;
                }
            }
            Some(p) if view.terminating(p) => {
                if monotonic {
                    return plan;
                }
            }
            Some(p) if pod_terminal(p) => {
                // Failed or finished: delete it; it is recreated once gone.
                plan.delete.push(p.name_any());
                if monotonic {
                    return plan;
                }
            }
            Some(p) if !view.healthy(p) => {
                if monotonic {
                    return plan;
                }
            }
            Some(_) => {}
        }
    }
    // Pods beyond the range go, highest first; in order only when all before are healthy.
    let condemned: Vec<&Arc<Pod>> = by_ordinal
        .iter()
        .rev()
        .filter(|(o, _)| **o < start || **o >= end)
        .map(|(_, p)| p)
        .collect();
    let first_unhealthy = by_ordinal
        .range(start..end)
        .map(|(_, p)| p)
        .find(|p| !view.healthy(p))
        .or_else(|| condemned.iter().copied().find(|p| !view.healthy(p)))
        .map(|p| p.name_any());
    for p in &condemned {
        if view.terminating(p) {
            if monotonic {
                return plan;
            }
            continue;
        }
        if monotonic && !view.healthy(p) && first_unhealthy.as_deref() != Some(&p.name_any()) {
            return plan;
        }
        plan.delete.push(p.name_any());
        if monotonic {
            return plan;
        }
    }
    // Rolling update: from the highest ordinal down to the partition, one pod at a time.
    let strategy = spec.update_strategy.unwrap_or_default();
    if strategy.type_.as_deref() == Some("OnDelete") {
        return plan;
    }
    let partition = strategy
        .rolling_update
        .as_ref()
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0);
    for ord in (start + partition.min(replicas)..end).rev() {
        let Some(p) = by_ordinal.get(&ord) else {
            return plan;
        };
        if revision_of(p) != update && !view.terminating(p) {
            if !plan.delete.contains(&p.name_any()) {
                plan.delete.push(p.name_any());
            }
            return plan;
        }
        if !view.healthy(p) {
            return plan;
        }
    }
    plan
}

/// Status counters from the pods as they are; a finished rolling update makes the update
/// revision current.
pub fn counts(
    set: &StatefulSet,
    current: &str,
    update: &str,
    pods: &[Arc<Pod>],
    now: chrono::DateTime<chrono::Utc>,
) -> Counts {
    let name = set.name_any();
    let spec = set.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut c = Counts {
        current_revision: current.to_owned(),
        update_revision: update.to_owned(),
        ..Default::default()
    };
    for p in pods
        .iter()
        .filter(|p| ordinal_of(&name, &p.name_any()).is_some())
    {
        c.replicas += 1;
        if pod_running_and_ready(p) {
            c.ready += 1;
            if pod_available(p, min_ready, now) {
                c.available += 1;
            }
        }
        if p.metadata.deletion_timestamp.is_none() {
            if revision_of(p) == current {
                c.current += 1;
            }
            if revision_of(p) == update {
                c.updated += 1;
            }
        }
    }
    let rolling = spec.update_strategy.and_then(|s| s.type_).as_deref() != Some("OnDelete");
    if rolling
        && c.replicas == spec.replicas.unwrap_or(1)
        && c.updated == c.replicas
        && c.ready == c.replicas
    {
        c.current_revision = update.to_owned();
        c.current = c.updated;
    }
    c
}

/// The claims of the pod at `ordinal`: `{claim}-{set}-{ordinal}`.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let spec = set.spec.clone().unwrap_or_default();
    let name = set.name_any();
    let delete_with_set = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_deleted.as_deref())
        == Some("Delete");
    spec.volume_claim_templates
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let claim = t.name_any();
            let mut meta = t.metadata.clone();
            meta.name = Some(format!("{claim}-{name}-{ordinal}"));
            meta.namespace = set.namespace();
            meta.resource_version = None;
            meta.uid = None;
            let labels = meta.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in spec.selector.match_labels.iter().flatten() {
                labels.insert(k.clone(), v.clone());
            }
            meta.owner_references = delete_with_set.then(|| vec![controller_ref(set)]);
            PersistentVolumeClaim {
                metadata: meta,
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// The pod at `ordinal` from `template` (the template of revision `revision`).
pub fn pod_for(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let name = set.name_any();
    let pod_name = format!("{name}-{ordinal}");
    let mut meta = template.metadata.clone().unwrap_or_default();
    meta.name = Some(pod_name.clone());
    meta.generate_name = None;
    meta.namespace = set.namespace();
    meta.resource_version = None;
    meta.uid = None;
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.to_owned());
    meta.owner_references = Some(vec![controller_ref(set)]);
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(pod_name);
    if let Some(svc) = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty())
    {
        spec.subdomain = Some(svc);
    }
    let templates = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default();
    if !templates.is_empty() {
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        for t in templates {
            let claim = t.name_any();
            volumes.retain(|v| v.name != claim);
            volumes.push(Volume {
                name: claim.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: format!("{claim}-{name}-{ordinal}"),
                    read_only: None,
                }),
                ..Default::default()
            });
        }
    }
    Pod {
        metadata: meta,
        spec: Some(spec),
        status: None,
    }
}

#[derive(Clone)]
pub struct StatefulSetController {
    client: Client,
    sets: Informer<StatefulSet>,
    pods: Informer<Pod>,
    revisions: Informer<ControllerRevision>,
    claims: Informer<PersistentVolumeClaim>,
    queue: WorkQueue,
    expectations: Expectations,
    recorder: Recorder,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

impl StatefulSetController {
    /// Registers the controller's handlers; call before the informers run.
    pub fn new(
        client: Client,
        sets: Informer<StatefulSet>,
        pods: Informer<Pod>,
        revisions: Informer<ControllerRevision>,
        claims: Informer<PersistentVolumeClaim>,
    ) -> Self {
        let queue = WorkQueue::new();
        sets.enqueue_changes(&queue);
        pods.enqueue_controllers(&queue, &sets);
        pods.add_index("controller", controller_uid_index);
        pods.enqueue_adopters(&queue, &sets, |set, pod| {
            ordinal_of(&set.name_any(), &pod.name_any()).is_some()
                && selector_matches(set.spec.as_ref().map(|s| &s.selector), pod.labels())
        });
        revisions.add_index("controller", controller_uid_index);
        StatefulSetController {
            recorder: Recorder::new(client.clone(), "statefulset-controller"),
            client,
            sets,
            pods,
            revisions,
            claims,
            queue,
            expectations: Expectations::default(),
        }
    }

    pub async fn run(self, workers: usize) {
        self.sets.wait_synced().await;
        self.pods.wait_synced().await;
        self.revisions.wait_synced().await;
        self.claims.wait_synced().await;
        for key in self.sets.keys() {
            self.queue.add(key);
        }
        let this = self.clone();
        self.queue
            .clone()
            .run("statefulset", workers, move |key| {
                let this = this.clone();
                async move { this.reconcile(&key).await }
            })
            .await;
    }

    async fn reconcile(&self, key: &str) -> Result<Action, Error> {
        let Some(set) = self.sets.get(key) else {
            self.expectations.forget(key);
            return Ok(Action::Done);
        };
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let (ns, name) = split_key(key);
        let uid = set.uid().unwrap_or_default();
        let spec = set.spec.clone().unwrap_or_default();
        let template_labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        if !selector_matches(Some(&spec.selector), &template_labels) {
            return Ok(Action::Done);
        }
        // Adopt orphaned pods named as this set's members; release those that stopped matching.
        let orphans: Vec<Arc<Pod>> = self
            .pods
            .by_index("orphan", ns)
            .into_iter()
            .filter(|p| ordinal_of(name, &p.name_any()).is_some())
            .collect();
        let pods: Vec<Arc<Pod>> = claim(
            &Api::<Pod>::namespaced(self.client.clone(), ns),
            &controller_ref(set.as_ref()),
            set.metadata.deletion_timestamp.is_some(),
            Some(&spec.selector),
            self.pods.by_index("controller", &uid),
            orphans,
        )
        .await?
        .owned
        .into_iter()
        .filter(|p| ordinal_of(name, &p.name_any()).is_some())
        .collect();

        // Revisions.
        let data = template_revision_data(&spec.template);
        let update = format!("{name}-{}", short_hash(data.to_string().as_bytes()));
        let owned_revisions = self.revisions.by_index("controller", &uid);
        let status_current = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.clone())
            .filter(|c| !c.is_empty());
        let mut in_use: HashSet<String> = pods.iter().map(|p| revision_of(p).to_owned()).collect();
        in_use.extend(status_current.clone());
        sync_history(
            &self.client,
            set.as_ref(),
            &owned_revisions,
            &update,
            template_labels,
            data,
            &in_use,
            spec.revision_history_limit.unwrap_or(10),
        )
        .await?;
        let current_template = status_current
            .as_ref()
            .filter(|c| **c != update)
            .and_then(|c| owned_revisions.iter().find(|r| r.name_any() == *c))
            .and_then(|r| template_from_revision(r));
        let current = match (&status_current, &current_template) {
            (Some(c), Some(_)) => c.clone(),
            _ => update.clone(),
        };

        let active: HashSet<String> = pods
            .iter()
            .filter(|p| pod_active(p))
            .map(|p| p.name_any())
            .collect();
        let (pending_adds, gone) = self.expectations.observe(key, &active);
        let now = chrono::Utc::now();
        if pending_adds == 0 {
            let plan = plan(&set, &current, &update, &pods, &gone, now);
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            for victim in &plan.delete {
                self.expectations.deleted(key, victim);
                match api.delete(victim, &DeleteParams::default()).await {
                    Ok(_) => self.recorder.record(
                        set.as_ref(),
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("delete Pod {victim} in StatefulSet {name} successful"),
                    ),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            for (ordinal, revision) in &plan.create {
                let template = if *revision == update {
                    &spec.template
                } else {
                    current_template.as_ref().unwrap_or(&spec.template)
                };
                self.create_claims(&set, *ordinal).await?;
                let pod = pod_for(&set, template, *ordinal, revision);
                let pod_name = pod.name_any();
                match api.create(&PostParams::default(), &pod).await {
                    Ok(_) => {
                        self.expectations.created(key, &pod_name);
                        self.recorder.record(
                            set.as_ref(),
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!("create Pod {pod_name} in StatefulSet {name} successful"),
                        );
                    }
                    // The previous pod of this name is still terminating.
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => {
                        if let kube::Error::Api(s) = &e {
                            self.recorder.record(
                                set.as_ref(),
                                EventType::Warning,
                                "FailedCreate",
                                &format!(
                                    "create Pod {pod_name} in StatefulSet {name} failed error: {}",
                                    s.message
                                ),
                            );
                        }
                        return Err(e.into());
                    }
                }
            }
        }

        let c = counts(&set, &current, &update, &pods, now);
        let old = set.status.clone().unwrap_or_default();
        let unchanged = old.replicas == c.replicas
            && old.ready_replicas.unwrap_or(0) == c.ready
            && old.available_replicas.unwrap_or(0) == c.available
            && old.current_replicas.unwrap_or(0) == c.current
            && old.updated_replicas.unwrap_or(0) == c.updated
            && old.current_revision.as_deref() == Some(&c.current_revision)
            && old.update_revision.as_deref() == Some(&c.update_revision)
            && old.observed_generation == set.metadata.generation;
        if !unchanged {
            let status = json!({"status": {
                "replicas": c.replicas,
                "readyReplicas": c.ready,
                "availableReplicas": c.available,
                "currentReplicas": c.current,
                "updatedReplicas": c.updated,
                "currentRevision": c.current_revision,
                "updateRevision": c.update_revision,
                "collisionCount": 0,
                "observedGeneration": set.metadata.generation,
            }});
            let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
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
        if min_ready > 0 && c.ready > c.available {
            return Ok(Action::RequeueAfter(Duration::from_secs(min_ready as u64)));
        }
        Ok(Action::Done)
    }

    async fn create_claims(&self, set: &StatefulSet, ordinal: i32) -> Result<(), Error> {
        let ns = set.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        for claim in claims_for(set, ordinal) {
            let claim_name = claim.name_any();
            if self.claims.get(&format!("{ns}/{claim_name}")).is_some() {
                continue;
            }
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => self.recorder.record(
                    set,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!(
                        "create Claim {claim_name} Pod {}-{ordinal} in StatefulSet {} success",
                        set.name_any(),
                        set.name_any()
                    ),
                ),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::{Value, json};

    fn set(extra: Value) -> StatefulSet {
        let mut spec = json!({
            "replicas": 3,
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u", "generation": 1},
            "spec": spec,
        }))
        .unwrap()
    }

    #[derive(Clone, Copy)]
    enum S {
        Ready,
        Pending,
        Terminating,
    }

    fn pod(ordinal: i32, rev: &str, s: S) -> Arc<Pod> {
        let (phase, ready) = match s {
            S::Ready | S::Terminating => ("Running", "True"),
            S::Pending => ("Pending", "False"),
        };
        let mut p = json!({
            "metadata": {"name": format!("web-{ordinal}"), "namespace": "default",
                "labels": {"app": "web", REVISION_LABEL: rev}},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]},
        });
        if matches!(s, S::Terminating) {
            p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        }
        Arc::new(serde_json::from_value(p).unwrap())
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        crate::util::chrono_time(&"2024-01-02T00:00:00Z".parse::<Timestamp>().unwrap())
    }

    fn run(set: &StatefulSet, pods: Vec<Arc<Pod>>) -> Plan {
        plan(set, "web-old", "web-new", &pods, &HashSet::new(), now())
    }

    fn creates(ords: &[(i32, &str)]) -> Vec<(i32, String)> {
        ords.iter().map(|(o, r)| (*o, r.to_string())).collect()
    }

    #[test]
    fn ordinals() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webx-1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
    }

    #[test]
    fn ordered_creation() {
        let s = set(json!({}));
        let n = "web-new";
        let cases: Vec<(&str, Vec<Arc<Pod>>, Plan)> = vec![
            (
                "empty: web-0 first",
                vec![],
                Plan {
                    create: creates(&[(0, n)]),
                    delete: vec![],
                },
            ),
            (
                "web-0 not ready: wait",
                vec![pod(0, n, S::Pending)],
                Plan::default(),
            ),
            (
                "web-0 ready: web-1",
                vec![pod(0, n, S::Ready)],
                Plan {
                    create: creates(&[(1, n)]),
                    delete: vec![],
                },
            ),
            (
                "a gap is filled first",
                vec![pod(0, n, S::Ready), pod(2, n, S::Ready)],
                Plan {
                    create: creates(&[(1, n)]),
                    delete: vec![],
                },
            ),
            (
                "terminating web-0 blocks",
                vec![pod(0, n, S::Terminating)],
                Plan::default(),
            ),
            (
                "all there and ready: nothing",
                vec![
                    pod(0, n, S::Ready),
                    pod(1, n, S::Ready),
                    pod(2, n, S::Ready),
                ],
                Plan::default(),
            ),
        ];
        for (what, pods, want) in cases {
            assert_eq!(run(&s, pods), want, "{what}");
        }
        let parallel = set(json!({"podManagementPolicy": "Parallel"}));
        assert_eq!(
            run(&parallel, vec![pod(1, n, S::Pending)]),
            Plan {
                create: creates(&[(0, n), (2, n)]),
                delete: vec![]
            },
            "Parallel creates all at once"
        );
        let offset = set(json!({"ordinals": {"start": 5}, "replicas": 2}));
        assert_eq!(
            run(&offset, vec![]).create,
            creates(&[(5, n)]),
            "start ordinal"
        );
    }

    #[test]
    fn ordered_scale_down() {
        let n = "web-new";
        let s = set(json!({"replicas": 1}));
        let all = || {
            vec![
                pod(0, n, S::Ready),
                pod(1, n, S::Ready),
                pod(2, n, S::Ready),
            ]
        };
        assert_eq!(
            run(&s, all()).delete,
            vec!["web-2"],
            "highest first, one at a time"
        );
        assert_eq!(
            run(
                &s,
                vec![
                    pod(0, n, S::Ready),
                    pod(1, n, S::Ready),
                    pod(2, n, S::Terminating)
                ]
            ),
            Plan::default(),
            "wait until web-2 is gone"
        );
        assert_eq!(
            run(&s, vec![pod(0, n, S::Ready), pod(1, n, S::Ready)]).delete,
            vec!["web-1"]
        );
        assert_eq!(
            run(&s, vec![pod(0, n, S::Pending), pod(1, n, S::Ready)]),
            Plan::default(),
            "an unhealthy pod below blocks scale-down"
        );
        assert_eq!(
            run(
                &s,
                vec![
                    pod(0, n, S::Ready),
                    pod(1, n, S::Ready),
                    pod(2, n, S::Pending)
                ]
            )
            .delete,
            vec!["web-2"],
            "the unhealthy pod being removed does not block itself"
        );
        // Expectations: a pod we deleted but the cache still shows counts as terminating.
        let gone: HashSet<String> = ["web-2".to_string()].into();
        assert_eq!(plan(&s, n, n, &all(), &gone, now()), Plan::default());
        let parallel = set(json!({"replicas": 1, "podManagementPolicy": "Parallel"}));
        let mut deleted = run(&parallel, all()).delete;
        deleted.sort();
        assert_eq!(
            deleted,
            vec!["web-1", "web-2"],
            "Parallel removes all at once"
        );
    }

    #[test]
    fn partitioned_rolling_update() {
        let (o, n) = ("web-old", "web-new");
        let old3 = || {
            vec![
                pod(0, o, S::Ready),
                pod(1, o, S::Ready),
                pod(2, o, S::Ready),
            ]
        };
        let cases: Vec<(&str, Value, Vec<Arc<Pod>>, Plan)> = vec![
            (
                "highest ordinal first",
                json!({}),
                old3(),
                Plan {
                    create: vec![],
                    delete: vec!["web-2".into()],
                },
            ),
            (
                "replaced pod recreated with the update revision",
                json!({}),
                vec![pod(0, o, S::Ready), pod(1, o, S::Ready)],
                Plan {
                    create: creates(&[(2, n)]),
                    delete: vec![],
                },
            ),
            (
                "wait for the updated pod to be ready",
                json!({}),
                vec![
                    pod(0, o, S::Ready),
                    pod(1, o, S::Ready),
                    pod(2, n, S::Pending),
                ],
                Plan::default(),
            ),
            (
                "then the next one down",
                json!({}),
                vec![
                    pod(0, o, S::Ready),
                    pod(1, o, S::Ready),
                    pod(2, n, S::Ready),
                ],
                Plan {
                    create: vec![],
                    delete: vec!["web-1".into()],
                },
            ),
            (
                "partition 2: only web-2",
                json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
                vec![
                    pod(0, o, S::Ready),
                    pod(1, o, S::Ready),
                    pod(2, n, S::Ready),
                ],
                Plan::default(),
            ),
            (
                "below the partition a deleted pod comes back at the current revision",
                json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
                vec![pod(0, o, S::Ready), pod(2, n, S::Ready)],
                Plan {
                    create: creates(&[(1, o)]),
                    delete: vec![],
                },
            ),
            (
                "partition beyond replicas: nothing",
                json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 5}}}),
                old3(),
                Plan::default(),
            ),
            (
                "OnDelete: nothing replaced",
                json!({"updateStrategy": {"type": "OnDelete"}}),
                old3(),
                Plan::default(),
            ),
            (
                "OnDelete: a deleted pod comes back at the update revision",
                json!({"updateStrategy": {"type": "OnDelete"}}),
                vec![pod(0, o, S::Ready), pod(2, o, S::Ready)],
                Plan {
                    create: creates(&[(1, n)]),
                    delete: vec![],
                },
            ),
        ];
        for (what, extra, pods, want) in cases {
            assert_eq!(run(&set(extra), pods), want, "{what}");
        }
    }

    #[test]
    fn status_and_completion() {
        let (o, n) = ("web-old", "web-new");
        let s = set(json!({}));
        let c = counts(
            &s,
            o,
            n,
            &[
                pod(0, o, S::Ready),
                pod(1, n, S::Ready),
                pod(2, n, S::Pending),
            ],
            now(),
        );
        assert_eq!(
            (
                c.replicas,
                c.ready,
                c.available,
                c.current,
                c.updated,
                c.current_revision.as_str()
            ),
            (3, 2, 2, 1, 2, o)
        );
        let c = counts(
            &s,
            o,
            n,
            &[
                pod(0, n, S::Ready),
                pod(1, n, S::Ready),
                pod(2, n, S::Ready),
            ],
            now(),
        );
        assert_eq!(
            (c.current, c.current_revision.as_str()),
            (3, n),
            "update complete"
        );
    }

    #[test]
    fn pods_and_claims() {
        let s = set(
            json!({"volumeClaimTemplates": [{"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}),
        );
        let p = pod_for(&s, &s.spec.as_ref().unwrap().template, 1, "web-abc");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["metadata"]["name"], "web-1");
        assert_eq!(v["metadata"]["labels"][POD_NAME_LABEL], "web-1");
        assert_eq!(v["metadata"]["labels"][POD_INDEX_LABEL], "1");
        assert_eq!(v["metadata"]["labels"][REVISION_LABEL], "web-abc");
        assert_eq!(v["spec"]["hostname"], "web-1");
        assert_eq!(v["spec"]["subdomain"], "web");
        assert_eq!(
            v["spec"]["volumes"],
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}}])
        );
        let claims = claims_for(&s, 1);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].name_any(), "data-web-1");
        assert_eq!(
            claims[0].labels().get("app").map(String::as_str),
            Some("web")
        );
        assert!(
            claims[0].metadata.owner_references.is_none(),
            "Retain by default"
        );
    }
}
