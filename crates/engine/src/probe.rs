//! Conflict probing (issue 14): on a network with a [`ProbeSpec`], an
//! endpoint's addresses are claimed on the wire before they are used. IPv4:
//! RFC 5227 probes (sender 0.0.0.0) from the new link, or for ipvlan, whose
//! children share the parent's MAC and never see a reply addressed to it,
//! from the parent. IPv6: the kernel's DAD, read back. An address someone
//! answers for is quarantined in the store with who answered, and the next
//! free address of the same subnet is claimed instead; an address the user
//! named (`--ip`) is refused instead. Quarantined addresses return to the
//! pool after the network's cool-down ([`release_cooled`]).
//!
//! Cost when no one answers: the probe timeout once, IPv4 and IPv6 claimed at
//! the same time (the link is up while the probes run, so IPv6 DAD runs
//! alongside them).

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nicslice_kernel::address_claim::{ArpProbe, Dad, tune_dad};
use nicslice_kernel::placement::ChildLink;
use nicslice_kernel::{Netns, RouteSocket};
use nicslice_model::{IpvlanMode, MacAddr, ProbeSpec};
use nicslice_store::{EndpointId, LeaseRecord, NetworkId, Store, WriteTx};

use crate::endpoint::{self, EndpointPlan, Place, Policy, Realized};
use crate::error::{EngineError, Result};
use crate::fault::Faults;
use crate::undo::{UndoAction, UndoLog};

/// ARP probes per address, spread over the timeout (RFC 5227 sends three).
const PROBES: u32 = 3;
/// How often a tentative IPv6 address is looked at.
const DAD_POLL: Duration = Duration::from_millis(2);
/// Time beyond the timeout the kernel may take to judge DAD (its timers
/// tick in jiffies, and the first solicitation waits for the link to be
/// ready).
const DAD_SLACK: Duration = Duration::from_millis(500);

/// Where a claim is recorded and what it may replace.
pub struct Claim<'a, 'tx> {
    pub tx: &'a WriteTx<'tx>,
    pub network: NetworkId,
    pub endpoint: EndpointId,
    pub probe: ProbeSpec,
    /// The namespace that holds the parent (ipvlan probes leave from it).
    pub host_ns: &'a Netns,
    /// Addresses the user named: refused when answered, never replaced.
    pub fixed: &'a [IpAddr],
    /// Every address answered during this claim, kept by
    /// [`keep_after_failure`] if the attach fails and its transaction, with
    /// the quarantine in it, is rolled back.
    pub answered: &'a Answered,
}

/// The addresses someone answered for: (subnet index, address, who).
#[derive(Debug, Default)]
pub struct Answered(RefCell<Vec<(usize, IpAddr, Option<MacAddr>)>>);

/// After a failed attach: quarantines again, in a transaction of their own,
/// the addresses answered during it (the attach's own transaction was rolled
/// back). Best effort: a failure here is logged, and the attach's error
/// stands.
pub fn keep_after_failure(store: &mut Store, network: NetworkId, answered: &Answered) {
    let answered = answered.0.borrow();
    if answered.is_empty() {
        return;
    }
    let kept = (|| -> Result<(), nicslice_store::StoreError> {
        let tx = store.write()?;
        for (subnet_index, ip, by) in answered.iter() {
            tx.quarantine_address(network, *subnet_index, *ip, *by)?;
        }
        tx.commit()
    })();
    if let Err(e) = kept {
        tracing::warn!("could not keep the quarantine of the failed attach: {e}");
    }
}

/// Returns to the pool the addresses of `network` whose cool-down is over;
/// run before allocating, so they are probed again rather than skipped.
pub fn release_cooled(tx: &WriteTx<'_>, network: NetworkId, probe: ProbeSpec) -> Result<()> {
    for ip in tx.release_quarantine(network, probe.cooldown_s)? {
        tracing::info!(%ip, "quarantine over: the address returns to the pool");
    }
    Ok(())
}

