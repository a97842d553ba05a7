//! OpenAPI v3 documents: the index at `/openapi/v3` and one document per group-version.
//!
//! Today they describe paths and operations, including the `fieldValidation` parameter and
//! the `x-kubernetes-group-version-kind` extension, which is what kubectl checks before it
//! lets the server validate fields. Component schemas (for `kubectl explain`) are not served
//! yet.

use serde_json::{Value, json};

use crate::registry::{self, RESOURCES, Resource};

/// Changes whenever the documents can change: with the binary.
const HASH: &str = concat!("dao-", env!("CARGO_PKG_VERSION"));

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`
pub fn index() -> Value {
    let mut paths = serde_json::Map::new();
    for (group, versions) in registry::group_versions() {
        for version in versions {
            let p = gv_path(group, version);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={HASH}")}),
            );
        }
    }
    json!({ "paths": paths })
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(r: &Resource, action: &str, params: &[&str]) -> Value {
    json!({
        "operationId": format!("{action}{}{}", r.kind, if r.namespaced { "Namespaced" } else { "" }),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": params.iter().map(|p| param(p)).collect::<Vec<_>>(),
        "responses": {"200": {"description": "OK"}, "401": {"description": "Unauthorized"}},
    })
}

/// `GET /openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`.
pub fn group_version(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    let base = format!("/{}", gv_path(group, version));
    let write_params = ["dryRun", "fieldManager", "fieldValidation", "pretty"];
    for r in resources {
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        paths.insert(
            collection.clone(),
            json!({
                "get": operation(r, "list", &["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "watch"]),
                "post": operation(r, "post", &write_params),
                "delete": operation(r, "deletecollection", &["labelSelector", "fieldSelector"]),
            }),
        );
        let mut item = json!({
            "get": operation(r, "get", &["pretty"]),
            "put": operation(r, "put", &write_params),
            "patch": operation(r, "patch", &["dryRun", "fieldManager", "fieldValidation", "force", "pretty"]),
            "delete": operation(r, "delete", &["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
        });
        item["parameters"] =
            json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}]);
        paths.insert(format!("{collection}/{{name}}"), item);
        for sub in r
            .subresources
            .iter()
            .filter(|s| matches!(**s, "status" | "scale"))
        {
            paths.insert(
                format!("{collection}/{{name}}/{sub}"),
                json!({
                    "get": operation(r, "get", &["pretty"]),
                    "put": operation(r, "put", &write_params),
                    "patch": operation(r, "patch", &["dryRun", "fieldManager", "fieldValidation", "force", "pretty"]),
                }),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
