//! PodTopologySpread: `topologySpreadConstraints` keep matching pods evenly spread over
//! topology domains.
//!
//! Each constraint counts, per domain (value of `topologyKey`), the pods in the incoming pod's
//! namespace that match its `labelSelector` (plus `matchLabelKeys` values taken from the pod;
//! terminating pods are not counted, and an empty selector counts nothing, as upstream). Only
//! nodes that have every constraint's key take part, and, by the v1.33 defaults, only nodes
//! matching the pod's node affinity/selector (`nodeAffinityPolicy: Honor`) while taints are
//! ignored (`nodeTaintsPolicy: Ignore`); both policies can be set per constraint.
//!
//! `DoNotSchedule` constraints filter: placing the pod in the node's domain must keep
//! `count + (1 if the pod matches itself) - global minimum <= maxSkew`, where the global
//! minimum is 0 while fewer than `minDomains` domains exist. A node without the key fails with
//! "(missing required label)".
//!
//! `ScheduleAnyway` constraints score: for each constraint `count * ln(domains + 2) +
//! (maxSkew - 1)`, summed and rounded; nodes with fewer matching pods around them get higher
//! normalized scores, nodes missing a key get 0.
//!
//! A pod that sets no constraints gets upstream's cluster-level defaults (`defaultingType:
//! System`): `ScheduleAnyway` by hostname with maxSkew 3 and by zone with maxSkew 5, over the
//! pods the selectors of its Services and controlling ReplicationController, ReplicaSet or
//! StatefulSet select ([`Cache::default_spread_selector`]); none when nothing selects it. Those
//! score nodes missing a key too (the zone term is just left out), as upstream's do.
//!
//! Matching pods are found through the cache's pods-by-label index rather than by scanning every
//! pod on every node; with a single `DoNotSchedule` constraint that every node takes part in (no
//! node affinity to honor, taints ignored), the domains come from the cache's index of node
//! label values too, so the pre-filter work does not visit the nodes at all.

use k8s_openapi::api::core::v1::Pod;

use super::Incoming;
use super::taint_toleration::first_untolerated;
use crate::cache::{Cache, NodeId, NodeInfo, PodInfo};
use crate::framework::{Code, FilterResult, MAX_NODE_SCORE, Plugin, Status};
use crate::index::{DomainId, Domains};
use crate::selector::Selector;

pub(crate) const REASON: &str = "node(s) didn't match pod topology spread constraints";
pub(crate) const MISSING_LABEL_REASON: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

/// One parsed spread constraint.
#[derive(Debug, Clone)]
pub(crate) struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: Selector,
    min_domains: usize,
    honor_node_affinity: bool,
    honor_taints: bool,
}

/// A pod's constraints, split by `whenUnsatisfiable`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Constraints {
    pub hard: Vec<Constraint>,
    pub soft: Vec<Constraint>,
    /// Whether scoring ignores nodes missing a key: for the pod's own constraints, not for
    /// the system defaults.
    pub soft_needs_all_keys: bool,
}

impl Constraints {
    /// Whether the pod sets constraints of its own (else the system defaults apply).
    pub fn pod_sets_any(pod: &Pod) -> bool {
        pod.spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|l| !l.is_empty())
    }

    /// Upstream's system default constraints over `selector`; none when it is empty.
    pub fn system_defaults(selector: Selector) -> Self {
        if selector.is_empty() {
            return Constraints::default();
        }
        let constraint = |key: &str, max_skew| Constraint {
            max_skew,
            topology_key: key.to_owned(),
            selector: selector.clone(),
            min_domains: 1,
            honor_node_affinity: true,
            honor_taints: false,
        };
        Constraints {
            hard: Vec::new(),
            soft: vec![constraint(HOSTNAME, 3), constraint(ZONE, 5)],
            soft_needs_all_keys: false,
        }
    }

    pub fn from_pod(pod: &Pod) -> Self {
        let mut out = Constraints {
            soft_needs_all_keys: true,
            ..Constraints::default()
        };
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let list = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref());
        for c in list.into_iter().flatten() {
            let mut selector = Selector::from_api(c.label_selector.as_ref());
            for key in c.match_label_keys.iter().flatten() {
                if let Some(v) = labels.get(key) {
                    selector.require_equal(key, v);
                }
            }
            let parsed = Constraint {
                max_skew: i64::from(c.max_skew),
                topology_key: c.topology_key.clone(),
                selector,
                min_domains: c
                    .min_domains
                    .and_then(|m| usize::try_from(m).ok())
                    .unwrap_or(1)
                    .max(1),
                honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            };
            match c.when_unsatisfiable.as_str() {
                "DoNotSchedule" => out.hard.push(parsed),
                "ScheduleAnyway" => out.soft.push(parsed),
                _ => {}
            }
        }
        out
    }
}

