//! Seed 000 end to end through the CLI: a bridge-mode network on the host's
//! parent, children attached with the next free address or a static one, the
//! default route via the gateway, who can ping whom, listing and detaching.

mod common;

use common::*;

fn create_lan(lab: &Lab) {
    create_lan_via(lab, "192.168.0.1");
}

/// Seed 000's network: bridge mode, the children's range inside the subnet.
fn create_lan_via(lab: &Lab, gateway: &str) {
    lab.ok(&[
        "network",
        "create",
        "lan",
        "--parent",
        "eth0",
        "--mode",
        "bridge",
        "--subnet",
        "192.168.0.0/24",
        "--gateway",
        gateway,
        "--ip-range",
        "192.168.0.128/25",
    ]);
}

/// The inode-reuse test needs the kernel to hand a freed namespace inode to
/// its own next namespace: the other tests of this file (threads of one
/// process) create namespaces too, so they wait while it runs.
static NAMESPACES: std::sync::RwLock<()> = std::sync::RwLock::new(());

#[test]
fn seed000_children_reach_each_other_and_the_switch_not_the_parent() {
    let _shared = NAMESPACES.read().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new("att");
    create_lan(&lab);
    let (ns1, n1) = lab.netns("ns1");
    let (ns2, n2) = lab.netns("ns2");
    let a = lab.json(&["attach", "lan", "--netns", &n1]);
    assert_eq!(a["addresses"][0], "192.168.0.128/24", "first address of the range: {a}");
    lab.ok(&["attach", "lan", "--netns", &n2, "--ip", "192.168.0.13"]);

    // What a user checks: the link is there, a macvlan in bridge mode, with that address and route.
    let l1 = link(&ns1, "eth0").expect("eth0 in ns1");
    assert_eq!(l1.kind.as_deref(), Some("macvlan"));
    assert_eq!(l1.macvlan.as_ref().unwrap().mode, Some(nicslice_model::MacvlanMode::Bridge));
    assert!(l1.up);
    assert_eq!(addresses(&ns1, "eth0"), vec!["192.168.0.128/24"]);
    assert_eq!(addresses(&ns2, "eth0"), vec!["192.168.0.13/24"]);
    assert_eq!(default_gateway(&ns1), Some("192.168.0.1".parse().unwrap()));
    assert!(link(&ns1, "lo").unwrap().up);
    assert_eq!(a["mac"], l1.mac.unwrap().to_string());

    assert!(ping(&ns1, "192.168.0.13"), "sibling");
    assert!(ping(&ns2, "192.168.0.128"), "sibling back");
    assert!(ping(&ns1, "192.168.0.1"), "switch");
    assert!(!ping(&ns1, "192.168.0.254"), "a macvlan child never reaches its parent");

    // A second interface in the same namespace keeps the first default route.
    let second = lab.json(&["attach", "lan", "--netns", &n2, "--ifname", "eth1"]);
    assert_eq!(second["gateways"].as_array().unwrap().len(), 0, "{second}");
    assert_eq!(routes(&ns2).iter().filter(|r| r.is_default()).count(), 1);
    lab.ok(&["detach", "lan", "--netns", &n2, "--ifname", "eth1"]);
    assert!(link(&ns2, "eth1").is_none());
    assert_eq!(default_gateway(&ns2), Some("192.168.0.1".parse().unwrap()));

    let eps = lab.json(&["endpoint", "ls", "lan"]);
    assert_eq!(eps.as_array().unwrap().len(), 2);
    let table = lab.ok(&["endpoint", "ls"]);
    assert!(table.contains("192.168.0.13/24"), "{table}");

    lab.ok(&["detach", "lan", "--netns", &n1]);
    assert!(link(&ns1, "eth0").is_none(), "detach removes the link");
    assert_eq!(lab.json(&["endpoint", "ls", "lan"]).as_array().unwrap().len(), 1);
    // The released address is not handed out again at once (the next is).
    let b = lab.json(&["attach", "lan", "--netns", &n1]);
    assert_eq!(b["addresses"][0], "192.168.0.130/24", "eth1 had .129");
    lab.fails(&["network", "rm", "lan"], "still has 2 endpoint(s)");
    lab.ok(&["network", "rm", "lan", "--force"]);
    assert!(link(&ns1, "eth0").is_none() && link(&ns2, "eth0").is_none());
    assert_eq!(lab.json(&["network", "ls"]).as_array().unwrap().len(), 0);
}

