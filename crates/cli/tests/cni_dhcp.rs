//! nicslice-ipam with `"dhcp": {}` behind nicslice-macvlan, as a CNI runtime
//! calls them (the `nicslice` binary linked under the plugins' names), against
//! dnsmasq in the switch namespace of the test's world: ADD returns the
//! server's address, gateway and DNS server and the container's link holds
//! them; the first ADD starts `nicslice dhcp-agent`, which renews the leases
//! from the state database; STATUS restarts an agent that was killed and
//! fails with code 50 when none can run; DEL and GC give the lease back
//! (the server's lease file drops it); an attachment added again (same
//! container ID and interface) gets its address back. The same for DHCPv6
//! (`"families": [6]`) and dual stack (`[4, 6]`): one DUID (the host's), an
//! IAID per attachment, a /128 without gateway, RELEASE at DEL through the
//! parent. The ipvlan case runs in the VM stage (vm_dhcp.rs).

mod common;
mod dnsmasq;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use dnsmasq::{Dnsmasq, wait_route};
use serde_json::{Value, json};

/// The plugins as a runtime finds them: links in a CNI_PATH directory.
fn plugin_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nsl-cni-dhcp-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["nicslice-macvlan", "nicslice-ipvlan", "nicslice-ipam"] {
        let _ = std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nicslice"), dir.join(name));
    }
    dir
}

fn conf(lab: &Lab) -> Value {
    json!({
        "cniVersion": "1.1.0", "name": "dhcpnet", "type": "nicslice-macvlan",
        "master": "eth0", "mode": "bridge",
        "ipam": {"type": "nicslice-ipam", "dhcp": {"state": lab.state, "timeout": 5}}
    })
}

/// The agent's pid from its lock file, waiting up to 5 s for one to write it.
fn agent_pid(lab: &Lab) -> i32 {
    let lock = PathBuf::from(format!("{}.dhcp-agent.lock", lab.state.display()));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&lock).unwrap_or_default();
        if let Ok(pid) = text.trim().parse::<i32>()
            && Path::new(&format!("/proc/{pid}")).exists()
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no agent wrote {}", lock.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the agent by the pid it wrote, and waits for it to be gone.
fn kill_agent(pid: i32) {
    // SAFETY: kill(2) with a pid read from the agent's own lock file.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(Instant::now() < deadline, "agent {pid} did not go");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ip_in(result: &Value) -> String {
    let ips = result["ips"].as_array().expect("ips");
    assert_eq!(ips.len(), 1, "{result}");
    ips[0]["address"].as_str().unwrap().split('/').next().unwrap().to_string()
}

/// The result's entry of the family whose addresses contain `family` ("."
/// or ":"), which must be there once.
fn ip_entry(result: &Value, family: char) -> &Value {
    let ips = result["ips"].as_array().expect("ips");
    let of: Vec<&Value> =
        ips.iter().filter(|i| i["address"].as_str().unwrap().contains(family)).collect();
    assert_eq!(of.len(), 1, "one address of the family: {result}");
    of[0]
}

fn bare(entry: &Value) -> String {
    entry["address"].as_str().unwrap().split('/').next().unwrap().to_string()
}

/// Two containers added, ctr-1 in `ns1` (at `p1`) and ctr-2, for the
/// steps every family's test ends with.
struct Two<'a> {
    lab: &'a Lab,
    dir: &'a Path,
    conf: &'a Value,
    server: &'a Dnsmasq,
    ns1: &'a nicslice_kernel::Netns,
    p1: &'a str,
}

impl Two<'_> {
    /// DEL of ctr-1 (RELEASE through the parent: the link goes first; the
    /// lease dropped, ctr-2's kept), ctr-1 added again (the same client,
    /// the same address `ip1`), GC keeping ctr-1 alone (ctr-2's `ip2`
    /// released), and ctr-1's DEL.
    fn del_add_again_gc(&self, ip1: &str, ip2: &str) {
        let (lab, dir, conf, server) = (self.lab, self.dir, self.conf, self.server);
        let call = |cmd: &str, netns: &str, id: &str, conf: &Value| {
            cni_plugin(lab, dir, "nicslice-macvlan", (cmd, netns, id, "eth0"), conf)
        };
        let (ok, e) = call("DEL", self.p1, "ctr-1", conf);
        assert!(ok, "{e}");
        assert!(link(self.ns1, "eth0").is_none());
        assert!(server.released(ip1), "RELEASE reached the server: {:?}", server.leases());
        assert!(server.has_lease(ip2), "the other stays: {:?}", server.leases());
        let (ok, e) =
            cni_plugin(lab, dir, "nicslice-ipam", ("CHECK", self.p1, "ctr-1", "eth0"), conf);
        assert!(!ok && e["code"] == 3, "no lease after DEL: {e}");
        assert!(call("DEL", self.p1, "ctr-1", conf).0, "a second DEL is fine");
        let (ok, r) = call("ADD", self.p1, "ctr-1", conf);
        assert!(ok, "{r}");
        assert_eq!(ip_in(&r), ip1, "same container ID and interface, same address");

        // GC: the leases of attachments the runtime no longer lists go.
        let mut gc = conf.clone();
        gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-1", "ifname": "eth0"}]);
        let (ok, e) = call("GC", "", "", &gc);
        assert!(ok, "{e}");
        assert!(server.released(ip2), "GC released ctr-2's: {:?}", server.leases());
        assert!(server.has_lease(ip1), "ctr-1's stays: {:?}", server.leases());
        assert!(call("DEL", self.p1, "ctr-1", conf).0);
        assert!(server.released(ip1));
    }
}

