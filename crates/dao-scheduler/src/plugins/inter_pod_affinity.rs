//! InterPodAffinity: required and preferred pod affinity and anti-affinity, by topology
//! domain (a `(topologyKey, node label value)` pair).
//!
//! Filter, as upstream:
//! - affinity: every required affinity term's topology key must be on the node, and its domain
//!   must hold a pod matching *all* the terms; a pod whose terms match only itself may go
//!   anywhere with the keys when no such pod exists yet (the first pod of a group);
//! - anti-affinity: no domain of the node (for each term's key) may hold a pod matching the
//!   term;
//! - symmetry: no existing pod's required anti-affinity term may match the incoming pod in a
//!   domain of the node.
//!
//! A term selects pods in `namespaces`, or in namespaces whose labels match
//! `namespaceSelector` (an empty `{}` selects all namespaces; a non-empty one matches against
//! labels fed with [`crate::Cache::upsert_namespace`], and matches nothing for namespaces the
//! cache has not been told about); with neither, the pod's own namespace. `matchLabelKeys` and
//! `mismatchLabelKeys` are merged into the label selector with the pod's own label values.
//!
//! Score: for each existing pod, the incoming pod's preferred terms that match it add (or, for
//! anti-affinity, subtract) their weight to the pod's domain; the existing pod's required
//! affinity terms (weight 1) and preferred terms matching the incoming pod do the same. A node
//! scores the sum over its domains, normalized by min-max to 0..=100.
//!
//! The per-cycle counts come from the cache's indexes, not from a scan of every pod: the pods a
//! term selects are found through the pods-by-label index, the existing anti-affinity terms that
//! may select the incoming pod through the index of those terms by label, and only existing
//! pods whose terms can score (required affinity, preferred terms) are visited for scoring.

use k8s_openapi::api::core::v1::{PodAffinityTerm, PodSpec, WeightedPodAffinityTerm};

use super::Incoming;
use crate::cache::{Cache, NodeId, NodeInfo, PodInfo};
use crate::framework::{Code, FilterResult, MAX_NODE_SCORE, Plugin, Status};
use crate::index::Domains;
use crate::selector::{Labels, Selector};

pub(crate) const AFFINITY_REASON: &str = "node(s) didn't match pod affinity rules";
pub(crate) const ANTI_AFFINITY_REASON: &str = "node(s) didn't match pod anti-affinity rules";
pub(crate) const EXISTING_ANTI_AFFINITY_REASON: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// One parsed pod affinity term.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct AffinityTerm {
    namespaces: Vec<String>,
    namespace_selector: Selector,
    selector: Selector,
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(term: &PodAffinityTerm, namespace: &str, labels: &Labels) -> Self {
        let mut namespaces = term.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.push(namespace.to_owned());
        }
        // Each namespace once: the pods of a namespace are then visited once per term.
        namespaces.sort_unstable();
        namespaces.dedup();
        let has_keys = term
            .match_label_keys
            .as_ref()
            .is_some_and(|k| !k.is_empty())
            || term
                .mismatch_label_keys
                .as_ref()
                .is_some_and(|k| !k.is_empty());
        let mut selector = match (&term.label_selector, has_keys) {
            (None, true) => Selector::everything(),
            (s, _) => Selector::from_api(s.as_ref()),
        };
        for key in term.match_label_keys.iter().flatten() {
            if let Some(v) = labels.get(key) {
                selector.require_equal(key, v);
            }
        }
        for key in term.mismatch_label_keys.iter().flatten() {
            if let Some(v) = labels.get(key) {
                selector.require_not_equal(key, v);
            }
        }
        AffinityTerm {
            namespaces,
            namespace_selector: Selector::from_api(term.namespace_selector.as_ref()),
            selector,
            topology_key: term.topology_key.clone(),
        }
    }

    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// Whether a pod in `namespace` (whose labels, if known, are `namespace_labels`) with these
    /// labels is selected by the term.
    pub fn matches(
        &self,
        namespace: &str,
        labels: &Labels,
        namespace_labels: Option<&Labels>,
    ) -> bool {
        self.in_namespace(namespace, namespace_labels) && self.selector.matches(labels)
    }

    fn in_namespace(&self, namespace: &str, namespace_labels: Option<&Labels>) -> bool {
        self.namespaces.iter().any(|n| n == namespace)
            || self.namespace_selector.is_empty()
            || namespace_labels.is_some_and(|l| self.namespace_selector.matches(l))
    }

    /// Calls `f` with every cached pod (on any node, ghosts included) the term selects, found
    /// through the cache's pods-by-label index.
    fn for_each_selected<'c>(&self, cache: &'c Cache, mut f: impl FnMut(&'c PodInfo)) {
        // A lone `key=value` selects exactly its posting list.
        let exact = self.selector.is_one_equality();
        let mut visit = |namespace: &str| {
            for &id in cache.pod_labels.candidates(namespace, &self.selector) {
                let pod = cache.pod(id);
                if exact || self.selector.matches(&pod.labels) {
                    f(pod);
                }
            }
        };
        if self.namespace_selector.selects_nothing() {
            // Only the listed namespaces (deduplicated in `new`).
            for namespace in &self.namespaces {
                visit(namespace);
            }
        } else {
            for namespace in cache.pod_labels.namespaces() {
                if self.in_namespace(namespace, cache.namespace_labels(namespace)) {
                    visit(namespace);
                }
            }
        }
    }

    fn matches_pod(&self, cache: &Cache, pod: &PodInfo) -> bool {
        self.matches(
            &pod.namespace,
            &pod.labels,
            cache.namespace_labels(&pod.namespace),
        )
    }
}

