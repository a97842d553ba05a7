//! Upstream's defaulting for the workload kinds: the fields the server fills in when a
//! client leaves them out (a Deployment's strategy and revisionHistoryLimit, a container's
//! imagePullPolicy, a pod's restartPolicy, an RBAC binding's API groups, ...). Applied on create and on update, so that an
//! update that drops a defaulted field gets it back, as upstream does.

use serde_json::{Value, json};

use crate::registry::Resource;

/// Set `obj[key]` to `value` when it is missing or null.
fn default_field(obj: &mut Value, key: &str, value: Value) {
    if !obj.is_object() {
        return;
    }
    if obj.get(key).is_none_or(Value::is_null) {
        obj[key] = value;
    }
}

/// A workload's update strategy: type RollingUpdate when unset or empty, and for that type each
/// missing `rollingUpdate` parameter from `rolling` (so `strategy: {}` and a strategy naming
/// only maxSurge are completed as upstream completes them).
fn rolling_strategy(spec: &mut Value, key: &str, rolling: Value) {
    if !spec.is_object() {
        return;
    }
    default_field(spec, key, json!({}));
    let strategy = &mut spec[key];
    if !strategy.is_object() {
        return;
    }
    if strategy
        .get("type")
        .is_none_or(|t| t.is_null() || *t == json!(""))
    {
        strategy["type"] = json!("RollingUpdate");
    }
    if strategy["type"] != "RollingUpdate" {
        return;
    }
    default_field(strategy, "rollingUpdate", json!({}));
    if let Some(params) = rolling.as_object() {
        for (k, v) in params {
            default_field(&mut strategy["rollingUpdate"], k, v.clone());
        }
    }
}

/// The image's tag, if any (a digest counts as pinned).
fn image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // The tag is after the last ':' that follows the last '/'.
    let name = image.rsplit('/').next().unwrap_or(image);
    match name.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn container(c: &mut Value) {
    if let Some(image) = c.get("image").and_then(Value::as_str) {
        let policy = image_pull_policy(image);
        default_field(c, "imagePullPolicy", json!(policy));
    }
    default_field(c, "terminationMessagePath", json!("/dev/termination-log"));
    default_field(c, "terminationMessagePolicy", json!("File"));
    default_field(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            default_field(p, "protocol", json!("TCP"));
        }
    }
}

/// Defaults of a PodSpec.
pub fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    default_field(spec, "restartPolicy", json!("Always"));
    default_field(spec, "terminationGracePeriodSeconds", json!(30));
    default_field(spec, "dnsPolicy", json!("ClusterFirst"));
    default_field(spec, "securityContext", json!({}));
    default_field(spec, "schedulerName", json!("default-scheduler"));
    service_account_alias(spec);
    for list in ["initContainers", "containers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(container);
        }
    }
    // A volume that names no source is an emptyDir.
    if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in volumes {
            if let Some(m) = v.as_object_mut()
                && m.keys().all(|k| k == "name")
            {
                m.insert("emptyDir".into(), json!({}));
            }
        }
    }
}

