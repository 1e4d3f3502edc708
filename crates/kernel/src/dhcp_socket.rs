//! The socket a DHCPv4 client speaks through on one interface, opened inside
//! the interface's namespace: UDP port 68 bound to the device
//! (`SO_BINDTODEVICE`) with `SO_BROADCAST`, so it works before the interface
//! has an address. The kernel sends a limited broadcast out of the bound
//! device with source 0.0.0.0, and hands the socket the server's broadcast
//! answers (the client sets the broadcast flag: a child without an address
//! cannot take a unicast answer, and an ipvlan child shares its MAC).
//!
//! Except where reverse-path filtering is on (`rp_filter`, all or the
//! device): an interface with no address has no route back to the server,
//! so the kernel drops its answers as martians before UDP sees them. There
//! answers are read from a packet socket on the device instead (what
//! dhclient and systemd-networkd always do; only there, since closing one
//! waits out an RCU grace period).
//!
//! Only bytes go through here: the DHCP messages are the engine's.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt,
};

use crate::error::{KernelError, Result};
use crate::netns::Netns;

pub const CLIENT_PORT: u16 = 68;
pub const SERVER_PORT: u16 = 67;

/// A DHCPv4 client socket bound to one interface of one namespace.
pub struct DhcpSocket {
    socket: UdpSocket,
    /// Where answers are read when reverse-path filtering would drop them.
    packet: Option<OwnedFd>,
    ifname: String,
}

/// Reverse-path filtering on `ifname` in the current namespace: the larger
/// of `all` and the device's own setting is what the kernel applies.
fn rp_filter_on(ifname: &str) -> bool {
    ["all", ifname].iter().any(|dev| {
        crate::sysctl::read(&format!("net/ipv4/conf/{dev}/rp_filter")).is_ok_and(|v| v != "0")
    })
}

