//! attach: give a namespace an interface on a network. Checks everything it
//! can before touching the kernel; then records the intent (the endpoint in
//! state "attaching", its leases and its MAC, committed), makes the link and
//! marks the endpoint attached. Any failure, or SIGINT/SIGTERM/SIGHUP at a
//! step boundary, undoes every step and the intent; a command killed outright
//! leaves the intent for the next one to undo (see `intent`).

use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_kernel::signals::Shield;
use nicslice_kernel::{Netns, NetnsTarget, tap};
use nicslice_model::{
    IfName, LinkMode, MacAddr, MacvlanMode, NetworkSpec, RouteRequest, ValidNetwork, rules,
};
use nicslice_store::{
    EndpointId, EndpointState, LeaseRecord, NetworkId, NewEndpoint, StoreError, StoreRead, WriteTx,
};
use serde::{Deserialize, Serialize};

use crate::endpoint::{
    self, AddressPlan, ChildSpec, EndpointPlan, Place, Policy, RouteSpec, plan_routes,
};
use crate::error::{EngineError, Result};
use crate::fault::Step;
use crate::intent::{self, NsIdentity};
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
    /// DHCP leases the agent lost, and why (`dhcp::renew`): the endpoint
    /// keeps its link without their addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dhcp_lost: Vec<String>,
    /// Those leases asked for again (`dhcp::reacquire`), one per family.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dhcp_retry: Vec<crate::dhcp::DhcpRetry>,
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

/// Refuses as a target the namespace nicslice runs in and the host
/// namespace: a link there would sit beside the parents, and a path like
/// `/proc/self/ns/net` means nothing to any other process.
fn refuse_own_namespace(target: &NetnsTarget, ns: &Netns, host: &Netns) -> Result<()> {
    let own = Netns::current()?;
    let why = if ns.id() == own.id() {
        "the namespace nicslice itself runs in"
    } else if ns.id() == host.id() {
        "the host namespace, where the parents are (--host-netns)"
    } else {
        return Ok(());
    };
    Err(EngineError::Invalid(format!(
        "{target} is {why}; name a container's or another namespace as the target"
    )))
}

/// A MAC for a new macvlan child, chosen before the link is made so the
/// intent can name it: the link of a killed attach is recognised by it.
/// Passthru children take their parent's MAC whatever is asked.
fn child_mac(spec: &NetworkSpec, asked: Option<MacAddr>) -> Result<Option<MacAddr>> {
    Ok(match spec.mode {
        LinkMode::Macvlan(MacvlanMode::Passthru) | LinkMode::Ipvlan(_) => asked,
        LinkMode::Macvlan(_) => match asked {
            Some(mac) => Some(mac),
            None => Some(MacAddr::local_from_random(nicslice_kernel::identity::random_bytes()?)),
        },
    })
}

/// Drops a record that holds `ifname` in a namespace with this inode but
/// another cookie: that namespace is gone (the kernel reuses an inode only
/// then), and the record would refuse the new namespace its `eth0`.
fn release_dead_namesake(tx: &WriteTx<'_>, identity: NsIdentity, ifname: &IfName) -> Result<()> {
    if let Some(old) = tx.endpoint_by_netns_ifname(identity.id, ifname)?
        && !identity.matches(&old)
    {
        tracing::info!(
            netns = %old.netns,
            %ifname,
            "releasing the record of a namespace that is gone (its inode is reused)"
        );
        tx.delete_endpoint(old.id)?;
    }
    Ok(())
}

