//! detach: remove a namespace's interface from a network, free its leases and
//! drop its row. The intent (state "detaching", with this process) is
//! committed first; the link deletion, which cannot be undone, comes next, and
//! the release last: a command killed in between leaves an intent the next
//! one finishes. Also the endpoint listing and source-mode MAC list changes.

use nicslice_kernel::signals::Shield;
use nicslice_kernel::{NetnsTarget, RouteSocket, SourceMacOp};
use nicslice_model::{IfName, MacAddr, MacvlanMode};
use nicslice_store::{EndpointRecord, EndpointState, StoreRead, WriteTx};

use crate::attach::{EndpointDetails, open_target};
use crate::endpoint::{Ours, Teardown, delete_child_on};
use crate::error::{EngineError, Result};
use crate::fault::Step;
use crate::intent::{self, NsIdentity};
use crate::{EndpointView, Engine};

#[derive(Debug, Clone)]
pub struct DetachRequest {
    pub network: String,
    pub netns: NetnsTarget,
    pub ifname: IfName,
}

fn details_of(ep: &EndpointRecord) -> EndpointDetails {
    serde_json::from_value(ep.details.clone()).unwrap_or_default()
}

pub(crate) fn endpoint_view(
    tx: &impl StoreRead,
    network: &str,
    ep: &EndpointRecord,
) -> Result<EndpointView> {
    let details = details_of(ep);
    let mut addresses: Vec<ipnet::IpNet> =
        tx.leases_of(ep.id)?.iter().map(|l| l.address()).collect();
    let dhcp = crate::dhcp::view_of(tx, ep.id)?;
    addresses.extend(dhcp.addresses);
    Ok(EndpointView {
        dhcp: dhcp.v4,
        dhcp6: dhcp.v6,
        network: network.to_string(),
        netns: ep.netns.clone(),
        ifname: ep.ifname.to_string(),
        mac: ep.mac,
        addresses,
        gateways: details.gateways,
        tap_device: details.tap_device,
        source_macs: details.source_macs,
        routes: details.routes,
        state: ep.state.as_str(),
        dhcp_lost: details.dhcp_lost,
        dhcp_retry: details.dhcp_retry,
    })
}

/// The endpoint `ifname` in the namespace `identity`, if one is recorded for
/// that very namespace (a record of an earlier namespace that had its inode
/// is not it).
fn recorded_in(
    tx: &impl StoreRead,
    identity: NsIdentity,
    ifname: &IfName,
) -> Result<Option<EndpointRecord>> {
    Ok(tx.endpoint_by_netns_ifname(identity.id, ifname)?.filter(|e| identity.matches(e)))
}

/// Deletes an endpoint's link if it is the one nicslice made (its kind and,
/// where recorded, its MAC); `Ok(false)` when it was gone already. A link of
/// that name that is not ours is left alone, and refused with the reason.
pub(crate) fn remove_ours(
    sock: &mut RouteSocket,
    ifname: &str,
    kind: &str,
    mac: Option<MacAddr>,
    faults: crate::Faults,
) -> Result<bool> {
    let kinds = [kind];
    match delete_child_on(sock, ifname, Ours { kinds: &kinds, mac }, faults)? {
        Teardown::Deleted => Ok(true),
        Teardown::AlreadyGone => Ok(false),
        not_ours => Err(EngineError::Invalid(format!(
            "{}. Rename or remove it, then detach again",
            not_ours.not_ours_reason(ifname, "its namespace").unwrap_or_default()
        ))),
    }
}

/// Takes the host routes of a detached endpoint's addresses out of its
/// network's shim, if it has one.
fn unroute_from_shim(
    host: &nicslice_kernel::Netns,
    tx: &WriteTx<'_>,
    network: nicslice_store::NetworkId,
    addresses: &[std::net::IpAddr],
) -> Result<()> {
    if let Some(shim) = tx.shim(network)? {
        crate::shim::unroute(&mut RouteSocket::open_in(host)?, &shim, addresses);
    }
    Ok(())
}

/// Refuses an endpoint another live command is attaching or detaching.
pub(crate) fn refuse_in_flight(ep: &EndpointRecord) -> Result<()> {
    if ep.state != EndpointState::Attached && !intent::owner_gone(ep.owner) {
        return Err(EngineError::Invalid(format!(
            "{} in {} is being {} by process {}; try again when it is done",
            ep.ifname,
            ep.netns,
            if ep.state == EndpointState::Attaching { "attached" } else { "detached" },
            ep.owner.map_or(0, |o| o.pid)
        )));
    }
    Ok(())
}

