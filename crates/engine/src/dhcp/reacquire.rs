//! Starting over after a lost lease (RFC 2131 4.4.5, RFC 8415 18.2.5): an
//! endpoint whose lease the agent lost (expired, refused with no new one,
//! or no longer bound) is back in INIT, and the agent asks again, with the
//! same client identifier (DHCPv6: the same DUID and IAID) and the address
//! it held, so a server tends to hand the same address back.
//!
//! The state lives on the endpoint's record (`dhcp_retry` beside
//! `dhcp_lost`): one entry per family asked for, with the time of the next
//! try and the wait after it, which doubles after each try that found no
//! server, from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`]. An agent killed and
//! started again carries on from it. A grant goes on the link through the
//! very code attach runs (`dhcp::apply_grant`, `v6::realize`): the address
//! with the lease's lifetime, the default route and the user's routes, the
//! announcement, the resolv.conf; with conflict probing a DHCPv6 address
//! goes through DAD and an answered one is DECLINEd, as at attach.
//!
//! Order, as attach's: a DHCPv4 grant is recorded (held by the endpoint,
//! the retry entry kept) before the kernel is touched, so a detach
//! meanwhile gives it back (DHCPv6's `v6::realize` asks and puts on in one
//! step: its grant is recorded once on); then the lease with its
//! resolv.conf, the entry cleared and the `dhcp_lost` line gone, in one
//! transaction. Killed between, the next agent asks again under the same
//! identifier and gets the same lease; what the try left on the link (an
//! address carrying the lease's lifetime) is taken off first.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use nicslice_kernel::{DhcpSocket, Netns, NetnsTarget};
use nicslice_model::{IpvlanMode, LinkMode, NetworkSpec};
use nicslice_store::{DhcpLeaseRecord, EndpointId, EndpointRecord, EndpointState, StoreRead};
use serde::{Deserialize, Serialize};

use super::client::Exchange;
use super::renew::RenewReport;
use super::{
    DhcpRequest, LeaseDetails, Who, apply_grant, grant_routes, identity, lease_record, resolv,
    unix_now,
};
use crate::Engine;
use crate::attach::EndpointDetails;
use crate::endpoint::{Place, RouteSpec};
use crate::error::{EngineError, Result};
use crate::undo::UndoLog;

/// The wait after the first try that found no server, in seconds.
pub const FIRST_BACKOFF: u32 = 4;
/// The longest wait between two tries, in seconds.
pub const MAX_BACKOFF: u32 = 300;
/// The key of the endpoint record's details holding the entries.
const KEY: &str = "dhcp_retry";

/// A lost lease of one family being asked for again, as the endpoint's
/// record keeps it (and `endpoint ls` shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpRetry {
    /// 4 or 6.
    pub family: u8,
    /// The client identifier (DHCPv6: IAID then DUID), hex bytes joined by
    /// colons as servers print it.
    pub client_id: String,
    /// Unix seconds of the next try.
    pub next_at: i64,
    /// How long to wait after that try, should it find no server either.
    pub backoff_secs: u32,
}

impl DhcpRetry {
    /// The entry after a try that found no lease: the next try after this
    /// one's wait, and a longer wait after that.
    pub(super) fn postponed(self) -> DhcpRetry {
        let wait = self.backoff_secs;
        DhcpRetry {
            next_at: unix_now() + i64::from(wait),
            backoff_secs: next_backoff(wait),
            ..self
        }
    }
}

/// The entries of an endpoint record's `details`.
pub(crate) fn retries_of(details: &serde_json::Value) -> Vec<DhcpRetry> {
    details.get(KEY).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
}

/// Sets `family`'s entry in `details` (or removes it: `None`).
fn set_retry(details: &mut serde_json::Value, family: u8, entry: Option<DhcpRetry>) {
    let mut list = retries_of(details);
    list.retain(|r| r.family != family);
    list.extend(entry);
    if let Some(map) = details.as_object_mut() {
        match list.is_empty() {
            true => map.remove(KEY),
            false => map.insert(KEY.into(), serde_json::to_value(list).unwrap_or_default()),
        };
    }
}

/// The entry of a lease lost at `now`, first tried at `first_at`.
pub(super) fn entry(lease: &DhcpLeaseRecord, first_at: i64) -> DhcpRetry {
    DhcpRetry {
        family: lease.family,
        client_id: identity::to_hex(&lease.client_id),
        next_at: first_at,
        backoff_secs: FIRST_BACKOFF,
    }
}

