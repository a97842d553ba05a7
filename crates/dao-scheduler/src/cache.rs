//! The scheduler's view of the cluster: nodes, the pods bound (or assumed) to them, and the
//! aggregates the filters and scores read, kept up to date on every change so that a
//! scheduling decision never re-reads an existing pod's spec.
//!
//! Per node: labels, taints, allocatable resources, the sum of its pods' requests (and of their
//! non-zero requests for scoring), the host ports in use, its pods and its images. Per pod:
//! labels, priority, requests, host ports and parsed pod (anti-)affinity terms.
//!
//! Cluster-wide indexes (see [`crate::index`]) let a cycle's pre-filter work visit only the pods
//! that can matter: pods per namespace and label `key=value` (the candidates of a label
//! selector), label values of present nodes (the topology domains of a key), existing pods'
//! required anti-affinity terms filed by a label their selector requires, and the pods whose
//! terms take part in inter-pod affinity scoring.
//!
//! A pod may name a node the cache has not seen (or has just removed); the node then lives on
//! as a *ghost* that keeps the pod's accounting but is never offered for scheduling, and
//! disappears with its last pod. The cache has one writer (the runtime loop) and is read by
//! [`crate::Scheduler`] in between writes.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, PodSpec, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::index::{NodeLabels, PodLabels, TermGroups, put_in_slot};
use crate::plugins::inter_pod_affinity::{AffinityTerm, PodAffinityTerms};
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
    /// The node's slot in the cache (the index of per-node vectors such as [`crate::index::Domains`]).
    pub id: NodeId,
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
    /// Pods with a required affinity or a preferred (anti-)affinity term: the existing pods
    /// whose terms score an incoming pod.
    pub(crate) pods_with_scoring_affinity: BTreeSet<PodId>,
    /// Pods with required pod anti-affinity terms.
    pub(crate) pods_with_required_anti_affinity: BTreeSet<PodId>,
    /// The required anti-affinity terms of those pods, identical terms grouped, by a label
    /// their selector requires.
    pub(crate) anti_affinity_terms: TermGroups<AffinityTerm>,
    /// Pods by namespace and label.
    pub(crate) pod_labels: PodLabels,
    /// Label values of present nodes.
    pub(crate) node_labels: NodeLabels,
    /// Image name -> id.
    image_ids: HashMap<String, u32>,
    /// Image id -> number of present nodes that have it.
    pub(crate) image_nodes: Vec<u32>,
    namespaces: HashMap<String, Labels>,
    /// PodDisruptionBudgets by namespace and name: what preemption weighs its victims with.
    pub(crate) pdbs: std::collections::BTreeMap<(String, String), PdbInfo>,
    /// The selectors of Services, ReplicationControllers, ReplicaSets and StatefulSets, by
    /// kind, namespace and name: what upstream's default spread constraints select by.
    spreaders: std::collections::BTreeMap<(SpreaderKind, String, String), SpreadSelector>,
}

/// The kinds whose selectors make a pod's default spread selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpreaderKind {
    Service,
    ReplicationController,
    ReplicaSet,
    StatefulSet,
}

impl SpreaderKind {
    /// The kind a controller owner reference names, if it is one of these.
    fn of_owner(api_version: &str, kind: &str) -> Option<Self> {
        match (api_version, kind) {
            ("v1", "ReplicationController") => Some(SpreaderKind::ReplicationController),
            ("apps/v1", "ReplicaSet") => Some(SpreaderKind::ReplicaSet),
            ("apps/v1", "StatefulSet") => Some(SpreaderKind::StatefulSet),
            _ => None,
        }
    }
}

/// A Service's or ReplicationController's label map, or a set's label selector.
#[derive(Debug, Clone, PartialEq)]
pub enum SpreadSelector {
    Labels(std::collections::BTreeMap<String, String>),
    Selector(crate::selector::Selector),
}

