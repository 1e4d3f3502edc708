//! ARP on its own (`predict_arp`, `neighbour_pairs`): who answers a request for
//! whose address, per macvlan mode, hairpin, source list, passthru and ipvlan mode.

use super::{ipv, lan, mv};
use crate::link::MacvlanMode;
use crate::reach::presets::{seed000, seed001, seed003, seed003_hairpin};
use crate::reach::{
    ChildMode, EndpointRef, IpvlanMode, MacRef, Rule, Topology, neighbour_pairs, predict_arp,
};

use ChildMode::{Bridge, L2, L3, L3s, Source, Vepa};

/// Whether `from`'s ARP request for `to` is answered, and the rule when not.
#[track_caller]
fn arp(t: &Topology, from: &str, to: &str) -> (bool, Option<Rule>) {
    let p = predict_arp(t, &EndpointRef::from(from), &EndpointRef::from(to))
        .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"))
        .unwrap_or_else(|| panic!("{from} -> {to} is not an ARP pair"));
    let word = if p.answered { "answered by " } else { "unanswered: " };
    assert!(p.reason.starts_with(word), "{from} -> {to}: {}", p.reason);
    assert_eq!(p.rule.is_some(), !p.answered, "{from} -> {to}: {p:?}");
    (p.answered, p.rule)
}

#[track_caller]
fn answered2(t: &Topology, a: &str, b: &str) {
    assert_eq!(arp(t, a, b), (true, None), "{a} -> {b}");
    assert_eq!(arp(t, b, a), (true, None), "{b} -> {a}");
}

#[track_caller]
fn unanswered(t: &Topology, a: &str, b: &str, rule: Rule) {
    assert_eq!(arp(t, a, b), (false, Some(rule)), "{a} -> {b}");
}

#[test]
fn bridge_children_answer_siblings_and_the_switch_but_not_their_parent() {
    let t = seed003(MacvlanMode::Bridge);
    answered2(&t, "ns1", "ns2");
    answered2(&t, "ns1", "br0");
    answered2(&t, "ns3", "br0");
    unanswered(&t, "ns1", "ns3", Rule::ParentChild);
    unanswered(&t, "ns3", "ns1", Rule::ParentChild);
}

#[test]
fn vepa_siblings_answer_through_hairpin_only() {
    let t = seed003(MacvlanMode::Vepa);
    unanswered(&t, "ns1", "ns2", Rule::SiblingNeedsHairpin);
    answered2(&t, "ns1", "br0");
    answered2(&seed003_hairpin(MacvlanMode::Vepa), "ns1", "ns2");
}

#[test]
fn private_siblings_never_answer_each_other() {
    for t in [seed003(MacvlanMode::Private), seed003_hairpin(MacvlanMode::Private)] {
        unanswered(&t, "ns1", "ns2", Rule::PrivateIsolation);
        unanswered(&t, "ns2", "ns1", Rule::PrivateIsolation);
        answered2(&t, "ns1", "br0");
    }
}

/// The parent still hears broadcasts and answers, but the replies to its MAC are the
/// passthru child's: its own requests go unanswered.
#[test]
fn passthru_takes_the_answers_to_its_parent() {
    let t = seed003(MacvlanMode::Passthru);
    answered2(&t, "ns1", "br0");
    assert_eq!(arp(&t, "br0", "ns3"), (true, None));
    unanswered(&t, "ns3", "br0", Rule::PassthruTakesParent);
}

#[test]
fn source_children_hear_listed_senders_only() {
    let t = seed003(MacvlanMode::Source);
    answered2(&t, "ns1", "br0");
    unanswered(&t, "ns1", "ns3", Rule::ParentChild);
    let mut unlisted = t.clone();
    unlisted.hosts[0].children[0].source_macs =
        vec![MacRef::Mac(crate::MacAddr([0x02, 0, 0, 0, 0x0a, 0x0b]))];
    unanswered(&unlisted, "ns1", "br0", Rule::SourceNotListed);
    unanswered(&unlisted, "br0", "ns1", Rule::SourceNotListed);
    let t = lan(vec![mv("s", Source, 10), mv("b", Bridge, 11)], false);
    unanswered(&t, "b", "s", Rule::SourceBroadcastReturned);
}

