//! Small helpers shared by the controllers: selectors, pod readiness, int-or-percent values,
//! owner references, template hashes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

/// Whether `labels` match a LabelSelector (matchLabels and all matchExpressions). An empty
/// selector matches everything; `None` matches nothing, as upstream treats a nil selector.
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(sel) = selector else {
        return false;
    };
    if let Some(ml) = &sel.match_labels
        && ml.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    })
}

/// Whether the cached namespace `ns` exists and takes new content: not being deleted, not
/// Terminating.
pub fn namespace_active(namespaces: &crate::informer::Informer<Namespace>, ns: &str) -> bool {
    namespaces.get(ns).is_some_and(|n| {
        n.metadata.deletion_timestamp.is_none()
            && n.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
    })
}

/// Runs a controller whose work is keyed by namespace: every cached namespace is queued once,
/// then `reconcile` works through the queue on one worker. The caller waits for its informers
/// to sync first.
pub async fn run_per_namespace<F, Fut>(
    queue: crate::queue::WorkQueue,
    name: &'static str,
    namespaces: &crate::informer::Informer<Namespace>,
    reconcile: F,
) where
    F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<crate::queue::Action, kube::Error>> + Send,
{
    for ns in namespaces.keys() {
        queue.add(ns);
    }
    queue.run(name, 1, reconcile).await;
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready_seconds` (upstream's "available").
pub fn pod_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    if !pod_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.as_ref())
        .is_some_and(|Time(t)| (now - chrono_time(t)).num_seconds() >= min_ready_seconds as i64)
}

/// A Kubernetes timestamp (jiff) as chrono.
pub fn chrono_time(t: &k8s_openapi::jiff::Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

/// Not being deleted and not finished: a pod that counts towards a controller's replicas.
pub fn pod_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// Resolves an int-or-percent against a total, rounding percentages up or down.
pub fn int_or_percent(v: Option<&IntOrString>, total: i32, round_up: bool, default: i32) -> i32 {
    match v {
        None => default,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return s.parse().unwrap_or(default);
            };
            let scaled = p * total as i64;
            (if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            }) as i32
        }
    }
}

/// An owner reference making `owner` the controller of a dependent.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// FNV-1a (32 bit) rendered with upstream's alphabet for generated names (no vowels, no
/// look-alike digits): the `pod-template-hash` / `controller-revision-hash` shape.
pub fn short_hash(data: &[u8]) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= *b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = Vec::new();
    let mut v = h as u64;
    loop {
        out.push(ALPHABET[(v % ALPHABET.len() as u64) as usize]);
        v /= ALPHABET.len() as u64;
        if v == 0 {
            break;
        }
    }
    String::from_utf8(out).expect("ascii")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors() {
        let sel = |v: serde_json::Value| -> LabelSelector { serde_json::from_value(v).unwrap() };
        let l = labels(&[("app", "web"), ("tier", "fe")]);
        for (s, want) in [
            (json!({}), true),
            (json!({"matchLabels": {"app": "web"}}), true),
            (json!({"matchLabels": {"app": "db"}}), false),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "x", "operator": "Exists"}]}),
                false,
            ),
        ] {
            assert_eq!(selector_matches(Some(&sel(s.clone())), &l), want, "{s}");
        }
        assert!(!selector_matches(None, &l));
    }

    #[test]
    fn int_or_percent_rounding() {
        let p = |s: &str| IntOrString::String(s.into());
        assert_eq!(int_or_percent(Some(&p("25%")), 10, true, 0), 3);
        assert_eq!(int_or_percent(Some(&p("25%")), 10, false, 0), 2);
        assert_eq!(int_or_percent(Some(&IntOrString::Int(4)), 10, false, 0), 4);
        assert_eq!(int_or_percent(None, 10, false, 1), 1);
    }

    #[test]
    fn hashes_are_stable_and_safe() {
        let h = short_hash(b"template");
        assert_eq!(h, short_hash(b"template"));
        assert_ne!(h, short_hash(b"template2"));
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }
}

/// A pod for a controller: the template's metadata and spec, a generated name under
/// `prefix`, extra labels, and the controller reference.
pub fn pod_from_template(
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    namespace: &str,
    prefix: &str,
    extra_labels: &[(&str, &str)],
    owner: OwnerReference,
) -> Pod {
    let mut meta = template.metadata.clone().unwrap_or_default();
    meta.name = None;
    meta.generate_name = Some(format!("{prefix}-"));
    meta.namespace = Some(namespace.to_owned());
    meta.resource_version = None;
    meta.uid = None;
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in extra_labels {
        labels.insert((*k).to_owned(), (*v).to_owned());
    }
    meta.owner_references = Some(vec![owner]);
    Pod {
        metadata: meta,
        spec: template.spec.clone(),
        status: None,
    }
}

/// Upstream's order for scaling down: unscheduled before scheduled, Pending before Running,
/// not ready before ready, newer before older. Sorts `pods` so the first are deleted first.
pub fn sort_for_deletion(pods: &mut [std::sync::Arc<Pod>]) {
    fn phase_rank(p: &Pod) -> u8 {
        match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Pending") | None => 0,
            Some("Running") => 2,
            _ => 1,
        }
    }
    pods.sort_by(|a, b| {
        let scheduled = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some_and(|n| !n.is_empty())
        };
        scheduled(a)
            .cmp(&scheduled(b))
            .then(phase_rank(a).cmp(&phase_rank(b)))
            .then(pod_ready(a).cmp(&pod_ready(b)))
            .then(b.creation_timestamp().cmp(&a.creation_timestamp()))
    });
}

/// Pods a controller asked for but has not yet seen in its cache, and pods it deleted that the
/// cache still shows: client-go's "expectations", keyed by controller. Entries expire after a
/// minute so a lost watch event cannot stall a controller for ever.
#[derive(Clone, Default)]
pub struct Expectations {
    inner: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Pending>>>,
}

#[derive(Default)]
struct Pending {
    adds: std::collections::HashMap<String, std::time::Instant>,
    dels: std::collections::HashMap<String, std::time::Instant>,
}

const EXPECTATION_TTL: std::time::Duration = std::time::Duration::from_secs(60);

impl Expectations {
    pub fn created(&self, owner: &str, pod: &str) {
        let mut m = self.inner.lock().expect("expectations");
        m.entry(owner.to_owned())
            .or_default()
            .adds
            .insert(pod.to_owned(), std::time::Instant::now());
    }

    pub fn deleted(&self, owner: &str, pod: &str) {
        let mut m = self.inner.lock().expect("expectations");
        m.entry(owner.to_owned())
            .or_default()
            .dels
            .insert(pod.to_owned(), std::time::Instant::now());
    }

    /// Given the names of the controller's active pods in the cache: how many created pods
    /// are still unseen, and which cached pods are already being deleted.
    pub fn observe(
        &self,
        owner: &str,
        active: &std::collections::HashSet<String>,
    ) -> (usize, std::collections::HashSet<String>) {
        let mut m = self.inner.lock().expect("expectations");
        let Some(p) = m.get_mut(owner) else {
            return (0, Default::default());
        };
        p.adds
            .retain(|name, at| !active.contains(name) && at.elapsed() < EXPECTATION_TTL);
        p.dels
            .retain(|name, at| active.contains(name) && at.elapsed() < EXPECTATION_TTL);
        let result = (p.adds.len(), p.dels.keys().cloned().collect());
        if p.adds.is_empty() && p.dels.is_empty() {
            m.remove(owner);
        }
        result
    }

    pub fn forget(&self, owner: &str) {
        self.inner.lock().expect("expectations").remove(owner);
    }
}

/// Phase Running and condition Ready: upstream's "running and ready" of StatefulSet pods.
/// A status's conditions as JSON values, to edit and write back in a merge patch.
pub fn conditions_json<C: serde::Serialize>(conditions: Option<&Vec<C>>) -> Vec<serde_json::Value> {
    conditions
        .map(|c| {
            c.iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect()
        })
        .unwrap_or_default()
}

pub fn pod_running_and_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && pod_ready(pod)
}

/// Phase Succeeded or Failed.
pub fn pod_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The `data` of a ControllerRevision for a pod template, as upstream records DaemonSet and
/// StatefulSet history: a strategic merge patch replacing `spec.template`.
pub fn template_revision_data(
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
) -> serde_json::Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(obj) = t.as_object_mut() {
        obj.insert("$patch".into(), "replace".into());
    }
    serde_json::json!({"spec": {"template": t}})
}

/// The pod template a ControllerRevision written by `template_revision_data` records.
pub fn template_from_revision(
    rev: &k8s_openapi::api::apps::v1::ControllerRevision,
) -> Option<k8s_openapi::api::core::v1::PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(obj) = t.as_object_mut() {
        obj.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// Makes the ControllerRevision `name` (owned by `owner`, recording `data`) the newest of the
/// owner's history, creating it or raising its revision number (a rollback to an old template),
/// and deletes the oldest revisions not in `in_use` beyond `limit`. `owned` is the owner's
/// history as the cache shows it. Returns the revision.
#[allow(clippy::too_many_arguments)] // one call per controller; a struct would only rename these
pub async fn sync_history<K>(
    client: &kube::Client,
    owner: &K,
    owned: &[std::sync::Arc<k8s_openapi::api::apps::v1::ControllerRevision>],
    name: &str,
    labels: BTreeMap<String, String>,
    data: serde_json::Value,
    in_use: &std::collections::HashSet<String>,
    limit: i32,
) -> Result<k8s_openapi::api::apps::v1::ControllerRevision, kube::Error>
where
    K: Resource<DynamicType = ()>,
{
    use k8s_openapi::api::apps::v1::ControllerRevision;
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
    let ns = owner.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let max = owned.iter().map(|r| r.revision).max().unwrap_or(0);
    let current = match owned.iter().find(|r| r.name_any() == name) {
        Some(r) if r.revision < max => {
            let patch = serde_json::json!({"revision": max + 1});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?
        }
        Some(r) => (**r).clone(),
        None => {
            let rev = ControllerRevision {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    owner_references: Some(vec![controller_ref(owner)]),
                    ..Default::default()
                },
                data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(data)),
                revision: max + 1,
            };
            match api.create(&PostParams::default(), &rev).await {
                Ok(r) => r,
                // Created by an earlier reconcile the cache has not shown yet.
                Err(kube::Error::Api(s)) if s.code == 409 => api.get(name).await?,
                Err(e) => return Err(e),
            }
        }
    };
    let mut old: Vec<_> = owned
        .iter()
        .filter(|r| r.name_any() != name && !in_use.contains(&r.name_any()))
        .collect();
    old.sort_by_key(|r| r.revision);
    let excess = old.len().saturating_sub(limit.max(0) as usize);
    for r in old.into_iter().take(excess) {
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(current)
}

/// What [`claim`] decided for a controller's dependents.
pub struct Claimed<K> {
    /// Dependents the controller owns after the claim: those it owned that still match, and
    /// the orphans it adopted (as the server returned them).
    pub owned: Vec<std::sync::Arc<K>>,
}

/// Upstream's ControllerRefManager: the controller `owner` adopts `orphans` (dependents in its
/// namespace without a controller) that its selector matches, and releases dependents it
/// owns whose labels no longer match. Adoption and release are strategic merge patches of
/// `metadata.ownerReferences` (merged by uid), so other owner references stay. A controller
/// being deleted adopts nothing. A dependent that vanished meanwhile (404) is skipped.
pub async fn claim<K>(
    api: &kube::Api<K>,
    owner: &OwnerReference,
    owner_deleting: bool,
    selector: Option<&LabelSelector>,
    owned: Vec<std::sync::Arc<K>>,
    orphans: Vec<std::sync::Arc<K>>,
) -> Result<Claimed<K>, kube::Error>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    use kube::api::{Patch, PatchParams};
    let mut claimed = Vec::new();
    let ignore_gone = |r: Result<K, kube::Error>| match r {
        Ok(k) => Ok(Some(k)),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 || s.code == 422 => Ok(None),
        Err(e) => Err(e),
    };
    for dep in owned {
        // An empty selector selects everything; only a mismatch releases.
        if selector.is_none() || selector_matches(selector, dep.labels()) {
            claimed.push(dep);
            continue;
        }
        let patch = serde_json::json!({"metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": owner.uid}],
            "uid": dep.uid(),
        }});
        ignore_gone(
            api.patch(
                &dep.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await,
        )?;
    }
    if owner_deleting {
        return Ok(Claimed { owned: claimed });
    }
    for dep in orphans {
        if dep.meta().deletion_timestamp.is_some() || !selector_matches(selector, dep.labels()) {
            continue;
        }
        let patch = serde_json::json!({"metadata": {
            "ownerReferences": [owner],
            "uid": dep.uid(),
        }});
        if let Some(adopted) = ignore_gone(
            api.patch(
                &dep.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await,
        )? {
            claimed.push(std::sync::Arc::new(adopted));
        }
    }
    Ok(Claimed { owned: claimed })
}
