//! macvlan rules: siblings by mode and hairpin, the parent, the shim, source lists,
//! nodst, passthru, a down parent, macvtap.

use super::{blocked, blocked2, lan, mv, pass, pass2, verdict};
use crate::reach::presets::net;
use crate::reach::{ChildKind, ChildMode, MacRef, Reach, Route, Rule, Shim};

use ChildMode::{Bridge, Passthru, Private, Source, Vepa};

#[test]
fn bridge_siblings_are_switched_inside_the_kernel() {
    let t = lan(vec![mv("a", Bridge, 10), mv("b", Bridge, 11)], false);
    pass2(&t, "a", "b", Rule::BridgeSiblings);
    pass2(&t, "a", "sw", Rule::SameSegment);
    pass2(&t, "a", "h2", Rule::SameSegment);
}

#[test]
fn vepa_siblings_need_hairpin() {
    let t = lan(vec![mv("a", Vepa, 10), mv("b", Vepa, 11)], false);
    blocked2(&t, "a", "b", Rule::SiblingNeedsHairpin);
    let v = verdict(&t, "a", "b");
    assert!(v.fix.unwrap_or_default().contains("hairpin on for switch port p1"));
    let t = lan(vec![mv("a", Vepa, 10), mv("b", Vepa, 11)], true);
    pass2(&t, "a", "b", Rule::HairpinReflection);
}

/// A bridge child's reflected broadcast reaches VEPA children (macvlan_process_broadcast).
#[test]
fn bridge_and_vepa_siblings_meet_through_hairpin() {
    let t = lan(vec![mv("a", Bridge, 10), mv("b", Vepa, 11)], false);
    blocked2(&t, "a", "b", Rule::SiblingNeedsHairpin);
    let t = lan(vec![mv("a", Bridge, 10), mv("b", Vepa, 11)], true);
    pass2(&t, "a", "b", Rule::HairpinReflection);
}

#[test]
fn private_children_never_reach_siblings_even_with_hairpin() {
    for other in [Bridge, Vepa, Private] {
        for hairpin in [false, true] {
            let t = lan(vec![mv("a", Private, 10), mv("b", other, 11)], hairpin);
            blocked2(&t, "a", "b", Rule::PrivateIsolation);
            pass2(&t, "a", "sw", Rule::SameSegment);
        }
    }
}

#[test]
fn a_parent_never_reaches_its_children_without_hairpin() {
    for mode in [Bridge, Vepa, Private, Source] {
        let t = lan(vec![mv("a", mode, 10)], false);
        blocked2(&t, "a", "h", Rule::ParentChild);
        let v = verdict(&t, "h", "a");
        assert!(v.reason.contains("a macvlan child never reaches its own parent"), "{}", v.reason);
        assert!(v.fix.unwrap_or_default().contains("bridge-mode macvlan shim on eth0 in h"));
    }
    let t = lan(vec![mv("a", Passthru, 10)], false);
    blocked2(&t, "a", "h", Rule::ParentChild);
    assert!(verdict(&t, "a", "h").fix.unwrap_or_default().contains("passthru leaves no room"));
}

/// Derived, not in REFERENCE.md: reflected frames come back through the rx handler.
#[test]
fn hairpin_lets_a_parent_and_its_bridge_or_vepa_child_meet() {
    for mode in [Bridge, Vepa] {
        let t = lan(vec![mv("a", mode, 10)], true);
        pass2(&t, "a", "h", Rule::ParentViaHairpin);
    }
    // A private child's own broadcasts come back to it only: it cannot ARP its parent,
    // but the parent's ARP reaches it.
    let t = lan(vec![mv("a", Private, 10)], true);
    pass(&t, "h", "a", Rule::ParentViaHairpin);
    blocked(&t, "a", "h", Rule::ParentChild);
}

fn with_shim(
    children: Vec<crate::reach::Child>,
    hairpin: bool,
    routes: Vec<Route>,
) -> crate::reach::Topology {
    let mut t = lan(children, hairpin);
    let shim = Shim {
        name: "shim0".to_string(),
        addresses: vec![net("10.0.0.250/32")],
        mac: None,
        routes,
    };
    t.hosts[0].shim = Some(shim);
    t
}

#[test]
fn a_shim_with_a_route_fixes_host_and_child() {
    let range = vec![Route { to: net("10.0.0.8/29"), via: None }];
    let t = with_shim(vec![mv("a", Bridge, 10), mv("b", Bridge, 11)], false, range);
    pass2(&t, "h", "a", Rule::ShimPath);
    pass2(&t, "h", "b", Rule::ShimPath);
    pass2(&t, "a", "b", Rule::BridgeSiblings);
    pass2(&t, "h", "sw", Rule::SameSegment);
}

#[test]
fn a_shim_without_a_route_leaves_the_host_on_its_parent() {
    let t = with_shim(vec![mv("a", Bridge, 10)], false, Vec::new());
    blocked(&t, "h", "a", Rule::ParentChild);
    let fix = verdict(&t, "h", "a").fix.unwrap_or_default();
    assert!(fix.contains("route 10.0.0.10 via the shim shim0"), "{fix}");
}

