//! The table of built-in resources: one row per resource, read by discovery, routing and the
//! generic handlers. Adding a built-in kind means adding a row, not a handler.

use std::collections::HashMap;
use std::sync::LazyLock;

/// One resource of one group-version.
#[derive(Clone, Debug)]
pub struct Resource {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources served: "status", "scale", "binding", "eviction", "token".
    pub subresources: &'static [&'static str],
    /// The verbs discovery lists: [`VERBS`] for stored resources, `create` alone for reviews.
    pub verbs: &'static [&'static str],
}

impl Resource {
    /// `apiVersion` as written in objects: "v1" or "apps/v1".
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The name upstream uses in messages: "configmaps" or "deployments.apps".
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Storage key prefix for this resource, shared by all its versions.
    pub fn key_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/registry/{}/", self.plural)
        } else {
            format!("/registry/{}/{}/", self.group, self.plural)
        }
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }
}

pub const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

macro_rules! r {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $ns:expr, [$($short:expr),*], [$($cat:expr),*], [$($sub:expr),*]) => {
        Resource {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            subresources: &[$($sub),*],
            verbs: &VERBS,
        }
    };
}

/// Every built-in resource Dao serves.
pub static RESOURCES: &[Resource] = &[
    r!(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        ["cm"],
        [],
        []
    ),
    r!(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        ["ep"],
        [],
        []
    ),
    r!("", "v1", "Event", "events", "event", true, ["ev"], [], []),
    r!(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        "limitrange",
        true,
        ["limits"],
        [],
        []
    ),
    r!(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        ["ns"],
        [],
        ["status"]
    ),
    r!(
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        false,
        ["no"],
        [],
        ["status"]
    ),
    r!(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        true,
        ["pvc"],
        [],
        ["status"]
    ),
    r!(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        false,
        ["pv"],
        [],
        ["status"]
    ),
    r!(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        true,
        ["po"],
        ["all"],
        ["status", "binding", "eviction"]
    ),
    r!(
        "",
        "v1",
        "PodTemplate",
        "podtemplates",
        "podtemplate",
        true,
        [],
        [],
        []
    ),
    r!(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        true,
        ["rc"],
        ["all"],
        ["status", "scale"]
    ),
    r!(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        "resourcequota",
        true,
        ["quota"],
        [],
        ["status"]
    ),
    r!("", "v1", "Secret", "secrets", "secret", true, [], [], []),
    r!(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        ["sa"],
        [],
        ["token"]
    ),
    r!(
        "",
        "v1",
        "Service",
        "services",
        "service",
        true,
        ["svc"],
        ["all"],
        ["status"]
    ),
    r!(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        true,
        [],
        [],
        []
    ),
    r!(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        ["ds"],
        ["all"],
        ["status"]
    ),
    r!(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        true,
        ["deploy"],
        ["all"],
        ["status", "scale"]
    ),
    r!(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        ["rs"],
        ["all"],
        ["status", "scale"]
    ),
    r!(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        true,
        ["sts"],
        ["all"],
        ["status", "scale"]
    ),
    r!(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        true,
        ["hpa"],
        ["all"],
        ["status"]
    ),
    r!(
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        true,
        ["hpa"],
        ["all"],
        ["status"]
    ),
    r!(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        "cronjob",
        true,
        ["cj"],
        ["all"],
        ["status"]
    ),
    r!(
        "batch",
        "v1",
        "Job",
        "jobs",
        "job",
        true,
        [],
        ["all"],
        ["status"]
    ),
    r!(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        true,
        [],
        [],
        []
    ),
    r!(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        [],
        [],
        []
    ),
    r!(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        "event",
        true,
        ["ev"],
        [],
        []
    ),
    r!(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        "priorityclass",
        false,
        ["pc"],
        [],
        []
    ),
    r!(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        "ingressclass",
        false,
        [],
        [],
        []
    ),
    r!(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        "ingress",
        true,
        ["ing"],
        [],
        ["status"]
    ),
    r!(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        "networkpolicy",
        true,
        ["netpol"],
        [],
        []
    ),
    r!(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        true,
        ["pdb"],
        [],
        ["status"]
    ),
    r!(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
        [],
        [],
        []
    ),
    r!(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        false,
        [],
        [],
        []
    ),
    r!(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        true,
        [],
        [],
        []
    ),
    r!(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        "role",
        true,
        [],
        [],
        []
    ),
    r!(
        "storage.k8s.io",
        "v1",
        "CSIDriver",
        "csidrivers",
        "csidriver",
        false,
        [],
        [],
        []
    ),
    r!(
        "storage.k8s.io",
        "v1",
        "CSINode",
        "csinodes",
        "csinode",
        false,
        [],
        [],
        []
    ),
    r!(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        "storageclass",
        false,
        ["sc"],
        [],
        []
    ),
    r!(
        "storage.k8s.io",
        "v1",
        "VolumeAttachment",
        "volumeattachments",
        "volumeattachment",
        false,
        [],
        [],
        ["status"]
    ),
];