#[test]
fn seed000_default_route_reaches_a_second_subnet_through_a_router() {
    let _shared = NAMESPACES.read().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new("route");
    // Seed 000's gateway: a router namespace of its own on the switch
    // (192.168.0.2 on the LAN), forwarding to a second subnet where "far" is.
    let router = lab
        .world
        .host(&lab.switch, "router", "lan0", Some("192.168.0.2/24".parse().unwrap()))
        .unwrap();
    let (far, _) = lab.netns("far");
    {
        let mut rs = nicslice_kernel::RouteSocket::open_in(&router.netns).unwrap();
        rs.create_veth("to-far", "eth0", Some(&far)).unwrap();
        let l = rs.require_link("to-far", "router").unwrap();
        rs.add_address(l.index, "10.8.0.1/24".parse().unwrap()).unwrap();
        rs.set_up(l.index, true).unwrap();
        let mut fs = nicslice_kernel::RouteSocket::open_in(&far).unwrap();
        let f = fs.require_link("eth0", "far").unwrap();
        fs.add_address(f.index, "10.8.0.241/24".parse().unwrap()).unwrap();
        fs.set_up(f.index, true).unwrap();
        fs.add_route(&nicslice_kernel::Route::default_via("10.8.0.1".parse().unwrap(), f.index))
            .unwrap();
        nicslice_kernel::Netns::run(&router.netns, || {
            nicslice_kernel::sysctl::write("net.ipv4.ip_forward", "1")
        })
        .unwrap()
        .unwrap();
    }
    create_lan_via(&lab, "192.168.0.2");
    let (with, n_with) = lab.netns("with");
    let (without, n_without) = lab.netns("without");
    lab.ok(&["attach", "lan", "--netns", &n_with]);
    lab.ok(&["attach", "lan", "--netns", &n_without, "--no-default-route"]);
    assert_eq!(default_gateway(&without), None);
    assert_eq!(default_gateway(&with), Some("192.168.0.2".parse().unwrap()), "via the router");
    assert!(ping(&with, "10.8.0.241"), "with the default route the child crosses subnets");
    assert!(!ping(&without, "10.8.0.241"), "without it, it cannot (seed 000)");

    // Or just that subnet, by a route of its own and no default route.
    let (routed, n_routed) = lab.netns("routed");
    let out = lab.json(&[
        "attach",
        "lan",
        "--netns",
        &n_routed,
        "--no-default-route",
        "--route",
        "10.8.0.0/24,via=192.168.0.2",
    ]);
    assert_eq!(out["routes"][0]["destination"], "10.8.0.0/24", "{out}");
    assert_eq!(default_gateway(&routed), None);
    let far = routes(&routed).into_iter().find(|r| r.destination.to_string() == "10.8.0.0/24");
    assert_eq!(far.and_then(|r| r.gateway), Some("192.168.0.2".parse().unwrap()));
    assert!(ping(&routed, "10.8.0.241"), "the route to the far subnet is enough");
    let listed = lab.json(&["endpoint", "ls", "lan"]);
    let mine = listed.as_array().unwrap().iter().find(|e| e["netns"] == out["netns"]).unwrap();
    assert_eq!(mine["routes"], out["routes"], "endpoint ls shows the routes");
}

