//! The generic resource handlers: one implementation of get, list, watch, create, update,
//! patch and delete for every row of the registry.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dao_store::{
    Event, EventKind, Expect, KeyValue, Outcome, RangeRequest, Revision, Store, WatchMessage,
    WatchRequest,
};
use futures::StreamExt;
use serde_json::{Value, json};
use tracing::warn;

use crate::registry::{self, Resource};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Cause};
use crate::table;

/// Upstream's request body limit.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

pub struct ApiState {
    pub store: Arc<dyn Store>,
    /// Signs and checks service account tokens (`None`: TokenRequest is unavailable).
    pub tokens: Option<crate::auth::TokenSigner>,
    /// The roles and bindings RBAC authorizes from.
    pub rbac: Arc<crate::rbac::RbacIndex>,
}

impl ApiState {
    /// After a write at `revision` to an object of `res`: when it is an RBAC object, wait
    /// until the authorizer's index holds it, so the writer's next request is authorized by
    /// what it just wrote.
    async fn settle(&self, res: &Resource, revision: Revision) {
        if res.group == "rbac.authorization.k8s.io" {
            self.rbac.caught_up(revision).await;
        }
    }
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

/// What a resource path names.
#[derive(Debug)]
pub struct Target {
    pub res: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parse `/api/v1/...` or `/apis/{group}/{version}/...` into a target. `Ok(None)` is the
/// group-version's discovery document.
pub fn parse_path(path: &str) -> ApiResult<Option<Target>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found_path()),
    };
    let rest: Vec<&str> = rest.iter().copied().filter(|s| !s.is_empty()).collect();
    if rest.is_empty() {
        return Ok(None);
    }
    let lookup = |plural: &str| registry::find(group, version, plural).ok_or_else(not_found_path);
    let target = |res, namespace: Option<&str>, name: Option<&&str>, sub: Option<&&str>| Target {
        res,
        namespace: namespace.map(str::to_owned),
        name: name.map(|s| s.to_string()),
        subresource: sub.map(|s| s.to_string()),
    };
    // `namespaces/{ns}/{plural}...` names namespaced objects unless the third segment is a
    // subresource of the namespace itself.
    if rest[0] == "namespaces"
        && rest.len() >= 3
        && let Some(res) = registry::find(group, version, rest[2]).filter(|r| r.namespaced)
    {
        if rest.len() > 5 {
            return Err(not_found_path());
        }
        return Ok(Some(target(res, Some(rest[1]), rest.get(3), rest.get(4))));
    }
    let res = lookup(rest[0])?;
    if rest.len() > 3 {
        return Err(not_found_path());
    }
    Ok(Some(target(res, None, rest.get(1), rest.get(2))))
}

pub(crate) fn not_found_path() -> ApiError {
    ApiError {
        code: 404,
        reason: "NotFound",
        message: "the server could not find the requested resource".into(),
        details: None,
    }
}

/// Query parameters, decoded once.
#[derive(Default, Debug)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let mut map = HashMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(percent_decode(k), percent_decode(v));
        }
        Query(map)
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1"))
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How the client wants lists and objects: plain JSON or a server-side printed Table.
/// The representation a read asked for with its `Accept` header's first media range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    /// The objects themselves.
    Object,
    /// A `meta.k8s.io/v1` Table (kubectl get), rows carrying what `includeObject` asks for.
    Table(table::Include),
    /// `PartialObjectMetadata` (and `...List`): metadata only, as metadata informers ask.
    Metadata,
    /// The objects without `metadata.managedFields`, in lists and watch events: what Dao's
    /// in-process scheduler and controllers read (see [`crate::LocalCaller`]). Upstream's
    /// kube-scheduler and kube-controller-manager drop managedFields from their informer
    /// caches; leaving them out on the server spares encoding and decoding them too.
    Trimmed,
}

impl Output {
    fn from_headers(headers: &HeaderMap) -> Output {
        let first = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .and_then(|a| a.split(',').next())
            .unwrap_or("");
        if first.contains("as=Table") {
            Output::Table(table::Include::Metadata)
        } else if first.contains("as=PartialObjectMetadata") {
            Output::Metadata
        } else {
            Output::Object
        }
    }
}

const PARTIAL_HEAD: &[u8] =
    br#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":"#;

/// An object without its managedFields (see [`Output::Trimmed`]).
fn trim(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
}

/// An object as `PartialObjectMetadata`.
fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

pub fn json_response(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).expect("a JSON value serializes"),
    )
        .into_response()
}

/// Create the objects a server starts with (namespaces, bootstrap roles, system priority
/// classes), each only if missing, all at once so the store commits them together. Each gets
/// its uid and creationTimestamp here. An object that exists already is given to `reconcile`
/// with the expected one; what it returns replaces it (at the revision read: a concurrent
/// writer wins), or, when it carries the expected object's uid, is deleted and created anew so
/// that watchers see the old object go and the new one come.
pub(crate) async fn seed(
    store: &dyn Store,
    objects: Vec<(String, Value)>,
    reconcile: fn(&Value, &Value) -> Option<Value>,
) -> dao_store::Result<()> {
    futures::future::try_join_all(objects.into_iter().map(|(key, mut obj)| async move {
        obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
        obj["metadata"]["creationTimestamp"] = json!(crate::managed::now());
        let outcome = store.put(&key, encode(&obj), Expect::Absent).await?;
        if let dao_store::Outcome::Rejected {
            current: Some(current),
            ..
        } = outcome
            && let Ok(existing) = serde_json::from_slice::<Value>(&current.value)
            && let Some(updated) = reconcile(&existing, &obj)
        {
            let at = Expect::ModRevision(current.mod_revision);
            let recreate = updated["metadata"]["uid"] != existing["metadata"]["uid"];
            let applied = if recreate {
                store.delete(&key, at).await?.is_applied()
                    && store
                        .put(&key, encode(&updated), Expect::Absent)
                        .await?
                        .is_applied()
            } else {
                store.put(&key, encode(&updated), at).await?.is_applied()
            };
            if applied {
                tracing::info!(key = %key, recreate, "reconciled a bootstrap object");
            }
        }
        Ok(())
    }))
    .await?;
    Ok(())
}

/// The strings of a JSON array (anything else: none), as the specs' lists of names read.
pub(crate) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Decode a stored value and stamp its resourceVersion.
pub(crate) fn decode(kv: &KeyValue) -> ApiResult<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    obj["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
    Ok(obj)
}

/// Encode an object for storage: resourceVersion lives in the store's revision, not the bytes.
pub(crate) fn encode(obj: &Value) -> Bytes {
    // The stored form leaves resourceVersion out (it is the revision): write the object with
    // every field but that one, without copying it.
    struct Stored<'a>(&'a Value);
    impl serde::Serialize for Stored<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let Value::Object(top) = self.0 else {
                return self.0.serialize(s);
            };
            let mut map = s.serialize_map(Some(top.len()))?;
            for (k, v) in top {
                match (k.as_str(), v) {
                    ("metadata", Value::Object(meta)) => {
                        let meta = StoredMeta(meta);
                        map.serialize_entry(k, &meta)?;
                    }
                    _ => map.serialize_entry(k, v)?,
                }
            }
            map.end()
        }
    }
    struct StoredMeta<'a>(&'a serde_json::Map<String, Value>);
    impl serde::Serialize for StoredMeta<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = s.serialize_map(None)?;
            for (k, v) in self.0.iter().filter(|(k, _)| *k != "resourceVersion") {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }
    Bytes::from(serde_json::to_vec(&Stored(obj)).expect("a JSON value serializes"))
}

/// One API request. `local` marks Dao's own in-process clients (lists and watches leave out
/// managedFields for them, see [`Output::Trimmed`]).
pub async fn handle(
    state: Arc<ApiState>,
    method: Method,
    path: &str,
    query: Query,
    headers: &HeaderMap,
    body: Bytes,
    local: bool,
) -> ApiResult {
    let Some(target) = parse_path(path)? else {
        return Err(not_found_path());
    };
    let output = match Output::from_headers(headers) {
        Output::Object if local => Output::Trimmed,
        Output::Table(_) => Output::Table(table::Include::from_query(query.get("includeObject"))?),
        output => output,
    };
    let writer = crate::managed::Writer::new(
        query.get("fieldManager"),
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
        target.subresource.as_deref(),
    );
    if target.subresource.as_deref() == Some("scale") {
        return scale(
            &state,
            &target,
            &method,
            headers,
            &body,
            dry_run(&query)?,
            &writer,
        )
        .await;
    }
    match (
        &method,
        target.name.as_deref(),
        target.subresource.as_deref(),
    ) {
        (&Method::GET, None, None) if query.flag("watch") => {
            watch(state, &target, &query, output).await
        }
        (&Method::GET, None, None) => list(&state, &target, &query, output).await,
        (&Method::GET, Some(name), None | Some("status")) => {
            let obj = get(&state, &target, name).await?;
            Ok(json_response(
                StatusCode::OK,
                &match output {
                    Output::Table(include) => {
                        table::for_objects(target.res, &[obj], None, true, include)
                    }
                    Output::Metadata => partial(&obj),
                    Output::Object | Output::Trimmed => obj,
                },
            ))
        }
        (&Method::POST, None, None) => {
            let obj = parse_body(headers, &body)?;
            let track = Track::Update(&writer);
            let raw = json_body(headers, &body);
            create(&state, &target, &query, obj, raw, dry_run(&query)?, track).await
        }
        (&Method::POST, Some(name), Some("binding")) if target.res.plural == "pods" => {
            let binding = parse_body(headers, &body)?;
            crate::pods::bind(&state, &target, name, &binding).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        (&Method::POST, Some(name), Some("token")) if target.res.plural == "serviceaccounts" => {
            let request = parse_body(headers, &body)?;
            let namespace = target.namespace.as_deref().unwrap_or("default");
            let answer = crate::auth::token_request(&state, namespace, name, &request).await?;
            Ok(json_response(StatusCode::CREATED, &answer))
        }
        (&Method::POST, Some(name), Some("eviction")) if target.res.plural == "pods" => {
            let eviction = parse_body(headers, &body)?;
            crate::eviction::evict(&state, &target, name, &query, &eviction).await
        }
        (&Method::PUT, Some(name), sub) => {
            let obj = parse_body(headers, &body)?;
            let mut obj = obj;
            let warnings = check_fields(target.res, &mut obj, &query, json_body(headers, &body))?;
            let dry = dry_run(&query)?;
            let updated = update(
                &state,
                &target,
                name,
                sub,
                obj,
                dry,
                Track::Update(&writer),
                None,
            )
            .await?;
            Ok(with_warnings(updated.response(StatusCode::OK), &warnings))
        }
        (&Method::PATCH, Some(name), sub) if crate::apply::is_apply(headers) => {
            crate::apply::handle(&state, &target, name, sub, &query, &body).await
        }
        (&Method::PATCH, Some(name), sub) => {
            crate::apply::check_not_forced(&query)?;
            patch(&state, &target, name, sub, &query, headers, &body, &writer).await
        }
        (&Method::DELETE, Some(name), None) => {
            delete(&state, &target, name, &body, dry_run(&query)?).await
        }
        (&Method::DELETE, None, None) => delete_collection(&state, &target, &query).await,
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource".to_string(),
        )),
    }
}

