//! Server-side printing: `Table` responses with upstream's columns, for `kubectl get`.
//!
//! Like upstream's server, every row carries every column's cell (upstream prints with its
//! wide option on); kubectl hides the priority 1 columns unless asked for `-o wide`.

use std::collections::BTreeSet;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::registry::Resource;
use crate::selector::format_label_selector;
use crate::status::ApiError;

struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    description: &'static str,
    priority: u8,
}

const fn col(
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    description: &'static str,
    priority: u8,
) -> Column {
    Column {
        name,
        kind,
        format,
        description,
        priority,
    }
}

/// A string column shown by default.
const fn text(name: &'static str, description: &'static str) -> Column {
    col(name, "string", "", description, 0)
}

/// An integer column shown by default.
const fn integer(name: &'static str, description: &'static str) -> Column {
    col(name, "integer", "", description, 0)
}

/// A boolean column shown by default.
const fn boolean(name: &'static str, description: &'static str) -> Column {
    col(name, "boolean", "", description, 0)
}

/// A string column shown only by `-o wide`.
const fn wide(name: &'static str, description: &'static str) -> Column {
    col(name, "string", "", description, 1)
}

const NAME_DESCRIPTION: &str = "The object's name, unique within its namespace.";
const NAME: Column = col("Name", "string", "name", NAME_DESCRIPTION, 0);
const AGE: Column = text("Age", "Time since the object was created.");
/// Upstream's default table for kinds without a printer.
const CREATED_AT: Column = col("Created At", "date", "", "When the object was created.", 0);
const CONTAINERS: Column = wide("Containers", "Names of the pod template's containers.");
const IMAGES: Column = wide("Images", "Images of the pod template's containers.");
const SELECTOR: Column = wide("Selector", "The label selector of the pods.");

fn columns(res: &Resource) -> Vec<Column> {
    columns_for(res.group, res.plural)
}

