//! Neighbour resolution on its own, as `nicslice lab` probes it: is an ARP request
//! (an NDP solicitation for IPv6) from one endpoint's interface for another
//! endpoint's address, on the same L2 segment and subnet, answered back to that
//! interface? Decided by the same frame rules (`l2.rs`) and resolution (`l3::arp`)
//! the echo walk uses, with cold caches; no routing, no forwarding.
//!
//! ipvlan l3/l3s children are NOARP: a request for one of their addresses goes
//! unanswered, and one they send is dropped (ipvlan_process_outbound passes only
//! IP; a sibling that gets it is NOARP too). Both count as "unanswered".

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::blame;
use super::error::TopologyError;
use super::l3::{self, Blocked, Phase, Stop};
use super::naming::name;
use super::rule::Rule;
use super::topology::{EndpointRef, Topology};
use super::world::{EpKind, EpView, StId, World};

/// The prediction for one ARP (IPv4) or NDP (IPv6) pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighbourPrediction {
    pub from: EndpointRef,
    pub to: EndpointRef,
    /// The asker's address on the shared subnet: the request's sender.
    pub sender: IpAddr,
    /// The address asked for.
    pub target: IpAddr,
    pub answered: bool,
    /// The rule that keeps the answer away, when unanswered.
    pub rule: Option<Rule>,
    /// One sentence: "answered by ns1" or "unanswered: ...".
    pub reason: String,
}

impl NeighbourPrediction {
    /// "arp" or "ndp".
    pub fn protocol(&self) -> &'static str {
        if self.target.is_ipv4() { "arp" } else { "ndp" }
    }
}

/// The ARP prediction for `from -> to`, or `None` when the two share no IPv4
/// subnet on one segment (then `from` would not ARP for `to` at all).
pub fn predict_arp(
    t: &Topology,
    from: &EndpointRef,
    to: &EndpointRef,
) -> Result<Option<NeighbourPrediction>, TopologyError> {
    let w = World::build(t)?;
    let (a, b) = (w.endpoint(&from.0)?, w.endpoint(&to.0)?);
    Ok(predict_in(&w, a, b, true))
}

/// Every ARP pair, then every NDP pair: ordered pairs of distinct endpoints where
/// the first has an address on a subnet holding the second's (first) address of
/// that family, on the same segment.
pub fn neighbour_pairs(t: &Topology) -> Result<Vec<NeighbourPrediction>, TopologyError> {
    let w = World::build(t)?;
    let mut out = Vec::new();
    for v4 in [true, false] {
        for a in &w.eps {
            for b in w.eps.iter().filter(|b| b.name != a.name) {
                out.extend(predict_in(&w, a, b, v4));
            }
        }
    }
    Ok(out)
}

/// The address of `ep` in the family a probe asks for, and the station holding it:
/// a host's parent first, then its shim.
fn target(w: &World, ep: &EpView, v4: bool) -> Option<(IpAddr, StId)> {
    let stations = match ep.kind {
        EpKind::Host(h) => vec![Some(w.hosts[h].parent), w.hosts[h].shim],
        _ => vec![Some(ep.st)],
    };
    stations.into_iter().flatten().find_map(|s| w.addr_on(s, v4).map(|a| (a, s)))
}

/// The interface of namespace `ns` with an address on a subnet holding `ip`.
fn asker(w: &World, ns: usize, ip: IpAddr) -> Option<(StId, IpAddr)> {
    w.nss[ns].stations.iter().find_map(|s| {
        let net = w.st(*s).addrs.iter().find(|a| {
            a.addr().is_ipv4() == ip.is_ipv4()
                && a.prefix_len() < a.max_prefix_len()
                && a.contains(&ip)
                && a.addr() != ip
        })?;
        Some((*s, net.addr()))
    })
}

fn predict_in(w: &World, a: &EpView, b: &EpView, v4: bool) -> Option<NeighbourPrediction> {
    let (target, owner) = target(w, b, v4)?;
    let (st, sender) = asker(w, a.ns, target)?;
    if w.st(st).seg != w.st(owner).seg || w.ns_owns(a.ns, target) {
        return None;
    }
    let (answered, rule, reason) = if w.l3_slave(st).is_some() {
        let body =
            format!("{} is an ipvlan l3/l3s child: NOARP, its requests go nowhere", name(w, st));
        (false, Some(Rule::IpvlanL3NoArp), format!("unanswered: {body}"))
    } else {
        let out = l3::arp(w, st, target, Some(sender));
        match out.answer {
            Some(s) => (true, None, format!("answered by {}", name(w, s))),
            None => {
                let stop = out.stop.unwrap_or(Stop::NoNeighbour { st, ip: target });
                let v = blame::blocked(w, Blocked { stop, phase: Phase::Request, dst: target });
                let body = v.reason.strip_prefix("blocked: ").unwrap_or(&v.reason);
                (false, Some(v.rule), format!("unanswered: {body}"))
            }
        }
    };
    Some(NeighbourPrediction {
        from: EndpointRef(a.name.clone()),
        to: EndpointRef(b.name.clone()),
        sender,
        target,
        answered,
        rule,
        reason,
    })
}