/// Whether the node takes part in the constraint's counts (inclusion policies).
fn included(c: &Constraint, pod: &Incoming<'_>, node: &NodeInfo) -> bool {
    (!c.honor_node_affinity || pod.node_affinity.matches(&node.labels, &node.name))
        && (!c.honor_taints || first_untolerated(pod.tolerations, &node.taints).is_none())
}

/// Whether every node takes part in the constraint's counts, whatever its labels and taints.
fn includes_every_node(c: &Constraint, pod: &Incoming<'_>) -> bool {
    (!c.honor_node_affinity || pod.node_affinity.is_unconstrained()) && !c.honor_taints
}

fn counts_towards(c: &Constraint, pod: &Incoming<'_>, existing: &PodInfo) -> bool {
    !existing.terminating
        && existing.namespace == pod.info.namespace
        && c.selector.matches(&existing.labels)
}

/// Calls `f` with each cached pod (on any node, ghosts included) that counts towards the
/// constraint, found through the cache's pods-by-label index. An empty selector counts nothing.
fn for_each_counted<'c>(
    cache: &'c Cache,
    c: &Constraint,
    pod: &Incoming<'_>,
    mut f: impl FnMut(&'c PodInfo),
) {
    if c.selector.is_empty() {
        return;
    }
    // The candidates are the pod's namespace's; a lone `key=value` selects exactly them.
    let exact = c.selector.is_one_equality();
    for &id in cache
        .pod_labels
        .candidates(&pod.info.namespace, &c.selector)
    {
        let existing = cache.pod(id);
        if !existing.terminating && (exact || c.selector.matches(&existing.labels)) {
            f(existing);
        }
    }
}

/// Pods counting towards the constraint, per node they are on (indexed by node id).
fn counts_by_node(cache: &Cache, c: &Constraint, pod: &Incoming<'_>) -> Vec<i64> {
    let mut counts = vec![0; cache.nodes.len()];
    for_each_counted(cache, c, pod, |existing| counts[existing.node] += 1);
    counts
}

/// One constraint's matching pods per domain of its key, for the domains taking part. Domains
/// are numbered by the cache ([`Domains`]), so a node's count is two vector reads.
#[derive(Debug, Clone)]
struct DomainCounts<'c> {
    /// The key's domains; `None` when no present node has the key.
    domains: Option<&'c Domains>,
    /// Domain id -> matching pods; `None` for a domain that takes no part.
    counts: Vec<Option<i64>>,
    /// Domains taking part.
    taking_part: usize,
}

impl<'c> DomainCounts<'c> {
    /// No domain taking part yet; `extra` slots after the key's own (see `ScoreState`).
    fn new(cache: &'c Cache, key: &str, extra: usize) -> Self {
        let domains = cache.node_labels.domains(key);
        DomainCounts {
            domains,
            counts: vec![None; domains.map_or(0, Domains::slots) + extra],
            taking_part: 0,
        }
    }

    /// The node's domain; `None` when it does not have the key.
    fn domain(&self, node: &NodeInfo) -> Option<DomainId> {
        self.domains?.of(node.id)
    }

