//! Address arithmetic shared by network validation and the allocator: IPv4 and
//! IPv6 addresses as `u128` numbers, so both families take one code path.
//! Pure helpers only; no policy lives here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The address as a number (IPv4 in the low 32 bits).
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address `n` of the same family as `like`, if it fits that family.
pub fn from_u128(like: IpAddr, n: u128) -> Option<IpAddr> {
    match like {
        IpAddr::V4(_) => u32::try_from(n).ok().map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        IpAddr::V6(_) => Some(IpAddr::V6(Ipv6Addr::from(n))),
    }
}

/// The highest offset inside `net` (its size minus one); never overflows.
pub(crate) fn last_offset(net: &IpNet) -> u128 {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    if host_bits >= 128 { u128::MAX } else { (1u128 << host_bits) - 1 }
}

/// Whether two networks share at least one address.
pub(crate) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Whether both addresses are of the same family.
pub(crate) fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn numbers_round_trip_in_both_families() {
        let v4: IpAddr = "192.168.1.7".parse().unwrap();
        assert_eq!(to_u128(v4), 0xc0a8_0107);
        assert_eq!(from_u128(v4, 0xc0a8_0107), Some(v4));
        assert_eq!(from_u128(v4, 1u128 << 32), None);
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(from_u128(v6, to_u128(v6)), Some(v6));
    }

    #[test]
    fn last_offset_covers_all_prefixes() {
        assert_eq!(last_offset(&net("10.0.0.0/24")), 255);
        assert_eq!(last_offset(&net("10.0.0.1/32")), 0);
        assert_eq!(last_offset(&net("fd00::/64")), u128::from(u64::MAX));
        assert_eq!(last_offset(&net("::/0")), u128::MAX);
    }

    #[test]
    fn overlap_is_symmetric_and_exact() {
        assert!(overlaps(&net("10.0.0.0/16"), &net("10.0.5.0/24")));
        assert!(overlaps(&net("10.0.5.0/24"), &net("10.0.0.0/16")));
        assert!(!overlaps(&net("10.0.0.0/24"), &net("10.0.1.0/24")));
        assert!(!overlaps(&net("10.0.0.0/24"), &net("fd00::/64")));
    }
}
