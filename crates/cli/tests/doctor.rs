//! `nicslice doctor`: drift made by hand in the namespace world is found with
//! the right finding, `--fix` repairs what is safe, and a healthy system gets
//! one line and exit status 0.

mod common;

use common::*;
use nicslice_kernel::RouteSocket;
use serde_json::Value;

fn findings(lab: &Lab, fix: bool) -> (bool, Vec<Value>) {
    let mut args = vec!["doctor", "--json"];
    if fix {
        args.push("--fix");
    }
    let out = lab.run(&args);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    (out.status.success(), list.as_array().unwrap().clone())
}

#[test]
fn doctor_finds_drift_and_fix_repairs_what_is_safe() {
    let mut lab = Lab::new("doctor");
    lab.lan("lan", &["--promisc"]);
    let (c1, n1) = lab.netns("c1");
    let (c2, n2) = lab.netns("c2");
    let a1 = lab.json(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    lab.ok(&["attach", "lan", "--netns", &n2, "--ip", "192.168.0.12"]);
    lab.ok(&["shim", "add", "lan"]);
    let healthy = lab.ok(&["doctor"]);
    assert_eq!(healthy.trim().lines().count(), 1, "{healthy}");

    // Drift by hand: promiscuous mode off, the shim deleted, c1's link
    // deleted, c2's namespace deleted.
    let mut host = RouteSocket::open_in(&lab.host.netns).unwrap();
    let eth0 = host.require_link("eth0", "host").unwrap();
    host.set_promisc(eth0.index, false).unwrap();
    let shim = lab.json(&["shim", "ls"])[0]["name"].as_str().unwrap().to_string();
    host.delete_link_by_name(&shim).unwrap();
    RouteSocket::open_in(&c1).unwrap().delete_link_by_name("eth0").unwrap();
    drop(c2);
    nicslice_kernel::netns::delete_named(&n2).unwrap();

    let (ok, found) = findings(&lab, false);
    assert!(!ok, "doctor exits 1 while anything is left");
    let about =
        |needle: &str| found.iter().any(|f| f["problem"].as_str().unwrap().contains(needle));
    assert!(about("promiscuous mode was asked"), "{found:?}");
    assert!(about(&format!("shim {shim} is missing")), "{found:?}");
    assert!(about("interface eth0 not found"), "{found:?}");
    assert!(about("is gone"), "{found:?}");
    assert!(found.iter().all(|f| f["repairable"] == true), "{found:?}");

    let (ok, fixed) = findings(&lab, true);
    assert!(ok, "every finding repaired: {fixed:?}");
    assert!(fixed.iter().all(|f| f["repaired"] == true), "{fixed:?}");
    assert!(link(&lab.host.netns, "eth0").unwrap().promisc_flag);
    assert!(link(&lab.host.netns, &shim).is_some(), "the shim is back");
    let eth0 = link(&c1, "eth0").expect("c1's link is back");
    assert_eq!(eth0.mac.map(|m| m.to_string()), a1["mac"].as_str().map(String::from));
    assert!(addresses(&c1, "eth0").contains(&"192.168.0.11/24".to_string()));
    assert!(ping(&lab.host.netns, "192.168.0.11"), "through the shim made again");
    // c2's lease was released: its address is free again.
    let eps = lab.json(&["endpoint", "ls"]);
    assert_eq!(eps.as_array().unwrap().len(), 1, "{eps}");
    let (_c3, n3) = lab.netns("c3");
    lab.ok(&["attach", "lan", "--netns", &n3, "--ip", "192.168.0.12"]);
    assert_eq!(lab.ok(&["doctor"]).trim().lines().count(), 1);
}

#[test]
fn a_down_parent_is_reported_not_touched() {
    let lab = Lab::new("doctordown");
    lab.lan("lan", &[]);
    let mut host = RouteSocket::open_in(&lab.host.netns).unwrap();
    let eth0 = host.require_link("eth0", "host").unwrap();
    host.set_up(eth0.index, false).unwrap();
    let (ok, found) = findings(&lab, true);
    assert!(!ok);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0]["problem"].as_str().unwrap().contains("eth0 is down"));
    assert_eq!(found[0]["repairable"], false);
    assert!(!link(&lab.host.netns, "eth0").unwrap().up, "doctor --fix leaves the user's NIC alone");
}

