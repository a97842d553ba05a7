//! Typed decoding of request bodies through k8s-openapi's v1.33 types: a field of the wrong
//! type is a decoding error, and the fields the type does not know are the ones its decoder
//! skips (k8s-openapi ignores unknown keys; `serde_ignored` reports each with its path).

use serde_json::Value;

use crate::registry::Resource;

/// Decode `obj` as the resource's k8s-openapi type, recording the fields the type ignores
/// (unknown fields) into `unknown`. `None`: the kind has no typed form here.
fn check(res: &Resource, obj: &Value, unknown: &mut Vec<String>) -> Option<Result<(), String>> {
    macro_rules! types {
        ($($group:literal $version:literal $kind:literal => $ty:ty),* $(,)?) => {
            match (res.group, res.version, res.kind) {
                $(($group, $version, $kind) => Some(
                    serde_ignored::deserialize(obj, |path| unknown.push(upstream_path(&path)))
                        .map(|_: $ty| ())
                        .map_err(|e: serde_json::Error| e.to_string()),
                ),)*
                _ => None,
            }
        };
    }
    crate::registry::kind_types!(types)
}

/// What decoding found.
pub struct Decoded {
    /// Paths of fields the type does not have, in upstream's notation
    /// (`spec.template.spec.containers[0].imagee`).
    pub unknown: Vec<String>,
}

/// A field path in upstream's notation: `spec.containers[0].imagee`.
fn upstream_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", upstream_path(parent)),
        Path::Map { parent, key } => match upstream_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => upstream_path(parent),
    }
}

/// Decode `obj` (which carries `apiVersion` and `kind`) as its type, in one pass over the
/// JSON value (no copy, no re-encoding). `Err` is upstream's message for a body that does not
/// decode.
pub fn decode(res: &Resource, obj: &Value) -> Result<Decoded, String> {
    let mut unknown = Vec::new();
    let Some(result) = check(res, obj, &mut unknown) else {
        return Ok(Decoded {
            unknown: Vec::new(),
        });
    };
    result.map_err(|e| {
        format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}",
            kind = res.kind,
            version = res.version
        )
    })?;
    Ok(Decoded { unknown })
}

