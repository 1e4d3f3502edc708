//! Fuzz targets of the CNI crate's parsers (issue 16): the network
//! configuration (`NetConf`, then `LinkConf` for both link plugins and
//! `IpamConf`), and `CNI_ARGS`. The contract checked on every input: no
//! panic (arithmetic overflow included: these run in the test profile),
//! and every refusal is an error of the spec's codes for bad input with a
//! message of one line. The fuzzing runs are `#[ignore]`d: `scripts/fuzz.sh`
//! runs them; the replay of the corpus and of past failures
//! (`fuzz/{corpus,regressions}/`) is a normal test.

#[path = "../../../fuzz/driver.rs"]
mod driver;

use std::sync::atomic::{AtomicU64, Ordering};

use nicslice_cni::conf::{NetConf, peek_version};
use nicslice_cni::env::{CallEnv, parse_args};
use nicslice_cni::error::{CniError, Code};
use nicslice_cni::ipam::IpamConf;
use nicslice_cni::linkconf::{Family, LinkConf};
use nicslice_cni::version::CniVersion;
use nicslice_cni::{Plugin, run};
use proptest::prelude::*;
use serde_json::Value;

/// The codes a refusal of bad input may carry.
const INPUT_CODES: [Code; 4] =
    [Code::IncompatibleVersion, Code::InvalidEnvironment, Code::Decode, Code::InvalidConfig];

fn refusal(what: &str, e: &CniError) -> Result<(), String> {
    if !INPUT_CODES.contains(&e.code) {
        return Err(format!("{what}: code {} for bad input: {}", e.code.number(), e.msg));
    }
    if e.msg.is_empty() || e.msg.contains('\n') {
        return Err(format!("{what}: not one line: {:?}", e.msg));
    }
    Ok(())
}

/// How deep the configurations got: parsed, a link configuration accepted,
/// an IPAM configuration accepted (for the figures).
static DEPTH: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// The configuration's contract: parse, then every stage after it.
fn check_conf(bytes: &[u8]) -> Result<(), String> {
    let _ = peek_version(bytes);
    // VERSION, and an ADD that stops at its missing variables: the whole
    // parse and dispatch before any kernel work.
    for command in ["VERSION", "ADD", "DEL"] {
        let env = CallEnv::from_vars(&[("CNI_COMMAND", command.to_string())]).unwrap();
        for plugin in Plugin::ALL {
            let out = run(plugin, &env, bytes.to_vec());
            let answer: Value = serde_json::from_str(&out.stdout)
                .map_err(|e| format!("{command}: answer is not JSON ({e}): {}", out.stdout))?;
            if out.exit_code != 0 && answer["code"].as_u64().is_none() {
                return Err(format!("{command}: error without a code: {}", out.stdout));
            }
        }
    }
    let conf = match NetConf::parse(bytes.to_vec()) {
        Ok(conf) => conf,
        Err(e) => return refusal("NetConf", &e),
    };
    DEPTH[0].fetch_add(1, Ordering::Relaxed);
    if let Some(prev) = &conf.prev_result {
        for version in [CniVersion::V1_1_0, CniVersion::V1_0_0, CniVersion::V0_4_0] {
            let text = prev.to_json(version);
            serde_json::from_str::<Value>(&text).map_err(|e| format!("result {text}: {e}"))?;
        }
    }
    let env = CallEnv::from_vars(&[("CNI_IFNAME", "eth0".to_string())]).unwrap();
    for family in [Family::Macvlan, Family::Ipvlan] {
        match LinkConf::parse(family, &conf, &env) {
            Ok(link) => {
                DEPTH[1].fetch_add(1, Ordering::Relaxed);
                let _ = link.parent_name(link.master.as_deref().unwrap_or("eth0"));
            }
            Err(e) => refusal("LinkConf", &e)?,
        }
    }
    if let Some(ipam) = &conf.ipam {
        match IpamConf::parse(ipam) {
            Ok(ipam) => {
                DEPTH[2].fetch_add(1, Ordering::Relaxed);
                for range in ipam.range_sets.iter().flatten() {
                    let _ = (range.key(), range.contains(range.gateway), range.to_string());
                }
            }
            Err(e) => refusal("IpamConf", &e)?,
        }
    }
    Ok(())
}

/// `CNI_ARGS`' contract: parsed or refused with code 4; a MAC in it
/// checked or refused with code 7.
fn check_args(bytes: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(bytes) else { return Ok(()) };
    match parse_args(text) {
        Err(e) => refusal("CNI_ARGS", &e),
        Ok(pairs) => {
            if pairs.iter().any(|(k, _)| k.is_empty()) {
                return Err("a key-less pair was accepted".into());
            }
            let env = CallEnv::from_vars(&[("CNI_ARGS", text.to_string())])
                .map_err(|e| format!("parsed once, refused twice: {}", e.msg))?;
            let conf = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"n"}"#.to_vec()).unwrap();
            match LinkConf::parse(Family::Macvlan, &conf, &env) {
                Ok(_) => Ok(()),
                Err(e) => refusal("CNI_ARGS MAC", &e),
            }
        }
    }
}