#[test]
fn restore_after_a_simulated_reboot_is_idempotent() {
    let mut lab = Lab::new("restore");
    lab.lan("lan", &["--promisc", "--host-access"]);
    let (c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    let shim = lab.json(&["shim", "ls"])[0]["name"].as_str().unwrap().to_string();
    // A reboot: links nicslice made and the namespaces are gone, promiscuous
    // mode is off.
    let mut host = RouteSocket::open_in(&lab.host.netns).unwrap();
    let eth0 = host.require_link("eth0", "host").unwrap();
    host.set_promisc(eth0.index, false).unwrap();
    host.delete_link_by_name(&shim).unwrap();
    drop(c1);
    nicslice_kernel::netns::delete_named(&n1).unwrap();

    let out = lab.ok(&["restore"]);
    assert_eq!(out.lines().filter(|l| l.starts_with("restored: ")).count(), 3, "{out}");
    assert!(link(&lab.host.netns, &shim).is_some());
    assert!(link(&lab.host.netns, "eth0").unwrap().promisc_flag);
    assert!(lab.json(&["endpoint", "ls"]).as_array().unwrap().is_empty());
    // Again: nothing to do.
    assert_eq!(lab.ok(&["restore"]).trim(), "");
}

#[test]
fn install_systemd_writes_its_units_and_never_replaces_a_foreign_file() {
    let lab = Lab::new("units");
    let dir = std::env::temp_dir().join(format!("{}-units", lab.world.prefix()));
    let out = lab.ok(&["install-systemd", dir.to_str().unwrap()]);
    assert!(out.contains("systemctl enable nicslice-restore.service"), "{out}");
    assert!(out.contains("optional"), "the events unit is not enabled by default: {out}");
    let unit = std::fs::read_to_string(dir.join("nicslice-restore.service")).unwrap();
    assert!(unit.contains("After=network-online.target"), "{unit}");
    assert!(unit.contains(&format!("--state {} restore", lab.state.display())), "{unit}");
    let events = std::fs::read_to_string(dir.join("nicslice-events.service")).unwrap();
    assert!(events.contains("Type=simple"), "{events}");
    assert!(
        events.contains(&format!("--state {} events --fix\n", lab.state.display())),
        "{events}"
    );
    assert!(events.contains("Restart=on-failure"), "{events}");
    assert!(events.contains("After=nicslice-restore.service"), "{events}");
    // install-systemd enables nothing: no wants link beside the units.
    assert!(!dir.join("multi-user.target.wants").exists());
    lab.ok(&["install-systemd", dir.to_str().unwrap()]); // its own files: replaced
    // A foreign file of either name: refused, and neither file is touched.
    for (foreign, other) in [
        ("nicslice-restore.service", "nicslice-events.service"),
        ("nicslice-events.service", "nicslice-restore.service"),
    ] {
        std::fs::write(dir.join(foreign), "[Unit]\nDescription=mine\n").unwrap();
        std::fs::remove_file(dir.join(other)).unwrap();
        lab.fails(&["install-systemd", dir.to_str().unwrap()], "nicslice did not write it");
        assert!(std::fs::read_to_string(dir.join(foreign)).unwrap().contains("mine"));
        assert!(!dir.join(other).exists(), "nothing written when one file is foreign");
        std::fs::remove_file(dir.join(foreign)).unwrap();
        lab.ok(&["install-systemd", dir.to_str().unwrap()]);
    }
    let _ = std::fs::remove_dir_all(dir);
}
