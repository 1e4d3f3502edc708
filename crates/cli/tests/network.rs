//! Networks through the CLI: creation refused before anything changes when
//! the request is wrong, promiscuous mode set and restored (also handed over
//! between networks on one parent), and every failing step undone.

mod common;

use common::*;
use nicslice_kernel::RouteSocket;

fn promisc(lab: &Lab) -> bool {
    link(&lab.host.netns, "eth0").unwrap().promisc_flag
}

#[test]
fn create_refuses_bad_requests_with_one_clear_line() {
    let lab = Lab::new("netref");
    fn create<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["network", "create"];
        args.extend_from_slice(extra);
        args
    }
    lab.fails(
        &create(&["n", "--parent", "nosuch0", "--subnet", "10.0.0.0/24"]),
        "parent nosuch0 does not exist",
    );
    lab.fails(&create(&["n", "--parent", "lo", "--subnet", "10.0.0.0/24"]), "loopback");
    lab.fails(
        &create(&["n", "--parent", "eth0", "--subnet", "10.0.0.0/24", "--gateway", "10.9.9.9"]),
        "10.9.9.9",
    );
    lab.fails(
        &create(&["n", "--parent", "eth0", "--subnet", "10.0.0.0/24", "--mtu", "9000"]),
        "above the parent",
    );
    lab.fails(&create(&["bad name", "--parent", "eth0"]), "network name");
    lab.fails(
        &create(&["n", "--parent", "averyveryverylongname", "--subnet", "10.0.0.0/24"]),
        "longer than 15 bytes",
    );
    lab.fails(
        &create(&["n", "--parent", "eth0", "--ip-range", "10.1.0.0/24", "--subnet", "10.0.0.0/24"]),
        "inside no --subnet",
    );
    lab.fails(&create(&["n", "--parent", "eth0", "--aux-address", "router"]), "NAME=IP");
    lab.fails(
        &create(&["n", "--parent", "eth0", "--flag", "nodst", "--subnet", "10.0.0.0/24"]),
        "nodst",
    );
    lab.fails(
        &create(&["n", "--parent", "eth0", "--subnet", "10.0.0.0/24", "--subnet", "10.0.0.128/25"]),
        "overlap",
    );

    lab.ok(&create(&["a", "--parent", "eth0", "--subnet", "10.0.0.0/24"]));
    lab.fails(
        &create(&["a", "--parent", "eth0", "--subnet", "10.1.0.0/24"]),
        "network a already exists",
    );
    lab.fails(
        &create(&["b", "--parent", "eth0", "--subnet", "10.0.0.128/25"]),
        "overlaps subnet 10.0.0.0/24 of network a",
    );
    lab.ok(&create(&[
        "b",
        "--parent",
        "eth0",
        "--subnet",
        "10.1.0.0/24",
        "--subnet",
        "fd00:1::/64",
    ]));
    let nets = lab.json(&["network", "ls"]);
    assert_eq!(nets.as_array().unwrap().len(), 2);
    assert_eq!(nets[1]["subnets"][1]["gateway"], "fd00:1::1");
    lab.fails(&["network", "rm", "nosuch"], "network nosuch does not exist");
    lab.fails(&["network", "inspect", "nosuch"], "network nosuch does not exist");
}

