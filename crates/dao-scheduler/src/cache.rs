//! The scheduler's view of the cluster: nodes, the pods bound (or assumed) to them, and the
//! aggregates the filters and scores read, kept up to date on every change so that a
//! scheduling decision never re-reads an existing pod's spec.
//!
//! Per node: labels, taints, allocatable resources, the sum of its pods' requests (and of their
//! non-zero requests for scoring), the host ports in use, its pods and its images. Per pod:
//! labels, priority, requests, host ports and parsed pod (anti-)affinity terms. Pods with
//! affinity terms are also indexed cluster-wide so the inter-pod affinity plugin visits only
//! them when the incoming pod has no terms of its own.
//!
//! A pod may name a node the cache has not seen (or has just removed); the node then lives on
//! as a *ghost* that keeps the pod's accounting but is never offered for scheduling, and
//! disappears with its last pod. The cache has one writer (the runtime loop) and is read by
//! [`crate::Scheduler`] in between writes.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, PodSpec, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::plugins::inter_pod_affinity::PodAffinityTerms;
use crate::plugins::node_ports::{self, HostPort};
use crate::resources::{PodRequests, Resources, pod_requests};
use crate::selector::Labels;

/// Index of a node slot in the cache.
pub(crate) type NodeId = usize;
/// Index of a pod slot in the cache.
pub(crate) type PodId = usize;

/// One node and what is placed on it.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeInfo {
    pub name: String,
    /// False for a ghost: pods name it, but the node object is unknown.
    pub present: bool,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    /// `(image id, size in bytes)`, sorted by id.
    pub images: Vec<(u32, i64)>,
    /// Sum of the requests of the pods on the node.
    pub requested: Resources,
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub pods: Vec<PodId>,
    /// Host ports in use, one entry per pod port (a multiset).
    pub ports: Vec<HostPort>,
}

impl NodeInfo {
    /// Accounts a pod placed on this node.
    pub fn add_pod(&mut self, id: PodId, pod: &PodInfo) {
        self.requested.add(&pod.requests.requests);
        self.non_zero_cpu = self.non_zero_cpu.saturating_add(pod.requests.non_zero_cpu);
        self.non_zero_memory = self
            .non_zero_memory
            .saturating_add(pod.requests.non_zero_memory);
        self.pods.push(id);
        self.ports.extend(pod.ports.iter().cloned());
    }

    /// Removes a pod's accounting from this node.
    pub fn remove_pod(&mut self, id: PodId, pod: &PodInfo) {
        self.requested.sub(&pod.requests.requests);
        self.non_zero_cpu = self.non_zero_cpu.saturating_sub(pod.requests.non_zero_cpu);
        self.non_zero_memory = self
            .non_zero_memory
            .saturating_sub(pod.requests.non_zero_memory);
        if let Some(i) = self.pods.iter().position(|p| *p == id) {
            self.pods.swap_remove(i);
        }
        for port in &pod.ports {
            if let Some(i) = self.ports.iter().position(|p| p == port) {
                self.ports.swap_remove(i);
            }
        }
    }
}

/// What the scheduler keeps of a pod: parsed once when the pod enters the cache.
#[derive(Debug, Clone)]
pub(crate) struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub node: NodeId,
    pub labels: Labels,
    pub priority: i32,
    pub requests: PodRequests,
    pub ports: Vec<HostPort>,
    /// The pod has a deletion timestamp.
    pub terminating: bool,
    pub start_time: Option<Time>,
    pub affinity: Option<Box<PodAffinityTerms>>,
}

impl PodInfo {
    /// Parses a pod; `node` is filled in by the cache.
    pub fn new(pod: &Pod) -> Self {
        let default = PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&default);
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        PodInfo {
            affinity: PodAffinityTerms::from_pod(spec, &namespace, &labels).map(Box::new),
            name: pod.metadata.name.clone().unwrap_or_default(),
            namespace,
            node: 0,
            labels,
            priority: spec.priority.unwrap_or(0),
            requests: pod_requests(spec),
            ports: node_ports::pod_host_ports(spec),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            start_time: pod.status.as_ref().and_then(|s| s.start_time.clone()),
        }
    }
}