/// A create-only resource that is answered, never stored: the reviews of
/// `authentication.k8s.io` and `authorization.k8s.io`.
const fn review(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        short_names: &[],
        categories: &[],
        subresources: &[],
        verbs: &["create"],
    }
}

/// The reviews (answered in `lib.rs`, not by the generic handlers): listed by discovery and
/// OpenAPI beside [`RESOURCES`], never routed to storage.
pub static REVIEWS: &[Resource] = &[
    review(
        "authentication.k8s.io",
        "SelfSubjectReview",
        "selfsubjectreviews",
        "selfsubjectreview",
        false,
    ),
    review(
        "authentication.k8s.io",
        "TokenReview",
        "tokenreviews",
        "tokenreview",
        false,
    ),
    review(
        "authorization.k8s.io",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        "localsubjectaccessreview",
        true,
    ),
    review(
        "authorization.k8s.io",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        false,
    ),
    review(
        "authorization.k8s.io",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        false,
    ),
    review(
        "authorization.k8s.io",
        "SubjectAccessReview",
        "subjectaccessreviews",
        "subjectaccessreview",
        false,
    ),
];

/// Everything discovery and OpenAPI describe: the stored resources, then the reviews.
pub fn discoverable() -> impl Iterator<Item = &'static Resource> {
    RESOURCES.iter().chain(REVIEWS)
}

fn lookup(
    table: &'static [Resource],
    group: &str,
    version: &str,
    plural: &str,
) -> Option<&'static Resource> {
    table
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The review answered at `group`/`version` under `plural`.
pub fn find_review(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    lookup(REVIEWS, group, version, plural)
}

/// The resource served at `group`/`version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    type Table = HashMap<(&'static str, &'static str, &'static str), &'static Resource>;
    // Every request looks its resource up (often more than once): hashed, not a scan of the
    // table's string triples.
    static BY_NAME: LazyLock<Table> = LazyLock::new(|| {
        let mut table = Table::new();
        for r in RESOURCES {
            table.entry((r.group, r.version, r.plural)).or_insert(r);
        }
        table
    });
    // The table's keys are 'static; looked up with shorter-lived ones (HashMap is covariant).
    let table: &HashMap<(&str, &str, &str), &'static Resource> = &BY_NAME;
    table.get(&(group, version, plural)).copied()
}

