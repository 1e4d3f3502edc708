//! `nicslice endpoint check`: the kernel compared with the record through the
//! engine's one check (the one a CNI CHECK runs). An endpoint as attached is
//! ok; an address removed by hand, a link replaced by hand and a namespace
//! deleted under it are each reported, with exit status 1.

mod common;

use common::*;
use nicslice_kernel::RouteSocket;

#[test]
fn check_reports_what_changed_behind_nicslices_back() {
    let mut lab = Lab::new("check");
    lab.lan("lan", &[]);
    let (c1, n1) = lab.netns("c1");
    let (c2, n2) = lab.netns("c2");
    lab.ok(&["attach", "lan", "--netns", &n1, "--ip", "192.168.0.11"]);
    lab.ok(&["attach", "lan", "--netns", &n2, "--ip", "192.168.0.12"]);
    let all_ok = lab.json(&["endpoint", "check"]);
    assert_eq!(all_ok.as_array().unwrap().len(), 2);
    assert!(all_ok.as_array().unwrap().iter().all(|h| h["problem"].is_null()), "{all_ok}");

    // An address removed by hand.
    let mut sock = RouteSocket::open_in(&c1).unwrap();
    let eth0 = sock.link_by_name("eth0").unwrap().unwrap();
    sock.delete_address(eth0.index, "192.168.0.11/24".parse().unwrap()).unwrap();
    let err = lab.fails(&["endpoint", "check", "lan"], "1 of 2 endpoint(s) differ");
    assert!(!err.is_empty());
    let out = lab.run(&["endpoint", "check", "--json"]);
    let health: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bad: Vec<&serde_json::Value> =
        health.as_array().unwrap().iter().filter(|h| !h["problem"].is_null()).collect();
    assert_eq!(bad.len(), 1);
    assert!(bad[0]["netns"].as_str().unwrap().ends_with(&n1), "{}", bad[0]);
    assert!(bad[0]["problem"].as_str().unwrap().contains("address 192.168.0.11 is missing"));

    // The namespace deleted under the endpoint.
    drop(c2);
    nicslice_kernel::netns::delete_named(&n2).unwrap();
    let out = lab.run(&["endpoint", "check", "--json"]);
    assert!(!out.status.success());
    let health: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let gone = health
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["netns"].as_str().unwrap().ends_with(&n2))
        .unwrap();
    assert!(gone["problem"].as_str().unwrap().contains("is gone"), "{gone}");
}
