//! `events`: the kernel's link and address notifications in the parents'
//! namespace, turned into what they mean for nicslice's networks: a parent
//! down, up, without carrier, deleted or recreated, or out of the
//! promiscuous mode a network asked for; a shim removed; an endpoint's link
//! deleted, an address of it removed or added by hand, or its namespace
//! ended (the container is gone; see `endpoints`). Each event names the
//! networks and endpoints it affects. With `fix`, the repair `doctor --fix`
//! would make follows at once (a parent recreated under its name gets its
//! children back in their namespaces; promiscuous mode is turned on again;
//! a removed shim is made again; a deleted endpoint link is made again; a
//! gone namespace's lease released).
//!
//! The socket sleeps in the kernel between notifications. Endpoint
//! namespaces are heard through the ids the parents' namespace has for them
//! (given where missing, as `ip netns set NS auto` does), which hold no
//! reference: a namespace still ends when its container does. Every
//! [`ADOPT_EVERY`] the record is read again to adopt endpoints attached
//! since (a database read, no question to the kernel about known ones; a
//! new one's link index is read once).

mod endpoints;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nicslice_kernel::events::{LinkEvent, LinkEvents};
use nicslice_kernel::{Link, RouteSocket};
use nicslice_store::StoreRead;
use serde::Serialize;

use crate::Engine;
use crate::error::Result;
use endpoints::Endpoints;

/// How long the watcher sleeps, at most, before it adopts the endpoints
/// attached since it last read the record.
const ADOPT_EVERY: Duration = Duration::from_secs(2);

/// One event, as `nicslice events` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// parent-down, parent-up, carrier-lost, carrier-back, parent-deleted,
    /// parent-recreated, promisc-lost, shim-removed, endpoint-link-removed,
    /// address-removed, address-added, namespace-gone, repaired.
    pub event: &'static str,
    pub interface: String,
    pub networks: Vec<String>,
    /// Endpoints affected, as "IFNAME in NETNS".
    pub endpoints: Vec<String>,
    pub message: String,
}

/// What the watcher remembers of an interface it cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    index: u32,
    up: bool,
    lower_up: bool,
    /// The user's `IFF_PROMISC` (not the count children add to).
    promisc: bool,
}

impl Seen {
    fn of(l: &Link) -> Seen {
        Seen { index: l.index, up: l.up, lower_up: l.lower_up, promisc: l.promisc_flag }
    }
}

/// Which networks use a parent (and which of them ask for promiscuous
/// mode), and which shim belongs to which network.
struct Interest {
    parents: HashMap<String, Vec<String>>,
    promisc: HashMap<String, Vec<String>>,
    shims: HashMap<String, String>,
}

impl Engine {
    fn interest(&mut self) -> Result<Interest> {
        let tx = self.store.read()?;
        let mut parents: HashMap<String, Vec<String>> = HashMap::new();
        let mut promisc: HashMap<String, Vec<String>> = HashMap::new();
        let mut shims = HashMap::new();
        for net in tx.list_networks()? {
            let (parent, name) = (net.spec.parent.to_string(), net.spec.name.to_string());
            if net.spec.promisc {
                promisc.entry(parent.clone()).or_default().push(name.clone());
            }
            parents.entry(parent).or_default().push(name);
            if let Some(shim) = tx.shim(net.id)? {
                shims.insert(shim.name, net.spec.name.to_string());
            }
        }
        Ok(Interest { parents, promisc, shims })
    }

    fn endpoints_of(&mut self, networks: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for n in networks {
            out.extend(
                self.endpoints(Some(n))?
                    .into_iter()
                    .map(|e| format!("{} in {}", e.ifname, e.netns)),
            );
        }
        Ok(out)
    }

