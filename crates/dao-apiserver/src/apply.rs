//! Server-side apply (`PATCH` with `application/apply-patch+yaml`): merge an applied
//! configuration into the live object with structured-merge semantics, remove what the
//! manager applied before and no longer does (unless someone else owns it), detect conflicts
//! with other managers, and compute the new `managedFields`.
//!
//! Maps merge; associative lists (the keys of `managed::list_kind`) merge item by item on
//! their keys; set lists merge as sets; every other list, and atomic maps, are replaced whole;
//! scalars are set.

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use crate::api::{self, ApiResult, ApiState, Query, Target, Track};
use crate::managed::{self, Entry, ListKind, Scope, Set};
use crate::status::{ApiError, Cause};

const APPLY_YAML: &str = "application/apply-patch+yaml";

/// Whether a PATCH is a server-side apply.
pub fn is_apply(headers: &HeaderMap) -> bool {
    api::media_type(headers) == Some(APPLY_YAML)
}

/// 422 for invalid PatchOptions, as upstream validates them before anything else.
fn invalid_options(reason: &'static str, field: &str, message: &str) -> ApiError {
    ApiError::invalid_kind(
        "PatchOptions",
        "meta.k8s.io",
        "",
        vec![Cause {
            reason,
            field: field.into(),
            message: message.into(),
        }],
    )
}

/// `force` is for apply patches only.
pub fn check_not_forced(query: &Query) -> ApiResult<()> {
    if query.get("force").is_some() {
        return Err(invalid_options(
            "FieldValueForbidden",
            "force",
            "Forbidden: may not be specified for non-apply patch",
        ));
    }
    Ok(())
}

/// `PATCH` with `application/apply-patch+yaml`: create the object from the configuration if
/// it does not exist, else merge it in; either way through the ordinary create and update
/// paths, with the managedFields computed here.
pub async fn handle(
    state: &ApiState,
    target: &Target,
    name: &str,
    sub: Option<&str>,
    query: &Query,
    body: &[u8],
) -> ApiResult {
    let Some(manager) = query.get("fieldManager") else {
        return Err(invalid_options(
            "FieldValueRequired",
            "fieldManager",
            "Required value: is required for apply patch",
        ));
    };
    let force = match query.get("force") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "strconv.ParseBool: parsing {other:?}: invalid syntax"
            )));
        }
    };
    let dry = api::dry_run(query)?;
    let res = target.res;
    match sub {
        None => {}
        Some("status") if res.subresources.contains(&"status") => {}
        Some(_) => {
            return Err(api::not_found_path());
        }
    }
    let config: Value = serde_yaml::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the applied configuration must be an object",
        ));
    }
    let text = |p: &str| config.pointer(p).and_then(Value::as_str).unwrap_or("");
    let (api_version, kind) = (text("/apiVersion"), text("/kind"));
    if api_version != res.api_version() || kind != res.kind {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        return Err(ApiError::bad_request(format!(
            "invalid object type: {group}/{version}, Kind={kind}"
        )));
    }
    if config.pointer("/metadata/managedFields").is_some() {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let config_name = text("/metadata/name");
    if config_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({config_name}) does not match the name on the URL ({name})"
        )));
    }
    let scope = api::write_scope(res, sub);
    let subresource = sub.unwrap_or("");
    for _ in 0..8 {
        let live = match api::get(state, target, name).await {
            Ok(live) => Some(live),
            Err(e) if e.code == 404 && sub.is_none() => None,
            Err(e) => return Err(e),
        };
        let applied = apply(
            live.as_ref(),
            &config,
            &res.api_version(),
            scope,
            manager,
            subresource,
            force,
        )?;
        let mut object = applied.object;
        let Some(live) = live else {
            // Apply creates: upstream answers 201 Created.
            match api::create(state, target, query, object, None, dry, Track::Done).await {
                Err(e) if e.reason == "AlreadyExists" => continue,
                other => return other,
            }
        };
        if config.pointer("/metadata/resourceVersion").is_none() {
            object["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"].clone();
        }
        let warnings = api::check_fields(res, &mut object, query, None)?;
        match api::update(
            state,
            target,
            name,
            sub,
            object,
            dry,
            Track::Done,
            Some(live),
        )
        .await
        {
            Err(e)
                if e.reason == "Conflict"
                    && e.code == 409
                    && config.pointer("/metadata/resourceVersion").is_none()
                    && e.details
                        .as_ref()
                        .is_some_and(|d| d.get("causes").is_none()) =>
            {
                continue;
            }
            Err(e) => return Err(e),
            Ok(saved) => {
                return Ok(api::with_warnings(
                    saved.response(StatusCode::OK),
                    &warnings,
                ));
            }
        }
    }
    Err(ApiError::conflict(res, name))
}

