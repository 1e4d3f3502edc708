//! The socket a DHCPv6 client speaks through on one interface, opened inside
//! the interface's namespace: UDP bound to the interface's link-local
//! address, port 546, and to the device (`SO_BINDTODEVICE`), so two
//! endpoints in one namespace (or children sharing a MAC) each hear only
//! their own server's answers. Every client message goes to
//! All_DHCP_Relay_Agents_and_Servers (ff02::1:2) port 547 on that link; the
//! server answers by unicast to the link-local address (RFC 8415 7.1, 18).
//!
//! Unlike IPv4 there is no martian problem: the source is a real link-local
//! address, which the caller puts on the link first (see the engine's
//! `dhcp::v6::link_local`).
//!
//! Only bytes go through here: the DHCPv6 messages are the engine's.

use std::io::ErrorKind;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn6, bind, setsockopt, socket, sockopt,
};

use crate::error::{KernelError, Result};
use crate::netns::Netns;

pub const CLIENT_PORT: u16 = 546;
pub const SERVER_PORT: u16 = 547;
/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 7.1).
pub const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// A DHCPv6 client socket bound to one interface of one namespace.
pub struct Dhcp6Socket {
    socket: UdpSocket,
    index: u32,
    ifname: String,
}

impl Dhcp6Socket {
    /// Opens the socket in `netns` on `ifname`, bound to its link-local
    /// address `source` (which must be on the link and usable: added
    /// without DAD, or DAD passed). It keeps acting there afterwards.
    pub fn open_in(netns: &Netns, ifname: &str, source: Ipv6Addr) -> Result<Dhcp6Socket> {
        let _guard = netns.enter()?;
        let what = |op: &str| format!("{op} (DHCPv6 socket on {ifname} in {})", netns.label());
        let index = nix::net::if_::if_nametoindex(ifname)
            .map_err(|e| KernelError::io(what("find the interface"), e.into()))?;
        let fd = socket(AddressFamily::Inet6, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
            .map_err(|e| KernelError::io(what("open"), e.into()))?;
        setsockopt(&fd, sockopt::ReuseAddr, &true)
            .map_err(|e| KernelError::io(what("SO_REUSEADDR"), e.into()))?;
        setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(ifname))
            .map_err(|e| KernelError::io(what("SO_BINDTODEVICE"), e.into()))?;
        // Multicast leaves through this interface, one hop (the link).
        setsockopt(&fd, sockopt::Ipv6MulticastHops, &1)
            .map_err(|e| KernelError::io(what("IPV6_MULTICAST_HOPS"), e.into()))?;
        let local = SockaddrIn6::from(SocketAddrV6::new(source, CLIENT_PORT, 0, index));
        bind(fd.as_raw_fd(), &local)
            .map_err(|e| KernelError::io(what(&format!("bind [{source}]:546")), e.into()))?;
        Ok(Dhcp6Socket { socket: UdpSocket::from(fd), index, ifname: ifname.to_string() })
    }

    /// Sends `message` to every DHCPv6 server on the link ([ff02::1:2]:547).
    pub fn send_to_servers(&self, message: &[u8]) -> Result<()> {
        self.socket
            .send_to(message, SocketAddrV6::new(ALL_SERVERS, SERVER_PORT, 0, self.index))
            .map_err(|e| KernelError::io(format!("send DHCPv6 message on {}", self.ifname), e))?;
        Ok(())
    }

    /// The next datagram that arrives before `deadline`, with its sender, or
    /// `None` when the deadline passes first.
    pub fn receive(&self, buf: &mut [u8], deadline: Instant) -> Result<Option<(usize, Ipv6Addr)>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // A zero timeout would mean "block forever".
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(|e| KernelError::io("set DHCPv6 socket timeout", e))?;
            match self.socket.recv_from(buf) {
                Ok((n, std::net::SocketAddr::V6(from))) => return Ok(Some((n, *from.ip()))),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(KernelError::io(
                        format!("receive DHCPv6 message on {}", self.ifname),
                        e,
                    ));
                }
            }
        }
    }

    /// Waits until every datagram sent has left the host (`SIOCOUTQ` is
    /// empty), at most `limit`; false if it has not: the caller deletes the
    /// link next (a RELEASE at detach), which drops what is still queued.
    pub fn flushed(&self, limit: Duration) -> bool {
        crate::dhcp_socket::send_queue_drained(self.socket.as_raw_fd(), limit)
    }
}
