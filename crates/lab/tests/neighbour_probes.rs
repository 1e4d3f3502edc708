//! The kernel layer's ARP and NDP probes against the real kernel: a macvlan
//! bridge child asks for the switch (answered), its own parent (unanswered: a
//! macvlan child never reaches its parent) and an address nobody has; and
//! the address probe (RFC 5227 and DAD form) from an interface with no
//! address, both families at once.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use nicslice_kernel::address_claim::AddressProbe;
use nicslice_kernel::{MacvlanLinkRequest, NeighbourProber, RouteSocket, sysctl};
use nicslice_lab::World;
use nicslice_model::{Driver, MacvlanMode};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn arp_and_ndp_probes_see_who_answers() {
    let mut world = World::new("nprobe");
    let sw = world.switch(Some("192.168.7.1/24".parse().unwrap())).unwrap();
    let mut s = RouteSocket::open_in(&sw).unwrap();
    let br = s.require_link("br0", "switch").unwrap();
    s.add_address(br.index, "fd07::1/64".parse().unwrap()).unwrap();
    let host = world.host(&sw, "host", "eth0", Some("192.168.7.254/24".parse().unwrap())).unwrap();
    let mut hs = RouteSocket::open_in(&host.netns).unwrap();
    let parent = hs.require_link("eth0", "host").unwrap();
    hs.add_address(parent.index, "fd07::fe/64".parse().unwrap()).unwrap();
    let child = world.netns("c1").unwrap();
    let req = MacvlanLinkRequest::new(
        Driver::Macvlan,
        "eth0".parse().unwrap(),
        parent.index,
        MacvlanMode::Bridge,
    );
    hs.create_macvlan(&req, Some(&child)).unwrap();
    let mut cs = RouteSocket::open_in(&child).unwrap();
    let link = cs.require_link("eth0", "c1").unwrap();
    for a in ["192.168.7.11/24", "fd07::11/64"] {
        cs.add_address(link.index, a.parse().unwrap()).unwrap();
    }
    cs.set_up(link.index, true).unwrap();
    nicslice_lab::world::wait_oper_up(&mut cs, link.index).unwrap();

    let timeout = Duration::from_millis(200);
    let arp = NeighbourProber::open_in(&child, ip("192.168.7.11")).unwrap().unwrap();
    assert_eq!(arp.sender(), ip("192.168.7.11"));
    let started = Instant::now();
    let seen = arp.ask(&[ip("192.168.7.1"), ip("192.168.7.254"), ip("192.168.7.99")], 3, timeout);
    assert_eq!(seen.unwrap(), [true, false, false], "switch, parent, nobody");
    assert!(started.elapsed() < timeout + Duration::from_millis(100), "bounded");

    let ndp = NeighbourProber::open_in(&child, ip("fd07::11")).unwrap().unwrap();
    let seen = ndp.ask(&[ip("fd07::1"), ip("fd07::fe"), ip("fd07::99")], 3, timeout);
    assert_eq!(seen.unwrap(), [true, false, false], "switch, parent, nobody");

    // And the other way: the parent asks for its child, in vain; the switch gets it.
    let from_parent = NeighbourProber::open_in(&host.netns, ip("192.168.7.254")).unwrap().unwrap();
    let seen = from_parent.ask(&[ip("192.168.7.11"), ip("192.168.7.1")], 2, timeout).unwrap();
    assert_eq!(seen, [false, true]);
    let from_switch = NeighbourProber::open_in(&sw, ip("fd07::1")).unwrap().unwrap();
    assert_eq!(from_switch.ask(&[ip("fd07::11")], 2, timeout).unwrap(), [true]);

    // An address the namespace does not have: no prober.
    assert!(NeighbourProber::open_in(&child, ip("192.168.7.12")).unwrap().is_none());
}

/// The probe the fleet pool asks a dead host's addresses with: both families
/// at once from one interface with no address of its own (IPv6 off on it):
/// RFC 5227 ARP probes and DAD-form neighbour solicitations, one timeout for
/// all. The answers name the answering MAC, and the answerer's neighbour
/// cache learns nothing of the asker.
#[test]
fn an_address_probe_asks_both_families_at_once_without_an_address() {
    let mut world = World::new("aprobe");
    let sw = world.switch(None).unwrap();
    let asker = world.host(&sw, "asker", "eth0", None).unwrap();
    asker.netns.run(|| sysctl::write("net/ipv6/conf/eth0/disable_ipv6", "1")).unwrap().unwrap();
    let peer = world.host(&sw, "peer", "eth0", Some("192.168.8.5/24".parse().unwrap())).unwrap();
    let mut ps = RouteSocket::open_in(&peer.netns).unwrap();
    let peer_link = ps.require_link("eth0", "peer").unwrap();
    ps.add_address(peer_link.index, "fd08::5/64".parse().unwrap()).unwrap();
    let peer_mac = peer_link.mac.unwrap();

    let mut hs = RouteSocket::open_in(&asker.netns).unwrap();
    let link = hs.require_link("eth0", "asker").unwrap();
    assert!(hs.addresses(Some(link.index)).unwrap().is_empty(), "the asker has no address");
    let targets = [ip("192.168.8.5"), ip("192.168.8.6"), ip("fd08::5"), ip("fd08::6")];
    let timeout = Duration::from_millis(300);
    let probe =
        AddressProbe::open_for(&asker.netns, link.index, link.mac.unwrap(), &targets).unwrap();
    let started = Instant::now();
    let heard = probe.probe_many(&targets, 3, timeout).unwrap();
    let took = started.elapsed();
    let expected = BTreeMap::from([(ip("192.168.8.5"), peer_mac), (ip("fd08::5"), peer_mac)]);
    assert_eq!(heard, expected, "the peer's two addresses, by its MAC; nobody has the others");
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(150),
        "one timeout: {took:?}"
    );
    let learned = ps.neighbours().unwrap();
    assert!(
        learned.iter().all(|(_, mac)| *mac != link.mac.unwrap()),
        "the peer learned the asker: {learned:?}"
    );
}
