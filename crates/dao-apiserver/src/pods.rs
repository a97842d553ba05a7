//! Pod-specific server behaviour: the `binding` subresource the scheduler uses, and graceful
//! deletion (a bound pod is marked with a deletion time and left for its node to stop).

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
