//! TaintToleration: a node's `NoSchedule` and `NoExecute` taints keep out pods that do not
//! tolerate them; `PreferNoSchedule` taints only lower the node's score.
//!
//! A toleration matches a taint when its effect is empty or equal, its key is empty or equal,
//! and either the operator is `Exists` or (`Equal`, the default) the values are equal. The
//! filter reports the first untolerated taint as `{key: value}`, as upstream v1.33 does. The
//! score counts untolerated `PreferNoSchedule` taints (only tolerations with an empty or
//! `PreferNoSchedule` effect count) and is normalized in reverse: fewer is better.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::Incoming;
use crate::cache::NodeInfo;
use crate::framework::{Code, FilterResult, Plugin, Status};

/// Whether one toleration matches one taint.
pub(crate) fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if t.key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of the tolerations matches the taint.
pub(crate) fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first `NoSchedule`/`NoExecute` taint none of the tolerations matches.
pub(crate) fn first_untolerated<'n>(
    tolerations: &[Toleration],
    taints: &'n [Taint],
) -> Option<&'n Taint> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerated(tolerations, t))
}

pub(crate) fn filter(pod: &Incoming<'_>, node: &NodeInfo) -> FilterResult {
    match first_untolerated(pod.tolerations, &node.taints) {
        None => Ok(()),
        Some(taint) => Err(Status::new(
            Plugin::TaintToleration,
            Code::UnschedulableAndUnresolvable,
            format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            ),
        )),
    }
}

/// The raw score: how many `PreferNoSchedule` taints the pod does not tolerate.
pub(crate) fn score(pod: &Incoming<'_>, node: &NodeInfo) -> i64 {
    let mut count = 0;
    for taint in node
        .taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
    {
        let ok = pod
            .tolerations
            .iter()
            .filter(|t| matches!(t.effect.as_deref(), None | Some("" | "PreferNoSchedule")))
            .any(|t| tolerates(t, taint));
        if !ok {
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{cache_with, filter_reasons};
    use crate::testing::{NodeExt, PodExt, node, pod};
    use k8s_openapi::api::core::v1::{Node, Pod};

    fn check(n: Node, p: Pod, expected: &[&str]) {
        let cache = cache_with(std::slice::from_ref(&n), &[]);
        assert_eq!(filter_reasons(&cache, &p, "n1"), expected, "{p:?} on {n:?}");
    }

    #[test]
    fn filter_table() {
        let n = || node("n1", "4", "8Gi", 110);
        let p = || pod("default", "p", "", "");
        check(n(), p(), &[]);
        check(
            n().taint("node-role.kubernetes.io/control-plane", "", "NoSchedule"),
            p(),
            &["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"],
        );
        check(
            n().taint("dedicated", "gpu", "NoSchedule"),
            p(),
            &["node(s) had untolerated taint {dedicated: gpu}"],
        );
        check(
            n().taint("dedicated", "gpu", "NoExecute"),
            p(),
            &["node(s) had untolerated taint {dedicated: gpu}"],
        );
        // PreferNoSchedule never filters.
        check(n().taint("dedicated", "gpu", "PreferNoSchedule"), p(), &[]);
        // Equal needs the same value; Exists does not.
        check(
            n().taint("dedicated", "gpu", "NoSchedule"),
            p().toleration("dedicated", "Equal", "gpu", "NoSchedule"),
            &[],
        );
        check(
            n().taint("dedicated", "gpu", "NoSchedule"),
            p().toleration("dedicated", "", "gpu", ""),
            &[],
        );
        check(
            n().taint("dedicated", "gpu", "NoSchedule"),
            p().toleration("dedicated", "Equal", "cpu", "NoSchedule"),
            &["node(s) had untolerated taint {dedicated: gpu}"],
        );
        check(
            n().taint("dedicated", "gpu", "NoSchedule"),
            p().toleration("dedicated", "Exists", "", ""),
            &[],
        );
        // Empty key with Exists tolerates everything.
        check(
            n().taint("a", "1", "NoSchedule")
                .taint("b", "2", "NoExecute"),
            p().toleration("", "Exists", "", ""),
            &[],
        );
        // Effect must match when given.
        check(
            n().taint("dedicated", "gpu", "NoExecute"),
            p().toleration("dedicated", "Exists", "", "NoSchedule"),
            &["node(s) had untolerated taint {dedicated: gpu}"],
        );
        // The first untolerated taint is reported.
        check(
            n().taint("a", "1", "NoSchedule")
                .taint("b", "2", "NoSchedule"),
            p().toleration("a", "Exists", "", ""),
            &["node(s) had untolerated taint {b: 2}"],
        );
        check(
            n().taint("a", "1", "NoSchedule")
                .taint("b", "2", "NoSchedule"),
            p(),
            &["node(s) had untolerated taint {a: 1}"],
        );
        // Unknown operators tolerate nothing.
        check(
            n().taint("a", "1", "NoSchedule"),
            p().toleration("a", "Gt", "0", ""),
            &["node(s) had untolerated taint {a: 1}"],
        );
    }

    #[test]
    fn score_counts_untolerated_prefer_no_schedule() {
        let n = node("n1", "4", "8Gi", 110)
            .taint("a", "1", "PreferNoSchedule")
            .taint("b", "2", "PreferNoSchedule")
            .taint("c", "3", "NoSchedule");
        let cache = cache_with(&[n], &[]);
        let check_score = |p: Pod, expected: i64| {
            let incoming = Incoming::new(&p);
            assert_eq!(score(&incoming, &cache.nodes[0]), expected, "{p:?}");
        };
        let p = || pod("default", "p", "", "");
        check_score(p(), 2);
        check_score(p().toleration("a", "Exists", "", ""), 1);
        check_score(p().toleration("a", "Exists", "", "PreferNoSchedule"), 1);
        // A NoSchedule toleration does not count for PreferNoSchedule taints.
        check_score(p().toleration("a", "Exists", "", "NoSchedule"), 2);
        check_score(p().toleration("", "Exists", "", ""), 0);
    }
}
