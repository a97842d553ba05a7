//! `metadata.managedFields`: which manager owns which fields, as upstream records it on every
//! write, and the field-set algebra server-side apply (`apply.rs`) builds on.
//!
//! A field set is kept in upstream's FieldsV1 form itself, a JSON tree, so entries are never
//! converted: a key is `f:<field>`, `k:<json of an associative list item's keys>`,
//! `v:<json of a set item>` or `i:<index>`; a node that is `{}` is a member of the set with
//! nothing under it, a node with children is a member only if it also has the key `.`.
//!
//! Which lists are associative (merged by key), sets or atomic comes from a table of field
//! names (`list_kind`), the same knowledge `smp.rs` has about merge keys, with upstream's
//! `listMapKeys` where they name more than one key. Objects are granular except the label
//! selectors and node selectors upstream marks atomic.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

pub type Set = Map<String, Value>;

/// How a list field merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// Items are identified by these key fields (sorted), with a default for a missing one.
    Map(&'static [(&'static str, Option<&'static str>)]),
    /// Scalars merged as a set.
    Set,
    /// Replaced whole.
    Atomic,
}

/// The kind of list `field` is, given a sample element.
pub fn list_kind(field: &str, sample: Option<&Value>) -> ListKind {
    const NAME: &[(&str, Option<&str>)] = &[("name", None)];
    let has = |k: &str| sample.and_then(|s| s.get(k)).is_some();
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => ListKind::Map(NAME),
        "volumeMounts" => ListKind::Map(&[("mountPath", None)]),
        "volumeDevices" => ListKind::Map(&[("devicePath", None)]),
        "hostAliases" | "podIPs" | "hostIPs" => ListKind::Map(&[("ip", None)]),
        "ownerReferences" => ListKind::Map(&[("uid", None)]),
        "conditions" => ListKind::Map(&[("type", None)]),
        "taints" => ListKind::Map(&[("effect", None), ("key", None)]),
        "topologySpreadConstraints" => {
            ListKind::Map(&[("topologyKey", None), ("whenUnsatisfiable", None)])
        }
        "ports" if has("containerPort") => {
            ListKind::Map(&[("containerPort", None), ("protocol", Some("TCP"))])
        }
        "ports" if has("port") => ListKind::Map(&[("port", None), ("protocol", Some("TCP"))]),
        "finalizers" => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

/// Maps that are replaced whole (upstream's `structType=atomic` / `mapType=atomic`).
pub fn is_atomic_map(field: &str) -> bool {
    matches!(
        field,
        "selector" | "nodeSelector" | "podSelector" | "namespaceSelector" | "labelSelector"
    )
}

/// The `k:` key of an associative list item, or None if it lacks a key field.
pub fn item_key(keys: &[(&str, Option<&str>)], item: &Value) -> Option<String> {
    let obj = item.as_object()?;
    let mut m = Map::new();
    for (k, default) in keys {
        let v = match (obj.get(*k), default) {
            (Some(v), _) if !v.is_null() => v.clone(),
            (_, Some(d)) => json!(d),
            _ => return None,
        };
        m.insert((*k).to_owned(), v);
    }
    Some(format!("k:{}", Value::Object(m)))
}

/// The list's kind for these items: associative only if every item has its keys.
fn effective_kind(field: &str, items: &[Value]) -> ListKind {
    match list_kind(field, items.first()) {
        ListKind::Map(keys) if items.iter().all(|i| item_key(keys, i).is_some()) => {
            ListKind::Map(keys)
        }
        ListKind::Set if items.iter().all(|i| !i.is_object() && !i.is_array()) => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

/// The kind of a list whose old and new items are compared or merged.
pub fn pair_kind(field: &str, a: &[Value], b: &[Value]) -> ListKind {
    let ka = effective_kind(field, a);
    let kb = effective_kind(field, b);
    match (ka, kb) {
        _ if a.is_empty() => kb,
        _ if b.is_empty() => ka,
        (x, y) if x == y => x,
        _ => ListKind::Atomic,
    }
}

// ---- the set algebra ------------------------------------------------------------------

pub fn is_member(node: &Set) -> bool {
    node.is_empty() || node.contains_key(".")
}

fn has_children(node: &Set) -> bool {
    node.keys().any(|k| k != ".")
}

/// Give `node` the membership `member`, keeping its canonical form. Returns false if the
/// node is now nothing (no member, no children) and should be dropped by its parent.
fn normalize(node: &mut Set, member: bool) -> bool {
    let children = has_children(node);
    match (member, children) {
        (true, true) => {
            node.insert(".".into(), json!({}));
            true
        }
        (true, false) => {
            node.clear();
            true
        }
        (false, true) => {
            node.remove(".");
            true
        }
        (false, false) => false,
    }
}

fn obj(v: &Value) -> &Set {
    static EMPTY: std::sync::OnceLock<Set> = std::sync::OnceLock::new();
    v.as_object().unwrap_or_else(|| EMPTY.get_or_init(Set::new))
}

/// `a ∪= b` for two sets.
pub fn union(a: &mut Set, b: &Set) {
    union_node(a, b);
    a.remove(".");
}

fn union_node(a: &mut Set, b: &Set) {
    let member = is_member(a) || is_member(b);
    for (k, bv) in b.iter().filter(|(k, _)| *k != ".") {
        match a.get_mut(k) {
            Some(Value::Object(av)) => union_node(av, obj(bv)),
            _ => {
                a.insert(k.clone(), bv.clone());
            }
        }
    }
    normalize(a, member);
}

/// `a −= b` for two sets, member by member.
pub fn difference(a: &mut Set, b: &Set) {
    difference_node(a, b);
    a.remove(".");
}

/// Returns false if `a` became nothing.
fn difference_node(a: &mut Set, b: &Set) -> bool {
    let member = is_member(a) && !is_member(b);
    for (k, bv) in b.iter().filter(|(k, _)| *k != ".") {
        if let Some(Value::Object(av)) = a.get_mut(k)
            && !difference_node(av, obj(bv))
        {
            a.remove(k);
        }
    }
    normalize(a, member)
}

/// Remove every member of `removed` from the set `a`, with everything under it.
pub fn remove_subtrees(a: &mut Set, removed: &Set) {
    remove_subtrees_node(a, removed);
    a.remove(".");
}

fn remove_subtrees_node(a: &mut Set, removed: &Set) -> bool {
    let member = is_member(a);
    for (k, rv) in removed.iter().filter(|(k, _)| *k != ".") {
        let rv = obj(rv);
        if is_member(rv) {
            a.remove(k);
        } else if let Some(Value::Object(av)) = a.get_mut(k)
            && !remove_subtrees_node(av, rv)
        {
            a.remove(k);
        }
    }
    normalize(a, member)
}

/// `a ∩ b` for two sets, or None if empty.
pub fn intersection(a: &Set, b: &Set) -> Option<Set> {
    let mut out = intersection_node(a, b)?;
    out.remove(".");
    (!out.is_empty()).then_some(out)
}

fn intersection_node(a: &Set, b: &Set) -> Option<Set> {
    let mut out = Set::new();
    // Iterate the smaller side.
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    for (k, sv) in small.iter().filter(|(k, _)| *k != ".") {
        if let Some(lv) = large.get(k)
            && let Some(i) = intersection_node(obj(sv), obj(lv))
        {
            out.insert(k.clone(), Value::Object(i));
        }
    }
    let member = is_member(a) && is_member(b);
    normalize(&mut out, member).then_some(out)
}

/// Whether a set has no members.
pub fn is_empty(set: &Set) -> bool {
    !has_children(set)
}

/// Every member path of a set, in the set's order, as lists of keys.
pub fn members(set: &Set) -> Vec<Vec<String>> {
    fn walk(node: &Set, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if is_member(node) && !path.is_empty() {
            out.push(path.clone());
        }
        for (k, v) in node.iter().filter(|(k, _)| *k != ".") {
            path.push(k.clone());
            walk(obj(v), path, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(set, &mut Vec::new(), &mut out);
    out
}

/// A path as upstream prints it: `.spec.containers[name="web"].image`.
pub fn path_string(path: &[String]) -> String {
    let mut s = String::new();
    for pe in path {
        if let Some(f) = pe.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = pe.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = keys.iter().map(|(n, v)| format!("{n}={v}")).collect();
            s.push('[');
            s.push_str(&parts.join(","));
            s.push(']');
        } else if let Some(v) = pe.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        } else if let Some(i) = pe.strip_prefix("i:") {
            s.push_str(&format!("[{i}]"));
        }
    }
    s
}

// ---- field sets of objects ------------------------------------------------------------

/// Which part of an object a write may touch: the status subresource sees only `status`, the
/// main resource of a kind with a status subresource everything but `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    NoStatus,
    StatusOnly,
}

/// Fields nobody owns (upstream strips them from every set).
fn stripped(top: bool, meta: bool, key: &str, scope: Scope) -> bool {
    if top {
        return matches!(key, "apiVersion" | "kind")
            || (scope == Scope::NoStatus && key == "status")
            || (scope == Scope::StatusOnly && key != "status");
    }
    meta && matches!(
        key,
        "name"
            | "namespace"
            | "creationTimestamp"
            | "selfLink"
            | "uid"
            | "clusterName"
            | "generation"
            | "managedFields"
            | "resourceVersion"
    )
}

/// The set of fields an applied configuration specifies (upstream's ToFieldSet): every scalar,
/// atomic list and atomic map, empty object and null; associative and set list items as
/// members; objects themselves only through their fields.
pub fn field_set(object: &Value, scope: Scope) -> Set {
    let mut out = Set::new();
    if let Some(o) = object.as_object() {
        for (k, v) in o {
            if stripped(true, false, k, scope) {
                continue;
            }
            let meta = k == "metadata";
            let mut child = if meta {
                let mut m = Set::new();
                for (mk, mv) in obj(v) {
                    if !stripped(false, true, mk, scope)
                        && let Some(n) = value_set(mk, mv)
                    {
                        m.insert(format!("f:{mk}"), Value::Object(n));
                    }
                }
                (!m.is_empty() || obj(v).is_empty()).then_some(m)
            } else {
                value_set(k, v)
            };
            if let Some(c) = child.take() {
                out.insert(format!("f:{k}"), Value::Object(c));
            }
        }
    }
    out
}

fn value_set(field: &str, v: &Value) -> Option<Set> {
    match v {
        Value::Object(o) if !o.is_empty() && !is_atomic_map(field) => {
            let mut n = Set::new();
            for (k, cv) in o {
                if let Some(c) = value_set(k, cv) {
                    n.insert(format!("f:{k}"), Value::Object(c));
                }
            }
            (!n.is_empty()).then_some(n)
        }
        Value::Array(items) => match effective_kind(field, items) {
            ListKind::Map(keys) => {
                let mut n = Set::new();
                for item in items {
                    let key = item_key(keys, item).expect("effective_kind checked the keys");
                    let mut c = value_set("", item).unwrap_or_default();
                    normalize(&mut c, true);
                    n.insert(key, Value::Object(c));
                }
                (!n.is_empty()).then_some(n)
            }
            ListKind::Set => {
                let n: Set = items
                    .iter()
                    .map(|i| (format!("v:{i}"), json!({})))
                    .collect();
                (!n.is_empty()).then_some(n)
            }
            ListKind::Atomic => Some(Set::new()),
        },
        _ => Some(Set::new()),
    }
}

/// Everything under a value that appeared: the node itself and all its descendants.
fn added(field: &str, v: &Value) -> Set {
    let mut n = Set::new();
    match v {
        Value::Object(o) if !is_atomic_map(field) => {
            for (k, cv) in o {
                n.insert(format!("f:{k}"), Value::Object(added(k, cv)));
            }
        }
        Value::Array(items) => match effective_kind(field, items) {
            ListKind::Map(keys) => {
                for item in items {
                    let key = item_key(keys, item).expect("effective_kind checked the keys");
                    n.insert(key, Value::Object(added("", item)));
                }
            }
            ListKind::Set => {
                for item in items {
                    n.insert(format!("v:{item}"), json!({}));
                }
            }
            ListKind::Atomic => {}
        },
        _ => {}
    }
    normalize(&mut n, true);
    n
}

/// What a write did: fields it set or changed (with everything under a new node), and the
/// fields it dropped (each as a member that stands for its whole subtree).
#[derive(Debug, Default, PartialEq)]
pub struct Diff {
    pub changed: Set,
    pub removed: Set,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Compare two versions of an object (upstream's Compare), leaving out what nobody owns.
pub fn diff(old: &Value, new: &Value, scope: Scope) -> Diff {
    let mut d = Diff::default();
    let (o, n) = (obj(old), obj(new));
    for (k, nv) in n {
        if stripped(true, false, k, scope) {
            continue;
        }
        let pe = format!("f:{k}");
        if k == "metadata" {
            let (om, nm) = (obj(o.get(k).unwrap_or(&Value::Null)), obj(nv));
            let mut changed = Set::new();
            let mut removed = Set::new();
            diff_fields(om, nm, &mut changed, &mut removed, |mk| {
                stripped(false, true, mk, scope)
            });
            if !changed.is_empty() {
                d.changed.insert(pe.clone(), Value::Object(changed));
            }
            if !removed.is_empty() {
                d.removed.insert(pe, Value::Object(removed));
            }
            continue;
        }
        match o.get(k) {
            None => {
                d.changed.insert(pe, Value::Object(added(k, nv)));
            }
            Some(ov) => diff_value(k, ov, nv, &pe, &mut d.changed, &mut d.removed),
        }
    }
    for k in o.keys() {
        if !n.contains_key(k) && !stripped(true, false, k, scope) && k != "metadata" {
            d.removed.insert(format!("f:{k}"), json!({}));
        }
    }
    d
}

fn diff_fields(
    o: &Set,
    n: &Set,
    changed: &mut Set,
    removed: &mut Set,
    skip: impl Fn(&str) -> bool,
) {
    for (k, nv) in n {
        if skip(k) {
            continue;
        }
        let pe = format!("f:{k}");
        match o.get(k) {
            None => {
                changed.insert(pe, Value::Object(added(k, nv)));
            }
            Some(ov) => diff_value(k, ov, nv, &pe, changed, removed),
        }
    }
    for k in o.keys() {
        if !n.contains_key(k) && !skip(k) {
            removed.insert(format!("f:{k}"), json!({}));
        }
    }
}

/// Compare one field present on both sides; record under `pe` in `changed`/`removed`.
fn diff_value(field: &str, ov: &Value, nv: &Value, pe: &str, changed: &mut Set, removed: &mut Set) {
    let mut c = Set::new();
    let mut r = Set::new();
    match (ov, nv) {
        (Value::Object(a), Value::Object(b)) if !is_atomic_map(field) => {
            diff_fields(a, b, &mut c, &mut r, |_| false);
        }
        (Value::Array(a), Value::Array(b)) => match pair_kind(field, a, b) {
            ListKind::Map(keys) => {
                let old_keys: Vec<String> = a
                    .iter()
                    .map(|i| item_key(keys, i).expect("keys checked"))
                    .collect();
                let mut seen = vec![false; a.len()];
                for item in b {
                    let key = item_key(keys, item).expect("keys checked");
                    match old_keys.iter().position(|k| *k == key) {
                        Some(i) => {
                            seen[i] = true;
                            diff_value("", &a[i], item, &key, &mut c, &mut r);
                        }
                        None => {
                            c.insert(key, Value::Object(added("", item)));
                        }
                    }
                }
                for (i, key) in old_keys.into_iter().enumerate() {
                    if !seen[i] {
                        r.insert(key, json!({}));
                    }
                }
            }
            ListKind::Set => {
                for item in b.iter().filter(|i| !a.contains(i)) {
                    c.insert(format!("v:{item}"), json!({}));
                }
                for item in a.iter().filter(|i| !b.contains(i)) {
                    r.insert(format!("v:{item}"), json!({}));
                }
            }
            ListKind::Atomic => {
                if a != b {
                    changed.insert(pe.to_owned(), json!({}));
                }
                return;
            }
        },
        _ => {
            if ov != nv {
                changed.insert(pe.to_owned(), json!({}));
            }
            return;
        }
    }
    if !c.is_empty() {
        changed.insert(pe.to_owned(), Value::Object(c));
    }
    if !r.is_empty() {
        removed.insert(pe.to_owned(), Value::Object(r));
    }
}

// ---- entries -------------------------------------------------------------------------

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub manager: String,
    /// "Apply" or "Update".
    pub operation: &'static str,
    pub api_version: String,
    pub subresource: String,
    pub time: Option<String>,
    pub fields: Set,
}

impl Entry {
    /// Upstream's manager identity: appliers are one manager whatever version they applied.
    pub fn same_manager(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == "Apply" || self.api_version == other.api_version)
    }

    /// How conflict messages name the manager.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// The request's manager for a write.
#[derive(Clone, Debug)]
pub struct Writer {
    pub manager: String,
    /// "" for the main resource, else "status" or "scale".
    pub subresource: String,
}

impl Writer {
    /// The manager for non-apply writes: `fieldManager`, else the User-Agent up to its first
    /// `/`, without unprintable characters, at most 128 bytes.
    pub fn new(field_manager: Option<&str>, user_agent: Option<&str>, sub: Option<&str>) -> Self {
        let manager = match field_manager {
            Some(m) => m.to_owned(),
            None => {
                let prefix = user_agent.unwrap_or("").split('/').next().unwrap_or("");
                let mut m = String::new();
                for c in prefix.chars().filter(|c| !c.is_control()) {
                    if m.len() + c.len_utf8() > 128 {
                        break;
                    }
                    m.push(c);
                }
                m
            }
        };
        Writer {
            manager,
            subresource: sub.unwrap_or("").to_owned(),
        }
    }
}

pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Decode `managedFields` (taken out of the object). None if any entry is invalid; entries
/// of the same manager are merged.
pub fn decode(list: Value) -> Option<Vec<Entry>> {
    let Value::Array(items) = list else {
        return None;
    };
    let mut out: Vec<Entry> = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(mut m) = item else {
            return None;
        };
        let operation = match m.get("operation").and_then(Value::as_str) {
            Some("Apply") => "Apply",
            Some("Update") => "Update",
            _ => return None,
        };
        let text = |m: &Set, k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let api_version = text(&m, "apiVersion");
        if api_version.is_empty() || m.get("fieldsType").and_then(Value::as_str) != Some("FieldsV1")
        {
            return None;
        }
        let fields = match m.remove("fieldsV1") {
            Some(Value::Object(f)) => f,
            None | Some(Value::Null) => Set::new(),
            Some(_) => return None,
        };
        let entry = Entry {
            manager: text(&m, "manager"),
            operation,
            api_version,
            subresource: text(&m, "subresource"),
            time: m.get("time").and_then(Value::as_str).map(str::to_owned),
            fields,
        };
        match out.iter_mut().find(|e| e.same_manager(&entry)) {
            Some(e) => {
                union(&mut e.fields, &entry.fields);
                if entry.time > e.time {
                    e.time = entry.time;
                }
            }
            None => out.push(entry),
        }
    }
    Some(out)
}

/// Encode entries as upstream orders them: Apply before Update, then by time, manager,
/// apiVersion, subresource. Entries that own nothing are dropped.
pub fn encode(mut entries: Vec<Entry>) -> Option<Value> {
    entries.retain(|e| !is_empty(&e.fields));
    if entries.is_empty() {
        return None;
    }
    entries.sort_by(|a, b| {
        (
            a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    Some(Value::Array(
        entries
            .into_iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), json!(e.manager));
                m.insert("operation".into(), json!(e.operation));
                m.insert("apiVersion".into(), json!(e.api_version));
                if let Some(t) = e.time {
                    m.insert("time".into(), json!(t));
                }
                m.insert("fieldsType".into(), json!("FieldsV1"));
                m.insert("fieldsV1".into(), Value::Object(e.fields));
                if !e.subresource.is_empty() {
                    m.insert("subresource".into(), json!(e.subresource));
                }
                Value::Object(m)
            })
            .collect(),
    ))
}

/// Take `metadata.managedFields` out of an object.
pub fn take(object: &mut Value) -> Option<Value> {
    object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove("managedFields"))
}

/// Store entries as the object's `metadata.managedFields` (or none).
pub fn put(object: &mut Value, entries: Vec<Entry>) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    match encode(entries) {
        Some(v) => {
            meta.insert("managedFields".into(), v);
        }
        None => {
            meta.remove("managedFields");
        }
    }
}

