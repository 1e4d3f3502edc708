//! `"hostAccess": true`: the host reaches its pods through one shim per
//! master, made by the first ADD, shared by concurrent ADDs (on two masters
//! at once), routed per pod, and removed by the DEL (or GC) of the last pod
//! on that master; GC takes the routes of its own network's pods that the
//! runtime no longer lists; STATUS reports a shim deleted by hand under pods.

use std::net::IpAddr;
use std::time::Duration;

use nicslice_kernel::{Netns, Pinger, RouteSocket};
use serde_json::{Value, json};

use crate::harness::*;

/// Links in the host namespace whose name starts with "nsh" (the shims).
fn shims(host: &Netns) -> Vec<String> {
    let mut sock = RouteSocket::open_in(host).unwrap();
    sock.links().unwrap().into_iter().map(|l| l.name).filter(|n| n.starts_with("nsh")).collect()
}

fn host_pings(host: &Netns, ip: &str) -> bool {
    RouteSocket::open_in(host).unwrap().flush_neighbours().unwrap();
    Pinger::open_in(host).unwrap().ping(ip.parse().unwrap(), 3, Duration::from_millis(900)).unwrap()
}

fn pod_ip(result: &Value) -> String {
    let cidr = result["ips"][0]["address"].as_str().unwrap();
    cidr.split('/').next().unwrap().to_string()
}

/// A second master beside eth0 in the host namespace: `eth1` (a veth whose
/// peer stays in the host), up, with the host's 10.9.0.254/24.
fn second_master(host: &Netns) {
    let mut sock = RouteSocket::open_in(host).unwrap();
    sock.create_veth("eth1", "eth1p", None).unwrap();
    let (eth1, peer) =
        (sock.require_link("eth1", "host").unwrap(), sock.require_link("eth1p", "host").unwrap());
    sock.add_address(eth1.index, "10.9.0.254/24".parse().unwrap()).unwrap();
    sock.set_up(peer.index, true).unwrap();
    sock.set_up(eth1.index, true).unwrap();
}