#[test]
fn a_bridge_shim_meets_a_vepa_child_only_through_hairpin() {
    let range = vec![Route { to: net("10.0.0.8/29"), via: None }];
    let t = with_shim(vec![mv("a", Vepa, 10)], false, range.clone());
    blocked(&t, "h", "a", Rule::SiblingNeedsHairpin);
    let t = with_shim(vec![mv("a", Vepa, 10)], true, range.clone());
    pass(&t, "h", "a", Rule::ShimPath);
    let t = with_shim(vec![mv("a", Private, 10)], true, range);
    blocked(&t, "h", "a", Rule::PrivateIsolation);
}

fn source(list: &[&str], nodst: bool) -> crate::reach::Child {
    let mut c = mv("s", Source, 10);
    c.source_macs = list.iter().map(|n| MacRef::from(n.to_string())).collect();
    c.nodst = nodst;
    c
}

#[test]
fn a_source_child_hears_only_listed_macs() {
    let t = lan(vec![source(&["sw"], false)], false);
    pass2(&t, "s", "sw", Rule::SourceListed);
    blocked2(&t, "s", "h2", Rule::SourceNotListed);
    let fix = verdict(&t, "s", "h2").fix.unwrap_or_default();
    assert!(fix.contains("add h2's MAC to s's source list"), "{fix}");
    let t = lan(vec![source(&["sw", "h2"], false)], false);
    pass2(&t, "s", "h2", Rule::SourceListed);
    // Without nodst the parent still hears the listed peers.
    pass2(&t, "h", "sw", Rule::SameSegment);
}

#[test]
fn a_source_list_may_hold_literal_macs() {
    let mut t = lan(vec![source(&["02:00:00:00:00:01"], false)], false);
    t.switch.mac = "02:00:00:00:00:01".parse().ok();
    pass2(&t, "s", "sw", Rule::SourceListed);
}

#[test]
fn nodst_takes_a_listed_peer_away_from_the_parent() {
    let t = lan(vec![source(&["h2"], true)], false);
    pass2(&t, "s", "h2", Rule::SourceListed);
    blocked2(&t, "h", "h2", Rule::SourceNodst);
    pass2(&t, "h", "sw", Rule::SameSegment);
}

#[test]
fn a_source_child_and_its_siblings() {
    let t = lan(vec![source(&["sw"], false), mv("b", Bridge, 11)], true);
    blocked(&t, "b", "s", Rule::SourceNotListed);
    blocked(&t, "s", "b", Rule::SourceBroadcastReturned);
    let t = lan(vec![source(&["sw", "b"], false), mv("b", Bridge, 11)], true);
    pass(&t, "b", "s", Rule::SourceListed);
    blocked(&t, "s", "b", Rule::SourceBroadcastReturned);
    assert!(verdict(&t, "s", "b").reason.contains("the switch reflects"));
}

/// Without hairpin the switch reflects nothing: the reason must not say it does.
#[test]
fn a_source_child_and_its_siblings_without_hairpin() {
    let t = lan(vec![source(&["sw", "b"], false), mv("b", Bridge, 11)], false);
    blocked2(&t, "s", "b", Rule::SourceBroadcastReturned);
    for (from, to) in [("s", "b"), ("b", "s")] {
        let v = verdict(&t, from, to);
        assert!(v.reason.contains("port p1 does not reflect frames"), "{}", v.reason);
        assert!(!v.reason.contains("the switch reflects"), "{}", v.reason);
        assert_eq!(v.fix.as_deref(), Some("use bridge mode for s"));
    }
}

#[test]
fn passthru_takes_the_parents_unicast() {
    let t = lan(vec![mv("p", Passthru, 10)], false);
    pass2(&t, "p", "sw", Rule::SameSegment);
    pass2(&t, "p", "h2", Rule::SameSegment);
    blocked2(&t, "h", "sw", Rule::PassthruTakesParent);
}

#[test]
fn a_down_parent_takes_everything_on_it_down() {
    let mut t = lan(vec![mv("a", Bridge, 10), mv("b", Bridge, 11)], false);
    t.hosts[0].up = false;
    blocked2(&t, "a", "b", Rule::ParentDown);
    blocked2(&t, "a", "h2", Rule::ParentDown);
    blocked2(&t, "h", "sw", Rule::ParentDown);
    pass2(&t, "h2", "sw", Rule::SameSegment);
}

#[test]
fn another_hosts_children_are_on_the_same_segment() {
    let mut t = lan(vec![mv("a", Vepa, 10)], false);
    t.hosts[1].children = vec![mv("c", Private, 20)];
    pass2(&t, "a", "c", Rule::SameSegment);
    pass2(&t, "c", "h", Rule::SameSegment);
    blocked2(&t, "c", "h2", Rule::ParentChild);
}

#[test]
fn macvtap_children_behave_like_macvlan() {
    let mut a = mv("a", Bridge, 10);
    let mut b = mv("b", Bridge, 11);
    a.kind = ChildKind::Macvtap;
    b.kind = ChildKind::Macvtap;
    let t = lan(vec![a, b], false);
    pass2(&t, "a", "b", Rule::BridgeSiblings);
    blocked2(&t, "a", "h", Rule::ParentChild);
    assert_eq!(verdict(&t, "a", "sw").reach, Reach::Pass);
}
