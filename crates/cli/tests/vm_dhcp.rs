//! Seed 001 in the VM stage (this kernel has no ipvlan): ipvlan l2 children
//! share their parent's MAC, so a DHCP server that told clients apart by MAC
//! would give them one lease between them. With nicslice's per-endpoint
//! client identifier and the broadcast flag, three children get three
//! leases from dnsmasq, whose lease file shows one MAC and three client
//! identifiers; detach releases each. On a host without `NICSLICE_VM` the
//! test says so and returns: `vmtest/run.sh` runs it (the initramfs carries
//! dnsmasq, which run.sh installs on the host; in the VM it must be there).

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