/// `details` with the lost lease of `lease` noted (`dhcp_lost`, why) and
/// asked for again from `retry_at` (`None`: not asked for again).
pub(super) fn note_lost(
    details: &mut serde_json::Value,
    lease: &DhcpLeaseRecord,
    why: &str,
    retry_at: Option<i64>,
) {
    let lost = format!("DHCPv{} lease of {} lost: {why}", lease.family, lease.address);
    if let Some(map) = details.as_object_mut() {
        let list = map.entry("dhcp_lost").or_insert_with(|| serde_json::json!([]));
        if let Some(list) = list.as_array_mut() {
            // One line per family: the latest loss says why.
            let prefix = format!("DHCPv{} ", lease.family);
            list.retain(|l| !l.as_str().is_some_and(|l| l.starts_with(&prefix)));
            list.push(lost.into());
        }
    }
    if let Some(at) = retry_at {
        set_retry(details, lease.family, Some(entry(lease, at)));
    }
}

/// `details` once `family` has a lease again: its entry and its lost line
/// gone, the gateways of that family those of `routes`.
fn note_found(details: &mut serde_json::Value, family: u8, gateways: &[IpAddr]) {
    set_retry(details, family, None);
    let Some(map) = details.as_object_mut() else { return };
    let prefix = format!("DHCPv{family} ");
    if let Some(list) = map.get_mut("dhcp_lost").and_then(|l| l.as_array_mut()) {
        list.retain(|l| !l.as_str().is_some_and(|l| l.starts_with(&prefix)));
        if list.is_empty() {
            map.remove("dhcp_lost");
        }
    }
    if family == 4 {
        let mut kept: Vec<IpAddr> = map
            .get("gateways")
            .and_then(|g| serde_json::from_value::<Vec<IpAddr>>(g.clone()).ok())
            .unwrap_or_default();
        kept.retain(IpAddr::is_ipv6);
        kept.extend(gateways.iter().filter(|g| g.is_ipv4()));
        map.insert("gateways".into(), serde_json::to_value(kept).unwrap_or_default());
    }
}

/// The next wait after `backoff`: doubled, at most [`MAX_BACKOFF`].
fn next_backoff(backoff: u32) -> u32 {
    backoff.saturating_mul(2).clamp(FIRST_BACKOFF, MAX_BACKOFF)
}

/// The namespace of `ep`, if it is still the one recorded (inode and
/// cookie, as every command checks it: the kernel reuses a deleted
/// namespace's inode at once); `NotFound` when it is gone.
pub(super) fn open_recorded(ep: &EndpointRecord) -> Result<Netns> {
    crate::intent::open_recorded(ep)?
        .map(|(ns, _)| ns)
        .ok_or_else(|| EngineError::NotFound("its namespace is gone".into()))
}

/// An endpoint waiting for a lease, with its network.
struct Waiting {
    endpoint: EndpointRecord,
    spec: NetworkSpec,
}

impl Engine {
    /// Every attached endpoint with a lost lease asked for again, with its
    /// entries (due or not).
    fn waiting_for_leases(&mut self) -> Result<Vec<(Waiting, Vec<DhcpRetry>)>> {
        let read = self.store.read()?;
        let mut out = Vec::new();
        for network in read.list_networks()? {
            for endpoint in read.endpoints(network.id)? {
                let retries = retries_of(&endpoint.details);
                if endpoint.state == EndpointState::Attached && !retries.is_empty() {
                    out.push((Waiting { endpoint, spec: network.spec.clone() }, retries));
                }
            }
        }
        Ok(out)
    }

    /// The soonest next try of any endpoint, if one is waiting.
    pub(super) fn next_retry(&mut self) -> Result<Option<i64>> {
        let waiting = self.waiting_for_leases()?;
        Ok(waiting.iter().flat_map(|(_, r)| r.iter().map(|r| r.next_at)).min())
    }

    /// The pass's tries for endpoints whose lease was lost: each one due
    /// asks again; one that finds no server waits longer next time.
    pub(super) fn reacquire_lost(&mut self, timeout: Duration, report: &mut RenewReport) {
        let now = unix_now();
        let waiting = match self.waiting_for_leases() {
            Ok(w) => w,
            Err(e) => return report.failed.push(format!("endpoints waiting for a lease: {e}")),
        };
        for (waiting, retries) in waiting {
            for retry in retries.into_iter().filter(|r| r.next_at <= now) {
                let ep = &waiting.endpoint;
                let label = format!("{} in {}", ep.ifname, ep.netns);
                let v = retry.family;
                match self.reacquire(&waiting, retry.family, timeout) {
                    Ok(address) => report
                        .reacquired
                        .push(format!("{label}: DHCPv{v} lease of {address} again")),
                    Err(EngineError::NotFound(why)) => {
                        // Nothing to ask for: the endpoint is stale, and
                        // detach (or doctor) is what ends it.
                        let stop = self.write_retry(ep.id, v, |_| None);
                        let stop = stop.err().map_or(String::new(), |e| format!(" ({e})"));
                        report.lost.push(format!("{label}: {why}; no longer asking{stop}"));
                    }
                    Err(e) => {
                        let wait = retry.backoff_secs;
                        let later = retry.postponed();
                        let noted = self.write_retry(ep.id, v, |_| Some(later));
                        let noted = noted.err().map_or(String::new(), |e| format!(" ({e})"));
                        report.failed.push(format!(
                            "{label}: no new DHCPv{v} lease: {e}; asking again in {wait} s{noted}"
                        ));
                    }
                }
            }
        }
    }

