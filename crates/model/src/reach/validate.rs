//! Checks that a [`Topology`] describes something the kernel would build: unique
//! names, addresses and MACs, known ports and routers, modes that fit their kind, the
//! parent-level rules of macvlan/ipvlan, gateways and routes on link. No prediction.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::error::TopologyError;
use super::topology::{Child, ChildMode, Host, MacRef, Route, Topology};
use crate::link::IfName;

/// Runs every check, first failure wins.
pub(crate) fn check(t: &Topology) -> Result<(), TopologyError> {
    let names = check_names(t)?;
    check_ports(t)?;
    for r in &t.remotes {
        remote_router(t, &r.name, r.router.as_deref())?;
    }
    for h in &t.hosts {
        check_host(h, &names)?;
    }
    check_unique_addresses(t)?;
    check_unique_macs(t)?;
    check_routes(t)
}

/// The index of the router a remote hangs off.
pub(crate) fn remote_router(
    t: &Topology,
    remote: &str,
    router: Option<&str>,
) -> Result<usize, TopologyError> {
    let problem =
        |p: String| TopologyError::RemoteRouter { remote: remote.to_string(), problem: p };
    match router {
        Some(name) => t
            .routers
            .iter()
            .position(|r| r.name == name)
            .ok_or_else(|| problem(format!("router {name:?} does not exist"))),
        None if t.routers.len() == 1 => Ok(0),
        None => Err(problem(format!(
            "say which router it sits behind (`router = \"...\"`); there are {}",
            t.routers.len()
        ))),
    }
}

/// The switch port a host or router is plugged into (its own name when unset).
pub(crate) fn port_name<'a>(name: &'a str, port: Option<&'a str>) -> &'a str {
    port.unwrap_or(name)
}

