//! Pod-specific server behaviour: the `binding` subresource the scheduler uses, graceful
//! deletion (a bound pod is marked with a deletion time and left for its node to stop),
//! upstream's Priority admission (a new pod's priority comes from its PriorityClass) and its
//! ServiceAccount admission (a new pod runs as a service account that exists, and mounts its
//! token, the cluster's CA and its namespace).

use chrono::{SecondsFormat, Utc};
use dao_store::{Expect, Outcome};
use serde_json::{Value, json};

use crate::api::{ApiResult, ApiState, Target, decode, encode};
use crate::status::{ApiError, Cause};

/// `POST .../pods/{name}/binding`: assign an unbound pod to a node, as upstream's BindingREST.
pub async fn bind(state: &ApiState, target: &Target, name: &str, binding: &Value) -> ApiResult<()> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::invalid_kind(
            "Binding",
            "",
            name,
            vec![Cause {
                reason: "FieldValueRequired",
                field: "target.name".into(),
                message: "Required value".into(),
            }],
        ));
    }
    let key = target.res.key(target.namespace.as_deref(), name);
    loop {
        let (current, _) = state.store.get(&key, None).await?;
        let Some(current) = current else {
            return Err(ApiError::not_found(target.res, name));
        };
        let mut pod = decode(&current)?;
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::conflict_with(
                "pods/binding",
                name,
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        if let Some(uid) = binding.pointer("/metadata/uid").and_then(Value::as_str)
            && !uid.is_empty()
            && Some(uid) != pod.pointer("/metadata/uid").and_then(Value::as_str)
        {
            return Err(ApiError::conflict_with(
                "pods/binding",
                name,
                "the UID in the precondition does not match the UID in record",
            ));
        }
        let assigned = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !assigned.is_empty() {
            return Err(ApiError::conflict_with(
                "pods/binding",
                name,
                &format!("pod {name} is already assigned to node \"{assigned}\""),
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        if let Some(annotations) = binding
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
        {
            for (k, v) in annotations {
                pod["metadata"]["annotations"][k] = v.clone();
            }
        }
        set_condition(&mut pod, "PodScheduled", "True", None, None);
        match state
            .store
            .put(
                &key,
                encode(&pod),
                Expect::ModRevision(current.mod_revision),
            )
            .await?
        {
            Outcome::Applied { .. } => return Ok(()),
            Outcome::Rejected { current: None, .. } => {
                return Err(ApiError::not_found(target.res, name));
            }
            Outcome::Rejected { .. } => continue,
        }
    }
}

/// Set (or replace) a pod condition, keeping `lastTransitionTime` when the status is unchanged.
pub fn set_condition(
    pod: &mut Value,
    kind: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let conditions = pod["status"]["conditions"].as_array_mut().expect("array");
    let mut condition =
        json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(r) = reason {
        condition["reason"] = json!(r);
    }
    if let Some(m) = message {
        condition["message"] = json!(m);
    }
    match conditions.iter_mut().find(|c| c["type"] == kind) {
        Some(c) => {
            if c["status"] == status {
                condition["lastTransitionTime"] = c["lastTransitionTime"].clone();
            }
            *c = condition;
        }
        None => conditions.push(condition),
    }
}

/// The grace period a DELETE of this pod gets, as upstream's pod strategy decides it: the
/// request's `gracePeriodSeconds`, else the pod's `terminationGracePeriodSeconds`; zero for a
/// pod no node runs (unbound, or finished).
pub fn grace_period(pod: &Value, options: &Value) -> i64 {
    let requested = options
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(0);
    let unbound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if unbound || finished { 0 } else { requested }
}

/// The deletion timestamp for a grace period starting now.
pub fn deletion_time(grace: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(grace)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The PriorityClasses every upstream cluster has, for the pods that keep it running.
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// The system PriorityClasses, as (key, object) for [`crate::api::seed`].
pub fn system_priority_classes() -> Vec<(String, Value)> {
    let res = crate::registry::find("scheduling.k8s.io", "v1", "priorityclasses")
        .expect("priorityclasses registered");
    let mut out = Vec::new();
    for (name, value, description) in SYSTEM_PRIORITY_CLASSES {
        let obj = json!({
            "kind": "PriorityClass",
            "apiVersion": "scheduling.k8s.io/v1",
            "metadata": {
                "name": name,
            },
            "value": value,
            "globalDefault": false,
            "description": description,
            "preemptionPolicy": "PreemptLowerPriority",
        });
        out.push((res.key(None, name), obj));
    }
    out
}

/// Upstream's Priority admission for a changed pod: the priority set at creation stays, whatever
/// the update says (an apply that no longer lists `spec.priority` would otherwise remove it, a
/// pod spec change upstream refuses).
pub fn keep_priority(old: &Value, pod: &mut Value) {
    if let Some(spec) = pod.get_mut("spec").filter(|s| s.is_object()) {
        crate::api::carry_over(&old["spec"], spec, &["priority", "preemptionPolicy"]);
    }
}

/// Upstream's Priority admission for a new pod: `spec.priority` (and `preemptionPolicy`) from
/// the PriorityClass it names, or from the cluster's `globalDefault` class when it names none
/// (0 without one). A class that does not exist, or a priority or policy in the pod that
/// disagrees with its class, is refused with upstream's 403.
pub async fn admit_priority(state: &ApiState, name: &str, pod: &mut Value) -> ApiResult<()> {
    let pods = crate::registry::find("", "v1", "pods").expect("pods registered");
    let classes = crate::registry::find("scheduling.k8s.io", "v1", "priorityclasses")
        .expect("priorityclasses registered");
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let forbidden = |why: String| ApiError::forbidden(&pods.qualified_plural(), name, &why);
    let class_name = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let class = if class_name.is_empty() {
        // The global default, the lowest-valued one if several claim it.
        let page = state
            .store
            .range(dao_store::RangeRequest::prefix(classes.key_prefix()))
            .await?;
        page.kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .filter(|c| c["globalDefault"] == true)
            .min_by_key(|c| c["value"].as_i64().unwrap_or(0))
    } else {
        match state
            .store
            .get(&classes.key(None, &class_name), None)
            .await?
            .0
        {
            Some(kv) => Some(decode(&kv)?),
            None => {
                return Err(forbidden(format!(
                    "no PriorityClass with name {class_name} was found"
                )));
            }
        }
    };
    let priority = class
        .as_ref()
        .and_then(|c| c["value"].as_i64())
        .unwrap_or(0);
    let policy = class
        .as_ref()
        .and_then(|c| c["preemptionPolicy"].as_str())
        .unwrap_or("PreemptLowerPriority")
        .to_owned();
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != priority
    {
        return Err(forbidden(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
        )));
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
        && given != policy
    {
        return Err(forbidden(format!(
            "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
        )));
    }
    if let Some(class) = &class {
        spec.insert(
            "priorityClassName".into(),
            class["metadata"]["name"].clone(),
        );
    }
    spec.insert("priority".into(), json!(priority));
    spec.insert("preemptionPolicy".into(), json!(policy));
    Ok(())
}

/// Where upstream mounts a pod's service account token, CA bundle and namespace.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The prefix of the projected volume that ServiceAccount admission adds.
const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";

/// Upstream's ServiceAccount admission for a new pod (mirror pods aside): the pod runs as
/// `spec.serviceAccountName`, `default` when it names none, which must exist (the `default`
/// one is looked for during about a second and a half, as upstream does, since the
/// ServiceAccount controller creates it just after its namespace); unless the pod or the
/// account turns automounting off, every container mounts a `kube-api-access-*` projected
/// volume (a bound token of 3607 s, `kube-root-ca.crt`'s `ca.crt`, the namespace) read-only at
/// [`TOKEN_MOUNT_PATH`]; and a pod without image pull secrets gets the account's.
pub async fn admit_service_account(
    state: &ApiState,
    name: &str,
    namespace: &str,
    pod: &mut Value,
) -> ApiResult<()> {
    let mirror = pod
        .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if mirror {
        return Ok(());
    }
    let account = match spec.get("serviceAccountName").and_then(Value::as_str) {
        Some(a) if !a.is_empty() => a.to_owned(),
        _ => "default".to_owned(),
    };
    spec.insert("serviceAccountName".into(), json!(account));
    spec.insert("serviceAccount".into(), json!(account));
    let accounts = crate::registry::find("", "v1", "serviceaccounts").expect("registered");
    let key = accounts.key(Some(namespace), &account);
    let attempts = if account == "default" { 10 } else { 1 };
    let pause = std::time::Duration::from_millis(100 + rand::random_range(0..100));
    let mut found = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(pause).await;
        }
        if let Some(kv) = state.store.get(&key, None).await?.0 {
            found = Some(decode(&kv)?);
            break;
        }
    }
    let Some(sa) = found else {
        let pods = crate::registry::find("", "v1", "pods").expect("pods registered");
        return Err(ApiError::forbidden(
            &pods.qualified_plural(),
            name,
            &format!(
                "error looking up service account {namespace}/{account}: serviceaccount \"{account}\" not found"
            ),
        ));
    };
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if automount {
        mount_token(spec);
    }
    let has_pull_secrets = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    if let Some(secrets) = sa["imagePullSecrets"].as_array()
        && !has_pull_secrets
        && !secrets.is_empty()
    {
        let names: Vec<Value> = secrets
            .iter()
            .map(|s| json!({"name": s["name"].as_str().unwrap_or("")}))
            .collect();
        spec.insert("imagePullSecrets".into(), Value::Array(names));
    }
    Ok(())
}

/// Every container and init container without a mount at [`TOKEN_MOUNT_PATH`] mounts the
/// pod's `kube-api-access-*` volume there, which is added if some container needs it.
fn mount_token(spec: &mut serde_json::Map<String, Value>) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with(TOKEN_VOLUME_PREFIX))
        .map(str::to_owned);
    let volume = existing
        .clone()
        .unwrap_or_else(|| format!("{TOKEN_VOLUME_PREFIX}{}", crate::api::random_suffix()));
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            if mounts.iter().any(|m| m["mountPath"] == TOKEN_MOUNT_PATH) {
                continue;
            }
            mounts.push(json!({"name": volume, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}));
            needed = true;
        }
    }
    if needed && existing.is_none() {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(volumes) = volumes.as_array_mut() {
            volumes.push(json!({
                "name": volume,
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                    ],
                },
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_keeps_the_priority_set_at_creation() {
        let old = json!({"spec": {"priority": 0, "preemptionPolicy": "PreemptLowerPriority"}});
        let mut dropped = json!({"spec": {"containers": []}});
        keep_priority(&old, &mut dropped);
        assert_eq!(
            dropped,
            json!({"spec": {"containers": [], "priority": 0, "preemptionPolicy": "PreemptLowerPriority"}})
        );
        let mut changed = json!({"spec": {"priority": 1000, "preemptionPolicy": "Never"}});
        keep_priority(&json!({"spec": {}}), &mut changed);
        assert_eq!(changed, json!({"spec": {}}));
    }

    fn spec_of(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_token_volume_is_mounted_where_nothing_else_is() {
        // One container mounts something of its own at the token's path: it keeps it; the
        // others (init containers too) get the new volume, added once.
        let mut spec = spec_of(json!({
            "initContainers": [{"name": "init"}],
            "containers": [
                {"name": "a", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "b", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "mine", "emptyDir": {}}],
        }));
        mount_token(&mut spec);
        let volumes = spec["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 3);
        let name = volumes[2]["name"].as_str().unwrap().to_owned();
        assert!(name.starts_with(TOKEN_VOLUME_PREFIX), "{name}");
        let token = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
        assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([token]));
        assert_eq!(spec["containers"][0]["volumeMounts"][1], token);
        assert_eq!(
            spec["containers"][1]["volumeMounts"],
            json!([{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}])
        );

        // A pod that has a kube-api-access volume already keeps it and its name.
        let mut again = spec_of(json!({
            "containers": [{"name": "c"}],
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": []}}],
        }));
        mount_token(&mut again);
        assert_eq!(again["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(
            again["containers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-abcde"
        );

        // Every container mounts something there already: no volume is added.
        let mut none = spec_of(json!({
            "containers": [{"name": "c", "volumeMounts": [{"name": "x", "mountPath": TOKEN_MOUNT_PATH}]}],
        }));
        mount_token(&mut none);
        assert!(none.get("volumes").is_none());
    }

    #[test]
    fn grace_periods() {
        let bound = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30}});
        assert_eq!(grace_period(&bound, &json!({})), 30);
        assert_eq!(grace_period(&bound, &json!({"gracePeriodSeconds": 5})), 5);
        assert_eq!(grace_period(&bound, &json!({"gracePeriodSeconds": 0})), 0);
        let unbound = json!({"spec": {"terminationGracePeriodSeconds": 30}});
        assert_eq!(grace_period(&unbound, &json!({})), 0);
        let done = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}});
        assert_eq!(grace_period(&done, &json!({})), 0);
    }

    #[test]
    fn conditions_keep_transition_time() {
        let mut pod = json!({});
        set_condition(&mut pod, "Ready", "True", None, None);
        pod["status"]["conditions"][0]["lastTransitionTime"] = json!("then");
        set_condition(&mut pod, "Ready", "True", None, None);
        assert_eq!(pod["status"]["conditions"][0]["lastTransitionTime"], "then");
        set_condition(&mut pod, "Ready", "False", Some("X"), None);
        assert_ne!(pod["status"]["conditions"][0]["lastTransitionTime"], "then");
        assert_eq!(pod["status"]["conditions"].as_array().unwrap().len(), 1);
    }
}