/// The body, when it is JSON (a JSON object, a merge or strategic merge patch): what
/// duplicate-field detection reads.
fn json_body<'a>(headers: &HeaderMap, body: &'a [u8]) -> Option<&'a [u8]> {
    match media_type(headers).unwrap_or("application/json") {
        "application/json"
        | ""
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json" => Some(body),
        _ => None,
    }
}

/// The request's media type: its Content-Type without parameters.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<&str> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(ct.split(';').next().unwrap_or("").trim())
}

pub(crate) fn parse_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let value: Value = match media_type(headers).unwrap_or("application/json") {
        "application/json" | "" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("json: cannot unmarshal request body: {e}"))
        })?,
        "application/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("yaml: unmarshal errors: {e}")))?,
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(body)
            .map_err(ApiError::bad_request)?
            .ok_or_else(|| {
                ApiError::unsupported_media_type(
                    "application/json, application/yaml, application/vnd.kubernetes.protobuf",
                )
            })?,
        _ => {
            return Err(ApiError::unsupported_media_type(
                "application/json, application/yaml, application/vnd.kubernetes.protobuf",
            ));
        }
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(value)
}

pub(crate) async fn get(state: &ApiState, target: &Target, name: &str) -> ApiResult<Value> {
    let key = target.res.key(target.namespace.as_deref(), name);
    match state.store.get(&key, None).await?.0 {
        Some(kv) => {
            let mut obj = decode(&kv)?;
            crate::convert::to_view(target.res, &mut obj);
            Ok(obj)
        }
        None => Err(ApiError::not_found(target.res, name)),
    }
}

/// Range prefix for a collection request.
fn collection_prefix(target: &Target) -> String {
    match (&target.namespace, target.res.namespaced) {
        (Some(ns), true) => format!("{}{ns}/", target.res.key_prefix()),
        _ => target.res.key_prefix(),
    }
}

struct Selectors {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selectors {
    fn from_query(query: &Query) -> ApiResult<Self> {
        let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        Ok(Selectors { labels, fields })
    }
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches_object(obj)
    }
    /// The object paths the selectors read: `metadata.labels` and each field selector's field.
    fn paths(&self) -> Vec<Vec<String>> {
        let mut paths: Vec<Vec<String>> = Vec::new();
        if !self.labels.is_empty() {
            paths.push(vec!["metadata".into(), "labels".into()]);
        }
        for field in self.fields.fields() {
            paths.push(field.split('.').map(str::to_owned).collect());
        }
        paths
    }
}

/// The continue token: upstream's shape, base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":K}`.
fn encode_continue(rv: i64, start: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).to_string())
}

fn decode_continue(token: &str) -> ApiResult<(i64, String)> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok((
        v["rv"].as_i64().ok_or_else(bad)?,
        v["start"].as_str().ok_or_else(bad)?.to_owned(),
    ))
}

/// The selected objects of a LIST, encoded page by page as the store returns them.
struct ListItems {
    /// Its items are decoded when `res`'s version is a view converted from the stored one.
    res: &'static Resource,
    selectors: Selectors,
    paths: Vec<Vec<String>>,
    output: Output,
    /// How many items a limited list holds at most (0: no limit).
    limit: usize,
    count: usize,
}

impl ListItems {
    /// Appends the page's selected objects to `out`, each after a comma but the list's first
    /// (for tables: decoded into `table`). The key a limited list continues at, when it fills
    /// up within this page.
    fn encode(
        &mut self,
        kvs: &[KeyValue],
        out: &mut Vec<u8>,
        table: &mut Vec<table::ListRow>,
    ) -> ApiResult<Option<String>> {
        let output = self.output;
        for kv in kvs {
            if self.limit > 0 && self.count == self.limit {
                return Ok(Some(kv.key.clone()));
            }
            if let Output::Table(include) = output {
                if let Some(row) = self.table_row(kv, include)? {
                    self.count += 1;
                    table.push(row);
                }
                continue;
            }
            // JSON out: select and copy on the stored bytes (see `raw_list_item`), unless the
            // request's version is a converted view.
            if !crate::convert::needed(self.res)
                && let Some(selected) = selected(&self.selectors, &self.paths, &kv.value)
            {
                if !selected {
                    continue;
                }
                let mark = out.len();
                if self.count > 0 {
                    out.push(b',');
                }
                let written = if output == Output::Metadata {
                    raw_metadata(out, &kv.value, kv.mod_revision)
                } else {
                    let trim = output == Output::Trimmed;
                    raw_list_item(out, &kv.value, kv.mod_revision, trim)
                };
                if written {
                    self.count += 1;
                    continue;
                }
                out.truncate(mark);
            }
            let mut obj = decode(kv)?;
            if !self.selectors.matches(&obj) {
                continue;
            }
            crate::convert::to_view(self.res, &mut obj);
            if self.count > 0 {
                out.push(b',');
            }
            self.count += 1;
            if output == Output::Metadata {
                serde_json::to_writer(&mut *out, &partial(&obj)).expect("a JSON value serializes");
            } else {
                if let Some(o) = obj.as_object_mut() {
                    o.remove("kind");
                    o.remove("apiVersion");
                }
                if output == Output::Trimmed {
                    trim(&mut obj);
                }
                serde_json::to_writer(&mut *out, &obj).expect("a JSON value serializes");
            }
        }
        Ok(None)
    }

    /// A table row for a stored object, when the selectors take it. The columns never read
    /// managedFields (most of a pod's bytes), so the object is decoded without them, and the
    /// row's object (metadata or the whole object, see [`table::Include`]) is copied from the
    /// stored bytes.
    fn table_row(
        &self,
        kv: &KeyValue,
        include: table::Include,
    ) -> ApiResult<Option<table::ListRow>> {
        let mut trimmed = Vec::with_capacity(kv.value.len());
        let mut row_object = Vec::with_capacity(match include {
            table::Include::Object => kv.value.len() + 40,
            _ => kv.value.len().min(8192) + 128,
        });
        let rv = kv.mod_revision;
        let fast = !crate::convert::needed(self.res)
            && raw_object(&mut trimmed, &kv.value, rv, false, true)
            && match include {
                table::Include::None => {
                    row_object.extend_from_slice(b"null");
                    true
                }
                table::Include::Metadata => raw_metadata(&mut row_object, &kv.value, rv),
                table::Include::Object => raw_object(&mut row_object, &kv.value, rv, false, false),
            };
        let object = match fast.then(|| serde_json::from_slice::<Value>(&trimmed).ok()) {
            Some(Some(object)) => object,
            _ => {
                let mut object = decode(kv)?;
                crate::convert::to_view(self.res, &mut object);
                row_object.clear();
                serde_json::to_writer(&mut row_object, &include.row_object(&object))
                    .expect("a JSON value serializes");
                object
            }
        };
        Ok(self
            .selectors
            .matches(&object)
            .then_some(table::ListRow { object, row_object }))
    }
}

/// Room for a page's items: their stored bytes and a resourceVersion each.
fn page_capacity(kvs: &[KeyValue]) -> usize {
    kvs.iter().map(|kv| kv.value.len() + 40).sum()
}

/// One page of a LIST: at most `size` keys under `prefix` from `start`, at `revision`.
async fn list_page(
    store: &dyn Store,
    prefix: &str,
    start: Option<String>,
    revision: Option<i64>,
    size: usize,
) -> dao_store::Result<dao_store::RangeResult> {
    store
        .range(RangeRequest {
            prefix: prefix.to_owned(),
            start,
            limit: Some(size),
            revision,
        })
        .await
}