/// A packet socket receiving the IPv4 packets of interface `ifname`
/// (`socket(AF_PACKET, SOCK_DGRAM, ETH_P_IP)` bound to its index).
fn ip_packet_socket(ifname: &str) -> std::io::Result<OwnedFd> {
    let index = nix::net::if_::if_nametoindex(ifname)?;
    let proto = (libc::ETH_P_IP as u16).to_be();
    // SAFETY: plain socket(2) call; the descriptor is owned from here.
    let fd = unsafe {
        libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, i32::from(proto))
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor socket(2) just returned, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = i32::try_from(index).unwrap_or(0);
    // SAFETY: bind(2) reads `size_of::<sockaddr_ll>()` bytes from a live value.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// The UDP payload of an IPv4 packet to port 68, if `packet` is one.
fn udp_to_client(packet: &[u8]) -> Option<&[u8]> {
    let version_ihl = *packet.first()?;
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || ihl < 20 || *packet.get(9)? != 17 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    let udp = packet.get(ihl..total.min(packet.len()))?;
    let dst_port = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let udp_len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    (dst_port == CLIENT_PORT && udp_len >= 8).then(|| udp.get(8..udp_len.min(udp.len()))).flatten()
}

impl DhcpSocket {
    /// Opens the socket in `netns` on `ifname` (which must be up); it keeps
    /// acting there afterwards. Several can be open at once in one namespace,
    /// one per interface.
    pub fn open_in(netns: &Netns, ifname: &str) -> Result<DhcpSocket> {
        let _guard = netns.enter()?;
        let what = |op: &str| format!("{op} (DHCP socket on {ifname} in {})", netns.label());
        let fd = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
            .map_err(|e| KernelError::io(what("open"), e.into()))?;
        setsockopt(&fd, sockopt::ReuseAddr, &true)
            .map_err(|e| KernelError::io(what("SO_REUSEADDR"), e.into()))?;
        setsockopt(&fd, sockopt::Broadcast, &true)
            .map_err(|e| KernelError::io(what("SO_BROADCAST"), e.into()))?;
        // Bound to the device before the port: two clients in one namespace
        // on two interfaces then share port 68 without conflict.
        setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(ifname))
            .map_err(|e| KernelError::io(what("SO_BINDTODEVICE"), e.into()))?;
        let any = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT));
        bind(fd.as_raw_fd(), &any).map_err(|e| KernelError::io(what("bind port 68"), e.into()))?;
        let packet = if rp_filter_on(ifname) {
            Some(ip_packet_socket(ifname).map_err(|e| KernelError::io(what("packet socket"), e))?)
        } else {
            None
        };
        Ok(DhcpSocket { socket: UdpSocket::from(fd), packet, ifname: ifname.to_string() })
    }

    /// Sends `message` to every server on the link (255.255.255.255:67).
    pub fn broadcast(&self, message: &[u8]) -> Result<()> {
        self.send_to(message, Ipv4Addr::BROADCAST)
    }

    /// Sends `message` to `server` port 67 (RELEASE goes to the server that
    /// gave the lease, from the leased address).
    pub fn send_to(&self, message: &[u8], server: Ipv4Addr) -> Result<()> {
        self.socket
            .send_to(message, SocketAddrV4::new(server, SERVER_PORT))
            .map_err(|e| KernelError::io(format!("send DHCP message on {}", self.ifname), e))?;
        Ok(())
    }

    /// The next datagram that arrives before `deadline`, or `None` when the
    /// deadline passes first.
    pub fn receive(&self, buf: &mut [u8], deadline: Instant) -> Result<Option<usize>> {
        if let Some(packet) = &self.packet {
            return self.receive_packet(packet, buf, deadline);
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // A zero timeout would mean "block forever".
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(|e| KernelError::io("set DHCP socket timeout", e))?;
            match self.socket.recv_from(buf) {
                Ok((n, _)) => return Ok(Some(n)),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(KernelError::io(
                        format!("receive DHCP message on {}", self.ifname),
                        e,
                    ));
                }
            }
        }
    }

    /// [`receive`](Self::receive) through the packet socket: the next UDP
    /// datagram to port 68 on the device, its payload copied into `buf`.
    fn receive_packet(
        &self,
        packet: &OwnedFd,
        buf: &mut [u8],
        deadline: Instant,
    ) -> Result<Option<usize>> {
        let mut frame = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let millis = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(packet.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(millis)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(KernelError::io("poll DHCP packet socket", e.into())),
            }
            // SAFETY: recv(2) writes at most `frame.len()` bytes into `frame`.
            let n = unsafe {
                libc::recv(packet.as_raw_fd(), frame.as_mut_ptr().cast(), frame.len(), 0)
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(KernelError::io(format!("receive on {}", self.ifname), e));
            }
            let n = usize::try_from(n).unwrap_or(0);
            if let Some(payload) = udp_to_client(&frame[..n]) {
                let len = payload.len().min(buf.len());
                buf[..len].copy_from_slice(&payload[..len]);
                return Ok(Some(len));
            }
        }
    }

    /// Waits until every datagram sent has left the host (the socket's send
    /// queue, `SIOCOUTQ`, is empty), at most `limit`; false if it has not.
    /// A unicast message waits in the kernel for the server's ARP answer, and
    /// deleting the interface before that drops it.
    pub fn flushed(&self, limit: Duration) -> bool {
        send_queue_drained(self.socket.as_raw_fd(), limit)
    }
}

/// Waits until socket `fd`'s send queue (`SIOCOUTQ`) is empty, at most
/// `limit`; false if it is not (or cannot be read). Shared with the DHCPv6
/// socket, whose RELEASE leaves just before its link is deleted too.
pub(crate) fn send_queue_drained(fd: std::os::fd::RawFd, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one int through the pointer, which points
        // at a live c_int.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ as _, &mut queued) };
        if rc < 0 || queued == 0 {
            return rc == 0;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_udp(dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let total = 20 + 8 + payload.len();
        let mut p =
            vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 192, 168, 0, 1, 255, 255, 255, 255];
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p.extend(67u16.to_be_bytes());
        p.extend(dst_port.to_be_bytes());
        p.extend(((8 + payload.len()) as u16).to_be_bytes());
        p.extend([0, 0]);
        p.extend(payload);
        p
    }

    #[test]
    fn only_udp_to_port_68_is_taken_from_packets() {
        assert_eq!(udp_to_client(&ipv4_udp(68, b"offer")), Some(&b"offer"[..]));
        assert_eq!(udp_to_client(&ipv4_udp(67, b"discover")), None, "our own request");
        let mut tcp = ipv4_udp(68, b"x");
        tcp[9] = 6;
        assert_eq!(udp_to_client(&tcp), None);
        assert_eq!(udp_to_client(&ipv4_udp(68, b"offer")[..30]), Some(&b"of"[..]), "cut short");
        assert_eq!(udp_to_client(&[0x45, 0, 0]), None);
    }
}
