//! A host-local style address range: a subnet, the window addresses are
//! handed out from, and its gateway (never handed out). The CNI IPAM
//! configuration is made of sets of them.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::to_u128;

/// One range: a subnet, the window `[first, last]` addresses are handed out
/// from, and the gateway (never handed out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRange {
    pub subnet: IpNet,
    pub first: IpAddr,
    pub last: IpAddr,
    pub gateway: IpAddr,
}

impl AddressRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.subnet.contains(&ip)
            && to_u128(ip) >= to_u128(self.first)
            && to_u128(ip) <= to_u128(self.last)
    }

    /// The pool key of this range in the lease database.
    pub fn key(&self) -> String {
        format!("{}-{}", self.first, self.last)
    }

    pub fn overlaps(&self, other: &AddressRange) -> bool {
        self.first.is_ipv4() == other.first.is_ipv4()
            && to_u128(self.first) <= to_u128(other.last)
            && to_u128(other.first) <= to_u128(self.last)
    }
}

impl std::fmt::Display for AddressRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}
