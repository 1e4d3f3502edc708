//! The CLI's side of conflict probing: answered addresses quarantined in
//! state.db inside the attach's transaction, kept after a failed attach (its
//! transaction is rolled back), and returned to the pool after the
//! network's cool-down.

use std::cell::RefCell;
use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_model::{MacAddr, ProbeSpec};
use nicslice_store::{EndpointId, LeaseRecord, NetworkId, Store, WriteTx};

use super::{Replace, who};
use crate::error::{EngineError, Result};

/// Replaces answered addresses of one attach: `leases` in the order of the
/// plan's addresses.
pub struct StateDbClaim<'a, 'tx> {
    pub tx: &'a WriteTx<'tx>,
    pub network: NetworkId,
    pub endpoint: EndpointId,
    pub leases: &'a mut [LeaseRecord],
    /// Addresses the user named: refused when answered, never replaced.
    pub fixed: &'a [IpAddr],
    /// A fleet network (`--ipam etcd`): the replacement is this host's next
    /// spare.
    pub fleet: bool,
    /// Every address answered, for [`keep_after_failure`].
    pub answered: &'a Answered,
}

/// The addresses someone answered for: (subnet index, address, who).
#[derive(Debug, Default)]
pub struct Answered(RefCell<Vec<(usize, IpAddr, Option<MacAddr>)>>);

impl Replace for StateDbClaim<'_, '_> {
    fn replace(&mut self, index: usize, address: IpNet, by: Option<MacAddr>) -> Result<IpNet> {
        let who = who(by);
        let ip = address.addr();
        if self.fixed.contains(&ip) {
            return Err(EngineError::AddressInUse(format!(
                "{ip} is already in use on the wire: {who} answered for it; choose another address"
            )));
        }
        let lease =
            self.leases.get_mut(index).filter(|l| l.ip == ip).ok_or_else(|| {
                EngineError::Invalid(format!("{ip} is not the lease being claimed"))
            })?;
        // Not a warning: a front end prints one line for a failed command,
        // and `network inspect` lists what was quarantined.
        tracing::info!(
            "{ip} is already in use on the wire ({who} answered): quarantined, taking the next free address"
        );
        self.answered.0.borrow_mut().push((lease.subnet_index, ip, by));
        self.tx.quarantine(lease, by)?;
        let subnet = lease.subnet;
        let next = match self.fleet {
            // Its etcd record is noted, written with the next batch.
            true => self.tx.fleet_allocate(self.network, self.endpoint).map(|(next, _batch)| next),
            false => self.tx.allocate(self.network, lease.subnet_index, None, Some(self.endpoint)),
        };
        *lease = next.map_err(|e| {
                EngineError::PoolExhausted(format!(
                    "{ip} is in use on the wire ({who} answered) and no other address of {subnet} is free: {e}"
                ))
            })?;
        Ok(lease.address())
    }
}

/// After a failed attach: quarantines again, in a transaction of their own,
/// the addresses answered during it (the attach's own transaction was rolled
/// back). Best effort: a failure here is logged, and the attach's error
/// stands.
pub fn keep_after_failure(store: &mut Store, network: NetworkId, answered: &Answered) {
    let answered = answered.0.borrow();
    if answered.is_empty() {
        return;
    }
    let kept = (|| -> Result<(), nicslice_store::StoreError> {
        let tx = store.write()?;
        for (subnet_index, ip, by) in answered.iter() {
            tx.quarantine_address(network, *subnet_index, *ip, *by)?;
        }
        tx.commit()
    })();
    if let Err(e) = kept {
        tracing::warn!("could not keep the quarantine of the failed attach: {e}");
    }
}

/// Returns to the pool the addresses of `network` whose cool-down is over;
/// run before allocating, so they are probed again rather than skipped.
pub fn release_cooled(tx: &WriteTx<'_>, network: NetworkId, probe: ProbeSpec) -> Result<()> {
    for ip in tx.release_quarantine(network, probe.cooldown_s)? {
        tracing::info!(%ip, "quarantine over: the address returns to the pool");
    }
    Ok(())
}
