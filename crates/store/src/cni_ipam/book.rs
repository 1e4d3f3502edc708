//! `LeaseBook` over the CNI lease database, inside one write transaction.
//! The pools a transaction touches are read once (`PoolRow`: their network,
//! subnet and high-water mark) and kept for its length, so each of the
//! allocator's lookups is one key.

use super::lmdb::{RoTxn, RwTxn};
use nicslice_model::ipam::{LeaseBook, PoolId};

use super::keys::{
    Bytes, FREED, Reader, freed_key, lease_key, lease_value, owner_key, pool_key, pool_value,
    read_lease_value,
};
use super::{CniOwner, Db};
use crate::StoreError;
use crate::error::Context;

/// One pool as this transaction knows it.
#[derive(Debug, Clone)]
pub(super) struct PoolRow {
    pub id: PoolId,
    pub network: String,
    pub subnet: String,
    pub high_water: u128,
}

impl PoolRow {
    fn write(&self, txn: &mut RwTxn<'_>, db: Db<'_>) -> Result<(), StoreError> {
        let value = pool_value(self.high_water, &self.network, &self.subnet)?;
        db.put(txn, &pool_key(self.id.0)?, &value).ctx("updating an address pool")
    }

    /// The lease key of `offset` in this pool's subnet.
    fn lease_key(&self, offset: u128) -> Result<Vec<u8>, StoreError> {
        lease_key(&self.network, &self.subnet, offset)
    }

    /// The owner index's key of `owner`'s lease of `offset` here.
    fn owner_key(&self, owner: &CniOwner, offset: u128) -> Result<Vec<u8>, StoreError> {
        owner_key(&owner.container_id, &owner.ifname, &self.network, &self.subnet, offset)
    }
}

/// The pools read so far in one transaction.
#[derive(Debug, Default)]
pub(super) struct PoolRows(Vec<PoolRow>);

impl PoolRows {
    /// The pool `id`, read from the database the first time it is asked for.
    pub fn get(&mut self, txn: &RoTxn<'_>, db: Db<'_>, id: PoolId) -> Result<PoolRow, StoreError> {
        if let Some(row) = self.0.iter().find(|r| r.id == id) {
            return Ok(row.clone());
        }
        let value = db
            .get(txn, &pool_key(id.0)?)
            .ctx("reading an address pool")?
            .ok_or_else(|| StoreError::corrupt(format!("pool {}", id.0)))?;
        let mut v = Reader::value(value);
        let high_water = v.offset()?;
        let row = PoolRow { id, high_water, network: v.text()?.into(), subnet: v.text()?.into() };
        self.0.push(row.clone());
        Ok(row)
    }

    /// Records a new pool, its walk not begun.
    pub fn create(
        &mut self,
        txn: &mut RwTxn<'_>,
        db: Db<'_>,
        id: PoolId,
        network: &str,
        subnet: &str,
    ) -> Result<(), StoreError> {
        let row = PoolRow { id, network: network.into(), subnet: subnet.into(), high_water: 0 };
        row.write(txn, db)?;
        self.0.push(row);
        Ok(())
    }
}

/// The model's lease book over one write transaction.
pub struct CniBook<'t, 'e> {
    pub(super) txn: &'t mut RwTxn<'e>,
    pub(super) db: Db<'e>,
    pub(super) pools: &'t mut PoolRows,
}

impl CniBook<'_, '_> {
    fn pool(&mut self, id: PoolId) -> Result<PoolRow, StoreError> {
        self.pools.get(self.txn, self.db, id)
    }
}

impl LeaseBook for CniBook<'_, '_> {
    type Owner = CniOwner;
    type Error = StoreError;

    /// Taken in any range of the pool's subnet, not only in this pool.
    fn is_leased(&mut self, pool: PoolId, offset: u128) -> Result<bool, StoreError> {
        let key = self.pool(pool)?.lease_key(offset)?;
        Ok(self.db.get(self.txn, &key).ctx("looking up a lease")?.is_some())
    }

    fn high_water(&mut self, pool: PoolId) -> Result<u128, StoreError> {
        Ok(self.pool(pool)?.high_water)
    }

    fn set_high_water(&mut self, pool: PoolId, offset: u128) -> Result<(), StoreError> {
        let mut row = self.pool(pool)?;
        row.high_water = offset;
        row.write(self.txn, self.db)?;
        if let Some(kept) = self.pools.0.iter_mut().find(|r| r.id == pool) {
            kept.high_water = offset;
        }
        Ok(())
    }

    /// The first key of the pool's released offsets is its lowest.
    fn pop_lowest_freed(&mut self, pool: PoolId) -> Result<Option<u128>, StoreError> {
        let prefix = Bytes::key(FREED).id(pool.0).done()?;
        let first = self
            .db
            .prefix_iter(self.txn, &prefix)
            .ctx("reusing a released address")?
            .next()
            .transpose()
            .ctx("reusing a released address")?
            .map(|(key, _)| key.to_vec());
        let Some(key) = first else { return Ok(None) };
        let mut k = Reader::key(&key);
        k.id()?;
        let offset = k.offset()?;
        self.db.delete(self.txn, &key).ctx("reusing a released address")?;
        Ok(Some(offset))
    }

    fn remove_freed(&mut self, pool: PoolId, offset: u128) -> Result<(), StoreError> {
        let key = freed_key(pool.0, offset)?;
        self.db.delete(self.txn, &key).ctx("updating released addresses")?;
        Ok(())
    }

    fn push_freed(&mut self, pool: PoolId, offset: u128) -> Result<(), StoreError> {
        let key = freed_key(pool.0, offset)?;
        self.db.put(self.txn, &key, &[]).ctx("recording a released address")
    }

    fn insert_lease(
        &mut self,
        pool: PoolId,
        offset: u128,
        owner: CniOwner,
    ) -> Result<(), StoreError> {
        let row = self.pool(pool)?;
        let key = row.lease_key(offset)?;
        let value = lease_value(pool.0, &owner.container_id, &owner.ifname)?;
        let by_owner = row.owner_key(&owner, offset)?;
        // The allocator asked `is_leased` first: an existing key is a bug, not a race.
        self.db.put_new(self.txn, &key, &value).ctx("recording a lease")?;
        self.db
            .put(self.txn, &by_owner, &Bytes::value().id(pool.0).into_vec())
            .ctx("recording a lease")
    }

    /// Only a lease of this pool (another range of the subnet may hold the address).
    fn remove_lease(&mut self, pool: PoolId, offset: u128) -> Result<bool, StoreError> {
        let row = self.pool(pool)?;
        let key = row.lease_key(offset)?;
        let Some(value) = self.db.get(self.txn, &key).ctx("removing a lease")? else {
            return Ok(false);
        };
        let (held_by_pool, container_id, ifname) = read_lease_value(value)?;
        if held_by_pool != pool.0 {
            return Ok(false);
        }
        let owner = CniOwner { container_id: container_id.into(), ifname: ifname.into() };
        let by_owner = row.owner_key(&owner, offset)?;
        self.db.delete(self.txn, &key).ctx("removing a lease")?;
        self.db.delete(self.txn, &by_owner).ctx("removing a lease")?;
        Ok(true)
    }
}
