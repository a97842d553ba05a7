//! Incremental indexes the [`crate::Cache`] keeps next to its nodes and pods, so that a
//! scheduling cycle's pre-filter work visits only the pods that can matter instead of every pod
//! on every node.
//!
//! - [`PodLabels`]: per namespace, all its pods and, per label `key=value`, the pods carrying
//!   it. A label selector's candidates are the smallest posting list among its equality
//!   requirements (or the whole namespace when it has none); callers still check the full
//!   selector on each candidate.
//! - [`NodeLabels`]: per label key, the values present nodes carry ([`Domains`]), each numbered,
//!   with how many nodes carry it and each node's number: the topology domains of a key
//!   without a scan of the nodes, and a node's domain without a string lookup, so that a cycle
//!   keeps its per-domain counts in vectors.
//! - [`TermGroups`]: existing pods' required anti-affinity terms, identical terms grouped with
//!   the nodes of the pods carrying them, each group filed under one equality of its selector
//!   (or as unindexed), so the terms that may select an incoming pod are found from the
//!   incoming pod's own labels and matched once per distinct term.

use std::collections::{BTreeSet, HashMap};

use crate::cache::{NodeId, PodId};
use crate::selector::{Labels, Selector};

/// `key -> value -> set`, with empty entries removed.
#[derive(Debug, Clone)]
struct Postings<T: Ord>(HashMap<String, HashMap<String, BTreeSet<T>>>);

impl<T: Ord> Default for Postings<T> {
    fn default() -> Self {
        Postings(HashMap::new())
    }
}

impl<T: Ord> Postings<T> {
    fn insert(&mut self, key: &str, value: &str, item: T) {
        let values = match self.0.get_mut(key) {
            Some(values) => values,
            None => self.0.entry(key.to_owned()).or_default(),
        };
        match values.get_mut(value) {
            Some(set) => {
                set.insert(item);
            }
            None => {
                values.insert(value.to_owned(), BTreeSet::from([item]));
            }
        }
    }

    fn remove(&mut self, key: &str, value: &str, item: &T) {
        let Some(values) = self.0.get_mut(key) else {
            return;
        };
        let Some(set) = values.get_mut(value) else {
            return;
        };
        set.remove(item);
        if set.is_empty() {
            values.remove(value);
            if values.is_empty() {
                self.0.remove(key);
            }
        }
    }

    fn get(&self, key: &str, value: &str) -> Option<&BTreeSet<T>> {
        self.0.get(key)?.get(value)
    }
}

/// The pods of one namespace.
#[derive(Debug, Clone, Default)]
struct NamespacePods {
    all: BTreeSet<PodId>,
    by_label: Postings<PodId>,
}

/// Pods per namespace and per namespace and label; see the module documentation.
#[derive(Debug, Clone, Default)]
pub(crate) struct PodLabels {
    namespaces: HashMap<String, NamespacePods>,
}

impl PodLabels {
    pub fn insert(&mut self, id: PodId, namespace: &str, labels: &Labels) {
        let ns = match self.namespaces.get_mut(namespace) {
            Some(ns) => ns,
            None => self.namespaces.entry(namespace.to_owned()).or_default(),
        };
        ns.all.insert(id);
        for (k, v) in labels {
            ns.by_label.insert(k, v, id);
        }
    }

    pub fn remove(&mut self, id: PodId, namespace: &str, labels: &Labels) {
        let Some(ns) = self.namespaces.get_mut(namespace) else {
            return;
        };
        ns.all.remove(&id);
        for (k, v) in labels {
            ns.by_label.remove(k, v, &id);
        }
        if ns.all.is_empty() {
            self.namespaces.remove(namespace);
        }
    }

