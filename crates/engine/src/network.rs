//! Networks: create (checks against the parent and the other networks on it,
//! optional promiscuous mode), remove (refused while endpoints are attached
//! unless forced; restores promiscuous mode), list and inspect.

use nicslice_kernel::signals::Shield;
use nicslice_kernel::{Link, RouteSocket};
use nicslice_model::{NetworkSpec, ValidNetwork, rules};
use nicslice_store::{NetworkRecord, StoreRead, WriteTx};

use crate::detach_many::Detached;
use crate::error::{EngineError, Result};
use crate::fault::Step;
use crate::parent::{self, ParentRequest};
use crate::undo::{Sockets, UndoAction, UndoLog};
use crate::views::{NetworkDetail, NetworkView, ParentState, SubnetView};
use crate::{EndpointView, Engine};

/// A shim forgotten with its network: its name and its link's index, the
/// link deleted once the removal has committed.
type ForgottenShim = (String, Option<u32>);

/// Checks that `parent` can carry macvlan children, before anything changes.
pub(crate) fn check_parent(
    sock: &mut RouteSocket,
    host_label: &str,
    spec: &NetworkSpec,
) -> Result<Link> {
    let parent = sock.link_by_name(spec.parent.as_str())?.ok_or_else(|| {
        EngineError::NotFound(format!(
            "parent {} does not exist in {host_label}; `ip link` lists the interfaces (or pass --host-netns)",
            spec.parent
        ))
    })?;
    if let Some(reason) = crate::refuse::parent_refusal(sock, &parent, spec.driver)? {
        return Err(EngineError::Invalid(reason));
    }
    if let Some(mtu) = spec.mtu {
        rules::check_mtu(mtu, &spec.parent, parent.mtu)?;
    }
    Ok(parent)
}

/// Puts `parent` into promiscuous mode for a network that asks for it;
/// returns the state to restore when the network goes (or stops asking).
pub(crate) fn take_promisc(
    host: &mut RouteSocket,
    parent: &Link,
    undo: &mut UndoLog,
    faults: crate::Faults,
) -> Result<Option<bool>> {
    if !parent.promisc_flag {
        faults.check(Step::SetPromisc)?;
        host.set_promisc(parent.index, true)?;
        undo.push(UndoAction::SetPromisc { index: parent.index, on: false });
    }
    Ok(Some(parent.promisc_flag))
}

/// What a network that goes (or stops asking for promiscuous mode) owes its
/// parent, inside `tx`: another network on the parent that still wants the
/// mode inherits the duty of restoring the state nicslice found; with none,
/// that state is restored now.
pub(crate) fn give_back_promisc(
    tx: &WriteTx<'_>,
    host: &mut RouteSocket,
    record: &NetworkRecord,
    undo: &mut UndoLog,
    faults: crate::Faults,
) -> Result<()> {
    let siblings = tx.networks_on_parent(&record.spec.parent)?;
    let heir = siblings.iter().find(|r| r.id != record.id && r.spec.promisc);
    match (record.promisc_prev, heir) {
        (Some(prev), Some(heir)) => {
            tx.set_promisc_prev(heir.id, Some(prev))?;
        }
        (Some(false), None) => {
            if let Some(parent) = host.link_by_name(record.spec.parent.as_str())? {
                faults.check(Step::RestorePromisc)?;
                host.set_promisc(parent.index, false)?;
                undo.push(UndoAction::SetPromisc { index: parent.index, on: true });
            }
        }
        _ => {}
    }
    Ok(())
}

impl Engine {
    /// Creates a network; `parent` says whether nicslice must make the parent
    /// (an 802.1Q sub-interface or a dummy) and own it.
    pub fn create_network(
        &mut self,
        spec: NetworkSpec,
        parent: ParentRequest,
    ) -> Result<NetworkView> {
        let valid: ValidNetwork = spec.validate()?;
        let spec = valid.spec().clone();
        // Refused here, not at every attach: kernels before 6.4 drop the
        // broadcast cutoff without an error.
        if spec.bclim.is_some() && !nicslice_kernel::macvlan::broadcast_cutoff_supported()? {
            return Err(EngineError::Invalid(crate::endpoint::NO_BCLIM.into()));
        }
        let mut host = self.host_socket()?;
        let faults = self.faults;
        let mut undo = UndoLog::default();
        let host_label = self.host.label().to_string();
        let result = (|| -> Result<NetworkView> {
            let tx = self.store.write()?;
            if tx.network_by_name(&spec.name)?.is_some() {
                return Err(EngineError::Invalid(format!(
                    "network {} already exists; choose another name",
                    spec.name
                )));
            }
            parent::provision(&mut host, &tx, &spec.parent, &parent, &mut undo, faults)?;
            let parent = check_parent(&mut host, &host_label, &spec)?;
            let siblings: Vec<NetworkSpec> =
                tx.networks_on_parent(&spec.parent)?.into_iter().map(|r| r.spec).collect();
            rules::check_parent_sharing(&spec, &siblings)?;
            let promisc_prev = if spec.promisc {
                take_promisc(&mut host, &parent, &mut undo, faults)?
            } else {
                None
            };
            let id = tx.insert_network(&valid, promisc_prev)?;
            // Which link the parent is: `doctor` tells it recreated or
            // renamed by its index and MAC.
            tx.set_parent_link(id, parent.index, parent.mac)?;
            if spec.fleet.is_some() {
                // The fleet pool: refused now if etcd does not answer.
                tx.fleet_join(id)?;
            }
            faults.check(Step::StoreCommit)?;
            tx.commit()?;
            Ok(network_view(&spec, 0))
        })();
        match result {
            Ok(view) => {
                undo.commit();
                Ok(view)
            }
            Err(error) => Err(undo.abort(error, &mut Sockets { host: &mut host, target: None })),
        }
    }

