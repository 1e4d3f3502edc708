//! The frame of a gratuitous ARP request, the base of the neighbour probes'
//! ARP requests. (Endpoints are announced by the kernel itself, through
//! `arp_notify` and `ndisc_notify` as their link comes up: a packet socket's
//! close waits out an RCU grace period, longer than a whole CNI ADD.)

use std::net::Ipv4Addr;

use nicslice_model::MacAddr;

const ETH_P_ARP: u16 = 0x0806;

/// The frame of a gratuitous ARP request: "who has IP? tell IP" from our MAC.
pub fn gratuitous_arp_frame(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]); // Ethernet, IPv4, sizes, request
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip.octets());
    f
}
