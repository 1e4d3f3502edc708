//! `nicslice events`: each drift made by hand — the parent down, up,
//! deleted, recreated, out of promiscuous mode; the shim deleted; an
//! endpoint's address removed, another added; an endpoint's link deleted;
//! an endpoint's namespace deleted — is reported within 100 ms of the
//! change, measured from the return of the call that made it to the moment
//! the event's line is read.
//!
//! Slack: the bound is the 100 ms; measured here 0 to 8 ms (0: the
//! line was read before the call that made the change had its answer). A
//! namespace's end is the kernel's own work, deferred to a worker
//! (`cleanup_net`): it is measured from the kernel's notification of it
//! (`RTM_DELNSID`, which the test hears too), since the worker may reach it
//! seconds after `ip netns del`'s equivalent returned (in the VM, behind
//! other namespaces' ends). The bound leaves a busy machine's scheduling
//! two orders of magnitude.
//!
//! With `--fix`, endpoints attached after the watcher started are followed
//! too: a deleted link is made again, a gone namespace's addresses released;
//! a parent deleted and recreated under its name gets its children back in
//! their namespaces (MAC, address, reachable), and promiscuous mode turned
//! off is turned on again. Without `--json`, one line per event.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use nicslice_kernel::RouteSocket;
use serde_json::Value;

const BOUND: Duration = Duration::from_millis(100);

/// The watcher's events as they are read, each with the moment it was.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<(Value, Instant)>,
}

impl Watcher {
    fn start(lab: &Lab) -> Watcher {
        Watcher::start_with(lab, &[])
    }

    fn start_with(lab: &Lab, extra: &[&str]) -> Watcher {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nicslice"))
            .args(["--state", lab.state.to_str().unwrap(), "--host-netns", &lab.host.netns_name])
            .args(["events", "--json", "--idle-exit", "60"])
            .args(extra)
            .env_remove("NICSLICE_FAIL_AT")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let at = Instant::now();
                if tx.send((serde_json::from_str(&line).unwrap(), at)).is_err() {
                    break;
                }
            }
        });
        // Until the watcher has subscribed and given the endpoints'
        // namespaces their ids, changes would go unseen.
        std::thread::sleep(Duration::from_millis(500));
        Watcher { child, lines }
    }

    /// Skips events until none came for `quiet` (the watcher's repairs
    /// done), so that the next change is measured from an idle watcher.
    fn settle(&self, quiet: Duration) {
        while self.lines.recv_timeout(quiet).is_ok() {}
    }

    /// The first `kind` event (others are skipped), and how long after
    /// `changed` it was read.
    fn after(&self, kind: &str, changed: Instant) -> (Value, Duration) {
        loop {
            let (e, at) = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no {kind} event"));
            if e["event"] == kind {
                return (e, at.saturating_duration_since(changed));
            }
        }
    }
}