/// `serviceAccount`, the deprecated name of `serviceAccountName`: read when the new field is
/// empty, and always written back equal to it (upstream's v1 conversion of a PodSpec).
fn service_account_alias(spec: &mut Value) {
    let Some(spec) = spec.as_object_mut() else {
        return;
    };
    let named = |k: &str| {
        spec.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    match named("serviceAccountName").or_else(|| named("serviceAccount")) {
        Some(account) => {
            spec.insert("serviceAccountName".into(), json!(account));
            spec.insert("serviceAccount".into(), json!(account));
        }
        None => {
            spec.remove("serviceAccountName");
            spec.remove("serviceAccount");
        }
    }
}

/// An autoscaler's defaults: at least one replica; in autoscaling/v2 a CPU utilization target
/// of 80% when no metric is given, and upstream's scaling rules for whatever a given
/// `behavior` leaves out (scale-down's stabilization window is left to the controller).
fn autoscaler(version: &str, spec: &mut Value) {
    default_field(spec, "minReplicas", json!(1));
    if version != "v2" || !spec.is_object() {
        return;
    }
    if spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(|m| m.is_empty())
    {
        spec["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}}]);
    }
    let Some(behavior) = spec.get_mut("behavior").filter(|b| b.is_object()) else {
        return;
    };
    let up = json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15}]});
    let down = json!({"selectPolicy": "Max", "policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 15}]});
    for (rules, defaults) in [("scaleUp", up), ("scaleDown", down)] {
        if !behavior.get(rules).is_some_and(Value::is_object) {
            behavior[rules] = defaults;
            continue;
        }
        if let Value::Object(d) = defaults {
            for (k, v) in d {
                default_field(&mut behavior[rules], &k, v);
            }
        }
    }
}

/// Apply the defaults of `res`'s kind to `obj`.
pub fn apply(res: &Resource, obj: &mut Value) {
    let template_spec = |obj: &mut Value| {
        if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
            pod_spec(spec);
        }
    };
    match (res.group, res.kind) {
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
                default_field(spec, "enableServiceLinks", json!(true));
            }
        }
        ("", "PodTemplate") => {
            if let Some(spec) = obj.pointer_mut("/template/spec") {
                pod_spec(spec);
            }
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            if let Some(spec) = obj.get_mut("spec") {
                autoscaler(res.version, spec);
            }
        }
        ("apps", "Deployment") => {
            let spec = &mut obj["spec"];
            default_field(spec, "replicas", json!(1));
            rolling_strategy(
                spec,
                "strategy",
                json!({"maxUnavailable": "25%", "maxSurge": "25%"}),
            );
            default_field(spec, "revisionHistoryLimit", json!(10));
            default_field(spec, "progressDeadlineSeconds", json!(600));
            template_spec(obj);
        }
        ("apps", "ReplicaSet") | ("", "ReplicationController") => {
            default_field(&mut obj["spec"], "replicas", json!(1));
            template_spec(obj);
        }
        ("apps", "StatefulSet") => {
            let spec = &mut obj["spec"];
            default_field(spec, "replicas", json!(1));
            default_field(spec, "podManagementPolicy", json!("OrderedReady"));
            rolling_strategy(spec, "updateStrategy", json!({"partition": 0}));
            default_field(spec, "revisionHistoryLimit", json!(10));
            default_field(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            template_spec(obj);
        }
        ("apps", "DaemonSet") => {
            let spec = &mut obj["spec"];
            rolling_strategy(
                spec,
                "updateStrategy",
                json!({"maxUnavailable": 1, "maxSurge": 0}),
            );
            default_field(spec, "revisionHistoryLimit", json!(10));
            template_spec(obj);
        }
        ("batch", "Job") => {
            job_spec(&mut obj["spec"]);
        }
        ("storage.k8s.io", "StorageClass") => {
            default_field(obj, "reclaimPolicy", json!("Delete"));
            default_field(obj, "volumeBindingMode", json!("Immediate"));
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            default_field(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            // The roleRef's group, and each user's and group's, is RBAC's unless given.
            if obj["roleRef"].is_object() {
                default_field(&mut obj["roleRef"], "apiGroup", json!(RBAC_GROUP));
            }
            for subject in obj
                .get_mut("subjects")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                let empty = subject
                    .get("apiGroup")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty);
                if empty && matches!(subject["kind"].as_str(), Some("User" | "Group")) {
                    subject["apiGroup"] = json!(RBAC_GROUP);
                }
            }
        }
        ("batch", "CronJob") => {
            let spec = &mut obj["spec"];
            default_field(spec, "concurrencyPolicy", json!("Allow"));
            default_field(spec, "suspend", json!(false));
            default_field(spec, "successfulJobsHistoryLimit", json!(3));
            default_field(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(job) = obj.pointer_mut("/spec/jobTemplate/spec") {
                job_spec(job);
            }
        }
        _ => {}
    }
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// What upstream's create strategies and default admission plugins add to a new object, once
/// its uid is known: a Job's generated selector and pod labels; a Pod's QoS class, priority and
/// the not-ready/unreachable tolerations of 300 s (DefaultTolerationSeconds).
pub fn on_create(res: &Resource, obj: &mut Value) {
    match (res.group, res.kind) {
        ("batch", "Job") => job_selector(obj),
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
                default_tolerations(spec);
                default_field(spec, "priority", json!(0));
                // A new pod's status is the server's: Pending, with its QoS class.
                let qos = qos_class(spec);
                obj["status"] = json!({"phase": "Pending", "qosClass": qos});
            }
        }
        _ => {}
    }
}

/// What upstream's admission plugins do to a changed pod (the main resource; subresources keep
/// their own rules): Priority keeps the priority set at creation, DefaultTolerationSeconds adds
/// the not-ready/unreachable tolerations again when the update left them out.
pub fn on_update(res: &Resource, old: &Value, obj: &mut Value) {
    if (res.group, res.kind) != ("", "Pod") {
        return;
    }
    crate::pods::keep_priority(old, obj);
    if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
        default_tolerations(spec);
    }
}

fn job_selector(obj: &mut Value) {
    let uid = obj["metadata"]["uid"].clone();
    let name = obj["metadata"]["name"].clone();
    let spec = &mut obj["spec"];
    if !spec.is_object() || spec.get("manualSelector") == Some(&json!(true)) {
        return;
    }
    spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    let labels = &mut spec["template"]["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels[k] = v.clone();
    }
}