    /// Changes `family`'s entry on the record of `endpoint` (if it still has
    /// one: a detach may have come first).
    fn write_retry(
        &mut self,
        endpoint: EndpointId,
        family: u8,
        change: impl FnOnce(DhcpRetry) -> Option<DhcpRetry>,
    ) -> Result<()> {
        let tx = self.store.write()?;
        let Some(ep) = tx.endpoint(endpoint)? else { return Ok(()) };
        let Some(now) = retries_of(&ep.details).into_iter().find(|r| r.family == family) else {
            return Ok(());
        };
        let mut details = ep.details.clone();
        set_retry(&mut details, family, change(now));
        tx.update_endpoint(ep.id, ep.mac, &details)?;
        tx.commit()?;
        Ok(())
    }

    /// Asks again for `family`'s lease of the endpoint and puts it on;
    /// returns its address. `NotFound` when its namespace is gone.
    fn reacquire(&mut self, waiting: &Waiting, family: u8, timeout: Duration) -> Result<IpNet> {
        let ep = &waiting.endpoint;
        let ns = open_recorded(ep)?;
        let Some(retry) = retries_of(&ep.details).into_iter().find(|r| r.family == family) else {
            return Err(EngineError::Invalid(format!("no DHCPv{family} lease asked for")));
        };
        let client_id = identity::given(&retry.client_id).map_err(EngineError::Invalid)?;
        let last =
            self.store.read()?.dhcp_lease_of_client(&client_id, family)?.ok_or_else(|| {
                let id = &retry.client_id;
                EngineError::Invalid(format!("no lease recorded for client identifier {id}"))
            })?;
        match family {
            6 => self.reacquire_v6(ep, &waiting.spec, ns, &last, timeout),
            _ => self.reacquire_v4(ep, &waiting.spec, ns, &last, timeout),
        }
    }

