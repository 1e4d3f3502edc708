//! The description itself: TOML and JSON with defaults, validation errors, the
//! endpoint list, serialized verdicts, the rule catalogue.

use super::{lan, mv, pass2};
use crate::reach::presets::{self, net};
use crate::reach::{
    ChildKind, ChildMode, EndpointKind, IpvlanFlag, Reach, Rule, Shim, Topology, TopologyError,
    matrix,
};

const SEED003_TOML: &str = r#"
description = "seed 003, vepa, hairpin"

[switch]
name = "br0"
addresses = ["192.168.0.1/24"]
ports = [{ name = "veth11", hairpin = true }]

[[hosts]]
name = "ns3"
port = "veth11"
addresses = ["192.168.0.254/24"]

[[hosts.children]]
name = "ns1"
mode = "vepa"
addresses = ["192.168.0.11/24"]

[[hosts.children]]
name = "ns2"
mode = "vepa"
addresses = ["192.168.0.12/24"]
"#;

#[test]
fn toml_with_defaults() {
    let t: Topology = toml::from_str(SEED003_TOML).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.hosts[0].parent, "eth0");
    assert!(t.hosts[0].up);
    assert_eq!(t.hosts[0].children[0].kind, ChildKind::Macvlan);
    pass2(&t, "ns1", "ns2", Rule::HairpinReflection);
    let mut preset = presets::seed003_hairpin(crate::link::MacvlanMode::Vepa);
    preset.description = t.description.clone();
    assert_eq!(t, preset, "the TOML spells out the preset");
}

#[test]
fn json_round_trip() {
    let t = presets::seed000_fixed();
    let text = serde_json::to_string(&t).unwrap_or_default();
    let back: Topology = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(back, t);
    let minimal: Topology = serde_json::from_str(
        r#"{"hosts":[{"name":"h","addresses":["10.0.0.2/24"],
            "children":[{"name":"c","kind":"ipvlan","mode":"l3","addresses":["10.1.0.2/24"]}]}]}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(minimal.switch.name, "switch");
    assert!(minimal.validate().is_ok());
}

#[test]
fn unknown_fields_are_refused() {
    let bad = "[switch]\nname = \"br0\"\nports = [{ name = \"p\", hairpn = true }]\n";
    let err =
        toml::from_str::<Topology>(bad).map(|_| String::new()).unwrap_or_else(|e| e.to_string());
    assert!(err.contains("hairpn"), "{err}");
}

fn invalid(t: &Topology) -> TopologyError {
    match t.validate() {
        Err(e) => e,
        Ok(()) => panic!("accepted: {t:?}"),
    }
}

