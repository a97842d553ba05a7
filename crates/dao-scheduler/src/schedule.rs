//! One scheduling decision: filter nodes (sampling as upstream), score the feasible ones with
//! the default profile's weights, pick the best; or explain why no node fits.
//!
//! Sampling: once enough feasible nodes are found ([`Scheduler::num_feasible_nodes_to_find`]:
//! all nodes below 100, else an adaptive `50 - nodes/125` percent, at least 5% and at least
//! 100 nodes) filtering stops; the next decision starts where this one stopped, so load
//! spreads over the cluster. Filtering asks only whether a node fits, most selective filters
//! first; when none does, a second pass over every node collects each node's first failing
//! filter in upstream's order for the FailedScheduling message (the same message one pass in
//! upstream's order gives). A pod whose `status.nominatedNodeName` still fits is placed there
//! without looking further (the node it preempted for). With a single feasible node, scoring is
//! skipped.
//!
//! Ties between the best scores are broken at random (a seeded generator, so runs are
//! reproducible) or, with `Config::seed: None`, by taking the first in evaluation order.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;

use crate::cache::{Cache, NodeId};
use crate::framework::{Code, Plugin, Status, default_normalize};
use crate::plugins::image_locality::PodImages;
use crate::plugins::{
    Cycle, balanced_allocation, inter_pod_affinity, node_affinity, pod_topology_spread,
    resources_fit, taint_toleration,
};

/// Below this many nodes, every node is filtered.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never drops below this.
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// Scheduler settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Percentage of nodes to find feasible before scoring (`None` or 0: upstream's adaptive
    /// percentage; 100 or more: all nodes).
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Seed of the generator that breaks ties between equally scored nodes; `None` takes the
    /// first of them in evaluation order.
    pub seed: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            percentage_of_nodes_to_score: None,
            seed: Some(0x05ee_dda0_5eed),
        }
    }
}

/// Where a pod goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleResult {
    /// The chosen node.
    pub node: String,
    /// Nodes the filters ran on.
    pub evaluated: usize,
    /// Nodes that passed them.
    pub feasible: usize,
}

/// Why no node fits a pod, with upstream's FailedScheduling message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct FitError {
    /// Namespace and name of the pod.
    pub pod: (String, String),
    /// Nodes in the cluster.
    pub num_nodes: usize,
    /// Reason -> number of nodes that gave it (a node can give several).
    pub reasons: BTreeMap<String, usize>,
    /// The plugins that rejected at least one node (for requeueing decisions).
    pub unschedulable_plugins: BTreeSet<&'static str>,
    /// Nodes that failed for reasons evicting pods cannot fix.
    pub unresolvable_nodes: usize,
}

impl FitError {
    /// The message before any preemption note: `"0/5 nodes are available: 2 Insufficient cpu,
    /// 3 node(s) had untolerated taint {dedicated: gpu}."`, or `"no nodes available to schedule
    /// pods"` for an empty cluster. Entries are `"{count} {reason}"` sorted as strings, as
    /// upstream sorts them.
    pub fn message(&self) -> String {
        if self.num_nodes == 0 {
            return "no nodes available to schedule pods".to_owned();
        }
        format!(
            "0/{} nodes are available: {}.",
            self.num_nodes,
            histogram(&self.reasons)
        )
    }

    /// The message followed by the preemption outcome (e.g. [`crate::NoPreemption::message`]); an
    /// empty note leaves the message alone.
    pub fn message_with_preemption(&self, note: &str) -> String {
        if note.is_empty() {
            self.message()
        } else {
            format!("{} {note}", self.message())
        }
    }
}

/// `"{count} {reason}"` entries sorted as strings and joined with `", "`.
pub(crate) fn histogram<'a>(reasons: impl IntoIterator<Item = (&'a String, &'a usize)>) -> String {
    let mut entries: Vec<String> = reasons
        .into_iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    entries.sort();
    entries.join(", ")
}

