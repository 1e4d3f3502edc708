//! Seed 003 for every macvlan mode, through the CLI on the real kernel: who
//! reaches the switch, a sibling and the parent; hairpin on the switch port
//! for vepa and private; passthru taking the parent's MAC and refusing a
//! second child; source mode accepting only listed MACs; macvtap's tap device.

mod common;

use common::*;
use nicslice_kernel::RouteSocket;

/// A network in `mode` with children c1 (.11) and c2 (.12); returns them.
fn two_children(lab: &mut Lab, mode: &str) -> (nicslice_kernel::Netns, nicslice_kernel::Netns) {
    lab.lan("m", &["--mode", mode]);
    let (c1, n1) = lab.netns("c1");
    let (c2, n2) = lab.netns("c2");
    lab.ok(&["attach", "m", "--netns", &n1, "--ip", "192.168.0.11"]);
    lab.ok(&["attach", "m", "--netns", &n2, "--ip", "192.168.0.12"]);
    assert_eq!(link(&c1, "eth0").unwrap().macvlan.unwrap().mode.unwrap().to_string(), mode);
    (c1, c2)
}

fn set_hairpin(lab: &Lab, on: bool) {
    let mut sw = RouteSocket::open_in(&lab.switch).unwrap();
    let port = sw.require_link(&lab.host.switch_port, "switch").unwrap();
    sw.set_bridge_port_hairpin(port.index, on).unwrap();
}

#[test]
fn bridge_siblings_talk_inside_the_kernel() {
    let mut lab = Lab::new("bridge");
    let (c1, _c2) = two_children(&mut lab, "bridge");
    assert!(ping(&c1, "192.168.0.1"), "switch");
    assert!(ping(&c1, "192.168.0.12"), "sibling");
    assert!(!ping(&c1, "192.168.0.254"), "parent");
}

#[test]
fn vepa_siblings_need_hairpin_on_the_switch_port() {
    let mut lab = Lab::new("vepa");
    let (c1, _c2) = two_children(&mut lab, "vepa");
    assert!(ping(&c1, "192.168.0.1"), "switch");
    assert!(!ping(&c1, "192.168.0.12"), "sibling without hairpin");
    assert!(!ping(&c1, "192.168.0.254"), "parent");
    set_hairpin(&lab, true);
    assert!(ping(&c1, "192.168.0.12"), "sibling with hairpin");
}

#[test]
fn private_siblings_never_talk_even_with_hairpin() {
    let mut lab = Lab::new("private");
    let (c1, _c2) = two_children(&mut lab, "private");
    assert!(ping(&c1, "192.168.0.1"), "switch");
    assert!(!ping(&c1, "192.168.0.12"), "sibling");
    set_hairpin(&lab, true);
    assert!(!ping(&c1, "192.168.0.12"), "sibling even with hairpin");
    assert!(!ping(&c1, "192.168.0.254"), "parent");
}

#[test]
fn passthru_takes_the_parent_mac_and_refuses_a_second_child() {
    let mut lab = Lab::new("passthru");
    lab.lan("pt", &["--mode", "passthru"]);
    let parent_mac = link(&lab.host.netns, "eth0").unwrap().mac;
    let (c1, n1) = lab.netns("c1");
    let (c2, n2) = lab.netns("c2");
    lab.ok(&["attach", "pt", "--netns", &n1, "--ip", "192.168.0.11"]);
    assert_eq!(
        link(&c1, "eth0").unwrap().mac,
        parent_mac,
        "passthru child carries the parent's MAC"
    );
    assert!(ping(&c1, "192.168.0.1"), "switch");
    assert!(!ping(&c1, "192.168.0.254"), "parent");
    lab.fails(&["attach", "pt", "--netns", &n2], "passthru");
    assert!(non_lo(&c2).is_empty());
    lab.fails(
        &["network", "create", "other", "--parent", "eth0", "--subnet", "10.9.0.0/24"],
        "passthru network pt already holds it",
    );
}

#[test]
fn passthru_is_refused_beside_an_existing_network() {
    let lab = Lab::new("ptbeside");
    lab.ok(&["network", "create", "a", "--parent", "eth0", "--subnet", "10.1.0.0/24"]);
    lab.fails(
        &[
            "network",
            "create",
            "b",
            "--parent",
            "eth0",
            "--mode",
            "passthru",
            "--subnet",
            "10.2.0.0/24",
        ],
        "passthru",
    );
}

