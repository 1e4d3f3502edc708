//! The fleet pool's step that needs the wire (issue 14): when a host's
//! pool runs out, the addresses of hosts dead past the network's cool-down
//! are probed from the parent, all at once with one timeout (IPv4: RFC 5227
//! probes, sender 0.0.0.0; IPv6: neighbour solicitations in DAD form,
//! source `::`; neither needs an address on the parent nor a scratch link),
//! and those no one answers become this host's spares; an answered one
//! stays in the dead host's name, reported with the MAC that answered
//! (`network inspect`). Also: writing the batch of etcd records a release
//! made due.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use nicslice_kernel::address_claim::AddressProbe;
use nicslice_store::fleet::PendingClaim;
use nicslice_store::{NetworkId, NetworkRecord, StoreError};

use crate::Engine;
use crate::endpoint::{ParentRef, Place};
use crate::error::{EngineError, Result};

/// How long a dead host's addresses are asked for when the network does
/// not probe for conflicts (RFC 5227's PROBE_WAIT is a second).
const RECLAIM_PROBE: Duration = Duration::from_secs(1);
/// Probes per address (RFC 5227 sends three; RFC 4862's DAD one, but a
/// lost solicitation must not hand out an address in use).
const PROBES: u32 = 3;

impl Engine {
    /// Takes back what dead hosts of fleet network `record` hold past the
    /// cool-down and no one answers, probing from `parent` (in `place`'s
    /// host namespace); `full` says why it was needed. How many addresses
    /// it took; refused, saying when the next cool-down ends, when none.
    pub(crate) fn reclaim_fleet(
        &mut self,
        record: &NetworkRecord,
        place: &mut Place,
        parent: &ParentRef,
        full: &str,
    ) -> Result<usize> {
        let reclaim = nicslice_store::fleet::reclaimable(&self.store, record)?;
        let nothing = |more: &str| {
            let later = reclaim.next_in_s.map_or(String::new(), |s| {
                format!("; addresses of hosts whose lease expired return in {s} s if no one answers them on the wire")
            });
            EngineError::Refused(format!("{full}{more}{later}"))
        };
        let targets: Vec<IpAddr> = reclaim.candidates.iter().map(|c| c.ip).collect();
        if targets.is_empty() {
            return Err(nothing(""));
        }
        let mac = place.host.link_by_index(parent.index)?.and_then(|l| l.mac).ok_or_else(|| {
            EngineError::Invalid(format!("parent {} has no MAC to probe from", parent.name))
        })?;
        let timeout = record.spec.probe.map_or(RECLAIM_PROBE, |p| p.timeout());
        let heard = AddressProbe::open_for(&self.host, parent.index, mac, &targets)?
            .probe_many(&targets, PROBES, timeout)?;
        let answered: BTreeMap<IpAddr, String> =
            heard.iter().map(|(ip, mac)| (*ip, mac.to_string())).collect();
        let unanswered: Vec<IpAddr> =
            targets.into_iter().filter(|ip| !answered.contains_key(ip)).collect();
        let taken = reclaim.take_back(&unanswered, &answered)?;
        if taken.is_empty() {
            return Err(nothing(&format!(
                "; {} address(es) of dead hosts answer on the wire and stay theirs",
                answered.len()
            )));
        }
        let tx = self.store.write()?;
        tx.fleet_add_spares(record.id, &taken)?;
        tx.commit()?;
        Ok(taken.len())
    }
}

impl Engine {
    /// Writes `batch`, the notes of fleet network `network` a committed
    /// release made due, and forgets those written (and the addresses etcd
    /// records for another host). A failure costs a warning: the notes
    /// wait for the next batch, and the release stands.
    pub(crate) fn write_fleet_batch(&mut self, network: NetworkId, batch: PendingClaim) {
        let written = batch.record().and_then(|done| {
            let tx = self.store.write()?;
            tx.fleet_recorded(&done)?;
            for ip in &done.foreign {
                tracing::warn!(%ip, "etcd records this address for another host: forgotten here");
                tx.fleet_forget(network, *ip)?;
            }
            tx.commit()
        });
        if let Err(e) = written {
            let e: StoreError = e;
            tracing::warn!("this host's latest fleet records wait in etcd for a later batch: {e}");
        }
    }
}