    /// Namespaces holding at least one pod.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.keys().map(String::as_str)
    }

    /// A superset of the pods in `namespace` that `selector` selects (empty when it selects
    /// nothing or a required `key=value` is on no pod).
    pub fn candidates(&self, namespace: &str, selector: &Selector) -> &BTreeSet<PodId> {
        static EMPTY: BTreeSet<PodId> = BTreeSet::new();
        if selector.selects_nothing() {
            return &EMPTY;
        }
        let Some(ns) = self.namespaces.get(namespace) else {
            return &EMPTY;
        };
        let mut best = &ns.all;
        for (k, v) in selector.equalities() {
            match ns.by_label.get(k, v) {
                None => return &EMPTY,
                Some(set) if set.len() < best.len() => best = set,
                Some(_) => {}
            }
        }
        best
    }

    /// The number of pods in `namespace` labelled `key=value`, for tests.
    #[cfg(test)]
    pub fn count(&self, namespace: &str, key: &str, value: &str) -> usize {
        self.namespaces
            .get(namespace)
            .and_then(|ns| ns.by_label.get(key, value))
            .map_or(0, BTreeSet::len)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }
}

/// A topology domain: one value of one label key, numbered among that key's values so that a
/// cycle counts per domain in a plain vector.
pub(crate) type DomainId = usize;

const NO_DOMAIN: u32 = u32::MAX;

/// Puts `item` in a slot of `items` that `free` lists, or at the end when none is free, and
/// returns its index: the slot reuse behind the cache's pod and node ids, domain ids and term
/// group ids, which stay small and dense so that vectors can be indexed by them.
pub(crate) fn put_in_slot<T>(items: &mut Vec<T>, free: &mut Vec<usize>, item: T) -> usize {
    match free.pop() {
        Some(id) => {
            items[id] = item;
            id
        }
        None => {
            items.push(item);
            items.len() - 1
        }
    }
}

/// The values present nodes carry for one key: each value's id and node count, and each node's
/// value id. Ids of values no node carries any more are reused.
#[derive(Debug, Clone, Default)]
pub(crate) struct Domains {
    ids: HashMap<String, u32>,
    /// Id -> value and the number of present nodes carrying it (0 for a free id).
    values: Vec<(String, usize)>,
    free: Vec<usize>,
    /// Node id -> its value's id, [`NO_DOMAIN`] for a node without the key or not present.
    by_node: Vec<u32>,
}

impl Domains {
    /// The domain of a node (present nodes only); `None` when it does not have the key.
    pub fn of(&self, node: NodeId) -> Option<DomainId> {
        match self.by_node.get(node) {
            Some(&d) if d != NO_DOMAIN => Some(d as DomainId),
            _ => None,
        }
    }

    /// One past the largest domain id: the length of a vector indexed by domain.
    pub fn slots(&self) -> usize {
        self.values.len()
    }

    /// The domains present nodes carry.
    pub fn ids(&self) -> impl Iterator<Item = DomainId> + '_ {
        self.ids.values().map(|&d| d as DomainId)
    }

    /// How many domains present nodes carry, for tests.
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.ids.len()
    }

    /// The id of a value present nodes carry.
    pub fn id_of(&self, value: &str) -> Option<DomainId> {
        self.ids.get(value).map(|&d| d as DomainId)
    }

    fn add(&mut self, node: NodeId, value: &str) {
        let id = match self.ids.get(value) {
            Some(&id) => id,
            None => {
                let slot = put_in_slot(&mut self.values, &mut self.free, (value.to_owned(), 0));
                let id = u32::try_from(slot).expect("fewer than 2^32 domains");
                self.ids.insert(value.to_owned(), id);
                id
            }
        };
        self.values[id as usize].1 += 1;
        if self.by_node.len() <= node {
            self.by_node.resize(node + 1, NO_DOMAIN);
        }
        self.by_node[node] = id;
    }

    fn remove(&mut self, node: NodeId, value: &str) {
        if let Some(slot) = self.by_node.get_mut(node) {
            *slot = NO_DOMAIN;
        }
        let Some(&id) = self.ids.get(value) else {
            return;
        };
        let entry = &mut self.values[id as usize];
        entry.1 -= 1;
        if entry.1 == 0 {
            entry.0.clear();
            self.ids.remove(value);
            self.free.push(id as usize);
        }
    }
}

