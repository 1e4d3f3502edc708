//! A real reboot (`vmtest/run.sh vm_reboot`): the VM boots twice with one
//! disk, whose ext4 file system is nicslice's state directory
//! (/var/lib/nicslice). Boot 1 makes an internal network (a dummy parent
//! nicslice owns) and a VLAN network (an 802.1Q sub-interface of that dummy,
//! which nicslice owns too), each in promiscuous mode with a shim and an
//! endpoint in a namespace, and writes the systemd units; the VM powers off.
//! Boot 2 starts from a fresh kernel with only the disk: the unit's own
//! command (`nicslice restore`, as ExecStart says) must bring back both
//! parents, their promiscuous mode and the shims, and release the endpoints
//! whose namespace did not survive; a second run changes nothing. On the
//! host, and in a single-boot VM run, it only says so and returns.

use std::path::Path;
use std::process::Command;

use nicslice_kernel::{Link, Netns, RouteSocket};
use serde_json::Value;

const STATE_DIR: &str = "/var/lib/nicslice";
const PARENT: &str = "vmdummy0";
/// VLAN 50 on the dummy. Its network, "avlan", sorts before the dummy's
/// ("lan"): restore must make the dummy first all the same.
const VLAN: &str = "vmdummy0.50";
const NETNS: &str = "vmreboot-c1";

fn nicslice(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nicslice")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "nicslice {args:?}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&nicslice(&all)).unwrap()
}

fn link(name: &str) -> Option<Link> {
    RouteSocket::open_in(&Netns::current().unwrap()).unwrap().link_by_name(name).unwrap()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap().trim().to_string()
}

fn saved(name: &str) -> std::path::PathBuf {
    Path::new(STATE_DIR).join(format!("vm-reboot.{name}"))
}

#[test]
fn restore_after_a_real_reboot() {
    let Some(boot) = std::env::var_os("NICSLICE_VM_BOOT") else {
        println!("vm_reboot runs only in vmtest/run.sh vm_reboot's two boots; skipped");
        return;
    };
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(mounts.contains(&format!(" {STATE_DIR} ext4 ")), "the state disk is not mounted");
    match boot.to_str() {
        Some("1") => first_boot(),
        Some("2") => second_boot(),
        other => panic!("unknown boot {other:?}"),
    }
}

fn first_boot() {
    assert!(!Path::new(STATE_DIR).join("state.db").exists(), "the disk is not fresh");
    nicslice(&[
        "network",
        "create",
        "lan",
        "--internal",
        "--parent",
        PARENT,
        "--subnet",
        "10.77.0.0/24",
        "--promisc",
        "--host-access",
    ]);
    nicslice(&[
        "network",
        "create",
        "avlan",
        "--parent",
        PARENT,
        "--vlan",
        "50",
        "--subnet",
        "10.78.0.0/24",
        "--promisc",
        "--host-access",
    ]);
    let _ns = nicslice_kernel::netns::create_named(NETNS).unwrap();
    nicslice(&["attach", "lan", "--netns", NETNS, "--ip", "10.77.0.11"]);
    nicslice(&["attach", "avlan", "--netns", NETNS, "--ifname", "eth1", "--ip", "10.78.0.11"]);
    nicslice(&["install-systemd", &format!("{STATE_DIR}/units")]);
    let parent = link(PARENT).expect("the dummy parent");
    assert_eq!(parent.kind.as_deref(), Some("dummy"));
    assert!(parent.promisc_flag);
    let vlan = link(VLAN).expect("the VLAN parent");
    assert_eq!((vlan.kind.as_deref(), vlan.vlan_id), (Some("vlan"), Some(50)));
    assert!(vlan.promisc_flag);
    for net in ["lan", "avlan"] {
        assert!(link(&shim_of(net)).is_some());
    }
    assert_eq!(json(&["endpoint", "ls"]).as_array().unwrap().len(), 2);
    std::fs::write(saved("boot1"), boot_id()).unwrap();
    println!(
        "boot 1: {PARENT} and {VLAN} promiscuous, their shims, endpoints in {NETNS}; powering off"
    );
}

/// The name of network `net`'s shim.
fn shim_of(net: &str) -> String {
    let shims = json(&["shim", "ls"]);
    let shim = shims.as_array().unwrap().iter().find(|s| s["network"] == net);
    shim.expect("a shim")["name"].as_str().unwrap().to_string()
}

fn second_boot() {
    let first = std::fs::read_to_string(saved("boot1")).expect("boot 1 left its mark");
    assert_ne!(first, boot_id(), "a new boot");
    let shim = shim_of("lan");
    let vlan_shim = shim_of("avlan");
    assert!(link(PARENT).is_none() && link(&shim).is_none(), "a fresh kernel has neither");
    assert!(link(VLAN).is_none() && link(&vlan_shim).is_none(), "nor the VLAN and its shim");

    // The unit's command, as systemd would run it.
    let unit = std::fs::read_to_string(format!("{STATE_DIR}/units/nicslice-restore.service"))
        .expect("the unit boot 1 wrote");
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
    let words: Vec<&str> = exec.split_whitespace().collect();
    let out = Command::new(words[0]).args(&words[1..]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{exec}:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());

    let parent = link(PARENT).expect("the parent is back");
    assert_eq!(parent.kind.as_deref(), Some("dummy"));
    assert!(parent.up, "up");
    assert!(parent.promisc_flag, "promiscuous mode is back");
    let shim_link = link(&shim).expect("the shim is back");
    assert_eq!(shim_link.parent_index, Some(parent.index), "on the new parent");
    let vlan = link(VLAN).expect("the VLAN parent is back");
    assert_eq!((vlan.kind.as_deref(), vlan.vlan_id), (Some("vlan"), Some(50)));
    assert_eq!(vlan.parent_index, Some(parent.index), "on the new dummy");
    assert!(vlan.up, "up");
    assert!(vlan.promisc_flag, "promiscuous mode is back on the VLAN");
    let vlan_shim_link = link(&vlan_shim).expect("the VLAN's shim is back");
    assert_eq!(vlan_shim_link.parent_index, Some(vlan.index), "on the new VLAN");
    assert!(json(&["endpoint", "ls"]).as_array().unwrap().is_empty(), "the stale ones released");
    assert!(stdout.contains(&format!("parent {PARENT}")), "{stdout}");
    assert!(stdout.contains(&format!("parent {VLAN}")), "{stdout}");
    assert!(stdout.contains(NETNS), "{stdout}");
    // The released addresses can be had again.
    let _ns = nicslice_kernel::netns::create_named(NETNS).unwrap();
    nicslice(&["attach", "lan", "--netns", NETNS, "--ip", "10.77.0.11"]);
    nicslice(&["attach", "avlan", "--netns", NETNS, "--ifname", "eth1", "--ip", "10.78.0.11"]);
    // Idempotent, and healthy.
    assert_eq!(nicslice(&["restore"]).trim(), "");
    assert_eq!(nicslice(&["doctor"]).trim().lines().count(), 1);
    println!("boot 2: restored after a real reboot");
}
