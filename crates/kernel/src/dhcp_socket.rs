//! The socket a DHCPv4 client speaks through on one interface, opened inside
//! the interface's namespace: UDP port 68 bound to the device
//! (`SO_BINDTODEVICE`) with `SO_BROADCAST`, so it works before the interface
//! has an address. The kernel sends a limited broadcast out of the bound
//! device with source 0.0.0.0, and hands the socket the server's broadcast
//! answers (the client sets the broadcast flag: a child without an address
//! cannot take a unicast answer, and an ipvlan child shares its MAC).
//!
//! Only bytes go through here: the DHCP messages are the engine's.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

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
    ifname: String,
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
        bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &any)
            .map_err(|e| KernelError::io(what("bind port 68"), e.into()))?;
        Ok(DhcpSocket { socket: UdpSocket::from(fd), ifname: ifname.to_string() })
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

    /// Waits until every datagram sent has left the host (the socket's send
    /// queue, `SIOCOUTQ`, is empty), at most `limit`; false if it has not.
    /// A unicast message waits in the kernel for the server's ARP answer, and
    /// deleting the interface before that drops it.
    pub fn flushed(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let mut queued: libc::c_int = 0;
            // SAFETY: SIOCOUTQ writes one int through the pointer, which
            // points at a live c_int.
            let rc = unsafe {
                libc::ioctl(
                    std::os::fd::AsRawFd::as_raw_fd(&self.socket),
                    libc::TIOCOUTQ as _,
                    &mut queued,
                )
            };
            if rc < 0 || queued == 0 {
                return rc == 0;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
