//! Decoding of `application/vnd.kubernetes.protobuf` request bodies into JSON objects.
//!
//! kubectl's typed commands (`create namespace`, `create configmap`, `create secret`) send
//! protobuf; client-go does not fall back to JSON when a server refuses it. The envelope is
//! the 4-byte magic `k8s\0` followed by a `runtime.Unknown` message whose `raw` field holds
//! the object's own message. Only the kinds below are decoded so far; others get 415.
//! Field numbers follow upstream's `generated.proto` files.

use std::collections::BTreeMap;

use base64::Engine;
use prost::Message;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    content_encoding: Option<String>,
    #[prost(string, optional, tag = "4")]
    content_type: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Time {
    #[prost(int64, optional, tag = "1")]
    seconds: Option<i64>,
    #[prost(int32, optional, tag = "2")]
    nanos: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
struct OwnerReference {
    #[prost(string, optional, tag = "1")]
    kind: Option<String>,
    #[prost(string, optional, tag = "3")]
    name: Option<String>,
    #[prost(string, optional, tag = "4")]
    uid: Option<String>,
    #[prost(string, optional, tag = "5")]
    api_version: Option<String>,
    #[prost(bool, optional, tag = "6")]
    controller: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    block_owner_deletion: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    generate_name: Option<String>,
    #[prost(string, optional, tag = "3")]
    namespace: Option<String>,
    #[prost(string, optional, tag = "5")]
    uid: Option<String>,
    #[prost(string, optional, tag = "6")]
    resource_version: Option<String>,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: BTreeMap<String, String>,
    #[prost(message, repeated, tag = "13")]
    owner_references: Vec<OwnerReference>,
    #[prost(string, repeated, tag = "14")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ConfigMap {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, string", tag = "2")]
    data: BTreeMap<String, String>,
    #[prost(btree_map = "string, bytes", tag = "3")]
    binary_data: BTreeMap<String, Vec<u8>>,
    #[prost(bool, optional, tag = "4")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct Secret {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, bytes", tag = "2")]
    data: BTreeMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    r#type: Option<String>,
    #[prost(btree_map = "string, string", tag = "4")]
    string_data: BTreeMap<String, String>,
    #[prost(bool, optional, tag = "5")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct NamespaceSpec {
    #[prost(string, repeated, tag = "1")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Namespace {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    spec: Option<NamespaceSpec>,
}

fn insert_str(map: &mut Map<String, Value>, key: &str, value: Option<String>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        map.insert(key.into(), json!(v));
    }
}

