//! `nicslice explain` on a file, on a preset, and on the live state, where it
//! must see the user's own fix (a shim) and change its verdict.

mod common;

use common::*;
use nicslice_kernel::{MacvlanLinkRequest, Route, RouteSocket};
use nicslice_model::{Driver, MacvlanMode};

/// The documented example, written out where the test runs (the VM stage has
/// no source tree).
fn example() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("nicslice-example-{}.toml", std::process::id()));
    std::fs::write(&path, include_str!("../../../docs/examples/host-and-container.toml")).unwrap();
    path
}

#[test]
fn explains_a_topology_file_and_one_pair() {
    let lab = Lab::new("explf");
    let out = lab.ok(&["explain", example().to_str().unwrap()]);
    assert!(out.contains("a parent never reaches its own macvlan/ipvlan children"), "{out}");
    assert!(out.contains("add a bridge-mode macvlan shim on ens160"), "{out}");
    let v =
        lab.json(&["explain", example().to_str().unwrap(), "--from", "container", "--to", "lan"]);
    assert_eq!(v["reach"], "pass");
    lab.fails(&["explain", "/nonexistent.toml"], "reading /nonexistent.toml");
    lab.fails(&["explain", "--preset", "nope"], "no preset nope");
}

#[test]
fn explains_the_live_state_and_sees_a_shim() {
    let mut lab = Lab::new("explive");
    lab.lan("lan", &[]);
    let (c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    let child = format!("eth0@{n1}");
    let v = lab.json(&["explain", "--from", "host", "--to", &child]);
    assert_eq!(v["reach"], "blocked", "{v}");
    assert_eq!(v["rule"], "parent_child");
    assert!(!ping(&lab.host.netns, "192.168.0.11"), "and the kernel agrees");

    // The user applies the fix by hand (seed 000's mac0): nicslice sees it.
    let mut host = RouteSocket::open_in(&lab.host.netns).unwrap();
    let parent = host.require_link("eth0", "host").unwrap();
    let shim = MacvlanLinkRequest::new(
        Driver::Macvlan,
        "mac0".parse().unwrap(),
        parent.index,
        MacvlanMode::Bridge,
    );
    host.create_macvlan(&shim, None).unwrap();
    let m = host.require_link("mac0", "host").unwrap();
    host.add_address(m.index, "192.168.0.250/32".parse().unwrap()).unwrap();
    host.set_up(m.index, true).unwrap();
    host.add_route(&Route {
        destination: "192.168.0.11/32".parse().unwrap(),
        gateway: None,
        oif: Some(m.index),
        metric: None,
    })
    .unwrap();
    let v = lab.json(&["explain", "--from", "host", "--to", &child]);
    assert_eq!(v["reach"], "pass", "{v}");
    assert!(ping(&lab.host.netns, "192.168.0.11"), "and the kernel agrees");
    let _ = c1;
}
