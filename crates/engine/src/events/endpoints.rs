//! The endpoints `events` watches, in namespaces other than the parents':
//! heard through the ids the parents' namespace has for them. Their links'
//! deletions, their namespaces' ends, and their addresses removed or added
//! by hand become events; a link made again (by `--fix` or by hand) is
//! followed by its name, so its addresses are still told apart.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_kernel::{Link, NetnsTarget, RouteSocket};

use super::Event;
use crate::error::Result;
use crate::{EndpointView, Engine};

/// An endpoint the watcher hears about: the id the parents' namespace has
/// for its namespace, and its link's index there (`None` while it has no
/// link).
pub(super) struct Watched {
    nsid: i32,
    index: Option<u32>,
    endpoint: EndpointView,
}

/// Endpoints by (network, namespace path, interface).
pub(super) type Endpoints = HashMap<(String, String, String), Watched>;

impl Engine {
    /// Adds the attached endpoints not yet watched (their namespace given an
    /// id where it has none, their link's index read once) and forgets
    /// those no longer recorded.
    pub(super) fn adopt(&mut self, watched: &mut Endpoints) -> Result<()> {
        let mut host = RouteSocket::open_in(&self.host)?;
        let mut recorded = Endpoints::new();
        for ep in self.endpoints(None)? {
            let key = (ep.network.clone(), ep.netns.clone(), ep.ifname.clone());
            if let Some(w) = watched.remove(&key) {
                recorded.insert(key, w);
                continue;
            }
            if ep.state != "attached" {
                continue;
            }
            let Ok(ns) = NetnsTarget::Path(ep.netns.clone().into()).open() else { continue };
            if ns.id() == self.host.id() {
                continue; // the parents' own namespace: its links are heard already
            }
            let nsid = host.nsid_of(&ns)?;
            let index = RouteSocket::open_in(&ns)
                .and_then(|mut s| s.link_by_name(&ep.ifname))
                .ok()
                .flatten()
                .map(|l| l.index);
            recorded.insert(key, Watched { nsid, index, endpoint: ep });
        }
        *watched = recorded;
        Ok(())
    }
}

/// A link created or changed in namespace `nsid`: an endpoint's link made
/// again has a new index.
pub(super) fn follow_link(watched: &mut Endpoints, nsid: i32, link: &Link) {
    for w in watched.values_mut().filter(|w| w.nsid == nsid && w.endpoint.ifname == link.name) {
        w.index = Some(link.index);
    }
}

fn named(ep: &EndpointView) -> String {
    format!("{} in {}", ep.ifname, ep.netns)
}

/// The endpoint whose link `link` was, deleted in namespace `nsid`.
pub(super) fn of_endpoint_link(watched: &Endpoints, nsid: i32, link: &Link) -> Option<Event> {
    let ep = watched
        .values()
        .find(|w| w.nsid == nsid && w.endpoint.ifname == link.name)
        .map(|w| &w.endpoint)?;
    Some(Event {
        event: "endpoint-link-removed",
        interface: link.name.clone(),
        networks: vec![ep.network.clone()],
        endpoints: vec![named(ep)],
        message: format!("the link {} in {} was deleted", ep.ifname, ep.netns),
    })
}

/// An address of interface `index` in namespace `nsid` added or removed:
/// an event when it is an endpoint's and differs from the record (a
/// recorded address removed, a permanent address nicslice did not give
/// added; the kernel's own IPv6 link-local addresses are not the record's
/// business).
pub(super) fn of_address(
    watched: &Endpoints,
    nsid: i32,
    index: u32,
    addr: IpNet,
    added: bool,
) -> Option<Event> {
    let ep = &watched.values().find(|w| w.nsid == nsid && w.index == Some(index))?.endpoint;
    let recorded = ep.addresses.iter().any(|a| a.addr() == addr.addr());
    let (event, message) = if added {
        if recorded || is_link_local(addr.addr()) {
            return None;
        }
        (
            "address-added",
            format!(
                "address {addr} was added to {} by hand (nicslice gave {})",
                named(ep),
                list(&ep.addresses)
            ),
        )
    } else {
        // A link being deleted loses its addresses first; its deletion is
        // the event then, told when it arrives.
        if !recorded || !link_exists(ep, index) {
            return None;
        }
        ("address-removed", format!("address {addr} of {} was removed by hand", named(ep)))
    };
    Some(Event {
        event,
        interface: ep.ifname.clone(),
        networks: vec![ep.network.clone()],
        endpoints: vec![named(ep)],
        message,
    })
}

fn list(addresses: &[IpNet]) -> String {
    if addresses.is_empty() {
        return "none".into();
    }
    addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn is_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// Whether interface `index` still exists in the namespace of `ep` (the
/// kernel unlists a link before it removes its addresses).
fn link_exists(ep: &EndpointView, index: u32) -> bool {
    NetnsTarget::Path(ep.netns.clone().into())
        .open()
        .and_then(|ns| RouteSocket::open_in(&ns)?.link_by_index(index))
        .is_ok_and(|l| l.is_some())
}

/// One event per endpoint of namespace `nsid`, which ended; they are no
/// longer watched.
pub(super) fn namespace_gone(watched: &mut Endpoints, nsid: i32) -> Vec<Event> {
    let gone: Vec<_> =
        watched.iter().filter(|(_, w)| w.nsid == nsid).map(|(k, _)| k.clone()).collect();
    gone.into_iter()
        .filter_map(|k| watched.remove(&k))
        .map(|w| {
            let ep = w.endpoint;
            Event {
                event: "namespace-gone",
                interface: ep.ifname.clone(),
                networks: vec![ep.network.clone()],
                endpoints: vec![named(&ep)],
                message: format!(
                    "the namespace {} ended (its container is gone): the addresses of {} are held for nothing; `nicslice doctor --fix` releases them",
                    ep.netns, ep.ifname
                ),
            }
        })
        .collect()
}
