//! The lab's experiments: the seeds' topologies (from the model's presets)
//! plus the variants the seeds discuss in prose (a source list that does not
//! match, nodst, macvtap), each with a name for `--only` and the link kind and
//! mode it exercises for `--mode`; seed 000's fix, and host access on ipvlan
//! and IPv6, with the shim `nicslice shim add` makes, and the shim it refuses
//! where the model says it cannot work.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use nicslice_model::MacvlanMode;
use nicslice_model::reach::{
    ChildKind, ChildMode, IpvlanFlag, IpvlanMode, MacRef, Route, Shim, Topology, presets,
};

pub use crate::by_nicslice::HostAccess;

/// One experiment.
pub struct Scenario {
    pub name: &'static str,
    /// The mode it is about ("bridge", "vepa", ..., "macvtap", "l2", "l3"...).
    pub mode: &'static str,
    /// Needs ipvlan in the kernel.
    pub ipvlan: bool,
    pub topology: Topology,
    /// Who makes the first host's children and shim.
    pub host_access: HostAccess,
}

fn scenario(name: &'static str, mode: &'static str, topology: Topology) -> Scenario {
    Scenario { name, mode, ipvlan: false, topology, host_access: HostAccess::ByHand }
}

/// `t`'s first host without a shim: its address back on the parent.
fn without_shim(mut t: Topology) -> Topology {
    if let Some(host) = t.hosts.first_mut()
        && let Some(shim) = host.shim.take()
        && host.addresses.is_empty()
    {
        host.addresses = shim.addresses;
    }
    t
}

/// `t` fixed as nicslice fixes it, described as `description`: the first
/// host keeps its address on the parent, and `nicslice shim add --ip` gives
/// it the shim `mac0` with `own` (a /32 or /128 each: the parent's subnet
/// route stays the parent's) and a host route to each child's address.
/// Borrowing the host's address instead (the default where the host has one
/// on the parent, as on seed 000's node1) routes the same way, but the
/// model's shim needs an address of its own to send from.
fn shim_by_nicslice(t: Topology, own: &[IpAddr], description: &str) -> Topology {
    let mut t = without_shim(t);
    t.description = description.to_string();
    let full = |ip: IpAddr| IpNet::from(ip);
    if let Some(host) = t.hosts.first_mut() {
        let routes = host
            .children
            .iter()
            .flat_map(|c| &c.addresses)
            .map(|a| Route { to: full(a.addr()), via: None })
            .collect();
        let addresses = own.iter().copied().map(full).collect();
        host.shim = Some(Shim { name: "mac0".to_string(), addresses, mac: None, routes });
    }
    t
}

/// `t` with IPv6 addresses only (fd00::X:Y/64 for a.b.X.Y), described as
/// `description`.
fn ipv6_only(t: Topology, description: &str) -> Topology {
    let mut t = dual_stack(t, description);
    let keep_v6 = |addrs: &mut Vec<IpNet>| addrs.retain(|a| a.addr().is_ipv6());
    keep_v6(&mut t.switch.addresses);
    for h in &mut t.hosts {
        keep_v6(&mut h.addresses);
        h.children.iter_mut().for_each(|c| keep_v6(&mut c.addresses));
    }
    t
}

/// A scenario whose first host nicslice gives its children and shim.
fn by_nicslice(
    name: &'static str,
    mode: &'static str,
    host_access: HostAccess,
    topology: Topology,
) -> Scenario {
    let ipvlan = topology.hosts.iter().flat_map(|h| &h.children).any(|c| c.kind.is_ipvlan());
    Scenario { name, mode, ipvlan, topology, host_access }
}

/// `t` with every source list naming a MAC nobody has, described as `description`.
fn unlisted(mut t: Topology, description: &str) -> Topology {
    t.description = description.to_string();
    for c in t.hosts.iter_mut().flat_map(|h| h.children.iter_mut()) {
        if c.mode == Some(ChildMode::Source) {
            c.source_macs = vec![MacRef::Mac(nicslice_model::MacAddr([0x02, 0, 0, 0, 0x0a, 0x0b]))];
        }
    }
    t
}

/// `t` with nodst on every source-mode child, described as `description`.
fn nodst(mut t: Topology, description: &str) -> Topology {
    t.description = description.to_string();
    for c in t.hosts.iter_mut().flat_map(|h| h.children.iter_mut()) {
        c.nodst = c.mode == Some(ChildMode::Source);
    }
    t
}

