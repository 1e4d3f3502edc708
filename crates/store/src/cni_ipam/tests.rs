use std::time::Duration;

use nicslice_model::ipam::LeaseBook;

use super::*;

/// A database path in a directory of its own, removed when dropped.
pub(super) struct TempDb {
    pub dir: PathBuf,
    pub path: PathBuf,
}

impl TempDb {
    pub fn new(tag: &str) -> TempDb {
        TempDb::under(&std::env::temp_dir(), tag)
    }

    fn under(base: &Path, tag: &str) -> TempDb {
        let dir = base.join(format!("cni-ipam-{tag}-{}", std::process::id()));
        TempDb { path: dir.join(CNI_IPAM_FILE), dir }
    }

    /// On a disk: /var/tmp, or this crate's directory when that is in memory.
    fn on_disk(tag: &str) -> TempDb {
        let db = TempDb::under(Path::new("/var/tmp"), tag);
        std::fs::create_dir_all(&db.dir).unwrap();
        if LockFile::open(&db.path).unwrap().in_memory() {
            return TempDb::under(Path::new(env!("CARGO_MANIFEST_DIR")), tag);
        }
        db
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn owner(c: &str) -> CniOwner {
    CniOwner { container_id: c.into(), ifname: "eth0".into() }
}

pub(super) fn net24() -> IpNet {
    "10.0.0.0/24".parse().unwrap()
}

/// Writes meta `name` = `value` in a transaction of its own.
fn set_meta(store: &CniIpamStore, name: &str, value: &[u8]) {
    let mut txn = store.env.write_txn(store.lock.exclusive().unwrap()).unwrap();
    let db = main_db(&txn).unwrap();
    put_meta(&mut txn, db, name, value).unwrap();
    txn.commit().unwrap();
}

fn meta(store: &CniIpamStore, name: &str) -> Option<Vec<u8>> {
    let txn = store.env.read_txn(store.lock.exclusive().unwrap()).unwrap();
    let db = main_db(&txn).unwrap();
    db.get(&txn, &meta_key(name).unwrap()).unwrap().map(<[u8]>::to_vec)
}

#[test]
fn leases_round_trip_and_release_by_owner_and_gc() {
    let db = TempDb::new("test");
    let mut store = CniIpamStore::open(&db.path).unwrap();
    let subnet: IpNet = "10.1.0.0/16".parse().unwrap();
    let mut tx = store.write().unwrap();
    let pool = tx.pool("net1", subnet, "all").unwrap();
    assert_eq!(tx.pool("net1", "10.1.9.9/16".parse().unwrap(), "all").unwrap(), pool);
    let other = tx.pool("net1", subnet, "upper").unwrap();
    assert_ne!(other, pool);
    let mut book = tx.book();
    book.insert_lease(pool, 5, owner("a")).unwrap();
    book.insert_lease(pool, 300, owner("b")).unwrap();
    assert!(book.insert_lease(other, 300, owner("c")).is_err(), "one lease per address");
    book.set_high_water(pool, 301).unwrap();
    // A lease in one range of a subnet is seen from every range of it.
    assert!(book.is_leased(other, 300).unwrap());
    assert!(!book.is_leased(other, 301).unwrap());
    assert!(!book.remove_lease(other, 300).unwrap(), "another range's lease stays");
    let held = tx.leases("net1", Some(&owner("b"))).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].ip, "10.1.1.44".parse::<IpAddr>().unwrap());
    assert!(tx.leases("net", None).unwrap().is_empty(), "net is not a prefix of net1");
    assert_eq!(tx.release_owner("net1", &owner("a")).unwrap().len(), 1);
    assert!(tx.leases("net1", Some(&owner("a"))).unwrap().is_empty());
    assert_eq!(tx.book().pop_lowest_freed(pool).unwrap(), Some(5));
    assert_eq!(tx.book().pop_lowest_freed(pool).unwrap(), None);
    let gone = tx.release_unless("net1", |o| o.container_id == "zzz").unwrap();
    assert_eq!(gone.len(), 1);
    assert!(tx.leases("net1", None).unwrap().is_empty());
    tx.commit().unwrap();
    drop(store);
    // What was committed is there for the next process; the high-water mark too.
    let mut store = CniIpamStore::open(&db.path).unwrap();
    store.ping().unwrap();
    let mut tx = store.write().unwrap();
    let again = tx.pool("net1", subnet, "all").unwrap();
    assert_eq!(again, pool);
    assert_eq!(tx.book().high_water(pool).unwrap(), 301);
    assert_eq!(tx.book().pop_lowest_freed(pool).unwrap(), Some(300), "released by the GC");
}

