//! Authorization: upstream's RBAC over the stored Roles, ClusterRoles and their bindings, the
//! bootstrap roles every cluster starts with, and the access reviews that ask it questions
//! (`kubectl auth can-i`, `kubectl auth can-i --list`).
//!
//! Members of `system:masters` are allowed everything before RBAC is asked, as upstream's
//! privileged-group authorizer does (the admin credentials and Dao's in-process components);
//! everyone else gets exactly what their bindings grant. Roles and bindings are read from
//! [`RbacIndex`], an in-memory copy of them that a watch keeps current.

mod index;

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{PolicyRule, Subject};
use serde_json::{Value, json};

use index::Objects;
pub use index::RbacIndex;

use crate::Identity;
use crate::status::{ApiError, Cause};

const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// What a request asks to do, as upstream's request info describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    pub verb: String,
    /// `None` for a non-resource request (discovery, `/metrics`, `/openapi/...`).
    pub resource: Option<ResourceAttributes>,
    /// The URL path (what non-resource rules match).
    pub path: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceAttributes {
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

impl ResourceAttributes {
    /// The resource as rules and messages name it: `pods`, or `pods/log` for a subresource.
    fn combined(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

impl Attributes {
    /// Parse a request the way upstream's request info factory does: `/api/v1/...` and
    /// `/apis/{group}/{version}/...` with at least a resource are resource requests, anything
    /// else is a non-resource path.
    pub fn from_request(method: &str, path: &str, watch: bool) -> Attributes {
        let segs: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let (group, rest) = match segs.as_slice() {
            ["api", _version, rest @ ..] if !rest.is_empty() => ("", rest),
            ["apis", group, _version, rest @ ..] if !rest.is_empty() => (*group, rest),
            _ => {
                return Attributes {
                    verb: method.to_ascii_lowercase(),
                    resource: None,
                    path: path.to_owned(),
                };
            }
        };
        let mut r = ResourceAttributes {
            group: group.to_owned(),
            ..Default::default()
        };
        let mut parts = rest;
        if parts[0] == "namespaces" && parts.len() > 1 {
            r.namespace = parts[1].to_owned();
            // `namespaces/{ns}/status` and `/finalize` are the namespace's own subresources.
            if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
                parts = &parts[2..];
            }
        }
        r.resource = parts[0].to_owned();
        r.name = parts.get(1).map(|s| s.to_string()).unwrap_or_default();
        r.subresource = parts.get(2).map(|s| s.to_string()).unwrap_or_default();
        // A namespace's own requests are in that namespace (so a RoleBinding there can grant
        // reading it).
        if r.resource == "namespaces" && !r.name.is_empty() {
            r.namespace = r.name.clone();
        }
        let verb = match (method, r.name.is_empty()) {
            ("GET" | "HEAD", true) if watch => "watch",
            ("GET" | "HEAD", true) => "list",
            ("GET" | "HEAD", false) => "get",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "deletecollection",
            ("DELETE", false) => "delete",
            (other, _) => {
                return Attributes {
                    verb: other.to_ascii_lowercase(),
                    resource: Some(r),
                    path: path.to_owned(),
                };
            }
        };
        Attributes {
            verb: verb.to_owned(),
            resource: Some(r),
            path: path.to_owned(),
        }
    }
}

/// RBAC's answer, with upstream's reason text when allowed.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == "*" || v == verb)
}

fn rule_allows(rule: &PolicyRule, a: &Attributes) -> bool {
    match &a.resource {
        Some(r) => covers_resource(rule, &a.verb, &r.group, &r.combined(), &r.name),
        None => covers_url(rule, &a.verb, &a.path),
    }
}

/// A ServiceAccount subject's namespace: its own, or the binding's when it names none.
fn subject_namespace<'a>(s: &'a Subject, binding_ns: Option<&'a str>) -> Option<&'a str> {
    s.namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .or(binding_ns)
}

/// Whether a binding's subject is `who`.
fn subject_matches(s: &Subject, binding_ns: Option<&str>, who: &Identity) -> bool {
    match s.kind.as_str() {
        "User" => s.name == who.user,
        "Group" => who.groups.contains(&s.name),
        "ServiceAccount" => subject_namespace(s, binding_ns)
            .is_some_and(|ns| who.user == crate::auth::service_account_user(ns, &s.name)),
        _ => false,
    }
}

/// The subject in upstream's reason wording: `User "bob"`, `ServiceAccount "ns/name"`.
fn describe_subject(s: &Subject, binding_ns: Option<&str>) -> String {
    match s.kind.as_str() {
        "ServiceAccount" => format!(
            "ServiceAccount \"{}/{}\"",
            subject_namespace(s, binding_ns).unwrap_or(""),
            s.name
        ),
        kind => format!("{kind} \"{}\"", s.name),
    }
}

/// The rules of the role a binding refers to (`Role` in `namespace`, or `ClusterRole`);
/// `None` when it does not exist or is of another kind.
fn role_rules(
    objects: &Objects,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Option<Arc<[PolicyRule]>> {
    match kind {
        "ClusterRole" => objects.cluster_roles.get(name).cloned(),
        "Role" => objects.roles.get(namespace)?.get(name).cloned(),
        _ => None,
    }
}

/// How a grant reaches its subject: the binding, its role and the subject it names.
struct Via<'a> {
    /// `Some(namespace)` for a RoleBinding.
    namespace: Option<&'a str>,
    binding: &'a str,
    role_kind: &'a str,
    role: &'a str,
    subject: &'a Subject,
}

impl Via<'_> {
    /// `ClusterRoleBinding "x" of ClusterRole "y" to Group "z"`, as upstream's reason says.
    fn describe(&self) -> String {
        let (kind, binding) = match self.namespace {
            None => ("ClusterRoleBinding", self.binding.to_owned()),
            Some(ns) => ("RoleBinding", format!("{}/{ns}", self.binding)),
        };
        format!(
            "{kind} \"{binding}\" of {} \"{}\" to {}",
            self.role_kind,
            self.role,
            describe_subject(self.subject, self.namespace)
        )
    }
}