fn columns_for(group: &str, plural: &str) -> Vec<Column> {
    match (group, plural) {
        ("", "namespaces") => vec![
            NAME,
            text("Status", "The namespace's lifecycle phase."),
            AGE,
        ],
        ("", "configmaps") => vec![
            NAME,
            text("Data", "Number of keys in data and binaryData."),
            AGE,
        ],
        ("", "secrets") => vec![
            NAME,
            text("Type", "The secret's type."),
            text("Data", "Number of keys in data."),
            AGE,
        ],
        ("", "services") => vec![
            NAME,
            text("Type", "How the service is exposed."),
            text("Cluster-IP", "The service's cluster IP."),
            text("External-IP", "External addresses of the service."),
            text("Port(s)", "Ports the service exposes."),
            AGE,
            wide("Selector", "The label selector of the service's pods."),
        ],
        ("", "serviceaccounts") => vec![NAME, text("Secrets", "Number of secrets."), AGE],
        ("apps", "deployments") => vec![
            NAME,
            text("Ready", "Ready replicas over desired replicas."),
            text("Up-to-date", "Replicas with the current pod template."),
            text("Available", "Available replicas."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("", "pods") => vec![
            NAME,
            text("Ready", "Ready containers over all containers."),
            text(
                "Status",
                "The pod's state, summed up from its phase and its containers.",
            ),
            text(
                "Restarts",
                "Container restarts, and how long ago the last one happened.",
            ),
            AGE,
            wide("IP", "The pod's first IP address."),
            wide("Node", "The node the pod is bound to."),
            wide(
                "Nominated Node",
                "The node the scheduler nominated for the pod by preemption.",
            ),
            wide(
                "Readiness Gates",
                "Readiness gates whose condition is true, over all gates.",
            ),
        ],
        ("", "nodes") => vec![
            NAME,
            text(
                "Status",
                "The node's readiness, and whether scheduling is disabled.",
            ),
            text("Roles", "The node's roles, from its role labels."),
            AGE,
            text("Version", "The kubelet's version."),
            wide("Internal-IP", "The node's first internal IP address."),
            wide("External-IP", "The node's first external IP address."),
            wide("OS-Image", "The node's operating system image."),
            wide("Kernel-Version", "The node's kernel version."),
            wide(
                "Container-Runtime",
                "The node's container runtime and version.",
            ),
        ],
        ("apps", "replicasets") | ("", "replicationcontrollers") => vec![
            NAME,
            integer("Desired", "Desired replicas."),
            integer("Current", "Replicas created."),
            integer("Ready", "Ready replicas."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "statefulsets") => vec![
            NAME,
            text("Ready", "Ready replicas over desired replicas."),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        ("apps", "daemonsets") => vec![
            NAME,
            integer("Desired", "Nodes that should run the daemon pod."),
            integer("Current", "Nodes running the daemon pod."),
            integer("Ready", "Nodes whose daemon pod is ready."),
            integer("Up-to-date", "Nodes running the current pod template."),
            integer("Available", "Nodes whose daemon pod is available."),
            text("Node Selector", "The node selector of the pod template."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "controllerrevisions") => vec![
            NAME,
            text("Controller", "The object that controls the revision."),
            text("Revision", "The revision number."),
            AGE,
        ],
        ("", "podtemplates") => vec![
            NAME,
            text("Containers", "Names of the template's containers."),
            text("Images", "Images of the template's containers."),
            text("Pod Labels", "Labels of the template's pods."),
        ],
        ("batch", "jobs") => vec![
            NAME,
            text("Status", "The job's status."),
            text("Completions", "Succeeded pods over required completions."),
            text("Duration", "How long the job ran, or has been running."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("batch", "cronjobs") => vec![
            NAME,
            text("Schedule", "The cron schedule."),
            text("Timezone", "The time zone of the schedule."),
            boolean("Suspend", "Whether new runs are suspended."),
            integer("Active", "Running jobs."),
            text("Last Schedule", "Time since a job was last scheduled."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("", "events") | ("events.k8s.io", "events") => vec![
            text("Last Seen", "Time since the event was last seen."),
            text("Type", "The event's type: Normal or Warning."),
            text("Reason", "Why the event happened, in one word."),
            text("Object", "The object the event is about."),
            wide("Subobject", "The part of the object the event is about."),
            wide("Source", "The component that reported the event."),
            text("Message", "What happened, for humans."),
            wide("First Seen", "Time since the event was first seen."),
            wide("Count", "How many times the event happened."),
            col("Name", "string", "name", NAME_DESCRIPTION, 1),
        ],
        ("", "endpoints") => vec![
            NAME,
            text(
                "Endpoints",
                "The first addresses and ports of the endpoints.",
            ),
            AGE,
        ],
        ("discovery.k8s.io", "endpointslices") => vec![
            NAME,
            text("AddressType", "The type of the slice's addresses."),
            text("Ports", "The first ports of the slice."),
            text("Endpoints", "The first addresses of the slice."),
            AGE,
        ],
        ("coordination.k8s.io", "leases") => vec![
            NAME,
            text("Holder", "The identity of the lease's holder."),
            AGE,
        ],
        ("", "persistentvolumeclaims") => vec![
            NAME,
            text("Status", "The claim's phase."),
            text("Volume", "The volume bound to the claim."),
            text("Capacity", "The bound volume's storage capacity."),
            text("Access Modes", "The bound volume's access modes."),
            text("StorageClass", "The claim's storage class."),
            text(
                "VolumeAttributesClass",
                "The claim's volume attributes class.",
            ),
            AGE,
            wide(
                "VolumeMode",
                "Whether the claim wants a filesystem or a block device.",
            ),
        ],
        ("", "persistentvolumes") => vec![
            NAME,
            text("Capacity", "The volume's storage capacity."),
            text("Access Modes", "The volume's access modes."),
            text(
                "Reclaim Policy",
                "What happens to the volume when its claim goes.",
            ),
            text("Status", "The volume's phase."),
            text("Claim", "The claim bound to the volume."),
            text("StorageClass", "The volume's storage class."),
            text("VolumeAttributesClass", "The volume's attributes class."),
            text("Reason", "Why the volume is in its phase."),
            AGE,
            wide(
                "VolumeMode",
                "Whether the volume is a filesystem or a block device.",
            ),
        ],
        ("networking.k8s.io", "ingresses") => vec![
            NAME,
            text("Class", "The ingress class."),
            text("Hosts", "Hosts the ingress rules match."),
            text("Address", "Addresses of the ingress's load balancer."),
            text("Ports", "Ports the ingress serves."),
            AGE,
        ],
        ("networking.k8s.io", "ingressclasses") => vec![
            NAME,
            text("Controller", "The controller that implements the class."),
            text("Parameters", "The resource holding the class's parameters."),
            AGE,
        ],
        ("networking.k8s.io", "networkpolicies") => vec![
            NAME,
            text("Pod-Selector", "The pods the policy applies to."),
            AGE,
        ],
        ("", "limitranges")
        | ("rbac.authorization.k8s.io", "roles")
        | ("rbac.authorization.k8s.io", "clusterroles") => vec![NAME, CREATED_AT],
        ("rbac.authorization.k8s.io", "rolebindings")
        | ("rbac.authorization.k8s.io", "clusterrolebindings") => vec![
            NAME,
            text("Role", "The role granted."),
            AGE,
            wide("Users", "Users the role is granted to."),
            wide("Groups", "Groups the role is granted to."),
            wide(
                "ServiceAccounts",
                "Service accounts the role is granted to.",
            ),
        ],
        ("policy", "poddisruptionbudgets") => vec![
            NAME,
            text("Min Available", "Pods that must stay available."),
            text("Max Unavailable", "Pods that may be unavailable."),
            integer("Allowed Disruptions", "Pods that may be disrupted now."),
            AGE,
        ],
        ("autoscaling", "horizontalpodautoscalers") => vec![
            NAME,
            text("Reference", "The scaled object."),
            text("Targets", "Current metric values over their targets."),
            text("MinPods", "The lowest replica count."),
            text("MaxPods", "The highest replica count."),
            text("Replicas", "The current replica count."),
            AGE,
        ],
        ("scheduling.k8s.io", "priorityclasses") => vec![
            NAME,
            integer("Value", "The priority of pods of this class."),
            boolean(
                "Global-Default",
                "Whether pods without a class get this one.",
            ),
            AGE,
            text(
                "PreemptionPolicy",
                "Whether pods of this class preempt others.",
            ),
        ],
        ("storage.k8s.io", "storageclasses") => vec![
            NAME,
            text("Provisioner", "The volume provisioner."),
            text(
                "ReclaimPolicy",
                "What happens to provisioned volumes when released.",
            ),
            text(
                "VolumeBindingMode",
                "When volumes are bound and provisioned.",
            ),
            text("AllowVolumeExpansion", "Whether volumes may be expanded."),
            AGE,
        ],
        ("storage.k8s.io", "csinodes") => vec![
            NAME,
            integer("Drivers", "CSI drivers registered on the node."),
            AGE,
        ],
        ("storage.k8s.io", "csidrivers") => vec![
            NAME,
            boolean(
                "AttachRequired",
                "Whether volumes need an attach operation.",
            ),
            boolean(
                "PodInfoOnMount",
                "Whether pod information is passed on mount.",
            ),
            boolean(
                "StorageCapacity",
                "Whether the driver reports storage capacity.",
            ),
            text("TokenRequests", "Audiences of the tokens passed on mount."),
            boolean(
                "RequiresRepublish",
                "Whether volumes are mounted again periodically.",
            ),
            text("Modes", "The volume lifecycle modes supported."),
            AGE,
        ],
        ("storage.k8s.io", "volumeattachments") => vec![
            NAME,
            col(
                "Attacher",
                "string",
                "name",
                "The driver that attaches the volume.",
                0,
            ),
            text("PV", "The persistent volume attached."),
            text("Node", "The node the volume is attached to."),
            boolean("Attached", "Whether the volume is attached."),
            AGE,
        ],
        ("", "resourcequotas") => vec![
            NAME,
            text("Request", "Used over hard quota of requests."),
            text("Limit", "Used over hard quota of limits."),
            AGE,
        ],
        _ => vec![NAME, AGE],
    }
}

/// Upstream's short human durations: "45s", "3m12s", "5h", "12d", "2y".
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => match s % 60 {
            0 => format!("{m}m"),
            rem => format!("{m}m{rem}s"),
        },
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            rem => format!("{h}h{rem}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if h < 24 * 8 => match h % 24 {
            0 => format!("{d}d"),
            rem => format!("{d}d{rem}h"),
        },
        _ if d < 365 * 2 => format!("{d}d"),
        _ if d < 365 * 8 => match d % 365 {
            0 => format!("{}y", d / 365),
            rem => format!("{}y{rem}d", d / 365),
        },
        _ => format!("{}y", d / 365),
    }
}

// ---- field access ----

fn text_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn int_at(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn bool_at(v: &Value, ptr: &str) -> Option<bool> {
    v.pointer(ptr).and_then(Value::as_bool)
}

fn list_at<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// An object field that is present and not null.
fn object_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a Value> {
    v.pointer(ptr).filter(|v| v.is_object())
}

fn or_none(s: impl Into<String>) -> String {
    let s = s.into();
    if s.is_empty() { "<none>".into() } else { s }
}

fn unset_if_empty(s: &str) -> &str {
    if s.is_empty() { "<unset>" } else { s }
}

fn name(obj: &Value) -> Value {
    json!(text_at(obj, "/metadata/name"))
}

fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// The status of the first condition of type `ty` is "True".
fn condition_true(conditions: &[Value], ty: &str) -> bool {
    conditions
        .iter()
        .find(|c| text_at(c, "/type") == ty)
        .is_some_and(|c| text_at(c, "/status") == "True")
}

/// A resource quantity as written ("1Gi"), "0" when absent.
fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".into(),
    }
}

fn bool_word(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

// ---- time ----

fn time_at(v: &Value, ptr: &str) -> Option<DateTime<Utc>> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Time elapsed since `t`, "<unknown>" without a time.
fn since(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    t.map_or_else(
        || "<unknown>".into(),
        |t| human_duration((now - t).num_seconds()),
    )
}

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    json!(since(time_at(obj, "/metadata/creationTimestamp"), now))
}

// ---- shared cell formats ----

/// The names and the images of a pod spec's containers, each joined with commas.
fn container_cells(pod_spec: Option<&Value>) -> [Value; 2] {
    let containers = pod_spec.map_or(&[][..], |s| list_at(s, "/containers"));
    let join = |field: &str| {
        containers
            .iter()
            .map(|c| text_at(c, field))
            .collect::<Vec<_>>()
            .join(",")
    };
    [json!(join("/name")), json!(join("/image"))]
}

/// A label map as "a=b,c=d", "<none>" when empty (upstream's `labels.FormatLabels`).
fn labels_cell(map: Option<&Value>) -> String {
    let pairs: Vec<String> = map
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    or_none(pairs.join(","))
}

/// A LabelSelector, "<none>" when empty (upstream's `metav1.FormatLabelSelector`).
fn selector_cell(selector: Option<&Value>) -> String {
    or_none(format_label_selector(selector))
}

/// The first three items joined with commas, then " + N more..." for the rest.
fn first_three(items: &[String]) -> String {
    const MAX: usize = 3;
    let shown = items[..items.len().min(MAX)].join(",");
    if items.len() > MAX {
        format!("{shown} + {} more...", items.len() - MAX)
    } else {
        shown
    }
}

/// The addresses of load-balancer ingress points, sorted, unique, joined with commas.
fn load_balancer_addresses(obj: &Value) -> String {
    list_at(obj, "/status/loadBalancer/ingress")
        .iter()
        .map(|i| match text_at(i, "/ip") {
            "" => text_at(i, "/hostname"),
            ip => ip,
        })
        .filter(|a| !a.is_empty())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join(",")
}

/// Access modes as upstream abbreviates them, in upstream's fixed order.
fn access_modes(modes: &[Value]) -> String {
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.iter().any(|m| m.as_str() == Some(mode)))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The storage class of a volume or claim: the beta annotation wins over the field.
fn storage_class(obj: &Value) -> &str {
    obj.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .and_then(Value::as_str)
        .unwrap_or_else(|| text_at(obj, "/spec/storageClassName"))
}

/// An IntOrString field as text, "N/A" when absent.
fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".into(),
    }
}

// ---- rows ----

fn cells(res: &Resource, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    cells_for(res.group, res.plural, obj, now)
}

fn cells_for(group: &str, plural: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    match (group, plural) {
        ("", "namespaces") => vec![
            name(obj),
            json!(text_at(obj, "/status/phase")),
            age(obj, now),
        ],
        ("", "configmaps") => {
            let keys: usize = ["/data", "/binaryData"]
                .iter()
                .filter_map(|p| obj.pointer(p).and_then(Value::as_object))
                .map(serde_json::Map::len)
                .sum();
            vec![name(obj), json!(keys), age(obj, now)]
        }
        ("", "secrets") => vec![
            name(obj),
            json!(obj.get("type").and_then(Value::as_str).unwrap_or("Opaque")),
            json!(
                obj.get("data")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            ),
            age(obj, now),
        ],
        ("", "serviceaccounts") => vec![
            name(obj),
            json!(list_at(obj, "/secrets").len()),
            age(obj, now),
        ],
        ("", "services") => service_cells(obj, now),
        ("apps", "deployments") => deployment_cells(obj, now),
        ("", "pods") => pod_cells(obj, now),
        ("", "nodes") => node_cells(obj, now),
        ("apps", "replicasets") => replica_set_cells(obj, now, false),
        ("", "replicationcontrollers") => replica_set_cells(obj, now, true),
        ("apps", "statefulsets") => stateful_set_cells(obj, now),
        ("apps", "daemonsets") => daemon_set_cells(obj, now),
        ("apps", "controllerrevisions") => controller_revision_cells(obj, now),
        ("", "podtemplates") => {
            let [names, images] = container_cells(obj.pointer("/template/spec"));
            let labels = labels_cell(obj.pointer("/template/metadata/labels"));
            vec![name(obj), names, images, json!(labels)]
        }
        ("batch", "jobs") => job_cells(obj, now),
        ("batch", "cronjobs") => cron_job_cells(obj, now),
        ("", "events") => event_cells(obj, now, &CORE_EVENT),
        ("events.k8s.io", "events") => event_cells(obj, now, &EVENTS_EVENT),
        ("", "endpoints") => vec![name(obj), json!(endpoints(obj)), age(obj, now)],
        ("discovery.k8s.io", "endpointslices") => endpoint_slice_cells(obj, now),
        ("coordination.k8s.io", "leases") => vec![
            name(obj),
            json!(text_at(obj, "/spec/holderIdentity")),
            age(obj, now),
        ],
        ("", "persistentvolumeclaims") => claim_cells(obj, now),
        ("", "persistentvolumes") => volume_cells(obj, now),
        ("networking.k8s.io", "ingresses") => ingress_cells(obj, now),
        ("networking.k8s.io", "ingressclasses") => ingress_class_cells(obj, now),
        ("networking.k8s.io", "networkpolicies") => vec![
            name(obj),
            json!(selector_cell(obj.pointer("/spec/podSelector"))),
            age(obj, now),
        ],
        ("", "limitranges")
        | ("rbac.authorization.k8s.io", "roles")
        | ("rbac.authorization.k8s.io", "clusterroles") => {
            let created = time_at(obj, "/metadata/creationTimestamp")
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
            vec![name(obj), json!(created)]
        }
        ("rbac.authorization.k8s.io", "rolebindings")
        | ("rbac.authorization.k8s.io", "clusterrolebindings") => role_binding_cells(obj, now),
        ("policy", "poddisruptionbudgets") => vec![
            name(obj),
            json!(int_or_string(obj.pointer("/spec/minAvailable"))),
            json!(int_or_string(obj.pointer("/spec/maxUnavailable"))),
            json!(int_at(obj, "/status/disruptionsAllowed")),
            age(obj, now),
        ],
        ("autoscaling", "horizontalpodautoscalers") => autoscaler_cells(obj, now),
        ("scheduling.k8s.io", "priorityclasses") => vec![
            name(obj),
            json!(int_at(obj, "/value")),
            json!(bool_at(obj, "/globalDefault").unwrap_or(false)),
            age(obj, now),
            json!(text_at(obj, "/preemptionPolicy")),
        ],
        ("storage.k8s.io", "storageclasses") => storage_class_cells(obj, now),
        ("storage.k8s.io", "csinodes") => vec![
            name(obj),
            json!(list_at(obj, "/spec/drivers").len()),
            age(obj, now),
        ],
        ("storage.k8s.io", "csidrivers") => csi_driver_cells(obj, now),
        ("storage.k8s.io", "volumeattachments") => vec![
            name(obj),
            json!(text_at(obj, "/spec/attacher")),
            json!(text_at(obj, "/spec/source/persistentVolumeName")),
            json!(text_at(obj, "/spec/nodeName")),
            json!(bool_at(obj, "/status/attached").unwrap_or(false)),
            age(obj, now),
        ],
        ("", "resourcequotas") => resource_quota_cells(obj, now),
        _ => vec![name(obj), age(obj, now)],
    }
}

fn service_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let kind = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let cluster_ip = list_at(obj, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| text_at(obj, "/spec/clusterIP"));
    let external_ips: Vec<&str> = list_at(obj, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match kind {
        "ClusterIP" | "NodePort" => or_none(external_ips.join(",")),
        "LoadBalancer" => {
            let lb = load_balancer_addresses(obj);
            match (lb.is_empty(), external_ips.is_empty()) {
                (true, true) => "<pending>".into(),
                (false, true) => lb,
                (true, false) => external_ips.join(","),
                (false, false) => format!("{lb},{}", external_ips.join(",")),
            }
        }
        "ExternalName" => text_at(obj, "/spec/externalName").to_owned(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = list_at(obj, "/spec/ports")
        .iter()
        .map(|p| {
            let port = int_at(p, "/port");
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match int_at(p, "/nodePort") {
                n if n > 0 => format!("{port}:{n}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect();
    vec![
        name(obj),
        json!(kind),
        json!(or_none(cluster_ip)),
        json!(external),
        json!(or_none(ports.join(","))),
        age(obj, now),
        json!(labels_cell(obj.pointer("/spec/selector"))),
    ]
}

fn deployment_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let [names, images] = container_cells(obj.pointer("/spec/template/spec"));
    let desired = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    vec![
        name(obj),
        json!(format!(
            "{}/{desired}",
            int_at(obj, "/status/readyReplicas")
        )),
        json!(int_at(obj, "/status/updatedReplicas")),
        json!(int_at(obj, "/status/availableReplicas")),
        age(obj, now),
        names,
        images,
        // Upstream prints a Deployment's selector bare: empty, never "<none>".
        json!(format_label_selector(obj.pointer("/spec/selector"))),
    ]
}

/// The terminated state's reason, or its signal or exit code, after `prefix`.
fn terminated_reason(prefix: &str, terminated: &Value) -> String {
    match text_at(terminated, "/reason") {
        "" => match int_at(terminated, "/signal") {
            0 => format!("{prefix}ExitCode:{}", int_at(terminated, "/exitCode")),
            signal => format!("{prefix}Signal:{signal}"),
        },
        reason => format!("{prefix}{reason}"),
    }
}

/// Upstream's pod summary: the Ready, Status and Restarts cells.
fn pod_summary(pod: &Value, now: DateTime<Utc>) -> (String, String, String) {
    let init_specs = list_at(pod, "/spec/initContainers");
    let is_sidecar = |c: &Value| text_at(c, "/restartPolicy") == "Always";
    let sidecar_named = |name: &str| {
        init_specs
            .iter()
            .any(|c| text_at(c, "/name") == name && is_sidecar(c))
    };
    let total = list_at(pod, "/spec/containers").len()
        + init_specs.iter().filter(|c| is_sidecar(c)).count();
    let conditions = list_at(pod, "/status/conditions");
    let phase = text_at(pod, "/status/phase");
    let mut reason = match text_at(pod, "/status/reason") {
        "" => phase.to_owned(),
        r => r.to_owned(),
    };
    if conditions.iter().any(|c| {
        text_at(c, "/type") == "PodScheduled" && text_at(c, "/reason") == "SchedulingGated"
    }) {
        reason = "SchedulingGated".into();
    }

    let mut ready = 0;
    let (mut restarts, mut last_restart) = (0, None);
    let (mut sidecar_restarts, mut last_sidecar_restart) = (0, None);
    let mut initializing = false;
    for (i, c) in list_at(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let count = int_at(c, "/restartCount");
        let finished = time_at(c, "/lastState/terminated/finishedAt");
        restarts += count;
        last_restart = last_restart.max(finished);
        let sidecar = sidecar_named(text_at(c, "/name"));
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = last_sidecar_restart.max(finished);
        }
        let terminated = object_at(c, "/state/terminated");
        if terminated.is_some_and(|t| int_at(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && bool_at(c, "/started") == Some(true) {
            if bool_at(c, "/ready") == Some(true) {
                ready += 1;
            }
            continue;
        }
        let waiting = text_at(c, "/state/waiting/reason");
        reason = match terminated {
            Some(t) => terminated_reason("Init:", t),
            None if !waiting.is_empty() && waiting != "PodInitializing" => {
                format!("Init:{waiting}")
            }
            None => format!("Init:{i}/{}", init_specs.len()),
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in list_at(pod, "/status/containerStatuses").iter().rev() {
            restarts += int_at(c, "/restartCount");
            last_restart = last_restart.max(time_at(c, "/lastState/terminated/finishedAt"));
            let waiting = text_at(c, "/state/waiting/reason");
            if !waiting.is_empty() {
                reason = waiting.to_owned();
            } else if let Some(t) = object_at(c, "/state/terminated") {
                reason = terminated_reason("", t);
            } else if bool_at(c, "/ready") == Some(true) && object_at(c, "/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(conditions, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    if is_deleting(pod) && text_at(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if is_deleting(pod) && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };
    (format!("{ready}/{total}"), reason, restarts)
}

fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (ready, status, restarts) = pod_summary(pod, now);
    let ip = list_at(pod, "/status/podIPs")
        .first()
        .map(|p| text_at(p, "/ip"))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| text_at(pod, "/status/podIP"));
    let conditions = list_at(pod, "/status/conditions");
    let gates = list_at(pod, "/spec/readinessGates");
    let gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let passed = gates
            .iter()
            .filter(|g| condition_true(conditions, text_at(g, "/conditionType")))
            .count();
        format!("{passed}/{}", gates.len())
    };
    vec![
        name(pod),
        json!(ready),
        json!(status),
        json!(restarts),
        age(pod, now),
        json!(or_none(ip)),
        json!(or_none(text_at(pod, "/spec/nodeName"))),
        json!(or_none(text_at(pod, "/status/nominatedNodeName"))),
        json!(gates),
    ]
}

fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // Upstream keys conditions by type: the last Ready condition counts.
    let ready = list_at(node, "/status/conditions")
        .iter()
        .rev()
        .find(|c| text_at(c, "/type") == "Ready");
    let mut status = match ready {
        Some(c) if text_at(c, "/status") == "True" => "Ready".to_owned(),
        Some(_) => "NotReady".to_owned(),
        None => "Unknown".to_owned(),
    };
    if bool_at(node, "/spec/unschedulable") == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let roles: BTreeSet<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) => Some(role),
            None if k == "kubernetes.io/role" => v.as_str(),
            None => None,
        })
        .filter(|role| !role.is_empty())
        .collect();
    let address = |ty: &str| {
        list_at(node, "/status/addresses")
            .iter()
            .find(|a| text_at(a, "/type") == ty)
            .map_or("<none>", |a| text_at(a, "/address"))
    };
    let info = |field: &str| match text_at(node, &format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>",
        v => v,
    };
    vec![
        name(node),
        json!(status),
        json!(or_none(roles.into_iter().collect::<Vec<_>>().join(","))),
        age(node, now),
        json!(text_at(node, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

/// ReplicaSets and ReplicationControllers; a controller's selector is a plain label map.
fn replica_set_cells(obj: &Value, now: DateTime<Utc>, controller: bool) -> Vec<Value> {
    let [names, images] = container_cells(obj.pointer("/spec/template/spec"));
    let selector = if controller {
        labels_cell(obj.pointer("/spec/selector"))
    } else {
        selector_cell(obj.pointer("/spec/selector"))
    };
    vec![
        name(obj),
        json!(
            obj.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        ),
        json!(int_at(obj, "/status/replicas")),
        json!(int_at(obj, "/status/readyReplicas")),
        age(obj, now),
        names,
        images,
        json!(selector),
    ]
}

fn stateful_set_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let [names, images] = container_cells(obj.pointer("/spec/template/spec"));
    let desired = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    vec![
        name(obj),
        json!(format!(
            "{}/{desired}",
            int_at(obj, "/status/readyReplicas")
        )),
        age(obj, now),
        names,
        images,
    ]
}

fn daemon_set_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let [names, images] = container_cells(obj.pointer("/spec/template/spec"));
    vec![
        name(obj),
        json!(int_at(obj, "/status/desiredNumberScheduled")),
        json!(int_at(obj, "/status/currentNumberScheduled")),
        json!(int_at(obj, "/status/numberReady")),
        json!(int_at(obj, "/status/updatedNumberScheduled")),
        json!(int_at(obj, "/status/numberAvailable")),
        json!(labels_cell(obj.pointer("/spec/template/spec/nodeSelector"))),
        age(obj, now),
        names,
        images,
        json!(selector_cell(obj.pointer("/spec/selector"))),
    ]
}

fn controller_revision_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let controller = list_at(obj, "/metadata/ownerReferences")
        .iter()
        .find(|r| bool_at(r, "/controller") == Some(true))
        .map_or_else(
            || "<none>".to_owned(),
            |r| {
                let group = text_at(r, "/apiVersion")
                    .rsplit_once('/')
                    .map_or("", |(g, _)| g);
                let kind = text_at(r, "/kind");
                let owner = text_at(r, "/name");
                match (group, kind) {
                    ("", "") => owner.to_owned(),
                    ("", kind) => format!("{}/{owner}", kind.to_lowercase()),
                    (group, kind) => format!("{}.{group}/{owner}", kind.to_lowercase()),
                }
            },
        );
    vec![
        name(obj),
        json!(controller),
        json!(int_at(obj, "/revision")),
        age(obj, now),
    ]
}

fn job_cells(job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = int_at(job, "/status/succeeded");
    let completions = match job.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int_at(job, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        time_at(job, "/status/startTime"),
        time_at(job, "/status/completionTime"),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration((now - start).num_seconds()),
        (Some(start), Some(end)) => human_duration((end - start).num_seconds()),
    };
    let conditions = list_at(job, "/status/conditions");
    let status = if condition_true(conditions, "Complete") {
        "Complete"
    } else if condition_true(conditions, "Failed") {
        "Failed"
    } else if is_deleting(job) {
        "Terminating"
    } else if condition_true(conditions, "Suspended") {
        "Suspended"
    } else if condition_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let [names, images] = container_cells(job.pointer("/spec/template/spec"));
    vec![
        name(job),
        json!(status),
        json!(completions),
        json!(duration),
        age(job, now),
        names,
        images,
        json!(selector_cell(job.pointer("/spec/selector"))),
    ]
}

fn cron_job_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let last_schedule = match time_at(obj, "/status/lastScheduleTime") {
        Some(t) => since(Some(t), now),
        None => "<none>".into(),
    };
    let suspend = bool_at(obj, "/spec/suspend").map_or("<unset>", bool_word);
    let [names, images] = container_cells(obj.pointer("/spec/jobTemplate/spec/template/spec"));
    vec![
        name(obj),
        json!(text_at(obj, "/spec/schedule")),
        json!(or_none(text_at(obj, "/spec/timeZone"))),
        json!(suspend),
        json!(list_at(obj, "/status/active").len()),
        json!(last_schedule),
        age(obj, now),
        names,
        images,
        json!(selector_cell(
            obj.pointer("/spec/jobTemplate/spec/selector")
        )),
    ]
}

/// Where the two Event APIs keep the fields upstream prints (both convert to one type).
struct EventFields {
    regarding: &'static str,
    message: &'static str,
    source: &'static str,
    first: &'static str,
    last: &'static str,
    count: &'static str,
    controller: &'static str,
}

const CORE_EVENT: EventFields = EventFields {
    regarding: "/involvedObject",
    message: "/message",
    source: "/source",
    first: "/firstTimestamp",
    last: "/lastTimestamp",
    count: "/count",
    controller: "/reportingComponent",
};

const EVENTS_EVENT: EventFields = EventFields {
    regarding: "/regarding",
    message: "/note",
    source: "/deprecatedSource",
    first: "/deprecatedFirstTimestamp",
    last: "/deprecatedLastTimestamp",
    count: "/deprecatedCount",
    controller: "/reportingController",
};

fn event_cells(ev: &Value, now: DateTime<Utc>, f: &EventFields) -> Vec<Value> {
    let first_seen = since(
        time_at(ev, f.first).or_else(|| time_at(ev, "/eventTime")),
        now,
    );
    let mut last_seen = match time_at(ev, f.last) {
        Some(t) => since(Some(t), now),
        None => first_seen.clone(),
    };
    let mut count = int_at(ev, f.count);
    if let Some(series) = object_at(ev, "/series") {
        last_seen = since(time_at(series, "/lastObservedTime"), now);
        count = int_at(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    let field = |name: &str| text_at(ev, &format!("{}/{name}", f.regarding));
    let kind = field("kind").to_lowercase();
    let target = match field("name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let first_non_empty = |a: &'static str, b: &str| match text_at(ev, &format!("{}/{a}", f.source))
    {
        "" => text_at(ev, b).to_owned(),
        v => v.to_owned(),
    };
    let component = first_non_empty("component", f.controller);
    let source = match first_non_empty("host", "/reportingInstance") {
        host if host.is_empty() => component,
        host => format!("{component}, {host}"),
    };
    vec![
        json!(last_seen),
        json!(text_at(ev, "/type")),
        json!(text_at(ev, "/reason")),
        json!(target),
        json!(field("fieldPath")),
        json!(source),
        json!(text_at(ev, f.message).trim()),
        json!(first_seen),
        json!(count),
        name(ev),
    ]
}

/// "ip:port" for each subset's ports and addresses (bare IPs for a subset without ports),
/// the first three shown; "<none>" without subsets.
fn endpoints(obj: &Value) -> String {
    let subsets = list_at(obj, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut items = Vec::new();
    for subset in subsets {
        let ips: Vec<&str> = list_at(subset, "/addresses")
            .iter()
            .map(|a| text_at(a, "/ip"))
            .collect();
        let ports = list_at(subset, "/ports");
        if ports.is_empty() {
            items.extend(ips.iter().map(|ip| (*ip).to_owned()));
        }
        for port in ports {
            let port = int_at(port, "/port");
            items.extend(ips.iter().map(|ip| match ip.contains(':') {
                true => format!("[{ip}]:{port}"),
                false => format!("{ip}:{port}"),
            }));
        }
    }
    first_three(&items)
}

fn endpoint_slice_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ports: Vec<String> = list_at(obj, "/ports")
        .iter()
        .map(
            |p| match (p.get("port").and_then(Value::as_i64), p.get("name")) {
                (Some(port), _) => port.to_string(),
                (None, Some(Value::String(name))) => name.clone(),
                _ => "*".into(),
            },
        )
        .collect();
    let addresses: Vec<String> = list_at(obj, "/endpoints")
        .iter()
        .flat_map(|e| list_at(e, "/addresses"))
        .map(|a| a.as_str().unwrap_or("").to_owned())
        .collect();
    vec![
        name(obj),
        json!(text_at(obj, "/addressType")),
        json!(unset_if_empty(&first_three(&ports))),
        json!(unset_if_empty(&first_three(&addresses))),
        age(obj, now),
    ]
}

fn claim_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = if is_deleting(obj) {
        "Terminating"
    } else {
        text_at(obj, "/status/phase")
    };
    let volume = text_at(obj, "/spec/volumeName");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(obj.pointer("/status/capacity/storage")),
            access_modes(list_at(obj, "/status/accessModes")),
        )
    };
    vec![
        name(obj),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class(obj)),
        json!(unset_if_empty(text_at(
            obj,
            "/spec/volumeAttributesClassName"
        ))),
        age(obj, now),
        json!(unset_if_empty(text_at(obj, "/spec/volumeMode"))),
    ]
}

fn volume_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let claim = object_at(obj, "/spec/claimRef").map_or_else(String::new, |r| {
        format!("{}/{}", text_at(r, "/namespace"), text_at(r, "/name"))
    });
    let phase = if is_deleting(obj) {
        "Terminating"
    } else {
        text_at(obj, "/status/phase")
    };
    vec![
        name(obj),
        json!(quantity(obj.pointer("/spec/capacity/storage"))),
        json!(access_modes(list_at(obj, "/spec/accessModes"))),
        json!(text_at(obj, "/spec/persistentVolumeReclaimPolicy")),
        json!(phase),
        json!(claim),
        json!(storage_class(obj)),
        json!(unset_if_empty(text_at(
            obj,
            "/spec/volumeAttributesClassName"
        ))),
        json!(text_at(obj, "/status/reason")),
        age(obj, now),
        json!(unset_if_empty(text_at(obj, "/spec/volumeMode"))),
    ]
}

fn ingress_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // Upstream collects up to three hosts; any rule after the third host counts the rest
    // by rules, not by hosts.
    let rules = list_at(obj, "/spec/rules");
    let mut hosts = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == 3 {
            more = true;
            break;
        }
        match text_at(rule, "/host") {
            "" => {}
            host => hosts.push(host),
        }
    }
    let hosts = match (hosts.is_empty(), more) {
        (true, _) => "*".to_owned(),
        (false, false) => hosts.join(","),
        (false, true) => format!("{} + {} more...", hosts.join(","), rules.len() - 3),
    };
    let ports = if list_at(obj, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(obj),
        json!(or_none(text_at(obj, "/spec/ingressClassName"))),
        json!(hosts),
        json!(load_balancer_addresses(obj)),
        json!(ports),
        age(obj, now),
    ]
}

fn ingress_class_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let parameters = object_at(obj, "/spec/parameters").map_or_else(
        || "<none>".to_owned(),
        |p| {
            let kind = match p.get("apiGroup").and_then(Value::as_str) {
                Some(group) => format!("{}.{group}", text_at(p, "/kind")),
                None => text_at(p, "/kind").to_owned(),
            };
            format!("{kind}/{}", text_at(p, "/name"))
        },
    );
    vec![
        name(obj),
        json!(text_at(obj, "/spec/controller")),
        json!(parameters),
        age(obj, now),
    ]
}

fn role_binding_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let subjects = list_at(obj, "/subjects");
    let of_kind = |kind: &str| {
        subjects
            .iter()
            .filter(|s| text_at(s, "/kind") == kind)
            .map(|s| match kind {
                "ServiceAccount" => format!("{}/{}", text_at(s, "/namespace"), text_at(s, "/name")),
                _ => text_at(s, "/name").to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        name(obj),
        json!(format!(
            "{}/{}",
            text_at(obj, "/roleRef/kind"),
            text_at(obj, "/roleRef/name")
        )),
        age(obj, now),
        json!(of_kind("User")),
        json!(of_kind("Group")),
        json!(of_kind("ServiceAccount")),
    ]
}

/// One metric of an autoscaler, as "current/target".
fn autoscaler_metric(spec: &Value, status: Option<&Value>) -> String {
    let current = |source: &str, field: &str| {
        status
            .and_then(|s| s.pointer(&format!("/{source}/current/{field}")))
            .map_or_else(|| "<unknown>".to_owned(), |q| quantity(Some(q)))
    };
    let percent = |v: Option<&Value>| v.and_then(Value::as_i64).map(|p| format!("{p}%"));
    match text_at(spec, "/type") {
        source @ ("External" | "Object") => {
            let key = source.to_lowercase();
            let target = |field: &str| spec.pointer(&format!("/{key}/target/{field}"));
            match target("averageValue") {
                Some(avg) => format!(
                    "{}/{} (avg)",
                    current(&key, "averageValue"),
                    quantity(Some(avg))
                ),
                None => format!("{}/{}", current(&key, "value"), quantity(target("value"))),
            }
        }
        "Pods" => format!(
            "{}/{}",
            current("pods", "averageValue"),
            quantity(spec.pointer("/pods/target/averageValue"))
        ),
        source @ ("Resource" | "ContainerResource") => {
            let key = if source == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let resource = text_at(spec, &format!("/{key}/name"));
            let target = |field: &str| spec.pointer(&format!("/{key}/target/{field}"));
            match target("averageValue") {
                Some(avg) => format!(
                    "{resource}: {}/{}",
                    current(key, "averageValue"),
                    quantity(Some(avg))
                ),
                None => {
                    let now =
                        percent(status.and_then(|s| {
                            s.pointer(&format!("/{key}/current/averageUtilization"))
                        }));
                    let target = percent(target("averageUtilization"));
                    format!(
                        "{resource}: {}/{}",
                        now.as_deref().unwrap_or("<unknown>"),
                        target.as_deref().unwrap_or("<auto>")
                    )
                }
            }
        }
        _ => "<unknown type>".into(),
    }
}

fn autoscaler_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // autoscaling/v1 keeps one CPU target; upstream converts it to a v2 Resource metric.
    let (specs, statuses): (Vec<Value>, Vec<Value>) = match obj.pointer("/spec/metrics") {
        Some(Value::Array(specs)) => (
            specs.clone(),
            list_at(obj, "/status/currentMetrics").to_vec(),
        ),
        _ => {
            let target = obj.pointer("/spec/targetCPUUtilizationPercentage");
            let current = obj.pointer("/status/currentCPUUtilizationPercentage");
            (
                target
                    .map(|t| json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": t}}}))
                    .into_iter()
                    .collect(),
                current
                    .map(|c| json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}}))
                    .into_iter()
                    .collect(),
            )
        }
    };
    let metrics: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| autoscaler_metric(spec, statuses.get(i)))
        .collect();
    let targets = match metrics.len() {
        0 => "<none>".to_owned(),
        1 | 2 => metrics.join(", "),
        n => format!("{} + {} more...", metrics[..2].join(", "), n - 2),
    };
    let min = obj
        .pointer("/spec/minReplicas")
        .and_then(Value::as_i64)
        .map_or_else(|| "<unset>".to_owned(), |m| m.to_string());
    vec![
        name(obj),
        json!(format!(
            "{}/{}",
            text_at(obj, "/spec/scaleTargetRef/kind"),
            text_at(obj, "/spec/scaleTargetRef/name")
        )),
        json!(targets),
        json!(min),
        json!(int_at(obj, "/spec/maxReplicas")),
        json!(int_at(obj, "/status/currentReplicas")),
        age(obj, now),
    ]
}

