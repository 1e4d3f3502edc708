//! The seeds' experiments as topologies, for `nicslice lab` (which builds them on the
//! real kernel) and for tests: seed 003's mode matrix, seed 000's two nodes with a
//! gateway and the shim fix (also with node1's children in each macvlan mode), seed
//! 001's ipvlan children on two subnets (also under the private and vepa port flags,
//! with hairpin, and with a router that routes them via the host).
//! Source-mode lists name endpoints (`"br0"`), not the seeds' random MACs.

use std::net::IpAddr;

use ipnet::IpNet;

use super::topology::{
    Child, ChildKind, ChildMode, Host, IpvlanFlag, IpvlanMode, MacRef, Port, Remote, Route, Router,
    Shim, Switch, Topology,
};
use crate::link::MacvlanMode;

/// Seed 003: bridge `br0` (192.168.0.1/24) with port veth11; host ns3 whose parent
/// eth0 (192.168.0.254/24) carries ns1 (.11) and ns2 (.12) in `mode`. Passthru and
/// source have ns1 only, as in the article; source lists br0.
pub fn seed003(mode: MacvlanMode) -> Topology {
    let mut children = vec![child("ns1", ChildKind::Macvlan, mode.into(), "192.168.0.11/24")];
    if matches!(mode, MacvlanMode::Passthru | MacvlanMode::Source) {
        children[0].source_macs = match mode {
            MacvlanMode::Source => vec![MacRef::Endpoint("br0".to_string())],
            _ => Vec::new(),
        };
    } else {
        children.push(child("ns2", ChildKind::Macvlan, mode.into(), "192.168.0.12/24"));
    }
    Topology {
        description: format!("seed 003: macvlan {mode} on a veth into br0"),
        switch: Switch {
            name: "br0".to_string(),
            addresses: vec![net("192.168.0.1/24")],
            ports: vec![Port { name: "veth11".to_string(), hairpin: false }],
            ..Switch::default()
        },
        hosts: vec![Host {
            port: Some("veth11".to_string()),
            children,
            ..host("ns3", "eth0", &["192.168.0.254/24"], None)
        }],
        ..Topology::default()
    }
}

/// Seed 003 with hairpin on the host's switch port (the article's "交换机支持发夹").
pub fn seed003_hairpin(mode: MacvlanMode) -> Topology {
    let mut t = seed003(mode);
    t.description.push_str(", hairpin on");
    t.switch.ports.iter_mut().for_each(|p| p.hairpin = true);
    t
}

/// Seed 003 §1 end: bridge mode with veth11 set down.
pub fn seed003_link_down() -> Topology {
    let mut t = seed003(MacvlanMode::Bridge);
    t.description.push_str(", veth11 down");
    t.hosts.iter_mut().for_each(|h| h.up = false);
    t
}

/// Seed 000 as first built: node1 (192.168.179.9/16) with bridge children node1-ns1
/// (.12) and node1-ns2 (.13), node2 (.10) with node2-ns1 (.14), gateway router `gw`
/// (192.168.1.1/16, 10.8.0.1/16) and the author's laptop `mac` (10.8.0.241/16). The
/// children have no default route yet.
pub fn seed000() -> Topology {
    let gw = Some(addr("192.168.1.1"));
    let bridge = ChildMode::Bridge;
    let node1 = Host {
        children: vec![
            child("node1-ns1", ChildKind::Macvlan, bridge, "192.168.179.12/16"),
            child("node1-ns2", ChildKind::Macvlan, bridge, "192.168.179.13/16"),
        ],
        ..host("node1", "ens160", &["192.168.179.9/16"], gw)
    };
    let node2 = Host {
        children: vec![child("node2-ns1", ChildKind::Macvlan, bridge, "192.168.179.14/16")],
        ..host("node2", "ens160", &["192.168.179.10/16"], gw)
    };
    Topology {
        description: "seed 000: macvlan bridge on two nodes, gateway to 10.8/16".to_string(),
        hosts: vec![node1, node2],
        routers: vec![Router {
            name: "gw".to_string(),
            port: None,
            lan: net("192.168.1.1/16"),
            far: net("10.8.0.1/16"),
            mac: None,
            gateway: None,
            routes: Vec::new(),
        }],
        remotes: vec![Remote {
            name: "mac".to_string(),
            router: None,
            addresses: vec![net("10.8.0.241/16")],
            gateway: Some(addr("10.8.0.1")),
            routes: Vec::new(),
        }],
        ..Topology::default()
    }
}

