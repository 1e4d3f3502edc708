//! Host access: the shim that lets the host reach its own macvlan/ipvlan
//! children (seed 000's `mac0`, made and kept by nicslice). One per network,
//! in the parents' namespace: a bridge-mode macvlan on the parent for a
//! macvlan network, for an ipvlan network a child in the parent's own mode
//! and flag. Every endpoint address gets a host route through it (`ip route
//! add CHILD/32 dev SHIM src HOST`), added on attach and removed on detach;
//! or, where the user asks for it (`--route-range`), the network's
//! allocation range (its `--ip-range`, else its subnet) is routed through the
//! shim once, and attach and detach leave the host's routes alone. A range
//! that equals or covers a route of the parent's (its subnet route), or that
//! holds a gateway the host reaches through the parent, is refused: the
//! shim never takes over the parent's routes.
//!
//! Addresses: for IPv4 the shim borrows the host's own address on the parent
//! as the routes' source (no address of the pool spent; the host answers ARP
//! for it on the shim, arp_ignore 0). IPv6 neighbour discovery answers only
//! for addresses on the asking interface, so for IPv6 (and for IPv4 where the
//! parent has no address or `arp_ignore` is set) the shim takes an address of
//! the network's pool, as a /32 or /128 so that it never takes over the
//! parent's subnet route; `--ip` chooses it.
//!
//! Before the kernel is touched the reachability model must agree that the
//! shim will reach the children (`model.rs`); before the change is recorded
//! the host must still reach what it reached (`guard.rs`). Any failure undoes
//! every step.

mod guard;
mod model;
pub mod shared;
mod shared_state;

use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_kernel::ipvlan::IpvlanLinkRequest;
use nicslice_kernel::signals::Shield;
use nicslice_kernel::{KernelError, MacvlanLinkRequest, RouteSocket, sysctl};
use nicslice_model::rules::LinkSettings;
use nicslice_model::{IfName, LinkMode, MacvlanMode, ValidNetwork};
use nicslice_store::{NetworkId, ShimRecord, StoreRead, WriteTx};
use serde::Serialize;

use crate::Engine;
use crate::error::{EngineError, Result};
use crate::fault::Step;
use crate::undo::{Sockets, UndoAction, UndoLog};

/// `nicslice shim add`.
#[derive(Debug, Clone)]
pub struct ShimRequest {
    pub network: String,
    /// Default: `nsh-` and the network's id.
    pub name: Option<IfName>,
    /// Addresses of the pool for the shim itself, at most one per family.
    pub ips: Vec<IpAddr>,
    /// Route the network's allocation ranges through the shim instead of a
    /// host route per endpoint.
    pub route_range: bool,
}

/// A shim as users read it.
#[derive(Debug, Clone, Serialize)]
pub struct ShimView {
    pub network: String,
    pub name: String,
    pub mac: Option<String>,
    /// Addresses on the shim, leased from the network's pool.
    pub addresses: Vec<IpAddr>,
    /// The host's addresses borrowed as the source of its routes.
    pub sources: Vec<IpAddr>,
    /// The endpoint addresses with a host route through it.
    pub routes: Vec<IpAddr>,
    /// The network's ranges routed through it as a whole (`--route-range`).
    pub ranges: Vec<IpNet>,
}

/// `endpoints`: every endpoint address of the network; those inside a
/// range routed as a whole have no route of their own.
fn view(network: &str, shim: &ShimRecord, endpoints: Vec<IpAddr>) -> ShimView {
    ShimView {
        network: network.to_string(),
        name: shim.name.clone(),
        mac: shim.mac.map(|m| m.to_string()),
        addresses: shim.addresses.clone(),
        sources: shim.sources.clone(),
        routes: own_routes(shim, &endpoints),
        ranges: shim.ranges.clone(),
    }
}

/// Those of `addresses` that need a host route of their own through
/// `shim`: the ones outside every range it routes as a whole.
fn own_routes(shim: &ShimRecord, addresses: &[IpAddr]) -> Vec<IpAddr> {
    addresses.iter().copied().filter(|ip| !shim.ranges.iter().any(|r| r.contains(ip))).collect()
}

