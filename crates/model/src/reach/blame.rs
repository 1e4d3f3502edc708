//! Names the rule of a blocked pair from where the walk stopped, with the parties'
//! own names, and writes the usual fix: a shim, hairpin, a mode, a list entry, a
//! route. The frame and packet decisions themselves live in `l2.rs` and `l3.rs`.

use std::net::IpAddr;

use super::beyond;
use super::l2::Drop;
use super::l3::{Blocked, Phase, Stop};
use super::naming::{Rel, first_addr, make, name, ns_name, parent_of, port_name, relation};
use super::rule::{Rule, Verdict};
use super::validate::on_link;
use super::world::{Driver, NsId, Role, StId, World};
use crate::link::MacvlanMode;

pub(crate) fn blocked(w: &World, b: Blocked) -> Verdict {
    match b.stop {
        Stop::Frame { from, to, drop } => frame(w, from, to, drop),
        Stop::NoArp { asker, owner } => match relation(w, asker, owner) {
            Rel::ParentChild { h, child } => parent_child(w, h, child),
            _ => no_arp(w, asker, owner),
        },
        Stop::NoRoute { ns, dst } => no_route(w, ns, dst, b.phase),
        Stop::NoNeighbour { st, ip } => {
            let body = format!("nothing on {}'s link answers ARP for {ip}", name(w, st));
            let fix = format!("check that {ip} belongs to something on {}'s link", name(w, st));
            Verdict {
                beyond: beyond::next_hop(w, st, ip, b.dst),
                ..make(Rule::NoNeighbour, body, Some(fix))
            }
        }
        Stop::NotForwarding { ns } => {
            let body = format!("{} is not a router and does not forward", ns_name(w, ns));
            let fix = "route through a router instead".to_string();
            make(Rule::NotForwarding, body, Some(fix))
        }
        Stop::Loop => {
            let body = "the routes send the probe in a circle".to_string();
            make(Rule::RoutingLoop, body, Some("fix the routes".to_string()))
        }
    }
}

pub(crate) fn parent_down(w: &World, h: usize) -> Verdict {
    let host = &w.hosts[h];
    let body = format!(
        "{}'s parent {} (or its link to the switch) is down, so it and its children have no carrier",
        host.name, host.parent_if
    );
    let fix = format!("bring {} and switch port {} up", host.parent_if, port_name(w, h));
    make(Rule::ParentDown, body, Some(fix))
}

fn frame(w: &World, a: StId, b: StId, drop: Drop) -> Verdict {
    if let Drop::Down { host } = drop {
        return parent_down(w, host);
    }
    match relation(w, a, b) {
        Rel::ParentChild { h, child } => parent_child(w, h, child),
        Rel::Siblings { h } => siblings(w, h, a, b, drop),
        Rel::Other => match drop {
            Drop::SourceNotListed { child } => {
                source_not_listed(w, child, if child == a { b } else { a })
            }
            Drop::SourceNodst { consumer } => nodst(w, consumer, a, b),
            Drop::PassthruTakesAll { child } => passthru(w, child),
            Drop::NoBroadcast { dst } => no_arp(w, a, dst),
            _ => {
                let body = format!("frames from {} do not reach {}", name(w, a), name(w, b));
                make(Rule::NoNeighbour, body, None)
            }
        },
    }
}

pub(crate) fn parent_child(w: &World, h: usize, child: StId) -> Verdict {
    let host = &w.hosts[h];
    let kind = match w.driver(child) {
        Some(Driver::Ipvlan { .. }) => "an ipvlan",
        _ => "a macvlan",
    };
    let body = format!(
        "{kind} child never reaches its own parent ({} and {}); add a shim",
        host.name,
        name(w, child)
    );
    let fix = if w.macvlan_mode(child) == Some(MacvlanMode::Passthru) {
        "passthru leaves no room for a shim: use bridge mode with a shim, or give the host another NIC".to_string()
    } else if let Some(shim) = host.shim.filter(|s| *s != child) {
        format!("route {} via the shim {} in {}", first_addr(w, child), name(w, shim), host.name)
    } else {
        let shim =
            if kind == "a macvlan" { "a bridge-mode macvlan shim" } else { "an ipvlan shim" };
        format!(
            "add {shim} on {} in {} with an address and a route to the children's range",
            host.parent_if, host.name
        )
    };
    make(Rule::ParentChild, body, Some(fix))
}

