//! Telling the neighbours about a new MAC: a gratuitous ARP for each IPv4
//! address (sent from an `AF_PACKET` socket) and an unsolicited neighbour
//! advertisement for each IPv6 address (from a raw ICMPv6 socket), so switches
//! and peers that cached an old MAC for the address learn the new one at once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};

use nicslice_model::MacAddr;
use nix::sys::socket::{
    AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType, SockaddrIn6, SockaddrLike, sendto,
    setsockopt, socket, sockopt,
};

use crate::error::{KernelError, Result};
use crate::netns::Netns;

const ETH_P_ARP: u16 = 0x0806;

/// Sends one announcement per address of the interface `index` in `netns`.
pub fn announce(
    netns: &Netns,
    index: u32,
    ifname: &str,
    mac: MacAddr,
    addrs: &[IpAddr],
) -> Result<()> {
    let _guard = netns.enter()?;
    for ip in addrs {
        match ip {
            IpAddr::V4(v4) => gratuitous_arp(index, mac, *v4)?,
            IpAddr::V6(v6) => unsolicited_na(index, ifname, mac, *v6)?,
        }
    }
    Ok(())
}

fn packet_socket() -> Result<OwnedFd> {
    socket(AddressFamily::Packet, SockType::Raw, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| KernelError::io("open packet socket", e.into()))
}

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

fn gratuitous_arp(index: u32, mac: MacAddr, ip: Ipv4Addr) -> Result<()> {
    let sock = packet_socket()?;
    let frame = gratuitous_arp_frame(mac, ip);
    // SAFETY: sockaddr_ll is plain old data; zeroed is a valid value.
    let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = ETH_P_ARP.to_be();
    ll.sll_ifindex = index as i32;
    ll.sll_halen = 6;
    ll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: `ll` is a fully initialised sockaddr_ll and the length passed is its size.
    let addr = unsafe {
        LinkAddr::from_raw(
            &ll as *const libc::sockaddr_ll as *const libc::sockaddr,
            Some(std::mem::size_of::<libc::sockaddr_ll>() as u32),
        )
    }
    .ok_or_else(|| KernelError::Protocol {
        op: "gratuitous ARP".into(),
        detail: "bad link address".into(),
    })?;
    sendto(sock.as_raw_fd(), &frame, &addr, nix::sys::socket::MsgFlags::empty())
        .map_err(|e| KernelError::io(format!("send gratuitous ARP for {ip}"), e.into()))?;
    Ok(())
}

/// The ICMPv6 body of an unsolicited NA with the override flag and our MAC as
/// the target link-layer address option (the kernel fills in the checksum).
pub fn unsolicited_na_body(mac: MacAddr, ip: Ipv6Addr) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(&[136, 0, 0, 0]); // type NA, code 0, checksum by kernel
    b.extend_from_slice(&0x2000_0000u32.to_be_bytes()); // Override
    b.extend_from_slice(&ip.octets());
    b.extend_from_slice(&[2, 1]); // option: target link-layer address, 8 bytes
    b.extend_from_slice(&mac.0);
    b
}

fn unsolicited_na(index: u32, ifname: &str, mac: MacAddr, ip: Ipv6Addr) -> Result<()> {
    let sock =
        socket(AddressFamily::Inet6, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::IcmpV6)
            .map_err(|e| KernelError::io("open ICMPv6 socket", e.into()))?;
    let io = |op: &str| {
        let op = op.to_string();
        move |e: nix::Error| KernelError::io(op, e.into())
    };
    setsockopt(&sock, sockopt::BindToDevice, &std::ffi::OsString::from(ifname))
        .map_err(io("bind to device"))?;
    // Neighbour discovery messages must carry hop limit 255 (RFC 4861).
    setsockopt(&sock, sockopt::Ipv6MulticastHops, &255).map_err(io("set hop limit"))?;
    let src = SockaddrIn6::from(SocketAddrV6::new(ip, 0, 0, index));
    nix::sys::socket::bind(sock.as_raw_fd(), &src).map_err(io("bind announcement source"))?;
    let dst = SockaddrIn6::from(SocketAddrV6::new(
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
        0,
        0,
        index,
    ));
    sendto(
        sock.as_raw_fd(),
        &unsolicited_na_body(mac, ip),
        &dst,
        nix::sys::socket::MsgFlags::empty(),
    )
    .map_err(|e| KernelError::io(format!("send unsolicited NA for {ip}"), e.into()))?;
    Ok(())
}
