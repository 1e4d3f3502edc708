//! Routing rules: a second subnet through a router, missing routes either way, a
//! gateway nobody answers for, a host that does not forward, loops, addresses.

use super::{blocked, blocked2, lan, mv, pass, pass2, router_r, verdict};
use crate::reach::presets::{addr, net};
use crate::reach::{
    ChildMode, EndpointRef, Reach, Remote, Route, Router, Rule, Seen, Sighting, Topology, predict,
};

/// `lan` with child `a` (.10, gateway as given) and router `r` (.254 / 10.8.0.1/24)
/// in front of remote `x` (10.8.0.5/24, default route via r unless `x_gw` is false).
fn routed(a_gw: Option<&str>, x_gw: bool) -> Topology {
    let mut a = mv("a", ChildMode::Bridge, 10);
    a.gateway = a_gw.map(addr);
    let mut t = lan(vec![a], false);
    t.routers.push(router_r(Vec::new()));
    t.remotes.push(Remote {
        name: "x".to_string(),
        router: None,
        addresses: vec![net("10.8.0.5/24")],
        gateway: x_gw.then(|| addr("10.8.0.1")),
        routes: Vec::new(),
    });
    t
}

#[test]
fn a_second_subnet_needs_a_default_route_via_the_router() {
    let t = routed(None, true);
    blocked(&t, "a", "x", Rule::NoRoute);
    blocked(&t, "x", "a", Rule::NoReturnRoute);
    let fix = verdict(&t, "a", "x").fix.unwrap_or_default();
    assert!(fix.contains("add a default route on a via 10.0.0.254 (r)"), "{fix}");
    let t = routed(Some("10.0.0.254"), true);
    pass2(&t, "a", "x", Rule::Routed);
    pass2(&t, "x", "r", Rule::SameSegment);
    pass2(&t, "a", "r", Rule::SameSegment);
}

#[test]
fn the_far_side_needs_its_way_back_too() {
    let t = routed(Some("10.0.0.254"), false);
    blocked(&t, "a", "x", Rule::NoReturnRoute);
    blocked(&t, "x", "a", Rule::NoRoute);
    let fix = verdict(&t, "a", "x").fix.unwrap_or_default();
    assert!(fix.contains("add a default route on x via 10.8.0.1 (r)"), "{fix}");
}

#[test]
fn a_router_needs_a_route_to_an_ipvlan_l3_subnet() {
    let mut t = routed(None, true);
    t.hosts[0].children = vec![super::ipv("a", ChildMode::L3, "10.9.0.20/24")];
    // The child's packets leave through the parent's routing table.
    blocked(&t, "a", "x", Rule::NoNeighbour);
    t.hosts[0].gateway = Some(addr("10.0.0.254"));
    blocked(&t, "a", "x", Rule::NoReturnRoute);
    let fix = verdict(&t, "a", "x").fix.unwrap_or_default();
    assert!(fix.contains("add a route on r to 10.9.0.20 via h's address 10.0.0.2"), "{fix}");
    t.routers[0].routes = vec![Route { to: net("10.9.0.0/24"), via: Some(addr("10.0.0.2")) }];
    pass2(&t, "a", "x", Rule::Routed);
    pass2(&t, "h", "x", Rule::Routed);
}

#[test]
fn a_gateway_nobody_answers_for() {
    let t = routed(Some("10.0.0.99"), true);
    blocked(&t, "a", "x", Rule::NoNeighbour);
    // The file is the whole world: nothing else answers; the verdict says which
    // next hop outside the topology it rests on, for the live state to probe.
    let v = verdict(&t, "a", "x");
    let beyond = v.beyond.clone().unwrap_or_else(|| panic!("no beyond: {v:?}"));
    assert_eq!((beyond.asker.0.as_str(), beyond.next_hop), ("a", addr("10.0.0.99")));
    assert_eq!((beyond.sender, beyond.destination), (Some(addr("10.0.0.10")), net("10.8.0.0/24")));
    assert!(!v.unconfirmed && beyond.seen.is_none());
    // A next hop the topology carries (the router) is no such assumption.
    let t = routed(Some("10.0.0.254"), false);
    assert!(verdict(&t, "a", "x").beyond.is_none());
}