#[test]
fn validation_errors_say_what_is_wrong() {
    let base = || lan(vec![mv("a", ChildMode::Bridge, 10)], false);
    let mut t = base();
    t.hosts[1].name = "a".to_string();
    assert_eq!(invalid(&t), TopologyError::DuplicateName("a".to_string()));

    let mut t = base();
    t.hosts[1].port = Some("p9".to_string());
    assert!(matches!(invalid(&t), TopologyError::UnknownPort { .. }));

    let mut t = base();
    t.hosts[1].port = Some("p1".to_string());
    assert!(matches!(invalid(&t), TopologyError::PortShared { .. }));

    let t = lan(vec![mv("a", ChildMode::Passthru, 10), mv("b", ChildMode::Passthru, 11)], false);
    assert!(invalid(&t).to_string().contains("must be the only child of eth0"));

    let mut t = lan(vec![mv("a", ChildMode::Passthru, 10)], false);
    t.hosts[0].shim = Some(Shim {
        name: "s".to_string(),
        addresses: vec![net("10.0.0.250/32")],
        mac: None,
        routes: Vec::new(),
    });
    assert!(matches!(invalid(&t), TopologyError::PassthruNotAlone { .. }));

    let mut t = base();
    t.hosts[0].children.push(super::ipv("i", ChildMode::L2, "10.0.0.20/24"));
    assert!(matches!(invalid(&t), TopologyError::MixedDrivers { .. }));

    let mut t = lan(vec![super::ipv("i", ChildMode::L2, "10.0.0.20/24")], false);
    t.hosts[0].children.push(super::ipv("j", ChildMode::L3, "10.0.0.21/24"));
    assert!(matches!(invalid(&t), TopologyError::IpvlanModeMismatch { .. }));
    t.hosts[0].children[1].mode = Some(ChildMode::L2);
    t.hosts[0].children[1].flag = Some(IpvlanFlag::Private);
    assert!(matches!(invalid(&t), TopologyError::IpvlanModeMismatch { .. }));

    let mut t = base();
    t.hosts[0].children[0].mode = Some(ChildMode::L3);
    assert!(invalid(&t).to_string().contains("l3 is not a macvlan mode"));

    let mut t = base();
    t.hosts[0].children[0].nodst = true;
    assert!(invalid(&t).to_string().contains("nodst only applies to source-mode children"));

    let mut t = base();
    t.hosts[0].children[0].mode = Some(ChildMode::Source);
    t.hosts[0].children[0].source_macs = vec!["nobody".to_string().into()];
    assert!(matches!(invalid(&t), TopologyError::UnknownSourceEntry { .. }));

    let mut t = base();
    t.hosts[1].addresses = vec![net("10.0.0.10/24")];
    assert!(matches!(invalid(&t), TopologyError::DuplicateAddress { .. }));

    let mut t = base();
    t.hosts[0].mac = "02:00:00:00:00:07".parse().ok();
    t.hosts[0].children[0].mac = "02:00:00:00:00:07".parse().ok();
    assert!(matches!(invalid(&t), TopologyError::DuplicateMac { .. }));

    let mut t = base();
    t.hosts[0].children[0].gateway = "10.9.9.9".parse().ok();
    assert!(invalid(&t).to_string().contains("ENETUNREACH"));

    let mut t = base();
    t.hosts[0].parent = "way-too-long-name0".to_string();
    assert!(matches!(invalid(&t), TopologyError::ParentName { .. }));

    let mut t = presets::seed000();
    t.remotes[0].router = Some("nope".to_string());
    assert!(matches!(invalid(&t), TopologyError::RemoteRouter { .. }));

    let mut t = base();
    t.hosts[0].children[0].name = " ".to_string();
    assert!(matches!(invalid(&t), TopologyError::EmptyName { .. }));
}

#[test]
fn endpoints_in_matrix_order_with_their_probe_address() {
    let t = presets::seed000_fixed();
    let eps = t.endpoints().unwrap_or_default();
    let names: Vec<&str> = eps.iter().map(|e| e.name.0.as_str()).collect();
    assert_eq!(
        names,
        ["switch", "node1", "node1-ns1", "node1-ns2", "node2", "node2-ns1", "gw", "mac"]
    );
    assert_eq!(eps[0].address, None);
    assert_eq!(eps[1].kind, EndpointKind::Host);
    // node1's address moved to the shim: the host is probed there.
    assert_eq!(eps[1].address, "192.168.179.9".parse().ok());
    assert_eq!(eps[6].address, "192.168.1.1".parse().ok());
}

#[test]
fn verdicts_serialize_for_the_cli() {
    let m = matrix(&presets::seed003(crate::link::MacvlanMode::Bridge)).unwrap_or_default();
    let cell = m.iter().find(|c| c.from.0 == "ns1" && c.to.0 == "ns3");
    let json = serde_json::to_value(cell).unwrap_or_default();
    assert_eq!(json["verdict"]["reach"], "blocked");
    assert_eq!(json["verdict"]["rule"], "parent_child");
    assert_eq!(json["from"], "ns1");
    assert!(json["verdict"]["fix"].as_str().unwrap_or_default().contains("shim"));
}

#[test]
fn the_rule_catalogue_is_complete() {
    let mut seen = std::collections::HashSet::new();
    for r in Rule::ALL {
        assert!(seen.insert(r), "{r:?} twice");
        assert!(!r.summary().is_empty());
    }
    assert_eq!(Rule::ParentChild.reach(), Reach::Blocked);
    assert_eq!(Rule::ShimPath.reach(), Reach::Pass);
    assert!(!Rule::IpvlanL3NoArp.certain() && Rule::ParentChild.certain());
    let json = serde_json::to_string(&Rule::IpvlanL3NoArp).unwrap_or_default();
    assert_eq!(json, "\"ipvlan_l3_no_arp\"");
}