    /// DHCPv4: DISCOVER to ACK under the endpoint's client identifier,
    /// asking for the address it held, then the grant put on as attach puts
    /// it on. Also the start over after a DHCPNAK (`renew`).
    pub(super) fn reacquire_v4(
        &mut self,
        ep: &EndpointRecord,
        spec: &NetworkSpec,
        ns: Netns,
        last: &DhcpLeaseRecord,
        timeout: Duration,
    ) -> Result<IpNet> {
        let client_id = last.client_id.clone();
        let previous = super::held_v4(last);
        let mac = ep.mac.ok_or_else(|| {
            EngineError::Invalid(format!("{} has no MAC address; DHCP needs one", ep.ifname))
        })?;
        let ifname = ep.ifname.as_str();
        let label = format!("{ifname} in {}", ep.netns);
        let socket = DhcpSocket::open_in(&ns, ifname)?;
        let exchange =
            Exchange { socket: &socket, mac, client_id: &client_id, previous, label: &label };
        let granted = exchange.acquire(timeout)?;
        let address = IpNet::V4(granted.address);
        let give_back = || {
            let server = granted.server;
            exchange.release(granted.address.addr(), server, Duration::from_secs(1), false);
        };
        let mut details = LeaseDetails {
            routers: granted.routers.clone(),
            dns: granted.dns.clone(),
            domain: granted.domain.clone(),
            resolv_conf: None,
        };
        let row = |details: &LeaseDetails| {
            lease_record(client_id.clone(), Some(ep.id), &granted, details, unix_now())
        };
        let place = Place::between(&self.host, ns);
        let recorded =
            place.and_then(|place| self.record_grant(ep.id, &row(&details)).map(|()| place));
        let mut place = match recorded {
            Ok(place) => place,
            Err(e) => {
                give_back();
                return Err(e);
            }
        };

        // The kernel, as attach does it.
        let target = NetnsTarget::Path(PathBuf::from(&ep.netns));
        let who = Who { network: spec.name.as_str(), netns: &target, ifname };
        let ep_details: EndpointDetails =
            serde_json::from_value(ep.details.clone()).unwrap_or_default();
        let last_details: LeaseDetails =
            serde_json::from_value(last.details.clone()).unwrap_or_default();
        let extra: Vec<RouteSpec> = ep_details.routes.iter().map(RouteSpec::from).collect();
        // Attach added the default route unless told not to: it did if the
        // record names the old router (or the device) as a gateway.
        let default_route = ep_details.default_dev
            || last_details
                .routers
                .first()
                .is_some_and(|r| ep_details.gateways.contains(&(*r).into()));
        let noarp = matches!(spec.mode, LinkMode::Ipvlan(IpvlanMode::L3 | IpvlanMode::L3s));
        let macvlan = matches!(spec.mode, LinkMode::Macvlan(_));
        let routes = grant_routes(&granted, &extra, default_route, noarp);
        let mut undo = UndoLog::default();
        // A dual-stack endpoint's DHCPv6 lease: a resolv.conf it holds is
        // its own; else its DNS servers join the file written here, as at
        // attach (they went with the DHCPv4 lease's file).
        let v6 = self.store.read()?.dhcp_leases_of(ep.id)?.into_iter().find(|l| l.family == 6);
        let v6_file = v6.as_ref().is_some_and(|l| {
            let details = serde_json::from_value::<LeaseDetails>(l.details.clone());
            details.is_ok_and(|d| d.resolv_conf.is_some())
        });
        let put_on = (|| -> Result<_> {
            let link = place.target.require_link_brief(ifname, place.target_ns.label())?;
            // Left by a try that did not finish (an agent killed): taken
            // off, and its routes with it, to go on again whole; so is the
            // resolv.conf it wrote (nicslice's for this interface, which no
            // lease records), to be written again.
            match place.target.delete_address(link.index, address) {
                Err(e) if e.errno() != Some(libc::EADDRNOTAVAIL) => return Err(e.into()),
                _ => {}
            }
            if !v6_file {
                super::forget_unrecorded_resolv_conf(ep, who.network);
            }
            apply_grant(&link, &granted, &routes, macvlan, &who, &mut place, self.faults, &mut undo)
        })();
        let (routes, written) = match put_on {
            Ok(done) => done,
            Err(e) => {
                let e = place.abort(undo, e);
                give_back();
                self.forget_grant(&client_id, 4);
                return Err(e);
            }
        };
        if let (Some(file), Some(v6)) = (&written, &v6) {
            let dns = super::v6::dns_of(v6);
            if let Err(e) = resolv::append(file, who.network, ifname, &dns) {
                tracing::warn!("cannot add the DHCPv6 DNS servers to {}: {e}", file.path.display());
            }
        }
        // Killed here, the address is on the link and the store has the
        // grant but still the entry: the next agent asks again, under the
        // same identifier, and puts the same lease on whole.
        self.faults.die_at(crate::fault::Step::ReacquireRecord);
        details.resolv_conf = written.clone();
        let gateways: Vec<IpAddr> = routes.iter().filter_map(|r| r.gateway).collect();
        if let Err(e) = self.record_found(ep.id, 4, &row(&details), &gateways) {
            let e = place.abort(undo, e);
            if let Some(written) = &written {
                resolv::remove(written, who.network, ifname);
            }
            give_back();
            self.forget_grant(&client_id, 4);
            return Err(e);
        }
        undo.commit();
        Ok(address)
    }

