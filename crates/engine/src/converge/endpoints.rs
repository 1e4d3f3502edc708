//! The endpoints' part of the plan: each declared endpoint against its
//! record and the kernel (`check_endpoints`, as `doctor` checks them), and
//! the recorded endpoints the file does not list.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use nicslice_kernel::{NetnsTarget, RouteSocket};
use nicslice_model::ValidNetwork;
use nicslice_model::desired::DesiredEndpoint;

use super::diff::{KEEP_UNLISTED, Planning, shown, step};
use super::{Action, Desired, Op, Phase};
use crate::error::{EngineError, Result};
use crate::verify::EndpointHealth;
use crate::{AttachRequest, EndpointView};

/// How a recorded endpoint differs from its declaration, if it does.
fn endpoint_differences(d: &DesiredEndpoint, r: &EndpointView) -> Vec<String> {
    let mut out = Vec::new();
    if r.network != d.network.as_str() {
        out.push(format!("network (record: {}, file: {})", r.network, d.network));
    }
    let recorded: BTreeSet<IpAddr> = r.addresses.iter().map(|a| a.addr()).collect();
    let declared: BTreeSet<IpAddr> = d.ips.iter().copied().collect();
    if !declared.is_empty() && declared != recorded {
        out.push(format!("ips (record: {recorded:?}, file: {declared:?})"));
    }
    if let Some(mac) = d.mac
        && r.mac != Some(mac)
    {
        out.push(format!("mac (record: {}, file: {mac})", shown(r.mac)));
    }
    let set =
        |v: &[nicslice_model::MacAddr]| v.iter().map(|m| m.to_string()).collect::<BTreeSet<_>>();
    if set(&d.source_macs) != set(&r.source_macs) {
        out.push("source_macs".into());
    }
    // Only "none wanted, one there" is visible: an ipvlan l3 child's default
    // route goes through its device and records no gateway.
    if !d.default_route && !r.gateways.is_empty() {
        out.push("default_route (record: true, file: false)".into());
    }
    let routes = |v: &[nicslice_model::RouteRequest]| {
        v.iter().map(|r| r.to_string()).collect::<BTreeSet<_>>()
    };
    if routes(&d.routes) != routes(&r.routes) {
        out.push("routes".into());
    }
    out
}

/// An attach of `d`, keeping `kept`'s addresses (and, with `keep_mac`, its
/// MAC) where the file names none, so that an endpoint made again keeps them.
fn attach_of(
    d: &DesiredEndpoint,
    kept: Option<&EndpointView>,
    keep_mac: bool,
    network: &ValidNetwork,
) -> AttachRequest {
    let kept = kept.filter(|k| k.network == d.network.as_str());
    let ips = if !d.ips.is_empty() || network.spec().ipam.is_dhcp() {
        d.ips.clone()
    } else {
        kept.map(|k| k.addresses.iter().map(|a| a.addr()).collect()).unwrap_or_default()
    };
    AttachRequest {
        network: d.network.to_string(),
        netns: NetnsTarget::parse_user(&d.netns),
        ifname: d.ifname.clone(),
        ips,
        mac: d.mac.or(kept.filter(|_| keep_mac).and_then(|k| k.mac)),
        source_macs: d.source_macs.clone(),
        default_route: d.default_route,
        routes: d.routes.clone(),
        dhcp: Default::default(),
    }
}

/// The key an endpoint is known by: its namespace's path and its name.
pub(super) fn key_of(netns: &str, ifname: &str) -> (String, String) {
    (NetnsTarget::parse_user(netns).path().display().to_string(), ifname.to_string())
}

pub(super) fn plan_endpoints(
    desired: &Desired,
    endpoints: &[EndpointHealth],
    valid: &BTreeMap<String, ValidNetwork>,
    p: &mut Planning,
) -> Result<()> {
    let recorded: BTreeMap<(String, String), &EndpointHealth> =
        endpoints.iter().map(|h| (key_of(&h.endpoint.netns, &h.endpoint.ifname), h)).collect();
    let mut declared = BTreeSet::new();
    for d in &desired.endpoints {
        let key = key_of(&d.netns, d.ifname.as_str());
        declared.insert(key.clone());
        let subject = format!("{} in {} on {}", d.ifname, d.netns, d.network);
        let network = valid.get(d.network.as_str()).ok_or_else(|| {
            EngineError::Invalid(format!(
                "endpoint {subject}: network {} is not in the file",
                d.network
            ))
        })?;
        let live = recorded.get(&key).copied().filter(|_| !p.claimed.contains(&key));
        let Some(h) = live else {
            // New here (or its old record goes earlier in the plan).
            if p.namespace_for(d)? && !recorded.contains_key(&key) {
                let ns = NetnsTarget::parse_user(&d.netns).open()?;
                if RouteSocket::open_in(&ns)?.index_of(d.ifname.as_str())?.is_some() {
                    return Err(EngineError::Invalid(format!(
                        "endpoint {subject}: {} already has an interface {} that nicslice did not make; remove it or choose another ifname",
                        d.netns, d.ifname
                    )));
                }
            }
            let kept = recorded.get(&key).map(|h| &h.endpoint);
            let req = attach_of(d, kept, true, network);
            p.steps.push(step(
                Action::Create,
                "endpoint",
                subject,
                "not in the record",
                vec![Op::Attach(req)],
                Phase::Endpoint,
            ));
            continue;
        };
        let ep = &h.endpoint;
        let gone =
            ep.state == "stale" || NetnsTarget::Path(ep.netns.clone().into()).open().is_err();
        let differ = endpoint_differences(d, ep);
        let why = if gone {
            p.namespace_for(d)?;
            Some(format!(
                "its namespace {} is gone: its record released and the endpoint made again",
                ep.netns
            ))
        } else if let Some(problem) = &h.problem {
            Some(format!("{problem}: made again"))
        } else if !differ.is_empty() {
            Some(format!("{}: made again", differ.join(", ")))
        } else {
            None
        };
        let Some(why) = why else {
            p.steps.push(step(
                Action::Keep,
                "endpoint",
                subject,
                "as the file says",
                vec![],
                Phase::Endpoint,
            ));
            continue;
        };
        // A namespace deleted takes its links with it a moment later (the
        // kernel tears it down in the background): its MAC may still be in
        // use on the parent, and the new namespace's child gets another.
        let ops = vec![Op::Detach(ep.clone()), Op::Attach(attach_of(d, Some(ep), !gone, network))];
        p.steps.push(step(Action::Modify, "endpoint", subject, why, ops, Phase::Endpoint));
    }
    for h in endpoints {
        let key = key_of(&h.endpoint.netns, &h.endpoint.ifname);
        if declared.contains(&key) || p.claimed.contains(&key) {
            continue;
        }
        if p.prune {
            p.remove_endpoint(&h.endpoint, "not in the file");
        } else {
            let ep = &h.endpoint;
            let subject = format!("{} in {} on {}", ep.ifname, ep.netns, ep.network);
            p.steps.push(step(
                Action::Keep,
                "endpoint",
                subject,
                KEEP_UNLISTED,
                vec![],
                Phase::Endpoint,
            ));
        }
    }
    Ok(())
}