async fn list(state: &ApiState, target: &Target, query: &Query, output: Output) -> ApiResult {
    let table = matches!(output, Output::Table(_));
    let selectors = Selectors::from_query(query)?;
    let paths = selectors.paths();
    let prefix = collection_prefix(target);
    let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
    let (mut revision, mut start) = match query.get("continue") {
        Some(token) => {
            let (rv, start) = decode_continue(token)?;
            (Some(rv), Some(format!("{prefix}{start}")))
        }
        None => (None, None),
    };
    if revision.is_none() && query.get("resourceVersionMatch") == Some("Exact") {
        revision = query.get("resourceVersion").and_then(|r| r.parse().ok());
    }
    let mut items = ListItems {
        res: target.res,
        selectors,
        paths,
        output,
        limit,
        count: 0,
    };
    let page_size = if limit > 0 { limit.max(64) } else { 2000 };
    let (kind, api_version) = match output {
        Output::Metadata => ("PartialObjectMetadata", "meta.k8s.io/v1".to_owned()),
        _ => (target.res.kind, target.res.api_version()),
    };
    let head = |metadata: &Value| {
        format!(
            "{{\"kind\":\"{kind}List\",\"apiVersion\":\"{api_version}\",\"metadata\":{metadata},\"items\":["
        )
    };

    // The first page fixes the revision the whole list is read at; its errors (a compacted
    // revision, a store that is down) are the response's.
    let page = list_page(&*state.store, &prefix, start, revision, page_size).await?;
    let served_at = page.revision;
    let mut more = page.more;
    start = page.kvs.last().map(|kv| format!("{}\0", kv.key));

    if table || limit > 0 {
        // A table is decoded anyway and a limited list is bounded; both are gathered whole,
        // as a limited list's metadata carries its continue token, known only at its end.
        let mut out = Vec::with_capacity(page_capacity(&page.kvs));
        let mut table_items = Vec::new();
        let mut next_start = items.encode(&page.kvs, &mut out, &mut table_items)?;
        while more && next_start.is_none() {
            let page = list_page(&*state.store, &prefix, start, Some(served_at), page_size).await?;
            more = page.more;
            start = page.kvs.last().map(|kv| format!("{}\0", kv.key));
            next_start = items.encode(&page.kvs, &mut out, &mut table_items)?;
        }
        let mut metadata = json!({ "resourceVersion": served_at.to_string() });
        if let Some(next) = next_start {
            metadata["continue"] =
                json!(encode_continue(served_at, next.trim_start_matches(&prefix)));
        }
        if table {
            return Ok(ok_json(table::encode_list(
                target.res,
                &table_items,
                &metadata,
            )));
        }
        let head = head(&metadata);
        let mut body = Vec::with_capacity(head.len() + out.len() + 2);
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(&out);
        body.extend_from_slice(b"]}");
        return Ok(ok_json(body));
    }

    // A whole collection goes out page by page as the store returns it: the client reads the
    // first objects while later pages are encoded, and no copy of the whole list is ever held.
    let head = head(&json!({ "resourceVersion": served_at.to_string() }));
    let mut first = Vec::with_capacity(head.len() + page_capacity(&page.kvs) + 2);
    first.extend_from_slice(head.as_bytes());
    items.encode(&page.kvs, &mut first, &mut Vec::new())?;
    if !more {
        first.extend_from_slice(b"]}");
        return Ok(ok_json(first));
    }
    let store = state.store.clone();
    let body = async_stream::stream! {
        yield Ok::<_, std::io::Error>(Bytes::from(first));
        while more {
            let page = match list_page(&*store, &prefix, start.take(), Some(served_at), page_size).await {
                Ok(page) => page,
                Err(e) => {
                    // The status line is long gone: all that is left is to cut the response
                    // short, which the client sees as a failed read.
                    warn!(prefix, error = %e, "LIST failed after its first page; response cut short");
                    yield Err(std::io::Error::other(e.to_string()));
                    break;
                }
            };
            more = page.more;
            start = page.kvs.last().map(|kv| format!("{}\0", kv.key));
            let mut chunk = Vec::with_capacity(page_capacity(&page.kvs) + 2);
            if let Err(e) = items.encode(&page.kvs, &mut chunk, &mut Vec::new()) {
                warn!(prefix, error = %e.to_status()["message"], "LIST failed after its first page; response cut short");
                yield Err(std::io::Error::other("LIST item failed to encode"));
                break;
            }
            if !more {
                chunk.extend_from_slice(b"]}");
            }
            yield Ok(Bytes::from(chunk));
        }
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .expect("valid response"))
}

/// `fields` of `new` as they are in `old`: copied, or removed where `old` has none.
pub(crate) fn carry_over(old: &Value, new: &mut Value, fields: &[&str]) {
    for &field in fields {
        match old.get(field) {
            Some(v) => new[field] = v.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
}

/// A 200 response with a JSON body.
fn ok_json(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// What a write saved: the object, and the bytes the store holds with their revision when
/// the write reached the store (not for a dry run or an update that changed nothing).
pub(crate) struct Saved {
    pub obj: Value,
    stored: Option<(Bytes, i64)>,
}

impl Saved {
    /// A write of `obj` (in the request's version) stored as `bytes` at `revision`.
    fn new(res: &Resource, obj: Value, bytes: Bytes, revision: i64) -> Saved {
        // A converted view is answered in the request's version, not from the stored bytes.
        let stored = (!crate::convert::needed(res)).then_some((bytes, revision));
        Saved { obj, stored }
    }

    /// The answer to the write. From the stored bytes with the revision spliced in where the
    /// write reached the store, so the object is not serialized a second time.
    pub(crate) fn response(&self, code: StatusCode) -> Response {
        if let Some((bytes, revision)) = &self.stored {
            let mut out = Vec::with_capacity(bytes.len() + 48);
            if raw_object(&mut out, bytes, *revision, false, false) {
                return (code, [(header::CONTENT_TYPE, "application/json")], out).into_response();
            }
        }
        json_response(code, &self.obj)
    }
}

/// The bytes to store for `obj`, written in `res`'s version: in the storage version.
fn stored_form(res: &Resource, obj: &Value) -> Bytes {
    if crate::convert::needed(res) {
        let mut stored = obj.clone();
        crate::convert::to_storage(res, &mut stored);
        return encode(&stored);
    }
    encode(obj)
}

/// A stored object answered in `res`'s version.
fn view_response(res: &Resource, code: StatusCode, obj: &Value) -> Response {
    if crate::convert::needed(res) {
        let mut view = obj.clone();
        crate::convert::to_view(res, &mut view);
        return json_response(code, &view);
    }
    json_response(code, obj)
}

pub(crate) fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Kinds whose metadata.generation upstream tracks.
fn tracks_generation(res: &Resource) -> bool {
    !matches!(
        res.plural,
        "pods"
            | "services"
            | "namespaces"
            | "nodes"
            | "persistentvolumes"
            | "persistentvolumeclaims"
            | "configmaps"
            | "secrets"
            | "events"
            | "endpoints"
            | "serviceaccounts"
            | "leases"
            | "endpointslices"
    )
}

async fn namespace_must_exist(state: &ApiState, ns: &str) -> ApiResult<()> {
    let ns_res = registry::find("", "v1", "namespaces").expect("namespaces registered");
    match state.store.get(&ns_res.key(None, ns), None).await?.0 {
        None => Err(ApiError::namespace_not_found(ns)),
        Some(kv) => {
            // Read from the stored bytes: this runs on every namespaced create.
            let b = &kv.value;
            let terminating = match scan::object_field(b, 0, b"metadata") {
                Some(meta) => scan::object_field(b, meta, b"deletionTimestamp")
                    .is_some_and(|at| !b[at..].starts_with(b"null")),
                None => decode(&kv)?
                    .pointer("/metadata/deletionTimestamp")
                    .is_some_and(|t| !t.is_null()),
            };
            if terminating {
                return Err(ApiError {
                    code: 403,
                    reason: "Forbidden",
                    message: format!(
                        "unable to create new content in namespace {ns} because it is being terminated"
                    ),
                    details: None,
                });
            }
            Ok(())
        }
    }
}

/// Checks shared by create and update: type, namespace, name.
fn check_identity(target: &Target, obj: &Value) -> ApiResult<()> {
    let res = target.res;
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if (!api_version.is_empty() && api_version != res.api_version())
        || (!kind.is_empty() && kind != res.kind)
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    if let (Some(ns), Some(body_ns)) = (
        &target.namespace,
        obj.pointer("/metadata/namespace").and_then(Value::as_str),
    ) && res.namespaced
        && !body_ns.is_empty()
        && body_ns != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

/// Unknown fields, per `fieldValidation`: Strict rejects the request, Warn (the default)
/// drops them and returns warnings, Ignore drops them silently. A field of the wrong type is
/// always a 400.
pub(crate) fn check_fields(
    res: &Resource,
    obj: &mut Value,
    query: &Query,
    raw: Option<&[u8]>,
) -> ApiResult<Vec<String>> {
    // The typed decoders check apiVersion and kind: present them as the resource's (the body
    // may leave them out), then put back what the body had.
    let saved: Vec<(&str, Option<Value>)> = ["apiVersion", "kind"]
        .into_iter()
        .map(|k| (k, obj.get(k).cloned()))
        .collect();
    obj["apiVersion"] = json!(res.api_version());
    obj["kind"] = json!(res.kind);
    let decoded = crate::typed::decode(res, obj);
    for (k, v) in saved {
        match v {
            Some(v) => obj[k] = v,
            None => {
                if let Some(m) = obj.as_object_mut() {
                    m.remove(k);
                }
            }
        }
    }
    let decoded = decoded.map_err(ApiError::bad_request)?;
    // Fields given twice in a JSON body (serde_json kept the last, as Go's decoder does).
    let duplicates = raw.map(crate::typed::duplicate_fields).unwrap_or_default();
    if decoded.unknown.is_empty() && duplicates.is_empty() {
        return Ok(Vec::new());
    }
    // Upstream's decoder reports both kinds in the order it meets them in the body.
    let mut found: Vec<(usize, String)> = duplicates
        .into_iter()
        .map(|(at, f)| (at, format!("duplicate field \"{f}\"")))
        .collect();
    for f in &decoded.unknown {
        let at = raw
            .and_then(|b| crate::typed::field_offset(b, f))
            .unwrap_or(usize::MAX);
        found.push((at, format!("unknown field \"{f}\"")));
    }
    found.sort_by_key(|(at, _)| *at);
    let messages: Vec<String> = found.into_iter().map(|(_, m)| m).collect();
    match query.get("fieldValidation").unwrap_or("Warn") {
        "Strict" => Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            messages.join(", "),
            kind = res.kind,
            version = res.version,
        ))),
        "Ignore" => {
            crate::typed::prune(obj, &decoded.unknown);
            Ok(Vec::new())
        }
        "Warn" => {
            crate::typed::prune(obj, &decoded.unknown);
            Ok(messages)
        }
        other => Err(ApiError::bad_request(format!(
            "fieldValidation must be one of Ignore, Warn or Strict, not {other:?}"
        ))),
    }
}

/// Attach `Warning: 299 - "..."` headers, as upstream does for field warnings.
pub(crate) fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let value = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = header::HeaderValue::from_str(&value) {
            response.headers_mut().append("warning", v);
        }
    }
    response
}

/// How a write records `metadata.managedFields`.
#[derive(Clone, Copy)]
pub(crate) enum Track<'a> {
    /// A create, update or non-apply patch by this manager.
    Update(&'a crate::managed::Writer),
    /// Already computed (server-side apply).
    Done,
}

