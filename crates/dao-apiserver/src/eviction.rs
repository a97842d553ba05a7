//! The `pods/eviction` subresource (`POST .../pods/{name}/eviction`, a policy/v1 Eviction), as
//! upstream's EvictionREST: a pod is deleted only if the PodDisruptionBudget covering it has a
//! disruption to spare, which the eviction takes out of the budget's status first.
//!
//! - A pod that is finished, Pending or already being deleted is deleted at once.
//! - No budget selects the pod: it is deleted. More than one: 500, as upstream.
//! - A pod that is not Ready is deleted without taking a disruption when the budget is met
//!   (or its `unhealthyPodEvictionPolicy` is `AlwaysAllow`), guarded by its resourceVersion.
//! - Otherwise the budget's `disruptionsAllowed` is decremented and the pod recorded in
//!   `disruptedPods` (a compare-and-swap on the budget, retried on conflict); with none left,
//!   429 TooManyRequests with a `DisruptionBudget` cause.
//!
//! The pod gets a `DisruptionTarget` condition (`EvictionByEvictionAPI`) before its deletion,
//! which honours the Eviction's `deleteOptions` (grace period, preconditions).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{SecondsFormat, Utc};
use dao_store::{Expect, KeyValue, Outcome, RangeRequest};
use serde_json::{Value, json};

use crate::api::{ApiResult, ApiState, Query, Target, decode, encode, json_response};
use crate::registry;
use crate::selector::{label_selector_matches, string_map};
use crate::status::ApiError;

/// Upstream's `MaxDisruptedPodSize`: approved evictions the budget's controller has not yet
/// confirmed, beyond which evictions are refused.
const MAX_DISRUPTED_PODS: usize = 2000;

/// Attempts at a compare-and-swap before giving up (upstream retries 20 times).
const RETRIES: usize = 20;