#[test]
fn attach_refuses_bad_requests_without_touching_anything() {
    let _shared = NAMESPACES.read().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new("refuse");
    create_lan(&lab);
    let (ns1, n1) = lab.netns("ns1");
    lab.fails(&["attach", "nope", "--netns", &n1], "network nope does not exist");
    lab.fails(&["attach", "lan", "--netns", "no-such-ns-here"], "does not exist");
    let refused: [(&[&str], &str); 10] = [
        (&["--ifname", "averyveryverylongname"], "longer than 15 bytes"),
        (&["--ifname", "a/b"], "may not contain"),
        (&["--ip", "10.1.1.1"], "in no subnet of network lan"),
        (&["--ip", "192.168.0.1"], "gateway"),
        (&["--ifname", "lo"], "already exists in"),
        (&["--route", "10.9.0.0"], "is not a CIDR"),
        (&["--route", "10.9.0.0/16,via=10.0.0.1"], "on no subnet of network lan"),
        (&["--route", "fd00:9::/64"], "no IPv6 subnet"),
        (&["--route", "0.0.0.0/0,via=192.168.0.1"], "--no-default-route"),
        (&["--route", "10.9.0.0/16,via=192.168.0.1,via=192.168.0.2"], "two gateways"),
    ];
    for (extra, needle) in refused {
        lab.fails(&[&["attach", "lan", "--netns", &n1][..], extra].concat(), needle);
    }
    lab.fails(&["attach", "lan", "--netns", &n1, "--mac", "01:00:5e:00:00:01"], "multicast");
    lab.fails(
        &["attach", "lan", "--netns", &n1, "--source-mac", "02:00:00:00:00:01"],
        "source-mode network",
    );
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.13"]);
    let (_ns2, n2) = lab.netns("ns2");
    lab.fails(&["attach", "lan", "--netns", &n2, "--ip", "192.168.0.13"], "already in use");
    assert_eq!(non_lo(&ns1), vec!["eth0"]);
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 1);
}

