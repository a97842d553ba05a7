//! Dao's scheduler algorithm: which node a pending pod should run on.
//!
//! Everything but [`run`] is pure computation: no IO, no async, no API client. The runtime loop
//! in [`run`] (watching pods and nodes, binding, writing events) feeds a [`Cache`] with nodes and bound pods, pops
//! pods from a [`SchedulingQueue`], and asks a [`Scheduler`] for a node; when none fits, the
//! [`FitError`] carries upstream's FailedScheduling message and [`Scheduler::preempt`] says
//! which lower-priority pods to evict.
//!
//! The filters and scores are those of upstream's default profile (v1.33) that do not need
//! volumes or other API objects: NodeUnschedulable, NodeName, TaintToleration, NodeAffinity,
//! NodePorts, NodeResourcesFit, PodTopologySpread and InterPodAffinity filter;
//! NodeResourcesFit (LeastAllocated), NodeResourcesBalancedAllocation, ImageLocality,
//! InterPodAffinity, NodeAffinity, PodTopologySpread and TaintToleration score, with the
//! default weights. Each plugin's module documents its rules and any departure from upstream.

mod cache;
pub mod framework;
mod index;
mod plugins;
mod preempt;
pub mod quantity;
mod queue;
pub mod resources;
pub mod run;
mod schedule;
pub mod selector;
pub mod testing;

pub use cache::{Cache, SpreadSelector, SpreaderKind};
pub use preempt::{NoPreemption, Preemption};
pub use queue::{QueuedPod, SchedulingQueue};
pub use schedule::{Config, FitError, ScheduleResult, Scheduler};