/// `t` with an IPv6 address beside every first IPv4 one (fd00::X:Y/64 for a.b.X.Y),
/// described as `description`: the echo still goes to the IPv4 address, NDP
/// solicitations go beside the ARP requests.
fn dual_stack(mut t: Topology, description: &str) -> Topology {
    t.description = description.to_string();
    let add = |addrs: &mut Vec<IpNet>| {
        let v6 = match addrs.first().map(|a| a.addr()) {
            Some(IpAddr::V4(v4)) => {
                let o = v4.octets();
                Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, u16::from(o[2]), u16::from(o[3]))
            }
            _ => return,
        };
        addrs.extend(IpNet::new(v6.into(), 64).ok());
    };
    add(&mut t.switch.addresses);
    for h in &mut t.hosts {
        add(&mut h.addresses);
        h.children.iter_mut().for_each(|c| add(&mut c.addresses));
    }
    t
}

/// Every experiment, in the order they are reported: per mode seed 003's matrix
/// (switch, parent, siblings) and then seed 000's world with that mode on node1
/// (the other host and its child, the router's far side with and without a
/// default route, the host through its shim).
pub fn all() -> Vec<Scenario> {
    let source = MacvlanMode::Source;
    let on_node1 = |mode| presets::seed000_mode(ChildKind::Macvlan, mode, false);
    let mut macvtap = presets::seed003(MacvlanMode::Bridge);
    macvtap.description = "seed 003 with macvtap bridge children".into();
    for c in macvtap.hosts.iter_mut().flat_map(|h| h.children.iter_mut()) {
        c.kind = ChildKind::Macvtap;
    }
    let ipvlan = |name, mode, t| Scenario {
        name,
        mode,
        ipvlan: true,
        topology: t,
        host_access: HostAccess::ByHand,
    };
    let shim_ip: IpAddr = "192.168.179.250".parse().unwrap_or_else(|_| unreachable!());
    let nicslice = HostAccess::Nicslice;
    // Seed 003's world with ipvlan l2 children under each port flag.
    let ipvlan_flag = |flag: IpvlanFlag, hairpin: bool| {
        let mut t = if hairpin {
            presets::seed003_hairpin(MacvlanMode::Bridge)
        } else {
            presets::seed003(MacvlanMode::Bridge)
        };
        t.description = format!(
            "seed 003 with ipvlan l2 {flag} children{}",
            if hairpin { ", hairpin on" } else { "" }
        );
        for c in t.hosts.iter_mut().flat_map(|h| h.children.iter_mut()) {
            c.kind = ChildKind::Ipvlan;
            c.mode = Some(ChildMode::L2);
            c.flag = Some(flag);
        }
        t
    };
    // Seed 001's two subnets with l3/l3s children under a port flag.
    let l3_flag = presets::seed001_flag;
    vec![
        scenario("bridge", "bridge", presets::seed003(MacvlanMode::Bridge)),
        scenario(
            "bridge-ipv6",
            "bridge",
            dual_stack(
                presets::seed003(MacvlanMode::Bridge),
                "seed 003 with IPv6 beside IPv4: NDP as well as ARP",
            ),
        ),
        scenario("seed000", "bridge", presets::seed000()),
        by_nicslice(
            "seed000-fixed",
            "bridge",
            nicslice,
            shim_by_nicslice(
                presets::seed000_fixed(),
                &[shim_ip],
                "seed 000 fixed by nicslice: default routes, `nicslice shim add` on node1 \
                 (mac0 with 192.168.179.250/32 and a host route to each child)",
            ),
        ),
        by_nicslice(
            "shim-ipv6",
            "bridge",
            nicslice,
            shim_by_nicslice(
                ipv6_only(presets::seed003(MacvlanMode::Bridge), ""),
                &["fd00::250".parse().unwrap_or_else(|_| unreachable!())],
                "seed 003 in IPv6 only with `nicslice shim add`: mac0 with fd00::250/128 \
                 and a host route to each child",
            ),
        ),
        scenario("vepa", "vepa", presets::seed003(MacvlanMode::Vepa)),
        scenario("vepa-hairpin", "vepa", presets::seed003_hairpin(MacvlanMode::Vepa)),
        scenario("vepa-seed000", "vepa", on_node1(MacvlanMode::Vepa)),
        scenario(
            "vepa-hairpin-seed000",
            "vepa",
            presets::seed000_mode(ChildKind::Macvlan, MacvlanMode::Vepa, true),
        ),
        scenario("private", "private", presets::seed003(MacvlanMode::Private)),
        scenario("private-hairpin", "private", presets::seed003_hairpin(MacvlanMode::Private)),
        scenario("private-seed000", "private", on_node1(MacvlanMode::Private)),
        by_nicslice(
            "private-shim-refused",
            "private",
            HostAccess::Refused("private"),
            without_shim(on_node1(MacvlanMode::Private)),
        ),
        scenario("passthru", "passthru", presets::seed003(MacvlanMode::Passthru)),
        scenario("passthru-seed000", "passthru", on_node1(MacvlanMode::Passthru)),
        by_nicslice(
            "passthru-shim-refused",
            "passthru",
            HostAccess::Refused("passthru"),
            on_node1(MacvlanMode::Passthru),
        ),
        scenario("source", "source", presets::seed003(source)),
        scenario("source-seed000", "source", on_node1(source)),
        scenario(
            "source-unlisted",
            "source",
            unlisted(presets::seed003(source), "seed 003: macvlan source listing a MAC nobody has"),
        ),
        scenario(
            "source-unlisted-seed000",
            "source",
            unlisted(
                on_node1(source),
                "seed 000 with node1's children macvlan source listing a MAC nobody has, the mac0 shim",
            ),
        ),
        scenario(
            "source-nodst",
            "source",
            nodst(presets::seed003(source), "seed 003: macvlan source nodst listing br0"),
        ),
        scenario(
            "source-nodst-seed000",
            "source",
            nodst(
                on_node1(source),
                "seed 000 with node1's children macvlan source nodst listing node2 and gw, the mac0 shim",
            ),
        ),
        scenario("parent-down", "bridge", presets::seed003_link_down()),
        scenario("macvtap", "macvtap", macvtap),
        scenario(
            "macvtap-seed000",
            "macvtap",
            presets::seed000_mode(ChildKind::Macvtap, MacvlanMode::Bridge, false),
        ),
        ipvlan("ipvlan-l2", "l2", presets::seed001(IpvlanMode::L2)),
        ipvlan("ipvlan-l3", "l3", presets::seed001_l3()),
        ipvlan("ipvlan-l3s", "l3s", presets::seed001(IpvlanMode::L3s)),
        ipvlan(
            "ipvlan-l2-seed000",
            "l2",
            presets::seed000_mode(ChildKind::Ipvlan, IpvlanMode::L2, false),
        ),
        ipvlan(
            "ipvlan-l3-seed000",
            "l3",
            presets::seed000_mode(ChildKind::Ipvlan, IpvlanMode::L3, false),
        ),
        by_nicslice(
            "ipvlan-l2-shim",
            "l2",
            nicslice,
            shim_by_nicslice(
                presets::seed000_mode(ChildKind::Ipvlan, IpvlanMode::L2, false),
                &[shim_ip],
                "seed 000 with node1's children ipvlan l2 and `nicslice shim add` (an ipvlan l2 \
                 mac0 with 192.168.179.250/32 and a host route to each child)",
            ),
        ),
        by_nicslice(
            "ipvlan-l3-shim",
            "l3",
            nicslice,
            shim_by_nicslice(
                presets::seed000_mode(ChildKind::Ipvlan, IpvlanMode::L3, false),
                &[shim_ip],
                "seed 000 with node1's children ipvlan l3, gw routing them via node1, and \
                 `nicslice shim add` (an ipvlan l3 mac0 with 192.168.179.250/32 and a host route \
                 to each child)",
            ),
        ),
        ipvlan(
            "ipvlan-l3s-seed000",
            "l3s",
            presets::seed000_mode(ChildKind::Ipvlan, IpvlanMode::L3s, false),
        ),
        ipvlan("ipvlan-private", "l2", ipvlan_flag(IpvlanFlag::Private, false)),
        ipvlan("ipvlan-vepa", "l2", ipvlan_flag(IpvlanFlag::Vepa, false)),
        ipvlan("ipvlan-vepa-hairpin", "l2", ipvlan_flag(IpvlanFlag::Vepa, true)),
        ipvlan("ipvlan-l3-private", "l3", l3_flag(IpvlanMode::L3, IpvlanFlag::Private, false)),
        ipvlan("ipvlan-l3-vepa", "l3", l3_flag(IpvlanMode::L3, IpvlanFlag::Vepa, false)),
        ipvlan("ipvlan-l3-vepa-hairpin", "l3", l3_flag(IpvlanMode::L3, IpvlanFlag::Vepa, true)),
        ipvlan("ipvlan-l3s-private", "l3s", l3_flag(IpvlanMode::L3s, IpvlanFlag::Private, false)),
        ipvlan("ipvlan-l3s-vepa", "l3s", l3_flag(IpvlanMode::L3s, IpvlanFlag::Vepa, false)),
        ipvlan("ipvlan-l3s-vepa-hairpin", "l3s", l3_flag(IpvlanMode::L3s, IpvlanFlag::Vepa, true)),
        ipvlan(
            "ipvlan-l3-vepa-routed",
            "l3",
            presets::seed001_routed(l3_flag(IpvlanMode::L3, IpvlanFlag::Vepa, false)),
        ),
        ipvlan(
            "ipvlan-l3s-vepa-routed",
            "l3s",
            presets::seed001_routed(l3_flag(IpvlanMode::L3s, IpvlanFlag::Vepa, false)),
        ),
    ]
}