/// The source of the routes of `ip`'s family through `shim`.
fn source_for(shim: &ShimRecord, ip: IpAddr) -> Option<IpAddr> {
    let same = |a: &&IpAddr| a.is_ipv6() == ip.is_ipv6();
    shim.addresses.iter().find(same).or_else(|| shim.sources.iter().find(same)).copied()
}

pub(crate) fn full_prefix(ip: IpAddr) -> IpNet {
    IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 })
        .unwrap_or_else(|_| unreachable!("a full-length prefix"))
}

/// Adds a host route to each of `addresses` through `shim` (index `index`),
/// pushing their undo. A route already there is someone else's: refused.
pub(crate) fn route_through(
    host: &mut RouteSocket,
    shim: &ShimRecord,
    index: u32,
    addresses: &[IpAddr],
    undo: &mut UndoLog,
) -> Result<()> {
    let each = own_routes(shim, addresses).into_iter().map(full_prefix);
    for to in shim.ranges.iter().copied().chain(each) {
        match host.add_device_route(to, index, source_for(shim, to.addr())) {
            Ok(()) => undo.push(UndoAction::DeleteHostRoute { to, oif: index }),
            Err(e) if e.errno() == Some(libc::EEXIST) => {
                let to = if to == full_prefix(to.addr()) {
                    to.addr().to_string()
                } else {
                    to.to_string()
                };
                return Err(EngineError::Invalid(format!(
                    "the host already has a route to {to}; nicslice will not route it through shim {} as well",
                    shim.name
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Routes a new endpoint's `addresses` through the network's `shim`. A shim
/// link gone missing (deleted by hand) is skipped with a warning: the
/// endpoint works, and `nicslice endpoint check`/`shim ls` show the rest.
pub(crate) fn route_endpoint(
    host: &mut RouteSocket,
    shim: &ShimRecord,
    addresses: &[IpAddr],
    undo: &mut UndoLog,
) -> Result<()> {
    let own = own_routes(shim, addresses);
    if own.is_empty() {
        return Ok(());
    }
    // The ranges are routed already: only the endpoint's own routes.
    let shim = &ShimRecord { ranges: Vec::new(), ..shim.clone() };
    match host.index_of(&shim.name)? {
        Some(index) => route_through(host, shim, index, &own, undo),
        None => {
            tracing::warn!("shim {} is missing; the host cannot reach the new endpoint", shim.name);
            Ok(())
        }
    }
}

/// Removes the host routes of `addresses` through `shim`; a route already
/// gone (the shim deleted by hand) is not an error.
pub(crate) fn unroute(host: &mut RouteSocket, shim: &ShimRecord, addresses: &[IpAddr]) {
    let Ok(Some(index)) = host.index_of(&shim.name) else { return };
    for ip in &own_routes(shim, addresses) {
        match host.delete_host_route(*ip, index) {
            Ok(()) => {}
            Err(KernelError::Netlink { errno, .. })
                if errno == libc::ESRCH || errno == libc::ENOENT || errno == libc::ENODEV => {}
            Err(e) => tracing::warn!("could not remove the host route to {ip}: {e}"),
        }
    }
}

/// The allocation ranges of `valid` (each subnet's `--ip-range`, else the
/// subnet), refused where one would take a route of the host's through
/// `parent`: one that equals or covers a route's destination (the parent's
/// subnet route: the host would send its whole LAN through the shim), or
/// holds a gateway reached through the parent.
fn ranges_of(
    valid: &ValidNetwork,
    host: &mut RouteSocket,
    parent: &nicslice_kernel::Link,
) -> Result<Vec<IpNet>> {
    let routes: Vec<_> =
        host.routes()?.into_iter().filter(|r| r.oif == Some(parent.index)).collect();
    let mut out = Vec::new();
    for s in valid.subnets() {
        let range = s.spec().ip_range.unwrap_or(s.subnet());
        let fix = format!(
            "give network {} an --ip-range inside its subnet that the host does not use, or leave \
             out --route-range for a host route per endpoint",
            valid.name
        );
        // The subnet routes first: the plainer reason when both hold.
        for r in &routes {
            if range.contains(&r.destination) {
                let what = if range == r.destination { "is" } else { "covers" };
                return Err(EngineError::Invalid(format!(
                    "--route-range: {range} {what} the host's route to {} on {}, which the shim \
                     must never take over; {fix}",
                    r.destination, parent.name
                )));
            }
        }
        for r in &routes {
            if let Some(gw) = r.gateway.filter(|g| range.contains(g)) {
                return Err(EngineError::Invalid(format!(
                    "--route-range: {range} holds {gw}, the host's gateway on {}, which the shim \
                     must never take over; {fix}",
                    parent.name
                )));
            }
        }
        out.push(range);
    }
    Ok(out)
}

/// The host's first global address of `v6`'s family on interface `index`.
fn host_address(host: &mut RouteSocket, index: u32, v6: bool) -> Result<Option<IpAddr>> {
    let global = crate::topology::global(host.addresses(Some(index))?);
    Ok(global.into_iter().map(|a| a.addr()).find(|a| a.is_ipv6() == v6))
}

/// Why a shim on network `network` (children with `settings` on parent
/// `parent`) would not reach its children, in the reachability model's
/// words, if it would not: the refusal of `shim add`, and of a CNI
/// configuration with `"hostAccess": true`.
pub fn refusal(network: &str, parent: &str, settings: &LinkSettings) -> Option<String> {
    let asked = model::Asked { name: network, parent, settings: *settings };
    model::refusal(&asked, None).map(|why| sentence(network, &why))
}

fn sentence(network: &str, why: &str) -> String {
    format!("a shim on network {network} would not reach its children: {why}")
}

/// Whether a shim beside children in `mode` can send from the host's own
/// address on the parent. Not on an ipvlan l2 port: ipvlan hands a frame
/// for the port's (shared) MAC to the child that owns its IP address, and to
/// the parent when none does, so the children's replies to the borrowed
/// address reach the parent, never the shim (seen in the VM stage); and the
/// address on the shim as well would take the parent's own ARP replies (the
/// host lost its gateway). Macvlan (a MAC of the shim's own) and ipvlan
/// l3/l3s (no ARP; replies routed by the host) can.
pub fn can_borrow(mode: LinkMode) -> bool {
    mode != LinkMode::Ipvlan(nicslice_model::IpvlanMode::L2)
}

/// Whether the host answers ARP on the shim for an address of another of
/// its interfaces (`arp_ignore` 0 everywhere that counts).
fn answers_arp_for_others(host_ns: &nicslice_kernel::Netns) -> bool {
    host_ns
        .run(|| {
            ["all", "default"].iter().all(|c| {
                sysctl::read(&format!("net/ipv4/conf/{c}/arp_ignore")).is_ok_and(|v| v == "0")
            })
        })
        .unwrap_or(false)
}

impl Engine {
    /// Makes the shim of a network and routes its endpoints through it.
    pub fn add_shim(&mut self, req: ShimRequest) -> Result<ShimView> {
        let record = self.network_record(&req.network)?;
        let valid = record.validate()?;
        let spec = valid.spec().clone();
        let subnet = spec.subnets.iter().map(|s| s.subnet).min_by_key(|s| s.addr().is_ipv6());
        if let Some(why) = model::refusal(&model::Asked::from(&spec), subnet) {
            return Err(EngineError::Invalid(sentence(spec.name.as_str(), &why)));
        }
        let name = match req.name.clone() {
            Some(n) => n,
            None => IfName::new(&format!("nsh-{}", record.id.0))?,
        };
        let mut host = self.host_socket()?;
        if host.index_of(name.as_str())?.is_some() {
            return Err(EngineError::Invalid(format!(
                "an interface named {name} already exists in {}; choose another --name",
                self.host.label()
            )));
        }
        let parent = host.link_by_name(spec.parent.as_str())?.ok_or_else(|| {
            EngineError::NotFound(format!(
                "parent {} of network {} does not exist in {}",
                spec.parent,
                spec.name,
                self.host.label()
            ))
        })?;
        let ranges = match req.route_range {
            true => ranges_of(&valid, &mut host, &parent)?,
            false => Vec::new(),
        };
        let borrow_v4 = answers_arp_for_others(&self.host) && can_borrow(spec.mode);
        let mut sources = Vec::new();
        if borrow_v4
            && !req.ips.iter().any(IpAddr::is_ipv4)
            && let Some(v4) = host_address(&mut host, parent.index, false)?
        {
            sources.push(v4);
        }
        let snapshot = guard::Snapshot::take(&self.host, &mut host, parent.index)?;
        let faults = self.faults;
        let mut undo = UndoLog::default();
        let result = (|| -> Result<ShimView> {
            let tx = self.store.write()?;
            if let Some(old) = tx.shim(record.id)? {
                return Err(EngineError::Invalid(format!(
                    "network {} already has shim {}; `nicslice shim rm {}` first",
                    spec.name, old.name, spec.name
                )));
            }
            let addresses = lease_addresses(&tx, &valid, record.id, &req.ips, &sources)?;
            faults.check(Step::CreateLink)?;
            create_shim_link(&mut host, (spec.mode, spec.ipvlan_flag), &name, parent.index)?;
            let link = host.require_link(name.as_str(), self.host.label())?;
            undo.push(UndoAction::DeleteHostLink { index: link.index });
            for ip in &addresses {
                faults.check(Step::AddAddress)?;
                host.add_address(link.index, full_prefix(*ip))?;
            }
            faults.check(Step::LinkUp)?;
            host.set_up(link.index, true)?;
            let shim = ShimRecord {
                network_id: record.id,
                name: name.to_string(),
                mac: link.mac,
                addresses,
                sources: sources.clone(),
                ranges: ranges.clone(),
            };
            let routed = endpoint_addresses(&tx, record.id)?;
            faults.check(Step::AddRoute)?;
            route_through(&mut host, &shim, link.index, &routed, &mut undo)?;
            snapshot.still_holds(&self.host, &mut host)?;
            tx.insert_shim(&shim)?;
            faults.check(Step::StoreCommit)?;
            tx.commit()?;
            Ok(view(spec.name.as_str(), &shim, routed))
        })();
        match result {
            Ok(v) => {
                undo.commit();
                Ok(v)
            }
            Err(e) => Err(undo.abort(e, &mut Sockets { host: &mut host, target: None })),
        }
    }

    /// Removes the shim of a network (its routes go with it) and releases
    /// its addresses. Returns what was removed.
    pub fn remove_shim(&mut self, network: &str) -> Result<ShimView> {
        let record = self.network_record(network)?;
        let mut host = self.host_socket()?;
        let faults = self.faults;
        let tx = self.store.write()?;
        let shim = tx.shim(record.id)?.ok_or_else(|| {
            EngineError::NotFound(format!(
                "network {network} has no shim; `nicslice shim ls` lists them"
            ))
        })?;
        let routed = endpoint_addresses(&tx, record.id)?;
        let index = forget(&tx, &mut host, record.id, &shim, faults)?;
        faults.check(Step::StoreCommit)?;
        // From the commit to the link's delete, a stop signal waits.
        let _shield = Shield::raise()?;
        tx.commit()?;
        delete_link(&mut host, &shim.name, index)?;
        Ok(view(network, &shim, routed))
    }

    /// Every shim, by network.
    pub fn list_shims(&mut self) -> Result<Vec<ShimView>> {
        let tx = self.store.read()?;
        let mut out = Vec::new();
        for shim in tx.shims()? {
            let Some(net) = tx.network(shim.network_id)? else { continue };
            let routed = endpoint_addresses(&tx, shim.network_id)?;
            out.push(view(net.spec.name.as_str(), &shim, routed));
        }
        Ok(out)
    }
}

/// Forgets the shim inside `tx` (its addresses released, its record gone)
/// once its link is known to be still the one nicslice made; returns that
/// link's index, for [`delete_link`] to delete after `tx` commits. The
/// removal is recorded before the kernel changes: a failed step or commit
/// leaves the shim, its routes and its record as they were, and a process
/// stopped between the commit and the delete leaves a link no record names,
/// never a record naming a link that is gone.
pub(crate) fn forget(
    tx: &WriteTx<'_>,
    host: &mut RouteSocket,
    network: NetworkId,
    shim: &ShimRecord,
    faults: crate::Faults,
) -> Result<Option<u32>> {
    let index = match host.link_by_name(&shim.name)? {
        Some(link) => {
            let ours = link.mac == shim.mac
                && link.kind.as_deref().is_some_and(|k| k == "macvlan" || k == "ipvlan");
            if !ours {
                return Err(EngineError::Invalid(format!(
                    "interface {} is no longer the shim nicslice made (another kind or MAC); left it alone",
                    shim.name
                )));
            }
            Some(link.index)
        }
        None => None,
    };
    for ip in &shim.addresses {
        tx.release_address(network, *ip)?;
    }
    tx.delete_shim(network)?;
    faults.check(Step::DeleteLink)?;
    Ok(index)
}

/// Deletes the link of a shim already forgotten ([`forget`]); its routes go
/// with it. Gone already is not an error.
pub(crate) fn delete_link(host: &mut RouteSocket, shim: &str, index: Option<u32>) -> Result<()> {
    let Some(index) = index else { return Ok(()) };
    match host.delete_link(index) {
        Ok(()) => Ok(()),
        Err(KernelError::Netlink { errno, .. }) if errno == libc::ENODEV => Ok(()),
        Err(e) => Err(EngineError::Invalid(format!(
            "shim {shim} is forgotten but its link could not be deleted ({e}); `ip link del {shim}` removes it"
        ))),
    }
}

/// Every address leased to an endpoint of `network`.
fn endpoint_addresses(tx: &impl StoreRead, network: NetworkId) -> Result<Vec<IpAddr>> {
    Ok(tx
        .leases_in(network)?
        .into_iter()
        .filter(|l| l.endpoint_id.is_some())
        .map(|l| l.ip)
        .collect())
}

/// The shim's own addresses: those asked for, and one of the pool for each
/// family of the network that has neither an address asked for nor a
/// borrowed source.
fn lease_addresses(
    tx: &WriteTx<'_>,
    valid: &ValidNetwork,
    network: NetworkId,
    wanted: &[IpAddr],
    sources: &[IpAddr],
) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        let subnets: Vec<usize> = (0..valid.subnets().len())
            .filter(|&i| valid.subnets()[i].subnet().addr().is_ipv6() == v6)
            .collect();
        let Some(&first) = subnets.first() else { continue };
        let asked: Vec<IpAddr> = wanted.iter().copied().filter(|ip| ip.is_ipv6() == v6).collect();
        if asked.len() > 1 {
            return Err(EngineError::Invalid(format!(
                "--ip {asked:?}: give the shim at most one address per family"
            )));
        }
        if let Some(ip) = asked.first() {
            let i = subnets
                .iter()
                .copied()
                .find(|&i| valid.subnets()[i].subnet().contains(ip))
                .ok_or_else(|| {
                    EngineError::Invalid(format!(
                        "--ip {ip} is in no subnet of network {}",
                        valid.name
                    ))
                })?;
            out.push(tx.allocate(network, i, Some(*ip), None)?.ip);
        } else if !sources.iter().any(|s| s.is_ipv6() == v6) {
            out.push(tx.allocate(network, first, None, None)?.ip);
        }
    }
    Ok(out)
}

/// Creates a shim named `name` on the parent with index `parent`, in the
/// namespace of `host`: a bridge-mode macvlan beside macvlan children, an
/// ipvlan child in the port's own mode and flag beside ipvlan ones.
pub(crate) fn create_shim_link(
    host: &mut RouteSocket,
    (mode, ipvlan_flag): (LinkMode, nicslice_model::IpvlanFlag),
    name: &IfName,
    parent: u32,
) -> Result<()> {
    match mode {
        LinkMode::Macvlan(_) => {
            let req = MacvlanLinkRequest::new(
                nicslice_model::Driver::Macvlan,
                name.clone(),
                parent,
                MacvlanMode::Bridge,
            );
            host.create_macvlan(&req, None)?;
        }
        LinkMode::Ipvlan(mode) => {
            let req = IpvlanLinkRequest {
                tap: false,
                name: name.clone(),
                parent_index: parent,
                mode,
                flag: ipvlan_flag,
                mtu: None,
            };
            host.create_ipvlan(&req, None)?;
        }
    }
    Ok(())
}
