//! The lease database of the `nicslice-ipam` CNI plugin: its own SQLite file
//! (default `/run/nicslice/cni-ipam.db`), apart from `state.db`, because
//! CNI leases are keyed the CNI way (network name, container ID, interface
//! name) and are owned by the container runtime, not by `nicslice attach`.
//!
//! A CNI attachment lives in a network namespace, and no namespace survives
//! a reboot: neither should its lease. So the database belongs in `/run`,
//! remembers the boot it was written in (`boot_id`) and, in the first write
//! transaction of a later boot, forgets every lease of the earlier one. That
//! also makes `synchronous = OFF` safe: a process killed mid-write cannot
//! hurt SQLite, and only a crash of the whole system can, which starts a new
//! boot that discards the file anyway (a file that no longer opens is moved
//! aside). No fsync per call, as host-local does none.
//!
//! Same habits as the main store otherwise, but for the journal (a rollback
//! journal kept between calls, see `open_once`): `BEGIN IMMEDIATE` writes
//! (many plugin processes queue on the lock), every operation one indexed
//! statement. A call is one transaction: the schema version and the boot are
//! checked inside the write transaction that does the work (each transaction
//! costs its locks and a look for a hot journal). The allocation policy is
//! the model's (`nicslice_model::ipam`): this module only implements its
//! `LeaseBook` (`book`) and answers lookups; `schema` owns the tables.

mod book;
mod schema;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use nicslice_model::ipam::PoolId;
use nicslice_model::to_u128;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::StoreError;
use crate::blob::{from_blob, ip_at, offset_of, to_blob};
use crate::error::Context;
pub use book::CniBook;
use book::{PoolRow, PoolRows};

/// Where the CNI lease database lives unless the config or environment says otherwise.
pub const DEFAULT_CNI_IPAM_PATH: &str = "/run/nicslice/cni-ipam.db";

/// The kernel's identity of this boot.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

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

/// One connection to the CNI lease database.
pub struct CniIpamStore {
    conn: Connection,
    path: PathBuf,
}

impl CniIpamStore {
    /// Opens (creating if needed) the database and its directory. A file
    /// SQLite cannot read is moved aside (`.corrupt`) and a new one made.
    /// The schema is created or upgraded, and the leases of an earlier boot
    /// forgotten, by [`CniIpamStore::write`], under the write lock.
    pub fn open(path: impl AsRef<Path>) -> Result<CniIpamStore, StoreError> {
        let path = path.as_ref().to_owned();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })?;
        }
        match Self::open_once(&path) {
            Err(StoreError::Open { source, .. }) if is_corrupt(&source) => {
                let aside = path.with_extension("db.corrupt");
                let _ = std::fs::rename(&path, &aside);
                // A journal left beside it would be played back into the new file.
                let _ = std::fs::remove_file(path.with_extension("db-journal"));
                let _ = std::fs::remove_file(path.with_extension("db-wal"));
                let _ = std::fs::remove_file(path.with_extension("db-shm"));
                Self::open_once(&path)
            }
            other => other,
        }
    }

    fn open_once(path: &Path) -> Result<CniIpamStore, StoreError> {
        crate::lean::for_short_lived_process();
        let open_err = |source| StoreError::Open { path: path.to_owned(), source };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(open_err)?;
        // A rollback journal kept between calls and emptied at each commit
        // (TRUNCATE), not WAL: a connection here lives for one call, and the
        // last WAL connection to close checkpoints and deletes the WAL and its
        // index, which the next call creates and maps again, every time. Not
        // PERSIST either: its zeroed journal is opened and read at the start
        // of every transaction to learn it is not hot; an empty one is not
        // even opened. Unlike WAL, the rollback modes belong to the
        // connection, so this is asked on every open; a file left in WAL by
        // an earlier nicslice is converted when no other process has it open,
        // and otherwise works on in WAL. This first statement reads the
        // schema, so a file that is no database fails here.
        conn.query_row("PRAGMA journal_mode = TRUNCATE", [], |r| r.get::<_, String>(0))
            .map_err(open_err)?;
        conn.execute_batch("PRAGMA synchronous = OFF").map_err(open_err)?;
        Ok(CniIpamStore { conn, path: path.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a write transaction (waits up to 5 s for other writers) on the
    /// current schema and this boot's leases; it rolls back when dropped
    /// unless committed.
    pub fn write(&mut self) -> Result<CniIpamTx<'_>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a write transaction")?;
        let version = schema_version(&tx, &self.path)?;
        if version < schema::VERSION {
            schema::upgrade(&tx, version).map_err(|source| StoreError::Migrate {
                path: self.path.clone(),
                version: schema::VERSION,
                source,
            })?;
        }
        forget_other_boots(&tx)?;
        Ok(CniIpamTx { tx, pools: PoolRows::default() })
    }

    /// Whether the database answers a query (for STATUS).
    pub fn ping(&self) -> Result<(), StoreError> {
        let version = schema_version(&self.conn, &self.path)?;
        if version >= 1 {
            self.conn
                .query_row("SELECT count(*) FROM pools", [], |_| Ok(()))
                .ctx("reading pools")?;
        }
        Ok(())
    }
}

/// The schema version of the file; an error when it is newer than this build's.
fn schema_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .ctx("reading the schema version")?;
    if found > schema::VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: schema::VERSION,
        });
    }
    Ok(found)
}