    fn take_part(&mut self, d: DomainId) {
        if self.counts[d].is_none() {
            self.counts[d] = Some(0);
            self.taking_part += 1;
        }
    }

    /// Adds to a domain taking part (others are left alone).
    fn add(&mut self, d: DomainId, n: i64) {
        if let Some(count) = &mut self.counts[d] {
            *count += n;
        }
    }

    /// The count of a domain, 0 for one taking no part.
    fn get(&self, d: DomainId) -> i64 {
        self.counts[d].unwrap_or(0)
    }

    fn min(&self) -> Option<i64> {
        self.counts.iter().flatten().copied().min()
    }
}

/// Whether the node has every constraint's key.
fn has_all_keys(counts: &[DomainCounts<'_>], node: &NodeInfo) -> bool {
    counts.iter().all(|c| c.domain(node).is_some())
}

/// The `DoNotSchedule` counts for one cycle.
#[derive(Debug, Clone)]
pub(crate) struct FilterState<'c> {
    /// Per constraint: the matching pods per domain.
    counts: Vec<DomainCounts<'c>>,
    /// Per constraint: the global minimum the skew is measured against.
    min: Vec<i64>,
    /// Per constraint: 1 when the incoming pod matches the selector itself, else 0.
    self_match: Vec<i64>,
}

impl<'c> FilterState<'c> {
    /// `None` when the pod has no `DoNotSchedule` constraints.
    pub fn new(cache: &'c Cache, pod: &Incoming<'_>) -> Option<Self> {
        let hard = &pod.spread.hard;
        if hard.is_empty() {
            return None;
        }
        let counts = match hard.as_slice() {
            [c] if includes_every_node(c, pod) => vec![Self::count_indexed(cache, c, pod)],
            _ => Self::count_by_scan(cache, hard, pod),
        };
        let mut state = FilterState {
            counts,
            min: vec![0; hard.len()],
            self_match: hard
                .iter()
                .map(|c| i64::from(c.selector.matches(&pod.info.labels)))
                .collect(),
        };
        for i in 0..hard.len() {
            state.recompute_min(hard, i);
        }
        Some(state)
    }

