//! DHCPv6 (IA_NA) networks against a real server: dnsmasq, started by the
//! test inside the switch namespace of its world (br0 gets fd00:db8::1/64;
//! the server hands out fd00:db8::100-1ff and sends Router Advertisements)
//! and killed by its pid at the end. Two macvlan children get two
//! addresses under one DUID (the host's) and two IAIDs; detach releases
//! (the server's lease file drops the address); a re-attached endpoint gets
//! its address back; the agent renews; a dual-stack network gives each
//! endpoint both families; the server's DNS servers go to the namespace's
//! resolv.conf (a dual-stack endpoint's beside its DHCPv4 ones) and leave
//! at detach; past T2 the agent REBINDs; with conflict probing a used
//! address is DECLINEd; a namespace deleted without detach still gets its
//! RELEASE (through the parent); with no server, attach fails within its
//! timeout and leaves no link, no lease and no record; `apply` of a DHCPv6
//! network starts the agent; a lost lease is SOLICITed again (through DAD
//! on a probing network; a dual-stack endpoint's lost DHCPv4 lease comes
//! back beside its DHCPv6 one).

mod common;
mod dnsmasq;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use dnsmasq::{Dnsmasq, EtcNetns, wait_route};

/// The addresses of an endpoint view of `family` ("." or ":"), without
/// their prefix lengths.
fn ips_of(view: &serde_json::Value, family: char) -> Vec<String> {
    let a = view["addresses"].as_array().expect("addresses");
    a.iter()
        .map(|a| a.as_str().unwrap().split('/').next().unwrap().to_string())
        .filter(|ip| ip.contains(family))
        .collect()
}

/// The single IPv6 address of a view.
fn ip6_of(view: &serde_json::Value) -> String {
    let v6 = ips_of(view, ':');
    assert_eq!(v6.len(), 1, "one DHCPv6 address: {view}");
    v6[0].clone()
}

