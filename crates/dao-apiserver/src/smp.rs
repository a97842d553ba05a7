//! Strategic merge patch, as kubectl sends it for `apply`, `edit`, `label`, `set image` and
//! `scale`: a JSON merge patch in which lists of objects merge element by element on a merge
//! key (containers by `name`, container ports by `containerPort`, volume mounts by
//! `mountPath`, ...) and some lists of strings merge as sets (`finalizers`), with the
//! `$patch`, `$deleteFromPrimitiveList` and `$setElementOrder` directives.
//!
//! The merge keys come from upstream's API types (`patchMergeKey` tags); this table holds the
//! ones the built-in kinds use. No crate implements strategic merge for Rust.

use serde_json::{Map, Value};

/// The merge key of a list field, given the field name and a sample element.
fn merge_key(field: &str, sample: &Map<String, Value>) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "readinessGates"
        | "resourceClaims" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "hostAliases" => Some("ip"),
        "ownerReferences" => Some("uid"),
        "conditions" => Some("type"),
        "taints" => Some("key"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "ports" if sample.contains_key("containerPort") => Some("containerPort"),
        "ports" if sample.contains_key("port") => Some("port"),
        _ => None,
    }
}

/// Lists of scalars that merge as sets.
fn is_set_list(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Apply `patch` to `target` in place.
pub fn apply(target: &mut Value, patch: &Value) {
    merge_value(target, patch, "");
}

fn merge_value(target: &mut Value, patch: &Value, field: &str) {
    match patch {
        Value::Object(p) => merge_object(target, p),
        Value::Array(items) => merge_list(target, items, field),
        other => *target = other.clone(),
    }
}

fn without_directives(p: &Map<String, Value>) -> Value {
    Value::Object(
        p.iter()
            .filter(|(k, _)| !k.starts_with('$'))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

fn merge_object(target: &mut Value, patch: &Map<String, Value>) {
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = without_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let obj = target.as_object_mut().expect("just made an object");
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (obj.get_mut(field), v.as_array()) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            // $setElementOrder/..., $retainKeys, $patch: order and retention hints only.
            continue;
        }
        if v.is_null() {
            obj.remove(k);
            continue;
        }
        let slot = obj.entry(k.clone()).or_insert(Value::Null);
        merge_value(slot, v, k);
    }
}

fn merge_list(target: &mut Value, items: &[Value], field: &str) {
    let sample = items.iter().find_map(Value::as_object);
    let key = sample.and_then(|s| merge_key(field, s));
    if let Some(key) = key {
        if !target.is_array() {
            *target = Value::Array(Vec::new());
        }
        let list = target.as_array_mut().expect("just made an array");
        for item in items {
            let Some(p) = item.as_object() else { continue };
            if p.get("$patch").and_then(Value::as_str) == Some("replace") {
                *target = Value::Array(
                    items
                        .iter()
                        .map(|i| i.as_object().map_or(i.clone(), without_directives))
                        .collect(),
                );
                return;
            }
            let id = p.get(key);
            let position = list.iter().position(|e| e.get(key) == id && id.is_some());
            if p.get("$patch").and_then(Value::as_str) == Some("delete") {
                if let Some(i) = position {
                    list.remove(i);
                }
                continue;
            }
            match position {
                Some(i) => merge_object(&mut list[i], p),
                None => list.push(without_directives(p)),
            }
        }
    } else if is_set_list(field) {
        if !target.is_array() {
            *target = Value::Array(Vec::new());
        }
        let list = target.as_array_mut().expect("just made an array");
        for item in items {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
    } else {
        *target = Value::Array(items.to_vec());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn check(target: serde_json::Value, patch: serde_json::Value, expected: serde_json::Value) {
        let mut t = target.clone();
        super::apply(&mut t, &patch);
        assert_eq!(t, expected, "patch {patch} on {target}");
    }

    #[test]
    fn strategic_merge_table() {
        // Maps merge; null deletes.
        check(
            json!({"a": 1, "b": {"c": 2, "d": 3}}),
            json!({"b": {"c": null, "e": 4}}),
            json!({"a": 1, "b": {"d": 3, "e": 4}}),
        );
        // Containers merge by name: kubectl set image.
        check(
            json!({"containers": [{"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}]}, {"name": "side", "image": "x"}]}),
            json!({"containers": [{"name": "web", "image": "nginx:2"}]}),
            json!({"containers": [{"name": "web", "image": "nginx:2", "ports": [{"containerPort": 80}]}, {"name": "side", "image": "x"}]}),
        );
        // New elements are appended; $patch: delete removes.
        check(
            json!({"env": [{"name": "A", "value": "1"}]}),
            json!({"env": [{"name": "B", "value": "2"}, {"name": "A", "$patch": "delete"}]}),
            json!({"env": [{"name": "B", "value": "2"}]}),
        );
        // Container ports by containerPort, service ports by port.
        check(
            json!({"ports": [{"containerPort": 80, "name": "http"}]}),
            json!({"ports": [{"containerPort": 80, "protocol": "TCP"}]}),
            json!({"ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}]}),
        );
        check(
            json!({"ports": [{"port": 80, "targetPort": 8080}]}),
            json!({"ports": [{"port": 443}]}),
            json!({"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}),
        );
        // Lists without a merge key are replaced.
        check(
            json!({"args": ["a", "b"]}),
            json!({"args": ["c"]}),
            json!({"args": ["c"]}),
        );
        // Finalizers merge as a set; $deleteFromPrimitiveList removes.
        check(
            json!({"finalizers": ["a"]}),
            json!({"finalizers": ["b", "a"]}),
            json!({"finalizers": ["a", "b"]}),
        );
        check(
            json!({"finalizers": ["a", "b"]}),
            json!({"$deleteFromPrimitiveList/finalizers": ["a"]}),
            json!({"finalizers": ["b"]}),
        );
        // $patch: replace on a map; $setElementOrder is ignored.
        check(
            json!({"m": {"a": 1}}),
            json!({"m": {"b": 2, "$patch": "replace"}}),
            json!({"m": {"b": 2}}),
        );
        check(
            json!({"containers": [{"name": "a"}]}),
            json!({"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "a", "image": "i"}]}),
            json!({"containers": [{"name": "a", "image": "i"}]}),
        );
    }
}
