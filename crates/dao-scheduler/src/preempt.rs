//! Preemption (upstream's DefaultPreemption): find the node where evicting pods of lower
//! priority than the incoming pod makes it fit, evicting as few and as unimportant pods as
//! possible, and breaking as few PodDisruptionBudgets as it can (budgets are respected where
//! possible, never guaranteed, as upstream).
//!
//! 1. A pod with `preemptionPolicy: Never` never preempts; nor does one whose nominated node
//!    still has a lower-priority pod terminating (an earlier preemption is in progress).
//! 2. Nodes that failed for reasons eviction cannot fix (taints, selectors, node name, ...)
//!    are skipped.
//! 3. On each remaining node (up to upstream's candidate count: 10% of the nodes, at least 100)
//!    every lower-priority pod is removed in a dry run; if the pod then fits, the victims are
//!    added back one by one, first those whose eviction would exceed a PodDisruptionBudget's
//!    `disruptionsAllowed`, then the others, each group from the most important (priority,
//!    then earliest start), keeping each one that still leaves room. Inter-pod affinity and spread counts are adjusted along
//!    the way, so evicting an anti-affine pod or a skewing pod is understood.
//! 4. Among the candidates the node is picked by: fewest budget violations, lowest
//!    highest-victim priority, lowest sum of victim priorities, fewest victims, latest start of
//!    its most important victims, first.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::cache::{Cache, NodeId, PodId};
use crate::framework::Code;
use crate::plugins::Cycle;
use crate::schedule::{Scheduler, histogram};

/// The node to preempt on and the pods to evict there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preemption {
    pub node: String,
    /// `(namespace, name)` of each pod to evict.
    pub victims: Vec<(String, String)>,
}

/// Why preemption found nothing, as the note upstream appends to the FailedScheduling event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NoPreemption {
    /// e.g. `"preemption: 0/5 nodes are available: 5 Preemption is not helpful for
    /// scheduling."` or `"preemption: not eligible due to preemptionPolicy=Never."`.
    pub message: String,
}

const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

struct Candidate {
    node: NodeId,
    victims: Vec<PodId>,
    /// Victims whose eviction exceeds a PodDisruptionBudget.
    violations: usize,
}

impl Scheduler {
    /// Finds the node where evicting the fewest / lowest-priority pods (all with priority
    /// lower than the pod's) makes the pod fit; `None` if nothing helps or the pod's
    /// `preemptionPolicy` is `Never`.
    pub fn preempt(&mut self, cache: &Cache, pod: &Pod) -> Option<Preemption> {
        self.try_preempt(cache, pod).ok()
    }

    /// Like [`Scheduler::preempt`], but says why nothing was found.
    pub fn try_preempt(&mut self, cache: &Cache, pod: &Pod) -> Result<Preemption, NoPreemption> {
        let fail = |message: String| Err(NoPreemption { message });
        let spec = pod.spec.as_ref();
        if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
            return fail("preemption: not eligible due to preemptionPolicy=Never.".to_owned());
        }
        let priority = spec.and_then(|s| s.priority).unwrap_or(0);
        let nominated = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref());
        if let Some(id) = nominated.and_then(|n| cache.node_id(n)) {
            let busy = cache.nodes[id]
                .pods
                .iter()
                .map(|p| cache.pod(*p))
                .any(|p| p.terminating && p.priority < priority);
            if busy {
                return fail(
                    "preemption: not eligible due to a terminating pod on the nominated node."
                        .to_owned(),
                );
            }
        }
        let n = cache.order.len();
        if n == 0 {
            // Upstream does not run preemption without nodes, so there is no note.
            return fail(String::new());
        }
        let mut cycle = Cycle::new(cache, pod);
        let mut notes: HashMap<String, usize> = HashMap::new();
        let mut potential = Vec::new();
        for &id in &cache.order {
            match cycle.filter(&cache.nodes[id]) {
                // The pod fits as things are: nothing to evict.
                Ok(()) => {
                    return Ok(Preemption {
                        node: cache.nodes[id].name.clone(),
                        victims: Vec::new(),
                    });
                }
                Err(s) if s.code == Code::UnschedulableAndUnresolvable => {
                    *notes.entry(NOT_HELPFUL.to_owned()).or_insert(0) += 1;
                }
                Err(_) => potential.push(id),
            }
        }
        let wanted = (n * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
            .max(MIN_CANDIDATE_NODES_ABSOLUTE)
            .min(potential.len());
        let offset = if potential.is_empty() {
            0
        } else {
            let len = u64::try_from(potential.len()).unwrap_or(u64::MAX);
            usize::try_from(self.next_random().unwrap_or(0) % len).unwrap_or(0)
        };
        let mut candidates = Vec::new();
        for i in 0..potential.len() {
            if candidates.len() >= wanted {
                break;
            }
            let id = potential[(offset + i) % potential.len()];
            match select_victims(&mut cycle, id) {
                Ok((victims, violations)) => candidates.push(Candidate {
                    node: id,
                    victims,
                    violations,
                }),
                Err(reasons) => {
                    for r in reasons {
                        *notes.entry(r).or_insert(0) += 1;
                    }
                }
            }
        }
        let Some(best) = pick(cache, &candidates) else {
            return fail(format!(
                "preemption: 0/{n} nodes are available: {}.",
                histogram(&notes)
            ));
        };
        let victims = best
            .victims
            .iter()
            .map(|id| {
                let p = cache.pod(*id);
                (p.namespace.clone(), p.name.clone())
            })
            .collect();
        Ok(Preemption {
            node: cache.nodes[best.node].name.clone(),
            victims,
        })
    }
}

