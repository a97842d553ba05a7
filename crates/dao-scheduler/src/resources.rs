//! Resource lists as integers, and what a pod requests.
//!
//! [`Resources`] holds CPU in millicores, memory and ephemeral storage in bytes, and the
//! "scalar" resources (extended resources such as `example.com/gpu`, `hugepages-*`,
//! `attachable-volumes-*`) in units. Other names (`storage`, `pods`, `kubernetes.io/...`) are not
//! scheduled on and are dropped, as upstream does.
//!
//! A pod's request follows upstream's rule for sidecars: regular containers and restartable
//! init containers (`restartPolicy: Always`) add up; each regular init container needs its own
//! request plus the sidecars started before it; the pod needs the larger of the two, plus
//! `spec.overhead`. A resource with a limit and no request counts the limit, which is what API
//! defaulting would have written into the request.
//!
//! For scoring, upstream counts a container without a CPU or memory request as 100m and 200Mi
//! ([`DEFAULT_MILLI_CPU_REQUEST`], [`DEFAULT_MEMORY_REQUEST`]) so that best-effort pods still
//! spread; [`PodRequests::non_zero_cpu`] and [`PodRequests::non_zero_memory`] hold those sums.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity;

/// The CPU request (millicores) scoring assumes for a container that sets none.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory request (bytes) scoring assumes for a container that sets none.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler accounts for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// Millicores.
    pub cpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Bytes.
    pub ephemeral_storage: i64,
    /// Extended resources, huge pages and attachable volumes, sorted by name, no duplicates.
    pub scalar: Vec<(String, i64)>,
}

impl Resources {
    /// Reads a resource list; returns it with the `pods` entry (0 when absent).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> (Self, i64) {
        let mut r = Resources::default();
        let mut pods = 0;
        for (name, q) in list {
            match name.as_str() {
                "cpu" => r.cpu = quantity::milli_value(q),
                "memory" => r.memory = quantity::value(q),
                "ephemeral-storage" => r.ephemeral_storage = quantity::value(q),
                "pods" => pods = quantity::value(q),
                other if is_scalar_resource(other) => {
                    r.scalar.push((other.to_owned(), quantity::value(q)))
                }
                _ => {}
            }
        }
        // BTreeMap iteration is sorted, so `scalar` is too.
        (r, pods)
    }

    /// The amount of a scalar resource (0 when absent).
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map_or(0, |i| self.scalar[i].1)
    }

    fn scalar_entry(&mut self, name: &str) -> &mut i64 {
        let i = match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => i,
            Err(i) => {
                self.scalar.insert(i, (name.to_owned(), 0));
                i
            }
        };
        &mut self.scalar[i].1
    }

    /// `self += other`.
    pub fn add(&mut self, other: &Resources) {
        self.cpu = self.cpu.saturating_add(other.cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let e = self.scalar_entry(name);
            *e = e.saturating_add(*v);
        }
    }

    /// `self -= other`; scalar entries that drop to zero are removed.
    pub fn sub(&mut self, other: &Resources) {
        self.cpu = self.cpu.saturating_sub(other.cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let e = self.scalar_entry(name);
            *e = e.saturating_sub(*v);
        }
        self.scalar.retain(|(_, v)| *v != 0);
    }

    /// `self = max(self, other)`, resource by resource.
    fn max(&mut self, other: &Resources) {
        self.cpu = self.cpu.max(other.cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let e = self.scalar_entry(name);
            *e = (*e).max(*v);
        }
    }

    /// Whether nothing at all is requested.
    pub fn is_zero(&self) -> bool {
        self.cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

/// Whether a resource name is accounted as a scalar resource: huge pages, attachable volumes, or
/// an extended resource (a domain-qualified name outside `kubernetes.io/`).
pub fn is_scalar_resource(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/')
            && !name.contains("kubernetes.io/")
            && !name.starts_with("requests."))
}

