//! `nicslice doctor --wire`: what only the wire can tell, in the namespace
//! world. A foreign host answering an endpoint's address is found with its
//! MAC; a switch port that forwards only the parent's own MAC (a locked
//! bridge port: the kernel's port security, as a hypervisor's "forged
//! transmits: reject" behaves) gives the forged-transmits finding, and the
//! ordinary learning bridge gives none. The scratch link of that probe never
//! outlives the command.

mod common;

use std::process::Command;
use std::time::Instant;

use common::*;
use serde_json::Value;

fn wire_findings(lab: &Lab) -> (bool, Vec<Value>) {
    let out = lab.run(&["doctor", "--wire", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    (out.status.success(), list.as_array().unwrap().clone())
}

/// Runs `bridge ARGS` in the lab's switch namespace.
fn bridge(lab: &Lab, args: &[&str]) {
    let sw = lab.world.name_of("sw");
    let st = Command::new("ip").args(["netns", "exec", &sw, "bridge"]).args(args).status().unwrap();
    assert!(st.success(), "bridge {args:?}");
}

/// No scratch link of the forged-transmits probe is left beside the parent.
fn no_scratch_left(lab: &Lab) {
    let left: Vec<String> = links(&lab.host.netns)
        .into_iter()
        .map(|l| l.name)
        .filter(|n| n.starts_with("nswire"))
        .collect();
    assert!(left.is_empty(), "scratch links left: {left:?}");
}

#[test]
fn a_foreign_host_answering_an_endpoints_address_is_found_with_its_mac() {
    let mut lab = Lab::new("wireconflict");
    lab.lan("lan", &[]);
    let (_c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    let started = Instant::now();
    let healthy = lab.ok(&["doctor", "--wire"]);
    eprintln!("doctor --wire, healthy, one endpoint: {:?}", started.elapsed());
    assert_eq!(healthy.trim().lines().count(), 1, "{healthy}");

    // A host the user plugged in with the endpoint's address.
    let foreign = lab
        .world
        .host(&lab.switch, "foreign", "eth0", Some("192.168.0.11/24".parse().unwrap()))
        .unwrap();
    let foreign_mac = link(&foreign.netns, "eth0").unwrap().mac.unwrap().to_string();
    let started = Instant::now();
    let (ok, found) = wire_findings(&lab);
    eprintln!("doctor --wire, one conflict: {:?}", started.elapsed());
    assert!(!ok, "a conflict is a finding: exit status 1");
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert!(f["subject"].as_str().unwrap().contains(&n1), "{f}");
    let problem = f["problem"].as_str().unwrap();
    assert!(problem.contains("192.168.0.11"), "{problem}");
    assert!(problem.contains(&foreign_mac), "the foreign MAC {foreign_mac}: {problem}");
    assert_eq!(f["repairable"], false);
    // Without --wire, doctor asks only the kernel: nothing to say.
    assert_eq!(lab.ok(&["doctor"]).trim().lines().count(), 1);
}

#[test]
fn a_foreign_host_advertising_an_endpoints_ipv6_address_is_found_with_its_mac() {
    let mut lab = Lab::new("wireconflict6");
    lab.lan("lan", &["--subnet", "fd00::/64"]);
    let (c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11", "--ip", "fd00::11"]);
    // The endpoint's link-local address, the solicitations' source, must
    // have passed its own DAD.
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while !tentative(&n1).is_empty() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(lab.ok(&["doctor", "--wire"]).trim().lines().count(), 1);

    // A host configured with the endpoint's IPv6 address without DAD (so
    // that it keeps it and answers for it).
    let foreign = lab.world.host(&lab.switch, "foreign", "eth0", None).unwrap();
    let name = lab.world.name_of("foreign");
    let st = Command::new("ip")
        .args(["-n", &name, "addr", "add", "fd00::11/64", "dev", "eth0", "nodad"])
        .status()
        .unwrap();
    assert!(st.success());
    let foreign_mac = link(&foreign.netns, "eth0").unwrap().mac.unwrap().to_string();
    let started = Instant::now();
    let (ok, found) = wire_findings(&lab);
    eprintln!("doctor --wire, one IPv6 conflict: {:?}", started.elapsed());
    assert!(!ok);
    assert_eq!(found.len(), 1, "only the IPv6 address is another's: {found:?}");
    let problem = found[0]["problem"].as_str().unwrap();
    assert!(problem.contains("fd00::11") && problem.contains(&foreign_mac), "{problem}");
    drop(c1);
}

/// The tentative addresses of namespace `ns`.
fn tentative(ns: &str) -> String {
    let out = Command::new("ip").args(["-n", ns, "-6", "addr", "show", "tentative"]).output();
    String::from_utf8_lossy(&out.unwrap().stdout).trim().to_string()
}

#[test]
fn a_switch_dropping_new_macs_gives_the_forged_transmits_finding() {
    let lab = Lab::new("wireforged");
    lab.lan("lan", &[]);
    let forged = |found: &[Value]| {
        found.iter().any(|f| f["problem"].as_str().unwrap().contains("frames from new MACs"))
    };

    // An ordinary learning bridge forwards any MAC: nothing to report.
    let started = Instant::now();
    let (ok, found) = wire_findings(&lab);
    eprintln!("doctor --wire, new MACs forwarded: {:?}", started.elapsed());
    assert!(ok && found.is_empty(), "{found:?}");
    no_scratch_left(&lab);

    // Port security: the host's port forwards only frames from eth0's own
    // MAC (a static entry), as a vSwitch rejecting forged transmits does.
    let mac = link(&lab.host.netns, "eth0").unwrap().mac.unwrap().to_string();
    let port = lab.host.switch_port.as_str();
    bridge(&lab, &["link", "set", "dev", port, "learning", "off", "locked", "on"]);
    bridge(&lab, &["fdb", "replace", &mac, "dev", port, "master", "static"]);
    let started = Instant::now();
    let (ok, found) = wire_findings(&lab);
    eprintln!("doctor --wire, new MACs dropped: {:?}", started.elapsed());
    assert!(!ok);
    assert!(forged(&found), "{found:?}");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0]["fix"].as_str().unwrap().contains("ipvlan"), "{found:?}");
    no_scratch_left(&lab);
}

#[test]
fn a_passthru_network_is_asked_without_a_scratch_link() {
    // A passthru child owns its parent: the parent takes no second child,
    // so the forged-transmits probe does not apply, and is no error.
    let mut lab = Lab::new("wirepassthru");
    lab.lan("pt", &["--mode", "passthru"]);
    let (_c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "pt", "--netns", &n1, "--ip", "192.168.0.11"]);
    let out = lab.run(&["doctor", "--wire"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim().lines().count(), 1, "{stdout}");
    no_scratch_left(&lab);
}
