//! `nicslice events`: a parent taken down and up and a shim removed by hand
//! are reported as they happen (the delay is printed), with the networks
//! they affect; with `--fix` the removed shim is made again.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use nicslice_kernel::RouteSocket;
use serde_json::Value;

#[test]
fn events_report_parent_and_shim_changes_and_fix_repairs() {
    let mut lab = Lab::new("events");
    lab.lan("lan", &["--host-access"]);
    let (_c1, n1) = lab.netns("c1");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    let shim = lab.json(&["shim", "ls"])[0]["name"].as_str().unwrap().to_string();

    let mut watcher = Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .args(["--state", lab.state.to_str().unwrap(), "--host-netns", &lab.host.netns_name])
        .args(["events", "--json", "--fix", "--idle-exit", "30"])
        .env_remove("NICSLICE_FAIL_AT")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                break;
            }
        }
    });
    // Until the watcher has subscribed, changes would go unseen.
    std::thread::sleep(Duration::from_millis(500));
    let next = |kind: &str| -> (Value, Duration) {
        let start = Instant::now();
        loop {
            let e = rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no {kind} event"));
            if e["event"] == kind {
                return (e, start.elapsed());
            }
        }
    };

    let mut host = RouteSocket::open_in(&lab.host.netns).unwrap();
    let eth0 = host.require_link("eth0", "host").unwrap();
    let t = Instant::now();
    host.set_up(eth0.index, false).unwrap();
    let (down, _) = next("parent-down");
    println!("parent-down reported {:?} after the change", t.elapsed());
    assert_eq!(down["interface"], "eth0");
    assert_eq!(down["networks"][0], "lan");
    assert!(down["endpoints"][0].as_str().unwrap().contains(&n1), "{down}");
    host.set_up(eth0.index, true).unwrap();
    next("parent-up");

    host.delete_link_by_name(&shim).unwrap();
    next("shim-removed");
    let (repaired, _) = next("repaired");
    assert!(repaired["message"].as_str().unwrap().starts_with("repaired: shim"), "{repaired}");
    assert!(link(&lab.host.netns, &shim).is_some(), "--fix made the shim again");

    watcher.kill().unwrap();
    watcher.wait().unwrap();
}
