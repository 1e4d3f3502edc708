//! `Pool`: the addresses of one validated subnet as numbered offsets, with the
//! few that may never be handed out (network, IPv4 broadcast, gateway, aux
//! addresses). Offsets count from the *subnet's* first address, so static
//! addresses outside `ip_range` but inside the subnet have an offset too; the
//! automatic range is the offsets `range_first()..=range_last()` (`ip_range`,
//! or the subnet's `window` when it has one). IPv4 and
//! IPv6 share this one code path; nothing here iterates over a range.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::addr;
use crate::network::{NetworkName, ValidSubnet};

/// The storage key of a pool (one subnet of one network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PoolId(pub i64);

/// Why an address of a subnet may not be given to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    Network,
    Broadcast,
    Gateway,
    Aux(String),
}

impl fmt::Display for Reserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reserved::Network => f.write_str("network address"),
            Reserved::Broadcast => f.write_str("broadcast address"),
            Reserved::Gateway => f.write_str("gateway"),
            Reserved::Aux(name) => write!(f, "aux address {name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    id: PoolId,
    network: NetworkName,
    subnet: IpNet,
    range: IpNet,
    gateway: IpAddr,
    first: u128,
    last: u128,
    subnet_last: u128,
    reserved: BTreeMap<u128, Reserved>,
}

impl Pool {
    /// The pool of `subnet`, one of the validated subnets of network `network`.
    pub fn new(id: PoolId, network: NetworkName, subnet: &ValidSubnet) -> Pool {
        let net = subnet.subnet();
        let range = subnet.allocation_range();
        let base = addr::to_u128(net.network());
        let rel = |ip: IpAddr| addr::to_u128(ip).wrapping_sub(base);
        let mut reserved = BTreeMap::new();
        reserved.insert(0, Reserved::Network);
        if net.addr().is_ipv4() {
            reserved.insert(addr::last_offset(&net), Reserved::Broadcast);
        }
        let gateway = subnet.gateway();
        reserved.entry(rel(gateway)).or_insert(Reserved::Gateway);
        for (name, ip) in &subnet.spec().aux_addresses {
            reserved.entry(rel(*ip)).or_insert_with(|| Reserved::Aux(name.clone()));
        }
        let (first, last) = match subnet.spec().window {
            Some((start, end)) => (rel(start), rel(end)),
            None => {
                let first = rel(range.network());
                (first, first.saturating_add(addr::last_offset(&range)))
            }
        };
        Pool {
            id,
            network,
            subnet: net,
            range,
            gateway,
            first,
            last,
            subnet_last: addr::last_offset(&net),
            reserved,
        }
    }

    pub fn id(&self) -> PoolId {
        self.id
    }

    pub fn network(&self) -> &NetworkName {
        &self.network
    }

    pub fn subnet(&self) -> IpNet {
        self.subnet
    }

    /// The range automatic allocation draws from (`ip_range` or the subnet).
    pub fn range(&self) -> IpNet {
        self.range
    }

    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    /// Offset of the first address of the automatic range.
    pub fn range_first(&self) -> u128 {
        self.first
    }

    /// Offset of the last address of the automatic range.
    pub fn range_last(&self) -> u128 {
        self.last
    }

    /// Number of addresses in the automatic range, reserved ones included.
    pub fn len(&self) -> u128 {
        (self.last - self.first).saturating_add(1)
    }

    /// Always false: a validated subnet has at least one address.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The offset of `ip` from the subnet's first address, if `ip` is inside the subnet.
    pub fn offset_of(&self, ip: IpAddr) -> Option<u128> {
        (addr::same_family(ip, self.subnet.addr()) && self.subnet.contains(&ip))
            .then(|| addr::to_u128(ip) - addr::to_u128(self.subnet.network()))
    }

    /// The address at `offset` from the subnet's first address, if inside the subnet.
    pub fn ip_at(&self, offset: u128) -> Option<IpAddr> {
        if offset > self.subnet_last {
            return None;
        }
        let base = self.subnet.network();
        addr::from_u128(base, addr::to_u128(base).checked_add(offset)?)
    }

    /// Why the address at `offset` may not be handed out, if it may not.
    pub fn reserved(&self, offset: u128) -> Option<&Reserved> {
        self.reserved.get(&offset)
    }