fn siblings(w: &World, h: usize, a: StId, b: StId, drop: Drop) -> Verdict {
    let on = parent_of(w, h);
    let mode = |s: StId| w.macvlan_mode(s);
    if let Drop::IpvlanPrivate { .. } = drop {
        let body = format!(
            "the ipvlan private flag on {on} blocks child-to-child traffic ({} and {})",
            name(w, a),
            name(w, b)
        );
        let fix = format!(
            "drop the private flag on {} (it is set for every child of the parent)",
            w.hosts[h].parent_if
        );
        return make(Rule::IpvlanPrivate, body, Some(fix));
    }
    if let Drop::IpvlanVepaL3 { .. } = drop {
        let host = &w.hosts[h];
        let body = format!(
            "with the vepa flag, ipvlan on {on} does not deliver traffic from {} to {} inside the kernel: {} routes it out of {}, and it does not come back (the child is NOARP, so hairpin does not help)",
            name(w, a),
            name(w, b),
            host.name,
            host.parent_if
        );
        let target = first_addr(w, b);
        let fix = match w.st(host.parent).addrs.first() {
            Some(via) => format!(
                "drop the vepa flag on {}, or route {target} from {} through a router that routes it back via {}",
                host.parent_if,
                host.name,
                via.addr()
            ),
            None => format!("drop the vepa flag on {}", host.parent_if),
        };
        return make(Rule::IpvlanVepaL3, body, Some(fix));
    }
    if let Some(p) = [a, b].into_iter().find(|s| mode(*s) == Some(MacvlanMode::Private)) {
        let other = if p == a { b } else { a };
        let body = format!(
            "private-mode child {} never reaches its sibling {} on {on}, even with hairpin",
            name(w, p),
            name(w, other)
        );
        let fix = format!("use bridge mode for {} (or vepa with hairpin)", name(w, p));
        return make(Rule::PrivateIsolation, body, Some(fix));
    }
    match drop {
        Drop::SourceNotListed { child } => {
            return source_not_listed(w, child, if child == a { b } else { a });
        }
        Drop::SourceNodst { consumer } => return nodst(w, consumer, a, b),
        _ => {}
    }
    let port = port_name(w, h);
    if let Some(s) = [a, b].into_iter().find(|s| mode(*s) == Some(MacvlanMode::Source)) {
        let (sn, other) = (name(w, s), name(w, if s == a { b } else { a }));
        let body = match drop {
            Drop::ReturnedToSender { .. } => format!(
                "the switch reflects source-mode child {sn}'s broadcasts back to it only, so its sibling {other} never hears its ARP"
            ),
            // No hairpin: the frame never comes back from the switch. Hairpin
            // alone would not do: the source child's broadcasts would return to
            // it only.
            _ => format!(
                "source-mode child {sn} and its sibling {other} on {on} meet only through the switch, and port {port} does not reflect frames (with hairpin {sn}'s broadcasts would come back to it only)"
            ),
        };
        let fix = format!("use bridge mode for {sn}");
        return make(Rule::SourceBroadcastReturned, body, Some(fix));
    }
    let describe = |s: StId| match w.driver(s) {
        Some(Driver::Macvlan { mode, .. }) => format!("{} ({mode})", name(w, s)),
        _ => format!("{} (ipvlan vepa)", name(w, s)),
    };
    let body = format!(
        "{} and {} on {on} meet only through the switch, and port {port} does not reflect frames",
        describe(a),
        describe(b)
    );
    let fix = match w.driver(a) {
        Some(Driver::Ipvlan { .. }) => {
            format!("turn hairpin on for switch port {port}, or drop the vepa flag")
        }
        _ => format!("turn hairpin on for switch port {port}, or put both in bridge mode"),
    };
    make(Rule::SiblingNeedsHairpin, body, Some(fix))
}

