//! DHCP for CNI attachments (nicslice-ipam with `"dhcp": {}`): the same
//! exchange, lease rows and agent as an endpoint of `attach`, for a link the
//! CNI link plugin made and configures. ADD ([`Engine::cni_dhcp_add`]) asks
//! the server on the container's link (no address on it yet) and records
//! the lease with its holder (`nicslice_store::CniDhcpHold`: container,
//! interface, namespace, MAC, the parent in the host); the agent renews it
//! like any other. DEL and GC ([`Engine::cni_dhcp_del`],
//! [`Engine::cni_dhcp_gc`]) send RELEASE and drop it.
//!
//! The client identifier is derived from the container ID and the interface
//! name, so an attachment added again is the same client. The store's lock
//! is held only to read and to commit, never across an exchange.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use nicslice_kernel::{DhcpSocket, Netns, NetnsTarget, RouteSocket};
use nicslice_model::MacAddr;
use nicslice_store::{CniDhcpHold, StoreRead};
use serde::{Deserialize, Serialize};

use super::client::{Exchange, Granted};
use super::{LeaseDetails, identity, lease_record, send_release, unix_now};
use crate::Engine;
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
}

/// The client identifier of a CNI attachment: stable per container ID and
/// interface name (and told apart from every `attach` endpoint's, whose
/// namespace part is a path).
pub fn cni_client_id(container_id: &str, ifname: &str) -> Vec<u8> {
    identity::derived("cni", container_id, ifname)
}

impl Engine {
    /// ADD: a lease for the link `at.ifname` the link plugin made in
    /// `at.netns`, recorded for the agent. The address is not put on the
    /// link: the link plugin does that with the result.
    pub fn cni_dhcp_add(&mut self, at: &CniAttachment<'_>, timeout: Duration) -> Result<Granted> {
        let client_id = cni_client_id(at.container_id, at.ifname);
        let (held, last) = {
            let read = self.store.read()?;
            (read.cni_dhcp_hold(&client_id, 4)?, read.dhcp_lease_of_client(&client_id, 4)?)
        };
        if let Some(hold) = held {
            return Err(EngineError::AddressInUse(format!(
                "{} is leased by DHCP to container {} interface {} already; DEL it first",
                hold.lease.address, at.container_id, at.ifname
            )));
        }
        let previous = last.and_then(|l| match l.address.addr() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        });
        let ns = NetnsTarget::Path(at.netns.into()).open()?;
        let mut sock = RouteSocket::open_in(&ns)?;
        let link = sock.require_link(at.ifname, ns.label())?;
        let mac = link.mac.ok_or_else(|| {
            EngineError::Invalid(format!("{} has no MAC address; DHCP needs one", at.ifname))
        })?;
        // The link plugin brings the link up when it configures it, after
        // IPAM; the exchange needs it up now (the plugin's undo deletes it
        // should the ADD fail).
        if !link.up {
            sock.set_up(link.index, true)?;
        }
        let identity = NsIdentity::of(&ns, &sock)?;
        // The lower device is in another namespace (the host's) unless the
        // link was made inside the container.
        let parent = match (link.parent_index, link.link_netnsid) {
            (Some(index), Some(_)) => {
                RouteSocket::open_in(&self.host)?.link_by_index(index)?.map(|l| l.name)
            }
            _ => None,
        };
        let label = format!("{} in {}", at.ifname, at.netns);
        let socket = DhcpSocket::open_in(&ns, at.ifname)?;
        let exchange =
            Exchange { socket: &socket, mac, client_id: &client_id, previous, label: &label };
        let granted = exchange.acquire(timeout)?;
        let holder = CniHolder {
            container_id: at.container_id.to_string(),
            ifname: at.ifname.to_string(),
            netns: at.netns.to_string(),
            netns_dev: identity.id.dev,
            netns_ino: identity.id.ino,
            netns_cookie: identity.cookie,
            mac,
            parent,
        };
        let details = LeaseDetails {
            routers: granted.routers.clone(),
            dns: granted.dns.clone(),
            domain: granted.domain.clone(),
            resolv_conf: None,
        };
        let record = lease_record(client_id.clone(), None, &granted, &details, unix_now());
        let recorded = (|| -> Result<()> {
            let holder = serde_json::to_value(&holder).unwrap_or_default();
            let tx = self.store.write()?;
            tx.record_cni_dhcp_lease(&record, at.network, &holder)?;
            Ok(tx.commit()?)
        })();
        if let Err(e) = recorded {
            exchange.release(granted.address.addr(), granted.server, super::RELEASE_WAIT, false);
            return Err(e);
        }
        Ok(granted)
    }

    /// DEL: RELEASE of the lease of this container's interface, if it holds
    /// one, and the lease dropped. Returns whether there was one.
    pub fn cni_dhcp_del(&mut self, container_id: &str, ifname: &str) -> Result<bool> {
        let client_id = cni_client_id(container_id, ifname);
        let Some(hold) = self.store.read()?.cni_dhcp_hold(&client_id, 4)? else {
            return Ok(false);
        };
        self.give_back_cni(&hold)?;
        Ok(true)
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

    /// Whether this container's interface holds a DHCP lease.
    pub fn cni_dhcp_holds(&mut self, container_id: &str, ifname: &str) -> Result<bool> {
        let client_id = cni_client_id(container_id, ifname);
        Ok(self.store.read()?.cni_dhcp_hold(&client_id, 4)?.is_some())
    }

    /// Whether any CNI attachment holds a DHCP lease (the agent has work).
    pub fn cni_dhcp_holds_any(&mut self) -> Result<bool> {
        Ok(!self.store.read()?.cni_dhcp_holds()?.is_empty())
    }

    /// RELEASE of `hold` (from the container's link while it is there, else
    /// through the parent on its behalf), and its rows released.
    pub(crate) fn give_back_cni(&mut self, hold: &CniDhcpHold) -> Result<()> {
        let holder = CniHolder::of(hold)?;
        let lease = &hold.lease;
        if let (IpAddr::V4(address), IpAddr::V4(server)) = (lease.address.addr(), lease.server) {
            self.send_cni_release(&holder, &lease.client_id, address, server);
        }
        let tx = self.store.write()?;
        tx.release_cni_dhcp_lease(&lease.client_id, lease.family)?;
        tx.commit()?;
        Ok(())
    }

    fn send_cni_release(
        &self,
        holder: &CniHolder,
        client_id: &[u8],
        address: Ipv4Addr,
        server: Ipv4Addr,
    ) {
        let in_container =
            NetnsTarget::Path(holder.netns.clone().into()).open().ok().filter(|ns| {
                RouteSocket::open_in(ns).is_ok_and(|mut sock| {
                    holder.is_in(ns, &sock).unwrap_or(false)
                        && sock.link_by_name(&holder.ifname).is_ok_and(|l| l.is_some())
                })
            });
        let (mac, id) = (holder.mac, client_id);
        match (in_container, &holder.parent) {
            (Some(ns), _) => {
                send_release(&ns, &holder.ifname, mac, id, address, server, true);
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
