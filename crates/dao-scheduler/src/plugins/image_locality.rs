//! ImageLocality: prefers nodes that already have the pod's images, by upstream's formula.
//!
//! For each container image (`:latest` appended when untagged) the node has, add its size
//! times the fraction of nodes that have it (so an image on every node counts fully, one on a
//! single node of many barely). The sum is clamped to `[23MB, 1000MB * containers]` and scaled
//! to 0..=100. Image names are matched exactly as the node reports them.

use super::Incoming;
use crate::cache::{Cache, NodeInfo};
use crate::framework::MAX_NODE_SCORE;

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// The pod's images resolved against the cache once per cycle.
pub(crate) struct PodImages {
    /// `(image id, number of nodes that have it)` per container that names a known image.
    images: Vec<(u32, u32)>,
    containers: i64,
    total_nodes: i64,
}

fn normalized(name: &str) -> String {
    if name
        .rfind(':')
        .is_none_or(|c| name.rfind('/').is_some_and(|s| c <= s))
    {
        format!("{name}:latest")
    } else {
        name.to_owned()
    }
}

impl PodImages {
    pub fn new(cache: &Cache, pod: &Incoming<'_>) -> Self {
        let spec = pod.pod.spec.as_ref();
        let containers = spec
            .into_iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers));
        let mut images = Vec::new();
        let mut count = 0;
        for c in containers {
            count += 1;
            let Some(image) = c.image.as_deref() else {
                continue;
            };
            if let Some(id) = cache.image_id(&normalized(image)) {
                images.push((id, cache.image_nodes[id as usize]));
            }
        }
        PodImages {
            images,
            containers: count,
            total_nodes: i64::try_from(cache.node_count()).unwrap_or(i64::MAX),
        }
    }

    /// Whether no container image is on any node (every node then scores 0).
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn score(&self, node: &NodeInfo) -> i64 {
        if self.images.is_empty() || self.total_nodes == 0 {
            return 0;
        }
        let mut sum: i64 = 0;
        for (id, num_nodes) in &self.images {
            if let Ok(i) = node.images.binary_search_by_key(id, |(image, _)| *image) {
                let size = i128::from(node.images[i].1);
                let scaled = size * i128::from(*num_nodes) / i128::from(self.total_nodes);
                sum = sum.saturating_add(i64::try_from(scaled).unwrap_or(i64::MAX));
            }
        }
        let max_threshold = MAX_CONTAINER_THRESHOLD.saturating_mul(self.containers.max(1));
        let clamped = sum.clamp(MIN_THRESHOLD, max_threshold);
        MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::cache_with;
    use crate::testing::{NodeExt, PodExt, node, pod};

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalized("nginx"), "nginx:latest");
        assert_eq!(normalized("nginx:1.25"), "nginx:1.25");
        assert_eq!(
            normalized("registry:5000/nginx"),
            "registry:5000/nginx:latest"
        );
        assert_eq!(normalized("registry:5000/nginx:1"), "registry:5000/nginx:1");
    }

    #[test]
    fn table() {
        let cache = cache_with(
            &[
                node("n1", "1", "1Gi", 10)
                    .image("big:1", 1000 * MB)
                    .image("small:1", 10 * MB),
                node("n2", "1", "1Gi", 10)
                    .image("small:1", 10 * MB)
                    .image("mid:1", 523 * MB),
                node("n3", "1", "1Gi", 10).image("mid:1", 523 * MB),
                node("n4", "1", "1Gi", 10),
            ],
            &[],
        );
        let check = |image: &str, expected: [i64; 4]| {
            let p = pod("d", "p", "", "").image(image);
            let images = PodImages::new(&cache, &Incoming::new(&p));
            let got: Vec<i64> = cache.nodes.iter().map(|n| images.score(n)).collect();
            assert_eq!(got, expected, "{image}");
        };
        // 1000MB on one of four nodes counts 250MB: 100 * (250 - 23) / 977.
        check("big:1", [23, 0, 0, 0]);
        // Below the 23MB threshold: nothing.
        check("small:1", [0, 0, 0, 0]);
        // 523MB on half the nodes: 261.5MB.
        check("mid:1", [0, 24, 24, 0]);
        check("unknown:1", [0, 0, 0, 0]);
    }
}
