//! The model's `LeaseBook` over state.db's tables `pools`, `leases` and
//! `freed` (released offsets below a pool's high-water mark, reused lowest
//! first), used inside one write transaction. Each operation is one indexed
//! statement.

use nicslice_model::ipam::{LeaseBook, PoolId};
use rusqlite::{Connection, OptionalExtension, params};

use crate::blob::{from_blob, to_blob};
use crate::error::Context;
use crate::{EndpointId, StoreError};

pub(crate) struct TxBook<'a> {
    pub conn: &'a Connection,
}

impl LeaseBook for TxBook<'_> {
    type Owner = Option<EndpointId>;
    type Error = StoreError;

    fn is_leased(&mut self, pool: PoolId, offset: u128) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached("SELECT 1 FROM leases WHERE pool_id = ?1 AND ip_offset = ?2")
            .and_then(|mut s| s.exists(params![pool.0, to_blob(offset).as_slice()]))
            .ctx("looking up a lease")
    }

    fn high_water(&mut self, pool: PoolId) -> Result<u128, StoreError> {
        let blob: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT high_water FROM pools WHERE id = ?1")
            .and_then(|mut s| s.query_row([pool.0], |r| r.get(0)).optional())
            .ctx("reading an address pool")?;
        let blob =
            blob.ok_or_else(|| StoreError::corrupt(format!("reference to pool {}", pool.0)))?;
        from_blob(&blob)
    }

    fn set_high_water(&mut self, pool: PoolId, offset: u128) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE pools SET high_water = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![pool.0, to_blob(offset).as_slice()]))
            .ctx("updating an address pool")?;
        Ok(())
    }

    /// Two plain statements (the key's first entry, then its delete) compile
    /// to a third of the instructions of one DELETE with a subquery and
    /// RETURNING.
    fn pop_lowest_freed(&mut self, pool: PoolId) -> Result<Option<u128>, StoreError> {
        let blob: Option<Vec<u8>> = self
            .conn
            .prepare_cached(
                "SELECT ip_offset FROM freed WHERE pool_id = ?1 ORDER BY ip_offset LIMIT 1",
            )
            .and_then(|mut s| s.query_row([pool.0], |r| r.get(0)).optional())
            .ctx("reusing a released address")?;
        let Some(blob) = blob else { return Ok(None) };
        let offset = from_blob(&blob)?;
        self.remove_freed(pool, offset)?;
        Ok(Some(offset))
    }

    fn remove_freed(&mut self, pool: PoolId, offset: u128) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM freed WHERE pool_id = ?1 AND ip_offset = ?2")
            .and_then(|mut s| s.execute(params![pool.0, to_blob(offset).as_slice()]))
            .ctx("updating released addresses")?;
        Ok(())
    }

    fn push_freed(&mut self, pool: PoolId, offset: u128) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO freed (pool_id, ip_offset) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![pool.0, to_blob(offset).as_slice()]))
            .ctx("recording a released address")?;
        Ok(())
    }

    fn insert_lease(
        &mut self,
        pool: PoolId,
        offset: u128,
        owner: Option<EndpointId>,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO leases (pool_id, ip_offset, endpoint_id) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| {
                s.execute(params![pool.0, to_blob(offset).as_slice(), owner.map(|o| o.0)])
            })
            .ctx("recording a lease")?;
        Ok(())
    }

    fn remove_lease(&mut self, pool: PoolId, offset: u128) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM leases WHERE pool_id = ?1 AND ip_offset = ?2")
            .and_then(|mut s| s.execute(params![pool.0, to_blob(offset).as_slice()]))
            .ctx("removing a lease")?;
        Ok(n > 0)
    }
}

impl TxBook<'_> {
    /// The lowest released offset of `pool` from `from` to `to`, left on
    /// the list (a fleet pool's spares outside its range as now configured
    /// stay there, unused).
    pub(crate) fn lowest_freed_in(
        &mut self,
        pool: PoolId,
        from: u128,
        to: u128,
    ) -> Result<Option<u128>, StoreError> {
        let blob: Option<Vec<u8>> = self
            .conn
            .prepare_cached(
                "SELECT ip_offset FROM freed WHERE pool_id = ?1 AND ip_offset BETWEEN ?2 AND ?3 \
                 ORDER BY ip_offset LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![pool.0, to_blob(from).as_slice(), to_blob(to).as_slice()],
                    |r| r.get(0),
                )
                .optional()
            })
            .ctx("looking for a released address")?;
        blob.map(|b| from_blob(&b)).transpose()
    }
}
