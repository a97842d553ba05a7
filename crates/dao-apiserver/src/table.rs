//! Server-side printing: `Table` responses with upstream's columns, for `kubectl get`.

use serde_json::{Value, json};

use crate::registry::Resource;

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

const NAME: Column = col(
    "Name",
    "string",
    "name",
    "The object's name, unique within its namespace.",
    0,
);
const AGE: Column = col("Age", "string", "", "Time since the object was created.", 0);

fn columns(res: &Resource) -> Vec<Column> {
    match (res.group, res.plural) {
        ("", "namespaces") => vec![
            NAME,
            col(
                "Status",
                "string",
                "",
                "The namespace's lifecycle phase.",
                0,
            ),
            AGE,
        ],
        ("", "configmaps") => vec![
            NAME,
            col(
                "Data",
                "string",
                "",
                "Number of keys in data and binaryData.",
                0,
            ),
            AGE,
        ],
        ("", "secrets") => vec![
            NAME,
            col("Type", "string", "", "The secret's type.", 0),
            col("Data", "string", "", "Number of keys in data.", 0),
            AGE,
        ],
        ("", "services") => vec![
            NAME,
            col("Type", "string", "", "How the service is exposed.", 0),
            col("Cluster-IP", "string", "", "The service's cluster IP.", 0),
            col(
                "External-IP",
                "string",
                "",
                "External addresses of the service.",
                0,
            ),
            col("Port(s)", "string", "", "Ports the service exposes.", 0),
            AGE,
            col(
                "Selector",
                "string",
                "",
                "The label selector of the service's pods.",
                1,
            ),
        ],
        ("", "serviceaccounts") => vec![
            NAME,
            col("Secrets", "string", "", "Number of secrets.", 0),
            AGE,
        ],
        ("apps", "deployments") => vec![
            NAME,
            col(
                "Ready",
                "string",
                "",
                "Ready replicas over desired replicas.",
                0,
            ),
            col(
                "Up-to-date",
                "string",
                "",
                "Replicas with the current pod template.",
                0,
            ),
            col("Available", "string", "", "Available replicas.", 0),
            AGE,
            col(
                "Containers",
                "string",
                "",
                "Names of the pod template's containers.",
                1,
            ),
            col(
                "Images",
                "string",
                "",
                "Images of the pod template's containers.",
                1,
            ),
            col(
                "Selector",
                "string",
                "",
                "The label selector of the pods.",
                1,
            ),
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

fn age(obj: &Value) -> String {
    obj.pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| human_duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()))
        .unwrap_or_else(|| "<unknown>".into())
}

fn count(obj: &Value, fields: &[&str]) -> i64 {
    fields
        .iter()
        .filter_map(|f| obj.get(*f).and_then(Value::as_object))
        .map(|m| m.len() as i64)
        .sum()
}

fn cells(res: &Resource, obj: &Value) -> Vec<Value> {
    let name = json!(
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    );
    let int = |p: &str| obj.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    match (res.group, res.plural) {
        ("", "namespaces") => vec![
            name,
            json!(
                obj.pointer("/status/phase")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            ),
            json!(age(obj)),
        ],
        ("", "configmaps") => vec![
            name,
            json!(count(obj, &["data", "binaryData"])),
            json!(age(obj)),
        ],
        ("", "secrets") => vec![
            name,
            json!(obj.get("type").and_then(Value::as_str).unwrap_or("Opaque")),
            json!(count(obj, &["data"])),
            json!(age(obj)),
        ],
        ("", "serviceaccounts") => vec![
            name,
            json!(
                obj.get("secrets")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
            ),
            json!(age(obj)),
        ],
        ("", "services") => {
            let kind = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ports| {
                    ports
                        .iter()
                        .map(|p| {
                            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                            match p.get("nodePort").and_then(Value::as_i64) {
                                Some(n) => format!("{port}:{n}/{proto}"),
                                None => format!("{port}/{proto}"),
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "<none>".into());
            let external = match kind {
                "LoadBalancer" => "<pending>".to_owned(),
                "ExternalName" => obj
                    .pointer("/spec/externalName")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                _ => "<none>".to_owned(),
            };
            // A Service's selector is a plain label map: a LabelSelector's matchLabels.
            let selector = obj
                .pointer("/spec/selector")
                .map(|m| json!({ "matchLabels": m }))
                .map(|sel| crate::selector::format_label_selector(Some(&sel)))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(kind),
                json!(
                    obj.pointer("/spec/clusterIP")
                        .and_then(Value::as_str)
                        .unwrap_or("<none>")
                ),
                json!(external),
                json!(ports),
                json!(age(obj)),
                json!(selector),
            ]
        }
        ("apps", "deployments") => {
            let containers = obj
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let join = |field: &str| {
                containers
                    .iter()
                    .filter_map(|c| c.get(field).and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let selector = crate::selector::format_label_selector(obj.pointer("/spec/selector"));
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int("/status/readyReplicas"),
                    obj.pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                )),
                json!(int("/status/updatedReplicas")),
                json!(int("/status/availableReplicas")),
                json!(age(obj)),
                json!(join("name")),
                json!(join("image")),
                json!(selector),
            ]
        }
        _ => vec![name, json!(age(obj))],
    }
}

/// A `meta.k8s.io/v1` Table of `objects`; rows carry the objects' metadata as
/// PartialObjectMetadata (upstream's default `includeObject=Metadata`).
pub fn for_objects(
    res: &Resource,
    objects: &[Value],
    list_metadata: Option<Value>,
    include_columns: bool,
) -> Value {
    let definitions: Vec<Value> = if include_columns {
        columns(res)
            .iter()
            .map(|c| json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority}))
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            json!({
                "cells": cells(res, obj),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
                },
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

#[cfg(test)]
mod tests {
    use super::human_duration;

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
}
