//! Incremental indexes the [`crate::Cache`] keeps next to its nodes and pods, so that a
//! scheduling cycle's pre-filter work visits only the pods that can matter instead of every pod
//! on every node.
//!
//! - [`PodLabels`]: per namespace, all its pods and, per label `key=value`, the pods carrying
//!   it. A label selector's candidates are the smallest posting list among its equality
//!   requirements (or the whole namespace when it has none); callers still check the full
//!   selector on each candidate.
//! - [`NodeLabels`]: per label key, the values present nodes carry and how many nodes carry
//!   each: the topology domains of a key without a scan of the nodes.
//! - [`TermIndex`]: existing pods' required anti-affinity terms, filed under one equality of
//!   their selector (or as unindexed), so the terms that may select an incoming pod are found
//!   from the incoming pod's own labels.

use std::collections::{BTreeSet, HashMap};

use crate::cache::PodId;
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

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.0.is_empty()
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

/// Label values of present nodes with their node counts; see the module documentation.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeLabels(HashMap<String, HashMap<String, usize>>);

impl NodeLabels {
    pub fn add(&mut self, labels: &Labels) {
        for (k, v) in labels {
            let values = match self.0.get_mut(k) {
                Some(values) => values,
                None => self.0.entry(k.clone()).or_default(),
            };
            match values.get_mut(v) {
                Some(n) => *n += 1,
                None => {
                    values.insert(v.clone(), 1);
                }
            }
        }
    }

    pub fn remove(&mut self, labels: &Labels) {
        for (k, v) in labels {
            let Some(values) = self.0.get_mut(k) else {
                continue;
            };
            let Some(n) = values.get_mut(v) else {
                continue;
            };
            *n -= 1;
            if *n == 0 {
                values.remove(v);
                if values.is_empty() {
                    self.0.remove(k);
                }
            }
        }
    }

    /// The values present nodes have for `key`.
    pub fn values(&self, key: &str) -> impl Iterator<Item = &String> {
        self.0.get(key).into_iter().flat_map(HashMap::keys)
    }

    /// How many present nodes are labelled `key=value`, for tests.
    #[cfg(test)]
    pub fn count(&self, key: &str, value: &str) -> usize {
        self.0
            .get(key)
            .and_then(|m| m.get(value))
            .copied()
            .unwrap_or(0)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A term of an existing pod: the pod and the term's position in its list.
pub(crate) type TermRef = (PodId, usize);

/// Existing pods' terms filed by one `key=value` their selector requires; see the module
/// documentation.
#[derive(Debug, Clone, Default)]
pub(crate) struct TermIndex {
    by_label: Postings<TermRef>,
    /// Terms whose selector has no equality requirement.
    unindexed: BTreeSet<TermRef>,
}

impl TermIndex {
    pub fn insert(&mut self, id: PodId, selectors: &[&Selector]) {
        for (i, s) in selectors.iter().enumerate() {
            match s.equalities().next() {
                Some((k, v)) => self.by_label.insert(k, v, (id, i)),
                None => {
                    self.unindexed.insert((id, i));
                }
            }
        }
    }

    /// Removes the terms `insert` filed for the same pod and selectors.
    pub fn remove(&mut self, id: PodId, selectors: &[&Selector]) {
        for (i, s) in selectors.iter().enumerate() {
            match s.equalities().next() {
                Some((k, v)) => self.by_label.remove(k, v, &(id, i)),
                None => {
                    self.unindexed.remove(&(id, i));
                }
            }
        }
    }

    /// Each term that may select a pod with these labels, once (callers check the term).
    pub fn candidates<'s>(&'s self, labels: &'s Labels) -> impl Iterator<Item = TermRef> + 's {
        labels
            .iter()
            .filter_map(|(k, v)| self.by_label.get(k, v))
            .flatten()
            .chain(&self.unindexed)
            .copied()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_label.is_empty() && self.unindexed.is_empty()
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
        idx.add(&a);
        idx.add(&b);
        assert_eq!(idx.count("zone", "a"), 2);
        let mut hosts: Vec<&String> = idx.values("host").collect();
        hosts.sort();
        assert_eq!(hosts, ["n1", "n2"]);
        idx.remove(&a);
        assert_eq!(idx.count("zone", "a"), 1);
        assert_eq!(idx.values("host").count(), 1);
        idx.remove(&b);
        assert!(idx.is_empty());
        assert_eq!(idx.values("zone").count(), 0);
    }

    #[test]
    fn term_index_finds_terms_by_the_incoming_labels() {
        let mut idx = TermIndex::default();
        let web = selector(&[("app", "web")]);
        let everything = Selector::everything();
        idx.insert(7, &[&web, &everything]);
        idx.insert(8, &[&selector(&[("app", "db")])]);
        let found = |idx: &TermIndex, l: &[(&str, &str)]| -> Vec<TermRef> {
            let l = labels(l);
            let mut v: Vec<TermRef> = idx.candidates(&l).collect();
            v.sort_unstable();
            v
        };
        assert_eq!(found(&idx, &[("app", "web")]), [(7, 0), (7, 1)]);
        assert_eq!(found(&idx, &[("app", "db"), ("x", "y")]), [(7, 1), (8, 0)]);
        assert_eq!(found(&idx, &[]), [(7, 1)]);
        idx.remove(7, &[&web, &everything]);
        assert_eq!(found(&idx, &[("app", "web")]), Vec::<TermRef>::new());
        idx.remove(8, &[&selector(&[("app", "db")])]);
        assert!(idx.is_empty());
    }
}
