//! detach: remove a namespace's interface from a network, free its leases and
//! drop its row; the store transaction commits only after the link is gone.
//! Also the endpoint listing and source-mode MAC list changes.

use std::path::PathBuf;

use nicslice_kernel::{NetnsTarget, RouteSocket, SourceMacOp};
use nicslice_model::{IfName, MacAddr, MacvlanMode};
use nicslice_store::{EndpointRecord, StoreRead};

use crate::attach::{EndpointDetails, netns_id, open_target};
use crate::endpoint::{self, Ours};
use crate::error::{EngineError, Result};
use crate::fault::Step;
use crate::{EndpointView, Engine};

#[derive(Debug, Clone)]
pub struct DetachRequest {
    pub network: String,
    pub netns: NetnsTarget,
    pub ifname: IfName,
}

impl DetachRequest {
    /// A request for an endpoint as the store recorded it.
    pub fn from_recorded(network: &str, netns: &str, ifname: &str) -> Result<DetachRequest> {
        Ok(DetachRequest {
            network: network.to_string(),
            netns: NetnsTarget::Path(PathBuf::from(netns)),
            ifname: ifname.parse()?,
        })
    }
}

fn details_of(ep: &EndpointRecord) -> EndpointDetails {
    serde_json::from_value(ep.details.clone()).unwrap_or_default()
}

fn endpoint_view(tx: &impl StoreRead, network: &str, ep: &EndpointRecord) -> Result<EndpointView> {
    let details = details_of(ep);
    let mut addresses: Vec<ipnet::IpNet> =
        tx.leases_of(ep.id)?.iter().map(|l| l.address()).collect();
    let (dhcp_addresses, dhcp) = crate::dhcp::view_of(tx, ep.id)?;
    addresses.extend(dhcp_addresses);
    Ok(EndpointView {
        dhcp,
        network: network.to_string(),
        netns: ep.netns.clone(),
        ifname: ep.ifname.to_string(),
        mac: ep.mac,
        addresses,
        gateways: details.gateways,
        tap_device: details.tap_device,
        source_macs: details.source_macs,
        routes: details.routes,
    })
}

impl Engine {
    pub fn detach(&mut self, req: DetachRequest) -> Result<EndpointView> {
        let record = self.network_record(&req.network)?;
        // The namespace may be gone (a container that exited): the endpoint
        // is then found by the path it was recorded under, and its link went
        // away with the namespace.
        let target_ns = match open_target(&req.netns) {
            Ok(ns) => Some(ns),
            Err(EngineError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let faults = self.faults;
        let tx = self.store.write()?;
        let recorded_path = req.netns.path().display().to_string();
        let endpoint = match &target_ns {
            Some(ns) => tx.endpoint_by_netns_ifname(netns_id(ns), &req.ifname)?,
            None => tx
                .endpoints(record.id)?
                .into_iter()
                .find(|e| e.netns == recorded_path && e.ifname == req.ifname),
        };
        let endpoint = endpoint.ok_or_else(|| {
            EngineError::NotFound(format!(
                "no endpoint {} in {} is attached to network {}; `nicslice endpoint ls` lists them",
                req.ifname, req.netns, req.network
            ))
        })?;
        if endpoint.network_id != record.id {
            return Err(EngineError::Invalid(format!(
                "{} in {} is attached to another network, not {}",
                req.ifname, req.netns, req.network
            )));
        }
        let view = endpoint_view(&tx, &record.spec.name.to_string(), &endpoint)?;
        tx.release_endpoint_leases(endpoint.id)?;
        let parent = (&self.host, record.spec.parent.as_str());
        crate::dhcp::release(&tx, target_ns.as_ref(), parent, &req.network, &endpoint)?;
        tx.delete_endpoint(endpoint.id)?;
        let kinds = [record.spec.driver.kind()];
        let ours = Ours { kinds: &kinds, mac: endpoint.mac };
        let removed =
            endpoint::delete_child(target_ns.as_ref(), req.ifname.as_str(), ours, faults)?;
        if let Some(reason) = removed.not_ours_reason(req.ifname.as_str(), &req.netns.to_string()) {
            return Err(EngineError::Invalid(format!(
                "{reason}. Rename or remove it, then detach again"
            )));
        }
        if let Some(shim) = tx.shim(record.id)? {
            let ips: Vec<std::net::IpAddr> = view.addresses.iter().map(|a| a.addr()).collect();
            crate::shim::unroute(&mut RouteSocket::open_in(&self.host)?, &shim, &ips);
        }
        faults.check(Step::StoreCommit)?;
        tx.commit()?;
        Ok(view)
    }

    /// Endpoints of one network, or of all.
    pub fn endpoints(&mut self, network: Option<&str>) -> Result<Vec<EndpointView>> {
        let networks = match network {
            Some(name) => vec![self.network_record(name)?],
            None => self.store.read()?.list_networks()?,
        };
        let tx = self.store.read()?;
        let mut out = Vec::new();
        for net in networks {
            for ep in tx.endpoints(net.id)? {
                out.push(endpoint_view(&tx, net.spec.name.as_str(), &ep)?);
            }
        }
        Ok(out)
    }

    /// Changes the list of source MACs a source-mode endpoint accepts.
    pub fn change_source_macs(
        &mut self,
        network: &str,
        netns: &NetnsTarget,
        ifname: &IfName,
        op: SourceMacOp,
        macs: &[MacAddr],
    ) -> Result<EndpointView> {
        let record = self.network_record(network)?;
        if record.spec.mode != MacvlanMode::Source {
            return Err(EngineError::Invalid(format!(
                "network {network} is in {} mode; source MAC lists exist only in source mode",
                record.spec.mode
            )));
        }
        let ns = open_target(netns)?;
        let tx = self.store.write()?;
        let ep = tx
            .endpoint_by_netns_ifname(netns_id(&ns), ifname)?
            .filter(|e| e.network_id == record.id)
            .ok_or_else(|| {
                EngineError::NotFound(format!(
                    "no endpoint {ifname} in {netns} is attached to network {network}"
                ))
            })?;
        let mut details = details_of(&ep);
        let mut list = details.source_macs.clone();
        match op {
            SourceMacOp::Add => {
                list.extend(macs.iter().filter(|m| !details.source_macs.contains(m)))
            }
            SourceMacOp::Del => list.retain(|m| !macs.contains(m)),
            SourceMacOp::Set => list = macs.to_vec(),
            SourceMacOp::Flush => list.clear(),
        }
        details.source_macs = list;
        let previous = details_of(&ep).source_macs;
        let view = endpoint_view(&tx, network, &ep)?;
        let mut target = RouteSocket::open_in(&ns)?;
        let link = target.require_link(ifname.as_str(), ns.label())?;
        target.change_source_macs(link.index, record.spec.driver, op, macs)?;
        let json = serde_json::to_value(&details).unwrap_or(serde_json::Value::Null);
        let recorded = tx.update_endpoint(ep.id, ep.mac, &json).and_then(|_| tx.commit());
        match recorded {
            Ok(()) => Ok(EndpointView { source_macs: details.source_macs, ..view }),
            Err(e) => {
                // The state did not take the change: put the kernel's list back.
                let _ = target.change_source_macs(
                    link.index,
                    record.spec.driver,
                    SourceMacOp::Set,
                    &previous,
                );
                Err(e.into())
            }
        }
    }
}
