//! The lab's experiments: the seeds' topologies (from the model's presets)
//! plus the variants the seeds discuss in prose (a source list that does not
//! match, nodst, macvtap), each with a name for `--only` and the link kind and
//! mode it exercises for `--mode`.

use nicslice_model::MacvlanMode;
use nicslice_model::reach::{
    ChildKind, ChildMode, IpvlanFlag, IpvlanMode, MacRef, Topology, presets,
};

/// One experiment.
pub struct Scenario {
    pub name: &'static str,
    /// The mode it is about ("bridge", "vepa", ..., "macvtap", "l2", "l3"...).
    pub mode: &'static str,
    /// Needs ipvlan in the kernel.
    pub ipvlan: bool,
    pub topology: Topology,
}

fn scenario(name: &'static str, mode: &'static str, topology: Topology) -> Scenario {
    Scenario { name, mode, ipvlan: false, topology }
}

/// Every experiment, in the order they are reported.
pub fn all() -> Vec<Scenario> {
    let mut source_unlisted = presets::seed003(MacvlanMode::Source);
    source_unlisted.description = "seed 003: macvlan source listing a MAC nobody has".into();
    for c in source_unlisted.hosts.iter_mut().flat_map(|h| h.children.iter_mut()) {
        c.source_macs = vec![MacRef::Mac(nicslice_model::MacAddr([0x02, 0, 0, 0, 0x0a, 0x0b]))];
    }
    let mut nodst = presets::seed003(MacvlanMode::Source);
    nodst.description = "seed 003: macvlan source nodst listing br0".into();
    for c in nodst.hosts.iter_mut().flat_map(|h| h.children.iter_mut()) {
        c.nodst = true;
    }
    let mut macvtap = presets::seed003(MacvlanMode::Bridge);
    macvtap.description = "seed 003 with macvtap bridge children".into();
    for c in macvtap.hosts.iter_mut().flat_map(|h| h.children.iter_mut()) {
        c.kind = ChildKind::Macvtap;
    }
    let ipvlan = |name, mode, t| Scenario { name, mode, ipvlan: true, topology: t };
    // Seed 003's world with ipvlan l2 children under each port flag.
    let ipvlan_flag = |flag: IpvlanFlag, hairpin: bool| {
        let mut t = if hairpin {
            presets::seed003_hairpin(MacvlanMode::Bridge)
        } else {
            presets::seed003(MacvlanMode::Bridge)
        };
        t.description = format!(
            "seed 003 with ipvlan l2 {flag} children{}",
            if hairpin { ", hairpin on" } else { "" }
        );
        for c in t.hosts.iter_mut().flat_map(|h| h.children.iter_mut()) {
            c.kind = ChildKind::Ipvlan;
            c.mode = Some(ChildMode::L2);
            c.flag = Some(flag);
        }
        t
    };
    vec![
        scenario("bridge", "bridge", presets::seed003(MacvlanMode::Bridge)),
        scenario("vepa", "vepa", presets::seed003(MacvlanMode::Vepa)),
        scenario("vepa-hairpin", "vepa", presets::seed003_hairpin(MacvlanMode::Vepa)),
        scenario("private", "private", presets::seed003(MacvlanMode::Private)),
        scenario("private-hairpin", "private", presets::seed003_hairpin(MacvlanMode::Private)),
        scenario("passthru", "passthru", presets::seed003(MacvlanMode::Passthru)),
        scenario("source", "source", presets::seed003(MacvlanMode::Source)),
        scenario("source-unlisted", "source", source_unlisted),
        scenario("source-nodst", "source", nodst),
        scenario("parent-down", "bridge", presets::seed003_link_down()),
        scenario("macvtap", "macvtap", macvtap),
        scenario("seed000", "bridge", presets::seed000()),
        scenario("seed000-fixed", "bridge", presets::seed000_fixed()),
        ipvlan("ipvlan-l2", "l2", presets::seed001(IpvlanMode::L2)),
        ipvlan("ipvlan-l3", "l3", presets::seed001_l3()),
        ipvlan("ipvlan-l3s", "l3s", presets::seed001(IpvlanMode::L3s)),
        ipvlan("ipvlan-private", "l2", ipvlan_flag(IpvlanFlag::Private, false)),
        ipvlan("ipvlan-vepa", "l2", ipvlan_flag(IpvlanFlag::Vepa, false)),
        ipvlan("ipvlan-vepa-hairpin", "l2", ipvlan_flag(IpvlanFlag::Vepa, true)),
    ]
}
