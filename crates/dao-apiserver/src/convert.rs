//! Conversion between the versions of a resource served in more than one: stored objects are
//! kept in one version (the storage version, as upstream's etcd encoding is) and a request in
//! another version reads and writes a converted view. Today that is HorizontalPodAutoscaler,
//! stored as autoscaling/v2 and also served as autoscaling/v1, with upstream's conversion: the
//! v1 CPU target is the v2 CPU utilization metric, and what v1 has no field for (other metrics,
//! their current values, scaling behavior, conditions) travels in the
//! `autoscaling.alpha.kubernetes.io/*` annotations.

use serde_json::{Map, Value, json};

use crate::registry::Resource;

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";

/// Whether `res` is served in more than one version, so that what is stored may need
/// converting for it (objects stored before there was a storage version may be in any of
/// them).
pub fn needed(res: &Resource) -> bool {
    res.group == "autoscaling" && res.kind == "HorizontalPodAutoscaler"
}

/// A stored object as `res`'s version sees it (unchanged when it is in that version already).
pub fn to_view(res: &Resource, obj: &mut Value) {
    if !needed(res) {
        return;
    }
    match (res.version, obj["apiVersion"].as_str()) {
        ("v1", Some("autoscaling/v2")) => hpa_v2_to_v1(obj),
        ("v2", Some("autoscaling/v1")) => hpa_v1_to_v2(obj),
        _ => {}
    }
}

/// An object written in `res`'s version, in the storage version (autoscaling/v2).
pub fn to_storage(res: &Resource, obj: &mut Value) {
    if needed(res) && obj["apiVersion"] == "autoscaling/v1" {
        hpa_v1_to_v2(obj);
    }
}

fn take(obj: &mut Value, key: &str) -> Option<Value> {
    obj.as_object_mut()?.remove(key).filter(|v| !v.is_null())
}

/// The elements of an array (none for anything else), without copying them.
fn elements(v: Option<Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

fn is_cpu_utilization(m: &Value) -> bool {
    m["type"] == "Resource"
        && m.pointer("/resource/name") == Some(&json!("cpu"))
        && m.pointer("/resource/target/averageUtilization")
            .is_some_and(|u| !u.is_null())
}

/// Copy `from[a]` to `to[b]` when present.
fn carry(from: &Value, a: &str, to: &mut Map<String, Value>, b: &str) {
    if let Some(v) = from.get(a).filter(|v| !v.is_null()) {
        to.insert(b.to_owned(), v.clone());
    }
}

/// A v2 metric source in v1's (the old v2beta1) shape.
fn metric_spec_to_v1(m: &Value) -> Value {
    let mut out = Map::new();
    carry(m, "type", &mut out, "type");
    let one = |src: &Value, fields: &[(&str, &str)]| {
        let mut o = Map::new();
        for (from, to) in fields {
            let v = src.pointer(from).filter(|v| !v.is_null());
            if let Some(v) = v {
                o.insert((*to).to_owned(), v.clone());
            }
        }
        Value::Object(o)
    };
    if let Some(s) = m.get("object").filter(|v| v.is_object()) {
        out.insert(
            "object".into(),
            one(
                s,
                &[
                    ("/describedObject", "target"),
                    ("/metric/name", "metricName"),
                    ("/target/value", "targetValue"),
                    ("/metric/selector", "selector"),
                    ("/target/averageValue", "averageValue"),
                ],
            ),
        );
    }
    if let Some(s) = m.get("pods").filter(|v| v.is_object()) {
        out.insert(
            "pods".into(),
            one(
                s,
                &[
                    ("/metric/name", "metricName"),
                    ("/target/averageValue", "targetAverageValue"),
                    ("/metric/selector", "selector"),
                ],
            ),
        );
    }
    for key in ["resource", "containerResource"] {
        if let Some(s) = m.get(key).filter(|v| v.is_object()) {
            out.insert(
                key.into(),
                one(
                    s,
                    &[
                        ("/name", "name"),
                        ("/container", "container"),
                        ("/target/averageUtilization", "targetAverageUtilization"),
                        ("/target/averageValue", "targetAverageValue"),
                    ],
                ),
            );
        }
    }
    if let Some(s) = m.get("external").filter(|v| v.is_object()) {
        out.insert(
            "external".into(),
            one(
                s,
                &[
                    ("/metric/name", "metricName"),
                    ("/metric/selector", "metricSelector"),
                    ("/target/value", "targetValue"),
                    ("/target/averageValue", "targetAverageValue"),
                ],
            ),
        );
    }
    Value::Object(out)
}

/// A v1 (v2beta1-shaped) metric source in v2's shape; the target type follows from which
/// target is set, as upstream's conversion decides it.
fn metric_spec_to_v2(m: &Value) -> Value {
    let mut out = Map::new();
    carry(m, "type", &mut out, "type");
    let metric = |s: &Value, selector: &str| {
        let mut id = Map::new();
        carry(s, "metricName", &mut id, "name");
        carry(s, selector, &mut id, "selector");
        Value::Object(id)
    };
    let target = |s: &Value, value: &str, average: &str, utilization: Option<&str>| {
        let mut t = Map::new();
        if let Some(u) = utilization.and_then(|u| s.get(u)).filter(|v| !v.is_null()) {
            t.insert("type".into(), json!("Utilization"));
            t.insert("averageUtilization".into(), u.clone());
        } else if let Some(v) = s.get(value).filter(|v| !v.is_null()) {
            t.insert("type".into(), json!("Value"));
            t.insert("value".into(), v.clone());
        } else if let Some(v) = s.get(average).filter(|v| !v.is_null()) {
            t.insert("type".into(), json!("AverageValue"));
            t.insert("averageValue".into(), v.clone());
        }
        Value::Object(t)
    };
    if let Some(s) = m.get("object").filter(|v| v.is_object()) {
        let mut o = Map::new();
        carry(s, "target", &mut o, "describedObject");
        o.insert("metric".into(), metric(s, "selector"));
        o.insert(
            "target".into(),
            target(s, "targetValue", "averageValue", None),
        );
        out.insert("object".into(), Value::Object(o));
    }
    if let Some(s) = m.get("pods").filter(|v| v.is_object()) {
        let mut o = Map::new();
        o.insert("metric".into(), metric(s, "selector"));
        o.insert("target".into(), target(s, "", "targetAverageValue", None));
        out.insert("pods".into(), Value::Object(o));
    }
    for key in ["resource", "containerResource"] {
        if let Some(s) = m.get(key).filter(|v| v.is_object()) {
            let mut o = Map::new();
            carry(s, "name", &mut o, "name");
            carry(s, "container", &mut o, "container");
            o.insert(
                "target".into(),
                target(
                    s,
                    "",
                    "targetAverageValue",
                    Some("targetAverageUtilization"),
                ),
            );
            out.insert(key.into(), Value::Object(o));
        }
    }
    if let Some(s) = m.get("external").filter(|v| v.is_object()) {
        let mut o = Map::new();
        o.insert("metric".into(), metric(s, "metricSelector"));
        o.insert(
            "target".into(),
            target(s, "targetValue", "targetAverageValue", None),
        );
        out.insert("external".into(), Value::Object(o));
    }
    Value::Object(out)
}

fn annotations(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = json!({});
    }
    obj["metadata"]["annotations"]
        .as_object_mut()
        .expect("an object")
}