/// Group-versions in upstream's discovery order (preferred version first within a group).
pub fn group_versions() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in discoverable() {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version);
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// Calls `$m! { "group" "version" "Kind" => Type, ... }` with the k8s-openapi type of every
/// kind in [`RESOURCES`]: the one table behind typed decoding (`typed.rs`) and the OpenAPI
/// schemas (`openapi.rs`).
macro_rules! kind_types {
    ($m:ident) => {
        $m! {
            "" "v1" "ConfigMap" => k8s_openapi::api::core::v1::ConfigMap,
            "" "v1" "Endpoints" => k8s_openapi::api::core::v1::Endpoints,
            "" "v1" "Event" => k8s_openapi::api::core::v1::Event,
            "" "v1" "LimitRange" => k8s_openapi::api::core::v1::LimitRange,
            "" "v1" "Namespace" => k8s_openapi::api::core::v1::Namespace,
            "" "v1" "Node" => k8s_openapi::api::core::v1::Node,
            "" "v1" "PersistentVolumeClaim" => k8s_openapi::api::core::v1::PersistentVolumeClaim,
            "" "v1" "PersistentVolume" => k8s_openapi::api::core::v1::PersistentVolume,
            "" "v1" "Pod" => k8s_openapi::api::core::v1::Pod,
            "" "v1" "PodTemplate" => k8s_openapi::api::core::v1::PodTemplate,
            "" "v1" "ReplicationController" => k8s_openapi::api::core::v1::ReplicationController,
            "" "v1" "ResourceQuota" => k8s_openapi::api::core::v1::ResourceQuota,
            "" "v1" "Secret" => k8s_openapi::api::core::v1::Secret,
            "" "v1" "ServiceAccount" => k8s_openapi::api::core::v1::ServiceAccount,
            "" "v1" "Service" => k8s_openapi::api::core::v1::Service,
            "authentication.k8s.io" "v1" "SelfSubjectReview" => k8s_openapi::api::authentication::v1::SelfSubjectReview,
            "authentication.k8s.io" "v1" "TokenReview" => k8s_openapi::api::authentication::v1::TokenReview,
            "authorization.k8s.io" "v1" "LocalSubjectAccessReview" => k8s_openapi::api::authorization::v1::LocalSubjectAccessReview,
            "authorization.k8s.io" "v1" "SelfSubjectAccessReview" => k8s_openapi::api::authorization::v1::SelfSubjectAccessReview,
            "authorization.k8s.io" "v1" "SelfSubjectRulesReview" => k8s_openapi::api::authorization::v1::SelfSubjectRulesReview,
            "authorization.k8s.io" "v1" "SubjectAccessReview" => k8s_openapi::api::authorization::v1::SubjectAccessReview,
            "apps" "v1" "ControllerRevision" => k8s_openapi::api::apps::v1::ControllerRevision,
            "apps" "v1" "DaemonSet" => k8s_openapi::api::apps::v1::DaemonSet,
            "apps" "v1" "Deployment" => k8s_openapi::api::apps::v1::Deployment,
            "apps" "v1" "ReplicaSet" => k8s_openapi::api::apps::v1::ReplicaSet,
            "apps" "v1" "StatefulSet" => k8s_openapi::api::apps::v1::StatefulSet,
            "autoscaling" "v1" "HorizontalPodAutoscaler" => k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler,
            "autoscaling" "v2" "HorizontalPodAutoscaler" => k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler,
            "batch" "v1" "CronJob" => k8s_openapi::api::batch::v1::CronJob,
            "batch" "v1" "Job" => k8s_openapi::api::batch::v1::Job,
            "coordination.k8s.io" "v1" "Lease" => k8s_openapi::api::coordination::v1::Lease,
            "discovery.k8s.io" "v1" "EndpointSlice" => k8s_openapi::api::discovery::v1::EndpointSlice,
            "events.k8s.io" "v1" "Event" => k8s_openapi::api::events::v1::Event,
            "networking.k8s.io" "v1" "IngressClass" => k8s_openapi::api::networking::v1::IngressClass,
            "networking.k8s.io" "v1" "Ingress" => k8s_openapi::api::networking::v1::Ingress,
            "networking.k8s.io" "v1" "NetworkPolicy" => k8s_openapi::api::networking::v1::NetworkPolicy,
            "policy" "v1" "PodDisruptionBudget" => k8s_openapi::api::policy::v1::PodDisruptionBudget,
            "rbac.authorization.k8s.io" "v1" "ClusterRoleBinding" => k8s_openapi::api::rbac::v1::ClusterRoleBinding,
            "rbac.authorization.k8s.io" "v1" "ClusterRole" => k8s_openapi::api::rbac::v1::ClusterRole,
            "rbac.authorization.k8s.io" "v1" "RoleBinding" => k8s_openapi::api::rbac::v1::RoleBinding,
            "rbac.authorization.k8s.io" "v1" "Role" => k8s_openapi::api::rbac::v1::Role,
            "scheduling.k8s.io" "v1" "PriorityClass" => k8s_openapi::api::scheduling::v1::PriorityClass,
            "storage.k8s.io" "v1" "CSIDriver" => k8s_openapi::api::storage::v1::CSIDriver,
            "storage.k8s.io" "v1" "CSINode" => k8s_openapi::api::storage::v1::CSINode,
            "storage.k8s.io" "v1" "StorageClass" => k8s_openapi::api::storage::v1::StorageClass,
            "storage.k8s.io" "v1" "VolumeAttachment" => k8s_openapi::api::storage::v1::VolumeAttachment,
        }
    };
}
pub(crate) use kind_types;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_keys() {
        let cm = find("", "v1", "configmaps").unwrap();
        assert_eq!(cm.api_version(), "v1");
        assert_eq!(
            cm.key(Some("default"), "a"),
            "/registry/configmaps/default/a"
        );
        let deploy = find("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.qualified_plural(), "deployments.apps");
        assert_eq!(
            deploy.key(Some("ns"), "web"),
            "/registry/apps/deployments/ns/web"
        );
        let ns = find("", "v1", "namespaces").unwrap();
        assert_eq!(ns.key(Some("ignored"), "x"), "/registry/namespaces/x");
        assert!(find("apps", "v1", "pods").is_none());
        let gvs = group_versions();
        assert_eq!(gvs[0], ("", vec!["v1"]));
        assert!(gvs.contains(&("autoscaling", vec!["v2", "v1"])));
    }
}