fn switch_mac(lab: &Lab) -> String {
    link(&lab.switch, "br0").unwrap().mac.unwrap().to_string()
}

#[test]
fn source_mode_receives_only_from_listed_macs() {
    let mut lab = Lab::new("source");
    lab.lan("src", &["--mode", "source"]);
    let (c1, n1) = lab.netns("c1");
    let sw = switch_mac(&lab);
    let a = lab.json(&[
        "attach",
        "src",
        "--netns",
        &n1,
        "--ip",
        "192.168.0.11",
        "--source-mac",
        "02:11:22:33:44:55",
    ]);
    assert_eq!(a["source_macs"][0], "02:11:22:33:44:55");
    let listed = link(&c1, "eth0").unwrap().macvlan.unwrap().source_macs;
    assert_eq!(listed.iter().map(|m| m.to_string()).collect::<Vec<_>>(), vec!["02:11:22:33:44:55"]);
    assert!(!ping(&c1, "192.168.0.1"), "the switch's replies come from a MAC not on the list");

    lab.ok(&["endpoint", "macaddr", "src", "add", &sw, "--netns", &n1]);
    let listed = link(&c1, "eth0").unwrap().macvlan.unwrap().source_macs;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(ping(&c1, "192.168.0.1"), "with the switch's MAC listed");
    assert!(!ping(&c1, "192.168.0.254"), "parent");

    lab.ok(&["endpoint", "macaddr", "src", "set", &sw, "--netns", &n1]);
    assert_eq!(link(&c1, "eth0").unwrap().macvlan.unwrap().source_macs.len(), 1);
    let eps = lab.json(&["endpoint", "ls", "src"]);
    assert_eq!(eps[0]["source_macs"], serde_json::json!([sw]));
    lab.ok(&["endpoint", "macaddr", "src", "flush", "--netns", &n1]);
    assert!(link(&c1, "eth0").unwrap().macvlan.unwrap().source_macs.is_empty());
    lab.fails(&["endpoint", "macaddr", "src", "add", "--netns", &n1], "needs at least one MAC");
}

#[test]
fn source_nodst_takes_the_listed_peer_away_from_the_parent() {
    let mut lab = Lab::new("nodst");
    let host_ping = |lab: &Lab| ping(&lab.host.netns, "192.168.0.1");
    assert!(host_ping(&lab), "the parent reaches the switch before");
    lab.lan("src", &["--mode", "source", "--flag", "nodst"]);
    let (c1, n1) = lab.netns("c1");
    let sw = switch_mac(&lab);
    lab.ok(&["attach", "src", "--netns", &n1, "--ip", "192.168.0.11", "--source-mac", &sw]);
    assert!(link(&c1, "eth0").unwrap().macvlan.unwrap().flags.nodst);
    assert!(ping(&c1, "192.168.0.1"), "child reaches the switch");
    assert!(!host_ping(&lab), "with nodst the parent no longer sees the switch's frames");
}

#[test]
fn children_follow_their_parent_down_and_away() {
    let mut lab = Lab::new("parent");
    let (c1, c2) = two_children(&mut lab, "bridge");
    let mut host = RouteSocket::open_in(&lab.host.netns).unwrap();
    let parent = host.require_link("eth0", "host").unwrap();
    host.set_up(parent.index, false).unwrap();
    assert!(!link(&c1, "eth0").unwrap().lower_up, "parent down: child has no carrier");
    assert!(!ping(&c1, "192.168.0.12"), "parent down: siblings cut off too");
    let detail = lab.json(&["network", "inspect", "m"]);
    assert_eq!(detail["parent_state"]["up"], false);
    host.set_up(parent.index, true).unwrap();
    // The carrier comes back through the kernel's link watch, within a second.
    let carrier = || [&c1, &c2].iter().all(|ns| link(ns, "eth0").unwrap().lower_up);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while !carrier() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(carrier(), "parent up: the children's carrier is back");
    assert!(ping(&c1, "192.168.0.12"), "children come back with the parent");

    // Deleting the parent deletes every child, in whatever namespace.
    let mut sw = RouteSocket::open_in(&lab.switch).unwrap();
    sw.delete_link_by_name(&lab.host.switch_port).unwrap();
    assert!(link(&c1, "eth0").is_none(), "child deleted with its parent");
    let detail = lab.json(&["network", "inspect", "m"]);
    assert_eq!(detail["parent_state"]["exists"], false);
    // Cleaning up still works when the links are gone.
    lab.ok(&["network", "rm", "m", "--force"]);
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 0);
}

