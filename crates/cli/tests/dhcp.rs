//! DHCP networks against a real server: dnsmasq, started by the test inside
//! the switch namespace of its world (serving 192.168.0.0/24 on br0, its
//! lease file in a temporary directory) and killed by its pid at the end.
//! Two macvlan children get two leases with their own client identifiers,
//! the default route and the DNS server from the answer; detach releases
//! (the server's lease file drops the address); a re-attached endpoint gets
//! its address back; with no server, attach fails within its timeout and
//! leaves no link, no lease and no record. The agent renews, rebinds, takes
//! an expired lease's address off and asks for the lease again, backing off
//! (kept across an agent killed), until a server answers.

mod common;
mod dnsmasq;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use dnsmasq::{Dnsmasq, EtcNetns, ip_of};

/// The MAC the switch namespace's neighbour table holds for `ip` (read
/// through netlink: the VM stage's `ip` is busybox's, without `-j`).
fn switch_neighbour(lab: &Lab, ip: &str) -> Option<String> {
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let mut sock = nicslice_kernel::RouteSocket::open_in(&lab.switch).ok()?;
    let neighbours = sock.neighbours().ok()?;
    neighbours.into_iter().find(|(n, _)| *n == ip).map(|(_, mac)| mac.to_string())
}

/// What the kernel says is left of the IPv4 address on `ifname` in the
/// iproute2 namespace `netns` (`valid_lft`, seconds; u32::MAX for "forever").
fn valid_lifetime(netns: &str, ifname: &str) -> u64 {
    let ns = nicslice_kernel::NetnsTarget::Named(netns.to_string()).open().unwrap();
    let mut sock = nicslice_kernel::RouteSocket::open_in(&ns).unwrap();
    let link = sock.require_link(ifname, netns).unwrap();
    let (_, v4) = sock
        .addresses(Some(link.index))
        .unwrap()
        .into_iter()
        .find(|(_, a)| a.addr().is_ipv4())
        .expect("an IPv4 address");
    let left = sock.address_valid_lifetime(link.index, v4.addr()).unwrap();
    u64::from(left.expect("an IPv4 address with a lifetime"))
}

