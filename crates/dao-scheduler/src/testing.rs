//! Builders for nodes and pods, for this crate's tests and for `dao bench scheduler`.
//!
//! `node("n1", "4", "8Gi", 110)` is a node with that allocatable CPU, memory and pod count;
//! `pod("default", "web-1", "100m", "128Mi")` a pod with one container requesting that much
//! (an empty string leaves the request out). The [`NodeExt`] and [`PodExt`] methods add the
//! rest: labels, taints, images, tolerations, affinity, host ports, priority, spread
//! constraints.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerImage, ContainerPort, Node, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, NodeStatus, Pod, PodAffinity,
    PodAffinityTerm, PodAntiAffinity, PodSchedulingGate, PodSpec, PodStatus,
    PreferredSchedulingTerm, ResourceRequirements, Taint, Toleration, TopologySpreadConstraint,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};

/// A ready node with this allocatable CPU, memory and pod count, labelled with its hostname.
pub fn node(name: &str, cpu: &str, memory: &str, pods: u32) -> Node {
    let mut allocatable = BTreeMap::new();
    if !cpu.is_empty() {
        allocatable.insert("cpu".to_owned(), Quantity(cpu.to_owned()));
    }
    if !memory.is_empty() {
        allocatable.insert("memory".to_owned(), Quantity(memory.to_owned()));
    }
    allocatable.insert("pods".to_owned(), Quantity(pods.to_string()));
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/hostname".to_owned(),
                name.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            capacity: Some(allocatable.clone()),
            allocatable: Some(allocatable),
            ..NodeStatus::default()
        }),
    }
}

/// Chainable additions to a [`Node`].
pub trait NodeExt: Sized {
    fn label(self, key: &str, value: &str) -> Self;
    /// Adds a taint; `effect` is `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    fn taint(self, key: &str, value: &str, effect: &str) -> Self;
    fn unschedulable(self) -> Self;
    /// Adds an image the node already has.
    fn image(self, name: &str, size_bytes: i64) -> Self;
    /// Sets any allocatable resource (`ephemeral-storage`, `example.com/gpu`, ...).
    fn allocatable(self, resource: &str, quantity: &str) -> Self;
}

impl NodeExt for Node {
    fn label(mut self, key: &str, value: &str) -> Self {
        self.metadata
            .labels
            .get_or_insert_default()
            .insert(key.to_owned(), value.to_owned());
        self
    }

    fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let spec = self.spec.get_or_insert_default();
        spec.taints.get_or_insert_default().push(Taint {
            key: key.to_owned(),
            value: (!value.is_empty()).then(|| value.to_owned()),
            effect: effect.to_owned(),
            time_added: None,
        });
        self
    }

    fn unschedulable(mut self) -> Self {
        self.spec.get_or_insert_default().unschedulable = Some(true);
        self
    }

    fn image(mut self, name: &str, size_bytes: i64) -> Self {
        let status = self.status.get_or_insert_default();
        status.images.get_or_insert_default().push(ContainerImage {
            names: Some(vec![name.to_owned()]),
            size_bytes: Some(size_bytes),
        });
        self
    }

    fn allocatable(mut self, resource: &str, quantity: &str) -> Self {
        let status = self.status.get_or_insert_default();
        status
            .allocatable
            .get_or_insert_default()
            .insert(resource.to_owned(), Quantity(quantity.to_owned()));
        self
    }
}

fn requests(cpu: &str, memory: &str) -> Option<ResourceRequirements> {
    let mut r = BTreeMap::new();
    if !cpu.is_empty() {
        r.insert("cpu".to_owned(), Quantity(cpu.to_owned()));
    }
    if !memory.is_empty() {
        r.insert("memory".to_owned(), Quantity(memory.to_owned()));
    }
    Some(ResourceRequirements {
        requests: Some(r),
        ..ResourceRequirements::default()
    })
}

/// A container named `c` running `busybox` with these requests (empty strings leave them out).
pub fn container(cpu: &str, memory: &str) -> Container {
    Container {
        name: "c".to_owned(),
        image: Some("busybox".to_owned()),
        resources: requests(cpu, memory),
        ..Container::default()
    }
}

/// A regular init container with these requests.
pub fn init_container(cpu: &str, memory: &str) -> Container {
    Container {
        name: "init".to_owned(),
        ..container(cpu, memory)
    }
}

/// A sidecar (an init container with `restartPolicy: Always`) with these requests.
pub fn sidecar(cpu: &str, memory: &str) -> Container {
    Container {
        name: "sidecar".to_owned(),
        restart_policy: Some("Always".to_owned()),
        ..container(cpu, memory)
    }
}

