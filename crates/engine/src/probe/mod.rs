//! Conflict probing (issue 14): on a network that asks for it, an
//! endpoint's addresses are claimed on the wire before they are used. IPv4:
//! RFC 5227 probes (sender 0.0.0.0) from the new link, before it has an
//! address: sent by the kernel itself (its own neighbour resolution, from an
//! address-less namespace) or, where the namespace has an IPv4 address the
//! kernel would send from, and for ipvlan (from the parent: its children
//! share the parent's MAC and never see a reply addressed to it), from a
//! packet socket. IPv6: the kernel's DAD, read back. An address someone
//! answers for goes to the caller's [`Replace`], which quarantines it in its
//! store ([`state_db`] for the CLI, [`lease_book`] for the CNI plugins) and
//! hands the next address to claim, or refuses (an address the user named).
//!
//! Cost when no one answers: the probe timeout once, IPv4 and IPv6 claimed at
//! the same time (the link is up while the probes run, so IPv6 DAD runs
//! alongside them). A packet socket's close waits out an RCU grace period
//! (5 to 19 ms measured): the kernel sends the probes where it can, and
//! where a socket is needed its close overlaps the steps after it (see
//! `AddressProbe`'s `Drop`). The link's neighbour settings tuned for the probes
//! are put back once the addresses are judged.

pub mod fleet_cni;
pub mod lease_book;
pub mod state_db;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nicslice_kernel::address_claim::{
    AddressProbe, Dad, Resolution, restore_arp, restore_dad, tune_arp, tune_dad,
};
use nicslice_kernel::placement::ChildLink;
use nicslice_kernel::{LinkBrief, Netns, Route, RouteSocket};
use nicslice_model::{IpvlanMode, MacAddr, ProbeSpec};

use crate::endpoint::{self, EndpointPlan, Place, Policy, Realized};
use crate::error::{EngineError, Result};
use crate::fault::Faults;
use crate::undo::{UndoAction, UndoLog};

/// ARP probes per address, spread over the timeout (RFC 5227 sends three).
const PROBES: u32 = 3;
/// How often the kernel's resolution of a probed IPv4 address is looked at.
const ARP_POLL: Duration = Duration::from_millis(1);
/// How often a tentative IPv6 address is looked at.
const DAD_POLL: Duration = Duration::from_millis(2);
/// Time beyond the timeout the kernel may take to judge DAD (its timers
/// tick in jiffies, and the first solicitation waits for the link to be
/// ready).
const DAD_SLACK: Duration = Duration::from_millis(500);

/// What to do with an address someone answered for.
pub trait Replace {
    /// `address`, the `index`th of the plan, was answered by `by` (`None`:
    /// IPv6 DAD failed, the kernel does not say who): quarantine it and
    /// return the address to claim in its place, or refuse.
    fn replace(&mut self, index: usize, address: IpNet, by: Option<MacAddr>) -> Result<IpNet>;
}

/// How to probe: the network's setting and the namespace of the parent.
#[derive(Clone, Copy)]
pub struct Probing<'a> {
    pub spec: ProbeSpec,
    /// The namespace that holds the parent (ipvlan probes leave from it).
    pub parent_ns: &'a Netns,
}

/// Who answered, in words.
pub fn who(by: Option<MacAddr>) -> String {
    by.map_or("a host on the link (IPv6 DAD failed)".to_string(), |m| m.to_string())
}

/// [`endpoint::create_link`] then [`claim_and_configure`].
pub fn realize_claiming(
    plan: &mut EndpointPlan,
    probing: Probing<'_>,
    replace: &mut dyn Replace,
    policy: Policy,
    place: &mut Place,
    faults: Faults,
    undo: &mut UndoLog,
) -> Result<Realized> {
    let link = endpoint::create_link(&plan.link, &plan.parent, place, faults, undo)?;
    let routes = claim_and_configure(&link, plan, probing, replace, policy, place, faults, undo)?;
    Ok(Realized { link, routes })
}