/// Whether a request's managedFields ask to clear them: an empty list, or one empty entry.
fn is_reset(v: &Value) -> bool {
    match v.as_array().map(Vec::as_slice) {
        Some([]) => true,
        Some([one]) => one.as_object().is_some_and(Map::is_empty),
        _ => false,
    }
}

/// Record a create, update or non-apply patch: the writer's `Update` entry owns what the
/// write set or changed, which no other manager owns any more; fields it dropped are no
/// one's. `old` is None for a create. The request's own managedFields are used when valid
/// (which is how clients edit them; an empty list clears them), else the stored ones.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    api_version: &str,
    scope: Scope,
    writer: &Writer,
) {
    let requested = take(new);
    let d = match old {
        Some(old) => diff(old, new, scope),
        None => Diff {
            changed: field_set(new, scope),
            removed: Set::new(),
        },
    };
    let stored = old.and_then(|o| o.pointer("/metadata/managedFields"));
    // The common case costs nothing more: the write carries the stored managedFields (or none)
    // and changes no owned field, so they stay as they are, undecoded.
    let unchanged_entries = requested.as_ref() == stored;
    if d.is_empty() && unchanged_entries {
        if let (Some(r), Some(meta)) = (
            requested,
            new.get_mut("metadata").and_then(Value::as_object_mut),
        ) {
            meta.insert("managedFields".into(), r);
        }
        return;
    }
    let decode_stored = || stored.cloned().and_then(decode).unwrap_or_default();
    let mut entries = match requested {
        // Subresources cannot set managedFields; a request that sends the stored ones back
        // needs no copy of them.
        Some(r) if unchanged_entries => decode(r).unwrap_or_default(),
        _ if !writer.subresource.is_empty() => decode_stored(),
        Some(r) if is_reset(&r) => Vec::new(),
        Some(r) => match decode(r) {
            Some(e) if !e.is_empty() => e,
            _ => decode_stored(),
        },
        None => decode_stored(),
    };
    if !d.is_empty() {
        for e in entries.iter_mut() {
            difference(&mut e.fields, &d.changed);
            remove_subtrees(&mut e.fields, &d.removed);
        }
        let mine = Entry {
            manager: writer.manager.clone(),
            operation: "Update",
            api_version: api_version.to_owned(),
            subresource: writer.subresource.clone(),
            time: Some(now()),
            fields: d.changed,
        };
        match entries.iter_mut().find(|e| e.same_manager(&mine)) {
            Some(e) => {
                union(&mut e.fields, &mine.fields);
                e.time = mine.time;
            }
            None => entries.push(mine),
        }
    }
    cap_update_managers(&mut entries);
    put(new, entries);
}

