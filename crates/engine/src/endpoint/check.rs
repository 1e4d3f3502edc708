//! CHECK: does the kernel still hold the endpoint as it was made? The
//! parent exists; the link exists in its namespace with its kind, mode, MAC,
//! broadcast cutoff and MTU; every address and route is there, and (where
//! the caller asks) no address was added beside them. [`check`] gives the
//! first difference as the error, worded for the user (a CNI CHECK);
//! [`drifts`] gives them all, sorted by what could repair them (`doctor`).

use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_model::{LinkMode, MacAddr};

use super::place::Place;
use crate::error::{EngineError, Result};

/// What the endpoint must look like.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub parent: &'a str,
    pub ifname: &'a str,
    /// The link's kind ("macvlan", "ipvtap"...).
    pub kind: &'a str,
    pub mode: LinkMode,
    pub mac: Option<MacAddr>,
    pub bclim: Option<i32>,
    pub mtu: ExpectedMtu,
    pub addresses: &'a [IpAddr],
    /// Routes by destination, with the gateway when one was given.
    pub routes: &'a [(IpNet, Option<IpAddr>)],
    /// Also report global addresses on the link that are not in
    /// `addresses` (someone changed them by hand). `doctor` asks, as the
    /// record lists every address nicslice gave; a CNI CHECK does not, as
    /// another plugin of the chain may have put one there.
    pub only_these_addresses: bool,
}

/// The MTU the link must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedMtu {
    /// The one asked for.
    Of(u32),
    /// The parent's, which a child takes when made without one (a parent's
    /// MTU raised later leaves its children at the old one: a finding).
    Parents,
    /// Not compared: a CNI chain's `tuning` plugin may set its own.
    Unchecked,
}

/// What kind of difference a [`Drift`] is: what could repair it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftKind {
    /// The link is missing.
    LinkMissing,
    /// The link is of another kind, mode, MAC or broadcast cutoff: only a
    /// new link would be as made.
    LinkDiffers,
    Mtu,
    /// A recorded address or route is missing: it can be put back.
    Missing,
    /// An address on the link that is not in the record.
    Foreign,
}

/// One difference between the kernel and what was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub kind: DriftKind,
    pub message: String,
}

fn drift(kind: DriftKind, message: String) -> Drift {
    Drift { kind, message }
}

/// Compares the kernel with `expected`: the first difference is the error.
pub fn check(place: &mut Place, expected: &Expected<'_>) -> Result<()> {
    match drifts(place, expected)?.into_iter().next() {
        Some(d) => Err(EngineError::Invalid(d.message)),
        None => Ok(()),
    }
}

/// Every difference between the kernel and `expected`. A link missing or
/// not as made is the only one reported (the rest is of a link nicslice did
/// not make); a missing parent or namespace is the error.
pub fn drifts(place: &mut Place, expected: &Expected<'_>) -> Result<Vec<Drift>> {
    let parent = place.resolve_parent(expected.parent, None, None)?;
    let ns = place.target_ns.label().to_string();
    let ifname = expected.ifname;
    let Some(link) = place.target.link_by_name(ifname)? else {
        let message = format!("interface {ifname} not found in {ns}");
        return Ok(vec![drift(DriftKind::LinkMissing, message)]);
    };
    if let Some(differs) = link_differs(&link, expected) {
        return Ok(vec![drift(DriftKind::LinkDiffers, differs)]);
    }
    let mut out = Vec::new();
    let want = match expected.mtu {
        ExpectedMtu::Of(mtu) => Some((mtu, "the one asked for")),
        ExpectedMtu::Parents => {
            place.host.link_by_index(parent.index)?.map(|p| (p.mtu, "its parent's"))
        }
        ExpectedMtu::Unchecked => None,
    };
    if let Some((want, whose)) = want
        && link.mtu != want
    {
        let message = format!("interface {ifname} has MTU {}, not {want} ({whose})", link.mtu);
        out.push(drift(DriftKind::Mtu, message));
    }
    let on_link: Vec<_> = place
        .target
        .address_entries(Some(link.index))?
        .into_iter()
        .filter(|e| e.index == link.index)
        .collect();
    for ip in expected.addresses {
        if !on_link.iter().any(|e| e.address.addr() == *ip) {
            out.push(drift(DriftKind::Missing, format!("address {ip} is missing on {ifname}")));
        }
    }
    if expected.only_these_addresses {
        for e in &on_link {
            // The kernel's own (link-local, SLAAC from a router's
            // advertisements, which carry lifetimes) are nobody's hand.
            let kernels = !e.global || (e.address.addr().is_ipv6() && !e.permanent);
            if !kernels && !expected.addresses.contains(&e.address.addr()) {
                let message = format!(
                    "address {} on {ifname} is not one nicslice gave it (changed by hand?)",
                    e.address
                );
                out.push(drift(DriftKind::Foreign, message));
            }
        }
    }
    let routes = place.target.routes()?;
    for (dst, gw) in expected.routes {
        if !routes.iter().any(|r| r.destination == *dst && (gw.is_none() || r.gateway == *gw)) {
            out.push(drift(DriftKind::Missing, format!("route to {dst} is missing in {ns}")));
        }
    }
    Ok(out)
}

/// How `link` is not the link that was made (kind, mode, cutoff, MAC).
fn link_differs(link: &nicslice_kernel::Link, expected: &Expected<'_>) -> Option<String> {
    let ifname = expected.ifname;
    if link.kind.as_deref() != Some(expected.kind) {
        return Some(format!(
            "interface {ifname} is a {} link, not {}",
            link.kind.as_deref().unwrap_or("physical"),
            expected.kind
        ));
    }
    if let LinkMode::Macvlan(mode) = expected.mode {
        let actual = link.macvlan.as_ref().and_then(|m| m.mode);
        if actual != Some(mode) {
            let actual = actual.map_or("unknown".to_string(), |m| m.to_string());
            return Some(format!("interface {ifname} is in macvlan mode {actual}, not {mode}"));
        }
        if expected.bclim.is_some() && link.macvlan.as_ref().and_then(|m| m.bclim) != expected.bclim
        {
            return Some(format!(
                "interface {ifname} has no broadcast cutoff {} (bclim): {}",
                expected.bclim.unwrap_or_default(),
                super::NO_BCLIM
            ));
        }
    }
    if let Some(mac) = expected.mac
        && link.mac != Some(mac)
    {
        let actual = link.mac.map_or("none".to_string(), |m| m.to_string());
        return Some(format!("interface {ifname} has MAC {actual}, not {mac}"));
    }
    None
}
