//! CHECK: does the kernel still hold the endpoint as it was made? The
//! parent exists; the link exists in its namespace with its kind, mode, MAC
//! and broadcast cutoff; every address and route is there. The first
//! difference is the error, worded for the user.

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
    pub addresses: &'a [IpAddr],
    /// Routes by destination, with the gateway when one was given.
    pub routes: &'a [(IpNet, Option<IpAddr>)],
}

fn differs(msg: String) -> EngineError {
    EngineError::Invalid(msg)
}

/// Compares the kernel with `expected`.
pub fn check(place: &mut Place, expected: &Expected<'_>) -> Result<()> {
    place.resolve_parent(expected.parent, None, None)?;
    let ns = place.target_ns.label().to_string();
    let ifname = expected.ifname;
    let link = place
        .target
        .link_by_name(ifname)?
        .ok_or_else(|| differs(format!("interface {ifname} not found in {ns}")))?;
    if link.kind.as_deref() != Some(expected.kind) {
        return Err(differs(format!(
            "interface {ifname} is a {} link, not {}",
            link.kind.as_deref().unwrap_or("physical"),
            expected.kind
        )));
    }
    if let LinkMode::Macvlan(mode) = expected.mode {
        let actual = link.macvlan.as_ref().and_then(|m| m.mode);
        if actual != Some(mode) {
            let actual = actual.map_or("unknown".to_string(), |m| m.to_string());
            return Err(differs(format!(
                "interface {ifname} is in macvlan mode {actual}, not {mode}"
            )));
        }
        if expected.bclim.is_some() && link.macvlan.as_ref().and_then(|m| m.bclim) != expected.bclim
        {
            return Err(differs(format!(
                "interface {ifname} has no broadcast cutoff {} (bclim): {}",
                expected.bclim.unwrap_or_default(),
                super::NO_BCLIM
            )));
        }
    }
    if let Some(mac) = expected.mac
        && link.mac != Some(mac)
    {
        let actual = link.mac.map_or("none".to_string(), |m| m.to_string());
        return Err(differs(format!("interface {ifname} has MAC {actual}, not {mac}")));
    }
    let addresses = place.target.addresses(Some(link.index))?;
    for ip in expected.addresses {
        if !addresses.iter().any(|(i, a)| *i == link.index && a.addr() == *ip) {
            return Err(differs(format!("address {ip} is missing on {ifname}")));
        }
    }
    let routes = place.target.routes()?;
    for (dst, gw) in expected.routes {
        if !routes.iter().any(|r| r.destination == *dst && (gw.is_none() || r.gateway == *gw)) {
            return Err(differs(format!("route to {dst} is missing in {ns}")));
        }
    }
    Ok(())
}
