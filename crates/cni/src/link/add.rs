//! ADD for the link plugins: validate (config, names, master, MTU), lease
//! addresses through IPAM, plan the endpoint (link, addresses, routes with
//! the default route through the IPAM gateway unless `noDefaultRoute`),
//! realize it (`plumb`) with an undo log, and on failure undo and release
//! the lease.

use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_engine::undo::{Sockets, UndoLog};
use nicslice_engine::{Faults, Step};
use nicslice_kernel::ipvlan::IpvlanLinkRequest;
use nicslice_kernel::placement::ChildLink;
use nicslice_kernel::{LinkBrief, MacvlanLinkRequest, Netns, Route, RouteSocket};
use nicslice_model::{IfName, IpvlanMode};

use super::plumb::{configure, create_link};
use super::{open_netns, parent_name};
use crate::conf::NetConf;
use crate::delegate::{self, Ipam};
use crate::env::{CallEnv, Verb};
use crate::error::{CniError, Code, Result};
use crate::linkconf::{Family, KindConf, LinkConf};
use crate::result::{CniResult, Interface, IpConfig, RouteConfig};

/// Everything checked before the first change.
struct Checked {
    conf: LinkConf,
    ifname: IfName,
    target_ns: Netns,
    host: RouteSocket,
    target: RouteSocket,
    parent_name: String,
    parent_index: u32,
}

fn validate(conf: LinkConf, ifname: IfName, env: &CallEnv) -> Result<Checked> {
    let target_ns = open_netns(&env.netns)?;
    let (mut host, target) = if conf.link_in_container {
        (RouteSocket::open_in(&target_ns)?, RouteSocket::open_in(&target_ns)?)
    } else {
        // The plugin runs in the host namespace: its socket needs no
        // namespace handle, and it tells the way back from the container's.
        let host = RouteSocket::open_here()?;
        let target = host.open_beside_in(&target_ns)?;
        (host, target)
    };
    let parent_name = parent_name(&conf, &mut host)?;
    let where_ =
        if conf.link_in_container { "the container's namespace" } else { "the host namespace" };
    let missing = || CniError::config(format!("master {parent_name} does not exist in {where_}"));
    // Only the index is needed unless an MTU is to be checked against the
    // master's: then the whole link is read.
    let parent_index = match conf.mtu {
        None => host.index_of(&parent_name)?.ok_or_else(missing)?,
        Some(mtu) => {
            let parent = host.link_by_name(&parent_name)?.ok_or_else(missing)?;
            if mtu > parent.mtu {
                return Err(CniError::config(format!(
                    "invalid MTU {mtu}, must be at most the master's MTU ({} on {parent_name})",
                    parent.mtu
                )));
            }
            parent.index
        }
    };
    Ok(Checked { conf, ifname, target_ns, host, target, parent_name, parent_index })
}

fn child_link(c: &Checked) -> ChildLink {
    let conf = &c.conf;
    match &conf.kind {
        KindConf::Macvlan { mode, flags, bcqueuelen, bclim, source_macs } => {
            ChildLink::Macvlan(MacvlanLinkRequest {
                driver: conf.driver,
                name: c.ifname.clone(),
                parent_index: c.parent_index,
                mode: *mode,
                flags: *flags,
                mtu: conf.mtu,
                mac: conf.mac,
                bcqueuelen: *bcqueuelen,
                bclim: *bclim,
                source_macs: source_macs.clone(),
            })
        }
        KindConf::Ipvlan { mode, flag } => ChildLink::Ipvlan(IpvlanLinkRequest {
            tap: conf.driver.has_tap(),
            name: c.ifname.clone(),
            parent_index: c.parent_index,
            mode: *mode,
            flag: *flag,
            mtu: conf.mtu,
        }),
    }
}

