//! `nicslice doctor`: drift made by hand in the namespace world is found with
//! the right finding, `--fix` repairs what is safe, and a healthy system gets
//! one line and exit status 0.

mod common;

use common::*;
use nicslice_kernel::RouteSocket;
use nicslice_lab::world::wait_oper_up;
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

/// The findings whose problem contains `needle`.
fn about<'a>(found: &'a [Value], needle: &str) -> Vec<&'a Value> {
    found.iter().filter(|f| f["problem"].as_str().unwrap().contains(needle)).collect()
}

/// A healthy system: exit status 0 and one line.
fn assert_healthy(lab: &Lab) {
    let out = lab.run(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.trim().lines().count(), 1, "{text}");
}

/// The host's parent `eth0` and its switch port deleted (if still there),
/// then a new veth pair made as the world made the first: same names, new
/// indexes and MACs.
fn replug_parent(lab: &Lab) {
    let mut host = RouteSocket::open_in(&lab.host.netns).unwrap();
    host.delete_link_by_name("eth0").unwrap();
    let mut sw = RouteSocket::open_in(&lab.switch).unwrap();
    sw.create_veth(&lab.host.switch_port, "eth0", Some(&lab.host.netns)).unwrap();
    let port = sw.require_link(&lab.host.switch_port, "switch").unwrap();
    let br = sw.require_link("br0", "switch").unwrap();
    sw.set_master(port.index, Some(br.index)).unwrap();
    sw.set_up(port.index, true).unwrap();
    let eth0 = host.require_link("eth0", "host").unwrap();
    host.add_address(eth0.index, "192.168.0.254/24".parse().unwrap()).unwrap();
    host.set_up(eth0.index, true).unwrap();
    wait_oper_up(&mut host, eth0.index).unwrap();
    wait_oper_up(&mut sw, port.index).unwrap();
}

/// Brings `name` in `ns` up or down.
fn set_up(ns: &nicslice_kernel::Netns, name: &str, up: bool) {
    let mut sock = RouteSocket::open_in(ns).unwrap();
    let l = sock.require_link(name, "test").unwrap();
    sock.set_up(l.index, up).unwrap();
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
fn a_down_parent_is_reported_not_touched_and_clean_once_up() {
    let mut lab = Lab::new("doctordown");
    lab.lan("lan", &[]);
    let (c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    set_up(&lab.host.netns, "eth0", false);
    let (ok, found) = findings(&lab, true);
    assert!(!ok);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0]["problem"].as_str().unwrap().contains("eth0 is down"));
    assert_eq!(found[0]["repairable"], false);
    assert!(!link(&lab.host.netns, "eth0").unwrap().up, "doctor --fix leaves the user's NIC alone");

    // Up again (the user's fix): nothing left, and the child works again.
    set_up(&lab.host.netns, "eth0", true);
    let eth0 = link(&lab.host.netns, "eth0").unwrap();
    wait_oper_up(&mut RouteSocket::open_in(&lab.host.netns).unwrap(), eth0.index).unwrap();
    assert_healthy(&lab);
    assert!(ping(&c1, "192.168.0.1"));
}

