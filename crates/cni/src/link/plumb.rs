//! The kernel half of a CNI ADD, tuned for one short-lived process per call:
//! the link straight into the container under its final name, its
//! addresses, up, its routes, each step recording its undo in the engine's
//! `UndoLog` and checking the engine's fault injection points.
//!
//! It differs from the engine's `plumb::realize` (used by `nicslice attach`)
//! where a CNI call must: neighbours learn the new MAC through the kernel's
//! own `arp_notify`/`ndisc_notify` when the link comes up, not from a packet
//! socket (closing one waits for an RCU grace period, 10 to 20 ms, longer
//! than the whole call); `lo` is the loopback plugin's business; a default
//! route the container already has is detected by the kernel's EEXIST
//! instead of a route dump first.

use ipnet::IpNet;
use nicslice_engine::undo::{UndoAction, UndoLog};
use nicslice_engine::{Faults, Step};
use nicslice_kernel::placement::ChildLink;
use nicslice_kernel::{KernelError, LinkBrief, Netns, Route, RouteSocket, sysctl};

use crate::error::{CniError, Code, Result};

fn fault(faults: Faults, step: Step) -> Result<()> {
    faults.check(step).map_err(CniError::from)
}

/// Turns a refused creation into advice.
fn explain_create(e: KernelError, parent: &str, ifname: &str) -> CniError {
    let advice = match e.errno() {
        Some(libc::EBUSY) => format!(
            "master {parent} is busy: a bridge port, bond slave or the parent of the other family (macvlan and ipvlan cannot share one)"
        ),
        Some(libc::EEXIST) => format!("{ifname} already exists in the container"),
        Some(libc::EADDRINUSE) => "the MAC is already used by the master or a sibling".into(),
        Some(libc::EINVAL) => format!(
            "the kernel refused the link; a passthru master holds only one child, and {parent} may have one"
        ),
        Some(libc::EOPNOTSUPP) => "this kernel lacks the driver (see `nicslice check`)".into(),
        _ => return e.into(),
    };
    CniError::new(Code::Kernel, format!("{e}: {advice}"))
}

/// Asks the kernel to announce the link's addresses when it comes up: IPv4
/// over netlink; IPv6's `ndisc_notify`, which netlink cannot set, through
/// /proc/sys inside the container, only when there is an IPv6 address.
fn notify_neighbours(
    link: &LinkBrief,
    addresses: &[IpNet],
    target_ns: &Netns,
    target: &mut RouteSocket,
) -> Result<()> {
    if addresses.iter().any(|a| a.addr().is_ipv4()) {
        target.enable_arp_notify(link.index)?;
    }
    if addresses.iter().any(|a| a.addr().is_ipv6()) {
        let ifname = &link.name;
        target_ns.run(|| {
            // No IPv6 on the link (disabled in the container) is not an error.
            let _ = sysctl::write(&format!("net/ipv6/conf/{ifname}/ndisc_notify"), "1");
        })?;
    }
    Ok(())
}

/// Creates the child in the container and reads it back; its undo is pushed.
pub fn create_link(
    link: &ChildLink,
    parent_name: &str,
    host: &mut RouteSocket,
    target_ns: &Netns,
    target: &mut RouteSocket,
    faults: Faults,
    undo: &mut UndoLog,
) -> Result<LinkBrief> {
    let name = link.name().as_str();
    fault(faults, Step::CreateLink)?;
    link.create_in(host, target_ns, target).map_err(|e| explain_create(e, parent_name, name))?;
    let made = target.require_link_brief(name, target_ns.label())?;
    undo.push(UndoAction::DeleteLink { index: made.index });
    Ok(made)
}

/// Addresses, announcement, up, routes on the new `link`; returns the routes
/// added. Every change is pushed on `undo` as it is made.
pub fn configure(
    link: &LinkBrief,
    addresses: &[IpNet],
    routes: &[Route],
    target_ns: &Netns,
    target: &mut RouteSocket,
    faults: Faults,
    undo: &mut UndoLog,
) -> Result<Vec<Route>> {
    for addr in addresses {
        fault(faults, Step::AddAddress)?;
        target.add_address(link.index, *addr)?;
        undo.push(UndoAction::DeleteAddress { index: link.index, addr: *addr });
    }
    fault(faults, Step::Announce)?;
    notify_neighbours(link, addresses, target_ns, target)?;
    fault(faults, Step::LinkUp)?;
    target.set_up(link.index, true).map_err(|e| match e.errno() {
        Some(libc::EADDRINUSE) => CniError::config(format!(
            "{e}: the MAC is already used by the master or a sibling; choose another mac"
        )),
        _ => e.into(),
    })?;
    undo.push(UndoAction::SetUp { index: link.index, up: false });

    let mut added = Vec::new();
    for route in routes {
        fault(faults, Step::AddRoute)?;
        let route = Route { oif: Some(link.index), ..route.clone() };
        match target.add_route(&route) {
            Ok(()) => {
                undo.push(UndoAction::DeleteRoute { route: route.clone() });
                added.push(route);
            }
            // A container with its own default route (a second network) keeps it.
            Err(e) if route.is_default() && e.errno() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(added)
}
