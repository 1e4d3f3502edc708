//! The Ethernet frames of IPv6 duplicate address detection (RFC 4862) as a
//! packet socket sends and hears them: a neighbour solicitation in DAD
//! form (source `::`, to the target's solicited-node group, no source
//! link-layer option), which asks whether anyone holds an address without
//! needing one on the interface and without touching any neighbour's
//! cache, and the neighbour advertisements that answer it.

use std::net::Ipv6Addr;

use nicslice_model::MacAddr;

use crate::neighbour_probe::{advertised, solicited_node, target_link_layer};
use crate::probe::checksum;

pub(crate) const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_ICMPV6: u8 = 58;
/// Where the ICMPv6 message starts: after the Ethernet and IPv6 headers
/// (neighbour discovery carries no extension header).
pub(crate) const ICMP_AT: usize = 14 + 40;
/// ICMPv6 type of a neighbour advertisement.
pub(crate) const ADVERTISEMENT: u8 = 136;

/// The frame of a DAD-form neighbour solicitation for `target` from `mac`.
pub fn dad_solicitation_frame(mac: MacAddr, target: Ipv6Addr) -> Vec<u8> {
    let group = solicited_node(target);
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0]; // NS, code 0, checksum, reserved
    icmp.extend_from_slice(&target.octets());
    // The checksum covers a pseudo-header: source, destination, length, next header.
    let mut summed = Vec::with_capacity(40 + icmp.len());
    summed.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
    summed.extend_from_slice(&group.octets());
    summed.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
    summed.extend_from_slice(&[0, 0, 0, IPPROTO_ICMPV6]);
    summed.extend_from_slice(&icmp);
    icmp[2..4].copy_from_slice(&checksum(&summed).to_be_bytes());

    let g = group.octets();
    let mut f = Vec::with_capacity(ICMP_AT + icmp.len());
    f.extend_from_slice(&[0x33, 0x33, g[12], g[13], g[14], g[15]]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, no traffic class or flow
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[IPPROTO_ICMPV6, 255]); // hop limit 255, as NDP requires
    f.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
    f.extend_from_slice(&group.octets());
    f.extend_from_slice(&icmp);
    f
}

/// Who, in this frame, advertises which address: the target of a
/// neighbour advertisement and the MAC it gives for it (its target
/// link-layer option, else the frame's source). Only what the kernel's own
/// neighbour discovery would take: hop limit 255, code 0.
pub fn advertisement(frame: &[u8]) -> Option<(Ipv6Addr, MacAddr)> {
    let ip = frame.get(14..ICMP_AT)?;
    let ours = frame[12..14] == ETH_P_IPV6.to_be_bytes() && ip[0] >> 4 == 6;
    if !ours || ip[6] != IPPROTO_ICMPV6 || ip[7] != 255 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let icmp = frame.get(ICMP_AT..ICMP_AT + len)?;
    let target = advertised(icmp)?;
    let mac = target_link_layer(icmp).or_else(|| Some(MacAddr(frame[6..12].try_into().ok()?)))?;
    Some((target, mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const THEIRS: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn a_dad_solicitation_has_no_source_and_goes_to_the_solicited_node_group() {
        let target: Ipv6Addr = "fd77::1234:5678".parse().unwrap();
        let f = dad_solicitation_frame(OURS, target);
        assert_eq!(f.len(), ICMP_AT + 24, "no option");
        assert_eq!(&f[..6], &[0x33, 0x33, 0xff, 0x34, 0x56, 0x78]);
        assert_eq!(&f[6..12], &OURS.0);
        assert_eq!(&f[22..38], &[0; 16], "source ::");
        assert_eq!(f[38..54], "ff02::1:ff34:5678".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!((f[ICMP_AT], &f[ICMP_AT + 8..]), (135, &target.octets()[..]));
        // The checksum over pseudo-header and message sums to zero.
        let mut summed = f[22..54].to_vec();
        summed.extend_from_slice(&[0, 0, 0, 24, 0, 0, 0, 58]);
        summed.extend_from_slice(&f[ICMP_AT..]);
        assert_eq!(checksum(&summed), 0);
        assert_eq!(advertisement(&f), None, "a solicitation is no advertisement");
    }

    #[test]
    fn advertisements() {
        let target: Ipv6Addr = "fd77::5".parse().unwrap();
        let mut na = dad_solicitation_frame(THEIRS, target);
        na[ICMP_AT] = ADVERTISEMENT;
        // No option: the frame's source answers.
        assert_eq!(advertisement(&na), Some((target, THEIRS)));
        // A target link-layer option names another MAC (a proxy).
        na[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        na.extend_from_slice(&[2, 1]);
        na.extend_from_slice(&THEIRS.0);
        na[19] += 8;
        assert_eq!(advertisement(&na), Some((target, THEIRS)));
        let mut routed = na.clone();
        routed[21] = 64;
        assert_eq!(advertisement(&routed), None, "hop limit below 255");
        assert_eq!(advertisement(&na[..60]), None, "cut short");
    }
}