/// The part of an object a write to `sub` may change, for managedFields.
pub(crate) fn write_scope(res: &Resource, sub: Option<&str>) -> crate::managed::Scope {
    use crate::managed::Scope;
    match sub {
        Some("status") => Scope::StatusOnly,
        _ if res.subresources.contains(&"status") => Scope::NoStatus,
        _ => Scope::All,
    }
}

pub(crate) async fn create(
    state: &ApiState,
    target: &Target,
    query: &Query,
    mut obj: Value,
    raw: Option<&[u8]>,
    dry: bool,
    track: Track<'_>,
) -> ApiResult {
    let res = target.res;
    check_identity(target, &obj)?;
    let warnings = check_fields(res, &mut obj, query, raw)?;
    if res.namespaced && target.namespace.is_none() {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    obj["apiVersion"] = json!(res.api_version());
    obj["kind"] = json!(res.kind);
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    let meta = obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object");
    let mut name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if name.is_empty() {
        match meta.get("generateName").and_then(Value::as_str) {
            Some(g) if !g.is_empty() => name = format!("{g}{}", random_suffix()),
            _ => {
                return Err(ApiError::invalid(
                    res,
                    "",
                    vec![Cause {
                        reason: "FieldValueRequired",
                        field: "metadata.name".into(),
                        message: "Required value: name or generateName is required".into(),
                    }],
                ));
            }
        }
    }
    let name_causes = crate::validation::name(res, &name);
    meta.insert("name".into(), json!(name));
    if res.namespaced {
        meta.insert(
            "namespace".into(),
            json!(target.namespace.clone().unwrap_or_default()),
        );
    } else {
        meta.remove("namespace");
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(crate::managed::now()));
    meta.remove("deletionTimestamp");
    meta.remove("resourceVersion");
    if tracks_generation(res) {
        meta.insert("generation".into(), json!(1));
    }
    // A new object's status is the server's and its controllers' to write (upstream's create
    // strategies clear it); nodes and persistent volumes are registered with theirs.
    if res.subresources.contains(&"status")
        && !matches!(
            res.plural,
            "nodes" | "persistentvolumes" | "persistentvolumeclaims" | "pods" | "namespaces"
        )
    {
        obj["status"] = json!({});
    }
    if res.plural == "namespaces" {
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
        obj["status"] = json!({"phase": "Active"});
    }
    if res.plural == "secrets" {
        fold_string_data(&mut obj);
    }
    if let Some(ns) = &target.namespace
        && res.namespaced
    {
        namespace_must_exist(state, ns).await?;
    }
    if res.group.is_empty() && res.plural == "pods" {
        crate::pods::admit_priority(state, &name, &mut obj).await?;
    }
    crate::defaults::apply(res, &mut obj);
    crate::defaults::on_create(res, &mut obj);
    if res.plural == "services" {
        crate::services::default(&mut obj);
    }
    let mut causes = name_causes;
    causes.extend(crate::validation::validate(res, &obj));
    if !causes.is_empty() {
        return Err(ApiError::invalid(res, &name, causes));
    }
    crate::rbac::check_escalation(&state.rbac, res, target.namespace.as_deref(), &obj)?;
    if let Track::Update(writer) = track {
        let scope = write_scope(res, None);
        crate::managed::record_update(None, &mut obj, &res.api_version(), scope, writer);
    }
    // Admission's additions come after the writer's fields are recorded: upstream's
    // managedFields do not name them either.
    if res.group.is_empty()
        && res.plural == "pods"
        && let Some(ns) = &target.namespace
    {
        crate::pods::admit_service_account(state, &name, ns, &mut obj).await?;
    }
    let key = res.key(target.namespace.as_deref(), &name);
    if dry {
        // Everything checked and defaulted; nothing written, nothing allocated.
        if state.store.get(&key, None).await?.0.is_some() {
            return Err(ApiError::already_exists(res, &name));
        }
        return Ok(with_warnings(
            json_response(StatusCode::CREATED, &obj),
            &warnings,
        ));
    }
    if res.plural == "services" {
        if state.store.get(&key, None).await?.0.is_some() {
            return Err(ApiError::already_exists(res, &name));
        }
        crate::services::allocate(&*state.store, &mut obj).await?;
    }
    let bytes = stored_form(res, &obj);
    match state.store.put(&key, bytes.clone(), Expect::Absent).await {
        Ok(Outcome::Applied { revision, .. }) => {
            state.settle(res, revision).await;
            obj["metadata"]["resourceVersion"] = json!(revision.to_string());
            let saved = Saved::new(res, obj, bytes, revision);
            Ok(with_warnings(
                saved.response(StatusCode::CREATED),
                &warnings,
            ))
        }
        other => {
            if res.plural == "services" {
                crate::services::release(&*state.store, &obj).await;
            }
            match other {
                Ok(_) => Err(ApiError::already_exists(res, &name)),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Secrets: `stringData` is write-only sugar folded into base64 `data`.
fn fold_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(string_data) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    let Some(map) = string_data.as_object() else {
        return;
    };
    if !obj.get("data").is_some_and(Value::is_object) {
        obj["data"] = json!({});
    }
    for (k, v) in map {
        let text = v.as_str().unwrap_or_default();
        obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// `dryRun=All`: check and default a write but store nothing. Upstream knows no other value.
pub(crate) fn dry_run(query: &Query) -> ApiResult<bool> {
    match query.get("dryRun") {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "dryRun: Unsupported value: \"{other}\": supported values: \"All\""
        ))),
    }
}

/// Replace an object (PUT, and the last step of PATCH). `sub` is "status" for the status
/// subresource. `live` is the stored object when the caller has just read it (a patch or an
/// apply builds on it), so that it is not read and decoded twice; a write between that read
/// and this one ends in a Conflict, as it would have with a second read.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn update(
    state: &ApiState,
    target: &Target,
    name: &str,
    sub: Option<&str>,
    mut obj: Value,
    dry: bool,
    track: Track<'_>,
    live: Option<Value>,
) -> ApiResult<Saved> {
    let res = target.res;
    match sub {
        None => {}
        Some(s) if res.subresources.contains(&s) && s == "status" => {}
        Some(_) => return Err(not_found_path()),
    }
    check_identity(target, &obj)?;
    let body_name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let key = res.key(target.namespace.as_deref(), name);
    let old = match live {
        Some(old) => old,
        None => match state.store.get(&key, None).await?.0 {
            Some(current) => {
                let mut old = decode(&current)?;
                crate::convert::to_view(res, &mut old);
                old
            }
            None => return Err(ApiError::not_found(res, name)),
        },
    };
    let current_revision: i64 = old
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
        .ok_or_else(|| ApiError::internal(format!("stored object {key} has no resourceVersion")))?;
    let expect = match obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        Some(rv) if !rv.is_empty() => {
            let rv: i64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
            if rv != current_revision {
                return Err(ApiError::conflict(res, name));
            }
            Expect::ModRevision(rv)
        }
        _ => Expect::ModRevision(current_revision),
    };
    obj["apiVersion"] = json!(res.api_version());
    obj["kind"] = json!(res.kind);
    if sub == Some("status") {
        // The status subresource changes only status.
        let status = obj
            .as_object_mut()
            .and_then(|o| o.remove("status"))
            .unwrap_or(Value::Null);
        let applied = matches!(track, Track::Done).then(|| crate::managed::take(&mut obj));
        // Everything else as stored: the fields the request left as they are stay, the rest
        // are copied from the stored object (comparing costs less than copying it whole,
        // and a status write, the agents' most common one, leaves them all).
        match (&mut obj, &old) {
            (Value::Object(new), Value::Object(was)) => {
                new.retain(|k, _| was.contains_key(k));
                for (k, v) in was.iter().filter(|(k, _)| *k != "status") {
                    match new.get_mut(k) {
                        Some(n) if n == v => {}
                        Some(n) => *n = v.clone(),
                        None => {
                            new.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            _ => obj = old.clone(),
        }
        obj["status"] = status;
        if let Some(Some(fields)) = applied {
            obj["metadata"]["managedFields"] = fields;
        }
    } else if res.subresources.contains(&"status") {
        // The main resource cannot change status.
        carry_over(&old, &mut obj, &["status"]);
    }
    // Immutable metadata carried over.
    carry_over(
        &old["metadata"],
        &mut obj["metadata"],
        &[
            "uid",
            "creationTimestamp",
            "namespace",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ],
    );
    if res.plural == "secrets" {
        fold_string_data(&mut obj);
    }
    if res.plural == "services" && sub.is_none() {
        crate::services::keep_allocations(&old, &mut obj)?;
        crate::services::default(&mut obj);
    }
    if sub.is_none() {
        crate::defaults::on_update(res, &old, &mut obj);
        crate::defaults::apply(res, &mut obj);
        let mut causes = crate::validation::validate(res, &obj);
        causes.extend(crate::validation::validate_update(res, &old, &obj));
        if !causes.is_empty() {
            return Err(ApiError::invalid(res, name, causes));
        }
        crate::rbac::check_escalation(&state.rbac, res, target.namespace.as_deref(), &obj)?;
    }
    if let Track::Update(writer) = track {
        let scope = write_scope(res, sub);
        crate::managed::record_update(Some(&old), &mut obj, &res.api_version(), scope, writer);
    }
    if tracks_generation(res) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let changed = obj.get("spec") != old.get("spec");
        obj["metadata"]["generation"] = json!(if changed { generation + 1 } else { generation });
    }
    // Compared at the same resourceVersion, without a copy of the object.
    let asked_version = std::mem::replace(
        &mut obj["metadata"]["resourceVersion"],
        old["metadata"]["resourceVersion"].clone(),
    );
    if obj == old {
        // No change: upstream answers with the object as it is, at its current version.
        return Ok(Saved {
            obj: old,
            stored: None,
        });
    }
    obj["metadata"]["resourceVersion"] = asked_version;
    if dry {
        // Everything checked and defaulted; nothing written. The version stays the current one.
        obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        return Ok(Saved { obj, stored: None });
    }
    // The last finalizer removed from an object being deleted: it goes away now.
    let finalizers_empty = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|f| f.is_empty());
    let grace_over = obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_none_or(|g| g == 0);
    if obj.pointer("/metadata/deletionTimestamp").is_some() && finalizers_empty && grace_over {
        return match state.store.delete(&key, expect).await? {
            Outcome::Applied { revision, .. } => {
                state.settle(res, revision).await;
                obj["metadata"]["resourceVersion"] = json!(revision.to_string());
                Ok(Saved { obj, stored: None })
            }
            Outcome::Rejected { .. } => Err(ApiError::conflict(res, name)),
        };
    }
    let bytes = stored_form(res, &obj);
    match state.store.put(&key, bytes.clone(), expect).await? {
        Outcome::Applied { revision, .. } => {
            state.settle(res, revision).await;
            obj["metadata"]["resourceVersion"] = json!(revision.to_string());
            Ok(Saved::new(res, obj, bytes, revision))
        }
        Outcome::Rejected { current: None, .. } => Err(ApiError::not_found(res, name)),
        Outcome::Rejected { .. } => Err(ApiError::conflict(res, name)),
    }
}

/// Apply a patch body to `doc` by the request's Content-Type: JSON patch, JSON merge patch or
/// strategic merge patch. Shared by resources and their scale subresource.
fn apply_patch(headers: &HeaderMap, doc: &mut Value, patch: &Value) -> ApiResult<()> {
    match media_type(headers).unwrap_or("") {
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(doc, &p).map_err(|e| ApiError {
                code: 422,
                reason: "Invalid",
                message: format!(
                    "the server rejected our request due to an error in our request: {e}"
                ),
                details: None,
            })
        }
        "application/merge-patch+json" => {
            json_patch::merge(doc, patch);
            Ok(())
        }
        "application/strategic-merge-patch+json" => {
            crate::smp::apply(doc, patch);
            Ok(())
        }
        _ => Err(ApiError::unsupported_media_type(
            "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml",
        )),
    }
}

#[allow(clippy::too_many_arguments)]
async fn patch(
    state: &ApiState,
    target: &Target,
    name: &str,
    sub: Option<&str>,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
    writer: &crate::managed::Writer,
) -> ApiResult {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    // Optimistic concurrency: retry on a conflict that the patch itself did not cause.
    for _ in 0..8 {
        let current = get(state, target, name).await?;
        let mut doc = current.clone();
        apply_patch(headers, &mut doc, &patch)?;
        // A patch that names a resourceVersion is a precondition; otherwise patch whatever is there.
        let precondition = patch.pointer("/metadata/resourceVersion").is_some();
        if !precondition {
            doc["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        }
        let warnings = check_fields(target.res, &mut doc, query, json_body(headers, body))?;
        let dry = dry_run(query)?;
        let track = Track::Update(writer);
        match update(state, target, name, sub, doc, dry, track, Some(current)).await {
            Err(e) if e.reason == "Conflict" && !precondition => continue,
            Err(e) => return Err(e),
            Ok(saved) => {
                return Ok(with_warnings(saved.response(StatusCode::OK), &warnings));
            }
        }
    }
    Err(ApiError::conflict(target.res, name))
}

/// The `autoscaling/v1` Scale view of a workload.
fn scale_of(obj: &Value) -> Value {
    let selector = crate::selector::format_label_selector(obj.pointer("/spec/selector"));
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

/// GET, PUT and PATCH of the scale subresource: reads and writes `spec.replicas`.
async fn scale(
    state: &ApiState,
    target: &Target,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    dry: bool,
    writer: &crate::managed::Writer,
) -> ApiResult {
    let (Some(name), true) = (
        target.name.as_deref(),
        target.res.subresources.contains(&"scale"),
    ) else {
        return Err(not_found_path());
    };
    let main = Target {
        res: target.res,
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        subresource: None,
    };
    for _ in 0..8 {
        let obj = get(state, &main, name).await?;
        let current = scale_of(&obj);
        let wanted = match *method {
            Method::GET => return Ok(json_response(StatusCode::OK, &current)),
            Method::PUT => parse_body(headers, body)?,
            Method::PATCH => {
                let patch: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                let mut doc = current.clone();
                apply_patch(headers, &mut doc, &patch)?;
                doc
            }
            _ => {
                return Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                ));
            }
        };
        let replicas = wanted
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                target.res,
                name,
                vec![Cause {
                    reason: "FieldValueInvalid",
                    field: "spec.replicas".into(),
                    message: format!(
                        "Invalid value: {replicas}: must be greater than or equal to 0"
                    ),
                }],
            ));
        }
        let mut updated = obj.clone();
        updated["spec"]["replicas"] = json!(replicas);
        if let Some(rv) = wanted
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && *method == Method::PUT
        {
            updated["metadata"]["resourceVersion"] = json!(rv);
        }
        match update(
            state,
            &main,
            name,
            None,
            updated,
            dry,
            Track::Update(writer),
            Some(obj),
        )
        .await
        {
            Ok(saved) => return Ok(json_response(StatusCode::OK, &scale_of(&saved.obj))),
            Err(e) if e.reason == "Conflict" && *method == Method::PATCH => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(target.res, name))
}

pub(crate) async fn delete(
    state: &ApiState,
    target: &Target,
    name: &str,
    body: &[u8],
    dry: bool,
) -> ApiResult {
    let res = target.res;
    let options: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let key = res.key(target.namespace.as_deref(), name);
    loop {
        let (current, _) = state.store.get(&key, None).await?;
        let Some(current) = current else {
            return Err(ApiError::not_found(res, name));
        };
        let mut obj = decode(&current)?;
        if let Some(rv) = options
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            && rv != current.mod_revision.to_string()
        {
            return Err(ApiError::conflict(res, name));
        }
        if let Some(uid) = options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            && Some(uid) != obj.pointer("/metadata/uid").and_then(Value::as_str)
        {
            return Err(ApiError::conflict(res, name));
        }
        let grace = if res.plural == "pods" {
            crate::pods::grace_period(&obj, &options)
        } else {
            0
        };
        // kubectl sends a delete's dryRun in the DeleteOptions body.
        let dry = dry
            || match options.get("dryRun").and_then(Value::as_array) {
                None => false,
                Some(values) if values.iter().all(|v| v == "All") => !values.is_empty(),
                Some(values) => {
                    return Err(ApiError::bad_request(format!(
                        "dryRun: Unsupported value: {}: supported values: \"All\"",
                        Value::Array(values.clone())
                    )));
                }
            };
        if dry {
            // Preconditions checked; nothing deleted or marked.
            return Ok(view_response(res, StatusCode::OK, &obj));
        }
        let marked = obj.pointer("/metadata/deletionTimestamp").is_some();
        // Propagation other than Background keeps the owner until the garbage collector has
        // orphaned or deleted its dependents, through a finalizer.
        let propagation = match options.get("propagationPolicy").and_then(Value::as_str) {
            Some(p) => Some(p),
            None if options.get("orphanDependents") == Some(&json!(true)) => Some("Orphan"),
            None => None,
        };
        let mut finalizers: Vec<Value> = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let gc_finalizer = match propagation {
            Some("Orphan") => Some("orphan"),
            Some("Foreground") => Some("foregroundDeletion"),
            Some("Background") | None => None,
            Some(other) => {
                return Err(ApiError::invalid_kind(
                    "DeleteOptions",
                    "",
                    "",
                    vec![Cause {
                        reason: "FieldValueNotSupported",
                        field: "propagationPolicy".into(),
                        message: format!(
                            "Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                        ),
                    }],
                ));
            }
        };
        if !marked
            && let Some(f) = gc_finalizer
            && !finalizers.iter().any(|x| x == f)
        {
            finalizers.push(json!(f));
        }
        let current_grace = obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        if res.plural == "namespaces" || !finalizers.is_empty() || grace > 0 {
            // Graceful: mark for deletion; finalizers, the namespace controller or the pod's
            // node finish it. A later DELETE may only shorten the grace period.
            if !marked || current_grace.is_some_and(|g| grace < g) {
                obj["metadata"]["deletionTimestamp"] = json!(crate::pods::deletion_time(grace));
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                if !finalizers.is_empty() {
                    obj["metadata"]["finalizers"] = json!(finalizers);
                }
                if res.plural == "namespaces" {
                    obj["status"]["phase"] = json!("Terminating");
                }
                match state
                    .store
                    .put(
                        &key,
                        encode(&obj),
                        Expect::ModRevision(current.mod_revision),
                    )
                    .await?
                {
                    Outcome::Applied { revision, .. } => {
                        obj["metadata"]["resourceVersion"] = json!(revision.to_string());
                    }
                    Outcome::Rejected { .. } => continue,
                }
            }
            if res.plural == "namespaces" {
                crate::namespaces::spawn_finalize(state.store.clone(), name.to_owned());
            }
            return Ok(view_response(res, StatusCode::OK, &obj));
        }
        match state
            .store
            .delete(&key, Expect::ModRevision(current.mod_revision))
            .await?
        {
            Outcome::Applied { revision, .. } => {
                state.settle(res, revision).await;
                if res.plural == "services" {
                    crate::services::release(&*state.store, &obj).await;
                }
                return Ok(view_response(res, StatusCode::OK, &obj));
            }
            Outcome::Rejected { .. } => continue,
        }
    }
}

async fn delete_collection(state: &ApiState, target: &Target, query: &Query) -> ApiResult {
    let selectors = Selectors::from_query(query)?;
    let dry = dry_run(query)?;
    let page = state
        .store
        .range(RangeRequest::prefix(collection_prefix(target)))
        .await?;
    let mut deleted = Vec::new();
    for kv in &page.kvs {
        let obj = decode(kv)?;
        if !selectors.matches(&obj) {
            continue;
        }
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let t = Target {
            res: target.res,
            namespace: obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned),
            name: Some(name.clone()),
            subresource: None,
        };
        match delete(state, &t, &name, b"", dry).await {
            Ok(_) => {
                let mut obj = obj;
                crate::convert::to_view(target.res, &mut obj);
                deleted.push(obj)
            }
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": format!("{}List", target.res.kind),
        "apiVersion": target.res.api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()},
        "items": deleted,
    });
    Ok(json_response(StatusCode::OK, &list))
}

