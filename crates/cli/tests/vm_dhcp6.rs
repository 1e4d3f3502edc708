//! DHCPv6 on ipvlan in the VM stage (this kernel has no ipvlan): ipvlan l2
//! children share their parent's MAC, so the kernel's EUI-64 link-local
//! depends on the kernel telling them apart (and on the order they were
//! made). nicslice gives each child a link-local of its own, and each its
//! own IAID under the host's DUID: three children get three distinct
//! addresses from dnsmasq, whose lease file shows one DUID and three IAIDs;
//! detach releases each. On a host without `NICSLICE_VM` the test says so
//! and returns: `vmtest/run.sh vm_dhcp6` runs it.

mod common;
mod dnsmasq;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use dnsmasq::Dnsmasq;

fn in_vm() -> bool {
    let vm = std::env::var_os("NICSLICE_VM").is_some();
    if !vm {
        println!("runs only in the VM stage (vmtest/run.sh); skipped");
    }
    vm
}

/// The link-local addresses on `eth0` of `ns`.
fn link_locals(ns: &nicslice_kernel::Netns) -> Vec<String> {
    let mut sock = nicslice_kernel::RouteSocket::open_in(ns).unwrap();
    let link = sock.require_link("eth0", "ns").unwrap();
    let addrs = sock.addresses(Some(link.index)).unwrap();
    addrs.into_iter().map(|(_, a)| a.to_string()).filter(|a| a.starts_with("fe80:")).collect()
}

#[test]
fn three_ipvlan_children_three_dhcp6_leases_one_duid() {
    if !in_vm() {
        return;
    }
    let mut lab = Lab::new("vmdhcp6");
    let Some(server) = Dnsmasq::start_v6(&lab.switch, "vm6") else { return };
    lab.ok(&[
        "network", "create", "ipv", "--driver", "ipvlan", "--mode", "l2", "--parent", "eth0",
        "--ipam", "dhcp6",
    ]);
    let mut ips = BTreeSet::new();
    let mut lls = BTreeSet::new();
    let mut names = Vec::new();
    for role in ["c1", "c2", "c3"] {
        let (ns, name) = lab.netns(role);
        let view =
            lab.json(&["attach", "ipv", "--netns", &name, "--dhcp-timeout", "30", "--no-agent"]);
        let addrs = view["addresses"].as_array().unwrap();
        assert_eq!(addrs.len(), 1, "{view}");
        let ip = addrs[0].as_str().unwrap().trim_end_matches("/128").to_string();
        assert_eq!(addresses(&ns, "eth0"), vec![format!("{ip}/128")]);
        let ll = link_locals(&ns);
        assert_eq!(ll.len(), 1, "one link-local of its own: {ll:?}");
        lls.insert(ll[0].clone());
        ips.insert(ip);
        names.push(name);
    }
    assert_eq!(ips.len(), 3, "three children, three addresses: {ips:?}");
    assert_eq!(lls.len(), 3, "three link-locals, though one MAC: {lls:?}");
    // dnsmasq writes its file in place: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let held = |server: &Dnsmasq| {
        server
            .leases()
            .into_iter()
            .filter(|l| l.len() >= 5 && l[2].contains(':'))
            .collect::<Vec<_>>()
    };
    while held(&server).len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let leases = held(&server);
    assert_eq!(leases.len(), 3, "{leases:?}");
    let iaids: BTreeSet<&str> = leases.iter().map(|l| l[1].as_str()).collect();
    let duids: BTreeSet<&str> = leases.iter().map(|l| l[4].as_str()).collect();
    assert_eq!(iaids.len(), 3, "three IAIDs: {leases:?}");
    assert_eq!(duids.len(), 1, "one DUID, the host's: {leases:?}");
    for name in &names {
        lab.ok(&["detach", "ipv", "--netns", name]);
    }
    for ip in &ips {
        assert!(server.released(ip), "RELEASE of {ip} reached the server: {:?}", server.leases());
    }
    lab.ok(&["network", "rm", "ipv"]);
}

/// Dual stack on ipvlan: the DHCPv4 step brings the child up first, so the
/// kernel's EUI-64 link-local (the parent's) may be there already; it is
/// replaced by the child's own before the DHCPv6 exchange.
#[test]
fn dual_stack_ipvlan_children_get_both_families_and_their_own_link_local() {
    if !in_vm() {
        return;
    }
    let mut lab = Lab::new("vmdhcp46");
    let Some(server) = Dnsmasq::start_v6(&lab.switch, "vm46") else { return };
    lab.ok(&[
        "network",
        "create",
        "ipv",
        "--driver",
        "ipvlan",
        "--mode",
        "l2",
        "--parent",
        "eth0",
        "--ipam",
        "dhcp,dhcp6",
    ]);
    let parent_ll: Vec<String> = {
        let mut sock = nicslice_kernel::RouteSocket::open_in(&lab.host.netns).unwrap();
        let link = sock.require_link("eth0", "host").unwrap();
        let addrs = sock.addresses(Some(link.index)).unwrap();
        addrs.into_iter().map(|(_, a)| a.to_string()).filter(|a| a.starts_with("fe80:")).collect()
    };
    let mut lls = BTreeSet::new();
    let mut names = Vec::new();
    for role in ["d1", "d2"] {
        let (ns, name) = lab.netns(role);
        let view =
            lab.json(&["attach", "ipv", "--netns", &name, "--dhcp-timeout", "30", "--no-agent"]);
        let addrs: Vec<&str> =
            view["addresses"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(addrs.len(), 2, "{view}");
        assert!(
            addrs.iter().any(|a| a.ends_with("/24")) && addrs.iter().any(|a| a.ends_with("/128"))
        );
        let ll = link_locals(&ns);
        assert_eq!(ll.len(), 1, "one link-local of its own: {ll:?}");
        assert!(!parent_ll.contains(&ll[0]), "not the parent's: {ll:?} {parent_ll:?}");
        lls.insert(ll[0].clone());
        names.push(name);
    }
    assert_eq!(lls.len(), 2, "{lls:?}");
    for name in &names {
        lab.ok(&["detach", "ipv", "--netns", name]);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.leases().iter().any(|l| l.len() >= 5) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!server.leases().iter().any(|l| l.len() >= 5), "all released: {:?}", server.leases());
    lab.ok(&["network", "rm", "ipv"]);
}