/// A pending pod with one container requesting this CPU and memory.
pub fn pod(namespace: &str, name: &str, cpu: &str, memory: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![container(cpu, memory)],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Pending".to_owned()),
            ..PodStatus::default()
        }),
    }
}

/// A pod affinity term selecting pods with these labels (in the pod's namespace) per
/// `topology_key`.
pub fn affinity_term(labels: &[(&str, &str)], topology_key: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..LabelSelector::default()
        }),
        topology_key: topology_key.to_owned(),
        ..PodAffinityTerm::default()
    }
}

/// A node selector requirement, e.g. `node_requirement("zone", "In", &["a"])`.
pub fn node_requirement(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.to_owned(),
        operator: operator.to_owned(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
    }
}

/// Chainable additions to a [`Pod`].
pub trait PodExt: Sized {
    /// Binds the pod to a node (`spec.nodeName`) and marks it running.
    fn on(self, node: &str) -> Self;
    fn label(self, key: &str, value: &str) -> Self;
    fn priority(self, priority: i32) -> Self;
    fn phase(self, phase: &str) -> Self;
    fn preemption_never(self) -> Self;
    fn terminating(self) -> Self;
    fn started(self, seconds: i64) -> Self;
    fn nominated(self, node: &str) -> Self;
    fn scheduling_gate(self, name: &str) -> Self;
    /// Adds a toleration; empty strings leave fields out.
    fn toleration(self, key: &str, operator: &str, value: &str, effect: &str) -> Self;
    fn node_selector(self, key: &str, value: &str) -> Self;
    /// Adds a required node affinity term (terms are ORed).
    fn required_node_term(self, requirements: Vec<NodeSelectorRequirement>) -> Self;
    fn preferred_node_term(self, weight: i32, requirements: Vec<NodeSelectorRequirement>) -> Self;
    /// Adds a host port to the first container; empty strings take the defaults.
    fn host_port(self, port: i32, protocol: &str, host_ip: &str) -> Self;
    /// Sets a request on the first container.
    fn request(self, resource: &str, quantity: &str) -> Self;
    fn image(self, image: &str) -> Self;
    fn required_affinity(self, term: PodAffinityTerm) -> Self;
    fn required_anti_affinity(self, term: PodAffinityTerm) -> Self;
    fn preferred_affinity(self, weight: i32, term: PodAffinityTerm) -> Self;
    fn preferred_anti_affinity(self, weight: i32, term: PodAffinityTerm) -> Self;
    /// Sets the controlling owner reference.
    fn controlled_by(self, api_version: &str, kind: &str, name: &str) -> Self;
    /// Adds a topology spread constraint over pods with these labels.
    fn spread(
        self,
        max_skew: i32,
        topology_key: &str,
        when_unsatisfiable: &str,
        labels: &[(&str, &str)],
    ) -> Self;
}

fn spec(pod: &mut Pod) -> &mut PodSpec {
    pod.spec.get_or_insert_default()
}

fn affinity(pod: &mut Pod) -> &mut Affinity {
    spec(pod).affinity.get_or_insert_default()
}