/// Splits pods (in order) into those whose eviction would take a PodDisruptionBudget below
/// zero disruptions allowed and the others, as upstream counts them: each evicted pod a budget
/// selects uses one of its allowed disruptions, unless the budget already counts it.
fn split_by_budget(cache: &Cache, pods: &[PodId]) -> (Vec<PodId>, Vec<PodId>) {
    let mut allowed: Vec<i32> = cache.pdbs.values().map(|b| b.allowed).collect();
    let (mut violating, mut other) = (Vec::new(), Vec::new());
    for &p in pods {
        let info = cache.pod(p);
        let mut violates = false;
        for (i, ((namespace, _), budget)) in cache.pdbs.iter().enumerate() {
            if *namespace != info.namespace
                || !budget.selector.matches(&info.labels)
                || budget.disrupted.contains(&info.name)
            {
                continue;
            }
            allowed[i] -= 1;
            violates |= allowed[i] < 0;
        }
        if violates {
            violating.push(p);
        } else {
            other.push(p);
        }
    }
    (violating, other)
}

/// Dry run on one node: the fewest, least important lower-priority pods whose removal lets the
/// pod fit (sparing first those protected by a PodDisruptionBudget), with how many of them
/// exceed a budget; or the reasons it cannot. Leaves `cycle` as it found it.
fn select_victims(cycle: &mut Cycle<'_>, id: NodeId) -> Result<(Vec<PodId>, usize), Vec<String>> {
    let cache = cycle.cache;
    let node = &cache.nodes[id];
    let priority = cycle.pod.info.priority;
    let mut potential: Vec<PodId> = node
        .pods
        .iter()
        .copied()
        .filter(|p| cache.pod(*p).priority < priority)
        .collect();
    if potential.is_empty() {
        return Err(vec![NO_VICTIMS.to_owned()]);
    }
    let mut sim = node.clone();
    for &p in &potential {
        sim.remove_pod(p, cache.pod(p));
        cycle.update_for_pod(cache.pod(p), node, -1);
    }
    if let Err(status) = cycle.filter(&sim) {
        for &p in &potential {
            cycle.update_for_pod(cache.pod(p), node, 1);
        }
        return Err(status.reasons.iter().map(|r| r.to_string()).collect());
    }
    // Most important first: higher priority, then earlier start.
    potential.sort_by(|a, b| {
        let (a, b) = (cache.pod(*a), cache.pod(*b));
        b.priority
            .cmp(&a.priority)
            .then_with(|| start_key(&a.start_time).cmp(&start_key(&b.start_time)))
    });
    let (violating, other) = split_by_budget(cache, &potential);
    let mut victims = Vec::new();
    let mut violations = 0;
    for (group, counts) in [(violating, true), (other, false)] {
        for p in group {
            let info = cache.pod(p);
            sim.add_pod(p, info);
            cycle.update_for_pod(info, node, 1);
            if cycle.filter(&sim).is_err() {
                sim.remove_pod(p, info);
                cycle.update_for_pod(info, node, -1);
                victims.push(p);
                violations += usize::from(counts);
            }
        }
    }
    for &p in &victims {
        cycle.update_for_pod(cache.pod(p), node, 1);
    }
    Ok((victims, violations))
}

/// Start times for ordering; a pod that has not started counts as the newest.
fn start_key(t: &Option<Time>) -> (bool, Option<&Time>) {
    (t.is_none(), t.as_ref())
}

/// Upstream's order of preference between candidate nodes.
fn pick<'c>(cache: &Cache, candidates: &'c [Candidate]) -> Option<&'c Candidate> {
    type Summary = (usize, i64, i64, usize, Option<Time>);
    let summary = |c: &Candidate| -> Summary {
        let priorities: Vec<i64> = c
            .victims
            .iter()
            .map(|v| i64::from(cache.pod(*v).priority))
            .collect();
        let highest = priorities.iter().copied().max().unwrap_or(i64::MIN);
        // Shifted so every term is positive, as upstream does.
        let sum: i64 = priorities.iter().map(|p| p + i64::from(i32::MAX) + 1).sum();
        // The earliest start among the highest-priority victims; later is better.
        let earliest = c
            .victims
            .iter()
            .map(|v| cache.pod(*v))
            .filter(|p| i64::from(p.priority) == highest)
            .filter_map(|p| p.start_time.clone())
            .min();
        (c.violations, highest, sum, c.victims.len(), earliest)
    };
    let mut best: Option<(&Candidate, Summary)> = None;
    for c in candidates {
        let s = summary(c);
        let better = match &best {
            None => true,
            Some((_, b)) => (s.0, s.1, s.2, s.3)
                .cmp(&(b.0, b.1, b.2, b.3))
                .then_with(|| b.4.cmp(&s.4))
                .is_lt(),
        };
        if better {
            best = Some((c, s));
        }
    }
    best.map(|(c, _)| c)
}