/// [`endpoint::configure`] of the new, still down `link` with every address
/// of `plan` claimed first; a replaced address changes `plan.addresses`.
/// The replacement must keep the subnet, so the routes stay as planned.
#[allow(clippy::too_many_arguments)]
pub fn claim_and_configure(
    link: &LinkBrief,
    plan: &mut EndpointPlan,
    probing: Probing<'_>,
    replace: &mut dyn Replace,
    policy: Policy,
    place: &mut Place,
    faults: Faults,
    undo: &mut UndoLog,
) -> Result<Vec<Route>> {
    let timeout = probing.spec.timeout();
    let v6: Vec<usize> = (0..plan.addresses.len()).filter(|&i| is_v6(plan.addresses[i])).collect();
    let v4: Vec<usize> = (0..plan.addresses.len()).filter(|&i| !is_v6(plan.addresses[i])).collect();
    let mut dad_retrans = None;
    if !v6.is_empty() {
        if is_noarp(&plan.link) {
            return Err(EngineError::Invalid(
                "an ipvlan l3/l3s child is NOARP: the kernel runs no DAD on it, so its IPv6 addresses cannot be probed; use ipvlan l2, or no conflict probing".into(),
            ));
        }
        dad_retrans = Some(tune_dad(&place.target_ns, &link.name, timeout)?);
        for &i in &v6 {
            add_tentative(&mut place.target, link.index, plan.addresses[i], undo)?;
        }
    }
    // Up with no IPv4 address yet: the probes can leave, and IPv6 DAD starts.
    place.target.set_up(link.index, true)?;
    undo.push(UndoAction::SetUp { index: link.index, up: false });
    let started = Instant::now();

    let prober =
        if v4.is_empty() { None } else { Some(V4Prober::open(link, plan, probing, place)?) };
    if let Some(prober) = &prober {
        for &i in &v4 {
            while let IpAddr::V4(ip) = plan.addresses[i].addr()
                && let Some(mac) = prober.probe(&mut place.target, link.index, ip, timeout)?
            {
                plan.addresses[i] = replace.replace(i, plan.addresses[i], Some(mac))?;
            }
        }
    }
    let v4_nets: Vec<IpNet> = v4.iter().map(|&i| plan.addresses[i]).collect();
    let announce_by_kernel = match prober {
        // Announced now, a moment before the addresses go on, so that the
        // socket's close (an RCU grace period, on a thread of its own)
        // overlaps the configuration and the caller's commit.
        Some(V4Prober::Packet(arp)) => {
            for net in &v4_nets {
                if let IpAddr::V4(ip) = net.addr() {
                    arp.announce(ip)?;
                }
            }
            false
        }
        Some(V4Prober::Kernel { previous }) => {
            restore_arp(&place.target_ns, &link.name, &previous)?;
            true
        }
        None => false,
    };
    let routes = endpoint::configure(link, &v4_nets, &plan.routes, policy, place, faults, undo)?;
    if announce_by_kernel && let Some(mac) = link.mac {
        // The link came up before its addresses, so `arp_notify` has not
        // announced them; setting its own MAC again makes the kernel do it
        // (a MAC change is the other event it announces on).
        place.target.set_mac(link.index, mac)?;
    }
    let claimed_v4 = started.elapsed();
    for &i in &v6 {
        settle_v6(i, plan, link.index, started, timeout, replace, &mut place.target, undo)?;
    }
    if let Some(previous) = dad_retrans {
        restore_dad(&place.target_ns, &link.name, &previous)?;
    }
    tracing::debug!(
        ?timeout,
        ipv4 = ?claimed_v4,
        all = ?started.elapsed(),
        "addresses claimed: the link was up this long"
    );
    Ok(routes)
}

fn is_v6(a: IpNet) -> bool {
    a.addr().is_ipv6()
}

/// Who sends the IPv4 probes.
enum V4Prober {
    /// The kernel itself, from the new link of a namespace with no IPv4
    /// address (so its requests go out from 0.0.0.0), with no packet socket
    /// to close; the neighbour settings the link had, to put back.
    Kernel { previous: (String, String) },
    /// A packet socket: for ipvlan from the parent (its children share the
    /// parent's MAC and never see a reply to it), or where the kernel would
    /// send from an address the namespace already has.
    Packet(AddressProbe),
}