impl PodExt for Pod {
    fn controlled_by(mut self, api_version: &str, kind: &str, name: &str) -> Self {
        self.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
                name: name.to_owned(),
                uid: format!("uid-of-{name}"),
                controller: Some(true),
                ..Default::default()
            },
        ]);
        self
    }

    fn on(mut self, node: &str) -> Self {
        spec(&mut self).node_name = Some(node.to_owned());
        self.status.get_or_insert_default().phase = Some("Running".to_owned());
        self
    }

    fn label(mut self, key: &str, value: &str) -> Self {
        self.metadata
            .labels
            .get_or_insert_default()
            .insert(key.to_owned(), value.to_owned());
        self
    }

    fn priority(mut self, priority: i32) -> Self {
        spec(&mut self).priority = Some(priority);
        self
    }

    fn phase(mut self, phase: &str) -> Self {
        self.status.get_or_insert_default().phase = Some(phase.to_owned());
        self
    }

    fn preemption_never(mut self) -> Self {
        spec(&mut self).preemption_policy = Some("Never".to_owned());
        self
    }

    fn terminating(mut self) -> Self {
        self.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        self
    }

    fn started(mut self, seconds: i64) -> Self {
        let t = k8s_openapi::jiff::Timestamp::from_second(seconds)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        self.status.get_or_insert_default().start_time = Some(Time(t));
        self
    }

    fn nominated(mut self, node: &str) -> Self {
        self.status.get_or_insert_default().nominated_node_name = Some(node.to_owned());
        self
    }

    fn scheduling_gate(mut self, name: &str) -> Self {
        spec(&mut self)
            .scheduling_gates
            .get_or_insert_default()
            .push(PodSchedulingGate {
                name: name.to_owned(),
            });
        self
    }

    fn toleration(mut self, key: &str, operator: &str, value: &str, effect: &str) -> Self {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        spec(&mut self)
            .tolerations
            .get_or_insert_default()
            .push(Toleration {
                key: some(key),
                operator: some(operator),
                value: some(value),
                effect: some(effect),
                toleration_seconds: None,
            });
        self
    }

    fn node_selector(mut self, key: &str, value: &str) -> Self {
        spec(&mut self)
            .node_selector
            .get_or_insert_default()
            .insert(key.to_owned(), value.to_owned());
        self
    }

    fn required_node_term(mut self, requirements: Vec<NodeSelectorRequirement>) -> Self {
        let na = affinity(&mut self).node_affinity.get_or_insert_default();
        na.required_during_scheduling_ignored_during_execution
            .get_or_insert_with(|| NodeSelector {
                node_selector_terms: Vec::new(),
            })
            .node_selector_terms
            .push(NodeSelectorTerm {
                match_expressions: Some(requirements),
                match_fields: None,
            });
        self
    }

    fn preferred_node_term(
        mut self,
        weight: i32,
        requirements: Vec<NodeSelectorRequirement>,
    ) -> Self {
        let na: &mut NodeAffinity = affinity(&mut self).node_affinity.get_or_insert_default();
        na.preferred_during_scheduling_ignored_during_execution
            .get_or_insert_default()
            .push(PreferredSchedulingTerm {
                weight,
                preference: NodeSelectorTerm {
                    match_expressions: Some(requirements),
                    match_fields: None,
                },
            });
        self
    }

    fn host_port(mut self, port: i32, protocol: &str, host_ip: &str) -> Self {
        let c = &mut spec(&mut self).containers[0];
        c.ports.get_or_insert_default().push(ContainerPort {
            container_port: port,
            host_port: Some(port),
            protocol: (!protocol.is_empty()).then(|| protocol.to_owned()),
            host_ip: (!host_ip.is_empty()).then(|| host_ip.to_owned()),
            name: None,
        });
        self
    }

    fn request(mut self, resource: &str, quantity: &str) -> Self {
        let c = &mut spec(&mut self).containers[0];
        c.resources
            .get_or_insert_default()
            .requests
            .get_or_insert_default()
            .insert(resource.to_owned(), Quantity(quantity.to_owned()));
        self
    }

    fn image(mut self, image: &str) -> Self {
        spec(&mut self).containers[0].image = Some(image.to_owned());
        self
    }

    fn required_affinity(mut self, term: PodAffinityTerm) -> Self {
        let pa: &mut PodAffinity = affinity(&mut self).pod_affinity.get_or_insert_default();
        pa.required_during_scheduling_ignored_during_execution
            .get_or_insert_default()
            .push(term);
        self
    }

    fn required_anti_affinity(mut self, term: PodAffinityTerm) -> Self {
        let pa: &mut PodAntiAffinity = affinity(&mut self)
            .pod_anti_affinity
            .get_or_insert_default();
        pa.required_during_scheduling_ignored_during_execution
            .get_or_insert_default()
            .push(term);
        self
    }

    fn preferred_affinity(mut self, weight: i32, term: PodAffinityTerm) -> Self {
        let pa = affinity(&mut self).pod_affinity.get_or_insert_default();
        pa.preferred_during_scheduling_ignored_during_execution
            .get_or_insert_default()
            .push(WeightedPodAffinityTerm {
                weight,
                pod_affinity_term: term,
            });
        self
    }

    fn preferred_anti_affinity(mut self, weight: i32, term: PodAffinityTerm) -> Self {
        let pa = affinity(&mut self)
            .pod_anti_affinity
            .get_or_insert_default();
        pa.preferred_during_scheduling_ignored_during_execution
            .get_or_insert_default()
            .push(WeightedPodAffinityTerm {
                weight,
                pod_affinity_term: term,
            });
        self
    }

    fn spread(
        mut self,
        max_skew: i32,
        topology_key: &str,
        when_unsatisfiable: &str,
        labels: &[(&str, &str)],
    ) -> Self {
        spec(&mut self)
            .topology_spread_constraints
            .get_or_insert_default()
            .push(TopologySpreadConstraint {
                max_skew,
                topology_key: topology_key.to_owned(),
                when_unsatisfiable: when_unsatisfiable.to_owned(),
                label_selector: affinity_term(labels, "").label_selector,
                ..TopologySpreadConstraint::default()
            });
        self
    }
}
