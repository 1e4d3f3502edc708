//! `LeaseBook` over the CNI lease tables, inside one write transaction. The
//! pools a transaction touches are read once (`PoolRow`: their network,
//! subnet and high-water mark) and kept for its length, so the allocator's
//! lookups are each one keyed statement and the mark costs no second read.

use std::cell::RefCell;

use nicslice_model::ipam::{LeaseBook, PoolId};
use rusqlite::{Connection, OptionalExtension, params};

use super::CniOwner;
use crate::StoreError;
use crate::blob::{from_blob, to_blob};
use crate::error::Context;

/// One pool as this transaction knows it.
#[derive(Debug, Clone)]
pub(super) struct PoolRow {
    pub id: PoolId,
    pub network: String,
    pub subnet: String,
    pub high_water: u128,
}

/// The pools read so far in one transaction.
#[derive(Debug, Default)]
pub(super) struct PoolRows(RefCell<Vec<PoolRow>>);

impl PoolRows {
    pub fn remember(&self, row: PoolRow) {
        let mut rows = self.0.borrow_mut();
        rows.retain(|r| r.id != row.id);
        rows.push(row);
    }

    /// The pool `id`, read from the database the first time it is asked for.
    fn get(&self, conn: &Connection, id: PoolId) -> Result<PoolRow, StoreError> {
        if let Some(row) = self.0.borrow().iter().find(|r| r.id == id) {
            return Ok(row.clone());
        }
        let read: Option<(String, String, Vec<u8>)> = conn
            .prepare_cached("SELECT network, subnet, high_water FROM pools WHERE id = ?1")
            .and_then(|mut s| s.query_row([id.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
            .optional()
            .ctx("reading an address pool")?;
        let (network, subnet, mark) =
            read.ok_or_else(|| StoreError::corrupt(format!("pool {}", id.0)))?;
        let row = PoolRow { id, network, subnet, high_water: from_blob(&mark)? };
        self.remember(row.clone());
        Ok(row)
    }

    fn set_high_water(&self, id: PoolId, offset: u128) {
        if let Some(row) = self.0.borrow_mut().iter_mut().find(|r| r.id == id) {
            row.high_water = offset;
        }
    }
}

/// The model's lease book over one write transaction.
pub struct CniBook<'a> {
    pub(super) conn: &'a Connection,
    pub(super) pools: &'a PoolRows,
}

impl LeaseBook for CniBook<'_> {
    type Owner = CniOwner;
    type Error = StoreError;

    /// Taken in any range of the pool's subnet, not only in this pool.
    fn is_leased(&mut self, pool: PoolId, offset: u128) -> Result<bool, StoreError> {
        let p = self.pools.get(self.conn, pool)?;
        self.conn
            .prepare_cached(
                "SELECT 1 FROM leases WHERE network = ?1 AND subnet = ?2 AND ip_offset = ?3",
            )
            .and_then(|mut s| s.exists(params![p.network, p.subnet, to_blob(offset).as_slice()]))
            .ctx("looking up a lease")
    }

    fn high_water(&mut self, pool: PoolId) -> Result<u128, StoreError> {
        Ok(self.pools.get(self.conn, pool)?.high_water)
    }

    fn set_high_water(&mut self, pool: PoolId, offset: u128) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE pools SET high_water = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![pool.0, to_blob(offset).as_slice()]))
            .ctx("updating an address pool")?;
        self.pools.set_high_water(pool, offset);
        Ok(())
    }

    fn pop_lowest_freed(&mut self, pool: PoolId) -> Result<Option<u128>, StoreError> {
        crate::freed::pop_lowest(self.conn, pool)
    }

    fn remove_freed(&mut self, pool: PoolId, offset: u128) -> Result<(), StoreError> {
        crate::freed::remove(self.conn, pool, offset)
    }

    fn push_freed(&mut self, pool: PoolId, offset: u128) -> Result<(), StoreError> {
        crate::freed::push(self.conn, pool, offset)
    }

    fn insert_lease(
        &mut self,
        pool: PoolId,
        offset: u128,
        owner: CniOwner,
    ) -> Result<(), StoreError> {
        let p = self.pools.get(self.conn, pool)?;
        self.conn
            .prepare_cached(
                "INSERT INTO leases (network, subnet, ip_offset, pool_id, container_id, ifname) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    p.network,
                    p.subnet,
                    to_blob(offset).as_slice(),
                    pool.0,
                    owner.container_id,
                    owner.ifname
                ])
            })
            .ctx("recording a lease")?;
        Ok(())
    }

    fn remove_lease(&mut self, pool: PoolId, offset: u128) -> Result<bool, StoreError> {
        let p = self.pools.get(self.conn, pool)?;
        let n = self
            .conn
            .prepare_cached(
                "DELETE FROM leases WHERE network = ?1 AND subnet = ?2 AND ip_offset = ?3 \
                 AND pool_id = ?4",
            )
            .and_then(|mut s| {
                s.execute(params![p.network, p.subnet, to_blob(offset).as_slice(), pool.0])
            })
            .ctx("removing a lease")?;
        Ok(n > 0)
    }
}
