//! Claiming an address on the wire before using it (RFC 5227 for IPv4, the
//! kernel's own DAD for IPv6), for networks that probe for conflicts.
//!
//! IPv4: an [`AddressProbe`] is a packet socket on the new link (up, still
//! without addresses) that sends "who has X? tell 0.0.0.0" probes and reports
//! the MAC of anyone that answers for X, announces X, or probes for X itself.
//! The sender address 0.0.0.0 keeps the probe from touching any neighbour's
//! ARP cache. IPv6: the address is added without `NODAD`, the link's DAD is
//! tuned to one solicitation sent at once and judged after the probe timeout,
//! and [`RouteSocket::dad_state`] reads the outcome back.
//!
//! Where no new link is at hand (the fleet pool asking from the parent
//! whether a dead host's addresses are still in use), the same
//! [`AddressProbe`] asks for IPv6 addresses too, with solicitations in DAD
//! form from a packet socket ([`crate::ndp_frame`]), and reports the MAC an
//! advertisement gives.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use nicslice_model::MacAddr;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::socket;
use nix::sys::socket::{AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, recvfrom, send};

use crate::addr::address_message;
use crate::error::{KernelError, Result};
use crate::ndp_frame::{ADVERTISEMENT, ETH_P_IPV6, ICMP_AT, advertisement, dad_solicitation_frame};
use crate::neighbour_probe::{
    BPF_JEQ, BPF_LDB, BPF_LDH, BPF_RET, ETH_P_ARP, PACKET_LOOPBACK, PACKET_OUTGOING,
    arp_request_frame, attach_filter, bind_packet, bpf,
};
use crate::netlink::{CREATE_EXCL, RouteSocket};
use crate::netns::Netns;
use crate::sysctl;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};

/// Asks "is anyone using this address?" from one interface, as a host
/// about to take it would: for IPv4, RFC 5227 probes on a packet socket
/// bound to ARP; for IPv6, neighbour solicitations in DAD form on one bound
/// to IPv6 and filtered to advertisements ([`crate::ndp_frame`]). Neither
/// needs an address on the interface, nor changes a neighbour's cache.
pub struct AddressProbe {
    /// `Some` until dropped, for the families asked; see [`Drop`].
    arp: Option<OwnedFd>,
    ndp: Option<OwnedFd>,
    mac: MacAddr,
}

/// The frame of an RFC 5227 probe for `target` from `mac`: an ARP request
/// with sender address 0.0.0.0.
pub fn arp_probe_frame(mac: MacAddr, target: Ipv4Addr) -> Vec<u8> {
    arp_request_frame(mac, Ipv4Addr::UNSPECIFIED, target)
}

/// Who, in this frame, claims `target`: the sender of an ARP reply or request
/// from `target` (an answer, or its owner's own announcement), or another
/// host probing for `target` at the same time (RFC 5227, 2.1.1). Frames from
/// `ours` are our own.
pub fn claimant(frame: &[u8], target: Ipv4Addr, ours: MacAddr) -> Option<MacAddr> {
    let arp = frame.get(14..42)?;
    if frame[12..14] != ETH_P_ARP.to_be_bytes() || arp[..6] != [0, 1, 8, 0, 6, 4] {
        return None;
    }
    let op = u16::from_be_bytes([arp[6], arp[7]]);
    let sha = MacAddr(arp[8..14].try_into().ok()?);
    let spa = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
    let tpa = Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]);
    if sha == ours || !(op == 1 || op == 2) {
        return None;
    }
    let answers = spa == target;
    let probes_too = op == 1 && spa.is_unspecified() && tpa == target;
    (answers || probes_too).then_some(sha)
}

