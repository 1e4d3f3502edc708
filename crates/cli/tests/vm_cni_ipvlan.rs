//! nicslice-ipvlan in the VM stage (this machine's kernel has no ipvlan):
//! the `nicslice` binary run as nicslice-ipvlan with nicslice-ipam, as a CNI
//! runtime calls it, in the lab's namespaces. ADD in l2 and l3 (default
//! route through the device, seed 001), the port flag reaching the kernel,
//! CHECK, DEL, DEL without the master, a refused MAC, and chained mode (the
//! master is the previous plugin's interface in the container). On a host without
//! `NICSLICE_VM` each test says so and returns.

mod common;

use common::*;
use serde_json::{Value, json};

fn in_vm() -> bool {
    let vm = std::env::var_os("NICSLICE_VM").is_some();
    if !vm {
        println!("runs only in the VM stage (vmtest/run.sh); skipped");
    }
    vm
}

/// The plugins as a runtime finds them: links in a CNI_PATH directory.
fn plugin_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nsl-vm-cni-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["nicslice-ipvlan", "nicslice-ipam"] {
        let _ = std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nicslice"), dir.join(name));
    }
    dir
}

/// Runs nicslice-ipvlan in the lab's host namespace; (success, stdout JSON).
fn call(lab: &Lab, cmd: &str, netns: &str, id: &str, conf: &Value) -> (bool, Value) {
    call_as(lab, cmd, netns, id, "eth0", conf)
}

fn call_as(
    lab: &Lab,
    cmd: &str,
    netns: &str,
    id: &str,
    ifname: &str,
    conf: &Value,
) -> (bool, Value) {
    cni_plugin(lab, &plugin_dir(), "nicslice-ipvlan", (cmd, netns, id, ifname), conf)
}

fn conf(lab: &Lab, mode: &str, flag: &str) -> Value {
    json!({
        "cniVersion": "1.1.0", "name": "ipv", "type": "nicslice-ipvlan",
        "master": "eth0", "mode": mode, "flag": flag,
        "ipam": {"type": "nicslice-ipam", "subnet": "192.168.0.0/24", "rangeStart": "192.168.0.50",
                 "rangeEnd": "192.168.0.59", "gateway": "192.168.0.1",
                 "state": lab.state.with_extension("cni.db")}
    })
}

#[test]
fn ipvlan_l2_add_check_del() {
    if !in_vm() {
        return;
    }
    let mut lab = Lab::new("vmcni2");
    let (ns, name) = lab.netns("c1");
    let path = format!("/run/netns/{name}");
    let conf = conf(&lab, "l2", "private");
    let (ok, result) = call(&lab, "ADD", &path, "c1", &conf);
    assert!(ok, "ADD: {result}");
    let l = link(&ns, "eth0").expect("eth0 in the container");
    assert_eq!(l.kind.as_deref(), Some("ipvlan"));
    assert_eq!(l.mac, link(&lab.host.netns, "eth0").unwrap().mac, "shares the master's MAC");
    assert_eq!(addresses(&ns, "eth0"), vec!["192.168.0.50/24"]);
    assert_eq!(default_gateway(&ns).map(|g| g.to_string()).as_deref(), Some("192.168.0.1"));
    assert!(ping(&ns, "192.168.0.1"), "the switch is reachable through the l2 child");
    let mut check = conf.clone();
    check["prevResult"] = result;
    assert!(call(&lab, "CHECK", &path, "c1", &check).0, "CHECK");
    assert!(call(&lab, "DEL", &path, "c1", &check).0, "DEL");
    assert!(link(&ns, "eth0").is_none(), "DEL removed eth0");
}

#[test]
fn ipvlan_l3_routes_through_the_device_and_del_survives_the_master() {
    if !in_vm() {
        return;
    }
    let mut lab = Lab::new("vmcni3");
    let (ns, name) = lab.netns("c1");
    let path = format!("/run/netns/{name}");
    let conf = conf(&lab, "l3", "bridge");
    let (ok, result) = call(&lab, "ADD", &path, "c1", &conf);
    assert!(ok, "ADD: {result}");
    let l = link(&ns, "eth0").unwrap();
    let default = routes(&ns).into_iter().find(|r| r.is_default()).expect("default route");
    assert_eq!((default.gateway, default.oif), (None, Some(l.index)), "seed 001: default dev eth0");
    nicslice_kernel::RouteSocket::open_in(&lab.host.netns)
        .unwrap()
        .delete_link_by_name("eth0")
        .unwrap();
    assert!(call(&lab, "DEL", &path, "c1", &conf).0, "DEL without the master");
}

#[test]
fn ipvlan_refuses_a_mac_before_touching_anything() {
    if !in_vm() {
        return;
    }
    let mut lab = Lab::new("vmcnimac");
    let (ns, name) = lab.netns("c1");
    let mut conf = conf(&lab, "l2", "bridge");
    conf["mac"] = json!("02:00:00:00:00:01");
    let (ok, err) = call(&lab, "ADD", &format!("/run/netns/{name}"), "c1", &conf);
    assert!(!ok);
    assert_eq!(err["code"], 7, "{err}");
    assert!(non_lo(&ns).is_empty());
}

#[test]
fn chained_ipvlan_rides_on_the_previous_plugins_interface() {
    if !in_vm() {
        return;
    }
    let mut lab = Lab::new("vmcnichain");
    let (ns, name) = lab.netns("c1");
    let path = format!("/run/netns/{name}");
    // What a previous plugin (host-device, say) left: eth0 in the container.
    {
        let mut host = nicslice_kernel::RouteSocket::open_in(&lab.host.netns).unwrap();
        host.create_veth("prev0", "eth0", Some(&ns)).unwrap();
        let mut c = nicslice_kernel::RouteSocket::open_in(&ns).unwrap();
        let eth0 = c.require_link("eth0", "container").unwrap();
        c.set_up(eth0.index, true).unwrap();
    }
    let prev = json!({"cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "sandbox": path}],
        "ips": [{"address": "192.168.7.5/24", "interface": 0}]});
    let conf = json!({"cniVersion": "1.1.0", "name": "chain", "type": "nicslice-ipvlan",
        "mode": "l2", "prevResult": prev});
    let (ok, result) = call_as(&lab, "ADD", &path, "c1", "ipv0", &conf);
    assert!(ok, "chained ADD: {result}");
    let ipv0 = link(&ns, "ipv0").expect("ipv0 in the container");
    let eth0 = link(&ns, "eth0").unwrap();
    assert_eq!(ipv0.kind.as_deref(), Some("ipvlan"));
    assert_eq!(ipv0.parent_index, Some(eth0.index), "the previous interface is the master");
    assert_eq!(addresses(&ns, "ipv0"), vec!["192.168.7.5/24"], "prevResult's address, no IPAM");
    // The chain's interfaces pass through; ours comes last and holds the address.
    assert_eq!(result["interfaces"][0]["name"], "eth0", "{result}");
    assert_eq!(result["interfaces"][1]["name"], "ipv0", "{result}");
    assert_eq!(result["ips"][0]["interface"], 1, "{result}");
    let mut check = conf.clone();
    check["prevResult"] = result;
    assert!(call_as(&lab, "CHECK", &path, "c1", "ipv0", &check).0, "CHECK");
    assert!(call_as(&lab, "DEL", &path, "c1", "ipv0", &check).0, "DEL");
    assert!(link(&ns, "ipv0").is_none() && link(&ns, "eth0").is_some(), "DEL removes only ipv0");
}
