//! Seed 001 in the VM stage (this kernel has no ipvlan): ipvlan l2 children
//! share their parent's MAC, so a DHCP server that told clients apart by MAC
//! would give them one lease between them. With nicslice's per-endpoint
//! client identifier and the broadcast flag, three children get three
//! leases from dnsmasq, whose lease file shows one MAC and three client
//! identifiers; detach releases each. The same through the CNI plugins
//! (nicslice-ipvlan with nicslice-ipam `"dhcp"`). On a host without
//! `NICSLICE_VM` the tests say so and return: `vmtest/run.sh` runs them (the
//! initramfs carries dnsmasq, which run.sh installs on the host; in the VM
//! it must be there).

mod common;
mod dnsmasq;

use std::collections::BTreeSet;

use common::*;
use dnsmasq::{Dnsmasq, ip_of};

fn in_vm() -> bool {
    let vm = std::env::var_os("NICSLICE_VM").is_some();
    if !vm {
        println!("runs only in the VM stage (vmtest/run.sh); skipped");
    }
    // In the VM a missing server is a broken image, not a reason to skip
    // (vmtest/run.sh installs dnsmasq-base on the host and copies it in).
    assert!(
        !vm || std::path::Path::new(dnsmasq::DNSMASQ).exists(),
        "the VM image has no {}",
        dnsmasq::DNSMASQ
    );
    vm
}

#[test]
fn seed001_three_ipvlan_children_three_leases_one_mac() {
    if !in_vm() {
        return;
    }
    let mut lab = Lab::new("vmdhcp");
    let Some(server) = Dnsmasq::start(&lab.switch, "vm") else { return };
    lab.ok(&[
        "network", "create", "ipv", "--driver", "ipvlan", "--mode", "l2", "--parent", "eth0",
        "--ipam", "dhcp",
    ]);
    let parent_mac = link(&lab.host.netns, "eth0").unwrap().mac.unwrap().to_string();
    let mut ips = BTreeSet::new();
    let mut names = Vec::new();
    for role in ["c1", "c2", "c3"] {
        let (ns, name) = lab.netns(role);
        // Under emulation a server can be slow to answer: a generous timeout.
        let view =
            lab.json(&["attach", "ipv", "--netns", &name, "--dhcp-timeout", "30", "--no-agent"]);
        let ip = ip_of(&view);
        assert_eq!(addresses(&ns, "eth0"), vec![format!("{ip}/24")]);
        assert_eq!(default_gateway(&ns), Some("192.168.0.1".parse().unwrap()));
        assert_eq!(view["mac"], parent_mac, "an ipvlan child has its parent's MAC");
        ips.insert(ip);
        names.push(name);
    }
    assert_eq!(ips.len(), 3, "three children, three addresses: {ips:?}");
    let leases = server.leases();
    assert_eq!(leases.len(), 3, "{leases:?}");
    let macs: BTreeSet<&str> = leases.iter().map(|l| l[1].as_str()).collect();
    let ids: BTreeSet<&str> = leases.iter().filter_map(|l| l.get(4)).map(String::as_str).collect();
    assert_eq!(macs.len(), 1, "one MAC for all: {leases:?}");
    assert_eq!(ids.len(), 3, "three client identifiers: {leases:?}");
    for name in &names {
        lab.ok(&["detach", "ipv", "--netns", name]);
    }
    for ip in &ips {
        assert!(server.released(ip), "RELEASE of {ip} reached the server: {:?}", server.leases());
    }
    lab.ok(&["network", "rm", "ipv"]);
}

/// The same through CNI: nicslice-ipvlan (l2) with nicslice-ipam `"dhcp"`,
/// the `nicslice` binary linked under the plugins' names as a runtime finds
/// them. Three containers, three leases under one MAC and three client
/// identifiers (per container ID and interface); DEL releases each.
#[test]
fn cni_ipvlan_dhcp_three_containers_three_leases() {
    if !in_vm() {
        return;
    }
    let mut lab = Lab::new("vmcnidhcp");
    let Some(server) = Dnsmasq::start(&lab.switch, "vmcni") else { return };
    let dir = std::env::temp_dir().join(format!("nsl-vm-cni-dhcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["nicslice-ipvlan", "nicslice-ipam"] {
        let _ = std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nicslice"), dir.join(name));
    }
    let conf = serde_json::json!({
        "cniVersion": "1.1.0", "name": "ipvdhcp", "type": "nicslice-ipvlan",
        "master": "eth0", "mode": "l2",
        "ipam": {"type": "nicslice-ipam", "dhcp": {"state": lab.state, "timeout": 30}}
    });
    let parent_mac = link(&lab.host.netns, "eth0").unwrap().mac.unwrap().to_string();
    let mut ips = BTreeSet::new();
    let mut added = Vec::new();
    for (i, role) in ["k1", "k2", "k3"].into_iter().enumerate() {
        let (ns, name) = lab.netns(role);
        let (path, id) = (format!("/run/netns/{name}"), format!("ctr-{i}"));
        let (ok, r) = cni_plugin(&lab, &dir, "nicslice-ipvlan", ("ADD", &path, &id, "eth0"), &conf);
        assert!(ok, "{r}");
        let ip = r["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
        assert_eq!(addresses(&ns, "eth0"), vec![format!("{ip}/24")]);
        assert_eq!(r["ips"][0]["gateway"], "192.168.0.1", "{r}");
        assert_eq!(r["interfaces"][0]["mac"], parent_mac, "an ipvlan child has its parent's MAC");
        ips.insert(ip);
        added.push((path, id));
    }
    assert_eq!(ips.len(), 3, "three containers, three addresses: {ips:?}");
    let leases = server.leases();
    assert_eq!(leases.len(), 3, "{leases:?}");
    let macs: BTreeSet<&str> = leases.iter().map(|l| l[1].as_str()).collect();
    let ids: BTreeSet<&str> = leases.iter().filter_map(|l| l.get(4)).map(String::as_str).collect();
    assert_eq!(macs.len(), 1, "one MAC for all: {leases:?}");
    assert_eq!(ids.len(), 3, "three client identifiers: {leases:?}");
    for (path, id) in &added {
        let (ok, e) = cni_plugin(&lab, &dir, "nicslice-ipvlan", ("DEL", path, id, "eth0"), &conf);
        assert!(ok, "{e}");
    }
    for ip in &ips {
        assert!(server.released(ip), "RELEASE of {ip} reached the server: {:?}", server.leases());
    }
    // The agent the first ADD started, stopped by the pid it wrote.
    let lock = format!("{}.dhcp-agent.lock", lab.state.display());
    if let Ok(pid) = std::fs::read_to_string(&lock).unwrap_or_default().trim().parse::<i32>() {
        // SAFETY: kill(2) with a pid read from the agent's own lock file.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = std::fs::remove_dir_all(&dir);
}