/// ff02::1, where the answers to a DAD-form solicitation go, as a MAC.
const ALL_NODES: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// Opens the IPv6 socket of an [`AddressProbe`] on interface `index`: only
/// neighbour advertisements pass its filter (a busy parent carries much
/// IPv6 besides), and it joins the all-nodes group, where they are sent,
/// in case the interface itself does not listen there (IPv6 off on it).
fn open_ndp(index: u32) -> Result<OwnedFd> {
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    let fd = socket(AddressFamily::Packet, SockType::Raw, flags, None)
        .map_err(|e| KernelError::io("open packet socket", e.into()))?;
    bind_packet(&fd, index, ETH_P_IPV6)?;
    // ldh [12]; jne IPv6; ldb [20]; jne ICMPv6; ldb [54]; jne NA; accept.
    attach_filter(
        &fd,
        &[
            bpf(BPF_LDH, 0, 0, 12),
            bpf(BPF_JEQ, 0, 5, u32::from(ETH_P_IPV6)),
            bpf(BPF_LDB, 0, 0, 20),
            bpf(BPF_JEQ, 0, 3, 58),
            bpf(BPF_LDB, 0, 0, ICMP_AT as u32),
            bpf(BPF_JEQ, 0, 1, u32::from(ADVERTISEMENT)),
            bpf(BPF_RET, 0, 0, 0xffff),
            bpf(BPF_RET, 0, 0, 0),
        ],
    )?;
    let mut address = [0u8; 8];
    address[..6].copy_from_slice(&ALL_NODES);
    let mreq = libc::packet_mreq {
        mr_ifindex: index as libc::c_int,
        mr_type: libc::PACKET_MR_MULTICAST as libc::c_ushort,
        mr_alen: 6,
        mr_address: address,
    };
    // SAFETY: `mreq` is an initialised packet_mreq alive for the call; the
    // membership goes with the socket.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&raw const mreq).cast(),
            std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(KernelError::io("join the all-nodes group", e));
    }
    Ok(fd)
}

impl AddressProbe {
    /// An IPv4 probe from interface `index` of `netns`, whose MAC is `mac`.
    /// The interface must be up for the probes to leave.
    pub fn open_in(netns: &Netns, index: u32, mac: MacAddr) -> Result<AddressProbe> {
        Self::open(netns, index, mac, true, false)
    }

    /// A probe from interface `index` of `netns` (MAC `mac`) for the
    /// families of `targets`.
    pub fn open_for(
        netns: &Netns,
        index: u32,
        mac: MacAddr,
        targets: &[IpAddr],
    ) -> Result<AddressProbe> {
        let (v4, v6) = (targets.iter().any(IpAddr::is_ipv4), targets.iter().any(IpAddr::is_ipv6));
        Self::open(netns, index, mac, v4, v6)
    }

    fn open(netns: &Netns, index: u32, mac: MacAddr, v4: bool, v6: bool) -> Result<AddressProbe> {
        let _guard = netns.enter()?;
        let mut probe = AddressProbe { arp: None, ndp: None, mac };
        if v4 {
            let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
            let fd = socket(AddressFamily::Packet, SockType::Raw, flags, None)
                .map_err(|e| KernelError::io("open packet socket", e.into()))?;
            bind_packet(&fd, index, ETH_P_ARP)?;
            probe.arp = Some(fd);
        }
        if v6 {
            probe.ndp = Some(open_ndp(index)?);
        }
        Ok(probe)
    }

    /// The socket that asks for `target`'s family.
    fn fd(&self, target: IpAddr) -> Result<&OwnedFd> {
        let fd = if target.is_ipv4() { &self.arp } else { &self.ndp };
        fd.as_ref().ok_or_else(|| KernelError::Protocol {
            op: format!("probe {target}"),
            detail: "the probe was not opened for its address family".into(),
        })
    }

    /// Sends `probes` probes for `target` spread over `timeout` and waits
    /// until it ends; returns the MAC of the first claimant, at once.
    pub fn probe(
        &self,
        target: Ipv4Addr,
        probes: u32,
        timeout: Duration,
    ) -> Result<Option<MacAddr>> {
        Ok(self.probe_many(&[target.into()], probes, timeout)?.remove(&target.into()))
    }

