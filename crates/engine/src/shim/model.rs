//! Model first: before a shim is made, the reachability model is asked
//! whether the host will reach a child of this network through it (a world of
//! the host, its shim and one child in the network's mode). A blocked verdict
//! is the refusal, in the words `nicslice explain` uses: passthru leaves no
//! room for a shim, private children never reach siblings, vepa siblings
//! need a hairpin switch port, a source-mode child hears only listed MACs.

use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_model::reach::{
    self, Child, ChildKind, ChildMode, EndpointRef, Host, Reach, Route, Shim, Topology,
};
use nicslice_model::{Driver, NetworkSpec, from_u128, to_u128};

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
fn world(spec: &NetworkSpec, subnet: IpNet) -> Option<Topology> {
    let (child, host) = (nth(subnet, 2)?, nth(subnet, 3)?);
    let full = IpNet::new(child.addr(), if child.addr().is_ipv4() { 32 } else { 128 }).ok()?;
    let child = Child {
        // Named after the network: the model's sentences then read "use
        // bridge mode for lan".
        name: spec.name.to_string(),
        kind: kind(spec.driver),
        mode: Some(ChildMode::from(spec.mode)),
        flag: spec.driver.is_ipvlan().then_some(spec.ipvlan_flag),
        nopromisc: spec.flags.nopromisc,
        nodst: spec.flags.nodst,
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
        parent: spec.parent.to_string(),
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

/// Why a shim cannot give the host its children on `spec`, if it cannot.
pub(super) fn refusal(spec: &NetworkSpec) -> Option<String> {
    let subnet = spec.subnets.iter().map(|s| s.subnet).min_by_key(|s| s.addr().is_ipv6())?;
    let topology = world(spec, subnet)?;
    let child = EndpointRef::from(spec.name.as_str());
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

    #[test]
    fn the_model_lets_bridge_through_and_refuses_the_rest_with_its_reason() {
        assert_eq!(refusal(&spec(MacvlanMode::Bridge)), None);
        for (mode, words) in [
            (MacvlanMode::Private, "private"),
            (MacvlanMode::Vepa, "hairpin"),
            (MacvlanMode::Passthru, "passthru"),
            (MacvlanMode::Source, "source"),
        ] {
            let why = refusal(&spec(mode)).unwrap_or_else(|| panic!("{mode} let through"));
            assert!(why.contains(words), "{mode}: {why}");
        }
    }
}
