//! Neighbour probes from inside a namespace: an ARP request (IPv4, from an
//! `AF_PACKET` socket) or an NDP neighbour solicitation (IPv6, from a raw ICMPv6
//! socket) on the interface that carries a given address, asking for other
//! addresses, with a deadline and a bounded number of requests. Only answers that
//! the kernel's own ARP/ND code on that interface would take count. No `arping`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nicslice_model::MacAddr;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, LinkAddr, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn6,
    SockaddrStorage, bind, recvfrom, send, sendto, setsockopt, socket, sockopt,
};

use crate::error::{KernelError, Result};
use crate::netlink::RouteSocket;
use crate::netns::Netns;

pub(crate) const ETH_P_ARP: u16 = 0x0806;
/// sll_pkttype values arp_rcv drops: another host's frame, our own on the way out,
/// a looped-back one.
pub(crate) const PACKET_OTHERHOST: u8 = 3;
pub(crate) const PACKET_OUTGOING: u8 = 4;
pub(crate) const PACKET_LOOPBACK: u8 = 5;

/// Asks for neighbours from one interface of one namespace.
pub struct NeighbourProber {
    fd: OwnedFd,
    sender: IpAddr,
    mac: MacAddr,
    index: u32,
}

/// The frame of an ARP request "who has `target`? tell `sender`" from `mac`: a
/// gratuitous one with another target.
pub fn arp_request_frame(mac: MacAddr, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = crate::arp::gratuitous_arp_frame(mac, sender);
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// The sender of an ARP reply frame addressed to `sender` (the asker), if it is one.
fn arp_reply_from(frame: &[u8], sender: Ipv4Addr) -> Option<Ipv4Addr> {
    let arp = frame.get(14..42)?;
    let is_reply = frame[12..14] == ETH_P_ARP.to_be_bytes() && arp[..8] == [0, 1, 8, 0, 6, 4, 0, 2];
    let spa = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
    let tpa = Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]);
    (is_reply && tpa == sender).then_some(spa)
}

/// The ICMPv6 body of a neighbour solicitation for `target` with our MAC as the
/// source link-layer address option (the kernel fills in the checksum).
pub fn neighbour_solicitation(mac: MacAddr, target: Ipv6Addr) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]); // NS, code 0, checksum, reserved
    b.extend_from_slice(&target.octets());
    b.extend_from_slice(&[1, 1]); // option: source link-layer address, 8 bytes
    b.extend_from_slice(&mac.0);
    b
}

/// The target of a neighbour advertisement, if the ICMPv6 message is one.
pub(crate) fn advertised(icmp: &[u8]) -> Option<Ipv6Addr> {
    let target: [u8; 16] = icmp.get(8..24)?.try_into().ok()?;
    (icmp[0] == 136 && icmp[1] == 0).then_some(Ipv6Addr::from(target))
}

/// The target link-layer address (option 2) of a neighbour advertisement
/// for `target`: who claims it.
fn advertiser(icmp: &[u8], target: Ipv6Addr) -> Option<MacAddr> {
    if advertised(icmp)? != target {
        return None;
    }
    target_link_layer(icmp)
}

/// The target link-layer address option of a neighbour advertisement.
pub(crate) fn target_link_layer(icmp: &[u8]) -> Option<MacAddr> {
    let mut options = icmp.get(24..)?;
    while options.len() >= 8 {
        let len = usize::from(options[1]) * 8;
        if len == 0 || len > options.len() {
            return None;
        }
        if options[0] == 2 {
            return Some(MacAddr(options[2..8].try_into().ok()?));
        }
        options = &options[len..];
    }
    None
}

/// ff02::1:ffXX:XXXX, where a node listens for solicitations for `ip`.
pub(crate) fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

fn io(op: &str) -> impl FnOnce(Errno) -> KernelError + '_ {
    move |e| KernelError::io(op, e.into())
}