    /// [`probe`](Self::probe) of many addresses of both families at once:
    /// `probes` probes for each spread over `timeout` (probe k at k/probes
    /// of it), then the claimants heard, by address (the first for each);
    /// it ends at once when every address was claimed. An IPv6 address is
    /// claimed by any neighbour advertisement for it. Used to ask whether
    /// anyone still uses the addresses of a host that is gone.
    pub fn probe_many(
        &self,
        targets: &[IpAddr],
        probes: u32,
        timeout: Duration,
    ) -> Result<BTreeMap<IpAddr, MacAddr>> {
        let start = Instant::now();
        let deadline = start + timeout;
        let probes = probes.max(1);
        let mut sent = 0;
        let mut heard = BTreeMap::new();
        let mut buf = [0u8; 1514];
        let sockets: Vec<&OwnedFd> = self.arp.iter().chain(&self.ndp).collect();
        loop {
            let now = Instant::now();
            if sent < probes && now >= start + timeout * sent / probes {
                for &target in targets.iter().filter(|t| !heard.contains_key(*t)) {
                    let frame = match target {
                        IpAddr::V4(ip) => arp_probe_frame(self.mac, ip),
                        IpAddr::V6(ip) => dad_solicitation_frame(self.mac, ip),
                    };
                    send_frame(self.fd(target)?, &frame, target)?;
                }
                sent += 1;
                continue;
            }
            if now >= deadline || heard.len() == targets.len() {
                return Ok(heard);
            }
            let next = if sent < probes { start + timeout * sent / probes } else { deadline };
            let wait = PollTimeout::try_from(next.saturating_duration_since(now))
                .unwrap_or(PollTimeout::MAX);
            let mut fds: Vec<PollFd> =
                sockets.iter().map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
            match poll(&mut fds, wait) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(KernelError::io("wait for probe answers", e.into())),
            }
            if let Some(arp) = &self.arp {
                while let Some(n) = receive(arp, &mut buf)? {
                    let Some(frame) = n.map(|n| &buf[..n]) else { continue };
                    for &target in targets {
                        let IpAddr::V4(ip) = target else { continue };
                        if let Some(mac) = claimant(frame, ip, self.mac) {
                            heard.entry(target).or_insert(mac);
                        }
                    }
                }
            }
            if let Some(ndp) = &self.ndp {
                while let Some(n) = receive(ndp, &mut buf)? {
                    let Some((ip, mac)) = n.and_then(|n| advertisement(&buf[..n])) else {
                        continue;
                    };
                    if mac != self.mac && targets.contains(&IpAddr::V6(ip)) {
                        heard.entry(IpAddr::V6(ip)).or_insert(mac);
                    }
                }
            }
        }
    }

    /// Announces `ip` as ours (RFC 5227 announcement: a gratuitous request),
    /// once it is on the interface: the probe kept the link up, so the
    /// kernel's own `arp_notify`, which fires on up, will not.
    pub fn announce(&self, ip: Ipv4Addr) -> Result<()> {
        let frame = crate::arp::gratuitous_arp_frame(self.mac, ip);
        send_frame(self.fd(ip.into())?, &frame, ip.into())
    }
}

fn send_frame(fd: &OwnedFd, frame: &[u8], target: IpAddr) -> Result<()> {
    send(fd.as_raw_fd(), frame, MsgFlags::empty())
        .map(drop)
        .map_err(|e| KernelError::io(format!("send a probe for {target}"), e.into()))
}

/// The next frame waiting on `fd`: `Some(Some(len))` for one another host
/// sent, `Some(None)` for our own outgoing one, `None` when nothing waits.
fn receive(fd: &OwnedFd, buf: &mut [u8]) -> Result<Option<Option<usize>>> {
    match recvfrom::<LinkAddr>(fd.as_raw_fd(), buf) {
        Ok((n, from)) => {
            let ours =
                from.is_some_and(|l| matches!(l.pkttype(), PACKET_OUTGOING | PACKET_LOOPBACK));
            Ok(Some((!ours).then_some(n)))
        }
        Err(Errno::EAGAIN | Errno::ENETDOWN | Errno::ENXIO) => Ok(None),
        Err(e) => Err(KernelError::io("receive a probe's answer", e.into())),
    }
}

impl Drop for AddressProbe {
    /// A packet socket's close waits out an RCU grace period (about 10 ms
    /// measured here, more on a busy machine): close them on a thread of
    /// their own so the caller's next steps overlap the wait.
    fn drop(&mut self) {
        let fds = (self.arp.take(), self.ndp.take());
        if fds.0.is_some() || fds.1.is_some() {
            let closer = std::thread::Builder::new().name("address-probe-close".into());
            if let Err(e) = closer.spawn(move || drop(fds)) {
                tracing::debug!("closing the address probe's sockets inline: {e}");
            }
        }
    }
}

/// What the kernel's own resolution of an address found so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Probes still going out.
    Waiting,
    /// Someone answered, from this MAC.
    Answered(MacAddr),
    /// Every probe went unanswered.
    Unanswered,
}