#[test]
fn dhcp_leases_per_child_route_dns_release_and_same_address_again() {
    let mut lab = Lab::new("dhcp");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(mut server) = Dnsmasq::start(&lab.switch, "leases") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let (ns1, n1) = lab.netns("ns1");
    let (ns2, n2) = lab.netns("ns2");
    assert!(lab.ok(&["network", "ls"]).contains("(dhcp)"));
    assert_eq!(lab.json(&["network", "ls"])[0]["ipam"], "dhcp");

    let a = lab.json(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5", "--no-agent"]);
    let b = lab.json(&["attach", "lan", "--netns", &n2, "--dhcp-timeout", "5", "--no-agent"]);
    let (ip1, ip2) = (ip_of(&a), ip_of(&b));
    assert_ne!(ip1, ip2, "two children, two leases");
    for (ns, ip, view) in [(&ns1, &ip1, &a), (&ns2, &ip2, &b)] {
        let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
        assert!((100..150).contains(&last), "{ip} is in the server's range");
        assert_eq!(addresses(ns, "eth0"), vec![format!("{ip}/24")], "the mask from the answer");
        assert_eq!(default_gateway(ns), Some("192.168.0.1".parse().unwrap()), "router option");
        assert_eq!(view["dhcp"]["lease_secs"], 120, "{view}");
        assert_eq!(view["dhcp"]["server"], "192.168.0.1", "{view}");
    }
    // The kernel holds the address only as long as the lease.
    let left = valid_lifetime(&n1, "eth0");
    assert!((100..=120).contains(&left), "valid_lft {left} s for a 120 s lease");
    // The server knows them by their own client identifiers.
    let leases = server.leases();
    assert_eq!(leases.len(), 2, "{leases:?}");
    for view in [&a, &b] {
        let id = view["dhcp"]["client_id"].as_str().unwrap();
        assert!(
            leases.iter().any(|l| l[2] == ip_of(view) && l.get(4).map(String::as_str) == Some(id)),
            "lease of {} under client id {id}: {leases:?}",
            ip_of(view)
        );
    }
    assert_ne!(a["dhcp"]["client_id"], b["dhcp"]["client_id"]);
    // DNS from the answer, where `ip netns exec` finds it.
    let resolv = PathBuf::from(format!("/etc/netns/{n1}/resolv.conf"));
    let text = std::fs::read_to_string(&resolv).expect("resolv.conf written");
    assert!(text.contains("nameserver 192.168.0.53"), "{text}");
    // The address works.
    assert!(ping(&ns1, &ip2), "sibling");
    assert!(ping(&ns1, "192.168.0.1"), "server and gateway");

    // The check a CNI CHECK runs agrees with what DHCP made.
    lab.ok(&["endpoint", "check", "lan"]);

    // endpoint ls shows the lease times.
    let table = lab.ok(&["endpoint", "ls", "lan"]);
    assert!(table.contains("LEASE") && table.contains("dhcp 192.168.0.1 120s"), "{table}");
    let listed = lab.json(&["endpoint", "ls", "lan"]);
    let first = &listed[0]["dhcp"];
    let span = first["expires_at"].as_i64().unwrap() - first["acquired_at"].as_i64().unwrap();
    assert_eq!(span, 120, "{first}");
    assert!(first["renew_at"].as_i64() < first["rebind_at"].as_i64(), "{first}");

    // Detach sends RELEASE: the server forgets the lease.
    lab.ok(&["detach", "lan", "--netns", &n1]);
    assert!(link(&ns1, "eth0").is_none());
    assert!(server.released(&ip1), "RELEASE reached the server: {:?}", server.leases());
    assert!(server.has_lease(&ip2), "the other lease stays");
    assert!(!resolv.exists(), "nicslice's resolv.conf goes with the endpoint");

    // Attached again: same client, same address (its new link has a new MAC).
    let again = lab.json(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5", "--no-agent"]);
    assert_eq!(ip_of(&again), ip1, "a re-attached endpoint gets its address back");
    // Announced with its new MAC at once: the switch, which knew the old
    // MAC for this address, has the new one without a packet from ns1.
    assert_eq!(
        switch_neighbour(&lab, &ip1).as_deref(),
        again["mac"].as_str(),
        "the server's neighbour entry follows the new link"
    );
    assert_eq!(again["dhcp"]["client_id"], a["dhcp"]["client_id"]);
    assert_ne!(again["mac"], a["mac"], "a new link");

    // A client id of the user's own is what the server sees.
    lab.ok(&[
        "attach",
        "lan",
        "--netns",
        &n2,
        "--ifname",
        "eth1",
        "--client-id",
        "web-1",
        "--dhcp-timeout",
        "5",
        "--no-agent",
    ]);
    let web = hex(b"\0web-1");
    assert!(
        server.leases().iter().any(|l| l.get(4) == Some(&web)),
        "{web} in {:?}",
        server.leases()
    );
    // One identifier, one endpoint: a second one would get the first's address.
    lab.fails(
        &["attach", "lan", "--netns", &n1, "--ifname", "eth1", "--client-id", "web-1"],
        "is already used by eth1 in",
    );
    assert!(link(&ns1, "eth1").is_none());
    lab.ok(&["detach", "lan", "--netns", &n2, "--ifname", "eth1"]);

    // network rm --force releases what is left.
    lab.ok(&["network", "rm", "lan", "--force"]);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !server.leases().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.leases(), Vec::<Vec<String>>::new(), "every lease released");
    server.stop();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The exchange runs outside the state lock: with every offer held back
/// 3 s by the server, twelve attaches one after the other under the lock
/// would take 36 s and the last ones would give up waiting for it (30 s);
/// at once, each waits for its own offer only.
#[test]
fn twelve_attaches_at_once_get_twelve_leases() {
    const N: usize = 12;
    let mut lab = Lab::new("dhcppar");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let range = "192.168.0.100,192.168.0.149";
    let Some(server) =
        Dnsmasq::start_with(&lab.switch, "parallel", range, &["--dhcp-reply-delay=3"])
    else {
        return;
    };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let names: Vec<String> = (0..N).map(|i| lab.netns(&format!("p{i}")).1).collect();
    let started = Instant::now();
    let outs: Vec<std::process::Output> = std::thread::scope(|s| {
        let lab = &lab;
        let running: Vec<_> = names
            .iter()
            .map(|n| {
                s.spawn(move || {
                    let args = ["attach", "lan", "--netns", n, "--dhcp-timeout", "20"];
                    lab.run(&[&args[..], &["--no-agent", "--json"]].concat())
                })
            })
            .collect();
        running.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let took = started.elapsed();
    eprintln!("{N} DHCP attaches at once (3 s offer delay): {took:?}");
    let mut ips = std::collections::BTreeSet::new();
    for out in &outs {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        ips.insert(ip_of(&view));
    }
    assert_eq!(ips.len(), N, "{N} distinct addresses: {ips:?}");
    let leases = server.leases();
    assert_eq!(leases.len(), N, "the server holds {N} leases: {leases:?}");
    assert!(leases.iter().all(|l| ips.contains(&l[2])), "{leases:?} against {ips:?}");
    assert!(took < Duration::from_secs(25), "the exchanges overlapped: {took:?}");
    lab.ok(&["network", "rm", "lan", "--force"]);
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 0);
}

/// An attach killed (SIGKILL) while it waits for the server, outside the
/// lock: its intent says what to undo, and the next command undoes it (no
/// link, no record, the client identifier free again).
#[test]
fn an_attach_killed_during_the_exchange_is_undone_by_the_next_command() {
    let mut lab = Lab::new("dhcpkill");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let range = "192.168.0.100,192.168.0.149";
    let Some(server) = Dnsmasq::start_with(&lab.switch, "kill", range, &["--dhcp-reply-delay=3"])
    else {
        return;
    };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let (ns1, n1) = lab.netns("ns1");
    let attach = ["attach", "lan", "--netns", &n1, "--dhcp-timeout", "10", "--no-agent"];
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .arg("--state")
        .arg(&lab.state)
        .args(["--host-netns", &lab.host.netns_name])
        .args(attach)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The link is made before the exchange: wait for it, then for the lock to be free.
    let deadline = Instant::now() + Duration::from_secs(5);
    while non_lo(&ns1).is_empty() {
        assert!(Instant::now() < deadline, "the attach made no link");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Meanwhile another command runs: the lock is not held during the exchange.
    let during = Instant::now();
    let listed = lab.json(&["endpoint", "ls"]);
    assert!(during.elapsed() < Duration::from_secs(2), "waited {:?}", during.elapsed());
    assert_eq!(listed[0]["state"], "attaching", "{listed}");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 0, "intent undone");
    assert_eq!(non_lo(&ns1), Vec::<String>::new(), "its link deleted");
    // The identifier it claimed is free: the same endpoint attaches.
    let view = lab.json(&attach);
    assert!(server.has_lease(&ip_of(&view)), "{:?}", server.leases());
    lab.ok(&["network", "rm", "lan", "--force"]);
}

/// An attach killed after its lease was granted and committed, before it
/// marked the endpoint attached: made here from an attached endpoint by
/// setting its row back to "attaching" under a process that is gone (what
/// the store holds at that moment, the resolv.conf written but not yet
/// recorded). The next command ends the intent: the lease goes back to the
/// server (RELEASE through the parent), the link, the resolv.conf and the
/// record go.
#[test]
fn an_attach_killed_after_the_grant_gives_the_lease_back() {
    use nicslice_store::{EndpointState, Owner, Store, StoreRead};
    let mut lab = Lab::new("dhcpgrant");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(server) = Dnsmasq::start(&lab.switch, "grant") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let (ns1, n1) = lab.netns("ns1");
    let view = lab.json(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5", "--no-agent"]);
    let ip = ip_of(&view);
    assert!(server.has_lease(&ip));
    // A process that has exited: the intent's owner is gone.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    {
        let mut store = Store::open(&lab.state).unwrap();
        let tx = store.write().unwrap();
        let network = tx.network_by_name(&"lan".parse().unwrap()).unwrap().unwrap();
        let ep = tx.endpoints(network.id).unwrap().pop().unwrap();
        assert_eq!(tx.dhcp_leases_of(ep.id).unwrap().len(), 1, "the lease row");
        // The attach wrote the resolv.conf but had not recorded it yet.
        let mut lease = tx.dhcp_leases_of(ep.id).unwrap().pop().unwrap();
        lease.details["resolv_conf"] = serde_json::Value::Null;
        tx.record_dhcp_lease(&lease).unwrap();
        let owner = Owner { pid, start: 1 };
        tx.set_endpoint_state(ep.id, EndpointState::Attaching, Some(owner)).unwrap();
        tx.commit().unwrap();
    }
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 0, "intent ended");
    assert_eq!(non_lo(&ns1), Vec::<String>::new(), "its link deleted");
    assert!(server.released(&ip), "the lease given back: {:?}", server.leases());
    assert!(!Path::new(&format!("/etc/netns/{n1}/resolv.conf")).exists(), "its resolv.conf gone");
    // Its directory stays (whether nicslice made it was not recorded yet).
    let _ = std::fs::remove_dir(format!("/etc/netns/{n1}"));
    lab.ok(&["network", "rm", "lan"]);
}

#[test]
fn no_server_fails_within_the_timeout_and_leaves_nothing() {
    use nicslice_store::StoreRead;
    let mut lab = Lab::new("dhcp0");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    // A server that ran and stopped: nothing answers on the link now.
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let (ns1, n1) = lab.netns("ns1");
    let started = Instant::now();
    // As a user runs it: an attach that succeeds would start the agent.
    let err = lab.fails(
        &["attach", "lan", "--netns", &n1, "--dhcp-timeout", "1.5"],
        "no DHCP server answered",
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "gave up after {took:?}: {err}");
    assert!(took >= Duration::from_millis(1500), "waited its timeout: {took:?}");
    assert_eq!(non_lo(&ns1), Vec::<String>::new(), "no link left");
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 0, "no record");
    assert!(!Path::new(&format!("/etc/netns/{n1}")).exists(), "no resolv.conf");
    // No agent state: no agent started, no lease row, held or released,
    // under the endpoint's client identifier.
    lab.assert_no_dhcp_agent();
    let target = nicslice_kernel::NetnsTarget::Named(n1.clone());
    let who = nicslice_engine::dhcp::Who { network: "lan", netns: &target, ifname: "eth0" };
    let client_id = nicslice_engine::dhcp::client_id(&who, None).unwrap();
    let store = nicslice_store::Store::open(&lab.state).unwrap();
    assert!(store.dhcp_lease_of_client(&client_id, 4).unwrap().is_none(), "no lease row");
    assert_eq!(store.held_dhcp_leases().unwrap().len(), 0);
    drop(store);
    lab.ok(&["network", "rm", "lan"]);
}

#[test]
fn dhcp_requests_that_cannot_work_are_refused() {
    let mut lab = Lab::new("dhcpno");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    lab.fails(
        &[
            "network",
            "create",
            "a",
            "--parent",
            "eth0",
            "--ipam",
            "dhcp",
            "--subnet",
            "192.168.0.0/24",
        ],
        "drop --subnet",
    );
    lab.fails(
        &["network", "create", "b", "--parent", "eth0", "--ipam", "dhcp", "--driver", "macvtap"],
        "runs its own DHCP client",
    );
    // Seed 001: ipvlan l3 children receive no broadcast, so no DHCP answer.
    lab.fails(
        &[
            "network", "create", "c", "--parent", "eth0", "--ipam", "dhcp", "--driver", "ipvlan",
            "--mode", "l3",
        ],
        "never receive",
    );
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let (_ns, n1) = lab.netns("ns1");
    lab.fails(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.7"], "come from DHCP");
    lab.fails(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "0"], "--dhcp-timeout");
    lab.fails(&["attach", "lan", "--netns", &n1, "--client-id", "hex:zz"], "--client-id");
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 0);
}

