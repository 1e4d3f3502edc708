//! Frame delivery on one L2 segment: does a broadcast (ARP request) or a unicast frame
//! from one station reach another, through the sender's driver (macvlan/ipvlan tx),
//! the switch (Linux bridge, hairpin) and the receiver's driver (rx handler)?
//!
//! Written after drivers/net/macvlan.c (macvlan_queue_xmit, macvlan_handle_frame,
//! macvlan_forward_source, macvlan_process_broadcast) and drivers/net/ipvlan/
//! ipvlan_core.c (ipvlan_xmit_mode_l2, ipvlan_process_multicast, ipvlan_handle_mode_l2
//! and _l3). Each decision is one small branch below, so a mismatch the lab finds
//! on the real kernel is corrected in one place.

use std::net::IpAddr;

use super::topology::{IpvlanFlag, IpvlanMode};
use super::world::{Driver, Role, Segment, StId, World};
use crate::link::MacvlanMode;

/// How a delivered frame travelled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Hop {
    /// Inside the kernel, from a child to a sibling (or to the parent, ipvlan l2).
    pub internal: bool,
    /// Reflected by a hairpin switch port.
    pub hairpin: bool,
    /// Delivered to a source-mode child because the sender is on its list.
    pub source_list: bool,
}

impl Hop {
    /// Arrival order of competing ARP replies: in-kernel first, then the wire.
    pub fn cost(self) -> u8 {
        match (self.internal, self.hairpin) {
            (true, _) => 0,
            (false, false) => 1,
            (false, true) => 2,
        }
    }
}

/// Why a frame did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drop {
    /// Host `host`'s parent is down: its children have no carrier and send nothing.
    Down { host: usize },
    /// The frame would have to leave switch port `port` the way it came in.
    SamePort { port: usize },
    /// A reflected broadcast whose source is a private/source/passthru child goes
    /// back to that child only ("forward to original port").
    ReturnedToSender { sender: StId },
    /// macvlan_process_broadcast skips the receiver's mode (a bridge child's
    /// reflected broadcast reaches VEPA children only; never private ones).
    ModeFilter { dst: StId },
    /// A source-mode child receives only frames from MACs on its list.
    SourceNotListed { child: StId },
    /// A NODST source-mode child consumed the frame.
    SourceNodst { consumer: StId },
    /// A passthru child receives every unicast frame on its parent.
    PassthruTakesAll { child: StId },
    /// The ipvlan PRIVATE flag drops child-to-child frames.
    IpvlanPrivate { host: usize },
    /// The ipvlan VEPA flag in l3/l3s: a packet for a sibling is routed by host
    /// `host`'s namespace out of the parent and does not come back (set by `l3.rs`).
    IpvlanVepaL3 { host: usize },
    /// ipvlan l3/l3s children get no broadcast.
    NoBroadcast { dst: StId },
    /// Different L2 segments.
    Elsewhere,
}

fn endpoints_up(w: &World, a: StId, b: StId) -> Result<(), Drop> {
    for s in [a, b] {
        if let Some(host) = w.down_host(s) {
            return Err(Drop::Down { host });
        }
    }
    if w.st(a).seg != w.st(b).seg {
        return Err(Drop::Elsewhere);
    }
    Ok(())
}

/// The two stations are children (or shim) of the same host.
fn siblings(w: &World, a: StId, b: StId) -> Option<usize> {
    match (&w.st(a).role, &w.st(b).role) {
        (Role::Slave { host: x, .. }, Role::Slave { host: y, .. }) if x == y && a != b => Some(*x),
        _ => None,
    }
}