    /// One constraint every node takes part in: its domains are the key's values on present
    /// nodes, its counts the counted pods on present nodes.
    fn count_indexed(cache: &'c Cache, c: &Constraint, pod: &Incoming<'_>) -> DomainCounts<'c> {
        let mut counts = DomainCounts::new(cache, &c.topology_key, 0);
        let Some(domains) = counts.domains else {
            return counts;
        };
        for d in domains.ids() {
            counts.take_part(d);
        }
        // Ghosts (and nodes without the key) have no domain.
        for_each_counted(cache, c, pod, |existing| {
            if let Some(d) = domains.of(existing.node) {
                counts.add(d, 1);
            }
        });
        counts
    }

    /// Any constraints: the domains of the nodes that have every key and take part, with the
    /// counted pods on them.
    fn count_by_scan(
        cache: &'c Cache,
        hard: &[Constraint],
        pod: &Incoming<'_>,
    ) -> Vec<DomainCounts<'c>> {
        let by_node: Vec<Vec<i64>> = hard.iter().map(|c| counts_by_node(cache, c, pod)).collect();
        let mut counts: Vec<DomainCounts<'c>> = hard
            .iter()
            .map(|c| DomainCounts::new(cache, &c.topology_key, 0))
            .collect();
        for &id in &cache.order {
            let node = &cache.nodes[id];
            // With one constraint, the domain lookup below is the key check.
            if hard.len() > 1 && !has_all_keys(&counts, node) {
                continue;
            }
            for (i, c) in hard.iter().enumerate() {
                let Some(d) = counts[i].domain(node) else {
                    continue;
                };
                if !included(c, pod, node) {
                    continue;
                }
                counts[i].take_part(d);
                counts[i].add(d, by_node[i][id]);
            }
        }
        counts
    }

    fn recompute_min(&mut self, hard: &[Constraint], i: usize) {
        let counts = &self.counts[i];
        self.min[i] = if counts.taking_part < hard[i].min_domains {
            0
        } else {
            counts.min().unwrap_or(0)
        };
    }

    /// Adjusts the counts for `existing` leaving (`delta` -1) or returning (+1) to `node`.
    pub fn update_for_pod(
        &mut self,
        pod: &Incoming<'_>,
        existing: &PodInfo,
        node: &NodeInfo,
        delta: i64,
    ) {
        let hard = &pod.spread.hard;
        if !has_all_keys(&self.counts, node) {
            return;
        }
        for (i, c) in hard.iter().enumerate() {
            if c.selector.is_empty() || !counts_towards(c, pod, existing) || !included(c, pod, node)
            {
                continue;
            }
            let Some(d) = self.counts[i].domain(node) else {
                continue;
            };
            let Some(before) = self.counts[i].counts[d] else {
                continue;
            };
            self.counts[i].add(d, delta);
            // The minimum only moves down with a decrement, and only needs a scan when the
            // domain that rose was at it.
            if self.counts[i].taking_part < c.min_domains {
                self.min[i] = 0;
            } else if delta < 0 {
                self.min[i] = self.min[i].min(before + delta);
            } else if before == self.min[i] {
                self.recompute_min(hard, i);
            }
        }
    }

    pub fn filter(&self, pod: &Incoming<'_>, node: &NodeInfo) -> FilterResult {
        match self.failure(pod, node) {
            None => Ok(()),
            Some((code, reason)) => Err(Status::new(Plugin::PodTopologySpread, code, reason)),
        }
    }

    /// Why the node fails the filter, without building a [`Status`]; `None` when it passes.
    pub fn failure(&self, pod: &Incoming<'_>, node: &NodeInfo) -> Option<(Code, &'static str)> {
        for (i, c) in pod.spread.hard.iter().enumerate() {
            let Some(d) = self.counts[i].domain(node) else {
                return Some((Code::UnschedulableAndUnresolvable, MISSING_LABEL_REASON));
            };
            if self.counts[i].get(d) + self.self_match[i] - self.min[i] > c.max_skew {
                return Some((Code::Unschedulable, REASON));
            }
        }
        None
    }
}

/// The `ScheduleAnyway` counts for one cycle, over the feasible nodes.
pub(crate) struct ScoreState<'c> {
    /// Per constraint (other than hostname): matching pods per domain. Nodes without the key
    /// (scored under the system defaults only) share one domain, as upstream's empty value: the
    /// key's "" if nodes carry it, else the slot after the key's own.
    counts: Vec<DomainCounts<'c>>,
    /// Per hostname constraint: matching pods per node id (empty for the others).
    by_node: Vec<Vec<i64>>,
    weights: Vec<f64>,
}