#[test]
fn dhcp6_leases_per_child_one_duid_release_and_same_address_again() {
    let mut lab = Lab::new("dhcp6");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(server) = Dnsmasq::start_v6(&lab.switch, "v6") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp6"]);
    assert!(lab.ok(&["network", "ls"]).contains("(dhcp6)"));
    assert_eq!(lab.json(&["network", "ls"])[0]["ipam"], "dhcp6");
    let (ns1, n1) = lab.netns("ns1");
    let (ns2, n2) = lab.netns("ns2");

    let attach = |name: &str| {
        let args =
            ["attach", "lan", "--netns", name, "--dhcp-timeout", "5", "--no-agent", "--json"];
        let out = lab.run(&args);
        assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), server.log());
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let started = Instant::now();
    let a = attach(&n1);
    println!("attach with DHCPv6 took {:?}", started.elapsed());
    let started = Instant::now();
    let b = attach(&n2);
    println!("second attach with DHCPv6 took {:?}", started.elapsed());
    let (ip1, ip2) = (ip6_of(&a), ip6_of(&b));
    assert_ne!(ip1, ip2, "two children, two leases");
    assert!(ips_of(&a, '.').is_empty(), "no IPv4 on a dhcp6 network: {a}");
    for (ns, ip, view) in [(&ns1, &ip1, &a), (&ns2, &ip2, &b)] {
        let last = u16::from_str_radix(ip.rsplit(':').next().unwrap(), 16).unwrap();
        assert!(ip.starts_with("fd00:db8::") && (0x100..=0x1ff).contains(&last), "{ip}");
        assert_eq!(addresses(ns, "eth0"), vec![format!("{ip}/128")], "IA_NA gives a /128");
        assert_eq!(view["dhcp6"]["lease_secs"], 120, "{view}");
        // Where the REPLY came from: dnsmasq answers from its address on br0.
        assert_eq!(view["dhcp6"]["server"], "fd00:db8::1", "{view}");
        assert!(view["dhcp"].is_null(), "no DHCPv4 lease: {view}");
    }
    // One link-local of its own each, none of the kernel's EUI-64 ones.
    let ll = |ns: &nicslice_kernel::Netns| {
        let mut sock = nicslice_kernel::RouteSocket::open_in(ns).unwrap();
        let link = sock.require_link("eth0", "ns").unwrap();
        sock.addresses(Some(link.index))
            .unwrap()
            .into_iter()
            .map(|(_, a)| a.to_string())
            .filter(|a| a.starts_with("fe80:"))
            .collect::<Vec<_>>()
    };
    let (ll1, ll2) = (ll(&ns1), ll(&ns2));
    assert_eq!((ll1.len(), ll2.len()), (1, 1), "{ll1:?} {ll2:?}");
    assert_ne!(ll1, ll2);

    // The server knows them by one DUID (the host's) and two IAIDs.
    let (l1, l2) = (server.v6_lease(&ip1), server.v6_lease(&ip2));
    assert_eq!(l1[4], l2[4], "one DUID for the host: {l1:?} {l2:?}");
    assert_ne!(l1[1], l2[1], "one IAID per child: {l1:?} {l2:?}");

    // The router's RA gives each the on-link prefix and the default route.
    let prefix: ipnet::IpNet = "fd00:db8::/64".parse().unwrap();
    for ns in [&ns1, &ns2] {
        let default6 = |r: &nicslice_kernel::Route| {
            r.is_default() && r.destination.addr().is_ipv6() && r.gateway.is_some()
        };
        assert!(
            wait_route(ns, Duration::from_secs(10), |r| r.destination == prefix)
                && wait_route(ns, Duration::from_secs(10), default6),
            "on-link prefix and default route from the RA: {:?}",
            routes(ns)
        );
    }
    assert!(ping(&ns1, &ip2), "sibling over IPv6");
    assert!(ping(&ns1, "fd00:db8::1"), "the server");
    lab.ok(&["endpoint", "check", "lan"]);

    // The agent renews (RENEW to the server that gave it).
    let expiry = |ip: &str| server.v6_lease(ip)[0].parse::<i64>().unwrap();
    let before = expiry(&ip1);
    std::thread::sleep(Duration::from_millis(1100));
    let report = lab.json(&["dhcp-agent", "--once", "--now"]);
    assert_eq!(report["renewed"].as_array().unwrap().len(), 2, "{report}");
    let deadline = Instant::now() + Duration::from_secs(3);
    while expiry(&ip1) <= before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(expiry(&ip1) > before, "the server extended the lease");

    // The server's DNS server, where `ip netns exec` programs look.
    let resolv = std::path::PathBuf::from(format!("/etc/netns/{n1}/resolv.conf"));
    let text = std::fs::read_to_string(&resolv).expect("resolv.conf written");
    assert!(text.starts_with("# written by nicslice for eth0 on network lan"), "{text}");
    assert!(text.contains("\nnameserver fd00:db8::53\n"), "{text}");

    // Detach sends RELEASE: the server forgets the lease.
    lab.ok(&["detach", "lan", "--netns", &n1]);
    assert!(!resolv.exists(), "nicslice's resolv.conf goes with the endpoint");
    assert!(link(&ns1, "eth0").is_none());
    assert!(server.released(&ip1), "RELEASE reached the server: {:?}", server.leases());
    assert!(server.has_lease(&ip2), "the other lease stays");

    // Attached again: same DUID and IAID, same address.
    let again = lab.json(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5", "--no-agent"]);
    assert_eq!(ip6_of(&again), ip1, "a re-attached endpoint gets its address back");
    assert_eq!(ll(&ns1), ll1, "and the same link-local");

    lab.ok(&["network", "rm", "lan", "--force"]);
    let deadline = Instant::now() + Duration::from_secs(3);
    while (server.has_lease(&ip1) || server.has_lease(&ip2)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!server.has_lease(&ip1) && !server.has_lease(&ip2), "{:?}", server.leases());
}