    /// DHCPv6: SOLICIT to REPLY under the host's DUID and the endpoint's
    /// IAID, asking for the address it held, put on as attach puts it on
    /// (through DAD on a network that probes, DECLINEd if answered).
    fn reacquire_v6(
        &mut self,
        ep: &EndpointRecord,
        spec: &NetworkSpec,
        ns: Netns,
        last: &DhcpLeaseRecord,
        timeout: Duration,
    ) -> Result<IpNet> {
        let key = last.client_id.clone();
        let ifname = ep.ifname.as_str();
        let target = NetnsTarget::Path(PathBuf::from(&ep.netns));
        let who = Who { network: spec.name.as_str(), netns: &target, ifname };
        // A dual-stack endpoint's DNS servers join its DHCPv4 lease's file.
        let v4_file = self
            .store
            .read()?
            .dhcp_leases_of(ep.id)?
            .into_iter()
            .find(|l| l.family == 4)
            .and_then(|l| serde_json::from_value::<LeaseDetails>(l.details).ok())
            .and_then(|d| d.resolv_conf);
        let mut place = Place::between(&self.host, ns)?;
        let mut undo = UndoLog::default();
        let req = DhcpRequest { client_id: None, timeout };
        let mut held =
            match super::v6::regain(last, ifname, &req, spec.probe, &mut place, &mut undo) {
                Ok(held) => held,
                Err(e) => return Err(place.abort(undo, e)),
            };
        let finished = (|| -> Result<()> {
            held.write_resolv_conf(&who, v4_file.as_ref())?;
            let tx = self.store.write()?;
            let Some(now) = tx.endpoint(ep.id)?.filter(|e| e.state == EndpointState::Attached)
            else {
                return Err(EngineError::NotFound("it was detached meanwhile".into()));
            };
            held.record(&tx, ep.id)?;
            let mut details = now.details.clone();
            note_found(&mut details, 6, &[]);
            tx.update_endpoint(now.id, now.mac, &details)?;
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = finished {
            let e = place.abort(undo, e);
            held.give_back(&place.target_ns);
            self.forget_grant(&key, 6);
            return Err(e);
        }
        undo.commit();
        Ok(held.address())
    }

    /// Records a grant held by `endpoint` before the kernel is touched,
    /// unless the endpoint is no longer attached (detached meanwhile).
    fn record_grant(&mut self, endpoint: EndpointId, row: &DhcpLeaseRecord) -> Result<()> {
        let tx = self.store.write()?;
        let attached = tx.endpoint(endpoint)?.is_some_and(|e| e.state == EndpointState::Attached);
        if !attached {
            return Err(EngineError::NotFound("it was detached meanwhile".into()));
        }
        tx.record_dhcp_lease(row)?;
        tx.commit()?;
        Ok(())
    }

    /// The lease on the link: recorded with its resolv.conf, the entry and
    /// the lost line gone, the gateways the new ones, in one transaction.
    fn record_found(
        &mut self,
        endpoint: EndpointId,
        family: u8,
        row: &DhcpLeaseRecord,
        gateways: &[IpAddr],
    ) -> Result<()> {
        let tx = self.store.write()?;
        let Some(ep) = tx.endpoint(endpoint)?.filter(|e| e.state == EndpointState::Attached) else {
            return Err(EngineError::NotFound("it was detached meanwhile".into()));
        };
        tx.record_dhcp_lease(row)?;
        let mut details = ep.details.clone();
        note_found(&mut details, family, gateways);
        tx.update_endpoint(ep.id, ep.mac, &details)?;
        tx.commit()?;
        Ok(())
    }

    /// A grant given back after all: its row released (best effort; a row
    /// left held is released by the endpoint's detach).
    fn forget_grant(&mut self, client_id: &[u8], family: u8) {
        let forgotten = self.store.write().and_then(|tx| {
            tx.release_dhcp_lease(client_id, family)?;
            tx.commit()
        });
        if let Err(e) = forgotten {
            tracing::warn!("cannot record a DHCP lease given back: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_its_cap() {
        let mut waits = vec![FIRST_BACKOFF];
        while *waits.last().unwrap() < MAX_BACKOFF {
            waits.push(next_backoff(*waits.last().unwrap()));
        }
        assert_eq!(waits, vec![4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(next_backoff(MAX_BACKOFF), MAX_BACKOFF);
    }

    #[test]
    fn a_lost_lease_is_noted_then_cleared_by_family() {
        let lease = DhcpLeaseRecord {
            client_id: vec![1, 2],
            family: 4,
            endpoint_id: None,
            address: "192.168.0.100/24".parse().unwrap(),
            server: "192.168.0.1".parse().unwrap(),
            lease_secs: 120,
            acquired_at: 0,
            renew_at: 60,
            rebind_at: 105,
            expires_at: 120,
            details: serde_json::Value::Null,
        };
        let mut details =
            serde_json::json!({"kind": "macvlan", "gateways": ["192.168.0.1", "fd00::1"]});
        note_lost(&mut details, &lease, "lease expired", Some(10));
        assert_eq!(details["dhcp_lost"][0], "DHCPv4 lease of 192.168.0.100/24 lost: lease expired");
        let retry = &retries_of(&details)[0];
        assert_eq!((retry.client_id.as_str(), retry.next_at, retry.backoff_secs), ("01:02", 10, 4));
        note_found(&mut details, 4, &["192.168.0.254".parse().unwrap()]);
        assert!(retries_of(&details).is_empty() && details.get("dhcp_lost").is_none(), "{details}");
        assert_eq!(details["gateways"], serde_json::json!(["fd00::1", "192.168.0.254"]));
        assert_eq!(details["kind"], "macvlan");
    }
}