/// What preemption needs of a PodDisruptionBudget.
#[derive(Debug, Clone)]
pub(crate) struct PdbInfo {
    pub selector: crate::selector::Selector,
    /// `status.disruptionsAllowed`.
    pub allowed: i32,
    /// `status.disruptedPods`: evictions already counted against the budget.
    pub disrupted: std::collections::BTreeSet<String>,
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
            self.node_labels.remove(id, &self.nodes[id].labels);
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
        let labels = node.metadata.labels.clone().unwrap_or_default();
        self.node_labels.add(id, &labels);
        let info = &mut self.nodes[id];
        info.present = true;
        info.labels = labels;
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
        self.node_labels.remove(id, &self.nodes[id].labels);
        self.order.retain(|n| *n != id);
        let info = &mut self.nodes[id];
        *info = NodeInfo {
            id,
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
        let id = put_in_slot(&mut self.pods, &mut self.free_pods, None);
        self.nodes[node].add_pod(id, &info);
        self.pod_labels.insert(id, &info.namespace, &info.labels);
        if let Some(a) = &info.affinity {
            if a.scores() {
                self.pods_with_scoring_affinity.insert(id);
            }
            if !a.required_anti_affinity.is_empty() {
                self.pods_with_required_anti_affinity.insert(id);
                for t in &a.required_anti_affinity {
                    self.anti_affinity_terms.insert(t, t.selector(), node);
                }
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
        self.pod_labels.remove(id, &info.namespace, &info.labels);
        if let Some(a) = &info.affinity {
            self.pods_with_scoring_affinity.remove(&id);
            if self.pods_with_required_anti_affinity.remove(&id) {
                for t in &a.required_anti_affinity {
                    self.anti_affinity_terms.remove(t, t.selector(), info.node);
                }
            }
        }
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

    /// Records a PodDisruptionBudget. One with an empty selector protects no pod here, as
    /// upstream's preemption reads it.
    pub fn upsert_pdb(&mut self, pdb: &k8s_openapi::api::policy::v1::PodDisruptionBudget) {
        let namespace = pdb.metadata.namespace.clone().unwrap_or_default();
        let name = pdb.metadata.name.clone().unwrap_or_default();
        let api_selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
        let empty = api_selector.is_none_or(|s| {
            s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        });
        let selector = if empty {
            crate::selector::Selector::nothing()
        } else {
            crate::selector::Selector::from_api(api_selector)
        };
        let status = pdb.status.as_ref();
        self.pdbs.insert(
            (namespace, name),
            PdbInfo {
                selector,
                allowed: status.map_or(0, |s| s.disruptions_allowed),
                disrupted: status
                    .and_then(|s| s.disrupted_pods.as_ref())
                    .map(|d| d.keys().cloned().collect())
                    .unwrap_or_default(),
            },
        );
    }

    /// Forgets a PodDisruptionBudget.
    pub fn remove_pdb(&mut self, namespace: &str, name: &str) {
        self.pdbs.remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Records the selector of a Service, ReplicationController, ReplicaSet or StatefulSet.
    pub fn upsert_spreader(
        &mut self,
        kind: SpreaderKind,
        namespace: &str,
        name: &str,
        selector: SpreadSelector,
    ) {
        self.spreaders
            .insert((kind, namespace.to_owned(), name.to_owned()), selector);
    }

    pub fn remove_spreader(&mut self, kind: SpreaderKind, namespace: &str, name: &str) {
        self.spreaders
            .remove(&(kind, namespace.to_owned(), name.to_owned()));
    }

    /// Forgets every object of one kind (a relist starts again).
    pub fn clear_spreaders(&mut self, kind: SpreaderKind) {
        self.spreaders.retain(|(k, _, _), _| *k != kind);
    }

    /// Upstream's default spread selector for `pod`: the union of the selectors of the
    /// Services in its namespace that select it and of its controlling ReplicationController,
    /// ReplicaSet or StatefulSet. Empty when there are none.
    pub fn default_spread_selector(&self, pod: &Pod, labels: &Labels) -> crate::selector::Selector {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let mut set = std::collections::BTreeMap::new();
        let services = self
            .spreaders
            .range((SpreaderKind::Service, ns.clone(), String::new())..)
            .take_while(|((k, n, _), _)| *k == SpreaderKind::Service && *n == ns);
        for (_, selector) in services {
            if let SpreadSelector::Labels(m) = selector
                && !m.is_empty()
                && m.iter().all(|(k, v)| labels.get(k) == Some(v))
            {
                set.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .and_then(|o| {
                Some((
                    SpreaderKind::of_owner(&o.api_version, &o.kind)?,
                    o.name.clone(),
                ))
            });
        let mut from_set = None;
        if let Some(key) = owner.map(|(kind, name)| (kind, ns.clone(), name)) {
            match self.spreaders.get(&key) {
                Some(SpreadSelector::Labels(m)) => {
                    set.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                Some(SpreadSelector::Selector(s)) if !s.selects_nothing() => from_set = Some(s),
                _ => {}
            }
        }
        let mut selector = crate::selector::Selector::everything();
        for (k, v) in &set {
            selector.require_equal(k, v);
        }
        if let Some(s) = from_set {
            selector.and(s);
        }
        selector
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
        let id = put_in_slot(&mut self.nodes, &mut self.free_nodes, info);
        self.nodes[id].id = id;
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

    fn selector(pairs: &[(&str, &str)]) -> crate::selector::Selector {
        crate::selector::Selector::from_api(
            crate::testing::affinity_term(pairs, "")
                .label_selector
                .as_ref(),
        )
    }

    fn candidates(c: &Cache, namespace: &str, pairs: &[(&str, &str)]) -> Vec<String> {
        let mut names: Vec<String> = c
            .pod_labels
            .candidates(namespace, &selector(pairs))
            .iter()
            .map(|id| c.pod(*id).name.clone())
            .collect();
        names.sort();
        names
    }

    /// The names of the pods whose anti-affinity terms may select a pod with these labels.
    fn anti_candidates(c: &Cache, pairs: &[(&str, &str)]) -> Vec<String> {
        let labels: Labels = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let groups: Vec<_> = c.anti_affinity_terms.candidates(&labels).collect();
        let mut names: Vec<String> = c
            .pods_with_required_anti_affinity
            .iter()
            .map(|&id| c.pod(id))
            .filter(|p| {
                let terms = &p.affinity.as_ref().expect("terms").required_anti_affinity;
                groups.iter().any(|g| terms.contains(&g.term))
            })
            .map(|p| p.name.clone())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn pod_label_index_follows_adds_updates_and_removals() {
        let mut c = Cache::new();
        c.upsert_node(&node("n1", "4", "8Gi", 110));
        c.add_pod(&pod("default", "a", "", "").label("app", "web").on("n1"));
        c.add_pod(&pod("default", "b", "", "").label("app", "web").on("n1"));
        c.add_pod(&pod("other", "a", "", "").label("app", "web").on("n1"));
        // A pod on a node the cache does not know yet is indexed too.
        c.add_pod(&pod("default", "g", "", "").label("app", "web").on("ghost"));
        assert_eq!(
            candidates(&c, "default", &[("app", "web")]),
            ["a", "b", "g"]
        );
        assert_eq!(candidates(&c, "other", &[("app", "web")]), ["a"]);
        // Relabelling a pod moves it between posting lists.
        c.add_pod(&pod("default", "b", "", "").label("app", "db").on("n1"));
        assert_eq!(candidates(&c, "default", &[("app", "web")]), ["a", "g"]);
        assert_eq!(candidates(&c, "default", &[("app", "db")]), ["b"]);
        assert_eq!(c.pod_labels.count("default", "app", "web"), 2);
        // A finished pod leaves the index.
        c.add_pod(
            &pod("default", "a", "", "")
                .label("app", "web")
                .on("n1")
                .phase("Failed"),
        );
        assert_eq!(candidates(&c, "default", &[("app", "web")]), ["g"]);
        // Removing a node keeps its pods (ghost) indexed until they go.
        c.remove_node("n1");
        assert_eq!(candidates(&c, "default", &[("app", "db")]), ["b"]);
        for (ns, name) in [("default", "b"), ("default", "g"), ("other", "a")] {
            c.remove_pod(ns, name);
        }
        assert!(c.pod_labels.is_empty());
    }

    #[test]
    fn node_label_index_counts_present_nodes() {
        let mut c = Cache::new();
        c.upsert_node(&node("n1", "4", "8Gi", 110).label("zone", "a"));
        c.upsert_node(&node("n2", "4", "8Gi", 110).label("zone", "a"));
        c.add_pod(&pod("default", "p", "", "").on("n3"));
        assert_eq!(c.node_labels.count("zone", "a"), 2);
        // A relabelled node moves to its new value.
        c.upsert_node(&node("n2", "4", "8Gi", 110).label("zone", "b"));
        assert_eq!(c.node_labels.count("zone", "a"), 1);
        assert_eq!(c.node_labels.count("zone", "b"), 1);
        let zones = c.node_labels.domains("zone").expect("zones");
        let n2 = c.node_id("n2").expect("n2");
        assert_eq!(c.nodes[n2].id, n2);
        assert_ne!(zones.of(n2), zones.of(c.node_id("n1").expect("n1")));
        // A ghost becoming a node counts once; an update does not count it twice.
        c.upsert_node(&node("n3", "4", "8Gi", 110).label("zone", "b"));
        c.upsert_node(&node("n3", "4", "8Gi", 110).label("zone", "b"));
        assert_eq!(c.node_labels.count("zone", "b"), 2);
        // A removed node (even one that lives on as a ghost) no longer counts.
        c.remove_node("n3");
        c.remove_node("n3");
        assert_eq!(c.node_labels.count("zone", "b"), 1);
        c.remove_node("n1");
        c.remove_node("n2");
        assert!(c.node_labels.is_empty());
        assert!(c.node_labels.values("zone").is_empty());
    }

    #[test]
    fn anti_affinity_terms_are_indexed_by_label() {
        use crate::testing::affinity_term as term;
        let mut c = Cache::new();
        c.upsert_node(&node("n1", "4", "8Gi", 110));
        c.add_pod(
            &pod("default", "w", "", "")
                .required_anti_affinity(term(&[("app", "web")], "zone"))
                .on("n1"),
        );
        let mut everything = term(&[], "zone");
        everything.label_selector = Some(Default::default());
        c.add_pod(
            &pod("default", "e", "", "")
                .required_anti_affinity(everything)
                .on("n1"),
        );
        c.add_pod(
            &pod("default", "s", "", "")
                .preferred_affinity(1, term(&[("app", "web")], "zone"))
                .on("n1"),
        );
        assert_eq!(anti_candidates(&c, &[("app", "web")]), ["e", "w"]);
        assert_eq!(anti_candidates(&c, &[("app", "db")]), ["e"]);
        assert_eq!(c.pods_with_required_anti_affinity.len(), 2);
        assert_eq!(c.pods_with_scoring_affinity.len(), 1);
        // Replacing a pod re-files its terms.
        c.add_pod(
            &pod("default", "w", "", "")
                .required_anti_affinity(term(&[("app", "db")], "zone"))
                .on("n1"),
        );
        assert_eq!(anti_candidates(&c, &[("app", "web")]), ["e"]);
        assert_eq!(anti_candidates(&c, &[("app", "db")]), ["e", "w"]);
        // ... or drops them when it has none any more.
        c.add_pod(&pod("default", "w", "", "").on("n1"));
        assert_eq!(anti_candidates(&c, &[("app", "db")]), ["e"]);
        c.remove_pod("default", "e");
        c.remove_pod("default", "s");
        assert!(c.anti_affinity_terms.is_empty());
        assert!(c.pods_with_required_anti_affinity.is_empty());
        assert!(c.pods_with_scoring_affinity.is_empty());
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