/// What a pod asks of a node, computed once per pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// The requests the fit filter checks.
    pub requests: Resources,
    /// CPU for scoring: like `requests.cpu`, but containers without a CPU request count 100m.
    pub non_zero_cpu: i64,
    /// Memory for scoring: like `requests.memory`, but containers without one count 200Mi.
    pub non_zero_memory: i64,
}

/// A container's requests, with limits standing in for missing requests; the flags say whether
/// CPU and memory were given at all.
fn container_requests(c: &Container) -> (Resources, bool, bool) {
    let mut r = Resources::default();
    let (mut has_cpu, mut has_memory) = (false, false);
    let Some(res) = &c.resources else {
        return (r, false, false);
    };
    let empty = BTreeMap::new();
    let requests = res.requests.as_ref().unwrap_or(&empty);
    let limits = res.limits.as_ref().unwrap_or(&empty);
    let names = requests
        .keys()
        .chain(limits.keys().filter(|k| !requests.contains_key(*k)));
    for name in names {
        let q = requests.get(name).or_else(|| limits.get(name));
        let Some(q) = q else { continue };
        match name.as_str() {
            "cpu" => {
                r.cpu = quantity::milli_value(q);
                has_cpu = true;
            }
            "memory" => {
                r.memory = quantity::value(q);
                has_memory = true;
            }
            "ephemeral-storage" => r.ephemeral_storage = quantity::value(q),
            other if is_scalar_resource(other) => *r.scalar_entry(other) = quantity::value(q),
            _ => {}
        }
    }
    (r, has_cpu, has_memory)
}

/// Combines per-container amounts into the pod's, by upstream's sidecar-aware rule.
fn combine(spec: &PodSpec, per_container: impl Fn(&Container) -> Resources) -> Resources {
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&per_container(c));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = per_container(c);
        if c.restart_policy.as_deref() == Some("Always") {
            total.add(&r);
            sidecars.add(&r);
            init_peak.max(&sidecars);
        } else {
            let mut during = r;
            during.add(&sidecars);
            init_peak.max(&during);
        }
    }
    total.max(&init_peak);
    total
}

