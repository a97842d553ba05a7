//! OpenAPI documents: the v3 index at `/openapi/v3`, one v3 document per group-version, and
//! the Swagger 2.0 document at `/openapi/v2`.
//!
//! Paths carry the operations with the `fieldValidation` parameter and the
//! `x-kubernetes-group-version-kind` extension, which is what kubectl checks before it lets
//! the server validate fields. Component schemas come from k8s-openapi's `JsonSchema` impls
//! (upstream's definition names and field descriptions); each kind's schema carries
//! `x-kubernetes-group-version-kind: [{group, version, kind}]`, through which `kubectl explain`
//! finds it. Every kind also gets a `{Kind}List` schema.
//!
//! The documents are big (core/v1 is about a megabyte), so they are built once, on the first
//! request, off the async workers, and kept serialized. The `hash` in the index is a hash of
//! each document's bytes: stable for one binary, and different whenever a document changes,
//! so clients may cache a hashed URL forever (`Cache-Control: immutable`, as upstream).
//!
//! `/openapi/v2` answers JSON or, for clients that prefer it (kubectl up to 1.28 asks for
//! nothing else), gnostic's protobuf `openapi.v2.Document`, converted from the JSON document
//! (`openapi_pb.rs`) as upstream derives it; both carry upstream's ETag, the SHA-512 of the
//! JSON bytes, and a matching `If-None-Match` gets 304.
//!
//! Not served: the patch extensions (`x-kubernetes-patch-merge-key`, ...) that k8s-openapi's
//! schemas lack, and request bodies (kubectl then computes strategic merge patches from its
//! built-in types, not from these documents).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::sync::LazyLock;
use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use crate::openapi_pb;
use crate::registry::{self, Resource};

const TITLE: &str = "Kubernetes";
const VERSION: &str = "v1.33.0";

/// Adds the k8s-openapi type of `r` (and all it references) to `generator`: its definition name and
/// a `$ref` schema pointing at it.
macro_rules! add_kind_fn {
    ($($group:literal $version:literal $kind:literal => $ty:ty),* $(,)?) => {
        fn add_kind(generator: &mut SchemaGenerator, r: &Resource) -> Option<(String, Schema)> {
            match (r.group, r.version, r.kind) {
                $(($group, $version, $kind) => Some((
                    <$ty as JsonSchema>::schema_name().into_owned(),
                    generator.subschema_for::<$ty>(),
                )),)*
                _ => None,
            }
        }
    };
}

crate::registry::kind_types!(add_kind_fn);

/// The two dialects: where definitions live and how parameters and responses are written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavor {
    /// Swagger 2.0: `#/definitions/`, `$ref` beside `description` as upstream writes it.
    V2,
    /// OpenAPI 3.0: `#/components/schemas/`, a described `$ref` wrapped in `allOf`.
    V3,
}

impl Flavor {
    fn ref_prefix(self) -> &'static str {
        match self {
            Flavor::V2 => "#/definitions/",
            Flavor::V3 => "#/components/schemas/",
        }
    }

    fn generator(self) -> SchemaGenerator {
        match self {
            Flavor::V2 => SchemaSettings::draft07().with(|s| {
                s.meta_schema = None;
                s.transforms.clear();
            }),
            Flavor::V3 => SchemaSettings::openapi3().with(|s| s.meta_schema = None),
        }
        .into_generator()
    }
}

/// The group-version-kind object, as operations and the schema extension carry it.
fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

