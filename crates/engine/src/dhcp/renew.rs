//! Keeping DHCP leases: one pass of `nicslice dhcp-agent` over every lease
//! an endpoint or a CNI attachment (`cni`) holds. At T1 the lease is
//! renewed with its server (unicast from the address), at T2 rebound with
//! any server (broadcast), and at its expiry the address is taken off the
//! link (an endpoint's record then says the lease was lost, and why, and
//! the endpoint asks for a lease again: `reacquire`; a CNI attachment's
//! DHCPv4 lease is asked for again too: `cni_retry`).
//! Every outcome is written to
//! the state store as it happens (times of the next try included), so an
//! agent killed at any point and started again carries on from the store:
//! nothing lives only in its memory.
//!
//! The store's lock is held only for each short write, never across an
//! exchange with a server.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use nicslice_kernel::{DhcpSocket, Netns, NetnsTarget, RouteSocket};
use nicslice_model::MacAddr;
use nicslice_store::{DhcpLeaseRecord, EndpointState, StoreRead};
use serde::Serialize;

use super::client::{Exchange, Granted};
use super::cni::CniHolder;
use super::unix_now;
use crate::Engine;
use crate::error::Result;
use crate::fault::Step;

/// What a lease needs at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Nothing,
    /// Past T1: ask the server that gave it.
    Renew,
    /// Past T2: ask any server.
    Rebind,
    /// Past its end: the address must go.
    Expired,
}

/// What `lease` needs at `now` (`force`: renew even before T1).
pub fn due(lease: &DhcpLeaseRecord, now: i64, force: bool) -> Due {
    if now >= lease.expires_at {
        Due::Expired
    } else if now >= lease.rebind_at {
        Due::Rebind
    } else if now >= lease.renew_at || force {
        Due::Renew
    } else {
        Due::Nothing
    }
}

/// When to try again after a try at `now` failed (RFC 2131 4.4.5: half the
/// time left until the next stage, at least a minute, never past it).
pub(super) fn retry_at(now: i64, next_stage: i64) -> i64 {
    (now + ((next_stage - now) / 2).max(60)).min(next_stage)
}

/// One pass's outcome, one line per lease touched.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RenewReport {
    pub renewed: Vec<String>,
    /// Refused (DHCPNAK) and replaced by a new lease from a new DISCOVER.
    pub replaced: Vec<String>,
    /// Endpoints and CNI attachments whose lost lease was asked for again
    /// and granted.
    pub reacquired: Vec<String>,
    /// Addresses taken off their links: lease expired, or refused with no
    /// new lease to be had.
    pub lost: Vec<String>,
    /// Tries that got no answer (tried again later) or could not be made.
    pub failed: Vec<String>,
    /// Unix seconds of the next renewal due or the next try for a lost
    /// lease, if any lease is held or asked for.
    pub next_due: Option<i64>,
}

/// Whose a held lease is.
#[derive(Clone, Copy)]
enum Whose {
    /// An endpoint of `attach`.
    Endpoint,
    /// A CNI attachment's (its holder row, by the lease's client identifier).
    Cni,
}

/// A held lease's holder, found again from the store: an endpoint of
/// `attach` or a CNI attachment.
pub(super) struct Holder {
    whose: Whose,
    pub(super) netns: String,
    pub(super) netns_id: (u64, u64),
    pub(super) ifname: String,
    pub(super) mac: Option<MacAddr>,
    pub(super) network: String,
    /// The parent in the host namespace, for a RELEASE on its behalf.
    pub(super) parent: Option<String>,
    pub(super) label: String,
}