#[test]
fn every_failing_attach_step_is_undone() {
    let _shared = NAMESPACES.read().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new("undo");
    lab.ok(&[
        "network",
        "create",
        "dual",
        "--parent",
        "eth0",
        "--subnet",
        "192.168.0.0/24",
        "--gateway",
        "192.168.0.1",
        "--subnet",
        "fd00:5::/64",
    ]);
    let (ns, name) = lab.netns("ns1");
    lo_down(&ns);
    let steps = [
        "allocate",
        "create-link",
        "add-address",
        "link-up",
        "add-route",
        "announce",
        "store-commit",
    ];
    for step in steps {
        let out = lab.run_env(&["attach", "dual", "--netns", &name], &[("NICSLICE_FAIL_AT", step)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{step}: attach should fail");
        assert!(err.contains(&format!("injected failure at step {step}")), "{step}: {err}");
        assert!(non_lo(&ns).is_empty(), "{step}: leaked {:?}", non_lo(&ns));
        assert!(!link(&ns, "lo").unwrap().up, "{step}: lo must be back down");
        assert!(routes(&ns).is_empty(), "{step}: leaked routes {:?}", routes(&ns));
        assert_eq!(
            lab.json(&["endpoint", "ls"]).as_array().unwrap().len(),
            0,
            "{step}: leaked state row"
        );
    }
    // No lease leaked either: the first addresses, which every failed
    // attach had leased, are free again.
    let ok =
        lab.json(&["attach", "dual", "--netns", &name, "--ip", "192.168.0.2", "--ip", "fd00:5::2"]);
    assert_eq!(ok["addresses"][0], "192.168.0.2/24", "{ok}");
    assert_eq!(ok["addresses"][1], "fd00:5::2/64", "{ok}");
    assert_eq!(ok["gateways"].as_array().unwrap().len(), 2);

    // Detach that fails to delete the link keeps the record; then it works.
    let out =
        lab.run_env(&["detach", "dual", "--netns", &name], &[("NICSLICE_FAIL_AT", "delete-link")]);
    assert!(!out.status.success());
    assert!(link(&ns, "eth0").is_some());
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 1);
    // The link went before the last commit failed: the detach is past the
    // point of no return, and the next command finishes it.
    let out =
        lab.run_env(&["detach", "dual", "--netns", &name], &[("NICSLICE_FAIL_AT", "store-commit")]);
    assert!(!out.status.success());
    assert!(link(&ns, "eth0").is_none());
    assert_eq!(
        lab.json(&["endpoint", "ls"]).as_array().unwrap().len(),
        0,
        "the next command finishes the detach"
    );
    lab.fails(&["detach", "dual", "--netns", &name], "no endpoint eth0");
    // Its addresses are free.
    lab.ok(&["attach", "dual", "--netns", &name, "--ip", "192.168.0.2", "--ip", "fd00:5::2"]);
}

#[test]
fn ipv6_children_get_their_address_and_route_and_reach_each_other() {
    let _shared = NAMESPACES.read().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new("att6");
    lab.lan("v6", &["--mode", "bridge", "--subnet", "fd00:6::/64"]);
    let (ns1, n1) = lab.netns("ns1");
    let (ns2, n2) = lab.netns("ns2");
    lab.ok(&["attach", "v6", "--netns", &n1, "--ip", "192.168.0.21", "--ip", "fd00:6::21"]);
    let b = lab.json(&["attach", "v6", "--netns", &n2]);
    assert_eq!(b["addresses"][1], "fd00:6::2/64", "the first free IPv6 address: {b}");
    assert_eq!(addresses(&ns1, "eth0"), vec!["192.168.0.21/24", "fd00:6::21/64"]);
    let v6_default =
        routes(&ns1).into_iter().find(|r| r.is_default() && r.destination.addr().is_ipv6());
    assert_eq!(
        v6_default.and_then(|r| r.gateway),
        Some("fd00:6::1".parse().unwrap()),
        "the IPv6 default route goes via the subnet's first address"
    );
    assert!(ping(&ns1, "fd00:6::2"), "IPv6 sibling");
    assert!(ping(&ns2, "fd00:6::21"), "and back");
    assert!(!ping(&ns1, "fd00:6::99"), "nobody has that address");
}

/// Issue 16, defect 6 and the end of defect 5: the namespace nicslice runs
/// in (by pid, by /proc/self) and the host namespace are not targets.
#[test]
fn own_and_host_namespaces_are_refused_as_targets() {
    let _shared = NAMESPACES.read().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new("ownns");
    create_lan(&lab);
    let host_ns = lab.host.netns_name.clone();
    let refused: [(&[&str], &str); 3] = [
        (&["--netns", "/proc/self/ns/net"], "the namespace nicslice itself runs in"),
        (&["--netns", &host_ns], "the host namespace"),
        (&["--netns", &format!("/run/netns/{host_ns}")], "the host namespace"),
    ];
    let before = non_lo(&lab.host.netns);
    for (target, needle) in refused {
        lab.fails(&[&["attach", "lan"][..], target].concat(), needle);
    }
    let own = std::process::id().to_string();
    lab.fails(&["attach", "lan", "--pid", &own], "the namespace nicslice itself runs in");
    // The issue's `--pid 2`: kthreadd, in the root namespace, where this test runs.
    let ino = |p: &str| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    if ino("/proc/2/ns/net").ok() == ino("/proc/self/ns/net").ok() {
        lab.fails(&["attach", "lan", "--pid", "2"], "the namespace nicslice itself runs in");
    }
    assert_eq!(non_lo(&lab.host.netns), before, "nothing added beside the parent");
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 0);
}

