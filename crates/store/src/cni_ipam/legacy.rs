//! Taking over the SQLite lease database of earlier nicslice versions
//! (`cni-ipam.db`, schema 1 or 2): once, in the first write transaction of a
//! new LMDB file beside it, its leases, pools and released addresses of this
//! boot are copied in (pool ids kept), and after the commit the old file is
//! moved aside (`.taken-over`). Containers started before an upgrade keep
//! their addresses and no address is handed out twice.

use std::path::Path;
use std::time::Duration;

use super::lmdb::RwTxn;
use rusqlite::{Connection, OpenFlags};

use super::keys::{
    Bytes, freed_key, lease_key, lease_value, owner_key, pool_key, pool_name_key, pool_value,
};
use super::{Db, meta_key};
use crate::StoreError;
use crate::blob::from_blob;
use crate::error::Context;

/// The file name earlier versions used.
pub(super) const LEGACY_FILE: &str = "cni-ipam.db";

/// Whether `path` is an SQLite database (its 16-byte header).
pub(super) fn is_sqlite(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header)).is_ok()
        && &header == b"SQLite format 3\0"
}

struct Pool {
    id: i64,
    network: String,
    subnet: String,
    range_key: String,
    high_water: Vec<u8>,
}

struct Lease {
    network: String,
    subnet: String,
    offset: Vec<u8>,
    pool: i64,
    container_id: String,
    ifname: String,
}

/// Copies the rows of `legacy` into `txn` when they belong to `boot`.
pub(super) fn take_over(
    legacy: &Path,
    txn: &mut RwTxn<'_>,
    db: Db<'_>,
    boot: &str,
) -> Result<(), StoreError> {
    let err = |source| StoreError::LeaseDbImport { path: legacy.to_owned(), source };
    // Read-write, so that a journal left by a killed writer is rolled back.
    let conn =
        Connection::open_with_flags(legacy, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    // One read transaction: a still-running older plugin cannot commit meanwhile.
    conn.execute_batch("BEGIN").map_err(err)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(err)?;
    if version == 0 {
        return Ok(()); // created, never written
    }
    let stored_boot: Option<String> =
        conn.query_row("SELECT value FROM meta WHERE key = 'boot_id'", [], |r| r.get(0)).ok();
    if stored_boot.as_deref() != Some(boot) {
        return Ok(()); // the leases of an earlier boot are void anyway
    }
    let pools = read_pools(&conn).map_err(err)?;
    let leases = read_leases(&conn, version).map_err(err)?;
    let freed = read_freed(&conn).map_err(err)?;
    let mut next_pool = 1;
    for p in &pools {
        let name = pool_name_key(&p.network, &p.subnet, &p.range_key)?;
        db.put(txn, &name, &Bytes::value().id(p.id).into_vec()).ctx("taking over a pool")?;
        let row = pool_value(from_blob(&p.high_water)?, &p.network, &p.subnet)?;
        db.put(txn, &pool_key(p.id)?, &row).ctx("taking over a pool")?;
        next_pool = next_pool.max(p.id + 1);
    }
    db.put(txn, &meta_key("next-pool")?, &next_pool.to_be_bytes()).ctx("taking over a pool")?;
    for l in &leases {
        let offset = from_blob(&l.offset)?;
        let key = lease_key(&l.network, &l.subnet, offset)?;
        let value = lease_value(l.pool, &l.container_id, &l.ifname)?;
        db.put(txn, &key, &value).ctx("taking over a lease")?;
        let by_owner = owner_key(&l.container_id, &l.ifname, &l.network, &l.subnet, offset)?;
        db.put(txn, &by_owner, &Bytes::value().id(l.pool).into_vec()).ctx("taking over a lease")?;
    }
    for (pool, offset) in &freed {
        let key = freed_key(*pool, from_blob(offset)?)?;
        db.put(txn, &key, &[]).ctx("taking over a released address")?;
    }
    db.put(txn, &meta_key("boot")?, boot.as_bytes()).ctx("recording this boot")?;
    Ok(())
}

fn read_pools(conn: &Connection) -> rusqlite::Result<Vec<Pool>> {
    let mut stmt = conn.prepare("SELECT id, network, subnet, range_key, high_water FROM pools")?;
    stmt.query_map([], |r| {
        Ok(Pool {
            id: r.get(0)?,
            network: r.get(1)?,
            subnet: r.get(2)?,
            range_key: r.get(3)?,
            high_water: r.get(4)?,
        })
    })?
    .collect()
}

/// Version 1 kept a lease's network and subnet in its pool; version 2 in the lease.
fn read_leases(conn: &Connection, version: i64) -> rusqlite::Result<Vec<Lease>> {
    let sql = if version == 1 {
        "SELECT p.network, p.subnet, l.ip_offset, l.pool_id, l.container_id, l.ifname \
         FROM leases l JOIN pools p ON p.id = l.pool_id"
    } else {
        "SELECT network, subnet, ip_offset, pool_id, container_id, ifname FROM leases"
    };
    let mut stmt = conn.prepare(sql)?;
    stmt.query_map([], |r| {
        Ok(Lease {
            network: r.get(0)?,
            subnet: r.get(1)?,
            offset: r.get(2)?,
            pool: r.get(3)?,
            container_id: r.get(4)?,
            ifname: r.get(5)?,
        })
    })?
    .collect()
}

fn read_freed(conn: &Connection) -> rusqlite::Result<Vec<(i64, Vec<u8>)>> {
    let mut stmt = conn.prepare("SELECT pool_id, ip_offset FROM freed")?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
}

/// Moves the taken-over file (and its journal) aside, so that nothing reads
/// it again; a failure only leaves it where it was (it is never read again:
/// the new file is no longer empty).
pub(super) fn set_aside(legacy: &Path) {
    // Never over an earlier `.taken-over`: the next free name.
    if crate::files::set_aside(legacy, "taken-over").is_ok() {
        let _ = std::fs::remove_file(crate::files::with_suffix(legacy, "-journal"));
    }
}