/// [`endpoint::realize`] with every address of `leases` claimed first. A
/// replaced address changes `leases` and `plan.addresses` (same subnet, so
/// the routes stay as planned).
pub fn realize_claiming(
    plan: &mut EndpointPlan,
    leases: &mut [LeaseRecord],
    claim: &Claim<'_, '_>,
    policy: Policy,
    place: &mut Place,
    faults: Faults,
    undo: &mut UndoLog,
) -> Result<Realized> {
    let link = endpoint::create_link(&plan.link, &plan.parent, place, faults, undo)?;
    let timeout = claim.probe.timeout();
    let has_v6 = leases.iter().any(|l| l.ip.is_ipv6());
    if has_v6 {
        if is_noarp(&plan.link) {
            return Err(EngineError::Invalid(
                "an ipvlan l3/l3s child is NOARP: the kernel runs no DAD on it, so its IPv6 addresses cannot be probed; use ipvlan l2, or a network without --probe-conflicts".into(),
            ));
        }
        tune_dad(&place.target_ns, &link.name, timeout)?;
        for lease in leases.iter().filter(|l| l.ip.is_ipv6()) {
            add_tentative(&mut place.target, link.index, lease.address(), undo)?;
        }
    }
    // Up with no IPv4 address yet: the probes can leave, and IPv6 DAD starts.
    place.target.set_up(link.index, true)?;
    undo.push(UndoAction::SetUp { index: link.index, up: false });
    let started = Instant::now();

    let arp = if leases.iter().any(|l| l.ip.is_ipv4()) {
        let (ns, index, mac) = match &plan.link {
            ChildLink::Ipvlan(_) => {
                let parent = place.host.link_by_index(plan.parent.index)?;
                (claim.host_ns, plan.parent.index, parent.and_then(|p| p.mac))
            }
            ChildLink::Macvlan(_) => (&place.target_ns, link.index, link.mac),
        };
        let mac = mac.ok_or_else(|| {
            EngineError::Invalid(format!("{} has no MAC to probe from", link.name))
        })?;
        Some(ArpProbe::open_in(ns, index, mac)?)
    } else {
        None
    };
    if let Some(arp) = &arp {
        for lease in leases.iter_mut().filter(|l| l.ip.is_ipv4()) {
            claim_v4(arp, lease, claim)?;
        }
    }
    plan.addresses = leases.iter().map(LeaseRecord::address).collect();
    let v4: Vec<IpNet> = plan.addresses.iter().copied().filter(|a| a.addr().is_ipv4()).collect();
    let routes = endpoint::configure(&link, &v4, &plan.routes, policy, place, faults, undo)?;
    if let Some(arp) = &arp {
        for ip in v4.iter().filter_map(|a| match a.addr() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        }) {
            arp.announce(ip)?;
        }
    }
    drop(arp);
    for lease in leases.iter_mut().filter(|l| l.ip.is_ipv6()) {
        settle_v6(lease, link.index, started, claim, &mut place.target, undo)?;
    }
    plan.addresses = leases.iter().map(LeaseRecord::address).collect();
    Ok(Realized { link, routes })
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

/// Quarantines `lease`, answered by `by`, and takes the next free address of
/// its subnet in its place.
fn replace(lease: &mut LeaseRecord, by: Option<MacAddr>, claim: &Claim<'_, '_>) -> Result<()> {
    let who = by.map_or("a host on the link (IPv6 DAD failed)".to_string(), |m| m.to_string());
    if claim.fixed.contains(&lease.ip) {
        return Err(EngineError::AddressInUse(format!(
            "{} is already in use on the wire: {who} answered for it; choose another address",
            lease.ip
        )));
    }
    // Not a warning: a front end prints one line for a failed command, and
    // `network inspect` lists what was quarantined.
    tracing::info!(
        "{} is already in use on the wire ({who} answered): quarantined, taking the next free address",
        lease.ip
    );
    claim.answered.0.borrow_mut().push((lease.subnet_index, lease.ip, by));
    claim.tx.quarantine(lease, by)?;
    let (ip, subnet) = (lease.ip, lease.subnet);
    *lease = claim
        .tx
        .allocate(claim.network, lease.subnet_index, None, Some(claim.endpoint))
        .map_err(|e| {
            EngineError::PoolExhausted(format!(
                "{ip} is in use on the wire ({who} answered) and no other address of {subnet} is free: {e}"
            ))
        })?;
    Ok(())
}

/// Probes `lease` until no one answers, replacing each answered address.
fn claim_v4(arp: &ArpProbe, lease: &mut LeaseRecord, claim: &Claim<'_, '_>) -> Result<()> {
    loop {
        let IpAddr::V4(ip) = lease.ip else { return Ok(()) };
        match arp.probe(ip, PROBES, claim.probe.timeout())? {
            None => return Ok(()),
            Some(mac) => replace(lease, Some(mac), claim)?,
        }
    }
}

/// Waits for the kernel's DAD verdict on `lease` (tentative since
/// `since`); a failed one is removed, quarantined and replaced, and the
/// replacement judged in turn.
fn settle_v6(
    lease: &mut LeaseRecord,
    index: u32,
    mut since: Instant,
    claim: &Claim<'_, '_>,
    target: &mut RouteSocket,
    undo: &mut UndoLog,
) -> Result<()> {
    let timeout = claim.probe.timeout();
    loop {
        let deadline = since + timeout + DAD_SLACK;
        let verdict = loop {
            let state = target.dad_state(index, lease.ip)?.ok_or_else(|| {
                EngineError::Refused(format!(
                    "{} vanished from the new link during duplicate address detection",
                    lease.ip
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
                    lease.ip,
                    (timeout + DAD_SLACK).as_millis()
                )));
            }
            Dad::Failed => {
                let failed = lease.address();
                target.delete_address(index, failed)?;
                undo.forget_address(index, failed);
                replace(lease, None, claim)?;
                add_tentative(target, index, lease.address(), undo)?;
                since = Instant::now();
            }
        }
    }
}
