//! Host access on ipvlan, in the VM stage (this machine's kernel has no
//! ipvlan): `nicslice shim add` on an l2 and on an l3 network makes an
//! ipvlan shim in the parent's own mode, through which the host reaches its
//! children and they reach the host; `shim rm` cuts the host off again. The
//! same for nicslice-ipvlan with `"hostAccess": true` on l3 (the shared shim
//! of the CNI plugins, whose DEL of the last pod removes it), refused on l2
//! (where the shim cannot borrow the host's address). And the lab's
//! scenarios of the shim nicslice makes on ipvlan match the model on this
//! kernel. On a host without `NICSLICE_VM` each test says so and
//! returns: `vmtest/run.sh vm_shim` runs them for real.

mod common;

use common::*;
use serde_json::json;

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
    // In the children's own mode and flag (the network's default, bridge),
    // as iproute2 prints them: "ipvlan  mode l2 bridge".
    let shown = std::process::Command::new("ip")
        .args(["-n", &lab.host.netns_name, "-d", "link", "show", "dev", &shim])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    let words: Vec<&str> = shown.split_whitespace().collect();
    assert!(
        words.windows(4).any(|w| w == ["ipvlan", "mode", mode, "bridge"]),
        "{mode}: the shim is not ipvlan {mode} bridge: {shown}"
    );
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

/// The plugins as a runtime finds them: links in a CNI_PATH directory.
fn plugin_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nsl-vm-shim-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["nicslice-ipvlan", "nicslice-ipam"] {
        let _ = std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nicslice"), dir.join(name));
    }
    dir
}

fn conf(lab: &Lab, mode: &str) -> serde_json::Value {
    json!({
        "cniVersion": "1.1.0", "name": "ipv", "type": "nicslice-ipvlan", "master": "eth0",
        "mode": mode, "hostAccess": true,
        "ipam": {"type": "nicslice-ipam", "subnet": "192.168.0.0/24", "rangeStart": "192.168.0.50",
                 "rangeEnd": "192.168.0.59", "gateway": "192.168.0.1",
                 "state": lab.state.with_extension("cni.db")}
    })
}

/// nicslice-ipvlan with `"hostAccess": true` in `mode`: two pods, the host
/// reaches both and they reach the host; the last DEL takes the shim.
fn cni_pods_and_host_reach_each_other_through_the_shared_shim(mode: &str) {
    let mut lab = Lab::new(&format!("vmcnishim{mode}"));
    let dir = plugin_dir(mode);
    let conf = conf(&lab, mode);
    let host = lab.host.netns.clone_handle().unwrap();
    let shims = |host: &nicslice_kernel::Netns| {
        links(host).into_iter().filter(|l| l.name.starts_with("nsh")).count()
    };
    let mut pods = Vec::new();
    for id in ["p1", "p2"] {
        let (ns, name) = lab.netns(id);
        let path = format!("/run/netns/{name}");
        let (ok, result) =
            cni_plugin(&lab, &dir, "nicslice-ipvlan", ("ADD", &path, id, "eth0"), &conf);
        assert!(ok, "{mode}: ADD {id}: {result}");
        let ip =
            result["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
        pods.push((ns, path, id, ip));
    }
    assert_eq!(shims(&host), 1, "{mode}: one shared shim");
    for (ns, _, id, ip) in &pods {
        assert!(ping(&host, ip), "{mode}: host -> pod {id} ({ip}) through the shim");
        assert!(ping(ns, "192.168.0.254"), "{mode}: pod {id} -> host");
    }
    assert!(ping(&host, "192.168.0.1"), "{mode}: the gateway is still reached");
    for (_, path, id, _) in &pods {
        let (ok, result) =
            cni_plugin(&lab, &dir, "nicslice-ipvlan", ("DEL", path, id, "eth0"), &conf);
        assert!(ok, "{mode}: DEL {id}: {result}");
    }
    assert_eq!(shims(&host), 0, "{mode}: the last DEL took the shim");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cni_host_access_on_ipvlan_l2_is_refused_with_the_reason() {
    if !in_vm() {
        return;
    }
    let mut lab = Lab::new("vmcnishiml2");
    let dir = plugin_dir("l2");
    let (_ns, name) = lab.netns("p1");
    let (ok, result) = cni_plugin(
        &lab,
        &dir,
        "nicslice-ipvlan",
        ("ADD", &format!("/run/netns/{name}"), "p1", "eth0"),
        &conf(&lab, "l2"),
    );
    assert!(!ok, "ADD with hostAccess on l2 succeeded: {result}");
    assert_eq!(result["code"], 7, "{result}");
    assert!(result["msg"].as_str().unwrap().contains("use mode l3 or l3s"), "{result}");
    let shims = links(&lab.host.netns).into_iter().filter(|l| l.name.starts_with("nsh")).count();
    assert_eq!(shims, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cni_host_access_on_ipvlan_l3() {
    if !in_vm() {
        return;
    }
    cni_pods_and_host_reach_each_other_through_the_shared_shim("l3");
}

#[test]
fn the_labs_ipvlan_shim_scenarios_match_the_model() {
    if !in_vm() {
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .args(["lab", "--json", "--only", "ipvlan-l2-shim", "--only", "ipvlan-l3-shim"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let scenarios = report["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 2);
    for s in scenarios {
        assert!(s["skipped"].is_null(), "{}", s["name"]);
        assert!(s["error"].is_null(), "{}: {}", s["name"], s["error"]);
        for o in s["observations"].as_array().unwrap() {
            assert_eq!(o["observed"], o["predicted"], "{}: {o}", s["name"]);
        }
    }
    assert!(out.status.success(), "{}", serde_json::to_string_pretty(&report).unwrap());
}
