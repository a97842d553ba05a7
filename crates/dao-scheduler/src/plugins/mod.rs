//! The filter and score plugins of upstream's default profile, and the scheduling cycle that
//! runs them for one pod.
//!
//! [`Cycle::new`] parses the incoming pod once ([`Incoming`]) and runs the "pre-filter" work
//! that needs the whole cluster (pod topology spread and inter-pod affinity counts) only when
//! the pod, or an existing pod's anti-affinity, asks for it. [`Cycle::filter`] then runs the
//! filters on one node in upstream's order and stops at the first that fails, whose reason the
//! FailedScheduling message counts; [`Cycle::passes`] gives the same yes or no without the
//! reason, trying the most selective filters first. Scoring lives in [`crate::schedule`].

pub(crate) mod balanced_allocation;
pub(crate) mod image_locality;
pub(crate) mod inter_pod_affinity;
pub(crate) mod node_affinity;
pub(crate) mod node_name;
pub(crate) mod node_ports;
pub(crate) mod node_unschedulable;
pub(crate) mod pod_topology_spread;
pub(crate) mod resources_fit;
pub(crate) mod taint_toleration;

use k8s_openapi::api::core::v1::{Pod, Toleration};

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::FilterResult;

/// The pod being scheduled, parsed once per cycle.
pub(crate) struct Incoming<'a> {
    pub pod: &'a Pod,
    /// Namespace, labels, requests, host ports and affinity terms, parsed as for cached pods.
    pub info: PodInfo,
    pub node_name: Option<&'a str>,
    pub tolerations: &'a [Toleration],
    pub node_affinity: node_affinity::RequiredNodeAffinity,
    pub preferred_node_affinity: Vec<(i64, crate::selector::NodeSelectorTermMatcher)>,
    pub spread: pod_topology_spread::Constraints,
}

impl<'a> Incoming<'a> {
    pub fn new(pod: &'a Pod) -> Self {
        let spec = pod.spec.as_ref();
        Incoming {
            pod,
            info: PodInfo::new(pod),
            node_name: spec
                .and_then(|s| s.node_name.as_deref())
                .filter(|n| !n.is_empty()),
            tolerations: spec
                .and_then(|s| s.tolerations.as_deref())
                .unwrap_or_default(),
            node_affinity: node_affinity::RequiredNodeAffinity::from_pod(pod),
            preferred_node_affinity: node_affinity::preferred_terms(pod),
            spread: pod_topology_spread::Constraints::from_pod(pod),
        }
    }
}

/// One scheduling attempt's state: the incoming pod and the cluster-wide pre-filter results.
pub(crate) struct Cycle<'a> {
    pub cache: &'a Cache,
    pub pod: Incoming<'a>,
    pub inter_pod: Option<inter_pod_affinity::FilterState<'a>>,
    pub spread: Option<pod_topology_spread::FilterState<'a>>,
}

impl<'a> Cycle<'a> {
    pub fn new(cache: &'a Cache, pod: &'a Pod) -> Self {
        let mut pod = Incoming::new(pod);
        if !pod_topology_spread::Constraints::pod_sets_any(pod.pod) {
            let selector = cache.default_spread_selector(pod.pod, &pod.info.labels);
            pod.spread = pod_topology_spread::Constraints::system_defaults(selector);
        }
        let spread = pod_topology_spread::FilterState::new(cache, &pod);
        let inter_pod = inter_pod_affinity::FilterState::new(cache, &pod);
        Cycle {
            cache,
            pod,
            inter_pod,
            spread,
        }
    }

    /// Runs every filter on a node, in upstream's order, stopping at the first failure.
    pub fn filter(&self, node: &NodeInfo) -> FilterResult {
        self.filter_node(node)?;
        if let Some(s) = &self.spread {
            s.filter(&self.pod, node)?;
        }
        if let Some(s) = &self.inter_pod {
            s.filter(&self.pod, node)?;
        }
        Ok(())
    }

    /// The filters that look at the node alone, in upstream's order.
    fn filter_node(&self, node: &NodeInfo) -> FilterResult {
        node_unschedulable::filter(&self.pod, node)?;
        node_name::filter(&self.pod, node)?;
        taint_toleration::filter(&self.pod, node)?;
        node_affinity::filter(&self.pod, node)?;
        node_ports::filter(&self.pod, node)?;
        resources_fit::filter(&self.pod, node)
    }

    /// Whether the node passes every filter: [`Cycle::filter`]'s answer without its reason. The
    /// cluster-wide filters, which reject most nodes when they reject any, run first.
    pub fn passes(&self, node: &NodeInfo) -> bool {
        if let Some(s) = &self.spread
            && s.failure(&self.pod, node).is_some()
        {
            return false;
        }
        if let Some(s) = &self.inter_pod
            && s.failure(&self.pod, node).is_some()
        {
            return false;
        }
        self.filter_node(node).is_ok()
    }

    /// Updates the pre-filter state as if `pod` (on `node`) were removed (`delta` -1) or added
    /// back (`delta` +1); preemption's dry runs use this.
    pub fn update_for_pod(&mut self, pod: &PodInfo, node: &NodeInfo, delta: i64) {
        if let Some(s) = &mut self.spread {
            s.update_for_pod(&self.pod, pod, node, delta);
        }
        if let Some(s) = &mut self.inter_pod {
            s.update_for_pod(self.cache, &self.pod, pod, node, delta);
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Runs the filter chain on one named node, for the plugins' tables.

    use super::*;

    /// The filter reasons for `pod` on the node named `node`; empty when it fits.
    pub fn filter_reasons(cache: &Cache, pod: &Pod, node: &str) -> Vec<String> {
        let cycle = Cycle::new(cache, pod);
        let id = cache.node_id(node).expect("node in cache");
        match cycle.filter(&cache.nodes[id]) {
            Ok(()) => Vec::new(),
            Err(status) => status.reasons.iter().map(|r| r.to_string()).collect(),
        }
    }

    /// A cache with these nodes and (bound) pods.
    pub fn cache_with(nodes: &[k8s_openapi::api::core::v1::Node], pods: &[Pod]) -> Cache {
        let mut c = Cache::new();
        for n in nodes {
            c.upsert_node(n);
        }
        for p in pods {
            c.add_pod(p);
        }
        c
    }
}
