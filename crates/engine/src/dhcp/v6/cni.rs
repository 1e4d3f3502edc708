//! The DHCPv6 half of a CNI attachment's DHCP (`dhcp::cni`): the identity
//! (the host's DUID, an IAID hashed from container ID and interface name,
//! as the DHCPv4 client identifier's), and ADD's exchange on the link the
//! plugin made, through the same steps as `attach` ([`ask`](super::ask):
//! the attachment's own link-local, announced, then SOLICIT to REPLY). The
//! /128 goes on with the link plugin's configuration, not here; the lease
//! is recorded with its holder for the agent, or given back.
//!
//! A lease the agent lost is asked for again here too ([`Engine::reacquire_cni6`],
//! driven by `cni_retry` with DHCPv4's backoff): the same DUID and IAID,
//! the address it held asked for, the /128 put on by `realize` (with the
//! lease's lifetime, announced: what the link plugin put on at ADD; IA_NA
//! names no router, and the RA's routes never depended on the /128), and
//! recorded as ADD records it ([`record_cni6`]), its holder row's retry
//! state cleared, in one transaction.

use std::time::Duration;

use ipnet::IpNet;
use nicslice_kernel::{LinkBrief, Netns};
use nicslice_store::{CniDhcpHold, StoreRead, WriteTx};

use super::{Granted6, Identity6, Lookup6, RELEASE_WAIT, ask, host_duid, lease_record, regain};
use crate::Engine;
use crate::dhcp::cni::CniHolder;
use crate::dhcp::{DhcpRequest, identity, unix_now};
use crate::endpoint::Place;
use crate::error::{EngineError, Result};
use crate::undo::UndoLog;

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
        let previous = last.as_ref().and_then(crate::dhcp::held_v6);
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
        let recorded = (|| -> Result<()> {
            let tx = self.store.write()?;
            record_cni6(&tx, identity, &asked.granted, network, holder)?;
            Ok(tx.commit()?)
        })();
        if let Err(e) = recorded {
            let granted = &asked.granted;
            asked.exchange(identity).release(granted.address, &granted.server_id, RELEASE_WAIT);
            return Err(e);
        }
        Ok(asked.granted)
    }

    /// The agent's try for the lost DHCPv6 lease of the CNI attachment of
    /// `hold` (its link `holder.ifname` in `ns`): SOLICIT to REPLY under the
    /// same DUID and IAID asking for the address it held, the /128 put on
    /// (`realize`), then recorded with its holder row, the retry state
    /// cleared. Taken off and given back if it cannot be recorded;
    /// `NotFound` when the attachment was deleted meanwhile.
    pub(in crate::dhcp) fn reacquire_cni6(
        &mut self,
        hold: &CniDhcpHold,
        holder: &CniHolder,
        ns: Netns,
        timeout: Duration,
    ) -> Result<IpNet> {
        let last = &hold.lease;
        let mut place = Place::between(&self.host, ns)?;
        let mut undo = UndoLog::default();
        let req = DhcpRequest { client_id: None, timeout };
        // No conflict probing: ADD put the address on without.
        let held = match regain(last, &holder.ifname, &req, None, &mut place, &mut undo) {
            Ok(held) => held,
            Err(e) => return Err(place.abort(undo, e)),
        };
        let recorded = (|| -> Result<()> {
            let tx = self.store.write()?;
            if tx.cni_dhcp_hold(&last.client_id, 6)?.is_none() {
                return Err(EngineError::NotFound("its attachment was deleted meanwhile".into()));
            }
            record_cni6(&tx, &held.identity, &held.granted, &hold.network, &hold.holder)?;
            Ok(tx.commit()?)
        })();
        if let Err(e) = recorded {
            let e = place.abort(undo, e);
            held.give_back(&place.target_ns);
            return Err(e);
        }
        undo.commit();
        Ok(held.address())
    }
}

/// Records `granted` to `identity` as held by a CNI attachment of
/// `network` (`holder`: its holder row, any retry state cleared) in `tx`,
/// replacing the lease it held before: what ADD records, and what the agent
/// records for a lease it got again.
fn record_cni6(
    tx: &WriteTx<'_>,
    identity: &Identity6,
    granted: &Granted6,
    network: &str,
    holder: &serde_json::Value,
) -> Result<()> {
    // No resolv.conf: for CNI the runtime gets the DNS servers in the result.
    let record = lease_record(identity, None, granted, None, unix_now());
    tx.record_cni_dhcp_lease(&record, network, holder)?;
    Ok(())
}
