//! The shim of the CNI plugins (`"hostAccess": true`): one per parent in the
//! runtime's host namespace, shared by every pod on that parent and kept by
//! the kernel and a per-boot file of its own (`shared_state.rs`: a CNI
//! plugin has no database to record it in). The first ADD on a parent makes
//! it, each ADD routes its pod's IPv4 addresses through it with the host's
//! address on the parent as source, each DEL removes them, and the DEL that
//! removes the last route removes the shim. Calls on one parent queue on a
//! `flock` of that file, so concurrent ADDs make exactly one shim and a DEL
//! never deletes a shim an ADD is routing through.
//!
//! An ADD on a parent whose shim is known takes one route request: the
//! kernel refuses a route through an index that no longer exists (ENODEV)
//! or a source no longer the host's (EINVAL), and only then is the shim
//! looked up, made again if it went missing, and every pod routed through
//! it again. STATUS reports a shim gone missing under pods that need it.
//!
//! IPv6 needs an address of the shim's own (see the module above), which
//! only the CLI's pool can give; a CNI shim carries IPv4.
//!
//! The configuration is refused before any ADD when the reachability model
//! says the shim cannot reach the pods ([`super::refusal`], as `shim add`).
//! The ADD that makes the shim runs the guard (`guard.rs`, as `shim add`):
//! a new link on the master, up, is the change that could cut the host off,
//! and it is made once per master, so its probes (a few ARP round trips,
//! 0.3 s at worst for a neighbour that stopped answering) do not weigh on
//! the ADDs after it. Those only add a /32 to an address their IPAM gave
//! the pod, which changes no route of the host's and reaches no neighbour
//! the host had; they are not checked, to keep an ADD with hostAccess
//! within a fraction of a millisecond of one without.

use std::net::IpAddr;

use nicslice_kernel::{KernelError, Netns, RouteSocket};
use nicslice_model::IfName;

use super::host_address;
pub use super::shared_state::Attachment;
use super::shared_state::{KnownShim, MasterState, Routed, addresses};
use crate::endpoint::{ChildSpec, ParentRef, Place};
use crate::error::{EngineError, Result};
use crate::fault::{Faults, Step};
use crate::undo::{UndoAction, UndoLog};

/// The shim's name on the parent with index `parent` (an index is unique in
/// its namespace; a recreated parent gets a new one, and its old shim went
/// with the old parent).
pub fn shim_name(parent: u32) -> String {
    format!("nsh{parent:x}")
}