/// Definitions for `resources` and everything they reference, with the GVK extension on each
/// kind and a `{Kind}List` for each. Returns them with each resource's definition name.
fn definitions(
    flavor: Flavor,
    resources: &[&'static Resource],
) -> (Map<String, Value>, Vec<(&'static Resource, String)>) {
    let mut generator = flavor.generator();
    let mut names = Vec::new();
    let mut lists = Vec::new();
    for &r in resources {
        let Some((name, reference)) = add_kind(&mut generator, r) else {
            debug_assert!(false, "no k8s-openapi type for {}", r.kind);
            continue;
        };
        names.push((r, name.clone()));
        if !lists_items(r) {
            continue;
        }
        let mut meta = generator.subschema_for::<ListMeta>();
        meta.insert(
            "description".into(),
            json!("Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"),
        );
        let list = json!({
            "description": format!("{}List is a list of {}.", r.kind, r.kind),
            "type": "object",
            "properties": {
                "apiVersion": {"description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources", "type": "string"},
                "kind": {"description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds", "type": "string"},
                "items": {"description": format!("List of {}.", r.plural), "type": "array", "items": reference},
                "metadata": meta,
            },
            "required": ["items"],
        });
        lists.push((format!("{name}List"), list));
    }
    for (name, list) in lists {
        let previous = generator.definitions_mut().insert(name.clone(), list);
        debug_assert!(previous.is_none(), "{name} is also a k8s-openapi type");
    }
    // A scale subresource reads and writes autoscaling/v1 Scale, described where it is used.
    let scales = resources.iter().any(|r| r.subresources.contains(&"scale"));
    if scales {
        generator.subschema_for::<Scale>();
    }
    let mut defs = generator.take_definitions(true);
    // k8s-openapi requires `metadata` because its resource types hold an `ObjectMeta`, not an
    // `Option`; upstream's types never require it.
    for def in defs.values_mut().filter_map(Value::as_object_mut) {
        if let Some(Value::Array(required)) = def.get_mut("required") {
            required.retain(|f| f != "metadata");
            if required.is_empty() {
                def.remove("required");
            }
        }
    }
    for (r, name) in &names {
        tag(&mut defs, name, r.group, r.version, r.kind);
        if !lists_items(r) {
            continue;
        }
        tag(
            &mut defs,
            &format!("{name}List"),
            r.group,
            r.version,
            &format!("{}List", r.kind),
        );
    }
    if scales {
        tag(&mut defs, SCALE, SCALE_GVK.0, SCALE_GVK.1, SCALE_GVK.2);
    }
    (defs, names)
}

/// Marks the definition `name` as the schema of a kind.
fn tag(defs: &mut Map<String, Value>, name: &str, group: &str, version: &str, kind: &str) {
    if let Some(Value::Object(def)) = defs.get_mut(name) {
        def.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([gvk(group, version, kind)]),
        );
    }
}

/// The definition a scale subresource's operations read and write, and its kind.
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
const SCALE_GVK: (&str, &str, &str) = ("autoscaling", "v1", "Scale");

/// Whether `r` is a stored resource with lists, not a create-only review.
fn lists_items(r: &Resource) -> bool {
    r.verbs.contains(&"list")
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn param(flavor: Flavor, name: &str) -> Value {
    match flavor {
        Flavor::V2 => json!({"name": name, "in": "query", "type": "string", "uniqueItems": true}),
        Flavor::V3 => {
            json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
        }
    }
}

fn operation(
    flavor: Flavor,
    r: &Resource,
    action: &str,
    params: &[&str],
    response: Option<&str>,
) -> Value {
    sub_operation(flavor, r, None, action, params, response)
}

/// An operation on `r`, or on its `sub`resource: the scale subresource's speak
/// autoscaling/v1 Scale (its operations carry that kind, as upstream's do, which is what
/// kubectl looks for before it lets the server validate an applied Scale).
fn sub_operation(
    flavor: Flavor,
    r: &Resource,
    sub: Option<&str>,
    action: &str,
    params: &[&str],
    response: Option<&str>,
) -> Value {
    let (group, version, kind) = match sub {
        Some("scale") => SCALE_GVK,
        _ => (r.group, r.version, r.kind),
    };
    let suffix = match sub {
        Some("scale") => "Scale",
        Some("status") => "Status",
        _ => "",
    };
    let mut ok = json!({"description": "OK"});
    if let Some(def) = response {
        let schema = json!({"$ref": format!("{}{def}", flavor.ref_prefix())});
        match flavor {
            Flavor::V2 => ok["schema"] = schema,
            Flavor::V3 => ok["content"] = json!({"application/json": {"schema": schema}}),
        }
    }
    json!({
        "operationId": format!("{action}{}{}{suffix}", r.kind, if r.namespaced { "Namespaced" } else { "" }),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(group, version, kind),
        "parameters": params.iter().map(|p| param(flavor, p)).collect::<Vec<_>>(),
        "responses": {"200": ok, "401": {"description": "Unauthorized"}},
    })
}

/// The paths of `resources` (each with its definition name), added to `paths`.
fn add_paths(flavor: Flavor, resources: &[(&Resource, String)], paths: &mut Map<String, Value>) {
    let write_params = ["dryRun", "fieldManager", "fieldValidation", "pretty"];
    let patch_params = [
        "dryRun",
        "fieldManager",
        "fieldValidation",
        "force",
        "pretty",
    ];
    let name_param = match flavor {
        Flavor::V2 => json!({"name": "name", "in": "path", "required": true, "type": "string"}),
        Flavor::V3 => {
            json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}})
        }
    };
    for (r, def) in resources {
        let list = format!("{def}List");
        let def = Some(def.as_str());
        let base = format!("/{}", gv_path(r.group, r.version));
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        if !lists_items(r) {
            // A review: POST to the collection is all there is.
            paths.insert(
                collection,
                json!({"post": operation(flavor, r, "post", &write_params, def)}),
            );
            continue;
        }
        let list_params = [
            "labelSelector",
            "fieldSelector",
            "limit",
            "continue",
            "resourceVersion",
            "watch",
        ];
        paths.insert(
            collection.clone(),
            json!({
                "get": operation(flavor, r, "list", &list_params, Some(&list)),
                "post": operation(flavor, r, "post", &write_params, def),
                "delete": operation(flavor, r, "deletecollection", &["labelSelector", "fieldSelector"], None),
            }),
        );
        let mut item = json!({
            "get": operation(flavor, r, "get", &["pretty"], def),
            "put": operation(flavor, r, "put", &write_params, def),
            "patch": operation(flavor, r, "patch", &patch_params, def),
            "delete": operation(flavor, r, "delete", &["dryRun", "gracePeriodSeconds", "propagationPolicy"], None),
        });
        item["parameters"] = json!([name_param]);
        paths.insert(format!("{collection}/{{name}}"), item);
        for sub in r
            .subresources
            .iter()
            .filter(|s| matches!(**s, "status" | "scale"))
        {
            let body = if *sub == "status" { def } else { Some(SCALE) };
            let op =
                |action, params: &[&str]| sub_operation(flavor, r, Some(sub), action, params, body);
            let mut ops = json!({
                "get": op("get", &["pretty"]),
                "put": op("put", &write_params),
                "patch": op("patch", &patch_params),
            });
            ops["parameters"] = json!([name_param]);
            paths.insert(format!("{collection}/{{name}}/{sub}"), ops);
        }
    }
}

