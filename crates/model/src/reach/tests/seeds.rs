//! The seeds' observations, exactly as the articles report them.

use super::{blocked, blocked2, pass, pass2};
use crate::link::{IpvlanFlag, IpvlanMode, MacvlanMode};
use crate::reach::presets;
use crate::reach::{ChildKind, Reach, Rule, matrix};

/// Seed 003 §1: bridge: switch 通, parent 不通, sibling 通.
#[test]
fn seed003_bridge() {
    let t = presets::seed003(MacvlanMode::Bridge);
    pass2(&t, "ns1", "br0", Rule::SameSegment);
    blocked2(&t, "ns1", "ns3", Rule::ParentChild);
    pass2(&t, "ns1", "ns2", Rule::BridgeSiblings);
}

/// Seed 003 §1 end: veth11 down, the bridge siblings no longer talk.
#[test]
fn seed003_link_down() {
    let t = presets::seed003_link_down();
    blocked2(&t, "ns1", "ns2", Rule::ParentDown);
    blocked2(&t, "ns1", "br0", Rule::ParentDown);
    blocked2(&t, "ns3", "br0", Rule::ParentDown);
}

/// Seed 003 §2: vepa: switch 通, sibling 不通 (no hairpin), parent 不通.
#[test]
fn seed003_vepa() {
    let t = presets::seed003(MacvlanMode::Vepa);
    pass2(&t, "ns1", "br0", Rule::SameSegment);
    blocked2(&t, "ns1", "ns2", Rule::SiblingNeedsHairpin);
    blocked2(&t, "ns1", "ns3", Rule::ParentChild);
    let t = presets::seed003_hairpin(MacvlanMode::Vepa);
    pass2(&t, "ns1", "ns2", Rule::HairpinReflection);
}

/// Seed 003 §3: private: switch 通, sibling 不通 even with hairpin, parent 不通.
#[test]
fn seed003_private() {
    for t in
        [presets::seed003(MacvlanMode::Private), presets::seed003_hairpin(MacvlanMode::Private)]
    {
        pass2(&t, "ns1", "br0", Rule::SameSegment);
        blocked2(&t, "ns1", "ns2", Rule::PrivateIsolation);
    }
    blocked2(&presets::seed003(MacvlanMode::Private), "ns1", "ns3", Rule::ParentChild);
}

/// Seed 003 §4: passthru: switch 通, parent 不通.
#[test]
fn seed003_passthru() {
    let t = presets::seed003(MacvlanMode::Passthru);
    pass2(&t, "ns1", "br0", Rule::SameSegment);
    blocked2(&t, "ns1", "ns3", Rule::ParentChild);
}

/// Seed 003 §5: source with br0's MAC listed: switch 通, parent 不通.
#[test]
fn seed003_source() {
    let t = presets::seed003(MacvlanMode::Source);
    pass2(&t, "ns1", "br0", Rule::SourceListed);
    blocked2(&t, "ns1", "ns3", Rule::ParentChild);
}

/// The host itself reaches the switch in every mode but passthru.
#[test]
fn seed003_host_reaches_switch() {
    for mode in MacvlanMode::ALL {
        let t = presets::seed003(mode);
        let want = if mode == MacvlanMode::Passthru { Reach::Blocked } else { Reach::Pass };
        let v = super::verdict(&t, "ns3", "br0");
        assert_eq!(v.reach, want, "{mode}: {}", v.reason);
    }
}

/// Seed 000: siblings 通, the other node and its child 通, own node 不通, 10.8/16 不通
/// until the children have a default route.
#[test]
fn seed000_before_fixes() {
    let t = presets::seed000();
    pass2(&t, "node1-ns1", "node1-ns2", Rule::BridgeSiblings);
    pass2(&t, "node1-ns1", "node2", Rule::SameSegment);
    pass2(&t, "node1-ns1", "node2-ns1", Rule::SameSegment);
    blocked2(&t, "node1-ns1", "node1", Rule::ParentChild);
    blocked(&t, "mac", "node1-ns1", Rule::NoReturnRoute);
    blocked(&t, "node1-ns1", "mac", Rule::NoRoute);
    pass2(&t, "node1", "mac", Rule::Routed);
    pass2(&t, "node1", "node2", Rule::SameSegment);
}

