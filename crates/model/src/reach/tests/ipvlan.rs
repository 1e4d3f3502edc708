//! ipvlan rules: l2 siblings and flags, l3/l3s siblings across subnets and their
//! flags (private, vepa out through the parent's routing and back via a router),
//! NOARP l3 children and the route via the host, the parent, an ipvlan shim.

use super::{blocked, blocked2, ipv, lan, pass, pass2, router_r, verdict};
use crate::reach::presets::{addr, net};
use crate::reach::{ChildMode, IpvlanFlag, Reach, Route, Rule, Shim, Topology};

use ChildMode::{L2, L3, L3s};

fn flagged(mut t: Topology, flag: IpvlanFlag) -> Topology {
    t.hosts[0].children.iter_mut().for_each(|c| c.flag = Some(flag));
    t
}

fn l2_pair(hairpin: bool) -> Topology {
    lan(vec![ipv("a", L2, "10.0.0.10/24"), ipv("b", L2, "10.0.0.11/24")], hairpin)
}

#[test]
fn l2_siblings_are_switched_by_address() {
    let t = l2_pair(false);
    pass2(&t, "a", "b", Rule::IpvlanL2Siblings);
    pass2(&t, "a", "sw", Rule::SameSegment);
    pass2(&t, "a", "h2", Rule::SameSegment);
}

#[test]
fn l2_private_blocks_siblings_only() {
    for hairpin in [false, true] {
        let t = flagged(l2_pair(hairpin), IpvlanFlag::Private);
        blocked2(&t, "a", "b", Rule::IpvlanPrivate);
        pass2(&t, "a", "sw", Rule::SameSegment);
    }
}

#[test]
fn l2_vepa_siblings_need_hairpin() {
    let t = flagged(l2_pair(false), IpvlanFlag::Vepa);
    blocked2(&t, "a", "b", Rule::SiblingNeedsHairpin);
    assert!(verdict(&t, "a", "b").fix.unwrap_or_default().contains("drop the vepa flag"));
    let t = flagged(l2_pair(true), IpvlanFlag::Vepa);
    pass2(&t, "a", "b", Rule::HairpinReflection);
}

#[test]
fn an_ipvlan_child_never_reaches_its_parent() {
    for mode in [L2, L3, L3s] {
        let t = lan(vec![ipv("a", mode, "10.0.0.10/24")], false);
        blocked2(&t, "a", "h", Rule::ParentChild);
        let v = verdict(&t, "h", "a");
        assert!(v.reason.contains("an ipvlan child never reaches its own parent"), "{}", v.reason);
        assert!(v.fix.unwrap_or_default().contains("ipvlan shim"));
    }
    // Derived: with hairpin, reflected frames reach the l2 child and the parent.
    let t = lan(vec![ipv("a", L2, "10.0.0.10/24")], true);
    pass2(&t, "a", "h", Rule::ParentViaHairpin);
}

#[test]
fn l3_siblings_on_different_subnets_reach_each_other() {
    for mode in [L3, L3s] {
        let t = lan(vec![ipv("a", mode, "10.1.0.10/24"), ipv("b", mode, "10.2.0.10/24")], false);
        pass2(&t, "a", "b", Rule::IpvlanL3Siblings);
        let t = flagged(t, IpvlanFlag::Private);
        blocked2(&t, "a", "b", Rule::IpvlanPrivate);
    }
}

#[test]
fn peers_cannot_arp_for_an_l3_child() {
    for mode in [L3, L3s] {
        let t = lan(vec![ipv("a", mode, "10.0.0.20/24")], false);
        blocked2(&t, "a", "sw", Rule::IpvlanL3NoArp);
        blocked2(&t, "a", "h2", Rule::IpvlanL3NoArp);
        let fix = verdict(&t, "sw", "a").fix.unwrap_or_default();
        assert!(fix.contains("add a route on sw to 10.0.0.20 via h's address 10.0.0.2"), "{fix}");
    }
}

#[test]
fn a_route_via_the_host_reaches_an_l3_child() {
    for mode in [L3, L3s] {
        let mut t = lan(vec![ipv("a", mode, "10.0.0.20/24")], false);
        let via = "10.0.0.2".parse().ok();
        t.switch.routes = vec![Route { to: net("10.0.0.20/32"), via }];
        pass2(&t, "a", "sw", Rule::IpvlanRoutedViaParent);
        blocked2(&t, "a", "h2", Rule::IpvlanL3NoArp);
    }
}

#[test]
fn an_l3_child_on_another_subnet_needs_a_route_back() {
    let t = lan(vec![ipv("a", L3, "10.9.0.20/24")], false);
    blocked(&t, "a", "sw", Rule::NoReturnRoute);
    blocked(&t, "sw", "a", Rule::NoRoute);
}

