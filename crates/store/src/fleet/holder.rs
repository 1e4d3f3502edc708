//! Who an address of a fleet network is leased to: a CLI endpoint (its
//! lease names the endpoint row) or a CNI attachment (a lease with no
//! endpoint, held by a `fleet_cni_holders` row). The allocator asks the
//! holder for its owner key in etcd and for its local lease; nothing else
//! about the holder matters to it.

use std::net::IpAddr;

use nicslice_model::ipam::Pool;
use rusqlite::params;

use super::Keys;
use crate::error::Context;
use crate::{EndpointId, LeaseRecord, NetworkId, StoreError, StoreRead, WriteTx};

/// The holder of one fleet address.
#[derive(Debug, Clone, Copy)]
pub enum FleetHolder<'a> {
    /// A CLI endpoint (`nicslice attach`).
    Endpoint(EndpointId),
    /// A CNI attachment of CNI network `network` (the pool's `cni:` row).
    Cni { network: &'a str, container_id: &'a str, ifname: &'a str },
}

impl From<EndpointId> for FleetHolder<'_> {
    fn from(id: EndpointId) -> Self {
        FleetHolder::Endpoint(id)
    }
}

impl FleetHolder<'_> {
    /// The key naming this holder in etcd, for `host`.
    pub(super) fn owner_key(
        &self,
        tx: &WriteTx<'_>,
        keys: &Keys,
        host: &str,
    ) -> Result<Vec<u8>, StoreError> {
        match *self {
            FleetHolder::Endpoint(id) => {
                let ep = tx.endpoint(id)?.ok_or(StoreError::NoSuchEndpoint(id.0))?;
                Ok(keys.cli_owner(host, &ep))
            }
            FleetHolder::Cni { container_id, ifname, .. } => {
                Ok(keys.cni_owner(host, container_id, ifname))
            }
        }
    }

    /// Leases `ip` of `network` (its pool `pool`) to this holder in the
    /// host's state.
    pub(super) fn lease(
        &self,
        tx: &WriteTx<'_>,
        network: NetworkId,
        pool: &Pool,
        ip: IpAddr,
    ) -> Result<LeaseRecord, StoreError> {
        match *self {
            FleetHolder::Endpoint(id) => tx.allocate(network, 0, Some(ip), Some(id)),
            FleetHolder::Cni { network: name, container_id, ifname } => {
                let lease = tx.allocate_unowned_in(network, pool, ip)?;
                tx.tx
                    .prepare_cached(
                        "INSERT INTO fleet_cni_holders (network, container_id, ifname, network_id, ip) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![name, container_id, ifname, network.0, ip.to_string()])
                    })
                    .ctx("recording a CNI attachment's fleet address")?;
                Ok(lease)
            }
        }
    }
}