const CONF_KEYS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "ipam",
    "dns",
    "prevResult",
    "runtimeConfig",
    "args",
    "master",
    "mode",
    "mtu",
    "mac",
    "linkInContainer",
    "bcqueuelen",
    "bclim",
    "flags",
    "flag",
    "sourceMacs",
    "tap",
    "vlan",
    "noDefaultRoute",
    "subnet",
    "rangeStart",
    "rangeEnd",
    "gateway",
    "routes",
    "ranges",
    "dst",
    "gw",
    "dataDir",
    "state",
    "resolvConf",
    "nameservers",
    "interfaces",
    "ips",
    "address",
    "interface",
    "version",
    "sandbox",
    "cni",
    "cni.dev/valid-attachments",
];

/// Paths a spoiled configuration sets, the IPAM's inside it.
const CONF_PATHS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "ipam",
    "dns",
    "prevResult",
    "runtimeConfig",
    "args",
    "master",
    "mode",
    "mtu",
    "mac",
    "linkInContainer",
    "bcqueuelen",
    "bclim",
    "flags",
    "flag",
    "sourceMacs",
    "tap",
    "vlan",
    "noDefaultRoute",
    "ipam.type",
    "ipam.subnet",
    "ipam.rangeStart",
    "ipam.rangeEnd",
    "ipam.gateway",
    "ipam.routes",
    "ipam.ranges",
    "ipam.dataDir",
    "ipam.state",
    "ipam.resolvConf",
    "runtimeConfig.mac",
    "runtimeConfig.ips",
    "args.cni",
    "dns.nameservers",
    "prevResult.interfaces",
    "prevResult.ips",
    "prevResult.routes",
];

const CONF_STRINGS: &[&str] = &[
    "1.1.0",
    "1.0.0",
    "0.4.0",
    "0.3.1",
    "0.3.0",
    "0.2.0",
    "bridge",
    "vepa",
    "private",
    "passthru",
    "source",
    "l2",
    "l3",
    "l3s",
    "nodst",
    "nopromisc",
    "nicslice-ipam",
    "host-local",
    "eth0",
    "lo",
    "eth0.50",
    "10.0.0.0/24",
    "10.0.0.0/31",
    "10.0.0.0/0",
    "0.0.0.0/0",
    "::/0",
    "fd00::/64",
    "fd00::/127",
    "2001:db8::/32",
    "10.0.0.1",
    "10.0.0.255",
    "fd00::1",
    "255.255.255.255",
    "02:00:00:00:00:01",
    "01:00:5e:00:00:01",
    "4",
    "6",
    "",
    "nodst,nopromisc",
    "/tmp/x",
    "",
];

fn conf_inputs() -> BoxedStrategy<Vec<u8>> {
    let bases: Vec<Value> = driver::corpus("cni-conf")
        .iter()
        .filter_map(|seed| serde_json::from_slice(seed).ok())
        .collect();
    let values = driver::json_value(CONF_KEYS, CONF_STRINGS);
    prop_oneof![
        2 => driver::mutated("cni-conf", CONF_KEYS),
        3 => driver::spoiled(bases, CONF_PATHS, values.clone()),
        1 => values.prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]
    .boxed()
}

fn args_inputs() -> BoxedStrategy<Vec<u8>> {
    let pair = ("[A-Za-z_0-9]{0,8}", "[=;]{0,2}", "\\PC{0,12}")
        .prop_map(|(k, sep, v)| format!("{k}={v}{sep}"));
    prop_oneof![
        1 => driver::mutated("cni-args", &["IgnoreUnknown=1", "MAC=", "IP=", ";", "=="]),
        1 => proptest::collection::vec(pair, 0..6).prop_map(|p| p.concat().into_bytes()),
    ]
    .boxed()
}

#[test]
fn replay_cni_conf_corpus_and_regressions() {
    driver::replay("cni-conf", check_conf);
}

#[test]
fn replay_cni_args_corpus_and_regressions() {
    driver::replay("cni-args", check_args);
}

#[test]
#[ignore = "fuzzing: scripts/fuzz.sh runs it"]
fn fuzz_cni_conf() {
    driver::fuzz("cni-conf", conf_inputs(), check_conf);
    let [parsed, link, ipam] = DEPTH.each_ref().map(|n| n.load(Ordering::Relaxed));
    println!(
        "fuzz cni-conf: {parsed} parsed, {link} link configurations and {ipam} IPAM configurations accepted"
    );
}

#[test]
#[ignore = "fuzzing: scripts/fuzz.sh runs it"]
fn fuzz_cni_args() {
    driver::fuzz("cni-args", args_inputs(), check_args);
}
