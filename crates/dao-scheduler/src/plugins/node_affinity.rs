//! NodeAffinity: `spec.nodeSelector` (every label equal) and the required node affinity terms
//! must both match; preferred terms add their weights to the node's score (normalized so the
//! best node gets 100).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::Incoming;
use crate::cache::NodeInfo;
use crate::framework::{Code, FilterResult, Plugin, Status};
use crate::selector::{Labels, NodeSelectorTermMatcher, NodeSelectorTerms, preferred_term};

pub(crate) const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// The node selector and required node affinity of a pod.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequiredNodeAffinity {
    node_selector: BTreeMap<String, String>,
    terms: Option<NodeSelectorTerms>,
}

impl RequiredNodeAffinity {
    pub fn from_pod(pod: &Pod) -> Self {
        let spec = pod.spec.as_ref();
        let terms = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(NodeSelectorTerms::from_api);
        RequiredNodeAffinity {
            node_selector: spec
                .and_then(|s| s.node_selector.clone())
                .unwrap_or_default(),
            terms,
        }
    }

    /// Whether every node matches (no node selector, no required terms).
    pub fn is_unconstrained(&self) -> bool {
        self.node_selector.is_empty() && self.terms.is_none()
    }

    /// Whether the node satisfies the selector and the required terms.
    pub fn matches(&self, labels: &Labels, node_name: &str) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self
                .terms
                .as_ref()
                .is_none_or(|t| t.matches(labels, node_name))
    }
}

/// The pod's preferred node affinity terms with their weights.
pub(crate) fn preferred_terms(pod: &Pod) -> Vec<(i64, NodeSelectorTermMatcher)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter_map(|t| preferred_term(t.weight, &t.preference))
        .collect()
}

pub(crate) fn filter(pod: &Incoming<'_>, node: &NodeInfo) -> FilterResult {
    if pod.node_affinity.matches(&node.labels, &node.name) {
        Ok(())
    } else {
        Err(Status::new(
            Plugin::NodeAffinity,
            Code::UnschedulableAndUnresolvable,
            REASON,
        ))
    }
}

/// The raw score: the sum of the weights of the preferred terms the node matches.
pub(crate) fn score(pod: &Incoming<'_>, node: &NodeInfo) -> i64 {
    pod.preferred_node_affinity
        .iter()
        .filter(|(_, t)| t.matches(&node.labels, &node.name))
        .map(|(w, _)| *w)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{cache_with, filter_reasons};
    use crate::testing::{NodeExt, PodExt, node, node_requirement as req, pod};
    use k8s_openapi::api::core::v1::Node;

    fn check(n: Node, p: Pod, fits: bool) {
        let cache = cache_with(std::slice::from_ref(&n), &[]);
        let expected: &[&str] = if fits { &[] } else { &[REASON] };
        assert_eq!(filter_reasons(&cache, &p, "n1"), expected, "{p:?} on {n:?}");
    }

    #[test]
    fn filter_table() {
        let n = || {
            node("n1", "4", "8Gi", 110)
                .label("zone", "a")
                .label("disk", "ssd")
                .label("cores", "16")
        };
        let p = || pod("default", "p", "", "");
        check(n(), p(), true);
        check(n(), p().node_selector("zone", "a"), true);
        check(
            n(),
            p().node_selector("zone", "a").node_selector("disk", "ssd"),
            true,
        );
        check(n(), p().node_selector("zone", "b"), false);
        check(
            n(),
            p().node_selector("zone", "a").node_selector("gpu", "yes"),
            false,
        );
        check(
            n(),
            p().required_node_term(vec![req("zone", "In", &["a", "b"])]),
            true,
        );
        check(
            n(),
            p().required_node_term(vec![req("zone", "NotIn", &["a"])]),
            false,
        );
        check(
            n(),
            p().required_node_term(vec![req("gpu", "NotIn", &["yes"])]),
            true,
        );
        check(
            n(),
            p().required_node_term(vec![req("gpu", "Exists", &[])]),
            false,
        );
        check(
            n(),
            p().required_node_term(vec![req("gpu", "DoesNotExist", &[])]),
            true,
        );
        check(
            n(),
            p().required_node_term(vec![req("cores", "Gt", &["8"])]),
            true,
        );
        check(
            n(),
            p().required_node_term(vec![req("cores", "Lt", &["8"])]),
            false,
        );
        // Terms are ORed, expressions ANDed.
        check(
            n(),
            p().required_node_term(vec![req("zone", "In", &["b"])])
                .required_node_term(vec![req("disk", "In", &["ssd"])]),
            true,
        );
        check(
            n(),
            p().required_node_term(vec![req("zone", "In", &["a"]), req("disk", "In", &["hdd"])]),
            false,
        );
        // Selector and affinity must both hold.
        check(
            n(),
            p().node_selector("zone", "b")
                .required_node_term(vec![req("zone", "In", &["a"])]),
            false,
        );
    }

    #[test]
    fn match_fields_on_name() {
        use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorTerm};
        let mut p = pod("default", "p", "", "");
        p.spec.as_mut().unwrap().affinity = Some(k8s_openapi::api::core::v1::Affinity {
            node_affinity: Some(k8s_openapi::api::core::v1::NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: None,
                        match_fields: Some(vec![req("metadata.name", "In", &["n1"])]),
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        check(node("n1", "1", "1Gi", 10), p.clone(), true);
        let cache = cache_with(&[node("n2", "1", "1Gi", 10)], &[]);
        assert_eq!(filter_reasons(&cache, &p, "n2"), [REASON]);
    }

    #[test]
    fn score_sums_matching_weights() {
        let cache = cache_with(
            &[node("n1", "4", "8Gi", 110)
                .label("zone", "a")
                .label("disk", "ssd")],
            &[],
        );
        let p = pod("default", "p", "", "")
            .preferred_node_term(10, vec![req("zone", "In", &["a"])])
            .preferred_node_term(5, vec![req("disk", "In", &["ssd"])])
            .preferred_node_term(7, vec![req("gpu", "Exists", &[])])
            .preferred_node_term(0, vec![req("zone", "In", &["a"])]);
        assert_eq!(score(&Incoming::new(&p), &cache.nodes[0]), 15);
    }
}
