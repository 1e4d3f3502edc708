//! nicslice-ipam with `"dhcp": {}` behind nicslice-macvlan, as a CNI runtime
//! calls them (the `nicslice` binary linked under the plugins' names), against
//! dnsmasq in the switch namespace of the test's world: ADD returns the
//! server's address, gateway and DNS server and the container's link holds
//! them; the first ADD starts `nicslice dhcp-agent`, which renews the leases
//! from the state database; STATUS restarts an agent that was killed and
//! fails with code 50 when none can run; DEL and GC give the lease back
//! (the server's lease file drops it); an attachment added again (same
//! container ID and interface) gets its address back. The ipvlan case runs
//! in the VM stage (vm_dhcp.rs).

mod common;
mod dnsmasq;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use dnsmasq::Dnsmasq;
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
    let (ok, r1) = call("ADD", &p1, "ctr-1", &conf);
    assert!(ok, "{r1}");
    let (ok, r2) = call("ADD", &p2, "ctr-2", &conf);
    assert!(ok, "{r2}");
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

    // DEL: RELEASE (through the parent: the link goes first), the lease dropped.
    let (ok, e) = call("DEL", &p1, "ctr-1", &conf);
    assert!(ok, "{e}");
    assert!(link(&ns1, "eth0").is_none());
    assert!(server.released(&ip1), "RELEASE reached the server: {:?}", server.leases());
    let (ok, e) = ipam_check();
    assert!(!ok && e["code"] == 3, "no lease after DEL: {e}");
    assert!(call("DEL", &p1, "ctr-1", &conf).0, "a second DEL is fine");
    // Added again: the same client, the same address.
    let (ok, r) = call("ADD", &p1, "ctr-1", &conf);
    assert!(ok, "{r}");
    assert_eq!(ip_in(&r), ip1, "same container ID and interface, same address");

    // GC: the leases of attachments the runtime no longer lists go.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-1", "ifname": "eth0"}]);
    let (ok, e) = call("GC", "", "", &gc);
    assert!(ok, "{e}");
    assert!(server.released(&ip2), "GC released ctr-2's: {:?}", server.leases());
    assert!(server.has_lease(&ip1), "ctr-1's stays: {:?}", server.leases());
    assert!(call("DEL", &p1, "ctr-1", &conf).0);
    assert!(server.released(&ip1));
    if let Ok(text) = std::fs::read_to_string(&lock)
        && let Ok(pid) = text.trim().parse::<i32>()
        && Path::new(&format!("/proc/{pid}")).exists()
    {
        kill_agent(pid);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// With no server, ADD fails within its timeout and leaves no link and no
/// lease (the plugin undoes the link, IPAM DEL finds nothing held).
#[test]
fn cni_dhcp_without_a_server_fails_and_leaves_nothing() {
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
    // Seed 001: ipvlan l3 children receive no broadcast; refused up front.
    let mut l3 = conf.clone();
    l3["type"] = json!("nicslice-ipvlan");
    l3["mode"] = json!("l3");
    let (ok, e) = cni_plugin(&lab, &dir, "nicslice-ipvlan", ("ADD", &p1, "ctr-1", "eth0"), &l3);
    assert!(!ok && e["code"] == 7 && e["msg"].as_str().unwrap().contains("never receive"), "{e}");
    assert_eq!(non_lo(&ns1), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}
