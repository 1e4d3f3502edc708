//! The lease database of the `nicslice-ipam` CNI plugin: an LMDB file
//! (default `/run/nicslice/cni-leases.mdb`, its lock file beside it with
//! `-lock` appended), apart from `state.db`, because CNI leases are keyed the
//! CNI way (network name, container ID, interface name) and are owned by the
//! container runtime, not by `nicslice attach`.
//!
//! Why LMDB and not the SQLite of `state.db`: the plugin is one process per
//! call, and SQLite spends most of such a call opening the file, parsing the
//! schema and compiling the call's statements (0.55 M instructions, about
//! 0.4 ms of an ADD; nicslice-bench). LMDB has nothing to parse or compile: the
//! file is mapped, a lookup is a walk down a B+tree, a commit writes the
//! changed pages and a meta page. Many processes share the file, one writer
//! at a time, queued on a `flock` (`lock`; a writer killed mid-call releases
//! it, and its half-made transaction is never seen, as pages are copied on
//! write and the new root is published last). The lock's guard is what
//! starts a transaction (`lmdb`), so none can run without it.
//!
//! A CNI attachment lives in a network namespace, and no namespace survives
//! a reboot: neither should its lease. So the database belongs in `/run`,
//! remembers the boot it was written in (`boot_id`) and, in the first write
//! transaction of a later boot, forgets every lease of the earlier one (a
//! file in memory, as in /run, cannot see another boot: it is not checked). That
//! also makes `NO_SYNC` safe: it only matters when the whole system crashes,
//! which starts a new boot that discards the leases anyway. No fsync per
//! call, as host-local does none.
//!
//! A file that does not open is an error, never replaced: its leases are
//! unknown, and a new empty book would hand out addresses running
//! containers hold. `nicslice cni-leases recover` sets it aside and starts
//! a new book with what can still be read of it (`recover`).
//!
//! A call is one write transaction; the file's format and boot are checked
//! inside it, under the writer lock. The first write to a new file takes over
//! the leases of the SQLite `cni-ipam.db` of earlier nicslice versions beside
//! it (`legacy`). The allocation policy is the model's
//! (`nicslice_model::ipam`): this module only implements its `LeaseBook`
//! (`book`) and answers lookups; `keys` owns the byte layout.

mod book;
mod keys;
mod legacy;
mod lmdb;
mod lock;
mod quarantine;
mod recover;

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use ipnet::IpNet;
use nicslice_model::ipam::PoolId;
use nicslice_model::to_u128;

use crate::StoreError;
use crate::blob::{ip_at, offset_of};
use crate::error::Context;
use crate::files;
pub use book::CniBook;
use book::PoolRows;
use keys::{Bytes, META, Reader, lease_prefix, owner_prefix, pool_name_key, read_lease_value};
/// What LMDB answered, in the store's errors.
pub use lmdb::Error as LmdbError;
use lmdb::{Env, RwTxn};
use lock::{Held, LockFile};
pub use quarantine::CniQuarantined;
pub use recover::{Recovered, recover};

/// The lease database's file name in a directory (`dataDir`, or beside
/// `state.db`).
pub const CNI_IPAM_FILE: &str = "cni-leases.mdb";

/// Where the CNI lease database lives unless the config or environment says otherwise.
pub const DEFAULT_CNI_IPAM_PATH: &str = "/run/nicslice/cni-leases.mdb";

/// The kernel's identity of this boot.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The layout this build writes (`keys`), recorded under `M format`.
const FORMAT: u32 = 1;

/// The map of a file smaller than a quarter of it (a lease takes about 300
/// bytes: a hundred thousand fit). Address space only, the file grows as
/// leases are written; but a one-call process pays for the size of the map
/// when it unmaps it (1 GiB: 14 µs, 64 MiB: 7 µs), so it starts small and
/// grows (`fit_map`).
const MAP_SIZE: usize = 64 << 20;

type Db<'e> = lmdb::Database<'e>;

/// Who holds a CNI lease: the attachment's container ID and interface name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CniOwner {
    pub container_id: String,
    pub ifname: String,
}