impl Engine {
    /// The holder of an endpoint's lease, unless its endpoint is in flight
    /// (an attach or detach owns its lease until it is done) or gone.
    fn endpoint_holder(&mut self, lease: &DhcpLeaseRecord) -> Result<Option<Holder>> {
        let Some(endpoint_id) = lease.endpoint_id else { return Ok(None) };
        let read = self.store.read()?;
        let Some(endpoint) = read.endpoint(endpoint_id)? else { return Ok(None) };
        if endpoint.state != EndpointState::Attached {
            return Ok(None);
        }
        let Some(network) = read.network(endpoint.network_id)? else { return Ok(None) };
        Ok(Some(Holder {
            whose: Whose::Endpoint,
            label: format!("{} ({} in {})", lease.address, endpoint.ifname, endpoint.netns),
            netns_id: (endpoint.netns_id.dev, endpoint.netns_id.ino),
            netns: endpoint.netns,
            ifname: endpoint.ifname.to_string(),
            mac: endpoint.mac,
            network: network.spec.name.to_string(),
            parent: Some(network.spec.parent.to_string()),
        }))
    }

    /// Every held lease with its holder: endpoints' and CNI attachments'.
    fn held_with_holders(&mut self, force: bool) -> Result<Vec<(DhcpLeaseRecord, Holder, Due)>> {
        let now = unix_now();
        let (leases, holds) = {
            let read = self.store.read()?;
            (read.held_dhcp_leases()?, read.cni_dhcp_holds()?)
        };
        let mut out = Vec::new();
        for lease in leases {
            let due = due(&lease, now, force);
            if due != Due::Nothing
                && let Some(holder) = self.endpoint_holder(&lease)?
            {
                out.push((lease, holder, due));
            }
        }
        for hold in holds {
            let due = due(&hold.lease, now, force);
            // A lost lease asked for again is `cni_retry`'s.
            if due == Due::Nothing || hold.retry.is_some() {
                continue;
            }
            let cni = CniHolder::of(&hold)?;
            let holder = Holder {
                whose: Whose::Cni,
                label: format!(
                    "{} ({} of container {} in network {})",
                    hold.lease.address, cni.ifname, cni.container_id, hold.network
                ),
                netns_id: (cni.netns_dev, cni.netns_ino),
                netns: cni.netns,
                ifname: cni.ifname,
                mac: Some(cni.mac),
                network: hold.network,
                parent: cni.parent,
            };
            out.push((hold.lease, holder, due));
        }
        Ok(out)
    }

    /// One pass over every held lease; `force` renews all of them now.
    pub fn renew_dhcp_leases(&mut self, force: bool, timeout: Duration) -> Result<RenewReport> {
        let mut report = RenewReport::default();
        for (lease, holder, due) in self.held_with_holders(force)? {
            // Never act on a namespace that is not the one recorded: the
            // kernel reuses a deleted namespace's inode at once.
            let path = PathBuf::from(&holder.netns);
            let ns = match NetnsTarget::Path(path).open() {
                Ok(ns) if (ns.id().dev, ns.id().ino) == holder.netns_id => ns,
                _ => {
                    // Its link went with it: nothing to renew for. Give the
                    // lease back on its behalf through the parent, as detach
                    // does, and stop keeping it.
                    self.release_orphan(&lease, &holder)?;
                    report.lost.push(format!("{}: its namespace is gone; released", holder.label));
                    continue;
                }
            };
            match self.renew_one(&lease, &holder, &ns, due, timeout) {
                Ok(Outcome::Renewed(secs)) => {
                    report.renewed.push(format!("{} for {secs} s", holder.label))
                }
                Ok(Outcome::Replaced(address, secs)) => report.replaced.push(format!(
                    "{}: refused (DHCPNAK); now {address} for {secs} s",
                    holder.label
                )),
                Ok(Outcome::Refused) => {
                    // RFC 2131 4.4.5: after a NAK the client starts over,
                    // at once, and later again should no lease come now.
                    match self.start_over(&lease, timeout) {
                        Ok(address) => report
                            .replaced
                            .push(format!("{}: refused (DHCPNAK); now {address}", holder.label)),
                        Err(e) => {
                            let why = format!(
                                "the server refused the renewal (DHCPNAK), and no new lease came: {e}"
                            );
                            let later = unix_now() + i64::from(super::reacquire::FIRST_BACKOFF);
                            self.lose(&lease, &holder, &why, Some(later))?;
                            report.lost.push(format!("{}: {why}", holder.label))
                        }
                    }
                }
                Ok(Outcome::Lost(why, retry_at)) => {
                    // Never kept again (a lease left held would be due at
                    // every pass); an endpoint's is asked for again.
                    self.lose(&lease, &holder, &why, retry_at)?;
                    report.lost.push(format!("{}: {why}", holder.label))
                }
                Err(e) => report.failed.push(format!("{}: {e}", holder.label)),
            }
        }
        // Endpoints and CNI attachments whose lease was lost (in this pass
        // or before) ask again.
        self.reacquire_lost(timeout, &mut report);
        self.reacquire_lost_cni(timeout, &mut report);
        let retry = self.next_retry()?;
        let read = self.store.read()?;
        let endpoints = read.held_dhcp_leases()?.into_iter().map(|l| l.renew_at);
        let holds = read.cni_dhcp_holds()?;
        // A CNI attachment is due at its renewal, or, its lease lost, at its next try.
        let cni = holds.iter().map(|h| match super::cni_retry::retry_of(h) {
            Some(retry) => retry.next_at,
            None => h.lease.renew_at,
        });
        report.next_due = endpoints.chain(cni).chain(retry).min();
        Ok(report)
    }

