//! NodePorts: a pod's host ports must be free on the node.
//!
//! A host port is `(protocol, hostIP, hostPort)` with `TCP` and `0.0.0.0` as defaults. Two
//! ports conflict when protocol and port are equal and the IPs are equal or either is
//! `0.0.0.0`. Ports come from the regular containers and, unlike upstream v1.33, also from
//! sidecars (init containers with `restartPolicy: Always`), since those keep their ports bound
//! for the pod's lifetime.

use k8s_openapi::api::core::v1::PodSpec;

use super::Incoming;
use crate::cache::NodeInfo;
use crate::framework::{Code, FilterResult, Plugin, Status};

pub(crate) const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

const ANY_IP: &str = "0.0.0.0";

/// One host port a pod binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == ANY_IP || other.ip == ANY_IP)
    }
}

/// The host ports a pod binds.
pub(crate) fn pod_host_ports(spec: &PodSpec) -> Vec<HostPort> {
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|hp| hp > 0))
        .map(|p| HostPort {
            protocol: p
                .protocol
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "TCP".to_owned()),
            ip: p
                .host_ip
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| ANY_IP.to_owned()),
            port: p.host_port.unwrap_or(0),
        })
        .collect()
}

/// Whether any of `wanted` conflicts with a port in `used`.
pub(crate) fn conflicts(wanted: &[HostPort], used: &[HostPort]) -> bool {
    wanted.iter().any(|w| used.iter().any(|u| w.conflicts(u)))
}

pub(crate) fn filter(pod: &Incoming<'_>, node: &NodeInfo) -> FilterResult {
    if pod.info.ports.is_empty() || !conflicts(&pod.info.ports, &node.ports) {
        Ok(())
    } else {
        Err(Status::new(Plugin::NodePorts, Code::Unschedulable, REASON))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{cache_with, filter_reasons};
    use crate::testing::{PodExt, node, pod, sidecar};
    use k8s_openapi::api::core::v1::{ContainerPort, Pod};

    /// `existing` is bound to the node first; `(port, protocol, ip)` triples.
    fn check(existing: &[(i32, &str, &str)], wanted: &[(i32, &str, &str)], fits: bool) {
        let mut e = pod("default", "e", "", "").on("n1");
        for (port, proto, ip) in existing {
            e = e.host_port(*port, proto, ip);
        }
        let mut p = pod("default", "p", "", "");
        for (port, proto, ip) in wanted {
            p = p.host_port(*port, proto, ip);
        }
        let cache = cache_with(&[node("n1", "4", "8Gi", 110)], &[e]);
        let expected: &[&str] = if fits { &[] } else { &[REASON] };
        assert_eq!(
            filter_reasons(&cache, &p, "n1"),
            expected,
            "{existing:?} vs {wanted:?}"
        );
    }

    #[test]
    fn table() {
        check(&[], &[], true);
        check(&[(80, "", "")], &[], true);
        check(&[], &[(80, "", "")], true);
        check(&[(80, "", "")], &[(80, "", "")], false);
        check(&[(80, "", "")], &[(8080, "", "")], true);
        check(&[(80, "TCP", "")], &[(80, "", "")], false);
        check(&[(80, "UDP", "")], &[(80, "TCP", "")], true);
        check(&[(53, "UDP", "")], &[(53, "UDP", "")], false);
        check(&[(80, "", "10.0.0.1")], &[(80, "", "10.0.0.2")], true);
        check(&[(80, "", "10.0.0.1")], &[(80, "", "10.0.0.1")], false);
        // 0.0.0.0 conflicts with every IP, both ways.
        check(&[(80, "", "10.0.0.1")], &[(80, "", "0.0.0.0")], false);
        check(&[(80, "", "0.0.0.0")], &[(80, "", "10.0.0.1")], false);
        check(&[(80, "", "")], &[(80, "", "10.0.0.1")], false);
        check(
            &[(80, "", ""), (443, "", "")],
            &[(8080, "", ""), (443, "", "")],
            false,
        );
    }

    #[test]
    fn ports_free_again_after_the_pod_leaves() {
        let e = pod("default", "e", "", "").on("n1").host_port(80, "", "");
        let mut cache = cache_with(&[node("n1", "4", "8Gi", 110)], &[e]);
        let p = pod("default", "p", "", "").host_port(80, "", "");
        assert_eq!(filter_reasons(&cache, &p, "n1"), [REASON]);
        cache.remove_pod("default", "e");
        assert!(filter_reasons(&cache, &p, "n1").is_empty());
    }

    #[test]
    fn sidecar_ports_count_and_container_ports_alone_do_not() {
        let mut s = sidecar("", "");
        s.ports = Some(vec![ContainerPort {
            container_port: 9000,
            host_port: Some(9000),
            ..ContainerPort::default()
        }]);
        let mut p: Pod = pod("default", "p", "", "");
        let spec = p.spec.as_mut().unwrap();
        spec.init_containers = Some(vec![s]);
        spec.containers[0].ports = Some(vec![ContainerPort {
            container_port: 8080,
            ..ContainerPort::default()
        }]);
        let ports = pod_host_ports(spec);
        assert_eq!(
            ports,
            vec![HostPort {
                protocol: "TCP".into(),
                ip: ANY_IP.into(),
                port: 9000
            }]
        );
    }
}