/// Computes a pod's requests (for filtering) and non-zero requests (for scoring).
pub fn pod_requests(spec: &PodSpec) -> PodRequests {
    let mut requests = combine(spec, |c| container_requests(c).0);
    let non_zero = combine(spec, |c| {
        let (r, has_cpu, has_memory) = container_requests(c);
        Resources {
            cpu: if has_cpu {
                r.cpu
            } else {
                DEFAULT_MILLI_CPU_REQUEST
            },
            memory: if has_memory {
                r.memory
            } else {
                DEFAULT_MEMORY_REQUEST
            },
            ..Resources::default()
        }
    });
    let mut non_zero_cpu = non_zero.cpu;
    let mut non_zero_memory = non_zero.memory;
    if let Some(overhead) = &spec.overhead {
        let (o, _) = Resources::from_list(overhead);
        requests.add(&o);
        non_zero_cpu = non_zero_cpu.saturating_add(o.cpu);
        non_zero_memory = non_zero_memory.saturating_add(o.memory);
    }
    PodRequests {
        requests,
        non_zero_cpu,
        non_zero_memory,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{container, init_container, sidecar};

    fn spec(containers: Vec<Container>, init: Vec<Container>) -> PodSpec {
        PodSpec {
            containers,
            init_containers: (!init.is_empty()).then_some(init),
            ..PodSpec::default()
        }
    }

    /// `(cpu millicores, memory bytes, non_zero_cpu, non_zero_memory)`.
    fn check(spec: PodSpec, expected: (i64, i64, i64, i64)) {
        let r = pod_requests(&spec);
        assert_eq!(
            (
                r.requests.cpu,
                r.requests.memory,
                r.non_zero_cpu,
                r.non_zero_memory
            ),
            expected
        );
    }

    const MI: i64 = 1 << 20;

    #[test]
    fn pod_request_table() {
        // No containers with requests: scoring defaults per container.
        check(spec(vec![container("", "")], vec![]), (0, 0, 100, 200 * MI));
        check(
            spec(vec![container("", ""), container("", "")], vec![]),
            (0, 0, 200, 400 * MI),
        );
        // Containers add up.
        check(
            spec(
                vec![container("100m", "64Mi"), container("250m", "1Gi")],
                vec![],
            ),
            (350, 1088 * MI, 350, 1088 * MI),
        );
        // Explicit zero is kept for scoring; only missing requests are defaulted.
        check(spec(vec![container("0", "")], vec![]), (0, 0, 0, 200 * MI));
        // A regular init container larger than the containers sets the pod's request.
        check(
            spec(
                vec![container("100m", "64Mi")],
                vec![init_container("2", "32Mi")],
            ),
            (2000, 64 * MI, 2000, 64 * MI),
        );
        // Init containers run one at a time: the largest counts, not the sum.
        check(
            spec(
                vec![container("100m", "")],
                vec![init_container("500m", ""), init_container("300m", "")],
            ),
            (500, 0, 500, 200 * MI),
        );
        // Sidecars add to the containers.
        check(
            spec(
                vec![container("100m", "64Mi")],
                vec![sidecar("200m", "64Mi")],
            ),
            (300, 128 * MI, 300, 128 * MI),
        );
        // A regular init container after a sidecar runs next to it.
        check(
            spec(
                vec![container("100m", "")],
                vec![sidecar("200m", ""), init_container("1", "")],
            ),
            (1200, 0, 1200, 400 * MI),
        );
        // ... but one before the sidecar does not.
        check(
            spec(
                vec![container("100m", "")],
                vec![init_container("1", ""), sidecar("200m", "")],
            ),
            (1000, 0, 1000, 400 * MI),
        );
    }

    #[test]
    fn limits_stand_in_for_missing_requests() {
        let mut c = container("", "");
        c.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("1".into())),
                ("memory".to_owned(), Quantity("1Gi".into())),
            ])),
            requests: Some(BTreeMap::from([(
                "cpu".to_owned(),
                Quantity("250m".into()),
            )])),
            ..Default::default()
        });
        check(spec(vec![c], vec![]), (250, 1024 * MI, 250, 1024 * MI));
    }

    #[test]
    fn overhead_and_scalars() {
        let mut c = container("100m", "");
        c.resources
            .as_mut()
            .unwrap()
            .requests
            .as_mut()
            .unwrap()
            .extend([
                ("example.com/gpu".to_owned(), Quantity("2".into())),
                ("hugepages-2Mi".to_owned(), Quantity("4Mi".into())),
                ("kubernetes.io/ignored".to_owned(), Quantity("1".into())),
                ("storage".to_owned(), Quantity("1".into())),
            ]);
        let mut s = spec(vec![c], vec![]);
        s.overhead = Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("10m".into())),
            ("memory".to_owned(), Quantity("1Mi".into())),
        ]));
        let r = pod_requests(&s);
        assert_eq!(r.requests.cpu, 110);
        assert_eq!(r.requests.memory, MI);
        assert_eq!(r.non_zero_memory, 201 * MI);
        assert_eq!(
            r.requests.scalar,
            vec![
                ("example.com/gpu".to_owned(), 2),
                ("hugepages-2Mi".to_owned(), 4 * MI)
            ]
        );
    }

    #[test]
    fn arithmetic() {
        let mut a = Resources {
            cpu: 1,
            scalar: vec![("a/x".into(), 2)],
            ..Resources::default()
        };
        let b = Resources {
            cpu: 2,
            scalar: vec![("a/w".into(), 1), ("a/x".into(), 2)],
            ..Resources::default()
        };
        a.add(&b);
        assert_eq!(a.scalar, vec![("a/w".into(), 1), ("a/x".into(), 4)]);
        assert_eq!(a.scalar("a/x"), 4);
        assert_eq!(a.scalar("a/y"), 0);
        a.sub(&b);
        assert_eq!(a.cpu, 1);
        assert_eq!(a.scalar, vec![("a/x".into(), 2)]);
        assert!(!a.is_zero());
        a.sub(&a.clone());
        assert!(a.is_zero());
    }
}