/// The scheduler's view of the cluster; see the module documentation.
#[derive(Debug, Default)]
pub struct Cache {
    pub(crate) nodes: Vec<NodeInfo>,
    free_nodes: Vec<NodeId>,
    node_index: HashMap<String, NodeId>,
    /// Present nodes in the order they were added: the order nodes are evaluated in.
    pub(crate) order: Vec<NodeId>,
    pub(crate) pods: Vec<Option<PodInfo>>,
    free_pods: Vec<PodId>,
    pod_index: HashMap<(String, String), PodId>,
    /// Pods with any pod (anti-)affinity term.
    pub(crate) pods_with_affinity: BTreeSet<PodId>,
    /// Pods with required pod anti-affinity terms.
    pub(crate) pods_with_required_anti_affinity: BTreeSet<PodId>,
    /// Image name -> id.
    image_ids: HashMap<String, u32>,
    /// Image id -> number of present nodes that have it.
    pub(crate) image_nodes: Vec<u32>,
    namespaces: HashMap<String, Labels>,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node or replaces what is known about it; its pods stay.
    pub fn upsert_node(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let id = match self.node_index.get(&name) {
            Some(&id) => id,
            None => self.new_node_slot(&name),
        };
        if self.nodes[id].present {
            self.forget_images(id);
        } else {
            self.order.push(id);
        }
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        let (allocatable, allowed_pods) = status
            .and_then(|s| s.allocatable.as_ref())
            .map(Resources::from_list)
            .unwrap_or_default();
        let mut images = Vec::new();
        for image in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in image.names.iter().flatten() {
                let next = u32::try_from(self.image_ids.len()).unwrap_or(u32::MAX);
                let image_id = *self.image_ids.entry(name.clone()).or_insert(next);
                if image_id as usize == self.image_nodes.len() {
                    self.image_nodes.push(0);
                }
                images.push((image_id, image.size_bytes.unwrap_or(0)));
            }
        }
        images.sort_unstable();
        images.dedup_by_key(|(id, _)| *id);
        for (image_id, _) in &images {
            self.image_nodes[*image_id as usize] += 1;
        }
        let info = &mut self.nodes[id];
        info.present = true;
        info.labels = node.metadata.labels.clone().unwrap_or_default();
        info.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        info.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        info.allocatable = allocatable;
        info.allowed_pods = allowed_pods;
        info.images = images;
    }

    /// Removes a node; pods still bound to it keep a ghost entry until they are removed.
    pub fn remove_node(&mut self, name: &str) {
        let Some(&id) = self.node_index.get(name) else {
            return;
        };
        if !self.nodes[id].present {
            return;
        }
        self.forget_images(id);
        self.order.retain(|n| *n != id);
        let info = &mut self.nodes[id];
        *info = NodeInfo {
            name: std::mem::take(&mut info.name),
            requested: std::mem::take(&mut info.requested),
            non_zero_cpu: info.non_zero_cpu,
            non_zero_memory: info.non_zero_memory,
            pods: std::mem::take(&mut info.pods),
            ports: std::mem::take(&mut info.ports),
            ..NodeInfo::default()
        };
        self.free_ghost(id);
    }

    /// Adds a pod that has `spec.nodeName` (bound, or assumed by the scheduler), replacing any
    /// earlier version of it. A pod without a node, or one that has finished (`Succeeded`,
    /// `Failed`), holds nothing and is removed instead.
    pub fn add_pod(&mut self, pod: &Pod) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        self.remove_pod(namespace, name);
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if node_name.is_empty() || matches!(phase, Some("Succeeded" | "Failed")) {
            return;
        }
        let node = match self.node_index.get(node_name) {
            Some(&id) => id,
            None => self.new_node_slot(node_name),
        };
        let mut info = PodInfo::new(pod);
        info.node = node;
        let id = match self.free_pods.pop() {
            Some(id) => id,
            None => {
                self.pods.push(None);
                self.pods.len() - 1
            }
        };
        self.nodes[node].add_pod(id, &info);
        if let Some(a) = &info.affinity {
            self.pods_with_affinity.insert(id);
            if !a.required_anti_affinity.is_empty() {
                self.pods_with_required_anti_affinity.insert(id);
            }
        }
        self.pod_index
            .insert((info.namespace.clone(), info.name.clone()), id);
        self.pods[id] = Some(info);
    }

    /// Removes a pod (no-op if unknown).
    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        let Some(id) = self
            .pod_index
            .remove(&(namespace.to_owned(), name.to_owned()))
        else {
            return;
        };
        let Some(info) = self.pods[id].take() else {
            return;
        };
        self.free_pods.push(id);
        self.pods_with_affinity.remove(&id);
        self.pods_with_required_anti_affinity.remove(&id);
        self.nodes[info.node].remove_pod(id, &info);
        self.free_ghost(info.node);
    }

    /// Records a namespace's labels, which pod affinity `namespaceSelector`s match against.
    pub fn upsert_namespace(&mut self, namespace: &Namespace) {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        self.namespaces
            .insert(name, namespace.metadata.labels.clone().unwrap_or_default());
    }

    /// Forgets a namespace's labels.
    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    /// The number of nodes that can be scheduled on (ghosts excluded).
    pub fn node_count(&self) -> usize {
        self.order.len()
    }

    /// The number of pods in the cache.
    pub fn pod_count(&self) -> usize {
        self.pod_index.len()
    }

    /// Whether the pod is in the cache.
    pub fn contains_pod(&self, namespace: &str, name: &str) -> bool {
        self.pod_index
            .contains_key(&(namespace.to_owned(), name.to_owned()))
    }

    /// The node a cached pod is on.
    pub fn pod_node(&self, namespace: &str, name: &str) -> Option<&str> {
        let id = *self
            .pod_index
            .get(&(namespace.to_owned(), name.to_owned()))?;
        let pod = self.pods[id].as_ref()?;
        Some(&self.nodes[pod.node].name)
    }

    pub(crate) fn node_id(&self, name: &str) -> Option<NodeId> {
        self.node_index
            .get(name)
            .copied()
            .filter(|id| self.nodes[*id].present)
    }

    pub(crate) fn pod(&self, id: PodId) -> &PodInfo {
        self.pods[id]
            .as_ref()
            .expect("pod ids in node lists are live")
    }

    pub(crate) fn namespace_labels(&self, namespace: &str) -> Option<&Labels> {
        self.namespaces.get(namespace)
    }

    pub(crate) fn image_id(&self, name: &str) -> Option<u32> {
        self.image_ids.get(name).copied()
    }

    fn new_node_slot(&mut self, name: &str) -> NodeId {
        let info = NodeInfo {
            name: name.to_owned(),
            ..NodeInfo::default()
        };
        let id = match self.free_nodes.pop() {
            Some(id) => {
                self.nodes[id] = info;
                id
            }
            None => {
                self.nodes.push(info);
                self.nodes.len() - 1
            }
        };
        self.node_index.insert(name.to_owned(), id);
        id
    }

    /// Frees a ghost node's slot once no pod names it.
    fn free_ghost(&mut self, id: NodeId) {
        let info = &self.nodes[id];
        if !info.present && info.pods.is_empty() {
            self.node_index.remove(&info.name);
            self.nodes[id] = NodeInfo::default();
            self.free_nodes.push(id);
        }
    }

    fn forget_images(&mut self, id: NodeId) {
        for (image_id, _) in &self.nodes[id].images {
            self.image_nodes[*image_id as usize] -= 1;
        }
    }

    /// Sum of requests per node name, for tests and debugging.
    #[cfg(test)]
    pub(crate) fn requested(&self, node: &str) -> Option<Resources> {
        let id = *self.node_index.get(node)?;
        Some(self.nodes[id].requested.clone())
    }

    /// Pod names per node, for tests.
    #[cfg(test)]
    pub(crate) fn pods_by_node(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut out = std::collections::BTreeMap::new();
        for id in self.node_index.values() {
            let node = &self.nodes[*id];
            let mut names: Vec<String> = node
                .pods
                .iter()
                .map(|p| self.pod(*p).name.clone())
                .collect();
            names.sort();
            out.insert(node.name.clone(), names);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeExt, PodExt, node, pod};

    #[test]
    fn pods_account_on_their_node() {
        let mut c = Cache::new();
        c.upsert_node(&node("n1", "4", "8Gi", 110));
        c.add_pod(&pod("default", "a", "1", "1Gi").on("n1"));
        c.add_pod(&pod("default", "b", "500m", "1Gi").on("n1"));
        assert_eq!(c.requested("n1").unwrap().cpu, 1500);
        // Re-adding replaces.
        c.add_pod(&pod("default", "b", "250m", "1Gi").on("n1"));
        assert_eq!(c.requested("n1").unwrap().cpu, 1250);
        assert_eq!(c.pod_count(), 2);
        c.remove_pod("default", "a");
        assert_eq!(c.requested("n1").unwrap().cpu, 250);
        c.remove_pod("default", "missing");
        assert_eq!(c.pod_count(), 1);
        assert_eq!(c.pod_node("default", "b"), Some("n1"));
    }

    #[test]
    fn finished_and_unbound_pods_hold_nothing() {
        let mut c = Cache::new();
        c.upsert_node(&node("n1", "4", "8Gi", 110));
        c.add_pod(&pod("default", "a", "1", "1Gi").on("n1"));
        c.add_pod(&pod("default", "a", "1", "1Gi").on("n1").phase("Succeeded"));
        assert_eq!(c.pod_count(), 0);
        assert_eq!(c.requested("n1").unwrap().cpu, 0);
        c.add_pod(&pod("default", "b", "1", "1Gi"));
        assert_eq!(c.pod_count(), 0);
    }

    #[test]
    fn ghost_nodes_keep_pods_until_they_leave() {
        let mut c = Cache::new();
        c.add_pod(&pod("default", "a", "1", "1Gi").on("later"));
        assert_eq!(c.node_count(), 0);
        c.upsert_node(&node("later", "4", "8Gi", 110));
        assert_eq!(c.node_count(), 1);
        assert_eq!(c.requested("later").unwrap().cpu, 1000);
        c.remove_node("later");
        assert_eq!(c.node_count(), 0);
        assert_eq!(c.pods_by_node().get("later"), Some(&vec!["a".to_owned()]));
        c.remove_pod("default", "a");
        assert!(c.pods_by_node().is_empty());
        // The slot is reused.
        c.upsert_node(&node("other", "1", "1Gi", 10));
        assert_eq!(c.nodes.len(), 1);
    }

    #[test]
    fn node_updates_keep_pods_and_count_images() {
        let mut c = Cache::new();
        c.upsert_node(&node("n1", "4", "8Gi", 110).image("nginx:1", 100));
        c.upsert_node(&node("n2", "4", "8Gi", 110).image("nginx:1", 100));
        c.add_pod(&pod("default", "a", "1", "1Gi").on("n1"));
        let id = c.image_id("nginx:1").unwrap();
        assert_eq!(c.image_nodes[id as usize], 2);
        c.upsert_node(&node("n1", "8", "8Gi", 110));
        assert_eq!(c.image_nodes[id as usize], 1);
        assert_eq!(c.requested("n1").unwrap().cpu, 1000);
        assert_eq!(c.node_count(), 2);
        c.remove_node("n2");
        assert_eq!(c.image_nodes[id as usize], 0);
        assert_eq!(c.node_count(), 1);
    }
}
