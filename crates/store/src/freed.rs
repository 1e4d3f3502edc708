//! The `freed` table both lease books share (state.db's and the CNI lease
//! database's have the same shape): released offsets below a pool's
//! high-water mark, reused lowest first once the upward walk is done.

use nicslice_model::ipam::PoolId;
use rusqlite::{Connection, OptionalExtension, params};

use crate::StoreError;
use crate::blob::{from_blob, to_blob};
use crate::error::Context;

/// Removes and returns the lowest released offset of `pool`. Two plain
/// statements (the key's first entry, then its delete, which `remove`
/// shares) compile to a third of the instructions of one DELETE with a
/// subquery and RETURNING, in a process that compiles each once.
pub(crate) fn pop_lowest(conn: &Connection, pool: PoolId) -> Result<Option<u128>, StoreError> {
    let blob: Option<Vec<u8>> = conn
        .prepare_cached("SELECT ip_offset FROM freed WHERE pool_id = ?1 ORDER BY ip_offset LIMIT 1")
        .and_then(|mut s| s.query_row([pool.0], |r| r.get(0)).optional())
        .ctx("reusing a released address")?;
    let Some(blob) = blob else { return Ok(None) };
    let offset = from_blob(&blob)?;
    remove(conn, pool, offset)?;
    Ok(Some(offset))
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