#[test]
fn a_bridge_port_cannot_be_a_parent() {
    let lab = Lab::new("brport");
    // In the switch namespace, the host's veth end is a port of br0.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .args(["--state", lab.state.to_str().unwrap(), "--host-netns", &lab.world.name_of("sw")])
        .args([
            "network",
            "create",
            "n",
            "--parent",
            &lab.host.switch_port,
            "--subnet",
            "10.0.0.0/24",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is a port of br0"), "{err}");
}

#[test]
fn promiscuous_mode_is_set_and_restored() {
    let lab = Lab::new("promisc");
    assert!(!promisc(&lab));
    lab.ok(&["network", "create", "a", "--parent", "eth0", "--subnet", "10.0.0.0/24", "--promisc"]);
    assert!(promisc(&lab), "seed 000: ip link set ens160 promisc on");
    lab.ok(&["network", "create", "b", "--parent", "eth0", "--subnet", "10.1.0.0/24", "--promisc"]);
    lab.ok(&["network", "rm", "a"]);
    assert!(promisc(&lab), "b still wants it");
    lab.ok(&["network", "rm", "b"]);
    assert!(!promisc(&lab), "restored to what nicslice found");

    // A parent that was already promiscuous stays so.
    let mut host = RouteSocket::open_in(&lab.host.netns).unwrap();
    let p = host.require_link("eth0", "host").unwrap();
    host.set_promisc(p.index, true).unwrap();
    lab.ok(&["network", "create", "c", "--parent", "eth0", "--subnet", "10.0.0.0/24", "--promisc"]);
    lab.ok(&["network", "rm", "c"]);
    assert!(promisc(&lab));
}

#[test]
fn failing_create_and_rm_steps_are_undone() {
    let lab = Lab::new("netundo");
    let create =
        ["network", "create", "a", "--parent", "eth0", "--subnet", "10.0.0.0/24", "--promisc"];
    for step in ["set-promisc", "store-commit"] {
        let out = lab.run_env(&create, &[("NICSLICE_FAIL_AT", step)]);
        assert!(!out.status.success(), "{step}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(step));
        assert!(!promisc(&lab), "{step}: promiscuous mode left on");
        assert_eq!(
            lab.json(&["network", "ls"]).as_array().unwrap().len(),
            0,
            "{step}: state row left"
        );
    }
    lab.ok(&create);
    for step in ["restore-promisc", "store-commit"] {
        let out = lab.run_env(&["network", "rm", "a"], &[("NICSLICE_FAIL_AT", step)]);
        assert!(!out.status.success(), "{step}");
        assert!(promisc(&lab), "{step}: promiscuous mode must stay as the network stays");
        assert_eq!(
            lab.json(&["network", "ls"]).as_array().unwrap().len(),
            1,
            "{step}: network row lost"
        );
    }
    lab.ok(&["network", "rm", "a"]);
    assert!(!promisc(&lab));
    let out = lab.run_env(&["network", "ls"], &[("NICSLICE_FAIL_AT", "no-such-step")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("names no step"));
}

#[test]
fn state_is_shared_safely_by_concurrent_processes() {
    let mut lab = Lab::new("conc");
    lab.lan("lan", &[]);
    let names: Vec<String> = (0..8).map(|i| lab.netns(&format!("c{i}")).1).collect();
    // Eight processes at once, each holding its own connection to the state.
    let procs: Vec<_> = names
        .iter()
        .map(|n| {
            std::process::Command::new(env!("CARGO_BIN_EXE_nicslice"))
                .args([
                    "--state",
                    lab.state.to_str().unwrap(),
                    "--host-netns",
                    &lab.host.netns_name,
                ])
                .args(["attach", "lan", "--netns", n, "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut addrs = Vec::new();
    for p in procs {
        let out = p.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        addrs.push(v["addresses"][0].as_str().unwrap().to_string());
    }
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 8, "every concurrent attach got its own address: {addrs:?}");
}

#[test]
fn owned_parents_are_refused_cleanly_where_the_kernel_lacks_them() {
    // This machine's kernel has neither dummy nor 802.1Q; the VM stage tests
    // them for real. Here: one clear line, nothing created, no state row.
    let lab = Lab::new("ownpar");
    let before = non_lo(&lab.host.netns);
    for args in [
        vec!["network", "create", "lan", "--subnet", "10.0.0.0/24"],
        vec![
            "network",
            "create",
            "lan",
            "--parent",
            "eth0",
            "--vlan",
            "50",
            "--subnet",
            "10.0.0.0/24",
        ],
        vec!["network", "create", "lan", "--parent", "eth0.50", "--subnet", "10.0.0.0/24"],
    ] {
        if nicslice_lab::capabilities::probe_kernel()
            .unwrap()
            .iter()
            .any(|c| c.feature == "dummy" && c.available)
        {
            return; // a kernel with dummy and 802.1Q: covered by the VM tests
        }
        lab.fails(&args, "lacks that link kind");
        assert_eq!(non_lo(&lab.host.netns), before);
        assert_eq!(lab.json(&["network", "ls"]).as_array().unwrap().len(), 0);
    }
}

/// Starts `nicslice ARGS` for each argument list at once; returns the
/// failures' error lines.
fn all_at_once(lab: &Lab, commands: &[Vec<String>]) -> Vec<String> {
    let procs: Vec<_> = commands
        .iter()
        .map(|args| {
            std::process::Command::new(env!("CARGO_BIN_EXE_nicslice"))
                .args(["--state", lab.state.to_str().unwrap()])
                .args(["--host-netns", &lab.host.netns_name])
                .args(args)
                .env_remove("NICSLICE_FAIL_AT")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    procs
        .into_iter()
        .map(|p| p.wait_with_output().unwrap())
        .filter(|out| !out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stderr).trim().to_string())
        .collect()
}

/// Issue 16, defect 11: 256 concurrent attaches on one network, then 256
/// concurrent detaches, all succeed, each address once.
#[test]
fn two_hundred_fifty_six_concurrent_attaches_and_detaches_all_succeed() {
    const N: usize = 256;
    let mut lab = Lab::new("c256");
    lab.ok(&["network", "create", "wide", "--parent", "eth0", "--subnet", "10.66.0.0/16"]);
    let names: Vec<String> = (0..N).map(|i| lab.netns(&format!("c{i}")).1).collect();
    let verb = |verb: &str| -> Vec<Vec<String>> {
        names
            .iter()
            .map(|n| vec![verb.into(), "wide".into(), "--netns".into(), n.clone()])
            .collect()
    };
    let t = std::time::Instant::now();
    let failed = all_at_once(&lab, &verb("attach"));
    eprintln!("{N} concurrent attaches: {:?}, {} failed", t.elapsed(), failed.len());
    assert!(failed.is_empty(), "{} of {N} attaches failed: {:?}", failed.len(), &failed[..1]);
    let listed = lab.json(&["endpoint", "ls"]);
    let mut addrs: Vec<&str> =
        listed.as_array().unwrap().iter().map(|e| e["addresses"][0].as_str().unwrap()).collect();
    addrs.sort_unstable();
    addrs.dedup();
    assert_eq!(addrs.len(), N, "each attach its own address");

    let t = std::time::Instant::now();
    let failed = all_at_once(&lab, &verb("detach"));
    eprintln!("{N} concurrent detaches: {:?}, {} failed", t.elapsed(), failed.len());
    assert!(failed.is_empty(), "{} of {N} detaches failed: {:?}", failed.len(), &failed[..1]);
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 0);
}

/// Issue 11: `network rm --force` deletes the endpoints' links together and
/// records the removal in one transaction; every link and lease is gone.
#[test]
fn network_rm_force_removes_every_endpoint() {
    let mut lab = Lab::new("rmforce");
    lab.lan("lan", &[]);
    let spaces: Vec<_> = (0..20).map(|i| lab.netns(&format!("e{i}"))).collect();
    for (_, name) in &spaces {
        lab.ok(&["attach", "lan", "--netns", name]);
    }
    // One namespace went without a detach: its endpoint is stale, and goes too.
    let mut spaces = spaces;
    let (gone, gone_name) = spaces.pop().unwrap();
    drop(gone);
    nicslice_kernel::netns::delete_named(&gone_name).unwrap();
    let out = lab.json(&["network", "rm", "lan", "--force"]);
    assert_eq!(out["detached"].as_array().unwrap().len(), 20, "{out}");
    for (ns, name) in &spaces {
        assert!(non_lo(ns).is_empty(), "{name} kept its link");
    }
    assert_eq!(lab.json(&["network", "ls"]).as_array().unwrap().len(), 0);
    assert_eq!(lab.json(&["endpoint", "ls"]).as_array().unwrap().len(), 0);
}

/// A link that is no longer nicslice's (the endpoint's name now on a veth
/// made by hand) stops `network rm --force` with the reason; the other
/// endpoints are gone, in the kernel and in the record, the foreign link is
/// untouched, its endpoint stays attached and the network stays.
#[test]
fn network_rm_force_leaves_a_foreign_link_and_says_so() {
    let mut lab = Lab::new("rmforeign");
    lab.lan("lan", &[]);
    let spaces: Vec<_> = (0..6).map(|i| lab.netns(&format!("e{i}"))).collect();
    for (_, name) in &spaces {
        lab.ok(&["attach", "lan", "--netns", name]);
    }
    let (foreign, foreign_name) = &spaces[3];
    {
        let mut rs = RouteSocket::open_in(foreign).unwrap();
        assert!(rs.delete_link_by_name("eth0").unwrap());
        rs.create_veth("eth0", "peer0", None).unwrap();
    }
    let err = lab.fails(&["network", "rm", "lan", "--force"], "Rename or remove it");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    for (i, (ns, name)) in spaces.iter().enumerate() {
        if i != 3 {
            assert!(non_lo(ns).is_empty(), "{name} kept its link");
        }
    }
    assert_eq!(
        link(foreign, "eth0").expect("the foreign veth stays").kind.as_deref(),
        Some("veth")
    );
    let left = lab.json(&["endpoint", "ls"]);
    let left = left.as_array().unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0]["netns"].as_str().unwrap().ends_with(foreign_name.as_str()), "{left:?}");
    assert_eq!(left[0]["state"], "attached");
    assert_eq!(lab.json(&["network", "ls"]).as_array().unwrap().len(), 1);
}
