//! DHCP for CNI attachments (nicslice-ipam with `"dhcp": {}`): the same
//! exchanges, lease rows and agent as an endpoint of `attach`, for a link
//! the CNI link plugin made and configures. ADD ([`Engine::cni_dhcp_add`])
//! asks the server of each family asked for ([`DhcpFamilies`]: DHCPv4, and
//! DHCPv6 through `v6::cni`) on the container's link (no address on it
//! yet) and records each lease with its holder (`nicslice_store::CniDhcpHold`:
//! container, interface, namespace, MAC, the parent in the host); the agent
//! renews them like any other, and asks again for a lease it lost
//! (`cni_retry`). DEL and GC ([`Engine::cni_dhcp_del`],
//! [`Engine::cni_dhcp_gc`]) send RELEASE and drop them; CHECK
//! ([`Engine::cni_dhcp_check`]) finds each held and its address on the link.
//!
//! The DHCPv4 client identifier is derived from the container ID and the
//! interface name, and so is the DHCPv6 IAID (under the host's DUID), so
//! an attachment added again is the same client. The store's lock is held
//! only to read and to commit, never across an exchange.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;
use nicslice_kernel::{DhcpSocket, LinkBrief, Netns, NetnsTarget, RouteSocket};
use nicslice_model::MacAddr;
use nicslice_store::{CniDhcpHold, StoreRead, WriteTx};
use serde::{Deserialize, Serialize};

use super::client::{Exchange, Granted};
use super::v6::{self, Granted6};
use super::{LeaseDetails, identity, lease_record, send_release, unix_now};
use crate::Engine;
use crate::endpoint::Place;
use crate::error::{EngineError, Result};
use crate::intent::NsIdentity;

/// Who holds a CNI lease, as its holder row keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CniHolder {
    pub(crate) container_id: String,
    pub(crate) ifname: String,
    /// `CNI_NETNS`, a path.
    pub(crate) netns: String,
    pub(crate) netns_dev: u64,
    pub(crate) netns_ino: u64,
    pub(crate) netns_cookie: u64,
    pub(crate) mac: MacAddr,
    /// The link's parent in the host namespace, through which the RELEASE
    /// of a link already deleted goes; `None` when the parent is inside
    /// the container (`linkInContainer`).
    pub(crate) parent: Option<String>,
    /// The configuration's routes (see `CniAttachment::routes`); `None` in
    /// a row of an older nicslice, whose re-grant adds the default route
    /// through the router, as it always did.
    #[serde(default)]
    pub(crate) routes: Option<Vec<CniRoute>>,
}

impl CniHolder {
    pub(crate) fn of(hold: &CniDhcpHold) -> Result<CniHolder> {
        serde_json::from_value(hold.holder.clone()).map_err(|e| {
            EngineError::Invalid(format!("the CNI DHCP holder of network {}: {e}", hold.network))
        })
    }

    /// Whether `ns` (open, with `sock` in it) is the namespace recorded.
    pub(crate) fn is_in(&self, ns: &Netns, sock: &RouteSocket) -> Result<bool> {
        let id = NsIdentity::of(ns, sock)?;
        Ok((id.id.dev, id.id.ino, id.cookie) == (self.netns_dev, self.netns_ino, self.netns_cookie))
    }

    /// The recorded namespace, open, if it is still there and holds the
    /// link (the plugin's DEL deletes the link before IPAM's runs).
    pub(super) fn link_namespace(&self) -> Option<Netns> {
        NetnsTarget::Path(self.netns.clone().into()).open().ok().filter(|ns| {
            RouteSocket::open_in(ns).is_ok_and(|mut sock| {
                self.is_in(ns, &sock).unwrap_or(false)
                    && sock.link_by_name(&self.ifname).is_ok_and(|l| l.is_some())
            })
        })
    }
}

/// One CNI call's attachment.
#[derive(Debug, Clone, Copy)]
pub struct CniAttachment<'a> {
    /// The CNI network's name.
    pub network: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
    /// `CNI_NETNS`.
    pub netns: &'a str,
    /// The configuration's `routes`, which the link plugin adds after the
    /// ADD (through the lease's router where a route names no gateway):
    /// the agent puts the IPv4 ones back with a lease granted again, and
    /// only those.
    pub routes: &'a [CniRoute],
}

/// A route of a CNI configuration's `routes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniRoute {
    pub dst: IpNet,
    /// `None`: through the address's gateway (the lease's router).
    pub gw: Option<IpAddr>,
}

/// Which families an attachment takes from DHCP servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpFamilies {
    /// DHCPv4.
    pub v4: bool,
    /// DHCPv6 (IA_NA).
    pub v6: bool,
}