#[test]
fn dual_stack_network_gives_each_endpoint_both_families() {
    let mut lab = Lab::new("dhcp46");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(server) = Dnsmasq::start_v6(&lab.switch, "dual") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp", "--ipam", "dhcp6"]);
    lab.ok(&["network", "create", "lan2", "--parent", "eth0", "--ipam", "dhcp6,dhcp"]);
    let listed = lab.json(&["network", "ls"]);
    let ipams: BTreeSet<&str> =
        listed.as_array().unwrap().iter().map(|n| n["ipam"].as_str().unwrap()).collect();
    assert_eq!(ipams, BTreeSet::from(["dhcp,dhcp6"]), "both spellings: {listed}");
    lab.ok(&["network", "rm", "lan2"]);

    let mut seen = Vec::new();
    for role in ["ns1", "ns2"] {
        let (ns, name) = lab.netns(role);
        let started = Instant::now();
        let view =
            lab.json(&["attach", "lan", "--netns", &name, "--dhcp-timeout", "5", "--no-agent"]);
        println!("dual-stack attach took {:?}", started.elapsed());
        let (v4, v6) = (ips_of(&view, '.'), ip6_of(&view));
        assert_eq!(v4.len(), 1, "{view}");
        let mut held = addresses(&ns, "eth0");
        held.sort();
        assert_eq!(held, vec![format!("{}/24", v4[0]), format!("{v6}/128")]);
        assert_eq!(default_gateway(&ns), Some("192.168.0.1".parse().unwrap()));
        assert_eq!(server.v6_lease(&v6)[2], v6);
        assert!(server.has_lease(&v4[0]), "{:?}", server.leases());
        // One resolv.conf: the DHCPv4 server's DNS server, then DHCPv6's.
        let text = std::fs::read_to_string(format!("/etc/netns/{name}/resolv.conf")).unwrap();
        assert!(text.ends_with("nameserver 192.168.0.53\nnameserver fd00:db8::53\n"), "{text}");
        seen.push((name, v4[0].clone(), v6));
    }
    assert_ne!(seen[0].1, seen[1].1);
    assert_ne!(seen[0].2, seen[1].2);
    lab.ok(&["endpoint", "check", "lan"]);
    // endpoint ls shows both leases of each endpoint, each family's own.
    let table = lab.ok(&["endpoint", "ls", "lan"]);
    for line in table.lines().skip(1) {
        assert!(line.contains("dhcp 192.168.0.1 120s (renew in "), "{table}");
        assert!(line.contains("; dhcp6 fd00:db8::1 120s (renew in "), "{table}");
    }
    let listed = lab.json(&["endpoint", "ls", "lan"]);
    for e in listed.as_array().unwrap() {
        let (v4, v6) = (&e["dhcp"], &e["dhcp6"]);
        assert_eq!((&v4["server"], &v6["server"]), (&"192.168.0.1".into(), &"fd00:db8::1".into()));
        assert_eq!((&v4["lease_secs"], &v6["lease_secs"]), (&120.into(), &120.into()), "{e}");
        assert_eq!(v4["dns"], serde_json::json!(["192.168.0.53"]), "{e}");
        assert_eq!(v6["dns"], serde_json::json!(["fd00:db8::53"]), "{e}");
        assert_ne!(v4["client_id"], v6["client_id"], "{e}");
        for lease in [v4, v6] {
            let (renew, expires) = (lease["renew_at"].as_i64(), lease["expires_at"].as_i64());
            assert!(renew.unwrap() < expires.unwrap(), "{e}");
        }
    }
    for (name, v4, v6) in &seen {
        lab.ok(&["detach", "lan", "--netns", name]);
        assert!(server.released(v4), "DHCPv4 RELEASE of {v4}: {:?}", server.leases());
        assert!(server.released(v6), "DHCPv6 RELEASE of {v6}: {:?}", server.leases());
        assert!(!std::path::Path::new(&format!("/etc/netns/{name}")).exists(), "resolv.conf gone");
    }
    lab.ok(&["network", "rm", "lan"]);
}

#[test]
fn no_dhcp6_server_fails_within_the_timeout_and_leaves_nothing() {
    let mut lab = Lab::new("dhcp60");
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp6"]);
    let (ns1, n1) = lab.netns("ns1");
    let started = Instant::now();
    // As a user runs it: an attach that succeeds would start the agent.
    let err = lab.fails(
        &["attach", "lan", "--netns", &n1, "--dhcp-timeout", "1.5"],
        "no DHCPv6 server answered SOLICIT",
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "gave up after {took:?}: {err}");
    assert!(took >= Duration::from_millis(1500), "waited its timeout: {took:?}");
    assert_eq!(non_lo(&ns1), Vec::<String>::new(), "no link left");
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 0, "no record");
    // A namespace without IPv6: refused with the reason, nothing left.
    let (ns2, n2) = lab.netns("noipv6");
    ns2.run(|| nicslice_kernel::sysctl::write("net/ipv6/conf/default/disable_ipv6", "1"))
        .unwrap()
        .unwrap();
    lab.fails(&["attach", "lan", "--netns", &n2, "--no-agent"], "IPv6 is disabled");
    assert_eq!(non_lo(&ns2), Vec::<String>::new(), "no link left");
    // No agent started, no lease row for one: a pass finds nothing held.
    lab.assert_no_dhcp_agent();
    lab.ok(&["network", "rm", "lan"]);
}