    /// Removes a network; with `force`, detaches its endpoints first.
    pub fn remove_network(&mut self, name: &str, force: bool) -> Result<Vec<EndpointView>> {
        let record = self.network_record(name)?;
        let endpoints = self.store.read()?.endpoints(record.id)?;
        if !endpoints.is_empty() && !force {
            return Err(EngineError::Invalid(format!(
                "network {name} still has {} endpoint(s) attached ({}); detach them or use --force",
                endpoints.len(),
                endpoints
                    .iter()
                    .map(|e| format!("{} in {}", e.ifname, e.netns))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // A fleet network's records in etcd, given back once it is gone here.
        let departure = nicslice_store::fleet::departure(&self.store, &record)?;
        // From here the work is finished or undone before a stop signal acts.
        let _shield = Shield::raise()?;
        let detached = if endpoints.is_empty() {
            Detached { views: Vec::new(), records: Vec::new() }
        } else {
            self.delete_links_of(&record)?
        };

        let faults = self.faults;
        let mut host = self.host_socket()?;
        let mut undo = UndoLog::default();
        let result = (|| -> Result<(Option<String>, Option<ForgottenShim>)> {
            let tx = self.store.write()?;
            // The endpoints' removal and the network's, in one transaction
            // (`delete_network_with_endpoints` below). Should it fail, the
            // endpoints stay "detaching" in this process's name, and the
            // next command finishes them.
            let still_used =
                tx.networks_on_parent(&record.spec.parent)?.iter().any(|r| r.id != record.id);
            give_back_promisc(&tx, &mut host, &record, &mut undo, faults)?;
            let shim = match tx.shim(record.id)? {
                Some(shim) => {
                    let index = crate::shim::forget(&tx, &mut host, record.id, &shim, faults)?;
                    Some((shim.name, index))
                }
                None => None,
            };
            let gone: Vec<_> = detached.records.iter().map(|ep| ep.id).collect();
            tx.delete_network_with_endpoints(record.id, &gone)?;
            let parent_to_delete = parent::forget(&tx, &record.spec.parent, still_used)?;
            faults.check(Step::StoreCommit)?;
            tx.commit()?;
            Ok((parent_to_delete, shim))
        })();
        match result {
            Ok((parent_to_delete, shim)) => {
                undo.commit();
                // Last, once nothing can be undone any more: a shim or parent
                // deleted before a failing commit could not be brought back.
                if let Some((name, index)) = shim {
                    crate::shim::delete_link(&mut host, &name, index)?;
                }
                if let Some(name) = parent_to_delete {
                    parent::delete(&mut host, &name, faults)?;
                }
                if let Some(Err(e)) = departure.map(|d| d.leave()) {
                    tracing::warn!(
                        "network {name}: this host's addresses stay recorded in its name in etcd: {e}"
                    );
                }
                Ok(detached.views)
            }
            Err(error) => Err(undo.abort(error, &mut Sockets { host: &mut host, target: None })),
        }
    }

    pub fn list_networks(&mut self) -> Result<Vec<NetworkView>> {
        let tx = self.store.read()?;
        let mut out = Vec::new();
        for record in tx.list_networks()? {
            let count = tx.endpoints(record.id)?.len();
            out.push(network_view(&record.spec, count));
        }
        Ok(out)
    }

    pub fn inspect_network(&mut self, name: &str) -> Result<NetworkDetail> {
        let record = self.network_record(name)?;
        let endpoint_list = self.endpoints(Some(name))?;
        let quarantined = self.store.read()?.quarantined(record.id)?;
        let mut host = self.host_socket()?;
        let parent = host.link_by_name(record.spec.parent.as_str())?;
        let parent_state = ParentState {
            exists: parent.is_some(),
            up: parent.as_ref().is_some_and(|p| p.up),
            lower_up: parent.as_ref().is_some_and(|p| p.lower_up),
            promiscuity: parent.as_ref().map_or(0, |p| p.promiscuity),
            mtu: parent.as_ref().map_or(0, |p| p.mtu),
            mac: parent.as_ref().and_then(|p| p.mac),
        };
        // The fleet pool as etcd holds it; etcd not answering is shown, not fatal.
        let fleet = record.spec.fleet.is_some().then(|| {
            nicslice_store::fleet::view(&mut self.store, &record).map_err(|e| e.to_string())
        });
        Ok(NetworkDetail {
            fleet,
            network: network_view(&record.spec, endpoint_list.len()),
            spec: record.spec,
            parent_state,
            endpoint_list,
            quarantined,
        })
    }
}

pub(crate) fn network_view(spec: &NetworkSpec, endpoints: usize) -> NetworkView {
    let subnets = match spec.clone().validate() {
        Ok(valid) => valid
            .subnets()
            .iter()
            .map(|s| SubnetView {
                subnet: s.subnet(),
                gateway: s.gateway(),
                ip_range: s.spec().ip_range,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    NetworkView {
        name: spec.name.to_string(),
        driver: spec.driver.to_string(),
        parent: spec.parent.to_string(),
        mode: spec.mode.to_string(),
        flags: if spec.driver.is_ipvlan() {
            vec![spec.ipvlan_flag.as_str()]
        } else {
            spec.flags.names()
        },
        mtu: spec.mtu,
        promisc: spec.promisc,
        subnets,
        ipam: spec.ipam.to_string(),
        endpoints,
    }
}