impl<'c> ScoreState<'c> {
    /// `None` when the pod has no `ScheduleAnyway` constraints.
    pub fn new(cache: &'c Cache, pod: &Incoming<'_>, feasible: &[NodeId]) -> Option<Self> {
        let soft = &pod.spread.soft;
        if soft.is_empty() {
            return None;
        }
        // Hostname constraints count per node: their domains only say which nodes have the key.
        let mut counts: Vec<DomainCounts<'c>> = soft
            .iter()
            .map(|c| {
                let extra = usize::from(c.topology_key != HOSTNAME);
                let mut counts = DomainCounts::new(cache, &c.topology_key, extra);
                if extra == 0 {
                    counts.counts = Vec::new();
                }
                counts
            })
            .collect();
        let keyless: Vec<DomainId> = counts
            .iter()
            .map(|c| {
                c.domains
                    .and_then(|d| d.id_of(""))
                    .unwrap_or(c.counts.len().saturating_sub(1))
            })
            .collect();
        let domain = |counts: &[DomainCounts<'_>], i: usize, node: &NodeInfo| {
            counts[i].domain(node).unwrap_or(keyless[i])
        };
        let needs_all_keys = pod.spread.soft_needs_all_keys;
        let mut scored = 0usize;
        for &id in feasible {
            let node = &cache.nodes[id];
            if needs_all_keys && !has_all_keys(&counts, node) {
                continue;
            }
            scored += 1;
            for (i, c) in soft.iter().enumerate() {
                if c.topology_key != HOSTNAME {
                    let d = domain(&counts, i, node);
                    counts[i].take_part(d);
                }
            }
        }
        // ln(size + 2) is a small positive float; the casts are exact for realistic sizes.
        #[allow(clippy::cast_precision_loss)]
        let weights = soft
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.topology_key == HOSTNAME {
                    scored
                } else {
                    counts[i].taking_part
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        let mut by_node = vec![Vec::new(); soft.len()];
        for (i, c) in soft.iter().enumerate() {
            if c.topology_key == HOSTNAME {
                by_node[i] = counts_by_node(cache, c, pod);
                continue;
            }
            // Only pods on nodes taking part add to a domain.
            for_each_counted(cache, c, pod, |existing| {
                let node = &cache.nodes[existing.node];
                if !node.present
                    || (needs_all_keys && !has_all_keys(&counts, node))
                    || !included(c, pod, node)
                {
                    return;
                }
                let d = domain(&counts, i, node);
                counts[i].add(d, 1);
            });
        }
        Some(ScoreState {
            counts,
            by_node,
            weights,
        })
    }

    /// The raw score (higher means more matching pods nearby); `None` for ignored nodes.
    pub fn score(&self, pod: &Incoming<'_>, node: &NodeInfo) -> Option<i64> {
        let soft = &pod.spread.soft;
        if pod.spread.soft_needs_all_keys && !has_all_keys(&self.counts, node) {
            return None;
        }
        let mut total = 0.0;
        for (i, c) in soft.iter().enumerate() {
            let Some(d) = self.counts[i].domain(node) else {
                continue;
            };
            let count = if c.topology_key == HOSTNAME {
                self.by_node[i][node.id]
            } else {
                self.counts[i].get(d)
            };
            #[allow(clippy::cast_precision_loss)]
            let term = count as f64 * self.weights[i] + (c.max_skew - 1) as f64;
            total += term;
        }
        #[allow(clippy::cast_possible_truncation)]
        let rounded = total.round() as i64;
        Some(rounded)
    }

    /// Upstream's normalization: fewer is better, ignored nodes get 0.
    pub fn normalize(raw: &[Option<i64>]) -> Vec<i64> {
        let valid = raw.iter().flatten();
        let min = valid.clone().copied().min().unwrap_or(0);
        let max = valid.copied().max().unwrap_or(0).max(0);
        raw.iter()
            .map(|s| match s {
                None => 0,
                Some(_) if max == 0 => MAX_NODE_SCORE,
                Some(s) => MAX_NODE_SCORE * (max + min - s) / max,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{cache_with, filter_reasons};
    use crate::testing::{NodeExt, PodExt, node, node_requirement, pod};
    use k8s_openapi::api::core::v1::{Node, TopologySpreadConstraint};

    /// n1, n2 in zone a; n3 in zone b; n4 in zone c (tainted); n5 without a zone.
    fn nodes() -> Vec<Node> {
        vec![
            node("n1", "4", "8Gi", 110).label("zone", "a"),
            node("n2", "4", "8Gi", 110).label("zone", "a"),
            node("n3", "4", "8Gi", 110).label("zone", "b"),
            node("n4", "4", "8Gi", 110)
                .label("zone", "c")
                .taint("dedicated", "x", "NoSchedule"),
            node("n5", "4", "8Gi", 110),
        ]
    }

    fn web(name: &str, node: &str) -> Pod {
        pod("default", name, "", "").label("app", "web").on(node)
    }

    /// The pod's first topology spread constraint, to set a field the builder does not.
    fn first_constraint(p: &mut Pod) -> &mut TopologySpreadConstraint {
        &mut p
            .spec
            .as_mut()
            .and_then(|s| s.topology_spread_constraints.as_mut())
            .expect("spread constraints")[0]
    }

    const S: &str = REASON;
    const M: &str = MISSING_LABEL_REASON;
    const T: &str = "node(s) had untolerated taint {dedicated: x}";

    /// The reasons on n1..n5, "" for fits.
    fn check(existing: Vec<Pod>, p: Pod, expected: [&str; 5]) {
        let cache = cache_with(&nodes(), &existing);
        let got: Vec<String> = ["n1", "n2", "n3", "n4", "n5"]
            .iter()
            .map(|n| filter_reasons(&cache, &p, n).join("; "))
            .collect();
        assert_eq!(got, expected, "{p:?}");
    }

    fn incoming() -> Pod {
        pod("default", "p", "", "").label("app", "web")
    }

    #[test]
    fn do_not_schedule_table() {
        let zone = |skew| incoming().spread(skew, "zone", "DoNotSchedule", &[("app", "web")]);
        // Empty cluster: every zone is at 0, any zoned node fits (the tainted one fails on its taint).
        check(vec![], zone(1), ["", "", "", T, M]);
        // a=1, b=0, c=0: zone a would reach skew 2.
        check(vec![web("w1", "n1")], zone(1), [S, S, "", T, M]);
        check(vec![web("w1", "n1")], zone(2), ["", "", "", T, M]);
        // a=1, b=1, c=0 (c counts although tainted: taints are ignored by default).
        check(
            vec![web("w1", "n1"), web("w2", "n3")],
            zone(1),
            [S, S, S, T, M],
        );
        // Pods in other namespaces, terminating pods and non-matching pods do not count.
        check(
            vec![
                pod("other", "o", "", "").label("app", "web").on("n1"),
                web("t", "n1").terminating(),
                pod("default", "db", "", "").label("app", "db").on("n1"),
            ],
            zone(1),
            ["", "", "", T, M],
        );
        // An incoming pod that does not match its own selector adds nothing to the skew.
        let other =
            pod("default", "p", "", "").spread(1, "zone", "DoNotSchedule", &[("app", "web")]);
        check(vec![web("w1", "n1")], other, ["", "", "", T, M]);
        // ScheduleAnyway never filters.
        check(
            vec![web("w1", "n1"), web("w2", "n1")],
            incoming().spread(1, "zone", "ScheduleAnyway", &[("app", "web")]),
            ["", "", "", T, ""],
        );
    }

    #[test]
    fn node_inclusion_policies() {
        // With a node selector on zone a or b, zone c drops out of the minimum: a=1, b=1 -> ok.
        let p = incoming()
            .spread(1, "zone", "DoNotSchedule", &[("app", "web")])
            .required_node_term(vec![node_requirement("zone", "In", &["a", "b"])]);
        let na = "node(s) didn't match Pod's node affinity/selector";
        check(
            vec![web("w1", "n1"), web("w2", "n3")],
            p,
            ["", "", "", T, na],
        );
        // Honoring taints drops the tainted zone c too.
        let mut p = incoming().spread(1, "zone", "DoNotSchedule", &[("app", "web")]);
        first_constraint(&mut p).node_taints_policy = Some("Honor".into());
        check(
            vec![web("w1", "n1"), web("w2", "n3")],
            p,
            ["", "", "", T, M],
        );
    }

    #[test]
    fn min_domains() {
        // Two domains exist but three are wanted: the minimum is 0, so skew counts raw pods.
        let mut p = incoming().spread(1, "zone", "DoNotSchedule", &[("app", "web")]);
        first_constraint(&mut p).min_domains = Some(5);
        check(
            vec![web("w1", "n1"), web("w2", "n3"), web("w3", "n4")],
            p,
            [S, S, S, T, M],
        );
    }

    #[test]
    fn hostname_spread() {
        let p = incoming().spread(
            1,
            "kubernetes.io/hostname",
            "DoNotSchedule",
            &[("app", "web")],
        );
        check(vec![web("w1", "n1")], p, [S, "", "", T, ""]);
    }

    #[test]
    fn indexed_counts_match_a_scan_of_the_nodes() {
        let mut cache = cache_with(
            &nodes(),
            &[
                web("w1", "n1"),
                web("w2", "n1"),
                web("w3", "n3"),
                web("w4", "n4"),
                web("t", "n2").terminating(),
                pod("other", "o", "", "").label("app", "web").on("n1"),
                pod("default", "db", "", "").label("app", "db").on("n2"),
                web("g", "ghost"),
            ],
        );
        // n3's pod lives on in a ghost, which counts nowhere.
        cache.remove_node("n3");
        let constraints = [
            incoming().spread(1, "zone", "DoNotSchedule", &[("app", "web")]),
            incoming().spread(1, HOSTNAME, "DoNotSchedule", &[("app", "web")]),
            // An empty selector counts nothing, but the domains are still there.
            incoming().spread(1, "zone", "DoNotSchedule", &[]),
            incoming().spread(1, "missing", "DoNotSchedule", &[("app", "web")]),
        ];
        for p in constraints {
            let inc = Incoming::new(&p);
            let c = &inc.spread.hard[0];
            assert!(includes_every_node(c, &inc));
            let indexed = FilterState::count_indexed(&cache, c, &inc);
            let [scanned] = &FilterState::count_by_scan(&cache, &inc.spread.hard, &inc)[..] else {
                panic!("one constraint");
            };
            assert_eq!(indexed.counts, scanned.counts, "{p:?}");
            assert_eq!(indexed.taking_part, scanned.taking_part, "{p:?}");
        }
        // A node selector makes the constraint count by scan.
        let p = incoming()
            .spread(1, "zone", "DoNotSchedule", &[("app", "web")])
            .node_selector("zone", "a");
        assert!(!includes_every_node(
            &Incoming::new(&p).spread.hard[0],
            &Incoming::new(&p)
        ));
    }

    #[test]
    fn preemption_updates_keep_the_minimum_a_scan_finds() {
        let existing = [
            web("w1", "n1"),
            web("w2", "n2"),
            web("w3", "n3"),
            web("w4", "n3"),
            web("w5", "n4"),
        ];
        let cache = cache_with(&nodes(), &existing);
        for min_domains in [1, 4] {
            let mut p = incoming().spread(1, "zone", "DoNotSchedule", &[("app", "web")]);
            first_constraint(&mut p).min_domains = Some(min_domains);
            let inc = Incoming::new(&p);
            let mut state = FilterState::new(&cache, &inc).expect("hard constraint");
            // Zones a=2, b=2, c=1: take pods out of b and c, then put them back.
            let moves = [
                ("w3", -1),
                ("w5", -1),
                ("w4", -1),
                ("w5", 1),
                ("w3", 1),
                ("w4", 1),
            ];
            for (name, delta) in moves {
                let existing = cache
                    .pods
                    .iter()
                    .flatten()
                    .find(|p| p.name == name)
                    .expect("cached pod");
                state.update_for_pod(&inc, existing, &cache.nodes[existing.node], delta);
                let mut scanned = state.clone();
                scanned.recompute_min(&inc.spread.hard, 0);
                assert_eq!(
                    state.min, scanned.min,
                    "after {name} {delta}, minDomains {min_domains}"
                );
            }
            let fresh = FilterState::new(&cache, &inc).expect("hard constraint");
            assert_eq!(state.min, fresh.min);
            assert_eq!(state.counts[0].counts, fresh.counts[0].counts);
        }
    }

    #[test]
    fn schedule_anyway_scores() {
        let cache = cache_with(
            &nodes(),
            &[web("w1", "n1"), web("w2", "n2"), web("w3", "n3")],
        );
        let p = incoming().spread(1, "zone", "ScheduleAnyway", &[("app", "web")]);
        let inc = Incoming::new(&p);
        let feasible: Vec<NodeId> = cache.order.clone();
        let state = ScoreState::new(&cache, &inc, &feasible).expect("soft constraints");
        let raw: Vec<Option<i64>> = feasible
            .iter()
            .map(|id| state.score(&inc, &cache.nodes[*id]))
            .collect();
        // Zones a=2, b=1, c=0 with weight ln(3 + 2); n5 lacks the key.
        assert_eq!(raw, [Some(3), Some(3), Some(2), Some(0), None]);
        assert_eq!(ScoreState::normalize(&raw), [0, 0, 33, 100, 0]);
        assert_eq!(ScoreState::normalize(&[Some(0), Some(0)]), [100, 100]);
    }

    #[test]
    fn system_defaults_spread_what_services_and_controllers_select() {
        use crate::cache::{SpreadSelector, SpreaderKind};
        use std::collections::BTreeMap;
        let mut cache = cache_with(
            &nodes(),
            &[web("w1", "n1"), web("w2", "n1"), web("w3", "n3")],
        );
        let p = incoming();
        // Nothing selects the pod: no constraints, no spread score.
        let cycle = crate::plugins::Cycle::new(&cache, &p);
        assert!(cycle.pod.spread.soft.is_empty());
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        cache.upsert_spreader(
            SpreaderKind::Service,
            "default",
            "web",
            SpreadSelector::Labels(labels(&[("app", "web")])),
        );
        // A Service in another namespace, or selecting other pods, does not count.
        cache.upsert_spreader(
            SpreaderKind::Service,
            "other",
            "web",
            SpreadSelector::Labels(labels(&[("tier", "x")])),
        );
        cache.upsert_spreader(
            SpreaderKind::Service,
            "default",
            "db",
            SpreadSelector::Labels(labels(&[("app", "db")])),
        );
        let cycle = crate::plugins::Cycle::new(&cache, &p);
        let soft = &cycle.pod.spread.soft;
        assert_eq!(
            soft.iter()
                .map(|c| (c.topology_key.as_str(), c.max_skew))
                .collect::<Vec<_>>(),
            [(HOSTNAME, 3), (ZONE, 5)]
        );
        assert!(soft[0].selector.matches(&labels(&[("app", "web")])));
        assert!(!soft[0].selector.matches(&labels(&[("tier", "x")])));
        // Scored by hostname only (no node has the zone key) and n5 is scored too: fewer
        // web pods, better. n1 has 2, n3 1, the rest 0.
        let feasible: Vec<NodeId> = cache.order.clone();
        let state = ScoreState::new(&cache, &cycle.pod, &feasible).expect("defaults");
        let raw: Vec<Option<i64>> = feasible
            .iter()
            .map(|id| state.score(&cycle.pod, &cache.nodes[*id]))
            .collect();
        // ln(5 + 2) = 1.95: 2 pods 3.9 + 2, 1 pod 1.95 + 2.
        assert_eq!(raw, [Some(6), Some(2), Some(4), Some(2), Some(2)]);
        assert_eq!(ScoreState::normalize(&raw), [33, 100, 66, 100, 100]);

        // The controlling ReplicaSet's selector narrows it further.
        cache.upsert_spreader(
            SpreaderKind::ReplicaSet,
            "default",
            "web-1",
            SpreadSelector::Selector(crate::selector::Selector::from_api(Some(
                &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some(labels(&[("pod-template-hash", "1")])),
                    ..Default::default()
                },
            ))),
        );
        let owned = incoming().controlled_by("apps/v1", "ReplicaSet", "web-1");
        let selector = cache.default_spread_selector(&owned, &labels(&[("app", "web")]));
        assert!(!selector.matches(&labels(&[("app", "web")])));
        assert!(selector.matches(&labels(&[("app", "web"), ("pod-template-hash", "1")])));
        // Pods with constraints of their own get no defaults.
        let own = incoming().spread(1, "zone", "ScheduleAnyway", &[("app", "db")]);
        let cycle = crate::plugins::Cycle::new(&cache, &own);
        assert_eq!(cycle.pod.spread.soft.len(), 1);
        assert!(cycle.pod.spread.soft_needs_all_keys);
    }
}
