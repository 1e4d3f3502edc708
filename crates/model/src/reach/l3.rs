//! The packet walker: one ICMP echo request from a namespace to an address and its
//! reply, hop by hop: route lookup, ARP with the neighbour entries the kernel learns
//! on the way (cold caches at the start), frame delivery from `l2`, forwarding in
//! routers, and ipvlan l3/l3s children that route through their parent's namespace.

use std::collections::HashMap;
use std::net::IpAddr;

use super::l2::{self, Drop, Hop};
use super::topology::IpvlanFlag;
use super::world::{NsId, StId, World};

/// Guards against routing loops.
const MAX_HOPS: usize = 16;

/// Something the probe went through, for naming the rule of a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Note {
    /// A frame from `from` arrived at `to` (data, not ARP).
    Frame { from: StId, to: StId, hop: Hop },
    /// Namespace `ns` forwarded the packet.
    Routed { ns: NsId },
    /// ipvlan l3 switched the packet from one child to another by address.
    IpvlanLocal { from: StId, to: StId },
    /// A frame for the parent's MAC went to child `to` of that host by address.
    ViaParent { to: StId },
}

/// Where and why the probe stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Frame {
        from: StId,
        to: StId,
        drop: Drop,
    },
    /// `owner` has the address but is NOARP (ipvlan l3/l3s): nobody answers `asker`.
    NoArp {
        asker: StId,
        owner: StId,
    },
    NoRoute {
        ns: NsId,
        dst: IpAddr,
    },
    NoNeighbour {
        st: StId,
        ip: IpAddr,
    },
    NotForwarding {
        ns: NsId,
    },
    Loop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Request,
    Reply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blocked {
    pub stop: Stop,
    pub phase: Phase,
    /// Where the packet of that phase was going: the target, or the reply's.
    pub dst: IpAddr,
}

struct Walk<'a> {
    w: &'a World,
    /// (interface, address) -> station whose MAC the neighbour entry holds.
    neigh: HashMap<(StId, IpAddr), StId>,
    notes: Vec<Note>,
}

/// An echo request from namespace `src` to `dst` and its reply.
pub(crate) fn ping(w: &World, src: NsId, dst: IpAddr) -> Result<Vec<Note>, Blocked> {
    let mut walk = Walk { w, neigh: HashMap::new(), notes: Vec::new() };
    let at = |phase, dst| move |stop| Blocked { stop, phase, dst };
    let src_ip = source_addr(w, src, dst).ok_or(Blocked {
        stop: Stop::NoRoute { ns: src, dst },
        phase: Phase::Request,
        dst,
    })?;
    let far = walk.send(src, src_ip, dst).map_err(at(Phase::Request, dst))?;
    let back = walk.send(far, dst, src_ip).map_err(at(Phase::Reply, src_ip))?;
    if back != src {
        let stop = Stop::NotForwarding { ns: back };
        return Err(Blocked { stop, phase: Phase::Reply, dst: src_ip });
    }
    Ok(walk.notes)
}

/// The source address the kernel picks: the first address of the outgoing interface
/// in the family, else any address of the namespace.
fn source_addr(w: &World, ns: NsId, dst: IpAddr) -> Option<IpAddr> {
    if w.ns_owns(ns, dst) {
        return Some(dst);
    }
    let v4 = dst.is_ipv4();
    let r = w.lookup(ns, dst, None)?;
    w.addr_on(r.st, v4).or_else(|| w.any_addr(ns, v4))
}