    /// After a DHCPNAK to an endpoint's lease (its address already off):
    /// DISCOVER again and the grant put on as attach puts it on.
    fn start_over(&mut self, lease: &DhcpLeaseRecord, timeout: Duration) -> Result<IpNet> {
        let gone = || crate::error::EngineError::NotFound("its endpoint is gone".into());
        let (endpoint, spec) = {
            let read = self.store.read()?;
            let endpoint = lease.endpoint_id.map(|id| read.endpoint(id)).transpose()?.flatten();
            let endpoint = endpoint.ok_or_else(gone)?;
            let network = read.network(endpoint.network_id)?.ok_or_else(gone)?;
            (endpoint, network.spec)
        };
        let ns = super::reacquire::open_recorded(&endpoint)?;
        self.reacquire_v4(&endpoint, &spec, ns, lease, timeout)
    }

    fn renew_one(
        &mut self,
        lease: &DhcpLeaseRecord,
        holder: &Holder,
        ns: &Netns,
        due: Due,
        timeout: Duration,
    ) -> Result<Outcome> {
        if lease.family == 6 {
            return self.renew_one_v6(lease, holder, ns, due, timeout);
        }
        let (IpNet::V4(address), IpAddr::V4(server)) = (lease.address, lease.server) else {
            return Ok(Outcome::Lost("not an IPv4 lease".into(), None));
        };
        let ifname = holder.ifname.as_str();
        if due == Due::Expired {
            self.drop_address(lease, holder, ns)?;
            // Asked for again at once (RFC 2131 4.4.5: back to INIT).
            return Ok(Outcome::Lost("lease expired".into(), Some(unix_now())));
        }
        let Some(mac) = holder.mac else {
            return Ok(Outcome::Lost("endpoint has no MAC".into(), None));
        };
        let socket = DhcpSocket::open_in(ns, ifname)?;
        let exchange = Exchange {
            socket: &socket,
            mac,
            client_id: &lease.client_id,
            previous: None,
            label: &holder.label,
        };
        let to = (due == Due::Renew).then_some(server);
        match exchange.extend(address, to, timeout) {
            Ok(Some(granted)) => {
                // Killed here, the server has extended a lease the store
                // still records with its old times: the next pass renews
                // it again (the same address, under the same identifier).
                self.faults.die_at(Step::RenewRecord);
                let now = unix_now();
                // A server that names no identifier is still the one asked.
                let server = match granted.server {
                    Ipv4Addr::UNSPECIFIED => lease.server,
                    ip => IpAddr::V4(ip),
                };
                let renewed = DhcpLeaseRecord {
                    server,
                    lease_secs: granted.lease_secs,
                    acquired_at: now,
                    renew_at: now + i64::from(granted.renew_secs),
                    rebind_at: now + i64::from(granted.rebind_secs),
                    expires_at: now + i64::from(granted.lease_secs),
                    ..lease.clone()
                };
                let tx = self.store.write()?;
                tx.record_dhcp_lease(&renewed)?;
                tx.commit()?;
                let mut sock = RouteSocket::open_in(ns)?;
                if let Some(link) = sock.link_by_name(ifname)? {
                    sock.set_address_lifetime(link.index, lease.address, granted.lease_secs)?;
                }
                Ok(Outcome::Renewed(granted.lease_secs))
            }
            Ok(None) => {
                self.drop_address(lease, holder, ns)?;
                // RFC 2131 4.4.5: after a NAK the client starts over. An
                // endpoint's, through attach's code, once this socket is
                // closed (`start_over`).
                if let Whose::Endpoint = holder.whose {
                    return Ok(Outcome::Refused);
                }
                // A CNI attachment's on this socket, its lease replaced as
                // ADD records one; else asked for again later.
                match self.reacquire_cni(lease, holder, ns, &exchange, timeout) {
                    Ok(granted) => Ok(Outcome::Replaced(granted.address, granted.lease_secs)),
                    Err(e) => Ok(Outcome::Lost(
                        format!(
                            "the server refused the renewal (DHCPNAK), and no new lease came: {e}"
                        ),
                        Some(unix_now() + i64::from(super::reacquire::FIRST_BACKOFF)),
                    )),
                }
            }
            Err(e) => {
                self.postpone(lease, due)?;
                Err(e)
            }
        }
    }