/// Upstream keeps at most this many `Update` entries; older ones are merged.
const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager that older updates are merged into, one entry per apiVersion.
const ANCIENT_CHANGES: &str = "ancient-changes";

/// Keep at most `MAX_UPDATE_MANAGERS` entries of updates, as upstream does after every
/// update: oldest first (by the second, then by the manager's identity), an entry joins the
/// `ancient-changes` entry of its apiVersion, which the oldest entry of that version becomes
/// if there is none yet, and which takes the joiner's time.
fn cap_update_managers(entries: &mut Vec<Entry>) {
    let mut updaters: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].operation != "Apply")
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    // Upstream breaks ties on the identity's JSON: manager, then operation, version,
    // subresource.
    updaters.sort_by(|&a, &b| {
        let (x, y) = (&entries[a], &entries[b]);
        (x.time.as_deref().unwrap_or(""), identity(x))
            .cmp(&(y.time.as_deref().unwrap_or(""), identity(y)))
    });
    let mut first_of_version: HashMap<String, usize> = HashMap::new();
    let mut merged = vec![false; entries.len()];
    let mut left = updaters.len();
    for i in updaters {
        if left <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = entries[i].api_version.clone();
        let Some(&first) = first_of_version.get(&version) else {
            first_of_version.insert(version, i);
            continue;
        };
        let bucket = match entries.iter().enumerate().position(|(j, e)| {
            !merged[j]
                && e.manager == ANCIENT_CHANGES
                && e.operation == "Update"
                && e.subresource.is_empty()
                && e.api_version == version
        }) {
            Some(b) => b,
            None => {
                entries[first].manager = ANCIENT_CHANGES.to_owned();
                entries[first].subresource.clear();
                first
            }
        };
        if bucket == i {
            continue;
        }
        let fields = std::mem::take(&mut entries[i].fields);
        union(&mut entries[bucket].fields, &fields);
        entries[bucket].time = entries[i].time.clone();
        merged[i] = true;
        left -= 1;
    }
    let mut j = 0;
    entries.retain(|_| {
        j += 1;
        !merged[j - 1]
    });
}