    /// Whether `offset` lies in the automatic range.
    pub fn in_range(&self, offset: u128) -> bool {
        (self.first..=self.last).contains(&offset)
    }

    /// Whether `ip` may be given to an endpoint (inside the subnet, not reserved).
    /// Leases are not considered: that is the book's business.
    pub fn is_allocatable(&self, ip: IpAddr) -> bool {
        self.offset_of(ip).is_some_and(|o| self.reserved(o).is_none())
    }

    /// How many addresses of the automatic range may be handed out.
    pub fn allocatable_in_range(&self) -> u128 {
        let reserved = self.reserved.range(self.first..=self.last).count() as u128;
        self.len().saturating_sub(reserved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::memory::pool_of;
    use crate::network::SubnetSpec;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn offsets_round_trip_in_the_subnet() {
        let p = pool_of(SubnetSpec::new("192.168.179.0/24".parse().unwrap()));
        assert_eq!(p.offset_of(ip("192.168.179.13")), Some(13));
        assert_eq!(p.ip_at(13), Some(ip("192.168.179.13")));
        assert_eq!(p.offset_of(ip("192.168.180.1")), None);
        assert_eq!(p.offset_of(ip("fd00::1")), None);
        assert_eq!(p.ip_at(256), None);
        assert_eq!((p.range_first(), p.range_last(), p.len()), (0, 255, 256));
    }

    #[test]
    fn reserved_addresses_are_named() {
        let mut sub = SubnetSpec::new("10.0.0.0/24".parse().unwrap());
        sub.gateway = Some(ip("10.0.0.254"));
        sub.aux_addresses.insert("router".into(), ip("10.0.0.2"));
        let p = pool_of(sub);
        assert_eq!(p.reserved(0), Some(&Reserved::Network));
        assert_eq!(p.reserved(255), Some(&Reserved::Broadcast));
        assert_eq!(p.reserved(254), Some(&Reserved::Gateway));
        assert_eq!(p.reserved(2).map(ToString::to_string), Some("aux address router".into()));
        assert!(!p.is_allocatable(ip("10.0.0.2")));
        assert!(p.is_allocatable(ip("10.0.0.1")));
        assert!(!p.is_allocatable(ip("10.0.1.1")));
        assert_eq!(p.allocatable_in_range(), 252);
    }

    #[test]
    fn ip_range_is_a_window_of_subnet_offsets() {
        let mut sub = SubnetSpec::new("10.0.0.0/24".parse().unwrap());
        sub.ip_range = Some("10.0.0.128/25".parse().unwrap());
        let p = pool_of(sub);
        assert_eq!((p.range_first(), p.range_last(), p.len()), (128, 255, 128));
        assert!(p.in_range(200) && !p.in_range(5));
        // Outside the range but inside the subnet is still allocatable (statically).
        assert!(p.is_allocatable(ip("10.0.0.5")));
        // Only the broadcast is reserved inside the range.
        assert_eq!(p.allocatable_in_range(), 127);
    }

    #[test]
    fn a_window_bounds_the_automatic_range_exactly() {
        let mut sub = SubnetSpec::new("10.0.0.0/24".parse().unwrap());
        sub.window = Some((ip("10.0.0.100"), ip("10.0.0.110")));
        let p = pool_of(sub);
        assert_eq!((p.range_first(), p.range_last(), p.len()), (100, 110, 11));
        assert!(p.in_range(110) && !p.in_range(111) && !p.in_range(99));
    }

    #[test]
    fn ipv6_has_no_broadcast_and_huge_ranges_do_not_overflow() {
        let p = pool_of(SubnetSpec::new("fd00::/64".parse().unwrap()));
        let last = u128::from(u64::MAX);
        assert_eq!(p.range_last(), last);
        assert_eq!(p.len(), last + 1);
        assert_eq!(p.ip_at(last), Some(ip("fd00::ffff:ffff:ffff:ffff")));
        assert_eq!(p.reserved(last), None);
        assert_eq!(p.allocatable_in_range(), last - 1);
        // The widest subnet that holds no multicast or loopback address.
        let wide = pool_of(SubnetSpec::new("4000::/2".parse().unwrap()));
        assert_eq!(wide.len(), 1u128 << 126);
    }
}