impl Engine {
    pub fn detach(&mut self, req: DetachRequest) -> Result<EndpointView> {
        let record = self.network_record(&req.network)?;
        // The namespace may be gone (a container that exited): the endpoint
        // is then found by the path it was recorded under, and its link went
        // away with the namespace.
        let target = match open_target(&req.netns) {
            Ok(ns) => {
                let sock = RouteSocket::open_in(&ns)?;
                Some((NsIdentity::of(&ns, &sock)?, sock, ns))
            }
            Err(EngineError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let faults = self.faults;
        let owner = intent::this_process()?;
        let recorded_path = req.netns.path().display().to_string();
        let tx = self.store.write()?;
        let mut endpoint = match &target {
            Some((identity, _, _)) => recorded_in(&tx, *identity, &req.ifname)?,
            None => None,
        };
        // Not in the namespace the path names now: a record under that path
        // whose namespace is gone (deleted, maybe replaced by a namesake) is
        // stale, and detaching it only releases it.
        let mut stale = false;
        if endpoint.is_none() {
            endpoint = tx.endpoints(record.id)?.into_iter().find(|e| {
                e.netns == recorded_path && e.ifname == req.ifname && intent::is_stale(e)
            });
            stale = endpoint.is_some();
        }
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
        refuse_in_flight(&endpoint)?;
        let view = endpoint_view(&tx, &record.spec.name.to_string(), &endpoint)?;
        let addresses: Vec<std::net::IpAddr> = view.addresses.iter().map(|a| a.addr()).collect();
        let parent = (&self.host, record.spec.parent.as_str());
        let (Some((_, mut sock, ns)), false) = (target, stale) else {
            // DHCP: released through the parent on the endpoint's behalf.
            crate::dhcp::release(&tx, None, parent, &req.network, &endpoint)?;
            unroute_from_shim(&self.host, &tx, record.id, &addresses)?;
            tx.delete_endpoint(endpoint.id)?;
            let batch = fleet_release(&tx, &record, &endpoint, &addresses)?;
            faults.check(Step::StoreCommit)?;
            tx.commit()?;
            if let Some(batch) = batch {
                self.write_fleet_batch(record.id, batch);
            }
            return Ok(view);
        };

        // The intent, then the link (no way back from there: the detach is
        // finished whatever comes, stop signals included), then the release.
        let _shield = Shield::raise()?;
        // DHCP: RELEASE from the endpoint's own address, while it has it.
        crate::dhcp::release(&tx, Some(&ns), parent, &req.network, &endpoint)?;
        tx.set_endpoint_state(endpoint.id, EndpointState::Detaching, Some(owner))?;
        tx.commit()?;
        let removed = remove_ours(
            &mut sock,
            req.ifname.as_str(),
            record.spec.driver.kind(),
            endpoint.mac,
            faults,
        );
        let tx = self.store.write()?;
        if let Err(e) = removed {
            // Nothing was deleted: the endpoint is attached as before.
            tx.set_endpoint_state(endpoint.id, EndpointState::Attached, None)?;
            tx.commit()?;
            return Err(e);
        }
        unroute_from_shim(&self.host, &tx, record.id, &addresses)?;
        finish_detach(&tx, &endpoint)?;
        let batch = fleet_release(&tx, &record, &endpoint, &addresses)?;
        faults.check(Step::StoreCommit)?;
        tx.commit()?;
        if let Some(batch) = batch {
            self.write_fleet_batch(record.id, batch);
        }
        Ok(view)
    }

    /// Endpoints of one network, or of all; those whose namespace is gone
    /// are marked stale.
    pub fn endpoints(&mut self, network: Option<&str>) -> Result<Vec<EndpointView>> {
        let networks = match network {
            Some(name) => vec![self.network_record(name)?],
            None => self.store.read()?.list_networks()?,
        };
        let tx = self.store.read()?;
        let mut out = Vec::new();
        for net in networks {
            for ep in tx.endpoints(net.id)? {
                let mut view = endpoint_view(&tx, net.spec.name.as_str(), &ep)?;
                if ep.state == EndpointState::Attached && intent::is_stale(&ep) {
                    view.state = "stale";
                }
                out.push(view);
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
        let mut target = RouteSocket::open_in(&ns)?;
        let identity = NsIdentity::of(&ns, &target)?;
        let tx = self.store.write()?;
        let ep = recorded_in(&tx, identity, ifname)?
            .filter(|e| e.network_id == record.id && e.state == EndpointState::Attached)
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

/// The last step of a detach, once the link is gone: the row dropped with
/// its leases.
pub(crate) fn finish_detach(tx: &WriteTx<'_>, endpoint: &EndpointRecord) -> Result<()> {
    tx.delete_endpoint(endpoint.id)?;
    Ok(())
}

/// Fleet pool: notes, in the detach's transaction, that the endpoint's etcd
/// records become this host's spares again; the batch to write once it is
/// committed when it brought the notes to a multiple of 16 (see
/// `nicslice_store::fleet`).
fn fleet_release(
    tx: &nicslice_store::WriteTx<'_>,
    record: &nicslice_store::NetworkRecord,
    endpoint: &EndpointRecord,
    addresses: &[std::net::IpAddr],
) -> Result<Option<nicslice_store::fleet::PendingClaim>> {
    if !tx.fleet_release(record, endpoint, addresses)? {
        return Ok(None);
    }
    Ok(tx.fleet_batch(record.id)?)
}
