//! Label selectors (`metav1.LabelSelector`) and node selector terms (`v1.NodeSelectorTerm`),
//! parsed once and matched many times.
//!
//! Semantics follow the API: a missing label selector selects nothing, an empty one everything;
//! `matchLabels` entries are equalities; `NotIn` and `DoesNotExist` match objects without the
//! key. A selector with a malformed requirement (unknown operator, `In` without values, `Exists`
//! with values) selects nothing, as upstream's conversion would have failed.
//!
//! Node selector terms are ORed; inside a term, `matchExpressions` (on labels) and `matchFields`
//! (only `metadata.name`) are ANDed; a term with neither matches nothing. `Gt` and `Lt` compare a
//! label's integer value with the single integer given.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match (self.op, value) {
            (Op::In, Some(v)) => self.values.iter().any(|x| x == v),
            (Op::In, None) => false,
            (Op::NotIn, Some(v)) => !self.values.iter().any(|x| x == v),
            (Op::NotIn, None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt | Op::Lt, None) => false,
            (op @ (Op::Gt | Op::Lt), Some(v)) => {
                let (Ok(have), Some(Ok(want))) = (
                    v.parse::<i64>(),
                    self.values.first().map(|w| w.parse::<i64>()),
                ) else {
                    return false;
                };
                if op == Op::Gt {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }

    /// Parses one requirement; `None` if malformed. `Gt`/`Lt` only where `numeric` allows.
    fn parse(
        key: &str,
        operator: &str,
        values: Option<&Vec<String>>,
        numeric: bool,
    ) -> Option<Self> {
        let values = values.cloned().unwrap_or_default();
        let op = match operator {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" if numeric => Op::Gt,
            "Lt" if numeric => Op::Lt,
            _ => return None,
        };
        let well_formed = match op {
            Op::In | Op::NotIn => !values.is_empty(),
            Op::Exists | Op::DoesNotExist => values.is_empty(),
            Op::Gt | Op::Lt => values.len() == 1 && values[0].parse::<i64>().is_ok(),
        };
        well_formed.then(|| Requirement {
            key: key.to_owned(),
            op,
            values,
        })
    }
}

/// A parsed label selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
    /// Selects no object at all (missing or malformed selector).
    nothing: bool,
}

impl Selector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Selector {
            requirements: Vec::new(),
            nothing: false,
        }
    }

    /// The selector that matches no object.
    pub fn nothing() -> Self {
        Selector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Converts an API label selector; `None` selects nothing.
    pub fn from_api(selector: Option<&LabelSelector>) -> Self {
        let Some(s) = selector else {
            return Selector::nothing();
        };
        let mut requirements = Vec::new();
        for (k, v) in s.match_labels.iter().flatten() {
            requirements.push(Requirement {
                key: k.clone(),
                op: Op::In,
                values: vec![v.clone()],
            });
        }
        for e in s.match_expressions.iter().flatten() {
            match Requirement::parse(&e.key, &e.operator, e.values.as_ref(), false) {
                Some(r) => requirements.push(r),
                None => return Selector::nothing(),
            }
        }
        Selector {
            requirements,
            nothing: false,
        }
    }

    /// Adds `key in (value)` (used for `matchLabelKeys`).
    pub fn require_equal(&mut self, key: &str, value: &str) {
        self.requirements.push(Requirement {
            key: key.to_owned(),
            op: Op::In,
            values: vec![value.to_owned()],
        });
    }

    /// Adds `key notin (value)` (used for `mismatchLabelKeys`).
    pub fn require_not_equal(&mut self, key: &str, value: &str) {
        self.requirements.push(Requirement {
            key: key.to_owned(),
            op: Op::NotIn,
            values: vec![value.to_owned()],
        });
    }

    /// Adds every requirement of `other` (both must hold).
    pub fn and(&mut self, other: &Selector) {
        self.nothing |= other.nothing;
        self.requirements.extend(other.requirements.iter().cloned());
    }

    /// Whether the selector has no requirements and selects everything (upstream's `Empty()`).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether the selector selects no object at all (missing or malformed).
    pub fn selects_nothing(&self) -> bool {
        self.nothing
    }

    /// The `key=value` pairs every selected object must carry (`matchLabels` entries and
    /// single-valued `In` requirements), in requirement order.
    pub fn equalities(&self) -> impl Iterator<Item = (&str, &str)> {
        self.requirements
            .iter()
            .filter_map(|r| match (r.op, r.values.as_slice()) {
                (Op::In, [v]) => Some((r.key.as_str(), v.as_str())),
                _ => None,
            })
    }

    /// Whether the selector is one `key=value` requirement and nothing else: exactly the
    /// objects of that label's posting list.
    pub fn is_one_equality(&self) -> bool {
        !self.nothing && self.requirements.len() == 1 && self.equalities().next().is_some()
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        !self.nothing
            && self
                .requirements
                .iter()
                .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
    }
}