/// The routes to add: IPAM's (a route without `gw` goes through the
/// gateway of its family, as the reference plugins do), then one default
/// route per family through that family's gateway unless one is listed or
/// `noDefaultRoute` is set (seed 000: without it nothing crosses subnets).
/// ipvlan l3/l3s children have no neighbours: their default route goes
/// straight through the device.
fn plan_routes(conf: &LinkConf, ips: &[IpConfig], ipam_routes: &[RouteConfig]) -> Vec<RouteConfig> {
    let gateway_of = |v6: bool| ips.iter().filter_map(|i| i.gateway).find(|g| g.is_ipv6() == v6);
    let mut routes: Vec<RouteConfig> = ipam_routes
        .iter()
        .map(|r| RouteConfig {
            gw: r.gw.or_else(|| gateway_of(r.dst.addr().is_ipv6())),
            ..r.clone()
        })
        .collect();
    if conf.no_default_route {
        return routes;
    }
    let through_device =
        matches!(conf.kind, KindConf::Ipvlan { mode: IpvlanMode::L3 | IpvlanMode::L3s, .. });
    for v6 in [false, true] {
        let has_family = ips.iter().any(|i| i.address.addr().is_ipv6() == v6);
        let has_default =
            routes.iter().any(|r| r.dst.prefix_len() == 0 && r.dst.addr().is_ipv6() == v6);
        if !has_family || has_default {
            continue;
        }
        let dst = if v6 { IpNet::V6(Default::default()) } else { IpNet::V4(Default::default()) };
        match (through_device, gateway_of(v6)) {
            (true, _) => routes.push(RouteConfig::to(dst, None)),
            (false, Some(gw)) => routes.push(RouteConfig::to(dst, Some(gw))),
            (false, None) => {}
        }
    }
    routes
}

fn kernel_route(r: &RouteConfig) -> Route {
    Route { destination: r.dst, gateway: r.gw, oif: None, metric: r.priority }
}

/// The kernel half up to the new link, on the calling thread.
fn make_link(
    conf: LinkConf,
    ifname: IfName,
    env: &CallEnv,
    faults: Faults,
    undo: &mut UndoLog,
) -> Result<(Checked, LinkBrief)> {
    let mut c = validate(conf, ifname, env)?;
    let link = create_link(
        &child_link(&c),
        &c.parent_name,
        &mut c.host,
        &c.target_ns,
        &mut c.target,
        faults,
        undo,
    )?;
    Ok((c, link))
}

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