/// A raw JSON key (between its quotes) as text, escapes resolved.
fn key_text(raw: &[u8]) -> String {
    if raw.contains(&b'\\') {
        let mut quoted = Vec::with_capacity(raw.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(raw);
        quoted.push(b'"');
        if let Ok(s) = serde_json::from_slice::<String>(&quoted) {
            return s;
        }
    }
    String::from_utf8_lossy(raw).into_owned()
}

/// A step of a path into a JSON body.
#[derive(Clone)]
enum Seg<'a> {
    Key(std::borrow::Cow<'a, str>),
    Index(usize),
}

/// A raw key as text, borrowed unless it has escapes.
fn key_cow(raw: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(raw) {
        Ok(s) if !raw.contains(&b'\\') => std::borrow::Cow::Borrowed(s),
        _ => std::borrow::Cow::Owned(key_text(raw)),
    }
}

/// `spec.template.spec.containers[0].name`.
fn render(stack: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in stack {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Records the repeated keys under the value at `b[at]`. Paths are rendered only for the
/// repeats, so a body without any costs a scan and no allocation per field.
fn walk_duplicates<'a>(
    b: &'a [u8],
    at: usize,
    stack: &mut Vec<Seg<'a>>,
    out: &mut Vec<(usize, String)>,
) {
    match b.get(at) {
        Some(b'{') => {
            let Some(fields) = crate::api::scan::fields(b, at) else {
                return;
            };
            let many = fields.len() > 32;
            let mut seen_small: Vec<std::borrow::Cow<'a, str>> = Vec::new();
            let mut seen_many = std::collections::HashSet::new();
            for (raw, range) in fields {
                let key = key_cow(raw);
                let repeated = if many {
                    !seen_many.insert(key.clone())
                } else if seen_small.contains(&key) {
                    true
                } else {
                    seen_small.push(key.clone());
                    false
                };
                stack.push(Seg::Key(key));
                walk_duplicates(b, range.start, stack, out);
                if repeated {
                    out.push((range.start, render(stack)));
                }
                stack.pop();
            }
        }
        Some(b'[') => {
            for (i, start) in crate::api::scan::elements(b, at)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                stack.push(Seg::Index(i));
                walk_duplicates(b, start, stack, out);
                stack.pop();
            }
        }
        _ => {}
    }
}

/// The fields a JSON body gives more than once, with their paths in upstream's notation
/// (`spec.replicas`, `spec.template.spec.containers[0].name`) and where in the body the
/// repeat stands, in the order of the body. A body that is not well-formed JSON has none
/// (it was parsed before this runs).
pub fn duplicate_fields(body: &[u8]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let start = crate::api::scan::skip_ws(body, 0);
    walk_duplicates(body, start, &mut Vec::new(), &mut out);
    out.sort_by_key(|(at, _)| *at);
    out
}

/// The steps of a path in upstream's notation, `a.b[0].c`: each field name with the list
/// indexes that follow it (`("b", ["0"])`).
fn path_pieces(path: &str) -> impl Iterator<Item = (&str, impl Iterator<Item = &str>)> {
    path.split('.').map(|piece| {
        let (name, indexes) = match piece.find('[') {
            Some(i) => (&piece[..i], &piece[i..]),
            None => (piece, ""),
        };
        (name, indexes.split(['[', ']']).filter(|s| !s.is_empty()))
    })
}

/// Where in a JSON body the field at `path` (upstream's notation) starts; for ordering
/// field errors as the body orders them.
pub fn field_offset(body: &[u8], path: &str) -> Option<usize> {
    let mut at = crate::api::scan::skip_ws(body, 0);
    for (name, indexes) in path_pieces(path) {
        at = crate::api::scan::fields(body, at)?
            .into_iter()
            .find(|(raw, _)| key_text(raw) == name)?
            .1
            .start;
        for index in indexes {
            at = *crate::api::scan::elements(body, at)?.get(index.parse::<usize>().ok()?)?;
        }
    }
    Some(at)
}

/// Remove the unknown fields from `obj`, as upstream's decoding does.
pub fn prune(obj: &mut Value, unknown: &[String]) {
    for path in unknown {
        // `a.b[0].c` as the JSON pointer segments ["a", "b", "0", "c"].
        let mut segments: Vec<&str> = Vec::new();
        for (name, indexes) in path_pieces(path) {
            segments.push(name);
            segments.extend(indexes);
        }
        let Some((last, parents)) = segments.split_last() else {
            continue;
        };
        let pointer: String = parents
            .iter()
            .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
            .collect();
        if let Some(map) = obj.pointer_mut(&pointer).and_then(Value::as_object_mut) {
            map.remove(*last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;
    use serde_json::json;

    #[test]
    fn duplicate_fields_in_body_order() {
        let body = br#"{"kind":"Deployment","spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"a","image":"x","name":"b"}]}},"replicas":2},"kind":"D","meta\u0064ata":{},"metadata":{}}"#;
        let found: Vec<String> = super::duplicate_fields(body)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert_eq!(
            found,
            [
                "spec.template.spec.containers[0].name",
                "spec.replicas",
                "kind",
                "metadata"
            ]
        );
        assert!(
            super::duplicate_fields(br#"{"a":{"b":1},"c":{"b":2},"d":[{"x":1},{"x":2}]}"#)
                .is_empty()
        );
        let at = super::field_offset(body, "spec.template.spec.containers[0].image").unwrap();
        assert_eq!(&body[at..at + 3], br#""x""#);
        assert_eq!(super::field_offset(body, "spec.nope"), None);
    }

    #[test]
    fn unknown_and_wrong_type_fields() {
        let cm = registry::find("", "v1", "configmaps").unwrap();
        let ok = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {}}, "data": {"k": "v"}});
        assert!(decode(cm, &ok).unwrap().unknown.is_empty());
        let unknown =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "foo": 1});
        assert_eq!(decode(cm, &unknown).unwrap().unknown, ["foo"]);
        let wrong = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": 1}});
        let err = decode(cm, &wrong).err().unwrap();
        assert!(
            err.starts_with("ConfigMap in version \"v1\" cannot be handled as a ConfigMap: "),
            "{err}"
        );

        let deploy = registry::find("apps", "v1", "deployments").unwrap();
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i", "imagee": "typo", "ports": [{"containerPort": 80}]}]}}}});
        let found = decode(deploy, &d).unwrap().unknown;
        assert_eq!(found, ["spec.template.spec.containers[0].imagee"]);
        prune(&mut d, &found);
        assert!(
            d.pointer("/spec/template/spec/containers/0/imagee")
                .is_none()
        );
        assert_eq!(
            d.pointer("/spec/template/spec/containers/0/image").unwrap(),
            "i"
        );
    }
}
