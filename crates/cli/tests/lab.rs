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

/// Ctrl-C, as a user would press it.
fn sigint(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
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
        let arp = s["neighbours"].as_array().unwrap();
        assert!(arp.len() >= 2, "{name} asked too few ARP pairs");
        for n in arp {
            assert_eq!(n["observed"], n["predicted"], "{name}: ARP {n}");
        }
    }
    for wanted in [
        "bridge",
        "bridge-ipv6",
        "vepa",
        "vepa-hairpin",
        "private",
        "private-hairpin",
        "passthru",
        "source",
        "macvtap",
        "seed000",
        "vepa-seed000",
        "vepa-hairpin-seed000",
        "private-seed000",
        "passthru-seed000",
        "source-seed000",
        "source-unlisted-seed000",
        "source-nodst-seed000",
        "macvtap-seed000",
        "shim-ipv6",
        "private-shim-refused",
        "passthru-shim-refused",
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
    let mut facts = vec![
        ("bridge", "ns1", "ns2", "pass"),
        ("bridge", "ns1", "ns3", "blocked"),
        ("vepa", "ns1", "ns2", "blocked"),
        ("vepa-hairpin", "ns1", "ns2", "pass"),
        ("private-hairpin", "ns1", "ns2", "blocked"),
        ("seed000-fixed", "node1", "node1-ns1", "pass"),
        ("vepa-seed000", "node1", "node1-ns1", "blocked"),
        ("vepa-hairpin-seed000", "node1", "node1-ns1", "pass"),
        ("macvtap-seed000", "node1", "node1-ns1", "pass"),
        ("source-seed000", "node1-ns1", "node2-ns1", "blocked"),
        ("source-nodst-seed000", "node1", "node2", "blocked"),
        ("passthru-seed000", "node1-ns1", "mac", "pass"),
        ("passthru-seed000", "node1", "node2", "blocked"),
    ];
    // Per mode on seed 000's world: the other host, the far side with and without
    // a default route.
    for s in ["vepa-seed000", "private-seed000", "source-seed000", "macvtap-seed000"] {
        facts.push((s, "node1-ns1", "node2", "pass"));
        facts.push((s, "node1-ns1", "mac", "pass"));
        facts.push((s, "node1-ns2", "mac", "blocked"));
    }
    for (scenario, from, to, want) in facts {
        assert_eq!(cell(scenario, from, to), want, "{scenario}: {from} -> {to}");
    }
    // ARP on its own, observed: who answers a request for whose address.
    let arp = |scenario: &str, from: &str, to: &str| {
        let s = scenarios.iter().find(|s| s["name"] == scenario).unwrap();
        let n =
            s["neighbours"].as_array().unwrap().iter().find(|n| n["from"] == from && n["to"] == to);
        n.unwrap_or_else(|| panic!("{scenario}: no ARP {from} -> {to}"))["observed"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (scenario, from, to, want) in [
        ("bridge", "ns1", "ns2", "answered"),
        ("bridge", "ns1", "ns3", "unanswered"),
        ("vepa", "ns1", "ns2", "unanswered"),
        ("vepa-hairpin", "ns1", "ns2", "answered"),
        ("private", "ns1", "ns2", "unanswered"),
        ("private-hairpin", "ns1", "ns2", "unanswered"),
        ("private-hairpin", "ns3", "ns1", "answered"),
        // The parent hears and answers; the replies to its MAC are the child's.
        ("passthru", "br0", "ns3", "answered"),
        ("passthru", "ns3", "br0", "unanswered"),
        ("source", "br0", "ns1", "answered"),
        ("source-unlisted", "br0", "ns1", "unanswered"),
        ("parent-down", "ns1", "br0", "unanswered"),
        ("seed000", "gw", "mac", "answered"),
    ] {
        assert_eq!(arp(scenario, from, to), want, "{scenario}: ARP {from} -> {to}");
    }
    // ipvlan, where the kernel has it (the VM stage): l2 siblings share the MAC and
    // still answer each other, PRIVATE drops the reply, l3/l3s children are NOARP.
    let ran = |name: &str| scenarios.iter().any(|s| s["name"] == name && s["skipped"].is_null());
    for (scenario, from, to, want) in [
        ("ipvlan-l2-seed000", "node1-ns1", "node1-ns2", "answered"),
        ("ipvlan-l2-seed000", "node1-ns1", "node1", "answered"),
        ("ipvlan-private", "ns1", "ns2", "unanswered"),
        ("ipvlan-private", "ns1", "br0", "answered"),
        ("ipvlan-l3-seed000", "node1-ns1", "node2", "unanswered"),
        ("ipvlan-l3-seed000", "node2", "node1-ns1", "unanswered"),
        ("ipvlan-l3-seed000", "node2", "node1", "answered"),
        ("ipvlan-l3s-seed000", "node2", "node1-ns2", "unanswered"),
    ] {
        if ran(scenario) {
            assert_eq!(arp(scenario, from, to), want, "{scenario}: ARP {from} -> {to}");
        }
    }
    // ipvlan l3/l3s port flags, where the kernel has ipvlan: PRIVATE and VEPA cut
    // the siblings apart (hairpin does not bring VEPA's back, the children being
    // NOARP); a router routing the children via the host does, and brings the host
    // its own children too.
    for mode in ["l3", "l3s"] {
        let name = |flag: &str| format!("ipvlan-{mode}-{flag}");
        for flag in ["private", "vepa", "vepa-hairpin", "vepa-routed"] {
            assert!(scenarios.iter().any(|s| s["name"] == name(flag)), "{} missing", name(flag));
        }
        let mut facts = vec![
            (name("private"), "net1", "net2", "blocked"),
            (name("private"), "net1", "host", "blocked"),
            (name("vepa"), "net1", "net2", "blocked"),
            (name("vepa-hairpin"), "net2", "net1", "blocked"),
            (name("vepa-routed"), "net1", "net2", "pass"),
            (name("vepa-routed"), "host", "net2", "pass"),
            (name("vepa-routed"), "lan", "net1", "blocked"),
        ];
        facts.retain(|(s, ..)| ran(s));
        for (scenario, from, to, want) in facts {
            assert_eq!(cell(&scenario, from, to), want, "{scenario}: {from} -> {to}");
        }
    }
    // NDP beside ARP where IPv6 is set up, with the same answers.
    let s = scenarios.iter().find(|s| s["name"] == "bridge-ipv6").unwrap();
    let ndp: Vec<_> =
        s["neighbours"].as_array().unwrap().iter().filter(|n| n["protocol"] == "ndp").collect();
    assert_eq!(ndp.len(), 12, "every ordered pair of br0, ns3, ns1, ns2");
    for n in ndp {
        let (from, to) = (n["from"].as_str().unwrap(), n["to"].as_str().unwrap());
        assert_eq!(n["observed"].as_str().unwrap(), arp("bridge", from, to), "NDP {from} -> {to}");
    }
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
    sigint(pid);
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

fn lab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nicslice")).arg("lab").args(args).output().unwrap()
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn names(report: &serde_json::Value) -> Vec<String> {
    let scenarios = report["scenarios"].as_array().unwrap();
    scenarios.iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn json_has_the_documented_shape() {
    let out = lab(&["--only", "passthru", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json_of(&out);
    assert_eq!(report["ok"], true);
    assert!(report["seconds"].is_f64());
    let s = &report["scenarios"][0];
    for key in ["name", "mode", "description", "endpoints", "skipped", "error", "seconds"] {
        assert!(s.get(key).is_some(), "scenario without {key}: {s}");
    }
    assert!(s.get("namespaces").is_none(), "namespaces only with --keep: {s}");
    let o = &s["observations"][0];
    for key in ["from", "to", "address", "observed", "predicted", "verdict"] {
        assert!(o.get(key).is_some(), "observation without {key}: {o}");
    }
    assert!(o.get("not_probed").is_none(), "every pair was probed: {o}");
    let n = &s["neighbours"][0];
    for key in ["from", "to", "protocol", "sender", "target", "observed", "predicted", "rule"] {
        assert!(n.get(key).is_some(), "ARP check without {key}: {n}");
    }
    assert_eq!(n["protocol"], "arp");
    assert!(["answered", "unanswered"].contains(&n["observed"].as_str().unwrap()), "{n}");
    assert!(n["reason"].as_str().unwrap().starts_with(n["predicted"].as_str().unwrap()), "{n}");
    assert!(["pass", "blocked"].contains(&o["observed"].as_str().unwrap()), "{o}");
    for key in ["reach", "rule", "reason", "fix"] {
        assert!(o["verdict"].get(key).is_some(), "verdict without {key}: {o}");
    }
}

#[test]
fn only_and_mode_select_scenarios() {
    let report = json_of(&lab(&["--only", "passthru", "--only", "bridge", "--json"]));
    assert_eq!(names(&report), ["bridge", "passthru"], "report order, not argument order");
    let report = json_of(&lab(&["--mode", "private", "--json"]));
    let got = names(&report);
    assert!(got.contains(&"private".to_string()) && got.contains(&"private-hairpin".into()));
    for s in report["scenarios"].as_array().unwrap() {
        assert_eq!(s["mode"], "private", "{}", s["name"]);
    }
    let out = lab(&["--mode", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no scenario matches --mode nope"));
}

#[test]
fn markdown_has_tables_reasons_and_the_summary() {
    let out = lab(&["--only", "vepa", "--only", "ipvlan-l2", "--markdown"]);
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("### vepa — seed 003: macvlan vepa"), "{md}");
    assert!(md.contains("| from \\ to | br0 | ns3 | ns1 | ns2 |\n|---|---|---|---|---|"), "{md}");
    assert!(md.contains("| ns1 | pass/yes | --/no | · | --/no |"), "{md}");
    assert!(md.contains("Cells: echo/ARP"), "{md}");
    assert!(
        md.contains("- ns1 → ns2, ns2 → ns1: vepa siblings need a hairpin switch port"),
        "{md}"
    );
    assert!(md.contains("### ipvlan-l2 — seed 001: ipvlan l2"), "{md}");
    let summary = md.lines().last().unwrap_or_default();
    assert!(summary.contains(": 0 mismatch(es), 0 error(s)"), "{md}");
    if md.contains("Skipped: this kernel has no ipvlan") {
        assert!(summary.starts_with("1 scenarios, 12 echo and 12 ARP probes in "), "{md}");
        assert!(summary.ends_with("skipped (kernel lacks them): ipvlan-l2"), "{md}");
    } else {
        assert!(summary.starts_with("2 scenarios, "), "{md}");
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `--keep` leaves the world up and says how to enter and remove it; a kept
/// world survives later labs (their reaper); `--clean` removes it. An
/// interrupted `--keep` run tells the truth about what it kept. One test, so
/// that no other test's `--clean` runs in between.
#[test]
fn keep_then_clean_leaves_no_namespace() {
    let child = Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .args(["lab", "--only", "bridge", "--keep"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&child.stdout).to_string();
    assert!(child.status.success(), "{text}");
    assert!(text.contains("ip netns exec NAMESPACE bash"), "{text}");
    assert!(text.contains("nicslice lab --clean"), "{text}");
    let kept: Vec<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("nsl-labbridge-") && text.contains(n.as_str()))
        .collect();
    assert_eq!(kept.len(), 4, "switch, host and two children kept: {kept:?}\n{text}");

    // Another lab (whose reaper removes dead runs' namespaces) leaves it alone.
    let out = lab(&["--only", "passthru"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for n in &kept {
        assert!(std::path::Path::new("/run/netns").join(n).exists(), "{n} was reaped");
    }

    // Interrupted while keeping: what it says it kept is exactly what is left.
    let run = Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .args(["lab", "--keep", "--mode", "vepa"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = run.id();
    // Interrupt once worlds are being built, so that some are kept.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while leftovers(pid).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    sigint(pid);
    let out = run.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(130), "{said}");
    let left = leftovers(pid);
    if left.is_empty() {
        assert!(said.contains("its namespaces were removed"), "{said}");
    } else {
        assert!(said.contains("were kept as --keep asked"), "{said}");
        for n in &left {
            assert!(said.contains(n.as_str()), "{n} left but not named:\n{said}");
        }
    }

    let out = lab(&["--clean"]);
    let cleaned = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{cleaned}{}", String::from_utf8_lossy(&out.stderr));
    let removed: usize = cleaned
        .strip_prefix("removed ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{cleaned}"));
    assert!(removed >= kept.len() + left.len(), "{cleaned}");
    for n in kept.iter().chain(&left) {
        assert!(!std::path::Path::new("/run/netns").join(n).exists(), "{n} survived --clean");
    }
    assert!(leftovers(pid).is_empty());
    let again = String::from_utf8_lossy(&lab(&["--clean"]).stdout).to_string();
    assert!(again.contains("no lab namespaces to remove"), "{again}");
}