fn source_not_listed(w: &World, child: StId, peer: StId) -> Verdict {
    let peer = match w.st(peer).role {
        Role::Parent(h) => w.hosts[h].name.clone(),
        _ => name(w, peer).to_string(),
    };
    let body = format!(
        "source-mode child {} only receives frames whose source MAC is on its list, and {peer}'s is not",
        name(w, child)
    );
    let fix = format!("add {peer}'s MAC to {}'s source list", name(w, child));
    make(Rule::SourceNotListed, body, Some(fix))
}

fn nodst(w: &World, consumer: StId, a: StId, b: StId) -> Verdict {
    let (peer, victim) = (name(w, a), name(w, b));
    let body = format!(
        "source-mode child {} has nodst and consumes the frames of {peer}, so {victim} never sees them",
        name(w, consumer)
    );
    let fix = format!("drop nodst on {}, or take {peer} off its list", name(w, consumer));
    make(Rule::SourceNodst, body, Some(fix))
}

fn no_arp(w: &World, asker: StId, owner: StId) -> Verdict {
    let peer = ns_name(w, w.st(asker).ns).to_string();
    let body = format!(
        "{peer} cannot ARP for {}: ipvlan l3/l3s children are NOARP and the network does not know their addresses",
        name(w, owner)
    );
    let fix = ipvlan_route_fix(w, &peer, owner);
    make(Rule::IpvlanL3NoArp, body, Some(fix))
}

fn ipvlan_route_fix(w: &World, peer: &str, owner: StId) -> String {
    let target = first_addr(w, owner);
    let Some(host) = w.host_of(owner).map(|h| &w.hosts[h]) else {
        return format!("add a route on {peer} to {target}");
    };
    match w.st(host.parent).addrs.first() {
        Some(a) => format!(
            "add a route on {peer} to {target} via {}'s address {}, or use ipvlan l2",
            host.name,
            a.addr()
        ),
        None => format!(
            "give {} an address on the LAN and route {target} via it from {peer}, or use ipvlan l2",
            host.parent_if
        ),
    }
}

fn no_route(w: &World, ns: NsId, dst: IpAddr, phase: Phase) -> Verdict {
    let who = ns_name(w, ns);
    let (rule, body) = match phase {
        Phase::Request => (Rule::NoRoute, format!("{who} has no route to {dst}")),
        Phase::Reply => (Rule::NoReturnRoute, format!("{who} has no route back to {dst}")),
    };
    let ipvlan_owner = w.owner_of(dst).filter(|s| w.l3_slave(*s).is_some());
    let fix = if let Some(owner) = ipvlan_owner {
        ipvlan_route_fix(w, who, owner)
    } else if let Some((router, gw)) = gateway_hint(w, ns) {
        format!("add a default route on {who} via {gw} ({router})")
    } else {
        format!("add a route on {who} to {dst}")
    };
    make(rule, body, Some(fix))
}

/// A router leg on link for namespace `ns`.
fn gateway_hint(w: &World, ns: NsId) -> Option<(String, IpAddr)> {
    let mine: Vec<_> = w.nss[ns].stations.iter().flat_map(|s| w.st(*s).addrs.clone()).collect();
    w.router_legs.iter().map(|s| w.st(*s)).filter(|s| s.ns != ns).find_map(|s| {
        let a = s.addrs.first()?.addr();
        on_link(&mine, a).then(|| (s.label.clone(), a))
    })
}

fn passthru(w: &World, child: StId) -> Verdict {
    let Some(h) = w.host_of(child) else {
        let body = format!("passthru child {} takes every unicast frame", name(w, child));
        return make(Rule::PassthruTakesParent, body, Some("use another mode".to_string()));
    };
    let host = &w.hosts[h].name;
    let body = format!(
        "passthru child {} takes every unicast frame arriving on {}, so {host} itself hears no replies",
        name(w, child),
        parent_of(w, h),
    );
    let fix = format!("move {host}'s address onto {} or use another mode", name(w, child));
    make(Rule::PassthruTakesParent, body, Some(fix))
}
