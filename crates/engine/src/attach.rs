//! attach: give a namespace an interface on a network. Checks everything it
//! can before touching the kernel, then leases addresses, makes the link and
//! records the endpoint in one store transaction that commits only when the
//! kernel work succeeded; any failure undoes every step.

use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_kernel::{NetnsTarget, tap};
use nicslice_model::{
    IfName, MacAddr, MacvlanMode, NetworkSpec, RouteRequest, ValidNetwork, rules,
};
use nicslice_store::{
    EndpointId, LeaseRecord, NetnsId, NetworkId, NewEndpoint, StoreRead, WriteTx,
};
use serde::{Deserialize, Serialize};

use crate::endpoint::{
    self, AddressPlan, ChildSpec, EndpointPlan, Place, Policy, RouteSpec, Via, plan_routes,
};
use crate::error::{EngineError, Result};
use crate::fault::Step;
use crate::undo::UndoLog;
use crate::{EndpointView, Engine};

#[derive(Debug, Clone)]
pub struct AttachRequest {
    pub network: String,
    pub netns: NetnsTarget,
    pub ifname: IfName,
    /// Static addresses, at most one per family.
    pub ips: Vec<IpAddr>,
    pub mac: Option<MacAddr>,
    pub source_macs: Vec<MacAddr>,
    pub default_route: bool,
    /// Routes besides the default one (`--route`).
    pub routes: Vec<RouteRequest>,
    /// DHCP settings, used on a `--ipam dhcp` network.
    pub dhcp: crate::dhcp::DhcpRequest,
}

/// What an endpoint row keeps besides its addresses (those are its leases).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct EndpointDetails {
    pub kind: String,
    #[serde(default)]
    pub gateways: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap_device: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_macs: Vec<MacAddr>,
    /// ipvlan l3/l3s: the default route goes through the device itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default_dev: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteRequest>,
}

pub(crate) fn netns_id(ns: &nicslice_kernel::Netns) -> NetnsId {
    let id = ns.id();
    NetnsId { dev: id.dev, ino: id.ino }
}

pub(crate) fn open_target(target: &NetnsTarget) -> Result<nicslice_kernel::Netns> {
    target.open().map_err(|e| match e {
        nicslice_kernel::KernelError::NoSuchNetns(label) => EngineError::NotFound(match target {
            NetnsTarget::Named(name) => format!(
                "network namespace {name} does not exist; create it with `ip netns add {name}`"
            ),
            NetnsTarget::Pid(pid) => format!("no process {pid}: cannot find its network namespace"),
            _ => format!("{label} does not exist"),
        }),
        other => other.into(),
    })
}

/// Refuses a second child on a passthru parent and a MAC another endpoint on
/// the same parent already has.
fn check_parent_room(tx: &WriteTx<'_>, spec: &NetworkSpec, mac: Option<MacAddr>) -> Result<()> {
    let mut on_parent = 0;
    for net in tx.networks_on_parent(&spec.parent)? {
        let endpoints = tx.endpoints(net.id)?;
        on_parent += endpoints.len();
        if let Some(ep) = endpoints.iter().find(|e| mac.is_some() && e.mac == mac) {
            return Err(EngineError::Invalid(format!(
                "--mac {} is already used by {} in {} (network {}); choose another",
                mac.map(|m| m.to_string()).unwrap_or_default(),
                ep.ifname,
                ep.netns,
                net.spec.name
            )));
        }
    }
    Ok(rules::check_passthru_attach(&spec.parent, spec.name.as_str(), spec.mode, on_parent)?)
}