/// Call `f` with every grant that applies to `who` in `namespace` ("" for cluster-wide
/// only): ClusterRoleBindings, then the namespace's RoleBindings, each in name order, until
/// `f` returns true.
fn each_grant(
    objects: &Objects,
    who: &Identity,
    namespace: &str,
    mut f: impl FnMut(&Via<'_>, &Arc<[PolicyRule]>) -> bool,
) {
    for (name, b) in &objects.cluster_bindings {
        // A ClusterRoleBinding can only refer to a ClusterRole.
        if b.role_ref.kind != "ClusterRole" {
            continue;
        }
        let Some(subject) = b
            .subjects
            .iter()
            .flatten()
            .find(|s| subject_matches(s, None, who))
        else {
            continue;
        };
        if let Some(rules) = objects.cluster_roles.get(&b.role_ref.name) {
            let via = Via {
                namespace: None,
                binding: name,
                role_kind: "ClusterRole",
                role: &b.role_ref.name,
                subject,
            };
            if f(&via, rules) {
                return;
            }
        }
    }
    if namespace.is_empty() {
        return;
    }
    for (name, b) in objects.bindings.get(namespace).into_iter().flatten() {
        let Some(subject) = b
            .subjects
            .iter()
            .flatten()
            .find(|s| subject_matches(s, Some(namespace), who))
        else {
            continue;
        };
        let kind = b.role_ref.kind.as_str();
        if let Some(rules) = role_rules(objects, kind, namespace, &b.role_ref.name) {
            let via = Via {
                namespace: Some(namespace),
                binding: name,
                role_kind: kind,
                role: &b.role_ref.name,
                subject,
            };
            if f(&via, &rules) {
                return;
            }
        }
    }
}

/// Every rule `who` holds in `namespace` ("" for cluster-wide only), grant by grant.
fn held_rules(rbac: &RbacIndex, who: &Identity, namespace: &str) -> Vec<Arc<[PolicyRule]>> {
    rbac.read(|objects| {
        let mut out = Vec::new();
        each_grant(objects, who, namespace, |_, rules| {
            out.push(rules.clone());
            false
        });
        out
    })
}

/// Whether `who` is in `system:masters`, which may do everything.
pub(crate) fn is_master(who: &Identity) -> bool {
    who.groups.iter().any(|g| g == "system:masters")
}

/// Whether `who` may do `a`.
pub fn authorize(rbac: &RbacIndex, who: &Identity, a: &Attributes) -> Decision {
    if is_master(who) {
        return Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    // Non-resource paths and cluster-scoped resources: only cluster-wide bindings count.
    let namespace = a
        .resource
        .as_ref()
        .map(|r| r.namespace.as_str())
        .unwrap_or("");
    let mut reason = None;
    rbac.read(|objects| {
        each_grant(objects, who, namespace, |via, rules| {
            if rules.iter().any(|rule| rule_allows(rule, a)) {
                reason = Some(format!("RBAC: allowed by {}", via.describe()));
                return true;
            }
            false
        })
    });
    Decision {
        allowed: reason.is_some(),
        reason: reason.unwrap_or_default(),
    }
}

/// Upstream's 403 for a request RBAC does not allow.
pub fn forbidden(who: &Identity, a: &Attributes) -> ApiError {
    let mut msg = format!("User \"{}\" cannot {}", who.user, a.verb);
    let (qualified, name, details) = match &a.resource {
        Some(r) => {
            let resource = r.combined();
            if r.namespace.is_empty() {
                msg.push_str(&format!(
                    " resource \"{resource}\" in API group \"{}\" at the cluster scope",
                    r.group
                ));
            } else {
                msg.push_str(&format!(
                    " resource \"{resource}\" in API group \"{}\" in the namespace \"{}\"",
                    r.group, r.namespace
                ));
            }
            let qualified = if r.group.is_empty() {
                r.resource.clone()
            } else {
                format!("{}.{}", r.resource, r.group)
            };
            let mut d = json!({"kind": r.resource});
            if !r.group.is_empty() {
                d["group"] = json!(r.group);
            }
            if !r.name.is_empty() {
                d["name"] = json!(r.name);
            }
            (qualified, r.name.clone(), Some(d))
        }
        None => {
            msg.push_str(&format!(" path \"{}\"", a.path));
            (String::new(), String::new(), Some(json!({})))
        }
    };
    let message = match (qualified.is_empty(), name.is_empty()) {
        (true, _) => format!("forbidden: {msg}"),
        (false, true) => format!("{qualified} is forbidden: {msg}"),
        (false, false) => format!("{qualified} \"{name}\" is forbidden: {msg}"),
    };
    ApiError {
        code: 403,
        reason: "Forbidden",
        message,
        details,
    }
}

tokio::task_local! {
    /// Who made the request being handled: set by the router around the generic handlers,
    /// for the one check that depends on the writer rather than the request's path, RBAC's
    /// escalation rules ([`check_escalation`]). Unset (Dao's own internal writes): no check.
    pub static REQUESTER: Identity;
}

/// Whether `have` grants everything the single permission (one verb, group, resource or
/// `resource/subresource`, and name; `name` "" for "any name") asks for: what a request asks,
/// and what escalation checks a granted rule for (where wildcards asked for need wildcards
/// held).
fn covers_resource(have: &PolicyRule, verb: &str, group: &str, resource: &str, name: &str) -> bool {
    verb_matches(have, verb)
        && have
            .api_groups
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|g| g == "*" || g == group)
        && have
            .resources
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|r| {
                r == "*"
                    || r == resource
                    || r.strip_prefix("*/")
                        .is_some_and(|sub| resource.split_once('/').is_some_and(|(_, s)| s == sub))
            })
        && match have.resource_names.as_deref() {
            None | Some([]) => true,
            Some(names) => !name.is_empty() && names.iter().any(|n| n == name),
        }
}