/// Per label key, the [`Domains`] of present nodes; see the module documentation.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeLabels(HashMap<String, Domains>);

impl NodeLabels {
    /// Files a present node's labels.
    pub fn add(&mut self, node: NodeId, labels: &Labels) {
        for (k, v) in labels {
            let domains = match self.0.get_mut(k) {
                Some(domains) => domains,
                None => self.0.entry(k.clone()).or_default(),
            };
            domains.add(node, v);
        }
    }

    /// Unfiles the labels `add` filed for the node.
    pub fn remove(&mut self, node: NodeId, labels: &Labels) {
        for (k, v) in labels {
            let Some(domains) = self.0.get_mut(k) else {
                continue;
            };
            domains.remove(node, v);
            if domains.ids.is_empty() {
                self.0.remove(k);
            }
        }
    }

    /// The domains of `key`; `None` when no present node has it.
    pub fn domains(&self, key: &str) -> Option<&Domains> {
        self.0.get(key)
    }

    /// The values present nodes have for `key`, for tests.
    #[cfg(test)]
    pub fn values(&self, key: &str) -> Vec<&str> {
        let mut values: Vec<&str> = self
            .0
            .get(key)
            .into_iter()
            .flat_map(|d| d.ids.keys().map(String::as_str))
            .collect();
        values.sort_unstable();
        values
    }