#[test]
fn a_parent_without_carrier_is_reported_until_its_peer_is_up() {
    let mut lab = Lab::new("doctorcarrier");
    lab.lan("lan", &[]);
    let (_c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    // The switch's end of the veth down: eth0 is up with NO-CARRIER.
    set_up(&lab.switch, &lab.host.switch_port, false);
    let eth0 = link(&lab.host.netns, "eth0").unwrap();
    assert!(eth0.up && !eth0.lower_up, "{eth0:?}");
    let (ok, found) = findings(&lab, true);
    assert!(!ok);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(!about(&found, "eth0 has no carrier").is_empty(), "{found:?}");
    assert_eq!(found[0]["repairable"], false);
    set_up(&lab.switch, &lab.host.switch_port, true);
    wait_oper_up(&mut RouteSocket::open_in(&lab.host.netns).unwrap(), eth0.index).unwrap();
    assert_healthy(&lab);
}

#[test]
fn a_parent_recreated_gets_its_children_back_with_fix() {
    let mut lab = Lab::new("doctorrecreate");
    lab.lan("lan", &[]);
    let (c1, n1) = lab.netns("c1");
    let (c2, n2) = lab.netns("c2");
    let a1 = lab.json(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    let a2 = lab.json(&["attach", "lan", "--netns", &n2, "--ip", "192.168.0.12"]);
    let old = link(&lab.host.netns, "eth0").unwrap().index;

    // Deleted: found (the user's NIC, not nicslice's to make again).
    RouteSocket::open_in(&lab.host.netns).unwrap().delete_link_by_name("eth0").unwrap();
    let (ok, found) = findings(&lab, false);
    assert!(!ok);
    assert!(!about(&found, "eth0 does not exist").is_empty(), "{found:?}");
    assert!(link(&c1, "eth0").is_none(), "the children went with their parent");

    // Recreated under its name: a new index, found as such.
    replug_parent(&lab);
    let new = link(&lab.host.netns, "eth0").unwrap().index;
    assert_ne!(old, new);
    let (ok, found) = findings(&lab, false);
    assert!(!ok);
    let recreated = about(&found, "eth0 was recreated");
    assert_eq!(recreated.len(), 1, "{found:?}");
    assert!(recreated[0]["problem"].as_str().unwrap().contains(&format!("index {old}")));
    assert_eq!(recreated[0]["repairable"], true);
    assert_eq!(about(&found, "interface eth0 not found").len(), 2, "{found:?}");

    let (ok, fixed) = findings(&lab, true);
    assert!(ok, "{fixed:?}");
    assert!(fixed.iter().all(|f| f["repaired"] == true), "{fixed:?}");
    for (ns, made, ip) in [(&c1, &a1, "192.168.0.11/24"), (&c2, &a2, "192.168.0.12/24")] {
        let eth0 = link(ns, "eth0").expect("made again");
        assert_eq!(eth0.parent_index, Some(new), "on the new parent");
        assert_eq!(eth0.mac.map(|m| m.to_string()), made["mac"].as_str().map(String::from));
        assert!(addresses(ns, "eth0").contains(&ip.to_string()));
    }
    assert!(ping(&c1, "192.168.0.1") && ping(&c2, "192.168.0.1"));
    // The new index is recorded: nothing left.
    assert_healthy(&lab);
}

#[test]
fn a_renamed_parent_is_reported_with_advice_and_left_alone() {
    let mut lab = Lab::new("doctorrename");
    lab.lan("lan", &[]);
    let (c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    let mut host = RouteSocket::open_in(&lab.host.netns).unwrap();
    let eth0 = host.require_link("eth0", "host").unwrap();
    let rename = |host: &mut RouteSocket, to: &str| {
        host.set_up(eth0.index, false).unwrap();
        host.rename(eth0.index, to).unwrap();
        host.set_up(eth0.index, true).unwrap();
    };
    rename(&mut host, "wan0");
    let (ok, found) = findings(&lab, true);
    assert!(!ok);
    let renamed = about(&found, "eth0 was renamed wan0");
    assert_eq!(renamed.len(), 1, "{found:?}");
    assert_eq!(renamed[0]["repairable"], false);
    assert!(renamed[0]["fix"].as_str().unwrap().contains("name eth0"), "{found:?}");
    assert!(found.iter().all(|f| f["repaired"].is_null()), "nothing repaired: {found:?}");
    assert_eq!(link(&lab.host.netns, "wan0").unwrap().index, eth0.index, "left as it is");
    assert!(link(&c1, "eth0").is_some(), "the child is still there, on wan0");

    rename(&mut host, "eth0");
    wait_oper_up(&mut host, eth0.index).unwrap();
    assert_healthy(&lab);
}

#[test]
fn an_endpoint_mtu_changed_by_hand_is_found() {
    let mut lab = Lab::new("doctormtu");
    lab.lan("lan", &[]);
    let (c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    let parent_mtu = link(&lab.host.netns, "eth0").unwrap().mtu;
    let mut sock = RouteSocket::open_in(&c1).unwrap();
    let child = sock.require_link("eth0", "c1").unwrap();
    sock.set_mtu(child.index, 1280).unwrap();
    let (ok, found) = findings(&lab, true);
    assert!(!ok);
    let mtu = about(&found, &format!("has MTU 1280, not {parent_mtu} (its parent's)"));
    assert_eq!(mtu.len(), 1, "{found:?}");
    assert_eq!(mtu[0]["repairable"], false, "a choice made by hand is not overwritten");
    assert_eq!(link(&c1, "eth0").unwrap().mtu, 1280);
    sock.set_mtu(child.index, parent_mtu).unwrap();
    assert_healthy(&lab);
}

#[test]
fn an_address_changed_by_hand_is_found_and_the_recorded_one_put_back() {
    let mut lab = Lab::new("doctoraddr");
    lab.lan("lan", &[]);
    let (c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    // By hand: 192.168.0.11 replaced with 192.168.0.50 (its default route
    // goes with the last address of the subnet).
    let mut sock = RouteSocket::open_in(&c1).unwrap();
    let child = sock.require_link("eth0", "c1").unwrap();
    sock.delete_address(child.index, "192.168.0.11/24".parse().unwrap()).unwrap();
    sock.add_address(child.index, "192.168.0.50/24".parse().unwrap()).unwrap();

    let (ok, found) = findings(&lab, false);
    assert!(!ok);
    let missing = about(&found, "address 192.168.0.11 is missing");
    assert_eq!(missing.len(), 1, "{found:?}");
    assert_eq!(missing[0]["repairable"], true);
    let foreign = about(&found, "address 192.168.0.50/24 on eth0 is not one nicslice gave it");
    assert_eq!(foreign.len(), 1, "{found:?}");
    assert_eq!(foreign[0]["repairable"], false);

    // --fix puts the recorded address (and route) back and leaves the
    // user's: exit status 1 while it is there, saying so.
    let (ok, fixed) = findings(&lab, true);
    assert!(!ok, "the address added by hand is left to the user: {fixed:?}");
    assert_eq!(about(&fixed, "is missing")[0]["repaired"], true, "{fixed:?}");
    let on = addresses(&c1, "eth0");
    assert!(on.contains(&"192.168.0.11/24".to_string()), "{on:?}");
    assert!(on.contains(&"192.168.0.50/24".to_string()), "{on:?}");
    assert_eq!(default_gateway(&c1), Some("192.168.0.1".parse().unwrap()));
    let (_, left) = findings(&lab, false);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(!about(&left, "192.168.0.50/24").is_empty());

    // The user removes theirs; .50 came first, so it is the primary: keep
    // the kernel from taking the secondary .11 with it.
    c1.run(|| nicslice_kernel::sysctl::write("net/ipv4/conf/eth0/promote_secondaries", "1"))
        .unwrap()
        .unwrap();
    sock.delete_address(child.index, "192.168.0.50/24".parse().unwrap()).unwrap();
    assert_healthy(&lab);
    assert!(ping(&lab.switch, "192.168.0.11"), "the recorded address answers");
}

/// Removes the per-boot files nicslice keeps in /run/nicslice for `lab`'s
/// host namespace (named by its cookie: the shared shim's state), as a
/// reboot empties /run; another test's or the machine's are not touched.
/// Returns how many there were.
fn forget_this_boot(lab: &Lab) -> usize {
    let cookie = RouteSocket::open_in(&lab.host.netns).unwrap().netns_cookie().unwrap();
    let ours = format!("shim-{cookie:x}-");
    let Ok(dir) = std::fs::read_dir("/run/nicslice") else { return 0 };
    let mut removed = 0;
    for entry in dir.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&ours) {
            std::fs::remove_file(entry.path()).unwrap();
            removed += 1;
        }
    }
    removed
}

#[test]
fn restore_after_a_simulated_reboot_is_idempotent() {
    let mut lab = Lab::new("restore");
    lab.lan("lan", &["--promisc", "--host-access"]);
    let (c1, n1) = lab.netns("c1");
    let (c2, n2) = lab.netns("c2");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    let a2 = lab.json(&["attach", "lan", "--netns", &n2, "--ip", "192.168.0.12"]);
    let shim = lab.json(&["shim", "ls"])[0]["name"].as_str().unwrap().to_string();
    // A reboot: the links nicslice made and the namespaces are gone,
    // promiscuous mode is off, /run is empty. c1's namespace does not come
    // back; c2's is made again under its name (a unit running `ip netns add`).
    let mut host = RouteSocket::open_in(&lab.host.netns).unwrap();
    let eth0 = host.require_link("eth0", "host").unwrap();
    host.set_promisc(eth0.index, false).unwrap();
    host.delete_link_by_name(&shim).unwrap();
    for (ns, name) in [(c1, &n1), (c2, &n2)] {
        // The link first: a namespace's own go in the background, and the
        // MAC must be free on the parent for c2's endpoint made again.
        RouteSocket::open_in(&ns).unwrap().delete_link_by_name("eth0").unwrap();
        drop(ns);
        nicslice_kernel::netns::delete_named(name).unwrap();
    }
    forget_this_boot(&lab);
    let c2 = nicslice_kernel::netns::create_named(&n2).unwrap();

    // doctor tells c2's namespace is another one, and would release it.
    let (_, found) = findings(&lab, false);
    let renewed = about(&found, "a new namespace has its name");
    assert_eq!(renewed.len(), 1, "{found:?}");
    assert!(renewed[0]["fix"].as_str().unwrap().contains("release"), "{found:?}");

    let out = lab.ok(&["restore"]);
    assert_eq!(out.lines().filter(|l| l.starts_with("restored: ")).count(), 4, "{out}");
    assert!(link(&lab.host.netns, &shim).is_some());
    assert!(link(&lab.host.netns, "eth0").unwrap().promisc_flag);
    // c1's endpoint released; c2's made again in the new namespace.
    let eps = lab.json(&["endpoint", "ls"]);
    assert_eq!(eps.as_array().unwrap().len(), 1, "{eps}");
    assert_eq!(eps[0]["netns"], a2["netns"], "{eps}");
    let eth0 = link(&c2, "eth0").expect("c2's link is back");
    assert_eq!(eth0.mac.map(|m| m.to_string()), a2["mac"].as_str().map(String::from));
    assert!(addresses(&c2, "eth0").contains(&"192.168.0.12/24".to_string()));
    assert!(ping(&c2, "192.168.0.1"), "c2 reaches the switch");
    assert!(ping(&lab.host.netns, "192.168.0.12"), "and the host, through the shim");
    // Again: nothing to do.
    assert_eq!(lab.ok(&["restore"]).trim(), "");
    assert_healthy(&lab);
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
    let agent = std::fs::read_to_string(dir.join("nicslice-dhcp-agent.service")).unwrap();
    assert!(agent.contains("After=network-online.target nicslice-restore.service"), "{agent}");
    // Its ExecStart line works as written (one pass over no lease, `--once`
    // added so that it ends).
    let exec = agent.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    let words: Vec<&str> = exec.split(' ').collect();
    assert_eq!(words[1..], ["--state", lab.state.to_str().unwrap(), "dhcp-agent"], "{exec}");
    let ran =
        std::process::Command::new(words[0]).args(&words[1..]).arg("--once").output().unwrap();
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    // install-systemd enables nothing: no wants link beside the units.
    assert!(!dir.join("multi-user.target.wants").exists());
    lab.ok(&["install-systemd", dir.to_str().unwrap()]); // its own files: replaced
    // A foreign file of any of the names: refused, and no file is touched.
    let names =
        ["nicslice-restore.service", "nicslice-events.service", "nicslice-dhcp-agent.service"];
    for foreign in names {
        std::fs::write(dir.join(foreign), "[Unit]\nDescription=mine\n").unwrap();
        for other in names.iter().filter(|n| **n != foreign) {
            std::fs::remove_file(dir.join(other)).unwrap();
        }
        lab.fails(&["install-systemd", dir.to_str().unwrap()], "nicslice did not write it");
        assert!(std::fs::read_to_string(dir.join(foreign)).unwrap().contains("mine"));
        for other in names.iter().filter(|n| **n != foreign) {
            assert!(!dir.join(other).exists(), "nothing written when one file is foreign");
        }
        std::fs::remove_file(dir.join(foreign)).unwrap();
        lab.ok(&["install-systemd", dir.to_str().unwrap()]);
    }
    let _ = std::fs::remove_dir_all(dir);
}