/// Undoes `undo` on the sockets of `c` (or with fresh ones when validation
/// failed before opening them) and joins the undo's errors to `e`.
fn undo_all(undo: UndoLog, c: Option<&mut Checked>, e: CniError) -> CniError {
    let Some(c) = c else { return e };
    match undo.rollback(&mut Sockets { host: &mut c.host, target: Some(&mut c.target) }) {
        Ok(()) => e,
        Err(undo) => CniError { msg: format!("{}; undoing also failed: {undo}", e.msg), ..e },
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
    let mut undo = UndoLog::default();
    // create_link pushes its undo only once the link exists, with its sockets.
    let (mut c, link) = make_link(conf, ifname, env, faults, &mut undo)?;
    // The previous plugin's result, when this ipvlan is chained after it.
    let chained_after = net.prev_result.as_ref().filter(|_| c.conf.chained);
    let ipam_result = match (&ipam, chained_after) {
        // Chained without IPAM: the previous plugin's addresses, as the
        // reference ipvlan plugin takes them.
        (None, Some(prev)) => CniResult { interfaces: Vec::new(), ..prev.clone() },
        _ => match lease(ipam.as_ref(), net, env) {
            Ok(r) => r,
            Err(e) => return Err(undo_all(undo, Some(&mut c), e)),
        },
    };
    // A chained plugin passes the interfaces before it through (the spec's
    // rule for a chain) and adds its own; the addresses are on the new one.
    let mut interfaces = chained_after.map(|prev| prev.interfaces.clone()).unwrap_or_default();
    let ours = interfaces.len();
    let ips: Vec<IpConfig> =
        ipam_result.ips.iter().map(|i| IpConfig { interface: Some(ours), ..i.clone() }).collect();
    let routes = plan_routes(&c.conf, &ips, &ipam_result.routes);
    let addresses: Vec<IpNet> = ips.iter().map(|i| i.address).collect();
    let kernel_routes: Vec<Route> = routes.iter().map(kernel_route).collect();
    let configured = configure(
        &link,
        &addresses,
        &kernel_routes,
        &c.target_ns,
        &mut c.target,
        faults,
        &mut undo,
    );
    let added = match configured {
        Ok(added) => added,
        Err(e) => {
            let e = undo_all(undo, Some(&mut c), e);
            if let Some(ipam) = &ipam {
                release(ipam, net, env);
            }
            return Err(e);
        }
    };
    undo.commit();
    let interface = Interface {
        name: c.ifname.to_string(),
        mac: link.mac.map(|m| m.to_string()).unwrap_or_default(),
        mtu: Some(link.mtu),
        sandbox: env.netns.clone(),
        ..Default::default()
    };
    let dns = if net.dns.is_empty() { ipam_result.dns } else { net.dns.clone() };
    // A default route the namespace already had was kept, not added: leave it out.
    let kept = |r: &RouteConfig| added.iter().any(|k| k.destination == r.dst && k.gateway == r.gw);
    let routes = routes.into_iter().filter(kept).collect();
    interfaces.push(interface);
    Ok(CniResult { interfaces, ips, routes, dns })
}

/// Best-effort IPAM DEL after a failed ADD; its own failure is reported on stderr.
fn release(ipam: &Ipam, net: &NetConf, env: &CallEnv) {
    if let Err(e) = delegate::run(ipam, Verb::Del, net, env) {
        eprintln!("nicslice: releasing the addresses of the failed ADD also failed: {e}");
    }
}

/// Whether `ip` is one of the result's addresses (for CHECK).
pub(super) fn has_address(addrs: &[(u32, IpNet)], index: u32, ip: IpAddr) -> bool {
    addrs.iter().any(|(i, a)| *i == index && a.addr() == ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(keys: &str) -> LinkConf {
        let json = format!(r#"{{"cniVersion":"1.1.0","name":"n","type":"t"{keys}}}"#);
        let net = NetConf::parse(json.into_bytes()).unwrap();
        let family = if keys.contains("l3") { Family::Ipvlan } else { Family::Macvlan };
        LinkConf::parse(family, &net, &CallEnv::default()).unwrap()
    }

    fn ip(addr: &str, gw: Option<&str>) -> IpConfig {
        IpConfig {
            address: addr.parse().unwrap(),
            gateway: gw.map(|g| g.parse().unwrap()),
            interface: Some(0),
        }
    }

    #[test]
    fn default_route_through_the_ipam_gateway() {
        let ips = [ip("10.0.0.2/24", Some("10.0.0.1")), ip("fd00::2/64", Some("fd00::1"))];
        let routes = plan_routes(&conf(""), &ips, &[]);
        let shown: Vec<String> = routes
            .iter()
            .map(|r| format!("{} via {:?}", r.dst, r.gw.map(|g| g.to_string())))
            .collect();
        assert_eq!(shown, ["0.0.0.0/0 via Some(\"10.0.0.1\")", "::/0 via Some(\"fd00::1\")"]);
        assert!(plan_routes(&conf(r#","noDefaultRoute":true"#), &ips, &[]).is_empty());
    }

    #[test]
    fn ipam_routes_get_their_family_gateway_and_win() {
        let ips = [ip("10.0.0.2/24", Some("10.0.0.1"))];
        let ipam = [
            RouteConfig::to("0.0.0.0/0".parse().unwrap(), None),
            RouteConfig::to("10.9.0.0/16".parse().unwrap(), Some("10.0.0.254".parse().unwrap())),
        ];
        let routes = plan_routes(&conf(""), &ips, &ipam);
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].gw, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(routes[1].gw, Some("10.0.0.254".parse().unwrap()));
    }

    #[test]
    fn ipvlan_l3_routes_through_the_device_and_l2_only_has_none() {
        let ips = [ip("10.0.0.2/24", Some("10.0.0.1"))];
        let routes = plan_routes(&conf(r#","mode":"l3""#), &ips, &[]);
        assert_eq!(routes[0].gw, None);
        assert!(plan_routes(&conf(""), &[], &[]).is_empty());
        // No gateway known: no default route.
        assert!(plan_routes(&conf(""), &[ip("10.0.0.2/24", None)], &[]).is_empty());
    }
}