/// Merge `config` into `live` in place.
pub fn merge(live: &mut Value, config: &Value) {
    merge_value(live, config, "");
}

fn merge_value(live: &mut Value, config: &Value, field: &str) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !managed::is_atomic_map(field) => {
            for (k, cv) in c {
                if cv.is_null() {
                    l.remove(k);
                    continue;
                }
                match l.get_mut(k) {
                    Some(lv) => merge_value(lv, cv, k),
                    None => {
                        let mut v = Value::Null;
                        merge_value(&mut v, cv, k);
                        l.insert(k.clone(), v);
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(c)) => match managed::pair_kind(field, l, c) {
            ListKind::Map(keys) => {
                for item in c {
                    let key = managed::item_key(keys, item);
                    match l.iter_mut().find(|i| managed::item_key(keys, i) == key) {
                        Some(existing) => merge_value(existing, item, ""),
                        None => l.push(without_nulls(item)),
                    }
                }
            }
            ListKind::Set => {
                for item in c {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
            }
            ListKind::Atomic => *l = c.clone(),
        },
        (slot, c) => *slot = without_nulls(c),
    }
}

/// A configured value as it is stored: nulls in objects mean "absent".
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Remove from `object` what `last` (the manager's previous applied set) names and none of
/// `owned` (every manager's set after this apply) does. A field stays if anyone owns it or
/// anything under it; then only what is under it is considered.
pub fn prune(object: &mut Value, last: &Set, owned: &[&Set]) {
    prune_node(object, last, owned);
}

fn prune_node(value: &mut Value, last: &Set, owned: &[&Set]) {
    for (pe, sub) in last.iter().filter(|(k, _)| *k != ".") {
        let sub = sub.as_object().cloned().unwrap_or_default();
        let owners: Vec<&Set> = owned
            .iter()
            .filter_map(|o| o.get(pe).and_then(Value::as_object))
            .collect();
        let keep = !owners.is_empty();
        if let Some(field) = pe.strip_prefix("f:") {
            let Some(obj) = value.as_object_mut() else {
                continue;
            };
            if !keep {
                obj.remove(field);
            } else if let Some(child) = obj.get_mut(field) {
                prune_node(child, &sub, &owners);
            }
        } else if pe.starts_with("k:") || pe.starts_with("v:") {
            let Some(list) = value.as_array_mut() else {
                continue;
            };
            let Some(pos) = list.iter().position(|item| item_matches(pe, item)) else {
                continue;
            };
            if !keep {
                list.remove(pos);
            } else {
                prune_node(&mut list[pos], &sub, &owners);
            }
        }
    }
}

/// Whether a list item is the one a `k:` or `v:` path element names.
fn item_matches(pe: &str, item: &Value) -> bool {
    if let Some(v) = pe.strip_prefix("v:") {
        return serde_json::from_str::<Value>(v).is_ok_and(|v| v == *item);
    }
    let Some(keys) = pe
        .strip_prefix("k:")
        .and_then(|k| serde_json::from_str::<Map<String, Value>>(k).ok())
    else {
        return false;
    };
    keys.iter().all(|(k, v)| match item.get(k) {
        Some(iv) => iv == v,
        // A defaulted key (a port's protocol) the item leaves out.
        None => k == "protocol" && v == "TCP",
    })
}

/// One field another manager owns that the apply would change.
#[derive(Debug, PartialEq)]
pub struct Conflict {
    pub manager: String,
    pub path: String,
}

/// 409 with upstream's message and FieldManagerConflict causes.
pub fn conflict_error(conflicts: &[Conflict]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", c.manager), "field": c.path})
        })
        .collect();
    let message = if let [one] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager, one.path
        )
    } else {
        let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {m}:"));
            for c in conflicts.iter().filter(|c| c.manager == m) {
                lines.push(format!("- {}", c.path));
            }
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    ApiError {
        code: 409,
        reason: "Conflict",
        message,
        details: Some(json!({"causes": causes})),
    }
}

