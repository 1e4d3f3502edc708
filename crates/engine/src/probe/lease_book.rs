//! The CNI plugins' side of conflict probing. With nicslice-ipam, an
//! answered address is quarantined in the CNI lease database and the next
//! address of the same range is leased to the same attachment in its
//! place, each in a transaction of its own (the quarantine outlives an ADD
//! that fails later; that ADD's IPAM DEL releases only the attachment's own
//! leases). With any other IPAM plugin nicslice cannot ask for another
//! address: the ADD is refused, naming who answered.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use nicslice_model::MacAddr;
use nicslice_model::ipam::AddressRange;
use nicslice_store::cni_ipam::{CniIpamStore, CniOwner};

use super::{Replace, who};
use crate::error::{EngineError, Result};
use crate::ranges;

/// Replaces answered addresses through nicslice-ipam's lease database.
pub struct LeaseBookClaim<'a> {
    /// The lease database, opened only when someone answers.
    pub store: PathBuf,
    pub network: &'a str,
    pub owner: CniOwner,
    pub range_sets: &'a [Vec<AddressRange>],
    /// Addresses the runtime asked for (`IP`, `ips`): refused when
    /// answered, never replaced.
    pub fixed: &'a [IpAddr],
}

impl Replace for LeaseBookClaim<'_> {
    fn replace(&mut self, _index: usize, address: IpNet, by: Option<MacAddr>) -> Result<IpNet> {
        let (ip, who) = (address.addr(), who(by));
        if self.fixed.contains(&ip) {
            return Err(EngineError::AddressInUse(format!(
                "requested IP address {ip} is already in use on the wire: {who} answered for it"
            )));
        }
        let range = self.range_sets.iter().flatten().find(|r| r.contains(ip)).ok_or_else(|| {
            EngineError::Invalid(format!("{ip} is in no range of the ipam configuration"))
        })?;
        let mut store = CniIpamStore::open(&self.store)?;
        let mut tx = store.write()?;
        if !tx.quarantine(self.network, &self.owner, ip, by)? {
            return Err(EngineError::Invalid(format!(
                "{ip} is not leased to container {} interface {} in network {}",
                self.owner.container_id, self.owner.ifname, self.network
            )));
        }
        tracing::info!("{ip} is already in use on the wire ({who} answered): quarantined");
        // Committed even when no other address is free: the quarantine stands.
        let next =
            ranges::allocate(&mut tx, self.network, &[vec![range.clone()]], &self.owner, &[]);
        tx.commit()?;
        let next = next.map_err(|e| {
            EngineError::PoolExhausted(format!(
                "{ip} is in use on the wire ({who} answered; quarantined) and no other address of range {range} is free: {e}"
            ))
        })?;
        next.first().map(|l| l.address).ok_or_else(|| {
            EngineError::PoolExhausted(format!("no address of range {range} is free"))
        })
    }
}

/// Refuses an answered address: the IPAM plugin is not nicslice's, and
/// cannot be asked for another.
pub struct RefuseAnswered<'a> {
    /// The IPAM plugin's type, for the message.
    pub ipam: &'a str,
}

impl Replace for RefuseAnswered<'_> {
    fn replace(&mut self, _index: usize, address: IpNet, by: Option<MacAddr>) -> Result<IpNet> {
        Err(EngineError::AddressInUse(format!(
            "{} (from IPAM plugin {}) is already in use on the wire: {} answered for it; with nicslice-ipam it would be quarantined and the next address used",
            address.addr(),
            self.ipam,
            who(by)
        )))
    }
}
