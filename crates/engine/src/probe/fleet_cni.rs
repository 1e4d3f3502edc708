//! The CNI fleet pool's side of conflict probing (nicslice-ipam with
//! `"store": {"etcd": ...}` and `"probe"`): an answered address goes into
//! quarantine in the state database, still this host's (etcd's record goes
//! back to its spares with the next batch), and the attachment gets the
//! host's next spare, probed in turn. The state database is opened only when
//! someone answers.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use nicslice_kernel::Netns;
use nicslice_model::MacAddr;

use super::{Replace, who};
use crate::cni_fleet::CniFleetPool;
use crate::error::{EngineError, Result};
use crate::{Engine, Faults};

/// Replaces answered addresses of one CNI attachment from the fleet pool.
pub struct FleetCniClaim<'a> {
    /// nicslice's state database, which holds this host's part of the pool.
    pub state: PathBuf,
    pub pool: CniFleetPool<'a>,
    pub container_id: &'a str,
    pub ifname: &'a str,
    pub faults: Faults,
}

impl Replace for FleetCniClaim<'_> {
    fn replace(&mut self, _index: usize, address: IpNet, by: Option<MacAddr>) -> Result<IpNet> {
        let (ip, who): (IpAddr, String) = (address.addr(), who(by));
        let mut engine = Engine::open(&self.state, Netns::current()?, self.faults)?;
        tracing::info!("{ip} is already in use on the wire ({who} answered): quarantined");
        engine.cni_fleet_replace(&self.pool, self.container_id, self.ifname, ip, by).map_err(|e| {
            match e {
                EngineError::PoolExhausted(why) | EngineError::Store(nicslice_store::StoreError::FleetFull(why)) => {
                    EngineError::PoolExhausted(format!(
                        "{ip} is in use on the wire ({who} answered; quarantined) and this host has no other address: {why}"
                    ))
                }
                other => other,
            }
        })
    }
}
