//! `nicslice lab` end to end: every experiment this kernel supports runs,
//! each observation matches the model, and nothing is left behind, also when
//! the lab is interrupted.

use std::process::{Command, Stdio};
use std::time::Duration;

fn leftovers(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else { return vec![] };
    dir.flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("nsl-") && n.split('-').nth(2) == Some(&pid.to_string()))
        .collect()
}

#[test]
fn lab_matches_the_model_and_cleans_up() {
    let child = Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .args(["lab", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let scenarios = report["scenarios"].as_array().unwrap();
    for s in scenarios {
        let name = s["name"].as_str().unwrap();
        if s["skipped"].is_string() {
            assert!(name.starts_with("ipvlan"), "only ipvlan may be skipped here: {s}");
            continue;
        }
        assert!(s["error"].is_null(), "{name}: {}", s["error"]);
        let obs = s["observations"].as_array().unwrap();
        assert!(obs.len() >= 6, "{name} probed too little");
        for o in obs {
            assert_eq!(o["observed"], o["predicted"], "{name}: {o}");
        }
    }
    for wanted in [
        "bridge",
        "vepa",
        "vepa-hairpin",
        "private",
        "private-hairpin",
        "passthru",
        "source",
        "macvtap",
        "seed000",
    ] {
        assert!(scenarios.iter().any(|s| s["name"] == wanted), "{wanted} missing");
    }
    // Seed 003's headline facts, observed (not just predicted).
    let cell = |scenario: &str, from: &str, to: &str| {
        let s = scenarios.iter().find(|s| s["name"] == scenario).unwrap();
        let o = s["observations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["from"] == from && o["to"] == to)
            .unwrap();
        o["observed"].as_str().unwrap().to_string()
    };
    assert_eq!(cell("bridge", "ns1", "ns2"), "pass");
    assert_eq!(cell("bridge", "ns1", "ns3"), "blocked");
    assert_eq!(cell("vepa", "ns1", "ns2"), "blocked");
    assert_eq!(cell("vepa-hairpin", "ns1", "ns2"), "pass");
    assert_eq!(cell("private-hairpin", "ns1", "ns2"), "blocked");
    assert_eq!(cell("seed000-fixed", "node1", "node1-ns1"), "pass");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(report["ok"], true);
    assert!(report["seconds"].as_f64().unwrap() < 30.0);
    assert!(leftovers(pid).is_empty(), "left behind: {:?}", leftovers(pid));
}

#[test]
fn interrupted_lab_removes_its_namespaces() {
    let child = Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .args(["lab"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(1200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert!(leftovers(pid).is_empty(), "left behind: {:?}", leftovers(pid));
}

#[test]
fn lab_lists_and_refuses_unknown_scenarios() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_nicslice")).args(["lab", "--list"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("private-hairpin"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .args(["lab", "--only", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no scenario nope"));
}
