//! A CNI attachment's DHCPv4 lease lost and asked for again (RFC 2131
//! 4.4.5), as an endpoint's is (`reacquire`): the same client identifier,
//! the address it held asked for, the same backoff ([`DhcpRetry`], 4 s
//! doubling to 5 min), kept on the attachment's holder row (`retry_json`)
//! so an agent started again carries on, and the agent stays up while one
//! is waiting. A grant is recorded as ADD records it (`cni::record_cni4`)
//! before it goes on the container's link (`put_on`: what the link plugin
//! put on at ADD, the address with the lease's lifetime and the default
//! route via the server's router); also the start over after a DHCPNAK.
//!
//! A lost DHCPv6 lease is asked for again the same way, with the same
//! state and backoff: the same DUID and IAID, the address it held, put on
//! and recorded by `v6::cni` (`reacquire_cni6`).
//!
//! An attachment whose namespace (or link) is gone is forgotten, as GC
//! would; DEL drops the row and the tries with it.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use nicslice_kernel::{DhcpSocket, Netns, Route, RouteSocket};
use nicslice_model::MacAddr;
use nicslice_store::{CniDhcpHold, DhcpLeaseRecord, StoreRead};

use super::client::{Exchange, Granted};
use super::cni::{CniHolder, CniRoute, record_cni4};
use super::reacquire::{DhcpRetry, entry};
use super::renew::RenewReport;
use super::{RELEASE_WAIT, unix_now};
use crate::Engine;
use crate::error::{EngineError, Result};

/// The retry state of a holder row, if it has one.
pub(super) fn retry_of(hold: &CniDhcpHold) -> Option<DhcpRetry> {
    hold.retry.as_ref().and_then(|r| serde_json::from_value(r.clone()).ok())
}

