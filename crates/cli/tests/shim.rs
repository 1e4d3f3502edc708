//! Host access (`nicslice shim`, `network create --host-access`): the host
//! reaches its own macvlan children through a shim nicslice makes, and not
//! without it; children reach the host; the gateway stays reachable; an
//! endpoint attached later is routed at once and its route goes on detach;
//! the model refuses a shim that cannot work; every failed step and every
//! removal leave nothing behind.

mod common;

use common::*;
use nicslice_kernel::{Netns, Route, RouteSocket};

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
    assert!(ping(&host, "192.168.0.1"), "the gateway before the shim");

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
    assert!(ping(&host, "192.168.0.1"), "the gateway after a later attach");
    lab.ok(&["detach", "lan", "--netns", &n2]);
    assert!(!host_route_to(&host, "192.168.0.12"));
    assert!(ping(&host, "192.168.0.1"), "the gateway after a detach");

    lab.ok(&["shim", "rm", "lan"]);
    assert!(link(&host, &shim).is_none());
    assert!(!host_route_to(&host, "192.168.0.11"));
    assert!(!ping(&host, "192.168.0.11"), "without the shim the host is cut off again");
    assert!(ping(&host, "192.168.0.1"), "the gateway after shim rm");
    assert!(lab.json(&["shim", "ls"]).as_array().unwrap().is_empty());
}