/// The manager `kubectl apply --server-side` applies as; upstream's upgrade path from
/// client-side apply is for it alone (another `--field-manager` opts out).
const KUBECTL: &str = "kubectl";

/// Where client-side `kubectl apply` keeps the configuration it applied last.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The fields a server-side apply by kubectl may take from their owners without a conflict:
/// those of the live object's last-applied annotation (same apiVersion) whose live values
/// are still the ones it records. None without a usable annotation.
fn upgradable_from_client_side(live: &Value, api_version: &str, scope: Scope) -> Option<Set> {
    let text = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()
        .filter(|t| !t.is_empty())?;
    let last: Value = serde_json::from_str(text).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    let mut fields = managed::field_set(&last, scope);
    // Applying the annotation onto the live object changes exactly the fields whose values
    // differ from it or that are gone from the object: those are no longer its to give.
    let mut restored = live.clone();
    merge(&mut restored, &last);
    managed::difference(&mut fields, &managed::diff(live, &restored, scope).changed);
    Some(fields)
}

/// After kubectl's server-side apply, an object that carries a last-applied annotation gets
/// the configuration just applied in it, so that a later client-side apply starts from it.
fn keep_last_applied_current(object: &mut Value, config: &Value) {
    let Some(slot) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
        .and_then(|a| a.get_mut(LAST_APPLIED))
    else {
        return;
    };
    if slot.as_str().is_none_or(str::is_empty) {
        return;
    }
    let mut config = config.clone();
    if let Some(a) = config
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(LAST_APPLIED);
    }
    *slot = Value::String(go_json(&config) + "\n");
}