    /// Watches until `emit` returns false (or, with `until`, until no event
    /// came for that long), calling it for each event.
    pub fn watch(
        &mut self,
        fix: bool,
        until: Option<Duration>,
        mut emit: impl FnMut(&Event) -> bool,
    ) -> Result<()> {
        // Subscribed before the first look, so nothing falls between.
        let mut events = LinkEvents::open_in(&self.host)?;
        let mut seen: HashMap<String, Seen> = HashMap::new();
        let interest = self.interest()?;
        for l in RouteSocket::open_in(&self.host)?.links()? {
            if interest.parents.contains_key(&l.name) || interest.shims.contains_key(&l.name) {
                seen.insert(l.name.clone(), Seen::of(&l));
            }
        }
        let mut watched = Endpoints::new();
        self.adopt(&mut watched)?;
        let mut last_event = Instant::now();
        let mut adopted = Instant::now();
        loop {
            // Adoption on a clock of its own: a stream of notifications
            // (addresses of the host's other interfaces) must not hold it off.
            let adopt_in = ADOPT_EVERY.saturating_sub(adopted.elapsed());
            let wait =
                until.map_or(adopt_in, |u| u.saturating_sub(last_event.elapsed()).min(adopt_in));
            let batch = events.next(Some(wait))?;
            if batch.is_empty() && until.is_some_and(|u| last_event.elapsed() >= u) {
                return Ok(());
            }
            if adopted.elapsed() >= ADOPT_EVERY {
                self.adopt(&mut watched)?;
                adopted = Instant::now();
            }
            if batch.is_empty() {
                continue;
            }
            last_event = Instant::now();
            let interest = self.interest()?;
            for change in batch {
                let found: Vec<Event> = match change {
                    LinkEvent::New(link) => {
                        self.of_parent(&interest, &mut seen, false, link)?.into_iter().collect()
                    }
                    LinkEvent::Del(link) => {
                        self.of_parent(&interest, &mut seen, true, link)?.into_iter().collect()
                    }
                    LinkEvent::PeerNew { nsid, link } => {
                        endpoints::follow_link(&mut watched, nsid, &link);
                        Vec::new()
                    }
                    LinkEvent::PeerDel { nsid, link } => {
                        endpoints::of_endpoint_link(&watched, nsid, &link).into_iter().collect()
                    }
                    // An address with a lifetime was not added by hand:
                    // SLAAC on a segment with router advertisements, say.
                    LinkEvent::Address { added: true, permanent: false, .. } => Vec::new(),
                    LinkEvent::Address { nsid: Some(nsid), index, addr, added, .. } => {
                        endpoints::of_address(&watched, nsid, index, addr, added)
                            .into_iter()
                            .collect()
                    }
                    // The parents' namespace's own addresses are the host's.
                    LinkEvent::Address { nsid: None, .. } => Vec::new(),
                    LinkEvent::NamespaceGone(nsid) => endpoints::namespace_gone(&mut watched, nsid),
                };
                for e in found {
                    if !emit(&e) {
                        return Ok(());
                    }
                    let repairs = matches!(
                        e.event,
                        "parent-recreated"
                            | "promisc-lost"
                            | "shim-removed"
                            | "endpoint-link-removed"
                            | "address-removed"
                            | "address-added"
                            | "namespace-gone"
                    );
                    if fix && repairs && !self.repair_networks(&e, &mut emit)? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The event a change of a parent or shim is, with the endpoints of the
    /// networks it affects.
    fn of_parent(
        &mut self,
        interest: &Interest,
        seen: &mut HashMap<String, Seen>,
        deleted: bool,
        link: Link,
    ) -> Result<Option<Event>> {
        let Some((event, message, networks)) = classify(interest, seen, deleted, &link) else {
            return Ok(None);
        };
        let endpoints = self.endpoints_of(&networks)?;
        Ok(Some(Event { event, interface: link.name, networks, endpoints, message }))
    }

    /// `doctor --fix` on the networks of `e`, each finding an event; false
    /// when `emit` asks to stop.
    fn repair_networks(
        &mut self,
        e: &Event,
        emit: &mut impl FnMut(&Event) -> bool,
    ) -> Result<bool> {
        for net in &e.networks {
            for f in self.doctor(Some(net), true)? {
                let ok = f.repaired == Some(true);
                let message = match (&f.repair_error, ok) {
                    (_, true) => format!("repaired: {}: {}", f.subject, f.fix),
                    (Some(err), false) => format!("not repaired: {}: {err}", f.subject),
                    (None, false) => format!("left: {}: {}; {}", f.subject, f.problem, f.fix),
                };
                let r = Event {
                    event: "repaired",
                    interface: e.interface.clone(),
                    networks: vec![net.clone()],
                    endpoints: Vec::new(),
                    message,
                };
                if !emit(&r) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

/// What a change of `link` means, if it concerns a parent or a shim.
fn classify(
    interest: &Interest,
    seen: &mut HashMap<String, Seen>,
    deleted: bool,
    link: &Link,
) -> Option<(&'static str, String, Vec<String>)> {
    let name = &link.name;
    if let Some(net) = interest.shims.get(name) {
        if deleted {
            seen.remove(name);
            let msg = format!(
                "shim {name} was removed: the host no longer reaches the endpoints of {net}"
            );
            return Some(("shim-removed", msg, vec![net.clone()]));
        }
        seen.insert(name.clone(), Seen::of(link));
        return None;
    }
    let networks = interest.parents.get(name)?.clone();
    let now = Seen::of(link);
    if deleted {
        // A rename away also arrives as a new link of that index: only a
        // deletion of the index we know counts.
        if seen.get(name).is_some_and(|s| s.index != link.index) {
            return None;
        }
        seen.remove(name);
        let msg = format!("parent {name} was deleted, and every child of it with it");
        return Some(("parent-deleted", msg, networks));
    }
    let before = seen.insert(name.clone(), now);
    let (event, msg) = match before {
        None => ("parent-recreated", format!("parent {name} exists again (index {})", link.index)),
        Some(b) if b.index != now.index => {
            ("parent-recreated", format!("parent {name} was recreated (index {} now)", link.index))
        }
        Some(b) if b.up && !now.up => {
            ("parent-down", format!("parent {name} is down: its children lost their carrier"))
        }
        Some(b) if !b.up && now.up => ("parent-up", format!("parent {name} is up again")),
        Some(b) if now.up && b.lower_up && !now.lower_up => {
            ("carrier-lost", format!("parent {name} lost its carrier"))
        }
        Some(b) if now.up && !b.lower_up && now.lower_up => {
            ("carrier-back", format!("parent {name} has its carrier again"))
        }
        Some(b) if b.promisc && !now.promisc => {
            // Only the networks that asked for it are affected.
            let asking = interest.promisc.get(name)?.clone();
            let msg = format!(
                "parent {name} left promiscuous mode, which {} asked for: frames to its children's MACs may be dropped",
                asking.join(", ")
            );
            return Some(("promisc-lost", msg, asking));
        }
        Some(_) => return None,
    };
    Some((event, msg, networks))
}
