//! NodeResourcesFit: the pod's requests must fit in the node's allocatable resources minus the
//! requests of the pods already there, and the node must have room for one more pod. Each
//! failing resource is its own reason ("Insufficient cpu", "Insufficient memory",
//! "Insufficient ephemeral-storage", "Insufficient example.com/gpu", "Too many pods").
//!
//! The score is upstream's default `LeastAllocated` strategy over CPU and memory (weight 1
//! each): the free fraction after placing the pod, using non-zero requests (100m / 200Mi for
//! containers without requests) so best-effort pods spread too.

use super::Incoming;
use crate::cache::NodeInfo;
use crate::framework::{Code, FilterResult, MAX_NODE_SCORE, Plugin, Status};

pub(crate) const TOO_MANY_PODS: &str = "Too many pods";

pub(crate) fn filter(pod: &Incoming<'_>, node: &NodeInfo) -> FilterResult {
    let mut reasons = Vec::new();
    let pods = i64::try_from(node.pods.len()).unwrap_or(i64::MAX);
    if pods.saturating_add(1) > node.allowed_pods {
        reasons.push(TOO_MANY_PODS.into());
    }
    let want = &pod.info.requests.requests;
    let alloc = &node.allocatable;
    let used = &node.requested;
    if want.cpu > 0 && want.cpu > alloc.cpu.saturating_sub(used.cpu) {
        reasons.push("Insufficient cpu".into());
    }
    if want.memory > 0 && want.memory > alloc.memory.saturating_sub(used.memory) {
        reasons.push("Insufficient memory".into());
    }
    if want.ephemeral_storage > 0
        && want.ephemeral_storage
            > alloc
                .ephemeral_storage
                .saturating_sub(used.ephemeral_storage)
    {
        reasons.push("Insufficient ephemeral-storage".into());
    }
    for (name, amount) in &want.scalar {
        if *amount > 0 && *amount > alloc.scalar(name).saturating_sub(used.scalar(name)) {
            reasons.push(format!("Insufficient {name}").into());
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Status {
            plugin: Plugin::NodeResourcesFit,
            code: Code::Unschedulable,
            reasons,
        })
    }
}

/// `(capacity - requested) / capacity` scaled to 0..=100; 0 when over capacity.
fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    let free = capacity - requested;
    match free.checked_mul(MAX_NODE_SCORE) {
        Some(scaled) => scaled / capacity,
        // Only for capacities beyond 92 PB; 128-bit division is slow, so not the common path.
        None => i64::try_from(i128::from(free) * i128::from(MAX_NODE_SCORE) / i128::from(capacity))
            .unwrap_or(0),
    }
}