/// Collects filter failures into a [`FitError`]. Failing nodes can be most of a large
/// cluster, so the few distinct plugins and reasons are kept in small lists (a reason is
/// usually the same `&'static str`, compared by address first) rather than hashed per node.
#[derive(Default)]
struct Diagnosis {
    reasons: Vec<(Cow<'static, str>, usize)>,
    plugins: Vec<Plugin>,
    unresolvable: usize,
}

impl Diagnosis {
    fn add(&mut self, status: Status) {
        if !self.plugins.contains(&status.plugin) {
            self.plugins.push(status.plugin);
        }
        if status.code == Code::UnschedulableAndUnresolvable {
            self.unresolvable += 1;
        }
        for r in status.reasons {
            let same = |(known, _): &&mut (Cow<'static, str>, usize)| {
                (known.as_ptr() == r.as_ptr() && known.len() == r.len()) || *known == r
            };
            match self.reasons.iter_mut().find(same) {
                Some((_, n)) => *n += 1,
                None => self.reasons.push((r, 1)),
            }
        }
    }

    fn into_error(self, pod: &Pod, num_nodes: usize) -> FitError {
        FitError {
            pod: pod_key(pod),
            num_nodes,
            reasons: self
                .reasons
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v))
                .collect(),
            unschedulable_plugins: self.plugins.into_iter().map(Plugin::name).collect(),
            unresolvable_nodes: self.unresolvable,
        }
    }
}