/// Drops every lease when the database was written in another boot. Inside
/// the write transaction: another process may have forgotten the old boot
/// and leased addresses in this one since this process opened the file
/// (deciding before the write lock lost those leases: duplicate addresses
/// under concurrent first calls after a boot).
fn forget_other_boots(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let boot = std::fs::read_to_string(BOOT_ID).unwrap_or_default().trim().to_string();
    let stored: Option<String> = tx
        .prepare_cached("SELECT value FROM meta WHERE key = 'boot_id'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .ctx("reading the boot of the leases")?;
    if stored.as_deref() == Some(boot.as_str()) {
        return Ok(());
    }
    tx.execute_batch("DELETE FROM leases; DELETE FROM freed; DELETE FROM pools;")
        .ctx("forgetting the leases of an earlier boot")?;
    tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('boot_id', ?1)", params![boot])
        .ctx("recording this boot")?;
    Ok(())
}

/// One write transaction on the CNI lease database.
pub struct CniIpamTx<'a> {
    tx: Transaction<'a>,
    pools: PoolRows,
}

impl CniIpamTx<'_> {
    pub fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().ctx("committing")
    }

    /// The pool of one range (`range_key`, e.g. its first and last address)
    /// of `subnet` in CNI network `network`, created on first use. Each range
    /// walks its own high-water mark; a lease in any range of the same subnet
    /// makes the address taken for all of them.
    pub fn pool(
        &self,
        network: &str,
        subnet: IpNet,
        range_key: &str,
    ) -> Result<PoolId, StoreError> {
        let subnet = subnet.trunc().to_string();
        let found: Option<(i64, Vec<u8>)> = self
            .tx
            .prepare_cached(
                "SELECT id, high_water FROM pools \
                 WHERE network = ?1 AND subnet = ?2 AND range_key = ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![network, subnet, range_key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .ctx("reading an address pool")?;
        let (id, high_water) = match found {
            Some((id, mark)) => (PoolId(id), from_blob(&mark)?),
            None => {
                self.tx
                    .prepare_cached(
                        "INSERT INTO pools (network, subnet, range_key, high_water) \
                         VALUES (?1, ?2, ?3, ?4)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![network, subnet, range_key, to_blob(0).as_slice()])
                    })
                    .ctx("creating an address pool")?;
                (PoolId(self.tx.last_insert_rowid()), 0)
            }
        };
        self.pools.remember(PoolRow { id, network: network.into(), subnet, high_water });
        Ok(id)
    }

    /// The model's lease book over this transaction.
    pub fn book(&self) -> CniBook<'_> {
        CniBook { conn: &self.tx, pools: &self.pools }
    }

    /// Every lease of `network`, optionally only those of `owner`, by pool
    /// and address.
    pub fn leases(
        &self,
        network: &str,
        owner: Option<&CniOwner>,
    ) -> Result<Vec<CniLease>, StoreError> {
        // Two statements, so the owner's lookup uses its index; sorted here,
        // which costs less than compiling SQLite's sorter for a handful of rows.
        const COLS: &str = "SELECT subnet, ip_offset, container_id, ifname, pool_id FROM leases";
        let sql = match owner {
            Some(_) => format!("{COLS} WHERE container_id = ?2 AND ifname = ?3 AND network = ?1"),
            None => format!("{COLS} WHERE network = ?1"),
        };
        let mut stmt = self.tx.prepare_cached(&sql).ctx("reading leases")?;
        let row = |r: &rusqlite::Row<'_>| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        };
        let rows: Vec<_> = match owner {
            Some(o) => stmt
                .query_map(params![network, o.container_id, o.ifname], row)
                .and_then(Iterator::collect),
            None => stmt.query_map(params![network], row).and_then(Iterator::collect),
        }
        .ctx("reading leases")?;
        let mut out = Vec::new();
        for (subnet, offset, container_id, ifname, pool) in rows {
            let subnet: IpNet = subnet
                .parse()
                .map_err(|_| StoreError::corrupt(format!("lease subnet {subnet}")))?;
            let ip = ip_at(subnet, from_blob(&offset)?)
                .ok_or_else(|| StoreError::corrupt(format!("offset in pool {subnet}")))?;
            out.push(CniLease {
                pool: PoolId(pool),
                subnet,
                ip,
                owner: CniOwner { container_id, ifname },
            });
        }
        out.sort_by_key(|l| (l.pool.0, to_u128(l.ip)));
        Ok(out)
    }

    /// Releases every lease `owner` holds in `network`; returns the addresses.
    pub fn release_owner(
        &self,
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
        &self,
        network: &str,
        keep: impl Fn(&CniOwner) -> bool,
    ) -> Result<Vec<CniLease>, StoreError> {
        let stale: Vec<CniLease> =
            self.leases(network, None)?.into_iter().filter(|l| !keep(&l.owner)).collect();
        for lease in &stale {
            self.release(lease)?;
        }
        Ok(stale)
    }

    fn release(&self, lease: &CniLease) -> Result<(), StoreError> {
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

fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use nicslice_model::ipam::LeaseBook;

    /// A database path in a directory of its own, removed when dropped.
    struct TempDb {
        dir: PathBuf,
        path: PathBuf,
    }

    impl TempDb {
        fn new(tag: &str) -> TempDb {
            let dir = std::env::temp_dir().join(format!("cni-ipam-{tag}-{}", std::process::id()));
            TempDb { path: dir.join("cni-ipam.db"), dir }
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn owner(c: &str) -> CniOwner {
        CniOwner { container_id: c.into(), ifname: "eth0".into() }
    }

    #[test]
    fn leases_round_trip_and_release_by_owner_and_gc() {
        let db = TempDb::new("test");
        let path = &db.path;
        let mut store = CniIpamStore::open(path).unwrap();
        let subnet: IpNet = "10.1.0.0/16".parse().unwrap();
        let tx = store.write().unwrap();
        let pool = tx.pool("net1", subnet, "all").unwrap();
        assert_eq!(tx.pool("net1", "10.1.9.9/16".parse().unwrap(), "all").unwrap(), pool);
        let other = tx.pool("net1", subnet, "upper").unwrap();
        assert_ne!(other, pool);
        let mut book = tx.book();
        book.insert_lease(pool, 5, owner("a")).unwrap();
        book.insert_lease(pool, 300, owner("b")).unwrap();
        book.set_high_water(pool, 301).unwrap();
        // A lease in one range of a subnet is seen from every range of it.
        assert!(book.is_leased(other, 300).unwrap());
        assert!(!book.is_leased(other, 301).unwrap());
        let held = tx.leases("net1", Some(&owner("b"))).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].ip, "10.1.1.44".parse::<IpAddr>().unwrap());
        assert_eq!(tx.release_owner("net1", &owner("a")).unwrap().len(), 1);
        assert_eq!(tx.book().pop_lowest_freed(pool).unwrap(), Some(5));
        let gone = tx.release_unless("net1", |o| o.container_id == "zzz").unwrap();
        assert_eq!(gone.len(), 1);
        assert!(tx.leases("net1", None).unwrap().is_empty());
        tx.commit().unwrap();
        drop(store);
        // Reopening an up-to-date database does not migrate again.
        CniIpamStore::open(path).unwrap().ping().unwrap();
    }

    #[test]
    fn leases_of_another_boot_are_forgotten_and_garbage_is_replaced() {
        let db = TempDb::new("boot");
        let path = &db.path;
        let mut store = CniIpamStore::open(path).unwrap();
        let tx = store.write().unwrap();
        let pool = tx.pool("n", "10.0.0.0/24".parse().unwrap(), "all").unwrap();
        tx.book().insert_lease(pool, 5, owner("a")).unwrap();
        tx.commit().unwrap();
        store.conn.execute("UPDATE meta SET value = 'an-older-boot'", []).unwrap();
        drop(store);
        let mut store = CniIpamStore::open(path).unwrap();
        assert!(store.write().unwrap().leases("n", None).unwrap().is_empty());
        drop(store);
        std::fs::write(path, b"this is not a database, it is a long enough text").unwrap();
        let _ = std::fs::remove_file(path.with_extension("db-wal"));
        let _ = std::fs::remove_file(path.with_extension("db-shm"));
        CniIpamStore::open(path).unwrap().ping().unwrap();
        assert!(path.with_extension("db.corrupt").exists());
    }

    #[test]
    fn the_journal_is_kept_between_calls_and_no_wal_is_made() {
        let db = TempDb::new("journal");
        let path = &db.path;
        let mut store = CniIpamStore::open(path).unwrap();
        let mode: String = store.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "truncate");
        let tx = store.write().unwrap();
        tx.pool("n", "10.0.0.0/24".parse().unwrap(), "all").unwrap();
        tx.commit().unwrap();
        drop(store);
        let journal = path.with_extension("db-journal");
        let kept = std::fs::metadata(&journal).expect("the journal file is kept for the next call");
        assert_eq!(kept.len(), 0, "and emptied at commit, so no call has to read it");
        assert!(!path.with_extension("db-wal").exists(), "no WAL to create and delete per call");
        // A corrupt database with a journal beside it is still replaced.
        std::fs::write(path, b"this is not a database, it is a long enough text").unwrap();
        std::fs::write(&journal, [0xd9u8; 512]).unwrap();
        CniIpamStore::open(path).unwrap().ping().unwrap();
        assert!(path.with_extension("db.corrupt").exists());
    }

    #[test]
    fn a_version_1_file_is_upgraded_with_its_leases() {
        let db = TempDb::new("v1");
        let path = &db.path;
        std::fs::create_dir_all(&db.dir).unwrap();
        let boot = std::fs::read_to_string(BOOT_ID).unwrap().trim().to_string();
        let v1 = Connection::open(path).unwrap();
        v1.execute_batch(schema::V1_FOR_TESTS).unwrap();
        let five = to_blob(5);
        let nine = to_blob(9);
        v1.execute_batch(&format!(
            "INSERT INTO meta VALUES ('boot_id', '{boot}');
             INSERT INTO pools VALUES (1, 'n', '10.0.0.0/24', 'all', X'{}');
             INSERT INTO leases VALUES (1, X'{}', 'a', 'eth0');
             INSERT INTO freed VALUES (1, X'{}');",
            hex(&to_blob(10)),
            hex(&five),
            hex(&nine)
        ))
        .unwrap();
        drop(v1);
        let mut store = CniIpamStore::open(path).unwrap();
        let tx = store.write().unwrap();
        let held = tx.leases("n", Some(&owner("a"))).unwrap();
        assert_eq!(held.len(), 1, "the lease of this boot survives the upgrade");
        assert_eq!(held[0].ip, "10.0.0.5".parse::<IpAddr>().unwrap());
        let pool = tx.pool("n", "10.0.0.0/24".parse().unwrap(), "all").unwrap();
        assert_eq!(pool, PoolId(1));
        assert_eq!(tx.book().high_water(pool).unwrap(), 10);
        assert!(tx.book().is_leased(pool, 5).unwrap());
        assert_eq!(tx.book().pop_lowest_freed(pool).unwrap(), Some(9));
        tx.commit().unwrap();
        let version: i64 =
            store.conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, schema::VERSION);
        let left: i64 = store
            .conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE name LIKE '%v1%'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(left, 0, "no table of version 1 is left behind");
        drop(store);
    }

    #[test]
    fn a_connection_opened_before_another_made_the_schema_still_works() {
        // Concurrent first calls: both open the empty file (and read its empty
        // schema); one creates the tables; the other's write must see them.
        let db = TempDb::new("race");
        let path = &db.path;
        let mut first = CniIpamStore::open(path).unwrap();
        let mut second = CniIpamStore::open(path).unwrap();
        let tx = first.write().unwrap();
        let pool = tx.pool("n", "10.0.0.0/24".parse().unwrap(), "all").unwrap();
        tx.book().insert_lease(pool, 5, owner("a")).unwrap();
        tx.commit().unwrap();
        let tx = second.write().unwrap();
        assert_eq!(tx.leases("n", None).unwrap().len(), 1, "the lease made meanwhile is seen");
        tx.commit().unwrap();
        drop((first, second));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let db = TempDb::new("new");
        let path = &db.path;
        let mut store = CniIpamStore::open(path).unwrap();
        store.conn.pragma_update(None, "user_version", schema::VERSION + 1).unwrap();
        assert!(matches!(store.write(), Err(StoreError::SchemaTooNew { .. })));
        assert!(matches!(store.ping(), Err(StoreError::SchemaTooNew { .. })));
        drop(store);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