    /// After a try that got no answer: try again later, and say when in the
    /// store.
    pub(super) fn postpone(&mut self, lease: &DhcpLeaseRecord, due: Due) -> Result<()> {
        let now = unix_now();
        let next = match due {
            Due::Renew => retry_at(now, lease.rebind_at),
            _ => retry_at(now, lease.expires_at),
        };
        let tx = self.store.write()?;
        tx.record_dhcp_lease(&DhcpLeaseRecord { renew_at: next, ..lease.clone() })?;
        tx.commit()?;
        Ok(())
    }

    /// A new lease for a CNI attachment whose lease was refused (its
    /// address already off): DISCOVER again, then the grant recorded as
    /// ADD records it, replacing the refused one, and put on the link
    /// (`cni_retry::keep_cni_grant`); given back if it cannot be.
    fn reacquire_cni(
        &mut self,
        lease: &DhcpLeaseRecord,
        holder: &Holder,
        ns: &Netns,
        exchange: &Exchange<'_>,
        timeout: Duration,
    ) -> Result<Granted> {
        let granted = exchange.acquire(timeout)?;
        self.keep_cni_grant(&lease.client_id, exchange, &granted, ns, &holder.ifname)?;
        Ok(granted)
    }

    /// RELEASE, through the parent in the host namespace, of a lease whose
    /// holder's namespace is gone; its resolv.conf and row go too.
    fn release_orphan(&mut self, lease: &DhcpLeaseRecord, holder: &Holder) -> Result<()> {
        if lease.family == 6 {
            let parent = holder.parent.as_deref().map(|p| (&self.host, p));
            super::v6::release(None, parent, lease);
        } else if let (Some(mac), Some(parent), IpAddr::V4(address), IpAddr::V4(server)) =
            (holder.mac, &holder.parent, lease.address.addr(), lease.server)
        {
            let client_id = &lease.client_id;
            super::send_release(&self.host, parent, mac, client_id, address, server, false);
        }
        super::forget_resolv_conf(lease, &holder.network, &holder.ifname);
        self.forget(lease, holder)
    }

    /// Marks `lease` released in the store (only it: a dual-stack
    /// endpoint's other lease is kept).
    fn forget(&mut self, lease: &DhcpLeaseRecord, holder: &Holder) -> Result<()> {
        let tx = self.store.write()?;
        match holder.whose {
            Whose::Endpoint => {
                tx.release_dhcp_lease(&lease.client_id, lease.family)?;
            }
            Whose::Cni => tx.release_cni_dhcp_lease(&lease.client_id, lease.family)?,
        }
        tx.commit()?;
        Ok(())
    }

