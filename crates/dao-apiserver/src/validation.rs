//! Per-kind validation, as upstream's `ValidateX` / `ValidateXUpdate` functions run it after
//! defaulting: the errors a Kubernetes user meets every day (bad labels, a Deployment whose
//! selector does not match its template, a container without an image, a Job that may restart
//! forever, an immutable field changed), each reported as upstream's `field.Error` with the
//! same path, type and detail, so the 422 `Status` and kubectl's output read the same.
//!
//! Values are rendered as Go renders them in those messages (`%q` for strings, `%#v` for maps,
//! label selectors and int-or-strings), since that text is part of upstream's messages.
//!
//! Pod specs (in Pods and every pod template) get upstream's checks of containers, probes and
//! lifecycle hooks, env sources, security contexts, affinity terms, topology spread
//! constraints, the common volume sources (downward API and projected ones included),
//! resource divisors, host port conflicts, DNS config, readiness and scheduling gates, host
//! aliases and the names a pod spec refers to. Values upstream defaults (a probe's zero
//! thresholds, an httpGet's scheme, a fieldRef's apiVersion, a token's expiry) are taken as
//! defaulted.
//!
//! Not covered (yet): the long tail of upstream's validation (the rarer volume sources, the
//! kinds `validate` does not list, ...). An object that breaks only those rules is stored as
//! given.

use serde_json::{Map, Value};

use crate::registry::Resource;
use crate::status::Cause;

// ---- field errors ----------------------------------------------------------------------

/// A field path in upstream's notation: `spec.template.spec.containers[0].name`,
/// `data[key]`.
#[derive(Clone)]
struct Path(String);

impl Path {
    fn root(name: &str) -> Path {
        Path(name.to_owned())
    }
    fn child(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_owned())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }
    fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }
    fn key(&self, k: &str) -> Path {
        Path(format!("{}[{k}]", self.0))
    }
}

fn cause(reason: &'static str, path: &Path, message: String) -> Cause {
    Cause {
        reason,
        field: path.0.clone(),
        message,
    }
}

fn with_detail(body: &str, detail: &str) -> String {
    if detail.is_empty() {
        body.to_owned()
    } else {
        format!("{body}: {detail}")
    }
}

fn required(path: &Path, detail: &str) -> Cause {
    cause(
        "FieldValueRequired",
        path,
        with_detail("Required value", detail),
    )
}

/// `value` is already rendered as Go renders it (see `go_*`).
fn invalid(path: &Path, value: &str, detail: &str) -> Cause {
    cause(
        "FieldValueInvalid",
        path,
        with_detail(&format!("Invalid value: {value}"), detail),
    )
}

fn not_supported(path: &Path, value: &str, supported: &[&str]) -> Cause {
    let list: Vec<String> = supported.iter().map(|s| go_str(s)).collect();
    cause(
        "FieldValueNotSupported",
        path,
        format!(
            "Unsupported value: {}: supported values: {}",
            go_str(value),
            list.join(", ")
        ),
    )
}

fn duplicate(path: &Path, value: &str) -> Cause {
    cause(
        "FieldValueDuplicate",
        path,
        format!("Duplicate value: {}", go_str(value)),
    )
}

fn not_found(path: &Path, value: &str) -> Cause {
    cause(
        "FieldValueNotFound",
        path,
        format!("Not found: {}", go_str(value)),
    )
}

fn forbidden(path: &Path, detail: &str) -> Cause {
    cause(
        "FieldValueForbidden",
        path,
        with_detail("Forbidden", detail),
    )
}

fn too_long(path: &Path, max: usize) -> Cause {
    cause(
        "FieldValueTooLong",
        path,
        format!("Too long: may not be more than {max} bytes"),
    )
}

// ---- Go renderings ---------------------------------------------------------------------

/// Go's `%q` of a string.
fn go_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%#v` of a `map[string]string` (keys sorted, as fmt prints maps).
fn go_string_map(m: Option<&Map<String, Value>>) -> String {
    let Some(m) = m else {
        return "map[string]string(nil)".into();
    };
    let mut entries: Vec<(&String, &Value)> = m.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let items: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}:{}", go_str(k), go_str(v.as_str().unwrap_or_default())))
        .collect();
    format!("map[string]string{{{}}}", items.join(", "))
}

/// Go's `%#v` of a `[]string`.
fn go_string_slice(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => "[]string(nil)".into(),
        Some(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|s| go_str(s.as_str().unwrap_or_default()))
                .collect();
            format!("[]string{{{}}}", items.join(", "))
        }
    }
}

/// Go's `%#v` of a `metav1.LabelSelector` value.
fn go_selector(sel: &Value) -> String {
    let labels = go_string_map(sel.get("matchLabels").and_then(Value::as_object));
    let exprs = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_owned(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|e| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_str(str_of(e, "key")),
                        go_str(str_of(e, "operator")),
                        go_string_slice(e.get("values"))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}")
}

/// Go's `%#v` of an `intstr.IntOrString`.
fn go_int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => format!(
            "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
            go_str(s)
        ),
        other => format!(
            "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
            other.as_i64().unwrap_or(0)
        ),
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The items of the list at `v[key]` with their indexes; none when it is absent.
fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = (usize, &'a Value)> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
}

/// `v[key]`, when given, must be one of `supported`: NotSupported at `path` otherwise.
fn one_of(v: &Value, key: &str, path: &Path, supported: &[&str], out: &mut Vec<Cause>) {
    if let Some(s) = v.get(key).and_then(Value::as_str)
        && !supported.contains(&s)
    {
        out.push(not_supported(path, s, supported));
    }
}

// ---- name and value formats (k8s.io/apimachinery/pkg/util/validation) ------------------

fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn label_chars_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !label_chars_ok(s) {
        errs.push(regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    if s.is_empty() || !s.split('.').all(label_chars_ok) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !label_chars_ok(s) || !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// `metadata.name` of RBAC objects: any path segment.
fn path_segment_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s == "." || s == ".." {
        errs.push(format!("may not be '{s}'"));
        return errs;
    }
    for c in ["/", "%"] {
        if s.contains(c) {
            errs.push(format!("may not contain '{c}'"));
        }
    }
    errs
}

fn qualified_chars_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label key, annotation key or finalizer: an optional DNS subdomain prefix and a name.
pub fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                errs.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !qualified_chars_ok(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

pub fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !s.is_empty() && !qualified_chars_ok(s) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

fn config_map_key(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if s == "." {
        errs.push("must not be '.'".into());
    } else if s == ".." {
        errs.push("must not be '..'".into());
    } else if s.starts_with("..") {
        errs.push("must not start with '..'".into());
    }
    errs
}

/// An IANA service name, as container and Service port names must be.
fn port_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push(max_len_error(15));
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// A port number at `path`: 1 to 65535.
fn port_number(n: i64, path: &Path, out: &mut Vec<Cause>) {
    if !(1..=65535).contains(&n) {
        out.push(invalid(
            path,
            &n.to_string(),
            "must be between 1 and 65535, inclusive",
        ));
    }
}

fn each(path: &Path, value: &str, msgs: Vec<String>, out: &mut Vec<Cause>) {
    for m in msgs {
        out.push(invalid(path, &go_str(value), &m));
    }
}

/// `v[key]`, a string that must be given (Required with `detail` when empty) and then pass
/// `check`; returned for the caller's further checks.
fn required_str<'a>(
    v: &'a Value,
    key: &str,
    path: &Path,
    detail: &str,
    check: fn(&str) -> Vec<String>,
    out: &mut Vec<Cause>,
) -> &'a str {
    let value = str_of(v, key);
    let vp = path.child(key);
    if value.is_empty() {
        out.push(required(&vp, detail));
    } else {
        each(&vp, value, check(value), out);
    }
    value
}

fn non_negative(v: &Value, path: &Path, out: &mut Vec<Cause>) {
    if let Some(n) = v.as_i64()
        && n < 0
    {
        out.push(invalid(
            path,
            &n.to_string(),
            "must be greater than or equal to 0",
        ));
    }
}

// ---- metadata ---------------------------------------------------------------------------

/// Which rule `metadata.name` follows for a kind.
#[derive(Clone, Copy)]
enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    PathSegment,
}