fn check_names(t: &Topology) -> Result<HashSet<String>, TopologyError> {
    let mut all: Vec<(&'static str, &str)> = vec![("the switch", t.switch.name.as_str())];
    for h in &t.hosts {
        all.push(("a host", &h.name));
        all.extend(h.children.iter().map(|c| ("a child", c.name.as_str())));
        if let Some(s) = &h.shim {
            all.push(("a shim", &s.name));
        }
    }
    all.extend(t.routers.iter().map(|r| ("a router", r.name.as_str())));
    all.extend(t.remotes.iter().map(|r| ("a remote", r.name.as_str())));
    let mut seen = HashSet::new();
    for (what, name) in all {
        if name.trim().is_empty() {
            return Err(TopologyError::EmptyName { what });
        }
        if what == "a shim" {
            continue; // a shim is no endpoint; one per host may keep the default name
        }
        if !seen.insert(name.to_string()) {
            return Err(TopologyError::DuplicateName(name.to_string()));
        }
    }
    Ok(seen)
}

fn check_ports(t: &Topology) -> Result<(), TopologyError> {
    for (i, p) in t.switch.ports.iter().enumerate() {
        if p.name.trim().is_empty() {
            return Err(TopologyError::EmptyName { what: "a switch port" });
        }
        if t.switch.ports[..i].iter().any(|q| q.name == p.name) {
            return Err(TopologyError::DuplicatePort(p.name.clone()));
        }
    }
    let mut users: HashMap<&str, &str> = HashMap::new();
    let plugs = t.hosts.iter().map(|h| (h.name.as_str(), h.port.as_deref()));
    let plugs = plugs.chain(t.routers.iter().map(|r| (r.name.as_str(), r.port.as_deref())));
    for (who, port) in plugs {
        if let Some(p) = port
            && !t.switch.ports.iter().any(|q| q.name == p)
        {
            let (who, port) = (who.to_string(), p.to_string());
            return Err(TopologyError::UnknownPort { who, port });
        }
        let p = port_name(who, port);
        if let Some(first) = users.insert(p, who) {
            return Err(TopologyError::PortShared {
                port: p.to_string(),
                first: first.to_string(),
                second: who.to_string(),
            });
        }
    }
    Ok(())
}

fn check_host(h: &Host, names: &HashSet<String>) -> Result<(), TopologyError> {
    if let Err(e) = IfName::new(&h.parent) {
        let (host, parent, reason) = (h.name.clone(), h.parent.clone(), e.to_string());
        return Err(TopologyError::ParentName { host, parent, reason });
    }
    for c in &h.children {
        check_child(c, names)?;
    }
    let ipv = h.children.iter().filter(|c| c.kind.is_ipvlan()).count();
    if ipv != 0 && ipv != h.children.len() {
        return Err(TopologyError::MixedDrivers { host: h.name.clone(), parent: h.parent.clone() });
    }
    let extra = (h.children.len() + usize::from(h.shim.is_some())).saturating_sub(1);
    for c in &h.children {
        if c.mode == Some(ChildMode::Passthru) && extra > 0 {
            let (host, child, parent) = (h.name.clone(), c.name.clone(), h.parent.clone());
            return Err(TopologyError::PassthruNotAlone { host, child, parent });
        }
    }
    if let Some(first) = h.children.first().filter(|c| c.kind.is_ipvlan()) {
        let key = |c: &Child| (c.mode.unwrap_or(ChildMode::L2), c.flag.unwrap_or_default());
        if let Some(other) = h.children.iter().find(|c| key(c) != key(first)) {
            return Err(TopologyError::IpvlanModeMismatch {
                host: h.name.clone(),
                parent: h.parent.clone(),
                a: first.name.clone(),
                b: other.name.clone(),
            });
        }
    }
    if let Some(s) = &h.shim
        && s.addresses.is_empty()
    {
        return Err(TopologyError::ShimWithoutAddress { who: format!("host {}", h.name) });
    }
    Ok(())
}

fn check_child(c: &Child, names: &HashSet<String>) -> Result<(), TopologyError> {
    const MACVLAN: &str = "bridge, vepa, private, passthru, source";
    let misplaced =
        |what, applies| TopologyError::Misplaced { child: c.name.clone(), what, applies };
    let ipv = c.kind.is_ipvlan();
    if let Some(m) = c.mode {
        let fits = matches!(m, ChildMode::L2 | ChildMode::L3 | ChildMode::L3s) == ipv;
        if !fits {
            let expected = if ipv { "l2, l3, l3s" } else { MACVLAN };
            let (mode, kind) = (m.as_str(), c.kind.as_str());
            return Err(TopologyError::ModeKind { child: c.name.clone(), mode, kind, expected });
        }
    }
    if c.flag.is_some() && !ipv {
        return Err(misplaced("flag (bridge/private/vepa)", "ipvlan and ipvtap children"));
    }
    let source = c.mode == Some(ChildMode::Source);
    if c.nodst && !source {
        return Err(misplaced("nodst", "source-mode children"));
    }
    if !c.source_macs.is_empty() && !source {
        return Err(misplaced("source_macs", "source-mode children"));
    }
    if c.mac.is_some() && (ipv || c.mode == Some(ChildMode::Passthru)) {
        let applies = "macvlan children that are not passthru (ipvlan shares the parent's MAC, passthru takes it: set the host's mac)";
        return Err(misplaced("mac", applies));
    }
    if c.gateway.is_some() && c.default_dev {
        return Err(TopologyError::TwoDefaults { who: format!("child {}", c.name) });
    }
    for e in &c.source_macs {
        if let MacRef::Endpoint(n) = e
            && !names.contains(n)
        {
            let (child, entry) = (c.name.clone(), n.clone());
            return Err(TopologyError::UnknownSourceEntry { child, entry });
        }
    }
    Ok(())
}

/// Every (owner, address) pair of the topology.
fn addresses(t: &Topology) -> Vec<(String, IpNet)> {
    let mut v: Vec<(String, IpNet)> = Vec::new();
    let mut add = |who: &str, nets: &[IpNet]| v.extend(nets.iter().map(|n| (who.to_string(), *n)));
    add(&t.switch.name, &t.switch.addresses);
    for h in &t.hosts {
        add(&h.name, &h.addresses);
        if let Some(s) = &h.shim {
            add(&format!("{}'s shim {}", h.name, s.name), &s.addresses);
        }
        for c in &h.children {
            add(&c.name, &c.addresses);
        }
    }
    for r in &t.routers {
        add(&r.name, &[r.lan, r.far]);
    }
    for r in &t.remotes {
        add(&r.name, &r.addresses);
    }
    v
}

fn check_unique_addresses(t: &Topology) -> Result<(), TopologyError> {
    let mut first: HashMap<IpAddr, String> = HashMap::new();
    for (who, net) in addresses(t) {
        if let Some(first) = first.get(&net.addr()) {
            let (addr, first) = (net.addr(), first.clone());
            return Err(TopologyError::DuplicateAddress { addr, first, second: who });
        }
        first.insert(net.addr(), who);
    }
    Ok(())
}

fn check_unique_macs(t: &Topology) -> Result<(), TopologyError> {
    let mut macs = Vec::new();
    macs.extend(t.switch.mac.map(|m| (m, t.switch.name.clone())));
    for h in &t.hosts {
        macs.extend(h.mac.map(|m| (m, h.name.clone())));
        macs.extend(h.children.iter().filter_map(|c| c.mac.map(|m| (m, c.name.clone()))));
        macs.extend(h.shim.as_ref().and_then(|s| s.mac.map(|m| (m, s.name.clone()))));
    }
    macs.extend(t.routers.iter().filter_map(|r| r.mac.map(|m| (m, r.name.clone()))));
    let mut first = HashMap::new();
    for (mac, who) in macs {
        if let Some(first) = first.get(&mac) {
            let (mac, first) = (mac.to_string(), Clone::clone(first));
            return Err(TopologyError::DuplicateMac { mac, first, second: who });
        }
        first.insert(mac, who);
    }
    Ok(())
}

/// Whether `addr` is on link for an interface carrying `nets`.
pub(crate) fn on_link(nets: &[IpNet], addr: IpAddr) -> bool {
    let link_local = match addr {
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
        IpAddr::V4(_) => false,
    };
    link_local || nets.iter().any(|n| n.prefix_len() < n.max_prefix_len() && n.contains(&addr))
}

fn check_gateway(who: &str, nets: &[IpNet], gw: Option<IpAddr>) -> Result<(), TopologyError> {
    match gw {
        Some(g) if !on_link(nets, g) => Err(off_link(who, "gateway", g, nets)),
        _ => Ok(()),
    }
}

fn check_route_list(who: &str, nets: &[IpNet], routes: &[Route]) -> Result<(), TopologyError> {
    for r in routes {
        let Some(via) = r.via else { continue };
        if via.is_ipv4() != r.to.addr().is_ipv4() {
            let (who, to) = (who.to_string(), r.to.to_string());
            return Err(TopologyError::RouteFamily { who, to, via });
        }
        if !on_link(nets, via) {
            return Err(off_link(who, "route via", via, nets));
        }
    }
    Ok(())
}

fn off_link(who: &str, what: &'static str, addr: IpAddr, nets: &[IpNet]) -> TopologyError {
    let nets = if nets.is_empty() {
        "it has no address".to_string()
    } else {
        nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
    };
    TopologyError::OffLink { who: who.to_string(), what, addr, nets }
}

fn check_routes(t: &Topology) -> Result<(), TopologyError> {
    let sw = format!("switch {}", t.switch.name);
    check_gateway(&sw, &t.switch.addresses, t.switch.gateway)?;
    check_route_list(&sw, &t.switch.addresses, &t.switch.routes)?;
    for h in &t.hosts {
        let who = format!("host {}", h.name);
        let shim_nets = h.shim.as_ref().map(|s| s.addresses.clone()).unwrap_or_default();
        let both: Vec<IpNet> = h.addresses.iter().chain(&shim_nets).copied().collect();
        check_gateway(&who, &both, h.gateway)?;
        check_route_list(&who, &h.addresses, &h.routes)?;
        if let Some(s) = &h.shim {
            check_route_list(&format!("{who}'s shim {}", s.name), &s.addresses, &s.routes)?;
        }
        for c in &h.children {
            let who = format!("child {}", c.name);
            check_gateway(&who, &c.addresses, c.gateway)?;
            check_route_list(&who, &c.addresses, &c.routes)?;
        }
    }
    for r in &t.routers {
        let who = format!("router {}", r.name);
        check_gateway(&who, &[r.lan, r.far], r.gateway)?;
        check_route_list(&who, &[r.lan, r.far], &r.routes)?;
        if r.routes.iter().any(|x| x.via.is_none()) {
            let problem = "a router's routes need a via address (which leg is meant)".to_string();
            return Err(TopologyError::Invalid { who, problem });
        }
    }
    for r in &t.remotes {
        let who = format!("remote {}", r.name);
        check_gateway(&who, &r.addresses, r.gateway)?;
        check_route_list(&who, &r.addresses, &r.routes)?;
    }
    Ok(())
}
