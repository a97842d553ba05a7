//! Pod-specific server behaviour: the `binding` subresource the scheduler uses, graceful
//! deletion (a bound pod is marked with a deletion time and left for its node to stop), and
//! upstream's Priority admission (a new pod's priority comes from its PriorityClass).

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
const SYSTEM_PRIORITY_CLASSES: [(&str, i64, &str); 2] = [
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

#[cfg(test)]
mod tests {
    use super::*;

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