pub(crate) fn pod_key(pod: &Pod) -> (String, String) {
    (
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// The scheduling algorithm and its small state (sampling start, tie-break generator).
#[derive(Debug, Clone)]
pub struct Scheduler {
    config: Config,
    next_start: usize,
    rng: Option<u64>,
}

impl Scheduler {
    pub fn new(config: Config) -> Self {
        let rng = config.seed;
        Scheduler {
            config,
            next_start: 0,
            rng,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How many feasible nodes to find among `num_nodes` before scoring.
    pub fn num_feasible_nodes_to_find(&self, num_nodes: usize) -> usize {
        if num_nodes < MIN_FEASIBLE_NODES_TO_FIND {
            return num_nodes;
        }
        let mut percentage = self.config.percentage_of_nodes_to_score.unwrap_or(0) as usize;
        if percentage == 0 {
            percentage = 50usize
                .saturating_sub(num_nodes / 125)
                .max(MIN_FEASIBLE_NODES_PERCENTAGE);
        }
        if percentage >= 100 {
            return num_nodes;
        }
        (num_nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
    }

    /// Picks a node for the pod, or says why none fits.
    pub fn schedule(&mut self, cache: &Cache, pod: &Pod) -> Result<ScheduleResult, FitError> {
        let n = cache.order.len();
        if n == 0 {
            return Err(Diagnosis::default().into_error(pod, 0));
        }
        let cycle = Cycle::new(cache, pod);
        let nominated = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref());
        if let Some(id) = nominated.and_then(|name| cache.node_id(name))
            && cycle.passes(&cache.nodes[id])
        {
            return Ok(ScheduleResult {
                node: cache.nodes[id].name.clone(),
                evaluated: 1,
                feasible: 1,
            });
        }
        let want = self.num_feasible_nodes_to_find(n);
        let start = self.next_start % n;
        let mut feasible = Vec::with_capacity(want);
        let mut evaluated = 0;
        for i in 0..n {
            let id = cache.order[(start + i) % n];
            evaluated += 1;
            if cycle.passes(&cache.nodes[id]) {
                feasible.push(id);
                if feasible.len() >= want {
                    break;
                }
            }
        }
        self.next_start = (start + evaluated) % n;
        let best = match feasible.len() {
            0 => return Err(diagnose(&cycle, pod)),
            1 => feasible[0],
            _ => {
                let totals = score(&cycle, &feasible);
                self.select(&feasible, &totals)
            }
        };
        Ok(ScheduleResult {
            node: cache.nodes[best].name.clone(),
            evaluated,
            feasible: feasible.len(),
        })
    }

    /// The best-scored node; ties broken by the generator or by position.
    fn select(&mut self, feasible: &[NodeId], totals: &[i64]) -> NodeId {
        let mut best = 0;
        let mut ties = 0u64;
        for (i, total) in totals.iter().enumerate() {
            if *total > totals[best] {
                best = i;
                ties = 1;
            } else if *total == totals[best] {
                ties += 1;
                // Reservoir sampling: the k-th tie replaces the pick with probability 1/k.
                if ties > 1
                    && let Some(r) = self.next_random()
                    && r % ties == 0
                {
                    best = i;
                }
            }
        }
        feasible[best]
    }

    /// splitmix64.
    pub(crate) fn next_random(&mut self) -> Option<u64> {
        let state = self.rng.as_mut()?;
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Some(z ^ (z >> 31))
    }
}

/// Why no node fits: every node's first failing filter, in upstream's order. Only a pod that
/// fits nowhere pays for the reasons; the search itself asks [`Cycle::passes`].
fn diagnose(cycle: &Cycle<'_>, pod: &Pod) -> FitError {
    let cache = cycle.cache;
    let mut diagnosis = Diagnosis::default();
    for &id in &cache.order {
        if let Err(status) = cycle.filter(&cache.nodes[id]) {
            diagnosis.add(status);
        }
    }
    diagnosis.into_error(pod, cache.order.len())
}

/// Weighted sum of every score plugin for each feasible node.
fn score(cycle: &Cycle<'_>, feasible: &[NodeId]) -> Vec<i64> {
    let cache = cycle.cache;
    let pod = &cycle.pod;
    let nodes = || feasible.iter().map(|id| &cache.nodes[*id]);
    let mut totals = vec![0i64; feasible.len()];
    let mut add = |plugin: Plugin, scores: &[i64]| {
        let w = plugin.score_weight();
        for (t, s) in totals.iter_mut().zip(scores) {
            *t += w * s;
        }
    };

    let fit: Vec<i64> = nodes().map(|n| resources_fit::score(pod, n)).collect();
    add(Plugin::NodeResourcesFit, &fit);

    if balanced_allocation::applies(pod) {
        let balanced: Vec<i64> = nodes()
            .map(|n| balanced_allocation::score(pod, n))
            .collect();
        add(Plugin::NodeResourcesBalancedAllocation, &balanced);
    }

    let images = PodImages::new(cache, pod);
    if !images.is_empty() {
        let image: Vec<i64> = nodes().map(|n| images.score(n)).collect();
        add(Plugin::ImageLocality, &image);
    }

    let mut taints: Vec<i64> = nodes().map(|n| taint_toleration::score(pod, n)).collect();
    default_normalize(&mut taints, true);
    add(Plugin::TaintToleration, &taints);

    if !pod.preferred_node_affinity.is_empty() {
        let mut affinity: Vec<i64> = nodes().map(|n| node_affinity::score(pod, n)).collect();
        default_normalize(&mut affinity, false);
        add(Plugin::NodeAffinity, &affinity);
    }

    if let Some(state) = inter_pod_affinity::ScoreState::new(cache, pod) {
        let mut inter: Vec<i64> = nodes().map(|n| state.score(n)).collect();
        state.normalize(&mut inter);
        add(Plugin::InterPodAffinity, &inter);
    }

    if let Some(state) = pod_topology_spread::ScoreState::new(cache, pod, feasible) {
        let raw: Vec<Option<i64>> = feasible
            .iter()
            .map(|id| state.score(pod, &cache.nodes[*id]))
            .collect();
        add(
            Plugin::PodTopologySpread,
            &pod_topology_spread::ScoreState::normalize(&raw),
        );
    }
    totals
}

#[cfg(test)]
mod tests;
