//! ADD for the link plugins: the configuration into the engine's request,
//! the link made (`endpoint::create_link`), the addresses leased through
//! IPAM, the routes planned (`endpoint::plan_routes`: the default route
//! through the IPAM gateway unless `noDefaultRoute`) and the link configured
//! (`endpoint::configure`), all on one undo log; on failure everything is
//! undone and the lease released. Then the result, with chained interfaces.

use ipnet::IpNet;
use nicslice_engine::endpoint::{
    self, AddressPlan, Place, Policy, Route, RouteSpec, Via, plan_routes,
};
use nicslice_engine::shim;
use nicslice_engine::undo::UndoLog;
use nicslice_engine::{Faults, Step};

use super::{child_spec, open_netns, probe, resolve_parent, undo_all};
use crate::conf::NetConf;
use crate::delegate::{self, Ipam};
use crate::env::{CallEnv, Verb};
use crate::error::{CniError, Code, Result};
use crate::linkconf::{Family, LinkConf};
use crate::result::{CniResult, Interface, IpConfig, RouteConfig};

/// The IPAM half: lease addresses (nothing when no IPAM is configured).
fn lease(ipam: Option<&Ipam>, net: &NetConf, env: &CallEnv) -> Result<CniResult> {
    let Some(ipam) = ipam else { return Ok(CniResult::default()) };
    let r = delegate::run(ipam, Verb::Add, net, env)?.unwrap_or_default();
    if r.ips.is_empty() {
        release(ipam, net, env);
        return Err(CniError::new(Code::Ipam, "IPAM plugin returned missing IP config"));
    }
    Ok(r)
}

/// Best-effort IPAM DEL after a failed ADD; its own failure is reported on stderr.
fn release(ipam: &Ipam, net: &NetConf, env: &CallEnv) {
    if let Err(e) = delegate::run(ipam, Verb::Del, net, env) {
        eprintln!("nicslice: releasing the addresses of the failed ADD also failed: {e}");
    }
}

/// The routes to add, in the engine's terms: IPAM's (a route without `gw`
/// goes through the gateway of its family, as the reference plugins read
/// it), then a default route per family unless `noDefaultRoute`.
fn routes(
    conf: &LinkConf,
    ips: &[IpConfig],
    ipam_routes: &[RouteConfig],
    noarp: bool,
) -> Vec<Route> {
    let addresses: Vec<AddressPlan> = ips
        .iter()
        .map(|i| AddressPlan { address: i.address, gateway: i.gateway, gateway_named: false })
        .collect();
    let extra: Vec<RouteSpec> = ipam_routes
        .iter()
        .map(|r| RouteSpec {
            destination: r.dst,
            via: r.gw.map_or(Via::FamilyGateway, Via::Gateway),
            metric: r.priority,
        })
        .collect();
    plan_routes(&addresses, &extra, !conf.no_default_route, noarp)
}

/// A route the kernel took, as the result reports it (with the 1.1 fields
/// IPAM gave it).
fn route_config(added: &Route, ipam_routes: &[RouteConfig]) -> RouteConfig {
    let from_ipam = ipam_routes.iter().find(|r| r.dst == added.destination);
    RouteConfig {
        gw: added.gateway,
        priority: added.metric,
        ..from_ipam.cloned().unwrap_or_else(|| RouteConfig::to(added.destination, None))
    }
}

