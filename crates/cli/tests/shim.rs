//! Host access (`nicslice shim`, `network create --host-access`): the host
//! reaches its own macvlan children through a shim nicslice makes, and not
//! without it; children reach the host; the gateway stays reachable; an
//! endpoint attached later is routed at once and its route goes on detach;
//! the model refuses a shim that cannot work; every failed step and every
//! removal leave nothing behind.

mod common;

use common::*;
use nicslice_kernel::Netns;

/// Host routes (a /32 to `ip`) in the host namespace.
fn host_route_to(ns: &Netns, ip: &str) -> bool {
    routes(ns).iter().any(|r| r.destination.to_string() == format!("{ip}/32"))
}

#[test]
fn the_host_reaches_its_children_through_the_shim_and_only_through_it() {
    let mut lab = Lab::new("shim");
    lab.lan("lan", &["--mode", "bridge"]);
    let (c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    let host = lab.host.netns.clone_handle().unwrap();
    assert!(!ping(&host, "192.168.0.11"), "seed 000's problem: the host cannot reach its child");

    let made = lab.json(&["shim", "add", "lan"]);
    assert_eq!(made["sources"][0], "192.168.0.254", "{made}");
    assert!(made["addresses"].as_array().unwrap().is_empty(), "no address of the pool spent");
    let shim = made["name"].as_str().unwrap().to_string();
    let l = link(&host, &shim).expect("the shim exists in the host namespace");
    assert_eq!(l.kind.as_deref(), Some("macvlan"));
    assert_eq!(l.macvlan.unwrap().mode, Some(nicslice_model::MacvlanMode::Bridge));
    assert!(ping(&host, "192.168.0.11"), "host -> child through the shim");
    assert!(ping(&c1, "192.168.0.254"), "child -> host");
    assert!(ping(&host, "192.168.0.1"), "the gateway is still reached through the parent");
    // `explain` sees the shim nicslice made as the host's path.
    let v = lab.json(&["explain", "--from", "host", "--to", &format!("eth0@{n1}")]);
    assert_eq!(v["reach"], "pass", "{v}");
    assert_eq!(v["rule"], "shim_path", "{v}");
    // The parent's subnet route is untouched.
    let subnet = routes(&host).into_iter().find(|r| r.destination.to_string() == "192.168.0.0/24");
    assert_eq!(subnet.and_then(|r| r.oif), link(&host, "eth0").map(|l| l.index));

    // A later endpoint is routed at once; its route goes with detach.
    let (_c2, n2) = lab.netns("c2");
    lab.ok(&["attach", "lan", "--netns", &n2, "--ip", "192.168.0.12"]);
    assert!(ping(&host, "192.168.0.12"));
    let listed = lab.json(&["shim", "ls"]);
    assert_eq!(listed[0]["routes"].as_array().unwrap().len(), 2, "{listed}");
    lab.ok(&["detach", "lan", "--netns", &n2]);
    assert!(!host_route_to(&host, "192.168.0.12"));

    lab.ok(&["shim", "rm", "lan"]);
    assert!(link(&host, &shim).is_none());
    assert!(!host_route_to(&host, "192.168.0.11"));
    assert!(!ping(&host, "192.168.0.11"), "without the shim the host is cut off again");
    assert!(lab.json(&["shim", "ls"]).as_array().unwrap().is_empty());
}

#[test]
fn host_access_in_one_step_and_network_rm_leaves_nothing() {
    let mut lab = Lab::new("shim1");
    let before = non_lo(&lab.host.netns);
    lab.lan("lan", &["--host-access"]);
    let (_c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    assert!(ping(&lab.host.netns, "192.168.0.11"));
    lab.ok(&["network", "rm", "lan", "--force"]);
    assert_eq!(non_lo(&lab.host.netns), before);
    assert!(!host_route_to(&lab.host.netns, "192.168.0.11"));
}

#[test]
fn the_model_refuses_a_shim_that_cannot_reach_the_children() {
    let lab = Lab::new("shimno");
    let before = non_lo(&lab.host.netns);
    for (mode, why) in [
        ("private", "private-mode child private never reaches its sibling shim"),
        ("vepa", "hairpin"),
        ("passthru", "passthru"),
    ] {
        lab.lan(mode, &["--mode", mode]);
        lab.fails(&["shim", "add", mode], why);
        lab.ok(&["network", "rm", mode]);
    }
    // The one-step form refuses as a whole: no network, no shim.
    lab.fails(
        &[
            "network",
            "create",
            "p",
            "--parent",
            "eth0",
            "--subnet",
            "192.168.0.0/24",
            "--mode",
            "private",
            "--host-access",
        ],
        "private",
    );
    assert!(lab.json(&["network", "ls"]).as_array().unwrap().is_empty());
    assert_eq!(non_lo(&lab.host.netns), before);
}

#[test]
fn each_failed_step_of_shim_add_leaves_nothing() {
    let mut lab = Lab::new("shimfail");
    lab.lan("lan", &[]);
    let (_c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    let before = non_lo(&lab.host.netns);
    let routes_before = routes(&lab.host.netns);
    for step in ["create-link", "add-address", "link-up", "add-route", "store-commit"] {
        let out = lab.run_env(
            &["shim", "add", "lan", "--ip", "192.168.0.200"],
            &[("NICSLICE_FAIL_AT", step)],
        );
        assert!(!out.status.success(), "{step}: shim add succeeded");
        assert_eq!(non_lo(&lab.host.netns), before, "{step} left a link");
        assert_eq!(routes(&lab.host.netns), routes_before, "{step} left a route");
        assert!(lab.json(&["shim", "ls"]).as_array().unwrap().is_empty(), "{step}");
    }
    // The address asked for was released every time: it is still free.
    let made = lab.json(&["shim", "add", "lan", "--ip", "192.168.0.200"]);
    assert_eq!(made["addresses"][0], "192.168.0.200");
    let (_c2, n2) = lab.netns("c2");
    lab.fails(&["attach", "lan", "--netns", &n2, "--ip", "192.168.0.200"], "in use");
    assert!(ping(&lab.host.netns, "192.168.0.11"), "host -> child through a shim with its own /32");
}

#[test]
fn ipv6_goes_through_the_shims_own_address_of_the_pool() {
    let mut lab = Lab::new("shim6");
    lab.ok(&["network", "create", "v6", "--parent", "eth0", "--subnet", "fd00:5::/64"]);
    let (c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "v6", "--netns", &n1, "--ip", "fd00:5::11"]);
    assert!(!ping(&lab.host.netns, "fd00:5::11"));
    let made = lab.json(&["shim", "add", "v6"]);
    // NDP answers only for addresses on the asking interface: the shim takes
    // one of the pool, as a /128 (no subnet route of its own).
    let own = made["addresses"][0].as_str().unwrap().to_string();
    assert!(own.starts_with("fd00:5::"), "{made}");
    assert!(
        addresses(&lab.host.netns, made["name"].as_str().unwrap()).contains(&format!("{own}/128"))
    );
    assert!(ping(&lab.host.netns, "fd00:5::11"), "host -> child over IPv6");
    assert!(ping(&c1, &own), "child -> the shim's address");
    // The shim's address is leased: no endpoint gets it.
    let (_c2, n2) = lab.netns("c2");
    lab.fails(&["attach", "v6", "--netns", &n2, "--ip", &own], "in use");
    lab.ok(&["shim", "rm", "v6"]);
    lab.ok(&["attach", "v6", "--netns", &n2, "--ip", &own]);
}