/// One leased address of a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniLease {
    pub pool: PoolId,
    pub subnet: IpNet,
    pub ip: IpAddr,
    pub owner: CniOwner,
}

/// The environments this process has open. LMDB wants one per file and
/// process (its locks are the process's): a second `open` of the same path
/// shares the first's, which closes when the last handle is dropped.
static OPEN: Mutex<Vec<(PathBuf, Weak<Env>)>> = Mutex::new(Vec::new());

/// One handle on the CNI lease database.
pub struct CniIpamStore {
    env: Arc<Env>,
    path: PathBuf,
    lock: LockFile,
}

impl CniIpamStore {
    /// Opens (creating if needed) the database and its directory. A file
    /// that is not one nicslice may use is refused before anything is made
    /// beside it (`lock::first_use`, `files`); one LMDB cannot read is an
    /// error, and stays as it is: its leases are unknown, so handing out
    /// any address could give one a running container holds. Recovery is
    /// explicit ([`recover`]). An SQLite file of an earlier nicslice is
    /// refused too (it is taken over only as `cni-ipam.db` beside a new
    /// file, see [`CniIpamStore::write`]).
    pub fn open(path: impl AsRef<Path>) -> Result<CniIpamStore, StoreError> {
        let path = path.as_ref().to_owned();
        let lock = LockFile::open(&path)?;
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(_, env)| env.strong_count() > 0);
        if let Some(env) = open.iter().find(|(p, _)| *p == path).and_then(|(_, e)| e.upgrade()) {
            return Ok(CniIpamStore { env, path, lock });
        }
        // Opening may create the file, and reads its meta pages: alone.
        let held = lock.exclusive()?;
        // Checked before LMDB opens it, which would initialise an empty file
        // (one made since the lock file: `lock::first_use` checked then),
        // and on the descriptor it opened, in case the path changed between.
        if let Some(meta) = files::check_file(&path)? {
            files::check_empty_is_ours(&path, &meta)?;
        }
        let env = open_env(&path, &held).map_err(|e| open_error(&path, e))?;
        check_data_file(&env, &path)?;
        drop(held);
        let env = Arc::new(env);
        open.push((path.clone(), Arc::downgrade(&env)));
        Ok(CniIpamStore { env, path, lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a write transaction (waits for the writer before it) on this
    /// boot's leases; it is abandoned when dropped unless committed.
    pub fn write(&mut self) -> Result<CniIpamTx<'_>, StoreError> {
        let held = self.lock.exclusive()?;
        fit_map(&self.env, &held)?;
        let mut txn = self.env.write_txn(held).ctx("starting a write transaction")?;
        let db = main_db(&txn)?;
        let mut legacy_taken = None;
        let fresh = self.format(&txn, db)?.is_none();
        // A file in memory (the default, in /run) does not outlive the boot:
        // only a new one learns it (in case it is copied to a disk). Reading
        // the boot's id walks /proc/sys, a tenth of the IPAM's time.
        if fresh || !self.lock.in_memory() {
            let boot = this_boot();
            if fresh {
                // The first write to this file, by whichever process got the lock first.
                let legacy = self.path.with_file_name(legacy::LEGACY_FILE);
                if legacy != self.path && legacy.exists() {
                    legacy::take_over(&legacy, &mut txn, db, &boot)?;
                    legacy_taken = Some(legacy);
                }
                put_meta(&mut txn, db, "format", &FORMAT.to_be_bytes())?;
            }
            forget_other_boots(&mut txn, db, &boot)?;
        }
        Ok(CniIpamTx { txn, db, pools: PoolRows::default(), legacy_taken })
    }

    /// Whether the database answers a read (for STATUS). Under the lock,
    /// as a write: without LMDB's own lock, a reader may not overlap a
    /// writer. A STATUS waits for a writer, for a millisecond.
    pub fn ping(&self) -> Result<(), StoreError> {
        let txn = self.env.read_txn(self.lock.exclusive()?).ctx("starting a read transaction")?;
        self.format(&txn, main_db(&txn)?).map(drop)
    }

    /// The file's format (`None` before its first write); an error when it
    /// is newer than this build's.
    fn format(&self, txn: &lmdb::RoTxn<'_>, db: Db<'_>) -> Result<Option<u32>, StoreError> {
        let Some(bytes) = db.get(txn, &meta_key("format")?).ctx("reading the database's format")?
        else {
            return Ok(None);
        };
        let found = <[u8; 4]>::try_from(bytes)
            .map(u32::from_be_bytes)
            .map_err(|_| StoreError::corrupt("CNI lease database format"))?;
        if found > FORMAT {
            return Err(StoreError::LeaseDbTooNew {
                path: self.path.clone(),
                found,
                supported: FORMAT,
            });
        }
        Ok(Some(found))
    }
}

/// NO_LOCK leaves the exclusion of writers, and of readers from writers,
/// to the caller: every transaction, and the open, runs under the `lock`
/// module's flock. NO_SYNC only drops the flush to disk at commit, which
/// matters when the whole system crashes; the next boot forgets the leases
/// (see the module docs). NO_SUB_DIR names the file itself; NO_TLS keeps
/// read transactions off thread-local reader slots (there are none without
/// LMDB's lock). Read-ahead stays on: NO_READ_AHEAD is for files larger than
/// memory, and it also stops the kernel mapping the cached pages around a
/// faulting one (a fault per page instead of one per 16).
fn open_env(path: &Path, held: &Held<'_>) -> lmdb::Result<Env> {
    let flags = lmdb::NO_SUB_DIR | lmdb::NO_SYNC | lmdb::NO_LOCK | lmdb::NO_TLS;
    // SAFETY: the file is mapped, and must not change under the map except
    // through LMDB: only this module writes it, always through LMDB, under
    // the flock that orders the processes (and their transactions); one
    // environment per file and process (`OPEN`) as LMDB requires.
    unsafe { Env::open(path, flags, MAP_SIZE, held) }
}

/// The error of a file LMDB would not open: an unreadable lease database
/// when it carries LMDB's marker (corrupt, or of another LMDB version),
/// else a file that is no lease database at all.
fn open_error(path: &Path, e: lmdb::Error) -> StoreError {
    if !e.is_unreadable_file() {
        return StoreError::LeaseDbOpen { path: path.to_owned(), source: e };
    }
    if legacy::is_sqlite(path) {
        return StoreError::LeaseDbIsSqlite { path: path.to_owned() };
    }
    match lock::starts_with_lmdb_meta(path) {
        Ok(true) => StoreError::LeaseDbUnreadable { path: path.to_owned(), reason: e.to_string() },
        Ok(false) => StoreError::NotALeaseDb { path: path.to_owned() },
        Err(other) => other,
    }
}

/// Refuses a data file that is not the caller's or that others may write
/// (`files`), made before nicslice's first use of the path by someone else.
/// On the descriptor LMDB opened: the very file it maps.
fn check_data_file(env: &Env, path: &Path) -> Result<(), StoreError> {
    let fd = env.fd().ctx("finding the lease database's file")?;
    // SAFETY: an all-zero stat is a valid value for fstat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on the environment's open descriptor, into `st`.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        let source = std::io::Error::last_os_error();
        return Err(StoreError::Inspect { path: path.to_owned(), source });
    }
    files::check_stat(path, st.st_mode, st.st_uid)
}