fn storage_class_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let annotation = |key: &str| {
        obj.pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            == Some("true")
    };
    let mut class = text_at(obj, "/metadata/name").to_owned();
    if annotation("storageclass.kubernetes.io/is-default-class")
        || annotation("storageclass.beta.kubernetes.io/is-default-class")
    {
        class.push_str(" (default)");
    }
    let or = |ptr: &str, default: &'static str| match text_at(obj, ptr) {
        "" => default,
        v => v,
    };
    vec![
        json!(class),
        json!(text_at(obj, "/provisioner")),
        json!(or("/reclaimPolicy", "Delete")),
        json!(or("/volumeBindingMode", "Immediate")),
        json!(bool_at(obj, "/allowVolumeExpansion").unwrap_or(false)),
        age(obj, now),
    ]
}

fn csi_driver_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let flag =
        |field: &str, default: bool| bool_at(obj, &format!("/spec/{field}")).unwrap_or(default);
    let tokens = match obj.pointer("/spec/tokenRequests") {
        Some(Value::Array(requests)) => requests
            .iter()
            .map(|t| text_at(t, "/audience"))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<unset>".into(),
    };
    let modes: Vec<&str> = list_at(obj, "/spec/volumeLifecycleModes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    vec![
        name(obj),
        json!(flag("attachRequired", true)),
        json!(flag("podInfoOnMount", false)),
        json!(flag("storageCapacity", false)),
        json!(tokens),
        json!(flag("requiresRepublish", false)),
        json!(or_none(modes.join(","))),
        age(obj, now),
    ]
}

