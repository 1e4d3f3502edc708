//! The same rules everywhere: each request `nicslice network create` or
//! `attach` refuses, the CNI ADD of nicslice-macvlan refuses too, for the
//! same reason in the same words, and leaves nothing in the container
//! (docs/refusals.md lists them). Where this kernel accepts a request (the
//! broadcast cutoff on Linux 6.4 and later), both accept it and the kernel
//! holds it; the VM stage runs the same test on Debian's 6.1, which drops
//! the cutoff silently, and there both refuse it.

mod common;

use common::*;
use serde_json::{Value, json};

/// Runs nicslice-macvlan ADD in the lab's host namespace with `keys` added
/// to a configuration on the host's eth0; returns (success, stdout JSON).
fn cni_add(lab: &Lab, netns: &str, keys: Value) -> (bool, Value) {
    let dir = std::env::temp_dir().join(format!("nsl-refusals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["nicslice-macvlan", "nicslice-ipam"] {
        let _ = std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nicslice"), dir.join(name));
    }
    let mut conf = json!({
        "cniVersion": "1.1.0", "name": "same", "type": "nicslice-macvlan", "master": "eth0",
        "ipam": {"type": "nicslice-ipam", "subnet": "192.168.0.0/24", "gateway": "192.168.0.1",
                 "state": lab.state.with_extension("cni.mdb")}
    });
    for (k, v) in keys.as_object().unwrap() {
        conf[k] = v.clone();
    }
    let netns = format!("/run/netns/{netns}");
    cni_plugin(lab, &dir, "nicslice-macvlan", ("ADD", &netns, "refusals", "eth0"), &conf)
}

/// Asserts that the CNI ADD with `keys` fails with code 7 and a message
/// holding `reason`, leaving the container without an interface.
fn cni_refuses(lab: &mut Lab, keys: Value, reason: &str) {
    let (ns, name) = lab.netns(&format!("c{}", reason.len()));
    let (ok, out) = cni_add(lab, &name, keys.clone());
    assert!(!ok, "ADD with {keys} succeeded; expected a refusal about {reason:?}");
    assert_eq!(out["code"], 7, "{keys}: {out}");
    let msg = out["msg"].as_str().unwrap_or_default();
    assert!(msg.contains(reason), "ADD with {keys}: expected {reason:?} in {msg:?}");
    assert!(non_lo(&ns).is_empty(), "a refused ADD left {:?}", non_lo(&ns));
}

#[test]
fn cli_and_cni_refuse_the_same_requests_with_the_same_reason() {
    let mut lab = Lab::new("refusals");
    let create = |extra: &[&str]| {
        let mut args = vec!["network", "create", "n", "--parent", "eth0"];
        args.extend_from_slice(&["--subnet", "192.168.0.0/24"]);
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let refused = |lab: &Lab, args: Vec<String>, reason: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.fails(&args, reason);
    };
    let cases: [(Vec<String>, Value, &str); 5] = [
        (
            ["network", "create", "n", "--parent", "lo", "--subnet", "192.168.0.0/24"]
                .map(String::from)
                .to_vec(),
            json!({"master": "lo"}),
            "parent lo is the loopback device",
        ),
        (
            ["network", "create", "n", "--parent", "nosuch0", "--subnet", "192.168.0.0/24"]
                .map(String::from)
                .to_vec(),
            json!({"master": "nosuch0"}),
            "parent nosuch0 does not exist",
        ),
        (create(&["--mtu", "9000"]), json!({"mtu": 9000}), "is above the parent eth0's MTU"),
        (
            create(&["--flag", "nodst"]),
            json!({"flags": ["nodst"]}),
            "flag nodst only applies to source mode",
        ),
        (
            create(&["--mode", "passthru", "--bcqueuelen", "10"]),
            json!({"mode": "passthru", "bcqueuelen": 10}),
            "bcqueuelen does not apply to passthru mode",
        ),
    ];
    for (cli, cni, reason) in cases {
        refused(&lab, cli, reason);
        cni_refuses(&mut lab, cni, reason);
    }
    assert_eq!(lab.json(&["network", "ls"]).as_array().unwrap().len(), 0);

    // The parent's own MAC on a child.
    let parent_mac = link(&lab.host.netns, "eth0").unwrap().mac.unwrap().to_string();
    lab.lan("n", &[]);
    let (_c, n1) = lab.netns("mac");
    lab.fails(&["attach", "n", "--netns", &n1, "--mac", &parent_mac], "is the MAC of parent eth0");
    cni_refuses(&mut lab, json!({"mac": parent_mac}), "is the MAC of parent eth0");
}

#[test]
fn a_broadcast_cutoff_the_kernel_would_drop_is_refused_by_both() {
    let mut lab = Lab::new("bclim");
    let out = lab.run(&[
        "network",
        "create",
        "b",
        "--parent",
        "eth0",
        "--subnet",
        "192.168.0.0/24",
        "--bclim",
        "5",
    ]);
    let (ns, name) = lab.netns("c1");
    let (ok, result) = cni_add(&lab, &name, json!({"bclim": 5}));
    if out.status.success() {
        // Linux 6.4 and later: both take it, and the kernel holds it.
        assert!(ok, "the CLI took bclim but the CNI ADD refused it: {result}");
        let m = link(&ns, "eth0").unwrap().macvlan.unwrap();
        assert_eq!(m.bclim, Some(5));
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("bclim needs Linux 6.4"), "{err}");
        assert!(!ok, "the CLI refused bclim but the CNI ADD took it: {result}");
        assert!(result["msg"].as_str().unwrap().contains("bclim needs Linux 6.4"), "{result}");
        assert!(non_lo(&ns).is_empty(), "the refused ADD left {:?}", non_lo(&ns));
    }
}