#[test]
fn released_offsets_come_back_lowest_first_per_pool() {
    let db = TempDb::new("freed");
    let mut store = CniIpamStore::open(&db.path).unwrap();
    let mut tx = store.write().unwrap();
    let a = tx.pool("n", net24(), "a").unwrap();
    let b = tx.pool("n", net24(), "b").unwrap();
    let mut book = tx.book();
    for offset in [300, 7, 256, 9] {
        book.push_freed(a, offset).unwrap();
    }
    book.push_freed(b, 1).unwrap();
    book.remove_freed(a, 9).unwrap();
    let order: Vec<_> = std::iter::from_fn(|| book.pop_lowest_freed(a).unwrap()).collect();
    assert_eq!(order, [7, 256, 300]);
    assert_eq!(book.pop_lowest_freed(b).unwrap(), Some(1));
}

#[test]
fn an_abandoned_transaction_leaves_nothing() {
    let db = TempDb::new("abandon");
    let mut store = CniIpamStore::open(&db.path).unwrap();
    let mut tx = store.write().unwrap();
    let pool = tx.pool("n", net24(), "all").unwrap();
    tx.book().insert_lease(pool, 5, owner("a")).unwrap();
    drop(tx);
    assert!(store.write().unwrap().leases("n", None).unwrap().is_empty());
}

#[test]
fn leases_of_another_boot_are_forgotten() {
    let db = TempDb::on_disk("boot");
    let mut store = CniIpamStore::open(&db.path).unwrap();
    assert!(!store.lock.in_memory(), "{} is on a disk", db.dir.display());
    let mut tx = store.write().unwrap();
    let pool = tx.pool("n", net24(), "all").unwrap();
    tx.book().insert_lease(pool, 5, owner("a")).unwrap();
    tx.commit().unwrap();
    set_meta(&store, "boot", b"an-older-boot");
    drop(store);
    let mut store = CniIpamStore::open(&db.path).unwrap();
    assert!(store.write().unwrap().leases("n", None).unwrap().is_empty());
}

#[test]
fn a_file_in_memory_is_not_checked_for_its_boot() {
    // tmpfs (/dev/shm here, /run by default) is emptied by a reboot: a file
    // there is of this boot, and its leases stay whatever boot it names.
    let db = TempDb::under(Path::new("/dev/shm"), "memboot");
    let mut store = CniIpamStore::open(&db.path).unwrap();
    assert!(store.lock.in_memory());
    let mut tx = store.write().unwrap();
    let pool = tx.pool("n", net24(), "all").unwrap();
    tx.book().insert_lease(pool, 5, owner("a")).unwrap();
    tx.commit().unwrap();
    assert_eq!(meta(&store, "boot"), Some(this_boot().into_bytes()), "a new file learns the boot");
    set_meta(&store, "boot", b"an-older-boot");
    assert_eq!(store.write().unwrap().leases("n", None).unwrap().len(), 1);
}

#[test]
fn two_handles_in_one_process_share_the_environment() {
    // LMDB's locks belong to the process: a second open of the same file must
    // not open it again (closing that would drop the first one's locks).
    let db = TempDb::new("twice");
    let mut first = CniIpamStore::open(&db.path).unwrap();
    let mut second = CniIpamStore::open(&db.path).unwrap();
    assert!(Arc::ptr_eq(&first.env, &second.env));
    let mut tx = first.write().unwrap();
    let pool = tx.pool("n", net24(), "all").unwrap();
    tx.book().insert_lease(pool, 5, owner("a")).unwrap();
    tx.commit().unwrap();
    let tx = second.write().unwrap();
    assert_eq!(tx.leases("n", None).unwrap().len(), 1, "the lease made meanwhile is seen");
    drop(tx);
    drop((first, second));
    // Closed with its last handle: opening again is a new environment.
    assert!(OPEN.lock().unwrap().iter().all(|(p, e)| *p != db.path || e.strong_count() == 0));
}