fn covers_url(have: &PolicyRule, verb: &str, url: &str) -> bool {
    verb_matches(have, verb)
        && have
            .non_resource_urls
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|u| {
                u == "*" || u == url || u.strip_suffix('*').is_some_and(|p| url.starts_with(p))
            })
}

/// The parts of `wanted` that none of `held` grants, one line each in upstream's wording.
fn not_held(wanted: &[PolicyRule], held: &[PolicyRule]) -> Vec<String> {
    let mut missing = Vec::new();
    let q = |v: &[String]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for rule in wanted {
        for verb in &rule.verbs {
            for url in rule.non_resource_urls.iter().flatten() {
                if !held.iter().any(|h| covers_url(h, verb, url)) {
                    missing.push(format!("{{NonResourceURLs:[{url:?}], Verbs:[{verb:?}]}}"));
                }
            }
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    let names = rule.resource_names.clone().filter(|n| !n.is_empty());
                    let names = names.unwrap_or_else(|| vec![String::new()]);
                    for name in &names {
                        if held
                            .iter()
                            .any(|h| covers_resource(h, verb, group, resource, name))
                        {
                            continue;
                        }
                        let mut line = format!(
                            "{{APIGroups:[{}], Resources:[{}]",
                            q(std::slice::from_ref(group)),
                            q(std::slice::from_ref(resource))
                        );
                        if !name.is_empty() {
                            line.push_str(&format!(", ResourceNames:[{name:?}]"));
                        }
                        line.push_str(&format!(", Verbs:[{verb:?}]}}"));
                        missing.push(line);
                    }
                }
            }
        }
    }
    missing
}

