//! Pod IP allocation inside one node's pod CIDR (IPv4).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// A node's pod CIDR and the addresses in use. The network and first address (the node's
/// gateway) and the broadcast address are never handed out.
#[derive(Debug, Clone)]
pub struct PodCidr {
    base: u32,
    size: u32,
    used: BTreeSet<u32>,
    next: u32,
}

impl PodCidr {
    /// Parses "10.244.3.0/24".
    pub fn parse(cidr: &str) -> Option<Self> {
        let (ip, bits) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let bits: u32 = bits.parse().ok()?;
        if !(8..=30).contains(&bits) {
            return None;
        }
        let size = 1u32 << (32 - bits);
        let base = u32::from(ip) & !(size - 1);
        Some(PodCidr {
            base,
            size,
            used: BTreeSet::new(),
            next: 2,
        })
    }

    /// The `index`th /24 of `pool` (e.g. 100.64.0.0/10): a fallback for nodes no controller
    /// gave a pod CIDR.
    pub fn nth_24(pool: &str, index: u32) -> Option<String> {
        let (ip, bits) = pool.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let bits: u32 = bits.parse().ok()?;
        let count = 1u32.checked_shl(24u32.checked_sub(bits)?)?;
        if index >= count {
            return None;
        }
        let base = u32::from(ip) & !((1u32 << (32 - bits)) - 1);
        Some(format!("{}/24", Ipv4Addr::from(base + (index << 8))))
    }

    /// Marks an address as used (pods found running at start).
    pub fn claim(&mut self, ip: &str) {
        if let Ok(ip) = ip.parse::<Ipv4Addr>() {
            let offset = u32::from(ip).wrapping_sub(self.base);
            if offset < self.size {
                self.used.insert(offset);
            }
        }
    }

    /// The next free address, round-robin so a freed address is not reused at once.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let usable = self.size.saturating_sub(3);
        for _ in 0..usable {
            let offset = self.next;
            self.next = if self.next + 1 >= self.size - 1 {
                2
            } else {
                self.next + 1
            };
            if self.used.insert(offset) {
                return Some(Ipv4Addr::from(self.base + offset));
            }
        }
        None
    }

    pub fn release(&mut self, ip: &str) {
        if let Ok(ip) = ip.parse::<Ipv4Addr>() {
            self.used.remove(&u32::from(ip).wrapping_sub(self.base));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_within_the_cidr() {
        let mut c = PodCidr::parse("10.244.3.0/30").unwrap();
        assert_eq!(c.allocate(), Some("10.244.3.2".parse().unwrap()));
        assert_eq!(c.allocate(), None);
        c.release("10.244.3.2");
        assert_eq!(c.allocate(), Some("10.244.3.2".parse().unwrap()));
        let mut c = PodCidr::parse("10.244.3.0/24").unwrap();
        c.claim("10.244.3.2");
        assert_eq!(c.allocate(), Some("10.244.3.3".parse().unwrap()));
        let all: Vec<_> = std::iter::from_fn(|| c.allocate()).collect();
        assert_eq!(all.len(), 256 - 3 - 2);
        assert!(!all.contains(&"10.244.3.255".parse().unwrap()));
    }

    #[test]
    fn fallback_blocks() {
        assert_eq!(
            PodCidr::nth_24("100.64.0.0/10", 0).as_deref(),
            Some("100.64.0.0/24")
        );
        assert_eq!(
            PodCidr::nth_24("100.64.0.0/10", 257).as_deref(),
            Some("100.65.1.0/24")
        );
        assert_eq!(PodCidr::nth_24("100.64.0.0/10", 1 << 14), None);
    }
}
