//! NodeResourcesBalancedAllocation: prefers nodes where, after placing the pod, the requested
//! fractions of CPU and memory are close to each other (score `100 * (1 - |f_cpu - f_mem| / 2)`,
//! fractions capped at 1). Best-effort pods (no CPU or memory request) are not scored by it, as
//! in upstream since v1.33, so they do not all pile onto one balanced node.

use super::Incoming;
use crate::cache::NodeInfo;
use crate::framework::MAX_NODE_SCORE;

/// Whether the plugin scores this pod at all.
pub(crate) fn applies(pod: &Incoming<'_>) -> bool {
    let r = &pod.info.requests.requests;
    r.cpu != 0 || r.memory != 0
}

pub(crate) fn score(pod: &Incoming<'_>, node: &NodeInfo) -> i64 {
    let r = &pod.info.requests.requests;
    let mut fractions = [0.0f64; 2];
    let mut n = 0;
    for (requested, capacity) in [
        (
            node.requested.cpu.saturating_add(r.cpu),
            node.allocatable.cpu,
        ),
        (
            node.requested.memory.saturating_add(r.memory),
            node.allocatable.memory,
        ),
    ] {
        if capacity == 0 {
            continue;
        }
        // Precision loss is irrelevant at these magnitudes.
        #[allow(clippy::cast_precision_loss)]
        let f = (requested as f64 / capacity as f64).min(1.0);
        fractions[n] = f;
        n += 1;
    }
    let std = if n == 2 {
        ((fractions[0] - fractions[1]) / 2.0).abs()
    } else {
        0.0
    };
    // Truncation toward zero is upstream's conversion.
    #[allow(clippy::cast_possible_truncation)]
    let score = ((1.0 - std) * MAX_NODE_SCORE as f64) as i64;
    score
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::cache_with;
    use crate::testing::{PodExt, node, pod};
    use k8s_openapi::api::core::v1::Pod;

    fn check(existing: Vec<Pod>, p: Pod, expected: Option<i64>) {
        let cache = cache_with(&[node("n1", "4", "8Gi", 110)], &existing);
        let incoming = Incoming::new(&p);
        let got = applies(&incoming).then(|| score(&incoming, &cache.nodes[0]));
        assert_eq!(got, expected, "{p:?}");
    }

    #[test]
    fn table() {
        // Same fraction of both: perfectly balanced.
        check(vec![], pod("d", "p", "1", "2Gi"), Some(100));
        // cpu 1/4, memory 4/8: std = 0.125.
        check(vec![], pod("d", "p", "1", "4Gi"), Some(87));
        // cpu 4/4, memory 0: std = 0.5.
        check(vec![], pod("d", "p", "4", ""), Some(50));
        // Over capacity caps at 1.
        check(vec![], pod("d", "p", "8", ""), Some(50));
        check(
            vec![pod("d", "a", "1", "").on("n1")],
            pod("d", "p", "1", "4Gi"),
            Some(100),
        );
        // Best-effort pods are skipped.
        check(vec![], pod("d", "p", "", ""), None);
    }
}