#[test]
fn a_newer_format_is_refused() {
    let db = TempDb::new("new");
    let mut store = CniIpamStore::open(&db.path).unwrap();
    store.write().unwrap().commit().unwrap();
    set_meta(&store, "format", &(FORMAT + 1).to_be_bytes());
    assert!(matches!(store.write(), Err(StoreError::LeaseDbTooNew { .. })));
    assert!(matches!(store.ping(), Err(StoreError::LeaseDbTooNew { .. })));
}

#[test]
fn names_longer_than_a_key_holds_are_refused_cleanly() {
    let db = TempDb::new("long");
    let mut store = CniIpamStore::open(&db.path).unwrap();
    let mut tx = store.write().unwrap();
    let pool = tx.pool("n", net24(), "all").unwrap();
    let long = CniOwner { container_id: "c".repeat(300), ifname: "eth0".into() };
    assert!(matches!(
        tx.book().insert_lease(pool, 5, long),
        Err(StoreError::TooLong { what: "the container ID", len: 300 })
    ));
}

/// The SQLite schemas earlier nicslice versions wrote.
const SQLITE_V1: &str = r#"
CREATE TABLE pools (id INTEGER PRIMARY KEY, network TEXT NOT NULL, subnet TEXT NOT NULL,
    range_key TEXT NOT NULL, high_water BLOB NOT NULL, UNIQUE (network, subnet, range_key));
CREATE TABLE leases (pool_id INTEGER NOT NULL REFERENCES pools(id) ON DELETE CASCADE,
    ip_offset BLOB NOT NULL, container_id TEXT NOT NULL, ifname TEXT NOT NULL,
    PRIMARY KEY (pool_id, ip_offset)) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE freed (pool_id INTEGER NOT NULL, ip_offset BLOB NOT NULL,
    PRIMARY KEY (pool_id, ip_offset)) WITHOUT ROWID;
PRAGMA user_version = 1;
"#;

const SQLITE_V2: &str = r#"
CREATE TABLE pools (id INTEGER PRIMARY KEY, network TEXT NOT NULL, subnet TEXT NOT NULL,
    range_key TEXT NOT NULL, high_water BLOB NOT NULL, UNIQUE (network, subnet, range_key));
CREATE TABLE leases (network TEXT NOT NULL, subnet TEXT NOT NULL, ip_offset BLOB NOT NULL,
    pool_id INTEGER NOT NULL, container_id TEXT NOT NULL, ifname TEXT NOT NULL,
    PRIMARY KEY (network, subnet, ip_offset)) WITHOUT ROWID;
CREATE TABLE freed (pool_id INTEGER NOT NULL, ip_offset BLOB NOT NULL,
    PRIMARY KEY (pool_id, ip_offset)) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
PRAGMA user_version = 2;
"#;