/// The LeastAllocated score (already in 0..=100; no normalization).
pub(crate) fn score(pod: &Incoming<'_>, node: &NodeInfo) -> i64 {
    let r = &pod.info.requests;
    let mut sum = 0;
    let mut weights = 0;
    for (requested, capacity) in [
        (
            node.non_zero_cpu.saturating_add(r.non_zero_cpu),
            node.allocatable.cpu,
        ),
        (
            node.non_zero_memory.saturating_add(r.non_zero_memory),
            node.allocatable.memory,
        ),
    ] {
        if capacity == 0 {
            continue;
        }
        sum += least_requested(requested, capacity);
        weights += 1;
    }
    if weights == 0 { 0 } else { sum / weights }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{cache_with, filter_reasons};
    use crate::testing::{NodeExt, PodExt, node, pod};
    use k8s_openapi::api::core::v1::{Node, Pod};

    fn check(n: Node, existing: Vec<Pod>, p: Pod, expected: &[&str]) {
        let cache = cache_with(std::slice::from_ref(&n), &existing);
        assert_eq!(filter_reasons(&cache, &p, "n1"), expected, "{p:?}");
    }

    #[test]
    fn filter_table() {
        let n = || node("n1", "2", "4Gi", 3);
        let on = |name: &str, cpu: &str, mem: &str| pod("default", name, cpu, mem).on("n1");
        let p = |cpu: &str, mem: &str| pod("default", "p", cpu, mem);
        check(n(), vec![], p("1", "1Gi"), &[]);
        check(n(), vec![], p("2", "4Gi"), &[]);
        check(n(), vec![], p("2001m", "1Gi"), &["Insufficient cpu"]);
        check(n(), vec![], p("1", "5Gi"), &["Insufficient memory"]);
        check(
            n(),
            vec![],
            p("3", "5Gi"),
            &["Insufficient cpu", "Insufficient memory"],
        );
        check(n(), vec![on("a", "1500m", "1Gi")], p("500m", "3Gi"), &[]);
        check(
            n(),
            vec![on("a", "1500m", "1Gi")],
            p("501m", "3Gi"),
            &["Insufficient cpu"],
        );
        check(
            n(),
            vec![on("a", "1", "3Gi"), on("b", "", "1Gi")],
            p("", "1"),
            &["Insufficient memory"],
        );
        // Best-effort pods only need a pod slot.
        check(n(), vec![on("a", "2", "4Gi")], p("", ""), &[]);
        check(
            n(),
            vec![on("a", "", ""), on("b", "", ""), on("c", "", "")],
            p("", ""),
            &[TOO_MANY_PODS],
        );
        check(
            n(),
            vec![on("a", "", ""), on("b", "", ""), on("c", "2", "")],
            p("1", ""),
            &[TOO_MANY_PODS, "Insufficient cpu"],
        );
        // A node that does not report a pod capacity takes no pods.
        let mut no_pods = node("n1", "2", "4Gi", 0);
        no_pods
            .status
            .as_mut()
            .unwrap()
            .allocatable
            .as_mut()
            .unwrap()
            .remove("pods");
        check(no_pods, vec![], p("", ""), &[TOO_MANY_PODS]);
        // Terminated pods free their resources.
        check(n(), vec![on("a", "2", "").phase("Failed")], p("1", ""), &[]);
    }

    #[test]
    fn filter_other_resources() {
        let n = || {
            node("n1", "2", "4Gi", 10)
                .allocatable("ephemeral-storage", "10Gi")
                .allocatable("example.com/gpu", "2")
        };
        let p = || pod("default", "p", "", "");
        check(n(), vec![], p().request("example.com/gpu", "2"), &[]);
        check(
            n(),
            vec![],
            p().request("example.com/gpu", "3"),
            &["Insufficient example.com/gpu"],
        );
        check(
            n(),
            vec![
                pod("default", "a", "", "")
                    .request("example.com/gpu", "1")
                    .on("n1"),
            ],
            p().request("example.com/gpu", "2"),
            &["Insufficient example.com/gpu"],
        );
        check(
            n(),
            vec![],
            p().request("example.com/fpga", "1"),
            &["Insufficient example.com/fpga"],
        );
        check(n(), vec![], p().request("example.com/fpga", "0"), &[]);
        check(n(), vec![], p().request("ephemeral-storage", "10Gi"), &[]);
        check(
            n(),
            vec![],
            p().request("ephemeral-storage", "11Gi"),
            &["Insufficient ephemeral-storage"],
        );
        check(
            n(),
            vec![],
            p().request("hugepages-2Mi", "2Mi"),
            &["Insufficient hugepages-2Mi"],
        );
        // Resources the scheduler does not account for are ignored.
        check(
            n(),
            vec![],
            p().request("kubernetes.io/something", "5"),
            &[],
        );
    }

    #[test]
    fn least_allocated_table() {
        let check_score = |n: Node, existing: Vec<Pod>, p: Pod, expected: i64| {
            let cache = cache_with(std::slice::from_ref(&n), &existing);
            assert_eq!(
                score(&Incoming::new(&p), &cache.nodes[0]),
                expected,
                "{p:?}"
            );
        };
        let n = || node("n1", "4", "8Gi", 110);
        check_score(n(), vec![], pod("d", "p", "1", "2Gi"), 75);
        check_score(n(), vec![], pod("d", "p", "2", "2Gi"), (50 + 75) / 2);
        check_score(
            n(),
            vec![pod("d", "a", "3", "6Gi").on("n1")],
            pod("d", "p", "1", "2Gi"),
            0,
        );
        // Best-effort pods count 100m and 200Mi.
        check_score(
            node("n1", "1", "1000Mi", 110),
            vec![],
            pod("d", "p", "", ""),
            (90 + 80) / 2,
        );
        // Over capacity scores 0.
        check_score(n(), vec![], pod("d", "p", "8", "2Gi"), 75 / 2);
        assert_eq!(least_requested(0, 0), 0);
        assert_eq!(least_requested(i64::MAX / 2, i64::MAX), 50);
    }
}
