//! Address allocation inside a `WriteTx`: loads the network, builds the
//! model's `Pool` and runs the model's allocator over `TxBook`. The policy
//! (order, reuse, what is reserved) is the model's; this only wires it up.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::net::IpAddr;

use nicslice_model::ValidNetwork;
use nicslice_model::ipam::{self, Pool, PoolId};
use rusqlite::{OptionalExtension, params};

use crate::book::TxBook;
use crate::error::Context;
use crate::{EndpointId, LeaseRecord, NetworkId, StoreError, StoreRead, WriteTx};

impl WriteTx<'_> {
    /// Leases an address of subnet `subnet_index` of `network` to `endpoint`
    /// (or to no one, as a reservation): exactly `ip` if given, else the next free one.
    pub fn allocate(
        &self,
        network: NetworkId,
        subnet_index: usize,
        ip: Option<IpAddr>,
        endpoint: Option<EndpointId>,
    ) -> Result<LeaseRecord, StoreError> {
        let valid = self.valid_network(network)?;
        if let Some(id) = endpoint {
            let record = self.endpoint(id)?.ok_or(StoreError::NoSuchEndpoint(id.0))?;
            if record.network_id != network {
                return Err(StoreError::EndpointNotInNetwork {
                    endpoint: id.0,
                    network: valid.name.to_string(),
                });
            }
        }
        let pool = self.pool(&valid, network, subnet_index)?;
        let ip = ipam::allocate(&pool, ip, &mut TxBook { conn: &self.tx }, endpoint)?;
        Ok(LeaseRecord {
            network_id: network,
            subnet_index,
            ip,
            subnet: pool.subnet(),
            gateway: pool.gateway(),
            endpoint_id: endpoint,
        })
    }

    /// Leases exactly `ip` of `pool`, the first subnet's of `network` as
    /// [`pool`](Self::pool) read it in this transaction, to no endpoint.
    pub(crate) fn allocate_unowned_in(
        &self,
        network: NetworkId,
        pool: &Pool,
        ip: IpAddr,
    ) -> Result<LeaseRecord, StoreError> {
        let ip = ipam::allocate(pool, Some(ip), &mut TxBook { conn: &self.tx }, None)?;
        Ok(LeaseRecord {
            network_id: network,
            subnet_index: 0,
            ip,
            subnet: pool.subnet(),
            gateway: pool.gateway(),
            endpoint_id: None,
        })
    }

    /// Releases `ip` in whichever subnet of `network` holds it. Returns whether it was leased.
    pub fn release_address(&self, network: NetworkId, ip: IpAddr) -> Result<bool, StoreError> {
        let valid = self.valid_network(network)?;
        let index = valid.subnets().iter().position(|s| s.subnet().contains(&ip));
        let Some(index) = index else { return Ok(false) };
        let pool = self.pool(&valid, network, index)?;
        ipam::release(&pool, ip, &mut TxBook { conn: &self.tx })
    }

    /// Releases every address leased to `endpoint`; returns them.
    pub fn release_endpoint_leases(&self, endpoint: EndpointId) -> Result<Vec<IpAddr>, StoreError> {
        let mut networks: BTreeMap<NetworkId, ValidNetwork> = BTreeMap::new();
        let mut released = Vec::new();
        for lease in self.leases_of(endpoint)? {
            let valid = match networks.entry(lease.network_id) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(self.valid_network(lease.network_id)?),
            };
            let pool = self.pool(valid, lease.network_id, lease.subnet_index)?;
            ipam::release(&pool, lease.ip, &mut TxBook { conn: &self.tx })?;
            released.push(lease.ip);
        }
        Ok(released)
    }

    fn valid_network(&self, id: NetworkId) -> Result<ValidNetwork, StoreError> {
        let record = self
            .network(id)?
            .ok_or_else(|| StoreError::NoSuchNetwork(format!("with id {}", id.0)))?;
        Ok(record.validate()?)
    }

    pub(crate) fn pool(
        &self,
        valid: &ValidNetwork,
        id: NetworkId,
        index: usize,
    ) -> Result<Pool, StoreError> {
        let no_subnet = || StoreError::NoSuchSubnet { network: valid.name.to_string(), index };
        let subnet = valid.subnet(index).ok_or_else(no_subnet)?;
        let db_index = i64::try_from(index).map_err(|_| no_subnet())?;
        let pool_id: i64 = self
            .tx
            .prepare_cached("SELECT id FROM pools WHERE network_id = ?1 AND subnet_index = ?2")
            .and_then(|mut s| s.query_row(params![id.0, db_index], |r| r.get(0)).optional())
            .ctx("reading an address pool")?
            .ok_or_else(no_subnet)?;
        Ok(Pool::new(PoolId(pool_id), valid.name.clone(), subnet))
    }
}