#[test]
fn host_access_in_one_step_and_network_rm_leaves_nothing() {
    let mut lab = Lab::new("shim1");
    let before = non_lo(&lab.host.netns);
    let routes_before = routes(&lab.host.netns);
    lab.lan("lan", &["--host-access"]);
    let (_c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    assert!(ping(&lab.host.netns, "192.168.0.11"));
    lab.ok(&["network", "rm", "lan", "--force"]);
    assert_eq!(non_lo(&lab.host.netns), before);
    assert_eq!(routes(&lab.host.netns), routes_before, "the host's whole route table is back");
    assert!(lab.json(&["shim", "ls"]).as_array().unwrap().is_empty());
    assert!(ping(&lab.host.netns, "192.168.0.1"), "the gateway after network rm");
}

/// `network create --host-access` failed at each kernel step of its shim:
/// no network, no shim, no route.
#[test]
fn a_failed_host_access_create_leaves_no_network() {
    let lab = Lab::new("shim1f");
    let before = non_lo(&lab.host.netns);
    let routes_before = routes(&lab.host.netns);
    for step in ["create-link", "link-up", "add-route", "store-commit"] {
        let args = ["network", "create", "lan", "--parent", "eth0", "--subnet", "192.168.0.0/24"];
        let mut args = args.to_vec();
        args.push("--host-access");
        let out = lab.run_env(&args, &[("NICSLICE_FAIL_AT", step)]);
        assert!(!out.status.success(), "{step}: network create --host-access succeeded");
        assert!(lab.json(&["network", "ls"]).as_array().unwrap().is_empty(), "{step}");
        assert!(lab.json(&["shim", "ls"]).as_array().unwrap().is_empty(), "{step}");
        assert_eq!(non_lo(&lab.host.netns), before, "{step} left a link");
        assert_eq!(routes(&lab.host.netns), routes_before, "{step} left a route");
    }
}

/// `shim rm` and `network rm --force` failed at the link's delete or the
/// commit keep the shim whole: its link, routes and record.
#[test]
fn a_failed_removal_keeps_the_shim_whole() {
    let mut lab = Lab::new("shimrmf");
    lab.lan("lan", &["--host-access"]);
    let (_c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    let shim = lab.json(&["shim", "ls"])[0]["name"].as_str().unwrap().to_string();
    let links_before = non_lo(&lab.host.netns);
    let routes_before = routes(&lab.host.netns);
    let whole = |what: &str| {
        assert_eq!(non_lo(&lab.host.netns), links_before, "{what}: links");
        assert_eq!(routes(&lab.host.netns), routes_before, "{what}: routes");
        let listed = lab.json(&["shim", "ls"]);
        assert_eq!(listed[0]["name"], shim.as_str(), "{what}: {listed}");
        assert_eq!(lab.json(&["network", "ls"]).as_array().unwrap().len(), 1, "{what}");
        assert!(ping(&lab.host.netns, "192.168.0.11"), "{what}: host -> child");
    };
    for step in ["delete-link", "store-commit"] {
        let out = lab.run_env(&["shim", "rm", "lan"], &[("NICSLICE_FAIL_AT", step)]);
        assert!(!out.status.success(), "shim rm at {step} succeeded");
        whole(&format!("shim rm at {step}"));
    }
    lab.ok(&["detach", "lan", "--netns", &n1]);
    let routes_before = routes(&lab.host.netns);
    for step in ["delete-link", "store-commit"] {
        let out = lab.run_env(&["network", "rm", "lan", "--force"], &[("NICSLICE_FAIL_AT", step)]);
        assert!(!out.status.success(), "network rm at {step} succeeded");
        assert_eq!(routes(&lab.host.netns), routes_before, "network rm at {step}: routes");
        assert!(link(&lab.host.netns, &shim).is_some(), "network rm at {step}: the shim's link");
        assert_eq!(lab.json(&["shim", "ls"])[0]["name"], shim.as_str(), "network rm at {step}");
    }
    // With an endpoint: the commit fails after the endpoint's link went.
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    let out =
        lab.run_env(&["network", "rm", "lan", "--force"], &[("NICSLICE_FAIL_AT", "store-commit")]);
    assert!(!out.status.success());
    assert!(link(&lab.host.netns, &shim).is_some(), "the shim outlives a failed network rm");
    assert_eq!(lab.json(&["shim", "ls"])[0]["name"], shim.as_str());
    lab.ok(&["network", "rm", "lan", "--force"]);
    assert!(link(&lab.host.netns, &shim).is_none());
    assert!(lab.json(&["shim", "ls"]).as_array().unwrap().is_empty());
}

/// A host route to a child's address that someone else made: refused, and
/// the address asked for the shim is free again.
#[test]
fn a_host_route_already_there_is_refused_and_nothing_changes() {
    let mut lab = Lab::new("shimhr");
    lab.lan("lan", &[]);
    let (_c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    let mut sock = RouteSocket::open_in(&lab.host.netns).unwrap();
    let eth0 = sock.require_link("eth0", "host").unwrap();
    sock.add_host_route("192.168.0.11".parse().unwrap(), eth0.index, None).unwrap();
    let (links_before, routes_before) = (non_lo(&lab.host.netns), routes(&lab.host.netns));
    lab.fails(
        &["shim", "add", "lan", "--ip", "192.168.0.200"],
        "the host already has a route to 192.168.0.11",
    );
    assert_eq!(non_lo(&lab.host.netns), links_before, "no shim left");
    assert_eq!(routes(&lab.host.netns), routes_before, "no route left, the host's own kept");
    assert!(lab.json(&["shim", "ls"]).as_array().unwrap().is_empty());
    let (_c2, n2) = lab.netns("c2");
    lab.ok(&["attach", "lan", "--netns", &n2, "--ip", "192.168.0.200"]);
}

/// A machine of the LAN the host talks to (192.168.0.50) and an endpoint
/// given the same address: a route to it through the shim would take the
/// host's path to that machine, so the guard undoes the shim and says so.
#[test]
fn the_guard_refuses_a_shim_that_would_cut_the_host_off_a_neighbour() {
    let mut lab = Lab::new("shimcut");
    lab.lan("lan", &[]);
    let peer =
        lab.world.host(&lab.switch, "peer", "eth0", Some("192.168.0.50/24".parse().unwrap()));
    let peer = peer.unwrap();
    assert!(ping(&lab.host.netns, "192.168.0.50"), "the host reaches the LAN's machine");
    let (_c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.50"]);
    let (links_before, routes_before) = (non_lo(&lab.host.netns), routes(&lab.host.netns));
    // The guard asks the neighbours the host knows (`ping` flushes the
    // cache first: the machine is the one known).
    assert!(ping(&lab.host.netns, "192.168.0.50"));
    let err = lab.fails(&["shim", "add", "lan"], "would have cut the host off from 192.168.0.50");
    assert!(err.contains("instead of eth0") && err.contains("nothing changed"), "{err}");
    assert_eq!(non_lo(&lab.host.netns), links_before, "no shim left");
    assert_eq!(routes(&lab.host.netns), routes_before, "no route left");
    assert!(lab.json(&["shim", "ls"]).as_array().unwrap().is_empty());
    assert!(ping(&lab.host.netns, "192.168.0.50"), "the host still reaches the LAN's machine");
    drop(peer);
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
    assert!(ping_patiently(&lab.host.netns, "fd00:5::11"), "host -> child over IPv6");
    assert!(ping(&c1, &own), "child -> the shim's address");
    // The shim's address is leased: no endpoint gets it.
    let (_c2, n2) = lab.netns("c2");
    lab.fails(&["attach", "v6", "--netns", &n2, "--ip", &own], "in use");
    lab.ok(&["shim", "rm", "v6"]);
    lab.ok(&["attach", "v6", "--netns", &n2, "--ip", &own]);
    lab.ok(&["detach", "v6", "--netns", &n2]);

    // The one-step form: network rm gives back the host's route table whole
    // and the shim's /128 with the network.
    lab.ok(&["network", "rm", "v6", "--force"]);
    let routes_before = routes(&lab.host.netns);
    let create = ["network", "create", "v6", "--parent", "eth0", "--subnet", "fd00:5::/64"];
    lab.ok(&[&create[..], &["--host-access"]].concat());
    lab.ok(&["attach", "v6", "--netns", &n1, "--ip", "fd00:5::11"]);
    let own = lab.json(&["shim", "ls"])[0]["addresses"][0].as_str().unwrap().to_string();
    assert!(ping_patiently(&lab.host.netns, "fd00:5::11"));
    lab.ok(&["network", "rm", "v6", "--force"]);
    assert_eq!(routes(&lab.host.netns), routes_before, "the host's whole route table is back");
    assert!(lab.json(&["shim", "ls"]).as_array().unwrap().is_empty());
    lab.ok(&create);
    lab.ok(&["attach", "v6", "--netns", &n2, "--ip", &own]);
}

/// `shim add --route-range`: the network's allocation range goes through
/// the shim as one route (attach and detach leave the host's routes alone),
/// kept by `doctor --fix` when the shim is deleted by hand; a range that is
/// the parent's subnet, or holds the host's gateway, is refused.
#[test]
fn route_range_routes_the_networks_range_through_the_shim_and_never_the_subnet() {
    let mut lab = Lab::new("shimrange");
    let host = lab.host.netns.clone_handle().unwrap();
    let mut sock = RouteSocket::open_in(&host).unwrap();
    let eth0 = sock.require_link("eth0", "host").unwrap();
    sock.add_route(&Route::default_via("192.168.0.1".parse().unwrap(), eth0.index)).unwrap();
    let (links_before, routes_before) = (non_lo(&host), routes(&host));
    let ((_c1, n1), (_c2, n2)) = (lab.netns("c1"), lab.netns("c2"));
    let unchanged = |what: &str| {
        assert_eq!(non_lo(&host), links_before, "{what}: links");
        assert_eq!(routes(&host), routes_before, "{what}: routes");
        assert!(lab.json(&["shim", "ls"]).as_array().unwrap().is_empty(), "{what}");
    };
    // No --ip-range: the range is the subnet, the parent's own route.
    lab.lan("whole", &[]);
    lab.fails(
        &["shim", "add", "whole", "--route-range"],
        "192.168.0.0/24 is the host's route to 192.168.0.0/24 on eth0, which the shim must never take over",
    );
    unchanged("range = subnet");
    lab.ok(&["network", "rm", "whole"]);
    lab.lan("low", &["--ip-range", "192.168.0.0/25"]);
    lab.fails(&["shim", "add", "low", "--route-range"], "holds 192.168.0.1, the host's gateway");
    unchanged("range with the gateway");
    lab.ok(&["network", "rm", "low"]);

    lab.lan("lan", &["--ip-range", "192.168.0.128/26"]);
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.130"]);
    assert!(ping(&host, "192.168.0.1"), "the gateway before the shim");
    let made = lab.json(&["shim", "add", "lan", "--route-range"]);
    assert_eq!(made["ranges"], serde_json::json!(["192.168.0.128/26"]), "{made}");
    assert_eq!(made["routes"], serde_json::json!([]), "no host route per endpoint: {made}");
    let shim = made["name"].as_str().unwrap().to_string();
    let through_shim = |dst: &str| {
        let Some(shim) = link(&host, &shim) else { return false };
        routes(&host).iter().any(|r| r.destination.to_string() == dst && r.oif == Some(shim.index))
    };
    assert!(through_shim("192.168.0.128/26"));
    assert!(!host_route_to(&host, "192.168.0.130"));
    assert!(ping(&host, "192.168.0.130"), "host -> child through the range's route");
    assert!(ping(&host, "192.168.0.1"), "the gateway with the range routed");
    let v = lab.json(&["explain", "--from", "host", "--to", &format!("eth0@{n1}")]);
    assert_eq!((&v["reach"], &v["rule"]), (&"pass".into(), &"shim_path".into()), "{v}");
    // Attach and detach leave the host's routes alone.
    let routes_with_shim = routes(&host);
    let ep = lab.json(&["attach", "lan", "--netns", &n2]);
    let ip2 = ep["addresses"][0].as_str().unwrap().split('/').next().unwrap().to_string();
    assert!(ping(&host, &ip2), "host -> a child attached later, {ip2}");
    assert_eq!(routes(&host), routes_with_shim, "attach added no route");
    lab.ok(&["detach", "lan", "--netns", &n2]);
    assert_eq!(routes(&host), routes_with_shim, "detach removed no route");
    // Recorded: deleted by hand, `doctor --fix` makes it again with its range.
    RouteSocket::open_in(&host).unwrap().delete_link_by_name(&shim).unwrap();
    assert!(!ping(&host, "192.168.0.130"));
    lab.ok(&["doctor", "--fix"]);
    assert!(through_shim("192.168.0.128/26"), "doctor --fix routed the range again");
    assert!(ping(&host, "192.168.0.130"), "host -> child after doctor --fix");
    lab.ok(&["shim", "rm", "lan"]);
    assert!(link(&host, &shim).is_none(), "shim rm took the shim and its range's route");
    lab.ok(&["network", "rm", "lan", "--force"]);
    unchanged("after network rm");
}
