//! The fleet pool for CNI attachments (nicslice-ipam with `"store":
//! {"etcd": ...}): ADD, DEL, CHECK and GC over the allocator of `--ipam
//! etcd` networks (`nicslice_store::fleet`), in nicslice's state database.
//! The CNI network's name and subnet make a pool of this host (a hidden
//! network row, made by the first ADD); each attachment's address is held
//! under (container ID, interface). ADD commits one of this host's spares,
//! noting that etcd's record of it is to become the attachment's; DEL and
//! GC release it, noting that the record goes back to this host's spares.
//! The call that brings the host's notes to a multiple of 16 writes them
//! all in one batch, after the commit (the others make no etcd round trip:
//! `nicslice_store::fleet`). No link is touched here: the link plugin puts
//! the address on its link.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_model::{
    Driver, FleetSpec, IfName, Ipam, MacvlanMode, NetworkName, NetworkSpec, SubnetSpec,
    ValidNetwork,
};
use nicslice_store::StoreError;
use nicslice_store::fleet::{CniFleetHold, FleetHolder};

use crate::Engine;
use crate::error::{EngineError, Result};

/// A CNI network's fleet pool as its configuration gives it.
#[derive(Debug, Clone)]
pub struct CniFleetPool<'a> {
    /// The CNI network's name (also the pool's name in etcd).
    pub network: &'a str,
    /// Its one subnet: gateway and automatic range as configured.
    pub subnet: SubnetSpec,
    pub fleet: FleetSpec,
    /// With conflict probing (`"probe"`), the cool-down after which an
    /// answered address returns to the pool.
    pub quarantine_s: Option<u64>,
}

/// How many times ADD takes another spare when etcd records the one it took
/// for another host (this host's list of its addresses was wrong about it).
const CLAIM_TRIES: usize = 3;

impl CniFleetPool<'_> {
    /// The pool as a fleet network, checked by the model's rules. A pool
    /// has no link of its own: the parent is a placeholder no code uses.
    fn validate(&self) -> Result<ValidNetwork> {
        let name = NetworkName::new(self.network)?;
        let mut spec =
            NetworkSpec::new(name, Driver::Macvlan, IfName::new("cni")?, MacvlanMode::Bridge);
        spec.subnets = vec![self.subnet.clone()];
        spec.ipam = Ipam::Etcd;
        spec.fleet = Some(self.fleet.clone());
        Ok(spec.validate()?)
    }
}

impl Engine {
    /// ADD: an address of `pool` for attachment (`container_id`,
    /// `ifname`), recorded in etcd as the attachment's when etcd answers.
    /// Refused when the attachment holds one already.
    pub fn cni_fleet_add(
        &mut self,
        pool: &CniFleetPool<'_>,
        container_id: &str,
        ifname: &str,
    ) -> Result<IpNet> {
        let valid = pool.validate()?;
        let holder = FleetHolder::Cni { network: pool.network, container_id, ifname };
        for _ in 0..CLAIM_TRIES {
            let tx = self.store.write()?;
            if let Some(held) = tx.cni_fleet_hold(pool.network, container_id, ifname)? {
                return Err(EngineError::AddressInUse(format!(
                    "{} has been allocated to {container_id} interface {ifname} in network {}, duplicate allocation is not allowed",
                    held.ip, pool.network
                )));
            }
            let record = tx.cni_fleet_pool(&valid)?;
            let network = record.id;
            if let Some(cooldown_s) = pool.quarantine_s {
                // Probed again rather than skipped once their cool-down is over.
                for ip in tx.release_quarantine(network, cooldown_s)? {
                    tracing::info!(%ip, "quarantine over: the address returns to the pool");
                }
            }
            let (lease, claim) = tx.fleet_allocate_in(&record, holder)?;
            tx.commit()?;
            let Some(claim) = claim else { return Ok(lease.address()) };
            // An allocation that brings the notes to a multiple of 16 writes
            // the records noted since (this one's and others'), and the
            // give-backs: the notes of those written go; an address etcd
            // records for another host is forgotten here.
            let recorded = match claim.record() {
                Ok(recorded) => recorded,
                // The address is this host's spare all the same.
                Err(e) => {
                    tracing::warn!(ip = %lease.ip, "etcd did not record the address's owner: {e}");
                    return Ok(lease.address());
                }
            };
            let tx = self.store.write()?;
            tx.fleet_recorded(&recorded)?;
            for other in recorded.foreign.iter().filter(|ip| **ip != lease.ip) {
                tracing::warn!(ip = %other, "etcd records this address for another host: forgotten here");
                tx.fleet_forget(network, *other)?;
            }
            if !recorded.foreign.contains(&lease.ip) {
                tx.commit()?;
                return Ok(lease.address());
            }
            tracing::warn!(ip = %lease.ip, "etcd records this address for another host: taking another");
            if let Some(held) = tx.cni_fleet_hold(pool.network, container_id, ifname)? {
                tx.cni_fleet_release(&held)?;
            }
            tx.fleet_forget(network, lease.ip)?;
            tx.commit()?;
        }
        Err(EngineError::Store(StoreError::Etcd(format!(
            "network {}: etcd records {CLAIM_TRIES} addresses this host took as another host's; try again",
            pool.network
        ))))
    }