#[test]
fn macvtap_endpoint_reports_its_tap_device() {
    let mut lab = Lab::new("macvtap");
    lab.ok(&[
        "network",
        "create",
        "vm",
        "--driver",
        "macvtap",
        "--parent",
        "eth0",
        "--subnet",
        "192.168.0.0/24",
        "--gateway",
        "192.168.0.1",
    ]);
    let (c1, n1) = lab.netns("c1");
    let a = lab.json(&["attach", "vm", "--netns", &n1, "--ip", "192.168.0.11"]);
    let l = link(&c1, "eth0").unwrap();
    assert_eq!(l.kind.as_deref(), Some("macvtap"));
    let tap = a["tap_device"].as_str().expect("tap device reported");
    assert_eq!(tap, format!("/dev/tap{}", l.index));
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(tap).unwrap().file_type().is_char_device());
    assert!(ping(&c1, "192.168.0.1"), "a macvtap child with an address works like a macvlan one");
    lab.ok(&["detach", "vm", "--netns", &n1]);
    assert!(link(&c1, "eth0").is_none());
}

#[test]
fn link_settings_reach_the_kernel() {
    let mut lab = Lab::new("settings");
    let settings = ["--mode", "private", "--mtu", "1400", "--bcqueuelen", "2000"];
    let with_bclim = [&settings[..], &["--bclim", "5"]].concat();
    let mut create = vec!["network", "create", "s", "--parent", "eth0"];
    create.extend(["--subnet", "192.168.0.0/24", "--gateway", "192.168.0.1"]);
    let out = lab.run(&[&create[..], &with_bclim].concat());
    let (c1, n1) = lab.netns("c1");
    if !out.status.success() {
        // Kernels before 6.4 have no broadcast cutoff: refused at create, nothing recorded.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("bclim needs Linux 6.4"), "{err}");
        assert_eq!(lab.json(&["network", "ls"]).as_array().unwrap().len(), 0);
        lab.lan("s", &settings);
    }
    lab.ok(&["attach", "s", "--netns", &n1, "--mac", "02:42:c0:a8:00:0b"]);
    let l = link(&c1, "eth0").unwrap();
    assert_eq!(l.mtu, 1400);
    assert_eq!(l.mac.unwrap().to_string(), "02:42:c0:a8:00:0b");
    let m = l.macvlan.unwrap();
    assert_eq!(m.mode, Some(nicslice_model::MacvlanMode::Private));
    assert_eq!(m.bcqueuelen, Some(2000));
    if out.status.success() {
        assert_eq!(m.bclim, Some(5));
    }
    // The parent's MAC on a child collides (EADDRINUSE): refused with advice, nothing left.
    let parent_mac = link(&lab.host.netns, "eth0").unwrap().mac.unwrap().to_string();
    let (c2, n2) = lab.netns("c2");
    lab.fails(&["attach", "s", "--netns", &n2, "--mac", &parent_mac], "is the MAC of parent eth0");
    assert!(non_lo(&c2).is_empty());
}

#[test]
fn a_mac_taken_by_a_sibling_is_refused() {
    let mut lab = Lab::new("dupmac");
    lab.ok(&["network", "create", "s", "--parent", "eth0", "--subnet", "192.168.0.0/24"]);
    let (_c1, n1) = lab.netns("c1");
    let (c2, n2) = lab.netns("c2");
    lab.ok(&["attach", "s", "--netns", &n1, "--mac", "02:42:c0:a8:00:0b"]);
    lab.fails(
        &["attach", "s", "--netns", &n2, "--mac", "02:42:c0:a8:00:0b"],
        "already used by eth0",
    );
    assert!(non_lo(&c2).is_empty());
}