#[test]
fn with_conflict_probing_an_address_someone_uses_is_declined_and_nothing_left() {
    let mut lab = Lab::new("dhcp6dad");
    let Some(server) = Dnsmasq::start_v6(&lab.switch, "dad") else { return };
    lab.ok(&[
        "network",
        "create",
        "lan",
        "--parent",
        "eth0",
        "--ipam",
        "dhcp6",
        "--probe-conflicts=300",
    ]);
    let (ns1, n1) = lab.netns("ns1");
    let args = ["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5", "--no-agent"];
    // Unique: DAD passes, the address is used.
    let ip = ip6_of(&lab.json(&args));
    assert_eq!(addresses(&ns1, "eth0"), vec![format!("{ip}/128")]);
    lab.ok(&["detach", "lan", "--netns", &n1]);
    assert!(server.released(&ip));

    // A host the server does not know about takes the address meanwhile
    // (the switch, statically); the endpoint asks for it again, gets it,
    // and its DAD finds the other host.
    let mut sock = nicslice_kernel::RouteSocket::open_in(&lab.switch).unwrap();
    let br0 = sock.require_link("br0", "switch").unwrap();
    sock.add_address(br0.index, format!("{ip}/128").parse().unwrap()).unwrap();
    let err = lab.fails(&args, "duplicate address detection failed");
    assert!(err.contains("declined"), "{err}");
    assert_eq!(non_lo(&ns1), Vec::<String>::new(), "no link left");
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 0, "no record");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !server.log().contains("DHCPDECLINE") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.log().contains("DHCPDECLINE"), "the server heard the DECLINE: {}", server.log());
}

#[test]
fn past_t2_the_agent_rebinds_with_any_server() {
    use nicslice_store::{Store, StoreRead};
    let mut lab = Lab::new("dhcp6rb");
    let Some(server) = Dnsmasq::start_v6(&lab.switch, "rebind") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp6"]);
    let (_ns1, n1) = lab.netns("ns1");
    let ip = ip6_of(&lab.json(&["attach", "lan", "--netns", &n1, "--no-agent"]));
    // T1 and T2 passed (as an agent that was not running would find them):
    // the state says so, the agent acts on what the state says.
    let mut store = Store::open(&lab.state).unwrap();
    let lease = store.held_dhcp_leases().unwrap().pop().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64;
    let tx = store.write().unwrap();
    tx.record_dhcp_lease(&nicslice_store::DhcpLeaseRecord {
        renew_at: now - 10,
        rebind_at: now - 1,
        ..lease.clone()
    })
    .unwrap();
    tx.commit().unwrap();
    drop(store);

    let report = lab.json(&["dhcp-agent", "--once"]);
    assert_eq!(report["renewed"].as_array().unwrap().len(), 1, "{report}");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !server.log().contains("DHCPREBIND") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.log().contains("DHCPREBIND"), "a REBIND, to any server: {}", server.log());
    let renewed = Store::open(&lab.state).unwrap().held_dhcp_leases().unwrap().pop().unwrap();
    assert_eq!(renewed.address.addr().to_string(), ip);
    assert!(renewed.renew_at > now && renewed.rebind_at > now, "new timers: {renewed:?}");
    lab.ok(&["detach", "lan", "--netns", &n1]);
}

