//! The kernel half of attach and detach: the ordered steps that make an
//! endpoint real (link straight into the target namespace, addresses, `lo` and
//! link up, routes, announcement) each recording its undo, and the deletion.

use std::net::IpAddr;

use ipnet::IpNet;
pub use nicslice_kernel::placement::ChildLink;
use nicslice_kernel::{KernelError, Link, Netns, Route, RouteSocket, announce};
use nicslice_model::MacAddr;

use crate::error::{EngineError, Result};
use crate::fault::{Faults, Step};
use crate::refuse::explain_create;
use crate::undo::{UndoAction, UndoLog};

/// What the kernel must hold when an endpoint is attached.
#[derive(Debug, Clone)]
pub struct EndpointPlan {
    pub link: ChildLink,
    /// The parent's name, for error messages.
    pub parent_name: String,
    pub addresses: Vec<IpNet>,
    /// Routes through the new link (its index is filled in once it exists).
    pub routes: Vec<Route>,
}

/// What the kernel holds after `realize`.
pub struct Realized {
    pub link: Link,
    /// The routes actually added (a default route the namespace already had is kept, not added).
    pub routes: Vec<Route>,
}

/// The refusal of `--bclim` where the kernel drops it.
pub(crate) const NO_BCLIM: &str =
    "this kernel has no macvlan broadcast cutoff (bclim needs Linux 6.4 or later); drop --bclim";

/// Runs the steps of `plan`; every change is pushed on `undo` as it is made.
pub fn realize(
    plan: &EndpointPlan,
    host: &mut RouteSocket,
    target_ns: &Netns,
    target: &mut RouteSocket,
    faults: Faults,
    undo: &mut UndoLog,
) -> Result<Realized> {
    let name = plan.link.name().as_str();
    faults.check(Step::CreateLink)?;
    tracing::debug!(link = %name, netns = target_ns.label(), "create link");
    plan.link
        .create_in(host, target_ns, target)
        .map_err(|e| explain_create(e, &plan.parent_name, name, target_ns.label()))?;
    let link = target.require_link(name, target_ns.label())?;
    undo.push(UndoAction::DeleteLink { index: link.index });
    // Kernels before 6.4 ignore the broadcast cutoff silently. `network
    // create` refuses it there already; this catches a network made before
    // that check, or under another kernel than the one booted now.
    if let ChildLink::Macvlan(req) = &plan.link
        && req.bclim.is_some()
        && link.macvlan.as_ref().is_some_and(|m| m.bclim.is_none())
    {
        return Err(EngineError::Invalid(NO_BCLIM.into()));
    }

    for addr in &plan.addresses {
        faults.check(Step::AddAddress)?;
        tracing::debug!(%addr, "add address");
        target.add_address(link.index, *addr)?;
        undo.push(UndoAction::DeleteAddress { index: link.index, addr: *addr });
    }

    faults.check(Step::LinkUp)?;
    tracing::debug!("bring lo and the link up");
    if let Some(lo) = target.link_by_name("lo")?
        && !lo.up
    {
        target.set_up(lo.index, true)?;
        undo.push(UndoAction::SetUp { index: lo.index, up: false });
    }
    target.set_up(link.index, true).map_err(|e| match e.errno() {
        Some(libc::EADDRINUSE) => EngineError::Invalid(format!(
            "{e}: its MAC is already used by the parent or a sibling on the same parent; choose another --mac"
        )),
        _ => e.into(),
    })?;
    undo.push(UndoAction::SetUp { index: link.index, up: false });

    let mut added_routes = Vec::new();
    let existing = if plan.routes.is_empty() { Vec::new() } else { target.routes()? };
    for route in &plan.routes {
        faults.check(Step::AddRoute)?;
        let route = Route { oif: Some(link.index), ..route.clone() };
        // One default route per family: a namespace that already has one
        // (a second interface, or a container's own) keeps it.
        let family_default = |r: &Route| {
            r.is_default() && r.destination.addr().is_ipv6() == route.destination.addr().is_ipv6()
        };
        if route.is_default() && existing.iter().any(family_default) {
            tracing::warn!(
                "{} already has a default route; not adding one via {:?}",
                target_ns.label(),
                route.gateway
            );
            continue;
        }
        tracing::debug!(destination = %route.destination, gateway = ?route.gateway, "add route");
        target.add_route(&route)?;
        undo.push(UndoAction::DeleteRoute { route: route.clone() });
        added_routes.push(route);
    }

    faults.check(Step::Announce)?;
    tracing::debug!("announce the new MAC (gratuitous ARP / unsolicited NA)");
    if let Some(mac) = link.mac {
        let ips: Vec<IpAddr> = plan.addresses.iter().map(IpNet::addr).collect();
        announce::announce(target_ns, link.index, name, mac, &ips)?;
    }
    // Read back what the kernel made (MAC, state) for the record.
    Ok(Realized { link: target.require_link(name, target_ns.label())?, routes: added_routes })
}

/// Deletes an endpoint's link. A link already gone (deleted with its parent,
/// or with its namespace) is not an error: the goal is reached. A link of that
/// name that is not the one nicslice made (another kind or MAC) is left alone.
pub fn remove_link(
    target: &mut RouteSocket,
    ifname: &str,
    expected: (&str, Option<MacAddr>),
    faults: Faults,
) -> Result<bool> {
    faults.check(Step::DeleteLink)?;
    match target.link_by_name(ifname)? {
        None => Ok(false),
        Some(link)
            if link.kind.as_deref() != Some(expected.0)
                || (expected.1.is_some() && link.mac != expected.1) =>
        {
            Err(EngineError::Invalid(format!(
                "interface {ifname} is not the endpoint nicslice attached (it is a {} link with MAC {}); \
                 left it alone. Rename or remove it, then detach again",
                link.kind.as_deref().unwrap_or("physical"),
                link.mac.map_or("none".to_string(), |m| m.to_string())
            )))
        }
        Some(link) => match target.delete_link(link.index) {
            Ok(()) => Ok(true),
            Err(KernelError::Netlink { errno, .. }) if errno == libc::ENODEV => Ok(false),
            Err(e) => Err(e.into()),
        },
    }
}
