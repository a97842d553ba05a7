//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that tolerate the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use super::Incoming;
use super::taint_toleration::tolerated;
use crate::cache::NodeInfo;
use crate::framework::{Code, FilterResult, Plugin, Status};

pub(crate) const REASON: &str = "node(s) were unschedulable";

pub(crate) fn filter(pod: &Incoming<'_>, node: &NodeInfo) -> FilterResult {
    if !node.unschedulable {
        return Ok(());
    }
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".to_owned(),
        effect: "NoSchedule".to_owned(),
        ..Taint::default()
    };
    if tolerated(pod.tolerations, &taint) {
        return Ok(());
    }
    Err(Status::new(
        Plugin::NodeUnschedulable,
        Code::UnschedulableAndUnresolvable,
        REASON,
    ))
}

#[cfg(test)]
mod tests {
    use crate::plugins::test_support::{cache_with, filter_reasons};
    use crate::testing::{NodeExt, PodExt, node, pod};
    use k8s_openapi::api::core::v1::{Node, Pod};

    fn check(n: Node, p: Pod, expected: &[&str]) {
        let cache = cache_with(std::slice::from_ref(&n), &[]);
        assert_eq!(filter_reasons(&cache, &p, "n1"), expected, "{p:?} on {n:?}");
    }

    #[test]
    fn table() {
        let cordoned = || node("n1", "4", "8Gi", 110).unschedulable();
        let p = || pod("default", "p", "", "");
        check(node("n1", "4", "8Gi", 110), p(), &[]);
        check(cordoned(), p(), &[super::REASON]);
        check(
            cordoned(),
            p().toleration(
                "node.kubernetes.io/unschedulable",
                "Exists",
                "",
                "NoSchedule",
            ),
            &[],
        );
        check(cordoned(), p().toleration("", "Exists", "", ""), &[]);
        check(
            cordoned(),
            p().toleration(
                "node.kubernetes.io/unschedulable",
                "Exists",
                "",
                "NoExecute",
            ),
            &[super::REASON],
        );
        check(
            cordoned(),
            p().toleration("other", "Exists", "", ""),
            &[super::REASON],
        );
    }
}