/// One parsed node selector term.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    expressions: Vec<Requirement>,
    /// Requirements on `metadata.name`.
    fields: Vec<Requirement>,
}

impl Term {
    /// `None` when the term can match nothing (empty or malformed).
    fn parse(t: &NodeSelectorTerm) -> Option<Self> {
        let exprs = t.match_expressions.as_deref().unwrap_or_default();
        let fields = t.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return None;
        }
        let parse_all = |reqs: &[NodeSelectorRequirement]| -> Option<Vec<Requirement>> {
            reqs.iter()
                .map(|r| Requirement::parse(&r.key, &r.operator, r.values.as_ref(), true))
                .collect()
        };
        let expressions = parse_all(exprs)?;
        let fields = parse_all(fields)?;
        if fields.iter().any(|f| f.key != "metadata.name") {
            return None;
        }
        Some(Term {
            expressions,
            fields,
        })
    }

    fn matches(&self, labels: &Labels, node_name: &str) -> bool {
        self.expressions
            .iter()
            .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
            && self.fields.iter().all(|r| r.matches(Some(node_name)))
    }
}

/// Parsed `nodeSelectorTerms`: a node matches if any term matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSelectorTerms {
    terms: Vec<Term>,
}

impl NodeSelectorTerms {
    /// Parses a required node selector; empty, malformed terms are dropped (they match nothing).
    pub fn from_api(selector: &NodeSelector) -> Self {
        NodeSelectorTerms {
            terms: selector
                .node_selector_terms
                .iter()
                .filter_map(Term::parse)
                .collect(),
        }
    }

    /// Whether the node (labels and name) matches any term.
    pub fn matches(&self, labels: &Labels, node_name: &str) -> bool {
        self.terms.iter().any(|t| t.matches(labels, node_name))
    }
}

/// A weighted preferred node selector term; `None` for terms that can match nothing.
pub fn preferred_term(
    weight: i32,
    term: &NodeSelectorTerm,
) -> Option<(i64, NodeSelectorTermMatcher)> {
    if weight == 0 {
        return None;
    }
    Term::parse(term).map(|t| (i64::from(weight), NodeSelectorTermMatcher(t)))
}

/// One node selector term on its own (for preferred terms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSelectorTermMatcher(Term);

