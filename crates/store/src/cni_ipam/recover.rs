//! The explicit way out of an unreadable CNI lease database (`nicslice
//! cni-leases recover FILE`): under the database's lock, the file is set
//! aside under a new name (never replacing anything), a new database is
//! made in its place, and what can still be read of the old one is copied
//! into it: its entries in key order up to the first unreadable page.
//!
//! What it cannot rebuild: the leases past that page. A CNI lease is keyed
//! by network name, container ID and interface name, none of which a link
//! in a namespace tells, so the kernel is no source for them (and the store
//! does not talk to the kernel). The caller says so to the user.
//!
//! Copying keeps the database consistent even when the copy stops early:
//! the owner index (`O`) is rebuilt from the leases copied (`L`), a pool
//! whose record was lost is made again from its leases, and the pool
//! counter is moved past every pool id seen.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::keys::{
    BY_OWNER, Bytes, FREED, LEASE, META, POOL, POOL_BY_NAME, Reader, owner_key, pool_value,
    pool_key, read_lease_value,
};
use super::lmdb::{self, Env, RwTxn};
use super::lock::{self, Held, LockFile};
use super::{Db, FORMAT, MAP_SIZE, OPEN, main_db, meta_key, put_meta, this_boot};
use crate::StoreError;
use crate::error::Context;
use crate::files;

/// What [`recover`] did.
#[derive(Debug)]
pub struct Recovered {
    /// Where the unreadable file now is.
    pub set_aside: PathBuf,
    /// How many leases were read back from it into the new database.
    pub leases: usize,
    /// Whether every entry of the old file could be read (else the copy
    /// stopped at the first unreadable one, and later leases are lost).
    pub complete: bool,
}

/// Sets the unreadable lease database `path` aside and starts a new one
/// with what can be read of it (module docs). Refused when the file reads
/// well (nothing to recover), when it is no lease database (nicslice does
/// not move files it did not make), or when this process has it open.
pub fn recover(path: &Path) -> Result<Recovered, StoreError> {
    let refuse = |reason: &str| StoreError::UnsafePath { path: path.to_owned(), reason: reason.into() };
    if files::check_file(path)?.is_none() {
        return Err(refuse("there is no such file"));
    }
    if !lock::starts_with_lmdb_meta(path)? {
        return Err(StoreError::NotALeaseDb { path: path.to_owned() });
    }
    let in_use = OPEN.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|(p, e)| {
        p == path && e.strong_count() > 0
    });
    if in_use {
        return Err(refuse("this process has it open"));
    }
    let lock = LockFile::open(path)?;
    let held = lock.exclusive()?;
    if read_all(path, &held).is_ok_and(|(_, complete)| complete) {
        return Err(refuse("it reads well: there is nothing to recover"));
    }
    let set_aside = files::set_aside(path, "unreadable")?;
    let (entries, complete) = read_all(&set_aside, &held).unwrap_or_default();
    let env = super::open_env(path, &held)
        .map_err(|source| StoreError::LeaseDbOpen { path: path.to_owned(), source })?;
    let mut txn = env.write_txn(held).ctx("starting a write transaction")?;
    let db = main_db(&txn)?;
    let leases = copy(&mut txn, db, &entries)?;
    txn.commit().ctx("committing")?;
    Ok(Recovered { set_aside, leases, complete })
}

/// Every entry of the database at `path` in key order, up to the first
/// that cannot be read, and whether that was all of them; an error when
/// the file does not open. Read-only: LMDB writes nothing to it.
fn read_all(path: &Path, held: &Held<'_>) -> lmdb::Result<(Vec<(Vec<u8>, Vec<u8>)>, bool)> {
    let flags = lmdb::NO_SUB_DIR | lmdb::NO_LOCK | lmdb::NO_TLS | lmdb::READ_ONLY;
    // SAFETY: under the lock, one environment for this file in this process
    // (refused above when `OPEN` has one), read only, closed before the
    // lock is released.
    let env = unsafe { Env::open(path, flags, MAP_SIZE, held) }?;
    let txn = env.read_txn_under(held)?;
    let db = txn.main_db()?;
    let mut entries = Vec::new();
    for entry in db.prefix_iter(&txn, &[])? {
        match entry {
            Ok((k, v)) => entries.push((k.to_vec(), v.to_vec())),
            Err(_) => return Ok((entries, false)),
        }
    }
    Ok((entries, true))
}

/// Writes what was read into the new database, consistently (module docs);
/// the number of leases copied.
fn copy(txn: &mut RwTxn<'_>, db: Db<'_>, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<usize, StoreError> {
    let mut next_pool = 1i64;
    let mut pools_seen = BTreeMap::new();
    let mut lease_pools: BTreeMap<i64, (u128, String, String)> = BTreeMap::new();
    let mut leases = 0;
    for (key, value) in entries {
        let Some(&tag) = key.first() else { continue };
        match tag {
            META if key == &meta_key("format")? => continue,
            META if key == &meta_key("next-pool")? => {
                next_pool = next_pool.max(Reader::value(value).id()?);
                continue;
            }
            POOL => {
                pools_seen.insert(Reader::key(key).id()?, ());
            }
            POOL_BY_NAME => next_pool = next_pool.max(Reader::value(value).id()? + 1),
            LEASE => {
                let mut k = Reader::key(key);
                let (network, subnet, offset) = (k.text()?, k.text()?, k.offset()?);
                let (pool, container_id, ifname) = read_lease_value(value)?;
                let by_owner = owner_key(container_id, ifname, network, subnet, offset)?;
                db.put(txn, &by_owner, &Bytes::value().id(pool).into_vec())
                    .ctx("rebuilding the owner index")?;
                let mark = lease_pools.entry(pool).or_insert((0, network.into(), subnet.into()));
                mark.0 = mark.0.max(offset);
                leases += 1;
            }
            // Rebuilt from the leases above, so that no index entry is left
            // without its lease.
            BY_OWNER => continue,
            META | FREED => {}
            _ => continue,
        }
        db.put(txn, key, value).ctx("copying a readable entry")?;
    }
    for (pool, (high_water, network, subnet)) in &lease_pools {
        next_pool = next_pool.max(pool + 1);
        if !pools_seen.contains_key(pool) {
            db.put(txn, &pool_key(*pool)?, &pool_value(*high_water, network, subnet)?)
                .ctx("remaking a pool of copied leases")?;
        }
    }
    for pool in pools_seen.keys() {
        next_pool = next_pool.max(pool + 1);
    }
    put_meta(txn, db, "format", &FORMAT.to_be_bytes())?;
    db.put(txn, &meta_key("next-pool")?, &next_pool.to_be_bytes()).ctx("counting pools")?;
    // Without the boot they were written in, the copied leases would be
    // forgotten by the next write on a disk: count them as this boot's
    // (keeping too many is safe, forgetting held ones is not).
    let boot = meta_key("boot")?;
    if db.get(txn, &boot).ctx("reading the boot of the leases")?.is_none() {
        db.put(txn, &boot, this_boot().as_bytes()).ctx("recording this boot")?;
    }
    Ok(leases)
}