/// A pod's parsed pod affinity and anti-affinity.
#[derive(Debug, Clone, Default)]
pub(crate) struct PodAffinityTerms {
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<(i64, AffinityTerm)>,
    pub preferred_anti_affinity: Vec<(i64, AffinityTerm)>,
}

impl PodAffinityTerms {
    /// Whether an existing pod with these terms takes part in scoring incoming pods (required
    /// anti-affinity does not).
    pub fn scores(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    /// Parses the pod's terms; `None` when it has none.
    pub fn from_pod(spec: &PodSpec, namespace: &str, labels: &Labels) -> Option<Self> {
        let affinity = spec.affinity.as_ref()?;
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(t, namespace, labels))
                .collect()
        };
        let preferred = |terms: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<(i64, AffinityTerm)> {
            terms
                .into_iter()
                .flatten()
                .filter(|t| t.weight != 0)
                .map(|t| {
                    (
                        i64::from(t.weight),
                        AffinityTerm::new(&t.pod_affinity_term, namespace, labels),
                    )
                })
                .collect()
        };
        let pa = affinity.pod_affinity.as_ref();
        let paa = affinity.pod_anti_affinity.as_ref();
        let terms = PodAffinityTerms {
            required_affinity: required(pa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: required(paa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: preferred(pa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: preferred(paa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
        };
        let empty = terms.required_affinity.is_empty()
            && terms.required_anti_affinity.is_empty()
            && terms.preferred_affinity.is_empty()
            && terms.preferred_anti_affinity.is_empty();
        (!empty).then_some(terms)
    }
}

/// Counts per topology domain, for a few keys: per key, a vector indexed by the cache's domain
/// ids ([`Domains`]), so a node's count is found without a string lookup.
#[derive(Debug, Clone, Default)]
struct TopologyCounts<'c> {
    keys: Vec<KeyCounts<'c>>,
    /// Domains whose count is not zero.
    nonzero: usize,
}

#[derive(Debug, Clone)]
struct KeyCounts<'c> {
    key: String,
    domains: &'c Domains,
    counts: Vec<i64>,
}

/// A key's place in a [`TopologyCounts`]; `None` when no present node has the key.
type Slot = Option<usize>;

impl<'c> TopologyCounts<'c> {
    /// The key's place, added on first use.
    fn slot(&mut self, cache: &'c Cache, key: &str) -> Slot {
        if let Some(i) = self.keys.iter().position(|k| k.key == key) {
            return Some(i);
        }
        let domains = cache.node_labels.domains(key)?;
        self.keys.push(KeyCounts {
            key: key.to_owned(),
            domains,
            counts: vec![0; domains.slots()],
        });
        Some(self.keys.len() - 1)
    }