/// Refuses a second child on a passthru parent and a MAC another endpoint on
/// the same parent already has.
fn check_parent_room(tx: &WriteTx<'_>, spec: &NetworkSpec, mac: Option<MacAddr>) -> Result<()> {
    if let Some(mac) = mac
        && let Some((ep, network)) = tx.endpoint_with_mac_on_parent(&spec.parent, mac)?
    {
        return Err(EngineError::Invalid(format!(
            "--mac {mac} is already used by {} in {} (network {network}); choose another",
            ep.ifname, ep.netns
        )));
    }
    let on_parent = tx.endpoint_count_on_parent(&spec.parent)?;
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
        let mut first_error: Option<StoreError> = None;
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
        self.attach_with(req, true)
    }

    /// `may_reclaim`: a fleet pool that ran out may take back what dead
    /// hosts held (once; the attach is then made again).
    fn attach_with(&mut self, req: AttachRequest, may_reclaim: bool) -> Result<EndpointView> {
        let record = self.network_record(&req.network)?;
        let valid = record.validate()?;
        let spec = valid.spec().clone();

        // Requests that make no sense for this network.
        let is_dhcp = spec.ipam.is_dhcp();
        if is_dhcp && !req.ips.is_empty() {
            return Err(EngineError::Invalid(format!(
                "--ip does not apply to network {}: its addresses come from DHCP",
                spec.name
            )));
        }
        if spec.ipam == nicslice_model::Ipam::Etcd && !req.ips.is_empty() {
            return Err(EngineError::Invalid(format!(
                "--ip does not apply to network {}: its addresses come from the fleet pool on etcd",
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
        refuse_own_namespace(&req.netns, &target_ns, &self.host)?;
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
        // Refused before the intent is recorded (the kernel's EEXIST would
        // say the same, after it).
        if place.target.index_of(req.ifname.as_str())?.is_some() {
            return Err(EngineError::Invalid(format!(
                "an interface named {} already exists in {}; choose another --ifname",
                req.ifname,
                place.target_ns.label()
            )));
        }
        let identity = NsIdentity::of(&place.target_ns, &place.target)?;
        let mac = child_mac(&spec, req.mac)?;
        let owner = intent::this_process()?;
        let faults = self.faults;
        let answered = crate::probe::state_db::Answered::default(); // issue 14
        // DHCP: a lease granted but not committed is given back on failure.
        let mut dhcp_held: Option<crate::dhcp::Held> = None;
        let mut dhcp6_held: Option<crate::dhcp::v6::Held6> = None;
        // Fleet pool: etcd's record of the address, written once the intent
        // is committed, beside the kernel work (`fleet_claim`).
        let mut fleet_claim: Option<nicslice_store::fleet::PendingClaim> = None;

        // The intent, committed before the kernel is touched. Stop signals
        // wait from here until the work is whole (done or undone); the wait
        // for the lock above stays interruptible.
        let who = crate::dhcp::Who {
            network: spec.name.as_str(),
            netns: &req.netns,
            ifname: req.ifname.as_str(),
        };
        let tx = self.store.write()?;
        let shield = Shield::raise()?;
        let (endpoint_id, mut leases, dhcp_claim) = {
            check_parent_room(&tx, &spec, req.mac)?;
            release_dead_namesake(&tx, identity, &req.ifname)?;
            // DHCP: the client identifier is claimed by the intent; the
            // exchange runs outside the lock (see dhcp::realize).
            let dhcp_claim =
                spec.ipam.dhcp4().then(|| crate::dhcp::claim(&tx, &who, &req.dhcp)).transpose()?;
            let intent_details = dhcp_claim
                .as_ref()
                .map_or(serde_json::Value::Null, crate::dhcp::Claim::intent_details);
            let endpoint_id = tx.insert_endpoint(
                record.id,
                &NewEndpoint {
                    netns: req.netns.path().display().to_string(),
                    netns_id: identity.id,
                    netns_cookie: Some(identity.cookie),
                    ifname: req.ifname.clone(),
                    mac,
                    details: intent_details,
                    state: EndpointState::Attaching,
                    owner: Some(owner),
                },
            )?;
            faults.check(Step::Allocate)?;
            if let Some(probe) = spec.probe {
                crate::probe::state_db::release_cooled(&tx, record.id, probe)?; // issue 14
            }
            let leases = if spec.ipam == nicslice_model::Ipam::Etcd {
                // The fleet pool: one subnet, an address of this host's blocks.
                let (lease, claim) = match tx.fleet_allocate(record.id, endpoint_id) {
                    Err(StoreError::FleetFull(full)) if may_reclaim => {
                        // Nothing of this try is kept: the store rolls back.
                        drop(tx);
                        drop(shield);
                        self.reclaim_fleet(&record, &mut place, &parent, &full)?;
                        return self.attach_with(req.clone(), false);
                    }
                    other => other?,
                };
                fleet_claim = claim;
                vec![lease]
            } else {
                match allocate_addresses(&tx, &valid, record.id, endpoint_id, &req.ips) {
                    Err(EngineError::Store(e)) if is_exhausted(&e) => {
                        // Room held by namespaces that are gone is taken back.
                        if release_stale(&tx, record.id)? == 0 {
                            return Err(e.into());
                        }
                        // From scratch: a family already leased before the other failed.
                        tx.release_endpoint_leases(endpoint_id)?;
                        allocate_addresses(&tx, &valid, record.id, endpoint_id, &req.ips)?
                    }
                    other => other?,
                }
            };
            tx.commit()?;
            (endpoint_id, leases, dhcp_claim)
        };
        let mut addresses: Vec<IpNet> = leases.iter().map(LeaseRecord::address).collect();
        // The fleet records noted so far, written beside the kernel work.
        let mut claiming =
            fleet_claim.and_then(|c| c.ip().map(|ip| (ip, std::thread::spawn(move || c.record()))));

        let mut undo = UndoLog::default();
        let result = (|| -> Result<EndpointView> {
            interrupted(&shield)?;
            let child = ChildSpec {
                driver: spec.driver,
                mode: spec.mode,
                flags: spec.flags,
                ipvlan_flag: spec.ipvlan_flag,
                mtu: spec.mtu,
                mac,
                bcqueuelen: spec.bcqueuelen,
                bclim: spec.bclim,
                source_macs: req.source_macs.clone(),
            };
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
            let extra: Vec<RouteSpec> = req.routes.iter().map(RouteSpec::from).collect();
            let mut plan = EndpointPlan {
                link: child.link(req.ifname.clone(), &parent),
                parent: parent.clone(),
                addresses: addresses.clone(),
                routes: plan_routes(&planned, &extra, req.default_route, child.is_noarp()),
            };
            // DHCPv6 (crate::dhcp::v6): who the endpoint is, from the store
            // before the exchange.
            let lookup6 = match spec.ipam.dhcp6() {
                true => {
                    let state = self.store.path().to_path_buf();
                    let client_id = req.dhcp.client_id.as_deref();
                    Some(crate::dhcp::v6::identify(&who, client_id, &state, &self.store.read()?)?)
                }
                false => None,
            };
            // One statement: no snapshot to share, so no transaction to
            // begin and end around it.
            let shim = self.store.shim(record.id)?;
            // issue 14: with conflict probing, every address is claimed on
            // the wire first; an answered one is quarantined and replaced in
            // `leases` (kept by the intent, committed before going on).
            let realized = if let Some(claim) = &dhcp_claim {
                // --- DHCP (crate::dhcp): the address comes from the server ---
                let store = &mut self.store;
                // Committed once granted, with the link's MAC: should this
                // process die now, the intent says what to release.
                let record_grant = |held: &crate::dhcp::Held| -> Result<()> {
                    let tx = store.write()?;
                    tx.update_endpoint(endpoint_id, Some(held.mac()), &claim.intent_details())?;
                    held.record(&tx, endpoint_id)?;
                    Ok(tx.commit()?)
                };
                let (realized, held) = crate::dhcp::realize(
                    &plan,
                    claim,
                    &who,
                    &req.dhcp,
                    &extra,
                    req.default_route,
                    child.is_noarp(),
                    &mut place,
                    faults,
                    &mut undo,
                    record_grant,
                )?;
                addresses.push(IpNet::V4(held.granted.address));
                dhcp_held = Some(held);
                realized
                // --- end DHCP ---
            } else if spec.ipam.dhcp6() {
                // DHCPv6 only: the link now, its address below.
                let routes = plan_routes(&[], &extra, false, child.is_noarp());
                let link =
                    crate::dhcp::v6::make_link(&plan, &routes, &mut place, faults, &mut undo)?;
                endpoint::Realized { link, routes }
            } else {
                match spec.probe {
                    Some(spec) => {
                        let tx = self.store.write()?;
                        let probing = crate::probe::Probing { spec, parent_ns: &self.host };
                        let mut claim = crate::probe::state_db::StateDbClaim {
                            tx: &tx,
                            network: record.id,
                            endpoint: endpoint_id,
                            leases: &mut leases,
                            fixed: &req.ips,
                            answered: &answered,
                            fleet: record.spec.ipam == nicslice_model::Ipam::Etcd,
                        };
                        let realized = crate::probe::realize_claiming(
                            &mut plan,
                            probing,
                            &mut claim,
                            Policy::CLI,
                            &mut place,
                            faults,
                            &mut undo,
                        )?;
                        tx.commit()?;
                        realized
                    }
                    None => endpoint::realize(&plan, Policy::CLI, &mut place, faults, &mut undo)?,
                }
            };
            if let Some(lookup6) = &lookup6 {
                let held = crate::dhcp::v6::realize(
                    &realized.link,
                    lookup6,
                    &req.dhcp,
                    spec.probe,
                    &mut place,
                    &mut undo,
                );
                let held = dhcp6_held.insert(held?);
                held.write_resolv_conf(&who, dhcp_held.as_ref().and_then(|h| h.resolv_conf()))?;
                let tx = self.store.write()?;
                held.record(&tx, endpoint_id)?;
                tx.commit()?;
                addresses.push(held.address());
            }
            if !is_dhcp {
                addresses = plan.addresses.clone();
            }
            if let Some(shim) = shim {
                let ips: Vec<IpAddr> = addresses.iter().map(IpNet::addr).collect();
                crate::shim::route_endpoint(&mut place.host, &shim, &ips, &mut undo)?;
            }
            interrupted(&shield)?;
            let link = realized.link;
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
                dhcp_lost: Vec::new(),
                dhcp_retry: Vec::new(),
            };
            let details_json = serde_json::to_value(&details).unwrap_or(serde_json::Value::Null);
            let recorded = match claiming.take() {
                Some((ip, claim)) => self.finish_fleet_claim(record.id, ip, claim)?,
                None => None,
            };
            let tx = self.store.write()?;
            if let Some(recorded) = &recorded {
                tx.fleet_recorded(recorded)?;
            }
            tx.mark_attached(endpoint_id, link.mac, &details_json)?;
            if let Some(held) = &dhcp_held {
                // Again, now with the resolv.conf it wrote.
                held.record(&tx, endpoint_id)?;
            }
            let (dhcp, dhcp6) = match is_dhcp {
                true => {
                    let views = crate::dhcp::view_of(&tx, endpoint_id)?;
                    (views.v4, views.v6)
                }
                false => (None, None),
            };
            faults.check(Step::StoreCommit)?;
            tx.commit()?;
            Ok(EndpointView {
                dhcp,
                dhcp6,
                network: spec.name.to_string(),
                netns: req.netns.path().display().to_string(),
                ifname: req.ifname.to_string(),
                mac: link.mac,
                addresses,
                gateways: details.gateways,
                tap_device,
                source_macs: req.source_macs.clone(),
                routes: details.routes,
                state: EndpointState::Attached.as_str(),
                dhcp_lost: Vec::new(),
                dhcp_retry: Vec::new(),
            })
        })();
        match result {
            Ok(view) => {
                undo.commit();
                Ok(view)
            }
            Err(error) => {
                if let Some((_, claim)) = claiming.take() {
                    // Its record, if made, is taken over by a later attach here.
                    let _ = claim.join();
                }
                if let Some(held) = &dhcp_held {
                    held.give_back(&place.target_ns);
                }
                if let Some(held) = &dhcp6_held {
                    held.give_back(&place.target_ns);
                }
                let error = place.abort(undo, error);
                // The kernel is back as it was: the intent goes with its
                // leases. Should that fail, the intent stays, and the next
                // command ends it once this process is gone.
                let forgotten = self.store.write().and_then(|tx| {
                    // A DHCP lease committed at its grant was given back above.
                    tx.release_dhcp_leases(endpoint_id)?;
                    tx.delete_endpoint(endpoint_id)?;
                    tx.commit()
                });
                // issue 14: what answered on the wire stays quarantined (once
                // the intent's leases, which held those addresses, are gone).
                crate::probe::state_db::keep_after_failure(&mut self.store, record.id, &answered);
                match forgotten {
                    Ok(()) => Err(error),
                    Err(e) => Err(EngineError::UndoFailed {
                        error: Box::new(error),
                        undo: format!("the record of the attach stays for the next command: {e}"),
                    }),
                }
            }
        }
    }
}

impl Engine {
    /// Waits for etcd's records of fleet addresses (`claim`, this attach's
    /// `ip` first). An address etcd records for another host is forgotten
    /// here, and the attach fails if it is its own; etcd not answering
    /// costs a warning only: the address is this host's spare, and its
    /// record is written by a later command.
    fn finish_fleet_claim(
        &mut self,
        network: nicslice_store::NetworkId,
        ip: IpAddr,
        claim: std::thread::JoinHandle<
            std::result::Result<nicslice_store::fleet::Recorded, StoreError>,
        >,
    ) -> Result<Option<nicslice_store::fleet::Recorded>> {
        let Ok(recorded) = claim.join() else { return Ok(None) };
        let recorded = match recorded {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::warn!(%ip, "etcd did not record the address's owner: {e}");
                return Ok(None);
            }
        };
        if !recorded.foreign.is_empty() {
            let tx = self.store.write()?;
            for other in &recorded.foreign {
                tracing::warn!(ip = %other, "etcd records this address for another host: forgotten here");
                tx.fleet_forget(network, *other)?;
            }
            tx.commit()?;
        }
        if recorded.foreign.contains(&ip) {
            return Err(EngineError::Invalid(format!(
                "{ip} is recorded in etcd for another host; try again (this host no longer offers it)"
            )));
        }
        Ok(Some(recorded))
    }
}

/// Fails with the stop signal that came, if one did, taking it: the caller
/// undoes, and the front end exits saying so.
fn interrupted(shield: &Shield) -> Result<()> {
    match shield.take() {
        Some(signal) => Err(EngineError::Interrupted(signal as i32)),
        None => Ok(()),
    }
}

/// Whether `e` says a pool has no free address left.
fn is_exhausted(e: &StoreError) -> bool {
    matches!(e, StoreError::Model(nicslice_model::ModelError::PoolExhausted { .. }))
}

/// Releases the endpoints of `network` whose namespace is gone; returns how many.
fn release_stale(tx: &WriteTx<'_>, network: NetworkId) -> Result<usize> {
    let mut released = 0;
    for ep in tx.endpoints(network)? {
        if ep.state == EndpointState::Attached && intent::is_stale(&ep) {
            tracing::info!(netns = %ep.netns, ifname = %ep.ifname, "releasing the leases of a namespace that is gone");
            tx.delete_endpoint(ep.id)?;
            released += 1;
        }
    }
    Ok(released)
}