#[test]
fn an_ipvlan_shim_reaches_l3_children() {
    let mut t = lan(vec![ipv("a", L3, "10.0.0.20/24"), ipv("b", L3, "10.5.0.20/24")], false);
    t.hosts[0].shim = Some(Shim {
        name: "shim0".to_string(),
        addresses: vec![net("10.0.0.250/32")],
        mac: None,
        routes: vec![
            Route { to: net("10.0.0.16/28"), via: None },
            Route { to: net("10.5.0.0/24"), via: None },
        ],
    });
    pass2(&t, "h", "a", Rule::ShimPath);
    pass2(&t, "h", "b", Rule::ShimPath);
    assert_eq!(verdict(&t, "a", "b").reach, Reach::Pass);
}

#[test]
fn an_l2_ipvlan_child_reaches_other_hosts_children() {
    let mut t = lan(vec![ipv("a", L2, "10.0.0.10/24")], false);
    t.hosts[1].children = vec![ipv("c", L2, "10.0.0.30/24")];
    pass2(&t, "a", "c", Rule::SameSegment);
}

/// `lan` with l3/l3s children a (10.1.0.10) and b (10.2.0.10) under `flag`, hairpin
/// on the host's port as given.
fn l3_pair(mode: ChildMode, flag: IpvlanFlag, hairpin: bool) -> Topology {
    let t = lan(vec![ipv("a", mode, "10.1.0.10/24"), ipv("b", mode, "10.2.0.10/24")], hairpin);
    flagged(t, flag)
}

/// `t` with router r on the LAN (10.0.0.254) routing the children via h (10.0.0.2),
/// and h's default route through it.
fn routed(mut t: Topology) -> Topology {
    let via = Some(addr("10.0.0.2"));
    let routes = ["10.1.0.10/32", "10.2.0.10/32"].map(|n| Route { to: net(n), via });
    t.routers.push(router_r(routes.to_vec()));
    t.hosts[0].gateway = Some(addr("10.0.0.254"));
    t
}

#[test]
fn l3_private_blocks_siblings_even_through_a_router() {
    for mode in [L3, L3s] {
        for t in [
            l3_pair(mode, IpvlanFlag::Private, true),
            routed(l3_pair(mode, IpvlanFlag::Private, false)),
        ] {
            blocked2(&t, "a", "b", Rule::IpvlanPrivate);
            assert!(
                verdict(&t, "a", "b").fix.unwrap_or_default().contains("drop the private flag")
            );
        }
    }
}

#[test]
fn l3_vepa_siblings_leave_through_the_parent_and_do_not_come_back() {
    for (mode, hairpin) in [(L3, false), (L3, true), (L3s, false), (L3s, true)] {
        let t = l3_pair(mode, IpvlanFlag::Vepa, hairpin);
        blocked2(&t, "a", "b", Rule::IpvlanVepaL3);
        let v = verdict(&t, "a", "b");
        assert!(v.reason.contains("h routes it out of eth0"), "{}", v.reason);
        let fix = v.fix.unwrap_or_default();
        assert!(fix.contains("drop the vepa flag on eth0"), "{fix}");
        assert!(fix.contains("route 10.2.0.10 from h through a router"), "{fix}");
        // Everything but the siblings is as with the bridge flag.
        let bridge = l3_pair(mode, IpvlanFlag::Bridge, hairpin);
        for (from, to) in [("a", "sw"), ("sw", "a"), ("a", "h"), ("h", "b"), ("b", "h2")] {
            assert_eq!(
                verdict(&t, from, to).reach,
                verdict(&bridge, from, to).reach,
                "{from} -> {to}"
            );
        }
    }
}

#[test]
fn l3_vepa_siblings_meet_through_a_router_that_routes_them_via_the_host() {
    for mode in [L3, L3s] {
        let t = routed(l3_pair(mode, IpvlanFlag::Vepa, false));
        pass2(&t, "a", "b", Rule::Routed);
        assert!(verdict(&t, "a", "b").reason.contains("r routes between a and b"));
        // The host's default route brings its own children back to it as well.
        pass2(&t, "h", "a", Rule::Routed);
        pass2(&t, "r", "b", Rule::IpvlanRoutedViaParent);
        // Without the vepa flag the siblings stay inside the kernel.
        let t = routed(l3_pair(mode, IpvlanFlag::Bridge, false));
        pass2(&t, "a", "b", Rule::IpvlanL3Siblings);
    }
}

#[test]
fn l3_vepa_ipv6_siblings_have_no_route_in_the_parent() {
    let t = lan(vec![ipv("a", L3, "fd00:1::10/64"), ipv("b", L3, "fd00:2::10/64")], false);
    let t = flagged(t, IpvlanFlag::Vepa);
    blocked(&t, "a", "b", Rule::IpvlanVepaL3);
    pass(&flagged(t, IpvlanFlag::Bridge), "a", "b", Rule::IpvlanL3Siblings);
}
