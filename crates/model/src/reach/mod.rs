//! The reachability model: predicts, for a described [`Topology`], whether an ICMP
//! echo passes between two endpoints (request and reply), which [`Rule`] decided it,
//! and the usual fix. Pure and deterministic, no I/O. `nicslice explain` reads a
//! topology from TOML/JSON and asks [`predict`]; `nicslice lab` builds the same
//! topology on the real kernel and compares observed pings with [`matrix`], and
//! observed ARP (NDP) answers with [`neighbour_pairs`].
//!
//! How: `world` derives namespaces, interfaces and routing tables; `l3` walks the
//! echo hop by hop (routes, ARP, forwarding); `l2` decides each frame the way
//! macvlan, ipvlan and the Linux bridge do; `explain` names the rule of a pass and
//! `blame` that of a block, both in the words of `naming` (one direction only:
//! explain -> blame -> naming).
//!
//! Conditions the lab must reproduce for predictions to hold:
//! - neighbour caches are cold for every probe (flush ARP/ND in every namespace
//!   first): in the kernel some pairs are order dependent, e.g. a parent that
//!   ARPed a private child through a hairpin port lets that child answer later;
//! - sysctls as in a fresh namespace: rp_filter 0, arp_ignore 0, arp_announce 0;
//!   routers forward, nothing else does;
//! - the probe goes to the target's first address (a host: its parent's, else its
//!   shim's; a router: its LAN leg) and its family decides IPv4 or IPv6 (ND takes the
//!   same macvlan/ipvlan multicast paths as ARP broadcasts);
//! - macvtap/ipvtap children behave like macvlan/ipvlan ones: with no process reading
//!   the tap, tap_handle_frame passes frames to the device's own stack (the CLI's
//!   macvtap test pings from one), and a guest behind the tap sees the same wire.
//!
//! The macvlan rules that REFERENCE.md does not state (hairpin with the parent,
//! private asymmetry, passthru taking the host's replies, source-mode siblings, a
//! shim with vepa/private children) were checked by hand on kernel 6.18 in private
//! namespaces; the ipvlan rules are derived from ipvlan_core.c, and the lab's VM stage
//! (Debian's 6.1, which has ipvlan) observes them: l2, l3 and l3s with the bridge,
//! private and vepa flags, vepa with hairpin and with a router.

mod beyond;
mod blame;
mod build;
mod error;
mod explain;
mod index;
mod l2;
mod l3;
mod naming;
mod neighbour;
pub mod presets;
mod rule;
mod topology;
mod validate;
mod world;

#[cfg(test)]
mod tests;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use error::TopologyError;
pub use neighbour::{NeighbourPrediction, neighbour_pairs, predict_arp};
pub use rule::{Beyond, Reach, Rule, Seen, Sighting, Verdict};
pub use topology::{
    Child, ChildKind, ChildMode, EndpointRef, Host, IpvlanFlag, IpvlanMode, MacRef, Port, Remote,
    Route, Router, Shim, Switch, Topology,
};

use world::{EpKind, EpView, World};

/// One cell of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixEntry {
    pub from: EndpointRef,
    pub to: EndpointRef,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    Switch,
    Host,
    Child,
    Router,
    Remote,
}

/// An endpoint and the address probes to it go to (the lab pings exactly this).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: EndpointRef,
    pub kind: EndpointKind,
    pub address: Option<IpAddr>,
}

impl Topology {
    /// Checks the topology; the error says what to change.
    pub fn validate(&self) -> Result<(), TopologyError> {
        World::build(self).map(|_| ())
    }

    /// Every endpoint in matrix order: the switch, each host then its children,
    /// routers, remotes.
    pub fn endpoints(&self) -> Result<Vec<Endpoint>, TopologyError> {
        let w = World::build(self)?;
        let kind = |k: EpKind| match k {
            EpKind::Switch => EndpointKind::Switch,
            EpKind::Host(_) => EndpointKind::Host,
            EpKind::Child(_) => EndpointKind::Child,
            EpKind::Router(_) => EndpointKind::Router,
            EpKind::Remote => EndpointKind::Remote,
        };
        let eps = w.eps.iter().map(|e| Endpoint {
            name: EndpointRef(e.name.clone()),
            kind: kind(e.kind),
            address: w.target_addr(e),
        });
        Ok(eps.collect())
    }
}

/// Whether an echo from `from` to `to` (and its reply) passes, and why.
pub fn predict(
    t: &Topology,
    from: &EndpointRef,
    to: &EndpointRef,
) -> Result<Verdict, TopologyError> {
    let w = World::build(t)?;
    let (a, b) = (w.endpoint(&from.0)?, w.endpoint(&to.0)?);
    Ok(predict_in(&w, a, b))
}

/// Predictions for every ordered pair of distinct endpoints that have an address.
pub fn matrix(t: &Topology) -> Result<Vec<MatrixEntry>, TopologyError> {
    let w = World::build(t)?;
    let eps: Vec<&EpView> = w.eps.iter().filter(|e| w.target_addr(e).is_some()).collect();
    let mut out = Vec::with_capacity(eps.len() * eps.len());
    for a in &eps {
        for b in eps.iter().filter(|b| b.name != a.name) {
            out.push(MatrixEntry {
                from: EndpointRef(a.name.clone()),
                to: EndpointRef(b.name.clone()),
                verdict: predict_in(&w, a, b),
            });
        }
    }
    Ok(out)
}

fn predict_in(w: &World, from: &EpView, to: &EpView) -> Verdict {
    if from.name == to.name {
        let body = format!("{} reaches its own address", from.name);
        return naming::make(Rule::SameEndpoint, body, None);
    }
    for ep in [from, to] {
        if let Some(h) = w.down_host(ep.st) {
            return blame::parent_down(w, h);
        }
    }
    let Some(dst) = w.target_addr(to) else {
        return no_address(&to.name, "");
    };
    if w.any_addr(from.ns, dst.is_ipv4()).is_none() {
        return no_address(&from.name, if dst.is_ipv4() { "IPv4 " } else { "IPv6 " });
    }
    explain::verdict(w, from, to, l3::ping(w, from.ns, dst))
}

/// `family` is "", "IPv4 " or "IPv6 ".
fn no_address(who: &str, family: &str) -> Verdict {
    let body = format!("{who} has no {family}address");
    let fix = format!("give {who} an {family}address");
    naming::make(Rule::NoAddress, body, Some(fix))
}