/// Grows the map to four times the file's used pages when they fill more
/// than half of it, so that no transaction finds it full: a call adds a
/// few pages, copied on write. Also adopts a map grown by another process.
/// Under the lock: no transaction of any handle is active, as resizing wants.
fn fit_map(env: &Env, held: &Held<'_>) -> Result<(), StoreError> {
    let info = env.info();
    let page = page_size();
    let used = (info.last_page_number + 1).saturating_mul(page);
    if used.saturating_mul(2) <= info.map_size {
        return Ok(());
    }
    let wanted = used.saturating_mul(4).max(MAP_SIZE).next_multiple_of(page);
    // SAFETY: every transaction on this file, in any handle or process, runs
    // under the flock the caller holds: none is active.
    unsafe { env.set_map_size(wanted, held) }.ctx("growing the map of the lease database")
}

/// The system's page size, which LMDB uses as its own.
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}

/// The handle of the environment's one (unnamed) database.
fn main_db<'e>(txn: &lmdb::RoTxn<'e>) -> Result<Db<'e>, StoreError> {
    txn.main_db().ctx("opening the lease table")
}

fn meta_key(name: &str) -> Result<Vec<u8>, StoreError> {
    Bytes::key(META).text("meta name", name)?.done()
}

fn put_meta(txn: &mut RwTxn<'_>, db: Db<'_>, name: &str, value: &[u8]) -> Result<(), StoreError> {
    db.put(txn, &meta_key(name)?, value).ctx("recording the database's format")
}