    /// Adds to the domain of the node with this id of the key at `slot` (nothing for a node
    /// without the key, or not present).
    fn update_slot(&mut self, slot: Slot, node: NodeId, delta: i64) {
        let Some(k) = slot.and_then(|i| self.keys.get_mut(i)) else {
            return;
        };
        let Some(d) = k.domains.of(node) else {
            return;
        };
        let count = &mut k.counts[d];
        let before = *count;
        *count += delta;
        match (before == 0, *count == 0) {
            (true, false) => self.nonzero += 1,
            (false, true) => self.nonzero -= 1,
            _ => {}
        }
    }

    fn update(&mut self, cache: &'c Cache, node: &NodeInfo, key: &str, delta: i64) {
        let slot = self.slot(cache, key);
        self.update_slot(slot, node.id, delta);
    }

    /// The count of the node's domain of the key at `slot`; `None` when the node does not
    /// have the key.
    fn domain_count(&self, slot: Slot, node: &NodeInfo) -> Option<i64> {
        let k = self.keys.get(slot?)?;
        k.domains.of(node.id).map(|d| k.counts[d])
    }

    /// The count of the node's domain of the key at `slot` (0 without one).
    fn get(&self, slot: Slot, node: &NodeInfo) -> i64 {
        self.domain_count(slot, node).unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.nonzero == 0
    }

    /// Whether any domain of the node has a positive count.
    fn any_on(&self, node: &NodeInfo) -> bool {
        self.keys
            .iter()
            .any(|k| k.domains.of(node.id).is_some_and(|d| k.counts[d] > 0))
    }

    /// The sum of the node's domain counts.
    fn sum_on(&self, node: &NodeInfo) -> i64 {
        self.keys
            .iter()
            .filter_map(|k| k.domains.of(node.id).map(|d| k.counts[d]))
            .sum()
    }
}

/// The incoming pod's terms, or none.
fn terms<'p>(pod: &'p Incoming<'_>) -> Option<&'p PodAffinityTerms> {
    pod.info.affinity.as_deref()
}

fn matches_all(terms: &[AffinityTerm], cache: &Cache, pod: &PodInfo) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches_pod(cache, pod))
}

/// The pre-filter counts for one cycle.
#[derive(Debug, Clone)]
pub(crate) struct FilterState<'c> {
    /// Domains where an existing pod's required anti-affinity matches the incoming pod.
    existing_anti: TopologyCounts<'c>,
    /// Domains with pods matching all of the incoming pod's required affinity terms.
    affinity: TopologyCounts<'c>,
    /// Domains with pods matching one of the incoming pod's required anti-affinity terms.
    anti: TopologyCounts<'c>,
    /// The places of the incoming pod's required affinity terms' keys in `affinity`.
    affinity_slots: Vec<Slot>,
    /// The places of its required anti-affinity terms' keys in `anti`.
    anti_slots: Vec<Slot>,
}

impl<'c> FilterState<'c> {
    /// Counts domains; `None` when neither the pod nor any existing pod has required terms.
    pub fn new(cache: &'c Cache, pod: &Incoming<'_>) -> Option<Self> {
        let own = terms(pod)
            .filter(|t| !t.required_affinity.is_empty() || !t.required_anti_affinity.is_empty());
        if own.is_none() && cache.pods_with_required_anti_affinity.is_empty() {
            return None;
        }
        let mut state = FilterState {
            existing_anti: TopologyCounts::default(),
            affinity: TopologyCounts::default(),
            anti: TopologyCounts::default(),
            affinity_slots: Vec::new(),
            anti_slots: Vec::new(),
        };
        let own_ns_labels = cache.namespace_labels(&pod.info.namespace);
        // Only the existing terms filed under one of the incoming pod's labels (or unindexed)
        // can select it; identical terms of many pods are matched once.
        for group in cache.anti_affinity_terms.candidates(&pod.info.labels) {
            let t = &group.term;
            if !t.matches(&pod.info.namespace, &pod.info.labels, own_ns_labels) {
                continue;
            }
            let slot = state.existing_anti.slot(cache, &t.topology_key);
            for (&node, &n) in &group.nodes {
                // Ghosts have no domain.
                state.existing_anti.update_slot(slot, node, i64::from(n));
            }
        }
        if let Some(own) = own {
            state.affinity_slots = own
                .required_affinity
                .iter()
                .map(|t| state.affinity.slot(cache, &t.topology_key))
                .collect();
            state.anti_slots = own
                .required_anti_affinity
                .iter()
                .map(|t| state.anti.slot(cache, &t.topology_key))
                .collect();
            // Pods matching all affinity terms are among those the first one selects.
            if let Some(first) = own.required_affinity.first() {
                let (affinity, slots) = (&mut state.affinity, &state.affinity_slots);
                first.for_each_selected(cache, |existing| {
                    let node = &cache.nodes[existing.node];
                    if node.present && matches_all(&own.required_affinity, cache, existing) {
                        for &slot in slots {
                            affinity.update_slot(slot, node.id, 1);
                        }
                    }
                });
            }
            for (t, &slot) in own.required_anti_affinity.iter().zip(&state.anti_slots) {
                let anti = &mut state.anti;
                t.for_each_selected(cache, |existing| {
                    let node = &cache.nodes[existing.node];
                    if node.present {
                        anti.update_slot(slot, node.id, 1);
                    }
                });
            }
        }
        Some(state)
    }