/// Upstream's escalation prevention, for a Role, ClusterRole, RoleBinding or
/// ClusterRoleBinding about to be written by [`REQUESTER`]: a role may only hold rules its
/// writer holds (or the writer may `escalate` it), a binding may only grant a role whose rules
/// its writer holds (or the writer may `bind` it). Without it, anyone allowed to write
/// RoleBindings could bind themselves `cluster-admin`.
pub fn check_escalation(
    rbac: &RbacIndex,
    res: &crate::registry::Resource,
    namespace: Option<&str>,
    obj: &Value,
) -> Result<(), ApiError> {
    if res.group != "rbac.authorization.k8s.io" {
        return Ok(());
    }
    let Ok(who) = REQUESTER.try_with(Identity::clone) else {
        return Ok(());
    };
    if is_master(&who) {
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let namespace = match namespace {
        Some(ns) if res.namespaced => ns.to_owned(),
        _ => String::new(),
    };
    let may = |verb: &str, resource: &str, name: &str| Attributes {
        verb: verb.into(),
        resource: Some(ResourceAttributes {
            group: "rbac.authorization.k8s.io".into(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: namespace.clone(),
            name: name.into(),
        }),
        path: String::new(),
    };
    let wanted: Vec<PolicyRule> = match res.kind {
        "Role" | "ClusterRole" => {
            if authorize(rbac, &who, &may("escalate", res.plural, &name)).allowed {
                return Ok(());
            }
            serde_json::from_value(obj["rules"].clone()).unwrap_or_default()
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let role_ref = &obj["roleRef"];
            let (kind, role) = (
                role_ref["kind"].as_str().unwrap_or(""),
                role_ref["name"].as_str().unwrap_or(""),
            );
            let plural = if kind == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            if authorize(rbac, &who, &may("bind", plural, role)).allowed {
                return Ok(());
            }
            let kind = if kind == "Role" {
                "Role"
            } else {
                "ClusterRole"
            };
            rbac.read(|objects| role_rules(objects, kind, &namespace, role))
                .map(|rules| rules.to_vec())
                .unwrap_or_default()
        }
        _ => return Ok(()),
    };
    let held: Vec<PolicyRule> = held_rules(rbac, &who, &namespace)
        .iter()
        .flat_map(|rules| rules.iter().cloned())
        .collect();
    let missing = not_held(&wanted, &held);
    if missing.is_empty() {
        return Ok(());
    }
    let groups = who
        .groups
        .iter()
        .map(|g| format!("{g:?}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut why = format!(
        "user {:?} (groups=[{groups}]) is attempting to grant RBAC permissions not currently held:",
        who.user
    );
    for line in missing {
        why.push('\n');
        why.push_str(&line);
    }
    Err(ApiError::forbidden(&res.qualified_plural(), &name, &why))
}

/// The attributes a SubjectAccessReview-style spec asks about.
fn review_attributes(kind: &str, spec: &Value) -> Result<Attributes, ApiError> {
    let invalid = |field: &str, message: &str| {
        ApiError::invalid_kind(
            kind,
            "authorization.k8s.io",
            "",
            vec![Cause {
                reason: "FieldValueInvalid",
                field: field.into(),
                message: message.into(),
            }],
        )
    };
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    match (
        spec.get("resourceAttributes"),
        spec.get("nonResourceAttributes"),
    ) {
        (Some(r), None) if r.is_object() => Ok(Attributes {
            verb: s(&r["verb"]),
            resource: Some(ResourceAttributes {
                group: s(&r["group"]),
                resource: s(&r["resource"]),
                subresource: s(&r["subresource"]),
                namespace: s(&r["namespace"]),
                name: s(&r["name"]),
            }),
            path: String::new(),
        }),
        (None, Some(n)) if n.is_object() => Ok(Attributes {
            verb: s(&n["verb"]),
            resource: None,
            path: s(&n["path"]),
        }),
        (Some(_), Some(_)) => Err(invalid(
            "spec.nonResourceAttributes",
            "Invalid value: \"null\": cannot be specified in combination with resourceAttributes",
        )),
        _ => Err(invalid(
            "spec.resourceAttributes",
            "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
    }
}

/// `selfsubjectaccessreviews`, `subjectaccessreviews` and `localsubjectaccessreviews`
/// (`namespace` is the local review's path namespace): the body with `status` answered.
pub fn access_review(
    rbac: &RbacIndex,
    caller: &Identity,
    kind: &str,
    namespace: Option<&str>,
    body: &Value,
) -> Result<Value, ApiError> {
    let spec = &body["spec"];
    let a = review_attributes(kind, spec)?;
    let subject = if kind == "SelfSubjectAccessReview" {
        caller.clone()
    } else {
        let user = spec["user"].as_str().unwrap_or("").to_owned();
        let groups = crate::api::strings(&spec["groups"]);
        if user.is_empty() && groups.is_empty() {
            return Err(ApiError::invalid_kind(
                kind,
                "authorization.k8s.io",
                "",
                vec![Cause {
                    reason: "FieldValueRequired",
                    field: "spec.user".into(),
                    message: "Invalid value: \"\": at least one of user or group must be specified"
                        .into(),
                }],
            ));
        }
        let uid = spec["uid"].as_str().unwrap_or("").to_owned();
        let extra = spec["extra"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), crate::api::strings(v)))
                    .collect()
            })
            .unwrap_or_default();
        Identity {
            user,
            uid,
            groups,
            extra,
        }
    };
    if let Some(ns) = namespace {
        let asked = a.resource.as_ref().map(|r| r.namespace.as_str());
        if asked != Some(ns) {
            return Err(ApiError::invalid_kind(
                kind,
                "authorization.k8s.io",
                "",
                vec![Cause {
                    reason: "FieldValueInvalid",
                    field: "spec.resourceAttributes.namespace".into(),
                    message: format!(
                        "Invalid value: \"{}\": must match metadata.namespace",
                        asked.unwrap_or("")
                    ),
                }],
            ));
        }
    }
    let decision = authorize(rbac, &subject, &a);
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    let mut review = body.clone();
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!(kind);
    if review["metadata"].is_null() {
        review["metadata"] = json!({"creationTimestamp": null});
    }
    review["status"] = status;
    Ok(review)
}

/// `selfsubjectrulesreviews`: every rule the caller holds in `spec.namespace`.
pub fn rules_review(rbac: &RbacIndex, caller: &Identity, body: &Value) -> Value {
    let namespace = body["spec"]["namespace"].as_str().unwrap_or("");
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for rules in held_rules(rbac, caller, namespace) {
        for rule in rules.iter().cloned() {
            let v = serde_json::to_value(&rule).expect("a rule serializes");
            if !seen.insert(v.to_string()) {
                continue;
            }
            if rule
                .non_resource_urls
                .as_ref()
                .is_some_and(|u| !u.is_empty())
            {
                non_resource_rules
                    .push(json!({"verbs": rule.verbs, "nonResourceURLs": rule.non_resource_urls}));
            }
            if rule.resources.as_ref().is_some_and(|r| !r.is_empty()) {
                let mut r = json!({"verbs": rule.verbs, "apiGroups": rule.api_groups.unwrap_or_default(), "resources": rule.resources});
                if let Some(names) = rule.resource_names.filter(|n| !n.is_empty()) {
                    r["resourceNames"] = json!(names);
                }
                resource_rules.push(r);
            }
        }
    }
    json!({
        "kind": "SelfSubjectRulesReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": body["spec"].clone(),
        "status": {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource_rules,
            "incomplete": false,
        },
    })
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 5] = ["create", "delete", "deletecollection", "patch", "update"];

/// The rules of upstream's `view`, `edit` and `admin` roles for the resources Dao serves
/// (upstream builds them by aggregation; Dao stores them expanded).
fn view_rules() -> Vec<Value> {
    vec![
        rule(
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
            ],
            &READ,
        ),
        rule(
            &[""],
            &[
                "bindings",
                "events",
                "limitranges",
                "namespaces/status",
                "pods/log",
                "pods/status",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
            ],
            &READ,
        ),
        rule(&[""], &["namespaces"], &READ),
        rule(&["discovery.k8s.io"], &["endpointslices"], &READ),
        rule(
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
            &READ,
        ),
        rule(
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
            &READ,
        ),
        rule(
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            &READ,
        ),
        rule(
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            &READ,
        ),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
            &READ,
        ),
    ]
}