fn hex(offset: u128) -> String {
    offset.to_be_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// An SQLite lease file of `schema` in `dir`: pool 3 with mark 10, a lease
/// of 10.0.0.5 to `a`, offset 9 released.
fn legacy_file(dir: &Path, schema: &str, boot: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(legacy::LEGACY_FILE);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(schema).unwrap();
    let lease = if schema.contains("user_version = 1") {
        format!("INSERT INTO leases VALUES (3, X'{}', 'a', 'eth0');", hex(5))
    } else {
        format!("INSERT INTO leases VALUES ('n', '10.0.0.0/24', X'{}', 3, 'a', 'eth0');", hex(5))
    };
    conn.execute_batch(&format!(
        "INSERT INTO meta VALUES ('boot_id', '{boot}');
         INSERT INTO pools VALUES (3, 'n', '10.0.0.0/24', 'all', X'{}');
         {lease}
         INSERT INTO freed VALUES (3, X'{}');",
        hex(10),
        hex(9)
    ))
    .unwrap();
    path
}

#[test]
fn the_sqlite_file_of_an_earlier_version_is_taken_over_once() {
    for (tag, schema) in [("v1", SQLITE_V1), ("v2", SQLITE_V2)] {
        let db = TempDb::new(tag);
        let legacy = legacy_file(&db.dir, schema, &this_boot());
        let mut store = CniIpamStore::open(&db.path).unwrap();
        let mut tx = store.write().unwrap();
        let held = tx.leases("n", Some(&owner("a"))).unwrap();
        assert_eq!(held.len(), 1, "{tag}: the lease of this boot is kept");
        assert_eq!(held[0].ip, "10.0.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(held[0].pool, PoolId(3));
        let pool = tx.pool("n", net24(), "all").unwrap();
        assert_eq!(pool, PoolId(3), "{tag}: pool ids are kept");
        assert_ne!(tx.pool("n", net24(), "other").unwrap(), pool, "new ids come after");
        assert_eq!(tx.book().high_water(pool).unwrap(), 10);
        assert!(tx.book().is_leased(pool, 5).unwrap());
        assert_eq!(tx.book().pop_lowest_freed(pool).unwrap(), Some(9));
        tx.commit().unwrap();
        assert!(!legacy.exists(), "{tag}: the old file is moved aside");
        assert!(db.dir.join("cni-ipam.db.taken-over").exists());
    }
}

#[test]
fn an_earlier_boots_sqlite_file_brings_nothing() {
    let db = TempDb::new("oldboot");
    legacy_file(&db.dir, SQLITE_V2, "an-older-boot");
    let mut store = CniIpamStore::open(&db.path).unwrap();
    let tx = store.write().unwrap();
    assert!(tx.leases("n", None).unwrap().is_empty());
    tx.commit().unwrap();
    assert!(db.dir.join("cni-ipam.db.taken-over").exists());
}

#[test]
fn an_sqlite_file_in_the_databases_place_is_refused_not_replaced() {
    let db = TempDb::new("inplace");
    let legacy = legacy_file(&db.dir, SQLITE_V2, &this_boot());
    let err = CniIpamStore::open(&legacy).err().expect("an SQLite file is not opened as LMDB");
    assert!(matches!(err, StoreError::LeaseDbIsSqlite { .. }), "{err}");
    assert!(legacy::is_sqlite(&legacy), "and it is left as it was");
}

/// Set in the child of the test below: the database it dies in.
const DIE_IN_TXN: &str = "NICSLICE_TEST_DIE_IN_TXN";

#[test]
fn a_writer_killed_mid_transaction_neither_blocks_nor_leaves_its_writes() {
    if let Some(path) = std::env::var_os(DIE_IN_TXN) {
        // The child: lease, and be killed before the commit, holding the writer lock.
        let mut store = CniIpamStore::open(PathBuf::from(path)).unwrap();
        let mut tx = store.write().unwrap();
        let pool = tx.pool("n", net24(), "all").unwrap();
        tx.book().insert_lease(pool, 7, owner("dead")).unwrap();
        // SAFETY: kill on our own pid; nothing runs after it.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    let db = TempDb::new("killed");
    let mut store = CniIpamStore::open(&db.path).unwrap();
    let mut tx = store.write().unwrap();
    let pool = tx.pool("n", net24(), "all").unwrap();
    tx.book().insert_lease(pool, 5, owner("alive")).unwrap();
    tx.commit().unwrap();
    drop(store);
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cni_ipam::tests::a_writer_killed_mid_transaction_neither_blocks_nor_leaves_its_writes",
        ])
        .env(DIE_IN_TXN, &db.path)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the child died holding the lock");
    let path = db.path.clone();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let owners: Vec<String> = CniIpamStore::open(&path)
            .and_then(|mut s| {
                let tx = s.write()?;
                Ok(tx.leases("n", None)?.into_iter().map(|l| l.owner.container_id).collect())
            })
            .unwrap();
        let _ = send.send(owners);
    });
    let owners =
        receive.recv_timeout(Duration::from_secs(10)).expect("the dead writer's lock is free");
    assert_eq!(owners, ["alive"], "the uncommitted lease is not seen");
}