    /// ADD with `"probe"`, when someone on the wire answered for `answered`,
    /// the address attachment (`container_id`, `ifname`) was given: it goes
    /// into quarantine (still this host's, out of the pool for the
    /// cool-down), and the attachment gets this host's next spare.
    pub fn cni_fleet_replace(
        &mut self,
        pool: &CniFleetPool<'_>,
        container_id: &str,
        ifname: &str,
        answered: IpAddr,
        answered_by: Option<nicslice_model::MacAddr>,
    ) -> Result<IpNet> {
        let tx = self.store.write()?;
        let hold = tx
            .cni_fleet_hold(pool.network, container_id, ifname)?
            .filter(|h| h.ip == answered)
            .ok_or_else(|| {
                EngineError::Invalid(format!(
                    "{answered} is not held by container {container_id} interface {ifname} in network {}",
                    pool.network
                ))
            })?;
        let batch = match tx.cni_fleet_quarantine(&hold, answered_by)? {
            true => tx.fleet_batch(hold.network_id)?,
            false => None,
        };
        // Committed even when no other address is free: the quarantine stands.
        tx.commit()?;
        if let Some(batch) = batch {
            self.write_fleet_batch(hold.network_id, batch);
        }
        self.cni_fleet_add(pool, container_id, ifname)
    }

    /// DEL: releases the address of attachment (`container_id`, `ifname`)
    /// of CNI network `network`, if it holds one; returns it.
    pub fn cni_fleet_del(
        &mut self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<IpAddr>> {
        let tx = self.store.write()?;
        let Some(hold) = tx.cni_fleet_hold(network, container_id, ifname)? else {
            return Ok(None);
        };
        let batch = match tx.cni_fleet_release(&hold)? {
            true => tx.fleet_batch(hold.network_id)?,
            false => None,
        };
        tx.commit()?;
        if let Some(batch) = batch {
            self.write_fleet_batch(hold.network_id, batch);
        }
        Ok(Some(hold.ip))
    }

    /// CHECK: the address attachment (`container_id`, `ifname`) of CNI
    /// network `network` holds, if any.
    pub fn cni_fleet_holds(
        &mut self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<IpAddr>> {
        Ok(self.store.cni_fleet_hold(network, container_id, ifname)?.map(|h| h.ip))
    }

    /// GC: releases every address of CNI network `network` whose attachment
    /// `keep` does not name (container ID, interface). Returns how many.
    pub fn cni_fleet_gc(
        &mut self,
        network: &str,
        keep: impl Fn(&str, &str) -> bool,
    ) -> Result<usize> {
        let tx = self.store.write()?;
        let gone: Vec<CniFleetHold> = tx
            .cni_fleet_holds(network)?
            .into_iter()
            .filter(|h| !keep(&h.container_id, &h.ifname))
            .collect();
        let mut due = BTreeSet::new();
        for hold in &gone {
            if tx.cni_fleet_release(hold)? {
                due.insert(hold.network_id);
            }
        }
        let mut batches = Vec::new();
        for network in due {
            batches.extend(tx.fleet_batch(network)?.map(|b| (network, b)));
        }
        tx.commit()?;
        for (network, batch) in batches {
            self.write_fleet_batch(network, batch);
        }
        Ok(gone.len())
    }
}
