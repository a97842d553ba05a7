//! NodeName: a pod that names a node (`spec.nodeName`) fits only there.

use super::Incoming;
use crate::cache::NodeInfo;
use crate::framework::{Code, FilterResult, Plugin, Status};

pub(crate) const REASON: &str = "node(s) didn't match the requested node name";

pub(crate) fn filter(pod: &Incoming<'_>, node: &NodeInfo) -> FilterResult {
    match pod.node_name {
        Some(name) if name != node.name => Err(Status::new(
            Plugin::NodeName,
            Code::UnschedulableAndUnresolvable,
            REASON,
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use crate::plugins::test_support::{cache_with, filter_reasons};
    use crate::testing::{PodExt, node, pod};

    fn check(node_name: Option<&str>, expected: &[&str]) {
        let cache = cache_with(&[node("n1", "4", "8Gi", 110)], &[]);
        let mut p = pod("default", "p", "", "");
        if let Some(n) = node_name {
            p = p.on(n);
        }
        assert_eq!(filter_reasons(&cache, &p, "n1"), expected, "{node_name:?}");
    }

    #[test]
    fn table() {
        check(None, &[]);
        check(Some(""), &[]);
        check(Some("n1"), &[]);
        check(Some("n2"), &[super::REASON]);
    }
}