impl NodeSelectorTermMatcher {
    /// Whether the node matches the term.
    pub fn matches(&self, labels: &Labels, node_name: &str) -> bool {
        self.0.matches(labels, node_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    fn check(selector: Option<LabelSelector>, object: &[(&str, &str)], expected: bool) {
        let s = Selector::from_api(selector.as_ref());
        assert_eq!(
            s.matches(&labels(object)),
            expected,
            "{selector:?} on {object:?}"
        );
    }

    #[test]
    fn label_selector_table() {
        let by_labels = |pairs: &[(&str, &str)]| LabelSelector {
            match_labels: Some(labels(pairs)),
            ..Default::default()
        };
        let by_exprs = |e: Vec<LabelSelectorRequirement>| LabelSelector {
            match_expressions: Some(e),
            ..Default::default()
        };
        check(None, &[("a", "1")], false);
        check(Some(LabelSelector::default()), &[], true);
        check(Some(LabelSelector::default()), &[("a", "1")], true);
        check(
            Some(by_labels(&[("a", "1")])),
            &[("a", "1"), ("b", "2")],
            true,
        );
        check(Some(by_labels(&[("a", "1")])), &[("a", "2")], false);
        check(
            Some(by_labels(&[("a", "1"), ("b", "2")])),
            &[("a", "1")],
            false,
        );
        check(
            Some(by_exprs(vec![expr("a", "In", &["1", "2"])])),
            &[("a", "2")],
            true,
        );
        check(
            Some(by_exprs(vec![expr("a", "In", &["1", "2"])])),
            &[],
            false,
        );
        check(Some(by_exprs(vec![expr("a", "NotIn", &["1"])])), &[], true);
        check(
            Some(by_exprs(vec![expr("a", "NotIn", &["1"])])),
            &[("a", "1")],
            false,
        );
        check(
            Some(by_exprs(vec![expr("a", "Exists", &[])])),
            &[("a", "")],
            true,
        );
        check(Some(by_exprs(vec![expr("a", "Exists", &[])])), &[], false);
        check(
            Some(by_exprs(vec![expr("a", "DoesNotExist", &[])])),
            &[],
            true,
        );
        check(
            Some(by_exprs(vec![expr("a", "DoesNotExist", &[])])),
            &[("a", "x")],
            false,
        );
        // Malformed requirements select nothing.
        check(
            Some(by_exprs(vec![expr("a", "In", &[])])),
            &[("a", "1")],
            false,
        );
        check(
            Some(by_exprs(vec![expr("a", "Exists", &["1"])])),
            &[("a", "1")],
            false,
        );
        check(
            Some(by_exprs(vec![expr("a", "Gt", &["1"])])),
            &[("a", "2")],
            false,
        );
        check(
            Some(by_exprs(vec![expr("a", "Bogus", &[])])),
            &[("a", "1")],
            false,
        );
    }

    fn node_expr(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    fn check_terms(terms: Vec<NodeSelectorTerm>, node: &[(&str, &str)], expected: bool) {
        let t = NodeSelectorTerms::from_api(&NodeSelector {
            node_selector_terms: terms.clone(),
        });
        assert_eq!(
            t.matches(&labels(node), "node-1"),
            expected,
            "{terms:?} on {node:?}"
        );
    }

    #[test]
    fn node_selector_table() {
        let term = |e: Vec<NodeSelectorRequirement>| NodeSelectorTerm {
            match_expressions: Some(e),
            match_fields: None,
        };
        let fields = |e: Vec<NodeSelectorRequirement>| NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(e),
        };
        check_terms(vec![], &[("a", "1")], false);
        check_terms(vec![NodeSelectorTerm::default()], &[("a", "1")], false);
        check_terms(
            vec![term(vec![node_expr("a", "In", &["1"])])],
            &[("a", "1")],
            true,
        );
        // Expressions in a term are ANDed.
        check_terms(
            vec![term(vec![
                node_expr("a", "In", &["1"]),
                node_expr("b", "Exists", &[]),
            ])],
            &[("a", "1")],
            false,
        );
        // Terms are ORed; an empty term does not spoil the others.
        check_terms(
            vec![
                NodeSelectorTerm::default(),
                term(vec![node_expr("b", "Exists", &[])]),
            ],
            &[("b", "")],
            true,
        );
        check_terms(
            vec![term(vec![node_expr("cores", "Gt", &["4"])])],
            &[("cores", "8")],
            true,
        );
        check_terms(
            vec![term(vec![node_expr("cores", "Gt", &["8"])])],
            &[("cores", "8")],
            false,
        );
        check_terms(
            vec![term(vec![node_expr("cores", "Lt", &["8"])])],
            &[("cores", "4")],
            true,
        );
        check_terms(
            vec![term(vec![node_expr("cores", "Lt", &["8"])])],
            &[("cores", "x")],
            false,
        );
        check_terms(
            vec![term(vec![node_expr("cores", "Lt", &["8"])])],
            &[],
            false,
        );
        check_terms(
            vec![term(vec![node_expr("cores", "Lt", &["8", "9"])])],
            &[("cores", "4")],
            false,
        );
        check_terms(
            vec![fields(vec![node_expr("metadata.name", "In", &["node-1"])])],
            &[],
            true,
        );
        check_terms(
            vec![fields(vec![node_expr("metadata.name", "In", &["node-2"])])],
            &[],
            false,
        );
        check_terms(
            vec![fields(vec![node_expr(
                "metadata.name",
                "NotIn",
                &["node-2"],
            )])],
            &[],
            true,
        );
        check_terms(
            vec![fields(vec![node_expr("metadata.uid", "In", &["node-1"])])],
            &[],
            false,
        );
    }

    #[test]
    fn extra_requirements() {
        let mut s = Selector::everything();
        assert!(s.is_empty());
        s.require_equal("app", "web");
        s.require_not_equal("rev", "1");
        assert!(!s.is_empty());
        assert!(s.matches(&labels(&[("app", "web"), ("rev", "2")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("rev", "1")])));
        assert!(!Selector::nothing().is_empty());
    }
}