/// Seed 000 after both fixes: every child has a default route via 192.168.1.1, and
/// node1's address moved from ens160 to the bridge-mode shim mac0 (with its /16 route
/// and node1's default route).
pub fn seed000_fixed() -> Topology {
    let mut t = seed000();
    t.description = "seed 000 fixed: default routes and the mac0 shim on node1".to_string();
    for h in &mut t.hosts {
        h.children.iter_mut().for_each(|c| c.gateway = Some(addr("192.168.1.1")));
    }
    if let Some(node1) = t.hosts.first_mut() {
        let moved = std::mem::take(&mut node1.addresses);
        node1.shim = Some(Shim {
            name: "mac0".to_string(),
            addresses: moved,
            mac: None,
            routes: Vec::new(),
        });
    }
    t
}

/// Seed 000 fixed, with node1's children in `mode` (`kind` macvlan, macvtap or
/// ipvlan): the other host node2 and its bridge child node2-ns1, the gateway and
/// `mac` behind it, and node1's address on the shim mac0 (bridge-mode macvlan; on
/// ipvlan l2 an ipvlan l2). node1-ns1 has the default route via 192.168.1.1,
/// node1-ns2 none. Passthru takes the parent for itself: node1-ns1 only, and no shim
/// (node1 keeps its address on ens160). ipvlan l3/l3s as seed 001 does it: no shim,
/// node1-ns1 with `default dev`, and gw routing each child's address via node1. Source children list node2 and
/// gw; `hairpin` turns it on for node1's switch port.
pub fn seed000_mode(kind: ChildKind, mode: impl Into<ChildMode>, hairpin: bool) -> Topology {
    let mode: ChildMode = mode.into();
    let mut t = seed000_fixed();
    let pin = if hairpin { ", hairpin on" } else { "" };
    let (kind_name, mode_name) = (kind.as_str(), mode.as_str());
    t.description = match mode {
        ChildMode::Passthru => format!(
            "seed 000 with node1's one child {kind_name} passthru{pin} (no room for a shim), default routes"
        ),
        ChildMode::L3 | ChildMode::L3s => format!(
            "seed 000 with node1's children {kind_name} {mode_name}{pin}, gw routing them via node1; node1-ns2 without default route"
        ),
        _ => format!(
            "seed 000 with node1's children {kind_name} {mode_name}{pin}, the mac0 shim; node1-ns2 without default route"
        ),
    };
    if hairpin {
        t.switch.ports.push(Port { name: "node1".to_string(), hairpin: true });
    }
    let Some(node1) = t.hosts.first_mut() else { return t };
    for c in &mut node1.children {
        c.kind = kind;
        c.mode = Some(mode);
        if mode == ChildMode::Source {
            c.source_macs =
                ["node2", "gw"].into_iter().map(|n| MacRef::Endpoint(n.to_string())).collect();
        }
    }
    if let Some(ns2) = node1.children.get_mut(1) {
        ns2.gateway = None;
    }
    let l3 = matches!(mode, ChildMode::L3 | ChildMode::L3s);
    if mode == ChildMode::Passthru {
        node1.children.truncate(1);
    }
    if (mode == ChildMode::Passthru || l3)
        && let Some(shim) = node1.shim.take()
    {
        node1.addresses = shim.addresses;
    }
    if l3 {
        // Seed 001's way: the children route through the host by `default dev`,
        // and the gateway routes their addresses via node1.
        let via = node1.addresses.first().map(|a| a.addr());
        let mut routes = Vec::new();
        for (i, c) in node1.children.iter_mut().enumerate() {
            c.gateway = None;
            c.default_dev = i == 0;
            routes.extend(c.addresses.iter().map(|a| Route { to: IpNet::from(a.addr()), via }));
        }
        t.routers.iter_mut().for_each(|r| r.routes.extend(routes.clone()));
    }
    t
}