/// Makes (if needed) the shim of `parent` in `host`'s namespace and routes
/// `pod` through it, the addresses of CNI attachment `owner`; every change
/// is pushed on `undo`. A new shim is checked by the guard.
pub fn join(
    place: &mut Place,
    (parent, child): (&ParentRef, &ChildSpec),
    pod: &[IpAddr],
    owner: &Attachment,
    faults: Faults,
    undo: &mut UndoLog,
) -> Result<()> {
    let v4: Vec<IpAddr> = pod.iter().copied().filter(IpAddr::is_ipv4).collect();
    if v4.is_empty() {
        return Ok(());
    }
    let joining: Vec<Routed> =
        v4.iter().map(|ip| Routed { ip: *ip, owner: Some(owner.clone()) }).collect();
    // A CNI plugin runs in the runtime's host namespace, where the parent is.
    let host = &mut place.host;
    let mut state = MasterState::lock(host, parent.index)?;
    if let Some(known) = state.shim {
        faults.check(Step::HostRoute)?;
        match route_all(host, known, &v4, undo) {
            Ok(()) => return state.append(&joining),
            // The shim or the host's address changed since: look again.
            Err(e) if matches!(e.errno(), Some(libc::ENODEV | libc::EINVAL | libc::ENETDOWN)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let source = host_address(host, parent.index, false)?.ok_or_else(|| {
        EngineError::Invalid(format!(
            "hostAccess: parent {} has no IPv4 address for the host to reach its pods from",
            parent.name
        ))
    })?;
    let name = shim_name(parent.index);
    let mut guard = None;
    let index = match host.index_of(&name)? {
        Some(index) => index,
        None => {
            guard = Some(super::guard::Snapshot::take(&Netns::current()?, host, parent.index)?);
            faults.check(Step::HostShim)?;
            let ifname = IfName::new(&name)?;
            super::create_shim_link(host, (child.mode, child.ipvlan_flag), &ifname, parent.index)?;
            let index = host.index_of(&name)?.ok_or_else(|| KernelError::NoSuchLink {
                name: name.clone(),
                netns: "the host namespace".to_string(),
            })?;
            undo.push(UndoAction::DeleteHostLink { index });
            index
        }
    };
    host.set_up(index, true)?;
    // The pods routed before the shim went missing get their routes back.
    let mut routed = state.routed.clone();
    routed.extend(joining.into_iter().filter(|j| !state.routes(j.ip)));
    let known = KnownShim { index, source };
    faults.check(Step::HostRoute)?;
    route_all(host, known, &addresses(&routed), undo)?;
    if let Some(guard) = guard {
        guard.still_holds(&Netns::current()?, host)?;
    }
    state.shim = Some(known);
    state.routed = routed;
    state.save()
}

/// Routes each of `addresses` through `shim`, pushing the undo of each
/// route added. A route already there is the right one: a pod's address
/// released without its DEL (a crashed runtime) and leased again, or a
/// route the shim kept while the state lost track of it.
fn route_all(
    host: &mut RouteSocket,
    shim: KnownShim,
    addresses: &[IpAddr],
    undo: &mut UndoLog,
) -> std::result::Result<(), KernelError> {
    for ip in addresses {
        match host.add_host_route(*ip, shim.index, Some(shim.source)) {
            Ok(()) => undo
                .push(UndoAction::DeleteHostRoute { to: super::full_prefix(*ip), oif: shim.index }),
            Err(e) if e.errno() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Removes the routes of `pod` through the shim of the parent named
/// `parent` in this process's namespace, and the shim once no route goes
/// through it. A parent, shim or route already gone is not an error.
/// `None` for the parent: the interface of the default route, as at ADD.
pub fn leave(parent: Option<&str>, pod: &[IpAddr]) -> Result<()> {
    let v4: Vec<IpAddr> = pod.iter().copied().filter(IpAddr::is_ipv4).collect();
    if v4.is_empty() {
        return Ok(());
    }
    let Some((mut place, parent)) = host_and_parent(parent)? else { return Ok(()) };
    let mut state = MasterState::lock(&place.host, parent)?;
    unroute(&mut place.host, parent, &mut state, &v4)
}

/// GC of CNI network `network`: removes the routes through the shim of the
/// parent named `parent` (as for [`leave`]) of every attachment of that
/// network that `keep` does not name (container ID, interface), and the
/// shim once no route goes through it. Pods of other networks on the same
/// master keep theirs. Returns the addresses whose routes went.
pub fn collect(
    parent: Option<&str>,
    network: &str,
    keep: impl Fn(&str, &str) -> bool,
) -> Result<Vec<IpAddr>> {
    let Some((mut place, parent)) = host_and_parent(parent)? else { return Ok(Vec::new()) };
    let mut state = MasterState::lock(&place.host, parent)?;
    let gone: Vec<IpAddr> =
        state.routed.iter().filter(|r| !r.kept_by(network, &keep)).map(|r| r.ip).collect();
    // Nothing to collect, unless no pod is left at all: then a shim left
    // behind (by a DEL that never came) goes.
    if gone.is_empty() && !state.routed.is_empty() {
        return Ok(gone);
    }
    unroute(&mut place.host, parent, &mut state, &gone)?;
    Ok(gone)
}

/// This namespace's routing socket and the index of `parent` (`None`: the
/// interface of the default route); `None` when the parent is gone.
fn host_and_parent(parent: Option<&str>) -> Result<Option<(Place, u32)>> {
    let mut place = Place::here(Netns::current()?, false)?;
    let parent = match parent {
        Some(p) => p.to_string(),
        None => place.default_route_interface()?,
    };
    let index = place.host.index_of(&parent)?;
    Ok(index.map(|index| (place, index)))
}

/// Removes the routes of `v4` through the shim of `parent` and forgets
/// them, then the shim once no route goes through it.
fn unroute(
    host: &mut RouteSocket,
    parent: u32,
    state: &mut MasterState,
    v4: &[IpAddr],
) -> Result<()> {
    state.routed.retain(|r| !v4.contains(&r.ip));
    let Some(index) = host.index_of(&shim_name(parent))? else {
        // Gone already: the other pods keep their claim for the ADD that
        // makes it again; the last pod's DEL leaves nothing to report.
        if state.routed.is_empty() {
            state.shim = None;
        }
        return state.save();
    };
    for ip in v4 {
        match host.delete_host_route(*ip, index) {
            Ok(()) => {}
            Err(KernelError::Netlink { errno, .. })
                if errno == libc::ESRCH || errno == libc::ENOENT => {}
            Err(e) => return Err(e.into()),
        }
    }
    // The last pod the state knows; the kernel's routes have the last word
    // (pods routed by a plugin older than the state file).
    if state.routed.is_empty()
        && !host.routes()?.iter().any(|r| r.oif == Some(index) && r.destination.prefix_len() == 32)
    {
        match host.delete_link(index) {
            Ok(()) => {}
            Err(KernelError::Netlink { errno, .. }) if errno == libc::ENODEV => {}
            Err(e) => return Err(e.into()),
        }
        state.shim = None;
    }
    state.save()
}

/// STATUS: why the host cannot reach pods of parent `parent` (its index in
/// this process's namespace) that were routed through its shim, if it
/// cannot: the shim is gone (deleted by hand) while pods still need it.
pub fn missing(host: &mut RouteSocket, parent: u32, parent_name: &str) -> Result<Option<String>> {
    let routed = addresses(&MasterState::routed_pods(host, parent)?);
    let name = shim_name(parent);
    if routed.is_empty() || host.index_of(&name)?.is_some() {
        return Ok(None);
    }
    let pods: Vec<String> = routed.iter().map(IpAddr::to_string).collect();
    Ok(Some(format!(
        "hostAccess: shim {name} of master {parent_name} is gone, so the host no longer reaches \
         its {} pod(s) there ({}); the next ADD on {parent_name} makes it again and routes them \
         all through it, and DEL of those pods forgets them",
        pods.len(),
        pods.join(", ")
    )))
}
