//! Fuzz target of the topology parser behind `nicslice explain FILE` (issue
//! 16): a file read as TOML and as JSON into `reach::Topology`, validated,
//! and, when valid and small, every pair predicted. The contract: no panic
//! (arithmetic overflow included: this runs with overflow checks). The
//! fuzzing run is `#[ignore]`d (`scripts/fuzz.sh` runs it); the replay of
//! the corpus and of past failures (`fuzz/{corpus,regressions}/topology`)
//! is a normal test.

#[path = "../../../fuzz/driver.rs"]
mod driver;

use std::sync::atomic::{AtomicU64, Ordering};

use nicslice_model::reach::{self, Topology};
use proptest::prelude::*;
use serde_json::Value;

/// Predicting every pair costs more than a power of the endpoint count
/// (issue 16, defect 7): only small topologies are predicted here.
const MAX_PREDICTED_ENDPOINTS: usize = 12;

/// How deep the inputs got: parsed, valid, predicted (for the figures).
static DEPTH: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

fn check_topology(bytes: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(bytes) else { return Ok(()) };
    let parsed = [toml::from_str::<Topology>(text).ok(), serde_json::from_str(text).ok()];
    for topology in parsed.into_iter().flatten() {
        DEPTH[0].fetch_add(1, Ordering::Relaxed);
        let Ok(endpoints) = topology.endpoints() else { continue };
        DEPTH[1].fetch_add(1, Ordering::Relaxed);
        if endpoints.len() <= MAX_PREDICTED_ENDPOINTS {
            DEPTH[2].fetch_add(1, Ordering::Relaxed);
            let _ = reach::matrix(&topology);
        }
    }
    Ok(())
}

const KEYS: &[&str] = &[
    "description",
    "switch",
    "hosts",
    "routers",
    "remotes",
    "name",
    "addresses",
    "mac",
    "gateway",
    "routes",
    "ports",
    "hairpin",
    "port",
    "parent",
    "up",
    "children",
    "kind",
    "mode",
    "flag",
    "nopromisc",
    "nodst",
    "source_macs",
    "default_dev",
    "shim",
    "lan",
    "far",
    "router",
    "to",
    "via",
];

const PATHS: &[&str] = &[
    "description",
    "switch",
    "switch.name",
    "switch.addresses",
    "switch.mac",
    "switch.gateway",
    "switch.routes",
    "switch.ports",
    "switch.ports.0.hairpin",
    "hosts",
    "hosts.0",
    "hosts.0.name",
    "hosts.0.port",
    "hosts.0.parent",
    "hosts.0.addresses",
    "hosts.0.mac",
    "hosts.0.up",
    "hosts.0.gateway",
    "hosts.0.routes",
    "hosts.0.children",
    "hosts.0.shim",
    "hosts.0.children.0",
    "hosts.0.children.0.name",
    "hosts.0.children.0.kind",
    "hosts.0.children.0.mode",
    "hosts.0.children.0.flag",
    "hosts.0.children.0.nopromisc",
    "hosts.0.children.0.nodst",
    "hosts.0.children.0.source_macs",
    "hosts.0.children.0.mac",
    "hosts.0.children.0.addresses",
    "hosts.0.children.0.gateway",
    "hosts.0.children.0.default_dev",
    "hosts.0.children.0.routes",
    "hosts.0.children.1.mode",
    "hosts.0.children.1.addresses",
    "hosts.1.children.0.mode",
    "hosts.1.parent",
    "hosts.1.up",
    "routers",
    "routers.0.lan",
    "routers.0.far",
    "routers.0.port",
    "remotes",
    "remotes.0.router",
    "remotes.0.addresses",
];

const STRINGS: &[&str] = &[
    "bridge",
    "vepa",
    "private",
    "passthru",
    "source",
    "l2",
    "l3",
    "l3s",
    "macvlan",
    "macvtap",
    "ipvlan",
    "ipvtap",
    "host",
    "node1",
    "node2",
    "c1",
    "c2",
    "container",
    "switch",
    "lan",
    "eth0",
    "ens160",
    "192.168.0.0/24",
    "192.168.0.1/24",
    "192.168.0.1",
    "10.0.0.1/32",
    "0.0.0.0/0",
    "::/0",
    "fd00::1/64",
    "fd00::1",
    "224.0.0.1/4",
    "255.255.255.255/32",
    "02:00:00:00:00:01",
    "01:00:5e:00:00:01",
    "",
];

fn inputs() -> BoxedStrategy<Vec<u8>> {
    let bases: Vec<Value> = driver::corpus("topology")
        .iter()
        .filter_map(|seed| serde_json::from_slice(seed).ok())
        .collect();
    let values = driver::json_value(KEYS, STRINGS);
    prop_oneof![
        2 => driver::mutated("topology", KEYS),
        3 => driver::spoiled(bases, PATHS, values.clone()),
        1 => values.prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]
    .boxed()
}

#[test]
fn replay_topology_corpus_and_regressions() {
    driver::replay("topology", check_topology);
}

#[test]
#[ignore = "fuzzing: scripts/fuzz.sh runs it"]
fn fuzz_topology() {
    driver::fuzz("topology", inputs(), check_topology);
    let [parsed, valid, predicted] = DEPTH.each_ref().map(|n| n.load(Ordering::Relaxed));
    println!("fuzz topology: {parsed} parsed, {valid} valid, {predicted} predicted");
}
