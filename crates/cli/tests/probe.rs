//! Conflict probing (issue 14) through the CLI, on the wire of the lab: a
//! "foreign" namespace on the switch holds 192.168.0.50 and fd00::50, as a
//! host nicslice does not manage would. With `--probe-conflicts` an attach
//! skips the answered address, quarantines it with the foreign MAC, and
//! takes the next; without it, the duplicate is what you get.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nicslice_kernel::{Netns, RouteSocket};
use nicslice_lab::Host;

/// A namespace on the switch nicslice knows nothing of, answering for
/// 192.168.0.50 and fd00::50 on its eth0; returns it and its MAC.
fn foreign(lab: &mut Lab) -> (Host, String) {
    let host = lab
        .world
        .host(&lab.switch, "foreign", "eth0", Some("192.168.0.50/24".parse().unwrap()))
        .unwrap();
    let mut sock = RouteSocket::open_in(&host.netns).unwrap();
    let eth0 = sock.require_link("eth0", "foreign").unwrap();
    sock.add_address(eth0.index, "fd00::50/64".parse().unwrap()).unwrap();
    (host, eth0.mac.unwrap().to_string())
}

/// The network of these tests: the switch's subnet, the range .50-.51.
fn create(lab: &Lab, name: &str, extra: &[&str]) {
    let mut args = vec!["--ip-range", "192.168.0.50/31"];
    args.extend_from_slice(extra);
    lab.lan(name, &args);
}

fn attach(lab: &Lab, net: &str, ns: &str) -> serde_json::Value {
    lab.json(&["attach", net, "--netns", ns])
}

fn sysctl_in(ns: &Netns, key: &str) -> String {
    ns.run(|| nicslice_kernel::sysctl::read(key)).unwrap().unwrap()
}

/// The MAC `ns` has for `ip` after a ping: who answers that address.
fn answerer(ns: &Netns, ip: &str) -> Option<String> {
    assert!(ping(ns, ip), "{ip} answers");
    let ip: std::net::IpAddr = ip.parse().unwrap();
    let neighbours = RouteSocket::open_in(ns).unwrap().neighbours().unwrap();
    neighbours.into_iter().find(|(n, _)| *n == ip).map(|(_, mac)| mac.to_string())
}

