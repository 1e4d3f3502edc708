//! Unit tests of the reachability model, one file per area, with small helpers.

mod ipvlan;
mod macvlan;
mod neighbour;
mod routing;
mod scale;
mod seeds;
mod topology;

use super::presets::{child, net};
use super::{
    Child, ChildKind, ChildMode, EndpointRef, Host, Port, Reach, Route, Router, Rule, Switch,
    Topology, Verdict, predict,
};

/// The verdict for `from -> to`; the topology must be valid.
fn verdict(t: &Topology, from: &str, to: &str) -> Verdict {
    match predict(t, &EndpointRef::from(from), &EndpointRef::from(to)) {
        Ok(v) => v,
        Err(e) => panic!("{from} -> {to}: {e}"),
    }
}

/// Asserts the outcome and the rule, that the reason says the outcome, and that
/// exactly the blocked verdicts carry a fix.
#[track_caller]
fn expect(t: &Topology, from: &str, to: &str, reach: Reach, rule: Rule) {
    let v = verdict(t, from, to);
    assert_eq!((v.reach, v.rule), (reach, rule), "{from} -> {to}: {}", v.reason);
    let word = if reach == Reach::Pass { "pass: " } else { "blocked: " };
    assert!(v.reason.starts_with(word), "{}", v.reason);
    assert_eq!(v.fix.is_some(), reach == Reach::Blocked, "{from} -> {to}: fix {:?}", v.fix);
}

#[track_caller]
fn pass(t: &Topology, from: &str, to: &str, rule: Rule) {
    expect(t, from, to, Reach::Pass, rule);
}

#[track_caller]
fn blocked(t: &Topology, from: &str, to: &str, rule: Rule) {
    expect(t, from, to, Reach::Blocked, rule);
}

/// Both directions.
#[track_caller]
fn pass2(t: &Topology, a: &str, b: &str, rule: Rule) {
    pass(t, a, b, rule);
    pass(t, b, a, rule);
}

#[track_caller]
fn blocked2(t: &Topology, a: &str, b: &str, rule: Rule) {
    blocked(t, a, b, rule);
    blocked(t, b, a, rule);
}

/// A LAN 10.0.0.0/24: switch `sw` (.1) with port p1 (hairpin as given), host `h`
/// (.2, parent eth0 on p1) carrying `children`, and a plain host `h2` (.3).
fn lan(children: Vec<Child>, hairpin: bool) -> Topology {
    let host = |name: &str, port: Option<&str>, addr: &str| Host {
        name: name.to_string(),
        port: port.map(str::to_string),
        parent: "eth0".to_string(),
        addresses: vec![net(addr)],
        mac: None,
        up: true,
        gateway: None,
        routes: Vec::new(),
        children: Vec::new(),
        shim: None,
    };
    Topology {
        switch: Switch {
            name: "sw".to_string(),
            addresses: vec![net("10.0.0.1/24")],
            ports: vec![Port { name: "p1".to_string(), hairpin }],
            ..Switch::default()
        },
        hosts: vec![
            Host { children, ..host("h", Some("p1"), "10.0.0.2/24") },
            host("h2", None, "10.0.0.3/24"),
        ],
        ..Topology::default()
    }
}

/// A macvlan child `name` in `mode` at 10.0.0.`n`/24.
fn mv(name: &str, mode: ChildMode, n: u8) -> Child {
    child(name, ChildKind::Macvlan, mode, &format!("10.0.0.{n}/24"))
}

/// An ipvlan child `name` in `mode` at `addr`, with a `default dev` route.
fn ipv(name: &str, mode: ChildMode, addr: &str) -> Child {
    Child { default_dev: true, ..child(name, ChildKind::Ipvlan, mode, addr) }
}

/// Router `r` on `lan`'s LAN (10.0.0.254/24), far side 10.8.0.1/24, with `routes`.
fn router_r(routes: Vec<Route>) -> Router {
    Router {
        name: "r".to_string(),
        port: None,
        lan: net("10.0.0.254/24"),
        far: net("10.8.0.1/24"),
        mac: None,
        gateway: None,
        routes,
    }
}