/// ADD: returns the result to print. Validates and creates the link, then
/// leases the addresses (IPAM), then configures the link; a failing step
/// undoes the earlier ones. One thread: IPAM on a second one, overlapping the
/// link work, was measured slower. The thread started 0.6 ms after it was
/// spawned (the wake-up of an idle vCPU), longer than the work it overlapped,
/// and with the machine busy (a node starting many pods at once) ADD's
/// median went from 5.6 to 8.6 ms.
pub fn add(family: Family, net: &NetConf, env: &CallEnv, faults: Faults) -> Result<CniResult> {
    let conf = LinkConf::parse(family, net, env)?;
    let ifname = env.valid_ifname()?;
    let ipam = net.ipam_type().map(|t| delegate::find(t, env)).transpose()?;
    faults.check(Step::Allocate)?;
    let mut place = Place::here(open_netns(&env.netns)?, conf.link_in_container)?;
    let parent = resolve_parent(&conf, &mut place)?;
    let child = child_spec(&conf);
    let mut undo = UndoLog::default();
    let request = child.link(ifname, &parent);
    let link = match endpoint::create_link(&request, &parent, &mut place, faults, &mut undo) {
        Ok(link) => link,
        Err(e) => return Err(undo_all(&mut place, undo, e.into())),
    };
    // The previous plugin's result, when this ipvlan is chained after it.
    let chained_after = net.prev_result.as_ref().filter(|_| conf.chained);
    let ipam_result = match (&ipam, chained_after) {
        // Chained without IPAM: the previous plugin's addresses, as the
        // reference ipvlan plugin takes them.
        (None, Some(prev)) => CniResult { interfaces: Vec::new(), ..prev.clone() },
        _ => match lease(ipam.as_ref(), net, env) {
            Ok(r) => r,
            Err(e) => return Err(undo_all(&mut place, undo, e)),
        },
    };
    // A chained plugin passes the interfaces before it through (the spec's
    // rule for a chain) and adds its own; the addresses are on the new one.
    let mut interfaces = chained_after.map(|prev| prev.interfaces.clone()).unwrap_or_default();
    let ours = interfaces.len();
    let mut ips: Vec<IpConfig> =
        ipam_result.ips.iter().map(|i| IpConfig { interface: Some(ours), ..i.clone() }).collect();
    let planned = routes(&conf, &ips, &ipam_result.routes, child.is_noarp());
    let mut addresses: Vec<IpNet> = ips.iter().map(|i| i.address).collect();
    let configured = match conf.probe {
        // issue 14: each address claimed on the wire first (link/probe.rs).
        Some(spec) => {
            let new = probe::NewLink {
                link: &link,
                request: &request,
                parent: &parent,
                parent_in_target: conf.link_in_container,
            };
            let claimed = probe::configure_claiming(
                spec,
                &new,
                &mut addresses,
                &planned,
                net,
                env,
                &mut place,
                faults,
                &mut undo,
            );
            ips.iter_mut().zip(&addresses).for_each(|(ip, a)| ip.address = *a);
            claimed
        }
        None => endpoint::configure(
            &link,
            &addresses,
            &planned,
            Policy::CNI,
            &mut place,
            faults,
            &mut undo,
        )
        .map_err(CniError::from),
    };
    // hostAccess: the pod's addresses routed from the host through the
    // master's shared shim, on the same undo log.
    let configured = configured.and_then(|added| {
        if conf.host_access {
            let ips: Vec<std::net::IpAddr> = addresses.iter().map(IpNet::addr).collect();
            let owner = shim::shared::Attachment {
                network: net.name.clone(),
                container_id: env.container_id.clone(),
                ifname: env.ifname.clone(),
            };
            shim::shared::join(&mut place, (&parent, &child), &ips, &owner, faults, &mut undo)?;
        }
        Ok(added)
    });
    let added = match configured {
        Ok(added) => added,
        Err(e) => {
            let e = undo_all(&mut place, undo, e);
            if let Some(ipam) = &ipam {
                release(ipam, net, env);
            }
            return Err(e);
        }
    };
    undo.commit();
    interfaces.push(Interface {
        name: link.name.clone(),
        mac: link.mac.map(|m| m.to_string()).unwrap_or_default(),
        mtu: Some(link.mtu),
        sandbox: env.netns.clone(),
        ..Default::default()
    });
    let dns = if net.dns.is_empty() { ipam_result.dns } else { net.dns.clone() };
    // A default route the namespace already had was kept, not added: it is
    // not in `added`, and not in the result.
    let routes = added.iter().map(|r| route_config(r, &ipam_result.routes)).collect();
    Ok(CniResult { interfaces, ips, routes, dns })
}