/// Does a broadcast (an ARP request for `target`) from `from` reach `to`?
pub(crate) fn bcast(w: &World, from: StId, to: StId, target: Option<IpAddr>) -> Result<Hop, Drop> {
    w.step();
    endpoints_up(w, from, to)?;
    if let Segment::Far(_) = w.st(from).seg {
        return Ok(Hop::default());
    }
    let internal = Hop { internal: true, ..Hop::default() };
    if siblings(w, from, to).is_some() {
        match (w.driver(from), w.driver(to)) {
            // macvlan_queue_xmit: a bridge child's broadcast goes to its bridge siblings
            // (macvlan_broadcast(.., MACVLAN_MODE_BRIDGE)) and out of the wire.
            (
                Some(Driver::Macvlan { mode: MacvlanMode::Bridge, .. }),
                Some(Driver::Macvlan { mode: MacvlanMode::Bridge, .. }),
            ) => return Ok(internal),
            // ipvlan_process_multicast (tx): every other child gets it, whatever the
            // private/vepa flag; then it goes out of the wire.
            (Some(Driver::Ipvlan { mode: IpvlanMode::L2, .. }), Some(Driver::Ipvlan { .. })) => {
                return Ok(internal);
            }
            _ => {}
        }
    }
    let hop = switch(w, from, to)?;
    match w.st(to).role {
        Role::Parent(h) | Role::Slave { host: h, .. } => host_rx_bcast(w, h, from, to, target, hop),
        _ => Ok(hop),
    }
}

/// Does a unicast frame from `from` to `to`'s MAC arrive, and at which station?
/// `ip` is what ipvlan looks up: the packet's destination, or an ARP reply's target.
pub(crate) fn ucast(
    w: &World,
    from: StId,
    to: StId,
    ip: Option<IpAddr>,
) -> Result<(StId, Hop), Drop> {
    w.step();
    endpoints_up(w, from, to)?;
    if let Segment::Far(_) = w.st(from).seg {
        return Ok((to, Hop::default()));
    }
    let internal = Hop { internal: true, ..Hop::default() };
    if let Role::Slave { host: h, driver, .. } = &w.st(from).role {
        let same_host = w.host_of(to) == Some(*h);
        match driver {
            // macvlan_queue_xmit: unicast to a bridge-mode sibling goes to the lower
            // device's rx handler (dev_forward_skb), not to the wire.
            Driver::Macvlan { mode: MacvlanMode::Bridge, .. }
                if siblings(w, from, to).is_some()
                    && w.macvlan_mode(to) == Some(MacvlanMode::Bridge) =>
            {
                return host_rx_ucast(w, *h, from, to, ip, internal);
            }
            // ipvlan_xmit_mode_l2: a frame to the shared MAC (a sibling or the parent)
            // is switched by IP unless VEPA; PRIVATE drops it between children; a
            // frame for no child goes to the parent (dev_forward_skb(phy_dev)).
            Driver::Ipvlan { mode: IpvlanMode::L2, flag }
                if same_host && *flag != IpvlanFlag::Vepa =>
            {
                return match w.slave_with(*h, ip) {
                    Some(_) if *flag == IpvlanFlag::Private => {
                        Err(Drop::IpvlanPrivate { host: *h })
                    }
                    Some(c) => Ok((c, internal)),
                    None => Ok((w.hosts[*h].parent, internal)),
                };
            }
            _ => {}
        }
    }
    let hop = switch(w, from, to)?;
    match w.st(to).role {
        Role::Parent(h) | Role::Slave { host: h, .. } => host_rx_ucast(w, h, from, to, ip, hop),
        _ => Ok((to, hop)),
    }
}

/// The Linux bridge: floods and forwards to the receiver's port; a frame goes back
/// out of the port it came in on only when that port has hairpin on
/// (br_forward.c should_deliver). The bridge's own interface hears every flood.
fn switch(w: &World, from: StId, to: StId) -> Result<Hop, Drop> {
    let bridge = |s: StId| w.st(s).role == Role::Bridge;
    if bridge(from) || bridge(to) {
        return Ok(Hop::default());
    }
    match (w.st(from).port, w.st(to).port) {
        (Some(a), Some(b)) if a == b => match w.ports[a].hairpin {
            true => Ok(Hop { hairpin: true, ..Hop::default() }),
            false => Err(Drop::SamePort { port: a }),
        },
        _ => Ok(Hop::default()),
    }
}

/// Source-mode children of host `h` whose list holds `from`'s MAC
/// (macvlan_forward_source runs first on every frame from the wire).
fn listing(w: &World, h: usize, from: StId) -> &[(StId, bool)] {
    w.hosts[h].listeners.get(&w.st(from).mac).map_or(&[], Vec::as_slice)
}