/// This boot's id; empty when /proc cannot tell (then every boot looks the
/// same, and leases are kept). One read: the file is 37 bytes.
fn this_boot() -> String {
    let mut buf = [0u8; 64];
    std::fs::File::open(BOOT_ID)
        .and_then(|mut f| f.read(&mut buf))
        .map(|n| String::from_utf8_lossy(&buf[..n]).trim().to_string())
        .unwrap_or_default()
}

/// Drops every lease when the database was written in another boot. Inside
/// the write transaction: another process may have forgotten the old boot
/// and leased addresses in this one since this process opened the file
/// (deciding before the write lock would lose those leases: duplicate
/// addresses under concurrent first calls after a boot).
fn forget_other_boots(txn: &mut RwTxn<'_>, db: Db<'_>, boot: &str) -> Result<(), StoreError> {
    let key = meta_key("boot")?;
    if db.get(txn, &key).ctx("reading the boot of the leases")? == Some(boot.as_bytes()) {
        return Ok(());
    }
    // An emptied file is a file of this build's format.
    db.clear(txn).ctx("forgetting the leases of an earlier boot")?;
    put_meta(txn, db, "format", &FORMAT.to_be_bytes())?;
    db.put(txn, &key, boot.as_bytes()).ctx("recording this boot")
}

/// One write transaction on the CNI lease database.
pub struct CniIpamTx<'e> {
    txn: RwTxn<'e>,
    db: Db<'e>,
    pools: PoolRows,
    /// The SQLite file of an earlier nicslice whose leases this transaction
    /// took over; moved aside once the transaction commits.
    legacy_taken: Option<PathBuf>,
}

impl<'e> CniIpamTx<'e> {
    pub fn commit(self) -> Result<(), StoreError> {
        self.txn.commit().ctx("committing")?;
        if let Some(legacy) = &self.legacy_taken {
            legacy::set_aside(legacy);
        }
        Ok(())
    }

    /// The pool of one range (`range_key`, e.g. its first and last address)
    /// of `subnet` in CNI network `network`, created on first use. Each range
    /// walks its own high-water mark; a lease in any range of the same subnet
    /// makes the address taken for all of them.
    pub fn pool(
        &mut self,
        network: &str,
        subnet: IpNet,
        range_key: &str,
    ) -> Result<PoolId, StoreError> {
        let subnet = subnet.trunc().to_string();
        let name = pool_name_key(network, &subnet, range_key)?;
        let found = self.db.get(&self.txn, &name).ctx("reading an address pool")?;
        if let Some(value) = found {
            let id = PoolId(Reader::value(value).id()?);
            self.pools.get(&self.txn, self.db, id)?;
            return Ok(id);
        }
        let id = PoolId(next_pool_id(&mut self.txn, self.db)?);
        let value = Bytes::value().id(id.0).into_vec();
        self.db.put(&mut self.txn, &name, &value).ctx("creating an address pool")?;
        self.pools.create(&mut self.txn, self.db, id, network, &subnet)?;
        Ok(id)
    }

    /// The model's lease book over this transaction.
    pub fn book(&mut self) -> CniBook<'_, 'e> {
        CniBook { txn: &mut self.txn, db: self.db, pools: &mut self.pools }
    }

