//! Model first: before a shim is made, the reachability model is asked
//! whether the host will reach a child of this network through it (a world of
//! the host, its shim and one child in the network's mode). A blocked verdict
//! is the refusal, in the words `nicslice explain` uses: passthru leaves no
//! room for a shim, private children never reach siblings, vepa siblings
//! need a hairpin switch port, a source-mode child hears only listed MACs.
//! `shim add` and the CNI plugins' `"hostAccess": true` ask the same
//! question and refuse with the same sentence ([`super::refusal`]).

use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_model::reach::{
    self, Child, ChildKind, ChildMode, EndpointRef, Host, Reach, Route, Shim, Topology,
};
use nicslice_model::rules::LinkSettings;
use nicslice_model::{Driver, NetworkSpec, from_u128, to_u128};

/// What the model is asked about: a network's name, its parent's name and
/// the settings of its children.
pub(super) struct Asked<'a> {
    pub name: &'a str,
    pub parent: &'a str,
    pub settings: LinkSettings,
}

impl<'a> From<&'a NetworkSpec> for Asked<'a> {
    fn from(spec: &'a NetworkSpec) -> Asked<'a> {
        Asked {
            name: spec.name.as_str(),
            parent: spec.parent.as_str(),
            settings: LinkSettings {
                driver: spec.driver,
                mode: spec.mode,
                flags: spec.flags,
                ipvlan_flag: spec.ipvlan_flag,
                bcqueuelen: spec.bcqueuelen,
                bclim: spec.bclim,
            },
        }
    }
}

fn kind(driver: Driver) -> ChildKind {
    match driver {
        Driver::Macvlan => ChildKind::Macvlan,
        Driver::Macvtap => ChildKind::Macvtap,
        Driver::Ipvlan => ChildKind::Ipvlan,
        Driver::Ipvtap => ChildKind::Ipvtap,
    }
}

/// The `n`th address of `subnet`, with its prefix.
fn nth(subnet: IpNet, n: u128) -> Option<IpNet> {
    let ip: IpAddr = from_u128(subnet.network(), to_u128(subnet.network()).checked_add(n)?)?;
    subnet.contains(&ip).then(|| IpNet::new(ip, subnet.prefix_len()).ok()).flatten()
}

/// The world the question is asked in: a host whose address is on its shim
/// (as seed 000's fixed world has it) and one child of the network.
fn world(asked: &Asked<'_>, subnet: IpNet) -> Option<Topology> {
    let s = &asked.settings;
    let (child, host) = (nth(subnet, 2)?, nth(subnet, 3)?);
    let full = IpNet::new(child.addr(), if child.addr().is_ipv4() { 32 } else { 128 }).ok()?;
    let child = Child {
        // Named after the network: the model's sentences then read "use
        // bridge mode for lan".
        name: asked.name.to_string(),
        kind: kind(s.driver),
        mode: Some(ChildMode::from(s.mode)),
        flag: s.driver.is_ipvlan().then_some(s.ipvlan_flag),
        nopromisc: s.flags.nopromisc,
        nodst: s.flags.nodst,
        source_macs: Vec::new(),
        mac: None,
        addresses: vec![child],
        gateway: None,
        default_dev: false,
        routes: Vec::new(),
    };
    let shim = Shim {
        name: "shim".into(),
        addresses: vec![host],
        mac: None,
        routes: vec![Route { to: full, via: None }],
    };
    let host = Host {
        name: "host".into(),
        port: None,
        parent: asked.parent.to_string(),
        addresses: Vec::new(),
        mac: None,
        up: true,
        gateway: None,
        routes: Vec::new(),
        children: vec![child],
        shim: Some(shim),
    };
    Some(Topology { hosts: vec![host], ..Topology::default() })
}

/// The subnet the model's world is built in when the network's own is not
/// known (a CNI configuration's IPAM is another plugin's): the verdict
/// depends on modes and flags, never on the addresses.
const DOCUMENTATION: &str = "192.0.2.0/24";

/// Why a shim cannot give the host its children, if it cannot.
pub(super) fn refusal(asked: &Asked<'_>, subnet: Option<IpNet>) -> Option<String> {
    let subnet = subnet.or_else(|| DOCUMENTATION.parse().ok())?;
    let topology = world(asked, subnet)?;
    let child = EndpointRef::from(asked.name);
    // A world the model refuses to build is one the kernel refuses too (a
    // passthru child must be its parent's only one, shim included).
    let verdict = match reach::predict(&topology, &EndpointRef::from("host"), &child) {
        Ok(v) => v,
        Err(e) => return Some(e.to_string()),
    };
    if verdict.reach == Reach::Pass {
        return None;
    }
    Some(match verdict.fix {
        Some(fix) => format!("{}; fix: {fix}", verdict.reason),
        None => verdict.reason,
    })
}

#[cfg(test)]
mod tests {
    use nicslice_model::{MacvlanMode, SubnetSpec};

    use super::*;

    fn spec(mode: MacvlanMode) -> NetworkSpec {
        let mut s =
            NetworkSpec::new("n".parse().unwrap(), Driver::Macvlan, "eth0".parse().unwrap(), mode);
        s.subnets.push(SubnetSpec::new("192.168.0.0/24".parse().unwrap()));
        s
    }

    fn refusal_of(spec: &NetworkSpec) -> Option<String> {
        refusal(&Asked::from(spec), Some(spec.subnets[0].subnet))
    }

    #[test]
    fn the_model_lets_bridge_through_and_refuses_the_rest_with_its_reason() {
        assert_eq!(refusal_of(&spec(MacvlanMode::Bridge)), None);
        for (mode, words) in [
            (MacvlanMode::Private, "private"),
            (MacvlanMode::Vepa, "hairpin"),
            (MacvlanMode::Passthru, "passthru"),
            (MacvlanMode::Source, "source"),
        ] {
            let why = refusal_of(&spec(mode)).unwrap_or_else(|| panic!("{mode} let through"));
            assert!(why.contains(words), "{mode}: {why}");
        }
    }
}