/// One address per family the network has: the static one asked for, or
/// the next free one of the first subnet of that family with room.
fn allocate_addresses(
    tx: &WriteTx<'_>,
    valid: &ValidNetwork,
    network: NetworkId,
    endpoint: EndpointId,
    wanted: &[IpAddr],
) -> Result<Vec<LeaseRecord>> {
    let mut leases = Vec::new();
    for v6 in [false, true] {
        let subnets: Vec<usize> = (0..valid.subnets().len())
            .filter(|&i| valid.subnets()[i].subnet().addr().is_ipv6() == v6)
            .collect();
        let Some(&first) = subnets.first() else { continue };
        if let Some(ip) = wanted.iter().copied().find(|ip| ip.is_ipv6() == v6) {
            let i = subnets
                .iter()
                .copied()
                .find(|&i| valid.subnets()[i].subnet().contains(&ip))
                .unwrap_or(first);
            leases.push(tx.allocate(network, i, Some(ip), Some(endpoint))?);
            continue;
        }
        let mut first_error = None;
        let mut got = None;
        for &i in &subnets {
            match tx.allocate(network, i, None, Some(endpoint)) {
                Ok(lease) => {
                    got = Some(lease);
                    break;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match (got, first_error) {
            (Some(lease), _) => leases.push(lease),
            (None, Some(e)) => return Err(e.into()),
            (None, None) => {}
        }
    }
    Ok(leases)
}

impl Engine {
    pub fn attach(&mut self, req: AttachRequest) -> Result<EndpointView> {
        let record = self.network_record(&req.network)?;
        let valid = record.validate()?;
        let spec = valid.spec().clone();

        // Requests that make no sense for this network.
        let is_dhcp = spec.ipam == nicslice_model::Ipam::Dhcp;
        if is_dhcp && !req.ips.is_empty() {
            return Err(EngineError::Invalid(format!(
                "--ip does not apply to network {}: its addresses come from DHCP",
                spec.name
            )));
        }
        let mut families = [false, false];
        for ip in &req.ips {
            let slot = &mut families[usize::from(ip.is_ipv6())];
            if *slot {
                return Err(EngineError::Invalid(format!(
                    "--ip {ip}: give at most one address per family"
                )));
            }
            *slot = true;
            if !valid.subnets().iter().any(|s| s.subnet().contains(ip)) {
                let list: Vec<String> =
                    valid.subnets().iter().map(|s| s.subnet().to_string()).collect();
                return Err(EngineError::Invalid(format!(
                    "--ip {ip} is in no subnet of network {} ({})",
                    spec.name,
                    if list.is_empty() { "it has no subnets".to_string() } else { list.join(", ") }
                )));
            }
        }
        for route in &req.routes {
            route.check(&valid).map_err(EngineError::Invalid)?;
        }
        if !req.source_macs.is_empty() && spec.mode != MacvlanMode::Source {
            return Err(EngineError::Invalid(format!(
                "--source-mac needs a source-mode network, and {} is in {} mode",
                spec.name, spec.mode
            )));
        }
        if let Some(mac) = req.mac {
            if spec.driver.is_ipvlan() {
                return Err(EngineError::Invalid(format!(
                    "--mac does not apply to {} network {}: its children share the parent's MAC",
                    spec.driver, spec.name
                )));
            }
            mac.ensure_unicast()?;
        }

        let target_ns = open_target(&req.netns)?;
        let mut place = Place::between(&self.host, target_ns)?;
        let parent = place
            .resolve_parent(spec.parent.as_str(), None, req.mac)
            .map_err(|e| match e {
                EngineError::NotFound(_) => EngineError::NotFound(format!(
                    "parent {} of network {} no longer exists in {}; recreate it or remove the network",
                    spec.parent,
                    spec.name,
                    self.host.label()
                )),
                other => other,
            })?;
        let child = ChildSpec {
            driver: spec.driver,
            mode: spec.mode,
            flags: spec.flags,
            ipvlan_flag: spec.ipvlan_flag,
            mtu: spec.mtu,
            mac: req.mac,
            bcqueuelen: spec.bcqueuelen,
            bclim: spec.bclim,
            source_macs: req.source_macs.clone(),
        };

        let faults = self.faults;
        let mut undo = UndoLog::default();
        // DHCP: a lease granted but not committed is given back on failure.
        let mut dhcp_held: Option<crate::dhcp::Held> = None;
        let result = (|| -> Result<EndpointView> {
            let tx = self.store.write()?;
            check_parent_room(&tx, &spec, req.mac)?;

            let endpoint_id = tx.insert_endpoint(
                record.id,
                &NewEndpoint {
                    netns: req.netns.path().display().to_string(),
                    netns_id: netns_id(&place.target_ns),
                    ifname: req.ifname.clone(),
                    mac: None,
                    details: serde_json::Value::Null,
                },
            )?;

            faults.check(Step::Allocate)?;
            let leases = allocate_addresses(&tx, &valid, record.id, endpoint_id, &req.ips)?;
            let mut addresses: Vec<IpNet> = leases.iter().map(LeaseRecord::address).collect();

            // A gateway the user named is used as given, even by a NOARP
            // (ipvlan l3/l3s) child, which otherwise routes through its device.
            let planned: Vec<AddressPlan> = leases
                .iter()
                .map(|l| AddressPlan {
                    address: l.address(),
                    gateway: Some(l.gateway),
                    gateway_named: valid
                        .subnet(l.subnet_index)
                        .is_some_and(|s| !s.gateway_is_default()),
                })
                .collect();
            let extra: Vec<RouteSpec> = req
                .routes
                .iter()
                .map(|r| RouteSpec {
                    destination: r.destination,
                    via: r.via.map_or(Via::Device, Via::Gateway),
                    metric: None,
                })
                .collect();
            let plan = EndpointPlan {
                link: child.link(req.ifname.clone(), &parent),
                parent: parent.clone(),
                addresses: addresses.clone(),
                routes: plan_routes(&planned, &extra, req.default_route, child.is_noarp()),
            };
            let realized = if is_dhcp {
                // --- DHCP (crate::dhcp): the address comes from the server ---
                let who = crate::dhcp::Who {
                    network: spec.name.as_str(),
                    netns: &req.netns,
                    ifname: req.ifname.as_str(),
                };
                let (realized, held) = crate::dhcp::realize(
                    &plan,
                    &who,
                    &req.dhcp,
                    &tx,
                    &extra,
                    req.default_route,
                    child.is_noarp(),
                    &mut place,
                    faults,
                    &mut undo,
                )?;
                held.record(&tx, endpoint_id)?;
                addresses.push(IpNet::V4(held.granted.address));
                dhcp_held = Some(held);
                realized
                // --- end DHCP ---
            } else {
                endpoint::realize(&plan, Policy::CLI, &mut place, faults, &mut undo)?
            };
            let link = realized.link;
            if let Some(shim) = tx.shim(record.id)? {
                let ips: Vec<IpAddr> = addresses.iter().map(IpNet::addr).collect();
                crate::shim::route_endpoint(&mut place.host, &shim, &ips, &mut undo)?;
            }
            let gateways: Vec<IpAddr> = realized.routes.iter().filter_map(|r| r.gateway).collect();
            let tap_device = if spec.driver.has_tap() {
                Some(tap::tap_device(link.index, spec.driver.kind())?.path.display().to_string())
            } else {
                None
            };
            let details = EndpointDetails {
                kind: spec.driver.to_string(),
                gateways,
                tap_device: tap_device.clone(),
                source_macs: req.source_macs.clone(),
                default_dev: realized.routes.iter().any(|r| r.is_default() && r.gateway.is_none()),
                routes: req.routes.clone(),
            };
            let details_json = serde_json::to_value(&details).unwrap_or(serde_json::Value::Null);
            tx.update_endpoint(endpoint_id, link.mac, &details_json)?;
            let dhcp = crate::dhcp::view_of(&tx, endpoint_id)?.1;
            faults.check(Step::StoreCommit)?;
            tx.commit()?;
            Ok(EndpointView {
                dhcp,
                network: spec.name.to_string(),
                netns: req.netns.path().display().to_string(),
                ifname: req.ifname.to_string(),
                mac: link.mac,
                addresses,
                gateways: details.gateways,
                tap_device,
                source_macs: req.source_macs.clone(),
                routes: details.routes,
            })
        })();
        match result {
            Ok(view) => {
                undo.commit();
                Ok(view)
            }
            Err(error) => {
                if let Some(held) = &dhcp_held {
                    held.give_back(&place.target_ns);
                }
                Err(place.abort(undo, error))
            }
        }
    }
}
