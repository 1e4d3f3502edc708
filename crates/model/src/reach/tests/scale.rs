//! The cost of a prediction must not grow with the number of endpoints: a matrix
//! of n endpoints is n² pairs, and each pair takes the same few steps (frames
//! decided, neighbours asked, route buckets and hops looked at) whether a parent
//! has 10 children or 400. Before the world was indexed, every ARP looked at every
//! station and every frame at every sibling: 400 children took minutes.

use std::time::Instant;

use super::{lan, router_r};
use crate::reach::presets::{addr, child, net};
use crate::reach::world::{EpView, World};
use crate::reach::{ChildKind, ChildMode, Host, MacRef, Reach, Route, Shim, Topology, predict_in};

/// `n` children in each of four kinds on one LAN: macvlan bridge children behind a
/// shim that routes each of them (the host's table grows with n), source-mode
/// children listing the switch, ipvlan l3 children routed by a router, and ipvlan
/// l2 children; some with a default route through the router.
fn big(n: usize) -> Topology {
    let mut t = lan(Vec::new(), false);
    t.switch.addresses = vec![net("10.0.0.1/16")];
    t.routers = vec![router_r(vec![Route { to: net("10.9.0.0/16"), via: Some(addr("10.0.3.2")) }])];
    t.routers[0].lan = net("10.0.0.254/16");
    let host = |name: &str, at: &str, children| Host {
        name: name.to_string(),
        port: None,
        parent: "eth0".to_string(),
        addresses: vec![net(at)],
        mac: None,
        up: true,
        gateway: None,
        routes: Vec::new(),
        children,
        shim: None,
    };
    let at = |third: usize, i: usize| format!("10.{}.{}.{}/16", third / 256, third % 256, i + 1);
    let mut bridge = Vec::new();
    let mut source = Vec::new();
    let (mut l3, mut l2) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (b, s) = (format!("b{i}"), format!("s{i}"));
        let mut c = child(&b, ChildKind::Macvlan, ChildMode::Bridge, &at(i / 250 * 4 + 1, i % 250));
        c.gateway = (i % 2 == 0).then(|| addr("10.0.0.254"));
        bridge.push(c);
        let mut c = child(&s, ChildKind::Macvlan, ChildMode::Source, &at(i / 250 * 4 + 2, i % 250));
        c.source_macs = vec![MacRef::Endpoint("sw".to_string())];
        source.push(c);
        let mut c = child(&format!("l3c{i}"), ChildKind::Ipvlan, ChildMode::L3, "10.9.0.1/24");
        c.addresses = vec![net(&format!("10.9.{}.{}/24", i / 250, i % 250 + 1))];
        c.default_dev = true;
        l3.push(c);
        l2.push(child(
            &format!("l2c{i}"),
            ChildKind::Ipvlan,
            ChildMode::L2,
            &at(i / 250 * 4 + 4, i % 250),
        ));
    }
    let routes = bridge
        .iter()
        .map(|c| Route { to: net(&format!("{}/32", c.addresses[0].addr())), via: None });
    let shim = Shim {
        name: "mac0".into(),
        addresses: vec![net("10.0.250.1/32")],
        mac: None,
        routes: routes.collect(),
    };
    t.hosts = vec![
        Host { shim: Some(shim), ..host("hb", "10.0.250.2/16", bridge) },
        host("hs", "10.0.250.3/16", source),
        host("h3", "10.0.3.2/16", l3),
        host("h2", "10.0.250.4/16", l2),
    ];
    t
}

/// (steps per pair, pairs, blocked pairs) over the whole matrix.
fn cost(t: &Topology) -> (f64, usize, usize) {
    let w = match World::build(t) {
        Ok(w) => w,
        Err(e) => panic!("{e}"),
    };
    let eps: Vec<&EpView> = w.eps.iter().filter(|e| w.target_addr(e).is_some()).collect();
    let (mut pairs, mut blocked) = (0, 0);
    for a in &eps {
        for b in eps.iter().filter(|b| b.name != a.name) {
            pairs += 1;
            blocked += usize::from(predict_in(&w, a, b).reach == Reach::Blocked);
        }
    }
    (w.steps.get() as f64 / pairs as f64, pairs, blocked)
}

#[test]
fn steps_per_pair_do_not_grow_with_the_children() {
    let (small, small_pairs, small_blocked) = cost(&big(10));
    let started = Instant::now();
    let (large, pairs, blocked) = cost(&big(100));
    let took = started.elapsed();
    assert!(small_blocked > 0 && small_blocked < small_pairs, "a mix of verdicts");
    assert!(blocked > 0 && blocked < pairs, "a mix of verdicts");
    assert!(
        large <= small * 1.25,
        "{small:.1} steps per pair with 10 children per host, {large:.1} with 100: the walk scans"
    );
    // 160,000 pairs in a debug build on a busy machine: generous, and still far
    // below what scanning every station took (minutes).
    assert!(took.as_secs() < 30, "{pairs} pairs took {took:?}");
}