/// What `edit` holds beyond `view` (upstream's `system:aggregate-to-edit`).
fn edit_only_rules() -> Vec<Value> {
    vec![
        rule(
            &[""],
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
            &READ,
        ),
        rule(&[""], &["serviceaccounts"], &["impersonate"]),
        rule(
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
            ],
            &WRITE,
        ),
        rule(&[""], &["pods/eviction"], &["create"]),
        rule(
            &[""],
            &[
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
            &WRITE,
        ),
        rule(&[""], &["serviceaccounts/token"], &["create"]),
        rule(
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
            &WRITE,
        ),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], &WRITE),
        rule(&["batch"], &["cronjobs", "jobs"], &WRITE),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
            &WRITE,
        ),
        rule(&["policy"], &["poddisruptionbudgets"], &WRITE),
    ]
}

/// What `admin` holds beyond `edit` (upstream's `system:aggregate-to-admin`).
fn admin_only_rules() -> Vec<Value> {
    vec![
        rule(
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
            &["create"],
        ),
        rule(
            &["rbac.authorization.k8s.io"],
            &["rolebindings", "roles"],
            &crate::registry::VERBS,
        ),
    ]
}

/// The label through which a ClusterRole adds its rules to `admin`, `edit` or `view`.
const AGGREGATE_TO: &str = "rbac.authorization.k8s.io/aggregate-to-";

/// Upstream's bootstrap ClusterRoles and ClusterRoleBindings, as (key, object) for
/// [`crate::api::seed`]: created on a fresh store (and re-created when deleted, at the next
/// start); existing ones are brought up to date by [`reconciled`].
pub fn bootstrap() -> Vec<(String, Value)> {
    let discovery = [
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/openapi",
        "/openapi/*",
        "/readyz",
        "/version",
        "/version/",
    ];
    let public = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    let roles: Vec<(&str, Vec<Value>)> = vec![
        (
            "cluster-admin",
            vec![
                json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
                json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
            ],
        ),
        ("system:aggregate-to-admin", admin_only_rules()),
        ("system:aggregate-to-edit", edit_only_rules()),
        ("system:aggregate-to-view", view_rules()),
        (
            "system:discovery",
            vec![json!({"nonResourceURLs": discovery, "verbs": ["get"]})],
        ),
        (
            "system:public-info-viewer",
            vec![json!({"nonResourceURLs": public, "verbs": ["get"]})],
        ),
        (
            "system:service-account-issuer-discovery",
            vec![json!({"nonResourceURLs": [
                "/.well-known/openid-configuration",
                "/.well-known/openid-configuration/",
                "/openid/v1/jwks",
                "/openid/v1/jwks/",
            ], "verbs": ["get"]})],
        ),
        (
            "system:basic-user",
            vec![
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
            ],
        ),
    ];
    let bindings = [
        ("cluster-admin", "cluster-admin", "system:masters"),
        (
            "system:discovery",
            "system:discovery",
            "system:authenticated",
        ),
        (
            "system:public-info-viewer",
            "system:public-info-viewer",
            "system:authenticated",
        ),
        (
            "system:basic-user",
            "system:basic-user",
            "system:authenticated",
        ),
        (
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            "system:serviceaccounts",
        ),
    ];
    let meta = |name: &str| {
        json!({
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        })
    };
    // A ClusterRole; `part_of` names the aggregating role its rules go into.
    let cluster_role = |name: &str, rules: Vec<Value>, part_of: Option<&str>| {
        let mut obj = json!({
            "kind": "ClusterRole",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": meta(name),
            "rules": rules,
        });
        if let Some(to) = part_of {
            obj["metadata"]["labels"][format!("{AGGREGATE_TO}{to}")] = json!("true");
        }
        obj
    };
    let mut out = Vec::new();
    for (name, rules) in roles {
        let obj = cluster_role(name, rules, name.strip_prefix("system:aggregate-to-"));
        out.push((format!("{PREFIX}clusterroles/{name}"), obj));
    }
    // The user-facing roles aggregate (the controller manager keeps their rules current);
    // seeded with what aggregation gives them, so they work before it runs. `view` is
    // part of `edit`, `edit` of `admin`, as upstream labels them.
    let edit: Vec<Value> = edit_only_rules().into_iter().chain(view_rules()).collect();
    let admin: Vec<Value> = edit.iter().cloned().chain(admin_only_rules()).collect();
    for (name, rules, part_of) in [
        ("admin", admin, None),
        ("edit", edit, Some("admin")),
        ("view", view_rules(), Some("edit")),
    ] {
        let mut obj = cluster_role(name, rules, part_of);
        obj["aggregationRule"] = json!({"clusterRoleSelectors": [
            {"matchLabels": {format!("{AGGREGATE_TO}{name}"): "true"}},
        ]});
        out.push((format!("{PREFIX}clusterroles/{name}"), obj));
    }
    for (name, role, group) in bindings {
        let obj = json!({
            "kind": "ClusterRoleBinding",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": meta(name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
        });
        out.push((format!("{PREFIX}clusterrolebindings/{name}"), obj));
    }
    out
}