#[test]
fn a_transaction_larger_than_the_dirty_page_list_still_commits() {
    // LMDB is built with a small dirty-page list (Cargo.toml, mdb_idl_logn):
    // a transaction touching more pages (a GC of a crowded network) spills.
    let db = TempDb::new("big");
    let mut store = CniIpamStore::open(&db.path).unwrap();
    let subnet: IpNet = "10.8.0.0/16".parse().unwrap();
    const LEASES: u128 = 30_000;
    let mut tx = store.write().unwrap();
    let pool = tx.pool("crowded", subnet, "all").unwrap();
    let mut book = tx.book();
    for offset in 1..=LEASES {
        book.insert_lease(pool, offset, owner(&format!("container-{offset:05}"))).unwrap();
    }
    book.set_high_water(pool, LEASES + 1).unwrap();
    tx.commit().unwrap();
    let mut tx = store.write().unwrap();
    let gone = tx.release_unless("crowded", |_| false).unwrap();
    assert_eq!(gone.len() as u128, LEASES);
    tx.commit().unwrap();
    let mut tx = store.write().unwrap();
    assert!(tx.leases("crowded", None).unwrap().is_empty());
    assert_eq!(tx.book().pop_lowest_freed(pool).unwrap(), Some(1));
}

#[test]
fn the_map_grows_with_the_file() {
    // The map starts at MAP_SIZE; a file filling more than half of it gets a
    // larger one at the next write. Without that, the last batch here
    // (250,000 leases take about 75 MB) would find the map full.
    let db = TempDb::new("grow");
    let mut store = CniIpamStore::open(&db.path).unwrap();
    let subnet: IpNet = "10.0.0.0/8".parse().unwrap();
    const BATCH: u128 = 50_000;
    let mut pool = None;
    for batch in 0..5 {
        let mut tx = store.write().unwrap();
        let id = *pool.get_or_insert_with(|| tx.pool("huge", subnet, "all").unwrap());
        let mut book = tx.book();
        for offset in batch * BATCH + 1..=(batch + 1) * BATCH {
            book.insert_lease(id, offset, owner(&format!("container-{offset:07}"))).unwrap();
        }
        tx.commit().unwrap();
    }
    assert!(store.env.info().map_size > MAP_SIZE);
    let tx = store.write().unwrap();
    assert_eq!(tx.leases("huge", None).unwrap().len() as u128, 5 * BATCH);
}

#[test]
fn threads_with_handles_of_their_own_take_turns() {
    // LMDB runs without its own lock: the flock of each handle is all that
    // keeps two write transactions of one process apart.
    let db = TempDb::new("threads");
    std::fs::create_dir_all(&db.dir).unwrap();
    let path = &db.path;
    let offsets: Vec<u128> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|t| {
                s.spawn(move || {
                    let mut store = CniIpamStore::open(path).unwrap();
                    let mut got = Vec::new();
                    for i in 0..25 {
                        let mut tx = store.write().unwrap();
                        let pool = tx.pool("n", "10.9.0.0/16".parse().unwrap(), "all").unwrap();
                        let mut book = tx.book();
                        let next = book.high_water(pool).unwrap() + 1;
                        book.insert_lease(pool, next, owner(&format!("t{t}-{i}"))).unwrap();
                        book.set_high_water(pool, next).unwrap();
                        tx.commit().unwrap();
                        got.push(next);
                    }
                    got
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let mut sorted = offsets.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 200, "an offset was handed out twice");
    let tx =
        CniIpamStore::open(path).unwrap().write().map(|tx| tx.leases("n", None).unwrap().len());
    assert_eq!(tx.unwrap(), 200);
}