/// Issue 16, defect 14: on the live state a gateway outside nicslice's namespaces
/// is probed, and the verdict is worded by what was seen.
#[test]
fn a_gateway_outside_is_worded_by_what_a_probe_saw() {
    let v = verdict(&routed(Some("10.0.0.99"), true), "a", "x");
    let saw = |seen, asked_from: Option<&str>, why_not: Option<&str>| Sighting {
        seen,
        asked_from: asked_from.map(str::to_string),
        why_not: why_not.map(str::to_string),
    };
    let answered = v.clone().seen(&saw(Seen::Answered, None, None));
    assert_eq!((answered.reach, answered.rule), (Reach::Blocked, Rule::NextHopBeyond));
    assert!(answered.unconfirmed);
    assert_eq!(
        answered.reason,
        "blocked: 10.0.0.99 answers a's ARP; whether it routes to 10.8.0.0/24 (and back) is beyond what nicslice can see"
    );
    assert_eq!(answered.beyond.as_ref().and_then(|b| b.seen), Some(Seen::Answered));
    let silent = v.clone().seen(&saw(Seen::Unanswered, Some("a"), None));
    assert_eq!((silent.rule, silent.unconfirmed), (Rule::NoNeighbour, false));
    assert_eq!(silent.reason, "blocked: nothing answers a's ARP for 10.0.0.99 (probed just now)");
    let beside = v.clone().seen(&saw(Seen::Answered, Some("b"), None));
    assert!(
        beside.reason.contains("10.0.0.99 answers ARP from b (beside a);"),
        "{}",
        beside.reason
    );
    assert_eq!(beside.beyond.and_then(|b| b.asked_from).as_deref(), Some("b"));
    let unprobed = v.seen(&saw(Seen::NotProbed, None, Some("a's namespace is gone")));
    assert!(unprobed.unconfirmed && unprobed.reason.contains("(a's namespace is gone)"));
    let json = serde_json::to_value(&answered).unwrap_or_default();
    assert_eq!(json["unconfirmed"], true);
    assert_eq!(json["beyond"]["next_hop"], "10.0.0.99");
    assert_eq!(json["beyond"]["seen"], "answered");
    // A verdict resting on nothing outside is left as it is.
    let inside = verdict(&routed(None, true), "a", "x");
    assert_eq!(inside.clone().seen(&saw(Seen::Answered, None, None)), inside);
}

#[test]
fn only_routers_forward() {
    let t = routed(Some("10.0.0.3"), true);
    blocked(&t, "a", "x", Rule::NotForwarding);
}

#[test]
fn routes_in_a_circle() {
    let mut t = routed(Some("10.0.0.254"), true);
    t.remotes[0].addresses = vec![net("10.50.0.5/24")];
    t.remotes[0].gateway = None;
    t.routers.push(Router {
        name: "r2".to_string(),
        port: None,
        lan: net("10.0.0.253/24"),
        far: net("10.9.0.1/24"),
        mac: None,
        gateway: None,
        routes: vec![Route { to: net("10.50.0.0/24"), via: Some(addr("10.0.0.254")) }],
    });
    t.remotes[0].router = Some("r".to_string());
    t.routers[0].routes = vec![Route { to: net("10.50.0.0/24"), via: Some(addr("10.0.0.253")) }];
    blocked(&t, "a", "x", Rule::RoutingLoop);
}

#[test]
fn endpoints_without_an_address() {
    let mut t = lan(vec![mv("a", ChildMode::Bridge, 10)], false);
    t.hosts[0].children[0].addresses.clear();
    blocked2(&t, "a", "sw", Rule::NoAddress);
    t.switch.addresses = vec![net("fd00::1/64")];
    t.hosts[0].children[0].addresses = vec![net("10.0.0.10/24")];
    blocked(&t, "a", "sw", Rule::NoAddress);
    assert!(verdict(&t, "a", "sw").reason.contains("no IPv6 address"));
}

#[test]
fn ipv6_follows_the_same_rules() {
    let mut t = lan(vec![mv("a", ChildMode::Bridge, 10), mv("b", ChildMode::Vepa, 11)], false);
    t.switch.addresses = vec![net("fd00::1/64")];
    t.hosts[0].addresses = vec![net("fd00::2/64")];
    t.hosts[1].addresses = vec![net("fd00::3/64")];
    t.hosts[0].children[0].addresses = vec![net("fd00::10/64")];
    t.hosts[0].children[1].addresses = vec![net("fd00::11/64")];
    pass2(&t, "a", "sw", Rule::SameSegment);
    blocked2(&t, "a", "h", Rule::ParentChild);
    blocked2(&t, "a", "b", Rule::SiblingNeedsHairpin);
}

#[test]
fn an_endpoint_reaches_itself() {
    let t = lan(vec![mv("a", ChildMode::Bridge, 10)], false);
    pass(&t, "a", "a", Rule::SameEndpoint);
}

#[test]
fn unknown_endpoints_are_errors() {
    let t = lan(Vec::new(), false);
    let err = predict(&t, &EndpointRef::from("nope"), &EndpointRef::from("sw"));
    let msg = err.map(|_| String::new()).unwrap_or_else(|e| e.to_string());
    assert!(msg.contains("\"nope\" is not an endpoint") && msg.contains("sw, h, h2"), "{msg}");
}