#[test]
fn probing_skips_an_answered_ipv4_address_and_quarantines_it() {
    let mut lab = Lab::new("prb4");
    let (foreign_host, foreign_mac) = foreign(&mut lab);
    let (ns1, n1) = lab.netns("ns1");
    let (_, n2) = lab.netns("ns2");

    // Without probing: the foreign host's address is handed out again.
    create(&lab, "blind", &[]);
    let dup = attach(&lab, "blind", &n1);
    assert_eq!(dup["addresses"][0], "192.168.0.50/24", "{dup}");
    lab.ok(&["detach", "blind", "--netns", &n1]);
    lab.ok(&["network", "rm", "blind"]);

    // With probing: .50 is answered, so the endpoint gets .51.
    create(&lab, "probed", &["--probe-conflicts=300"]);
    let ep = attach(&lab, "probed", &n1);
    assert_eq!(ep["addresses"], serde_json::json!(["192.168.0.51/24"]), "{ep}");
    assert_eq!(addresses(&ns1, "eth0"), vec!["192.168.0.51/24"]);
    // The neighbour settings tuned for the probe are back to the default.
    assert_eq!(sysctl_in(&ns1, "net/ipv4/neigh/eth0/retrans_time_ms"), "1000");
    // The probes came from 0.0.0.0: the foreign host learned nothing of ours.
    let ours = link(&ns1, "eth0").unwrap().mac.unwrap();
    let learned = RouteSocket::open_in(&foreign_host.netns).unwrap().neighbours().unwrap();
    assert!(!learned.iter().any(|(_, mac)| *mac == ours), "the foreign host learned {learned:?}");
    // The foreign host is still the one that answers for .50, and ns1 reaches it.
    assert_eq!(answerer(&ns1, "192.168.0.50"), Some(foreign_mac.clone()));

    let detail = lab.json(&["network", "inspect", "probed"]);
    let q = &detail["quarantined"];
    assert_eq!(q.as_array().map(Vec::len), Some(1), "{detail}");
    assert_eq!(q[0]["ip"], "192.168.0.50");
    assert_eq!(q[0]["answered_by"], foreign_mac.as_str());
    assert!(q[0]["answered_at"].as_i64().unwrap() > 0);
    let text = lab.ok(&["network", "inspect", "probed"]);
    assert!(
        text.contains(&format!("quarantined 192.168.0.50: answered by {foreign_mac}")),
        "{text}"
    );

    // The range is spent (.50 quarantined, .51 used): the next attach is
    // refused in one line and leaves nothing behind.
    lab.fails(&["attach", "probed", "--netns", &n2], "exhausted");
    assert_eq!(
        lab.json(&["network", "inspect", "probed"])["endpoint_list"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn ipv6_probing_on_a_noarp_ipvlan_is_refused_at_create() {
    let lab = Lab::new("prbl3");
    let err = lab.fails(
        &[
            "network",
            "create",
            "l3",
            "--driver",
            "ipvlan",
            "--mode",
            "l3",
            "--parent",
            "eth0",
            "--subnet",
            "fd00::/64",
            "--probe-conflicts",
        ],
        "cannot be probed",
    );
    assert!(err.contains("NOARP"), "{err}");
    assert!(lab.json(&["network", "ls"]).as_array().unwrap().is_empty());
}

#[test]
fn a_named_address_that_is_answered_is_refused_and_nothing_is_left() {
    let mut lab = Lab::new("prbip");
    foreign(&mut lab);
    let (ns1, n1) = lab.netns("ns1");
    create(&lab, "probed", &["--probe-conflicts=200"]);
    let err = lab.fails(
        &["attach", "probed", "--netns", &n1, "--ip", "192.168.0.50"],
        "192.168.0.50 is already in use on the wire",
    );
    assert!(err.contains("answered for it"), "{err}");
    assert_eq!(non_lo(&ns1), Vec::<String>::new(), "no link left behind");
    let detail = lab.json(&["network", "inspect", "probed"]);
    assert_eq!(detail["endpoint_list"].as_array().unwrap().len(), 0, "{detail}");
    // A named address is refused, not quarantined: the user chose it.
    assert!(detail.get("quarantined").is_none(), "{detail}");
    // The address nobody answers for is given as asked.
    let ep = lab.json(&["attach", "probed", "--netns", &n1, "--ip", "192.168.0.51"]);
    assert_eq!(ep["addresses"][0], "192.168.0.51/24");
}

#[test]
fn a_quarantined_address_returns_after_the_cool_down_once_nobody_answers() {
    let mut lab = Lab::new("prbcd");
    let (foreign_host, foreign_mac) = foreign(&mut lab);
    let (_, n1) = lab.netns("ns1");
    let (ns2, n2) = lab.netns("ns2");
    let (_, n3) = lab.netns("ns3");
    create(&lab, "probed", &["--probe-conflicts=200", "--probe-cooldown", "1"]);
    lab.ok(&["attach", "probed", "--netns", &n1, "--ip", "192.168.0.51"]);

    // .50 is answered and nothing else is free: the attach fails, but the
    // quarantine it found is kept.
    let quarantined_at = |lab: &Lab| {
        let q = lab.json(&["network", "inspect", "probed"]);
        assert_eq!(q["quarantined"][0]["ip"], "192.168.0.50", "{q}");
        assert_eq!(q["quarantined"][0]["answered_by"], foreign_mac.as_str(), "{q}");
        q["quarantined"][0]["answered_at"].as_i64().unwrap()
    };
    lab.fails(&["attach", "probed", "--netns", &n2], "192.168.0.50 is in use on the wire");
    let first = quarantined_at(&lab);
    // (Within the cool-down it is not even probed: the first test's last
    // attach. One second is too short to show it here.)

    // Still answered after the cool-down: probed again, quarantined again.
    std::thread::sleep(Duration::from_millis(2100));
    lab.fails(&["attach", "probed", "--netns", &n2], "192.168.0.50 is in use on the wire");
    assert!(quarantined_at(&lab) > first, "the quarantine was renewed");

    // The foreign host goes away; after the cool-down .50 is free again.
    let mut sock = RouteSocket::open_in(&foreign_host.netns).unwrap();
    let eth0 = sock.require_link("eth0", "foreign").unwrap();
    sock.delete_address(eth0.index, "192.168.0.50/24".parse().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(attach(&lab, "probed", &n2)["addresses"][0], "192.168.0.50/24");
    assert_eq!(addresses(&ns2, "eth0"), vec!["192.168.0.50/24"]);
    let q = lab.json(&["network", "inspect", "probed"]);
    assert!(q.get("quarantined").is_none(), "{q}");
    lab.fails(&["attach", "probed", "--netns", &n3], "exhausted");
}

/// A namespace that already has an IPv4 address would make the kernel send
/// its requests from it (and teach the foreign host our MAC for it): the
/// probe then goes out from a packet socket, still from 0.0.0.0. Both
/// families of a dual-stack network are claimed, at the same time.
#[test]
fn dual_stack_in_a_namespace_with_an_address_probes_from_0_0_0_0() {
    let mut lab = Lab::new("prbdual");
    let (foreign_host, foreign_mac) = foreign(&mut lab);
    let (ns1, n1) = lab.netns("ns1");
    lab.ok(&["network", "create", "other", "--parent", "eth0", "--subnet", "10.5.0.0/24"]);
    lab.ok(&["attach", "other", "--netns", &n1, "--ip", "10.5.0.2"]);
    lab.lan(
        "dual",
        &[
            "--ip-range",
            "192.168.0.50/31",
            "--subnet",
            "fd00::/64",
            "--ip-range",
            "fd00::50/127",
            "--probe-conflicts=200",
        ],
    );
    let ep = lab.json(&["attach", "dual", "--netns", &n1, "--ifname", "eth1"]);
    assert_eq!(ep["addresses"], serde_json::json!(["192.168.0.51/24", "fd00::51/64"]), "{ep}");
    assert_eq!(addresses(&ns1, "eth1"), vec!["192.168.0.51/24", "fd00::51/64"]);
    let q = lab.json(&["network", "inspect", "dual"]);
    assert_eq!(q["quarantined"][0]["ip"], "192.168.0.50", "{q}");
    assert_eq!(q["quarantined"][0]["answered_by"], foreign_mac.as_str(), "{q}");
    assert_eq!(q["quarantined"][1]["ip"], "fd00::50", "{q}");
    // Nothing of ours reached the foreign host's ARP cache: the probes came from 0.0.0.0.
    let eth1_mac = link(&ns1, "eth1").unwrap().mac.unwrap();
    let learned = RouteSocket::open_in(&foreign_host.netns).unwrap().neighbours().unwrap();
    assert!(
        !learned.iter().any(|(ip, mac)| *mac == eth1_mac || ip.to_string() == "10.5.0.2"),
        "the foreign host learned {learned:?}"
    );
}

/// ipvlan children share the parent's MAC, so the probe leaves from the
/// parent. This machine's kernel has no ipvlan: the VM stage runs it.
#[test]
fn ipvlan_probes_from_the_parent() {
    if std::env::var_os("NICSLICE_VM").is_none() {
        println!("runs only in the VM stage (vmtest/run.sh); skipped");
        return;
    }
    let mut lab = Lab::new("prbipv");
    let (_, foreign_mac) = foreign(&mut lab);
    let (ns1, n1) = lab.netns("ns1");
    create(&lab, "ipv", &["--driver", "ipvlan", "--probe-conflicts"]);
    let ep = attach(&lab, "ipv", &n1);
    assert_eq!(ep["addresses"], serde_json::json!(["192.168.0.51/24"]), "{ep}");
    assert_eq!(addresses(&ns1, "eth0"), vec!["192.168.0.51/24"]);
    let q = lab.json(&["network", "inspect", "ipv"]);
    assert_eq!(q["quarantined"][0]["answered_by"], foreign_mac.as_str(), "{q}");
}

#[test]
fn ipv6_dad_failure_quarantines_and_the_next_address_is_used() {
    let mut lab = Lab::new("prb6");
    foreign(&mut lab);
    let (ns1, n1) = lab.netns("ns1");
    let (ns2, n2) = lab.netns("ns2");
    let v6 = ["--subnet", "fd00::/64", "--ip-range", "fd00::50/127"];

    // Without probing: the duplicate (added with NODAD, never checked).
    lab.ok(&[&["network", "create", "blind6", "--parent", "eth0"], &v6[..]].concat());
    assert_eq!(attach(&lab, "blind6", &n2)["addresses"][0], "fd00::50/64");
    lab.ok(&["detach", "blind6", "--netns", &n2]);
    lab.ok(&["network", "rm", "blind6"]);

    let create = [&["network", "create", "v6", "--parent", "eth0"], &v6[..]].concat();
    lab.ok(&[&create[..], &["--probe-conflicts=300"]].concat());
    let ep = attach(&lab, "v6", &n1);
    assert_eq!(ep["addresses"], serde_json::json!(["fd00::51/64"]), "{ep}");
    // The failed address is gone from the link, the new one passed DAD.
    assert_eq!(addresses(&ns1, "eth0"), vec!["fd00::51/64"]);
    let mut sock = RouteSocket::open_in(&ns1).unwrap();
    let eth0 = sock.require_link("eth0", "ns1").unwrap();
    assert_eq!(
        sock.dad_state(eth0.index, "fd00::51".parse().unwrap()).unwrap(),
        Some(nicslice_kernel::address_claim::Dad::Done)
    );
    assert_eq!(sysctl_in(&ns1, "net/ipv6/neigh/eth0/retrans_time_ms"), "1000");
    assert!(ping(&ns1, "fd00::50"), "the foreign host stays reachable");
    let q = lab.json(&["network", "inspect", "v6"]);
    assert_eq!(q["quarantined"][0]["ip"], "fd00::50", "{q}");
    assert!(q["quarantined"][0]["answered_by"].is_null(), "{q}");
    let _ = ns2;
}

/// Not a timed test: prints what probing costs when nobody answers (the
/// README quotes it), and checks that it is at least the timeout. The
/// three networks take turns, so a busy machine slows them alike.
#[test]
fn probing_costs_the_timeout() {
    let mut lab = Lab::new("prbcost");
    let nets = [
        ("plain", "10.1.0.0/24", None),
        ("floor", "10.2.0.0/24", Some("--probe-conflicts=1")),
        ("probed", "10.3.0.0/24", Some("--probe-conflicts=100")),
    ];
    for (name, subnet, probe) in nets {
        let mut args = vec!["network", "create", name, "--parent", "eth0", "--subnet", subnet];
        args.extend(probe);
        lab.ok(&args);
    }
    let mut times: [Vec<Duration>; 3] = Default::default();
    for round in 0..21 {
        for (i, (name, _, _)) in nets.iter().enumerate() {
            let (_, n) = lab.netns(&format!("{name}{round}"));
            let t = Instant::now();
            attach(&lab, name, &n);
            times[i].push(t.elapsed());
            lab.ok(&["detach", name, "--netns", &n]);
        }
    }
    let [plain, floor, probed] = times.map(|mut t| {
        t.sort();
        t[t.len() / 2]
    });
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    eprintln!(
        "median attach over 21 rounds: {:.1} ms without probing, {:.1} ms with --probe-conflicts=1, {:.1} ms with --probe-conflicts=100",
        ms(plain),
        ms(floor),
        ms(probed)
    );
    assert!(probed >= Duration::from_millis(100), "the probe waits its timeout: {probed:?}");
}

/// The plugins as a runtime finds them: links in a CNI_PATH directory of
/// this test's own, beside the reference host-local when it is installed.
fn plugin_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nsl-probe-cni-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["nicslice-macvlan", "nicslice-ipam"] {
        let _ = std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nicslice"), dir.join(name));
    }
    let _ = std::os::unix::fs::symlink("/usr/lib/cni/host-local", dir.join("host-local"));
    dir
}

/// Runs nicslice-macvlan `cmd` in the lab's host namespace for container
/// `id`; (success, stdout JSON).
fn cni(
    lab: &Lab,
    dir: &std::path::Path,
    cmd: &str,
    netns: &str,
    id: &str,
    conf: &serde_json::Value,
) -> (bool, serde_json::Value) {
    cni_plugin(lab, dir, "nicslice-macvlan", (cmd, netns, id, "eth0"), conf)
}

fn cni_conf(lab: &Lab, probe: Option<serde_json::Value>) -> serde_json::Value {
    let mut conf = serde_json::json!({
        "cniVersion": "1.1.0", "name": "probed", "type": "nicslice-macvlan", "master": "eth0",
        "ipam": {"type": "nicslice-ipam", "subnet": "192.168.0.0/24", "rangeStart": "192.168.0.50",
                 "rangeEnd": "192.168.0.51", "gateway": "192.168.0.1",
                 "state": lab.state.with_extension("cni.mdb")}
    });
    if let Some(p) = probe {
        conf["probe"] = p;
    }
    conf
}

fn cni_quarantined(lab: &Lab, network: &str) -> serde_json::Value {
    let file = lab.state.with_extension("cni.mdb");
    lab.json(&["cni-leases", "quarantined", file.to_str().unwrap(), network])
}

#[test]
fn cni_add_with_probe_quarantines_in_the_lease_book() {
    let mut lab = Lab::new("prbcni");
    let (_, foreign_mac) = foreign(&mut lab);
    let dir = plugin_dir("lb");
    let (ns1, n1) = lab.netns("c1");
    let (ns2, n2) = lab.netns("c2");
    let (p1, p2) = (format!("/run/netns/{n1}"), format!("/run/netns/{n2}"));

    // Without "probe": the foreign host's address, a duplicate. (A network
    // of its own: nicslice-ipam, as host-local, walks on past a released
    // address.)
    let mut blind = cni_conf(&lab, None);
    blind["name"] = "blind".into();
    let (ok, result) = cni(&lab, &dir, "ADD", &p1, "c1", &blind);
    assert!(ok, "ADD: {result}");
    assert_eq!(result["ips"][0]["address"], "192.168.0.50/24", "{result}");
    let mut del = blind.clone();
    del["prevResult"] = result;
    assert!(cni(&lab, &dir, "DEL", &p1, "c1", &del).0);

    // With it: .50 is skipped and quarantined with the foreign MAC.
    let probed = cni_conf(&lab, Some(serde_json::json!({"timeoutMs": 200})));
    let (ok, result) = cni(&lab, &dir, "ADD", &p1, "c1", &probed);
    assert!(ok, "ADD: {result}");
    assert_eq!(result["ips"][0]["address"], "192.168.0.51/24", "{result}");
    assert_eq!(addresses(&ns1, "eth0"), vec!["192.168.0.51/24"]);
    let q = cni_quarantined(&lab, "probed");
    assert_eq!(q[0]["ip"], "192.168.0.50", "{q}");
    assert_eq!(q[0]["answered_by"], foreign_mac.as_str(), "{q}");

    // The range is spent: the next ADD fails with a CNI error and leaves no link.
    let (ok, err) = cni(&lab, &dir, "ADD", &p2, "c2", &probed);
    assert!(!ok, "{err}");
    assert!(err["msg"].as_str().unwrap_or_default().contains("192.168.0."), "{err}");
    assert_eq!(non_lo(&ns2), Vec::<String>::new());

    // GC with no attachment left keeps the quarantine (it belongs to none).
    let mut del = probed.clone();
    del["prevResult"] = result;
    assert!(cni(&lab, &dir, "DEL", &p1, "c1", &del).0, "DEL");
    let mut gc = probed.clone();
    gc["cni.dev/valid-attachments"] = serde_json::json!([]);
    let (ok, out) = cni(&lab, &dir, "GC", "", "", &gc);
    assert!(ok, "GC: {out}");
    assert_eq!(cni_quarantined(&lab, "probed")[0]["ip"], "192.168.0.50");
    let (ok, result) = cni(&lab, &dir, "ADD", &p2, "c2", &probed);
    assert!(ok, "ADD: {result}");
    assert_eq!(result["ips"][0]["address"], "192.168.0.51/24", "{result}");
}

#[test]
fn cni_add_with_probe_and_another_ipam_refuses_an_answered_address() {
    if !std::path::Path::new("/usr/lib/cni/host-local").exists() {
        println!("the reference host-local plugin is not installed; skipped");
        return;
    }
    let mut lab = Lab::new("prbhl");
    let (_, foreign_mac) = foreign(&mut lab);
    let dir = plugin_dir("hl");
    let (ns1, n1) = lab.netns("c1");
    let data = std::env::temp_dir().join(format!("{}-hl", lab.world.prefix()));
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "hl", "type": "nicslice-macvlan", "master": "eth0",
        "probe": {"timeoutMs": 200},
        "ipam": {"type": "host-local", "subnet": "192.168.0.0/24", "rangeStart": "192.168.0.50",
                 "rangeEnd": "192.168.0.51", "dataDir": data}
    });
    let (ok, err) = cni(&lab, &dir, "ADD", &format!("/run/netns/{n1}"), "c1", &conf);
    let _ = std::fs::remove_dir_all(&data);
    assert!(!ok, "{err}");
    let msg = err["msg"].as_str().unwrap_or_default();
    assert!(msg.contains("192.168.0.50 (from IPAM plugin host-local) is already in use"), "{err}");
    assert!(msg.contains(&foreign_mac), "{err}");
    assert_eq!(non_lo(&ns1), Vec::<String>::new(), "nothing left behind");
}

#[test]
fn cni_quarantine_ends_after_the_cool_down_and_a_requested_address_is_refused() {
    let mut lab = Lab::new("prbcncd");
    let (foreign_host, foreign_mac) = foreign(&mut lab);
    let dir = plugin_dir("cd");
    let (ns1, n1) = lab.netns("c1");
    let (ns2, n2) = lab.netns("c2");
    let (p1, p2) = (format!("/run/netns/{n1}"), format!("/run/netns/{n2}"));
    let probed = cni_conf(&lab, Some(serde_json::json!({"timeoutMs": 200, "cooldownSeconds": 1})));

    // An address the runtime asks for is refused when answered, not replaced.
    let mut asked = probed.clone();
    asked["args"] = serde_json::json!({"cni": {"ips": ["192.168.0.50"]}});
    let (ok, err) = cni(&lab, &dir, "ADD", &p1, "c1", &asked);
    assert!(!ok, "{err}");
    let msg = err["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains("requested IP address 192.168.0.50 is already in use on the wire"),
        "{err}"
    );
    assert!(msg.contains(&foreign_mac), "{err}");
    assert_eq!(non_lo(&ns1), Vec::<String>::new());
    assert_eq!(cni_quarantined(&lab, "probed"), serde_json::json!([]));

    let (ok, result) = cni(&lab, &dir, "ADD", &p1, "c1", &probed);
    assert!(ok, "ADD: {result}");
    assert_eq!(result["ips"][0]["address"], "192.168.0.51/24", "{result}");
    assert_eq!(cni_quarantined(&lab, "probed")[0]["ip"], "192.168.0.50");

    // The foreign host leaves; after the cool-down .50 is leased and probed again.
    let mut sock = RouteSocket::open_in(&foreign_host.netns).unwrap();
    let eth0 = sock.require_link("eth0", "foreign").unwrap();
    sock.delete_address(eth0.index, "192.168.0.50/24".parse().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let (ok, result) = cni(&lab, &dir, "ADD", &p2, "c2", &probed);
    assert!(ok, "ADD: {result}");
    assert_eq!(result["ips"][0]["address"], "192.168.0.50/24", "{result}");
    assert_eq!(addresses(&ns2, "eth0"), vec!["192.168.0.50/24"]);
    assert_eq!(cni_quarantined(&lab, "probed"), serde_json::json!([]));
}