    /// Marks a lost lease released and, for an endpoint's, says so on the
    /// endpoint's record (`endpoint ls` shows it and `endpoint check`
    /// reports it: its address and routes are gone on purpose) with, from
    /// `retry_at`, the tries for a new one (`reacquire`), in one
    /// transaction. A CNI attachment's lease keeps its holder row, asking
    /// again from `retry_at` (`cni_retry`); else it is forgotten.
    fn lose(
        &mut self,
        lease: &DhcpLeaseRecord,
        holder: &Holder,
        why: &str,
        retry_at: Option<i64>,
    ) -> Result<()> {
        let Whose::Endpoint = holder.whose else {
            return match retry_at {
                Some(at) => self.cni_wait(lease, at),
                _ => self.forget(lease, holder),
            };
        };
        let tx = self.store.write()?;
        tx.release_dhcp_lease(&lease.client_id, lease.family)?;
        if let Some(endpoint) = lease.endpoint_id.map(|id| tx.endpoint(id)).transpose()?.flatten() {
            let mut details = endpoint.details.clone();
            super::reacquire::note_lost(&mut details, lease, why, retry_at);
            tx.update_endpoint(endpoint.id, endpoint.mac, &details)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Takes a lost lease's address off its link (and the DNS servers it
    /// gave out of the namespace's resolv.conf) and, for an endpoint's,
    /// records it released. A CNI attachment's row stays for its caller:
    /// replaced by a new lease, or kept asking for one (`lose`).
    pub(super) fn drop_address(
        &mut self,
        lease: &DhcpLeaseRecord,
        holder: &Holder,
        ns: &Netns,
    ) -> Result<()> {
        let ifname = holder.ifname.as_str();
        super::forget_resolv_conf(lease, &holder.network, ifname);
        let mut sock = RouteSocket::open_in(ns)?;
        if let Some(link) = sock.link_by_name(ifname)? {
            match sock.delete_address(link.index, lease.address) {
                Ok(()) => {}
                // Already gone (removed by hand): nothing to take off.
                Err(e) if e.errno() == Some(libc::EADDRNOTAVAIL) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match holder.whose {
            Whose::Endpoint => self.forget(lease, holder),
            Whose::Cni => Ok(()),
        }
    }
}

pub(super) enum Outcome {
    Renewed(u32),
    /// Refused, and a new lease put on instead (a CNI attachment's).
    Replaced(ipnet::Ipv4Net, u32),
    /// An endpoint's refused (DHCPNAK), its address off: it starts over.
    Refused,
    /// Lost, and why; an endpoint's is asked for again from the time given.
    Lost(String, Option<i64>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(renew: i64, rebind: i64, expires: i64) -> DhcpLeaseRecord {
        DhcpLeaseRecord {
            client_id: vec![0, 1],
            family: 4,
            endpoint_id: None,
            address: "192.168.0.100/24".parse().unwrap(),
            server: "192.168.0.1".parse().unwrap(),
            lease_secs: 120,
            acquired_at: 0,
            renew_at: renew,
            rebind_at: rebind,
            expires_at: expires,
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn stages_follow_t1_t2_and_expiry() {
        let l = lease(60, 105, 120);
        assert_eq!(due(&l, 10, false), Due::Nothing);
        assert_eq!(due(&l, 10, true), Due::Renew);
        assert_eq!(due(&l, 60, false), Due::Renew);
        assert_eq!(due(&l, 105, false), Due::Rebind);
        assert_eq!(due(&l, 120, true), Due::Expired);
    }

    #[test]
    fn a_failed_try_waits_half_the_time_left_at_least_a_minute() {
        assert_eq!(retry_at(0, 1000), 500);
        assert_eq!(retry_at(0, 100), 60);
        assert_eq!(retry_at(0, 30), 30, "never past the next stage");
    }
}