/// An entry's identity as upstream spells it (the JSON it sorts by).
fn identity(e: &Entry) -> String {
    let mut s = format!(
        "{{\"manager\":{},\"operation\":{:?},\"apiVersion\":{}",
        json!(e.manager),
        e.operation,
        json!(e.api_version)
    );
    if !e.subresource.is_empty() {
        s.push_str(&format!(",\"subresource\":{}", json!(e.subresource)));
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_ten_updaters_the_oldest_merged() {
        let entry = |manager: &str, op: &'static str, second: u32| Entry {
            manager: manager.into(),
            operation: op,
            api_version: "v1".into(),
            subresource: String::new(),
            time: Some(format!("2026-12-07T10:00:{second:02}Z")),
            fields: set(json!({ "f:data": { format!("f:{manager}"): {} } })),
        };
        let mut entries: Vec<Entry> = (0..12)
            .map(|i| entry(&format!("m{i:02}"), "Update", i))
            .collect();
        entries.push(entry("applier", "Apply", 0));
        let names = |entries: &[Entry]| {
            let names: Vec<&str> = entries.iter().map(|e| e.manager.as_str()).collect();
            names.join(" ")
        };
        cap_update_managers(&mut entries);
        assert_eq!(
            names(&entries),
            "ancient-changes m03 m04 m05 m06 m07 m08 m09 m10 m11 applier"
        );
        check(
            "merged fields",
            Value::Object(entries[0].fields.clone()),
            json!({"f:data": {"f:m00": {}, "f:m01": {}, "f:m02": {}}}),
        );
        check(
            "the last joiner's time",
            json!(entries[0].time),
            json!("2026-12-07T10:00:02Z"),
        );
        // One more update: the oldest entry is now the bucket, and the next oldest joins it.
        entries.push(entry("m12", "Update", 12));
        cap_update_managers(&mut entries);
        assert_eq!(
            names(&entries),
            "ancient-changes m04 m05 m06 m07 m08 m09 m10 m11 applier m12"
        );
        check(
            "joined",
            Value::Object(entries[0].fields.clone()),
            json!({"f:data": {"f:m00": {}, "f:m01": {}, "f:m02": {}, "f:m03": {}}}),
        );
        // Ten or fewer: untouched.
        let mut few: Vec<Entry> = (0..10)
            .map(|i| entry(&format!("m{i}"), "Update", i))
            .collect();
        let before = few.clone();
        cap_update_managers(&mut few);
        assert_eq!(few, before);
    }

    fn set(v: Value) -> Set {
        v.as_object().cloned().unwrap()
    }

    /// One table row: the function's output for an input, against what upstream records.
    fn check(what: &str, got: Value, want: Value) {
        assert_eq!(got, want, "{what}");
    }

    #[test]
    fn field_sets_in_fieldsv1() {
        let cases = [
            (
                "labels, and list items by key with their fields",
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "web", "namespace": "d", "labels": {"app": "web"}},
                  "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"spec": {"containers": [{"name": "web", "image": "nginx",
                      "ports": [{"containerPort": 80}]}]}}}}),
                json!({"f:metadata": {"f:labels": {"f:app": {}}},
                  "f:spec": {"f:replicas": {}, "f:selector": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                      ".": {}, "f:image": {}, "f:name": {},
                      "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                        ".": {}, "f:containerPort": {}}}}}}}}}),
            ),
            (
                "atomic lists, sets, empty objects and nulls are members; empty keyed lists nothing",
                json!({"metadata": {"finalizers": ["a", "b"]},
                  "spec": {"args": ["x"], "containers": [], "securityContext": {}, "x": null}}),
                json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}},
                  "f:spec": {"f:args": {}, "f:securityContext": {}, "f:x": {}}}),
            ),
            (
                "items without their key make the list atomic",
                json!({"spec": {"containers": [{"image": "x"}]}}),
                json!({"f:spec": {"f:containers": {}}}),
            ),
        ];
        for (what, object, want) in cases {
            check(what, Value::Object(field_set(&object, Scope::All)), want);
        }
        check(
            "status left out of the main resource",
            Value::Object(field_set(
                &json!({"spec": {"a": 1}, "status": {"b": 1}}),
                Scope::NoStatus,
            )),
            json!({"f:spec": {"f:a": {}}}),
        );
    }

    #[test]
    fn diffs() {
        let cases = [
            (
                "a changed scalar, an added map with its children, a removed label",
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1}}),
                json!({"metadata": {"labels": {"a": "1"}, "annotations": {"x": "y"}},
                  "spec": {"replicas": 3}}),
                json!({"f:metadata": {"f:annotations": {".": {}, "f:x": {}}},
                  "f:spec": {"f:replicas": {}}}),
                json!({"f:metadata": {"f:labels": {"f:b": {}}}}),
            ),
            (
                "list items by key: changed field, added item, removed item",
                json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}),
                json!({"spec": {"containers": [{"name": "a", "image": "2"}, {"name": "c", "image": "1"}]}}),
                json!({"f:spec": {"f:containers": {
                  "k:{\"name\":\"a\"}": {"f:image": {}},
                  "k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}}),
                json!({"f:spec": {"f:containers": {"k:{\"name\":\"b\"}": {}}}}),
            ),
            (
                "atomic list and selector change whole; nothing server-set counts",
                json!({"metadata": {"resourceVersion": "1", "generation": 1},
                  "spec": {"args": ["a"], "selector": {"matchLabels": {"a": "1"}}}}),
                json!({"metadata": {"resourceVersion": "2", "generation": 2, "managedFields": []},
                  "spec": {"args": ["b"], "selector": {"matchLabels": {"a": "2"}}}}),
                json!({"f:spec": {"f:args": {}, "f:selector": {}}}),
                json!({}),
            ),
        ];
        for (what, old, new, changed, removed) in cases {
            let d = diff(&old, &new, Scope::All);
            check(what, Value::Object(d.changed), changed);
            check(what, Value::Object(d.removed), removed);
        }
    }

    #[test]
    fn set_algebra() {
        let a = set(json!({"f:spec": {"f:replicas": {}, "f:x": {".": {}, "f:y": {}}}}));
        let b = set(json!({"f:spec": {"f:replicas": {}, "f:x": {}}}));
        let mut u = a.clone();
        union(&mut u, &set(json!({"f:spec": {"f:z": {}}})));
        check(
            "union",
            Value::Object(u),
            json!({"f:spec": {"f:replicas": {}, "f:x": {".": {}, "f:y": {}}, "f:z": {}}}),
        );
        let mut d = a.clone();
        difference(&mut d, &b);
        check(
            "difference keeps children",
            Value::Object(d),
            json!({"f:spec": {"f:x": {"f:y": {}}}}),
        );
        let mut r = a.clone();
        remove_subtrees(&mut r, &set(json!({"f:spec": {"f:x": {}}})));
        check(
            "subtree removal",
            Value::Object(r),
            json!({"f:spec": {"f:replicas": {}}}),
        );
        check(
            "intersection",
            Value::Object(intersection(&a, &b).unwrap()),
            json!({"f:spec": {"f:replicas": {}, "f:x": {}}}),
        );
        assert_eq!(intersection(&a, &set(json!({"f:status": {}}))), None);
        check(
            "paths",
            json!(
                members(&set(
                    json!({"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {"f:image": {}}}}})
                ))
                .iter()
                .map(|p| path_string(p))
                .collect::<Vec<_>>()
            ),
            json!([".spec.containers[name=\"web\"].image"]),
        );
    }

    #[test]
    fn updates_move_ownership() {
        let w = |m: &str, sub: &str| Writer {
            manager: m.into(),
            subresource: sub.into(),
        };
        let old = json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "paused": false}});
        let mut created = old.clone();
        record_update(
            None,
            &mut created,
            "apps/v1",
            Scope::NoStatus,
            &w("kubectl-create", ""),
        );
        let mf = &created["metadata"]["managedFields"];
        check(
            "create owns all it set",
            mf[0]["fieldsV1"].clone(),
            json!({"f:spec": {"f:paused": {}, "f:replicas": {}}}),
        );
        check(
            "entry shape",
            json!([
                mf[0]["manager"],
                mf[0]["operation"],
                mf[0]["apiVersion"],
                mf[0]["fieldsType"]
            ]),
            json!(["kubectl-create", "Update", "apps/v1", "FieldsV1"]),
        );
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(3);
        record_update(
            Some(&created),
            &mut scaled,
            "apps/v1",
            Scope::NoStatus,
            &w("kubectl", "scale"),
        );
        let mf = scaled["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .clone();
        check("two entries", json!(mf.len()), json!(2));
        let by = |m: &str| mf.iter().find(|e| e["manager"] == m).unwrap().clone();
        check(
            "creator lost replicas",
            by("kubectl-create")["fieldsV1"].clone(),
            json!({"f:spec": {"f:paused": {}}}),
        );
        check(
            "scaler owns it",
            by("kubectl")["fieldsV1"].clone(),
            json!({"f:spec": {"f:replicas": {}}}),
        );
        check(
            "subresource recorded",
            by("kubectl")["subresource"].clone(),
            json!("scale"),
        );

        // A write that changes nothing records nothing; an empty list clears the entries.
        let mut same = scaled.clone();
        record_update(
            Some(&scaled),
            &mut same,
            "apps/v1",
            Scope::NoStatus,
            &w("other", ""),
        );
        check(
            "no-op",
            same["metadata"]["managedFields"].clone(),
            scaled["metadata"]["managedFields"].clone(),
        );
        let mut reset = scaled.clone();
        reset["metadata"]["managedFields"] = json!([]);
        record_update(
            Some(&scaled),
            &mut reset,
            "apps/v1",
            Scope::NoStatus,
            &w("other", ""),
        );
        check(
            "reset",
            reset["metadata"]
                .get("managedFields")
                .cloned()
                .unwrap_or(Value::Null),
            Value::Null,
        );
        // Invalid entries in a request are ignored: the stored ones stay.
        let mut forged = scaled.clone();
        forged["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Steal"}]);
        record_update(
            Some(&scaled),
            &mut forged,
            "apps/v1",
            Scope::NoStatus,
            &w("other", ""),
        );
        check(
            "invalid ignored",
            forged["metadata"]["managedFields"].clone(),
            scaled["metadata"]["managedFields"].clone(),
        );
    }

    #[test]
    fn managers_from_user_agents() {
        let cases = [
            (
                Some("kubectl-edit"),
                Some("kubectl/v1.33.0 (linux/amd64)"),
                "kubectl-edit",
            ),
            (
                None,
                Some("kubectl/v1.33.0 (linux/amd64) kubernetes/abc"),
                "kubectl",
            ),
            (None, Some("kube-rs/1.0"), "kube-rs"),
            (None, None, ""),
        ];
        for (fm, ua, want) in cases {
            check(
                &format!("{fm:?} {ua:?}"),
                json!(Writer::new(fm, ua, None).manager),
                json!(want),
            );
        }
    }

    /// Cost of managedFields per write: `cargo test --release -p dao-apiserver --lib
    /// managed_fields_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn managed_fields_cost() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-7d9c-abcde", "namespace": "default", "uid": "u",
              "labels": {"app": "web", "pod-template-hash": "7d9c"},
              "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c", "uid": "r", "controller": true}]},
            "spec": {"nodeName": "node-1", "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
              "containers": [{"name": "web", "image": "nginx:1", "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}],
              "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}});
        let w = Writer {
            manager: "kubelet".into(),
            subresource: "status".into(),
        };
        let n = 20_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            let mut created = pod.clone();
            let creator = Writer {
                manager: "kube-controller-manager".into(),
                subresource: "".into(),
            };
            record_update(None, &mut created, "v1", Scope::NoStatus, &creator);
            std::hint::black_box(&created);
        }
        let create = start.elapsed() / n;
        let mut created = pod.clone();
        record_update(
            None,
            &mut created,
            "v1",
            Scope::NoStatus,
            &Writer {
                manager: "kube-controller-manager".into(),
                subresource: "".into(),
            },
        );
        let mut running = created.clone();
        running["status"] = json!({"phase": "Running", "podIP": "10.0.0.1",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0}]});
        let start = std::time::Instant::now();
        for _ in 0..n {
            let mut next = running.clone();
            record_update(Some(&created), &mut next, "v1", Scope::StatusOnly, &w);
            std::hint::black_box(&next);
        }
        let status = start.elapsed() / n;
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(running.clone());
        }
        let clone = start.elapsed() / n;
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(serde_json::to_vec(&running).unwrap());
        }
        let serialize = start.elapsed() / n;
        println!(
            "per write: create {create:?}, status update {status:?} (incl. one object clone \
             {clone:?}; serializing the object for storage costs {serialize:?})"
        );
    }
}