/// Sets how the kernel resolves IPv4 neighbours on `ifname` in `netns`:
/// `probes` requests `interval` apart (`mcast_solicit`, `retrans_time_ms`).
/// Returns the previous setting, for [`restore_arp`].
pub fn tune_arp(
    netns: &Netns,
    ifname: &str,
    probes: u32,
    interval: Duration,
) -> Result<(String, String)> {
    let ms = interval.as_millis().max(1).to_string();
    netns.run(|| -> Result<(String, String)> {
        let neigh = format!("net/ipv4/neigh/{ifname}");
        let previous = (
            sysctl::read(&format!("{neigh}/mcast_solicit"))?,
            sysctl::read(&format!("{neigh}/retrans_time_ms"))?,
        );
        sysctl::write(&format!("{neigh}/mcast_solicit"), &probes.to_string())?;
        sysctl::write(&format!("{neigh}/retrans_time_ms"), &ms)?;
        Ok(previous)
    })?
}

/// Puts back what [`tune_arp`] returned.
pub fn restore_arp(netns: &Netns, ifname: &str, previous: &(String, String)) -> Result<()> {
    netns.run(|| -> Result<()> {
        let neigh = format!("net/ipv4/neigh/{ifname}");
        sysctl::write(&format!("{neigh}/mcast_solicit"), &previous.0)?;
        sysctl::write(&format!("{neigh}/retrans_time_ms"), &previous.1)
    })?
}

fn neighbour_message(index: u32, target: Ipv4Addr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = netlink_packet_route::AddressFamily::Inet;
    msg.header.ifindex = index;
    msg.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Inet(target)));
    msg
}

impl RouteSocket {
    /// Has the kernel resolve `target` on interface `index` now (a
    /// neighbour entry with `NTF_USE`): it sends the requests itself, as
    /// [`tune_arp`] set, from the interface's own IPv4 address, or, when
    /// the namespace has none, from 0.0.0.0: an RFC 5227 probe, with no
    /// packet socket (whose close waits out an RCU grace period).
    pub fn solicit(&mut self, index: u32, target: Ipv4Addr) -> Result<()> {
        let mut msg = neighbour_message(index, target);
        msg.header.flags = NeighbourFlags::Use;
        self.execute(
            &format!("resolve {target}"),
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Where the resolution [`solicit`](Self::solicit) started stands.
    pub fn resolution(&mut self, index: u32, target: Ipv4Addr) -> Result<Resolution> {
        let op = format!("look up neighbour {target}");
        let reply = match self
            .get(&op, RouteNetlinkMessage::GetNeighbour(neighbour_message(index, target)))
        {
            Ok(reply) => reply,
            Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(Resolution::Unanswered),
            Err(e) => return Err(e),
        };
        let RouteNetlinkMessage::NewNeighbour(msg) = reply else {
            return Err(KernelError::Protocol { op, detail: "not a neighbour".into() });
        };
        let mac = msg.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLayerAddress(l) => <[u8; 6]>::try_from(l.as_slice()).ok(),
            _ => None,
        });
        Ok(match (msg.header.state, mac) {
            (NeighbourState::Incomplete | NeighbourState::None, _) => Resolution::Waiting,
            (NeighbourState::Failed, _) | (_, None) => Resolution::Unanswered,
            (_, Some(mac)) => Resolution::Answered(MacAddr(mac)),
        })
    }

    /// Deletes the neighbour entry of `target` on `index`, if there is one.
    pub fn forget_neighbour(&mut self, index: u32, target: Ipv4Addr) -> Result<()> {
        let msg = neighbour_message(index, target);
        match self.execute(
            &format!("forget neighbour {target}"),
            RouteNetlinkMessage::DelNeighbour(msg),
            0,
        ) {
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }
}

/// Where the kernel's duplicate address detection stands for an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dad {
    /// Still being checked.
    Tentative,
    /// No one answered: the address is usable.
    Done,
    /// Someone on the link already uses it.
    Failed,
}