/// Binds packet socket `fd` to the frames of EtherType `protocol` on
/// interface `index`.
pub(crate) fn bind_packet(fd: &OwnedFd, index: u32, protocol: u16) -> Result<()> {
    // SAFETY: sockaddr_ll is plain old data; zeroed is a valid value.
    let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    (ll.sll_family, ll.sll_protocol) = (libc::AF_PACKET as u16, protocol.to_be());
    ll.sll_ifindex = index as i32;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `ll` is an initialised sockaddr_ll that outlives the call, `len` is
    // its size and `fd` an open socket.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), (&raw const ll).cast(), len) };
    if rc != 0 {
        return Err(KernelError::io("bind packet socket", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Classic BPF opcodes of the packet sockets' filters: load a half-word or a
/// byte at an absolute offset, jump if equal to a constant, return a constant.
pub(crate) const BPF_LDH: u32 = libc::BPF_LD | libc::BPF_H | libc::BPF_ABS;
pub(crate) const BPF_LDB: u32 = libc::BPF_LD | libc::BPF_B | libc::BPF_ABS;
pub(crate) const BPF_JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
pub(crate) const BPF_RET: u32 = libc::BPF_RET | libc::BPF_K;

/// One classic BPF instruction.
pub(crate) fn bpf(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt, jf, k }
}

/// Lets only the frames `program` accepts reach packet socket `fd`.
pub(crate) fn attach_filter(fd: &OwnedFd, program: &[libc::sock_filter]) -> Result<()> {
    let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
    // SAFETY: `prog` points at `program`, both alive for the call; the kernel
    // copies the program.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const prog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(KernelError::io("filter the neighbour probe's socket", e));
    }
    Ok(())
}

impl NeighbourProber {
    /// Opens a prober in `netns` on the interface that carries `sender`, asking
    /// as `sender`: ARP for IPv4, NDP for IPv6. `None` when no interface there
    /// has that address.
    pub fn open_in(netns: &Netns, sender: IpAddr) -> Result<Option<NeighbourProber>> {
        let mut sock = RouteSocket::open_in(netns)?;
        let Some((index, _)) = sock.addresses(None)?.into_iter().find(|(_, a)| a.addr() == sender)
        else {
            return Ok(None);
        };
        let Some(link) = sock.link_by_index(index)? else { return Ok(None) };
        let mac = link.mac.ok_or_else(|| KernelError::Protocol {
            op: format!("neighbour probe from {}", link.name),
            detail: "the interface has no MAC address".into(),
        })?;
        let _guard = netns.enter()?;
        let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
        let fd = match sender {
            IpAddr::V4(_) => {
                let fd = socket(AddressFamily::Packet, SockType::Raw, flags, None)
                    .map_err(io("open packet socket"))?;
                bind_packet(&fd, index, ETH_P_ARP)?;
                fd
            }
            IpAddr::V6(v6) => {
                let fd = socket(AddressFamily::Inet6, SockType::Raw, flags, SockProtocol::IcmpV6)
                    .map_err(io("open ICMPv6 socket"))?;
                setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(&link.name))
                    .map_err(io("bind to device"))?;
                // Neighbour discovery messages must carry hop limit 255 (RFC 4861).
                setsockopt(&fd, sockopt::Ipv6MulticastHops, &255).map_err(io("set hop limit"))?;
                let src = SockaddrIn6::from(SocketAddrV6::new(v6, 0, 0, index));
                bind(fd.as_raw_fd(), &src).map_err(io("bind solicitation source"))?;
                fd
            }
        };
        Ok(Some(NeighbourProber { fd, sender, mac, index }))
    }

    /// Lets only answers reach this prober's socket: ARP replies (a classic BPF
    /// filter on the packet socket), or neighbour advertisements (ICMPv6 filter).
    /// Many probers asking at once on one segment hear each other's broadcast
    /// requests; unfiltered, those fill a socket's buffer before its answer comes.
    pub fn only_answers(&self) -> Result<()> {
        if self.sender.is_ipv4() {
            // ldh [12]; jne ETH_P_ARP, drop; ldh [20]; jne 2 (reply), drop;
            // accept: ret 0xffff; drop: ret 0.
            return attach_filter(
                &self.fd,
                &[
                    bpf(BPF_LDH, 0, 0, 12),
                    bpf(BPF_JEQ, 0, 3, u32::from(ETH_P_ARP)),
                    bpf(BPF_LDH, 0, 0, 20),
                    bpf(BPF_JEQ, 0, 1, 2),
                    bpf(BPF_RET, 0, 0, 0xffff),
                    bpf(BPF_RET, 0, 0, 0),
                ],
            );
        }
        // struct icmp6_filter: a set bit blocks that ICMPv6 type; pass 136.
        let mut blocked = [u32::MAX; 8];
        blocked[136 / 32] &= !(1 << (136 % 32));
        const ICMPV6_FILTER: libc::c_int = 1;
        // SAFETY: `blocked` is the 32-byte filter, alive for the call.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::IPPROTO_ICMPV6,
                ICMPV6_FILTER,
                blocked.as_ptr().cast(),
                std::mem::size_of_val(&blocked) as libc::socklen_t,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(KernelError::io("filter the neighbour probe's socket", e));
        }
        Ok(())
    }

    /// The address the requests are sent from.
    pub fn sender(&self) -> IpAddr {
        self.sender
    }

    /// Asks for every target at once, again for those still unanswered, up to
    /// `attempts` times spread over `timeout`; returns which were answered (in the
    /// order given). Targets of the other family are never answered.
    pub fn ask(&self, targets: &[IpAddr], attempts: u16, timeout: Duration) -> Result<Vec<bool>> {
        let mut answered = vec![false; targets.len()];
        let deadline = Instant::now() + timeout;
        let interval = timeout / u32::from(attempts.max(1));
        let mut buf = [0u8; 1500];
        for _ in 0..attempts.max(1) {
            for (i, t) in targets.iter().enumerate() {
                if !answered[i] {
                    self.request(*t)?;
                }
            }
            let slot_end = (Instant::now() + interval).min(deadline);
            while !answered.iter().all(|a| *a) {
                let now = Instant::now();
                if now >= slot_end {
                    break;
                }
                let wait = PollTimeout::try_from(slot_end - now).unwrap_or(PollTimeout::MAX);
                let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, wait) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(KernelError::io("wait for neighbour replies", e.into())),
                }
                while let Some(from) = self.receive(&mut buf)? {
                    for (i, t) in targets.iter().enumerate() {
                        answered[i] |= *t == from;
                    }
                }
            }
            if answered.iter().all(|a| *a) {
                break;
            }
        }
        Ok(answered)
    }

    /// IPv6 probers: the MAC of another host that advertises `target`, an
    /// address this prober's interface holds itself (a conflict), asking
    /// `attempts` times over `timeout`. The solicitation is kept from this
    /// namespace's own stack (no multicast loop), whose answer would be ours.
    pub fn advertiser_of(
        &self,
        target: Ipv6Addr,
        attempts: u16,
        timeout: Duration,
    ) -> Result<Option<MacAddr>> {
        let off: libc::c_int = 0;
        // SAFETY: `off` is an int, alive for the call; `fd` an open socket.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_MULTICAST_LOOP,
                (&raw const off).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(KernelError::io("turn off multicast loop", e));
        }
        let deadline = Instant::now() + timeout;
        let interval = timeout / u32::from(attempts.max(1));
        let mut buf = [0u8; 1500];
        for _ in 0..attempts.max(1) {
            self.request(IpAddr::V6(target))?;
            let slot_end = (Instant::now() + interval).min(deadline);
            while let Some(wait) = slot_end.checked_duration_since(Instant::now()) {
                let wait = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
                let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, wait) {
                    Ok(0) => break,
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(KernelError::io("wait for advertisements", e.into())),
                }
                loop {
                    match recvfrom::<SockaddrStorage>(self.fd.as_raw_fd(), &mut buf) {
                        Ok((n, _)) => {
                            let by = advertiser(&buf[..n], target).filter(|m| *m != self.mac);
                            if by.is_some() {
                                return Ok(by);
                            }
                        }
                        Err(Errno::EAGAIN | Errno::ENETDOWN | Errno::ENXIO) => break,
                        Err(e) => {
                            return Err(KernelError::io("receive advertisement", e.into()));
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// Sends one request for `target`. A request the kernel refuses to send
    /// (interface down, no carrier) is one that goes unanswered, not an error.
    fn request(&self, target: IpAddr) -> Result<()> {
        let sent = match (self.sender, target) {
            (IpAddr::V4(s), IpAddr::V4(t)) => {
                send(self.fd.as_raw_fd(), &arp_request_frame(self.mac, s, t), MsgFlags::empty())
            }
            (IpAddr::V6(_), IpAddr::V6(t)) => {
                let dst = SockaddrIn6::from(SocketAddrV6::new(solicited_node(t), 0, 0, self.index));
                let body = neighbour_solicitation(self.mac, t);
                sendto(self.fd.as_raw_fd(), &body, &dst, MsgFlags::empty())
            }
            _ => return Ok(()),
        };
        match sent {
            Ok(_) | Err(Errno::ENETDOWN | Errno::ENXIO | Errno::ENOBUFS | Errno::ENETUNREACH) => {
                Ok(())
            }
            Err(e) => {
                Err(KernelError::io(format!("send neighbour request for {target}"), e.into()))
            }
        }
    }

    /// The next reply waiting on the socket: who answered. `Some(UNSPECIFIED)`
    /// for a datagram that is no answer to us.
    fn receive(&self, buf: &mut [u8]) -> Result<Option<IpAddr>> {
        let other = Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        match self.sender {
            IpAddr::V4(sender) => match recvfrom::<LinkAddr>(self.fd.as_raw_fd(), buf) {
                Ok((n, from)) => {
                    let dropped_by_arp = from.is_some_and(|l| {
                        matches!(l.pkttype(), PACKET_OTHERHOST | PACKET_OUTGOING | PACKET_LOOPBACK)
                    });
                    match arp_reply_from(&buf[..n], sender) {
                        Some(spa) if !dropped_by_arp => Ok(Some(spa.into())),
                        _ => Ok(other),
                    }
                }
                // A socket on a down interface reports ENETDOWN: nothing will come.
                Err(Errno::EAGAIN | Errno::ENETDOWN | Errno::ENXIO) => Ok(None),
                Err(e) => Err(KernelError::io("receive ARP reply", e.into())),
            },
            IpAddr::V6(_) => match recvfrom::<SockaddrStorage>(self.fd.as_raw_fd(), buf) {
                Ok((n, _)) => Ok(advertised(&buf[..n]).map(IpAddr::V6).or(other)),
                Err(Errno::EAGAIN | Errno::ENETDOWN | Errno::ENXIO) => Ok(None),
                Err(e) => Err(KernelError::io("receive neighbour advertisement", e.into())),
            },
        }
    }
}

/// Asks from many probers at once, each for its own targets, in one wait: `ask` on
/// every prober together, so a hundred namespaces cost one timeout, not a hundred.
/// Returns, per prober, which of its targets were answered (in the order given).
pub fn ask_all(
    asks: &[(&NeighbourProber, Vec<IpAddr>)],
    attempts: u16,
    timeout: Duration,
) -> Result<Vec<Vec<bool>>> {
    let mut answered: Vec<Vec<bool>> = asks.iter().map(|(_, t)| vec![false; t.len()]).collect();
    let all_done = |a: &[Vec<bool>]| a.iter().all(|v| v.iter().all(|x| *x));
    let deadline = Instant::now() + timeout;
    let interval = timeout / u32::from(attempts.max(1));
    let mut buf = [0u8; 1500];
    for _ in 0..attempts.max(1) {
        for ((prober, targets), done) in asks.iter().zip(&answered) {
            for (t, d) in targets.iter().zip(done) {
                if !d {
                    prober.request(*t)?;
                }
            }
        }
        let slot_end = (Instant::now() + interval).min(deadline);
        while !all_done(&answered) {
            let now = Instant::now();
            if now >= slot_end {
                break;
            }
            let wait = PollTimeout::try_from(slot_end - now).unwrap_or(PollTimeout::MAX);
            let mut fds: Vec<PollFd> =
                asks.iter().map(|(p, _)| PollFd::new(p.fd.as_fd(), PollFlags::POLLIN)).collect();
            match poll(&mut fds, wait) {
                Ok(0) => break,
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(KernelError::io("wait for neighbour replies", e.into())),
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
            drop(fds);
            for (i, (prober, targets)) in asks.iter().enumerate() {
                if !ready[i] {
                    continue;
                }
                while let Some(from) = prober.receive(&mut buf)? {
                    for (t, d) in targets.iter().zip(answered[i].iter_mut()) {
                        *d |= *t == from;
                    }
                }
            }
        }
        if all_done(&answered) {
            break;
        }
    }
    Ok(answered)
}

/// Closes many probers at once. Closing a packet socket waits for an RCU grace
/// period (10 to 20 ms); closed from several threads, the waits overlap instead of
/// adding up (400 probers: well under a second rather than several).
pub fn close_all(probers: Vec<NeighbourProber>) {
    const THREADS: usize = 32;
    let per = probers.len().div_ceil(THREADS).max(1);
    let mut chunks: Vec<Vec<NeighbourProber>> = Vec::new();
    let mut rest = probers;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().saturating_sub(per));
        chunks.push(tail);
    }
    std::thread::scope(|scope| {
        for chunk in chunks {
            // A thread that cannot start drops its closure, and the chunk with it,
            // here.
            let _ = std::thread::Builder::new().spawn_scoped(scope, move || drop(chunk));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    #[test]
    fn arp_request_and_reply_frames() {
        let (me, them) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let req = arp_request_frame(MAC, me, them);
        assert_eq!(req.len(), 42);
        assert_eq!(&req[..6], &[0xff; 6]);
        assert_eq!(&req[38..42], &them.octets());
        assert_eq!(arp_reply_from(&req, me), None, "a request is no reply");
        // The reply: swap the addresses, opcode 2.
        let mut reply = req.clone();
        reply[21] = 2;
        reply[28..32].copy_from_slice(&them.octets());
        reply[38..42].copy_from_slice(&me.octets());
        assert_eq!(arp_reply_from(&reply, me), Some(them));
        assert_eq!(arp_reply_from(&reply, them), None, "addressed to another asker");
        assert_eq!(arp_reply_from(&reply[..30], me), None);
    }

    #[test]
    fn solicitation_and_advertisement() {
        let target: Ipv6Addr = "fd00::1234:5678".parse().unwrap();
        assert_eq!(solicited_node(target), "ff02::1:ff34:5678".parse::<Ipv6Addr>().unwrap());
        let ns = neighbour_solicitation(MAC, target);
        assert_eq!((ns.len(), ns[0]), (32, 135));
        assert_eq!(advertised(&ns), None, "a solicitation is no advertisement");
        let mut na = ns.clone();
        na[0] = 136;
        assert_eq!(advertised(&na), Some(target));
        assert_eq!(advertiser(&na, target), None, "a source, not a target, link-layer option");
        na[24] = 2;
        assert_eq!(advertiser(&na, target), Some(MAC));
        assert_eq!(advertiser(&na, "fd00::1".parse().unwrap()), None, "another target");
    }
}
