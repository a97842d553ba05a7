//! Node IPAM: gives every node a pod CIDR (`spec.podCIDR`, `spec.podCIDRs`) from the cluster
//! CIDR, one block of `node_mask` bits each, as upstream's range allocator.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::warn;

use crate::informer::{Change, Informer};
use crate::queue::{Action, WorkQueue};

/// An IPv4 cluster CIDR cut into equal node blocks.
#[derive(Debug, Clone)]
pub struct ClusterCidr {
    base: u32,
    prefix: u32,
    node_mask: u32,
}

impl ClusterCidr {
    pub fn parse(cidr: &str, node_mask: u32) -> Option<Self> {
        let (ip, bits) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let prefix: u32 = bits.parse().ok()?;
        if prefix > node_mask || node_mask > 30 || prefix < 1 {
            return None;
        }
        let base = u32::from(ip) & !((1u32 << (32 - prefix)) - 1);
        Some(ClusterCidr {
            base,
            prefix,
            node_mask,
        })
    }

    pub fn blocks(&self) -> u32 {
        1u32 << (self.node_mask - self.prefix)
    }

    pub fn block(&self, index: u32) -> String {
        let ip = Ipv4Addr::from(self.base + (index << (32 - self.node_mask)));
        format!("{ip}/{}", self.node_mask)
    }

    pub fn index_of(&self, cidr: &str) -> Option<u32> {
        let (ip, bits) = cidr.split_once('/')?;
        if bits.parse::<u32>().ok()? != self.node_mask {
            return None;
        }
        let ip = u32::from(ip.parse::<Ipv4Addr>().ok()?);
        let offset = ip.checked_sub(self.base)?;
        let index = offset >> (32 - self.node_mask);
        (index < self.blocks()).then_some(index)
    }
}

/// The blocks in use, and where the search for a free one starts: just after the last one
/// given, as upstream's CIDR set does, so handing out blocks one after another costs O(1)
/// each rather than a scan from the first block (quadratic over thousands of nodes).
#[derive(Default)]
struct Blocks {
    used: BTreeSet<u32>,
    next: u32,
}

impl Blocks {
    fn insert(&mut self, index: u32) {
        self.used.insert(index);
    }

    fn remove(&mut self, index: u32) {
        self.used.remove(&index);
    }

    /// Takes the first free block at or after the cursor, wrapping around once.
    fn allocate(&mut self, blocks: u32) -> Option<u32> {
        let start = self.next.min(blocks);
        let free = (start..blocks)
            .chain(0..start)
            .find(|i| !self.used.contains(i))?;
        self.used.insert(free);
        self.next = free + 1;
        Some(free)
    }
}

#[derive(Clone)]
pub struct NodeIpamController {
    client: Client,
    nodes: Informer<Node>,
    cidr: ClusterCidr,
    used: Arc<Mutex<Blocks>>,
    queue: WorkQueue,
}

impl NodeIpamController {
    pub fn new(client: Client, nodes: Informer<Node>, cidr: ClusterCidr) -> Self {
        let queue = WorkQueue::new();
        let used = Arc::new(Mutex::new(Blocks::default()));
        let (q, u, c) = (queue.clone(), used.clone(), cidr.clone());
        nodes.on_change(move |change| match change {
            Change::Upsert { new, .. } => {
                match new.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
                    Some(p) => {
                        if let Some(i) = c.index_of(p) {
                            u.lock().expect("ipam").insert(i);
                        }
                    }
                    None => q.add(new.name_any()),
                }
            }
            Change::Delete(old) => {
                if let Some(i) = old
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.as_deref())
                    .and_then(|p| c.index_of(p))
                {
                    u.lock().expect("ipam").remove(i);
                }
            }
        });
        NodeIpamController {
            client,
            nodes,
            cidr,
            used,
            queue,
        }
    }

    pub async fn run(self) {
        self.nodes.wait_synced().await;
        let this = self.clone();
        self.queue
            .clone()
            .run("nodeipam", 2, move |name| {
                let this = this.clone();
                async move { this.reconcile(&name).await }
            })
            .await;
    }

    async fn reconcile(&self, name: &str) -> Result<Action, kube::Error> {
        let Some(node) = self.nodes.get(name) else {
            return Ok(Action::Done);
        };
        if node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_ref())
            .is_some()
        {
            return Ok(Action::Done);
        }
        let index = {
            let free = self.used.lock().expect("ipam").allocate(self.cidr.blocks());
            match free {
                Some(i) => i,
                None => {
                    warn!(node = %name, "no pod CIDR left in the cluster CIDR");
                    return Ok(Action::Done);
                }
            }
        };
        let block = self.cidr.block(index);
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"spec": {"podCIDR": block, "podCIDRs": [block]}});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(Action::Done),
            Err(e) => {
                self.used.lock().expect("ipam").remove(index);
                match e {
                    kube::Error::Api(s) if s.code == 404 => Ok(Action::Done),
                    e => Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks() {
        let c = ClusterCidr::parse("10.128.0.0/9", 24).unwrap();
        assert_eq!(c.blocks(), 32768);
        assert_eq!(c.block(0), "10.128.0.0/24");
        assert_eq!(c.block(257), "10.129.1.0/24");
        assert_eq!(c.index_of("10.129.1.0/24"), Some(257));
        assert_eq!(c.index_of("10.0.0.0/24"), None);
        assert!(ClusterCidr::parse("10.0.0.0/24", 16).is_none());
    }

    #[test]
    fn blocks_are_handed_out_after_the_last_one_and_wrap_around() {
        let mut b = Blocks::default();
        b.insert(1);
        assert_eq!(b.allocate(4), Some(0));
        assert_eq!(b.allocate(4), Some(2), "1 is taken");
        assert_eq!(b.allocate(4), Some(3));
        b.remove(0);
        assert_eq!(b.allocate(4), Some(0), "wraps around to a freed block");
        assert_eq!(b.allocate(4), None, "all four in use");
        b.remove(2);
        assert_eq!(b.allocate(4), Some(2));
    }
}
