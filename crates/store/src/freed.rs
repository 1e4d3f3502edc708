//! The `freed` table both lease books share (state.db's and the CNI lease
//! database's have the same shape): released offsets below a pool's
//! high-water mark, reused lowest first once the upward walk is done.

use nicslice_model::ipam::PoolId;
use rusqlite::{Connection, OptionalExtension, params};

use crate::StoreError;
use crate::blob::{from_blob, to_blob};
use crate::error::Context;

/// Removes and returns the lowest released offset of `pool`.
pub(crate) fn pop_lowest(conn: &Connection, pool: PoolId) -> Result<Option<u128>, StoreError> {
    let blob: Option<Vec<u8>> = conn
        .prepare_cached(
            "DELETE FROM freed WHERE pool_id = ?1 AND ip_offset = \
             (SELECT min(ip_offset) FROM freed WHERE pool_id = ?1) RETURNING ip_offset",
        )
        .and_then(|mut s| s.query_row([pool.0], |r| r.get(0)).optional())
        .ctx("reusing a released address")?;
    blob.map(|b| from_blob(&b)).transpose()
}

/// Forgets a released offset (taken statically since); no-op if absent.
pub(crate) fn remove(conn: &Connection, pool: PoolId, offset: u128) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM freed WHERE pool_id = ?1 AND ip_offset = ?2")
        .and_then(|mut s| s.execute(params![pool.0, to_blob(offset).as_slice()]))
        .ctx("updating released addresses")?;
    Ok(())
}

/// Records a released offset.
pub(crate) fn push(conn: &Connection, pool: PoolId, offset: u128) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT OR IGNORE INTO freed (pool_id, ip_offset) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![pool.0, to_blob(offset).as_slice()]))
        .ctx("recording a released address")?;
    Ok(())
}