fn annotate(obj: &mut Value, key: &str, value: &Value) {
    let text = serde_json::to_string(value).expect("a JSON value serializes");
    annotations(obj).insert(key.to_owned(), Value::String(text));
}

/// The annotation `key` parsed as JSON and removed; `None` (and the annotation kept, as
/// upstream keeps one it cannot read) when it is missing or not JSON.
fn take_annotation(obj: &mut Value, key: &str) -> Option<Value> {
    let anns = obj.pointer_mut("/metadata/annotations")?.as_object_mut()?;
    let parsed = serde_json::from_str(anns.get(key)?.as_str()?).ok()?;
    anns.remove(key);
    if anns.is_empty()
        && let Some(meta) = obj["metadata"].as_object_mut()
    {
        meta.remove("annotations");
    }
    Some(parsed)
}

fn hpa_v2_to_v1(obj: &mut Value) {
    obj["apiVersion"] = json!("autoscaling/v1");
    let mut spec = take(obj, "spec").unwrap_or_else(|| json!({}));
    let mut status = take(obj, "status");
    let metrics = elements(take(&mut spec, "metrics"));
    if let Some(cpu) = metrics.iter().find(|m| is_cpu_utilization(m)) {
        spec["targetCPUUtilizationPercentage"] =
            cpu["resource"]["target"]["averageUtilization"].clone();
    }
    let others: Vec<Value> = metrics
        .iter()
        .filter(|m| !is_cpu_utilization(m))
        .map(metric_spec_to_v1)
        .collect();
    if !others.is_empty() {
        annotate(obj, METRICS, &Value::Array(others));
    }
    if let Some(behavior) = take(&mut spec, "behavior") {
        annotate(obj, BEHAVIOR, &behavior);
    }
    obj["spec"] = spec;
    if let Some(status) = status.as_mut() {
        let current = elements(take(status, "currentMetrics"));
        if let Some(u) = current
            .iter()
            .find(|m| m["type"] == "Resource" && m.pointer("/resource/name") == Some(&json!("cpu")))
            .and_then(|m| m.pointer("/resource/current/averageUtilization"))
            .filter(|u| !u.is_null())
        {
            status["currentCPUUtilizationPercentage"] = u.clone();
        }
        let conditions = take(status, "conditions");
        if !current.is_empty() {
            annotate(obj, CURRENT_METRICS, &Value::Array(current));
        }
        if let Some(c) = conditions.filter(|c| c.as_array().is_some_and(|a| !a.is_empty())) {
            annotate(obj, CONDITIONS, &c);
        }
    }
    if let Some(status) = status {
        obj["status"] = status;
    }
}

