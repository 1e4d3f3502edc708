//! The DHCPv6 half of a CNI attachment's DHCP (`dhcp::cni`): the identity
//! (the host's DUID, an IAID hashed from container ID and interface name,
//! as the DHCPv4 client identifier's), and ADD's exchange on the link the
//! plugin made, through the same steps as `attach` ([`ask`](super::ask):
//! the attachment's own link-local, announced, then SOLICIT to REPLY). The
//! /128 goes on with the link plugin's configuration, not here; the lease
//! is recorded with its holder for the agent, or given back.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use nicslice_kernel::LinkBrief;
use nicslice_store::StoreRead;

use super::{Granted6, Identity6, Lookup6, RELEASE_WAIT, ask, host_duid, lease_record};
use crate::Engine;
use crate::dhcp::{identity, unix_now};
use crate::endpoint::Place;
use crate::error::Result;

/// The IAID of a CNI attachment (that of its DHCPv4 client identifier).
fn cni_iaid(container_id: &str, ifname: &str) -> u32 {
    identity::iaid("cni", container_id, ifname)
}

impl Engine {
    /// The DHCPv6 identity of a CNI attachment and the address it held
    /// last (asked for again).
    pub(in crate::dhcp) fn cni_lookup6(
        &mut self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Lookup6> {
        let duid = host_duid(self.store.path())?;
        let identity = Identity6 { duid, iaid: cni_iaid(container_id, ifname) };
        let last = self.store.read()?.dhcp_lease_of_client(&identity.key(), 6)?;
        let previous: Option<Ipv6Addr> = last.and_then(|l| match l.address.addr() {
            IpAddr::V6(ip) => Some(ip),
            IpAddr::V4(_) => None,
        });
        Ok(Lookup6 { identity, previous })
    }

    /// The attachment's DHCPv6 identity if this host has a DUID yet (none:
    /// no DHCPv6 lease was ever taken here, and none is made to look).
    pub(in crate::dhcp) fn cni_known_identity6(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<Identity6>> {
        let state = self.store.path();
        if !nicslice_store::host_duid_path(state).exists() {
            return Ok(None);
        }
        let duid = host_duid(state)?;
        Ok(Some(Identity6 { duid, iaid: cni_iaid(container_id, ifname) }))
    }

    /// ADD's DHCPv6 exchange on `link` (up) and the lease recorded for
    /// `network` with `holder`; given back if it cannot be recorded.
    pub(in crate::dhcp) fn cni_dhcp6_add(
        &mut self,
        network: &str,
        link: &LinkBrief,
        lookup: &Lookup6,
        place: &mut Place,
        holder: &serde_json::Value,
        timeout: Duration,
    ) -> Result<Granted6> {
        let asked = ask(link, lookup, timeout, place)?;
        let identity = &lookup.identity;
        let record = lease_record(identity, None, &asked.granted, None, unix_now());
        let recorded = (|| -> Result<()> {
            let tx = self.store.write()?;
            tx.record_cni_dhcp_lease(&record, network, holder)?;
            Ok(tx.commit()?)
        })();
        if let Err(e) = recorded {
            let granted = &asked.granted;
            asked.exchange(identity).release(granted.address, &granted.server_id, RELEASE_WAIT);
            return Err(e);
        }
        Ok(asked.granted)
    }
}
