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

/// Remove the unknown fields from `obj`, as upstream's decoding does.
pub fn prune(obj: &mut Value, unknown: &[String]) {
    for path in unknown {
        // `a.b[0].c` as the JSON pointer segments ["a", "b", "0", "c"].
        let mut segments: Vec<String> = Vec::new();
        for piece in path.split('.') {
            let (name, indexes) = match piece.find('[') {
                Some(i) => (&piece[..i], &piece[i..]),
                None => (piece, ""),
            };
            segments.push(name.to_owned());
            segments.extend(
                indexes
                    .split(['[', ']'])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
        let Some((last, parents)) = segments.split_last() else {
            continue;
        };
        let pointer: String = parents
            .iter()
            .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
            .collect();
        if let Some(map) = obj.pointer_mut(&pointer).and_then(Value::as_object_mut) {
            map.remove(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;
    use serde_json::json;

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