/// Upstream's start-time reconciliation of a bootstrap ClusterRole or ClusterRoleBinding
/// that exists already: unless annotated `rbac.authorization.kubernetes.io/autoupdate:
/// "false"`, it gains the expected labels and annotations it lacks, the expected rules it
/// lacks, the expected aggregation selectors it lacks, and the expected subjects it lacks.
/// Nothing is taken away, except that a binding whose roleRef differs from the expected one
/// (roleRef is immutable) comes back with the expected roleRef and the expected object's uid
/// and creationTimestamp: the caller deletes and recreates it, as upstream does. `None` when
/// nothing changes (and for every other kind).
pub fn reconciled(existing: &Value, expected: &Value) -> Option<Value> {
    let kind = expected["kind"].as_str()?;
    if !matches!(kind, "ClusterRole" | "ClusterRoleBinding")
        || existing["kind"] != expected["kind"]
        || existing
            .pointer("/metadata/annotations/rbac.authorization.kubernetes.io~1autoupdate")
            .and_then(Value::as_str)
            == Some("false")
    {
        return None;
    }
    let mut out = existing.clone();
    let mut changed = false;
    if kind == "ClusterRoleBinding" && existing["roleRef"] != expected["roleRef"] {
        out["roleRef"] = expected["roleRef"].clone();
        for field in ["uid", "creationTimestamp"] {
            out["metadata"][field] = expected["metadata"][field].clone();
        }
        changed = true;
    }
    for field in ["labels", "annotations"] {
        let Some(want) = expected["metadata"][field].as_object() else {
            continue;
        };
        for (k, v) in want {
            if out["metadata"][field].get(k).is_none() {
                out["metadata"][field][k] = v.clone();
                changed = true;
            }
        }
    }
    let lists: &[&[&str]] = if kind == "ClusterRole" {
        &[&["rules"], &["aggregationRule", "clusterRoleSelectors"]]
    } else {
        &[&["subjects"]]
    };
    for path in lists {
        let want = path.iter().try_fold(expected, |v, k| v.get(k));
        let Some(want) = want.and_then(Value::as_array) else {
            continue;
        };
        // Indexing makes the missing objects on the way, as the expected object has them.
        let have = path.iter().fold(&mut out, |v, k| &mut v[*k]);
        if !have.is_array() {
            *have = json!([]);
        }
        let have = have.as_array_mut().expect("made a list");
        for item in want {
            if !have.contains(item) {
                have.push(item.clone());
                changed = true;
            }
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_roles_gain_what_they_lack_unless_told_not_to() {
        let expected = bootstrap()
            .into_iter()
            .find(|(k, _)| k.ends_with("clusterroles/view"))
            .unwrap()
            .1;
        // As older Dao seeded it: expanded rules, no aggregation, no aggregate-to-edit label.
        let old = json!({
            "kind": "ClusterRole",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": "view", "uid": "u1", "labels": {"team": "x"},
                "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "rules": [rule(&["example.com"], &["widgets"], &["get"])],
        });
        let new = reconciled(&old, &expected).expect("changed");
        assert_eq!(new["metadata"]["uid"], "u1");
        assert_eq!(new["metadata"]["labels"]["team"], "x");
        assert_eq!(
            new["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"],
            "true"
        );
        assert_eq!(
            new["aggregationRule"],
            json!({"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]})
        );
        let rules = new["rules"].as_array().unwrap();
        assert_eq!(rules[0], old["rules"][0], "nothing is taken away");
        assert_eq!(rules.len(), 1 + expected["rules"].as_array().unwrap().len());
        assert_eq!(reconciled(&new, &expected), None, "once is enough");

        let mut pinned = old.clone();
        pinned["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] =
            json!("false");
        assert_eq!(reconciled(&pinned, &expected), None);

        let binding = bootstrap()
            .into_iter()
            .find(|(k, _)| k.ends_with("clusterrolebindings/cluster-admin"))
            .unwrap()
            .1;
        let mut emptied = binding.clone();
        emptied["subjects"] = json!([]);
        assert_eq!(
            reconciled(&emptied, &binding).unwrap()["subjects"],
            binding["subjects"]
        );
        let ns = json!({"kind": "Namespace", "metadata": {"name": "default"}});
        assert_eq!(reconciled(&ns, &ns), None);
    }

    #[test]
    fn a_binding_to_another_role_is_recreated_with_the_expected_role() {
        let mut expected = bootstrap()
            .into_iter()
            .find(|(k, _)| k.ends_with("clusterrolebindings/system:basic-user"))
            .unwrap()
            .1;
        expected["metadata"]["uid"] = json!("new-uid");
        let mut old = expected.clone();
        old["metadata"]["uid"] = json!("old-uid");
        old["roleRef"]["name"] = json!("view");
        old["subjects"] =
            json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"}]);
        let new = reconciled(&old, &expected).expect("changed");
        assert_eq!(new["roleRef"], expected["roleRef"]);
        assert_eq!(new["metadata"]["uid"], "new-uid", "a new object");
        let subjects = new["subjects"].as_array().unwrap();
        assert_eq!(
            subjects.len(),
            1 + expected["subjects"].as_array().unwrap().len()
        );
        assert_eq!(reconciled(&new, &expected), None);
    }

    fn attrs(method: &str, path: &str) -> Attributes {
        Attributes::from_request(method, path, false)
    }

    #[test]
    fn requests_parse_as_upstream_request_info() {
        let r =
            |verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str| Attributes {
                verb: verb.into(),
                resource: Some(ResourceAttributes {
                    group: group.into(),
                    resource: resource.into(),
                    subresource: sub.into(),
                    namespace: ns.into(),
                    name: name.into(),
                }),
                path: String::new(),
            };
        let cases = [
            (
                attrs("GET", "/api/v1/namespaces/a/pods"),
                r("list", "", "pods", "", "a", ""),
            ),
            (
                Attributes::from_request("GET", "/api/v1/pods", true),
                r("watch", "", "pods", "", "", ""),
            ),
            (
                attrs("GET", "/api/v1/namespaces/a/pods/p/log"),
                r("get", "", "pods", "log", "a", "p"),
            ),
            (
                attrs("POST", "/api/v1/namespaces/a/pods/p/eviction"),
                r("create", "", "pods", "eviction", "a", "p"),
            ),
            (
                attrs("PATCH", "/apis/apps/v1/namespaces/a/deployments/d/scale"),
                r("patch", "apps", "deployments", "scale", "a", "d"),
            ),
            (
                attrs("DELETE", "/api/v1/namespaces/a/configmaps"),
                r("deletecollection", "", "configmaps", "", "a", ""),
            ),
            (
                attrs("DELETE", "/api/v1/nodes/n"),
                r("delete", "", "nodes", "", "", "n"),
            ),
            (
                attrs("GET", "/api/v1/namespaces/a"),
                r("get", "", "namespaces", "", "a", "a"),
            ),
            (
                attrs("PUT", "/api/v1/namespaces/a/finalize"),
                r("update", "", "namespaces", "finalize", "a", "a"),
            ),
            (
                attrs("GET", "/api/v1/namespaces"),
                r("list", "", "namespaces", "", "", ""),
            ),
        ];
        for (got, mut want) in cases {
            want.path = got.path.clone();
            assert_eq!(got, want, "{}", got.path);
        }
        for path in ["/api", "/apis/apps/v1", "/metrics", "/openapi/v3"] {
            let a = attrs("GET", path);
            assert_eq!(
                (a.verb.as_str(), a.resource, a.path.as_str()),
                ("get", None, path)
            );
        }
    }

    #[test]
    fn decisions_come_from_the_bindings_that_name_the_subject() {
        let store_key = |plural: &str, rest: &str| format!("{PREFIX}{plural}/{rest}");
        let objects: Vec<(String, Value)> = vec![
            (
                store_key("clusterroles", "pod-reader"),
                json!({"metadata": {"name": "pod-reader"},
                    "rules": [rule(&[""], &["pods"], &["get", "list"])]}),
            ),
            (
                store_key("roles", "team/cm-writer"),
                json!({"metadata": {"name": "cm-writer", "namespace": "team"},
                    "rules": [rule(&[""], &["configmaps"], &["create"])]}),
            ),
            // Everyone authenticated may read pods in every namespace ...
            (
                store_key("clusterrolebindings", "readers"),
                json!({"metadata": {"name": "readers"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pod-reader"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}]}),
            ),
            // ... carol may create ConfigMaps in "team" only ...
            (
                store_key("rolebindings", "team/carol-writes"),
                json!({"metadata": {"name": "carol-writes", "namespace": "team"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-writer"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}]}),
            ),
            // ... and a binding to a role that does not exist grants nothing.
            (
                store_key("rolebindings", "team/dangling"),
                json!({"metadata": {"name": "dangling", "namespace": "team"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}]}),
            ),
        ];
        let encoded: Vec<(String, Vec<u8>)> = objects
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::to_vec(v).unwrap()))
            .collect();
        let index = RbacIndex::fixed(encoded.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
        let carol = Identity {
            user: "carol".into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        };
        let dave = Identity {
            user: "dave".into(),
            ..Default::default()
        };
        let decide =
            |who: &Identity, method: &str, path: &str| authorize(&index, who, &attrs(method, path));
        assert_eq!(
            decide(&carol, "GET", "/api/v1/namespaces/other/pods").reason,
            "RBAC: allowed by ClusterRoleBinding \"readers\" of ClusterRole \"pod-reader\" to Group \"system:authenticated\""
        );
        assert_eq!(
            decide(&carol, "POST", "/api/v1/namespaces/team/configmaps").reason,
            "RBAC: allowed by RoleBinding \"carol-writes/team\" of Role \"cm-writer\" to User \"carol\""
        );
        for (who, method, path) in [
            (&carol, "POST", "/api/v1/namespaces/other/configmaps"),
            (&carol, "DELETE", "/api/v1/namespaces/team/pods/p"),
            (&dave, "GET", "/api/v1/namespaces/team/pods"),
        ] {
            assert_eq!(
                decide(who, method, path),
                Decision {
                    allowed: false,
                    reason: String::new()
                },
                "{} {method} {path}",
                who.user
            );
        }
        let held: Vec<PolicyRule> = held_rules(&index, &carol, "team")
            .iter()
            .flat_map(|r| r.iter().cloned())
            .collect();
        assert_eq!(
            serde_json::to_value(&held).unwrap(),
            json!([
                rule(&[""], &["pods"], &["get", "list"]),
                rule(&[""], &["configmaps"], &["create"])
            ])
        );
    }

    #[test]
    fn rules_match_as_upstream_rbac() {
        let rule =
            |groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]| PolicyRule {
                api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
                resources: Some(resources.iter().map(|s| s.to_string()).collect()),
                verbs: verbs.iter().map(|s| s.to_string()).collect(),
                resource_names: (!names.is_empty())
                    .then(|| names.iter().map(|s| s.to_string()).collect()),
                non_resource_urls: None,
            };
        let pods_read = rule(&[""], &["pods"], &["get", "list"], &[]);
        assert!(rule_allows(
            &pods_read,
            &attrs("GET", "/api/v1/namespaces/a/pods")
        ));
        assert!(!rule_allows(
            &pods_read,
            &attrs("DELETE", "/api/v1/namespaces/a/pods/p")
        ));
        // A subresource needs its own entry; `*/scale` covers every scale.
        assert!(!rule_allows(
            &pods_read,
            &attrs("GET", "/api/v1/namespaces/a/pods/p/log")
        ));
        let scales = rule(&["apps"], &["*/scale"], &["*"], &[]);
        assert!(rule_allows(
            &scales,
            &attrs("PUT", "/apis/apps/v1/namespaces/a/deployments/d/scale")
        ));
        assert!(!rule_allows(
            &scales,
            &attrs("PUT", "/apis/apps/v1/namespaces/a/deployments/d")
        ));
        // Groups must match; `*` matches every group and resource, subresources included.
        assert!(!rule_allows(
            &pods_read,
            &attrs("GET", "/apis/apps/v1/namespaces/a/deployments")
        ));
        let all = rule(&["*"], &["*"], &["*"], &[]);
        assert!(rule_allows(
            &all,
            &attrs("GET", "/api/v1/namespaces/a/pods/p/log")
        ));
        // resourceNames: only requests naming one of them.
        let one = rule(
            &[""],
            &["configmaps"],
            &["get", "list", "update"],
            &["settings"],
        );
        assert!(rule_allows(
            &one,
            &attrs("GET", "/api/v1/namespaces/a/configmaps/settings")
        ));
        assert!(!rule_allows(
            &one,
            &attrs("GET", "/api/v1/namespaces/a/configmaps/other")
        ));
        assert!(!rule_allows(
            &one,
            &attrs("GET", "/api/v1/namespaces/a/configmaps")
        ));
        // Non-resource URLs: exact, or a prefix ending in `*`; resource rules never match them.
        let urls = PolicyRule {
            non_resource_urls: Some(vec!["/healthz".into(), "/apis/*".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        };
        assert!(rule_allows(&urls, &attrs("GET", "/healthz")));
        assert!(rule_allows(&urls, &attrs("GET", "/apis/apps/v1")));
        assert!(!rule_allows(&urls, &attrs("GET", "/metrics")));
        assert!(!rule_allows(&urls, &attrs("POST", "/healthz")));
        assert!(!rule_allows(&all, &attrs("GET", "/metrics")));
    }

    #[test]
    fn forbidden_messages_read_as_upstream() {
        let who = Identity {
            user: "system:serviceaccount:a:builder".into(),
            ..Identity::default()
        };
        let m = |path: &str, method: &str| forbidden(&who, &attrs(method, path)).message;
        assert_eq!(
            m("/api/v1/namespaces/a/pods", "GET"),
            "pods is forbidden: User \"system:serviceaccount:a:builder\" cannot list resource \"pods\" in API group \"\" in the namespace \"a\""
        );
        assert_eq!(
            m("/apis/apps/v1/namespaces/a/deployments/web/scale", "PATCH"),
            "deployments.apps \"web\" is forbidden: User \"system:serviceaccount:a:builder\" cannot patch resource \"deployments/scale\" in API group \"apps\" in the namespace \"a\""
        );
        assert_eq!(
            m("/api/v1/nodes", "GET"),
            "nodes is forbidden: User \"system:serviceaccount:a:builder\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        );
        assert_eq!(
            m("/metrics", "GET"),
            "forbidden: User \"system:serviceaccount:a:builder\" cannot get path \"/metrics\""
        );
    }

    #[test]
    fn only_held_permissions_may_be_granted() {
        let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| PolicyRule {
            api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
            resources: Some(resources.iter().map(|s| s.to_string()).collect()),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let held = [
            rule(&[""], &["pods", "configmaps"], &["get", "list"]),
            rule(&["apps"], &["*"], &["*"]),
        ];
        assert!(not_held(&[rule(&[""], &["pods"], &["get"])], &held).is_empty());
        assert!(
            not_held(
                &[rule(&["apps"], &["deployments/scale"], &["update"])],
                &held
            )
            .is_empty()
        );
        assert_eq!(
            not_held(
                &[rule(&[""], &["pods", "secrets"], &["get", "delete"])],
                &held
            ),
            [
                "{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}",
                "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}",
                "{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"delete\"]}",
            ]
        );
        // A wildcard asked for needs a wildcard held.
        assert_eq!(not_held(&[rule(&[""], &["*"], &["get"])], &held).len(), 1);
        assert!(
            not_held(
                &[rule(&["*"], &["*"], &["*"])],
                &[rule(&["*"], &["*"], &["*"])]
            )
            .is_empty()
        );
        let urls = PolicyRule {
            non_resource_urls: Some(vec!["/metrics".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        };
        assert_eq!(not_held(std::slice::from_ref(&urls), &held).len(), 1);
        assert!(
            not_held(
                std::slice::from_ref(&urls),
                &[PolicyRule {
                    non_resource_urls: Some(vec!["/*".into()]),
                    verbs: vec!["*".into()],
                    ..Default::default()
                }]
            )
            .is_empty()
        );
    }
}