/// The v3 document of one group-version.
fn v3_document(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<&'static Resource> = registry::discoverable()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let (schemas, names) = definitions(Flavor::V3, &resources);
    let mut paths = Map::new();
    add_paths(Flavor::V3, &names, &mut paths);
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The Swagger 2.0 document of every group-version.
pub(crate) fn v2_document() -> Value {
    let resources: Vec<&'static Resource> = registry::discoverable().collect();
    let (definitions, names) = definitions(Flavor::V2, &resources);
    let mut paths = Map::new();
    add_paths(Flavor::V2, &names, &mut paths);
    json!({
        "swagger": "2.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": paths,
        "definitions": definitions,
    })
}

/// A serialized document and the hash of its bytes.
struct Doc {
    hash: String,
    body: Bytes,
}

impl Doc {
    fn new(value: &Value) -> Doc {
        let body = serde_json::to_vec(value).expect("a JSON value serializes");
        // SipHash with fixed keys: the same bytes hash the same in one binary.
        let mut hasher = std::hash::DefaultHasher::new();
        body.hash(&mut hasher);
        Doc {
            hash: format!("{:016X}", hasher.finish()),
            body: Bytes::from(body),
        }
    }
}

/// Every v3 document (by "api/v1", "apis/apps/v1", ...) and the index that names them.
struct V3 {
    index: Bytes,
    docs: BTreeMap<String, Doc>,
}

static V3_DOCS: LazyLock<V3> = LazyLock::new(|| {
    let started = Instant::now();
    let mut docs = BTreeMap::new();
    for (group, versions) in registry::group_versions() {
        for version in versions {
            if let Some(doc) = v3_document(group, version) {
                docs.insert(gv_path(group, version), Doc::new(&doc));
            }
        }
    }
    let paths: Map<String, Value> = docs
        .iter()
        .map(|(p, doc)| {
            let url = format!("/openapi/v3/{p}?hash={}", doc.hash);
            (p.clone(), json!({"serverRelativeURL": url}))
        })
        .collect();
    let index = Bytes::from(json!({ "paths": paths }).to_string());
    tracing::info!(
        elapsed = ?started.elapsed(),
        bytes = docs.values().map(|d| d.body.len()).sum::<usize>(),
        "built the OpenAPI v3 documents"
    );
    V3 { index, docs }
});

/// The Swagger 2.0 document as JSON, with the validators both of its forms are served with.
struct V2 {
    json: Bytes,
    /// Upstream's ETag: the SHA-512 of the JSON bytes in upper-case hex, quoted; the protobuf
    /// form, made from the same JSON, has the same one.
    etag: HeaderValue,
    last_modified: HeaderValue,
}

static V2_DOC: LazyLock<V2> = LazyLock::new(|| {
    let started = Instant::now();
    let json = serde_json::to_vec(&v2_document()).expect("a JSON value serializes");
    let digest = ring::digest::digest(&ring::digest::SHA512, &json);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    let last_modified = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    tracing::info!(elapsed = ?started.elapsed(), bytes = json.len(), "built the OpenAPI v2 document");
    V2 {
        json: Bytes::from(json),
        etag: HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a header value"),
        last_modified: HeaderValue::from_str(&last_modified).expect("a date is a header value"),
    }
});

/// The JSON document converted to protobuf, as upstream converts its own, on the first request
/// that asks for it.
pub(crate) static V2_PROTOBUF: LazyLock<Bytes> = LazyLock::new(|| {
    let json: Value = serde_json::from_slice(&V2_DOC.json).expect("the v2 document is JSON");
    let started = Instant::now();
    let encoded = openapi_pb::document(&json);
    if !encoded.skipped.is_empty() {
        tracing::warn!(skipped = ?encoded.skipped, "OpenAPI v2 keys with no protobuf field");
    }
    tracing::info!(
        elapsed = ?started.elapsed(),
        bytes = encoded.bytes.len(),
        "built the OpenAPI v2 protobuf document"
    );
    Bytes::from(encoded.bytes)
});

/// Forces a lazily built document on a blocking thread: building takes a while, and the async
/// workers have other requests to serve meanwhile.
async fn built<T: Send + Sync>(lazy: &'static LazyLock<T>) -> &'static T {
    tokio::task::spawn_blocking(move || LazyLock::force(lazy))
        .await
        .expect("building an OpenAPI document does not panic")
}

fn json_body(body: Bytes, immutable: bool) -> Response {
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if immutable {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable, max-age=31536000"),
        );
    }
    response
}

/// `GET /openapi/v3`
pub async fn index() -> Response {
    json_body(built(&V3_DOCS).await.index.clone(), false)
}

/// `GET /openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`; `None` for a
/// group-version Dao does not serve. A request naming the current hash may be cached forever.
pub async fn group_version(group: &str, version: &str, query: Option<&str>) -> Option<Response> {
    if !registry::discoverable().any(|r| r.group == group && r.version == version) {
        return None;
    }
    let doc = built(&V3_DOCS).await.docs.get(&gv_path(group, version))?;
    let hashed = query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.strip_prefix("hash=") == Some(doc.hash.as_str()))
    });
    Some(json_body(doc.body.clone(), hashed))
}