impl Watcher {
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn every_drift_is_reported_within_100_ms() {
    let mut lab = Lab::new("evdrift");
    lab.lan("lan", &["--promisc", "--host-access"]);
    let shim = lab.json(&["shim", "ls"])[0]["name"].as_str().unwrap().to_string();
    let (c1, n1) = lab.netns("c1");
    let (c2, n2) = lab.netns("c2");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    lab.ok(&["attach", "lan", "--netns", &n2, "--ip", "192.168.0.12"]);
    let watcher = Watcher::start(&lab);
    let mut host = RouteSocket::open_in(&lab.host.netns).unwrap();
    let eth0 = host.require_link("eth0", "host").unwrap();
    let mut delays = Vec::new();
    let mut check = |kind: &str, changed: Instant, about: &str| {
        let (e, delay) = watcher.after(kind, changed);
        println!("{kind}: reported {delay:?} after the change");
        assert!(e["networks"].as_array().unwrap().iter().any(|n| n == "lan"), "{e}");
        let endpoints = e["endpoints"].to_string();
        assert!(endpoints.contains(about), "{kind} names {about}: {e}");
        delays.push((kind.to_string(), delay));
        e
    };

    host.set_up(eth0.index, false).unwrap();
    check("parent-down", Instant::now(), &n1);
    host.set_up(eth0.index, true).unwrap();
    check("parent-up", Instant::now(), &n2);
    host.set_promisc(eth0.index, false).unwrap();
    check("promisc-lost", Instant::now(), &n1);

    let mut in_c1 = RouteSocket::open_in(&c1).unwrap();
    let c1_eth0 = in_c1.require_link("eth0", "c1").unwrap();
    in_c1.delete_address(c1_eth0.index, "192.168.0.11/24".parse().unwrap()).unwrap();
    check("address-removed", Instant::now(), &n1);
    // An address with a lifetime is what SLAAC or a DHCP client adds, not
    // a hand: not reported (the permanent one after it is the first).
    in_c1.set_address_lifetime(c1_eth0.index, "192.168.0.98/24".parse().unwrap(), 600).unwrap();
    in_c1.add_address(c1_eth0.index, "192.168.0.99/24".parse().unwrap()).unwrap();
    let added = check("address-added", Instant::now(), &n1);
    assert!(added["message"].as_str().unwrap().contains("192.168.0.99/24"), "{added}");

    host.delete_link_by_name(&shim).unwrap();
    check("shim-removed", Instant::now(), &n1);

    RouteSocket::open_in(&c1).unwrap().delete_link_by_name("eth0").unwrap();
    check("endpoint-link-removed", Instant::now(), &n1);

    // A namespace ends when the kernel's worker gets to it (`cleanup_net`,
    // queued behind other namespaces' ends: seconds in the VM when another
    // test of this file tears its world down at the same time). Measured,
    // as the issue puts it, from the kernel's notification, which this
    // test hears itself.
    let mut kernel = nicslice_kernel::events::LinkEvents::open_in(&lab.host.netns).unwrap();
    let nsid = host.nsid_of(&c2).unwrap();
    drop(c2); // the test's own handle would keep the namespace alive
    nicslice_kernel::netns::delete_named(&n2).unwrap();
    let notified = loop {
        let events = kernel.next(Some(Duration::from_secs(30))).unwrap();
        assert!(!events.is_empty(), "the kernel said nothing of {n2}'s end in 30 s");
        if events.contains(&nicslice_kernel::events::LinkEvent::NamespaceGone(nsid)) {
            break Instant::now();
        }
    };
    check("namespace-gone", notified, &n2);

    host.delete_link(eth0.index).unwrap();
    check("parent-deleted", Instant::now(), &n1);
    let mut sw = RouteSocket::open_in(&lab.switch).unwrap();
    sw.create_veth("p-host2", "eth0", Some(&lab.host.netns)).unwrap();
    check("parent-recreated", Instant::now(), &n1);

    for (kind, delay) in &delays {
        assert!(*delay < BOUND, "{kind} took {delay:?}: {delays:?}");
    }
}

#[test]
fn fix_follows_endpoints_attached_later_and_repairs_them() {
    let mut lab = Lab::new("evfix");
    lab.lan("lan", &[]);
    let mut watcher = Watcher::start_with(&lab, &["--fix"]);
    // Attached after the watcher started: adopted at its next reading of
    // the record (every 2 s without events).
    let (c1, n1) = lab.netns("c1");
    let (c2, n2) = lab.netns("c2");
    let a1 = lab.json(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    lab.ok(&["attach", "lan", "--netns", &n2, "--ip", "192.168.0.12"]);
    std::thread::sleep(Duration::from_millis(2500));

    RouteSocket::open_in(&c1).unwrap().delete_link_by_name("eth0").unwrap();
    watcher.after("endpoint-link-removed", Instant::now());
    let (repaired, _) = watcher.after("repaired", Instant::now());
    assert!(repaired["message"].as_str().unwrap().starts_with("repaired: endpoint"), "{repaired}");
    let eth0 = link(&c1, "eth0").expect("--fix made c1's link again");
    assert_eq!(eth0.mac.map(|m| m.to_string()), a1["mac"].as_str().map(String::from));
    assert!(addresses(&c1, "eth0").contains(&"192.168.0.11/24".to_string()));

    drop(c2);
    nicslice_kernel::netns::delete_named(&n2).unwrap();
    watcher.after("namespace-gone", Instant::now());
    let (released, _) = watcher.after("repaired", Instant::now());
    assert!(released["message"].as_str().unwrap().contains(&n2), "{released}");
    let eps = lab.json(&["endpoint", "ls"]);
    assert_eq!(eps.as_array().unwrap().len(), 1, "c2's addresses released: {eps}");
    watcher.stop();
}

#[test]
fn fix_brings_back_the_children_of_a_recreated_parent() {
    let mut lab = Lab::new("evparent");
    lab.lan("lan", &["--promisc"]);
    let (c1, n1) = lab.netns("c1");
    let (c2, n2) = lab.netns("c2");
    let a1 = lab.json(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    let a2 = lab.json(&["attach", "lan", "--netns", &n2, "--ip", "192.168.0.12"]);
    let mut watcher = Watcher::start_with(&lab, &["--fix"]);
    let mut host = RouteSocket::open_in(&lab.host.netns).unwrap();
    let eth0 = host.require_link("eth0", "host").unwrap();
    let mut delays = Vec::new();

    // Promiscuous mode turned off by hand: reported, and turned on again.
    host.set_promisc(eth0.index, false).unwrap();
    delays.push(("promisc-lost", watcher.after("promisc-lost", Instant::now()).1));
    let (repaired, _) = watcher.after("repaired", Instant::now());
    assert!(
        repaired["message"].as_str().unwrap().starts_with("repaired: parent eth0"),
        "{repaired}"
    );
    assert!(link(&lab.host.netns, "eth0").unwrap().promisc_flag, "--fix turned it on again");

    // The parent deleted (its children with it), then made again under its
    // name: a new veth from the switch.
    host.delete_link(eth0.index).unwrap();
    watcher.after("parent-deleted", Instant::now());
    // The children's deletions come too, and their repair fails while the
    // parent is missing: measure the recreation from an idle watcher.
    watcher.settle(Duration::from_millis(700));
    assert!(link(&c1, "eth0").is_none() && link(&c2, "eth0").is_none());
    let mut sw = RouteSocket::open_in(&lab.switch).unwrap();
    sw.create_veth("p-host2", "eth0", Some(&lab.host.netns)).unwrap();
    let changed = Instant::now();
    let (e, delay) = watcher.after("parent-recreated", changed);
    delays.push(("parent-recreated", delay));
    assert!(e["endpoints"].to_string().contains(&n1) && e["endpoints"].to_string().contains(&n2));
    // Wire the new parent as the world's was: a port of the switch, up.
    let port = sw.require_link("p-host2", "switch").unwrap();
    let br = sw.require_link("br0", "switch").unwrap();
    sw.set_master(port.index, Some(br.index)).unwrap();
    sw.set_up(port.index, true).unwrap();
    let eth0 = host.require_link("eth0", "host").unwrap();
    host.set_up(eth0.index, true).unwrap();
    nicslice_lab::world::wait_oper_up(&mut host, eth0.index).unwrap();

    // Both children are made again, each in its own namespace.
    let mut back = 0;
    while back < 2 {
        let (r, _) = watcher.after("repaired", Instant::now());
        if r["message"].as_str().unwrap().starts_with("repaired: endpoint") {
            back += 1;
        }
    }
    for (ns, attached, ip) in [(&c1, &a1, "192.168.0.11"), (&c2, &a2, "192.168.0.12")] {
        let l = link(ns, "eth0").expect("--fix made the child again in its namespace");
        assert_eq!(l.mac.map(|m| m.to_string()), attached["mac"].as_str().map(String::from));
        assert!(addresses(ns, "eth0").contains(&format!("{ip}/24")), "{ip}");
        assert!(ping(&lab.switch, ip), "{ip} answers through the recreated parent");
    }
    assert!(link(&lab.host.netns, "eth0").unwrap().promisc_flag, "the new parent is promiscuous");
    watcher.stop();
    println!("{delays:?}");
    for (kind, delay) in &delays {
        assert!(*delay < BOUND, "{kind} took {delay:?}: {delays:?}");
    }
}

#[test]
fn without_json_each_event_is_one_line() {
    let mut lab = Lab::new("evplain");
    lab.lan("lan", &[]);
    let (_c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    let recorded = lab.json(&["endpoint", "ls"])[0]["netns"].as_str().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .args(["--state", lab.state.to_str().unwrap(), "--host-netns", &lab.host.netns_name])
        .args(["events", "--idle-exit", "60"])
        .env_remove("NICSLICE_FAIL_AT")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::sleep(Duration::from_millis(500));
    let mut host = RouteSocket::open_in(&lab.host.netns).unwrap();
    let eth0 = host.require_link("eth0", "host").unwrap();
    host.set_up(eth0.index, false).unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        line,
        format!(
            "parent-down: parent eth0 is down: its children lost their carrier [network lan (eth0 in {recorded})]\n"
        )
    );
}
