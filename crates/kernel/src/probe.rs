//! Reachability probes from inside a namespace: ICMP echo (IPv4 and IPv6) over
//! raw sockets opened in that namespace, with a deadline and a bounded number
//! of requests. No `ping` binary.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage, recvfrom, sendto,
    socket,
};

use crate::error::{KernelError, Result};
use crate::netns::Netns;

static NEXT_ID: AtomicU16 = AtomicU16::new(0);

/// An ICMP echo prober bound to one namespace.
pub struct Pinger {
    v4: Option<OwnedFd>,
    v6: Option<OwnedFd>,
}

pub(crate) fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut pkt = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"nicslice-probe!!");
    if !v6 {
        // The kernel computes ICMPv6 checksums itself (it needs the pseudo-header).
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
    }
    pkt
}

/// Is this datagram the echo reply to (`id`, any seq) from `from`?
fn is_reply(v6: bool, buf: &[u8], id: u16) -> bool {
    let icmp = if v6 {
        buf
    } else {
        // IPv4 raw sockets deliver the IP header too.
        let ihl = usize::from(buf.first().map_or(0, |b| b & 0x0f)) * 4;
        if buf.len() < ihl + 8 {
            return false;
        }
        &buf[ihl..]
    };
    let reply_type = if v6 { 129 } else { 0 };
    icmp.len() >= 8 && icmp[0] == reply_type && u16::from_be_bytes([icmp[4], icmp[5]]) == id
}

impl Pinger {
    /// Opens the sockets inside `netns`; they keep acting there afterwards.
    pub fn open_in(netns: &Netns) -> Result<Pinger> {
        let _guard = netns.enter()?;
        let open = |family, proto| {
            socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, proto)
                .map_err(|e| KernelError::io("open ICMP socket", e.into()))
        };
        Ok(Pinger {
            v4: Some(open(AddressFamily::Inet, SockProtocol::Icmp)?),
            // IPv6 may be disabled in the namespace; IPv4 probing still works.
            v6: open(AddressFamily::Inet6, SockProtocol::IcmpV6).ok(),
        })
    }

    /// Sends up to `attempts` echo requests to `dst`, spread over `timeout`,
    /// and returns whether any reply came back from `dst`.
    pub fn ping(&self, dst: IpAddr, attempts: u16, timeout: Duration) -> Result<bool> {
        let v6 = dst.is_ipv6();
        let sock = if v6 { self.v6.as_ref() } else { self.v4.as_ref() };
        let Some(sock) = sock else {
            return Err(KernelError::Protocol {
                op: format!("ping {dst}"),
                detail: "IPv6 is disabled".into(),
            });
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() as u16);
        let target = SockaddrStorage::from(SocketAddr::new(dst, 0));
        let deadline = Instant::now() + timeout;
        let interval = timeout / u32::from(attempts.max(1));
        let mut buf = [0u8; 1500];
        for seq in 0..attempts.max(1) {
            match sendto(sock.as_raw_fd(), &echo_request(v6, id, seq), &target, MsgFlags::empty()) {
                Ok(_) => {}
                // No route, or the neighbour was found unreachable: that is a "no".
                Err(nix::errno::Errno::ENETUNREACH)
                | Err(nix::errno::Errno::EHOSTUNREACH)
                | Err(nix::errno::Errno::EACCES) => return Ok(false),
                Err(e) => {
                    return Err(KernelError::io(format!("send echo request to {dst}"), e.into()));
                }
            }
            let slot_end = (Instant::now() + interval).min(deadline);
            loop {
                let now = Instant::now();
                if now >= slot_end {
                    break;
                }
                let wait = PollTimeout::try_from(slot_end - now).unwrap_or(PollTimeout::MAX);
                let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, wait) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(KernelError::io("wait for echo reply", e.into())),
                }
                while let Ok((n, Some(from))) =
                    recvfrom::<SockaddrStorage>(sock.as_raw_fd(), &mut buf)
                {
                    let from_ip = from
                        .as_sockaddr_in()
                        .map(|a| IpAddr::V4(a.ip()))
                        .or_else(|| from.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())));
                    if from_ip == Some(dst) && is_reply(v6, &buf[..n], id) {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }
}

/// One-shot convenience: open a prober in `netns` and ping once.
pub fn ping(netns: &Netns, dst: IpAddr, attempts: u16, timeout: Duration) -> Result<bool> {
    Pinger::open_in(netns)?.ping(dst, attempts, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_checksum_of_a_known_packet() {
        // Echo request id 1 seq 1, no payload: checksum is 0xf7fd.
        let pkt = [8u8, 0, 0, 0, 0, 1, 0, 1];
        assert_eq!(checksum(&pkt), 0xf7fd);
        let req = echo_request(false, 1, 1);
        assert_eq!(checksum(&req), 0, "a packet with its checksum sums to zero");
    }

    #[test]
    fn reply_matching() {
        let mut reply = vec![0x45u8];
        reply.extend_from_slice(&[0; 19]);
        reply.extend_from_slice(&[0, 0, 0, 0, 0x12, 0x34, 0, 1]);
        assert!(is_reply(false, &reply, 0x1234));
        assert!(!is_reply(false, &reply, 0x1235));
        assert!(is_reply(true, &[129, 0, 0, 0, 0x12, 0x34, 0, 0], 0x1234));
        assert!(!is_reply(true, &[128, 0, 0, 0, 0x12, 0x34, 0, 0], 0x1234));
    }
}
