//! `events`: the kernel's link notifications in the parents' namespace,
//! turned into what they mean for nicslice's networks: a parent down, up,
//! without carrier, deleted or recreated; a shim removed. Each event names
//! the networks and endpoints it affects. With `fix`, the repair `doctor
//! --fix` would make follows at once (a parent recreated under its name gets
//! its children back in their namespaces; a removed shim is made again).
//! The socket sleeps in the kernel between notifications.

use std::collections::HashMap;
use std::time::Duration;

use nicslice_kernel::events::{LinkEvent, LinkEvents};
use nicslice_kernel::{Link, RouteSocket};
use nicslice_store::StoreRead;
use serde::Serialize;

use crate::Engine;
use crate::error::Result;

/// One event, as `nicslice events` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// parent-down, parent-up, carrier-lost, carrier-back, parent-deleted,
    /// parent-recreated, shim-removed, repaired.
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
}

impl Seen {
    fn of(l: &Link) -> Seen {
        Seen { index: l.index, up: l.up, lower_up: l.lower_up }
    }
}

/// Which networks use a parent, and which shim belongs to which network.
struct Interest {
    parents: HashMap<String, Vec<String>>,
    shims: HashMap<String, String>,
}

impl Engine {
    fn interest(&mut self) -> Result<Interest> {
        let tx = self.store.read()?;
        let mut parents: HashMap<String, Vec<String>> = HashMap::new();
        let mut shims = HashMap::new();
        for net in tx.list_networks()? {
            parents.entry(net.spec.parent.to_string()).or_default().push(net.spec.name.to_string());
            if let Some(shim) = tx.shim(net.id)? {
                shims.insert(shim.name, net.spec.name.to_string());
            }
        }
        Ok(Interest { parents, shims })
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
        loop {
            let batch = events.next(until)?;
            if batch.is_empty() && until.is_some() {
                return Ok(());
            }
            let interest = self.interest()?;
            for change in batch {
                let (deleted, link) = match change {
                    LinkEvent::New(l) => (false, l),
                    LinkEvent::Del(l) => (true, l),
                };
                let Some((event, message, networks)) =
                    classify(&interest, &mut seen, deleted, &link)
                else {
                    continue;
                };
                let endpoints = self.endpoints_of(&networks)?;
                let e = Event {
                    event,
                    interface: link.name.clone(),
                    networks: networks.clone(),
                    endpoints,
                    message,
                };
                if !emit(&e) {
                    return Ok(());
                }
                if fix && matches!(event, "parent-recreated" | "shim-removed") {
                    for net in &networks {
                        for f in self.doctor(Some(net), true)? {
                            let ok = f.repaired == Some(true);
                            let message = match (&f.repair_error, ok) {
                                (_, true) => format!("repaired: {}: {}", f.subject, f.fix),
                                (Some(err), false) => format!("not repaired: {}: {err}", f.subject),
                                (None, false) => {
                                    format!("left: {}: {}; {}", f.subject, f.problem, f.fix)
                                }
                            };
                            let r = Event {
                                event: "repaired",
                                interface: link.name.clone(),
                                networks: vec![net.clone()],
                                endpoints: Vec::new(),
                                message,
                            };
                            if !emit(&r) {
                                return Ok(());
                            }
                        }
                    }
                }
            }
        }
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
        Some(_) => return None,
    };
    Some((event, msg, networks))
}