#[test]
fn ipvlan_l2_children_answer_each_other_and_the_lan() {
    let t = lan(vec![ipv("a", L2, "10.0.0.10/24"), ipv("b", L2, "10.0.0.11/24")], false);
    answered2(&t, "a", "b");
    answered2(&t, "a", "sw");
    answered2(&t, "a", "h2");
    unanswered(&t, "a", "h", Rule::ParentChild);
}

/// l3 and l3s children are NOARP: nobody gets an answer for them, and their own
/// requests go nowhere; their host still answers the LAN.
#[test]
fn ipvlan_l3_children_are_noarp_both_ways() {
    for mode in [L3, L3s] {
        let t = lan(vec![ipv("a", mode, "10.0.0.10/24"), ipv("b", mode, "10.0.0.11/24")], false);
        for (x, y) in [("a", "b"), ("a", "sw"), ("sw", "a"), ("h2", "b")] {
            assert_eq!(arp(&t, x, y), (false, Some(Rule::IpvlanL3NoArp)), "{mode:?} {x} -> {y}");
        }
        answered2(&t, "h", "sw");
    }
}

#[test]
fn pairs_need_one_subnet_on_one_segment() {
    let t = seed001(IpvlanMode::L2);
    let pairs = neighbour_pairs(&t).unwrap();
    let names: Vec<(&str, &str)> =
        pairs.iter().map(|p| (p.from.0.as_str(), p.to.0.as_str())).collect();
    assert_eq!(names, [("lan", "host"), ("host", "lan")], "net1 and net2 are on other subnets");
    assert!(pairs.iter().all(|p| p.protocol() == "arp"));
    let none = predict_arp(&t, &"net1".into(), &"lan".into()).unwrap();
    assert_eq!(none, None);
    // seed 000: `mac` is behind the router; only the router's far leg asks for it,
    // and gw's own address (its LAN leg) is not on mac's subnet.
    let pairs = neighbour_pairs(&seed000()).unwrap();
    let with_mac: Vec<_> = pairs.iter().filter(|p| p.from.0 == "mac" || p.to.0 == "mac").collect();
    assert_eq!(with_mac.len(), 1, "{with_mac:?}");
    assert_eq!((with_mac[0].from.0.as_str(), with_mac[0].answered), ("gw", true));
    assert_eq!(pairs.len(), 6 * 5 + 1, "node1, its two children, node2, its child and gw");
    let p = pairs.iter().find(|p| p.from.0 == "node1" && p.to.0 == "gw").unwrap();
    assert_eq!(
        (p.sender.to_string(), p.target.to_string()),
        ("192.168.179.9".into(), "192.168.1.1".into())
    );
}

#[test]
fn ndp_pairs_come_from_ipv6_addresses() {
    let mut t = lan(vec![mv("a", Bridge, 10), mv("b", Vepa, 11)], false);
    let v6 = |n: u8| crate::reach::presets::net(&format!("fd00::{n}/64"));
    t.hosts[0].children[0].addresses.push(v6(10));
    t.hosts[0].children[1].addresses.push(v6(11));
    t.switch.addresses.push(v6(1));
    let pairs = neighbour_pairs(&t).unwrap();
    let ndp: Vec<_> = pairs.iter().filter(|p| p.protocol() == "ndp").collect();
    assert_eq!(ndp.len(), 6, "{ndp:?}");
    let find = |from: &str, to: &str| {
        ndp.iter().find(|p| p.from.0 == from && p.to.0 == to).map(|p| p.answered)
    };
    assert_eq!(find("a", "sw"), Some(true));
    assert_eq!(find("a", "b"), Some(false), "vepa without hairpin, as for ARP");
}