/// The server holds exactly one lease per endpoint of `views` (as attach
/// returned them): at the address attach got and the store still records,
/// under the endpoint's own client identifier; no other lease.
fn assert_one_lease_each(server: &Dnsmasq, lab: &Lab, views: &[&serde_json::Value]) {
    let leases = server.leases();
    assert_eq!(leases.len(), views.len(), "one lease per endpoint: {leases:?}");
    let listed = lab.json(&["endpoint", "ls"]);
    for view in views {
        let (ip, id) = (ip_of(view), view["dhcp"]["client_id"].as_str().unwrap());
        let held: Vec<_> = leases.iter().filter(|l| l[2] == ip).collect();
        assert_eq!(held.len(), 1, "{ip} handed out once: {leases:?}");
        assert_eq!(held[0].get(4).map(String::as_str), Some(id), "{ip} under {id}: {leases:?}");
        let recorded = listed.as_array().unwrap().iter().filter(|e| e["dhcp"]["client_id"] == id);
        let recorded: Vec<String> = recorded.map(ip_of).collect();
        assert_eq!(recorded, vec![ip.clone()], "the store's address of {id}: {listed}");
    }
}

#[test]
fn the_agent_renews_from_the_store_and_starts_over_after_a_nak() {
    let mut lab = Lab::new("dhcpag");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(mut server) = Dnsmasq::start(&lab.switch, "agent") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let (ns1, n1) = lab.netns("ns1");
    let (_ns2, n2) = lab.netns("ns2");
    let a = lab.json(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5", "--no-agent"]);
    let b = lab.json(&["attach", "lan", "--netns", &n2, "--dhcp-timeout", "5", "--no-agent"]);
    let (ip1, ip2) = (ip_of(&a), ip_of(&b));
    let before = (server.expiry(&ip1), a["dhcp"]["expires_at"].as_i64().unwrap());

    // A long-running agent, killed with SIGKILL: it leaves nothing behind
    // that stops the next one (its lock goes with it).
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .arg("--state")
        .arg(&lab.state)
        .args(["--host-netns", &lab.host.netns_name, "dhcp-agent"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    lab.fails(&["dhcp-agent", "--once"], "another dhcp-agent is running");
    agent.kill().unwrap();
    agent.wait().unwrap();

    // Renewed with the server (two seconds later, so the times move).
    std::thread::sleep(Duration::from_millis(2100));
    assert!(valid_lifetime(&n1, "eth0") <= 118, "the kernel counts the lease down");
    let report = lab.json(&["dhcp-agent", "--once", "--now"]);
    assert_eq!(report["renewed"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(report["failed"].as_array().unwrap().len(), 0, "{report}");
    let listed = lab.json(&["endpoint", "ls", "lan"]);
    let after = listed.as_array().unwrap().iter().find(|e| ip_of(e) == ip1).unwrap();
    assert!(after["dhcp"]["expires_at"].as_i64().unwrap() > before.1, "store: {after}");
    assert!(server.expiry(&ip1) > before.0, "the server extended it too");
    assert_eq!(addresses(&ns1, "eth0"), vec![format!("{ip1}/24")], "address kept");
    assert!(valid_lifetime(&n1, "eth0") >= 119, "the kernel's lifetime renewed too");
    // Nothing handed twice: the server holds one lease per endpoint, each
    // under its own identifier at the address the store records.
    assert_one_lease_each(&server, &lab, &[&a, &b]);

    // A server that no longer hands out these addresses refuses the
    // renewal (DHCPNAK): the agent takes them off their links and starts
    // over, with new addresses from the new range and the route back.
    server.stop();
    let Some(other) = Dnsmasq::start_range(&lab.switch, "agent2", "192.168.0.150,192.168.0.199")
    else {
        return;
    };
    let report = lab.json(&["dhcp-agent", "--once", "--now"]);
    assert_eq!(report["replaced"].as_array().unwrap().len(), 2, "{report}");
    // The new lease put on as attach puts one on: its DNS servers in the
    // namespace's resolv.conf, recorded (network rm removes it below).
    let resolv = PathBuf::from(format!("/etc/netns/{n1}/resolv.conf"));
    let text = std::fs::read_to_string(&resolv).expect("the new lease's resolv.conf");
    assert!(text.contains("nameserver 192.168.0.53"), "{text}");
    let listed = lab.json(&["endpoint", "ls", "lan"]);
    for e in listed.as_array().unwrap() {
        let ip = ip_of(e);
        let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
        assert!((150..200).contains(&last), "{ip} from the new range: {e}");
        assert!(other.has_lease(&ip), "{ip} held at the new server: {:?}", other.leases());
        assert!(!e["dhcp"].is_null(), "{e}");
    }
    let now1 = ip_of(
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["netns"].as_str().unwrap().ends_with(&n1))
            .unwrap(),
    );
    assert_eq!(addresses(&ns1, "eth0"), vec![format!("{now1}/24")]);
    assert_eq!(default_gateway(&ns1), Some("192.168.0.1".parse().unwrap()), "route back");
    assert!(ping(&ns1, "192.168.0.1"));
    assert!(!other.has_lease(&ip1) && !other.has_lease(&ip2));
    lab.ok(&["endpoint", "check", "lan"]);
    lab.ok(&["network", "rm", "lan", "--force"]);
    assert!(!resolv.exists(), "its resolv.conf went with it");
}

#[test]
fn attach_starts_one_agent_which_stops_when_idle() {
    let mut lab = Lab::new("dhcpon");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(_server) = Dnsmasq::start(&lab.switch, "ondemand") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let (_ns1, n1) = lab.netns("ns1");
    let (_ns2, n2) = lab.netns("ns2");
    let lock = PathBuf::from(format!("{}.dhcp-agent.lock", lab.state.display()));
    lab.ok(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5"]);
    lab.ok(&["attach", "lan", "--netns", &n2, "--dhcp-timeout", "5"]);
    // The agent the first attach started holds the lock and wrote its pid.
    let deadline = Instant::now() + Duration::from_secs(5);
    let pid = loop {
        let text = std::fs::read_to_string(&lock).unwrap_or_default();
        if let Ok(pid) = text.trim().parse::<i32>() {
            break pid;
        }
        assert!(Instant::now() < deadline, "no agent wrote {}", lock.display());
        std::thread::sleep(Duration::from_millis(20));
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("dhcp-agent --exit-when-idle"), "{pid}: {cmdline}");
    lab.fails(&["dhcp-agent", "--once"], "another dhcp-agent is running");
    // Only one was started for two attaches.
    assert_eq!(lab.dhcp_agent_pids(), vec![pid as u32], "one agent per state database");
    // Stopped by the pid it wrote (the test started it, through attach).
    // SAFETY: kill(2) with a pid read from the agent's own lock file.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    lab.ok(&["network", "rm", "lan", "--force"]);
    // With no lease held, an idle-exiting agent stops after its first pass.
    let out = lab.run(&["dhcp-agent", "--exit-when-idle"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Seed 001 on this kernel, which has no ipvlan: two children with one MAC
/// (macvlans given the same address on two hosts of one switch, what ipvlan
/// children on one parent look like to the server) are two clients because
/// of their client identifiers; given one identifier, the server sees one
/// client and hands out one address. The VM stage runs the ipvlan case
/// itself (vm_dhcp.rs).
#[test]
fn one_mac_two_clients_by_client_identifier() {
    let mut lab = Lab::new("dhcpmac");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(server) = Dnsmasq::start(&lab.switch, "mac") else { return };
    let host2 = lab.world.host(&lab.switch, "host2", "eth0", None).unwrap();
    let state2 = std::env::temp_dir().join(format!("{}-2.db", lab.world.prefix()));
    let on_host2 = |args: &[&str]| -> serde_json::Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nicslice"))
            .arg("--state")
            .arg(&state2)
            .args(["--host-netns", &host2.netns_name, "--json"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    on_host2(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let (_ns1, n1) = lab.netns("ns1");
    let (_ns2, n2) = lab.netns("ns2");
    let (_ns3, n3) = lab.netns("ns3");
    let mac = "02:00:00:5e:00:01";
    let attach = ["--mac", mac, "--dhcp-timeout", "5", "--no-agent"];
    let a = lab.json(&[&["attach", "lan", "--netns", &n1][..], &attach].concat());
    let b = on_host2(&[&["attach", "lan", "--netns", &n2][..], &attach].concat());
    assert_eq!(a["mac"], b["mac"], "one MAC");
    assert_ne!(ip_of(&a), ip_of(&b), "two clients, two leases: {:?}", server.leases());
    let leases = server.leases();
    assert_eq!(leases.len(), 2, "{leases:?}");
    assert!(leases.iter().all(|l| l[1] == mac), "{leases:?}");
    assert_ne!(leases[0][4], leases[1][4], "told apart by client identifier");

    // The control: the same MAC and the same identifier is one client to the
    // server, which hands it the address it already holds.
    let same = ["--client-id", "shared-1"];
    lab.ok(&["detach", "lan", "--netns", &n1]);
    on_host2(&["detach", "lan", "--netns", &n2]);
    let c = lab.json(&[&["attach", "lan", "--netns", &n1][..], &attach, &same].concat());
    let d = on_host2(&[&["attach", "lan", "--netns", &n3][..], &attach, &same].concat());
    assert_eq!(ip_of(&c), ip_of(&d), "one identity, one lease: {:?}", server.leases());

    lab.ok(&["network", "rm", "lan", "--force"]);
    on_host2(&["network", "rm", "lan", "--force"]);
    nicslice_store::Store::remove_files(&state2);
}

/// All or nothing with a server: a step that fails after the server granted
/// the lease gives it back (RELEASE) before the link goes; one that fails
/// before leaves the server untouched. Either way: no link, no record.
#[test]
fn a_failed_step_gives_the_lease_back_and_leaves_nothing() {
    let mut lab = Lab::new("dhcpfail");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(server) = Dnsmasq::start(&lab.switch, "fail") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let (ns1, n1) = lab.netns("ns1");
    let attach = ["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5", "--no-agent"];
    for step in ["create-link", "link-up", "add-address", "add-route", "store-commit"] {
        let out = lab.run_env(&attach, &[("NICSLICE_FAIL_AT", step)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("injected failure"), "{step}: {err}");
        assert_eq!(non_lo(&ns1), Vec::<String>::new(), "{step}: no link left");
        assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 0, "{step}");
        let deadline = Instant::now() + Duration::from_secs(3);
        while !server.leases().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            server.leases(),
            Vec::<Vec<String>>::new(),
            "{step}: lease given back {err} {}",
            server.log()
        );
        assert!(!Path::new(&format!("/etc/netns/{n1}")).exists(), "{step}: no resolv.conf");
    }
    // The same attach without a fault works (so the checks above could fail).
    let view = lab.json(&attach);
    assert!(server.has_lease(&ip_of(&view)));
    lab.ok(&["network", "rm", "lan", "--force"]);
}

/// A namespace deleted without detach (a container that exited): its link
/// went with it, and detach gives the lease back through the parent on the
/// endpoint's behalf, so the server does not keep the address for nothing.
#[test]
fn detach_after_the_namespace_is_gone_still_releases() {
    let mut lab = Lab::new("dhcpgone");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(server) = Dnsmasq::start(&lab.switch, "gone") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let (ns1, n1) = lab.netns("ns1");
    let view = lab.json(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5", "--no-agent"]);
    let ip = ip_of(&view);
    assert!(server.has_lease(&ip));
    drop(ns1);
    nicslice_kernel::netns::delete_named(&n1).unwrap();
    lab.ok(&["detach", "lan", "--netns", &n1]);
    assert!(server.released(&ip), "RELEASE through the parent: {:?}", server.leases());

    // The same, found by the agent before any detach: it releases the lease
    // and keeps it no longer (no pass finds it due again).
    let (ns2, n2) = lab.netns("ns2");
    let view = lab.json(&["attach", "lan", "--netns", &n2, "--dhcp-timeout", "5", "--no-agent"]);
    let ip = ip_of(&view);
    drop(ns2);
    nicslice_kernel::netns::delete_named(&n2).unwrap();
    let report = lab.json(&["dhcp-agent", "--once", "--now"]);
    let lost = report["lost"].as_array().unwrap();
    assert!(lost.len() == 1 && lost[0].as_str().unwrap().contains("namespace is gone"), "{report}");
    assert!(server.released(&ip), "{:?}", server.leases());
    assert!(lab.json(&["dhcp-agent", "--once"])["next_due"].is_null(), "nothing held");
    assert!(!Path::new(&format!("/etc/netns/{n2}")).exists(), "no resolv.conf left");
    lab.ok(&["detach", "lan", "--netns", &n2]);
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 0);
    assert!(!Path::new(&format!("/etc/netns/{n1}")).exists(), "no resolv.conf left");
    lab.ok(&["network", "rm", "lan"]);
}

/// Reverse-path filtering in the target namespace (a hardened container):
/// an interface with no address has no route back to the server, so the
/// kernel drops the server's answers before UDP sees them; nicslice reads
/// them from a packet socket there, and attach works all the same.
#[test]
fn reverse_path_filtering_does_not_stop_the_exchange() {
    let mut lab = Lab::new("dhcprp");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(server) = Dnsmasq::start(&lab.switch, "rp") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let (ns1, n1) = lab.netns("ns1");
    ns1.run(|| nicslice_kernel::sysctl::write("net/ipv4/conf/all/rp_filter", "1").unwrap())
        .unwrap();
    let view = lab.json(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "3", "--no-agent"]);
    let ip = ip_of(&view);
    assert!(server.has_lease(&ip));
    assert!(ping(&ns1, "192.168.0.1"));
    lab.ok(&["detach", "lan", "--netns", &n1]);
    assert!(server.released(&ip));
    lab.ok(&["network", "rm", "lan"]);
}

fn unix_now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    since.as_secs() as i64
}

/// The store's record of the held lease of `ip`.
fn held_lease(lab: &Lab, ip: &str) -> nicslice_store::DhcpLeaseRecord {
    use nicslice_store::StoreRead;
    let store = nicslice_store::Store::open(&lab.state).unwrap();
    let held = store.held_dhcp_leases().unwrap();
    held.into_iter().find(|l| l.address.addr().to_string() == ip).expect("a held lease")
}

/// Changes the store's record of the lease of `ip`, as time passing (or an
/// agent that was not running) leaves it: the agent acts on what the store
/// says.
fn edit_lease(lab: &Lab, ip: &str, edit: impl FnOnce(&mut nicslice_store::DhcpLeaseRecord)) {
    let mut lease = held_lease(lab, ip);
    edit(&mut lease);
    let mut store = nicslice_store::Store::open(&lab.state).unwrap();
    let tx = store.write().unwrap();
    tx.record_dhcp_lease(&lease).unwrap();
    tx.commit().unwrap();
}

/// Waits (at most 3 s: dnsmasq writes its log a moment after it answers)
/// for `server`'s log to hold more than `count` lines containing `needle`;
/// returns how many it holds.
fn log_lines(server: &Dnsmasq, needle: &str, count: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let now = server.log().matches(needle).count();
        if now > count || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The agent's own timing, from the store's times (no `--now`): nothing
/// before T1; past T1 a REQUEST unicast to the server that gave the lease
/// (so a recorded server that is not there gets it, and the dnsmasq on
/// the link never sees it: tried again later); past T2 a broadcast REQUEST
/// that names no server, which any server answers.
#[test]
fn the_agent_renews_at_t1_with_its_server_and_rebinds_at_t2_with_any() {
    let mut lab = Lab::new("dhcpt1");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(server) = Dnsmasq::start(&lab.switch, "t1t2") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let (ns1, n1) = lab.netns("ns1");
    let view = lab.json(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5", "--no-agent"]);
    let ip = ip_of(&view);
    let request = format!("DHCPREQUEST(br0) {ip} ");
    let ack = format!("DHCPACK(br0) {ip} ");
    let (requests, acks) = (log_lines(&server, &request, 0), log_lines(&server, &ack, 0));
    assert_eq!((requests, acks), (1, 1), "the attach's: {}", server.log());
    let kept = || assert_eq!(addresses(&ns1, "eth0"), vec![format!("{ip}/24")], "address kept");

    // Before T1: nothing to do.
    let first = held_lease(&lab, &ip);
    let report = lab.json(&["dhcp-agent", "--once"]);
    assert_eq!(report["renewed"], serde_json::json!([]), "{report}");
    assert_eq!(report["next_due"], first.renew_at, "{report}");
    assert_eq!(server.log().matches(&request).count(), requests, "no REQUEST before T1");

    // Past T1: renewed with its server.
    std::thread::sleep(Duration::from_millis(1100));
    let server_expiry = server.expiry(&ip);
    edit_lease(&lab, &ip, |l| l.renew_at = unix_now() - 1);
    let report = lab.json(&["dhcp-agent", "--once"]);
    assert_eq!(report["renewed"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(log_lines(&server, &request, requests), requests + 1, "{}", server.log());
    assert_eq!(log_lines(&server, &ack, acks), acks + 1, "{}", server.log());
    let renewed = held_lease(&lab, &ip);
    assert!(renewed.renew_at > unix_now() && renewed.expires_at > first.expires_at, "{renewed:?}");
    assert!(server.expiry(&ip) > server_expiry, "the server extended it");
    kept();
    assert!(valid_lifetime(&n1, "eth0") >= 119, "the kernel's lifetime renewed too");

    // Past T1 with a recorded server that is not there: the REQUEST goes
    // to it alone, nobody answers, and the next try is put off (RFC 2131
    // 4.4.5: half the time to T2, at least a minute).
    edit_lease(&lab, &ip, |l| {
        l.server = "192.168.0.77".parse().unwrap();
        l.renew_at = unix_now() - 1;
    });
    let report = lab.json(&["dhcp-agent", "--once", "--timeout", "1"]);
    assert_eq!(report["failed"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["renewed"], serde_json::json!([]), "{report}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.log().matches(&request).count(), requests + 1, "unicast, not to dnsmasq");
    let postponed = held_lease(&lab, &ip);
    assert!(postponed.renew_at >= unix_now() + 59, "tried again later: {postponed:?}");
    assert!(postponed.renew_at <= postponed.rebind_at, "{postponed:?}");
    kept();

    // Past T2: the broadcast REQUEST reaches any server; the one that
    // answered is recorded for the next renewal.
    edit_lease(&lab, &ip, |l| {
        l.renew_at = unix_now() - 10;
        l.rebind_at = unix_now() - 1;
    });
    let report = lab.json(&["dhcp-agent", "--once", "--timeout", "3"]);
    assert_eq!(report["renewed"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(log_lines(&server, &request, requests + 1), requests + 2, "{}", server.log());
    assert_eq!(log_lines(&server, &ack, acks + 1), acks + 2, "{}", server.log());
    let rebound = held_lease(&lab, &ip);
    assert_eq!(rebound.server.to_string(), "192.168.0.1", "{rebound:?}");
    assert!(rebound.rebind_at > unix_now() && rebound.renew_at > unix_now(), "{rebound:?}");
    assert_eq!(rebound.address, first.address);
    kept();
    assert_eq!(server.leases().len(), 1, "one lease: {:?}", server.leases());
    lab.ok(&["detach", "lan", "--netns", &n1]);
    assert!(server.released(&ip), "{:?}", server.leases());
    lab.ok(&["network", "rm", "lan"]);
}

/// An agent killed after the server granted a renewal and before it
/// recorded it (the fault point `renew-record` ends the process there):
/// the server's lease then runs longer than the store says, the safe side.
/// The next agent renews from the store again, and the server holds one
/// lease per endpoint, at the same addresses, under the same identifiers.
#[test]
fn an_agent_killed_between_the_answer_and_its_record_renews_again_without_a_duplicate() {
    let mut lab = Lab::new("dhcpdie");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(server) = Dnsmasq::start(&lab.switch, "die") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let (ns1, n1) = lab.netns("ns1");
    let (ns2, n2) = lab.netns("ns2");
    let a = lab.json(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5", "--no-agent"]);
    let b = lab.json(&["attach", "lan", "--netns", &n2, "--dhcp-timeout", "5", "--no-agent"]);
    let ips = [ip_of(&a), ip_of(&b)];
    let stored = ips.clone().map(|ip| held_lease(&lab, &ip));
    let at_server = ips.clone().map(|ip| server.expiry(&ip));

    std::thread::sleep(Duration::from_millis(1100));
    let out =
        lab.run_env(&["dhcp-agent", "--once", "--now"], &[("NICSLICE_FAIL_AT", "renew-record")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(137), "died: {err}");
    assert!(err.contains("injected death at renew-record"), "{err}");
    assert!(!lab.dhcp_agent_lock_held(), "its lock went with it");
    // The server extended the first lease the pass took; the store
    // records neither renewal.
    let extended = || (0..2).filter(|&i| server.expiry(&ips[i]) > at_server[i]).count();
    let deadline = Instant::now() + Duration::from_secs(3);
    while extended() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(extended(), 1, "one renewal granted: {:?}", server.leases());
    for (ip, before) in ips.iter().zip(&stored) {
        let now = held_lease(&lab, ip);
        assert_eq!((now.renew_at, now.expires_at), (before.renew_at, before.expires_at), "{ip}");
    }

    // The next agent renews both from the store: the same addresses,
    // nothing handed twice.
    let report = lab.json(&["dhcp-agent", "--once", "--now"]);
    assert_eq!(report["renewed"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(report["failed"], serde_json::json!([]), "{report}");
    assert_one_lease_each(&server, &lab, &[&a, &b]);
    for ((ip, before), (ns, name)) in ips.iter().zip(&stored).zip([(&ns1, &n1), (&ns2, &n2)]) {
        let now = held_lease(&lab, ip);
        assert_eq!((&now.address, &now.client_id), (&before.address, &before.client_id));
        assert!(now.expires_at > before.expires_at, "{ip} renewed: {now:?}");
        assert_eq!(addresses(ns, "eth0"), vec![format!("{ip}/24")], "address kept");
        assert!(valid_lifetime(name, "eth0") >= 119, "the kernel's lifetime renewed");
    }
    lab.ok(&["network", "rm", "lan", "--force"]);
    assert_eq!(server.leases(), Vec::<Vec<String>>::new(), "{:?}", server.leases());
}

/// A long-running agent for `lab` (`dhcp-agent` with `extra`), stopped by
/// the test through the pid it started.
fn spawn_agent(lab: &Lab, extra: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .arg("--state")
        .arg(&lab.state)
        .args(["--host-netns", &lab.host.netns_name, "dhcp-agent"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The store's entry for the endpoint's lost DHCPv4 lease asked for again,
/// as `endpoint ls` shows it (the first endpoint listed).
fn retry_of(lab: &Lab) -> Option<serde_json::Value> {
    let listed = lab.json(&["endpoint", "ls"]);
    let list = listed[0]["dhcp_retry"].as_array()?.clone();
    list.into_iter().find(|r| r["family"] == 4)
}

/// Waits up to `limit` for `ns`'s eth0 to hold exactly `want`.
fn wait_addresses(ns: &nicslice_kernel::Netns, want: &[String], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while addresses(ns, "eth0") != want {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// A lease that ran out (the store's expiry passed: a server that stopped
/// answering, an agent that was not running): the agent takes the address
/// off the link and the server's DNS servers out of the namespace, and
/// says so; the endpoint keeps its link, with no address and no lease, its
/// record says why (`endpoint ls`, and `endpoint check` reports it), and
/// the lease is asked for again at once (RFC 2131 4.4.5), then after 4 s,
/// 8 s... while no server answers. A server back on the link: within that
/// wait the agent has the lease again (the same address, asked for under
/// the same client identifier), and the address, the default route and the
/// resolv.conf are back as attach made them; `endpoint check` passes and
/// `endpoint ls` says nothing lost.
#[test]
fn an_expired_lease_s_address_is_taken_off_its_link_and_asked_for_again() {
    let mut lab = Lab::new("dhcpexp");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(mut server) = Dnsmasq::start(&lab.switch, "expired") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let (ns1, n1) = lab.netns("ns1");
    let view = lab.json(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5", "--no-agent"]);
    let ip = ip_of(&view);
    let resolv = PathBuf::from(format!("/etc/netns/{n1}/resolv.conf"));
    assert!(resolv.exists());
    server.stop();
    let now = unix_now();
    edit_lease(&lab, &ip, |l| {
        (l.renew_at, l.rebind_at, l.expires_at) = (now - 30, now - 20, now - 1);
    });

    let started = Instant::now();
    let said = lab.ok(&["dhcp-agent", "--once", "--timeout", "1"]);
    let tried = unix_now();
    assert!(
        said.contains(&format!("lost {ip}/24 (eth0 in /run/netns/{n1}): lease expired")),
        "{said}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1), "a DISCOVER at once, unanswered");
    assert_eq!(addresses(&ns1, "eth0"), Vec::<String>::new(), "address taken off");
    assert!(link(&ns1, "eth0").is_some(), "the link stays");
    assert!(!resolv.exists(), "the lease's DNS servers gone");
    assert!(default_gateway(&ns1).is_none(), "the default route went with it");
    // The endpoint's record says so, and why, and when it asks again.
    let lost = format!("DHCPv4 lease of {ip}/24 lost: lease expired");
    let listed = lab.json(&["endpoint", "ls", "lan"]);
    assert_eq!(listed[0]["addresses"], serde_json::json!([]), "{listed}");
    assert!(listed[0]["dhcp"].is_null(), "no lease: {listed}");
    assert_eq!(listed[0]["dhcp_lost"], serde_json::json!([lost]), "{listed}");
    assert_eq!(listed[0]["state"], "attached", "{listed}");
    let retry = retry_of(&lab).expect("asked for again");
    assert_eq!(retry["client_id"], view["dhcp"]["client_id"], "the same identifier: {retry}");
    assert_eq!(retry["backoff_secs"], 8, "the first try failed, the next wait doubles: {retry}");
    let next_at = retry["next_at"].as_i64().unwrap();
    assert!((tried - 1..=tried + 4).contains(&(next_at - 4)), "4 s after the try: {retry}");
    let table = lab.ok(&["endpoint", "ls", "lan"]);
    assert!(table.contains(&lost) && !table.contains("dhcp 192.168.0.1"), "{table}");
    assert!(table.contains("DHCPv4 asked for again in"), "{table}");
    let out = lab.run(&["endpoint", "check", "lan"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && said.contains(&lost), "{said}");
    assert!(said.contains("asks for a new lease"), "{said}");
    // The agent keeps running for it: the next due time is the next try.
    let report = lab.json(&["dhcp-agent", "--once", "--timeout", "1"]);
    let next_at = retry_of(&lab).unwrap()["next_at"].as_i64().unwrap();
    assert_eq!(report["next_due"], next_at, "not idle: {report}");

    // The server is back: an agent as attach starts it gets the lease again
    // within the wait, and stays on to renew it.
    let Some(back) = Dnsmasq::start(&lab.switch, "expired-back") else { return };
    let mut agent = spawn_agent(&lab, &["--exit-when-idle", "--timeout", "1"]);
    let want = vec![format!("{ip}/24")];
    let found = wait_addresses(&ns1, &want, Duration::from_secs(12));
    let at = unix_now();
    assert!(found, "the lease again: {:?}\n{}", addresses(&ns1, "eth0"), back.log());
    assert!(at >= next_at, "not before the recorded try ({at} < {next_at})");
    assert_eq!(default_gateway(&ns1), Some("192.168.0.1".parse().unwrap()), "route back");
    let text = std::fs::read_to_string(&resolv).expect("resolv.conf written again");
    assert!(text.contains("nameserver 192.168.0.53"), "{text}");
    assert!(valid_lifetime(&n1, "eth0") >= 115, "the lease's lifetime in the kernel");
    assert!(ping(&ns1, "192.168.0.1"));
    let id = view["dhcp"]["client_id"].as_str().unwrap();
    let leases = back.leases();
    assert!(
        leases.len() == 1 && leases[0][2] == ip && leases[0].get(4).map(String::as_str) == Some(id),
        "one lease, under the endpoint's identifier: {leases:?}"
    );
    // Recorded whole (the store is written once the kernel has it).
    let deadline = Instant::now() + Duration::from_secs(3);
    while retry_of(&lab).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let listed = lab.json(&["endpoint", "ls", "lan"]);
    assert!(listed[0]["dhcp_lost"].is_null() && listed[0]["dhcp_retry"].is_null(), "{listed}");
    assert_eq!(listed[0]["dhcp"]["server"], "192.168.0.1", "{listed}");
    assert_eq!(ip_of(&listed[0]), ip, "{listed}");
    let table = lab.ok(&["endpoint", "ls", "lan"]);
    assert!(!table.contains("lost") && table.contains("dhcp 192.168.0.1 120s"), "{table}");
    lab.ok(&["endpoint", "check", "lan"]);
    assert!(agent.try_wait().unwrap().is_none(), "the agent runs on: a lease is held");
    agent.kill().unwrap();
    agent.wait().unwrap();

    lab.ok(&["detach", "lan", "--netns", &n1]);
    assert!(link(&ns1, "eth0").is_none());
    assert!(back.released(&ip), "{:?}", back.leases());
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 0);
    lab.ok(&["network", "rm", "lan"]);
}

/// An agent killed (SIGKILL) while it asks for a lost lease again: the
/// wait it had reached is in the store, and the next agent carries on from
/// it, sleeping until the recorded time (not asking at once, nor polling
/// meanwhile), then gets the lease.
#[test]
fn an_agent_killed_while_asking_again_resumes_its_backoff() {
    let mut lab = Lab::new("dhcpback");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(mut server) = Dnsmasq::start(&lab.switch, "backoff") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let (ns1, n1) = lab.netns("ns1");
    let view = lab.json(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5", "--no-agent"]);
    let ip = ip_of(&view);
    server.stop();
    let now = unix_now();
    edit_lease(&lab, &ip, |l| {
        (l.renew_at, l.rebind_at, l.expires_at) = (now - 30, now - 20, now - 1);
    });

    // Tries at once, 4 s later, 8 s after that...: wait for the second to
    // have failed (the next try 8 s later), then kill the agent.
    let mut first = spawn_agent(&lab, &["--timeout", "1"]);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let retry = loop {
        if let Some(r) = retry_of(&lab) {
            if seen.last() != Some(&r["backoff_secs"]) {
                seen.push(r["backoff_secs"].clone());
            }
            if r["backoff_secs"] == 16 {
                break r;
            }
        }
        assert!(Instant::now() < deadline, "backoff seen: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!lab.dhcp_agent_lock_held(), "its lock went with it");
    let doubling = seen.windows(2).all(|w| w[1] == w[0].as_u64().unwrap() * 2);
    assert!(seen.len() >= 2 && doubling, "doubling: {seen:?}");
    let next_at = retry["next_at"].as_i64().unwrap();
    let killed_at = unix_now();
    assert!(next_at - killed_at >= 6, "8 s after the failed try: {retry}, now {killed_at}");
    assert_eq!(addresses(&ns1, "eth0"), Vec::<String>::new());

    // The server is back at once; the next agent waits for the recorded
    // time all the same (an agent that forgot would ask at once and have
    // the lease within a second).
    let Some(back) = Dnsmasq::start(&lab.switch, "backoff-back") else { return };
    let mut next = spawn_agent(&lab, &["--timeout", "1"]);
    std::thread::sleep(Duration::from_secs(1));
    let want = vec![format!("{ip}/24")];
    let found = wait_addresses(&ns1, &want, Duration::from_secs(15));
    let at = unix_now();
    assert!(found, "the lease again: {}", back.log());
    assert!(at >= next_at, "not before the recorded try: {at} < {next_at}");
    assert!(at <= next_at + 3, "at the recorded try: {at} against {next_at}");
    // It slept meanwhile: one DISCOVER from it, the one answered.
    let discovers = back.log().matches("DHCPDISCOVER(br0)").count();
    assert_eq!(discovers, 1, "{}", back.log());
    let deadline = Instant::now() + Duration::from_secs(3);
    while retry_of(&lab).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(retry_of(&lab).is_none(), "no longer asking");
    lab.ok(&["endpoint", "check", "lan"]);
    next.kill().unwrap();
    next.wait().unwrap();
    lab.ok(&["network", "rm", "lan", "--force"]);
    assert!(back.released(&ip), "{:?}", back.leases());
}

/// An agent killed after a lost lease was granted again and put on the
/// link, before the store recorded it whole (the fault point
/// `reacquire-record` ends the process there): the grant is recorded and
/// the endpoint still asks; the next agent asks again under the same
/// identifier, gets the same lease and puts it on whole: one lease at the
/// server, the address once on the link, nothing lost any more.
#[test]
fn an_agent_killed_before_recording_a_lease_asked_for_again_finishes_it_next_time() {
    let mut lab = Lab::new("dhcpredie");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(mut server) = Dnsmasq::start(&lab.switch, "redie") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp"]);
    let (ns1, n1) = lab.netns("ns1");
    let view = lab.json(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5", "--no-agent"]);
    let ip = ip_of(&view);
    server.stop();
    let now = unix_now();
    edit_lease(&lab, &ip, |l| {
        (l.renew_at, l.rebind_at, l.expires_at) = (now - 30, now - 20, now - 1);
    });
    lab.ok(&["dhcp-agent", "--once", "--timeout", "1"]);
    assert_eq!(addresses(&ns1, "eth0"), Vec::<String>::new(), "address taken off");
    let Some(back) = Dnsmasq::start(&lab.switch, "redie-back") else { return };
    // The next try is due 4 s after the first.
    std::thread::sleep(Duration::from_secs(4));
    let out = lab.run_env(&["dhcp-agent", "--once"], &[("NICSLICE_FAIL_AT", "reacquire-record")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(137), "died: {err}");
    assert!(err.contains("injected death at reacquire-record"), "{err}");
    assert_eq!(addresses(&ns1, "eth0"), vec![format!("{ip}/24")], "put on before the record");
    let listed = lab.json(&["endpoint", "ls", "lan"]);
    assert!(!listed[0]["dhcp_retry"].is_null(), "still asking: {listed}");
    assert_eq!(held_lease(&lab, &ip).address.to_string(), format!("{ip}/24"), "grant recorded");

    let report = lab.json(&["dhcp-agent", "--once"]);
    assert_eq!(report["reacquired"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(addresses(&ns1, "eth0"), vec![format!("{ip}/24")], "once on the link");
    assert_eq!(default_gateway(&ns1), Some("192.168.0.1".parse().unwrap()));
    let listed = lab.json(&["endpoint", "ls", "lan"]);
    assert!(listed[0]["dhcp_lost"].is_null() && listed[0]["dhcp_retry"].is_null(), "{listed}");
    assert_one_lease_each(&back, &lab, &[&view]);
    lab.ok(&["endpoint", "check", "lan"]);
    assert!(Path::new(&format!("/etc/netns/{n1}/resolv.conf")).exists());
    lab.ok(&["network", "rm", "lan", "--force"]);
    assert!(back.released(&ip), "{:?}", back.leases());
    assert!(!Path::new(&format!("/etc/netns/{n1}/resolv.conf")).exists(), "its resolv.conf gone");
}