/// A namespace deleted without detach (a container that exited): its link
/// and link-local went with it, and the RELEASE goes through the parent,
/// from the parent's own link-local on the endpoint's behalf (the server
/// knows the lease by DUID and IAID), at detach or when the agent finds it.
#[test]
fn a_namespace_gone_without_detach_still_gets_its_release() {
    let mut lab = Lab::new("dhcp6gone");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(server) = Dnsmasq::start_v6(&lab.switch, "gone6") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp,dhcp6"]);
    let (ns1, n1) = lab.netns("ns1");
    let (ns2, n2) = lab.netns("ns2");
    let attach = |name: &str| {
        lab.json(&["attach", "lan", "--netns", name, "--dhcp-timeout", "5", "--no-agent"])
    };
    let view = attach(&n1);
    let (v4, v6) = (ips_of(&view, '.').remove(0), ip6_of(&view));
    assert!(server.has_lease(&v4) && server.has_lease(&v6), "{:?}", server.leases());
    drop(ns1);
    nicslice_kernel::netns::delete_named(&n1).unwrap();
    lab.ok(&["detach", "lan", "--netns", &n1]);
    assert!(server.released(&v6), "DHCPv6 RELEASE through the parent: {:?}", server.leases());
    assert!(server.released(&v4), "DHCPv4 RELEASE through the parent: {:?}", server.leases());
    assert!(!std::path::Path::new(&format!("/etc/netns/{n1}")).exists(), "no resolv.conf left");

    // Found by the agent before any detach: released, kept no longer.
    let view = attach(&n2);
    let (v4, v6) = (ips_of(&view, '.').remove(0), ip6_of(&view));
    drop(ns2);
    nicslice_kernel::netns::delete_named(&n2).unwrap();
    let report = lab.json(&["dhcp-agent", "--once", "--now"]);
    let lost = report["lost"].as_array().unwrap();
    assert_eq!(lost.len(), 2, "both leases: {report}");
    assert!(lost.iter().all(|l| l.as_str().unwrap().contains("namespace is gone")), "{report}");
    assert!(server.released(&v6), "{:?}", server.leases());
    assert!(server.released(&v4), "{:?}", server.leases());
    assert!(lab.json(&["dhcp-agent", "--once"])["next_due"].is_null(), "nothing held");
    lab.ok(&["detach", "lan", "--netns", &n2]);
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 0);
    lab.ok(&["network", "rm", "lan"]);
}