/// Seed 001: host `host` (eth0, 192.168.0.2/24 on a LAN whose switch `lan` is
/// 192.168.0.1/24) with ipvlan children net1 (10.0.1.10/24) and net2
/// (192.168.1.10/24) in `mode`, each with `default dev`.
pub fn seed001(mode: IpvlanMode) -> Topology {
    let mut children = vec![
        child("net1", ChildKind::Ipvlan, mode.into(), "10.0.1.10/24"),
        child("net2", ChildKind::Ipvlan, mode.into(), "192.168.1.10/24"),
    ];
    children.iter_mut().for_each(|c| c.default_dev = true);
    Topology {
        description: format!("seed 001: ipvlan {} on two subnets", ChildMode::from(mode).as_str()),
        switch: Switch {
            name: "lan".to_string(),
            addresses: vec![net("192.168.0.1/24")],
            ..Switch::default()
        },
        hosts: vec![Host { children, ..host("host", "eth0", &["192.168.0.2/24"], None) }],
        ..Topology::default()
    }
}

/// Seed 001's experiment: ipvlan l3.
pub fn seed001_l3() -> Topology {
    seed001(IpvlanMode::L3)
}

/// Seed 001 with the port flag `flag` on the parent (every child shares it), and
/// hairpin on for the host's switch port when `hairpin`.
pub fn seed001_flag(mode: IpvlanMode, flag: IpvlanFlag, hairpin: bool) -> Topology {
    let mut t = seed001(mode);
    let pin = if hairpin { ", hairpin on" } else { "" };
    t.description =
        format!("seed 001: ipvlan {} {flag} on two subnets{pin}", ChildMode::from(mode).as_str());
    for h in &mut t.hosts {
        h.children.iter_mut().for_each(|c| c.flag = Some(flag));
        if hairpin {
            t.switch.ports.push(Port { name: h.name.clone(), hairpin: true });
        }
    }
    t
}

/// `t` (seed 001) with a router `gw` on the LAN (192.168.0.254/24, far side
/// 10.8.0.1/16) that routes each child's address via the host's, and the host's
/// default route through it: traffic the parent's routing sends out comes back.
pub fn seed001_routed(mut t: Topology) -> Topology {
    t.description.push_str(", a router routing the children via the host");
    let gw = addr("192.168.0.254");
    let mut routes = Vec::new();
    for h in &mut t.hosts {
        h.gateway = Some(gw);
        let via = h.addresses.first().map(|a| a.addr());
        let addrs = h.children.iter().flat_map(|c| c.addresses.iter());
        routes.extend(addrs.map(|a| Route { to: IpNet::from(a.addr()), via }));
    }
    t.routers.push(Router {
        name: "gw".to_string(),
        port: None,
        lan: net("192.168.0.254/24"),
        far: net("10.8.0.1/16"),
        mac: None,
        gateway: None,
        routes,
    });
    t
}

fn host(name: &str, parent: &str, addrs: &[&str], gateway: Option<IpAddr>) -> Host {
    Host {
        name: name.to_string(),
        port: None,
        parent: parent.to_string(),
        addresses: addrs.iter().map(|a| net(a)).collect(),
        mac: None,
        up: true,
        gateway,
        routes: Vec::new(),
        children: Vec::new(),
        shim: None,
    }
}

/// A child with one address and every option at its default.
pub(crate) fn child(name: &str, kind: ChildKind, mode: ChildMode, address: &str) -> Child {
    Child {
        name: name.to_string(),
        kind,
        mode: Some(mode),
        flag: None,
        nopromisc: false,
        nodst: false,
        source_macs: Vec::new(),
        mac: None,
        addresses: vec![net(address)],
        gateway: None,
        default_dev: false,
        routes: Vec::new(),
    }
}

/// Literals of this file only; a typo shows up as 0.0.0.0/0 and fails validation.
pub(crate) fn net(s: &str) -> IpNet {
    s.parse().unwrap_or_default()
}

pub(crate) fn addr(s: &str) -> IpAddr {
    s.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}
