//! The kernel layer against the real kernel: a macvlan child created straight
//! into its namespace, addressed, routed and pinging a sibling and the switch.

use std::time::Duration;

use nicslice_kernel::{MacvlanLinkRequest, Pinger, Route, RouteSocket};
use nicslice_lab::World;
use nicslice_model::{Driver, MacvlanMode};

fn child(
    world: &mut World,
    host: &nicslice_lab::Host,
    role: &str,
    ip: &str,
) -> nicslice_kernel::Netns {
    let ns = world.netns(role).unwrap();
    let mut hs = RouteSocket::open_in(&host.netns).unwrap();
    let parent = hs.require_link(&host.parent, "host").unwrap();
    let req = MacvlanLinkRequest::new(
        Driver::Macvlan,
        "eth0".parse().unwrap(),
        parent.index,
        MacvlanMode::Bridge,
    );
    hs.create_macvlan(&req, Some(&ns)).unwrap();
    let mut cs = RouteSocket::open_in(&ns).unwrap();
    let link = cs.require_link("eth0", role).unwrap();
    assert_eq!(link.kind.as_deref(), Some("macvlan"));
    assert_eq!(link.macvlan.as_ref().unwrap().mode, Some(MacvlanMode::Bridge));
    cs.add_address(link.index, ip.parse().unwrap()).unwrap();
    cs.set_up(link.index, true).unwrap();
    cs.add_route(&Route::default_via("192.168.0.1".parse().unwrap(), link.index)).unwrap();
    ns
}

#[test]
fn macvlan_children_reach_sibling_and_switch_but_not_parent() {
    let mut world = World::new("smoke");
    let sw = world.switch(Some("192.168.0.1/24".parse().unwrap())).unwrap();
    let host = world.host(&sw, "host", "eth0", Some("192.168.0.254/24".parse().unwrap())).unwrap();
    let c1 = child(&mut world, &host, "c1", "192.168.0.11/24");
    let _c2 = child(&mut world, &host, "c2", "192.168.0.12/24");
    let p = Pinger::open_in(&c1).unwrap();
    let t = Duration::from_millis(600);
    assert!(p.ping("192.168.0.12".parse().unwrap(), 3, t).unwrap(), "sibling");
    assert!(p.ping("192.168.0.1".parse().unwrap(), 3, t).unwrap(), "switch");
    assert!(!p.ping("192.168.0.254".parse().unwrap(), 2, t).unwrap(), "parent must not answer");
    let routes = RouteSocket::open_in(&c1).unwrap().routes().unwrap();
    assert!(
        routes.iter().any(|r| r.is_default() && r.gateway == Some("192.168.0.1".parse().unwrap()))
    );
}

#[test]
fn capability_probe_sees_macvlan_and_leaves_nothing() {
    let caps = nicslice_lab::capabilities::probe_kernel().unwrap();
    let find =
        |f: &str| caps.iter().find(|c| c.feature == f).unwrap_or_else(|| panic!("{f} missing"));
    for mode in ["bridge", "vepa", "private", "passthru", "source"] {
        assert!(
            find(&format!("macvlan {mode}")).available,
            "macvlan {mode}: {:?}",
            find(&format!("macvlan {mode}"))
        );
    }
    assert!(find("veth").available);
    assert!(find("bridge").available);
    // Whatever the kernel lacks is reported with a reason, not an error.
    for c in &caps {
        assert_eq!(c.available, c.detail.is_none(), "{c:?}");
    }
}