/// The two representations of `/openapi/v2`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum V2Format {
    Json,
    Protobuf,
}

/// The media type upstream answers protobuf with, whichever of its two spellings was asked for.
const V2_PROTOBUF_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The representation of `/openapi/v2` an `Accept` header picks, as upstream picks it: the
/// media ranges by quality, a specific type before a wildcard of the same quality, and the
/// first that matches JSON or either spelling of the protobuf type (kubectl sends
/// `...spec.v2@v1.0+protobuf`, the older one) wins, JSON first; no header means `*/*`. `None`
/// when nothing matches.
fn v2_format(headers: &HeaderMap) -> Option<V2Format> {
    let accept = match headers.get(header::ACCEPT) {
        None => "*/*",
        Some(value) => value.to_str().ok()?,
    };
    let mut ranges: Vec<(f32, String, String)> = Vec::new();
    for clause in accept.split(',') {
        let mut parts = clause.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let (ty, subtype) = match media.split_once('/') {
            Some((t, s)) => (t.to_owned(), s.to_owned()),
            None if media == "*" => ("*".to_owned(), "*".to_owned()),
            None => continue,
        };
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        ranges.push((q, ty, subtype));
    }
    ranges.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then((a.1 == "*").cmp(&(b.1 == "*")))
            .then((a.2 == "*").cmp(&(b.2 == "*")))
    });
    let offers = [
        ("json", V2Format::Json),
        (
            "com.github.proto-openapi.spec.v2@v1.0+protobuf",
            V2Format::Protobuf,
        ),
        (
            "com.github.proto-openapi.spec.v2.v1.0+protobuf",
            V2Format::Protobuf,
        ),
    ];
    ranges.iter().find_map(|(_, ty, subtype)| {
        if ty != "application" && ty != "*" {
            return None;
        }
        offers
            .iter()
            .find(|(offer, _)| subtype == offer || subtype == "*")
            .map(|&(_, format)| format)
    })
}

