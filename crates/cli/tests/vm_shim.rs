//! Host access on ipvlan, in the VM stage (this machine's kernel has no
//! ipvlan): `nicslice shim add` on an l2 and on an l3 network makes an
//! ipvlan shim in the parent's own mode, through which the host reaches its
//! children and they reach the host; `shim rm` cuts the host off again. And
//! the lab's scenarios of the shim nicslice makes on ipvlan match the model
//! on this kernel. On a host without `NICSLICE_VM` each test says so and
//! returns: `vmtest/run.sh vm_shim` runs them for real.

mod common;

use common::*;

fn in_vm() -> bool {
    let vm = std::env::var_os("NICSLICE_VM").is_some();
    if !vm {
        println!("runs only in the VM stage (vmtest/run.sh); skipped");
    }
    vm
}

/// An ipvlan network in `mode` on the host's eth0, two children, a shim:
/// the host reaches both and both reach the host, through the shim only.
fn host_and_children_reach_each_other_through_an_ipvlan_shim(mode: &str) {
    let mut lab = Lab::new(&format!("vmshim{mode}"));
    lab.lan("ipv", &["--driver", "ipvlan", "--mode", mode]);
    let (c1, n1) = lab.netns("c1");
    let (c2, n2) = lab.netns("c2");
    lab.ok(&["attach", "ipv", "--netns", &n1, "--ip", "192.168.0.11"]);
    lab.ok(&["attach", "ipv", "--netns", &n2, "--ip", "192.168.0.12"]);
    let host = lab.host.netns.clone_handle().unwrap();
    assert!(!ping(&host, "192.168.0.11"), "{mode}: the host cannot reach its child yet");

    let made = lab.json(&["shim", "add", "ipv"]);
    let shim = made["name"].as_str().unwrap().to_string();
    let l = link(&host, &shim).expect("the shim exists in the host namespace");
    assert_eq!(l.kind.as_deref(), Some("ipvlan"), "{mode}: an ipvlan shim beside ipvlan children");
    for (child, ip) in [(&c1, "192.168.0.11"), (&c2, "192.168.0.12")] {
        assert!(ping(&host, ip), "{mode}: host -> child {ip} through the shim");
        assert!(ping(child, "192.168.0.254"), "{mode}: child {ip} -> host");
    }
    assert!(ping(&host, "192.168.0.1"), "{mode}: the gateway is still reached");

    lab.ok(&["shim", "rm", "ipv"]);
    assert!(link(&host, &shim).is_none());
    assert!(!ping(&host, "192.168.0.11"), "{mode}: without the shim the host is cut off again");
}

#[test]
fn an_ipvlan_l2_shim_joins_the_host_and_its_children() {
    if !in_vm() {
        return;
    }
    host_and_children_reach_each_other_through_an_ipvlan_shim("l2");
}

#[test]
fn an_ipvlan_l3_shim_joins_the_host_and_its_children() {
    if !in_vm() {
        return;
    }
    host_and_children_reach_each_other_through_an_ipvlan_shim("l3");
}