impl V4Prober {
    fn open(
        link: &LinkBrief,
        plan: &EndpointPlan,
        probing: Probing<'_>,
        place: &mut Place,
    ) -> Result<V4Prober> {
        let timeout = probing.spec.timeout();
        let (ns, index, mac) = match &plan.link {
            ChildLink::Ipvlan(_) => {
                let parent = place.host.link_by_index(plan.parent.index)?;
                (probing.parent_ns, plan.parent.index, parent.and_then(|p| p.mac))
            }
            ChildLink::Macvlan(_) => {
                let addresses = place.target.addresses(None)?;
                let has_ipv4 = addresses
                    .iter()
                    .any(|(_, a)| matches!(a.addr(), IpAddr::V4(v4) if !v4.is_loopback()));
                if !has_ipv4 {
                    let previous =
                        tune_arp(&place.target_ns, &link.name, PROBES, timeout / PROBES)?;
                    return Ok(V4Prober::Kernel { previous });
                }
                (&place.target_ns, link.index, link.mac)
            }
        };
        let mac = mac.ok_or_else(|| {
            EngineError::Invalid(format!("{} has no MAC to probe from", link.name))
        })?;
        Ok(V4Prober::Packet(AddressProbe::open_in(ns, index, mac)?))
    }

    /// Probes for `ip` from interface `index` of `target`'s namespace until
    /// `timeout` passes; the MAC of whoever answered.
    fn probe(
        &self,
        target: &mut RouteSocket,
        index: u32,
        ip: Ipv4Addr,
        timeout: Duration,
    ) -> Result<Option<MacAddr>> {
        if let V4Prober::Packet(arp) = self {
            return Ok(arp.probe(ip, PROBES, timeout)?);
        }
        // The kernel sends its requests at 0, 1/3 and 2/3 of the timeout
        // and gives up a third later, in whole jiffies: the answer is judged
        // at the timeout itself, not when the kernel gives up.
        target.solicit(index, ip)?;
        let deadline = Instant::now() + timeout;
        loop {
            match target.resolution(index, ip)? {
                Resolution::Answered(mac) => return Ok(Some(mac)),
                Resolution::Waiting if Instant::now() < deadline => std::thread::sleep(ARP_POLL),
                // The failed entry would linger for the address that is about to be ours.
                Resolution::Waiting | Resolution::Unanswered => {
                    target.forget_neighbour(index, ip)?;
                    return Ok(None);
                }
            }
        }
    }
}

/// ipvlan l3/l3s children are NOARP, and the kernel runs no DAD on them.
fn is_noarp(link: &ChildLink) -> bool {
    matches!(link, ChildLink::Ipvlan(r) if matches!(r.mode, IpvlanMode::L3 | IpvlanMode::L3s))
}

fn add_tentative(
    target: &mut RouteSocket,
    index: u32,
    addr: IpNet,
    undo: &mut UndoLog,
) -> Result<()> {
    target.add_address_with_dad(index, addr)?;
    undo.push(UndoAction::DeleteAddress { index, addr });
    Ok(())
}

/// Waits for the kernel's DAD verdict on the `i`th address (tentative since
/// `since`); a failed one is removed and replaced, and the replacement
/// judged in turn.
#[allow(clippy::too_many_arguments)]
fn settle_v6(
    i: usize,
    plan: &mut EndpointPlan,
    index: u32,
    mut since: Instant,
    timeout: Duration,
    replace: &mut dyn Replace,
    target: &mut RouteSocket,
    undo: &mut UndoLog,
) -> Result<()> {
    loop {
        let address = plan.addresses[i];
        let deadline = since + timeout + DAD_SLACK;
        let verdict = loop {
            let state = target.dad_state(index, address.addr())?.ok_or_else(|| {
                EngineError::Refused(format!(
                    "{} vanished from the new link during duplicate address detection",
                    address.addr()
                ))
            })?;
            if state != Dad::Tentative || Instant::now() >= deadline {
                break state;
            }
            std::thread::sleep(DAD_POLL);
        };
        match verdict {
            Dad::Done => return Ok(()),
            Dad::Tentative => {
                return Err(EngineError::Refused(format!(
                    "duplicate address detection of {} did not finish in {} ms (no carrier on the parent?); the address was not used",
                    address.addr(),
                    (timeout + DAD_SLACK).as_millis()
                )));
            }
            Dad::Failed => {
                target.delete_address(index, address)?;
                undo.forget_address(index, address);
                plan.addresses[i] = replace.replace(i, address, None)?;
                add_tentative(target, index, plan.addresses[i], undo)?;
                since = Instant::now();
            }
        }
    }
}