fn resource_quota_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    // serde_json's map is ordered by key: upstream sorts the resource names too.
    for (resource, hard) in obj
        .pointer("/status/hard")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let used = quantity(obj.pointer("/status/used").and_then(|u| u.get(resource)));
        let entry = format!("{resource}: {used}/{}", quantity(Some(hard)));
        match resource.split_once('.') {
            Some(("limits", _)) => limits.push(entry),
            _ => requests.push(entry),
        }
    }
    vec![
        name(obj),
        json!(requests.join(", ")),
        json!(limits.join(", ")),
        age(obj, now),
    ]
}

/// A Table's `columnDefinitions` for the kind.
fn column_definitions(res: &Resource) -> Vec<Value> {
    columns(res)
        .iter()
        .map(|c| json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect()
}

/// What each row of a Table carries besides its cells: the request's `includeObject`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Include {
    /// Nothing (`"object": null`).
    None,
    /// The object's metadata as a PartialObjectMetadata (upstream's default).
    #[default]
    Metadata,
    /// The whole object, as a GET returns it: what `kubectl get --sort-by` asks for, to sort
    /// on any field.
    Object,
}

impl Include {
    /// The `includeObject` query parameter; upstream's 400 for a value it does not know.
    pub fn from_query(value: Option<&str>) -> Result<Include, ApiError> {
        match value.unwrap_or("") {
            "" | "Metadata" => Ok(Include::Metadata),
            "None" => Ok(Include::None),
            "Object" => Ok(Include::Object),
            other => Err(ApiError::bad_request(format!(
                "unrecognized includeObject value: {other:?}"
            ))),
        }
    }