/// The configuration asking for `families` of a server at most 5 s away.
fn conf_of(lab: &Lab, families: Value) -> Value {
    let mut conf = conf(lab);
    conf["ipam"]["dhcp"]["families"] = families;
    conf
}

/// Kills the agent of `lab`'s state if one runs.
fn stop_agent(lab: &Lab) {
    let lock = PathBuf::from(format!("{}.dhcp-agent.lock", lab.state.display()));
    if let Ok(text) = std::fs::read_to_string(&lock)
        && let Ok(pid) = text.trim().parse::<i32>()
        && Path::new(&format!("/proc/{pid}")).exists()
    {
        kill_agent(pid);
    }
}

#[test]
fn cni_dhcp_add_status_agent_del_gc() {
    let mut lab = Lab::new("cnidhcp");
    let Some(server) = Dnsmasq::start(&lab.switch, "cni") else { return };
    let dir = plugin_dir("a");
    let conf = conf(&lab);
    let (ns1, n1) = lab.netns("c1");
    let (ns2, n2) = lab.netns("c2");
    let (p1, p2) = (format!("/run/netns/{n1}"), format!("/run/netns/{n2}"));
    let call = |cmd: &str, netns: &str, id: &str, conf: &Value| {
        cni_plugin(&lab, &dir, "nicslice-macvlan", (cmd, netns, id, "eth0"), conf)
    };

    // ADD: the server's address, router and DNS server.
    let started = Instant::now();
    let (ok, r1) = call("ADD", &p1, "ctr-1", &conf);
    assert!(ok, "{r1}");
    println!("CNI ADD with DHCPv4 took {:?}", started.elapsed());
    let started = Instant::now();
    let (ok, r2) = call("ADD", &p2, "ctr-2", &conf);
    assert!(ok, "{r2}");
    println!("second CNI ADD with DHCPv4 took {:?}", started.elapsed());
    let (ip1, ip2) = (ip_in(&r1), ip_in(&r2));
    assert_ne!(ip1, ip2, "two containers, two leases");
    for (ns, ip, r) in [(&ns1, &ip1, &r1), (&ns2, &ip2, &r2)] {
        let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
        assert!((100..150).contains(&last), "{ip} from the server's range");
        assert_eq!(r["ips"][0]["address"], format!("{ip}/24"), "the mask from the answer");
        assert_eq!(r["ips"][0]["gateway"], "192.168.0.1", "router option: {r}");
        assert_eq!(r["dns"]["nameservers"], json!(["192.168.0.53"]), "{r}");
        assert_eq!(addresses(ns, "eth0"), vec![format!("{ip}/24")]);
        assert_eq!(default_gateway(ns), Some("192.168.0.1".parse().unwrap()));
        assert!(server.has_lease(ip), "{:?}", server.leases());
    }
    assert!(ping(&ns1, &ip2), "the addresses work");
    let ids: std::collections::BTreeSet<String> =
        server.leases().iter().filter_map(|l| l.get(4).cloned()).collect();
    assert_eq!(ids.len(), 2, "one client identifier each: {:?}", server.leases());
    let mut check = conf.clone();
    check["prevResult"] = r1.clone();
    let (ok, e) = call("CHECK", &p1, "ctr-1", &check);
    assert!(ok, "CHECK: {e}");
    let ipam_check =
        || cni_plugin(&lab, &dir, "nicslice-ipam", ("CHECK", &p1, "ctr-1", "eth0"), &conf);
    assert!(ipam_check().0, "IPAM CHECK: the lease is held");

    // The first ADD started the agent; it renews the CNI leases too.
    let pid = agent_pid(&lab);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(String::from_utf8_lossy(&cmdline).contains("dhcp-agent"), "{pid}");
    assert!(call("STATUS", "", "", &conf).0, "STATUS with the agent running");
    kill_agent(pid);
    std::thread::sleep(Duration::from_millis(1100));
    let before = server.expiry(&ip1);
    let report = lab.json(&["dhcp-agent", "--once", "--now"]);
    assert_eq!(report["renewed"].as_array().unwrap().len(), 2, "{report}");
    assert!(server.expiry(&ip1) > before, "renewed at the server");

    // STATUS starts an agent that is gone, and fails (50) when none can run.
    assert!(call("STATUS", "", "", &conf).0, "STATUS restarts the agent");
    let again = agent_pid(&lab);
    assert_ne!(again, pid, "a new agent");
    kill_agent(again);
    let lock = PathBuf::from(format!("{}.dhcp-agent.lock", lab.state.display()));
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir(&lock).unwrap();
    let (ok, e) = call("STATUS", "", "", &conf);
    assert!(!ok && e["code"] == 50, "{e}");
    std::fs::remove_dir(&lock).unwrap();

    let two = Two { lab: &lab, dir: &dir, conf: &conf, server: &server, ns1: &ns1, p1: &p1 };
    two.del_add_again_gc(&ip1, &ip2);
    stop_agent(&lab);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `"families": [6]`: DHCPv6 alone. Two containers get two /128s under one
/// DUID and two IAIDs, no gateway (the router's RA gives the default
/// route), the DHCPv6 DNS server; the agent renews them; DEL releases
/// (through the parent: the link goes first); added again, the same
/// address; GC releases what the runtime no longer lists.
#[test]
fn cni_dhcp6_two_containers_del_readd_gc() {
    let mut lab = Lab::new("cnidhcp6");
    let Some(server) = Dnsmasq::start_v6(&lab.switch, "cni6") else { return };
    let dir = plugin_dir("c");
    let conf = conf_of(&lab, json!([6]));
    let (ns1, n1) = lab.netns("c1");
    let (ns2, n2) = lab.netns("c2");
    let (p1, p2) = (format!("/run/netns/{n1}"), format!("/run/netns/{n2}"));
    let call = |cmd: &str, netns: &str, id: &str, conf: &Value| {
        cni_plugin(&lab, &dir, "nicslice-macvlan", (cmd, netns, id, "eth0"), conf)
    };

    let started = Instant::now();
    let (ok, r1) = call("ADD", &p1, "ctr-1", &conf);
    assert!(ok, "{r1}\n{}", server.log());
    println!("CNI ADD with DHCPv6 took {:?}", started.elapsed());
    let started = Instant::now();
    let (ok, r2) = call("ADD", &p2, "ctr-2", &conf);
    assert!(ok, "{r2}");
    println!("second CNI ADD with DHCPv6 took {:?}", started.elapsed());
    let (ip1, ip2) = (ip_in(&r1), ip_in(&r2));
    assert_ne!(ip1, ip2, "two containers, two leases");
    for (ns, ip, r) in [(&ns1, &ip1, &r1), (&ns2, &ip2, &r2)] {
        assert!(ip.starts_with("fd00:db8::"), "{ip} from the server's range");
        assert_eq!(r["ips"][0]["address"], format!("{ip}/128"), "IA_NA gives a /128: {r}");
        assert!(r["ips"][0].get("gateway").is_none_or(Value::is_null), "no gateway: {r}");
        assert_eq!(r["dns"]["nameservers"], json!(["fd00:db8::53"]), "{r}");
        assert_eq!(addresses(ns, "eth0"), vec![format!("{ip}/128")]);
        let default6 = |r: &nicslice_kernel::Route| {
            r.is_default() && r.destination.addr().is_ipv6() && r.gateway.is_some()
        };
        assert!(wait_route(ns, Duration::from_secs(10), default6), "RA's route: {:?}", routes(ns));
    }
    let (l1, l2) = (server.v6_lease(&ip1), server.v6_lease(&ip2));
    assert_eq!(l1[4], l2[4], "one DUID for the host: {l1:?} {l2:?}");
    assert_ne!(l1[1], l2[1], "one IAID per attachment: {l1:?} {l2:?}");
    assert!(ping(&ns1, &ip2), "the addresses work");
    let mut check = conf.clone();
    check["prevResult"] = r1.clone();
    let (ok, e) = call("CHECK", &p1, "ctr-1", &check);
    assert!(ok, "CHECK: {e}");
    let ipam_check =
        || cni_plugin(&lab, &dir, "nicslice-ipam", ("CHECK", &p1, "ctr-1", "eth0"), &conf);
    assert!(ipam_check().0, "IPAM CHECK: the lease is held and on the link");

    // The agent renews the DHCPv6 leases of CNI attachments too.
    kill_agent(agent_pid(&lab));
    let before = server.expiry(&ip1);
    std::thread::sleep(Duration::from_millis(1100));
    let report = lab.json(&["dhcp-agent", "--once", "--now"]);
    assert_eq!(report["renewed"].as_array().unwrap().len(), 2, "{report}");
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.expiry(&ip1) <= before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.expiry(&ip1) > before, "renewed at the server");

    // CHECK fails once the address is gone from the link.
    let mut sock = nicslice_kernel::RouteSocket::open_in(&ns1).unwrap();
    let eth0 = sock.require_link("eth0", "c1").unwrap();
    sock.delete_address(eth0.index, format!("{ip1}/128").parse().unwrap()).unwrap();
    let (ok, e) = ipam_check();
    assert!(!ok && e["msg"].as_str().unwrap().contains("is not on eth0"), "{e}");
    sock.add_address(eth0.index, format!("{ip1}/128").parse().unwrap()).unwrap();

    // DEL (the RELEASE through the parent's link-local), ADD again, GC.
    let two = Two { lab: &lab, dir: &dir, conf: &conf, server: &server, ns1: &ns1, p1: &p1 };
    two.del_add_again_gc(&ip1, &ip2);
    stop_agent(&lab);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `"families": [4, 6]`: each container gets one address of each family
/// (DHCPv4's with its gateway, DHCPv6's a /128 without) and both DNS
/// servers; DEL releases both; added again, the same two.
#[test]
fn cni_dhcp_dual_stack_both_families_released_and_back() {
    let mut lab = Lab::new("cnidhcp46");
    let Some(server) = Dnsmasq::start_v6(&lab.switch, "cni46") else { return };
    let dir = plugin_dir("d");
    let conf = conf_of(&lab, json!([4, 6]));
    let mut seen = Vec::new();
    for (role, id) in [("c1", "ctr-1"), ("c2", "ctr-2")] {
        let (ns, name) = lab.netns(role);
        let path = format!("/run/netns/{name}");
        let started = Instant::now();
        let (ok, r) = cni_plugin(&lab, &dir, "nicslice-macvlan", ("ADD", &path, id, "eth0"), &conf);
        assert!(ok, "{r}\n{}", server.log());
        println!("dual-stack CNI ADD took {:?}", started.elapsed());
        let (v4, v6) = (ip_entry(&r, '.'), ip_entry(&r, ':'));
        assert_eq!(v4["gateway"], "192.168.0.1", "{r}");
        assert!(v6.get("gateway").is_none_or(Value::is_null), "{r}");
        assert_eq!(r["dns"]["nameservers"], json!(["192.168.0.53", "fd00:db8::53"]), "{r}");
        let (v4, v6) = (bare(v4), bare(v6));
        let mut held = addresses(&ns, "eth0");
        held.sort();
        assert_eq!(held, vec![format!("{v4}/24"), format!("{v6}/128")]);
        assert_eq!(default_gateway(&ns), Some("192.168.0.1".parse().unwrap()));
        assert!(server.has_lease(&v4) && server.v6_lease(&v6)[2] == v6, "{:?}", server.leases());
        seen.push((ns, path, id, v4, v6));
    }
    assert_ne!(seen[0].3, seen[1].3);
    assert_ne!(seen[0].4, seen[1].4);
    for (ns, path, id, v4, v6) in &seen {
        let call = |cmd: &str| {
            cni_plugin(&lab, &dir, "nicslice-macvlan", (cmd, path.as_str(), *id, "eth0"), &conf)
        };
        let (ok, e) = call("DEL");
        assert!(ok, "{e}");
        assert!(link(ns, "eth0").is_none());
        assert!(server.released(v4), "DHCPv4 RELEASE: {:?}", server.leases());
        assert!(server.released(v6), "DHCPv6 RELEASE: {:?}\n{}", server.leases(), server.log());
        let (ok, r) = call("ADD");
        assert!(ok, "{r}");
        assert_eq!((bare(ip_entry(&r, '.')), bare(ip_entry(&r, ':'))), (v4.clone(), v6.clone()));
        assert!(call("DEL").0);
        assert!(server.released(v4) && server.released(v6), "{:?}", server.leases());
    }
    stop_agent(&lab);
    let _ = std::fs::remove_dir_all(&dir);
}

/// No DHCPv6 server: ADD fails within its timeout and leaves nothing; with
/// `[4, 6]` and a DHCPv4 server only, the DHCPv4 lease is given back (the
/// server's file is empty again). A family that is not 4 or 6 is code 7.
#[test]
fn cni_dhcp6_without_a_server_fails_and_leaves_nothing() {
    let mut lab = Lab::new("cnidhcp60");
    let dir = plugin_dir("e");
    let mut conf = conf_of(&lab, json!([6]));
    conf["ipam"]["dhcp"]["timeout"] = json!(1.5);
    let (ns1, n1) = lab.netns("c1");
    let p1 = format!("/run/netns/{n1}");
    let call = |cmd: &str, conf: &Value| {
        cni_plugin(&lab, &dir, "nicslice-macvlan", (cmd, &p1, "ctr-1", "eth0"), conf)
    };
    let started = Instant::now();
    let (ok, e) = call("ADD", &conf);
    assert!(!ok && e["msg"].as_str().unwrap().contains("no DHCPv6 server answered"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(non_lo(&ns1), Vec::<String>::new(), "no link left");
    let ipam = |cmd: &str, conf: &Value| {
        cni_plugin(&lab, &dir, "nicslice-ipam", (cmd, &p1, "ctr-1", "eth0"), conf)
    };
    let (ok, e) = ipam("CHECK", &conf);
    assert!(!ok && e["code"] == 3, "no lease: {e}");
    let report = lab.json(&["dhcp-agent", "--once", "--now"]);
    assert!(report["next_due"].is_null(), "nothing held: {report}");

    // Dual stack with no DHCPv6 server: the DHCPv4 lease is given back.
    let Some(server) = Dnsmasq::start(&lab.switch, "cni46-0") else { return };
    let mut dual = conf.clone();
    dual["ipam"]["dhcp"]["families"] = json!([4, 6]);
    let (ok, e) = call("ADD", &dual);
    assert!(!ok && e["msg"].as_str().unwrap().contains("no DHCPv6 server answered"), "{e}");
    assert_eq!(non_lo(&ns1), Vec::<String>::new(), "no link left");
    assert!(server.log().contains("DHCPACK"), "the DHCPv4 exchange ran: {}", server.log());
    let deadline = Instant::now() + Duration::from_secs(3);
    while !server.leases().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.leases(), Vec::<Vec<String>>::new(), "DHCPv4 lease released");
    let (ok, e) = ipam("CHECK", &dual);
    assert!(!ok && e["code"] == 3, "no lease: {e}");

    // A family that is neither: the configuration's fault, naming the key.
    let mut five = conf.clone();
    five["ipam"]["dhcp"]["families"] = json!([4, 5]);
    let (ok, e) = call("ADD", &five);
    assert!(!ok && e["code"] == 7, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("dhcp.families"), "{e}");
    assert_eq!(non_lo(&ns1), Vec::<String>::new());
    stop_agent(&lab);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With no server, ADD fails within its timeout and leaves no link and no
/// lease (the plugin undoes the link, IPAM DEL finds nothing held).
#[test]
fn cni_dhcp_without_a_server_fails_and_leaves_nothing() {
    use nicslice_store::StoreRead;
    let mut lab = Lab::new("cnidhcp0");
    let dir = plugin_dir("b");
    let mut conf = conf(&lab);
    conf["ipam"]["dhcp"]["timeout"] = json!(1.5);
    let (ns1, n1) = lab.netns("c1");
    let p1 = format!("/run/netns/{n1}");
    let started = Instant::now();
    let (ok, e) = cni_plugin(&lab, &dir, "nicslice-macvlan", ("ADD", &p1, "ctr-1", "eth0"), &conf);
    assert!(!ok && e["msg"].as_str().unwrap().contains("no DHCP server answered"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(non_lo(&ns1), Vec::<String>::new(), "no link left");
    let (ok, e) =
        cni_plugin(&lab, &dir, "nicslice-macvlan", ("CHECK", &p1, "ctr-1", "eth0"), &conf);
    assert!(!ok, "no lease: {e}");
    // No agent state: no agent started, no lease row under the
    // attachment's client identifier, no holder row.
    lab.assert_no_dhcp_agent();
    let client_id = nicslice_engine::dhcp::cni_client_id("ctr-1", "eth0");
    let store = nicslice_store::Store::open(&lab.state).unwrap();
    assert!(store.dhcp_lease_of_client(&client_id, 4).unwrap().is_none(), "no lease row");
    assert!(store.cni_dhcp_hold(&client_id, 4).unwrap().is_none(), "no holder row");
    assert_eq!(store.cni_dhcp_holds().unwrap().len(), 0);
    drop(store);
    // Seed 001: ipvlan l3 children receive no broadcast; refused up front.
    let mut l3 = conf.clone();
    l3["type"] = json!("nicslice-ipvlan");
    l3["mode"] = json!("l3");
    let (ok, e) = cni_plugin(&lab, &dir, "nicslice-ipvlan", ("ADD", &p1, "ctr-1", "eth0"), &l3);
    assert!(!ok && e["code"] == 7 && e["msg"].as_str().unwrap().contains("never receive"), "{e}");
    assert_eq!(non_lo(&ns1), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}

fn unix_now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    since.as_secs() as i64
}

/// The holder row of `container`'s eth0 DHCPv4 lease, if there is one.
fn hold_of(lab: &Lab, container: &str) -> Option<nicslice_store::CniDhcpHold> {
    use nicslice_store::StoreRead;
    let id = nicslice_engine::dhcp::cni_client_id(container, "eth0");
    nicslice_store::Store::open(&lab.state).unwrap().cni_dhcp_hold(&id, 4).unwrap()
}

/// The holder row of the (one) DHCPv6 lease of a CNI attachment, if there is one.
fn hold6(lab: &Lab) -> Option<nicslice_store::CniDhcpHold> {
    use nicslice_store::StoreRead;
    let holds = nicslice_store::Store::open(&lab.state).unwrap().cni_dhcp_holds().unwrap();
    holds.into_iter().find(|h| h.lease.family == 6)
}

/// How many holder rows the store has.
fn holds(lab: &Lab) -> usize {
    use nicslice_store::StoreRead;
    nicslice_store::Store::open(&lab.state).unwrap().cni_dhcp_holds().unwrap().len()
}

/// The store's record of `container`'s DHCPv4 lease ran out, as time
/// passing with no agent (or a server that stopped answering) leaves it.
fn expire(lab: &Lab, container: &str) {
    expire_row(lab, &nicslice_engine::dhcp::cni_client_id(container, "eth0"), 4);
}

/// The store's record of the lease of `id` in `family` ran out.
fn expire_row(lab: &Lab, id: &[u8], family: u8) {
    use nicslice_store::StoreRead;
    let mut store = nicslice_store::Store::open(&lab.state).unwrap();
    let mut lease = store.dhcp_lease_of_client(id, family).unwrap().expect("a lease row");
    let now = unix_now();
    (lease.renew_at, lease.rebind_at, lease.expires_at) = (now - 30, now - 20, now - 1);
    let tx = store.write().unwrap();
    tx.record_dhcp_lease(&lease).unwrap();
    tx.commit().unwrap();
}

/// How many DHCPREQUEST lines for `ip` `server` has logged, waiting up to
/// 3 s (dnsmasq writes its log a moment after it answers) for more than
/// `count`.
fn requests(server: &Dnsmasq, ip: &str, count: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let log = server.log();
        let now = log.lines().filter(|l| l.contains("DHCPREQUEST") && l.contains(ip)).count();
        if now > count || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server that no longer hands out the attachment's address refuses its
/// renewal (DHCPNAK): the agent takes the address off the container's link
/// and gets a new lease, recorded as ADD records one (its holder row: the
/// agent renews it later, DEL releases it), with the address and the
/// default route on the link.
#[test]
fn cni_dhcp_lease_refused_is_replaced_held_renewed_and_released() {
    let mut lab = Lab::new("cnidhcpnak");
    let Some(mut server) = Dnsmasq::start(&lab.switch, "cninak") else { return };
    let dir = plugin_dir("f");
    let conf = conf(&lab);
    let (ns1, n1) = lab.netns("c1");
    let p1 = format!("/run/netns/{n1}");
    let call = |cmd: &str, conf: &Value| {
        cni_plugin(&lab, &dir, "nicslice-macvlan", (cmd, &p1, "ctr-1", "eth0"), conf)
    };
    let (ok, r) = call("ADD", &conf);
    assert!(ok, "{r}");
    let old = ip_in(&r);
    // The agent ADD started is stopped: it is driven by hand below.
    kill_agent(agent_pid(&lab));

    server.stop();
    let Some(other) = Dnsmasq::start_range(&lab.switch, "cninak2", "192.168.0.150,192.168.0.199")
    else {
        return;
    };
    let report = lab.json(&["dhcp-agent", "--once", "--now"]);
    assert_eq!(report["replaced"].as_array().unwrap().len(), 1, "{report}");
    let held = addresses(&ns1, "eth0");
    assert_eq!(held.len(), 1, "the old address off, the new one on: {held:?}");
    let new = held[0].split('/').next().unwrap().to_string();
    let last: u8 = new.rsplit('.').next().unwrap().parse().unwrap();
    assert!((150..200).contains(&last), "{new} from the new range (was {old})");
    assert_eq!(default_gateway(&ns1), Some("192.168.0.1".parse().unwrap()), "route back");
    assert!(other.has_lease(&new), "{:?}", other.leases());
    // Held as ADD holds one: its holder row, the refused lease gone.
    let hold = hold_of(&lab, "ctr-1").expect("the new lease's holder row");
    assert_eq!(hold.lease.address.addr().to_string(), new, "{hold:?}");
    assert!(hold.retry.is_none() && hold.network == "dhcpnet", "{hold:?}");
    assert_eq!(holds(&lab), 1, "one row");
    let ipam = cni_plugin(&lab, &dir, "nicslice-ipam", ("CHECK", &p1, "ctr-1", "eth0"), &conf);
    assert!(ipam.0, "IPAM CHECK: held and on the link: {}", ipam.1);

    // The agent renews it later.
    let before = requests(&other, &new, 0);
    assert!(before >= 1, "the new lease's own REQUEST: {}", other.log());
    std::thread::sleep(Duration::from_millis(1100));
    let report = lab.json(&["dhcp-agent", "--once", "--now"]);
    assert_eq!(report["renewed"].as_array().unwrap().len(), 1, "{report}");
    assert!(requests(&other, &new, before) > before, "renewed at the server: {}", other.log());
    assert!(ping(&ns1, "192.168.0.1"));

    // DEL releases it and leaves no row.
    let (ok, e) = call("DEL", &conf);
    assert!(ok, "{e}");
    assert!(other.released(&new), "RELEASE reached the server: {:?}", other.leases());
    assert_eq!(holds(&lab), 0, "no holder row left");
    let report = lab.json(&["dhcp-agent", "--once", "--now"]);
    assert!(report["next_due"].is_null(), "nothing held: {report}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A lease that ran out while the server was stopped: the address goes off
/// the container's link, the attachment asks for a lease again (backing
/// off, the state in its holder row, the agent staying up for it); the
/// server back, the agent gets the lease back within the wait and puts it
/// on the link, and CNI CHECK passes. An attachment DELeted while it asks
/// leaves no row, and nothing asks for it any more.
#[test]
fn cni_dhcp_lease_expired_is_asked_for_again_until_del() {
    let mut lab = Lab::new("cnidhcpexp");
    let Some(mut server) = Dnsmasq::start(&lab.switch, "cniexp") else { return };
    let dir = plugin_dir("g");
    let conf = conf(&lab);
    let (ns1, n1) = lab.netns("c1");
    let (ns2, n2) = lab.netns("c2");
    let (p1, p2) = (format!("/run/netns/{n1}"), format!("/run/netns/{n2}"));
    let call = |cmd: &str, netns: &str, id: &str, conf: &Value| {
        cni_plugin(&lab, &dir, "nicslice-macvlan", (cmd, netns, id, "eth0"), conf)
    };
    let (ok, r1) = call("ADD", &p1, "ctr-1", &conf);
    assert!(ok, "{r1}");
    let (ok, r2) = call("ADD", &p2, "ctr-2", &conf);
    assert!(ok, "{r2}");
    let (ip1, ip2) = (ip_in(&r1), ip_in(&r2));
    kill_agent(agent_pid(&lab));
    server.stop();
    expire(&lab, "ctr-1");
    expire(&lab, "ctr-2");

    let started = unix_now();
    let report = lab.json(&["dhcp-agent", "--once", "--timeout", "1"]);
    let tried = unix_now();
    assert_eq!(report["lost"].as_array().unwrap().len(), 2, "{report}");
    assert!(report["lost"][0].as_str().unwrap().contains("lease expired"), "{report}");
    assert_eq!(report["failed"].as_array().unwrap().len(), 2, "asked at once: {report}");
    for ns in [&ns1, &ns2] {
        assert_eq!(addresses(ns, "eth0"), Vec::<String>::new(), "address taken off");
        assert!(link(ns, "eth0").is_some(), "the link stays");
        assert!(default_gateway(ns).is_none(), "the route went with it");
    }
    let hold = hold_of(&lab, "ctr-1").expect("the row stays");
    let retry = hold.retry.clone().expect("asked for again");
    assert_eq!(retry["backoff_secs"], 8, "the first try failed, the next wait doubles: {hold:?}");
    let next_at = retry["next_at"].as_i64().unwrap();
    assert!((started..=tried).contains(&(next_at - 4)), "4 s after the try: {retry}");
    let ipam = |cmd: &str, netns: &str, id: &str| {
        cni_plugin(&lab, &dir, "nicslice-ipam", (cmd, netns, id, "eth0"), &conf)
    };
    let (ok, e) = ipam("CHECK", &p1, "ctr-1");
    assert!(!ok, "no lease held while asking: {e}");
    // The agent stays up for it: its next due time is the next try.
    let report = lab.json(&["dhcp-agent", "--once", "--timeout", "1"]);
    let soonest = [&hold_of(&lab, "ctr-1"), &hold_of(&lab, "ctr-2")]
        .iter()
        .map(|h| h.as_ref().unwrap().retry.as_ref().unwrap()["next_at"].as_i64().unwrap())
        .min()
        .unwrap();
    assert_eq!(report["next_due"], soonest, "not idle: {report}");

    // ctr-2 DELeted while asking: no row, no more tries.
    let (ok, e) = call("DEL", &p2, "ctr-2", &conf);
    assert!(ok, "{e}");
    assert!(hold_of(&lab, "ctr-2").is_none(), "no holder row left");
    assert_eq!(holds(&lab), 1, "ctr-1's alone");

    // The server back: an agent gets ctr-1's lease again within the wait.
    let Some(back) = Dnsmasq::start(&lab.switch, "cniexp-back") else { return };
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .arg("--state")
        .arg(&lab.state)
        .args(["--host-netns", &lab.host.netns_name, "dhcp-agent"])
        .args(["--exit-when-idle", "--timeout", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let want = vec![format!("{ip1}/24")];
    let deadline = Instant::now() + Duration::from_secs(20);
    while addresses(&ns1, "eth0") != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(addresses(&ns1, "eth0"), want, "the lease again\n{}", back.log());
    assert!(unix_now() >= next_at, "not before the recorded try");
    assert_eq!(default_gateway(&ns1), Some("192.168.0.1".parse().unwrap()), "route back");
    assert!(ping(&ns1, "192.168.0.1"));
    assert!(back.has_lease(&ip1) && !back.has_lease(&ip2), "{:?}", back.leases());
    let hold = hold_of(&lab, "ctr-1").expect("held");
    assert!(hold.retry.is_none(), "no longer asking: {hold:?}");
    assert_eq!(addresses(&ns2, "eth0"), Vec::<String>::new());
    let mut check = conf.clone();
    check["prevResult"] = r1.clone();
    let (ok, e) = call("CHECK", &p1, "ctr-1", &check);
    assert!(ok, "CNI CHECK: {e}");
    let (ok, e) = ipam("CHECK", &p1, "ctr-1");
    assert!(ok, "IPAM CHECK: {e}");
    assert!(agent.try_wait().unwrap().is_none(), "the agent runs on: a lease is held");
    agent.kill().unwrap();
    agent.wait().unwrap();

    let (ok, e) = call("DEL", &p1, "ctr-1", &conf);
    assert!(ok, "{e}");
    assert!(back.released(&ip1), "{:?}", back.leases());
    assert_eq!(holds(&lab), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The DHCPv6 lease of a CNI attachment ran out while the server was
/// stopped: the /128 goes off the container's link and the attachment asks
/// again (the same backoff and holder-row state as DHCPv4's); the server
/// back, the agent gets the same address under the same DUID and IAID and
/// puts it on the link as ADD did, and CHECK passes; DEL releases it and
/// leaves no row.
#[test]
fn cni_dhcp6_lease_expired_is_asked_for_again_until_del() {
    let mut lab = Lab::new("cnidhcp6exp");
    let Some(mut server) = Dnsmasq::start_v6(&lab.switch, "cni6exp") else { return };
    let dir = plugin_dir("h");
    let conf = conf_of(&lab, json!([6]));
    let (ns1, n1) = lab.netns("c1");
    let p1 = format!("/run/netns/{n1}");
    let call = |cmd: &str, conf: &Value| {
        cni_plugin(&lab, &dir, "nicslice-macvlan", (cmd, &p1, "ctr-1", "eth0"), conf)
    };
    let ipam_check =
        || cni_plugin(&lab, &dir, "nicslice-ipam", ("CHECK", &p1, "ctr-1", "eth0"), &conf);
    let (ok, r1) = call("ADD", &conf);
    assert!(ok, "{r1}\n{}", server.log());
    let ip = ip_in(&r1);
    let first = server.v6_lease(&ip);
    kill_agent(agent_pid(&lab));
    server.stop();
    let key = hold6(&lab).expect("the holder row").lease.client_id;
    expire_row(&lab, &key, 6);

    let started = unix_now();
    let report = lab.json(&["dhcp-agent", "--once", "--timeout", "1"]);
    let tried = unix_now();
    assert_eq!(report["lost"].as_array().unwrap().len(), 1, "{report}");
    assert!(report["lost"][0].as_str().unwrap().contains("lease expired"), "{report}");
    assert_eq!(report["failed"].as_array().unwrap().len(), 1, "asked at once: {report}");
    assert!(report["failed"][0].as_str().unwrap().contains("no new DHCPv6 lease"), "{report}");
    assert_eq!(addresses(&ns1, "eth0"), Vec::<String>::new(), "the /128 taken off");
    assert!(link(&ns1, "eth0").is_some(), "the link stays");
    let hold = hold6(&lab).expect("the row stays");
    let retry = hold.retry.clone().expect("asked for again");
    assert_eq!(retry["family"], 6, "{retry}");
    assert_eq!(retry["backoff_secs"], 8, "the first try failed, the next wait doubles: {hold:?}");
    let next_at = retry["next_at"].as_i64().unwrap();
    assert!((started..=tried).contains(&(next_at - 4)), "4 s after the try: {retry}");
    let (ok, e) = ipam_check();
    assert!(!ok, "no lease held while asking: {e}");
    let report = lab.json(&["dhcp-agent", "--once", "--timeout", "1"]);
    assert_eq!(report["next_due"], next_at, "not idle, nothing tried early: {report}");

    // The server back: an agent gets the lease again within the wait.
    let Some(back) = Dnsmasq::start_v6(&lab.switch, "cni6exp-back") else { return };
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .arg("--state")
        .arg(&lab.state)
        .args(["--host-netns", &lab.host.netns_name, "dhcp-agent"])
        .args(["--exit-when-idle", "--timeout", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let want = vec![format!("{ip}/128")];
    let deadline = Instant::now() + Duration::from_secs(20);
    while addresses(&ns1, "eth0") != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(addresses(&ns1, "eth0"), want, "the lease again\n{}", back.log());
    assert!(unix_now() >= next_at, "not before the recorded try");
    let again = back.v6_lease(&ip);
    assert_eq!((&again[1], &again[4]), (&first[1], &first[4]), "the same IAID and DUID");
    let hold = hold6(&lab).expect("held");
    assert!(hold.retry.is_none(), "no longer asking: {hold:?}");
    assert_eq!(hold.lease.address.to_string(), format!("{ip}/128"));
    assert!(hold.lease.expires_at > unix_now(), "{hold:?}");
    assert!(ping_patiently(&ns1, "fd00:db8::1"), "the address works");
    let mut check = conf.clone();
    check["prevResult"] = r1.clone();
    let (ok, e) = call("CHECK", &check);
    assert!(ok, "CNI CHECK: {e}");
    let (ok, e) = ipam_check();
    assert!(ok, "IPAM CHECK: {e}");
    assert!(agent.try_wait().unwrap().is_none(), "the agent runs on: a lease is held");
    agent.kill().unwrap();
    agent.wait().unwrap();

    let (ok, e) = call("DEL", &conf);
    assert!(ok, "{e}");
    assert!(back.released(&ip), "{:?}", back.leases());
    assert_eq!(holds(&lab), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