/// Seed 000 fixed: the shim mac0 carries node1's address; default routes reach 10.8/16.
#[test]
fn seed000_fixed() {
    let t = presets::seed000_fixed();
    pass2(&t, "node1-ns1", "node1", Rule::ShimPath);
    pass2(&t, "node1-ns1", "mac", Rule::Routed);
    pass2(&t, "node1", "mac", Rule::Routed);
    pass2(&t, "node1", "node2-ns1", Rule::SameSegment);
    pass2(&t, "node1-ns1", "node1-ns2", Rule::BridgeSiblings);
}

/// Seed 000 with node1's children in each mode: what the mode changes (the shim's
/// siblings, source lists, nodst, passthru) and what it does not (the other host, its
/// child, the gateway's far side with a default route, none without).
#[test]
fn seed000_per_mode() {
    use crate::reach::ChildKind::{Macvlan, Macvtap};
    use MacvlanMode::{Bridge, Passthru, Private, Source, Vepa};
    for (kind, mode) in [(Macvlan, Vepa), (Macvlan, Private), (Macvlan, Source), (Macvtap, Bridge)]
    {
        let t = presets::seed000_mode(kind, mode, false);
        let listed = mode == Source;
        let peer = if listed { Rule::SourceListed } else { Rule::SameSegment };
        pass2(&t, "node1-ns1", "node2", peer);
        pass2(&t, "node1-ns1", "mac", Rule::Routed);
        blocked(&t, "node1-ns2", "mac", Rule::NoRoute);
        blocked(&t, "mac", "node1-ns2", Rule::NoReturnRoute);
        pass2(&t, "node1", "node2-ns1", Rule::SameSegment);
        pass2(&t, "node1", "mac", Rule::Routed);
        blocked2(&t, "node2", "node2-ns1", Rule::ParentChild);
        let shim = match mode {
            Vepa => Rule::SiblingNeedsHairpin,
            Private => Rule::PrivateIsolation,
            Source => Rule::SourceBroadcastReturned,
            _ => Rule::ShimPath,
        };
        let want = if shim == Rule::ShimPath { Reach::Pass } else { Reach::Blocked };
        super::expect(&t, "node1", "node1-ns1", want, shim);
        super::expect(&t, "node1-ns1", "node1", want, shim);
        if listed {
            blocked2(&t, "node1-ns1", "node2-ns1", Rule::SourceNotListed);
        } else {
            pass2(&t, "node1-ns1", "node2-ns1", Rule::SameSegment);
        }
    }
    let t = presets::seed000_mode(Macvlan, Vepa, true);
    pass2(&t, "node1", "node1-ns1", Rule::ShimPath);
    pass2(&t, "node1-ns1", "node1-ns2", Rule::HairpinReflection);

    let t = presets::seed000_mode(Macvlan, Passthru, false);
    assert!(t.hosts[0].shim.is_none() && t.hosts[0].children.len() == 1);
    pass2(&t, "node1-ns1", "mac", Rule::Routed);
    pass2(&t, "node1-ns1", "node2-ns1", Rule::SameSegment);
    blocked2(&t, "node1", "node2", Rule::PassthruTakesParent);
    blocked2(&t, "node1", "mac", Rule::PassthruTakesParent);

    let mut t = presets::seed000_mode(Macvlan, Source, false);
    t.hosts[0].children.iter_mut().for_each(|c| c.nodst = true);
    blocked2(&t, "node1", "node2", Rule::SourceNodst);
    blocked2(&t, "node1", "gw", Rule::SourceNodst);
    pass2(&t, "node1", "node2-ns1", Rule::SameSegment);
    pass2(&t, "node1-ns1", "gw", Rule::SourceListed);
}

/// Seed 000's world with ipvlan children on node1: l2 with an ipvlan shim behaves like
/// macvlan bridge with its shim; l3/l3s are NOARP, so only the gateway, which routes
/// their addresses via node1, reaches them (the VM stage's lab confirms these).
#[test]
fn seed000_ipvlan() {
    use crate::link::IpvlanMode;
    let t = presets::seed000_mode(ChildKind::Ipvlan, IpvlanMode::L2, false);
    pass2(&t, "node1", "node1-ns1", Rule::ShimPath);
    pass2(&t, "node1-ns1", "node1-ns2", Rule::IpvlanL2Siblings);
    pass2(&t, "node1-ns1", "mac", Rule::Routed);
    pass2(&t, "node1-ns1", "node2-ns1", Rule::SameSegment);
    blocked(&t, "node1-ns2", "mac", Rule::NoRoute);
    for mode in [IpvlanMode::L3, IpvlanMode::L3s] {
        let t = presets::seed000_mode(ChildKind::Ipvlan, mode, false);
        assert!(t.hosts[0].shim.is_none(), "{mode}");
        pass(&t, "gw", "node1-ns1", Rule::IpvlanRoutedViaParent);
        pass2(&t, "node1-ns1", "mac", Rule::Routed);
        pass2(&t, "node1-ns1", "node1-ns2", Rule::IpvlanL3Siblings);
        blocked2(&t, "node1-ns1", "node2", Rule::IpvlanL3NoArp);
        blocked2(&t, "node1", "node1-ns1", Rule::ParentChild);
        blocked(&t, "mac", "node1-ns2", Rule::NoReturnRoute);
    }
}