    /// A row's `object` for `obj` (a whole object with its resourceVersion).
    pub(crate) fn row_object(self, obj: &Value) -> Value {
        match self {
            Include::None => Value::Null,
            Include::Metadata => json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
            }),
            Include::Object => obj.clone(),
        }
    }
}

/// A `meta.k8s.io/v1` Table of `objects`; rows carry what `include` asks for.
pub fn for_objects(
    res: &Resource,
    objects: &[Value],
    list_metadata: Option<Value>,
    include_columns: bool,
    include: Include,
) -> Value {
    let now = Utc::now();
    let definitions: Vec<Value> = if include_columns {
        column_definitions(res)
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            json!({
                "cells": cells(res, obj, now),
                "object": include.row_object(obj),
            })
        })
        .collect();
    let mut table = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata.unwrap_or(json!({})),
        "rows": rows,
    });
    if include_columns {
        table["columnDefinitions"] = json!(definitions);
    }
    table
}

/// One row of a listed table: the object (decoded without its managedFields, which no
/// column reads) and its row object (see [`Include`]) already encoded.
pub struct ListRow {
    pub object: Value,
    pub row_object: Vec<u8>,
}

/// A LIST as a Table, encoded straight to bytes: the same document as [`for_objects`], but
/// each row's metadata is copied as encoded instead of cloned and re-encoded (for pods,
/// managedFields make up most of it).
pub fn encode_list(res: &Resource, rows: &[ListRow], list_metadata: &Value) -> Vec<u8> {
    let now = Utc::now();
    let definitions = column_definitions(res);
    let mut out =
        Vec::with_capacity(rows.iter().map(|r| r.row_object.len() + 160).sum::<usize>() + 4096);
    out.extend_from_slice(b"{\"kind\":\"Table\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":");
    serde_json::to_writer(&mut out, list_metadata).expect("a JSON value serializes");
    out.extend_from_slice(b",\"columnDefinitions\":");
    serde_json::to_writer(&mut out, &definitions).expect("a JSON value serializes");
    out.extend_from_slice(b",\"rows\":[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"cells\":");
        serde_json::to_writer(&mut out, &cells(res, &row.object, now))
            .expect("a JSON value serializes");
        out.extend_from_slice(b",\"object\":");
        out.extend_from_slice(&row.row_object);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests' fixed clock; objects are created a day before it.
    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    const CREATED: &str = "2024-04-30T12:00:00Z";

    fn meta(name: &str) -> Value {
        json!({"name": name, "namespace": "default", "creationTimestamp": CREATED})
    }

    fn row(group: &str, plural: &str, obj: &Value) -> Value {
        json!(cells_for(group, plural, obj, now()))
    }

    fn row_vec(group: &str, plural: &str, obj: &Value) -> Vec<Value> {
        cells_for(group, plural, obj, now())
    }

    /// Ready, Status and Restarts of a pod.
    fn summary(pod: Value) -> (String, String, String) {
        pod_summary(&pod, now())
    }

    fn strings(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.into(), b.into(), c.into())
    }

    #[test]
    fn durations() {
        for (secs, expected) in [
            (0, "0s"),
            (-1, "0s"),
            (-5, "<invalid>"),
            (119, "119s"),
            (120, "2m"),
            (192, "3m12s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 25 * 60, "3h25m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 5 * 3600, "3d5h"),
            (400 * 86400, "400d"),
            (3 * 365 * 86400 + 10 * 86400, "3y10d"),
            (9 * 365 * 86400, "9y"),
        ] {
            assert_eq!(human_duration(secs), expected, "{secs}s");
        }
    }

    #[test]
    fn every_kind_has_a_cell_per_column() {
        let kinds = [
            ("", "namespaces"),
            ("", "configmaps"),
            ("", "secrets"),
            ("", "services"),
            ("", "serviceaccounts"),
            ("", "pods"),
            ("", "nodes"),
            ("", "events"),
            ("", "endpoints"),
            ("", "persistentvolumeclaims"),
            ("", "persistentvolumes"),
            ("", "replicationcontrollers"),
            ("", "podtemplates"),
            ("", "limitranges"),
            ("", "resourcequotas"),
            ("apps", "deployments"),
            ("apps", "replicasets"),
            ("apps", "statefulsets"),
            ("apps", "daemonsets"),
            ("apps", "controllerrevisions"),
            ("batch", "jobs"),
            ("batch", "cronjobs"),
            ("events.k8s.io", "events"),
            ("discovery.k8s.io", "endpointslices"),
            ("coordination.k8s.io", "leases"),
            ("networking.k8s.io", "ingresses"),
            ("networking.k8s.io", "ingressclasses"),
            ("networking.k8s.io", "networkpolicies"),
            ("rbac.authorization.k8s.io", "roles"),
            ("rbac.authorization.k8s.io", "clusterroles"),
            ("rbac.authorization.k8s.io", "rolebindings"),
            ("rbac.authorization.k8s.io", "clusterrolebindings"),
            ("policy", "poddisruptionbudgets"),
            ("autoscaling", "horizontalpodautoscalers"),
            ("scheduling.k8s.io", "priorityclasses"),
            ("storage.k8s.io", "storageclasses"),
            ("storage.k8s.io", "csinodes"),
            ("storage.k8s.io", "csidrivers"),
            ("storage.k8s.io", "volumeattachments"),
            ("example.com", "widgets"),
        ];
        for (group, plural) in kinds {
            for obj in [json!({}), json!({"metadata": meta("x")})] {
                assert_eq!(
                    columns_for(group, plural).len(),
                    cells_for(group, plural, &obj, now()).len(),
                    "{plural}.{group}"
                );
            }
        }
    }

    #[test]
    fn table_shape() {
        let res = crate::registry::find("", "v1", "pods").unwrap();
        let t = for_objects(
            res,
            &[json!({"metadata": meta("p")})],
            None,
            true,
            Include::Metadata,
        );
        assert_eq!(t["kind"], "Table");
        let cols = t["columnDefinitions"].as_array().unwrap();
        assert_eq!(cols[0]["name"], "Name");
        assert_eq!(cols[0]["format"], "name");
        assert_eq!(cols[3]["name"], "Restarts");
        assert_eq!(cols[3]["type"], "string");
        assert_eq!(cols[5]["priority"], 1);
        assert_eq!(t["rows"][0]["cells"][0], "p");
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "p");
        let t = for_objects(res, &[], None, false, Include::Metadata);
        assert!(t.get("columnDefinitions").is_none());
        let rs = columns_for("apps", "replicasets");
        assert_eq!((rs[1].name, rs[1].kind), ("Desired", "integer"));
    }

    #[test]
    fn pod_running_and_wide_columns() {
        let pod = json!({
            "metadata": meta("web"),
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "a"}, {"name": "b"}],
                "readinessGates": [{"conditionType": "x/ok"}, {"conditionType": "x/lb"}],
            },
            "status": {
                "phase": "Running",
                "podIP": "10.1.0.9",
                "podIPs": [{"ip": "10.1.0.9"}, {"ip": "fd00::9"}],
                "nominatedNodeName": "n2",
                "conditions": [
                    {"type": "Ready", "status": "False"},
                    {"type": "x/ok", "status": "True"},
                    {"type": "x/lb", "status": "False"},
                ],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": CREATED}}},
                    {"name": "b", "ready": false, "restartCount": 0, "state": {"running": {"startedAt": CREATED}}},
                ],
            },
        });
        assert_eq!(
            row("", "pods", &pod),
            json!([
                "web", "1/2", "Running", "0", "24h", "10.1.0.9", "n1", "n2", "1/2"
            ])
        );
        let bare = json!({"metadata": meta("new"), "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}});
        assert_eq!(
            row("", "pods", &bare),
            json!([
                "new", "0/1", "Pending", "0", "24h", "<none>", "<none>", "<none>", "<none>"
            ])
        );
        // Without podIPs, the single podIP.
        let old = json!({"status": {"podIP": "10.1.0.7"}});
        assert_eq!(row("", "pods", &old)[5], "10.1.0.7");
    }

    #[test]
    fn pod_container_reasons() {
        let one = |phase: &str, status: Value| {
            summary(json!({
                "spec": {"containers": [{"name": "a"}]},
                "status": {"phase": phase, "containerStatuses": [status]},
            }))
        };
        assert_eq!(
            one(
                "Pending",
                json!({"name": "a", "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}})
            ),
            strings("0/1", "ContainerCreating", "0")
        );
        assert_eq!(
            one(
                "Running",
                json!({
                    "name": "a", "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2024-05-01T11:55:00Z"}},
                })
            ),
            strings("0/1", "CrashLoopBackOff", "3 (5m ago)")
        );
        assert_eq!(
            one(
                "Succeeded",
                json!({"name": "a", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}})
            ),
            strings("0/1", "Completed", "0")
        );
        assert_eq!(
            one(
                "Failed",
                json!({"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}})
            ),
            strings("0/1", "Signal:9", "0")
        );
        assert_eq!(
            one(
                "Failed",
                json!({"name": "a", "state": {"terminated": {"exitCode": 2}}})
            ),
            strings("0/1", "ExitCode:2", "0")
        );
        // Restarts without a recorded termination time show no "ago".
        assert_eq!(
            one(
                "Running",
                json!({"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}})
            ),
            strings("1/1", "Running", "2")
        );
        // The pod's own reason beats its phase.
        let evicted = summary(json!({"status": {"phase": "Failed", "reason": "Evicted"}}));
        assert_eq!(evicted.1, "Evicted");
    }

    #[test]
    fn pod_completed_with_a_running_container() {
        let pod = |ready: &str| {
            json!({
                "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": ready}],
                    "containerStatuses": [
                        {"name": "a", "ready": true, "state": {"running": {}}},
                        {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    ],
                },
            })
        };
        assert_eq!(summary(pod("True")), strings("1/2", "Running", "0"));
        assert_eq!(summary(pod("False")), strings("1/2", "NotReady", "0"));
    }

    #[test]
    fn pod_init_containers() {
        let init = |status: Value| {
            summary(json!({
                "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
                "status": {
                    "phase": "Pending",
                    "initContainerStatuses": [status],
                    "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}],
                },
            }))
        };
        assert_eq!(
            init(json!({"name": "i", "state": {"waiting": {"reason": "PodInitializing"}}})),
            strings("0/1", "Init:0/1", "0")
        );
        assert_eq!(
            init(json!({"name": "i", "state": {"running": {}}})),
            strings("0/1", "Init:0/1", "0")
        );
        assert_eq!(
            init(json!({
                "name": "i", "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:00:00Z"}},
            })),
            strings("0/1", "Init:CrashLoopBackOff", "4 (60m ago)")
        );
        assert_eq!(
            init(json!({"name": "i", "state": {"terminated": {"exitCode": 1}}})),
            strings("0/1", "Init:ExitCode:1", "0")
        );
        assert_eq!(
            init(json!({"name": "i", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}})),
            strings("0/1", "Init:Error", "0")
        );
        // Finished init containers hand over to the main containers.
        assert_eq!(
            init(
                json!({"name": "i", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}})
            ),
            strings("0/1", "PodInitializing", "0")
        );
    }

    #[test]
    fn pod_sidecars_count_as_containers() {
        let pod = json!({
            "spec": {
                "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                "containers": [{"name": "a"}],
            },
            "status": {
                "phase": "Running",
                "initContainerStatuses": [{
                    "name": "proxy", "started": true, "ready": true, "restartCount": 1,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:58:00Z"}},
                }],
                "containerStatuses": [{"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}}],
            },
        });
        assert_eq!(summary(pod), strings("2/2", "Running", "1 (2m ago)"));
    }

    #[test]
    fn pod_terminating_gated_and_lost() {
        let deleting = json!({
            "metadata": {"deletionTimestamp": "2024-05-01T11:59:00Z"},
            "status": {"phase": "Running"},
        });
        assert_eq!(summary(deleting).1, "Terminating");
        let done = json!({
            "metadata": {"deletionTimestamp": "2024-05-01T11:59:00Z"},
            "status": {"phase": "Succeeded"},
        });
        assert_eq!(summary(done).1, "Succeeded");
        let lost = json!({
            "metadata": {"deletionTimestamp": "2024-05-01T11:59:00Z"},
            "status": {"phase": "Running", "reason": "NodeLost"},
        });
        assert_eq!(summary(lost).1, "Unknown");
        let gated = json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
        ]}});
        assert_eq!(summary(gated).1, "SchedulingGated");
    }

    #[test]
    fn nodes() {
        let node = json!({
            "metadata": {
                "name": "n1", "creationTimestamp": CREATED,
                "labels": {
                    "node-role.kubernetes.io/control-plane": "",
                    "node-role.kubernetes.io/": "",
                    "kubernetes.io/role": "worker",
                    "kubernetes.io/os": "linux",
                },
            },
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True"},
                ],
                "addresses": [
                    {"type": "Hostname", "address": "n1"},
                    {"type": "InternalIP", "address": "192.168.1.10"},
                    {"type": "InternalIP", "address": "192.168.1.11"},
                ],
                "nodeInfo": {
                    "kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12",
                    "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://2.0.0",
                },
            },
        });
        assert_eq!(
            row("", "nodes", &node),
            json!([
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane,worker",
                "24h",
                "v1.33.0",
                "192.168.1.10",
                "<none>",
                "Debian GNU/Linux 12",
                "6.1.0",
                "containerd://2.0.0",
            ])
        );
        let not_ready = json!({"metadata": meta("n2"), "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(
            row("", "nodes", &not_ready),
            json!([
                "n2",
                "NotReady",
                "<none>",
                "24h",
                "",
                "<none>",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ])
        );
        let unknown = json!({"metadata": meta("n3"), "spec": {"unschedulable": true}});
        assert_eq!(row("", "nodes", &unknown)[1], "Unknown,SchedulingDisabled");
    }

    fn template() -> Value {
        json!({"spec": {"containers": [
            {"name": "web", "image": "nginx:1.27"},
            {"name": "log", "image": "busybox"},
        ]}})
    }

    #[test]
    fn replica_sets_and_controllers() {
        let rs = json!({
            "metadata": meta("web-5d8f"),
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": template(),
            },
            "status": {"replicas": 3, "readyReplicas": 2},
        });
        assert_eq!(
            row("apps", "replicasets", &rs),
            json!([
                "web-5d8f",
                3,
                3,
                2,
                "24h",
                "web,log",
                "nginx:1.27,busybox",
                "app=web"
            ])
        );
        let rc = json!({
            "metadata": meta("old"),
            "spec": {"replicas": 1, "selector": {"app": "old"}},
        });
        assert_eq!(
            row("", "replicationcontrollers", &rc),
            json!(["old", 1, 0, 0, "24h", "", "", "app=old"])
        );
    }

    #[test]
    fn stateful_and_daemon_sets() {
        let sts = json!({
            "metadata": meta("db"),
            "spec": {"replicas": 3, "template": template()},
            "status": {"readyReplicas": 2},
        });
        assert_eq!(
            row("apps", "statefulsets", &sts),
            json!(["db", "2/3", "24h", "web,log", "nginx:1.27,busybox"])
        );
        let ds = json!({
            "metadata": meta("agent"),
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"spec": {
                    "nodeSelector": {"kubernetes.io/os": "linux", "disk": "ssd"},
                    "containers": [{"name": "agent", "image": "agent:1"}],
                }},
            },
            "status": {
                "desiredNumberScheduled": 5, "currentNumberScheduled": 4, "numberReady": 3,
                "updatedNumberScheduled": 2, "numberAvailable": 1,
            },
        });
        assert_eq!(
            row("apps", "daemonsets", &ds),
            json!([
                "agent",
                5,
                4,
                3,
                2,
                1,
                "disk=ssd,kubernetes.io/os=linux",
                "24h",
                "agent",
                "agent:1",
                "app=agent"
            ])
        );
        let bare = json!({"metadata": meta("bare")});
        assert_eq!(row("apps", "daemonsets", &bare)[6], "<none>");
        assert_eq!(row("apps", "daemonsets", &bare)[10], "<none>");
    }

    #[test]
    fn jobs() {
        let job = |spec: Value, status: Value| json!({"metadata": meta("j"), "spec": spec, "status": status});
        let complete = job(
            json!({"completions": 5, "template": template(), "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}}),
            json!({
                "succeeded": 5,
                "startTime": "2024-05-01T10:00:00Z", "completionTime": "2024-05-01T10:03:12Z",
                "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}],
            }),
        );
        assert_eq!(
            row("batch", "jobs", &complete),
            json!([
                "j",
                "Complete",
                "5/5",
                "3m12s",
                "24h",
                "web,log",
                "nginx:1.27,busybox",
                "batch.kubernetes.io/controller-uid=u1"
            ])
        );
        let running = job(
            json!({"completions": 5, "parallelism": 2}),
            json!({"succeeded": 1, "startTime": "2024-05-01T11:00:00Z"}),
        );
        let cells = row("batch", "jobs", &running);
        assert_eq!(
            (&cells[1], &cells[2], &cells[3]),
            (&json!("Running"), &json!("1/5"), &json!("60m"))
        );
        assert_eq!(cells[7], "<none>");
        let queue = job(json!({"parallelism": 3}), json!({}));
        let cells = row("batch", "jobs", &queue);
        assert_eq!((&cells[2], &cells[3]), (&json!("0/1 of 3"), &json!("")));
        let single = job(
            json!({}),
            json!({"conditions": [{"type": "Failed", "status": "True"}]}),
        );
        assert_eq!(
            row_vec("batch", "jobs", &single)[1..3],
            [json!("Failed"), json!("0/1")]
        );
        let suspended = job(
            json!({"completions": 1}),
            json!({"conditions": [
                {"type": "Complete", "status": "False"},
                {"type": "Suspended", "status": "True"},
            ]}),
        );
        assert_eq!(row("batch", "jobs", &suspended)[1], "Suspended");
        let target = job(
            json!({}),
            json!({"conditions": [{"type": "FailureTarget", "status": "True"}]}),
        );
        assert_eq!(row("batch", "jobs", &target)[1], "FailureTarget");
        let mut deleting = job(json!({}), json!({}));
        deleting["metadata"]["deletionTimestamp"] = json!(CREATED);
        assert_eq!(row("batch", "jobs", &deleting)[1], "Terminating");
    }

    #[test]
    fn cron_jobs() {
        let cj = json!({
            "metadata": meta("nightly"),
            "spec": {
                "schedule": "0 3 * * *", "timeZone": "Europe/Paris", "suspend": false,
                "jobTemplate": {"spec": {"template": template()}},
            },
            "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": "2024-05-01T11:30:00Z"},
        });
        assert_eq!(
            row("batch", "cronjobs", &cj),
            json!([
                "nightly",
                "0 3 * * *",
                "Europe/Paris",
                "False",
                1,
                "30m",
                "24h",
                "web,log",
                "nginx:1.27,busybox",
                "<none>"
            ])
        );
        let bare = json!({"metadata": meta("b"), "spec": {"schedule": "@hourly", "suspend": true}});
        assert_eq!(
            row("batch", "cronjobs", &bare),
            json!([
                "b", "@hourly", "<none>", "True", 0, "<none>", "24h", "", "", "<none>"
            ])
        );
        assert_eq!(row("batch", "cronjobs", &json!({}))[3], "<unset>");
    }

    #[test]
    fn core_events() {
        let ev = json!({
            "metadata": meta("web.17c"),
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{a}"},
            "reason": "BackOff",
            "message": "Back-off restarting failed container\n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2024-05-01T11:00:00Z",
            "lastTimestamp": "2024-05-01T11:58:00Z",
            "count": 7,
            "type": "Warning",
        });
        assert_eq!(
            row("", "events", &ev),
            json!([
                "2m",
                "Warning",
                "BackOff",
                "pod/web",
                "spec.containers{a}",
                "kubelet, n1",
                "Back-off restarting failed container",
                "60m",
                7,
                "web.17c",
            ])
        );
        // A new-style event written through core/v1: eventTime, a series, the reporting fields.
        let series = json!({
            "metadata": meta("s"),
            "involvedObject": {"kind": "Node"},
            "eventTime": "2024-05-01T11:50:00.000000Z",
            "series": {"count": 4, "lastObservedTime": "2024-05-01T11:59:30.000000Z"},
            "reportingComponent": "scheduler",
            "type": "Normal",
            "reason": "Scheduled",
        });
        assert_eq!(
            row("", "events", &series),
            json!([
                "30s",
                "Normal",
                "Scheduled",
                "node",
                "",
                "scheduler",
                "",
                "10m",
                4,
                "s"
            ])
        );
        let bare = json!({"metadata": meta("b")});
        assert_eq!(
            row("", "events", &bare),
            json!(["<unknown>", "", "", "", "", "", "", "<unknown>", 1, "b"])
        );
    }

    #[test]
    fn events_api_events() {
        let ev = json!({
            "metadata": meta("web.18a"),
            "regarding": {"kind": "Pod", "name": "web"},
            "note": "Pulled image",
            "reason": "Pulled",
            "type": "Normal",
            "eventTime": "2024-05-01T11:55:00.000000Z",
            "reportingController": "kubelet",
            "reportingInstance": "n1",
            "deprecatedCount": 2,
            "deprecatedLastTimestamp": "2024-05-01T11:58:00Z",
        });
        assert_eq!(
            row("events.k8s.io", "events", &ev),
            json!([
                "2m",
                "Normal",
                "Pulled",
                "pod/web",
                "",
                "kubelet, n1",
                "Pulled image",
                "5m",
                2,
                "web.18a"
            ])
        );
    }

    #[test]
    fn endpoints_show_three() {
        let addresses: Vec<Value> = (1..=5)
            .map(|i| json!({"ip": format!("10.0.0.{i}")}))
            .collect();
        let ep = json!({
            "metadata": meta("web"),
            "subsets": [{"addresses": addresses, "ports": [{"port": 80}, {"port": 443}]}],
        });
        assert_eq!(
            row("", "endpoints", &ep),
            json!([
                "web",
                "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 7 more...",
                "24h"
            ])
        );
        let few = json!({"subsets": [
            {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]},
            {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]},
            {"addresses": [{"ip": "10.0.0.9"}]},
        ]});
        assert_eq!(
            row("", "endpoints", &few)[1],
            "10.0.0.1:80,[fd00::1]:8080,10.0.0.9"
        );
        assert_eq!(row("", "endpoints", &json!({}))[1], "<none>");
        assert_eq!(row("", "endpoints", &json!({"subsets": [{}]}))[1], "");
    }

    #[test]
    fn endpoint_slices() {
        let slice = json!({
            "metadata": meta("web-abc"),
            "addressType": "IPv4",
            "ports": [{"port": 80, "name": "http"}, {"name": "metrics"}, {}, {"port": 9000}],
            "endpoints": [
                {"addresses": ["10.0.0.1"]},
                {"addresses": ["10.0.0.2", "10.0.0.3"]},
            ],
        });
        assert_eq!(
            row("discovery.k8s.io", "endpointslices", &slice),
            json!([
                "web-abc",
                "IPv4",
                "80,metrics,* + 1 more...",
                "10.0.0.1,10.0.0.2,10.0.0.3",
                "24h"
            ])
        );
        let empty = json!({"addressType": "IPv6"});
        assert_eq!(
            row_vec("discovery.k8s.io", "endpointslices", &empty)[1..4],
            [json!("IPv6"), json!("<unset>"), json!("<unset>")]
        );
    }

    #[test]
    fn leases() {
        let lease =
            json!({"metadata": meta("kube-scheduler"), "spec": {"holderIdentity": "n1_abc"}});
        assert_eq!(
            row("coordination.k8s.io", "leases", &lease),
            json!(["kube-scheduler", "n1_abc", "24h"])
        );
        assert_eq!(row("coordination.k8s.io", "leases", &json!({}))[1], "");
    }

    #[test]
    fn volumes_and_claims() {
        let pvc = json!({
            "metadata": meta("data"),
            "spec": {"volumeName": "pv1", "storageClassName": "fast", "volumeMode": "Filesystem"},
            "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"]},
        });
        assert_eq!(
            row("", "persistentvolumeclaims", &pvc),
            json!([
                "data",
                "Bound",
                "pv1",
                "10Gi",
                "RWO,RWX",
                "fast",
                "<unset>",
                "24h",
                "Filesystem"
            ])
        );
        let pending = json!({
            "metadata": {"name": "p", "annotations": {"volume.beta.kubernetes.io/storage-class": "old"}},
            "spec": {"storageClassName": "fast"},
            "status": {"phase": "Pending"},
        });
        assert_eq!(
            row("", "persistentvolumeclaims", &pending),
            json!([
                "p",
                "Pending",
                "",
                "",
                "",
                "old",
                "<unset>",
                "<unknown>",
                "<unset>"
            ])
        );
        let pv = json!({
            "metadata": {"name": "pv1", "creationTimestamp": CREATED, "deletionTimestamp": CREATED},
            "spec": {
                "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOncePod"],
                "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "fast",
                "claimRef": {"namespace": "default", "name": "data"},
                "volumeAttributesClassName": "gold",
            },
            "status": {"phase": "Bound"},
        });
        assert_eq!(
            row("", "persistentvolumes", &pv),
            json!([
                "pv1",
                "10Gi",
                "RWOP",
                "Retain",
                "Terminating",
                "default/data",
                "fast",
                "gold",
                "",
                "24h",
                "<unset>"
            ])
        );
    }

    #[test]
    fn ingresses() {
        let ing = json!({
            "metadata": meta("web"),
            "spec": {
                "ingressClassName": "nginx",
                "rules": [{"host": "a.example"}, {}, {"host": "b.example"}, {"host": "c.example"}, {"host": "d.example"}],
                "tls": [{"hosts": ["a.example"]}],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example"}, {"ip": "203.0.113.9"}]}},
        });
        assert_eq!(
            row("networking.k8s.io", "ingresses", &ing),
            json!([
                "web",
                "nginx",
                "a.example,b.example,c.example + 2 more...",
                "203.0.113.9,lb.example",
                "80, 443",
                "24h"
            ])
        );
        let bare = json!({"spec": {"rules": [{}]}});
        assert_eq!(
            row_vec("networking.k8s.io", "ingresses", &bare)[1..5],
            [json!("<none>"), json!("*"), json!(""), json!("80")]
        );
        let class = json!({"metadata": meta("nginx"), "spec": {
            "controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"},
        }});
        assert_eq!(
            row("networking.k8s.io", "ingressclasses", &class),
            json!([
                "nginx",
                "k8s.io/ingress-nginx",
                "IngressParameters.k8s.example.com/p",
                "24h"
            ])
        );
        let policy = json!({"metadata": meta("deny"), "spec": {"podSelector": {}}});
        assert_eq!(
            row("networking.k8s.io", "networkpolicies", &policy),
            json!(["deny", "<none>", "24h"])
        );
    }

    #[test]
    fn rbac() {
        let binding = json!({
            "metadata": meta("read"),
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [
                {"kind": "User", "name": "alice"},
                {"kind": "User", "name": "bob"},
                {"kind": "Group", "name": "devs"},
                {"kind": "ServiceAccount", "namespace": "ci", "name": "runner"},
            ],
        });
        assert_eq!(
            row("rbac.authorization.k8s.io", "rolebindings", &binding),
            json!([
                "read",
                "ClusterRole/view",
                "24h",
                "alice, bob",
                "devs",
                "ci/runner"
            ])
        );
        let role = json!({"metadata": {"name": "reader", "creationTimestamp": "2024-04-30T12:00:00+02:00"}});
        assert_eq!(
            row("rbac.authorization.k8s.io", "clusterroles", &role),
            json!(["reader", "2024-04-30T10:00:00Z"])
        );
        assert_eq!(
            columns_for("rbac.authorization.k8s.io", "roles")[1].kind,
            "date"
        );
    }

    #[test]
    fn disruption_budgets_and_priority_classes() {
        let pdb = json!({"metadata": meta("web"), "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            row("policy", "poddisruptionbudgets", &pdb),
            json!(["web", "50%", "N/A", 1, "24h"])
        );
        let pdb = json!({"metadata": meta("db"), "spec": {"maxUnavailable": 1}});
        assert_eq!(
            row("policy", "poddisruptionbudgets", &pdb),
            json!(["db", "N/A", "1", 0, "24h"])
        );
        let pc = json!({"metadata": meta("high"), "value": 1000000, "globalDefault": true, "preemptionPolicy": "Never"});
        assert_eq!(
            row("scheduling.k8s.io", "priorityclasses", &pc),
            json!(["high", 1000000, true, "24h", "Never"])
        );
    }

    #[test]
    fn autoscalers() {
        let v2 = json!({
            "metadata": meta("web"),
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "web"},
                "minReplicas": 2, "maxReplicas": 10,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"averageValue": "10"}}},
                ],
            },
            "status": {
                "currentReplicas": 3,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45}}}],
            },
        });
        assert_eq!(
            row("autoscaling", "horizontalpodautoscalers", &v2),
            json!([
                "web",
                "Deployment/web",
                "cpu: 45%/80%, memory: <unknown>/500Mi + 1 more...",
                "2",
                10,
                3,
                "24h"
            ])
        );
        let v1 = json!({
            "metadata": meta("old"),
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "old"}, "maxReplicas": 4, "targetCPUUtilizationPercentage": 70},
        });
        assert_eq!(
            row("autoscaling", "horizontalpodautoscalers", &v1),
            json!([
                "old",
                "Deployment/old",
                "cpu: <unknown>/70%",
                "<unset>",
                4,
                0,
                "24h"
            ])
        );
        let external = json!({"type": "External", "external": {"target": {"value": "100"}}});
        let status = json!({"external": {"current": {"value": "42"}}});
        assert_eq!(autoscaler_metric(&external, Some(&status)), "42/100");
        assert_eq!(
            row("autoscaling", "horizontalpodautoscalers", &json!({}))[2],
            "<none>"
        );
    }

    #[test]
    fn storage() {
        let sc = json!({
            "metadata": {"name": "standard", "creationTimestamp": CREATED, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer",
        });
        assert_eq!(
            row("storage.k8s.io", "storageclasses", &sc),
            json!([
                "standard (default)",
                "rancher.io/local-path",
                "Delete",
                "WaitForFirstConsumer",
                false,
                "24h"
            ])
        );
        let driver = json!({"metadata": meta("csi.example"), "spec": {
            "attachRequired": false, "tokenRequests": [{"audience": "a"}, {"audience": "b"}],
            "volumeLifecycleModes": ["Persistent", "Ephemeral"],
        }});
        assert_eq!(
            row("storage.k8s.io", "csidrivers", &driver),
            json!([
                "csi.example",
                false,
                false,
                false,
                "a,b",
                false,
                "Persistent,Ephemeral",
                "24h"
            ])
        );
        let node = json!({"metadata": meta("n1"), "spec": {"drivers": [{"name": "csi.example"}]}});
        assert_eq!(
            row("storage.k8s.io", "csinodes", &node),
            json!(["n1", 1, "24h"])
        );
        let va = json!({"metadata": meta("va"), "spec": {"attacher": "csi.example", "nodeName": "n1", "source": {"persistentVolumeName": "pv1"}}, "status": {"attached": true}});
        assert_eq!(
            row("storage.k8s.io", "volumeattachments", &va),
            json!(["va", "csi.example", "pv1", "n1", true, "24h"])
        );
    }

    #[test]
    fn quotas_templates_and_revisions() {
        let quota = json!({"metadata": meta("q"), "status": {
            "hard": {"limits.cpu": "4", "pods": "10", "requests.memory": "1Gi"},
            "used": {"limits.cpu": "1", "pods": "3"},
        }});
        assert_eq!(
            row("", "resourcequotas", &quota),
            json!([
                "q",
                "pods: 3/10, requests.memory: 0/1Gi",
                "limits.cpu: 1/4",
                "24h"
            ])
        );
        let tpl = json!({"metadata": meta("t"), "template": {"metadata": {"labels": {"app": "t"}}, "spec": template()["spec"]}});
        assert_eq!(
            row("", "podtemplates", &tpl),
            json!(["t", "web,log", "nginx:1.27,busybox", "app=t"])
        );
        let rev = json!({
            "metadata": {"name": "db-7c9", "creationTimestamp": CREATED, "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true},
            ]},
            "revision": 2,
        });
        assert_eq!(
            row("apps", "controllerrevisions", &rev),
            json!(["db-7c9", "statefulset.apps/db", 2, "24h"])
        );
        assert_eq!(row("apps", "controllerrevisions", &json!({}))[1], "<none>");
    }

    #[test]
    fn services_and_deployments() {
        let lb = json!({
            "metadata": meta("web"),
            "spec": {
                "type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                "externalIPs": ["198.51.100.7"],
                "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                "selector": {"app": "web"},
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}},
        });
        assert_eq!(
            row("", "services", &lb),
            json!([
                "web",
                "LoadBalancer",
                "10.96.0.10",
                "203.0.113.9,198.51.100.7",
                "80:30080/TCP,53/UDP",
                "24h",
                "app=web"
            ])
        );
        let pending = json!({"spec": {"type": "LoadBalancer"}});
        assert_eq!(row("", "services", &pending)[3], "<pending>");
        let headless = json!({"spec": {"clusterIP": "None"}});
        assert_eq!(
            row_vec("", "services", &headless)[1..5],
            [
                json!("ClusterIP"),
                json!("None"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        let deploy = json!({
            "metadata": meta("web"),
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        });
        assert_eq!(
            row("apps", "deployments", &deploy),
            json!([
                "web",
                "2/3",
                3,
                2,
                "24h",
                "web,log",
                "nginx:1.27,busybox",
                "app=web"
            ])
        );
    }
}