    /// Every lease of `network`, optionally only those of `owner`, by pool
    /// and address.
    pub fn leases(
        &self,
        network: &str,
        owner: Option<&CniOwner>,
    ) -> Result<Vec<CniLease>, StoreError> {
        let mut out = Vec::new();
        let lease = |subnet: &str, offset: u128, pool: i64, owner: CniOwner| {
            let subnet: IpNet = subnet
                .parse()
                .map_err(|_| StoreError::corrupt(format!("lease subnet {subnet}")))?;
            let ip = ip_at(subnet, offset)
                .ok_or_else(|| StoreError::corrupt(format!("offset in pool {subnet}")))?;
            Ok::<_, StoreError>(CniLease { pool: PoolId(pool), subnet, ip, owner })
        };
        match owner {
            // The owner index: the owner's leases in this network, nothing else read.
            Some(o) => {
                let prefix = owner_prefix(&o.container_id, &o.ifname, network)?.done()?;
                let rows = self.db.prefix_iter(&self.txn, &prefix).ctx("reading leases")?;
                for row in rows {
                    let (key, value) = row.ctx("reading leases")?;
                    let mut k = Reader::key(key);
                    let (_, _, _) = (k.text()?, k.text()?, k.text()?);
                    let (subnet, offset) = (k.text()?, k.offset()?);
                    out.push(lease(subnet, offset, Reader::value(value).id()?, o.clone())?);
                }
            }
            None => {
                let prefix = lease_prefix(network)?.done()?;
                let rows = self.db.prefix_iter(&self.txn, &prefix).ctx("reading leases")?;
                for row in rows {
                    let (key, value) = row.ctx("reading leases")?;
                    let mut k = Reader::key(key);
                    let _network = k.text()?;
                    let (subnet, offset) = (k.text()?, k.offset()?);
                    let (pool, container_id, ifname) = read_lease_value(value)?;
                    let owner =
                        CniOwner { container_id: container_id.into(), ifname: ifname.into() };
                    out.push(lease(subnet, offset, pool, owner)?);
                }
            }
        }
        out.sort_by_key(|l| (l.pool.0, to_u128(l.ip)));
        Ok(out)
    }

    /// Releases every lease `owner` holds in `network`; returns the addresses.
    pub fn release_owner(
        &mut self,
        network: &str,
        owner: &CniOwner,
    ) -> Result<Vec<IpAddr>, StoreError> {
        let held = self.leases(network, Some(owner))?;
        for lease in &held {
            self.release(lease)?;
        }
        Ok(held.into_iter().map(|l| l.ip).collect())
    }

    /// Releases every lease of `network` whose owner `keep` rejects (GC).
    pub fn release_unless(
        &mut self,
        network: &str,
        keep: impl Fn(&CniOwner) -> bool,
    ) -> Result<Vec<CniLease>, StoreError> {
        // A quarantined address belongs to no attachment: its cool-down returns it.
        let stale: Vec<CniLease> = self
            .leases(network, None)?
            .into_iter()
            .filter(|l| !l.owner.is_quarantine() && !keep(&l.owner))
            .collect();
        for lease in &stale {
            self.release(lease)?;
        }
        Ok(stale)
    }

    fn release(&mut self, lease: &CniLease) -> Result<(), StoreError> {
        use nicslice_model::ipam::LeaseBook;
        let pool = lease.pool;
        let offset = offset_of(lease.subnet, lease.ip);
        let mut book = self.book();
        if book.remove_lease(pool, offset)? && offset < book.high_water(pool)? {
            // Reusable once the upward walk has used up the range, as the model's release.
            book.push_freed(pool, offset)?;
        }
        Ok(())
    }
}

/// A new pool id (1, 2, ...), from the counter under `M next-pool`.
fn next_pool_id(txn: &mut RwTxn<'_>, db: Db<'_>) -> Result<i64, StoreError> {
    let key = meta_key("next-pool")?;
    let id = match db.get(txn, &key).ctx("reading the pool counter")? {
        Some(value) => Reader::value(value).id()?,
        None => 1,
    };
    db.put(txn, &key, &(id + 1).to_be_bytes()).ctx("counting pools")?;
    Ok(id)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_files;
