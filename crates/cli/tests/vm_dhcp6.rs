//! DHCPv6 on ipvlan in the VM stage (this kernel has no ipvlan): ipvlan l2
//! children share their parent's MAC, so the kernel's EUI-64 link-local
//! depends on the kernel telling them apart (and on the order they were
//! made). nicslice gives each child a link-local of its own, and each its
//! own IAID under the host's DUID: three children get three distinct
//! addresses from dnsmasq, whose lease file shows one DUID and three IAIDs;
//! detach releases each; the same through CNI (nicslice-ipvlan with
//! nicslice-ipam `"families": [4, 6]`). On a host without `NICSLICE_VM` the
//! tests say so and return: `vmtest/run.sh vm_dhcp6` runs them.

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
    // In the VM a missing server is a broken image, not a reason to skip
    // (vmtest/run.sh installs dnsmasq-base on the host and copies it in).
    assert!(
        !vm || std::path::Path::new(dnsmasq::DNSMASQ).exists(),
        "the VM image has no {}",
        dnsmasq::DNSMASQ
    );
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

/// The same through CNI: nicslice-ipvlan (l2) with nicslice-ipam
/// `"dhcp": {"families": [4, 6]}`. Three containers sharing the parent's
/// MAC get an address of each family, three link-locals of their own and
/// three IAIDs under one DUID; DEL releases both families of each (the link
/// goes first: DHCPv6's RELEASE through the parent, from its own link-local).
#[test]
fn cni_ipvlan_dual_stack_three_containers() {
    if !in_vm() {
        return;
    }
    let mut lab = Lab::new("vmcni46");
    let Some(server) = Dnsmasq::start_v6(&lab.switch, "vmcni46") else { return };
    let dir = std::env::temp_dir().join(format!("nsl-vm-cni-dhcp6-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["nicslice-ipvlan", "nicslice-ipam"] {
        let _ = std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nicslice"), dir.join(name));
    }
    let dhcp = serde_json::json!({"state": lab.state, "timeout": 30, "families": [4, 6]});
    let conf = serde_json::json!({
        "cniVersion": "1.1.0", "name": "ipvdhcp46", "type": "nicslice-ipvlan",
        "master": "eth0", "mode": "l2", "ipam": {"type": "nicslice-ipam", "dhcp": dhcp}
    });
    let (mut v6s, mut lls, mut added) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
    for (i, role) in ["k1", "k2", "k3"].into_iter().enumerate() {
        let (ns, name) = lab.netns(role);
        let (path, id) = (format!("/run/netns/{name}"), format!("ctr-{i}"));
        let (ok, r) = cni_plugin(&lab, &dir, "nicslice-ipvlan", ("ADD", &path, &id, "eth0"), &conf);
        assert!(ok, "{r}");
        let mut ips: Vec<String> = r["ips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["address"].as_str().unwrap().to_string())
            .collect();
        ips.sort();
        assert!(ips.len() == 2 && ips[0].ends_with("/24") && ips[1].ends_with("/128"), "{r}");
        let mut held = addresses(&ns, "eth0");
        held.sort();
        assert_eq!(held, ips);
        let ll = link_locals(&ns);
        assert_eq!(ll.len(), 1, "one link-local of its own: {ll:?}");
        lls.insert(ll[0].clone());
        v6s.insert(ips[1].trim_end_matches("/128").to_string());
        added.push((path, id));
    }
    assert_eq!((v6s.len(), lls.len()), (3, 3), "{v6s:?} {lls:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let held6 = |server: &Dnsmasq| {
        server
            .leases()
            .into_iter()
            .filter(|l| l.len() >= 5 && l[2].contains(':'))
            .collect::<Vec<_>>()
    };
    while held6(&server).len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let leases = held6(&server);
    let iaids: BTreeSet<&str> = leases.iter().map(|l| l[1].as_str()).collect();
    let duids: BTreeSet<&str> = leases.iter().map(|l| l[4].as_str()).collect();
    assert_eq!((iaids.len(), duids.len()), (3, 1), "three IAIDs, one DUID: {leases:?}");
    for (path, id) in &added {
        let (ok, e) = cni_plugin(&lab, &dir, "nicslice-ipvlan", ("DEL", path, id, "eth0"), &conf);
        assert!(ok, "{e}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.leases().iter().any(|l| l.len() >= 5) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!server.leases().iter().any(|l| l.len() >= 5), "all released: {:?}", server.leases());
    // The agent the first ADD started, stopped by the pid it wrote.
    let lock = format!("{}.dhcp-agent.lock", lab.state.display());
    if let Ok(pid) = std::fs::read_to_string(&lock).unwrap_or_default().trim().parse::<i32>() {
        // SAFETY: kill(2) with a pid read from the agent's own lock file.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = std::fs::remove_dir_all(&dir);
}