    fn count_own_terms(
        &mut self,
        cache: &Cache,
        pod: &Incoming<'_>,
        existing: &PodInfo,
        node: &NodeInfo,
        delta: i64,
    ) {
        let Some(own) = terms(pod) else { return };
        if matches_all(&own.required_affinity, cache, existing) {
            for &slot in &self.affinity_slots {
                self.affinity.update_slot(slot, node.id, delta);
            }
        }
        for (t, &slot) in own.required_anti_affinity.iter().zip(&self.anti_slots) {
            if t.matches_pod(cache, existing) {
                self.anti.update_slot(slot, node.id, delta);
            }
        }
    }

    /// Adjusts the counts for `existing` leaving (`delta` -1) or returning (+1) to `node`.
    pub fn update_for_pod(
        &mut self,
        cache: &'c Cache,
        pod: &Incoming<'_>,
        existing: &PodInfo,
        node: &NodeInfo,
        delta: i64,
    ) {
        let own_ns_labels = cache.namespace_labels(&pod.info.namespace);
        for t in existing
            .affinity
            .iter()
            .flat_map(|a| &a.required_anti_affinity)
        {
            if t.matches(&pod.info.namespace, &pod.info.labels, own_ns_labels) {
                self.existing_anti
                    .update(cache, node, &t.topology_key, delta);
            }
        }
        self.count_own_terms(cache, pod, existing, node, delta);
    }

    pub fn filter(&self, pod: &Incoming<'_>, node: &NodeInfo) -> FilterResult {
        match self.failure(pod, node) {
            None => Ok(()),
            Some((code, reason)) => Err(Status::new(Plugin::InterPodAffinity, code, reason)),
        }
    }

    /// Why the node fails the filter, without building a [`Status`]; `None` when it passes.
    pub fn failure(&self, pod: &Incoming<'_>, node: &NodeInfo) -> Option<(Code, &'static str)> {
        if let Some(own) = terms(pod) {
            if !self.satisfies_affinity(own, pod, node) {
                return Some((Code::UnschedulableAndUnresolvable, AFFINITY_REASON));
            }
            let anti_hit = !self.anti.is_empty()
                && self
                    .anti_slots
                    .iter()
                    .any(|&slot| self.anti.get(slot, node) > 0);
            if anti_hit {
                return Some((Code::Unschedulable, ANTI_AFFINITY_REASON));
            }
        }
        if !self.existing_anti.is_empty() && self.existing_anti.any_on(node) {
            return Some((Code::Unschedulable, EXISTING_ANTI_AFFINITY_REASON));
        }
        None
    }

    fn satisfies_affinity(
        &self,
        own: &PodAffinityTerms,
        pod: &Incoming<'_>,
        node: &NodeInfo,
    ) -> bool {
        let mut pods_exist = true;
        for &slot in &self.affinity_slots {
            match self.affinity.domain_count(slot, node) {
                None => return false,
                Some(count) if count <= 0 => pods_exist = false,
                Some(_) => {}
            }
        }
        if pods_exist {
            return true;
        }
        // The first pod of a group that has affinity to itself.
        self.affinity.is_empty()
            && own
                .required_affinity
                .iter()
                .all(|t| t.matches(&pod.info.namespace, &pod.info.labels, None))
    }
}