/// Seed 001: ipvlan l3 children on two subnets of one parent reach each other through
/// their `default dev` routes.
#[test]
fn seed001_l3() {
    let t = presets::seed001_l3();
    pass2(&t, "net1", "net2", Rule::IpvlanL3Siblings);
    blocked2(&t, "net1", "host", Rule::ParentChild);
    let mut t = t;
    t.hosts[0].children.iter_mut().for_each(|c| c.default_dev = false);
    blocked(&t, "net1", "net2", Rule::NoRoute);
}

/// Seed 001 under each port flag, as the lab observes it (VM stage, 6.1): PRIVATE
/// and VEPA block the siblings, hairpin does not bring VEPA's back, a router that
/// routes the children via the host does; nothing else changes.
#[test]
fn seed001_flags() {
    for mode in [IpvlanMode::L3, IpvlanMode::L3s] {
        let bridge = presets::seed001(mode);
        for (flag, hairpin, rule) in [
            (IpvlanFlag::Private, false, Rule::IpvlanPrivate),
            (IpvlanFlag::Vepa, false, Rule::IpvlanVepaL3),
            (IpvlanFlag::Vepa, true, Rule::IpvlanVepaL3),
        ] {
            let t = presets::seed001_flag(mode, flag, hairpin);
            blocked2(&t, "net1", "net2", rule);
            let (m, b) = (matrix(&t).unwrap_or_default(), matrix(&bridge).unwrap_or_default());
            for (x, y) in m.iter().zip(&b) {
                if (x.from.0.as_str(), x.to.0.as_str()) != ("net1", "net2")
                    && (x.from.0.as_str(), x.to.0.as_str()) != ("net2", "net1")
                {
                    assert_eq!(x.verdict.reach, y.verdict.reach, "{flag}: {} -> {}", x.from, x.to);
                }
            }
        }
        let t = presets::seed001_routed(presets::seed001_flag(mode, IpvlanFlag::Vepa, false));
        pass2(&t, "net1", "net2", Rule::Routed);
        pass2(&t, "host", "net1", Rule::Routed);
        pass2(&t, "gw", "net2", Rule::IpvlanRoutedViaParent);
        blocked(&t, "lan", "net1", Rule::NoRoute);
    }
}

/// Every preset is valid and its matrix has one cell per ordered pair.
#[test]
fn presets_are_valid() {
    let mut all = vec![presets::seed000(), presets::seed000_fixed(), presets::seed003_link_down()];
    all.extend(MacvlanMode::ALL.map(presets::seed003));
    all.extend(MacvlanMode::ALL.map(presets::seed003_hairpin));
    all.push(presets::seed001_l3());
    for mode in IpvlanMode::ALL {
        for flag in [IpvlanFlag::Bridge, IpvlanFlag::Private, IpvlanFlag::Vepa] {
            all.push(presets::seed001_flag(mode, flag, true));
            all.push(presets::seed001_routed(presets::seed001_flag(mode, flag, false)));
        }
    }
    all.extend(MacvlanMode::ALL.map(|m| presets::seed000_mode(ChildKind::Macvlan, m, false)));
    all.extend(MacvlanMode::ALL.map(|m| presets::seed000_mode(ChildKind::Macvtap, m, true)));
    for mode in IpvlanMode::ALL {
        all.push(presets::seed000_mode(ChildKind::Ipvlan, mode, false));
    }
    for t in all {
        t.validate().unwrap_or_else(|e| panic!("{}: {e}", t.description));
        let eps = t.endpoints().unwrap_or_default();
        let n = eps.iter().filter(|e| e.address.is_some()).count();
        assert_eq!(matrix(&t).map(|m| m.len()).unwrap_or(0), n * (n - 1), "{}", t.description);
    }
}