/// A watch event line for a stored object, with its resourceVersion spliced into the stored
/// bytes: `{"type":KIND,"object":{..."metadata":{"resourceVersion":"RV",...}...}}`. The stored
/// JSON is scanned, not parsed: this runs once per event and watcher on a busy server.
/// `None` when the bytes are not the shape `encode` writes (then the caller decodes).
fn raw_event_line(kind: &str, stored: &[u8], rv: i64, output: Output) -> Option<Bytes> {
    let mut out = Vec::with_capacity(match output {
        Output::Metadata => stored.len().min(4096) + 128,
        _ => stored.len() + kind.len() + 64,
    });
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    let written = match output {
        // The whole value must be one well-formed object (the store hands back what was
        // written, but a torn value must not become a torn event); raw_object checks that
        // as it goes.
        Output::Metadata => {
            scan::skip_ws(stored, scan::skip_value(stored, 0)?) == stored.len()
                && raw_metadata(&mut out, stored, rv)
        }
        Output::Trimmed => raw_object(&mut out, stored, rv, false, true),
        _ => raw_object(&mut out, stored, rv, false, false),
    };
    if !written {
        return None;
    }
    out.extend_from_slice(b"}\n");
    Some(Bytes::from(out))
}

/// A stored object's metadata object (the one starting at `b[start] == '{'`) written to `out`
/// with the resourceVersion spliced in first and, with `trim`, without managedFields: the
/// index just past the metadata, or `None` when the bytes are not `encode`'s shape (the
/// metadata holds a resourceVersion or is not an object; then `out` may hold a partial
/// write the caller truncates). One pass over the metadata's fields.
fn raw_meta(out: &mut Vec<u8>, b: &[u8], start: usize, rv: i64, trim: bool) -> Option<usize> {
    if b.get(start) != Some(&b'{') {
        return None;
    }
    out.extend_from_slice(b"{\"resourceVersion\":\"");
    write!(out, "{rv}\"").expect("writing to a Vec");
    let mut stray = false;
    let end = if trim {
        scan::walk(b, start, |key, value| {
            stray |= key == b"resourceVersion";
            let end = scan::skip_value(b, value)?;
            if key != b"managedFields" {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(key);
                out.extend_from_slice(b"\":");
                out.extend_from_slice(&b[value..end]);
            }
            Some(end)
        })?
    } else {
        let mut empty = true;
        let end = scan::walk(b, start, |key, value| {
            stray |= key == b"resourceVersion";
            empty = false;
            scan::skip_value(b, value)
        })?;
        if !empty {
            out.push(b',');
        }
        out.extend_from_slice(&b[scan::skip_ws(b, start + 1)..end - 1]);
        end
    };
    if stray {
        return None;
    }
    out.push(b'}');
    Some(end)
}