/// Puts a grant on the container's link `ifname` in `ns`, as the link
/// plugin put ADD's on: the address (with the lease's lifetime, so it
/// cannot outlive the lease), announced, and the configuration's IPv4
/// routes, through the server's first router where a route names no
/// gateway (the link's last address took its routes). `routes` is `None`
/// for a holder row of an older nicslice: the default route via the router.
fn put_on(
    ns: &Netns,
    ifname: &str,
    mac: MacAddr,
    granted: &Granted,
    routes: Option<&[CniRoute]>,
) -> Result<()> {
    let address = IpNet::V4(granted.address);
    let mut sock = RouteSocket::open_in(ns)?;
    let link = sock.require_link(ifname, ns.label())?;
    match sock.add_address(link.index, address) {
        // Left by a try that did not finish: the lifetime below renews it.
        Err(e) if e.errno() != Some(libc::EEXIST) => return Err(e.into()),
        _ => {}
    }
    sock.set_address_lifetime(link.index, address, granted.lease_secs)?;
    // Announce it (see dhcp::apply_grant); an ipvlan child refuses to have
    // its MAC set, and neighbours know its parent's anyway.
    let _ = sock.set_mac(link.index, mac);
    let router = granted.routers.first().map(|r| IpAddr::V4(*r));
    let legacy = [CniRoute { dst: IpNet::V4(Ipv4Net::default()), gw: None }];
    for r in routes.unwrap_or(&legacy).iter().filter(|r| r.dst.addr().is_ipv4()) {
        let Some(gateway) = r.gw.or(router) else { continue };
        let route = Route {
            destination: r.dst,
            gateway: Some(gateway),
            oif: Some(link.index),
            metric: None,
        };
        match sock.add_route(&route) {
            Err(e) if e.errno() != Some(libc::EEXIST) => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

impl Engine {
    /// Marks a CNI attachment's lease (DHCPv4 or DHCPv6) lost, asked for again from
    /// `first_at` (its holder row kept, with the retry state).
    pub(super) fn cni_wait(&mut self, lease: &DhcpLeaseRecord, first_at: i64) -> Result<()> {
        self.cni_wait_with(lease, &entry(lease, first_at))
    }

    fn cni_wait_with(&mut self, lease: &DhcpLeaseRecord, retry: &DhcpRetry) -> Result<()> {
        let retry = serde_json::to_value(retry).unwrap_or_default();
        let tx = self.store.write()?;
        tx.wait_cni_dhcp_lease(&lease.client_id, lease.family, &retry)?;
        tx.commit()?;
        Ok(())
    }

    /// A DHCPv4 grant to the CNI attachment of `client_id` recorded as ADD
    /// records one (its holder row, the lease it replaces gone, the retry
    /// state cleared: one transaction), then put on its link `ifname` in
    /// `ns`. Given back (RELEASE) if either fails; `NotFound` when the
    /// attachment was deleted meanwhile (no holder row).
    pub(super) fn keep_cni_grant(
        &mut self,
        client_id: &[u8],
        exchange: &Exchange<'_>,
        granted: &Granted,
        ns: &Netns,
        ifname: &str,
    ) -> Result<()> {
        let kept = (|| -> Result<()> {
            let tx = self.store.write()?;
            let Some(hold) = tx.cni_dhcp_hold(client_id, 4)? else {
                return Err(EngineError::NotFound("its attachment was deleted meanwhile".into()));
            };
            let routes = CniHolder::of(&hold)?.routes;
            record_cni4(&tx, client_id, granted, &hold.network, &hold.holder)?;
            tx.commit()?;
            put_on(ns, ifname, exchange.mac, granted, routes.as_deref())
        })();
        if let Err(e) = kept {
            exchange.release(granted.address.addr(), granted.server, RELEASE_WAIT, false);
            return Err(e);
        }
        Ok(())
    }

    /// The pass's tries for CNI attachments whose lease was lost: each one
    /// due asks again; one that finds no server waits longer next time.
    pub(super) fn reacquire_lost_cni(&mut self, timeout: Duration, report: &mut RenewReport) {
        let now = unix_now();
        let holds = match self.store.read().and_then(|r| r.cni_dhcp_holds()) {
            Ok(h) => h,
            Err(e) => return report.failed.push(format!("CNI attachments waiting: {e}")),
        };
        for hold in holds {
            let Some(retry) = retry_of(&hold).filter(|r| r.next_at <= now) else { continue };
            let holder = match CniHolder::of(&hold) {
                Ok(h) => h,
                Err(e) => {
                    report.failed.push(e.to_string());
                    continue;
                }
            };
            let label = format!(
                "{} of container {} in network {}",
                holder.ifname, holder.container_id, hold.network
            );
            let Some(ns) = holder.link_namespace() else {
                // The container is gone: nothing to ask for; forgotten, as
                // GC would.
                let gone = self.give_back_cni(&hold).err();
                let gone = gone.map_or(String::new(), |e| format!(" ({e})"));
                report.lost.push(format!("{label}: its link is gone; no longer asking{gone}"));
                continue;
            };
            let v = hold.lease.family;
            let tried = match v {
                6 => self.reacquire_cni6(&hold, &holder, ns, timeout),
                _ => self.reacquire_cni4(&hold, &holder, &ns, timeout),
            };
            match tried {
                Ok(address) => {
                    report.reacquired.push(format!("{label}: DHCPv{v} lease of {address} again"))
                }
                Err(EngineError::NotFound(why)) => report.lost.push(format!("{label}: {why}")),
                Err(e) => {
                    let wait = retry.backoff_secs;
                    let noted = self.cni_wait_with(&hold.lease, &retry.postponed()).err();
                    let noted = noted.map_or(String::new(), |e| format!(" ({e})"));
                    report.failed.push(format!(
                        "{label}: no new DHCPv{v} lease: {e}; asking again in {wait} s{noted}"
                    ));
                }
            }
        }
    }

    /// DISCOVER to ACK under the attachment's client identifier, asking for
    /// the address it held, then the grant kept (`keep_cni_grant`).
    fn reacquire_cni4(
        &mut self,
        hold: &CniDhcpHold,
        holder: &CniHolder,
        ns: &Netns,
        timeout: Duration,
    ) -> Result<IpNet> {
        let last = &hold.lease;
        let previous = super::held_v4(last);
        let label = format!("{} in {}", holder.ifname, holder.netns);
        let socket = DhcpSocket::open_in(ns, &holder.ifname)?;
        let client_id = last.client_id.as_slice();
        let exchange =
            Exchange { socket: &socket, mac: holder.mac, client_id, previous, label: &label };
        let granted = exchange.acquire(timeout)?;
        self.keep_cni_grant(client_id, &exchange, &granted, ns, &holder.ifname)?;
        Ok(IpNet::V4(granted.address))
    }
}
