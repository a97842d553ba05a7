//! The Endpoints and EndpointSlice controllers (one reconciler here), as upstream's: for every
//! Service with a selector, an `Endpoints` object of the Service's name and EndpointSlices
//! (`discovery.k8s.io/v1`, IPv4) listing the selected pods that have an IP.
//!
//! Endpoints: ready pods under `addresses`, the others under `notReadyAddresses`, terminating
//! pods left out (unless `publishNotReadyAddresses`), grouped into subsets by their resolved
//! ports. Slices: every pod with an IP, terminating ones included, with the conditions ready
//! (serving and not terminating), serving (Ready) and terminating; at most 100 endpoints a
//! slice, one group of slices per port set; an empty placeholder slice when there is no
//! endpoint. A Service port's `targetPort` resolves to itself when it is a number and to the
//! container port of that name when it is a string; a pod without that port is left out of
//! that port. Objects are written only when they change. Services without a selector and the
//! API server's `default/kubernetes` are left alone.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Node, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};

use crate::informer::{Change, Informer, key_of, namespace_index, split_key};
use crate::queue::{Action, WorkQueue};
use crate::util::{controller_ref, pod_ready, pod_terminal};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Endpoints a slice holds at most (upstream's default `--max-endpoints-per-slice`).
pub const MAX_PER_SLICE: usize = 100;

/// The port a service port reaches on `pod`, if the pod has it.
pub fn resolve_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(i)) => Some(*i),
        Some(IntOrString::String(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let spec = pod.spec.as_ref()?;
            // Containers, and sidecars (init containers that keep running).
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The pod's IPv4 address, if it has one.
fn pod_ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .chain(status.pod_ip.clone())
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
}

/// A selected pod as both objects see it.
struct Member {
    ip: String,
    pod: Arc<Pod>,
    ready: bool,
    terminating: bool,
    /// (service port, resolved port), in the Service's order.
    ports: Vec<(ServicePort, i32)>,
    hostname: Option<String>,
}

fn members(svc: &Service, pods: &[Arc<Pod>]) -> Vec<Member> {
    let spec = svc.spec.clone().unwrap_or_default();
    let Some(selector) = spec.selector.as_ref() else {
        return Vec::new();
    };
    let tolerate_unready = spec.publish_not_ready_addresses.unwrap_or(false);
    let ns = svc.namespace().unwrap_or_default();
    let mut out: Vec<Member> = pods
        .iter()
        .filter(|p| p.namespace().unwrap_or_default() == ns)
        .filter(|p| selector.iter().all(|(k, v)| p.labels().get(k) == Some(v)))
        .filter(|p| !pod_terminal(p))
        .filter_map(|p| {
            let ip = pod_ipv4(p)?;
            let hostname = p
                .spec
                .as_ref()
                .filter(|s| s.subdomain.as_deref() == Some(&svc.name_any()))
                .and_then(|s| s.hostname.clone())
                .filter(|h| !h.is_empty());
            Some(Member {
                ip,
                ready: tolerate_unready || pod_ready(p),
                terminating: p.metadata.deletion_timestamp.is_some(),
                ports: spec
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(|sp| resolve_port(sp, p).map(|n| (sp.clone(), n)))
                    .collect(),
                hostname,
                pod: p.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.ip, a.pod.name_any()).cmp(&(&b.ip, b.pod.name_any())));
    out
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.uid(),
        ..Default::default()
    }
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

fn headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The subsets of the Service's Endpoints.
pub fn endpoint_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let tolerate_unready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let no_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .is_none_or(|p| p.is_empty());
    // Port set (as JSON, to order and compare) → (ports, ready, not ready).
    type Group = (
        Vec<EndpointPort>,
        Vec<EndpointAddress>,
        Vec<EndpointAddress>,
    );
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for m in members(svc, pods) {
        if m.terminating && !tolerate_unready {
            continue;
        }
        if m.ports.is_empty() && !(no_ports && headless(svc)) {
            continue;
        }
        let mut ports: Vec<EndpointPort> = m
            .ports
            .iter()
            .map(|(sp, n)| EndpointPort {
                name: sp.name.clone().filter(|n| !n.is_empty()),
                port: *n,
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
            .collect();
        ports.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
        let address = EndpointAddress {
            ip: m.ip.clone(),
            hostname: m.hostname.clone(),
            node_name: node_of(&m.pod),
            target_ref: Some(target_ref(&m.pod)),
        };
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let group = groups.entry(key).or_insert_with(|| (ports, vec![], vec![]));
        if m.ready {
            group.1.push(address);
        } else {
            group.2.push(address);
        }
    }
    groups
        .into_values()
        .map(|(ports, ready, not_ready)| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then_some(ports),
        })
        .collect()
}

/// The content of one EndpointSlice: its ports (None for the placeholder) and endpoints.
pub type SliceContent = (Option<Vec<SlicePort>>, Vec<Endpoint>);

/// The slices the Service should have; `zone` gives a node's zone.
pub fn desired_slices(
    svc: &Service,
    pods: &[Arc<Pod>],
    zone: &dyn Fn(&str) -> Option<String>,
) -> Vec<SliceContent> {
    let mut groups: BTreeMap<String, (Vec<SlicePort>, Vec<Endpoint>)> = BTreeMap::new();
    for m in members(svc, pods) {
        let mut ports: Vec<SlicePort> = m
            .ports
            .iter()
            .map(|(sp, n)| SlicePort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(*n),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
            .collect();
        ports.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
        let tolerate_unready = svc
            .spec
            .as_ref()
            .and_then(|s| s.publish_not_ready_addresses)
            .unwrap_or(false);
        let serving = pod_ready(&m.pod);
        let node = node_of(&m.pod);
        let endpoint = Endpoint {
            addresses: vec![m.ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(tolerate_unready || (serving && !m.terminating)),
                serving: Some(serving),
                terminating: Some(m.terminating),
            }),
            hostname: m.hostname.clone(),
            zone: node.as_deref().and_then(zone),
            node_name: node,
            target_ref: Some(target_ref(&m.pod)),
            ..Default::default()
        };
        let key = serde_json::to_string(&ports).unwrap_or_default();
        groups
            .entry(key)
            .or_insert_with(|| (ports, vec![]))
            .1
            .push(endpoint);
    }
    let mut out = Vec::new();
    for (ports, endpoints) in groups.into_values() {
        for chunk in endpoints.chunks(MAX_PER_SLICE) {
            out.push((Some(ports.clone()), chunk.to_vec()));
        }
    }
    if out.is_empty() {
        out.push((None, Vec::new()));
    }
    out
}

fn labels_for_endpoints(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    if headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

fn labels_for_slices(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = labels_for_endpoints(svc);
    labels.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels
}

/// What to do with the Service's slices.
#[derive(Debug, Default, PartialEq)]
pub struct SlicePlan {
    pub create: Vec<SliceContent>,
    /// (existing slice name, new content).
    pub update: Vec<(String, SliceContent)>,
    pub delete: Vec<String>,
}

/// Matches desired slice contents with the existing slices (same ports first), so that
/// unchanged slices are left alone and changed ones rewritten in place.
pub fn plan_slices(
    existing: &[Arc<EndpointSlice>],
    desired: Vec<SliceContent>,
    labels: &BTreeMap<String, String>,
) -> SlicePlan {
    let mut plan = SlicePlan::default();
    let mut existing: Vec<&Arc<EndpointSlice>> = existing.iter().collect();
    existing.sort_by_key(|s| s.name_any());
    let mut used: HashSet<String> = HashSet::new();
    let mut unmatched = Vec::new();
    // Exact matches first, then any slice with the same ports, then any slice at all.
    for content in desired {
        let exact = existing.iter().find(|s| {
            !used.contains(&s.name_any())
                && s.ports == content.0
                && s.endpoints == content.1
                && s.address_type == "IPv4"
                && labels.iter().all(|(k, v)| s.labels().get(k) == Some(v))
        });
        match exact {
            Some(s) => {
                used.insert(s.name_any());
            }
            None => unmatched.push(content),
        }
    }
    let mut still = Vec::new();
    for content in unmatched {
        match existing
            .iter()
            .find(|s| !used.contains(&s.name_any()) && s.ports == content.0)
        {
            Some(s) => {
                used.insert(s.name_any());
                plan.update.push((s.name_any(), content));
            }
            None => still.push(content),
        }
    }
    for content in still {
        match existing.iter().find(|s| !used.contains(&s.name_any())) {
            Some(s) => {
                used.insert(s.name_any());
                plan.update.push((s.name_any(), content));
            }
            None => plan.create.push(content),
        }
    }
    plan.delete = existing
        .iter()
        .map(|s| s.name_any())
        .filter(|n| !used.contains(n))
        .collect();
    plan
}

#[derive(Clone)]
pub struct EndpointsController {
    client: Client,
    services: Informer<Service>,
    pods: Informer<Pod>,
    endpoints: Informer<Endpoints>,
    slices: Informer<EndpointSlice>,
    nodes: Informer<Node>,
    queue: WorkQueue,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

fn slice_service_key(s: &EndpointSlice) -> Option<String> {
    if s.labels().get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY) {
        return None;
    }
    let svc = s.labels().get(SERVICE_NAME_LABEL)?;
    Some(format!("{}/{svc}", s.namespace().unwrap_or_default()))
}

impl EndpointsController {
    /// Registers the controller's handlers; call before the informers run.
    pub fn new(
        client: Client,
        services: Informer<Service>,
        pods: Informer<Pod>,
        endpoints: Informer<Endpoints>,
        slices: Informer<EndpointSlice>,
        nodes: Informer<Node>,
    ) -> Self {
        let queue = WorkQueue::new();
        services.enqueue_changes(&queue);
        services.add_index("namespace", namespace_index);
        pods.add_index("namespace", namespace_index);
        pods.enqueue_selecting(&queue, &services, |svc, pod| {
            svc.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|sel| sel.iter().all(|(k, v)| pod.labels().get(k) == Some(v)))
        });
        let q = queue.clone();
        let svcs = services.clone();
        endpoints.on_change(move |c| {
            let ep = match c {
                Change::Upsert { new, .. } => new,
                Change::Delete(old) => old,
            };
            let key = key_of(ep.as_ref());
            if svcs.get(&key).is_some() {
                q.add(key);
            }
        });
        let q = queue.clone();
        slices.on_change(move |c| {
            let s = match c {
                Change::Upsert { new, .. } => new,
                Change::Delete(old) => old,
            };
            if let Some(key) = slice_service_key(s) {
                q.add(key);
            }
        });
        slices.add_index("service", |s: &EndpointSlice| {
            slice_service_key(s).into_iter().collect()
        });
        EndpointsController {
            client,
            services,
            pods,
            endpoints,
            slices,
            nodes,
            queue,
        }
    }

    pub async fn run(self, workers: usize) {
        self.services.wait_synced().await;
        self.pods.wait_synced().await;
        self.endpoints.wait_synced().await;
        self.slices.wait_synced().await;
        self.nodes.wait_synced().await;
        for key in self.services.keys() {
            self.queue.add(key);
        }
        // Slices of Services deleted while we were away.
        for s in self.slices.list() {
            if let Some(key) = slice_service_key(&s) {
                self.queue.add(key);
            }
        }
        let this = self.clone();
        self.queue
            .clone()
            .run("endpoints", workers, move |key| {
                let this = this.clone();
                async move { this.reconcile(&key).await }
            })
            .await;
    }

    async fn reconcile(&self, key: &str) -> Result<Action, Error> {
        if key == "default/kubernetes" {
            return Ok(Action::Done);
        }
        let (ns, name) = split_key(key);
        let ep_api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let slice_api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let existing_slices = self.slices.by_index("service", key);
        let Some(svc) = self.services.get(key) else {
            // The Service is gone: so are its objects (slices also through their owner).
            if self.endpoints.get(key).is_some() {
                ignore_404(ep_api.delete(name, &DeleteParams::default()).await)?;
            }
            for s in existing_slices {
                ignore_404(
                    slice_api
                        .delete(&s.name_any(), &DeleteParams::default())
                        .await,
                )?;
            }
            return Ok(Action::Done);
        };
        if svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_none()
            || svc.metadata.deletion_timestamp.is_some()
        {
            return Ok(Action::Done);
        }
        let pods = self.pods.by_index("namespace", ns);

        // Endpoints.
        let subsets = endpoint_subsets(&svc, &pods);
        let labels = labels_for_endpoints(&svc);
        match self.endpoints.get(key) {
            Some(old)
                if old.subsets.clone().unwrap_or_default() == subsets
                    && old.metadata.labels.clone().unwrap_or_default() == labels => {}
            Some(old) => {
                let mut ep = (*old).clone();
                ep.metadata.labels = Some(labels);
                ep.subsets = Some(subsets);
                ep.metadata.managed_fields = None;
                ignore_404(ep_api.replace(name, &PostParams::default(), &ep).await)?;
            }
            None => {
                let ep = Endpoints {
                    metadata: ObjectMeta {
                        name: Some(name.to_owned()),
                        namespace: Some(ns.to_owned()),
                        labels: Some(labels),
                        ..Default::default()
                    },
                    subsets: Some(subsets),
                };
                match ep_api.create(&PostParams::default(), &ep).await {
                    Ok(_) => {}
                    // Created meanwhile; the watch brings it and another pass.
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }

        // EndpointSlices.
        let nodes = self.nodes.clone();
        let zone = move |node: &str| {
            nodes
                .get(node)
                .and_then(|n| n.labels().get("topology.kubernetes.io/zone").cloned())
        };
        let desired = desired_slices(&svc, &pods, &zone);
        let labels = labels_for_slices(&svc);
        let plan = plan_slices(&existing_slices, desired, &labels);
        for (slice_name, (ports, endpoints)) in plan.update {
            let Some(old) = existing_slices.iter().find(|s| s.name_any() == slice_name) else {
                continue;
            };
            let mut s = (**old).clone();
            s.metadata.labels = Some(labels.clone());
            s.metadata.managed_fields = None;
            s.address_type = "IPv4".into();
            s.ports = ports;
            s.endpoints = endpoints;
            ignore_404(
                slice_api
                    .replace(&slice_name, &PostParams::default(), &s)
                    .await,
            )?;
        }
        for (ports, endpoints) in plan.create {
            let s = EndpointSlice {
                metadata: ObjectMeta {
                    generate_name: Some(format!("{name}-")),
                    namespace: Some(ns.to_owned()),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![controller_ref(svc.as_ref())]),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints,
                ports,
            };
            slice_api.create(&PostParams::default(), &s).await?;
        }
        for slice_name in plan.delete {
            ignore_404(
                slice_api
                    .delete(&slice_name, &DeleteParams::default())
                    .await,
            )?;
        }
        Ok(Action::Done)
    }
}

fn ignore_404<T>(r: Result<T, kube::Error>) -> Result<(), Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn svc(spec: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid", "labels": {"team": "a"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool, terminating: bool) -> Arc<Pod> {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        });
        if let Some(ip) = ip {
            p["status"]["podIP"] = json!(ip);
        }
        if terminating {
            p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        }
        Arc::new(serde_json::from_value(p).unwrap())
    }

    fn ips(a: &Option<Vec<EndpointAddress>>) -> Vec<String> {
        a.iter().flatten().map(|a| a.ip.clone()).collect()
    }

    #[test]
    fn target_ports() {
        let p = pod("a", Some("10.0.0.1"), true, false);
        let sp = |v: Value| -> ServicePort { serde_json::from_value(v).unwrap() };
        for (port, want) in [
            (json!({"port": 80}), Some(80)),
            (json!({"port": 80, "targetPort": 9090}), Some(9090)),
            (json!({"port": 80, "targetPort": "http"}), Some(8080)),
            (json!({"port": 80, "targetPort": "nope"}), None),
            (
                json!({"port": 53, "targetPort": "dns", "protocol": "UDP"}),
                Some(53),
            ),
            (json!({"port": 53, "targetPort": "dns"}), None),
        ] {
            assert_eq!(resolve_port(&sp(port.clone()), &p), want, "{port}");
        }
    }

    #[test]
    fn endpoints_ready_not_ready_terminating() {
        let s = svc(
            json!({"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}),
        );
        let mut other: Pod = (*pod("other", Some("10.0.0.9"), true, false)).clone();
        other.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
        let pods = vec![
            pod("b", Some("10.0.0.2"), true, false),
            pod("a", Some("10.0.0.1"), true, false),
            pod("c", Some("10.0.0.3"), false, false),
            pod("d", Some("10.0.0.4"), true, true),
            pod("e", None, true, false),
            Arc::new(other),
        ];
        let subsets = endpoint_subsets(&s, &pods);
        assert_eq!(subsets.len(), 1);
        assert_eq!(ips(&subsets[0].addresses), vec!["10.0.0.1", "10.0.0.2"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), vec!["10.0.0.3"]);
        let ports = subsets[0].ports.clone().unwrap();
        assert_eq!(
            (
                ports[0].name.as_deref(),
                ports[0].port,
                ports[0].protocol.as_deref()
            ),
            (Some("web"), 8080, Some("TCP"))
        );
        let a = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(a.node_name.as_deref(), Some("n1"));
        let r = a.target_ref.as_ref().unwrap();
        assert_eq!(
            (r.kind.as_deref(), r.name.as_deref(), r.uid.as_deref()),
            (Some("Pod"), Some("a"), Some("uid-a"))
        );

        // Slices keep terminating pods, flagged.
        let slices = desired_slices(&s, &pods, &|_| None);
        assert_eq!(slices.len(), 1);
        let conds: Vec<(String, bool, bool, bool)> = slices[0]
            .1
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap();
                (
                    e.addresses[0].clone(),
                    c.ready.unwrap(),
                    c.serving.unwrap(),
                    c.terminating.unwrap(),
                )
            })
            .collect();
        assert_eq!(
            conds,
            vec![
                ("10.0.0.1".into(), true, true, false),
                ("10.0.0.2".into(), true, true, false),
                ("10.0.0.3".into(), false, false, false),
                ("10.0.0.4".into(), false, true, true),
            ]
        );
        assert_eq!(slices[0].0.as_ref().unwrap()[0].port, Some(8080));

        // publishNotReadyAddresses: everything is ready, terminating pods included.
        let s2 = svc(
            json!({"selector": {"app": "web"}, "publishNotReadyAddresses": true, "ports": [{"port": 80}]}),
        );
        let subsets = endpoint_subsets(&s2, &pods);
        assert_eq!(ips(&subsets[0].addresses).len(), 4);
        assert!(subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn pods_without_a_named_port_form_their_own_subset() {
        let s = svc(json!({"selector": {"app": "web"}, "ports": [
            {"name": "web", "port": 80, "targetPort": "http"},
            {"name": "metrics", "port": 9100, "targetPort": 9100}]}));
        let mut bare: Pod = (*pod("z", Some("10.0.0.26"), true, false)).clone();
        bare.spec.as_mut().unwrap().containers[0].ports = None;
        let pods = vec![pod("a", Some("10.0.0.1"), true, false), Arc::new(bare)];
        let subsets = endpoint_subsets(&s, &pods);
        assert_eq!(subsets.len(), 2);
        let by_ports: Vec<(usize, Vec<String>)> = subsets
            .iter()
            .map(|s| (s.ports.as_ref().unwrap().len(), ips(&s.addresses)))
            .collect();
        assert!(
            by_ports.contains(&(2, vec!["10.0.0.1".into()])),
            "{by_ports:?}"
        );
        assert!(
            by_ports.contains(&(1, vec!["10.0.0.26".into()])),
            "{by_ports:?}"
        );
        assert_eq!(desired_slices(&s, &pods, &|_| None).len(), 2);
    }

    #[test]
    fn headless_hostnames_and_placeholder() {
        let s = svc(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
        let mut p: Pod = (*pod("web-0", Some("10.0.0.1"), true, false)).clone();
        let spec = p.spec.as_mut().unwrap();
        spec.hostname = Some("web-0".into());
        spec.subdomain = Some("web".into());
        let pods = vec![Arc::new(p)];
        let subsets = endpoint_subsets(&s, &pods);
        assert_eq!(
            subsets.len(),
            1,
            "headless without ports still lists addresses"
        );
        assert!(subsets[0].ports.is_none());
        assert_eq!(
            subsets[0].addresses.as_ref().unwrap()[0]
                .hostname
                .as_deref(),
            Some("web-0")
        );
        assert_eq!(
            labels_for_endpoints(&s)
                .get(HEADLESS_LABEL)
                .map(String::as_str),
            Some("")
        );
        let none: Vec<Arc<Pod>> = vec![];
        assert_eq!(desired_slices(&s, &none, &|_| None), vec![(None, vec![])]);
        assert!(endpoint_subsets(&s, &none).is_empty());
    }

    #[test]
    fn slices_change_only_when_needed() {
        let s = svc(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let pods = vec![pod("a", Some("10.0.0.1"), true, false)];
        let labels = labels_for_slices(&s);
        let desired = desired_slices(&s, &pods, &|_| None);
        let as_slice = |name: &str, c: &SliceContent| {
            Arc::new(EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    labels: Some(labels.clone()),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                ports: c.0.clone(),
                endpoints: c.1.clone(),
            })
        };
        let current = vec![as_slice("web-abc", &desired[0])];
        assert_eq!(
            plan_slices(&current, desired.clone(), &labels),
            SlicePlan::default()
        );
        // A new pod: the slice is rewritten in place.
        let more = vec![pods[0].clone(), pod("b", Some("10.0.0.2"), true, false)];
        let p = plan_slices(&current, desired_slices(&s, &more, &|_| None), &labels);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        assert_eq!(p.update[0].0, "web-abc");
        // A stray extra slice goes; nothing existing: created.
        let extra = vec![current[0].clone(), as_slice("web-xyz", &desired[0])];
        assert_eq!(
            plan_slices(&extra, desired.clone(), &labels).delete,
            vec!["web-xyz"]
        );
        assert_eq!(plan_slices(&[], desired, &labels).create.len(), 1);
        // Over 100 endpoints: two slices.
        let many: Vec<Arc<Pod>> = (0..150)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    Some(&format!("10.0.{}.{}", i / 200, i % 200 + 1)),
                    true,
                    false,
                )
            })
            .collect();
        let d = desired_slices(&s, &many, &|_| None);
        assert_eq!(
            d.iter().map(|c| c.1.len()).collect::<Vec<_>>(),
            vec![100, 50]
        );
    }
}