fn metadata(meta: Option<ObjectMeta>) -> Value {
    let meta = meta.unwrap_or_default();
    let mut m = Map::new();
    insert_str(&mut m, "name", meta.name);
    insert_str(&mut m, "generateName", meta.generate_name);
    insert_str(&mut m, "namespace", meta.namespace);
    insert_str(&mut m, "uid", meta.uid);
    insert_str(&mut m, "resourceVersion", meta.resource_version);
    if !meta.labels.is_empty() {
        m.insert("labels".into(), json!(meta.labels));
    }
    if !meta.annotations.is_empty() {
        m.insert("annotations".into(), json!(meta.annotations));
    }
    if !meta.finalizers.is_empty() {
        m.insert("finalizers".into(), json!(meta.finalizers));
    }
    if !meta.owner_references.is_empty() {
        let refs: Vec<Value> = meta
            .owner_references
            .into_iter()
            .map(|r| {
                let mut o = Map::new();
                insert_str(&mut o, "apiVersion", r.api_version);
                insert_str(&mut o, "kind", r.kind);
                insert_str(&mut o, "name", r.name);
                insert_str(&mut o, "uid", r.uid);
                if let Some(c) = r.controller {
                    o.insert("controller".into(), json!(c));
                }
                if let Some(b) = r.block_owner_deletion {
                    o.insert("blockOwnerDeletion".into(), json!(b));
                }
                Value::Object(o)
            })
            .collect();
        m.insert("ownerReferences".into(), json!(refs));
    }
    Value::Object(m)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decode a protobuf body into the JSON object it stands for. `Ok(None)`: a kind this
/// server cannot decode yet.
pub fn decode(body: &[u8]) -> Result<Option<Value>, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("protobuf body does not start with the k8s envelope magic")?;
    let unknown =
        Unknown::decode(envelope).map_err(|e| format!("cannot decode protobuf envelope: {e}"))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let err = |e: prost::DecodeError| format!("cannot decode {kind} from protobuf: {e}");
    let mut obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "ConfigMap") => {
            let cm = ConfigMap::decode(raw.as_slice()).map_err(err)?;
            let mut o = json!({"metadata": metadata(cm.metadata)});
            if !cm.data.is_empty() {
                o["data"] = json!(cm.data);
            }
            if !cm.binary_data.is_empty() {
                let bin: BTreeMap<String, String> = cm
                    .binary_data
                    .iter()
                    .map(|(k, v)| (k.clone(), b64(v)))
                    .collect();
                o["binaryData"] = json!(bin);
            }
            if let Some(i) = cm.immutable {
                o["immutable"] = json!(i);
            }
            o
        }
        ("v1", "Secret") => {
            let s = Secret::decode(raw.as_slice()).map_err(err)?;
            let mut o = json!({"metadata": metadata(s.metadata)});
            if !s.data.is_empty() {
                let data: BTreeMap<String, String> =
                    s.data.iter().map(|(k, v)| (k.clone(), b64(v))).collect();
                o["data"] = json!(data);
            }
            if !s.string_data.is_empty() {
                o["stringData"] = json!(s.string_data);
            }
            if let Some(t) = s.r#type.filter(|t| !t.is_empty()) {
                o["type"] = json!(t);
            }
            if let Some(i) = s.immutable {
                o["immutable"] = json!(i);
            }
            o
        }
        ("v1", "Namespace") => {
            let ns = Namespace::decode(raw.as_slice()).map_err(err)?;
            let mut o = json!({"metadata": metadata(ns.metadata)});
            if let Some(spec) = ns.spec.filter(|s| !s.finalizers.is_empty()) {
                o["spec"] = json!({"finalizers": spec.finalizers});
            }
            o
        }
        _ => return Ok(None),
    };
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(Some(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let u = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut body = MAGIC.to_vec();
        body.extend(u.encode_to_vec());
        body
    }

    #[test]
    fn configmap_secret_namespace() {
        let cm = ConfigMap {
            metadata: Some(ObjectMeta {
                name: Some("x".into()),
                labels: BTreeMap::from([("a".into(), "b".into())]),
                ..Default::default()
            }),
            data: BTreeMap::from([("k".into(), "v".into())]),
            ..Default::default()
        };
        let obj = decode(&envelope("v1", "ConfigMap", cm.encode_to_vec()))
            .unwrap()
            .unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"a": "b"}}, "data": {"k": "v"}})
        );

        let secret = Secret {
            metadata: Some(ObjectMeta {
                name: Some("s".into()),
                ..Default::default()
            }),
            data: BTreeMap::from([("p".into(), b"q".to_vec())]),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let obj = decode(&envelope("v1", "Secret", secret.encode_to_vec()))
            .unwrap()
            .unwrap();
        assert_eq!(obj["data"]["p"], "cQ==");
        assert_eq!(obj["type"], "Opaque");

        let ns = Namespace {
            metadata: Some(ObjectMeta {
                name: Some("n".into()),
                ..Default::default()
            }),
            spec: None,
        };
        let obj = decode(&envelope("v1", "Namespace", ns.encode_to_vec()))
            .unwrap()
            .unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}})
        );

        assert_eq!(
            decode(&envelope("apps/v1", "Deployment", vec![])).unwrap(),
            None
        );
        assert!(decode(b"not protobuf").is_err());
    }
}