/// Tunes IPv6 DAD on `ifname` in `netns` so that it is judged `timeout` after
/// the address is added on the up link: DAD on (whatever the namespace's
/// default), one solicitation, sent with no random delay, answers awaited for
/// `timeout` (the neighbour table's retransmit time, which DAD uses).
/// Returns the retransmit time it replaced, for [`restore_dad`].
pub fn tune_dad(netns: &Netns, ifname: &str, timeout: Duration) -> Result<String> {
    let ms = timeout.as_millis().max(1).to_string();
    netns.run(|| -> Result<String> {
        let conf = format!("net/ipv6/conf/{ifname}");
        let retrans = format!("net/ipv6/neigh/{ifname}/retrans_time_ms");
        let previous = sysctl::read(&retrans)?;
        sysctl::write(&format!("{conf}/accept_dad"), "1")?;
        sysctl::write(&format!("{conf}/dad_transmits"), "1")?;
        sysctl::write(&format!("{conf}/router_solicitation_delay"), "0")?;
        // An unsolicited NA once DAD has passed, as `ndisc_notify` gives
        // addresses added without DAD.
        sysctl::write(&format!("{conf}/ndisc_notify"), "1")?;
        sysctl::write(&retrans, &ms)?;
        Ok(previous)
    })?
}

/// Puts back the retransmit time [`tune_dad`] replaced, once DAD is judged:
/// neighbour discovery on the link then retries at its usual pace.
pub fn restore_dad(netns: &Netns, ifname: &str, previous: &str) -> Result<()> {
    netns.run(|| sysctl::write(&format!("net/ipv6/neigh/{ifname}/retrans_time_ms"), previous))?
}

impl RouteSocket {
    /// Adds an address; an IPv6 one goes through duplicate address
    /// detection (no `NODAD`) and is tentative until it is judged.
    pub fn add_address_with_dad(&mut self, index: u32, addr: IpNet) -> Result<()> {
        self.execute(
            &format!("add address {addr}"),
            RouteNetlinkMessage::NewAddress(address_message(index, addr)),
            CREATE_EXCL,
        )
    }

    /// The DAD state of `ip` on interface `index`; `None` when it is not there.
    pub fn dad_state(&mut self, index: u32, ip: IpAddr) -> Result<Option<Dad>> {
        let parts = self
            .dump("list addresses", RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
        for part in parts {
            let RouteNetlinkMessage::NewAddress(msg) = part else { continue };
            if msg.header.index != index {
                continue;
            }
            let mut flags = AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits()));
            let mut matches = false;
            for a in &msg.attributes {
                match a {
                    AddressAttribute::Flags(f) => flags |= *f,
                    AddressAttribute::Address(a) | AddressAttribute::Local(a) => {
                        matches |= *a == ip;
                    }
                    _ => {}
                }
            }
            if !matches {
                continue;
            }
            return Ok(Some(if flags.contains(AddressFlags::Dadfailed) {
                Dad::Failed
            } else if flags.contains(AddressFlags::Tentative) {
                Dad::Tentative
            } else {
                Dad::Done
            }));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const THEIRS: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn frame(op: u8, sha: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
        let mut f = arp_request_frame(sha, spa, tpa);
        f[21] = op;
        f
    }

    #[test]
    fn probe_frame_has_sender_zero() {
        let target = Ipv4Addr::new(192, 168, 0, 50);
        let f = arp_probe_frame(OURS, target);
        assert_eq!(f.len(), 42);
        assert_eq!(&f[22..28], &OURS.0, "sender MAC");
        assert_eq!(&f[28..32], &[0, 0, 0, 0], "sender IP");
        assert_eq!(&f[32..38], &[0; 6], "target MAC");
        assert_eq!(&f[38..42], &target.octets());
        assert_eq!(claimant(&f, target, OURS), None, "our own probe is no conflict");
    }

    #[test]
    fn claimants() {
        let target = Ipv4Addr::new(192, 168, 0, 50);
        let other = Ipv4Addr::new(192, 168, 0, 51);
        let zero = Ipv4Addr::UNSPECIFIED;
        // The owner's reply to our probe: to 0.0.0.0.
        assert_eq!(claimant(&frame(2, THEIRS, target, zero), target, OURS), Some(THEIRS));
        // Its own request or announcement.
        assert_eq!(claimant(&frame(1, THEIRS, target, other), target, OURS), Some(THEIRS));
        // Another host probing for the same address.
        assert_eq!(claimant(&frame(1, THEIRS, zero, target), target, OURS), Some(THEIRS));
        // Unrelated traffic.
        assert_eq!(claimant(&frame(1, THEIRS, other, target), target, OURS), None);
        assert_eq!(claimant(&frame(2, THEIRS, other, zero), target, OURS), None);
        assert_eq!(claimant(&frame(3, THEIRS, target, zero), target, OURS), None);
        assert_eq!(claimant(&frame(2, THEIRS, target, zero)[..30], target, OURS), None);
    }
}
