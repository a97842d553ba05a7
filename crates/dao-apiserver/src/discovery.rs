//! Discovery: the legacy documents (`/api`, `/apis`, per group-version resource lists) and
//! aggregated discovery (`apidiscovery.k8s.io/v2`) when the client asks for it.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::registry::{self, Resource};

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Subresources whose handlers exist; discovery advertises only those.
const SERVED_SUBRESOURCES: [&str; 5] = ["status", "scale", "binding", "eviction", "token"];

/// The verbs of a subresource: `binding`, `eviction` and `token` are create-only, the others
/// read and write.
fn sub_verbs(sub: &str) -> Value {
    match sub {
        "binding" | "eviction" | "token" => json!(["create"]),
        _ => json!(["get", "patch", "update"]),
    }
}

fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',').any(|t| {
                t.contains("g=apidiscovery.k8s.io")
                    && t.contains("v=v2")
                    && !t.contains("v=v2beta1")
                    && t.contains("as=APIGroupDiscoveryList")
            })
        })
}

fn respond(content_type: &'static str, body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        body.to_string(),
    )
        .into_response()
}

fn sub_kind(r: &Resource, sub: &str) -> Value {
    if sub == "scale" {
        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
    } else if sub == "binding" {
        json!({"group": "", "version": "", "kind": "Binding"})
    } else if sub == "eviction" {
        json!({"group": "policy", "version": "v1", "kind": "Eviction"})
    } else if sub == "token" {
        json!({"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"})
    } else {
        json!({"group": "", "version": "", "kind": r.kind})
    }
}

fn aggregated_resource(r: &Resource) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": "", "version": "", "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    let subs: Vec<Value> = r
        .subresources
        .iter()
        .filter(|s| SERVED_SUBRESOURCES.contains(s))
        .map(|s| json!({"subresource": s, "responseKind": sub_kind(r, s), "verbs": sub_verbs(s)}))
        .collect();
    if !subs.is_empty() {
        v["subresources"] = json!(subs);
    }
    v
}

fn aggregated_group(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = registry::discoverable()
                .filter(|r| r.group == group && r.version == *v)
                .map(aggregated_resource)
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    json!({"metadata": metadata, "versions": versions})
}

fn aggregated_list(items: Vec<Value>) -> Response {
    respond(
        AGGREGATED,
        json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}),
    )
}

/// `GET /api`
pub fn core(headers: &HeaderMap) -> Response {
    if wants_aggregated(headers) {
        return aggregated_list(vec![aggregated_group("", &["v1"])]);
    }
    respond(
        "application/json",
        json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}),
    )
}

/// `GET /apis`
pub fn groups(headers: &HeaderMap) -> Response {
    let gvs: Vec<_> = registry::group_versions()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .collect();
    if wants_aggregated(headers) {
        return aggregated_list(gvs.iter().map(|(g, vs)| aggregated_group(g, vs)).collect());
    }
    let groups: Vec<Value> = gvs
        .iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    respond(
        "application/json",
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

/// `GET /apis/{group}`: the group's versions, or None if there is no such group.
pub fn group(name: &str) -> Option<Response> {
    let (g, vs) = registry::group_versions()
        .into_iter()
        .find(|(g, _)| *g == name && !g.is_empty())?;
    let versions: Vec<Value> = vs
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    Some(respond(
        "application/json",
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": versions, "preferredVersion": versions[0]}),
    ))
}

/// `GET /api/v1` or `/apis/{group}/{version}`: None if there is no such group-version.
pub fn resources(group: &str, version: &str) -> Option<Response> {
    let mut list = Vec::new();
    for r in registry::discoverable().filter(|r| r.group == group && r.version == version) {
        let mut v = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            v["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            v["categories"] = json!(r.categories);
        }
        list.push(v);
        for s in r
            .subresources
            .iter()
            .filter(|s| SERVED_SUBRESOURCES.contains(s))
        {
            let mut entry = json!({"name": format!("{}/{s}", r.plural), "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": sub_verbs(s)});
            if *s == "binding" {
                entry["kind"] = json!("Binding");
            }
            if *s == "token" {
                entry["group"] = json!("authentication.k8s.io");
                entry["version"] = json!("v1");
                entry["kind"] = json!("TokenRequest");
            }
            if *s == "eviction" {
                // kubectl drain finds the Eviction's group-version here.
                entry["group"] = json!("policy");
                entry["version"] = json!("v1");
                entry["kind"] = json!("Eviction");
            }
            if *s == "scale" {
                entry["group"] = json!("autoscaling");
                entry["version"] = json!("v1");
                entry["kind"] = json!("Scale");
            }
            list.push(entry);
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(respond(
        "application/json",
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    ))
}