#[test]
fn the_host_reaches_its_pods_through_one_shared_shim_per_master() {
    const PODS: usize = 16;
    let imp = nicslice();
    let mut net = Net::new("cnihost");
    second_master(&net.host.netns);
    let on_eth0 = net.conf(
        &imp,
        "1.1.0",
        lan_ipam("192.168.0.100", "192.168.0.199"),
        json!({"hostAccess": true}),
    );
    let mut on_eth1 = net.conf(
        &imp,
        "1.1.0",
        json!({"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.100", "rangeEnd": "10.9.0.199"}),
        json!({"hostAccess": true, "master": "eth1", "name": "confnet1"}),
    );
    on_eth1["ipam"]["dataDir"] = json!(net.data_dir.join("eth1"));
    let confs = [&on_eth0, &on_eth1];
    let pods: Vec<Container> = (0..PODS).map(|_| net.container()).collect();
    // Half the pods on each master, all ADDs at once.
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (net, imp, conf) = (&net, &imp, confs[i % 2]);
                s.spawn(move || {
                    net.call(imp, "ADD", Some(c), conf).expect_ok("ADD with hostAccess")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let host = &net.host.netns;
    assert_eq!(shims(host).len(), 2, "concurrent ADDs made exactly one shim per master");
    let ips: Vec<String> = results.iter().map(pod_ip).collect();
    for ip in &ips {
        assert_eq!(host_routes_to(host, ip), 1, "one host route to pod {ip}");
    }
    for ip in [&ips[0], &ips[1], &ips[PODS - 2], &ips[PODS - 1]] {
        assert!(host_pings(host, ip), "host -> pod {ip}");
    }
    assert!(pods[0].ping("192.168.0.254"), "pod on eth0 -> host");
    assert!(pods[1].ping("10.9.0.254"), "pod on eth1 -> host");
    assert!(pods[0].ping("192.168.0.1"), "pod -> gateway");
    assert!(host_pings(host, "192.168.0.1"), "host -> gateway, through the parent");

    // Each DEL takes its route; the last one on a master takes its shim.
    for (i, (c, result)) in pods.iter().zip(&results).enumerate() {
        let mut del = confs[i % 2].clone();
        del["prevResult"] = result.clone();
        net.call(&imp, "DEL", Some(c), &del).expect_ok("DEL");
        assert_eq!(host_routes_to(host, &pod_ip(result)), 0, "after DEL {}", i + 1);
        let expected = usize::from(i + 2 < PODS) + usize::from(i + 1 < PODS);
        assert_eq!(shims(host).len(), expected, "after DEL {}", i + 1);
    }
}

#[test]
fn a_del_without_prev_result_finds_the_pods_addresses_itself() {
    let imp = nicslice();
    let mut net = Net::new("cnihost2");
    let conf = net.conf(
        &imp,
        "1.0.0",
        lan_ipam("192.168.0.100", "192.168.0.199"),
        json!({"hostAccess": true}),
    );
    let c = net.container();
    let added = net.call(&imp, "ADD", Some(&c), &conf).expect_ok("ADD");
    assert!(host_pings(&net.host.netns, &pod_ip(&added)));
    net.call(&imp, "DEL", Some(&c), &conf).expect_ok("DEL without prevResult");
    assert!(shims(&net.host.netns).is_empty(), "the last DEL removed the shim");
}

/// Routes to `ip` (a /32) in the host namespace.
fn host_routes_to(host: &Netns, ip: &str) -> usize {
    let ip: IpAddr = ip.parse().unwrap();
    let routes = RouteSocket::open_in(host).unwrap().routes().unwrap();
    routes.iter().filter(|r| r.destination.addr() == ip && r.destination.prefix_len() == 32).count()
}

#[test]
fn status_reports_a_shim_deleted_by_hand_until_an_add_makes_it_again_or_the_pods_go() {
    let imp = nicslice();
    let mut net = Net::new("cnihost3");
    let conf = net.conf(
        &imp,
        "1.1.0",
        lan_ipam("192.168.0.100", "192.168.0.199"),
        json!({"hostAccess": true}),
    );
    let host = &net.host.netns.clone_handle().unwrap();
    net.call(&imp, "STATUS", None, &conf).expect_ok("STATUS before any pod");
    let (a, b) = (net.container(), net.container());
    let added_a = net.call(&imp, "ADD", Some(&a), &conf).expect_ok("ADD a");
    let added_b = net.call(&imp, "ADD", Some(&b), &conf).expect_ok("ADD b");
    let (ip_a, ip_b) = (pod_ip(&added_a), pod_ip(&added_b));
    net.call(&imp, "STATUS", None, &conf).expect_ok("STATUS with the shim in place");

    // Someone deletes the shim: its routes go with it, and STATUS says so.
    let delete_shim = || {
        let name = shims(host).pop().expect("a shim");
        RouteSocket::open_in(host).unwrap().delete_link_by_name(&name).unwrap();
        assert!(!host_pings(host, &ip_a), "the host lost pod a with the shim");
    };
    delete_shim();
    let status = net.call(&imp, "STATUS", None, &conf);
    let msg = status.json["msg"].as_str().unwrap_or_default().to_string();
    assert_eq!(status.expect_err("STATUS without the shim"), 51, "{msg}");
    for words in ["is gone", &ip_a, &ip_b, "the next ADD"] {
        assert!(msg.contains(words), "{words:?} not in {msg:?}");
    }

    // The next ADD makes it again and routes every pod through it.
    let c = net.container();
    let added_c = net.call(&imp, "ADD", Some(&c), &conf).expect_ok("ADD c remakes the shim");
    assert_eq!(shims(host).len(), 1);
    for ip in [&ip_a, &ip_b, &pod_ip(&added_c)] {
        assert_eq!(host_routes_to(host, ip), 1, "route to {ip}");
        assert!(host_pings(host, ip), "host -> pod {ip} through the new shim");
    }
    net.call(&imp, "STATUS", None, &conf).expect_ok("STATUS after the ADD");

    // Deleted again: the DEL of every pod forgets them, and STATUS is clean.
    delete_shim();
    for (pod, added) in [(&a, &added_a), (&b, &added_b), (&c, &added_c)] {
        let mut del = conf.clone();
        del["prevResult"] = added.clone();
        net.call(&imp, "DEL", Some(pod), &del).expect_ok("DEL without the shim");
    }
    assert!(shims(host).is_empty());
    net.call(&imp, "STATUS", None, &conf).expect_ok("STATUS once the pods are gone");
}

#[test]
fn gc_takes_the_routes_of_the_pods_it_does_not_keep_and_only_its_own_networks() {
    let imp = nicslice();
    let mut net = Net::new("cnihost4");
    let ours = net.conf(
        &imp,
        "1.1.0",
        lan_ipam("192.168.0.100", "192.168.0.149"),
        json!({"hostAccess": true}),
    );
    // A second network on the same master shares the shim.
    let mut theirs = net.conf(
        &imp,
        "1.1.0",
        lan_ipam("192.168.0.150", "192.168.0.199"),
        json!({"hostAccess": true, "name": "othernet"}),
    );
    theirs["ipam"]["dataDir"] = json!(net.data_dir.join("othernet"));
    let host = &net.host.netns.clone_handle().unwrap();
    let (a, b, c) = (net.container(), net.container(), net.container());
    let ip_a = pod_ip(&net.call(&imp, "ADD", Some(&a), &ours).expect_ok("ADD a"));
    let ip_b = pod_ip(&net.call(&imp, "ADD", Some(&b), &ours).expect_ok("ADD b"));
    let ip_c = pod_ip(&net.call(&imp, "ADD", Some(&c), &theirs).expect_ok("ADD c, other network"));
    assert_eq!(shims(host).len(), 1, "one shim for the master");

    // b's container went without a DEL: GC keeping a takes b's route only.
    let gc = |conf: &Value, keep: Value| {
        let mut gc = conf.clone();
        gc["cni.dev/valid-attachments"] = keep;
        gc
    };
    let keep_a = gc(&ours, json!([{"containerID": a.id, "ifname": "eth0"}]));
    net.call(&imp, "GC", None, &keep_a).expect_ok("GC keeping a");
    assert_eq!(host_routes_to(host, &ip_b), 0, "b's route went with GC");
    assert_eq!(host_routes_to(host, &ip_a), 1, "a kept");
    assert_eq!(host_routes_to(host, &ip_c), 1, "the other network's pod kept");
    assert!(host_pings(host, &ip_a) && host_pings(host, &ip_c));

    // GC keeping nothing of this network: a's route goes, c's and the shim stay.
    net.call(&imp, "GC", None, &gc(&ours, json!([]))).expect_ok("GC keeping nothing");
    assert_eq!(host_routes_to(host, &ip_a), 0);
    assert_eq!(shims(host).len(), 1, "c still needs the shim");
    assert!(host_pings(host, &ip_c), "host -> c after the other network's GC");

    // The other network's GC takes c's route and, with the last pod, the shim.
    net.call(&imp, "GC", None, &gc(&theirs, json!([]))).expect_ok("GC of the other network");
    assert_eq!(host_routes_to(host, &ip_c), 0);
    assert!(shims(host).is_empty(), "the last pod's GC removed the shim");
    net.call(&imp, "STATUS", None, &ours).expect_ok("STATUS once GC took every pod");
}

/// The reachability model refuses hostAccess where a shim never reaches the
/// pods, with `nicslice shim add`'s sentence and the spec's code 7 (invalid
/// configuration), before anything is made.
#[test]
fn the_model_refuses_host_access_on_modes_whose_pods_never_reach_a_shim() {
    let imp = nicslice();
    let mut net = Net::new("cnihostno");
    let host = net.host.netns.clone_handle().unwrap();
    for (mode, words) in [
        ("private", "private-mode child confnet never reaches its sibling shim"),
        ("vepa", "hairpin"),
        ("source", "source"),
        ("passthru", "passthru"),
    ] {
        let conf = net.conf(
            &imp,
            "1.1.0",
            lan_ipam("192.168.0.100", "192.168.0.199"),
            json!({"hostAccess": true, "mode": mode}),
        );
        let c = net.container();
        let call = net.call(&imp, "ADD", Some(&c), &conf);
        let msg = call.json["msg"].as_str().unwrap_or_default().to_string();
        assert_eq!(call.expect_err(mode), 7, "{mode}: {msg}");
        assert!(msg.contains("a shim on network confnet would not reach its children"), "{msg}");
        assert!(msg.contains(words), "{mode}: {words:?} not in {msg:?}");
        assert!(c.non_lo().is_empty(), "{mode}: a link was made");
        assert!(shims(&host).is_empty(), "{mode}: a shim was made");
        // The runtime's DEL after the failed ADD succeeds (DEL is lenient).
        net.call(&imp, "DEL", Some(&c), &conf).expect_ok("DEL after the refused ADD");
    }
}

/// The pod addresses the master's state file lists (`/run/nicslice`, see
/// the engine's shim/shared_state.rs), empty when there is no file.
fn state_file_pods(host: &Netns, master: &str) -> Vec<String> {
    let mut sock = RouteSocket::open_in(host).unwrap();
    let index = sock.require_link(master, "host").unwrap().index;
    let cookie = sock.netns_cookie().unwrap();
    let path = format!("/run/nicslice/shim-{cookie:x}-{index}.lock");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter(|l| !l.starts_with("shim ")).map(|l| l.to_string()).collect()
}

/// An ADD with hostAccess failed while making the shim or routing the pod
/// (first pod, and a pod joining a shim already made) leaves no link, no
/// shim, no route and no line in the master's state file; the pods that
/// were there keep theirs, and the last DEL still removes the shim.
#[test]
fn a_host_access_add_failed_mid_way_leaves_nothing() {
    let imp = nicslice();
    let mut net = Net::new("cnihostf");
    let conf = net.conf(
        &imp,
        "1.1.0",
        lan_ipam("192.168.0.100", "192.168.0.101"),
        json!({"hostAccess": true}),
    );
    let host = net.host.netns.clone_handle().unwrap();
    let routes_before = RouteSocket::open_in(&host).unwrap().routes().unwrap();
    for step in ["host-shim", "host-route"] {
        let c = net.container();
        let code = net
            .call_env(&imp, "ADD", Some(&c), &conf, &[("NICSLICE_FAIL_AT", step)])
            .expect_err(step);
        assert!(code >= 100 || code == 7, "{step}: code {code}");
        assert!(c.non_lo().is_empty(), "{step}: left {:?}", c.non_lo());
        assert!(shims(&host).is_empty(), "{step}: left a shim");
        assert_eq!(RouteSocket::open_in(&host).unwrap().routes().unwrap(), routes_before, "{step}");
        assert!(state_file_pods(&host, "eth0").is_empty(), "{step}: the state file lists a pod");
        net.call(&imp, "DEL", Some(&c), &conf).expect_ok("DEL after a failed ADD");
    }
    // A pod with the shim made; a second pod's ADD fails routing through it.
    let a = net.container();
    let added = net.call(&imp, "ADD", Some(&a), &conf).expect_ok("ADD a");
    let ip_a = pod_ip(&added);
    let b = net.container();
    net.call_env(&imp, "ADD", Some(&b), &conf, &[("NICSLICE_FAIL_AT", "host-route")])
        .expect_err("ADD b at host-route");
    assert!(b.non_lo().is_empty());
    assert_eq!(shims(&host).len(), 1, "a's shim stays");
    let pods = state_file_pods(&host, "eth0");
    assert_eq!(pods.len(), 1, "only a is listed: {pods:?}");
    assert!(pods[0].starts_with(&format!("{ip_a} ")), "{pods:?}");
    // b's address was released (a range of two): a third pod gets it.
    let c = net.container();
    let added_c = net.call(&imp, "ADD", Some(&c), &conf).expect_ok("ADD c");
    assert!(host_pings(&host, &ip_a) && host_pings(&host, &pod_ip(&added_c)));
    for (pod, added) in [(&a, &added), (&c, &added_c)] {
        let mut del = conf.clone();
        del["prevResult"] = added.clone();
        net.call(&imp, "DEL", Some(pod), &del).expect_ok("DEL");
    }
    assert!(shims(&host).is_empty(), "the last DEL removed the shim");
    assert_eq!(RouteSocket::open_in(&host).unwrap().routes().unwrap(), routes_before);
}