/// Issue 16, defect 5: a namespace deleted without `detach` leaves a stale
/// record. The next namespace that gets its inode is not mistaken for it:
/// its own `eth0` is attached, and detach acts on the new one only. The
/// stale record is listed as such and released by `detach` of its path.
#[test]
fn a_namespace_reusing_a_dead_ones_inode_is_not_mistaken_for_it() {
    // Alone: the other tests of this file would take the freed inode.
    let _alone = NAMESPACES.write().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new("inode");
    create_lan(&lab);
    let (old, old_name) = lab.netns("old");
    lab.ok(&["attach", "lan", "--netns", &old_name, "--ip", "192.168.0.140"]);
    let old_ino = old.id().ino;
    drop(old);
    nicslice_kernel::netns::delete_named(&old_name).unwrap();

    // Namespaces until one has the dead one's inode (the kernel frees it
    // once the namespace is cleaned up, and hands it out again at once).
    // The others are kept alive meanwhile: a namespace deleted here would
    // free an inode lower than the dead one's, taken again next time round.
    // The dead namespace is freed once the kernel's cleanup has run, which a
    // busy machine may delay by seconds: the search is bounded in time.
    let mut reuse = None;
    let mut held = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for k in 0.. {
        let (ns, name) = lab.netns(&format!("new{k}"));
        if ns.id().ino == old_ino {
            reuse = Some((ns, name));
            break;
        }
        held.push(ns);
        if std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(held);
    // Whether the kernel reuses the inode in time is its choice (its cleanup
    // of the dead namespace can be held off past the bound); without reuse
    // there is nothing to mistake, and the run says so rather than pass in
    // silence.
    let Some((new, new_name)) = reuse else {
        println!("the kernel did not reuse inode {old_ino} within 30 s; nothing to test this run");
        return;
    };

    let listed = lab.json(&["endpoint", "ls"]);
    assert_eq!(listed[0]["state"], "stale", "the dead namespace's record: {listed}");
    lab.fails(&["detach", "lan", "--netns", &new_name], "no endpoint eth0");
    let a = lab.json(&["attach", "lan", "--netns", &new_name]);
    assert_eq!(addresses(&new, "eth0"), vec![a["addresses"][0].as_str().unwrap()]);
    // The stale record went with the attach that needed its name; its address is free.
    let listed = lab.json(&["endpoint", "ls"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["netns"], format!("/run/netns/{new_name}"));
    let (_third, third) = lab.netns("third");
    lab.ok(&["attach", "lan", "--netns", &third, "--ip", "192.168.0.140"]);
    lab.ok(&["detach", "lan", "--netns", &new_name]);
    assert!(link(&new, "eth0").is_none());
}

/// A namespace gone without `detach`: listed as stale, released by `detach`
/// of the path it was attached by, and its addresses taken back by an
/// attach that finds the pool full.
#[test]
fn stale_endpoints_are_listed_and_released() {
    let _shared = NAMESPACES.read().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new("stale");
    lab.lan("tiny", &["--ip-range", "192.168.0.200/31"]);
    let (a, a_name) = lab.netns("a");
    let (b, b_name) = lab.netns("b");
    lab.ok(&["attach", "tiny", "--netns", &a_name]);
    lab.ok(&["attach", "tiny", "--netns", &b_name]);
    drop((a, b));
    nicslice_kernel::netns::delete_named(&a_name).unwrap();
    nicslice_kernel::netns::delete_named(&b_name).unwrap();
    let listed = lab.json(&["endpoint", "ls"]);
    let states: Vec<&str> =
        listed.as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["stale", "stale"], "{listed}");

    let out = lab.json(&["detach", "tiny", "--netns", &a_name]);
    assert_eq!(out["state"], "attached", "what was recorded: {out}");
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 1);
    // The pool (two addresses) has one held by b's dead namespace: two
    // attaches need it back.
    let (c, c_name) = lab.netns("c");
    lab.ok(&["attach", "tiny", "--netns", &c_name]);
    lab.ok(&["attach", "tiny", "--netns", &c_name, "--ifname", "eth1"]);
    assert_eq!(non_lo(&c).len(), 2);
    let listed = lab.json(&["endpoint", "ls"]);
    assert!(listed.as_array().unwrap().iter().all(|e| e["state"] == "attached"), "{listed}");
}