/// A broadcast arriving on host `h`'s parent from the wire: who of `h` gets it.
fn host_rx_bcast(
    w: &World,
    h: usize,
    from: StId,
    to: StId,
    target: Option<IpAddr>,
    hop: Hop,
) -> Result<Hop, Drop> {
    let parent = w.hosts[h].parent;
    if let Some(mode) = w.hosts[h].ipvlan {
        return match mode {
            // ipvlan_handle_mode_l2: the parent always gets it; children get external
            // frames (their own reflected ones were already delivered on the way out).
            IpvlanMode::L2 => Ok(hop),
            // ipvlan_handle_mode_l3: an ARP for a child's address goes to that child
            // (which is NOARP); anything else passes to the parent.
            IpvlanMode::L3 => match w.slave_with(h, target) {
                Some(c) if c == to => Ok(hop),
                None if to == parent => Ok(hop),
                _ => Err(Drop::NoBroadcast { dst: to }),
            },
            // l3s: the rx handler passes everything to the parent.
            IpvlanMode::L3s if to == parent => Ok(hop),
            IpvlanMode::L3s => Err(Drop::NoBroadcast { dst: to }),
        };
    }
    let listed = listing(w, h, from);
    if listed.iter().any(|(s, _)| *s == to) {
        return Ok(Hop { source_list: true, ..hop });
    }
    if let Some((consumer, _)) = listed.iter().find(|(_, nodst)| *nodst) {
        return Err(Drop::SourceNodst { consumer: *consumer });
    }
    let src = w.hosts[h].macvlan_by_mac.get(&w.st(from).mac).copied();
    let src_mode = src.and_then(|s| w.macvlan_mode(s));
    if let (Some(s), Some(m)) = (src, src_mode)
        && m != MacvlanMode::Vepa
        && m != MacvlanMode::Bridge
    {
        // "forward to original port": only the sender gets it back.
        return if to == s { Ok(hop) } else { Err(Drop::ReturnedToSender { sender: s }) };
    }
    if to == parent {
        return Ok(hop); // RX_HANDLER_PASS
    }
    use MacvlanMode::{Bridge, Passthru, Private, Source, Vepa};
    let allowed: &[MacvlanMode] = match src_mode {
        None => &[Private, Vepa, Passthru, Bridge],
        Some(Vepa) => &[Vepa, Bridge],
        Some(_) => &[Vepa],
    };
    match w.macvlan_mode(to) {
        Some(m) if src != Some(to) && allowed.contains(&m) => Ok(hop),
        Some(Source) => Err(Drop::SourceNotListed { child: to }),
        _ => Err(Drop::ModeFilter { dst: to }),
    }
}

/// A unicast frame for `to`'s MAC arriving on host `h`'s parent (from the wire, or
/// from a bridge-mode child through dev_forward_skb): who of `h` gets it.
fn host_rx_ucast(
    w: &World,
    h: usize,
    from: StId,
    to: StId,
    ip: Option<IpAddr>,
    hop: Hop,
) -> Result<(StId, Hop), Drop> {
    let parent = w.hosts[h].parent;
    if w.hosts[h].ipvlan.is_some() {
        // l2 and l3 look the address up (l3s does it in its l3mdev hook): a child's
        // address goes to the child, anything else to the parent.
        return Ok((w.slave_with(h, ip).unwrap_or(parent), hop));
    }
    let listed = listing(w, h, from);
    if listed.iter().any(|(s, _)| *s == to) {
        // The clone is PACKET_HOST because the destination is the child's own MAC.
        return Ok((to, Hop { source_list: true, ..hop }));
    }
    if let Some((consumer, _)) = listed.iter().find(|(_, nodst)| *nodst) {
        return Err(Drop::SourceNodst { consumer: *consumer });
    }
    if let Some(p) = w.hosts[h].passthru {
        return if to == p { Ok((p, hop)) } else { Err(Drop::PassthruTakesAll { child: p }) };
    }
    match w.macvlan_mode(to) {
        // `!vlan || vlan->mode == MACVLAN_MODE_SOURCE` => RX_HANDLER_PASS: the parent
        // gets it as PACKET_OTHERHOST and IP drops it.
        Some(MacvlanMode::Source) => Err(Drop::SourceNotListed { child: to }),
        _ => Ok((to, hop)),
    }
}
