//! Label and field selectors, parsed from query strings and matched against JSON objects.
//! (No IO here: this moves to a bottom `dao-core` crate when a second user needs it.)

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl LabelSelector {
    /// Parse upstream's selector syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
    /// `a notin (x,y)`, `a`, `!a`, joined by commas.
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top_level(input) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(part)?);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| {
            let v = labels.get(&r.key);
            match &r.op {
                Op::Eq(x) => v == Some(x),
                Op::NotEq(x) => v != Some(x),
                Op::In(xs) => v.is_some_and(|v| xs.contains(v)),
                Op::NotIn(xs) => v.is_none_or(|v| !xs.contains(v)),
                Op::Exists => v.is_some(),
                Op::NotExists => v.is_none(),
            }
        })
    }

    /// Match against an object's `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let labels: BTreeMap<String, String> = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        self.matches(&labels)
    }
}

/// Split on commas that are not inside parentheses.
fn split_top_level(input: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&input[start..]);
    parts
}

fn check_key(key: &str) -> Result<String, String> {
    let key = key.trim();
    let valid = !key.is_empty()
        && key.len() <= 316
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(format!(
            "unable to parse requirement: invalid label key \"{key}\""
        ))
    }
}

fn parse_set(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("found '{rest}', expected: '('"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect())
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement {
            key: check_key(key)?,
            op: Op::NotExists,
        });
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement {
            key: check_key(k)?,
            op: Op::NotEq(v.trim().to_owned()),
        });
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement {
            key: check_key(k)?,
            op: Op::Eq(v.trim().to_owned()),
        });
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let rest = words[1].trim_start();
        if let Some(set) = rest.strip_prefix("notin") {
            return Ok(Requirement {
                key: check_key(words[0])?,
                op: Op::NotIn(parse_set(set)?),
            });
        }
        if let Some(set) = rest.strip_prefix("in") {
            return Ok(Requirement {
                key: check_key(words[0])?,
                op: Op::In(parse_set(set)?),
            });
        }
        return Err(format!(
            "unable to parse requirement: found '{rest}', expected: in, notin, =, ==, !=, gt, lt"
        ));
    }
    Ok(Requirement {
        key: check_key(part)?,
        op: Op::Exists,
    })
}

/// A JSON `map[string]string` (labels) as the matchers take it; absent is empty.
pub fn string_map(m: Option<&Value>) -> BTreeMap<String, String> {
    m.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// Whether a `metav1.LabelSelector` (`{matchLabels, matchExpressions}`) selects `labels`,
/// through its query-string form, so one matcher serves both forms. A selector that does not
/// parse selects nothing.
pub fn label_selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    LabelSelector::parse(&format_label_selector(Some(selector))).is_ok_and(|s| s.matches(labels))
}

/// A `metav1.LabelSelector` (`{matchLabels, matchExpressions}`) in the query-string form
/// upstream prints it in: `a=b,c in (x,y),!d`. An empty selector prints as "".
pub fn format_label_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return String::new();
    };
    let mut parts: Vec<String> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    for expr in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = expr.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = expr
            .get("values")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        parts.push(
            match expr.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.to_owned(),
                "DoesNotExist" => format!("!{key}"),
                other => format!("{key} {other} ({})", values.join(",")),
            },
        );
    }
    parts.join(",")
}

/// A parsed field selector: `path=value`, `path==value`, `path!=value`, joined by commas.
#[derive(Clone, Debug, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                ));
            };
            reqs.push((field.trim().to_owned(), equal, value.trim().to_owned()));
        }
        Ok(FieldSelector(reqs))
    }

    /// The value a field selector compares for `field` ("metadata.name", "spec.nodeName",
    /// "involvedObject.kind", ...): a missing field compares as "".
    fn field_value(obj: &Value, field: &str) -> String {
        let mut v = obj;
        for part in field.split('.') {
            match v.get(part) {
                Some(next) => v = next,
                None => return String::new(),
            }
        }
        match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        }
    }

    /// The fields compared, as dotted paths.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(field, _, _)| field.as_str())
    }

    pub fn matches_object(&self, obj: &Value) -> bool {
        self.0
            .iter()
            .all(|(field, equal, value)| (Self::field_value(obj, field) == *value) == *equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_table() {
        let check = |sel: &str, l: &[(&str, &str)], expected: bool| {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&labels(l)), expected, "{sel} on {l:?}");
        };
        check("", &[], true);
        check("app=web", &[("app", "web")], true);
        check("app==web", &[("app", "db")], false);
        check("app!=web", &[], true);
        check("app!=web", &[("app", "web")], false);
        check("app in (web, db)", &[("app", "db")], true);
        check("app in (web,db)", &[], false);
        check("app notin (web,db)", &[], true);
        check("app notin (web,db)", &[("app", "web")], false);
        check("app", &[("app", "x")], true);
        check("!app", &[("app", "x")], false);
        check(
            "app=web,tier in (fe),!canary",
            &[("app", "web"), ("tier", "fe")],
            true,
        );
        check("example.com/role=x", &[("example.com/role", "x")], true);
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a b c").is_err());
        assert!(LabelSelector::parse("bad key=x").is_err());
    }

    #[test]
    fn label_selector_formatting() {
        let check = |sel: serde_json::Value, expected: &str| {
            assert_eq!(format_label_selector(Some(&sel)), expected, "{sel}");
        };
        check(serde_json::json!({}), "");
        check(
            serde_json::json!({"matchLabels": {"app": "web", "tier": "fe"}}),
            "app=web,tier=fe",
        );
        check(
            serde_json::json!({"matchLabels": {"app": "web"}, "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["a", "b"]},
                {"key": "x", "operator": "NotIn", "values": ["c"]},
                {"key": "y", "operator": "Exists"},
                {"key": "z", "operator": "DoesNotExist"}]}),
            "app=web,env in (a,b),x notin (c),y,!z",
        );
        assert_eq!(format_label_selector(None), "");
    }

    #[test]
    fn field_selector_table() {
        let obj = serde_json::json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let check = |sel: &str, expected: bool| {
            assert_eq!(
                FieldSelector::parse(sel).unwrap().matches_object(&obj),
                expected,
                "{sel}"
            );
        };
        check("metadata.name=a", true);
        check("metadata.name!=a", false);
        check("metadata.namespace==ns,spec.nodeName=n1", true);
        check("status.phase=Pending", false);
        check("spec.missing=", true);
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