fn default_tolerations(spec: &mut Value) {
    if !spec["tolerations"].is_array() {
        spec["tolerations"] = json!([]);
    }
    let tolerations = spec["tolerations"].as_array_mut().expect("array");
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = tolerations.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let tkey = t.get("key").and_then(Value::as_str).unwrap_or("");
            let exists = t.get("operator").and_then(Value::as_str) == Some("Exists");
            (tkey == key || (tkey.is_empty() && exists))
                && (effect.is_empty() || effect == "NoExecute")
        });
        if !tolerated {
            tolerations.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

/// Upstream's QoS classes: Guaranteed when every container limits cpu and memory with equal
/// requests, BestEffort when no container asks for either, Burstable otherwise.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|f| spec.get(*f).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let requests = c.pointer("/resources/requests");
        let limits = c.pointer("/resources/limits");
        for r in ["cpu", "memory"] {
            let req = requests.and_then(|v| v.get(r));
            let lim = limits.and_then(|v| v.get(r));
            if req.is_some() || lim.is_some() {
                any = true;
            }
            match (req, lim) {
                (_, None) => guaranteed = false,
                (Some(q), Some(l)) if q != l => guaranteed = false,
                _ => {}
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn job_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    // Both unset: one pod, once. Parallelism alone: a work queue, completions stay unset.
    let unset = |spec: &Value, f: &str| spec.get(f).is_none_or(Value::is_null);
    if unset(spec, "completions") && unset(spec, "parallelism") {
        spec["completions"] = json!(1);
    }
    default_field(spec, "parallelism", json!(1));
    default_field(spec, "backoffLimit", json!(6));
    default_field(spec, "completionMode", json!("NonIndexed"));
    default_field(spec, "suspend", json!(false));
    default_field(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    if let Some(pod) = spec.pointer_mut("/template/spec") {
        pod_spec(pod);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    #[test]
    fn service_account_is_the_alias_of_service_account_name() {
        let alias = |spec: Value| {
            let mut spec = spec;
            service_account_alias(&mut spec);
            spec
        };
        let both = |name: &str| json!({"serviceAccountName": name, "serviceAccount": name});
        assert_eq!(alias(json!({"serviceAccount": "old"})), both("old"));
        assert_eq!(alias(json!({"serviceAccountName": "new"})), both("new"));
        // The new field wins.
        assert_eq!(
            alias(json!({"serviceAccountName": "new", "serviceAccount": "old"})),
            both("new")
        );
        assert_eq!(
            alias(json!({"serviceAccountName": "", "serviceAccount": ""})),
            json!({})
        );
    }

    #[test]
    fn pull_policies() {
        for (image, policy) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("registry:5000/app", "Always"),
            ("registry:5000/app:v2", "IfNotPresent"),
            ("app@sha256:abc", "IfNotPresent"),
        ] {
            assert_eq!(image_pull_policy(image), policy, "{image}");
        }
    }

    #[test]
    fn qos_classes() {
        let c = |res: Value| json!({"containers": [{"name": "a", "resources": res}]});
        assert_eq!(qos_class(&c(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&c(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&c(
                json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&c(json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
    }

    #[test]
    fn pods_get_default_tolerations_once() {
        let res = registry::find("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"uid": "u"}, "spec": {"containers": [{"name": "a"}], "tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}});
        on_create(res, &mut pod);
        let t = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["tolerationSeconds"], 5);
        assert_eq!(t[1]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
    }

    #[test]
    fn job_completions_default_only_without_parallelism() {
        let res = registry::find("batch", "v1", "jobs").unwrap();
        let mut job = json!({"spec": {"template": {"spec": {}}}});
        apply(res, &mut job);
        assert_eq!(
            (&job["spec"]["completions"], &job["spec"]["parallelism"]),
            (&json!(1), &json!(1))
        );
        let mut queue = json!({"spec": {"parallelism": 3, "template": {"spec": {}}}});
        apply(res, &mut queue);
        assert!(queue["spec"].get("completions").is_none());
        assert_eq!(queue["spec"]["parallelism"], 3);
    }

    #[test]
    fn jobs_get_a_generated_selector() {
        let res = registry::find("batch", "v1", "jobs").unwrap();
        let mut job =
            json!({"metadata": {"uid": "u1", "name": "pi"}, "spec": {"template": {"spec": {}}}});
        on_create(res, &mut job);
        assert_eq!(
            job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u1"
        );
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"]["job-name"],
            "pi"
        );
    }

    #[test]
    fn deployment_defaults_keep_what_was_given() {
        let res = registry::find("apps", "v1", "deployments").unwrap();
        let mut d = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}]}]}}}});
        apply(res, &mut d);
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(
            (&pod["restartPolicy"], &pod["dnsPolicy"]),
            (&json!("Always"), &json!("ClusterFirst"))
        );
        let c = &pod["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    }
}
