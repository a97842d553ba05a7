//! The vocabulary shared by the plugins: plugin names, filter statuses and score weights.
//!
//! A filter plugin either lets a node through or returns a [`Status`] with one or more reasons
//! (upstream's exact strings, which end up in the FailedScheduling event). The code says whether
//! evicting pods could ever help: [`Code::UnschedulableAndUnresolvable`] nodes are skipped by
//! preemption ("Preemption is not helpful for scheduling").

use std::borrow::Cow;

/// The plugins of upstream's default profile that Dao implements, in filter order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Plugin {
    NodeUnschedulable,
    NodeName,
    TaintToleration,
    NodeAffinity,
    NodePorts,
    NodeResourcesFit,
    PodTopologySpread,
    InterPodAffinity,
    NodeResourcesBalancedAllocation,
    ImageLocality,
}

impl Plugin {
    /// The plugin's upstream name.
    pub fn name(self) -> &'static str {
        match self {
            Plugin::NodeUnschedulable => "NodeUnschedulable",
            Plugin::NodeName => "NodeName",
            Plugin::TaintToleration => "TaintToleration",
            Plugin::NodeAffinity => "NodeAffinity",
            Plugin::NodePorts => "NodePorts",
            Plugin::NodeResourcesFit => "NodeResourcesFit",
            Plugin::PodTopologySpread => "PodTopologySpread",
            Plugin::InterPodAffinity => "InterPodAffinity",
            Plugin::NodeResourcesBalancedAllocation => "NodeResourcesBalancedAllocation",
            Plugin::ImageLocality => "ImageLocality",
        }
    }

    /// The plugin's weight in the default profile's score sum.
    pub fn score_weight(self) -> i64 {
        match self {
            Plugin::TaintToleration => 3,
            Plugin::NodeAffinity | Plugin::PodTopologySpread | Plugin::InterPodAffinity => 2,
            Plugin::NodeResourcesFit
            | Plugin::NodeResourcesBalancedAllocation
            | Plugin::ImageLocality => 1,
            Plugin::NodeUnschedulable | Plugin::NodeName | Plugin::NodePorts => 0,
        }
    }
}

/// The highest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// Whether a failed node could become feasible by evicting pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Preemption may help (resources, ports, anti-affinity, spread skew).
    Unschedulable,
    /// Preemption cannot help (labels, taints, node name, cordon).
    UnschedulableAndUnresolvable,
}

/// Why a filter plugin rejected a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub plugin: Plugin,
    pub code: Code,
    pub reasons: Vec<Cow<'static, str>>,
}

impl Status {
    pub(crate) fn new(plugin: Plugin, code: Code, reason: impl Into<Cow<'static, str>>) -> Self {
        Status {
            plugin,
            code,
            reasons: vec![reason.into()],
        }
    }
}

/// The result of one filter plugin on one node.
pub type FilterResult = Result<(), Status>;

/// Scales raw scores to `0..=MAX_NODE_SCORE` by the largest (upstream's
/// `DefaultNormalizeScore`); `reverse` makes the smallest raw score the best.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0).max(0);
    if max == 0 {
        if reverse {
            scores.fill(MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores {
        let scaled = MAX_NODE_SCORE * *s / max;
        *s = if reverse {
            MAX_NODE_SCORE - scaled
        } else {
            scaled
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_table() {
        let check = |input: &[i64], reverse: bool, expected: &[i64]| {
            let mut v = input.to_vec();
            default_normalize(&mut v, reverse);
            assert_eq!(v, expected, "{input:?} reverse={reverse}");
        };
        check(&[0, 0], false, &[0, 0]);
        check(&[0, 0], true, &[100, 100]);
        check(&[1, 2, 4], false, &[25, 50, 100]);
        check(&[1, 2, 4], true, &[75, 50, 0]);
        check(&[3, 0], true, &[0, 100]);
        check(&[], false, &[]);
    }

    #[test]
    fn weights_match_default_profile() {
        let total: i64 = [
            Plugin::NodeResourcesFit,
            Plugin::NodeResourcesBalancedAllocation,
            Plugin::ImageLocality,
            Plugin::InterPodAffinity,
            Plugin::NodeAffinity,
            Plugin::PodTopologySpread,
            Plugin::TaintToleration,
        ]
        .into_iter()
        .map(Plugin::score_weight)
        .sum();
        assert_eq!(total, 12);
        assert_eq!(Plugin::NodePorts.name(), "NodePorts");
    }
}