fn name_rule(res: &Resource) -> NameRule {
    match (res.group, res.plural) {
        ("", "namespaces") => NameRule::Label,
        ("", "services") => NameRule::Dns1035,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

fn name_errors(rule: NameRule, name: &str) -> Vec<String> {
    match rule {
        NameRule::Subdomain => dns1123_subdomain(name),
        NameRule::Label => dns1123_label(name),
        NameRule::Dns1035 => dns1035_label(name),
        NameRule::PathSegment => path_segment_name(name),
    }
}

/// `metadata.name` of a new object (which is not empty: the caller reports that).
pub fn name(res: &Resource, name: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    each(
        &Path::root("metadata.name"),
        name,
        name_errors(name_rule(res), name),
        &mut out,
    );
    out
}

fn labels(m: Option<&Value>, path: &Path, out: &mut Vec<Cause>) {
    let Some(m) = m.and_then(Value::as_object) else {
        return;
    };
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    for k in keys {
        each(path, k, qualified_name(k), out);
        let v = m[k].as_str().unwrap_or_default();
        each(path, v, label_value(v), out);
    }
}

const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

/// Annotation keys, qualified names as upstream checks them (lowercased); returns the
/// annotations' total size, keys and values.
fn annotations(m: Option<&Value>, path: &Path, out: &mut Vec<Cause>) -> usize {
    let Some(m) = m.and_then(Value::as_object) else {
        return 0;
    };
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    let mut total = 0;
    for k in keys {
        each(path, k, qualified_name(&k.to_lowercase()), out);
        total += k.len() + m[k].as_str().map_or(0, str::len);
    }
    total
}

fn metadata(res: &Resource, meta: &Value, out: &mut Vec<Cause>) {
    let path = Path::root("metadata");
    let generate = str_of(meta, "generateName");
    if !generate.is_empty() {
        // A prefix may end in '-': upstream checks it as if the dash were a letter.
        let masked = match generate.strip_suffix('-') {
            Some(head) => format!("{head}a"),
            None => generate.to_owned(),
        };
        each(
            &path.child("generateName"),
            generate,
            name_errors(name_rule(res), &masked),
            out,
        );
    }
    labels(meta.get("labels"), &path.child("labels"), out);
    let ann_path = path.child("annotations");
    if annotations(meta.get("annotations"), &ann_path, out) > TOTAL_ANNOTATION_SIZE {
        out.push(too_long(&ann_path, TOTAL_ANNOTATION_SIZE));
    }
    if let Some(finalizers) = meta.get("finalizers").and_then(Value::as_array) {
        let fin_path = path.child("finalizers");
        for f in finalizers {
            let f = f.as_str().unwrap_or_default();
            each(&fin_path, f, qualified_name(f), out);
        }
    }
    if let Some(owners) = meta.get("ownerReferences").and_then(Value::as_array) {
        let own_path = path.child("ownerReferences");
        for o in owners {
            let api_version = str_of(o, "apiVersion");
            let version = api_version.rsplit('/').next().unwrap_or("");
            for (field, value, empty, detail) in [
                (
                    "apiVersion",
                    api_version,
                    version.is_empty(),
                    "version must not be empty",
                ),
                (
                    "kind",
                    str_of(o, "kind"),
                    str_of(o, "kind").is_empty(),
                    "kind must not be empty",
                ),
                (
                    "name",
                    str_of(o, "name"),
                    str_of(o, "name").is_empty(),
                    "name must not be empty",
                ),
                (
                    "uid",
                    str_of(o, "uid"),
                    str_of(o, "uid").is_empty(),
                    "uid must not be empty",
                ),
            ] {
                if empty {
                    out.push(invalid(&own_path.child(field), &go_str(value), detail));
                }
            }
        }
    }
}

// ---- pods -------------------------------------------------------------------------------

/// What a pod's containers are checked against: the names of the volumes that validated (a
/// mount of any other is not found, as upstream), the pod's termination grace period (which
/// bounds sleep actions) and whether the pod shares the host's user namespace.
struct PodContext {
    volumes: Vec<String>,
    grace_period: Option<i64>,
    host_users: bool,
}

/// `v[key]` when it is given and not null.
fn set<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn int_of(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

/// A port given by number or by IANA service name; a missing one is the number 0.
fn port_num_or_name(port: Option<&Value>, path: &Path, out: &mut Vec<Cause>) {
    match port {
        Some(Value::String(s)) => each(path, s, port_name(s), out),
        other => {
            port_number(other.and_then(Value::as_i64).unwrap_or(0), path, out);
        }
    }
}

const PROBE_HANDLERS: &[&str] = &["exec", "httpGet", "tcpSocket", "grpc"];
const LIFECYCLE_HANDLERS: &[&str] = &["exec", "httpGet", "tcpSocket", "sleep"];

/// A probe's or a lifecycle hook's action: exactly one of `kinds`, the first one checked.
/// Upstream defaults an httpGet's path to `/` and its scheme to HTTP, so neither may be
/// missing here either.
fn handler(h: &Value, kinds: &[&str], grace: Option<i64>, path: &Path, out: &mut Vec<Cause>) {
    let mut found = false;
    for kind in kinds {
        let Some(action) = set(h, kind) else {
            continue;
        };
        let ap = path.child(kind);
        if found {
            out.push(forbidden(&ap, "may not specify more than 1 handler type"));
            continue;
        }
        found = true;
        match *kind {
            "exec" => {
                if action
                    .get("command")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
                {
                    out.push(required(&ap.child("command"), ""));
                }
            }
            "httpGet" => {
                port_num_or_name(action.get("port"), &ap.child("port"), out);
                let scheme = str_of(action, "scheme");
                if !matches!(scheme, "" | "HTTP" | "HTTPS") {
                    out.push(not_supported(
                        &ap.child("scheme"),
                        scheme,
                        &["HTTP", "HTTPS"],
                    ));
                }
                for (_, header) in items(action, "httpHeaders") {
                    let name = str_of(header, "name");
                    if name.is_empty()
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    {
                        out.push(invalid(
                            &ap.child("httpHeaders"),
                            &go_str(name),
                            &regex_error(
                                "a valid HTTP header must consist of alphanumeric characters or '-'",
                                "[-A-Za-z0-9]+",
                                &["X-Header-Name"],
                            ),
                        ));
                    }
                }
            }
            "tcpSocket" => port_num_or_name(action.get("port"), &ap.child("port"), out),
            "grpc" => port_number(int_of(action, "port").unwrap_or(0), &ap.child("port"), out),
            _ => {
                // sleep: within the pod's grace period (zero allowed, as in 1.33).
                let seconds = int_of(action, "seconds").unwrap_or(0);
                if let Some(grace) = grace
                    && (seconds < 0 || seconds > grace)
                {
                    out.push(invalid(
                        &ap,
                        &seconds.to_string(),
                        &format!(
                            "must be non-negative and less than terminationGracePeriodSeconds ({grace})"
                        ),
                    ));
                }
            }
        }
    }
    if !found {
        out.push(required(path, "must specify a handler type"));
    }
}

/// `c[key]`, a liveness, readiness or startup probe. Upstream defaults zero timeouts, periods
/// and thresholds (a zero successThreshold becomes 1), so only negative ones are refused.
fn probe(c: &Value, key: &str, grace: Option<i64>, path: &Path, out: &mut Vec<Cause>) {
    let Some(p) = set(c, key) else { return };
    let pp = path.child(key);
    handler(p, PROBE_HANDLERS, grace, &pp, out);
    for field in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        if let Some(v) = p.get(field) {
            non_negative(v, &pp.child(field), out);
        }
    }
    let grace_path = pp.child("terminationGracePeriodSeconds");
    let probe_grace = int_of(p, "terminationGracePeriodSeconds");
    if let Some(n) = probe_grace
        && n <= 0
    {
        out.push(invalid(
            &grace_path,
            &n.to_string(),
            "must be greater than 0",
        ));
    }
    if key == "readinessProbe" {
        if let Some(n) = probe_grace {
            out.push(invalid(
                &grace_path,
                &n.to_string(),
                "must not be set for readinessProbes",
            ));
        }
    } else {
        let success = int_of(p, "successThreshold")
            .filter(|n| *n != 0)
            .unwrap_or(1);
        if success != 1 {
            out.push(invalid(
                &pp.child("successThreshold"),
                &success.to_string(),
                "must be 1",
            ));
        }
    }
}

fn lifecycle(c: &Value, grace: Option<i64>, path: &Path, out: &mut Vec<Cause>) {
    let Some(l) = set(c, "lifecycle") else { return };
    let lp = path.child("lifecycle");
    for hook in ["postStart", "preStop"] {
        if let Some(h) = set(l, hook) {
            handler(h, LIFECYCLE_HANDLERS, grace, &lp.child(hook), out);
        }
    }
}

fn env_name_ok(s: &str) -> bool {
    !s.contains('=') && s.bytes().all(|b| (b' '..=b'~').contains(&b))
}

const ENV_NAME_MSG: &str = "a valid environment variable name must consist only of printable ASCII characters other than '='";

/// The downward API fields an env var may read.
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

/// The downward API fields a volume file may hold.
const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

/// A resourceFieldRef of an env var or (`volume`, which must name its container) of a
/// downward API volume file.
fn resource_field_ref(rf: &Value, volume: bool, path: &Path, out: &mut Vec<Cause>) {
    let resource = str_of(rf, "resource");
    if volume && str_of(rf, "containerName").is_empty() {
        out.push(required(&path.child("containerName"), ""));
    } else if resource.is_empty() {
        out.push(required(&path.child("resource"), ""));
    } else if !RESOURCE_FIELD_PATHS.contains(&resource)
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        out.push(not_supported(
            &path.child("resource"),
            resource,
            RESOURCE_FIELD_PATHS,
        ));
    }
    let Some(divisor) = rf.get("divisor").and_then(Value::as_str) else {
        return;
    };
    let Some(canonical) = canonical_divisor(divisor) else {
        return;
    };
    const MEMORY: &str = "1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei";
    let (allowed, message): (&[&str], String) = match resource {
        "limits.cpu" | "requests.cpu" => (
            &["1m", "1"],
            "only divisor's values 1m and 1 are supported with the cpu resource".into(),
        ),
        "limits.memory" | "requests.memory" => (
            &MEMORY_DIVISORS,
            format!("only divisor's values {MEMORY} are supported with the memory resource"),
        ),
        "limits.ephemeral-storage" | "requests.ephemeral-storage" => (
            &MEMORY_DIVISORS,
            format!(
                "only divisor's values {MEMORY} are supported with the local ephemeral storage resource"
            ),
        ),
        r if r.starts_with("requests.hugepages-") || r.starts_with("limits.hugepages-") => (
            &MEMORY_DIVISORS,
            format!("only divisor's values {MEMORY} are supported with the hugepages resource"),
        ),
        _ => return,
    };
    if canonical != "0" && !allowed.contains(&canonical.as_str()) {
        out.push(invalid(&path.child("divisor"), &go_str(resource), &message));
    }
}

const MEMORY_DIVISORS: [&str; 13] = [
    "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
];

/// A divisor quantity in the canonical form upstream compares (`1000m` is `1`, `1024Ki` is
/// `1Mi`), as far as the allowed divisors go: powers of 1000 (from 1m) and of 1024 come out
/// as `1` and a suffix, `0` as `0`, anything else as `other`. `None` for what is not a
/// quantity (the decoder refuses those).
fn canonical_divisor(q: &str) -> Option<String> {
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let whole = whole.strip_prefix('+').unwrap_or(whole);
    if whole.starts_with('-') || (whole.is_empty() && frac.is_empty()) {
        return Some("other".into());
    }
    // digits × 10^exp10 × 1024^exp1024
    let mut digits: u128 = 0;
    for b in whole.bytes().chain(frac.bytes()) {
        digits = digits.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
    }
    if digits == 0 {
        return Some("0".into());
    }
    let mut exp10 = -(frac.len() as i32);
    let binary = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let decimal = [
        ("n", -9),
        ("u", -6),
        ("m", -3),
        ("", 0),
        ("k", 3),
        ("M", 6),
        ("G", 9),
        ("T", 12),
        ("P", 15),
        ("E", 18),
    ];
    // `1e3`: upstream keeps the exponent form, so only a plain 1 is an allowed divisor.
    let exponent = suffix
        .strip_prefix(['e', 'E'])
        .filter(|e| !e.is_empty())
        .and_then(|e| e.parse::<i32>().ok());
    let exp1024 = match binary.iter().position(|s| *s == suffix) {
        Some(i) => i as u32 + 1,
        None => {
            exp10 += match exponent {
                Some(e) => e,
                None => decimal.iter().find(|(s, _)| *s == suffix)?.1,
            };
            0
        }
    };
    while digits.is_multiple_of(10) {
        digits /= 10;
        exp10 += 1;
    }
    if exponent.is_some() {
        return Some(
            if (digits, exp10) == (1, 0) {
                "1"
            } else {
                "other"
            }
            .into(),
        );
    }
    if exp1024 > 0 {
        // Binary: a power of 1024 keeps its suffix; below 1024 upstream writes decimal.
        if exp10 < 0 {
            return Some("other".into());
        }
        let value = digits.checked_mul(10u128.checked_pow(exp10 as u32)?)?;
        let value = value.checked_mul(1024u128.checked_pow(exp1024)?)?;
        if let Some(j) = (1..=6).find(|j| 1024u128.pow(*j) == value) {
            return Some(format!("1{}", binary[j as usize - 1]));
        }
        return Some(if value == 1 { "1" } else { "other" }.into());
    }
    if digits != 1 {
        return Some("other".into());
    }
    Some(
        decimal
            .iter()
            .find(|(_, e)| *e == exp10)
            .map_or_else(|| "other".into(), |(s, _)| format!("1{s}")),
    )
}

/// `metadata.labels['key']` split into its path and subscript.
fn split_subscript(p: &str) -> Option<(&str, &str)> {
    let (head, sub) = p.strip_suffix("']")?.split_once("['")?;
    (!head.is_empty()).then_some((head, sub))
}

/// A field label of a v1 pod, as the downward API converts it (or why it cannot).
fn downward_field(api_version: &str, fp: &str) -> Result<String, String> {
    if api_version != "v1" {
        return Err(format!("unsupported pod version: {api_version}"));
    }
    if let Some((head, _)) = split_subscript(fp) {
        return match head {
            "metadata.annotations" | "metadata.labels" => Ok(fp.to_owned()),
            _ => Err(format!("field label does not support subscript: {fp}")),
        };
    }
    match fp {
        "metadata.annotations"
        | "metadata.labels"
        | "metadata.name"
        | "metadata.namespace"
        | "metadata.uid"
        | "spec.nodeName"
        | "spec.restartPolicy"
        | "spec.serviceAccountName"
        | "spec.schedulerName"
        | "status.phase"
        | "status.hostIP"
        | "status.hostIPs"
        | "status.podIP"
        | "status.podIPs" => Ok(fp.to_owned()),
        "spec.host" => Ok("spec.nodeName".to_owned()),
        _ => Err(format!("field label not supported: {fp}")),
    }
}

/// A fieldRef of an env var (`supported`: [`ENV_FIELD_PATHS`]) or of a downward API volume
/// file ([`VOLUME_FIELD_PATHS`]).
fn field_ref(fr: &Value, supported: &[&str], path: &Path, out: &mut Vec<Cause>) {
    // Upstream defaults the apiVersion to v1.
    let api_version = match str_of(fr, "apiVersion") {
        "" => "v1",
        v => v,
    };
    let fp = str_of(fr, "fieldPath");
    if fp.is_empty() {
        out.push(required(&path.child("fieldPath"), ""));
        return;
    }
    match downward_field(api_version, fp) {
        Err(e) => out.push(invalid(
            &path.child("fieldPath"),
            &go_str(fp),
            &format!("error converting fieldPath: {e}"),
        )),
        Ok(internal) => match split_subscript(&internal) {
            Some(("metadata.annotations", sub)) => {
                let sub = sub.to_lowercase();
                each(path, &sub, qualified_name(&sub), out);
            }
            Some(("metadata.labels", sub)) => each(path, sub, qualified_name(sub), out),
            Some((head, _)) => out.push(invalid(path, &go_str(head), "does not support subscript")),
            None => {
                if !supported.contains(&internal.as_str()) {
                    out.push(not_supported(
                        &path.child("fieldPath"),
                        &internal,
                        supported,
                    ));
                }
            }
        },
    }
}

/// A configMapKeyRef or secretKeyRef.
fn key_selector(sel: &Value, path: &Path, out: &mut Vec<Cause>) {
    let name = str_of(sel, "name");
    each(&path.child("name"), name, dns1123_subdomain(name), out);
    required_str(sel, "key", path, "", config_map_key, out);
}

fn env_value_from(e: &Value, path: &Path, out: &mut Vec<Cause>) {
    let Some(from) = set(e, "valueFrom") else {
        return;
    };
    let mut sources = 0;
    if let Some(fr) = set(from, "fieldRef") {
        sources += 1;
        field_ref(fr, ENV_FIELD_PATHS, &path.child("fieldRef"), out);
    }
    if let Some(rf) = set(from, "resourceFieldRef") {
        sources += 1;
        resource_field_ref(rf, false, &path.child("resourceFieldRef"), out);
    }
    for key in ["configMapKeyRef", "secretKeyRef"] {
        if let Some(sel) = set(from, key) {
            sources += 1;
            key_selector(sel, &path.child(key), out);
        }
    }
    let detail = if sources == 0 {
        "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"
    } else if !str_of(e, "value").is_empty() {
        "may not be specified when `value` is not empty"
    } else if sources > 1 {
        "may not have more than one field specified at a time"
    } else {
        return;
    };
    out.push(invalid(path, "\"\"", detail));
}

fn env(c: &Value, path: &Path, out: &mut Vec<Cause>) {
    for (j, e) in items(c, "env") {
        let ep = path.child("env").index(j);
        let name = str_of(e, "name");
        if name.is_empty() {
            out.push(required(&ep.child("name"), ""));
        } else if !env_name_ok(name) {
            out.push(invalid(&ep.child("name"), &go_str(name), ENV_NAME_MSG));
        }
        env_value_from(e, &ep.child("valueFrom"), out);
    }
    let from_path = path.child("envFrom");
    for (j, e) in items(c, "envFrom") {
        let ep = from_path.index(j);
        let prefix = str_of(e, "prefix");
        if !env_name_ok(prefix) {
            out.push(invalid(&ep.child("prefix"), &go_str(prefix), ENV_NAME_MSG));
        }
        let mut sources = 0;
        for key in ["configMapRef", "secretRef"] {
            let Some(r) = set(e, key) else { continue };
            sources += 1;
            let np = ep.child(key).child("name");
            let name = str_of(r, "name");
            if name.is_empty() {
                out.push(required(&np, ""));
            } else {
                // A name checked as a prefix: a trailing '-' passes.
                let masked = match name.strip_suffix('-') {
                    Some(head) if !head.is_empty() => format!("{head}a"),
                    _ => name.to_owned(),
                };
                each(&np, name, dns1123_subdomain(&masked), out);
            }
        }
        if sources == 0 {
            out.push(invalid(
                &from_path,
                "\"\"",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if sources > 1 {
            out.push(invalid(
                &from_path,
                "\"\"",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

/// A path inside a volume: relative, without `..` elements.
fn local_descending_path(p: &str, path: &Path, out: &mut Vec<Cause>) {
    if p.starts_with('/') {
        out.push(invalid(path, &go_str(p), "must be a relative path"));
    }
    no_backsteps(p, path, out);
}

fn no_backsteps(p: &str, path: &Path, out: &mut Vec<Cause>) {
    if p.split(['/', '\\']).any(|part| part == "..") {
        out.push(invalid(path, &go_str(p), "must not contain '..'"));
    }
}

fn volume_mounts(c: &Value, path: &Path, ctx: &PodContext, out: &mut Vec<Cause>) {
    let mounts_path = path.child("volumeMounts");
    let privileged = c["securityContext"]["privileged"] == Value::Bool(true);
    let mut mount_points: Vec<&str> = Vec::new();
    for (j, m) in items(c, "volumeMounts") {
        let mp = mounts_path.index(j);
        let name = str_of(m, "name");
        if name.is_empty() {
            out.push(required(&mp.child("name"), ""));
        }
        if !ctx.volumes.iter().any(|v| v == name) {
            out.push(not_found(&mp.child("name"), name));
        }
        let mount_path = str_of(m, "mountPath");
        if mount_path.is_empty() {
            out.push(required(&mp.child("mountPath"), ""));
        }
        if mount_points.contains(&mount_path) {
            out.push(invalid(
                &mp.child("mountPath"),
                &go_str(mount_path),
                "must be unique",
            ));
        }
        mount_points.push(mount_path);
        let sub_path = str_of(m, "subPath");
        if !sub_path.is_empty() {
            local_descending_path(sub_path, &mounts_path.child("subPath"), out);
        }
        let sub_path_expr = str_of(m, "subPathExpr");
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                out.push(invalid(
                    &mp.child("subPathExpr"),
                    &go_str(sub_path_expr),
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending_path(sub_path_expr, &mounts_path.child("subPathExpr"), out);
        }
        if let Some(prop) = m.get("mountPropagation").and_then(Value::as_str) {
            let pp = mounts_path.child("mountPropagation");
            let supported = ["Bidirectional", "HostToContainer", "None"];
            if !supported.contains(&prop) {
                out.push(not_supported(&pp, prop, &supported));
            }
            if prop == "Bidirectional" && !privileged {
                out.push(forbidden(
                    &pp,
                    "Bidirectional mount propagation is available only to privileged containers",
                ));
            }
        }
    }
}

fn ports(c: &Value, path: &Path, out: &mut Vec<Cause>) {
    let mut port_names: Vec<&str> = Vec::new();
    for (j, p) in items(c, "ports") {
        let pp = path.child("ports").index(j);
        let pname = str_of(p, "name");
        if !pname.is_empty() {
            let errs = port_name(pname);
            if !errs.is_empty() {
                each(&pp.child("name"), pname, errs, out);
            } else if port_names.contains(&pname) {
                out.push(duplicate(&pp.child("name"), pname));
            } else {
                port_names.push(pname);
            }
        }
        match int_of(p, "containerPort").unwrap_or(0) {
            0 => out.push(required(&pp.child("containerPort"), "")),
            n => port_number(n, &pp.child("containerPort"), out),
        }
        if let Some(n) = int_of(p, "hostPort").filter(|n| *n != 0) {
            port_number(n, &pp.child("hostPort"), out);
        }
        protocol(p, &pp, out);
    }
}

const ID_RANGE_MSG: &str = "must be between 0 and 2147483647, inclusive";

/// A user or group id (`runAsUser`, `fsGroup`, ...), when given.
fn id_in_range(v: &Value, key: &str, path: &Path, out: &mut Vec<Cause>) {
    if let Some(n) = int_of(v, key) {
        id_number(n, &path.child(key), out);
    }
}

fn id_number(n: i64, path: &Path, out: &mut Vec<Cause>) {
    if !(0..=i64::from(i32::MAX)).contains(&n) {
        out.push(invalid(path, &n.to_string(), ID_RANGE_MSG));
    }
}

/// Go's `%#v` of a non-nil pointer field. The address is the process's own upstream; any
/// stands in for it.
fn go_pointer(ty: &str, given: bool) -> String {
    if given {
        format!("(*{ty})(0xc000000000)")
    } else {
        format!("(*{ty})(nil)")
    }
}

/// Go's `%#v` of a container's `core.SecurityContext`, as upstream prints it in the
/// allowPrivilegeEscalation errors (its pointers' addresses differ from run to run).
fn go_security_context(sc: &Value) -> String {
    let fields = [
        ("Capabilities", "capabilities", "core.Capabilities"),
        ("Privileged", "privileged", "bool"),
        ("SELinuxOptions", "seLinuxOptions", "core.SELinuxOptions"),
        (
            "WindowsOptions",
            "windowsOptions",
            "core.WindowsSecurityContextOptions",
        ),
        ("RunAsUser", "runAsUser", "int64"),
        ("RunAsGroup", "runAsGroup", "int64"),
        ("RunAsNonRoot", "runAsNonRoot", "bool"),
        ("ReadOnlyRootFilesystem", "readOnlyRootFilesystem", "bool"),
        (
            "AllowPrivilegeEscalation",
            "allowPrivilegeEscalation",
            "bool",
        ),
        ("ProcMount", "procMount", "core.ProcMountType"),
        ("SeccompProfile", "seccompProfile", "core.SeccompProfile"),
        ("AppArmorProfile", "appArmorProfile", "core.AppArmorProfile"),
    ];
    let parts: Vec<String> = fields
        .iter()
        .map(|(go, json, ty)| format!("{go}:{}", go_pointer(ty, has(sc, json))))
        .collect();
    format!("core.SecurityContext{{{}}}", parts.join(", "))
}

const PROFILE_TYPES: &[&str] = &["Localhost", "RuntimeDefault", "Unconfined"];

fn seccomp_profile(parent: &Value, path: &Path, out: &mut Vec<Cause>) {
    let Some(sp) = set(parent, "seccompProfile") else {
        return;
    };
    let path = path.child("seccompProfile");
    let kind = str_of(sp, "type");
    if kind.is_empty() {
        out.push(required(
            &path.child("type"),
            "type is required when seccompProfile is set",
        ));
    } else if !PROFILE_TYPES.contains(&kind) {
        out.push(not_supported(&path.child("type"), kind, PROFILE_TYPES));
    }
    let local = sp.get("localhostProfile").and_then(Value::as_str);
    if kind == "Localhost" {
        match local {
            None => out.push(required(
                &path.child("localhostProfile"),
                "must be set when seccomp type is Localhost",
            )),
            Some(l) => local_descending_path(l, &path.child("localhostProfile"), out),
        }
    } else if local.is_some() {
        out.push(invalid(
            &path.child("localhostProfile"),
            &format!(
                "core.SeccompProfile{{Type:{}, LocalhostProfile:{}}}",
                go_str(kind),
                go_pointer("string", true)
            ),
            "can only be set when seccomp type is Localhost",
        ));
    }
}

fn app_armor_profile(parent: &Value, path: &Path, out: &mut Vec<Cause>) {
    let Some(ap) = set(parent, "appArmorProfile") else {
        return;
    };
    let path = path.child("appArmorProfile");
    let lp = path.child("localhostProfile");
    let local = ap.get("localhostProfile").and_then(Value::as_str);
    match str_of(ap, "type") {
        "Localhost" => match local {
            None => out.push(required(&lp, "must be set when AppArmor type is Localhost")),
            Some(l) => {
                if l.trim() != l {
                    out.push(invalid(
                        &lp,
                        &go_str(l),
                        "must not be padded with whitespace",
                    ));
                } else if l.is_empty() {
                    out.push(required(&lp, "must be set when AppArmor type is Localhost"));
                }
                if l.len() > 4095 {
                    out.push(too_long(&lp, 4095));
                }
            }
        },
        "RuntimeDefault" | "Unconfined" => {
            if let Some(l) = local {
                out.push(invalid(
                    &lp,
                    &go_str(l),
                    "can only be set when AppArmor type is Localhost",
                ));
            }
        }
        "" => out.push(required(
            &path.child("type"),
            "type is required when appArmorProfile is set",
        )),
        other => out.push(not_supported(&path.child("type"), other, PROFILE_TYPES)),
    }
}

fn container_security_context(c: &Value, path: &Path, host_users: bool, out: &mut Vec<Cause>) {
    let Some(sc) = set(c, "securityContext").filter(|s| s.is_object()) else {
        return;
    };
    let path = path.child("securityContext");
    id_in_range(sc, "runAsUser", &path, out);
    id_in_range(sc, "runAsGroup", &path, out);
    if let Some(pm) = sc.get("procMount").and_then(Value::as_str) {
        let pp = path.child("procMount");
        if !matches!(pm, "Default" | "Unmasked") {
            out.push(not_supported(&pp, pm, &["Default", "Unmasked"]));
        }
        if host_users && pm == "Unmasked" {
            out.push(invalid(
                &pp,
                &go_str(pm),
                "`hostUsers` must be false to use `Unmasked`",
            ));
        }
    }
    seccomp_profile(sc, &path, out);
    if sc.get("allowPrivilegeEscalation") == Some(&Value::Bool(false)) {
        if sc.get("privileged") == Some(&Value::Bool(true)) {
            out.push(invalid(
                &path,
                &go_security_context(sc),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        for cap in sc["capabilities"]["add"].as_array().into_iter().flatten() {
            if cap.as_str() == Some("CAP_SYS_ADMIN") {
                out.push(invalid(
                    &path,
                    &go_security_context(sc),
                    "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
                ));
            }
        }
    }
    app_armor_profile(sc, &path, out);
}

/// What upstream checks of every container, init or not.
fn container_common(c: &Value, cp: &Path, ctx: &PodContext, out: &mut Vec<Cause>) {
    required_str(c, "name", cp, "", dns1123_label, out);
    if str_of(c, "image").is_empty() {
        out.push(required(&cp.child("image"), ""));
    }
    one_of(
        c,
        "terminationMessagePolicy",
        &cp.child("terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
        out,
    );
    ports(c, cp, out);
    env(c, cp, out);
    volume_mounts(c, cp, ctx, out);
    one_of(
        c,
        "imagePullPolicy",
        &cp.child("imagePullPolicy"),
        &["Always", "IfNotPresent", "Never"],
        out,
    );
    resources(c.get("resources"), &cp.child("resources"), out);
    container_security_context(c, cp, ctx.host_users, out);
}

/// A pod's containers (`init` false) or init containers, in upstream's order of checks.
/// `names` holds the names seen so far: regular containers are checked first, and an init
/// container may not reuse any of theirs.
fn containers(
    list: Option<&Value>,
    path: &Path,
    ctx: &PodContext,
    names: &mut Vec<String>,
    init: bool,
    out: &mut Vec<Cause>,
) {
    let list = list.and_then(Value::as_array);
    if list.is_none_or(|l| l.is_empty()) {
        if !init {
            out.push(required(path, ""));
        }
        return;
    }
    for (i, c) in list.into_iter().flatten().enumerate() {
        let cp = path.index(i);
        container_common(c, &cp, ctx, out);
        let mut restartable = false;
        if init && let Some(policy) = c.get("restartPolicy").and_then(Value::as_str) {
            if policy != "Always" {
                out.push(not_supported(
                    &cp.child("restartPolicy"),
                    policy,
                    &["Always"],
                ));
            }
            restartable = policy == "Always";
        }
        let name = str_of(c, "name");
        if names.iter().any(|n| n == name) {
            out.push(duplicate(&cp.child("name"), name));
        } else if !init || !name.is_empty() {
            names.push(name.to_owned());
        }
        if init {
            // Init containers run one at a time: each is checked alone (and upstream names
            // each one index 0 in what it reports).
            host_port_conflicts(std::slice::from_ref(c), path, out);
        }
        if init && !restartable {
            for key in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if has(c, key) {
                    out.push(forbidden(
                        &cp.child(key),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        } else {
            lifecycle(c, ctx.grace_period, &cp, out);
            for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
                probe(c, key, ctx.grace_period, &cp, out);
            }
        }
        if !init && has(c, "restartPolicy") {
            out.push(forbidden(
                &cp.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    if !init {
        host_port_conflicts(list.map_or(&[], Vec::as_slice), path, out);
    }
}

/// Two ports of `containers` that take the same host port, protocol and host IP.
fn host_port_conflicts(containers: &[Value], path: &Path, out: &mut Vec<Cause>) {
    let mut taken: Vec<String> = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        for (j, p) in items(c, "ports") {
            let Some(port) = int_of(p, "hostPort").filter(|n| *n != 0) else {
                continue;
            };
            let key = format!("{}/{}/{port}", str_of(p, "protocol"), str_of(p, "hostIP"));
            if taken.contains(&key) {
                let hp = path.index(i).child("ports").index(j).child("hostPort");
                out.push(duplicate(&hp, &key));
            } else {
                taken.push(key);
            }
        }
    }
}

/// A quantity's value, for comparisons only (`None` when it is not a quantity; malformed
/// quantities are the decoder's business).
fn quantity_value(q: &str) -> Option<f64> {
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e => 10f64.powi(e.strip_prefix(['e', 'E'])?.parse().ok()?),
    };
    Some(number * scale)
}

/// A container's requests and limits, as upstream: none negative, and no request above its
/// limit ("must be less than or equal to cpu limit of 1"). Quantities are echoed as written
/// (upstream prints them canonicalised: the same for the usual forms such as `500m`, `2`,
/// `128Mi`).
fn resources(res: Option<&Value>, path: &Path, out: &mut Vec<Cause>) {
    let Some(res) = res else { return };
    let limits = res.get("limits").and_then(Value::as_object);
    for key in ["limits", "requests"] {
        for (name, q) in res
            .get(key)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let Some(text) = q.as_str() else { continue };
            if quantity_value(text).is_some_and(|v| v < 0.0) {
                out.push(invalid(
                    &path.child(key).key(name),
                    &go_str(text),
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
    for (name, q) in res
        .get("requests")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let (Some(request), Some(limit)) = (
            q.as_str(),
            limits.and_then(|l| l.get(name)).and_then(Value::as_str),
        ) else {
            continue;
        };
        if let (Some(r), Some(l)) = (quantity_value(request), quantity_value(limit))
            && r > l
        {
            out.push(invalid(
                &path.child("requests"),
                &go_str(request),
                &format!("must be less than or equal to {name} limit of {limit}"),
            ));
        }
    }
}

fn protocol(p: &Value, path: &Path, out: &mut Vec<Cause>) {
    match p.get("protocol").and_then(Value::as_str) {
        None | Some("") => out.push(required(&path.child("protocol"), "")),
        Some("TCP" | "UDP" | "SCTP") => {}
        Some(other) => out.push(not_supported(
            &path.child("protocol"),
            other,
            &["SCTP", "TCP", "UDP"],
        )),
    }
}

/// Volume sources in the order upstream checks them, with the name its "more than 1 volume
/// type" error gives each (upstream's own spellings, `cephFS` and `downwarAPI` included).
const VOLUME_SOURCES: &[(&str, &str)] = &[
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

fn file_mode(v: &Value, key: &str, path: &Path, out: &mut Vec<Cause>) {
    if let Some(n) = int_of(v, key)
        && !(0..=0o777).contains(&n)
    {
        out.push(invalid(
            &path.child(key),
            &n.to_string(),
            "must be a number between 0 and 0777 (octal), both inclusive",
        ));
    }
}

/// The `items` of a secret or configMap volume.
fn key_to_paths(src: &Value, path: &Path, out: &mut Vec<Cause>) {
    for (i, kp) in items(src, "items") {
        key_to_path(kp, &path.child("items").index(i), out);
    }
}

fn key_to_path(kp: &Value, ip: &Path, out: &mut Vec<Cause>) {
    if str_of(kp, "key").is_empty() {
        out.push(required(&ip.child("key"), ""));
    }
    let p = str_of(kp, "path");
    if p.is_empty() {
        out.push(required(&ip.child("path"), ""));
    }
    local_non_reserved_path(p, &ip.child("path"), out);
    file_mode(kp, "mode", ip, out);
}

/// A path inside a volume that does not step out of it nor start with `..`.
fn local_non_reserved_path(p: &str, path: &Path, out: &mut Vec<Cause>) {
    local_descending_path(p, path, out);
    if p.starts_with("..") && !p.starts_with("../") {
        out.push(invalid(path, &go_str(p), "must not start with '..'"));
    }
}

/// A file of a downward API volume or projection. Upstream reports each at the path of its
/// list's parent, not at an index.
fn downward_api_file(f: &Value, path: &Path, out: &mut Vec<Cause>) {
    let p = str_of(f, "path");
    if p.is_empty() {
        out.push(required(&path.child("path"), ""));
    }
    local_non_reserved_path(p, &path.child("path"), out);
    match (set(f, "fieldRef"), set(f, "resourceFieldRef")) {
        (Some(fr), rf) => {
            field_ref(fr, VOLUME_FIELD_PATHS, &path.child("fieldRef"), out);
            if rf.is_some() {
                out.push(invalid(
                    path,
                    "\"resource\"",
                    "fieldRef and resourceFieldRef can not be specified simultaneously",
                ));
            }
        }
        (None, Some(rf)) => resource_field_ref(rf, true, &path.child("resourceFieldRef"), out),
        (None, None) => out.push(required(
            path,
            "one of fieldRef and resourceFieldRef is required",
        )),
    }
    file_mode(f, "mode", path, out);
}

/// A projected file's path `p`, which no other source of the volume may take; upstream's error
/// shows `shown` (the source's name for secrets and config maps, the path for the rest).
fn claim_path<'a>(
    paths: &mut Vec<&'a str>,
    p: &'a str,
    shown: &str,
    path: &Path,
    out: &mut Vec<Cause>,
) {
    if p.is_empty() {
        return;
    }
    if paths.contains(&p) {
        out.push(invalid(path, &go_str(shown), "conflicting duplicate paths"));
    } else {
        paths.push(p);
    }
}

/// A projected volume's sources: one kind each, and no path given twice across them.
fn projected_sources(src: &Value, path: &Path, out: &mut Vec<Cause>) {
    let mut paths: Vec<&str> = Vec::new();
    for (i, source) in items(src, "sources") {
        let sp = path.child("sources").index(i);
        let mut kinds = 0;
        for key in ["secret", "configMap"] {
            let Some(s) = set(source, key) else { continue };
            kinds += 1;
            let kp = sp.child(key);
            let name = str_of(s, "name");
            if name.is_empty() {
                out.push(required(&kp.child("name"), ""));
            }
            for (j, item) in items(s, "items") {
                key_to_path(item, &kp.child("items").index(j), out);
                claim_path(&mut paths, str_of(item, "path"), name, path, out);
            }
        }
        if let Some(d) = set(source, "downwardAPI") {
            kinds += 1;
            for (_, f) in items(d, "items") {
                downward_api_file(f, &sp.child("downwardAPI"), out);
                let p = str_of(f, "path");
                claim_path(&mut paths, p, p, path, out);
            }
        }
        if let Some(t) = set(source, "serviceAccountToken") {
            kinds += 1;
            let ep = sp.child("serviceAccountToken").child("expirationSeconds");
            // Upstream defaults the expiration to an hour.
            let seconds = int_of(t, "expirationSeconds").unwrap_or(3600);
            if seconds < 600 {
                out.push(invalid(
                    &ep,
                    &seconds.to_string(),
                    "may not specify a duration less than 10 minutes",
                ));
            }
            if seconds > 1 << 32 {
                out.push(invalid(
                    &ep,
                    &seconds.to_string(),
                    "may not specify a duration larger than 2^32 seconds",
                ));
            }
            // Upstream's path for the token's path is the volume's, not the source's.
            match str_of(t, "path") {
                "" => out.push(required(&path.child("path"), "")),
                p => local_non_reserved_path(p, &path.child("path"), out),
            }
        }
        if set(source, "clusterTrustBundle").is_some() {
            kinds += 1;
        }
        if kinds > 1 {
            out.push(forbidden(&sp, "may not specify more than 1 volume type"));
        }
    }
}

/// A volume's source: exactly one, and the common ones' required fields.
fn volume_source(v: &Value, vp: &Path, out: &mut Vec<Cause>) {
    let mut sources = 0;
    for (key, name) in VOLUME_SOURCES {
        let Some(src) = set(v, key) else { continue };
        if sources > 0 {
            out.push(forbidden(
                &vp.child(name),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        sources += 1;
        let sp = vp.child(key);
        match *key {
            "emptyDir" => {
                if let Some(q) = src.get("sizeLimit").and_then(Value::as_str)
                    && quantity_value(q).is_some_and(|n| n < 0.0)
                {
                    out.push(forbidden(
                        &sp.child("sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    ));
                }
            }
            "hostPath" => {
                let p = str_of(src, "path");
                if p.is_empty() {
                    out.push(required(&sp.child("path"), ""));
                    continue;
                }
                no_backsteps(p, &sp.child("path"), out);
                one_of(src, "type", &sp.child("type"), HOST_PATH_TYPES, out);
            }
            "secret" | "configMap" => {
                let name_field = if *key == "secret" {
                    "secretName"
                } else {
                    "name"
                };
                if str_of(src, name_field).is_empty() {
                    out.push(required(&sp.child(name_field), ""));
                }
                file_mode(src, "defaultMode", &sp, out);
                key_to_paths(src, &sp, out);
            }
            "downwardAPI" => {
                file_mode(src, "defaultMode", &sp, out);
                for (_, f) in items(src, "items") {
                    downward_api_file(f, &sp, out);
                }
            }
            "projected" => {
                file_mode(src, "defaultMode", &sp, out);
                projected_sources(src, &sp, out);
            }
            "persistentVolumeClaim" if str_of(src, "claimName").is_empty() => {
                out.push(required(&sp.child("claimName"), ""));
            }
            "nfs" => {
                let p = str_of(src, "path");
                if str_of(src, "server").is_empty() {
                    out.push(required(&sp.child("server"), ""));
                }
                if p.is_empty() {
                    out.push(required(&sp.child("path"), ""));
                }
                if !p.starts_with('/') {
                    out.push(invalid(
                        &sp.child("path"),
                        &go_str(p),
                        "must be an absolute path",
                    ));
                }
            }
            _ => {}
        }
    }
    if sources == 0 {
        out.push(required(vp, "must specify a volume type"));
    }
}

/// A sysctl name: dot- or slash-separated segments of `[a-z0-9]([-_a-z0-9]*[a-z0-9])?`.
fn sysctl_name_ok(s: &str) -> bool {
    s.len() <= 253
        && s.split(['.', '/']).all(|seg| {
            let b = seg.as_bytes();
            !b.is_empty()
                && b.iter().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_')
                })
                && !matches!(b[0], b'-' | b'_')
                && !matches!(b[b.len() - 1], b'-' | b'_')
        })
}

fn pod_security_context(spec: &Value, path: &Path, out: &mut Vec<Cause>) {
    let Some(sc) = set(spec, "securityContext").filter(|s| s.is_object()) else {
        return;
    };
    let path = path.child("securityContext");
    for key in ["fsGroup", "runAsUser", "runAsGroup"] {
        id_in_range(sc, key, &path, out);
    }
    for (i, gid) in items(sc, "supplementalGroups") {
        if let Some(n) = gid.as_i64() {
            id_number(n, &path.child("supplementalGroups").index(i), out);
        }
    }
    // v1 keeps these two in the pod spec; upstream checks them as part of the context.
    if spec.get("hostPID") == Some(&Value::Bool(true))
        && spec.get("shareProcessNamespace") == Some(&Value::Bool(true))
    {
        out.push(invalid(
            &path.child("shareProcessNamespace"),
            "true",
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    let mut sysctls: Vec<&str> = Vec::new();
    for (i, s) in items(sc, "sysctls") {
        let np = path.child("sysctls").index(i).child("name");
        let name = str_of(s, "name");
        if name.is_empty() {
            out.push(required(&np, ""));
        } else if !sysctl_name_ok(name) {
            out.push(invalid(
                &np,
                &go_str(name),
                "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
            ));
        } else if sysctls.contains(&name) {
            out.push(duplicate(&np, name));
        }
        sysctls.push(name);
    }
    one_of(
        sc,
        "fsGroupChangePolicy",
        &path.child("fsGroupChangePolicy"),
        &["Always", "OnRootMismatch"],
        out,
    );
    seccomp_profile(sc, &path, out);
    app_armor_profile(sc, &path, out);
    one_of(
        sc,
        "supplementalGroupsPolicy",
        &path.child("supplementalGroupsPolicy"),
        &["Merge", "Strict"],
        out,
    );
}

/// A node selector term; `check_values` for required terms, whose values must be label values
/// (preferred terms' need not). Its expressions may also compare with `Gt` and `Lt`.
fn node_selector_term(term: &Value, check_values: bool, path: &Path, out: &mut Vec<Cause>) {
    for (j, rq) in items(term, "matchExpressions") {
        selector_requirement(
            rq,
            true,
            check_values,
            &path.child("matchExpressions").index(j),
            out,
        );
    }
    for (j, rq) in items(term, "matchFields") {
        let rp = path.child("matchFields").index(j);
        let values = rq.get("values").and_then(Value::as_array);
        match str_of(rq, "operator") {
            "In" | "NotIn" => {
                if values.map_or(0, Vec::len) != 1 {
                    out.push(required(
                        &rp.child("values"),
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                    ));
                }
            }
            other => out.push(invalid(
                &rp.child("operator"),
                &go_str(other),
                "not a valid selector operator",
            )),
        }
        let key = str_of(rq, "key");
        if key != "metadata.name" {
            out.push(invalid(
                &rp.child("key"),
                &go_str(key),
                "not a valid field selector key",
            ));
        } else {
            for (i, v) in values.into_iter().flatten().enumerate() {
                let v = v.as_str().unwrap_or_default();
                each(&rp.child("values").index(i), v, dns1123_subdomain(v), out);
            }
        }
    }
}

fn affinity_weight(t: &Value, path: &Path, out: &mut Vec<Cause>) {
    let w = int_of(t, "weight").unwrap_or(0);
    if !(1..=100).contains(&w) {
        out.push(invalid(
            &path.child("weight"),
            &w.to_string(),
            "must be in the range 1-100",
        ));
    }
}

fn pod_affinity_term(t: &Value, path: &Path, out: &mut Vec<Cause>) {
    for key in ["labelSelector", "namespaceSelector"] {
        if let Some(sel) = set(t, key) {
            label_selector(sel, &path.child(key), out);
        }
    }
    for ns in t
        .get("namespaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ns = ns.as_str().unwrap_or_default();
        each(&path.child("namespace"), ns, dns1123_label(ns), out);
    }
    let key = str_of(t, "topologyKey");
    let kp = path.child("topologyKey");
    if key.is_empty() {
        out.push(required(&kp, "can not be empty"));
    }
    each(&kp, key, qualified_name(key), out);
}

const REQUIRED_TERMS: &str = "requiredDuringSchedulingIgnoredDuringExecution";
const PREFERRED_TERMS: &str = "preferredDuringSchedulingIgnoredDuringExecution";

fn affinity(spec: &Value, path: &Path, out: &mut Vec<Cause>) {
    let Some(a) = set(spec, "affinity") else {
        return;
    };
    let path = path.child("affinity");
    if let Some(na) = set(a, "nodeAffinity") {
        let np = path.child("nodeAffinity");
        if let Some(req) = set(na, REQUIRED_TERMS) {
            let tp = np.child(REQUIRED_TERMS).child("nodeSelectorTerms");
            let terms = req.get("nodeSelectorTerms").and_then(Value::as_array);
            if terms.is_none_or(Vec::is_empty) {
                out.push(required(&tp, "must have at least one node selector term"));
            }
            for (i, term) in terms.into_iter().flatten().enumerate() {
                node_selector_term(term, true, &tp.index(i), out);
            }
        }
        for (i, t) in items(na, PREFERRED_TERMS) {
            let tp = np.child(PREFERRED_TERMS).index(i);
            affinity_weight(t, &tp, out);
            node_selector_term(&t["preference"], false, &tp.child("preference"), out);
        }
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(pa) = set(a, kind) else { continue };
        let kp = path.child(kind);
        for (i, t) in items(pa, REQUIRED_TERMS) {
            pod_affinity_term(t, &kp.child(REQUIRED_TERMS).index(i), out);
        }
        for (i, t) in items(pa, PREFERRED_TERMS) {
            let tp = kp.child(PREFERRED_TERMS).index(i);
            affinity_weight(t, &tp, out);
            pod_affinity_term(&t["podAffinityTerm"], &tp.child("podAffinityTerm"), out);
        }
    }
}

fn selector_keys(sel: Option<&Value>) -> Vec<&str> {
    let Some(sel) = sel else { return Vec::new() };
    let mut keys: Vec<&str> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.keys().map(String::as_str))
        .collect();
    keys.extend(items(sel, "matchExpressions").map(|(_, e)| str_of(e, "key")));
    keys
}

fn topology_spread_constraints(spec: &Value, path: &Path, out: &mut Vec<Cause>) {
    let list: Vec<&Value> = items(spec, "topologySpreadConstraints")
        .map(|(_, c)| c)
        .collect();
    for (i, c) in list.iter().enumerate() {
        let cp = path.child("topologySpreadConstraints").index(i);
        let skew = int_of(c, "maxSkew").unwrap_or(0);
        if skew <= 0 {
            out.push(invalid(
                &cp.child("maxSkew"),
                &skew.to_string(),
                "must be greater than zero",
            ));
        }
        let key = str_of(c, "topologyKey");
        if key.is_empty() {
            out.push(required(&cp.child("topologyKey"), "can not be empty"));
        }
        let when = str_of(c, "whenUnsatisfiable");
        if !matches!(when, "DoNotSchedule" | "ScheduleAnyway") {
            out.push(not_supported(
                &cp.child("whenUnsatisfiable"),
                when,
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        if list[i + 1..]
            .iter()
            .any(|o| str_of(o, "topologyKey") == key && str_of(o, "whenUnsatisfiable") == when)
        {
            out.push(duplicate(
                &cp.child("{topologyKey, whenUnsatisfiable}"),
                &format!("{{{key}, {when}}}"),
            ));
        }
        if let Some(m) = int_of(c, "minDomains") {
            let mp = cp.child("minDomains");
            if m <= 0 {
                out.push(invalid(&mp, &m.to_string(), "must be greater than zero"));
            }
            if when != "DoNotSchedule" {
                out.push(invalid(
                    &mp,
                    &m.to_string(),
                    &format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {when}"
                    ),
                ));
            }
        }
        for policy in ["nodeAffinityPolicy", "nodeTaintsPolicy"] {
            one_of(c, policy, &cp.child(policy), &["Honor", "Ignore"], out);
        }
        let sel = set(c, "labelSelector");
        let match_keys = c.get("matchLabelKeys").and_then(Value::as_array);
        if match_keys.is_some_and(|k| !k.is_empty()) {
            let kp = cp.child("matchLabelKeys");
            if sel.is_none() {
                out.push(forbidden(
                    &kp,
                    "must not be specified when labelSelector is not set",
                ));
            }
            let in_selector = selector_keys(sel);
            for (j, k) in match_keys.into_iter().flatten().enumerate() {
                let k = k.as_str().unwrap_or_default();
                each(&kp.index(j), k, qualified_name(k), out);
                if in_selector.contains(&k) {
                    out.push(invalid(
                        &kp.index(j),
                        &go_str(k),
                        "exists in both matchLabelKeys and labelSelector",
                    ));
                }
            }
        }
        if let Some(sel) = sel {
            label_selector(sel, &cp.child("labelSelector"), out);
        }
    }
}

fn pod_spec(spec: &Value, path: &Path, out: &mut Vec<Cause>) {
    let mut volumes: Vec<String> = Vec::new();
    for (i, v) in items(spec, "volumes") {
        let vp = path.child("volumes").index(i);
        let before = out.len();
        volume_source(v, &vp, out);
        let vname = required_str(v, "name", &vp, "", dns1123_label, out);
        if volumes.iter().any(|n| n == vname) {
            out.push(duplicate(&vp.child("name"), vname));
        }
        // Only a volume without errors can be mounted, as upstream.
        if out.len() == before {
            volumes.push(vname.to_owned());
        }
    }
    let ctx = PodContext {
        volumes,
        grace_period: int_of(spec, "terminationGracePeriodSeconds"),
        host_users: spec
            .get("hostUsers")
            .and_then(Value::as_bool)
            .unwrap_or(true),
    };
    let mut names = Vec::new();
    containers(
        spec.get("containers"),
        &path.child("containers"),
        &ctx,
        &mut names,
        false,
        out,
    );
    containers(
        spec.get("initContainers"),
        &path.child("initContainers"),
        &ctx,
        &mut names,
        true,
        out,
    );
    match spec.get("restartPolicy").and_then(Value::as_str) {
        None | Some("") => out.push(required(&path.child("restartPolicy"), "")),
        Some("Always" | "OnFailure" | "Never") => {}
        Some(other) => out.push(not_supported(
            &path.child("restartPolicy"),
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
    one_of(
        spec,
        "dnsPolicy",
        &path.child("dnsPolicy"),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        out,
    );
    labels(spec.get("nodeSelector"), &path.child("nodeSelector"), out);
    pod_security_context(spec, path, out);
    affinity(spec, path, out);
    dns_config(spec, path, out);
    for (i, g) in items(spec, "readinessGates") {
        let t = str_of(g, "conditionType");
        let gp = path.child("readinessGates").index(i).child("conditionType");
        each(&gp, t, qualified_name(t), out);
    }
    let mut gates: Vec<&str> = Vec::new();
    for (i, g) in items(spec, "schedulingGates") {
        let name = str_of(g, "name");
        let gp = path.child("schedulingGates").index(i);
        each(&gp, name, qualified_name(name), out);
        if gates.contains(&name) {
            out.push(duplicate(&gp, name));
        }
        gates.push(name);
    }
    topology_spread_constraints(spec, path, out);
    if spec.get("hostUsers") == Some(&Value::Bool(false)) {
        // Upstream's paths, capitals included.
        for (key, at) in [
            ("hostNetwork", "hostNetwork"),
            ("hostPID", "HostPID"),
            ("hostIPC", "HostIPC"),
        ] {
            if spec.get(key) == Some(&Value::Bool(true)) {
                out.push(forbidden(
                    &path.child(at),
                    "when `pod.Spec.HostUsers` is false",
                ));
            }
        }
    }
    for key in ["serviceAccountName", "nodeName"] {
        name_if_set(spec, key, dns1123_subdomain, path, out);
    }
    if let Some(n) = int_of(spec, "activeDeadlineSeconds")
        && !(1..=i64::from(i32::MAX)).contains(&n)
    {
        out.push(invalid(
            &path.child("activeDeadlineSeconds"),
            &n.to_string(),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    for key in ["hostname", "subdomain"] {
        name_if_set(spec, key, dns1123_label, path, out);
    }
    for (i, t) in items(spec, "tolerations") {
        let tp = path.child("tolerations").index(i);
        let key = str_of(t, "key");
        if !key.is_empty() {
            each(&tp.child("key"), key, qualified_name(key), out);
        }
        match t.get("operator").and_then(Value::as_str).unwrap_or("") {
            "" | "Equal" => {
                if key.is_empty() {
                    out.push(invalid(
                        &tp.child("operator"),
                        &go_str(str_of(t, "operator")),
                        "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                    ));
                }
            }
            "Exists" => {
                if !str_of(t, "value").is_empty() {
                    out.push(invalid(
                        &tp.child("operator"),
                        &go_str(str_of(t, "value")),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => out.push(not_supported(
                &tp.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if let Some(e) = t.get("effect").and_then(Value::as_str)
            && !e.is_empty()
        {
            let ok = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
            if !ok.contains(&e) {
                out.push(not_supported(&tp.child("effect"), e, &ok));
            }
        }
    }
    for (i, a) in items(spec, "hostAliases") {
        let ap = path.child("hostAliases").index(i);
        let ip = str_of(a, "ip");
        if !ip_ok(ip) {
            out.push(invalid(&ap.child("ip"), &go_str(ip), IP_MSG));
        }
        for (j, h) in a
            .get("hostnames")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let h = h.as_str().unwrap_or_default();
            each(
                &ap.child("hostnames").index(j),
                h,
                dns1123_subdomain(h),
                out,
            );
        }
    }
    name_if_set(spec, "priorityClassName", dns1123_subdomain, path, out);
    // A pointer upstream: an empty name is checked too.
    if has(spec, "runtimeClassName") {
        let v = str_of(spec, "runtimeClassName");
        each(
            &path.child("runtimeClassName"),
            v,
            dns1123_subdomain(v),
            out,
        );
    }
    if let Some(p) = spec.get("preemptionPolicy").and_then(Value::as_str) {
        preemption_policy(p, &path.child("preemptionPolicy"), out);
    }
}

fn preemption_policy(p: &str, path: &Path, out: &mut Vec<Cause>) {
    match p {
        "PreemptLowerPriority" | "Never" => {}
        "" => out.push(required(path, "")),
        other => out.push(not_supported(
            path,
            other,
            &["PreemptLowerPriority", "Never"],
        )),
    }
}

/// `v[key]`, when it is a non-empty string, checked by `check`.
fn name_if_set(
    v: &Value,
    key: &str,
    check: fn(&str) -> Vec<String>,
    path: &Path,
    out: &mut Vec<Cause>,
) {
    let value = str_of(v, key);
    if !value.is_empty() {
        each(&path.child(key), value, check(value), out);
    }
}

const IP_MSG: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

fn ip_ok(s: &str) -> bool {
    parse_ip(s).is_some()
}

/// An IP address as upstream's legacy fields take it: IPv4 octets may carry leading zeros.
fn parse_ip(s: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for octet in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = u8::try_from(p.parse::<u32>().ok()?).ok()?;
    }
    parts
        .next()
        .is_none()
        .then_some(std::net::IpAddr::from(octets))
}

/// A CIDR as upstream's legacy fields take it (leading zeros allowed): its network address,
/// bits beyond the prefix cleared, and the prefix length.
fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u32)> {
    let (ip, len) = s.split_once('/')?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len: u32 = len.parse().ok()?;
    Some(match parse_ip(ip)? {
        std::net::IpAddr::V4(a) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            (std::net::Ipv4Addr::from(u32::from(a) & mask).into(), len)
        }
        std::net::IpAddr::V6(a) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            (std::net::Ipv6Addr::from(u128::from(a) & mask).into(), len)
        }
        _ => return None,
    })
}

/// Whether `inner` lies inside the network `outer`.
fn cidr_contains(outer: (std::net::IpAddr, u32), ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr::{V4, V6};
    match (outer.0, ip) {
        (V4(net), V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - outer.1).unwrap_or(0);
            u32::from(a) & mask == u32::from(net)
        }
        (V6(net), V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - outer.1).unwrap_or(0);
            u128::from(a) & mask == u128::from(net)
        }
        _ => false,
    }
}

const CIDR_MSG: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

const MAX_DNS_NAMESERVERS: usize = 3;
const MAX_DNS_SEARCH_PATHS: usize = 32;
const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;

/// `dnsConfig`, and the nameservers that `dnsPolicy: None` needs.
fn dns_config(spec: &Value, path: &Path, out: &mut Vec<Cause>) {
    let dp = path.child("dnsConfig");
    let config = set(spec, "dnsConfig");
    let nameservers: Vec<&str> = config
        .and_then(|c| c.get("nameservers"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|n| n.as_str().unwrap_or_default())
        .collect();
    if str_of(spec, "dnsPolicy") == "None" {
        if config.is_none() {
            out.push(required(
                &dp,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
            return;
        }
        if nameservers.is_empty() {
            out.push(required(
                &dp.child("nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
            return;
        }
    }
    let Some(config) = config else { return };
    let np = dp.child("nameservers");
    if nameservers.len() > MAX_DNS_NAMESERVERS {
        out.push(invalid(
            &np,
            &go_string_slice(config.get("nameservers")),
            &format!("must not have more than {MAX_DNS_NAMESERVERS} nameservers"),
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        if !ip_ok(ns) {
            out.push(invalid(&np.index(i), &go_str(ns), IP_MSG));
        }
    }
    let sp = dp.child("searches");
    let searches: Vec<&str> = config
        .get("searches")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap_or_default())
        .collect();
    if searches.len() > MAX_DNS_SEARCH_PATHS {
        out.push(invalid(
            &sp,
            &go_string_slice(config.get("searches")),
            &format!("must not have more than {MAX_DNS_SEARCH_PATHS} search paths"),
        ));
    }
    if searches.join(" ").len() > MAX_DNS_SEARCH_LIST_CHARS {
        out.push(invalid(
            &sp,
            &go_string_slice(config.get("searches")),
            &format!(
                "must not have more than {MAX_DNS_SEARCH_LIST_CHARS} characters (including spaces) in the search list"
            ),
        ));
    }
    for (i, search) in searches.iter().enumerate() {
        // A trailing dot is fine.
        let search = search.strip_suffix('.').unwrap_or(search);
        each(&sp.index(i), search, dns1123_subdomain(search), out);
    }
    for (i, option) in items(config, "options") {
        if str_of(option, "name").is_empty() {
            out.push(required(&dp.child("options").index(i), "must not be empty"));
        }
    }
}

/// A pod template: its labels and its pod spec.
fn pod_template(template: Option<&Value>, path: &Path, out: &mut Vec<Cause>) {
    let Some(template) = template.filter(|t| t.is_object()) else {
        out.push(required(path, ""));
        return;
    };
    let meta = template.get("metadata").cloned().unwrap_or(Value::Null);
    labels(
        meta.get("labels"),
        &path.child("metadata").child("labels"),
        out,
    );
    annotations(
        meta.get("annotations"),
        &path.child("metadata").child("annotations"),
        out,
    );
    let spec = template.get("spec").cloned().unwrap_or(Value::Null);
    pod_spec(&spec, &path.child("spec"), out);
}

// ---- label selectors --------------------------------------------------------------------

fn label_selector(sel: &Value, path: &Path, out: &mut Vec<Cause>) {
    labels(sel.get("matchLabels"), &path.child("matchLabels"), out);
    for (i, e) in items(sel, "matchExpressions") {
        let ep = path.child("matchExpressions").index(i);
        selector_requirement(e, false, true, &ep, out);
    }
}

/// One `{key, operator, values}` requirement: the values its operator needs (`Gt` and `Lt`
/// only where `ordered`, as node selectors have them), a qualified key and, when
/// `check_values`, label values.
fn selector_requirement(
    rq: &Value,
    ordered: bool,
    check_values: bool,
    path: &Path,
    out: &mut Vec<Cause>,
) {
    let values = rq.get("values").and_then(Value::as_array);
    let n = values.map_or(0, Vec::len);
    let vp = path.child("values");
    match str_of(rq, "operator") {
        "In" | "NotIn" => {
            if n == 0 {
                out.push(required(
                    &vp,
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ));
            }
        }
        "Exists" | "DoesNotExist" => {
            if n > 0 {
                out.push(forbidden(
                    &vp,
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ));
            }
        }
        "Gt" | "Lt" if ordered => {
            if n != 1 {
                out.push(required(
                    &vp,
                    "must be specified single value when `operator` is 'Lt' or 'Gt'",
                ));
            }
        }
        other => out.push(invalid(
            &path.child("operator"),
            &go_str(other),
            "not a valid selector operator",
        )),
    }
    let key = str_of(rq, "key");
    each(&path.child("key"), key, qualified_name(key), out);
    if check_values {
        for (i, v) in values.into_iter().flatten().enumerate() {
            let v = v.as_str().unwrap_or_default();
            each(&vp.index(i), v, label_value(v), out);
        }
    }
}

fn selector_is_empty(sel: &Value) -> bool {
    sel.get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
        && sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
}

/// A controller's selector and template, as ReplicaSets, Deployments, StatefulSets and
/// DaemonSets have them. `what` names the kind in upstream's "empty selector" message.
fn selector_and_template(spec: &Value, what: &str, path: &Path, out: &mut Vec<Cause>) {
    let sel = spec.get("selector").filter(|s| s.is_object());
    let mut selector_broken = false;
    match sel {
        None => out.push(required(&path.child("selector"), "")),
        Some(sel) => {
            let before = out.len();
            label_selector(sel, &path.child("selector"), out);
            selector_broken = out.len() > before;
            if selector_is_empty(sel) {
                out.push(invalid(
                    &path.child("selector"),
                    &go_selector(sel),
                    &format!("empty selector is invalid for {what}"),
                ));
            }
        }
    }
    if selector_broken && what != "daemonset" {
        // Upstream cannot turn it into a selector, says so, and checks no further.
        out.push(invalid(
            &path.child("selector"),
            &go_selector(sel.unwrap_or(&Value::Null)),
            "invalid label selector",
        ));
        return;
    }
    let template = spec.get("template").filter(|t| t.is_object());
    let Some(template) = template else {
        out.push(required(&path.child("template"), ""));
        return;
    };
    let tpath = path.child("template");
    let template_labels = template
        .pointer("/metadata/labels")
        .and_then(Value::as_object);
    // A missing selector selects nothing, so it matches no template either (as upstream
    // reports it); an empty one selects everything.
    let matches = match sel {
        None => false,
        Some(sel) => {
            selector_broken
                || selector_is_empty(sel)
                || crate::selector::label_selector_matches(
                    sel,
                    &crate::selector::string_map(template.pointer("/metadata/labels")),
                )
        }
    };
    if !matches {
        out.push(invalid(
            &tpath.child("metadata").child("labels"),
            &go_string_map(template_labels),
            "`selector` does not match template `labels`",
        ));
    }
    pod_template(Some(template), &tpath, out);
    let spec_path = tpath.child("spec");
    let restart = template
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !restart.is_empty() && restart != "Always" {
        out.push(not_supported(
            &spec_path.child("restartPolicy"),
            restart,
            &["Always"],
        ));
    }
    if let Some(n) = template.pointer("/spec/activeDeadlineSeconds")
        && !n.is_null()
    {
        out.push(invalid(
            &spec_path.child("activeDeadlineSeconds"),
            &n.to_string(),
            &format!("activeDeadlineSeconds in {} is not Supported", {
                match what {
                    "deployment" => "ReplicaSet",
                    "daemonset" => "DaemonSet",
                    "statefulset" => "StatefulSet",
                    _ => "ReplicaSet",
                }
            }),
        ));
    }
}

// ---- workloads --------------------------------------------------------------------------

/// The number an int-or-percent stands for, when it is a plain number or a `N%` string.
fn int_or_percent(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.strip_suffix('%').and_then(|n| n.parse().ok()),
        _ => None,
    }
}

fn positive_int_or_percent(v: &Value, path: &Path, out: &mut Vec<Cause>) {
    match v {
        Value::String(s) => {
            let ok = s
                .strip_suffix('%')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                out.push(invalid(
                    path,
                    &go_int_or_string(v),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
            }
        }
        Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => {
            out.push(invalid(
                path,
                &n.to_string(),
                "must be greater than or equal to 0",
            ));
        }
        _ => {}
    }
}

fn not_more_than_100_percent(v: &Value, path: &Path, out: &mut Vec<Cause>) {
    if let Value::String(s) = v
        && int_or_percent(v).is_some_and(|n| n > 100)
        && s.ends_with('%')
    {
        out.push(invalid(
            path,
            &go_int_or_string(v),
            "must not be greater than 100%",
        ));
    }
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn storage_class(obj: &Value, out: &mut Vec<Cause>) {
    let provisioner = str_of(obj, "provisioner");
    let pp = Path::root("provisioner");
    if provisioner.is_empty() {
        out.push(required(&pp, ""));
    } else {
        let lower = provisioner.to_lowercase();
        for m in qualified_name(&lower) {
            out.push(invalid(&pp, &go_str(provisioner), &m));
        }
    }
    let params = obj.get("parameters").and_then(Value::as_object);
    let parp = Path::root("parameters");
    if params.is_some_and(|p| p.len() > 512) {
        out.push(too_long(&parp, 512));
    } else {
        let mut size = 0;
        for (k, v) in params.into_iter().flatten() {
            if k.is_empty() {
                out.push(invalid(&parp, "\"\"", "field can not be empty."));
            }
            size += k.len() + v.as_str().map_or(0, str::len);
        }
        if size > 256 * 1024 {
            out.push(too_long(&parp, 256 * 1024));
        }
    }
    one_of(
        obj,
        "reclaimPolicy",
        &Path::root("reclaimPolicy"),
        &["Delete", "Retain"],
        out,
    );
    let bp = Path::root("volumeBindingMode");
    match obj.get("volumeBindingMode").and_then(Value::as_str) {
        None => out.push(required(&bp, "")),
        Some("Immediate" | "WaitForFirstConsumer") => {}
        Some(other) => out.push(not_supported(
            &bp,
            other,
            &["Immediate", "WaitForFirstConsumer"],
        )),
    }
}

/// The highest value a PriorityClass outside the `system-` ones may have.
const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

fn priority_class(obj: &Value, out: &mut Vec<Cause>) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let value = int_of(obj, "value").unwrap_or(0);
    if name.starts_with("system-") {
        let global = obj.get("globalDefault") == Some(&Value::Bool(true));
        let why = match crate::pods::SYSTEM_PRIORITY_CLASSES
            .iter()
            .find(|(n, ..)| *n == name)
        {
            None => Some(format!("{name} is not a known system priority class")),
            Some((n, v, _)) if *v != value => {
                Some(format!("value of {n} PriorityClass must be {v}"))
            }
            Some((n, ..)) if global => {
                Some(format!("globalDefault of {n} PriorityClass must be false"))
            }
            Some(_) => None,
        };
        if let Some(why) = why {
            out.push(forbidden(
                &Path::root("metadata").child("name"),
                &format!("priority class names with 'system-' prefix are reserved for system use only. error: {why}"),
            ));
        }
    } else if value > HIGHEST_USER_PRIORITY {
        out.push(forbidden(
            &Path::root("value"),
            &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
        ));
    }
    if let Some(p) = obj.get("preemptionPolicy").and_then(Value::as_str) {
        preemption_policy(p, &Path::root("preemptionPolicy"), out);
    }
}

/// Roles' rules and aggregation, bindings' roleRef and subjects.
fn rbac(kind: &str, obj: &Value, out: &mut Vec<Cause>) {
    let namespaced = matches!(kind, "Role" | "RoleBinding");
    if matches!(kind, "Role" | "ClusterRole") {
        for (i, rule) in items(obj, "rules") {
            policy_rule(rule, namespaced, &Path::root("rules").index(i), out);
        }
        if let Some(agg) = set(obj, "aggregationRule") {
            let sp = Path::root("aggregationRule").child("clusterRoleSelectors");
            let selectors: Vec<(usize, &Value)> = items(agg, "clusterRoleSelectors").collect();
            if selectors.is_empty() {
                out.push(required(
                    &sp,
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                ));
            }
            for (i, sel) in selectors {
                label_selector(sel, &sp.index(i), out);
            }
        }
        return;
    }
    let rp = Path::root("roleRef");
    let role_ref = &obj["roleRef"];
    let group = str_of(role_ref, "apiGroup");
    if group != RBAC_GROUP {
        out.push(not_supported(&rp.child("apiGroup"), group, &[RBAC_GROUP]));
    }
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    let ref_kind = str_of(role_ref, "kind");
    if !kinds.contains(&ref_kind) {
        out.push(not_supported(&rp.child("kind"), ref_kind, kinds));
    }
    required_str(role_ref, "name", &rp, "", path_segment_name, out);
    for (i, subject) in items(obj, "subjects") {
        let sp = Path::root("subjects").index(i);
        let name = str_of(subject, "name");
        if name.is_empty() {
            out.push(required(&sp.child("name"), ""));
        }
        let group = str_of(subject, "apiGroup");
        match str_of(subject, "kind") {
            "ServiceAccount" => {
                name_if_set(subject, "name", dns1123_subdomain, &sp, out);
                if !group.is_empty() {
                    out.push(not_supported(&sp.child("apiGroup"), group, &[""]));
                }
                if !namespaced && str_of(subject, "namespace").is_empty() {
                    out.push(required(&sp.child("namespace"), ""));
                }
            }
            "User" | "Group" => {
                if group != RBAC_GROUP {
                    out.push(not_supported(&sp.child("apiGroup"), group, &[RBAC_GROUP]));
                }
            }
            other => out.push(not_supported(
                &sp.child("kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

fn policy_rule(rule: &Value, namespaced: bool, path: &Path, out: &mut Vec<Cause>) {
    let len = |key: &str| rule.get(key).and_then(Value::as_array).map_or(0, Vec::len);
    if len("verbs") == 0 {
        out.push(required(
            &path.child("verbs"),
            "verbs must contain at least one value",
        ));
    }
    if len("nonResourceURLs") > 0 {
        let up = path.child("nonResourceURLs");
        let urls = go_string_slice(rule.get("nonResourceURLs"));
        if namespaced {
            out.push(invalid(
                &up,
                &urls,
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if len("apiGroups") > 0 || len("resources") > 0 || len("resourceNames") > 0 {
            out.push(invalid(
                &up,
                &urls,
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if len("apiGroups") == 0 {
        out.push(required(
            &path.child("apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if len("resources") == 0 {
        out.push(required(
            &path.child("resources"),
            "resource rules must supply at least one resource",
        ));
    }
}

fn network_policy(spec: &Value, out: &mut Vec<Cause>) {
    let path = Path::root("spec");
    label_selector(&spec["podSelector"], &path.child("podSelector"), out);
    for (rules, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in items(spec, rules) {
            let rp = path.child(rules).index(i);
            for (j, port) in items(rule, "ports") {
                network_policy_port(port, &rp.child("ports").index(j), out);
            }
            for (j, peer) in items(rule, peers) {
                network_policy_peer(peer, &rp.child(peers).index(j), out);
            }
        }
    }
    let types: Vec<&Value> = items(spec, "policyTypes").map(|(_, t)| t).collect();
    let tp = path.child("policyTypes");
    if types.len() > 2 {
        out.push(invalid(
            &tp,
            &go_string_slice(spec.get("policyTypes")).replacen(
                "[]string",
                "[]networking.PolicyType",
                1,
            ),
            "may not specify more than two policyTypes",
        ));
        return;
    }
    for (i, t) in types.iter().enumerate() {
        let t = t.as_str().unwrap_or_default();
        if !matches!(t, "Ingress" | "Egress") {
            out.push(not_supported(&tp.index(i), t, &["Ingress", "Egress"]));
        }
    }
}

fn network_policy_port(port: &Value, path: &Path, out: &mut Vec<Cause>) {
    one_of(
        port,
        "protocol",
        &path.child("protocol"),
        &["TCP", "UDP", "SCTP"],
        out,
    );
    let ep = path.child("endPort");
    let end = int_of(port, "endPort");
    match set(port, "port") {
        Some(Value::String(name)) => {
            if let Some(end) = end {
                out.push(invalid(
                    &ep,
                    &end.to_string(),
                    "may not be specified when `port` is non-numeric",
                ));
            }
            each(&path.child("port"), name, port_name(name), out);
        }
        Some(p) => {
            let n = p.as_i64().unwrap_or(0);
            port_number(n, &path.child("port"), out);
            if let Some(end) = end {
                if end < n {
                    // Upstream shows the port, not the end port.
                    out.push(invalid(
                        &ep,
                        &n.to_string(),
                        "must be greater than or equal to `port`",
                    ));
                }
                port_number(end, &ep, out);
            }
        }
        None => {
            if let Some(end) = end {
                out.push(invalid(
                    &ep,
                    &end.to_string(),
                    "may not be specified when `port` is not specified",
                ));
            }
        }
    }
}

fn network_policy_peer(peer: &Value, path: &Path, out: &mut Vec<Cause>) {
    let mut peers = 0;
    for key in ["podSelector", "namespaceSelector"] {
        if let Some(sel) = set(peer, key) {
            peers += 1;
            label_selector(sel, &path.child(key), out);
        }
    }
    let block = set(peer, "ipBlock");
    if let Some(b) = block {
        peers += 1;
        ip_block(b, &path.child("ipBlock"), out);
    }
    if peers == 0 {
        out.push(required(path, "must specify a peer"));
    } else if peers > 1 && block.is_some() {
        out.push(forbidden(
            path,
            "may not specify both ipBlock and another peer",
        ));
    }
}

fn ip_block(b: &Value, path: &Path, out: &mut Vec<Cause>) {
    let cidr = str_of(b, "cidr");
    let cp = path.child("cidr");
    if cidr.is_empty() {
        out.push(required(&cp, ""));
        return;
    }
    let Some(net) = parse_cidr(cidr) else {
        out.push(invalid(&cp, &go_str(cidr), CIDR_MSG));
        return;
    };
    for (i, e) in b
        .get("except")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let e = e.as_str().unwrap_or_default();
        let xp = path.child("except").index(i);
        match parse_cidr(e) {
            None => out.push(invalid(&xp, &go_str(e), CIDR_MSG)),
            Some(except) => {
                if !cidr_contains(net, except.0) || net.1 >= except.1 {
                    out.push(invalid(
                        &xp,
                        &go_str(e),
                        "must be a strict subset of `cidr`",
                    ));
                }
            }
        }
    }
}

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn persistent_volume_claim_spec(spec: &Value, path: &Path, out: &mut Vec<Cause>) {
    let modes: Vec<&str> = spec
        .get("accessModes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| m.as_str().unwrap_or_default())
        .collect();
    let mp = path.child("accessModes");
    if modes.is_empty() {
        out.push(required(&mp, "at least 1 access mode is required"));
    }
    if let Some(sel) = set(spec, "selector") {
        label_selector(sel, &path.child("selector"), out);
    }
    for mode in &modes {
        if !ACCESS_MODES.contains(mode) {
            out.push(not_supported(&mp, mode, ACCESS_MODES));
        }
    }
    if modes.contains(&"ReadWriteOncePod")
        && modes
            .iter()
            .any(|m| *m != "ReadWriteOncePod" && ACCESS_MODES.contains(m))
    {
        out.push(forbidden(
            &mp,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    let sp = path.child("resources").key("storage");
    match spec
        .pointer("/resources/requests/storage")
        .and_then(Value::as_str)
    {
        None => out.push(required(&sp, "")),
        Some(q) => {
            if quantity_value(q).is_some_and(|n| n <= 0.0) {
                out.push(invalid(&sp, &go_str(q), "must be greater than zero"));
            }
        }
    }
    name_if_set(spec, "storageClassName", dns1123_subdomain, path, out);
    one_of(
        spec,
        "volumeMode",
        &path.child("volumeMode"),
        &["Block", "Filesystem"],
        out,
    );
}

fn pod_disruption_budget(spec: &Value, out: &mut Vec<Cause>) {
    let path = Path::root("spec");
    let min = set(spec, "minAvailable");
    let max = set(spec, "maxUnavailable");
    if min.is_some() && max.is_some() {
        // Go's `%#v` of the spec: its pointers' addresses differ from run to run.
        let field = |key: &str, ty: &str| go_pointer(ty, has(spec, key));
        out.push(invalid(
            &path,
            &format!(
                "policy.PodDisruptionBudgetSpec{{MinAvailable:{}, Selector:{}, MaxUnavailable:{}, UnhealthyPodEvictionPolicy:{}}}",
                field("minAvailable", "intstr.IntOrString"),
                field("selector", "v1.LabelSelector"),
                field("maxUnavailable", "intstr.IntOrString"),
                field("unhealthyPodEvictionPolicy", "policy.UnhealthyPodEvictionPolicyType"),
            ),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for (key, v) in [("minAvailable", min), ("maxUnavailable", max)] {
        if let Some(v) = v {
            positive_int_or_percent(v, &path.child(key), out);
            not_more_than_100_percent(v, &path.child(key), out);
        }
    }
    if let Some(sel) = set(spec, "selector") {
        label_selector(sel, &path.child("selector"), out);
    }
    one_of(
        spec,
        "unhealthyPodEvictionPolicy",
        &path.child("unhealthyPodEvictionPolicy"),
        &["AlwaysAllow", "IfHealthyBudget"],
        out,
    );
}

fn deployment(spec: &Value, out: &mut Vec<Cause>) {
    let path = Path::root("spec");
    non_negative(&spec["replicas"], &path.child("replicas"), out);
    selector_and_template(spec, "deployment", &path, out);
    let strategy = &spec["strategy"];
    let spath = path.child("strategy");
    match str_of(strategy, "type") {
        "Recreate" => {
            if strategy.get("rollingUpdate").is_some_and(|r| !r.is_null()) {
                out.push(forbidden(
                    &spath.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            let rpath = spath.child("rollingUpdate");
            let ru = &strategy["rollingUpdate"];
            let unavailable = ru.get("maxUnavailable").cloned().unwrap_or(Value::Null);
            let surge = ru.get("maxSurge").cloned().unwrap_or(Value::Null);
            positive_int_or_percent(&unavailable, &rpath.child("maxUnavailable"), out);
            positive_int_or_percent(&surge, &rpath.child("maxSurge"), out);
            if int_or_percent(&unavailable) == Some(0) && int_or_percent(&surge) == Some(0) {
                out.push(invalid(
                    &rpath.child("maxUnavailable"),
                    &go_int_or_string(&unavailable),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
            not_more_than_100_percent(&unavailable, &rpath.child("maxUnavailable"), out);
        }
        other => out.push(not_supported(&spath, other, &["Recreate", "RollingUpdate"])),
    }
    non_negative(
        &spec["minReadySeconds"],
        &path.child("minReadySeconds"),
        out,
    );
    non_negative(
        &spec["revisionHistoryLimit"],
        &path.child("revisionHistoryLimit"),
        out,
    );
    if let Some(deadline) = int_of(spec, "progressDeadlineSeconds") {
        non_negative(
            &spec["progressDeadlineSeconds"],
            &path.child("progressDeadlineSeconds"),
            out,
        );
        if deadline <= spec["minReadySeconds"].as_i64().unwrap_or(0) {
            out.push(invalid(
                &path.child("progressDeadlineSeconds"),
                &deadline.to_string(),
                "must be greater than minReadySeconds",
            ));
        }
    }
}

fn replica_set(spec: &Value, out: &mut Vec<Cause>) {
    let path = Path::root("spec");
    non_negative(&spec["replicas"], &path.child("replicas"), out);
    non_negative(
        &spec["minReadySeconds"],
        &path.child("minReadySeconds"),
        out,
    );
    // Upstream's message names Deployments for ReplicaSets too.
    selector_and_template(spec, "deployment", &path, out);
}

fn stateful_set(spec: &Value, out: &mut Vec<Cause>) {
    let path = Path::root("spec");
    one_of(
        spec,
        "podManagementPolicy",
        &path.child("podManagementPolicy"),
        &["OrderedReady", "Parallel"],
        out,
    );
    one_of(
        &spec["updateStrategy"],
        "type",
        &path.child("updateStrategy"),
        &["OnDelete", "RollingUpdate"],
        out,
    );
    non_negative(&spec["replicas"], &path.child("replicas"), out);
    non_negative(
        &spec["minReadySeconds"],
        &path.child("minReadySeconds"),
        out,
    );
    selector_and_template(spec, "statefulset", &path, out);
}

fn daemon_set(spec: &Value, out: &mut Vec<Cause>) {
    let path = Path::root("spec");
    selector_and_template(spec, "daemonset", &path, out);
    non_negative(
        &spec["minReadySeconds"],
        &path.child("minReadySeconds"),
        out,
    );
    one_of(
        &spec["updateStrategy"],
        "type",
        &path.child("updateStrategy").child("type"),
        &["OnDelete", "RollingUpdate"],
        out,
    );
}

fn job(spec: &Value, path: &Path, out: &mut Vec<Cause>) {
    for field in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        non_negative(&spec[field], &path.child(field), out);
    }
    if let Some(mode) = spec.get("completionMode").and_then(Value::as_str) {
        match mode {
            "NonIndexed" => {}
            "Indexed" => {
                if spec.get("completions").is_none_or(Value::is_null) {
                    out.push(required(
                        &path.child("completions"),
                        "when completion mode is Indexed",
                    ));
                }
            }
            other => out.push(not_supported(
                &path.child("completionMode"),
                other,
                &["NonIndexed", "Indexed"],
            )),
        }
    }
    let tpath = path.child("template");
    pod_template(spec.get("template"), &tpath, out);
    let restart = spec
        .pointer("/template/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !restart.is_empty() && restart != "OnFailure" && restart != "Never" {
        out.push(not_supported(
            &tpath.child("spec").child("restartPolicy"),
            restart,
            &["OnFailure", "Never"],
        ));
    }
}

fn cron_job(obj: &Value, out: &mut Vec<Cause>) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    // The Jobs it creates take its name plus an 11-character suffix.
    if name.len() > 52 {
        out.push(invalid(
            &Path::root("metadata.name"),
            &go_str(name),
            "must be no more than 52 characters",
        ));
    }
    let spec = &obj["spec"];
    let path = Path::root("spec");
    let schedule = str_of(spec, "schedule");
    let sp = path.child("schedule");
    if schedule.is_empty() {
        out.push(required(&sp, ""));
    } else if schedule.contains("TZ") {
        out.push(invalid(
            &sp,
            &go_str(schedule),
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ));
    } else if !schedule.trim_start().starts_with("@every ") {
        // robfig/cron's `@every <duration>` parses upstream; Dao's CronJob controller does
        // not run it (it reports UnparseableSchedule), but the API takes what upstream takes.
        if let Err(e) = dao_cron::check(schedule) {
            out.push(invalid(&sp, &go_str(schedule), &e));
        }
    }
    // Upstream's order: schedule, startingDeadlineSeconds, timeZone, concurrencyPolicy, the
    // job template, the history limits.
    non_negative(
        &spec["startingDeadlineSeconds"],
        &path.child("startingDeadlineSeconds"),
        out,
    );
    if let Some(zone) = spec.get("timeZone").and_then(Value::as_str)
        && let Err(e) = dao_cron::check_time_zone(zone)
    {
        out.push(invalid(&path.child("timeZone"), &go_str(zone), &e));
    }
    one_of(
        spec,
        "concurrencyPolicy",
        &path.child("concurrencyPolicy"),
        &["Allow", "Forbid", "Replace"],
        out,
    );
    let jpath = path.child("jobTemplate");
    let jmeta = spec
        .pointer("/jobTemplate/metadata")
        .cloned()
        .unwrap_or(Value::Null);
    labels(
        jmeta.get("labels"),
        &jpath.child("metadata").child("labels"),
        out,
    );
    job(
        spec.pointer("/jobTemplate/spec").unwrap_or(&Value::Null),
        &jpath.child("spec"),
        out,
    );
    for f in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        non_negative(&spec[f], &path.child(f), out);
    }
}

// ---- services, config maps, secrets -----------------------------------------------------

fn service(spec: &Value, out: &mut Vec<Cause>) {
    let path = Path::root("spec");
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let headless = str_of(spec, "clusterIP") == "None";
    let ports = spec.get("ports").and_then(Value::as_array);
    if ports.is_none_or(|p| p.is_empty()) && !headless && ty != "ExternalName" {
        out.push(required(&path.child("ports"), ""));
    }
    let ok_types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if !ok_types.contains(&ty) {
        out.push(not_supported(&path.child("type"), ty, &ok_types));
    }
    let ports = ports.map(Vec::as_slice).unwrap_or_default();
    let require_name = ports.len() > 1;
    let mut names: Vec<&str> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = path.child("ports").index(i);
        let name = str_of(p, "name");
        if require_name && name.is_empty() {
            out.push(required(&pp.child("name"), ""));
        } else if !name.is_empty() {
            each(&pp.child("name"), name, dns1123_label(name), out);
            if names.contains(&name) {
                out.push(duplicate(&pp.child("name"), name));
            } else {
                names.push(name);
            }
        }
        port_number(int_of(p, "port").unwrap_or(0), &pp.child("port"), out);
        protocol(p, &pp, out);
        match p.get("targetPort") {
            Some(Value::Number(n)) => {
                if let Some(n) = n.as_i64() {
                    port_number(n, &pp.child("targetPort"), out);
                }
            }
            Some(Value::String(s)) => {
                each(&pp.child("targetPort"), s, port_name(s), out);
            }
            _ => {}
        }
    }
    labels(spec.get("selector"), &path.child("selector"), out);
    one_of(
        spec,
        "sessionAffinity",
        &path.child("sessionAffinity"),
        &["ClientIP", "None"],
        out,
    );
}

// ---- ingresses, autoscalers ------------------------------------------------------------

const WILDCARD_DNS1123_SUBDOMAIN_FMT: &str =
    "\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

/// Upstream's `IsWildcardDNS1123Subdomain`: `*.` and a DNS-1123 subdomain.
fn wildcard_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    let ok = s
        .strip_prefix("*.")
        .is_some_and(|rest| !rest.is_empty() && rest.split('.').all(label_chars_ok));
    if !ok {
        errs.push(regex_error(
            "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character",
            WILDCARD_DNS1123_SUBDOMAIN_FMT,
            &["*.example.com"],
        ));
    }
    errs
}

/// An Ingress host (a rule's or a TLS entry's): a DNS name, perhaps a wildcard one.
fn ingress_host(host: &str, path: &Path, out: &mut Vec<Cause>) {
    if host.contains('*') {
        each(path, host, wildcard_dns1123_subdomain(host), out);
    } else {
        each(path, host, dns1123_subdomain(host), out);
    }
}

/// An Ingress backend: a Service (name, and a port by name or number) or a resource.
fn ingress_backend(b: &Value, path: &Path, out: &mut Vec<Cause>) {
    let service = b.get("service").filter(|v| !v.is_null());
    let resource = b.get("resource").filter(|v| !v.is_null());
    match (service, resource) {
        (Some(_), Some(_)) => out.push(invalid(
            path,
            "\"\"",
            "cannot set both resource and service backends",
        )),
        (Some(svc), None) => {
            let sp = path.child("service");
            required_str(svc, "name", &sp, "", dns1035_label, out);
            let port = &svc["port"];
            let port_name_ = str_of(port, "name");
            let number = int_of(port, "number").unwrap_or(0);
            match (port_name_.is_empty(), number == 0) {
                (false, false) => out.push(invalid(
                    path,
                    "\"\"",
                    "cannot set both port name & port number",
                )),
                (false, true) => each(
                    &sp.child("port").child("name"),
                    port_name_,
                    port_name(port_name_),
                    out,
                ),
                (true, false) => port_number(number, &sp.child("port").child("number"), out),
                (true, true) => out.push(required(path, "port name or number is required")),
            }
        }
        (None, Some(r)) => {
            for f in ["kind", "name"] {
                if str_of(r, f).is_empty() {
                    out.push(required(&path.child("resource").child(f), ""));
                }
            }
        }
        (None, None) => out.push(invalid(
            path,
            "\"\"",
            "resource or service backend is required",
        )),
    }
}

/// An Ingress spec, as upstream's `ValidateIngressSpec` (networking.k8s.io/v1).
fn ingress(spec: &Value, out: &mut Vec<Cause>) {
    let path = Path::root("spec");
    let rules = spec.get("rules").and_then(Value::as_array);
    let default_backend = spec.get("defaultBackend").filter(|v| !v.is_null());
    if rules.is_none_or(|r| r.is_empty()) && default_backend.is_none() {
        let rendered = if rules.is_some() {
            "[]networking.IngressRule{}"
        } else {
            "[]networking.IngressRule(nil)"
        };
        out.push(invalid(
            &path,
            rendered,
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = default_backend {
        ingress_backend(b, &path.child("defaultBackend"), out);
    }
    for (i, rule) in items(spec, "rules") {
        let rp = path.child("rules").index(i);
        let host = str_of(rule, "host");
        if !host.is_empty() {
            if host.parse::<std::net::IpAddr>().is_ok() {
                out.push(invalid(
                    &rp.child("host"),
                    &go_str(host),
                    "must be a DNS name, not an IP address",
                ));
            }
            ingress_host(host, &rp.child("host"), out);
        }
        let Some(http) = rule.get("http").filter(|v| !v.is_null()) else {
            continue;
        };
        let hp = rp.child("http");
        if http
            .get("paths")
            .and_then(Value::as_array)
            .is_none_or(|p| p.is_empty())
        {
            out.push(required(&hp.child("paths"), ""));
        }
        for (j, p) in items(http, "paths") {
            let pp = hp.child("paths").index(j);
            let value = str_of(p, "path");
            let absolute = |out: &mut Vec<Cause>| {
                if !value.starts_with('/') {
                    out.push(invalid(
                        &pp.child("path"),
                        &go_str(value),
                        "must be an absolute path",
                    ));
                }
            };
            match p.get("pathType").and_then(Value::as_str) {
                None => {
                    out.push(required(
                        &pp.child("pathType"),
                        "pathType must be specified",
                    ));
                    continue;
                }
                Some("Exact" | "Prefix") => {
                    absolute(out);
                    if !value.is_empty() {
                        for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                            if value.contains(seq) {
                                out.push(invalid(
                                    &pp.child("path"),
                                    &go_str(value),
                                    &format!("must not contain '{seq}'"),
                                ));
                            }
                        }
                        for suffix in ["/..", "/."] {
                            if value.ends_with(suffix) {
                                out.push(invalid(
                                    &pp.child("path"),
                                    &go_str(value),
                                    &format!("cannot end with '{suffix}'"),
                                ));
                            }
                        }
                    }
                }
                Some("ImplementationSpecific") => {
                    if !value.is_empty() {
                        absolute(out);
                    }
                }
                Some(other) => out.push(not_supported(
                    &pp.child("pathType"),
                    other,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            ingress_backend(&p["backend"], &pp.child("backend"), out);
        }
    }
    for (i, tls) in items(spec, "tls") {
        for (j, host) in items(tls, "hosts") {
            let host = host.as_str().unwrap_or("");
            ingress_host(
                host,
                &path.child("tls").index(i).child("hosts").index(j),
                out,
            );
        }
    }
}

/// A HorizontalPodAutoscaler spec, as upstream's `validateHorizontalPodAutoscalerSpec` checks
/// it after defaulting; `v2` adds the metrics and behavior that autoscaling/v1 does not have.
fn horizontal_pod_autoscaler(spec: &Value, v2: bool, out: &mut Vec<Cause>) {
    let path = Path::root("spec");
    let min = int_of(spec, "minReplicas");
    let max = int_of(spec, "maxReplicas").unwrap_or(0);
    if let Some(min) = min
        && min < 1
    {
        out.push(invalid(
            &path.child("minReplicas"),
            &min.to_string(),
            "must be greater than or equal to 1",
        ));
    }
    if max < 1 {
        out.push(invalid(
            &path.child("maxReplicas"),
            &max.to_string(),
            "must be greater than 0",
        ));
    }
    if let Some(min) = min
        && max < min
    {
        out.push(invalid(
            &path.child("maxReplicas"),
            &max.to_string(),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    cross_version_ref(&spec["scaleTargetRef"], &path.child("scaleTargetRef"), out);
    if !v2 {
        return;
    }
    let mp = path.child("metrics");
    let mut scales_to_zero = false;
    for (i, m) in items(spec, "metrics") {
        metric_spec(m, &mp.index(i), out);
        scales_to_zero |= matches!(str_of(m, "type"), "Object" | "External");
    }
    if min == Some(0) && !scales_to_zero {
        out.push(forbidden(
            &mp,
            "must specify at least one Object or External metric to support scaling to zero replicas",
        ));
    }
    let bp = path.child("behavior");
    for rules in ["scaleUp", "scaleDown"] {
        if let Some(r) = spec
            .pointer(&format!("/behavior/{rules}"))
            .filter(|r| r.is_object())
        {
            scaling_rules(r, &bp.child(rules), out);
        }
    }
}

/// `kind` and `name` of a reference to an object of any version (a scale target, a metric's
/// described object).
fn cross_version_ref(r: &Value, path: &Path, out: &mut Vec<Cause>) {
    for f in ["kind", "name"] {
        required_str(r, f, path, "", path_segment_name, out);
    }
}

const METRIC_SOURCE_TYPES: &[&str] = &[
    "ContainerResource",
    "External",
    "Object",
    "Pods",
    "Resource",
];

type SourceCheck = fn(&Value, &Path, &mut Vec<Cause>);

/// One entry of an autoscaler's `metrics`: a known type, exactly its source, and the source's
/// own checks (only the first source given is checked, as upstream does).
fn metric_spec(m: &Value, path: &Path, out: &mut Vec<Cause>) {
    let ty = str_of(m, "type");
    let tp = path.child("type");
    if ty.is_empty() {
        out.push(required(&tp, "must specify a metric source type"));
    }
    if !METRIC_SOURCE_TYPES.contains(&ty) {
        out.push(not_supported(&tp, ty, METRIC_SOURCE_TYPES));
    }
    let sources: [(&str, &str, SourceCheck); 5] = [
        ("object", "Object", object_metric),
        ("external", "External", external_metric),
        ("pods", "Pods", pods_metric),
        ("resource", "Resource", resource_metric),
        (
            "containerResource",
            "ContainerResource",
            container_resource_metric,
        ),
    ];
    let mut present = Vec::new();
    for (field, _, check) in &sources {
        if let Some(src) = m.get(*field).filter(|v| !v.is_null()) {
            present.push(*field);
            if present.len() == 1 {
                check(src, &path.child(field), out);
            }
        }
    }
    let expected = match sources.iter().find(|(_, t, _)| *t == ty) {
        Some((field, _, _)) => {
            if !present.contains(field) {
                out.push(required(
                    &path.child(field),
                    "must populate information for the given metric source",
                ));
            }
            *field
        }
        None => {
            out.push(not_supported(&tp, ty, METRIC_SOURCE_TYPES));
            ""
        }
    };
    if present.len() != 1 {
        for field in present.iter().filter(|f| **f != expected) {
            out.push(forbidden(
                &path.child(field),
                "must populate the given metric source only",
            ));
        }
    }
}

fn metric_identifier(id: &Value, path: &Path, out: &mut Vec<Cause>) {
    required_str(
        id,
        "name",
        path,
        "must specify a metric name",
        path_segment_name,
        out,
    );
}

/// A metric's target. Quantities are shown as written (upstream prints Go's struct of the
/// parsed quantity).
fn metric_target(t: &Value, path: &Path, out: &mut Vec<Cause>) {
    let ty = str_of(t, "type");
    if ty.is_empty() {
        out.push(required(
            &path.child("type"),
            "must specify a metric target type",
        ));
    }
    if !matches!(ty, "Utilization" | "Value" | "AverageValue") {
        out.push(invalid(
            &path.child("type"),
            &go_str(ty),
            "must be either Utilization, Value, or AverageValue",
        ));
    }
    for f in ["value", "averageValue"] {
        if let Some(q) = t.get(f).and_then(Value::as_str)
            && quantity_value(q).is_some_and(|v| v <= 0.0)
        {
            out.push(invalid(&path.child(f), &go_str(q), "must be positive"));
        }
    }
    if let Some(u) = int_of(t, "averageUtilization")
        && u < 1
    {
        out.push(invalid(
            &path.child("averageUtilization"),
            &u.to_string(),
            "must be greater than 0",
        ));
    }
}

fn has(v: &Value, key: &str) -> bool {
    set(v, key).is_some()
}

fn object_metric(src: &Value, path: &Path, out: &mut Vec<Cause>) {
    cross_version_ref(&src["describedObject"], &path.child("describedObject"), out);
    metric_identifier(&src["metric"], &path.child("metric"), out);
    let target = &src["target"];
    let tp = path.child("target");
    metric_target(target, &tp, out);
    if !has(target, "value") && !has(target, "averageValue") {
        out.push(required(
            &tp.child("averageValue"),
            "must set either a target value or averageValue",
        ));
    }
}

fn external_metric(src: &Value, path: &Path, out: &mut Vec<Cause>) {
    metric_identifier(&src["metric"], &path.child("metric"), out);
    let target = &src["target"];
    let tp = path.child("target");
    metric_target(target, &tp, out);
    exactly_one_target(
        target,
        &tp,
        ("value", "averageValue"),
        "must set either a target value for metric or a per-pod target",
        (
            "value",
            "may not set both a target value for metric and a per-pod target",
        ),
        out,
    );
}

/// Of two targets one must be set (else `Required` at the second, with `neither`) and not
/// both (else `Forbidden` at `both.0`, with `both.1`).
fn exactly_one_target(
    target: &Value,
    tp: &Path,
    (a, b): (&str, &str),
    neither: &str,
    both: (&str, &str),
    out: &mut Vec<Cause>,
) {
    match (has(target, a), has(target, b)) {
        (false, false) => out.push(required(&tp.child(b), neither)),
        (true, true) => out.push(forbidden(&tp.child(both.0), both.1)),
        _ => {}
    }
}

fn pods_metric(src: &Value, path: &Path, out: &mut Vec<Cause>) {
    metric_identifier(&src["metric"], &path.child("metric"), out);
    let target = &src["target"];
    let tp = path.child("target");
    metric_target(target, &tp, out);
    if !has(target, "averageValue") {
        out.push(required(
            &tp.child("averageValue"),
            "must specify a positive target averageValue",
        ));
    }
}

/// What Resource and ContainerResource sources share: a raw value or a utilization target.
fn utilization_or_value(target: &Value, tp: &Path, out: &mut Vec<Cause>) {
    metric_target(target, tp, out);
    exactly_one_target(
        target,
        tp,
        ("averageValue", "averageUtilization"),
        "must set either a target raw value or a target utilization",
        (
            "averageValue",
            "may not set both a target raw value and a target utilization",
        ),
        out,
    );
}

fn resource_name(src: &Value, path: &Path, out: &mut Vec<Cause>) {
    if str_of(src, "name").is_empty() {
        out.push(required(
            &path.child("name"),
            "must specify a resource name",
        ));
    }
}

fn resource_metric(src: &Value, path: &Path, out: &mut Vec<Cause>) {
    resource_name(src, path, out);
    utilization_or_value(&src["target"], &path.child("target"), out);
}

fn container_resource_metric(src: &Value, path: &Path, out: &mut Vec<Cause>) {
    resource_name(src, path, out);
    required_str(
        src,
        "container",
        path,
        "must specify a container",
        dns1123_label,
        out,
    );
    utilization_or_value(&src["target"], &path.child("target"), out);
}

/// `behavior.scaleUp` / `behavior.scaleDown`, after defaulting filled in what was left out.
fn scaling_rules(rules: &Value, path: &Path, out: &mut Vec<Cause>) {
    if let Some(w) = int_of(rules, "stabilizationWindowSeconds") {
        let wp = path.child("stabilizationWindowSeconds");
        if w < 0 {
            out.push(invalid(
                &wp,
                &w.to_string(),
                "must be greater than or equal to zero",
            ));
        }
        if w > 3600 {
            out.push(invalid(
                &wp,
                &w.to_string(),
                "must be less than or equal to 3600",
            ));
        }
    }
    one_of(
        rules,
        "selectPolicy",
        &path.child("selectPolicy"),
        &["Disabled", "Max", "Min"],
        out,
    );
    let pp = path.child("policies");
    if rules
        .get("policies")
        .and_then(Value::as_array)
        .is_none_or(|p| p.is_empty())
    {
        out.push(required(&pp, "must specify at least one Policy"));
    }
    for (i, policy) in items(rules, "policies") {
        let ip = pp.index(i);
        let ty = str_of(policy, "type");
        if !matches!(ty, "Pods" | "Percent") {
            out.push(not_supported(&ip.child("type"), ty, &["Percent", "Pods"]));
        }
        let value = int_of(policy, "value").unwrap_or(0);
        if value <= 0 {
            out.push(invalid(
                &ip.child("value"),
                &value.to_string(),
                "must be greater than zero",
            ));
        }
        let period = int_of(policy, "periodSeconds").unwrap_or(0);
        let per = ip.child("periodSeconds");
        if period <= 0 {
            out.push(invalid(
                &per,
                &period.to_string(),
                "must be greater than zero",
            ));
        }
        if period > 1800 {
            out.push(invalid(
                &per,
                &period.to_string(),
                "must be less than or equal to 1800",
            ));
        }
    }
}

/// The most a ConfigMap's or Secret's data may hold.
const MAX_DATA_SIZE: usize = 1024 * 1024;

/// `data` and `binaryData` keys, and the total size (values as stored: base64 for Secrets and
/// binaryData, which upstream counts decoded; the estimate errs on the side of accepting).
fn data_maps(obj: &Value, maps: &[&str], out: &mut Vec<Cause>) {
    let mut total = 0;
    for field in maps {
        let Some(m) = obj.get(*field).and_then(Value::as_object) else {
            continue;
        };
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort();
        let base64 = *field == "binaryData" || obj.get("kind") == Some(&Value::from("Secret"));
        for k in keys {
            let kp = Path::root(field).key(k);
            each(&kp, k, config_map_key(k), out);
            for other in maps.iter().filter(|o| *o != field) {
                if obj.get(*other).and_then(|o| o.get(k)).is_some() {
                    out.push(invalid(
                        &kp,
                        &go_str(k),
                        &format!("duplicate of key present in {other}"),
                    ));
                }
            }
            let len = m[k].as_str().map_or(0, str::len);
            total += if base64 { len / 4 * 3 } else { len };
        }
    }
    if total > MAX_DATA_SIZE {
        out.push(cause(
            "FieldValueTooLong",
            &Path::root(""),
            format!("Too long: may not be more than {MAX_DATA_SIZE} bytes"),
        ));
    }
}

fn secret(obj: &Value, out: &mut Vec<Cause>) {
    data_maps(obj, &["data"], out);
    let data = obj.get("data").and_then(Value::as_object);
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    let need = |k: &str, out: &mut Vec<Cause>| {
        if !has(k) {
            out.push(required(&Path::root("data").key(k), ""));
        }
    };
    match str_of(obj, "type") {
        "kubernetes.io/tls" => {
            need("tls.crt", out);
            need("tls.key", out);
        }
        "kubernetes.io/dockerconfigjson" => need(".dockerconfigjson", out),
        "kubernetes.io/dockercfg" => need(".dockercfg", out),
        "kubernetes.io/ssh-auth" => need("ssh-privatekey", out),
        "kubernetes.io/service-account-token"
            if obj
                .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty) =>
        {
            out.push(required(
                &Path::root("metadata.annotations").key("kubernetes.io/service-account.name"),
                "",
            ));
        }
        _ => {}
    }
}

// ---- entry points -----------------------------------------------------------------------

/// Validate an object about to be stored (create, or the new object of an update), after
/// defaulting. `metadata.name` is checked by [`name`] on create.
pub fn validate(res: &Resource, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    if let Some(meta) = obj.get("metadata") {
        metadata(res, meta, &mut out);
    }
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    match (res.group, res.kind) {
        ("", "Pod") => pod_spec(spec, &Path::root("spec"), &mut out),
        ("", "PodTemplate") => pod_template(obj.get("template"), &Path::root("template"), &mut out),
        ("", "ReplicationController") => {
            non_negative(&spec["replicas"], &Path::root("spec.replicas"), &mut out);
            if let Some(t) = spec.get("template").filter(|t| t.is_object()) {
                pod_template(Some(t), &Path::root("spec.template"), &mut out);
            }
        }
        ("apps", "Deployment") => deployment(spec, &mut out),
        ("apps", "ReplicaSet") => replica_set(spec, &mut out),
        ("apps", "StatefulSet") => stateful_set(spec, &mut out),
        ("apps", "DaemonSet") => daemon_set(spec, &mut out),
        ("batch", "Job") => job(spec, &Path::root("spec"), &mut out),
        ("batch", "CronJob") => cron_job(obj, &mut out),
        ("", "Service") => service(spec, &mut out),
        ("", "ConfigMap") => data_maps(obj, &["data", "binaryData"], &mut out),
        ("", "Secret") => secret(obj, &mut out),
        ("networking.k8s.io", "Ingress") => ingress(spec, &mut out),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            horizontal_pod_autoscaler(spec, res.version == "v2", &mut out)
        }
        ("policy", "PodDisruptionBudget") => pod_disruption_budget(spec, &mut out),
        ("networking.k8s.io", "NetworkPolicy") => network_policy(spec, &mut out),
        ("rbac.authorization.k8s.io", kind) => rbac(kind, obj, &mut out),
        ("scheduling.k8s.io", "PriorityClass") => priority_class(obj, &mut out),
        ("storage.k8s.io", "StorageClass") => storage_class(obj, &mut out),
        ("", "PersistentVolumeClaim") => {
            persistent_volume_claim_spec(spec, &Path::root("spec"), &mut out)
        }
        _ => {}
    }
    out
}

fn immutable_when_set(old: &Value, new: &Value, fields: &[&str], out: &mut Vec<Cause>) {
    if old.get("immutable") != Some(&Value::Bool(true)) {
        return;
    }
    if new.get("immutable") != Some(&Value::Bool(true)) {
        out.push(forbidden(
            &Path::root("immutable"),
            "field is immutable when `immutable` is set",
        ));
    }
    for f in fields {
        let empty =
            |v: Option<&Value>| v.is_none_or(|v| v.is_null() || *v == Value::Object(Map::new()));
        let (a, b) = (old.get(*f), new.get(*f));
        if a != b && !(empty(a) && empty(b)) {
            out.push(forbidden(
                &Path::root(f),
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

/// The pod spec fields an update may change: upstream's list, in its words.
const POD_UPDATABLE: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// A pod spec with what an update may change blanked out, to compare old and new.
fn pod_spec_fixed_part(spec: &Value) -> Value {
    let mut s = spec.clone();
    for list in ["containers", "initContainers"] {
        if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                if let Some(c) = c.as_object_mut() {
                    c.remove("image");
                }
            }
        }
    }
    if let Some(m) = s.as_object_mut() {
        m.remove("activeDeadlineSeconds");
        m.remove("tolerations");
        m.remove("terminationGracePeriodSeconds");
        // Set once by binding, through its own subresource.
        if spec.get("nodeName").is_some() {
            m.remove("nodeName");
        }
    }
    s
}

/// The top-level spec fields whose values differ, for the pod update message.
fn changed_fields(old: &Value, new: &Value) -> Vec<String> {
    let empty = Map::new();
    let (a, b) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("spec.{k}"))
        .collect()
}

/// Validate an update against the stored object: the fields upstream keeps immutable.
pub fn validate_update(res: &Resource, old: &Value, new: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let selector_immutable = |out: &mut Vec<Cause>| {
        let (a, b) = (old.pointer("/spec/selector"), new.pointer("/spec/selector"));
        if a != b {
            out.push(invalid(
                &Path::root("spec.selector"),
                &go_selector(b.unwrap_or(&Value::Null)),
                "field is immutable",
            ));
        }
    };
    match (res.group, res.kind) {
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => selector_immutable(&mut out),
        ("apps", "StatefulSet") => {
            let strip = |v: &Value| {
                let mut s = v.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(m) = s.as_object_mut() {
                    for f in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "revisionHistoryLimit",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        m.remove(f);
                    }
                }
                s
            };
            if strip(old) != strip(new) {
                out.push(forbidden(
                    &Path::root("spec"),
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                ));
            }
        }
        ("batch", "Job") => {
            selector_immutable(&mut out);
            let (a, b) = (
                old.pointer("/spec/completions"),
                new.pointer("/spec/completions"),
            );
            let indexed = new.pointer("/spec/completionMode") == Some(&Value::from("Indexed"));
            if a != b && !indexed {
                out.push(invalid(
                    &Path::root("spec.completions"),
                    &b.map_or("null".into(), Value::to_string),
                    "field is immutable",
                ));
            }
        }
        ("", "Pod") => {
            let (a, b) = (&old["spec"], &new["spec"]);
            let fixed_old = pod_spec_fixed_part(a);
            let fixed_new = pod_spec_fixed_part(b);
            let tolerations_removed = a
                .get("tolerations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|t| {
                    !b.get("tolerations")
                        .and_then(Value::as_array)
                        .is_some_and(|n| n.contains(t))
                });
            let node_changed =
                a.get("nodeName").is_some() && a.get("nodeName") != b.get("nodeName");
            if fixed_old != fixed_new || tolerations_removed || node_changed {
                let mut changed = changed_fields(&fixed_old, &fixed_new);
                if tolerations_removed {
                    changed.push("spec.tolerations".into());
                }
                if node_changed {
                    changed.push("spec.nodeName".into());
                }
                out.push(forbidden(
                    &Path::root("spec"),
                    &format!(
                        "pod updates may not change fields other than {POD_UPDATABLE}\n  changed: {}",
                        changed.join(", ")
                    ),
                ));
            }
        }
        ("", "ConfigMap") => immutable_when_set(old, new, &["data", "binaryData"], &mut out),
        ("storage.k8s.io", "StorageClass") => {
            for key in ["parameters", "provisioner", "reclaimPolicy"] {
                if old.get(key) != new.get(key) {
                    out.push(forbidden(
                        &Path::root(key),
                        &format!("updates to {key} are forbidden."),
                    ));
                }
            }
            if old.get("volumeBindingMode") != new.get("volumeBindingMode") {
                out.push(invalid(
                    &Path::root("volumeBindingMode"),
                    &new.get("volumeBindingMode")
                        .and_then(Value::as_str)
                        .map_or("null".into(), go_str),
                    "field is immutable",
                ));
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            if old.get("value") != new.get("value") {
                out.push(forbidden(
                    &Path::root("value"),
                    "may not be changed in an update.",
                ));
            }
            if old.get("preemptionPolicy") != new.get("preemptionPolicy") {
                out.push(invalid(
                    &Path::root("preemptionPolicy"),
                    &new.get("preemptionPolicy")
                        .and_then(Value::as_str)
                        .map_or("null".into(), go_str),
                    "field is immutable",
                ));
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding")
            if old.get("roleRef") != new.get("roleRef") =>
        {
            let r = &new["roleRef"];
            out.push(invalid(
                &Path::root("roleRef"),
                &format!(
                    "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
                    go_str(str_of(r, "apiGroup")),
                    go_str(str_of(r, "kind")),
                    go_str(str_of(r, "name"))
                ),
                "cannot change roleRef",
            ));
        }
        ("", "Secret") => {
            let (a, b) = (str_of(old, "type"), str_of(new, "type"));
            if a != b {
                out.push(invalid(
                    &Path::root("type"),
                    &go_str(b),
                    "field is immutable",
                ));
            }
            immutable_when_set(old, new, &["data"], &mut out);
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(group: &str, plural: &str) -> &'static Resource {
        crate::registry::RESOURCES
            .iter()
            .find(|r| r.group == group && r.plural == plural)
            .expect("registered")
    }

    /// The messages (`field: body`) validation gives `obj`, after upstream-style defaults.
    fn check(group: &str, plural: &str, mut obj: Value, expect: &[&str]) {
        let r = res(group, plural);
        crate::defaults::apply(r, &mut obj);
        let got: Vec<String> = validate(r, &obj)
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(got, expect, "for {obj}");
    }

    fn deploy(labels: Value, template_labels: Value, containers: Value) -> Value {
        json!({
            "metadata": {"name": "web", "labels": labels},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": template_labels},
                    "spec": {"containers": containers}
                }
            }
        })
    }

    #[test]
    fn ingresses() {
        let backend = json!({"service": {"name": "web", "port": {"number": 80}}});
        let ing = |rules: Value| json!({"metadata": {"name": "i"}, "spec": {"rules": rules}});
        check(
            "networking.k8s.io",
            "ingresses",
            ing(json!([{"host": "*.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": backend},
                {"pathType": "ImplementationSpecific", "backend": backend}]}}])),
            &[],
        );
        check(
            "networking.k8s.io",
            "ingresses",
            ing(json!([{"host": "*.bad*host", "http": {"paths": [
                {"path": "noslash", "pathType": "Prefix", "backend": backend},
                {"path": "/a//b/.", "pathType": "Exact", "backend": {"service": {"name": "Web", "port": {}}}},
                {"path": "/", "backend": backend},
                {"path": "/", "pathType": "Regex", "backend": {}}]}},
                {"host": "10.0.0.1"}])),
            &[
                "spec.rules[0].host: Invalid value: \"*.bad*host\": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                "spec.rules[0].http.paths[0].path: Invalid value: \"noslash\": must be an absolute path",
                "spec.rules[0].http.paths[1].path: Invalid value: \"/a//b/.\": must not contain '//'",
                "spec.rules[0].http.paths[1].path: Invalid value: \"/a//b/.\": cannot end with '/.'",
                "spec.rules[0].http.paths[1].backend.service.name: Invalid value: \"Web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
                "spec.rules[0].http.paths[1].backend: Required value: port name or number is required",
                "spec.rules[0].http.paths[2].pathType: Required value: pathType must be specified",
                "spec.rules[0].http.paths[3].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"",
                "spec.rules[0].http.paths[3].backend: Invalid value: \"\": resource or service backend is required",
                "spec.rules[1].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
            ],
        );
        check(
            "networking.k8s.io",
            "ingresses",
            json!({"metadata": {"name": "i"}, "spec": {}}),
            &[
                "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified",
            ],
        );
    }

    #[test]
    fn cron_job_schedules() {
        let cj = |schedule: &str| {
            json!({"metadata": {"name": "cj"}, "spec": {"schedule": schedule, "jobTemplate": {"spec": {
                "template": {"spec": {"restartPolicy": "OnFailure",
                    "containers": [{"name": "c", "image": "busybox"}]}}}}}})
        };
        for ok in ["*/5 * * * *", "@hourly", "0 9 * * mon-fri", "@every 90s"] {
            check("batch", "cronjobs", cj(ok), &[]);
        }
        check(
            "batch",
            "cronjobs",
            cj("61 * * * *"),
            &[
                "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61",
            ],
        );
        check(
            "batch",
            "cronjobs",
            cj("TZ=UTC 0 * * * *"),
            &[
                "spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ],
        );
        let zoned = |zone: &str| {
            let mut c = cj("0 9 * * *");
            c["spec"]["timeZone"] = json!(zone);
            c
        };
        check("batch", "cronjobs", zoned("Europe/Berlin"), &[]);
        check(
            "batch",
            "cronjobs",
            zoned("Mars/Olympus"),
            &["spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus"],
        );
        check(
            "batch",
            "cronjobs",
            zoned("Local"),
            &[
                "spec.timeZone: Invalid value: \"Local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
            ],
        );
        // Several causes in upstream's order.
        let mut several = zoned("");
        several["spec"]["startingDeadlineSeconds"] = json!(-1);
        several["spec"]["concurrencyPolicy"] = json!("Sometimes");
        several["spec"]["failedJobsHistoryLimit"] = json!(-2);
        check(
            "batch",
            "cronjobs",
            several,
            &[
                "spec.startingDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0",
                "spec.timeZone: Invalid value: \"\": timeZone must be nil or non-empty string",
                "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
                "spec.failedJobsHistoryLimit: Invalid value: -2: must be greater than or equal to 0",
            ],
        );
    }

    #[test]
    fn horizontal_pod_autoscalers() {
        let hpa = |spec: Value| json!({"metadata": {"name": "h"}, "spec": spec});
        let target = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"});
        check(
            "autoscaling",
            "horizontalpodautoscalers",
            hpa(json!({"scaleTargetRef": target, "minReplicas": 1, "maxReplicas": 3})),
            &[],
        );
        check(
            "autoscaling",
            "horizontalpodautoscalers",
            hpa(json!({"scaleTargetRef": target, "minReplicas": 5, "maxReplicas": 2})),
            &["spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"],
        );
        check(
            "autoscaling",
            "horizontalpodautoscalers",
            hpa(json!({"scaleTargetRef": {"kind": "a/b"}, "minReplicas": 0, "maxReplicas": 0})),
            &[
                "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
                "spec.maxReplicas: Invalid value: 0: must be greater than 0",
                "spec.scaleTargetRef.kind: Invalid value: \"a/b\": may not contain '/'",
                "spec.scaleTargetRef.name: Required value",
                // The defaulted CPU metric cannot scale to zero.
                "spec.metrics: Forbidden: must specify at least one Object or External metric to support scaling to zero replicas",
            ],
        );
        let with = |extra: Value| {
            let mut spec = json!({"scaleTargetRef": target, "maxReplicas": 3});
            for (k, v) in extra.as_object().unwrap() {
                spec[k] = v.clone();
            }
            hpa(spec)
        };
        // Every kind of metric, well formed.
        check(
            "autoscaling",
            "horizontalpodautoscalers",
            with(json!({"metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                {"type": "ContainerResource", "containerResource": {"name": "memory", "container": "app", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                {"type": "Pods", "pods": {"metric": {"name": "packets-per-second"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                {"type": "Object", "object": {"describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"}, "metric": {"name": "requests-per-second"}, "target": {"type": "Value", "value": "10k"}}},
                {"type": "External", "external": {"metric": {"name": "queue_messages"}, "target": {"type": "AverageValue", "averageValue": "30"}}},
            ], "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}})),
            &[],
        );
        check(
            "autoscaling",
            "horizontalpodautoscalers",
            with(json!({"metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 0}}},
                {"type": "Pods", "resource": {"name": "cpu", "target": {"type": "Percentage", "averageValue": "-1"}}},
                {"type": "Object", "object": {"describedObject": {"kind": "Ingress"}, "metric": {}, "target": {"type": "Value"}}},
                {"type": "Sideways"},
                {"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": "1", "averageValue": "1"}}, "pods": {}},
            ]})),
            &[
                "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0",
                "spec.metrics[1].resource.target.type: Invalid value: \"Percentage\": must be either Utilization, Value, or AverageValue",
                "spec.metrics[1].resource.target.averageValue: Invalid value: \"-1\": must be positive",
                "spec.metrics[1].pods: Required value: must populate information for the given metric source",
                "spec.metrics[2].object.describedObject.name: Required value",
                "spec.metrics[2].object.metric.name: Required value: must specify a metric name",
                "spec.metrics[2].object.target.averageValue: Required value: must set either a target value or averageValue",
                "spec.metrics[3].type: Unsupported value: \"Sideways\": supported values: \"ContainerResource\", \"External\", \"Object\", \"Pods\", \"Resource\"",
                "spec.metrics[3].type: Unsupported value: \"Sideways\": supported values: \"ContainerResource\", \"External\", \"Object\", \"Pods\", \"Resource\"",
                "spec.metrics[4].external.target.value: Forbidden: may not set both a target value for metric and a per-pod target",
                "spec.metrics[4].pods: Forbidden: must populate the given metric source only",
            ],
        );
        check(
            "autoscaling",
            "horizontalpodautoscalers",
            with(json!({"behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 4000, "selectPolicy": "Sometimes", "policies": []},
                "scaleDown": {"stabilizationWindowSeconds": -1, "policies": [{"type": "Nodes", "value": 0, "periodSeconds": 2000}]},
            }})),
            &[
                "spec.behavior.scaleUp.stabilizationWindowSeconds: Invalid value: 4000: must be less than or equal to 3600",
                "spec.behavior.scaleUp.selectPolicy: Unsupported value: \"Sometimes\": supported values: \"Disabled\", \"Max\", \"Min\"",
                "spec.behavior.scaleUp.policies: Required value: must specify at least one Policy",
                "spec.behavior.scaleDown.stabilizationWindowSeconds: Invalid value: -1: must be greater than or equal to zero",
                "spec.behavior.scaleDown.policies[0].type: Unsupported value: \"Nodes\": supported values: \"Percent\", \"Pods\"",
                "spec.behavior.scaleDown.policies[0].value: Invalid value: 0: must be greater than zero",
                "spec.behavior.scaleDown.policies[0].periodSeconds: Invalid value: 2000: must be less than or equal to 1800",
            ],
        );
    }

    #[test]
    fn autoscaler_defaults() {
        let mut v2 = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}});
        crate::defaults::apply(res("autoscaling", "horizontalpodautoscalers"), &mut v2);
        assert_eq!(
            v2["spec"],
            json!({"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3, "minReplicas": 1,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                        {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]},
                    "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [
                        {"type": "Percent", "value": 100, "periodSeconds": 15}]}}})
        );
        // autoscaling/v1 has no metrics: only the replica floor.
        let v1 = crate::registry::find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let mut old = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3}});
        crate::defaults::apply(v1, &mut old);
        assert_eq!(
            old["spec"],
            json!({"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3, "minReplicas": 1})
        );
    }

    #[test]
    fn deployments() {
        let ok = json!([{"name": "web", "image": "nginx"}]);
        check(
            "apps",
            "deployments",
            deploy(json!({}), json!({"app": "web"}), ok.clone()),
            &[],
        );
        check(
            "apps",
            "deployments",
            deploy(json!({}), json!({"app": "other", "tier": "x"}), ok.clone()),
            &[
                r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"other", "tier":"x"}: `selector` does not match template `labels`"#,
            ],
        );
        check(
            "apps",
            "deployments",
            deploy(
                json!({"bad key!": "x", "ok": "bad value!"}),
                json!({"app": "web"}),
                ok.clone(),
            ),
            &[
                "metadata.labels: Invalid value: \"bad key!\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                "metadata.labels: Invalid value: \"bad value!\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ],
        );
        check(
            "apps",
            "deployments",
            deploy(
                json!({}),
                json!({"app": "web"}),
                json!([{"name": "Web"}, {"name": "Web", "image": "x", "ports": [{"containerPort": 70000, "protocol": "tcp"}]}]),
            ),
            &[
                "spec.template.spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                "spec.template.spec.containers[0].image: Required value",
                "spec.template.spec.containers[1].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                "spec.template.spec.containers[1].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.template.spec.containers[1].ports[0].protocol: Unsupported value: \"tcp\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                // Upstream checks a container whole before comparing its name with the others.
                "spec.template.spec.containers[1].name: Duplicate value: \"Web\"",
            ],
        );
        let mut d = deploy(json!({}), json!({"app": "web"}), ok.clone());
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        check(
            "apps",
            "deployments",
            d,
            &[
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"0%\"}: may not be 0 when `maxSurge` is 0",
            ],
        );
        let mut d = deploy(json!({}), json!({"app": "web"}), ok.clone());
        d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}});
        d["spec"]["selector"] = json!({});
        check(
            "apps",
            "deployments",
            d,
            &[
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
            ],
        );
        let mut d = deploy(json!({}), json!({"app": "web"}), ok);
        d["spec"]["selector"] = json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}, {"key": "t", "operator": "Exists", "values": ["x"]}]});
        check(
            "apps",
            "deployments",
            d,
            &[
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"app\", Operator:\"In\", Values:[]string{\"web\"}}, v1.LabelSelectorRequirement{Key:\"t\", Operator:\"Exists\", Values:[]string{\"x\"}}}}: invalid label selector",
            ],
        );
    }

    #[test]
    fn names_follow_each_kinds_rule() {
        let msgs = |group: &str, plural: &str, n: &str| -> Vec<String> {
            name(res(group, plural), n)
                .into_iter()
                .map(|c| c.message)
                .collect()
        };
        assert!(msgs("", "configmaps", "a.b-c").is_empty());
        assert!(msgs("", "services", "1abc")[0].contains("a DNS-1035 label"));
        assert!(msgs("", "namespaces", "a.b")[0].contains("RFC 1123 label"));
        assert!(
            msgs(
                "rbac.authorization.k8s.io",
                "clusterroles",
                "system:aggregate-to-edit"
            )
            .is_empty()
        );
        assert_eq!(
            msgs("rbac.authorization.k8s.io", "roles", "a/b"),
            ["Invalid value: \"a/b\": may not contain '/'"]
        );
        let long = "a".repeat(254);
        assert_eq!(msgs("", "configmaps", &long).len(), 1);
        assert_eq!(
            msgs("", "configmaps", &long)[0],
            format!("Invalid value: \"{long}\": must be no more than 253 characters")
        );
    }

    #[test]
    fn pods_jobs_services_and_data() {
        check(
            "",
            "pods",
            json!({"metadata": {"name": "p"}, "spec": {}}),
            &["spec.containers: Required value"],
        );
        check(
            "",
            "pods",
            json!({"metadata": {"name": "p", "finalizers": ["bad finalizer"], "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": ""}]},
                   "spec": {"containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}], "restartPolicy": "Sometimes"}}),
            &[
                "metadata.finalizers: Invalid value: \"bad finalizer\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                "metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty",
                "spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ],
        );
        // A Job's pods must not restart forever: the defaulted Always is refused.
        check(
            "batch",
            "jobs",
            json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
            &[
                "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
            ],
        );
        check(
            "",
            "services",
            json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 0, "protocol": "TCP", "targetPort": "Http_x"}], "type": "Cluster"}}),
            &[
                "spec.type: Unsupported value: \"Cluster\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                "spec.ports[0].name: Required value",
                "spec.ports[1].name: Required value",
                "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[1].targetPort: Invalid value: \"Http_x\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            ],
        );
        check(
            "",
            "services",
            json!({"metadata": {"name": "s"}, "spec": {}}),
            &["spec.ports: Required value"],
        );
        check(
            "",
            "services",
            json!({"metadata": {"name": "s"}, "spec": {"clusterIP": "None"}}),
            &[],
        );
        check(
            "",
            "configmaps",
            json!({"metadata": {"name": "c"}, "data": {"bad key": "x", "..x": "y", "ok": "z"}, "binaryData": {"ok": "eA=="}}),
            &[
                "data[..x]: Invalid value: \"..x\": must not start with '..'",
                "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                "data[ok]: Invalid value: \"ok\": duplicate of key present in binaryData",
                "binaryData[ok]: Invalid value: \"ok\": duplicate of key present in data",
            ],
        );
        check(
            "",
            "secrets",
            json!({"kind": "Secret", "metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}),
            &["data[tls.key]: Required value"],
        );
    }

    #[test]
    fn container_requests_stay_within_limits() {
        let pod = |resources: Value| {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "i", "resources": resources}]}})
        };
        check(
            "",
            "pods",
            pod(json!({"requests": {"cpu": "2", "memory": "64Mi"},
                "limits": {"cpu": "1500m", "memory": "1Gi"}})),
            &[
                "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1500m",
            ],
        );
        check(
            "",
            "pods",
            pod(json!({"limits": {"memory": "-1Gi"}})),
            &[
                "spec.containers[0].resources.limits[memory]: Invalid value: \"-1Gi\": must be greater than or equal to 0",
            ],
        );
        // Equal, smaller, other units, and a request without a limit are all fine.
        check(
            "",
            "pods",
            pod(
                json!({"requests": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1e3"},
                "limits": {"cpu": "1000m", "memory": "2G"}}),
            ),
            &[],
        );
    }

    #[test]
    fn updates_keep_immutable_fields() {
        let msgs = |group: &str, plural: &str, old: Value, new: Value| -> Vec<String> {
            validate_update(res(group, plural), &old, &new)
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect()
        };
        assert_eq!(
            msgs(
                "apps",
                "deployments",
                json!({"spec": {"selector": {"matchLabels": {"app": "a"}}}}),
                json!({"spec": {"selector": {"matchLabels": {"app": "b"}}}})
            ),
            [
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"b\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
            ]
        );
        let pod = json!({"spec": {"containers": [{"name": "c", "image": "a", "env": []}], "nodeName": "n1", "tolerations": [{"key": "k", "operator": "Exists"}]}});
        let mut image = pod.clone();
        image["spec"]["containers"][0]["image"] = json!("b");
        image["spec"]["tolerations"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "k2", "operator": "Exists"}));
        assert!(msgs("", "pods", pod.clone(), image).is_empty());
        let mut env = pod.clone();
        env["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "1"}]);
        let got = msgs("", "pods", pod.clone(), env);
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"), "{got:?}");
        assert!(got[0].ends_with("changed: spec.containers"), "{got:?}");
        assert_eq!(
            msgs(
                "",
                "configmaps",
                json!({"immutable": true, "data": {"a": "1"}}),
                json!({"immutable": true, "data": {"a": "2"}})
            ),
            ["data: Forbidden: field is immutable when `immutable` is set"]
        );
        assert!(
            msgs(
                "",
                "configmaps",
                json!({"data": {"a": "1"}}),
                json!({"data": {"a": "2"}})
            )
            .is_empty()
        );
    }

    /// A Pod of one container `c` (merged over a valid one) and `spec` (merged over the rest).
    fn pod_of(c: Value, spec: Value) -> Value {
        let mut container = json!({"name": "c", "image": "i"});
        for (k, v) in c.as_object().into_iter().flatten() {
            container[k] = v.clone();
        }
        let mut pod_spec = json!({"containers": [container]});
        for (k, v) in spec.as_object().into_iter().flatten() {
            pod_spec[k] = v.clone();
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod_spec})
    }

    const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
    const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

    #[test]
    fn dns_host_ports_and_the_rest_of_a_pod_spec_follow_upstream() {
        let got = |spec: Value| -> Vec<String> {
            let mut obj = pod_of(json!({}), spec);
            let r = res("", "pods");
            crate::defaults::apply(r, &mut obj);
            validate(r, &obj)
                .iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect()
        };
        assert_eq!(
            got(json!({"dnsPolicy": "None"})),
            ["spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"]
        );
        assert_eq!(
            got(json!({"dnsPolicy": "None", "dnsConfig": {"searches": ["a.b"]}})),
            [
                "spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None"
            ]
        );
        let sub = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
        assert_eq!(
            got(json!({
                "dnsConfig": {
                    "nameservers": ["1.1.1.1", "010.0.0.1", "fe80::1", "not-an-ip"],
                    "searches": ["svc.cluster.local.", "Bad_Domain"],
                    "options": [{"name": "ndots", "value": "2"}, {"value": "1"}],
                },
                "readinessGates": [{"conditionType": "example.com/ready"}, {"conditionType": "bad gate"}],
                "schedulingGates": [{"name": "wait"}, {"name": "wait"}],
                "hostUsers": false, "hostPID": true,
                "serviceAccountName": "Robot",
                "hostname": "web.0",
                "hostAliases": [{"ip": "10.0.0.256", "hostnames": ["ok.local", "NOT_OK"]}],
                "priorityClassName": "High",
                "preemptionPolicy": "Sometimes",
            })),
            [
                "spec.dnsConfig.nameservers: Invalid value: []string{\"1.1.1.1\", \"010.0.0.1\", \"fe80::1\", \"not-an-ip\"}: must not have more than 3 nameservers".to_owned(),
                "spec.dnsConfig.nameservers[3]: Invalid value: \"not-an-ip\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_owned(),
                format!("spec.dnsConfig.searches[1]: Invalid value: \"Bad_Domain\": {sub}"),
                "spec.dnsConfig.options[1]: Required value: must not be empty".to_owned(),
                "spec.readinessGates[1].conditionType: Invalid value: \"bad gate\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_owned(),
                "spec.schedulingGates[1]: Duplicate value: \"wait\"".to_owned(),
                "spec.HostPID: Forbidden: when `pod.Spec.HostUsers` is false".to_owned(),
                format!("spec.serviceAccountName: Invalid value: \"Robot\": {sub}"),
                "spec.hostname: Invalid value: \"web.0\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".to_owned(),
                "spec.hostAliases[0].ip: Invalid value: \"10.0.0.256\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_owned(),
                format!("spec.hostAliases[0].hostnames[1]: Invalid value: \"NOT_OK\": {sub}"),
                format!("spec.priorityClassName: Invalid value: \"High\": {sub}"),
                "spec.preemptionPolicy: Unsupported value: \"Sometimes\": supported values: \"PreemptLowerPriority\", \"Never\"".to_owned(),
            ]
        );
        // Host ports: taken twice across the containers (same protocol and host IP); each
        // init container is checked alone, and reported at index 0 as upstream does.
        let port = |n: i64, proto: &str, ip: &str| json!({"containerPort": 80, "hostPort": n, "protocol": proto, "hostIP": ip});
        let mut obj = pod_of(
            json!({"ports": [port(8080, "TCP", ""), port(8080, "UDP", ""), port(9090, "TCP", "")]}),
            json!({
                "initContainers": [
                    {"name": "i0", "image": "i", "ports": [port(8080, "TCP", "")]},
                    {"name": "i1", "image": "i", "ports": [port(7070, "TCP", "10.0.0.1"), port(7070, "TCP", "10.0.0.1")]},
                ],
            }),
        );
        obj["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "d", "image": "i", "ports": [port(9090, "TCP", ""), port(9090, "TCP", "10.0.0.2")]}));
        check(
            "",
            "pods",
            obj,
            &[
                "spec.containers[1].ports[0].hostPort: Duplicate value: \"TCP//9090\"",
                "spec.initContainers[0].ports[1].hostPort: Duplicate value: \"TCP/10.0.0.1/7070\"",
            ],
        );
        // What people write passes.
        assert!(
            got(json!({
                "dnsPolicy": "None",
                "dnsConfig": {"nameservers": ["10.96.0.10"], "searches": ["default.svc.cluster.local", "cluster.local."], "options": [{"name": "ndots", "value": "5"}]},
                "readinessGates": [{"conditionType": "www.example.com/feature-1"}],
                "hostname": "web-0", "subdomain": "web",
                "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["foo.local"]}, {"ip": "::1"}],
                "priorityClassName": "system-node-critical", "preemptionPolicy": "Never",
                "hostUsers": false,
            }))
            .is_empty()
        );
    }

    #[test]
    fn downward_api_and_projected_volumes_and_divisors_follow_upstream() {
        let with =
            |volumes: Value, env: Value| pod_of(json!({"env": env}), json!({"volumes": volumes}));
        let v = "spec.volumes";
        check(
            "",
            "pods",
            with(
                json!([
                    {"name": "info", "downwardAPI": {"defaultMode": 1000, "items": [
                        {"path": "../up", "fieldRef": {"fieldPath": "spec.nodeName"}},
                        {"path": "both", "fieldRef": {"fieldPath": "metadata.name"}, "resourceFieldRef": {"resource": "limits.cpu"}},
                        {"path": "none"},
                        {"path": "mem", "resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                        {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "10m"}},
                    ]}},
                    {"name": "all", "projected": {"sources": [
                        {"serviceAccountToken": {"expirationSeconds": 60, "path": "/token"}},
                        {"configMap": {"name": "cm", "items": [{"key": "a", "path": "same"}]}, "secret": {"name": "s"}},
                        {"secret": {"name": "s", "items": [{"key": "b", "path": "same"}]}},
                        {"downwardAPI": {"items": [{"path": "same", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    ]}},
                ]),
                json!([
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory", "divisor": "1000Ki"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1000m"}}},
                ]),
            ),
            &[
                &format!(
                    "{v}[0].downwardAPI.defaultMode: Invalid value: 1000: must be a number between 0 and 0777 (octal), both inclusive"
                ),
                &format!(
                    "{v}[0].downwardAPI.path: Invalid value: \"../up\": must not contain '..'"
                ),
                &format!(
                    "{v}[0].downwardAPI.fieldRef.fieldPath: Unsupported value: \"spec.nodeName\": supported values: \"metadata.annotations\", \"metadata.labels\", \"metadata.name\", \"metadata.namespace\", \"metadata.uid\""
                ),
                &format!(
                    "{v}[0].downwardAPI: Invalid value: \"resource\": fieldRef and resourceFieldRef can not be specified simultaneously"
                ),
                &format!(
                    "{v}[0].downwardAPI: Required value: one of fieldRef and resourceFieldRef is required"
                ),
                &format!("{v}[0].downwardAPI.resourceFieldRef.containerName: Required value"),
                &format!(
                    "{v}[0].downwardAPI.resourceFieldRef.divisor: Invalid value: \"limits.cpu\": only divisor's values 1m and 1 are supported with the cpu resource"
                ),
                &format!(
                    "{v}[1].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
                ),
                &format!(
                    "{v}[1].projected.path: Invalid value: \"/token\": must be a relative path"
                ),
                &format!(
                    "{v}[1].projected.sources[1]: Forbidden: may not specify more than 1 volume type"
                ),
                &format!("{v}[1].projected: Invalid value: \"s\": conflicting duplicate paths"),
                &format!("{v}[1].projected: Invalid value: \"same\": conflicting duplicate paths"),
                "spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: Invalid value: \"requests.memory\": only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource",
            ],
        );
        // What ServiceAccount admission adds, and divisors as people write them, pass.
        check(
            "",
            "pods",
            with(
                json!([{"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ]}}, {"name": "info", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
                ]}}]),
                json!([
                    {"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                    {"name": "B", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1024Ki"}}},
                    {"name": "C", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "0"}}},
                    {"name": "D", "valueFrom": {"resourceFieldRef": {"resource": "limits.ephemeral-storage", "divisor": "1G"}}},
                ]),
            ),
            &[],
        );
        for (q, want) in [
            ("1000m", "1"),
            ("0.001", "1m"),
            ("1024Ki", "1Mi"),
            ("1000", "1k"),
            ("1e3", "other"),
            ("2", "other"),
            ("512Ki", "other"),
            ("0", "0"),
        ] {
            assert_eq!(canonical_divisor(q).as_deref(), Some(want), "{q}");
        }
    }

    #[test]
    fn persistent_volume_claims_follow_upstream() {
        let pvc = |spec: Value| json!({"metadata": {"name": "data"}, "spec": spec});
        check(
            "",
            "persistentvolumeclaims",
            pvc(json!({"resources": {"requests": {}}})),
            &[
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value",
            ],
        );
        check(
            "",
            "persistentvolumeclaims",
            pvc(
                json!({"accessModes": ["ReadWriteOncePod", "ReadWriteOnce", "WriteOnly"], "resources": {"requests": {"storage": "0"}},
                "storageClassName": "Fast", "volumeMode": "Raw"}),
            ),
            &[
                "spec.accessModes: Unsupported value: \"WriteOnly\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
                "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes",
                "spec.resources[storage]: Invalid value: \"0\": must be greater than zero",
                "spec.storageClassName: Invalid value: \"Fast\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                "spec.volumeMode: Unsupported value: \"Raw\": supported values: \"Block\", \"Filesystem\"",
            ],
        );
        check(
            "",
            "persistentvolumeclaims",
            pvc(
                json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "standard"}),
            ),
            &[],
        );
    }

    #[test]
    fn network_policies_follow_upstream() {
        let np = |spec: Value| json!({"metadata": {"name": "np"}, "spec": spec});
        check(
            "networking.k8s.io",
            "networkpolicies",
            np(json!({
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [{
                    "ports": [{"protocol": "ICMP", "port": 80}, {"port": 8000, "endPort": 7000}, {"port": "http", "endPort": 90}, {"endPort": 90}, {"port": 0}],
                    "from": [{}, {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}, {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/16", "192.168.0.0/24", "10.1.0.0/33"]}}, {"ipBlock": {"cidr": "10.0.0.0"}}],
                }],
                "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"team": "a b"}}}]}],
                "policyTypes": ["Ingress", "Sideways"],
            })),
            &[
                "spec.ingress[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
                "spec.ingress[0].ports[1].endPort: Invalid value: 8000: must be greater than or equal to `port`",
                "spec.ingress[0].ports[2].endPort: Invalid value: 90: may not be specified when `port` is non-numeric",
                "spec.ingress[0].ports[3].endPort: Invalid value: 90: may not be specified when `port` is not specified",
                "spec.ingress[0].ports[4].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ingress[0].from[0]: Required value: must specify a peer",
                "spec.ingress[0].from[1]: Forbidden: may not specify both ipBlock and another peer",
                "spec.ingress[0].from[2].ipBlock.except[0]: Invalid value: \"10.0.0.0/16\": must be a strict subset of `cidr`",
                "spec.ingress[0].from[2].ipBlock.except[1]: Invalid value: \"192.168.0.0/24\": must be a strict subset of `cidr`",
                "spec.ingress[0].from[2].ipBlock.except[2]: Invalid value: \"10.1.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                "spec.ingress[0].from[3].ipBlock.cidr: Invalid value: \"10.0.0.0\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                "spec.egress[0].to[0].namespaceSelector.matchLabels: Invalid value: \"a b\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                "spec.policyTypes[1]: Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\"",
            ],
        );
        check(
            "networking.k8s.io",
            "networkpolicies",
            np(json!({
                "podSelector": {},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}, "namespaceSelector": {}}, {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}}],
                    "ports": [{"protocol": "TCP", "port": 6379}, {"port": 32000, "endPort": 32768}, {"port": "metrics"}]}],
                "egress": [{"to": [{"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}}]}],
                "policyTypes": ["Ingress", "Egress"],
            })),
            &[],
        );
    }

    #[test]
    fn rbac_objects_follow_upstream() {
        let g = "rbac.authorization.k8s.io";
        check(
            g,
            "roles",
            json!({"metadata": {"name": "r", "namespace": "ns"}, "rules": [
                {"apiGroups": [""], "resources": ["pods"]},
                {"verbs": ["get"]},
                {"verbs": ["get"], "nonResourceURLs": ["/healthz"], "resources": ["pods"]},
                {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]},
            ]}),
            &[
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[1].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[1].resources: Required value: resource rules must supply at least one resource",
                "rules[2].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs",
                "rules[2].nonResourceURLs: Invalid value: []string{\"/healthz\"}: rules cannot apply to both regular resources and non-resource URLs",
            ],
        );
        check(
            g,
            "clusterroles",
            json!({"metadata": {"name": "c"}, "rules": [{"verbs": ["get"], "nonResourceURLs": ["/metrics"]}], "aggregationRule": {"clusterRoleSelectors": []}}),
            &[
                "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil",
            ],
        );
        check(
            g,
            "rolebindings",
            json!({"metadata": {"name": "b", "namespace": "ns"}, "roleRef": {"apiGroup": "example.com", "kind": "Policy", "name": "a/b"},
                "subjects": [{"kind": "ServiceAccount", "name": "Robot", "apiGroup": "x"}, {"kind": "User", "name": "jane", "apiGroup": "other"}, {"kind": "Machine", "name": "m"}, {"kind": "Group"}]}),
            &[
                "roleRef.apiGroup: Unsupported value: \"example.com\": supported values: \"rbac.authorization.k8s.io\"",
                "roleRef.kind: Unsupported value: \"Policy\": supported values: \"Role\", \"ClusterRole\"",
                "roleRef.name: Invalid value: \"a/b\": may not contain '/'",
                "subjects[0].name: Invalid value: \"Robot\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                "subjects[0].apiGroup: Unsupported value: \"x\": supported values: \"\"",
                "subjects[1].apiGroup: Unsupported value: \"other\": supported values: \"rbac.authorization.k8s.io\"",
                "subjects[2].kind: Unsupported value: \"Machine\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
                "subjects[3].name: Required value",
            ],
        );
        // Defaulted groups; a cluster binding's service account needs its namespace.
        check(
            g,
            "clusterrolebindings",
            json!({"metadata": {"name": "b"}, "roleRef": {"kind": "Role", "name": "view"},
                "subjects": [{"kind": "ServiceAccount", "name": "default"}, {"kind": "User", "name": "jane"}]}),
            &[
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "subjects[0].namespace: Required value",
            ],
        );
        let r = res(g, "rolebindings");
        let mut old =
            json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "view"}});
        let mut new = json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": g, "kind": "ClusterRole", "name": "edit"}});
        crate::defaults::apply(r, &mut old);
        crate::defaults::apply(r, &mut new);
        let got: Vec<String> = validate_update(r, &old, &new)
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            got,
            [
                "roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"edit\"}: cannot change roleRef"
            ]
        );
        new["roleRef"]["name"] = json!("view");
        assert!(validate_update(r, &old, &new).is_empty());
    }

    #[test]
    fn priority_classes_follow_upstream() {
        let g = "scheduling.k8s.io";
        let pc = |name: &str, value: i64, extra: Value| {
            let mut o = json!({"metadata": {"name": name}, "value": value});
            for (k, v) in extra.as_object().into_iter().flatten() {
                o[k] = v.clone();
            }
            o
        };
        let reserved = "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: ";
        check(
            g,
            "priorityclasses",
            pc("system-mine", 5, json!({})),
            &[&format!(
                "{reserved}system-mine is not a known system priority class"
            )],
        );
        check(
            g,
            "priorityclasses",
            pc("system-node-critical", 5, json!({})),
            &[&format!(
                "{reserved}value of system-node-critical PriorityClass must be 2000001000"
            )],
        );
        check(
            g,
            "priorityclasses",
            pc(
                "system-cluster-critical",
                2_000_000_000,
                json!({"globalDefault": true}),
            ),
            &[&format!(
                "{reserved}globalDefault of system-cluster-critical PriorityClass must be false"
            )],
        );
        check(
            g,
            "priorityclasses",
            pc(
                "high",
                2_000_000_000,
                json!({"preemptionPolicy": "Sometimes"}),
            ),
            &[
                "value: Forbidden: maximum allowed value of a user defined priority is 1000000000",
                "preemptionPolicy: Unsupported value: \"Sometimes\": supported values: \"PreemptLowerPriority\", \"Never\"",
            ],
        );
        check(
            g,
            "priorityclasses",
            pc(
                "high",
                1_000_000,
                json!({"globalDefault": true, "description": "x"}),
            ),
            &[],
        );
        check(
            g,
            "priorityclasses",
            pc("system-node-critical", 2_000_001_000, json!({})),
            &[],
        );
        let r = res(g, "priorityclasses");
        let mut old = pc("high", 10, json!({}));
        let mut new = pc("high", 20, json!({"preemptionPolicy": "Never"}));
        crate::defaults::apply(r, &mut old);
        crate::defaults::apply(r, &mut new);
        let got: Vec<String> = validate_update(r, &old, &new)
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            got,
            [
                "value: Forbidden: may not be changed in an update.",
                "preemptionPolicy: Invalid value: \"Never\": field is immutable",
            ]
        );
        // Leaving out the defaulted policy on update changes nothing.
        let mut same = pc("high", 10, json!({"description": "now described"}));
        crate::defaults::apply(r, &mut same);
        assert!(validate_update(r, &old, &same).is_empty());
    }

    #[test]
    fn storage_classes_follow_upstream() {
        let g = "storage.k8s.io";
        check(
            g,
            "storageclasses",
            json!({"metadata": {"name": "fast"}, "parameters": {"": "x", "type": "ssd"}, "reclaimPolicy": "Recycle", "volumeBindingMode": "Later"}),
            &[
                "provisioner: Required value",
                "parameters: Invalid value: \"\": field can not be empty.",
                "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"",
                "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\"",
            ],
        );
        check(
            g,
            "storageclasses",
            json!({"metadata": {"name": "fast"}, "provisioner": "bad provisioner"}),
            &[
                "provisioner: Invalid value: \"bad provisioner\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ],
        );
        check(
            g,
            "storageclasses",
            json!({"metadata": {"name": "local"}, "provisioner": "rancher.io/Local-Path"}),
            &[],
        );
        let r = res(g, "storageclasses");
        let mut old =
            json!({"metadata": {"name": "s"}, "provisioner": "a.io/x", "parameters": {"k": "v"}});
        let mut new = json!({"metadata": {"name": "s"}, "provisioner": "b.io/x", "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer"});
        crate::defaults::apply(r, &mut old);
        crate::defaults::apply(r, &mut new);
        let got: Vec<String> = validate_update(r, &old, &new)
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            got,
            [
                "parameters: Forbidden: updates to parameters are forbidden.",
                "provisioner: Forbidden: updates to provisioner are forbidden.",
                "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden.",
                "volumeBindingMode: Invalid value: \"WaitForFirstConsumer\": field is immutable",
            ]
        );
    }

    #[test]
    fn pod_disruption_budgets_follow_upstream() {
        let pdb = |spec: Value| json!({"metadata": {"name": "b"}, "spec": spec});
        check(
            "policy",
            "poddisruptionbudgets",
            pdb(
                json!({"minAvailable": 1, "maxUnavailable": "150%", "selector": {"matchLabels": {"app": "bad value!"}},
                "unhealthyPodEvictionPolicy": "Never"}),
            ),
            &[
                "spec: Invalid value: policy.PodDisruptionBudgetSpec{MinAvailable:(*intstr.IntOrString)(0xc000000000), Selector:(*v1.LabelSelector)(0xc000000000), MaxUnavailable:(*intstr.IntOrString)(0xc000000000), UnhealthyPodEvictionPolicy:(*policy.UnhealthyPodEvictionPolicyType)(0xc000000000)}: minAvailable and maxUnavailable cannot be both set",
                "spec.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%",
                "spec.selector.matchLabels: Invalid value: \"bad value!\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Never\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\"",
            ],
        );
        check(
            "policy",
            "poddisruptionbudgets",
            pdb(json!({"minAvailable": -1})),
            &["spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"],
        );
        check(
            "policy",
            "poddisruptionbudgets",
            pdb(
                json!({"maxUnavailable": "25%", "selector": {"matchLabels": {"app": "web"}}, "unhealthyPodEvictionPolicy": "AlwaysAllow"}),
            ),
            &[],
        );
    }

    #[test]
    fn probes_and_lifecycle_hooks() {
        check(
            "",
            "pods",
            pod_of(
                json!({
                    "livenessProbe": {"httpGet": {"port": 0}, "tcpSocket": {"port": "http"}, "periodSeconds": -1, "successThreshold": 2},
                    "readinessProbe": {"periodSeconds": 5, "terminationGracePeriodSeconds": 10},
                    "startupProbe": {"exec": {}, "successThreshold": -1},
                }),
                json!({}),
            ),
            &[
                "spec.containers[0].livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
                "spec.containers[0].livenessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
                "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                "spec.containers[0].readinessProbe: Required value: must specify a handler type",
                "spec.containers[0].readinessProbe.terminationGracePeriodSeconds: Invalid value: 10: must not be set for readinessProbes",
                "spec.containers[0].startupProbe.exec.command: Required value",
                "spec.containers[0].startupProbe.successThreshold: Invalid value: -1: must be greater than or equal to 0",
                "spec.containers[0].startupProbe.successThreshold: Invalid value: -1: must be 1",
            ],
        );
        check(
            "",
            "pods",
            pod_of(
                json!({
                    "lifecycle": {"postStart": {}, "preStop": {"sleep": {"seconds": 40}}},
                    "livenessProbe": {"httpGet": {"port": "Http_x", "scheme": "FTP", "httpHeaders": [{"name": "bad header", "value": "v"}]}},
                    "readinessProbe": {"grpc": {"port": 70000}},
                    "startupProbe": {"tcpSocket": {}, "terminationGracePeriodSeconds": 0},
                    "restartPolicy": "Always",
                }),
                json!({"initContainers": [
                    {"name": "setup", "image": "i", "livenessProbe": {"exec": {"command": ["true"]}}},
                    {"name": "proxy", "image": "i", "restartPolicy": "Always", "readinessProbe": {}},
                    {"name": "once", "image": "i", "restartPolicy": "Never"},
                ]}),
            ),
            &[
                "spec.containers[0].lifecycle.postStart: Required value: must specify a handler type",
                "spec.containers[0].lifecycle.preStop.sleep: Invalid value: 40: must be non-negative and less than terminationGracePeriodSeconds (30)",
                "spec.containers[0].livenessProbe.httpGet.port: Invalid value: \"Http_x\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "spec.containers[0].livenessProbe.httpGet.scheme: Unsupported value: \"FTP\": supported values: \"HTTP\", \"HTTPS\"",
                "spec.containers[0].livenessProbe.httpGet.httpHeaders: Invalid value: \"bad header\": a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
                "spec.containers[0].readinessProbe.grpc.port: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].startupProbe.tcpSocket.port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.containers[0].startupProbe.terminationGracePeriodSeconds: Invalid value: 0: must be greater than 0",
                "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers",
                "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
                "spec.initContainers[1].readinessProbe: Required value: must specify a handler type",
                "spec.initContainers[2].restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ],
        );
        // Probes as people write them: zero or missing timings, thresholds and schemes are
        // upstream's defaults, and a readiness probe may need more than one success.
        check(
            "",
            "pods",
            pod_of(
                json!({
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": 3, "periodSeconds": 3, "successThreshold": 0},
                    "readinessProbe": {"httpGet": {"port": "http", "scheme": "HTTPS", "httpHeaders": [{"name": "X-Custom-Header", "value": "Awesome"}]}, "successThreshold": 2, "timeoutSeconds": 0},
                    "startupProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}, "failureThreshold": 30, "periodSeconds": 10, "terminationGracePeriodSeconds": 60},
                    "lifecycle": {"postStart": {"exec": {"command": ["/bin/sh", "-c", "echo hi"]}}, "preStop": {"sleep": {"seconds": 0}}},
                }),
                json!({"initContainers": [{"name": "sidecar", "image": "i", "restartPolicy": "Always",
                    "livenessProbe": {"grpc": {"port": 9000}}, "lifecycle": {"preStop": {"tcpSocket": {"port": 80}}}}]}),
            ),
            &[],
        );
    }

    #[test]
    fn topology_spread_constraints_follow_upstream() {
        let spread = |constraints: Value| {
            pod_of(json!({}), json!({"topologySpreadConstraints": constraints}))
        };
        let tsc = "spec.topologySpreadConstraints";
        check(
            "",
            "pods",
            spread(json!([
                {"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}},
                {"maxSkew": 1, "topologyKey": "", "whenUnsatisfiable": "Sometimes", "minDomains": 0},
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "nodeTaintsPolicy": "Maybe", "matchLabelKeys": ["app"],
                 "labelSelector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["bad value!"]}]}},
                {"topologyKey": "host", "matchLabelKeys": ["app"]},
            ])),
            &[
                &format!("{tsc}[0].maxSkew: Invalid value: 0: must be greater than zero"),
                &format!(
                    "{tsc}[0].{{topologyKey, whenUnsatisfiable}}: Duplicate value: \"{{zone, DoNotSchedule}}\""
                ),
                &format!("{tsc}[1].topologyKey: Required value: can not be empty"),
                &format!(
                    "{tsc}[1].whenUnsatisfiable: Unsupported value: \"Sometimes\": supported values: \"DoNotSchedule\", \"ScheduleAnyway\""
                ),
                &format!("{tsc}[1].minDomains: Invalid value: 0: must be greater than zero"),
                &format!(
                    "{tsc}[1].minDomains: Invalid value: 0: can only use minDomains if whenUnsatisfiable=DoNotSchedule, not Sometimes"
                ),
                &format!(
                    "{tsc}[2].nodeTaintsPolicy: Unsupported value: \"Maybe\": supported values: \"Honor\", \"Ignore\""
                ),
                &format!(
                    "{tsc}[2].matchLabelKeys[0]: Invalid value: \"app\": exists in both matchLabelKeys and labelSelector"
                ),
                &format!(
                    "{tsc}[2].labelSelector.matchExpressions[0].values[0]: Invalid value: \"bad value!\": {LABEL_VALUE_MSG}"
                ),
                &format!("{tsc}[3].maxSkew: Invalid value: 0: must be greater than zero"),
                &format!(
                    "{tsc}[3].whenUnsatisfiable: Unsupported value: \"\": supported values: \"DoNotSchedule\", \"ScheduleAnyway\""
                ),
                &format!(
                    "{tsc}[3].matchLabelKeys: Forbidden: must not be specified when labelSelector is not set"
                ),
            ],
        );
        check(
            "",
            "pods",
            spread(json!([
                {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "minDomains": 2,
                 "labelSelector": {"matchLabels": {"app": "web"}}, "matchLabelKeys": ["pod-template-hash"]},
                {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                 "nodeAffinityPolicy": "Honor", "nodeTaintsPolicy": "Ignore",
                 "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}},
                {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
            ])),
            &[],
        );
    }

    #[test]
    fn affinity_terms_follow_upstream() {
        let with = |affinity: Value| pod_of(json!({}), json!({"affinity": affinity}));
        let req = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]";
        let anti = "spec.affinity.podAntiAffinity";
        check(
            "",
            "pods",
            with(json!({
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{
                        "matchExpressions": [
                            {"key": "disk", "operator": "Equals", "values": ["ssd"]},
                            {"key": "gpu", "operator": "Exists", "values": ["yes"]},
                            {"key": "cores", "operator": "Gt", "values": ["1", "2"]},
                            {"key": "zone", "operator": "In", "values": ["bad value!"]},
                        ],
                        "matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["a", "b"]}],
                    }]},
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 0, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["bad value!"]}]}},
                    ],
                },
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": ""}],
                    "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 101, "podAffinityTerm": {"topologyKey": "zone", "namespaces": ["Bad"]}}],
                },
            })),
            &[
                &format!(
                    "{req}.matchExpressions[0].operator: Invalid value: \"Equals\": not a valid selector operator"
                ),
                &format!(
                    "{req}.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                ),
                &format!(
                    "{req}.matchExpressions[2].values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'"
                ),
                &format!(
                    "{req}.matchExpressions[3].values[0]: Invalid value: \"bad value!\": {LABEL_VALUE_MSG}"
                ),
                &format!(
                    "{req}.matchFields[0].values: Required value: must be only one value when `operator` is 'In' or 'NotIn' for node field selector"
                ),
                &format!(
                    "{req}.matchFields[0].key: Invalid value: \"metadata.uid\": not a valid field selector key"
                ),
                "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 0: must be in the range 1-100",
                &format!(
                    "{anti}.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Required value: can not be empty"
                ),
                &format!(
                    "{anti}.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Invalid value: \"\": name part must be non-empty"
                ),
                &format!(
                    "{anti}.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Invalid value: \"\": {NAME_PART_MSG}"
                ),
                &format!(
                    "{anti}.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 101: must be in the range 1-100"
                ),
                &format!(
                    "{anti}.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.namespace: Invalid value: \"Bad\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
                ),
            ],
        );
        check(
            "",
            "pods",
            with(
                json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}),
            ),
            &[
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: Required value: must have at least one node selector term",
            ],
        );
        check(
            "",
            "pods",
            with(json!({
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [
                            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                            {"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"},
                            {"key": "cores", "operator": "Gt", "values": ["4"]},
                        ]},
                        {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]}]},
                    ]},
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 1, "preference": {"matchExpressions": [{"key": "disktype", "operator": "In", "values": ["ssd"]}]}},
                        {"weight": 100, "preference": {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["any value goes here"]}]}},
                    ],
                },
                "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchExpressions": [{"key": "security", "operator": "In", "values": ["S1"]}]},
                    "topologyKey": "topology.kubernetes.io/zone",
                }]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
                    "labelSelector": {"matchLabels": {"app": "web"}},
                    "namespaceSelector": {},
                    "namespaces": ["default", "kube-system"],
                    "topologyKey": "kubernetes.io/hostname",
                }}]},
            })),
            &[],
        );
    }

    #[test]
    fn env_sources_follow_upstream() {
        let env = |env: Value, env_from: Value| {
            pod_of(json!({"env": env, "envFrom": env_from}), json!({}))
        };
        let e = "spec.containers[0].env";
        check(
            "",
            "pods",
            env(
                json!([
                    {"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "B", "valueFrom": {}},
                    {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "status.phase"}, "secretKeyRef": {"name": "s", "key": "k"}}},
                    {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeNme"}}},
                    {"name": "E", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['bad key']"}}},
                    {"name": "F", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}},
                    {"name": "G", "valueFrom": {"configMapKeyRef": {"name": "", "key": ""}}},
                    {"name": "H", "valueFrom": {"secretKeyRef": {"name": "s", "key": "bad/key"}}},
                    {"name": "I", "valueFrom": {"fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}}},
                ]),
                json!([{}, {"prefix": "A=", "configMapRef": {"name": "c"}, "secretRef": {"name": ""}}]),
            ),
            &[
                &format!(
                    "{e}[0].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty"
                ),
                &format!(
                    "{e}[1].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"
                ),
                &format!(
                    "{e}[2].valueFrom.fieldRef.fieldPath: Unsupported value: \"status.phase\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\""
                ),
                &format!(
                    "{e}[2].valueFrom: Invalid value: \"\": may not have more than one field specified at a time"
                ),
                &format!(
                    "{e}[3].valueFrom.fieldRef.fieldPath: Invalid value: \"spec.nodeNme\": error converting fieldPath: field label not supported: spec.nodeNme"
                ),
                &format!("{e}[4].valueFrom.fieldRef: Invalid value: \"bad key\": {NAME_PART_MSG}"),
                &format!(
                    "{e}[5].valueFrom.resourceFieldRef.resource: Unsupported value: \"limits.gpu\": supported values: \"limits.cpu\", \"limits.ephemeral-storage\", \"limits.memory\", \"requests.cpu\", \"requests.ephemeral-storage\", \"requests.memory\""
                ),
                &format!(
                    "{e}[6].valueFrom.configMapKeyRef.name: Invalid value: \"\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                ),
                &format!("{e}[6].valueFrom.configMapKeyRef.key: Required value"),
                &format!(
                    "{e}[7].valueFrom.secretKeyRef.key: Invalid value: \"bad/key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
                ),
                &format!(
                    "{e}[8].valueFrom.fieldRef.fieldPath: Invalid value: \"metadata.name\": error converting fieldPath: unsupported pod version: v2"
                ),
                "spec.containers[0].envFrom: Invalid value: \"\": must specify one of: `configMapRef` or `secretRef`",
                "spec.containers[0].envFrom[1].prefix: Invalid value: \"A=\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                "spec.containers[0].envFrom[1].secretRef.name: Required value",
                "spec.containers[0].envFrom: Invalid value: \"\": may not have more than one field specified at a time",
            ],
        );
        check(
            "",
            "pods",
            env(
                json!([
                    {"name": "PLAIN", "value": "x"},
                    {"name": "EMPTY_VALUE", "value": "", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.host"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['Example.com/Note']"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "HUGE", "valueFrom": {"resourceFieldRef": {"resource": "requests.hugepages-2Mi"}}},
                    {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "log.level", "optional": true}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                ]),
                json!([{"prefix": "CFG_", "configMapRef": {"name": "settings"}}, {"secretRef": {"name": "db", "optional": true}}]),
            ),
            &[],
        );
    }

    #[test]
    fn security_contexts_follow_upstream() {
        let c = "spec.containers[0].securityContext";
        check(
            "",
            "pods",
            pod_of(
                json!({"securityContext": {"runAsGroup": -5, "privileged": true, "allowPrivilegeEscalation": false, "procMount": "Unmasked", "appArmorProfile": {"type": "Localhost"}}}),
                json!({
                    "hostPID": true,
                    "shareProcessNamespace": true,
                    "securityContext": {
                        "runAsUser": -1, "fsGroup": 3000000000_i64, "supplementalGroups": [1, -2],
                        "sysctls": [{"name": "net.core.somaxconn", "value": "1"}, {"name": "Bad_Name", "value": "x"}, {"name": "net.core.somaxconn", "value": "2"}],
                        "fsGroupChangePolicy": "Sometimes", "seccompProfile": {"type": "Localhost"},
                    },
                }),
            ),
            &[
                &format!(
                    "{c}.runAsGroup: Invalid value: -5: must be between 0 and 2147483647, inclusive"
                ),
                &format!(
                    "{c}.procMount: Invalid value: \"Unmasked\": `hostUsers` must be false to use `Unmasked`"
                ),
                &format!(
                    "{c}: Invalid value: core.SecurityContext{{Capabilities:(*core.Capabilities)(nil), Privileged:(*bool)(0xc000000000), SELinuxOptions:(*core.SELinuxOptions)(nil), WindowsOptions:(*core.WindowsSecurityContextOptions)(nil), RunAsUser:(*int64)(nil), RunAsGroup:(*int64)(0xc000000000), RunAsNonRoot:(*bool)(nil), ReadOnlyRootFilesystem:(*bool)(nil), AllowPrivilegeEscalation:(*bool)(0xc000000000), ProcMount:(*core.ProcMountType)(0xc000000000), SeccompProfile:(*core.SeccompProfile)(nil), AppArmorProfile:(*core.AppArmorProfile)(0xc000000000)}}: cannot set `allowPrivilegeEscalation` to false and `privileged` to true"
                ),
                &format!(
                    "{c}.appArmorProfile.localhostProfile: Required value: must be set when AppArmor type is Localhost"
                ),
                "spec.securityContext.fsGroup: Invalid value: 3000000000: must be between 0 and 2147483647, inclusive",
                "spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive",
                "spec.securityContext.supplementalGroups[1]: Invalid value: -2: must be between 0 and 2147483647, inclusive",
                "spec.securityContext.shareProcessNamespace: Invalid value: true: ShareProcessNamespace and HostPID cannot both be enabled",
                "spec.securityContext.sysctls[1].name: Invalid value: \"Bad_Name\": must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
                "spec.securityContext.sysctls[2].name: Duplicate value: \"net.core.somaxconn\"",
                "spec.securityContext.fsGroupChangePolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnRootMismatch\"",
                "spec.securityContext.seccompProfile.localhostProfile: Required value: must be set when seccomp type is Localhost",
            ],
        );
        check(
            "",
            "pods",
            pod_of(
                json!({"securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsUser": 0,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                    "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/audit.json"},
                    "appArmorProfile": {"type": "RuntimeDefault"}}}),
                json!({
                    "initContainers": [{"name": "root", "image": "i", "securityContext": {"privileged": true, "procMount": "Default"}}],
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000],
                        "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"},
                        "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"}, {"name": "kernel.shm_rmid_forced", "value": "0"}]},
                }),
            ),
            &[],
        );
    }

    #[test]
    fn volume_sources_follow_upstream() {
        let v = "spec.volumes";
        check(
            "",
            "pods",
            pod_of(
                json!({"volumeMounts": [{"name": "a", "mountPath": "/a"}, {"name": "ok", "mountPath": "/a", "subPath": "../x"}]}),
                json!({"volumes": [
                    {"name": "a", "hostPath": {"path": "/data/../etc", "type": "Dir"}},
                    {"name": "b", "secret": {"defaultMode": 1000, "items": [{"key": "", "path": "/abs"}, {"key": "k", "path": "..x"}]}},
                    {"name": "c", "configMap": {}, "persistentVolumeClaim": {"claimName": "x"}},
                    {"name": "d", "persistentVolumeClaim": {}},
                    {"name": "e", "nfs": {"server": "", "path": "rel"}},
                    {"name": "f", "emptyDir": {"sizeLimit": "-1Gi"}},
                    {"name": "ok", "emptyDir": {}},
                ]}),
            ),
            &[
                &format!(
                    "{v}[0].hostPath.path: Invalid value: \"/data/../etc\": must not contain '..'"
                ),
                &format!(
                    "{v}[0].hostPath.type: Unsupported value: \"Dir\": supported values: \"\", \"BlockDevice\", \"CharDevice\", \"Directory\", \"DirectoryOrCreate\", \"File\", \"FileOrCreate\", \"Socket\""
                ),
                &format!("{v}[1].secret.secretName: Required value"),
                &format!(
                    "{v}[1].secret.defaultMode: Invalid value: 1000: must be a number between 0 and 0777 (octal), both inclusive"
                ),
                &format!("{v}[1].secret.items[0].key: Required value"),
                &format!(
                    "{v}[1].secret.items[0].path: Invalid value: \"/abs\": must be a relative path"
                ),
                &format!(
                    "{v}[1].secret.items[1].path: Invalid value: \"..x\": must not start with '..'"
                ),
                &format!("{v}[2].configMap: Forbidden: may not specify more than 1 volume type"),
                &format!("{v}[3].persistentVolumeClaim.claimName: Required value"),
                &format!("{v}[4].nfs.server: Required value"),
                &format!("{v}[4].nfs.path: Invalid value: \"rel\": must be an absolute path"),
                &format!(
                    "{v}[5].emptyDir.sizeLimit: Forbidden: SizeLimit field must be a valid resource quantity"
                ),
                // A volume with errors cannot be mounted.
                "spec.containers[0].volumeMounts[0].name: Not found: \"a\"",
                "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/a\": must be unique",
                "spec.containers[0].volumeMounts.subPath: Invalid value: \"../x\": must not contain '..'",
            ],
        );
        check(
            "",
            "pods",
            pod_of(
                json!({"volumeMounts": [{"name": "config", "mountPath": "/etc/app", "readOnly": true}, {"name": "data", "mountPath": "/data", "subPath": "app"},
                    {"name": "cache", "mountPath": "/cache", "subPathExpr": "$(POD_NAME)"}]}),
                json!({"volumes": [
                    {"name": "config", "configMap": {"name": "app", "defaultMode": 420, "items": [{"key": "app.yaml", "path": "conf/app.yaml", "mode": 0o600}]}},
                    {"name": "secret", "secret": {"secretName": "tls", "optional": true}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data", "readOnly": false}},
                    {"name": "host", "hostPath": {"path": "/var/log", "type": "DirectoryOrCreate"}},
                    {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                    {"name": "scratch"},
                    {"name": "share", "nfs": {"server": "nfs.example.com", "path": "/exports"}},
                    {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"name": "all", "projected": {"sources": [{"configMap": {"name": "app"}}, {"serviceAccountToken": {"path": "token"}}]}},
                ]}),
            ),
            &[],
        );
    }
}