/// `apply` with a DHCPv6 network starts the agent that renews its leases,
/// as `attach` does (it started one for "dhcp" networks only).
#[test]
fn apply_of_a_dhcp6_network_starts_the_agent() {
    let mut lab = Lab::new("dhcp6ap");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(server) = Dnsmasq::start_v6(&lab.switch, "apply6") else { return };
    let (_ns1, n1) = lab.netns("ns1");
    let file = std::env::temp_dir().join(format!("{}.toml", lab.world.prefix()));
    let text = format!(
        "[[network]]\nname = \"lan\"\nparent = \"eth0\"\nipam = \"dhcp6\"\n\n\
         [[endpoint]]\nnetwork = \"lan\"\nnetns = \"{n1}\"\n"
    );
    std::fs::write(&file, text).unwrap();
    let applied = lab.run(&["apply", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let listed = lab.json(&["endpoint", "ls", "lan"]);
    let ip = ip6_of(&listed[0]);
    assert!(server.has_lease(&ip), "{:?}", server.leases());
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.dhcp_agent_pids().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let agents = lab.dhcp_agent_pids();
    assert_eq!(agents.len(), 1, "one agent started by apply");
    // Stopped by the pid found for this lab's state database.
    // SAFETY: kill(2) with a pid this test's apply started.
    assert_eq!(unsafe { libc::kill(agents[0] as i32, libc::SIGKILL) }, 0);
    lab.ok(&["network", "rm", "lan", "--force"]);
}

/// A DHCPv6 lease that ran out while no server answered: the agent takes
/// the address off and SOLICITs again (RFC 8415 18.2.5) with the same DUID
/// and IAID, at once and then backing off; the server back, the agent
/// has the address again as attach put it on (the /128 with the lease's
/// lifetime, the resolv.conf), and the endpoint's record says nothing lost.
#[test]
fn an_expired_dhcp6_lease_is_solicited_again() {
    use nicslice_store::{Store, StoreRead};
    let mut lab = Lab::new("dhcp6re");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(mut server) = Dnsmasq::start_v6(&lab.switch, "v6re") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp6"]);
    let (ns1, n1) = lab.netns("ns1");
    let view = lab.json(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5", "--no-agent"]);
    let ip = ip6_of(&view);
    let resolv = format!("/etc/netns/{n1}/resolv.conf");
    assert!(std::path::Path::new(&resolv).exists());
    server.stop();
    let mut store = Store::open(&lab.state).unwrap();
    let lease = store.held_dhcp_leases().unwrap().pop().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64;
    let tx = store.write().unwrap();
    let expired = nicslice_store::DhcpLeaseRecord {
        renew_at: now - 30,
        rebind_at: now - 20,
        expires_at: now - 1,
        ..lease.clone()
    };
    tx.record_dhcp_lease(&expired).unwrap();
    tx.commit().unwrap();
    drop(store);

    let said = lab.ok(&["dhcp-agent", "--once", "--timeout", "1"]);
    assert!(said.contains(&format!("lost {ip}/128")) && said.contains("lease expired"), "{said}");
    assert_eq!(addresses(&ns1, "eth0"), Vec::<String>::new(), "address taken off");
    assert!(!std::path::Path::new(&resolv).exists(), "its DNS servers gone");
    let listed = lab.json(&["endpoint", "ls", "lan"]);
    let retry = &listed[0]["dhcp_retry"][0];
    assert_eq!((&retry["family"], &retry["backoff_secs"]), (&6.into(), &8.into()), "{listed}");
    assert_eq!(retry["client_id"], view["dhcp6"]["client_id"], "the same DUID and IAID");
    let out = lab.run(&["endpoint", "check", "lan"]);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    let Some(back) = Dnsmasq::start_v6(&lab.switch, "v6re-back") else { return };
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .arg("--state")
        .arg(&lab.state)
        .args(["--host-netns", &lab.host.netns_name, "dhcp-agent", "--timeout", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let want = vec![format!("{ip}/128")];
    let deadline = Instant::now() + Duration::from_secs(15);
    while addresses(&ns1, "eth0") != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(addresses(&ns1, "eth0"), want, "the address again: {}", back.log());
    assert_eq!(back.v6_lease(&ip)[2], ip);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !lab.json(&["endpoint", "ls"])[0]["dhcp_retry"].is_null() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let listed = lab.json(&["endpoint", "ls", "lan"]);
    assert!(listed[0]["dhcp_lost"].is_null() && listed[0]["dhcp_retry"].is_null(), "{listed}");
    assert_eq!(listed[0]["dhcp6"]["lease_secs"], 120, "{listed}");
    assert_eq!(ip6_of(&listed[0]), ip, "{listed}");
    let text = std::fs::read_to_string(&resolv).expect("resolv.conf written again");
    assert!(text.contains("nameserver fd00:db8::53"), "{text}");
    lab.ok(&["endpoint", "check", "lan"]);
    agent.kill().unwrap();
    agent.wait().unwrap();
    lab.ok(&["detach", "lan", "--netns", &n1]);
    assert!(back.released(&ip), "{:?}", back.leases());
}

/// On a network that probes for conflicts, an address SOLICITed again
/// after its lease was lost goes through DAD as at attach: one another host
/// took meanwhile is DECLINEd and not kept, and the agent asks again later;
/// once the address is free it is put on.
#[test]
fn with_conflict_probing_an_address_asked_for_again_is_declined_if_used() {
    use nicslice_store::{Store, StoreRead};
    let mut lab = Lab::new("dhcp6rd");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(mut server) = Dnsmasq::start_v6(&lab.switch, "v6rd") else { return };
    let probe = "--probe-conflicts=300";
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp6", probe]);
    let (ns1, n1) = lab.netns("ns1");
    let view = lab.json(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5", "--no-agent"]);
    let ip = ip6_of(&view);
    server.stop();
    let mut store = Store::open(&lab.state).unwrap();
    let lease = store.held_dhcp_leases().unwrap().pop().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64;
    let tx = store.write().unwrap();
    let expired = nicslice_store::DhcpLeaseRecord { expires_at: now - 1, ..lease.clone() };
    tx.record_dhcp_lease(&expired).unwrap();
    tx.commit().unwrap();
    drop(store);
    lab.ok(&["dhcp-agent", "--once", "--timeout", "1"]);
    assert_eq!(addresses(&ns1, "eth0"), Vec::<String>::new(), "address taken off");

    // Another host takes the address (the switch, statically); the server
    // comes back and hands it to the endpoint again.
    let mut sock = nicslice_kernel::RouteSocket::open_in(&lab.switch).unwrap();
    let br0 = sock.require_link("br0", "switch").unwrap();
    let taken: ipnet::IpNet = format!("{ip}/128").parse().unwrap();
    sock.add_address(br0.index, taken).unwrap();
    let Some(back) = Dnsmasq::start_v6(&lab.switch, "v6rd-back") else { return };
    let report = {
        // The next try is due 4 s after the first.
        std::thread::sleep(Duration::from_secs(4));
        lab.json(&["dhcp-agent", "--once", "--timeout", "3"])
    };
    let failed = report["failed"].as_array().unwrap();
    assert!(
        failed.len() == 1 && failed[0].as_str().unwrap().contains("duplicate address detection"),
        "{report}\n{}",
        back.log()
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while !back.log().contains("DHCPDECLINE") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(back.log().contains("DHCPDECLINE"), "the server heard the DECLINE: {}", back.log());
    assert_eq!(addresses(&ns1, "eth0"), Vec::<String>::new(), "not kept");
    let listed = lab.json(&["endpoint", "ls", "lan"]);
    assert_eq!(listed[0]["dhcp_retry"][0]["backoff_secs"], 16, "asked again later: {listed}");
    assert!(listed[0]["dhcp6"].is_null(), "no lease recorded: {listed}");
    sock.delete_address(br0.index, taken).unwrap();
    lab.ok(&["network", "rm", "lan", "--force"]);
    assert_eq!(non_lo(&ns1), Vec::<String>::new());
}

/// A dual-stack endpoint that loses its DHCPv4 lease keeps its DHCPv6 one;
/// the DHCPv4 lease asked for again comes back as attach made it, the
/// resolv.conf with both families' DNS servers again.
#[test]
fn a_dual_stack_endpoint_gets_its_lost_dhcp4_lease_back_beside_its_dhcp6_one() {
    use nicslice_store::{Store, StoreRead};
    let mut lab = Lab::new("dhcp46re");
    let _etc = EtcNetns(lab.world.prefix().to_string());
    let Some(mut server) = Dnsmasq::start_v6(&lab.switch, "dualre") else { return };
    lab.ok(&["network", "create", "lan", "--parent", "eth0", "--ipam", "dhcp,dhcp6"]);
    let (ns1, n1) = lab.netns("ns1");
    let view = lab.json(&["attach", "lan", "--netns", &n1, "--dhcp-timeout", "5", "--no-agent"]);
    let (v4, v6) = (ips_of(&view, '.')[0].clone(), ip6_of(&view));
    let resolv = format!("/etc/netns/{n1}/resolv.conf");
    let both = "nameserver 192.168.0.53\nnameserver fd00:db8::53\n";
    assert!(std::fs::read_to_string(&resolv).unwrap().ends_with(both));
    server.stop();
    let mut store = Store::open(&lab.state).unwrap();
    let lease = store.held_dhcp_leases().unwrap().into_iter().find(|l| l.family == 4).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64;
    let tx = store.write().unwrap();
    let expired = nicslice_store::DhcpLeaseRecord {
        renew_at: now - 30,
        rebind_at: now - 20,
        expires_at: now - 1,
        ..lease.clone()
    };
    tx.record_dhcp_lease(&expired).unwrap();
    tx.commit().unwrap();
    drop(store);
    lab.ok(&["dhcp-agent", "--once", "--timeout", "1"]);
    assert_eq!(addresses(&ns1, "eth0"), vec![format!("{v6}/128")], "DHCPv6's kept");

    let Some(back) = Dnsmasq::start_v6(&lab.switch, "dualre-back") else { return };
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .arg("--state")
        .arg(&lab.state)
        .args(["--host-netns", &lab.host.netns_name, "dhcp-agent", "--timeout", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut want = vec![format!("{v4}/24"), format!("{v6}/128")];
    want.sort();
    let held = || {
        let mut a = addresses(&ns1, "eth0");
        a.sort();
        a
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while held() != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(held(), want, "both again: {}", back.log());
    let deadline = Instant::now() + Duration::from_secs(3);
    while !lab.json(&["endpoint", "ls"])[0]["dhcp_retry"].is_null() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let listed = lab.json(&["endpoint", "ls", "lan"]);
    assert!(listed[0]["dhcp_lost"].is_null() && !listed[0]["dhcp"].is_null(), "{listed}");
    assert_eq!(default_gateway(&ns1), Some("192.168.0.1".parse().unwrap()));
    let text = std::fs::read_to_string(&resolv).unwrap();
    assert!(text.ends_with(both), "both families' DNS servers: {text}");
    lab.ok(&["endpoint", "check", "lan"]);
    agent.kill().unwrap();
    agent.wait().unwrap();
    lab.ok(&["detach", "lan", "--netns", &n1]);
    assert!(!std::path::Path::new(&resolv).exists());
}