impl Walk<'_> {
    /// Carries a packet from `ns` to the namespace owning `dst`.
    fn send(&mut self, mut ns: NsId, src_ip: IpAddr, dst: IpAddr) -> Result<NsId, Stop> {
        let w = self.w;
        let v4 = dst.is_ipv4();
        for hop in 0..MAX_HOPS {
            w.step();
            if w.ns_owns(ns, dst) {
                return Ok(ns);
            }
            if hop > 0 {
                if !w.nss[ns].forwarding {
                    return Err(Stop::NotForwarding { ns });
                }
                self.notes.push(Note::Routed { ns });
            }
            let route = w.lookup(ns, dst, None).ok_or(Stop::NoRoute { ns, dst })?;
            let (out, via) = (route.st, route.via);
            // With VEPA, a sibling's address: the packet leaves through the parent.
            let mut vepa: Option<(usize, StId)> = None;
            let (egress, next, arp_src) = match w.l3_slave(out) {
                None => {
                    let local = w.ns_owns(ns, src_ip);
                    let arp_src = if local { Some(src_ip) } else { w.addr_on(out, v4) };
                    (out, via.unwrap_or(dst), arp_src.or_else(|| w.any_addr(ns, v4)))
                }
                Some((h, flag)) => {
                    // ipvlan_xmit_mode_l3: another child's address is delivered
                    // locally (dropped with PRIVATE, skipped with VEPA) ...
                    if flag != IpvlanFlag::Vepa
                        && let Some(c) = w.slave_with(h, Some(dst))
                    {
                        if flag == IpvlanFlag::Private {
                            let drop = Drop::IpvlanPrivate { host: h };
                            return Err(Stop::Frame { from: out, to: c, drop });
                        }
                        self.notes.push(Note::IpvlanLocal { from: out, to: c });
                        ns = w.st(c).ns;
                        continue;
                    }
                    // ... anything else is routed in the parent's namespace, out of
                    // the parent (ipvlan_process_v4_outbound, oif = parent): a local
                    // address there is delivered (RTN_LOCAL), no route at all means
                    // on link for IPv4. The parent ARPs with its own address. A
                    // sibling's address (VEPA) comes back only from a router that
                    // routes it via the host: on link, the sibling is NOARP.
                    if flag == IpvlanFlag::Vepa {
                        vepa = w.slave_with(h, Some(dst)).map(|c| (h, c));
                    }
                    let parent = w.hosts[h].parent;
                    if let Some(host) = w.down_host(parent) {
                        return Err(Stop::Frame {
                            from: out,
                            to: parent,
                            drop: Drop::Down { host },
                        });
                    }
                    let pns = w.st(parent).ns;
                    if w.ns_owns(pns, dst) {
                        return Ok(pns);
                    }
                    let r = w.lookup(pns, dst, Some(parent));
                    if r.is_none() && !v4 {
                        return Err(vepa_stop(out, vepa, Stop::NoRoute { ns: pns, dst }));
                    }
                    let next = r.and_then(|r| r.via).unwrap_or(dst);
                    (parent, next, w.addr_on(parent, v4).or_else(|| w.any_addr(pns, v4)))
                }
            };
            let nb = self.resolve(egress, next, arp_src).map_err(|s| vepa_stop(out, vepa, s))?;
            let (rx, hop) = l2::ucast(w, egress, nb, Some(dst)).map_err(|drop| Stop::Frame {
                from: egress,
                to: nb,
                drop,
            })?;
            self.notes.push(Note::Frame { from: egress, to: rx, hop });
            if rx != nb {
                self.notes.push(Note::ViaParent { to: rx });
            }
            ns = w.st(rx).ns;
        }
        Err(Stop::Loop)
    }

    /// ARP (or ND) on interface `st` for `ip`, asking as `arp_src`, unless the
    /// neighbour entry is already known; the stations that heard it learn the asker.
    fn resolve(&mut self, st: StId, ip: IpAddr, arp_src: Option<IpAddr>) -> Result<StId, Stop> {
        if let Some(n) = self.neigh.get(&(st, ip)) {
            return Ok(*n);
        }
        let out = arp(self.w, st, ip, arp_src);
        if let Some(a) = arp_src {
            for s in &out.learned {
                self.neigh.insert((*s, a), st);
            }
        }
        match out.answer {
            Some(s) => {
                self.neigh.insert((st, ip), s);
                Ok(s)
            }
            None => Err(out.stop.unwrap_or(Stop::NoNeighbour { st, ip })),
        }
    }
}

/// A VEPA sibling's packet that the parent's routing could not bring back: the
/// sibling being NOARP, or no route, is the vepa flag's doing.
fn vepa_stop(from: StId, vepa: Option<(usize, StId)>, stop: Stop) -> Stop {
    match vepa {
        Some((host, to))
            if matches!(stop, Stop::NoRoute { .. })
                || matches!(stop, Stop::NoArp { owner, .. } if owner == to) =>
        {
            Stop::Frame { from, to, drop: Drop::IpvlanVepaL3 { host } }
        }
        _ => stop,
    }
}

/// What one ARP request (or ND solicitation) does.
pub(crate) struct Arp {
    /// The station whose reply reaches the asker first.
    pub answer: Option<StId>,
    /// Stations that heard the request for their address (and learn the asker).
    pub learned: Vec<StId>,
    /// Why the first candidate that failed did not answer.
    pub stop: Option<Stop>,
}

/// ARP (or ND) on interface `st` for `ip`, asking as `arp_src`, with cold caches:
/// every station that hears the request and owns `ip` answers (ARP with
/// arp_ignore 0: any address of its namespace; ND only for an address on the
/// interface itself, the kernel's ndisc_recv_ns); the first reply to arrive wins.
pub(crate) fn arp(w: &World, st: StId, ip: IpAddr, arp_src: Option<IpAddr>) -> Arp {
    let me = w.st(st);
    // Those who hear it and own `ip`: the interfaces of the namespace that has it.
    let owner_ns = w.owner_of(ip).map(|o| w.st(o).ns);
    let mut cands: Vec<StId> = owner_ns
        .map_or(&[][..], |ns| &w.nss[ns].stations)
        .iter()
        .copied()
        .filter(|s| *s != st && w.st(*s).seg == me.seg && w.st(*s).ns != me.ns)
        .filter(|s| ip.is_ipv4() || w.has_addr(*s, ip))
        .collect();
    // The interface that carries the address first: its failure is the one to report.
    cands.sort_by_key(|s| !w.has_addr(*s, ip));
    let mut best: Option<(u8, StId)> = None;
    let mut out = Arp { answer: None, learned: Vec::new(), stop: None };
    for s in cands {
        w.step();
        if w.l3_slave(s).is_some() {
            out.stop.get_or_insert(Stop::NoArp { asker: st, owner: s });
            continue;
        }
        if let Err(drop) = l2::bcast(w, st, s, Some(ip)) {
            out.stop.get_or_insert(Stop::Frame { from: st, to: s, drop });
            continue;
        }
        out.learned.push(s);
        match l2::ucast(w, s, st, arp_src) {
            Ok((rx, hop)) if rx == st => {
                if best.is_none_or(|(c, _)| hop.cost() < c) {
                    best = Some((hop.cost(), s));
                }
            }
            Ok(_) | Err(Drop::Elsewhere) => {
                out.stop.get_or_insert(Stop::NoNeighbour { st, ip });
            }
            Err(drop) => {
                out.stop.get_or_insert(Stop::Frame { from: s, to: st, drop });
            }
        }
    }
    out.answer = best.map(|(_, s)| s);
    out
}