/// A stored object's metadata as a `PartialObjectMetadata`, with its resourceVersion spliced
/// in. Appended to `out`; `false` (and nothing appended) when the bytes are not `encode`'s shape.
fn raw_metadata(out: &mut Vec<u8>, stored: &[u8], rv: i64) -> bool {
    let Some(meta) = scan::object_field(stored, 0, b"metadata") else {
        return false;
    };
    let mark = out.len();
    out.extend_from_slice(PARTIAL_HEAD);
    if raw_meta(out, stored, meta, rv, false).is_none() {
        out.truncate(mark);
        return false;
    }
    out.push(b'}');
    true
}

/// A stored object as an item of a JSON list: without `apiVersion` and `kind` (upstream's
/// lists leave them out of items) and with its resourceVersion spliced into the metadata.
/// Appended to `out`; `false` (and nothing appended) when the bytes are not `encode`'s shape.
fn raw_list_item(out: &mut Vec<u8>, stored: &[u8], rv: i64, trim: bool) -> bool {
    raw_object(out, stored, rv, true, trim)
}

/// A stored object with its resourceVersion spliced into the metadata; without `apiVersion`
/// and `kind` when `list_item`, without managedFields when `trim`. Appended to `out`; `false`
/// (and nothing appended) when the bytes are not `encode`'s shape: one well-formed object
/// with an object `metadata` that holds no resourceVersion. One pass over the bytes, checks
/// included.
fn raw_object(out: &mut Vec<u8>, stored: &[u8], rv: i64, list_item: bool, trim: bool) -> bool {
    let mark = out.len();
    out.push(b'{');
    let mut first = true;
    let mut meta_seen = false;
    let end = scan::walk(stored, 0, |key, value| {
        if list_item && matches!(key, b"apiVersion" | b"kind") {
            return scan::skip_value(stored, value);
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(key);
        out.extend_from_slice(b"\":");
        if key == b"metadata" {
            meta_seen = true;
            raw_meta(out, stored, value, rv, trim)
        } else {
            let end = scan::skip_value(stored, value)?;
            out.extend_from_slice(&stored[value..end]);
            Some(end)
        }
    });
    // Trailing bytes other than whitespace: not one object (a torn value must not become a
    // torn event).
    let whole = end.is_some_and(|end| scan::skip_ws(stored, end) == stored.len());
    if !whole || !meta_seen {
        out.truncate(mark);
        return false;
    }
    out.push(b'}');
    true
}

/// Just enough of a JSON scanner to find an object's field without parsing it.
pub(crate) mod scan {
    pub fn skip_ws(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    }

    /// The index just past the string that starts at `b[i] == '"'`.
    fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
        i += 1;
        // Most strings are short keys and names: a plain loop over their first bytes costs
        // less than setting up a vectorised search.
        let short = b.len().min(i + 24);
        while i < short {
            match b[i] {
                b'"' => return Some(i + 1),
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
        // memchr's vectorised search: strings (a ConfigMap's data, managedFields) are most of
        // an object's bytes, and a byte-at-a-time loop here was a third of a LIST's time.
        while i < b.len() {
            i += memchr::memchr2(b'"', b'\\', &b[i..])?;
            match b[i] {
                b'\\' => i += 2,
                _ => return Some(i + 1),
            }
        }
        None
    }

    /// The index just past the value that starts at `b[i]`.
    pub fn skip_value(b: &[u8], i: usize) -> Option<usize> {
        match *b.get(i)? {
            b'"' => skip_string(b, i),
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut j = i;
                while j < b.len() {
                    match b[j] {
                        b'"' => {
                            j = skip_string(b, j)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(j + 1);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                None
            }
            _ => {
                let mut j = i;
                while j < b.len()
                    && !matches!(b[j], b',' | b'}' | b']')
                    && !b[j].is_ascii_whitespace()
                {
                    j += 1;
                }
                Some(j)
            }
        }
    }

    /// Walks the object that starts at `b[start] == '{'`: `field` gets each raw key (between
    /// its quotes) and where its value starts, and answers where the value ends. The index
    /// just past the object's closing brace; `None` when the bytes are not an object.
    pub fn walk<'a>(
        b: &'a [u8],
        start: usize,
        mut field: impl FnMut(&'a [u8], usize) -> Option<usize>,
    ) -> Option<usize> {
        if b.get(start) != Some(&b'{') {
            return None;
        }
        let mut i = skip_ws(b, start + 1);
        if b.get(i) == Some(&b'}') {
            return Some(i + 1);
        }
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let key_end = skip_string(b, i)?;
            let key = &b[i + 1..key_end - 1];
            i = skip_ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return None;
            }
            let end = field(key, skip_ws(b, i + 1))?;
            i = skip_ws(b, end);
            match *b.get(i)? {
                b',' => i = skip_ws(b, i + 1),
                b'}' => return Some(i + 1),
                _ => return None,
            }
        }
    }

    /// The fields of the object that starts at `b[start] == '{'`: each raw key (between its
    /// quotes) and the range of its value.
    pub fn fields(b: &[u8], start: usize) -> Option<Vec<(&[u8], std::ops::Range<usize>)>> {
        let mut out = Vec::new();
        walk(b, start, |key, value| {
            let end = skip_value(b, value)?;
            out.push((key, value..end));
            Some(end)
        })?;
        Some(out)
    }

    /// The elements of the array that starts at `b[start] == '['`: where each value starts.
    pub fn elements(b: &[u8], start: usize) -> Option<Vec<usize>> {
        let mut out = Vec::new();
        let mut i = skip_ws(b, start + 1);
        if b.get(i) == Some(&b']') {
            return Some(out);
        }
        loop {
            out.push(i);
            i = skip_ws(b, skip_value(b, i)?);
            match *b.get(i)? {
                b',' => i = skip_ws(b, i + 1),
                b']' => return Some(out),
                _ => return None,
            }
        }
    }

    /// In the object that starts at `b[start] == '{'`, the index where the value of the field
    /// named `name` starts (names compared as raw bytes: no escapes in the names we look for).
    pub fn object_field(b: &[u8], start: usize, name: &[u8]) -> Option<usize> {
        if b.get(start) != Some(&b'{') {
            return None;
        }
        let mut i = skip_ws(b, start + 1);
        loop {
            match *b.get(i)? {
                b'}' => return None,
                b'"' => {}
                _ => return None,
            }
            let key_end = skip_string(b, i)?;
            let key = &b[i + 1..key_end - 1];
            i = skip_ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = skip_ws(b, i + 1);
            if key == name {
                return Some(i);
            }
            i = skip_ws(b, skip_value(b, i)?);
            match *b.get(i)? {
                b',' => i = skip_ws(b, i + 1),
                b'}' => return None,
                _ => return None,
            }
        }
    }
}

/// What the watch fast path made of one event.
enum Fast {
    /// The event line to send.
    Line(Bytes),
    /// Nothing to send: the object is not (and was not) selected.
    Skip,
    /// Not decidable on the stored bytes: decode.
    Slow,
}

/// The selectors' verdict on a stored object, reading only the fields they select on.
fn selected(selectors: &Selectors, paths: &[Vec<String>], stored: &[u8]) -> Option<bool> {
    if paths.is_empty() {
        return Some(true);
    }
    let mut sparse = json!({});
    for path in paths {
        let mut at = 0;
        let mut found = true;
        for segment in path {
            match scan::object_field(stored, at, segment.as_bytes()) {
                Some(i) => at = i,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        let end = scan::skip_value(stored, at)?;
        let value: Value = serde_json::from_slice(&stored[at..end]).ok()?;
        let mut slot = &mut sparse;
        for segment in path {
            slot = &mut slot[segment.as_str()];
        }
        *slot = value;
    }
    Some(selectors.matches(&sparse))
}

/// An event as a JSON watch line without decoding the object (see `Fast`).
fn fast_event(selectors: &Selectors, paths: &[Vec<String>], event: &Event, output: Output) -> Fast {
    let new_matches = match event.kind {
        EventKind::Put => match selected(selectors, paths, &event.kv.value) {
            Some(m) => m,
            None => return Fast::Slow,
        },
        EventKind::Delete => false,
    };
    let old_matches = match &event.prev {
        Some(prev) => match selected(selectors, paths, &prev.value) {
            Some(m) => m,
            None => return Fast::Slow,
        },
        None => false,
    };
    let (kind, stored) = match (event.kind, new_matches, old_matches, &event.prev) {
        (EventKind::Delete, _, true, Some(prev)) => ("DELETED", &prev.value),
        (EventKind::Put, true, true, _) => ("MODIFIED", &event.kv.value),
        (EventKind::Put, true, false, _) => ("ADDED", &event.kv.value),
        (EventKind::Put, false, true, _) => ("DELETED", &event.kv.value),
        _ => return Fast::Skip,
    };
    match raw_event_line(kind, stored, event.kv.mod_revision, output) {
        Some(line) => Fast::Line(line),
        None => Fast::Slow,
    }
}

/// A watch: newline-delimited JSON events, from `resourceVersion` or (when it is unset or
/// "0") starting with the current state as ADDED events.
async fn watch(state: Arc<ApiState>, target: &Target, query: &Query, output: Output) -> ApiResult {
    let table = matches!(output, Output::Table(_));
    // Tables and converted views are built from decoded objects, not the stored bytes.
    let decoded = table || crate::convert::needed(target.res);
    let selectors = Selectors::from_query(query)?;
    let selected_paths = selectors.paths();
    /// The current state sent first: ready lines, or objects still to encode.
    enum Initial {
        Line(Bytes),
        Object(Value),
    }
    let prefix = collection_prefix(target);
    let res = target.res;
    let bookmarks = query.flag("allowWatchBookmarks");
    let send_initial = query.flag("sendInitialEvents");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let rv = query.get("resourceVersion").unwrap_or("");
    let mut initial = Vec::new();
    let after: i64 = if rv.is_empty() || rv == "0" || send_initial {
        let page = state
            .store
            .range(RangeRequest::prefix(prefix.clone()))
            .await?;
        for kv in &page.kvs {
            if !decoded && let Some(selected) = selected(&selectors, &selected_paths, &kv.value) {
                if !selected {
                    continue;
                }
                if let Some(line) = raw_event_line("ADDED", &kv.value, kv.mod_revision, output) {
                    initial.push(Initial::Line(line));
                    continue;
                }
            }
            let obj = decode(kv)?;
            if selectors.matches(&obj) {
                initial.push(Initial::Object(obj));
            }
        }
        page.revision
    } else {
        rv.parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?
    };
    let mut stream = state
        .store
        .watch(WatchRequest {
            prefix: prefix.clone(),
            after,
            progress_interval: bookmarks.then_some(Duration::from_secs(5)),
        })
        .await?;
    let body = async_stream::stream! {
        let mut first = true;
        let mut encode_event = |kind: &str, mut obj: Value| -> Bytes {
            crate::convert::to_view(res, &mut obj);
            let object = match output {
                Output::Table(include) => {
                    let t = table::for_objects(res, &[obj], None, first, include);
                    first = false;
                    t
                }
                Output::Metadata => partial(&obj),
                Output::Object => obj,
                Output::Trimmed => {
                    let mut obj = obj;
                    trim(&mut obj);
                    obj
                }
            };
            let mut line = json!({"type": kind, "object": object}).to_string();
            line.push('\n');
            Bytes::from(line)
        };
        for item in initial {
            yield Ok::<Bytes, std::io::Error>(match item {
                Initial::Line(line) => line,
                Initial::Object(obj) => encode_event("ADDED", obj),
            });
        }
        if send_initial && bookmarks {
            let bookmark = json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": after.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
            let mut line = json!({"type": "BOOKMARK", "object": bookmark}).to_string();
            line.push('\n');
            yield Ok(Bytes::from(line));
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let message = tokio::select! {
                _ = &mut deadline => break,
                m = stream.next() => m,
            };
            match message {
                Some(Ok(WatchMessage::Events(events))) => {
                    for event in events {
                        // JSON out: select on the few fields the selectors read and splice the
                        // resourceVersion into the stored bytes, instead of decoding and
                        // re-encoding whole objects (most of a busy server's watch work).
                        if !decoded {
                            match fast_event(&selectors, &selected_paths, &event, output) {
                                Fast::Line(line) => {
                                    yield Ok(line);
                                    continue;
                                }
                                Fast::Skip => continue,
                                Fast::Slow => {}
                            }
                        }
                        let new = match event.kind {
                            EventKind::Put => decode(&event.kv).ok(),
                            EventKind::Delete => None,
                        };
                        let old = event.prev.as_ref().and_then(|p| decode(p).ok());
                        let new_matches = new.as_ref().is_some_and(|o| selectors.matches(o));
                        let old_matches = old.as_ref().is_some_and(|o| selectors.matches(o));
                        let (kind, mut obj) = match (event.kind, new_matches, old_matches) {
                            (EventKind::Delete, _, true) => ("DELETED", old.unwrap()),
                            (EventKind::Put, true, true) => ("MODIFIED", new.unwrap()),
                            (EventKind::Put, true, false) => ("ADDED", new.unwrap()),
                            (EventKind::Put, false, true) => ("DELETED", new.unwrap()),
                            _ => continue,
                        };
                        obj["metadata"]["resourceVersion"] = json!(event.kv.mod_revision.to_string());
                        yield Ok(encode_event(kind, obj));
                    }
                }
                Some(Ok(WatchMessage::Progress(rev))) => {
                    if bookmarks {
                        let bookmark = json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": rev.to_string()}});
                        let mut line = json!({"type": "BOOKMARK", "object": bookmark}).to_string();
                        line.push('\n');
                        yield Ok(Bytes::from(line));
                    }
                }
                Some(Err(e)) => {
                    let status = ApiError::from(e).to_status();
                    let mut line = json!({"type": "ERROR", "object": status}).to_string();
                    line.push('\n');
                    yield Ok(Bytes::from(line));
                    break;
                }
                None => break,
            }
        }
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(Body::from_stream(body))
        .expect("valid response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_skips_strings_with_escapes() {
        // Escaped quotes and backslashes, at the ends of strings too, and a truncated string.
        let cases: [(&str, Option<usize>); 6] = [
            (r#""plain",1"#, Some(7)),
            (r#""a\"b","#, Some(6)),
            (r#""\\""#, Some(4)),
            (r#""x\\",2"#, Some(5)),
            (r#"{"k":"v\"}","n":[1,"]"]}"#, Some(24)),
            (r#""open"#, None),
        ];
        for (text, want) in cases {
            assert_eq!(scan::skip_value(text.as_bytes(), 0), want, "{text}");
        }
    }

    #[test]
    fn trimmed_events_and_list_items_leave_out_managed_fields_only() {
        let obj = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {}}}],
                "labels": {"managedFields": "kept"}},
            "spec": {"managedFields": "kept too"}});
        let mut want = obj.clone();
        want["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        want["metadata"]["resourceVersion"] = json!("9");
        let line = raw_event_line("ADDED", &encode(&obj), 9, Output::Trimmed).unwrap();
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed, json!({"type": "ADDED", "object": want}));

        let mut out = Vec::new();
        assert!(raw_list_item(&mut out, &encode(&obj), 9, true));
        let item: Value = serde_json::from_slice(&out).unwrap();
        let o = want.as_object_mut().unwrap();
        o.remove("apiVersion");
        o.remove("kind");
        assert_eq!(item, want);
        // Not `encode`'s shape: nothing written, the caller decodes.
        let mut out = b"x".to_vec();
        assert!(!raw_list_item(
            &mut out,
            br#"{"metadata":{"resourceVersion":"1"}}"#,
            9,
            true
        ));
        assert_eq!(out, b"x");
    }

    #[test]
    fn raw_event_lines_match_the_decoded_encoding() {
        let obj = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"template": {"metadata": {"name": "inner"}}}, "status": {"phase": "Running"}});
        let stored = encode(&obj);
        let line = raw_event_line("ADDED", &stored, 42, Output::Object).unwrap();
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        let mut want = obj.clone();
        want["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(parsed, json!({"type": "ADDED", "object": want}));
        assert!(line.ends_with(b"\n"));
        assert!(raw_event_line("ADDED", b"[1]", 1, Output::Object).is_none());

        // Strings with braces, quotes and escapes; a nested "metadata" key sorted before the
        // top-level one; empty metadata; whitespace the scanner must step over.
        for (stored, want_meta) in [
            (
                r#"{"a":{"metadata":{"x":1}},"b":"}\"{[","c":[1,{"d":"]"}],"metadata":{"name":"n"},"z":null}"#,
                json!({"name": "n", "resourceVersion": "7"}),
            ),
            (
                r#"{"kind":"X","metadata":{}}"#,
                json!({"resourceVersion": "7"}),
            ),
            // Escapes on both sides of where the string scan turns vectorised.
            (
                r#"{"a":"0123456789012345678901\"}","b":"01234567890123456789012\\","metadata":{"name":"x\"y"}}"#,
                json!({"name": "x\"y", "resourceVersion": "7"}),
            ),
            (
                r#"{ "metadata" : { "name" : "s" } , "spec" : true }"#,
                json!({"name": "s", "resourceVersion": "7"}),
            ),
        ] {
            let line = raw_event_line("MODIFIED", stored.as_bytes(), 7, Output::Object).unwrap();
            let parsed: Value = serde_json::from_slice(&line).unwrap();
            let mut want: Value = serde_json::from_str(stored).unwrap();
            want["metadata"] = want_meta;
            assert_eq!(
                parsed,
                json!({"type": "MODIFIED", "object": want}),
                "{stored}"
            );
        }
        // Shapes the splice must not touch: the caller decodes them instead.
        for stored in [
            r#"{"metadata":{"resourceVersion":"3"}}"#,
            r#"{"metadata":"x"}"#,
            r#"{"spec":{}}"#,
            r#"{"metadata":{"name":"n""#,
            r#"{"metadata":{}} {"#,
            r#"{"metadata":{"name":"n"},"data":"}"#,
        ] {
            assert!(
                raw_event_line("ADDED", stored.as_bytes(), 1, Output::Object).is_none(),
                "{stored}"
            );
        }
    }

    #[test]
    fn raw_metadata_matches_the_decoded_partial_object() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "annotations": {"x": "}"}}, "data": {"k": "v"}});
        let mut out = Vec::new();
        assert!(raw_metadata(&mut out, &encode(&obj), 3));
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        let mut want = obj.clone();
        want["metadata"]["resourceVersion"] = json!("3");
        assert_eq!(parsed, partial(&want));
        let line = raw_event_line("ADDED", &encode(&obj), 3, Output::Metadata).unwrap();
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed, json!({"type": "ADDED", "object": partial(&want)}));
    }

    #[test]
    fn raw_list_items_match_the_decoded_encoding() {
        for obj in [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "{b}"}}, "data": {"k": "v\"}"}}),
            json!({"kind": "Pod", "metadata": {}, "spec": {"x": [1, {"kind": "inner"}]}}),
        ] {
            let mut out = Vec::new();
            assert!(raw_list_item(&mut out, &encode(&obj), 5, false));
            let parsed: Value = serde_json::from_slice(&out).unwrap();
            let mut want = obj.clone();
            want.as_object_mut().unwrap().remove("apiVersion");
            want.as_object_mut().unwrap().remove("kind");
            want["metadata"]["resourceVersion"] = json!("5");
            assert_eq!(parsed, want);
        }
        let mut out = Vec::new();
        assert!(!raw_list_item(
            &mut out,
            br#"{"metadata":{"resourceVersion":"1"}}"#,
            5,
            false
        ));
        assert!(!raw_list_item(&mut out, br#"{"spec":{}}"#, 5, false));
        assert!(out.is_empty());
    }

    /// A listed Table (objects decoded without managedFields, row metadata copied from the
    /// stored bytes) is the document the decoded path builds, and selectors still apply.
    #[test]
    fn listed_tables_match_the_decoded_tables() {
        let pod = |name: &str, app: &str| {
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "d", "labels": {"app": app},
                    "creationTimestamp": "2020-01-01T00:00:00Z",
                    "managedFields": [{"manager": "m", "operation": "Update", "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:spec": {"f:nodeName": {}}}}]},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
                "status": {"phase": "Running", "podIP": "10.0.0.1",
                    "containerStatuses": [{"name": "c", "ready": true, "restartCount": 2}]}})
        };
        let objects = [pod("a", "web"), pod("b", "db"), pod("c", "web")];
        let kvs: Vec<KeyValue> = objects
            .iter()
            .enumerate()
            .map(|(i, o)| KeyValue {
                key: format!(
                    "/registry/pods/d/{}",
                    o["metadata"]["name"].as_str().unwrap()
                ),
                value: encode(o),
                create_revision: 10 + i as i64,
                mod_revision: 10 + i as i64,
                version: 1,
            })
            .collect();
        let res = registry::find("", "v1", "pods").unwrap();
        let decoded: Vec<Value> = [0, 2].iter().map(|&i| decode(&kvs[i]).unwrap()).collect();
        let metadata = json!({"resourceVersion": "12"});
        let listed = |include: table::Include| {
            let query = Query::parse(Some("labelSelector=app%3Dweb"));
            let selectors = Selectors::from_query(&query).unwrap();
            let mut items = ListItems {
                res,
                paths: selectors.paths(),
                selectors,
                output: Output::Table(include),
                limit: 0,
                count: 0,
            };
            let mut rows = Vec::new();
            items.encode(&kvs, &mut Vec::new(), &mut rows).unwrap();
            let listed: Value =
                serde_json::from_slice(&table::encode_list(res, &rows, &metadata)).unwrap();
            let want = table::for_objects(res, &decoded, Some(metadata.clone()), true, include);
            assert_eq!(listed, want, "{include:?}");
            assert_eq!(listed["rows"].as_array().unwrap().len(), 2);
            listed
        };
        let rows = listed(table::Include::Metadata);
        assert_eq!(rows["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert!(rows["rows"][0]["object"]["metadata"]["managedFields"].is_array());
        assert!(rows["rows"][0]["object"]["spec"].is_null());
        let rows = listed(table::Include::Object);
        assert_eq!(rows["rows"][1]["object"], decoded[1], "the whole object");
        assert_eq!(rows["rows"][1]["object"]["kind"], "Pod");
        assert_eq!(
            rows["rows"][1]["object"]["metadata"]["resourceVersion"],
            "12"
        );
        let rows = listed(table::Include::None);
        assert_eq!(rows["rows"][0]["object"], Value::Null);
        assert_eq!(
            table::Include::from_query(Some("Everything"))
                .unwrap_err()
                .into_response()
                .status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn watch_fast_path_selects_as_the_decoded_objects_do() {
        let pod = |node: &str, app: &str| {
            encode(&json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "d", "labels": {"app": app}},
                "spec": {"nodeName": node, "containers": [{"name": "c"}]}}))
        };
        let kv = |value: Bytes, rev: i64| KeyValue {
            key: "/registry/pods/d/p".into(),
            value,
            create_revision: 1,
            mod_revision: rev,
            version: 1,
        };
        let query = |q: &str| {
            let query = Query::parse(Some(q));
            Selectors::from_query(&query).unwrap()
        };
        let cases = [
            (
                "fieldSelector=spec.nodeName%3Dn1",
                pod("n1", "a"),
                None,
                Some("ADDED"),
            ),
            (
                "fieldSelector=spec.nodeName%3Dn1",
                pod("n2", "a"),
                Some(pod("n1", "a")),
                Some("DELETED"),
            ),
            ("fieldSelector=spec.nodeName!%3D", pod("", "a"), None, None),
            (
                "labelSelector=app%3Da",
                pod("n1", "a"),
                Some(pod("n1", "a")),
                Some("MODIFIED"),
            ),
            ("labelSelector=app%3Db", pod("n1", "a"), None, None),
            (
                "labelSelector=app%3Db",
                pod("n1", "b"),
                Some(pod("n1", "a")),
                Some("ADDED"),
            ),
            (
                "labelSelector=app&fieldSelector=metadata.name%3Dp",
                pod("n", "x"),
                None,
                Some("ADDED"),
            ),
            ("", pod("n", "x"), None, Some("ADDED")),
        ];
        for (q, new, prev, want) in cases {
            let selectors = query(q);
            let event = Event {
                kind: EventKind::Put,
                kv: kv(new.clone(), 9),
                prev: prev.map(|p| kv(p, 8)),
            };
            match (
                fast_event(&selectors, &selectors.paths(), &event, Output::Object),
                want,
            ) {
                (Fast::Line(line), Some(kind)) => {
                    let parsed: Value = serde_json::from_slice(&line).unwrap();
                    assert_eq!(parsed["type"], kind, "{q}");
                    assert_eq!(parsed["object"]["metadata"]["resourceVersion"], "9", "{q}");
                }
                (Fast::Skip, None) => {}
                (Fast::Line(line), None) => panic!("{q}: sent {}", String::from_utf8_lossy(&line)),
                (Fast::Skip, Some(kind)) => panic!("{q}: skipped, want {kind}"),
                (Fast::Slow, _) => panic!("{q}: slow path"),
            }
        }
        // A delete is sent with the last stored state, at the delete's revision.
        let selectors = query("labelSelector=app%3Da");
        let event = Event {
            kind: EventKind::Delete,
            kv: kv(Bytes::new(), 12),
            prev: Some(kv(pod("n1", "a"), 10)),
        };
        let Fast::Line(line) = fast_event(&selectors, &selectors.paths(), &event, Output::Object)
        else {
            panic!("delete not sent");
        };
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed["type"], "DELETED");
        assert_eq!(parsed["object"]["metadata"]["resourceVersion"], "12");
    }

    #[test]
    fn paths() {
        let t = parse_path("/api/v1/namespaces/default/configmaps/x")
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.res.plural, t.namespace.as_deref(), t.name.as_deref()),
            ("configmaps", Some("default"), Some("x"))
        );
        let t = parse_path("/api/v1/namespaces/default").unwrap().unwrap();
        assert_eq!(
            (t.res.plural, t.namespace, t.name.as_deref()),
            ("namespaces", None, Some("default"))
        );
        let t = parse_path("/api/v1/namespaces/default/status")
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.res.plural, t.subresource.as_deref()),
            ("namespaces", Some("status"))
        );
        let t = parse_path("/apis/apps/v1/namespaces/ns/deployments/web/scale")
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.res.plural, t.subresource.as_deref()),
            ("deployments", Some("scale"))
        );
        let t = parse_path("/api/v1/pods").unwrap().unwrap();
        assert_eq!((t.res.plural, t.namespace), ("pods", None));
        assert!(parse_path("/api/v1").unwrap().is_none());
        assert!(parse_path("/api/v1/nothing").is_err());
        assert!(parse_path("/apis/apps/v1/pods").is_err());
    }

    #[test]
    fn names() {
        use crate::validation::{dns1123_label, dns1123_subdomain};
        assert!(dns1123_subdomain("a.b-c.d").is_empty());
        assert!(!dns1123_subdomain("Bad_Name").is_empty());
        assert!(dns1123_label("kube-system").is_empty());
        assert!(!dns1123_label("a.b").is_empty());
    }

    #[test]
    fn continue_token_round_trip() {
        let t = encode_continue(42, "ns/name\0");
        assert_eq!(decode_continue(&t).unwrap(), (42, "ns/name\0".to_owned()));
        assert!(decode_continue("garbage!").is_err());
    }

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=true&limit=",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert_eq!(q.get("limit"), None);
    }
}