/// Whether an `If-None-Match` header names `etag` (weakly compared, as Go's ServeContent does)
/// or is `*`.
fn none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(Ok(tags)) = headers.get(header::IF_NONE_MATCH).map(|v| v.to_str()) else {
        return false;
    };
    let etag = etag.to_str().unwrap_or("");
    tags.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// `GET /openapi/v2`: JSON or protobuf as the client's `Accept` prefers, with upstream's
/// `ETag`, `Last-Modified` and `Vary: Accept`; 304 when `If-None-Match` names the ETag, and
/// 406 with an empty body, as upstream, when neither form is acceptable.
pub async fn v2(headers: &HeaderMap) -> Response {
    let vary = (header::VARY, HeaderValue::from_static("Accept"));
    let Some(format) = v2_format(headers) else {
        return (StatusCode::NOT_ACCEPTABLE, [vary]).into_response();
    };
    let doc = built(&V2_DOC).await;
    let validators = [
        vary,
        (header::ETAG, doc.etag.clone()),
        (header::LAST_MODIFIED, doc.last_modified.clone()),
    ];
    if none_match(headers, &doc.etag) {
        // A body of unknown length, so that no `Content-Length: 0` goes out: a 304 may carry
        // only the length of the representation it stands for, and upstream sends none.
        let no_length =
            axum::body::Body::from_stream(futures::stream::empty::<Result<Bytes, Infallible>>());
        return (StatusCode::NOT_MODIFIED, validators, no_length).into_response();
    }
    let (content_type, body) = match format {
        V2Format::Json => ("application/json", doc.json.clone()),
        V2Format::Protobuf => (V2_PROTOBUF_TYPE, built(&V2_PROTOBUF).await.clone()),
    };
    (
        StatusCode::OK,
        validators,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in `value`.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    fn gv_doc(path: &str) -> Value {
        serde_json::from_slice(&V3_DOCS.docs[path].body).unwrap()
    }

    #[test]
    fn every_resource_has_a_type() {
        let mut generator = Flavor::V3.generator();
        for r in registry::discoverable() {
            assert!(add_kind(&mut generator, r).is_some(), "{}", r.kind);
        }
    }

    #[test]
    fn v3_refs_resolve_and_kinds_carry_their_gvk() {
        for (path, doc) in &V3_DOCS.docs {
            let doc: Value = serde_json::from_slice(&doc.body).unwrap();
            let schemas = doc["components"]["schemas"].as_object().unwrap();
            let mut found = Vec::new();
            refs(&doc, &mut found);
            assert!(!found.is_empty(), "{path}");
            for r in found {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("{path}: {r}"));
                assert!(schemas.contains_key(name), "{path}: {r} does not resolve");
            }
            // Each operation's GVK names a schema that lists it.
            for (p, item) in doc["paths"].as_object().unwrap() {
                for op in item.as_object().unwrap().values() {
                    let Some(gvk) = op.get("x-kubernetes-group-version-kind") else {
                        continue;
                    };
                    let tagged = schemas.values().filter(|s| {
                        s["x-kubernetes-group-version-kind"]
                            .as_array()
                            .is_some_and(|l| l.contains(gvk))
                    });
                    assert_eq!(tagged.count(), 1, "{path} {p}: {gvk}");
                }
            }
        }
        let gvs: usize = registry::group_versions()
            .iter()
            .map(|(_, vs)| vs.len())
            .sum();
        assert_eq!(V3_DOCS.docs.len(), gvs);
    }

    #[test]
    fn scale_subresources_speak_autoscaling_v1_scale() {
        // As upstream: the operations carry Scale's kind (kubectl's field-validation check
        // looks an applied Scale up by it) and read and write its schema, in both documents.
        let v2 = v2_document();
        let v3 = gv_doc("apis/apps/v1");
        let path = "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale";
        let scale = json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
        for (doc, response) in [
            (&v2, "/responses/200/schema/$ref"),
            (&v3, "/responses/200/content/application~1json/schema/$ref"),
        ] {
            let patch = &doc["paths"][path]["patch"];
            assert_eq!(patch["x-kubernetes-group-version-kind"], scale);
            assert_eq!(patch["operationId"], "patchDeploymentNamespacedScale");
            assert!(
                patch["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == "fieldValidation")
            );
            let target = patch.pointer(response).and_then(Value::as_str).unwrap();
            assert!(
                target.ends_with("/io.k8s.api.autoscaling.v1.Scale"),
                "{target}"
            );
        }
        assert_eq!(
            v2["definitions"]["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"],
            json!([scale])
        );
        // The status subresource keeps its resource's kind, under its own operation names.
        let status = &v3["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"];
        assert_eq!(
            status["put"]["operationId"],
            "putDeploymentNamespacedStatus"
        );
        assert_eq!(
            status["put"]["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
    }

    #[test]
    fn deployment_schema_has_upstream_shape() {
        let doc = gv_doc("apis/apps/v1");
        let schemas = &doc["components"]["schemas"];
        let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        // A described reference is wrapped in allOf, as upstream's v3 documents do.
        let spec = &deployment["properties"]["spec"];
        assert_eq!(
            spec["allOf"],
            json!([{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}])
        );
        assert!(
            spec["description"]
                .as_str()
                .unwrap()
                .contains("desired behavior")
        );
        let replicas = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"];
        assert_eq!(replicas["type"], "integer");
        assert!(
            replicas["description"]
                .as_str()
                .unwrap()
                .contains("Number of desired pods")
        );
        assert!(deployment.get("required").is_none(), "{deployment}");
        assert_eq!(
            schemas["io.k8s.api.apps.v1.DeploymentSpec"]["required"],
            json!(["selector", "template"])
        );
        // Transitively referenced core types are there.
        assert!(schemas["io.k8s.api.core.v1.Container"]["properties"]["image"].is_object());
        let list = &schemas["io.k8s.api.apps.v1.DeploymentList"];
        assert_eq!(
            list["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "DeploymentList"}])
        );
        // Core kinds carry an empty group, as kubectl compares the whole object.
        let core = gv_doc("api/v1");
        assert_eq!(
            core["components"]["schemas"]["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        assert!(
            gv_doc("apis/events.k8s.io/v1")["components"]["schemas"]["io.k8s.api.events.v1.Event"]
                .is_object()
        );
    }

    #[test]
    fn index_names_every_group_version_with_a_stable_hash() {
        let index: Value = serde_json::from_slice(&V3_DOCS.index).unwrap();
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        let hash = &V3_DOCS.docs["apis/apps/v1"].hash;
        assert_eq!(url, format!("/openapi/v3/apis/apps/v1?hash={hash}"));
        // Same document, same hash.
        let again = Doc::new(&v3_document("apps", "v1").unwrap());
        assert_eq!(&again.hash, hash);
        assert!(index["paths"]["api/v1"].is_object());
        assert!(index["paths"]["apis/autoscaling/v2"].is_object());
    }

    #[test]
    fn v2_refs_resolve() {
        let doc: Value = serde_json::from_slice(&V2_DOC.json).unwrap();
        assert_eq!(doc["swagger"], "2.0");
        let defs = doc["definitions"].as_object().unwrap();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        for r in found {
            let name = r.strip_prefix("#/definitions/").unwrap();
            assert!(defs.contains_key(name), "{r} does not resolve");
        }
        for r in registry::discoverable() {
            assert!(
                defs.values().any(|d| d["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|l| l.contains(&gvk(r.group, r.version, r.kind)))),
                "{} {}",
                r.api_version(),
                r.kind
            );
        }
        // Swagger 2.0 keeps the description beside the reference, as upstream's v2 does.
        let spec = &defs["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
        assert_eq!(
            spec["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
        assert!(doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"].is_object());
        assert_eq!(
            doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["parameters"][0]["type"],
            "string"
        );
    }

    #[test]
    fn v2_negotiates_json_and_protobuf() {
        let with = |accept: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
            v2_format(&h)
        };
        use V2Format::{Json, Protobuf};
        assert_eq!(v2_format(&HeaderMap::new()), Some(Json));
        assert_eq!(with("application/json"), Some(Json));
        assert_eq!(with("application/json, */*"), Some(Json));
        assert_eq!(with("*/*"), Some(Json));
        assert_eq!(with("application/*"), Some(Json));
        // What kubectl 1.27 and 1.28 send, and the newer spelling.
        assert_eq!(
            with("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
            Some(Protobuf)
        );
        assert_eq!(
            with("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
            Some(Protobuf)
        );
        // The preferred range wins, and a wildcard goes after a specific type of its quality.
        assert_eq!(
            with("application/com.github.proto-openapi.spec.v2@v1.0+protobuf, */*;q=0.1"),
            Some(Protobuf)
        );
        assert_eq!(
            with("*/*, application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
            Some(Protobuf)
        );
        assert_eq!(
            with(
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf;q=0.5, application/json"
            ),
            Some(Json)
        );
        assert_eq!(with("text/html"), None);
        assert_eq!(with("application/yaml"), None);
    }

    #[tokio::test]
    async fn v2_answers_each_form_with_upstreams_headers() {
        let get = |headers: &[(header::HeaderName, &str)]| {
            let mut h = HeaderMap::new();
            for (name, value) in headers {
                h.insert(name, HeaderValue::from_str(value).unwrap());
            }
            async move { v2(&h).await }
        };
        let proto = get(&[(
            header::ACCEPT,
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        )])
        .await;
        assert_eq!(proto.status(), StatusCode::OK);
        assert_eq!(proto.headers()[header::CONTENT_TYPE], V2_PROTOBUF_TYPE);
        assert_eq!(proto.headers()[header::VARY], "Accept");
        let etag = proto.headers()[header::ETAG].to_str().unwrap().to_owned();
        // A quoted SHA-512 in hex.
        assert_eq!(etag.len(), 2 + 128, "{etag}");
        assert!(etag.starts_with('"') && etag.ends_with('"'));
        let body = axum::body::to_bytes(proto.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(body, *V2_PROTOBUF);

        let json = get(&[(header::ACCEPT, "application/json")]).await;
        assert_eq!(json.status(), StatusCode::OK);
        assert_eq!(json.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(json.headers()[header::ETAG], etag.as_str());
        let body = axum::body::to_bytes(json.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(body, V2_DOC.json);

        let cached = get(&[
            (
                header::ACCEPT,
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            ),
            (header::IF_NONE_MATCH, &etag),
        ])
        .await;
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(cached.headers()[header::ETAG], etag.as_str());
        assert!(cached.headers().get(header::CONTENT_LENGTH).is_none());
        let stale = get(&[(header::IF_NONE_MATCH, "\"0\"")]).await;
        assert_eq!(stale.status(), StatusCode::OK);

        let refused = get(&[(header::ACCEPT, "text/html")]).await;
        assert_eq!(refused.status(), StatusCode::NOT_ACCEPTABLE);
        let body = axum::body::to_bytes(refused.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(body.is_empty());
    }
}