/// Preferred-term scores per domain for one cycle.
pub(crate) struct ScoreState<'c> {
    scores: TopologyCounts<'c>,
}

impl<'c> ScoreState<'c> {
    /// `None` when neither the pod nor any existing pod has pod (anti-)affinity.
    pub fn new(cache: &'c Cache, pod: &Incoming<'_>) -> Option<Self> {
        let own = terms(pod);
        let has_preferred = own.is_some_and(|t| {
            !t.preferred_affinity.is_empty() || !t.preferred_anti_affinity.is_empty()
        });
        if !has_preferred && cache.pods_with_scoring_affinity.is_empty() {
            return None;
        }
        let mut scores = TopologyCounts::default();
        let own_ns_labels = cache.namespace_labels(&pod.info.namespace);
        // The node of an existing pod that can score: present and labelled.
        let scored_node = |existing: &PodInfo| -> Option<&NodeInfo> {
            let node = &cache.nodes[existing.node];
            (node.present && !node.labels.is_empty()).then_some(node)
        };
        for (sign, terms) in own
            .iter()
            .flat_map(|o| [(1, &o.preferred_affinity), (-1, &o.preferred_anti_affinity)])
        {
            for (w, t) in terms {
                t.for_each_selected(cache, |existing| {
                    if let Some(node) = scored_node(existing) {
                        scores.update(cache, node, &t.topology_key, sign * *w);
                    }
                });
            }
        }
        for &pod_id in &cache.pods_with_scoring_affinity {
            let existing = cache.pod(pod_id);
            let Some(node) = scored_node(existing) else {
                continue;
            };
            let Some(theirs) = existing.affinity.as_deref() else {
                continue;
            };
            let incoming =
                |t: &AffinityTerm| t.matches(&pod.info.namespace, &pod.info.labels, own_ns_labels);
            for t in &theirs.required_affinity {
                if incoming(t) {
                    scores.update(cache, node, &t.topology_key, 1);
                }
            }
            for (w, t) in &theirs.preferred_affinity {
                if incoming(t) {
                    scores.update(cache, node, &t.topology_key, *w);
                }
            }
            for (w, t) in &theirs.preferred_anti_affinity {
                if incoming(t) {
                    scores.update(cache, node, &t.topology_key, -*w);
                }
            }
        }
        Some(ScoreState { scores })
    }

    /// The raw score: the sum of the node's domain scores.
    pub fn score(&self, node: &NodeInfo) -> i64 {
        self.scores.sum_on(node)
    }