impl Default for DhcpFamilies {
    /// IPv4 alone: what `"dhcp": {}` meant before DHCPv6 came.
    fn default() -> Self {
        DhcpFamilies { v4: true, v6: false }
    }
}

/// What ADD got from the servers.
#[derive(Debug, Clone)]
pub struct CniGrants {
    pub v4: Option<Granted>,
    /// A /128 (IA_NA gives no prefix and no router: both come from the
    /// router's Router Advertisements).
    pub v6: Option<Granted6>,
}

/// What CHECK found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CniDhcpCheck {
    /// Every family asked for holds a lease whose address is on the link.
    Held,
    /// No lease of this family (4 or 6) is held for the attachment.
    NotHeld(u8),
}

/// The client identifier of a CNI attachment: stable per container ID and
/// interface name (and told apart from every `attach` endpoint's, whose
/// namespace part is a path).
pub fn cni_client_id(container_id: &str, ifname: &str) -> Vec<u8> {
    identity::derived("cni", container_id, ifname)
}

impl Engine {
    /// ADD: a lease of each family in `families` for the link `at.ifname`
    /// the link plugin made in `at.netns`, recorded for the agent. The
    /// addresses are not put on the link: the link plugin does that with
    /// the result. All or nothing: a family that fails gives back the
    /// other's lease.
    pub fn cni_dhcp_add(
        &mut self,
        at: &CniAttachment<'_>,
        families: DhcpFamilies,
        timeout: Duration,
    ) -> Result<CniGrants> {
        let client_id = cni_client_id(at.container_id, at.ifname);
        let lookup6 = match families.v6 {
            true => Some(self.cni_lookup6(at.container_id, at.ifname)?),
            false => None,
        };
        let previous4 = {
            let read = self.store.read()?;
            let held4 = match families.v4 {
                true => read.cni_dhcp_hold(&client_id, 4)?,
                false => None,
            };
            let held6 = match &lookup6 {
                Some(lookup) => read.cni_dhcp_hold(&lookup.identity.key(), 6)?,
                None => None,
            };
            if let Some(hold) = held4.or(held6) {
                if hold.retry.is_some() {
                    return Err(EngineError::AddressInUse(format!(
                        "container {} interface {} is asking for a DHCP lease already; DEL it first",
                        at.container_id, at.ifname
                    )));
                }
                return Err(EngineError::AddressInUse(format!(
                    "{} is leased by DHCP to container {} interface {} already; DEL it first",
                    hold.lease.address, at.container_id, at.ifname
                )));
            }
            read.dhcp_lease_of_client(&client_id, 4)?.as_ref().and_then(super::held_v4)
        };
        let ns = NetnsTarget::Path(at.netns.into()).open()?;
        let mut place = Place::between(&self.host, ns)?;
        let link = place.target.require_link(at.ifname, place.target_ns.label())?;
        let mac = link.mac.ok_or_else(|| {
            EngineError::Invalid(format!("{} has no MAC address; DHCP needs one", at.ifname))
        })?;
        let brief =
            LinkBrief { index: link.index, name: link.name.clone(), mac: link.mac, mtu: link.mtu };
        // The link plugin brings the link up when it configures it, after
        // IPAM; the exchange needs it up now (the plugin's undo deletes it
        // should the ADD fail). DHCPv6: the kernel's link-local generation
        // is turned off first, so only the attachment's own comes (`v6`).
        if !link.up {
            if families.v6 {
                v6::ipv6_settings(&brief, &mut place)?;
            }
            place.target.set_up(link.index, true)?;
        }
        let identity = NsIdentity::of(&place.target_ns, &place.target)?;
        // The lower device is in another namespace (the host's) unless the
        // link was made inside the container.
        let parent = match (link.parent_index, link.link_netnsid) {
            (Some(index), Some(_)) => place.host.link_by_index(index)?.map(|l| l.name),
            _ => None,
        };
        let holder = CniHolder {
            container_id: at.container_id.to_string(),
            ifname: at.ifname.to_string(),
            netns: at.netns.to_string(),
            netns_dev: identity.id.dev,
            netns_ino: identity.id.ino,
            netns_cookie: identity.cookie,
            mac,
            parent,
            routes: Some(at.routes.to_vec()),
        };
        let holder_json = serde_json::to_value(&holder).unwrap_or_default();
        let v4 = match families.v4 {
            true => {
                let asked = Ask4 { client_id: &client_id, previous: previous4, mac, timeout };
                Some(self.cni_dhcp4_add(at, &place.target_ns, &asked, &holder_json)?)
            }
            false => None,
        };
        let v6 = match &lookup6 {
            Some(lookup) => {
                match self.cni_dhcp6_add(
                    at.network,
                    &brief,
                    lookup,
                    &mut place,
                    &holder_json,
                    timeout,
                ) {
                    Ok(granted) => Some(granted),
                    Err(e) => {
                        if v4.is_some()
                            && let Err(undo) = self.cni_dhcp_release(&client_id, 4)
                        {
                            tracing::warn!("giving back the DHCPv4 lease of a failed ADD: {undo}");
                        }
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        Ok(CniGrants { v4, v6 })
    }

    /// The DHCPv4 half of ADD: the exchange on the link, the lease recorded
    /// (given back if it cannot be).
    fn cni_dhcp4_add(
        &mut self,
        at: &CniAttachment<'_>,
        ns: &Netns,
        asked: &Ask4<'_>,
        holder: &serde_json::Value,
    ) -> Result<Granted> {
        let label = format!("{} in {}", at.ifname, at.netns);
        let socket = DhcpSocket::open_in(ns, at.ifname)?;
        let exchange = Exchange {
            socket: &socket,
            mac: asked.mac,
            client_id: asked.client_id,
            previous: asked.previous,
            label: &label,
        };
        let granted = exchange.acquire(asked.timeout)?;
        let recorded = (|| -> Result<()> {
            let tx = self.store.write()?;
            record_cni4(&tx, asked.client_id, &granted, at.network, holder)?;
            Ok(tx.commit()?)
        })();
        if let Err(e) = recorded {
            exchange.release(granted.address.addr(), granted.server, super::RELEASE_WAIT, false);
            return Err(e);
        }
        Ok(granted)
    }

    /// DEL: RELEASE of the leases of this container's interface, if it
    /// holds any, and the leases dropped. Returns how many there were.
    pub fn cni_dhcp_del(&mut self, container_id: &str, ifname: &str) -> Result<usize> {
        let holds = self.cni_holds_of(container_id, ifname)?;
        for hold in &holds {
            self.give_back_cni(hold)?;
        }
        Ok(holds.len())
    }

    /// GC: gives back every lease of CNI network `network` whose attachment
    /// `keep` does not name (container ID, interface). Returns how many.
    pub fn cni_dhcp_gc(
        &mut self,
        network: &str,
        keep: impl Fn(&str, &str) -> bool,
    ) -> Result<usize> {
        let holds = self.store.read()?.cni_dhcp_holds()?;
        let mut released = 0;
        for hold in holds.iter().filter(|h| h.network == network) {
            let holder = CniHolder::of(hold)?;
            if !keep(&holder.container_id, &holder.ifname) {
                self.give_back_cni(hold)?;
                released += 1;
            }
        }
        Ok(released)
    }

    /// CHECK: each family of `families` holds a lease for this attachment,
    /// and its address is on the link in `at.netns`.
    pub fn cni_dhcp_check(
        &mut self,
        at: &CniAttachment<'_>,
        families: DhcpFamilies,
    ) -> Result<CniDhcpCheck> {
        let holds = self.cni_holds_of(at.container_id, at.ifname)?;
        let wanted = [(4, families.v4), (6, families.v6)];
        let mut expected = Vec::new();
        for family in wanted.iter().filter(|(_, on)| *on).map(|(f, _)| *f) {
            // A lease lost and asked for again is not held.
            match holds.iter().find(|h| h.lease.family == family && h.retry.is_none()) {
                Some(hold) => expected.push(hold.lease.address),
                None => return Ok(CniDhcpCheck::NotHeld(family)),
            }
        }
        let ns = NetnsTarget::Path(at.netns.into()).open()?;
        let mut sock = RouteSocket::open_in(&ns)?;
        let link = sock.require_link(at.ifname, ns.label())?;
        let on_link = sock.addresses(Some(link.index))?;
        for address in expected {
            if !on_link.iter().any(|(_, a)| a.addr() == address.addr()) {
                return Err(EngineError::Invalid(format!(
                    "{} is leased by DHCP to container {} interface {} but is not on {} in {}",
                    address.addr(),
                    at.container_id,
                    at.ifname,
                    at.ifname,
                    at.netns
                )));
            }
        }
        Ok(CniDhcpCheck::Held)
    }

    /// Whether any CNI attachment holds a DHCP lease or asks for one again
    /// (the agent has work).
    pub fn cni_dhcp_holds_any(&mut self) -> Result<bool> {
        Ok(!self.store.read()?.cni_dhcp_holds()?.is_empty())
    }

    /// The leases this container's interface holds: DHCPv4's, DHCPv6's.
    fn cni_holds_of(&mut self, container_id: &str, ifname: &str) -> Result<Vec<CniDhcpHold>> {
        let key6 = self.cni_known_identity6(container_id, ifname)?.map(|id| id.key());
        let read = self.store.read()?;
        let mut holds: Vec<CniDhcpHold> =
            read.cni_dhcp_hold(&cni_client_id(container_id, ifname), 4)?.into_iter().collect();
        if let Some(key) = key6 {
            holds.extend(read.cni_dhcp_hold(&key, 6)?);
        }
        Ok(holds)
    }

    /// Releases the held CNI lease of `client_id` in `family`, if there is one.
    pub(super) fn cni_dhcp_release(&mut self, client_id: &[u8], family: u8) -> Result<()> {
        let held = self.store.read()?.cni_dhcp_hold(client_id, family)?;
        if let Some(hold) = held {
            self.give_back_cni(&hold)?;
        }
        Ok(())
    }

    /// RELEASE of `hold` (from the container's link while it is there, else
    /// through the parent on its behalf), and its rows released. A lease
    /// lost and asked for again is held by no one: its rows go, and with
    /// them the tries.
    pub(crate) fn give_back_cni(&mut self, hold: &CniDhcpHold) -> Result<()> {
        let holder = CniHolder::of(hold)?;
        let lease = &hold.lease;
        let in_container = holder.link_namespace();
        match (lease.address.addr(), lease.server) {
            _ if hold.retry.is_some() => {}
            (IpAddr::V4(address), IpAddr::V4(server)) => {
                self.send_cni_release(
                    &holder,
                    in_container.as_ref(),
                    &lease.client_id,
                    address,
                    server,
                );
            }
            _ if lease.family == 6 => {
                let on_link = in_container.as_ref().map(|ns| (ns, holder.ifname.as_str()));
                let parent = holder.parent.as_deref().map(|p| (&self.host, p));
                v6::release(on_link, parent, lease);
            }
            _ => {}
        }
        let tx = self.store.write()?;
        tx.release_cni_dhcp_lease(&lease.client_id, lease.family)?;
        tx.commit()?;
        Ok(())
    }

    fn send_cni_release(
        &self,
        holder: &CniHolder,
        in_container: Option<&Netns>,
        client_id: &[u8],
        address: Ipv4Addr,
        server: Ipv4Addr,
    ) {
        let (mac, id) = (holder.mac, client_id);
        match (in_container, &holder.parent) {
            (Some(ns), _) => {
                // From the address when it is on the link; before the link
                // plugin put it on (an ADD that failed), broadcast: a unicast
                // would leave from 0.0.0.0, a martian the server drops.
                let on_link = RouteSocket::open_in(ns).is_ok_and(|mut sock| {
                    sock.index_of(&holder.ifname).ok().flatten().is_some_and(|index| {
                        sock.addresses(Some(index))
                            .is_ok_and(|a| a.iter().any(|(_, a)| a.addr() == IpAddr::V4(address)))
                    })
                });
                send_release(ns, &holder.ifname, mac, id, address, server, on_link);
            }
            (None, Some(parent)) => {
                send_release(&self.host, parent, mac, id, address, server, false);
            }
            (None, None) => tracing::warn!(
                "cannot release {address} to DHCP server {server}: the link of container {} is gone and its parent is unknown",
                holder.container_id
            ),
        }
    }
}

/// Records `granted` to `client_id` as held by a CNI attachment of
/// `network` (`holder`: its holder row) in `tx`, replacing the lease the
/// client held before: what ADD records, and what the agent records for a
/// lease it got again (after a DHCPNAK, or a lease lost).
pub(super) fn record_cni4(
    tx: &WriteTx<'_>,
    client_id: &[u8],
    granted: &Granted,
    network: &str,
    holder: &serde_json::Value,
) -> Result<()> {
    // No resolv.conf: for CNI the runtime gets the DNS servers in the result.
    let details = LeaseDetails {
        routers: granted.routers.clone(),
        dns: granted.dns.clone(),
        domain: granted.domain.clone(),
        resolv_conf: None,
    };
    let record = lease_record(client_id.to_vec(), None, granted, &details, unix_now());
    tx.record_cni_dhcp_lease(&record, network, holder)?;
    Ok(())
}

/// What the DHCPv4 half of ADD asks with.
struct Ask4<'a> {
    client_id: &'a [u8],
    previous: Option<Ipv4Addr>,
    mac: MacAddr,
    timeout: Duration,
}
