//! What a verdict takes for granted beyond the topology ([`Beyond`]): a next hop (a
//! gateway) that no endpoint of it carries. A topology file describes the whole world, so there
//! nothing answers for it; the live state describes only nicslice's own namespaces,
//! so the CLI probes that next hop from the asking endpoint and [`Verdict::seen`]
//! words the verdict by what the probe saw. Pure: the probing is the engine's.

use std::net::IpAddr;

use ipnet::IpNet;

use super::naming::{make, name, ns_name};
use super::rule::{Beyond, Rule, Seen, Sighting, Verdict};
use super::topology::EndpointRef;
use super::world::{StId, World};

/// The [`Beyond`] of a walk stopped on interface `st` with no answer for `ip`, when
/// no station of the world carries `ip`; `dst` is where the packet was going.
pub(crate) fn next_hop(w: &World, st: StId, ip: IpAddr, dst: IpAddr) -> Option<Beyond> {
    if w.owner_of(ip).is_some() || ip == dst {
        return None;
    }
    let station = w.st(st);
    let destination = w.owner_of(dst).and_then(|o| w.st(o).addrs.iter().find(|a| a.addr() == dst));
    let destination = destination.map_or_else(|| IpNet::from(dst), IpNet::trunc);
    Some(Beyond {
        asker: EndpointRef(ns_name(w, station.ns).to_string()),
        sender: w.addr_on(st, ip.is_ipv4()).or_else(|| w.any_addr(station.ns, ip.is_ipv4())),
        interface: name(w, st).to_string(),
        next_hop: ip,
        destination,
        seen: None,
        asked_from: None,
    })
}

impl Verdict {
    /// This verdict, worded by what a probe for its next hop saw: an answer leaves
    /// the outcome to what the next hop routes, which nicslice cannot see (the
    /// verdict stays blocked, unconfirmed); silence confirms that nothing answers.
    /// A verdict that rests on no next hop outside the topology is returned as is.
    pub fn seen(self, sighting: &Sighting) -> Verdict {
        let Some(beyond) = self.beyond else { return self };
        let (hop, net, who) = (beyond.next_hop, beyond.destination, &beyond.interface);
        let ask = if hop.is_ipv4() { "ARP" } else { "NDP" };
        // "eth0@c2's ARP", or "ARP from eth0@c2 (beside eth0@c4)" when a sibling asked.
        let asked = match &sighting.asked_from {
            Some(other) if other != who => format!("{ask} from {other} (beside {who})"),
            _ => format!("{who}'s {ask}"),
        };
        let mut v = match sighting.seen {
            Seen::Answered => {
                let body = format!(
                    "{hop} answers {asked}; whether it routes to {net} (and back) is beyond what nicslice can see"
                );
                let fix = format!(
                    "if {hop} should carry this traffic, check its routes to {net} and back, or route {net} another way"
                );
                Verdict { unconfirmed: true, ..make(Rule::NextHopBeyond, body, Some(fix)) }
            }
            Seen::Unanswered => {
                let body = format!("nothing answers {asked} for {hop} (probed just now)");
                let fix = format!("check that {hop} is up and on {who}'s link");
                make(Rule::NoNeighbour, body, Some(fix))
            }
            Seen::NotProbed => {
                let why = sighting.why_not.as_deref().unwrap_or("no probe could be sent");
                let body = format!(
                    "nothing nicslice describes answers {who}'s {ask} for {hop}, and whether something else does is unknown ({why})"
                );
                let fix = format!("check that {hop} is up and on {who}'s link");
                Verdict { unconfirmed: true, ..make(Rule::NoNeighbour, body, Some(fix)) }
            }
        };
        let asked_from = sighting.asked_from.clone().filter(|a| a != who);
        v.beyond = Some(Beyond { seen: Some(sighting.seen), asked_from, ..beyond });
        v
    }
}