    /// Min-max normalization to 0..=100 (all 0 when nothing was scored).
    pub fn normalize(&self, scores: &mut [i64]) {
        if self.scores.is_empty() {
            scores.fill(0);
            return;
        }
        let min = scores.iter().copied().min().unwrap_or(0);
        let max = scores.iter().copied().max().unwrap_or(0);
        let span = max - min;
        for s in scores {
            *s = if span > 0 {
                MAX_NODE_SCORE * (*s - min) / span
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{cache_with, filter_reasons};
    use crate::testing::{NodeExt, PodExt, affinity_term as term, node, pod};
    use k8s_openapi::api::core::v1::{Node, Pod};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    /// Nodes n1, n2 in zone a, n3 in zone b, n4 without a zone.
    fn nodes() -> Vec<Node> {
        vec![
            node("n1", "4", "8Gi", 110).label("zone", "a"),
            node("n2", "4", "8Gi", 110).label("zone", "a"),
            node("n3", "4", "8Gi", 110).label("zone", "b"),
            node("n4", "4", "8Gi", 110),
        ]
    }

    /// The reasons on each of n1..n4, "" for fits.
    fn check(existing: Vec<Pod>, p: Pod, expected: [&str; 4]) {
        let cache = cache_with(&nodes(), &existing);
        let got: Vec<String> = ["n1", "n2", "n3", "n4"]
            .iter()
            .map(|n| filter_reasons(&cache, &p, n).join("; "))
            .collect();
        assert_eq!(got, expected, "{p:?}");
    }

    const A: &str = AFFINITY_REASON;
    const AA: &str = ANTI_AFFINITY_REASON;
    const EA: &str = EXISTING_ANTI_AFFINITY_REASON;

    fn web(name: &str, node: &str) -> Pod {
        pod("default", name, "", "").label("app", "web").on(node)
    }

    #[test]
    fn required_affinity() {
        let p = || pod("default", "p", "", "");
        // Zone a holds a web pod: both zone-a nodes fit; zone b and the zoneless node do not.
        check(
            vec![web("w", "n1")],
            p().required_affinity(term(&[("app", "web")], "zone")),
            ["", "", A, A],
        );
        // Per hostname only n1.
        check(
            vec![web("w", "n1")],
            p().required_affinity(term(&[("app", "web")], "kubernetes.io/hostname")),
            ["", A, A, A],
        );
        // No matching pod anywhere and the pod does not match itself: nowhere.
        check(
            vec![],
            p().required_affinity(term(&[("app", "web")], "zone")),
            [A, A, A, A],
        );
        // ... but the first pod of a self-affine group goes anywhere with the key.
        check(
            vec![],
            p().label("app", "web")
                .required_affinity(term(&[("app", "web")], "zone")),
            ["", "", "", A],
        );
        // Other namespaces do not count unless named.
        let other = pod("other", "w", "", "").label("app", "web").on("n3");
        check(
            vec![other.clone()],
            p().required_affinity(term(&[("app", "web")], "zone")),
            [A, A, A, A],
        );
        let mut t = term(&[("app", "web")], "zone");
        t.namespaces = Some(vec!["other".into()]);
        check(vec![other.clone()], p().required_affinity(t), [A, A, "", A]);
        // An empty namespace selector means every namespace.
        let mut t = term(&[("app", "web")], "zone");
        t.namespace_selector = Some(LabelSelector::default());
        check(vec![other], p().required_affinity(t), [A, A, "", A]);
        // Two terms: one pod must match both.
        check(
            vec![
                web("w", "n1"),
                pod("default", "db", "", "").label("tier", "db").on("n3"),
            ],
            p().required_affinity(term(&[("app", "web")], "zone"))
                .required_affinity(term(&[("tier", "db")], "zone")),
            [A, A, A, A],
        );
    }

    #[test]
    fn required_anti_affinity() {
        let p = || pod("default", "p", "", "");
        check(
            vec![web("w", "n1")],
            p().required_anti_affinity(term(&[("app", "web")], "zone")),
            [AA, AA, "", ""],
        );
        check(
            vec![web("w", "n1")],
            p().required_anti_affinity(term(&[("app", "web")], "kubernetes.io/hostname")),
            [AA, "", "", ""],
        );
        check(
            vec![],
            p().required_anti_affinity(term(&[("app", "web")], "zone")),
            ["", "", "", ""],
        );
        // Terminating pods still count.
        check(
            vec![web("w", "n3").terminating()],
            p().required_anti_affinity(term(&[("app", "web")], "zone")),
            ["", "", AA, ""],
        );
    }

    #[test]
    fn existing_pods_anti_affinity() {
        let guard = pod("default", "g", "", "")
            .required_anti_affinity(term(&[("app", "web")], "zone"))
            .on("n1");
        // The incoming web pod may not join the guard's zone.
        check(
            vec![guard.clone()],
            pod("default", "p", "", "").label("app", "web"),
            [EA, EA, "", ""],
        );
        // Other pods are unaffected.
        check(
            vec![guard],
            pod("default", "p", "", "").label("app", "db"),
            ["", "", "", ""],
        );
    }

    #[test]
    fn preferred_scores() {
        let cache = cache_with(
            &nodes(),
            &[web("w1", "n1"), web("w2", "n3"), web("w3", "n3")],
        );
        let scores = |p: &Pod| -> Vec<i64> {
            let incoming = Incoming::new(p);
            let state = ScoreState::new(&cache, &incoming).expect("has terms");
            let mut raw: Vec<i64> = cache
                .order
                .iter()
                .map(|id| state.score(&cache.nodes[*id]))
                .collect();
            state.normalize(&mut raw);
            raw
        };
        let p = pod("default", "p", "", "").preferred_affinity(10, term(&[("app", "web")], "zone"));
        // zone a: 10, zone b: 20, no zone: 0.
        assert_eq!(scores(&p), [50, 50, 100, 0]);
        let p = pod("default", "p", "", "")
            .preferred_anti_affinity(10, term(&[("app", "web")], "zone"));
        assert_eq!(scores(&p), [50, 50, 0, 100]);
        // Existing pods' preferred terms attract the incoming pod (symmetry).
        let cache = cache_with(
            &nodes(),
            &[pod("default", "e", "", "")
                .preferred_affinity(5, term(&[("app", "web")], "zone"))
                .on("n3")],
        );
        let p = pod("default", "p", "", "").label("app", "web");
        let incoming = Incoming::new(&p);
        let state = ScoreState::new(&cache, &incoming).expect("existing pod has terms");
        let raw: Vec<i64> = cache
            .order
            .iter()
            .map(|id| state.score(&cache.nodes[*id]))
            .collect();
        assert_eq!(raw, [0, 0, 5, 0]);
        // Without any affinity in the cluster the plugin is skipped.
        let cache = cache_with(&nodes(), &[web("w1", "n1")]);
        assert!(ScoreState::new(&cache, &Incoming::new(&pod("default", "p", "", ""))).is_none());
    }

    #[test]
    fn namespace_selectors_use_namespace_labels_from_the_cache() {
        use k8s_openapi::api::core::v1::Namespace;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let mut t = term(&[("app", "web")], "zone");
        t.namespace_selector = Some(LabelSelector {
            match_labels: Some([("team".to_owned(), "a".to_owned())].into()),
            ..LabelSelector::default()
        });
        let p = pod("default", "p", "", "").required_affinity(t);
        let mut cache = cache_with(
            &nodes(),
            &[pod("other", "w", "", "").label("app", "web").on("n3")],
        );
        // Unknown namespace labels: the selector matches nothing.
        assert_eq!(filter_reasons(&cache, &p, "n3"), [A]);
        cache.upsert_namespace(&Namespace {
            metadata: ObjectMeta {
                name: Some("other".into()),
                labels: Some([("team".to_owned(), "a".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        });
        assert!(filter_reasons(&cache, &p, "n3").is_empty());
        cache.remove_namespace("other");
        assert_eq!(filter_reasons(&cache, &p, "n3"), [A]);
    }

    #[test]
    fn terms_without_equalities_and_namespace_lists() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
        let exists = |key: &str| {
            let mut t = term(&[], "zone");
            t.label_selector = Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: key.into(),
                    operator: "Exists".into(),
                    values: None,
                }]),
                ..LabelSelector::default()
            });
            t
        };
        // An existing term with no `key=value` to be filed under still guards its zone.
        let guard = pod("default", "g", "", "")
            .required_anti_affinity(exists("app"))
            .on("n3");
        check(
            vec![guard.clone()],
            pod("default", "p", "", "").label("app", "db"),
            ["", "", EA, ""],
        );
        check(vec![guard], pod("default", "p", "", ""), ["", "", "", ""]);
        // The incoming pod's own term without equalities.
        check(
            vec![pod("default", "x", "", "").label("tier", "db").on("n3")],
            pod("default", "p", "", "").required_anti_affinity(exists("tier")),
            ["", "", AA, ""],
        );
        // A namespace listed twice counts its pods once.
        let mut t = term(&[("app", "web")], "zone");
        t.namespaces = Some(vec!["other".into(), "other".into()]);
        let cache = cache_with(
            &nodes(),
            &[pod("other", "w", "", "").label("app", "web").on("n3")],
        );
        let p = pod("default", "p", "", "").preferred_affinity(10, t);
        let incoming = Incoming::new(&p);
        let state = ScoreState::new(&cache, &incoming).expect("has terms");
        let raw: Vec<i64> = cache
            .order
            .iter()
            .map(|id| state.score(&cache.nodes[*id]))
            .collect();
        assert_eq!(raw, [0, 0, 10, 0]);
    }

    #[test]
    fn match_label_keys_merge_into_the_selector() {
        let mut t = term(&[("app", "web")], "zone");
        t.match_label_keys = Some(vec!["rev".into()]);
        let p = pod("default", "p", "", "")
            .label("rev", "2")
            .required_anti_affinity(t);
        check(
            vec![
                web("w1", "n1").label("rev", "1"),
                web("w3", "n3").label("rev", "2"),
            ],
            p,
            ["", "", AA, ""],
        );
    }
}