    /// How many present nodes are labelled `key=value`, for tests.
    #[cfg(test)]
    pub fn count(&self, key: &str, value: &str) -> usize {
        self.0
            .get(key)
            .and_then(|d| d.ids.get(value).map(|&id| d.values[id as usize].1))
            .unwrap_or(0)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A group of identical terms in a [`TermGroups`].
pub(crate) type GroupId = usize;

/// Identical terms of existing pods, one group per distinct term, with the nodes of the pods
/// that carry it.
#[derive(Debug, Clone)]
pub(crate) struct TermGroup<T> {
    pub term: T,
    /// Node -> how many times pods on it carry the term; the group goes when this is empty.
    pub nodes: HashMap<NodeId, u32>,
}

/// Existing pods' terms grouped by identity, each group filed under one `key=value` its
/// selector requires (or as unindexed); see the module documentation. The pods of one workload
/// carry the same term, so a cycle matches each distinct term once, not once per pod.
#[derive(Debug, Clone)]
pub(crate) struct TermGroups<T> {
    ids: HashMap<T, GroupId>,
    groups: Vec<Option<TermGroup<T>>>,
    free: Vec<GroupId>,
    by_label: Postings<GroupId>,
    /// Groups whose selector has no equality requirement.
    unindexed: BTreeSet<GroupId>,
}

impl<T> Default for TermGroups<T> {
    fn default() -> Self {
        TermGroups {
            ids: HashMap::new(),
            groups: Vec::new(),
            free: Vec::new(),
            by_label: Postings::default(),
            unindexed: BTreeSet::new(),
        }
    }
}

impl<T: Clone + Eq + std::hash::Hash> TermGroups<T> {
    /// Counts a term carried by a pod on `node`; `selector` is the term's label selector.
    pub fn insert(&mut self, term: &T, selector: &Selector, node: NodeId) {
        let id = match self.ids.get(term) {
            Some(&id) => id,
            None => {
                let group = TermGroup {
                    term: term.clone(),
                    nodes: HashMap::new(),
                };
                let id = put_in_slot(&mut self.groups, &mut self.free, Some(group));
                self.ids.insert(term.clone(), id);
                match selector.equalities().next() {
                    Some((k, v)) => self.by_label.insert(k, v, id),
                    None => {
                        self.unindexed.insert(id);
                    }
                }
                id
            }
        };
        let group = self.groups[id].as_mut().expect("live group");
        *group.nodes.entry(node).or_insert(0) += 1;
    }

    /// Uncounts what `insert` counted for the same term, selector and node.
    pub fn remove(&mut self, term: &T, selector: &Selector, node: NodeId) {
        let Some(&id) = self.ids.get(term) else {
            return;
        };
        let Some(group) = self.groups[id].as_mut() else {
            return;
        };
        if let Some(n) = group.nodes.get_mut(&node) {
            *n -= 1;
            if *n == 0 {
                group.nodes.remove(&node);
            }
        }
        if !group.nodes.is_empty() {
            return;
        }
        self.groups[id] = None;
        self.ids.remove(term);
        self.free.push(id);
        match selector.equalities().next() {
            Some((k, v)) => self.by_label.remove(k, v, &id),
            None => {
                self.unindexed.remove(&id);
            }
        }
    }

    /// Each group whose term may select a pod with these labels, once (callers check the
    /// term).
    pub fn candidates<'s>(
        &'s self,
        labels: &'s Labels,
    ) -> impl Iterator<Item = &'s TermGroup<T>> + 's {
        labels
            .iter()
            .filter_map(|(k, v)| self.by_label.get(k, v))
            .flatten()
            .chain(&self.unindexed)
            .filter_map(|&id| self.groups[id].as_ref())
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn selector(pairs: &[(&str, &str)]) -> Selector {
        Selector::from_api(Some(&LabelSelector {
            match_labels: Some(labels(pairs)),
            ..LabelSelector::default()
        }))
    }

    fn ids(set: &BTreeSet<PodId>) -> Vec<PodId> {
        set.iter().copied().collect()
    }

    #[test]
    fn pod_labels_pick_the_smallest_posting_list() {
        let mut idx = PodLabels::default();
        idx.insert(1, "default", &labels(&[("app", "web"), ("tier", "front")]));
        idx.insert(2, "default", &labels(&[("app", "web"), ("tier", "back")]));
        idx.insert(3, "default", &labels(&[("app", "db")]));
        idx.insert(4, "other", &labels(&[("app", "web")]));
        assert_eq!(
            ids(idx.candidates("default", &selector(&[("app", "web")]))),
            [1, 2]
        );
        assert_eq!(
            ids(idx.candidates("default", &selector(&[("app", "web"), ("tier", "back")]))),
            [2]
        );
        // A required label on no pod: nothing.
        assert!(
            idx.candidates("default", &selector(&[("app", "x")]))
                .is_empty()
        );
        assert!(
            idx.candidates("missing", &selector(&[("app", "web")]))
                .is_empty()
        );
        assert!(idx.candidates("default", &Selector::nothing()).is_empty());
        // No equality: the whole namespace.
        assert_eq!(
            ids(idx.candidates("default", &Selector::everything())),
            [1, 2, 3]
        );
        let exists = Selector::from_api(Some(&LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "Exists".into(),
                values: None,
            }]),
            ..LabelSelector::default()
        }));
        assert_eq!(ids(idx.candidates("default", &exists)), [1, 2, 3]);
        idx.remove(1, "default", &labels(&[("app", "web"), ("tier", "front")]));
        assert_eq!(idx.count("default", "app", "web"), 1);
        assert_eq!(idx.count("default", "tier", "front"), 0);
        idx.remove(2, "default", &labels(&[("app", "web"), ("tier", "back")]));
        idx.remove(3, "default", &labels(&[("app", "db")]));
        idx.remove(4, "other", &labels(&[("app", "web")]));
        assert!(idx.is_empty());
    }

    #[test]
    fn node_labels_count_nodes_per_value() {
        let mut idx = NodeLabels::default();
        let a = labels(&[("zone", "a"), ("host", "n1")]);
        let b = labels(&[("zone", "a"), ("host", "n2")]);
        idx.add(0, &a);
        idx.add(3, &b);
        assert_eq!(idx.count("zone", "a"), 2);
        assert_eq!(idx.values("host"), ["n1", "n2"]);
        let zones = idx.domains("zone").expect("zone domains");
        assert_eq!(zones.of(0), zones.of(3));
        assert_eq!(zones.of(1), None);
        assert_eq!(zones.count(), 1);
        let hosts = idx.domains("host").expect("host domains");
        assert_ne!(hosts.of(0), hosts.of(3));
        let freed = hosts.of(0);
        idx.remove(0, &a);
        assert_eq!(idx.count("zone", "a"), 1);
        assert_eq!(idx.values("host"), ["n2"]);
        assert_eq!(idx.domains("zone").and_then(|d| d.of(0)), None);
        // A freed id is reused for the next new value.
        idx.add(0, &labels(&[("host", "n9")]));
        assert_eq!(idx.domains("host").and_then(|d| d.of(0)), freed);
        assert_eq!(idx.domains("host").map(Domains::slots), Some(2));
        idx.remove(0, &labels(&[("host", "n9")]));
        idx.remove(3, &b);
        assert!(idx.is_empty());
        assert!(idx.values("zone").is_empty());
    }

    #[test]
    fn freed_slots_are_reused_before_the_vector_grows() {
        let (mut items, mut free) = (Vec::new(), Vec::new());
        assert_eq!(put_in_slot(&mut items, &mut free, "a"), 0);
        assert_eq!(put_in_slot(&mut items, &mut free, "b"), 1);
        free.push(0);
        assert_eq!(put_in_slot(&mut items, &mut free, "c"), 0);
        assert_eq!(put_in_slot(&mut items, &mut free, "d"), 2);
        assert_eq!(items, ["c", "b", "d"]);
        assert!(free.is_empty());
    }

    #[test]
    fn term_groups_count_identical_terms_once() {
        let mut idx: TermGroups<Selector> = TermGroups::default();
        let web = selector(&[("app", "web")]);
        let everything = Selector::everything();
        idx.insert(&web, &web, 1);
        idx.insert(&web, &web, 1);
        idx.insert(&web, &web, 2);
        idx.insert(&everything, &everything, 2);
        idx.insert(&selector(&[("app", "db")]), &selector(&[("app", "db")]), 3);
        let found =
            |idx: &TermGroups<Selector>, l: &[(&str, &str)]| -> Vec<(usize, Vec<(NodeId, u32)>)> {
                let l = labels(l);
                let mut v: Vec<(usize, Vec<(NodeId, u32)>)> = idx
                    .candidates(&l)
                    .map(|g| {
                        let mut nodes: Vec<(NodeId, u32)> =
                            g.nodes.iter().map(|(n, c)| (*n, *c)).collect();
                        nodes.sort_unstable();
                        let carried = nodes.iter().map(|&(_, c)| c as usize).sum();
                        (carried, nodes)
                    })
                    .collect();
                v.sort_unstable();
                v
            };
        assert_eq!(
            found(&idx, &[("app", "web")]),
            [(1, vec![(2, 1)]), (3, vec![(1, 2), (2, 1)])]
        );
        assert_eq!(
            found(&idx, &[("app", "db"), ("x", "y")]),
            [(1, vec![(2, 1)]), (1, vec![(3, 1)])]
        );
        assert_eq!(found(&idx, &[]), [(1, vec![(2, 1)])]);
        idx.remove(&web, &web, 1);
        idx.remove(&web, &web, 2);
        assert_eq!(
            found(&idx, &[("app", "web")]),
            [(1, vec![(1, 1)]), (1, vec![(2, 1)])]
        );
        idx.remove(&web, &web, 1);
        idx.remove(&everything, &everything, 2);
        assert_eq!(found(&idx, &[("app", "web")]), []);
        idx.remove(&selector(&[("app", "db")]), &selector(&[("app", "db")]), 3);
        assert!(idx.is_empty());
    }
}