fn hpa_v1_to_v2(obj: &mut Value) {
    obj["apiVersion"] = json!("autoscaling/v2");
    let mut spec = take(obj, "spec").unwrap_or_else(|| json!({}));
    let cpu = take(&mut spec, "targetCPUUtilizationPercentage");
    let mut metrics: Vec<Value> = elements(take_annotation(obj, METRICS))
        .iter()
        .map(metric_spec_to_v2)
        .collect();
    if let Some(u) = cpu {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": u}}}));
    }
    if !metrics.is_empty() {
        spec["metrics"] = Value::Array(metrics);
    }
    if let Some(behavior) = take_annotation(obj, BEHAVIOR) {
        spec["behavior"] = behavior;
    }
    obj["spec"] = spec;
    let current = take_annotation(obj, CURRENT_METRICS);
    let conditions = take_annotation(obj, CONDITIONS);
    if let Some(mut status) = take(obj, "status") {
        let cpu = take(&mut status, "currentCPUUtilizationPercentage");
        match (current, cpu) {
            (Some(current), _) => status["currentMetrics"] = current,
            (None, Some(u)) => {
                status["currentMetrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": u}}}]);
            }
            (None, None) => {}
        }
        if let Some(c) = conditions {
            status["conditions"] = c;
        }
        obj["status"] = status;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1() -> &'static Resource {
        crate::registry::find("autoscaling", "v1", "horizontalpodautoscalers").unwrap()
    }

    #[test]
    fn cpu_targets_are_the_cpu_utilization_metric() {
        let mut obj = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1,
                "maxReplicas": 4, "targetCPUUtilizationPercentage": 70},
            "status": {"currentReplicas": 2, "desiredReplicas": 2, "currentCPUUtilizationPercentage": 55}});
        let written = obj.clone();
        to_storage(v1(), &mut obj);
        assert_eq!(
            obj,
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "h"},
                "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1,
                    "maxReplicas": 4, "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70}}}]},
                "status": {"currentReplicas": 2, "desiredReplicas": 2, "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 55}}}]}})
        );
        to_view(v1(), &mut obj);
        // Back in v1, the current metrics v1 cannot hold whole ride along in their annotation.
        let mut want = written;
        want["metadata"]["annotations"] = json!({CURRENT_METRICS:
            r#"[{"resource":{"current":{"averageUtilization":55},"name":"cpu"},"type":"Resource"}]"#});
        assert_eq!(obj, want);
    }

    #[test]
    fn what_v1_cannot_hold_rides_in_annotations_and_comes_back() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h", "annotations": {"team": "a"}},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4,
                "metrics": [
                    {"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "30"}}},
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
            "status": {"conditions": [{"type": "AbleToScale", "status": "True"}]}});
        let mut view = v2.clone();
        to_view(v1(), &mut view);
        assert_eq!(view["spec"]["targetCPUUtilizationPercentage"], 60);
        assert!(view["spec"].get("metrics").is_none());
        let anns = &view["metadata"]["annotations"];
        assert_eq!(anns["team"], "a");
        let metrics: Value = serde_json::from_str(anns[METRICS].as_str().unwrap()).unwrap();
        assert_eq!(
            metrics,
            json!([{"type": "Pods", "pods": {"metricName": "rps", "targetAverageValue": "1k"}},
                {"type": "External", "external": {"metricName": "queue", "targetValue": "30"}}])
        );
        assert!(anns[BEHAVIOR].is_string() && anns[CONDITIONS].is_string());
        assert!(view["status"].get("conditions").is_none());
        // And back: the same v2 object, the other metrics first (as upstream orders them).
        let mut back = view;
        to_storage(v1(), &mut back);
        let mut want = v2;
        want["spec"]["metrics"] = json!([
            want["spec"]["metrics"][0],
            want["spec"]["metrics"][2],
            want["spec"]["metrics"][1]
        ]);
        assert_eq!(back, want);
    }

    #[test]
    fn each_version_reads_the_other() {
        let v2 = crate::registry::find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        let pods = crate::registry::find("", "v1", "pods").unwrap();
        assert!(needed(v1()) && needed(v2) && !needed(pods));
        let stored_v2 = json!({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 1}});
        let mut obj = stored_v2.clone();
        to_view(v2, &mut obj);
        assert_eq!(obj, stored_v2);
        // An object stored in v1 (before v2 was the storage version) reads as v2.
        let mut old = json!({"apiVersion": "autoscaling/v1", "spec": {"maxReplicas": 1,
            "targetCPUUtilizationPercentage": 50}});
        to_view(v2, &mut old);
        assert_eq!(old["apiVersion"], "autoscaling/v2");
        assert_eq!(
            old["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            50
        );
    }
}
