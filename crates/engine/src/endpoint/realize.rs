//! Making an endpoint real: the child straight into its namespace under its
//! final name, read back; then its addresses, the kernel's own announcement,
//! `lo` (by [`Policy`]), up, and its routes. Every change is pushed on the
//! caller's undo log as it is made, and every step checks its fault point.

use ipnet::IpNet;
use nicslice_kernel::macvlan::DEFAULT_BCLIM;
use nicslice_kernel::placement::ChildLink;
use nicslice_kernel::{LinkBrief, Netns, Route, RouteSocket, sysctl};

use super::Policy;
use super::place::{ParentRef, Place};
use crate::error::{EngineError, Result};
use crate::fault::{Faults, Step};
use crate::refuse::explain_create;
use crate::undo::{UndoAction, UndoLog};

/// The refusal of a broadcast cutoff where the kernel drops it.
pub const NO_BCLIM: &str = "this kernel has no macvlan broadcast cutoff (bclim needs Linux 6.4 or later, older ones drop it silently); drop --bclim (CNI: the \"bclim\" key)";

/// What the kernel must hold when an endpoint is made.
#[derive(Debug, Clone)]
pub struct EndpointPlan {
    pub link: ChildLink,
    pub parent: ParentRef,
    pub addresses: Vec<IpNet>,
    /// Routes through the new link (its index is filled in once it exists).
    pub routes: Vec<Route>,
}

/// What the kernel holds after [`realize`].
pub struct Realized {
    pub link: LinkBrief,
    /// The routes actually added (a default route the namespace already had
    /// is kept, not added).
    pub routes: Vec<Route>,
}

/// [`create_link`] then [`configure`], for a caller that has its addresses.
pub fn realize(
    plan: &EndpointPlan,
    policy: Policy,
    place: &mut Place,
    faults: Faults,
    undo: &mut UndoLog,
) -> Result<Realized> {
    let link = create_link(&plan.link, &plan.parent, place, faults, undo)?;
    let routes = configure(&link, &plan.addresses, &plan.routes, policy, place, faults, undo)?;
    Ok(Realized { link, routes })
}

/// Creates the child in the target namespace and reads it back; its undo is
/// pushed. A kernel refusal comes back as advice ([`explain_create`]).
pub fn create_link(
    link: &ChildLink,
    parent: &ParentRef,
    place: &mut Place,
    faults: Faults,
    undo: &mut UndoLog,
) -> Result<LinkBrief> {
    let name = link.name().as_str();
    faults.check(Step::CreateLink)?;
    tracing::debug!(link = %name, netns = place.target_ns.label(), parent = %parent.name, "create link");
    if let Err(e) = link.create_in(&mut place.host, &place.target_ns, &mut place.target) {
        let at = (parent.name.as_str(), parent.index);
        return Err(explain_create(e, &mut place.host, at, link, place.target_ns.label()));
    }
    let made = place.target.require_link_brief(name, place.target_ns.label())?;
    undo.push(UndoAction::DeleteLink { index: made.index });
    // Kernels before 6.4 drop the broadcast cutoff without a word: read the
    // link back whole (only when one was asked for) to see that it took.
    if let ChildLink::Macvlan(req) = link
        && let Some(bclim) = req.bclim
        && bclim != DEFAULT_BCLIM
    {
        let whole = place.target.require_link(name, place.target_ns.label())?;
        if whole.macvlan.as_ref().is_some_and(|m| !m.holds_bclim(bclim)) {
            return Err(EngineError::Invalid(NO_BCLIM.into()));
        }
    }
    Ok(made)
}

/// Asks the kernel to announce the link's addresses when it comes up
/// (gratuitous ARP, unsolicited NA): IPv4's `arp_notify` over netlink;
/// IPv6's `ndisc_notify`, which netlink cannot set, through /proc/sys inside
/// the namespace, only when there is an IPv6 address.
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
            // No IPv6 on the link (disabled in the namespace) is not an error.
            let _ = sysctl::write(&format!("net/ipv6/conf/{ifname}/ndisc_notify"), "1");
        })?;
    }
    Ok(())
}

/// Addresses, announcement, `lo` (by `policy`), up, routes on the new
/// `link`; returns the routes added. Every change is pushed on `undo`.
pub fn configure(
    link: &LinkBrief,
    addresses: &[IpNet],
    routes: &[Route],
    policy: Policy,
    place: &mut Place,
    faults: Faults,
    undo: &mut UndoLog,
) -> Result<Vec<Route>> {
    add_addresses(link, addresses, place, faults, undo)?;
    let target = &mut place.target;
    faults.check(Step::LinkUp)?;
    if policy.loopback_up
        && let Some(lo) = target.link_by_name("lo")?
        && !lo.up
    {
        target.set_up(lo.index, true)?;
        undo.push(UndoAction::SetUp { index: lo.index, up: false });
    }
    tracing::debug!(link = %link.name, "up");
    target.set_up(link.index, true).map_err(|e| match e.errno() {
        Some(libc::EADDRINUSE) => EngineError::Invalid(format!(
            "{e}: its MAC is already used by the parent or a sibling on the same parent; choose another MAC"
        )),
        _ => e.into(),
    })?;
    undo.push(UndoAction::SetUp { index: link.index, up: false });
    add_routes(link, routes, place, faults, undo)
}

/// The addresses of [`configure`], with their announcement, on `link`
/// (up or not: a DHCP lease goes on a link that is up).
pub fn add_addresses(
    link: &LinkBrief,
    addresses: &[IpNet],
    place: &mut Place,
    faults: Faults,
    undo: &mut UndoLog,
) -> Result<()> {
    let target = &mut place.target;
    for addr in addresses {
        faults.check(Step::AddAddress)?;
        tracing::debug!(%addr, "add address");
        target.add_address(link.index, *addr)?;
        undo.push(UndoAction::DeleteAddress { index: link.index, addr: *addr });
    }
    faults.check(Step::Announce)?;
    notify_neighbours(link, addresses, &place.target_ns, target)
}

/// The routes of [`configure`] on `link`, which is up; returns those added
/// (a default route the namespace has already is left to it).
pub fn add_routes(
    link: &LinkBrief,
    routes: &[Route],
    place: &mut Place,
    faults: Faults,
    undo: &mut UndoLog,
) -> Result<Vec<Route>> {
    let target = &mut place.target;
    let mut added = Vec::new();
    for route in routes {
        faults.check(Step::AddRoute)?;
        let route = Route { oif: Some(link.index), ..route.clone() };
        tracing::debug!(destination = %route.destination, gateway = ?route.gateway, "add route");
        match target.add_route(&route) {
            Ok(()) => {
                undo.push(UndoAction::DeleteRoute { route: route.clone() });
                added.push(route);
            }
            // One default route per family: a namespace that already has one
            // (a second interface, or a container's own) keeps it.
            Err(e) if route.is_default() && e.errno() == Some(libc::EEXIST) => {
                let via = route.gateway.map_or("the device".to_string(), |g| g.to_string());
                tracing::warn!(
                    "{} already has a default route; not adding one via {via}",
                    place.target_ns.label()
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(added)
}