/// JSON as Go's encoder writes it (what kubectl and upstream's server put in the annotation):
/// keys sorted, and `<`, `>`, `&`, U+2028 and U+2029 escaped. They occur only inside strings.
fn go_json(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The outcome of an apply: the object to store, with its managedFields.
pub struct Applied {
    pub object: Value,
}

/// Apply `config` as `manager` to `live` (None: the object does not exist yet). `config`'s
/// identity checks are the caller's.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    api_version: &str,
    scope: Scope,
    manager: &str,
    subresource: &str,
    force: bool,
) -> Result<Applied, ApiError> {
    let empty = json!({});
    let live = live.unwrap_or(&empty);
    let original = config;
    let mut entries = live
        .pointer("/metadata/managedFields")
        .cloned()
        .and_then(managed::decode)
        .unwrap_or_default();
    let mut base = live.clone();
    managed::take(&mut base);
    // The part of the configuration this endpoint writes.
    let mut config = config.clone();
    if let Some(c) = config.as_object_mut() {
        match scope {
            Scope::NoStatus => {
                c.remove("status");
            }
            Scope::StatusOnly => c.retain(|k, _| k == "status" || k == "metadata"),
            Scope::All => {}
        }
        if scope == Scope::StatusOnly
            && let Some(Value::Object(m)) = c.get_mut("metadata")
        {
            m.retain(|k, _| k == "name" || k == "namespace");
        }
    }
    let mut merged = base.clone();
    merge(&mut merged, &config);

    let me = Entry {
        manager: manager.to_owned(),
        operation: "Apply",
        api_version: api_version.to_owned(),
        subresource: subresource.to_owned(),
        time: None,
        fields: managed::field_set(&config, scope),
    };
    let previous = entries.iter().position(|e| e.same_manager(&me));
    let last = previous.map(|i| entries.remove(i));
    if let Some(last) = &last {
        let mut owned: Vec<&Set> = entries.iter().map(|e| &e.fields).collect();
        owned.push(&me.fields);
        prune(&mut merged, &last.fields, &owned);
    }

    let d = managed::diff(&base, &merged, scope);
    // What this apply changes that other managers own: conflicts, unless forced.
    let taken: Vec<(usize, Set)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| managed::intersection(&e.fields, &d.changed).map(|t| (i, t)))
        .collect();
    if !force && !taken.is_empty() {
        // kubectl's server-side apply may take over what its client-side apply set: the
        // fields of the last-applied annotation that still hold the values it gave them.
        let allowed = (manager == KUBECTL)
            .then(|| upgradable_from_client_side(&base, api_version, scope))
            .flatten();
        let mut conflicts = Vec::new();
        for (i, t) in &taken {
            let mut left = t.clone();
            if let Some(allowed) = &allowed {
                managed::difference(&mut left, allowed);
            }
            let who = entries[*i].describe();
            conflicts.extend(managed::members(&left).into_iter().map(|p| Conflict {
                manager: who.clone(),
                path: managed::path_string(&p),
            }));
        }
        if !conflicts.is_empty() {
            return Err(conflict_error(&conflicts));
        }
    }
    for (i, t) in &taken {
        managed::difference(&mut entries[*i].fields, t);
    }
    for e in entries.iter_mut() {
        managed::remove_subtrees(&mut e.fields, &d.removed);
    }
    if manager == KUBECTL {
        keep_last_applied_current(&mut merged, original);
    }
    let changed = merged != base;
    let time = match &last {
        Some(l) if !changed => l.time.clone(),
        _ => Some(managed::now()),
    };
    entries.push(Entry { time, ..me });
    if !merged.get("metadata").is_some_and(Value::is_object) {
        merged["metadata"] = json!({});
    }
    managed::put(&mut merged, entries);
    Ok(Applied { object: merged })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(what: &str, got: Value, want: Value) {
        assert_eq!(got, want, "{what}");
    }

    #[test]
    fn merges() {
        let cases = [
            (
                "maps merge, scalars are set, null removes",
                json!({"a": 1, "m": {"x": 1, "y": 2}}),
                json!({"a": 2, "m": {"y": null, "z": 3}}),
                json!({"a": 2, "m": {"x": 1, "z": 3}}),
            ),
            (
                "containers merge by name, new ones appended",
                json!({"containers": [{"name": "a", "image": "1", "args": ["x"]}, {"name": "b", "image": "1"}]}),
                json!({"containers": [{"name": "b", "image": "2"}, {"name": "c", "image": "1"}]}),
                json!({"containers": [{"name": "a", "image": "1", "args": ["x"]}, {"name": "b", "image": "2"}, {"name": "c", "image": "1"}]}),
            ),
            (
                "ports by containerPort and protocol (TCP by default)",
                json!({"ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}]}),
                json!({"ports": [{"containerPort": 80, "hostPort": 8080}]}),
                json!({"ports": [{"containerPort": 80, "protocol": "TCP", "name": "http", "hostPort": 8080}]}),
            ),
            (
                "atomic lists and selectors are replaced",
                json!({"args": ["a", "b"], "selector": {"matchLabels": {"a": "1", "b": "2"}}}),
                json!({"args": ["c"], "selector": {"matchLabels": {"a": "1"}}}),
                json!({"args": ["c"], "selector": {"matchLabels": {"a": "1"}}}),
            ),
            (
                "finalizers merge as a set",
                json!({"finalizers": ["a"]}),
                json!({"finalizers": ["b", "a"]}),
                json!({"finalizers": ["a", "b"]}),
            ),
        ];
        for (what, live, config, want) in cases {
            let mut got = live.clone();
            merge(&mut got, &config);
            check(what, got, want);
        }
    }

    fn deployment(replicas: Option<i64>, labels: Value, image: &str) -> Value {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": labels},
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}});
        if let Some(r) = replicas {
            d["spec"]["replicas"] = json!(r);
        }
        d
    }

    fn run(
        live: Option<&Value>,
        config: &Value,
        manager: &str,
        force: bool,
    ) -> Result<Value, ApiError> {
        apply(live, config, "apps/v1", Scope::NoStatus, manager, "", force).map(|a| a.object)
    }

    /// Record a non-apply write of `new` over `old` as `manager` (on `subresource`, "" for the
    /// main resource).
    fn record_as(
        old: Option<&Value>,
        new: &mut Value,
        api_version: &str,
        manager: &str,
        subresource: &str,
    ) {
        let writer = managed::Writer {
            manager: manager.into(),
            subresource: subresource.into(),
        };
        managed::record_update(old, new, api_version, Scope::NoStatus, &writer);
    }

    fn fields_of(object: &Value, manager: &str) -> Value {
        object["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["manager"] == manager)
            .map(|e| e["fieldsV1"].clone())
            .unwrap_or(Value::Null)
    }

    #[test]
    fn apply_creates_updates_and_removes_what_it_stopped_applying() {
        let first = deployment(Some(2), json!({"app": "web", "tier": "fe"}), "nginx:1");
        let created = run(None, &first, "ctl", false).unwrap();
        check("created", created["spec"]["replicas"].clone(), json!(2));
        let mf = &created["metadata"]["managedFields"][0];
        check(
            "entry",
            json!([mf["manager"], mf["operation"], mf["apiVersion"]]),
            json!(["ctl", "Apply", "apps/v1"]),
        );
        check(
            "applied set",
            mf["fieldsV1"].clone(),
            json!({"f:metadata": {"f:labels": {"f:app": {}, "f:tier": {}}},
              "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}}),
        );

        // Drop a label and replicas, change the image: dropped fields go, the rest updates.
        let second = deployment(None, json!({"app": "web"}), "nginx:2");
        let updated = run(Some(&created), &second, "ctl", false).unwrap();
        check(
            "label removed",
            updated["metadata"]["labels"].clone(),
            json!({"app": "web"}),
        );
        check(
            "replicas removed",
            updated["spec"]
                .get("replicas")
                .cloned()
                .unwrap_or(Value::Null),
            Value::Null,
        );
        check(
            "image",
            updated["spec"]["template"]["spec"]["containers"][0]["image"].clone(),
            json!("nginx:2"),
        );

        // A field another manager also owns stays when this one stops applying it.
        let mut shared = created.clone();
        let theirs = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"tier": "fe"}}, "spec": {"replicas": 2}});
        let other = run(Some(&shared), &theirs, "other", false).unwrap();
        shared = other;
        let after = run(Some(&shared), &second, "ctl", false).unwrap();
        check(
            "co-owned label kept",
            after["metadata"]["labels"].clone(),
            json!({"app": "web", "tier": "fe"}),
        );
        check(
            "co-owned replicas kept",
            after["spec"]["replicas"].clone(),
            json!(2),
        );
        check(
            "other's set",
            fields_of(&after, "other"),
            json!({"f:metadata": {"f:labels": {"f:tier": {}}}, "f:spec": {"f:replicas": {}}}),
        );
    }

    #[test]
    fn conflicts_and_force() {
        let created = run(
            None,
            &deployment(Some(2), json!({"app": "web"}), "nginx:1"),
            "ctl",
            false,
        )
        .unwrap();
        // Another manager changes replicas with an update (kubectl scale).
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_as(Some(&created), &mut scaled, "apps/v1", "kubectl", "scale");
        let err = run(
            Some(&scaled),
            &deployment(Some(3), json!({"app": "web"}), "nginx:1"),
            "ctl",
            false,
        )
        .unwrap_err();
        check("code", json!(err.code), json!(409));
        check(
            "message",
            json!(err.message),
            json!(
                "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
            ),
        );
        check(
            "causes",
            err.details.clone().unwrap(),
            json!({"causes": [{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl\" with subresource \"scale\" using apps/v1", "field": ".spec.replicas"}]}),
        );
        // The same value is no conflict: both own it.
        let same = run(
            Some(&scaled),
            &deployment(Some(5), json!({"app": "web"}), "nginx:1"),
            "ctl",
            false,
        )
        .unwrap();
        check(
            "shared",
            fields_of(&same, "kubectl"),
            json!({"f:spec": {"f:replicas": {}}}),
        );
        // Force takes it.
        let forced = run(
            Some(&scaled),
            &deployment(Some(3), json!({"app": "web"}), "nginx:1"),
            "ctl",
            true,
        )
        .unwrap();
        check("forced value", forced["spec"]["replicas"].clone(), json!(3));
        check("loser dropped", fields_of(&forced, "kubectl"), Value::Null);

        // Two conflicts, two managers.
        let mut two = scaled.clone();
        two["metadata"]["labels"]["app"] = json!("x");
        record_as(Some(&scaled), &mut two, "v1", "edit", "");
        let err = run(
            Some(&two),
            &deployment(Some(3), json!({"app": "y"}), "nginx:1"),
            "ctl",
            false,
        )
        .unwrap_err();
        check(
            "plural message",
            json!(err.message),
            json!(
                "Apply failed with 2 conflicts: conflicts with \"edit\" using v1:\n- .metadata.labels.app\nconflicts with \"kubectl\" with subresource \"scale\" using apps/v1:\n- .spec.replicas"
            ),
        );
    }

    /// An object as client-side `kubectl apply` leaves it: the configuration in the
    /// annotation, its fields owned by kubectl-client-side-apply's Update entry.
    fn client_side_applied(config: &Value) -> Value {
        let mut object = config.clone();
        object["metadata"]["annotations"] = json!({ LAST_APPLIED: format!("{}\n", config) });
        record_as(
            None,
            &mut object,
            "apps/v1",
            "kubectl-client-side-apply",
            "",
        );
        object
    }

    #[test]
    fn kubectl_takes_over_what_client_side_apply_set() {
        let csa = client_side_applied(&deployment(Some(2), json!({"app": "web"}), "nginx:1"));
        let changed = deployment(Some(2), json!({"app": "web"}), "nginx:2");

        // Another manager conflicts on the image as before.
        let err = run(Some(&csa), &changed, "other", false).unwrap_err();
        check(
            "other manager",
            json!(err.message),
            json!(
                "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.template.spec.containers[name=\"web\"].image"
            ),
        );

        // kubectl takes it over, and the annotation now records what it applied.
        let upgraded = run(Some(&csa), &changed, "kubectl", false).unwrap();
        check(
            "image",
            upgraded["spec"]["template"]["spec"]["containers"][0]["image"].clone(),
            json!("nginx:2"),
        );
        let csa_fields = fields_of(&upgraded, "kubectl-client-side-apply");
        check(
            "client-side apply lost the image",
            csa_fields
                .pointer("/f:spec/f:template/f:spec/f:containers/k:{\"name\":\"web\"}/f:image")
                .cloned()
                .unwrap_or_default(),
            Value::Null,
        );
        check(
            "client-side apply kept the rest",
            csa_fields
                .pointer("/f:spec/f:replicas")
                .cloned()
                .unwrap_or_default(),
            json!({}),
        );
        check(
            "annotation",
            upgraded["metadata"]["annotations"][LAST_APPLIED].clone(),
            json!(format!("{}\n", changed)),
        );

        // A field someone changed since the client-side apply is not its to give: replicas
        // scaled to 5 conflicts, and nothing else is reported.
        let mut scaled = csa.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_as(
            Some(&csa),
            &mut scaled,
            "apps/v1",
            "kubectl-client-side-apply",
            "",
        );
        let err = run(
            Some(&scaled),
            &deployment(Some(3), json!({"app": "web"}), "nginx:2"),
            "kubectl",
            false,
        )
        .unwrap_err();
        check(
            "changed since",
            json!(err.message),
            json!(
                "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
            ),
        );

        // Without the annotation there is nothing to upgrade from.
        let mut bare = csa.clone();
        bare["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        assert!(run(Some(&bare), &changed, "kubectl", false).is_err());
    }

    #[test]
    fn last_applied_is_written_as_go_writes_it() {
        check(
            "escaped",
            json!(go_json(&json!({"b": "<a&b>", "a": "\u{2028}"}))),
            json!(r#"{"a":"\u2028","b":"\u003ca\u0026b\u003e"}"#),
        );
    }

    #[test]
    fn prunes_only_what_no_one_owns() {
        let mut object =
            json!({"spec": {"a": 1, "b": 2, "list": [{"name": "x", "v": 1}, {"name": "y"}]}});
        let last = json!({"f:spec": {"f:a": {}, "f:b": {}, "f:list": {"k:{\"name\":\"x\"}": {".": {}, "f:v": {}}, "k:{\"name\":\"y\"}": {}}}});
        let other = json!({"f:spec": {"f:b": {}, "f:list": {"k:{\"name\":\"y\"}": {}}}});
        prune(
            &mut object,
            last.as_object().unwrap(),
            &[other.as_object().unwrap()],
        );
        check(
            "pruned",
            object,
            json!({"spec": {"b": 2, "list": [{"name": "y"}]}}),
        );
    }
}