const TOO_MANY: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn pdb_resource() -> &'static registry::Resource {
    registry::find("policy", "v1", "poddisruptionbudgets").expect("PodDisruptionBudgets registered")
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn deleting(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

fn ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Finished, Pending or already being deleted: its disruption already happened (or never
/// will), so no budget is consulted.
fn can_ignore_budget(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending") || deleting(pod)
}

/// A pod that may still become Ready is deleted only at the version the decision saw.
fn should_enforce_version(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !deleting(pod)
}

fn resource_version_unset(options: &Value) -> bool {
    options
        .pointer("/preconditions/resourceVersion")
        .is_none_or(Value::is_null)
}

fn with_resource_version(options: &Value, rv: &Value) -> Value {
    let mut o = options.clone();
    if !o.is_object() {
        o = json!({});
    }
    if !o["preconditions"].is_object() {
        o["preconditions"] = json!({});
    }
    o["preconditions"]["resourceVersion"] = rv.clone();
    o
}

/// Whether a budget's selector selects `labels`: a missing selector selects nothing, an empty
/// one everything (policy/v1).
pub fn selects(pdb: &Value, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = pdb.pointer("/spec/selector").filter(|s| s.is_object()) else {
        return false;
    };
    label_selector_matches(sel, labels)
}

fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    string_map(obj.pointer("/metadata/labels"))
}

fn too_many_requests(retry_after: u32, cause: String) -> ApiError {
    ApiError::too_many_requests(TOO_MANY, retry_after, "DisruptionBudget", cause)
}

fn still_processing(pdb_name: &str) -> ApiError {
    too_many_requests(
        10,
        format!("The disruption budget {pdb_name} is still being processed by the server."),
    )
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// What the budget says about one more disruption: the status to write (decremented, the pod
/// recorded as disrupted at `now`), or the refusal. upstream's `checkAndDecrement`.
pub fn check_and_decrement(pdb: &Value, pod_name: &str, now: &str) -> Result<Value, ApiError> {
    let name = pdb
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let status = pdb.get("status").cloned().unwrap_or_else(|| json!({}));
    if int(&status, "/observedGeneration") < int(pdb, "/metadata/generation") {
        return Err(still_processing(name));
    }
    let allowed = int(&status, "/disruptionsAllowed");
    if allowed < 0 {
        return Err(ApiError::forbidden(
            "poddisruptionbudget.policy",
            name,
            "pdb disruptions allowed is negative",
        ));
    }
    let disrupted = status
        .get("disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(ApiError::forbidden(
            "poddisruptionbudget.policy",
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(too_many_requests(
            0,
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                int(&status, "/desiredHealthy"),
                int(&status, "/currentHealthy")
            ),
        ));
    }
    let mut status = status;
    status["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        // Now False/InsufficientPods; the transition time moves only if the status changed.
        let observed = status.get("observedGeneration").cloned();
        if !status["conditions"].is_array() {
            status["conditions"] = json!([]);
        }
        let conditions = status["conditions"].as_array_mut().expect("array");
        let mut condition = json!({"type": "DisruptionAllowed", "status": "False",
            "reason": "InsufficientPods", "message": "", "lastTransitionTime": now});
        if let Some(g) = observed.filter(|g| !g.is_null()) {
            condition["observedGeneration"] = g;
        }
        match conditions
            .iter_mut()
            .find(|c| c["type"] == "DisruptionAllowed")
        {
            Some(c) => {
                if c["status"] == "False" {
                    condition["lastTransitionTime"] = c["lastTransitionTime"].clone();
                }
                *c = condition;
            }
            None => conditions.push(condition),
        }
    }
    if !status["disruptedPods"].is_object() {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod_name] = json!(now);
    Ok(status)
}

fn success() -> Response {
    json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

fn is_dry_run(options: &Value, query: &Query) -> bool {
    query.get("dryRun").is_some()
        || options
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
}

/// `POST .../pods/{name}/eviction`.
pub async fn evict(
    state: &ApiState,
    target: &Target,
    name: &str,
    query: &Query,
    eviction: &Value,
) -> ApiResult {
    let kind = eviction.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = eviction
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if (!kind.is_empty() && kind != "Eviction")
        || !matches!(api_version, "" | "policy/v1" | "policy/v1beta1")
    {
        return Err(ApiError::bad_request(format!(
            "not a Eviction object: {api_version}, Kind={kind}"
        )));
    }
    let body_name = eviction
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if body_name != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let options = match eviction.get("deleteOptions") {
        Some(o) if o.is_object() => o.clone(),
        _ => json!({}),
    };
    let dry_run = is_dry_run(&options, query);
    let key = target.res.key(target.namespace.as_deref(), name);

    // A pod whose budget does not matter is deleted directly; a conflict (the pod changed
    // between our read and the delete) is retried unless the caller named a version.
    let rv_unset = resource_version_unset(&options);
    let mut attempt = 0;
    let pod = loop {
        attempt += 1;
        let Some(kv) = state.store.get(&key, None).await?.0 else {
            return Err(ApiError::not_found(target.res, name));
        };
        let pod = decode(&kv)?;
        if !can_ignore_budget(&pod) {
            break pod;
        }
        let opts = if should_enforce_version(&pod) && rv_unset {
            with_resource_version(&options, &pod["metadata"]["resourceVersion"])
        } else {
            options.clone()
        };
        match delete_with_condition(state, target, name, &opts, dry_run).await {
            Ok(()) => return Ok(success()),
            Err(e) if e.reason == "Conflict" && rv_unset && attempt < RETRIES => continue,
            Err(e) => return Err(e),
        }
    };

    // The budgets that select the pod.
    let ns = target.namespace.clone().unwrap_or_default();
    let labels = labels_of(&pod);
    let prefix = format!("{}{ns}/", pdb_resource().key_prefix());
    let page = state.store.range(RangeRequest::prefix(prefix)).await?;
    let mut budgets: Vec<(Value, i64)> = Vec::new();
    for kv in &page.kvs {
        let pdb = decode(kv)?;
        if selects(&pdb, &labels) {
            budgets.push((pdb, kv.mod_revision));
        }
    }
    if budgets.len() > 1 {
        return Err(ApiError {
            code: 500,
            reason: "",
            message: "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
            details: None,
        });
    }
    let mut guard_version = false;
    let mut pdb_name = String::new();
    if let Some((pdb, revision)) = budgets.pop() {
        pdb_name = pdb["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // An unready pod is no part of the healthy count: it may go without taking a
        // disruption when the budget is met, or always under AlwaysAllow.
        let always = pdb.pointer("/spec/unhealthyPodEvictionPolicy") == Some(&json!("AlwaysAllow"));
        let desired = int(&pdb, "/status/desiredHealthy");
        let current = int(&pdb, "/status/currentHealthy");
        if !ready(&pod) && (always || (current >= desired && desired > 0)) {
            guard_version = true;
        } else {
            take_disruption(state, name, pdb, revision, dry_run).await?;
        }
    }

    let opts = if guard_version {
        with_resource_version(&options, &pod["metadata"]["resourceVersion"])
    } else {
        options.clone()
    };
    match delete_with_condition(state, target, name, &opts, dry_run).await {
        Ok(()) => Ok(success()),
        // The unready pod changed (became Ready?) since the decision: the client retries.
        Err(e) if e.reason == "Conflict" && guard_version && rv_unset => {
            Err(still_processing(&pdb_name))
        }
        Err(e) => Err(e),
    }
}

/// Takes one disruption from the budget (compare-and-swap on its status, re-read and retried
/// on conflict), recording the pod as disrupted. A dry run only checks.
async fn take_disruption(
    state: &ApiState,
    pod_name: &str,
    mut pdb: Value,
    mut revision: i64,
    dry_run: bool,
) -> Result<(), ApiError> {
    let res = pdb_resource();
    let name = pdb["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ns = pdb["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let key = res.key(Some(&ns), &name);
    for _ in 0..RETRIES {
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        let status = check_and_decrement(&pdb, pod_name, &now)?;
        if dry_run {
            return Ok(());
        }
        let mut updated = pdb.clone();
        updated["status"] = status;
        match state
            .store
            .put(&key, encode(&updated), Expect::ModRevision(revision))
            .await?
        {
            Outcome::Applied { .. } => return Ok(()),
            Outcome::Rejected {
                current: Some(kv), ..
            } => {
                (pdb, revision) = (decode(&kv)?, kv.mod_revision);
            }
            Outcome::Rejected { current: None, .. } => {
                return Err(ApiError::not_found(res, &name));
            }
        }
    }
    Err(ApiError::timeout(
        &format!("couldn't update PodDisruptionBudget {name:?} due to conflicts"),
        10,
    ))
}

/// upstream's `addConditionAndDeletePod`: the pod's latest version gets the DisruptionTarget
/// condition (the preconditions checked against it, and a resourceVersion precondition moved
/// to the version this write made), then the pod is deleted with `options`.
async fn delete_with_condition(
    state: &ApiState,
    target: &Target,
    name: &str,
    options: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let key = target.res.key(target.namespace.as_deref(), name);
    let mut options = options.clone();
    if dry_run {
        return match state.store.get(&key, None).await?.0 {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found(target.res, name)),
        };
    }
    loop {
        let Some(kv) = state.store.get(&key, None).await?.0 else {
            return Err(ApiError::not_found(target.res, name));
        };
        let pod = decode(&kv)?;
        check_preconditions(target, name, &options, &pod, &kv)?;
        let mut updated = pod.clone();
        crate::pods::set_condition(
            &mut updated,
            "DisruptionTarget",
            "True",
            Some("EvictionByEvictionAPI"),
            Some("Eviction API: evicting"),
        );
        if updated == pod {
            break;
        }
        match state
            .store
            .put(&key, encode(&updated), Expect::ModRevision(kv.mod_revision))
            .await?
        {
            Outcome::Applied { revision, .. } => {
                if !resource_version_unset(&options) {
                    options = with_resource_version(&options, &json!(revision.to_string()));
                }
                break;
            }
            Outcome::Rejected { current: None, .. } => {
                return Err(ApiError::not_found(target.res, name));
            }
            Outcome::Rejected { .. } => continue,
        }
    }
    let body = serde_json::to_vec(&options).expect("JSON serializes");
    crate::api::delete(state, target, name, &body, false).await?;
    Ok(())
}

fn check_preconditions(
    target: &Target,
    name: &str,
    options: &Value,
    pod: &Value,
    kv: &KeyValue,
) -> Result<(), ApiError> {
    if let Some(uid) = options
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        && Some(uid) != pod.pointer("/metadata/uid").and_then(Value::as_str)
    {
        return Err(ApiError::conflict(target.res, name));
    }
    if let Some(rv) = options
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        && rv != kv.mod_revision.to_string()
    {
        return Err(ApiError::conflict(target.res, name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2025-03-01T12:00:00Z";

    fn pdb(status: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "generation": 2},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
            "status": status})
    }

    /// The disruptions left after a decrement, or the refusal: (code, message, cause).
    type Expected = Result<i64, (u16, &'static str, Option<&'static str>)>;

    #[test]
    fn decrements_and_refuses() {
        // (status, Ok(disruptionsAllowed after) or Err((code, message, cause)))
        let cases: Vec<(Value, Expected)> = vec![
            (
                json!({"observedGeneration": 2, "disruptionsAllowed": 2, "currentHealthy": 3, "desiredHealthy": 1}),
                Ok(1),
            ),
            (
                json!({"observedGeneration": 2, "disruptionsAllowed": 0, "currentHealthy": 2, "desiredHealthy": 2}),
                Err((
                    429,
                    TOO_MANY,
                    Some("The disruption budget web needs 2 healthy pods and has 2 currently"),
                )),
            ),
            (
                json!({"observedGeneration": 1, "disruptionsAllowed": 3}),
                Err((
                    429,
                    TOO_MANY,
                    Some("The disruption budget web is still being processed by the server."),
                )),
            ),
            (
                json!({}),
                Err((
                    429,
                    TOO_MANY,
                    Some("The disruption budget web is still being processed by the server."),
                )),
            ),
            (
                json!({"observedGeneration": 2, "disruptionsAllowed": -1}),
                Err((
                    403,
                    "poddisruptionbudget.policy \"web\" is forbidden: pdb disruptions allowed is negative",
                    None,
                )),
            ),
        ];
        for (status, want) in cases {
            let got = check_and_decrement(&pdb(status.clone()), "web-1", NOW);
            match (got, want) {
                (Ok(s), Ok(allowed)) => {
                    assert_eq!(s["disruptionsAllowed"], json!(allowed), "{status}");
                    assert_eq!(s["disruptedPods"], json!({"web-1": NOW}), "{status}");
                }
                (Err(e), Err((code, message, cause))) => {
                    assert_eq!((e.code, e.message.as_str()), (code, message), "{status}");
                    let s = e.to_status();
                    if let Some(cause) = cause {
                        assert_eq!(s["reason"], "TooManyRequests");
                        assert_eq!(
                            s["details"]["causes"],
                            json!([{"reason": "DisruptionBudget", "message": cause}])
                        );
                    }
                }
                (got, want) => panic!("{status}: got {got:?}, want {want:?}"),
            }
        }
        // Retry-After only when the server asks for a later retry.
        let busy = check_and_decrement(&pdb(json!({})), "p", NOW).unwrap_err();
        assert_eq!(busy.to_status()["details"]["retryAfterSeconds"], 10);
        let none = check_and_decrement(
            &pdb(json!({"observedGeneration": 2, "disruptionsAllowed": 0})),
            "p",
            NOW,
        )
        .unwrap_err();
        assert!(
            none.to_status()["details"]
                .get("retryAfterSeconds")
                .is_none()
        );
    }

    #[test]
    fn the_last_disruption_flips_the_condition() {
        let status = json!({"observedGeneration": 2, "disruptionsAllowed": 1, "currentHealthy": 3,
            "desiredHealthy": 2, "disruptedPods": {"old": "2025-03-01T11:59:00Z"},
            "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods",
                "message": "", "observedGeneration": 2, "lastTransitionTime": "2025-03-01T10:00:00Z"}]});
        let s = check_and_decrement(&pdb(status), "web-1", NOW).unwrap();
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(
            s["conditions"],
            json!([{"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
                "message": "", "observedGeneration": 2, "lastTransitionTime": NOW}])
        );
        assert_eq!(
            s["disruptedPods"],
            json!({"old": "2025-03-01T11:59:00Z", "web-1": NOW})
        );
    }

    #[test]
    fn selectors_and_pod_states() {
        let web: BTreeMap<String, String> = [("app".to_owned(), "web".to_owned())].into();
        let with = |sel: Value| json!({"spec": {"selector": sel}});
        assert!(selects(&with(json!({"matchLabels": {"app": "web"}})), &web));
        assert!(!selects(&with(json!({"matchLabels": {"app": "db"}})), &web));
        assert!(selects(&with(json!({})), &web), "empty selects everything");
        assert!(!selects(&json!({"spec": {}}), &web), "none selects nothing");
        assert!(selects(
            &with(
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]})
            ),
            &web
        ));
        let pod = |phase: &str, extra: Value| {
            let mut p = json!({"metadata": {"name": "p"}, "status": {"phase": phase}});
            if let Some(t) = extra.get("deletionTimestamp") {
                p["metadata"]["deletionTimestamp"] = t.clone();
            }
            p
        };
        assert!(can_ignore_budget(&pod("Pending", json!({}))));
        assert!(can_ignore_budget(&pod("Succeeded", json!({}))));
        assert!(!can_ignore_budget(&pod("Running", json!({}))));
        let gone = pod("Running", json!({"deletionTimestamp": NOW}));
        assert!(can_ignore_budget(&gone));
        assert!(!should_enforce_version(&gone));
        assert!(should_enforce_version(&pod("Pending", json!({}))));
        assert!(!should_enforce_version(&pod("Failed", json!({}))));
    }
}
