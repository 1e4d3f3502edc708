//! Namespace targets other than iproute2 names (a container's pid, a path to a
//! namespace file), and the announcement after attach: a neighbour that cached
//! an address's old MAC learns the new one without any traffic of its own.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::*;
use nicslice_kernel::RouteSocket;

#[test]
fn attach_by_pid_and_by_path() {
    let mut lab = Lab::new("pid");
    lab.lan("lan", &[]);
    let (ns, name) = lab.netns("ctr");
    // A "container": a process living in that namespace.
    let ns_file = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
    let mut cmd = Command::new("sleep");
    cmd.arg("30").stdout(Stdio::null());
    // SAFETY: setns is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::setns(&ns_file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id().to_string();
    let out = lab.json(&["attach", "lan", "--pid", &pid, "--ip", "192.168.0.21"]);
    assert_eq!(out["netns"], format!("/proc/{pid}/ns/net"));
    assert_eq!(addresses(&ns, "eth0"), vec!["192.168.0.21/24"]);
    // The same namespace by path is the same endpoint (namespace identity, not spelling).
    lab.fails(&["attach", "lan", "--netns", &format!("/run/netns/{name}")], "already exists");
    lab.ok(&["detach", "lan", "--netns", &format!("/run/netns/{name}")]);
    assert!(link(&ns, "eth0").is_none());
    child.kill().unwrap();
    child.wait().unwrap();
    lab.fails(&["attach", "lan", "--pid", &pid], &format!("no process {pid}"));
}

fn neighbour_mac(ns: &nicslice_kernel::Netns, ip: &str) -> Option<String> {
    RouteSocket::open_in(ns)
        .unwrap()
        .neighbours()
        .unwrap()
        .into_iter()
        .find(|(a, _)| a.to_string() == ip)
        .map(|(_, m)| m.to_string())
}

#[test]
fn reattach_announces_the_new_mac() {
    let mut lab = Lab::new("garp");
    lab.lan("lan", &[]);
    let (c1, n1) = lab.netns("c1");
    let first = lab.json(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.21"]);
    assert!(ping(&c1, "192.168.0.1"));
    assert_eq!(neighbour_mac(&lab.switch, "192.168.0.21").as_deref(), first["mac"].as_str());
    lab.ok(&["detach", "lan", "--netns", &n1]);
    let second = lab.json(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.21"]);
    assert_ne!(first["mac"], second["mac"]);
    // No traffic from the switch: only the gratuitous ARP can have told it.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(neighbour_mac(&lab.switch, "192.168.0.21").as_deref(), second["mac"].as_str());
}
