//! ipvlan rules: l2 siblings and flags, l3/l3s siblings across subnets, NOARP l3
//! children and the route via the host, the parent, an ipvlan shim.

use super::{blocked, blocked2, ipv, lan, pass2, verdict};
use crate::reach::presets::net;
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
