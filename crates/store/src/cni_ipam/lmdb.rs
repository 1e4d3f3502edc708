//! The part of LMDB's C API (through the `lmdb-master-sys` bindings) that
//! the lease database uses, made safe: an environment, read and write
//! transactions, the unnamed database with get, put, delete, clear and
//! prefix scans. heed, the crate this replaces, cost a process that lives
//! for one CNI call about 15 µs at every open (it canonicalized the path,
//! four readlinks, and kept a registry of environments behind a lock in a
//! randomly seeded map); the store keeps its own registry (`OPEN`).
//!
//! Lifetimes carry LMDB's rules: a transaction borrows its environment,
//! values borrow the transaction they were read in (and a write needs the
//! transaction mutably, so no value read before it outlives it), a cursor
//! lives inside one borrow of its transaction. The environment runs without
//! LMDB's own lock (`NO_LOCK`): a transaction begins only with the database's
//! `flock` ([`Held`]), which it keeps until it ends, so none can overlap.

use std::ffi::{CString, c_int, c_uint};
use std::marker::PhantomData;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::{self, NonNull};

use lmdb_master_sys as ffi;

use super::lock::Held;

pub use crate::lmdb_error::{Error, Result};

/// LMDB's format marker: every data file starts with a meta page, whose
/// header flags say so and whose body starts with this number.
const MAGIC: u32 = 0xBEEF_C0DE;
/// The meta page's flag in a page header.
const P_META: u16 = 0x08;

/// Whether `head` (the first bytes of a file) is an LMDB meta page: the page
/// header (a page number, then two 16-bit fields, the second the flags,
/// then 32 bits) and the magic number after it, in this machine's order.
pub fn is_meta_page(head: &[u8]) -> bool {
    let pgno = std::mem::size_of::<usize>();
    let at = |i: usize, n: usize| head.get(i..i + n);
    let flags = at(pgno + 2, 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let magic = at(pgno + 8, 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    flags.is_some_and(|f| f & P_META != 0) && magic == Some(MAGIC)
}

fn check(rc: c_int) -> Result<()> {
    if rc == 0 { Ok(()) } else { Err(Error(rc)) }
}

/// The `MDB_val` of a slice: LMDB reads keys and data given to it, never writes them.
fn val(bytes: &[u8]) -> ffi::MDB_val {
    ffi::MDB_val { mv_size: bytes.len(), mv_data: bytes.as_ptr() as *mut _ }
}

fn empty_val() -> ffi::MDB_val {
    ffi::MDB_val { mv_size: 0, mv_data: ptr::null_mut() }
}

/// # Safety
/// `v` must come from LMDB inside a transaction that lives for `'t`, with
/// no update in between (the caller's borrows ensure both).
unsafe fn slice<'t>(v: &ffi::MDB_val) -> &'t [u8] {
    if v.mv_size == 0 {
        return &[];
    }
    // SAFETY: LMDB points mv_data at mv_size bytes in its map or a dirty
    // page, valid until the transaction's next update or its end.
    unsafe { std::slice::from_raw_parts(v.mv_data as *const u8, v.mv_size) }
}

/// Flags of [`Env::open`].
pub const NO_SUB_DIR: c_uint = ffi::MDB_NOSUBDIR;
pub const NO_SYNC: c_uint = ffi::MDB_NOSYNC;
pub const NO_LOCK: c_uint = ffi::MDB_NOLOCK;
pub const NO_TLS: c_uint = ffi::MDB_NOTLS;

/// An open LMDB environment (one file). Closed when dropped.
pub struct Env {
    raw: NonNull<ffi::MDB_env>,
}

// SAFETY: an MDB_env may be used from any thread; what must not overlap
// (transactions, under NO_LOCK) the callers of `open` exclude themselves.
unsafe impl Send for Env {}
// SAFETY: as above.
unsafe impl Sync for Env {}

/// What [`Env::info`] tells.
pub struct EnvInfo {
    pub map_size: usize,
    pub last_page_number: usize,
}

impl Env {
    /// Opens the environment at `path` with `flags` and a map of `map_size` bytes.
    ///
    /// # Safety
    /// LMDB maps the file: nothing but LMDB may change it while it is open,
    /// there may be one environment per file in a process, and with
    /// `NO_LOCK` the caller must keep transactions from overlapping (the
    /// lock, held while opening too, which may create the file).
    pub unsafe fn open(path: &Path, flags: c_uint, map_size: usize, _: &Held<'_>) -> Result<Env> {
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Error(libc::EINVAL))?;
        let mut raw = ptr::null_mut();
        // SAFETY: mdb_env_create writes the new handle into `raw`.
        check(unsafe { ffi::mdb_env_create(&mut raw) })?;
        // Closed by Drop from here on, whatever fails next (as LMDB asks).
        let env = Env { raw: NonNull::new(raw).ok_or(Error(libc::ENOMEM))? };
        // SAFETY: a handle just created, not yet open.
        check(unsafe { ffi::mdb_env_set_mapsize(env.raw.as_ptr(), map_size) })?;
        // SAFETY: c_path is NUL-terminated and lives across the call.
        check(unsafe { ffi::mdb_env_open(env.raw.as_ptr(), c_path.as_ptr(), flags, 0o600) })?;
        Ok(env)
    }

    /// The descriptor of the data file (to check who owns it).
    pub fn fd(&self) -> Result<std::os::fd::RawFd> {
        let mut fd = -1;
        // SAFETY: an open environment; mdb_env_get_fd writes its descriptor.
        check(unsafe { ffi::mdb_env_get_fd(self.raw.as_ptr(), &mut fd) })?;
        Ok(fd)
    }

    pub fn info(&self) -> EnvInfo {
        // SAFETY: MDB_envinfo is plain old data, filled by mdb_env_info.
        let mut info: ffi::MDB_envinfo = unsafe { std::mem::zeroed() };
        // SAFETY: an open environment; mdb_env_info only reads it.
        unsafe { ffi::mdb_env_info(self.raw.as_ptr(), &mut info) };
        EnvInfo { map_size: info.me_mapsize, last_page_number: info.me_last_pgno }
    }

    /// Maps `size` bytes of the file from now on.
    ///
    /// # Safety
    /// No transaction of this environment may be active (under the lock,
    /// none of this file is, if every handle keeps to it).
    pub unsafe fn set_map_size(&self, size: usize, _: &Held<'_>) -> Result<()> {
        // SAFETY: the caller guarantees no transaction is active.
        check(unsafe { ffi::mdb_env_set_mapsize(self.raw.as_ptr(), size) })
    }

    fn begin(&self, flags: c_uint) -> Result<NonNull<ffi::MDB_txn>> {
        let mut txn = ptr::null_mut();
        // SAFETY: an open environment; mdb_txn_begin writes the handle.
        check(unsafe { ffi::mdb_txn_begin(self.raw.as_ptr(), ptr::null_mut(), flags, &mut txn) })?;
        NonNull::new(txn).ok_or(Error(libc::ENOMEM))
    }

    /// A read transaction, holding the lock until it ends.
    pub fn read_txn<'e>(&'e self, held: Held<'e>) -> Result<RoTxn<'e>> {
        let raw = self.begin(ffi::MDB_RDONLY)?;
        Ok(RoTxn { raw, ended: false, _held: held, _env: PhantomData })
    }

    /// A write transaction, holding the lock until it ends.
    pub fn write_txn<'e>(&'e self, held: Held<'e>) -> Result<RwTxn<'e>> {
        let raw = self.begin(0)?;
        Ok(RwTxn { txn: RoTxn { raw, ended: false, _held: held, _env: PhantomData } })
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // SAFETY: every transaction borrows the environment, so none is left.
        unsafe { ffi::mdb_env_close(self.raw.as_ptr()) };
    }
}

/// A read transaction (and what a write transaction can do as well).
/// Aborted when dropped, then the lock released.
pub struct RoTxn<'e> {
    raw: NonNull<ffi::MDB_txn>,
    /// Committed: nothing left to abort.
    ended: bool,
    /// The lock, released after the transaction ends (fields drop after `drop`).
    _held: Held<'e>,
    _env: PhantomData<&'e Env>,
}

impl<'e> RoTxn<'e> {
    /// The handle of the environment's unnamed database, which it always
    /// has (asked in this transaction; valid for the environment's life).
    pub fn main_db(&self) -> Result<Database<'e>> {
        let mut dbi = 0;
        // SAFETY: a live transaction; a null name is the unnamed database.
        check(unsafe { ffi::mdb_dbi_open(self.raw.as_ptr(), ptr::null(), 0, &mut dbi) })?;
        Ok(Database { dbi, _env: PhantomData })
    }
}

impl Drop for RoTxn<'_> {
    fn drop(&mut self) {
        if !self.ended {
            // SAFETY: a live transaction, ended here once.
            unsafe { ffi::mdb_txn_abort(self.raw.as_ptr()) };
        }
    }
}

/// A write transaction: its changes are kept only by [`RwTxn::commit`].
pub struct RwTxn<'e> {
    txn: RoTxn<'e>,
}

impl<'e> std::ops::Deref for RwTxn<'e> {
    type Target = RoTxn<'e>;
    fn deref(&self) -> &RoTxn<'e> {
        &self.txn
    }
}

impl RwTxn<'_> {
    /// Commits, then releases the lock.
    pub fn commit(mut self) -> Result<()> {
        self.txn.ended = true;
        // SAFETY: a live write transaction; mdb_txn_commit frees it whether
        // it succeeds or not, so it is not aborted again (`ended`).
        check(unsafe { ffi::mdb_txn_commit(self.txn.raw.as_ptr()) })
    }
}

/// A database handle of an environment.
#[derive(Debug, Clone, Copy)]
pub struct Database<'e> {
    dbi: ffi::MDB_dbi,
    _env: PhantomData<&'e Env>,
}

impl Database<'_> {
    pub fn get<'t>(&self, txn: &'t RoTxn<'_>, key: &[u8]) -> Result<Option<&'t [u8]>> {
        let mut k = val(key);
        let mut data = empty_val();
        // SAFETY: a live transaction of this environment; LMDB sets `data`.
        match unsafe { ffi::mdb_get(txn.raw.as_ptr(), self.dbi, &mut k, &mut data) } {
            // SAFETY: read in `txn`, borrowed for 't.
            0 => Ok(Some(unsafe { slice(&data) })),
            ffi::MDB_NOTFOUND => Ok(None),
            rc => Err(Error(rc)),
        }
    }

    fn put_flags(&self, txn: &mut RwTxn<'_>, key: &[u8], data: &[u8], flags: c_uint) -> Result<()> {
        let (mut k, mut d) = (val(key), val(data));
        // SAFETY: a live write transaction; LMDB copies key and data.
        check(unsafe { ffi::mdb_put(txn.raw.as_ptr(), self.dbi, &mut k, &mut d, flags) })
    }

    pub fn put(&self, txn: &mut RwTxn<'_>, key: &[u8], data: &[u8]) -> Result<()> {
        self.put_flags(txn, key, data, 0)
    }

    /// A put that fails (MDB_KEYEXIST) when the key is there already.
    pub fn put_new(&self, txn: &mut RwTxn<'_>, key: &[u8], data: &[u8]) -> Result<()> {
        self.put_flags(txn, key, data, ffi::MDB_NOOVERWRITE)
    }

    /// Whether the key was there.
    pub fn delete(&self, txn: &mut RwTxn<'_>, key: &[u8]) -> Result<bool> {
        let mut k = val(key);
        // SAFETY: a live write transaction; a null data pointer deletes the key.
        match unsafe { ffi::mdb_del(txn.raw.as_ptr(), self.dbi, &mut k, ptr::null_mut()) } {
            0 => Ok(true),
            ffi::MDB_NOTFOUND => Ok(false),
            rc => Err(Error(rc)),
        }
    }

    /// Empties the database.
    pub fn clear(&self, txn: &mut RwTxn<'_>) -> Result<()> {
        // SAFETY: a live write transaction; 0 empties without deleting the database.
        check(unsafe { ffi::mdb_drop(txn.raw.as_ptr(), self.dbi, 0) })
    }

    /// The entries whose keys start with `prefix`, in key order.
    pub fn prefix_iter<'t>(&self, txn: &'t RoTxn<'_>, prefix: &[u8]) -> Result<PrefixIter<'t>> {
        let mut cursor = ptr::null_mut();
        // SAFETY: a live transaction; the cursor is closed by PrefixIter's Drop,
        // inside the borrow of the transaction.
        check(unsafe { ffi::mdb_cursor_open(txn.raw.as_ptr(), self.dbi, &mut cursor) })?;
        let cursor = NonNull::new(cursor).ok_or(Error(libc::ENOMEM))?;
        let prefix = prefix.to_vec();
        Ok(PrefixIter { cursor, prefix, started: false, done: false, _txn: PhantomData })
    }
}

/// See [`Database::prefix_iter`].
pub struct PrefixIter<'t> {
    cursor: NonNull<ffi::MDB_cursor>,
    prefix: Vec<u8>,
    started: bool,
    /// Past the last entry of the prefix (or failed): nothing more.
    done: bool,
    _txn: PhantomData<&'t ()>,
}

impl<'t> Iterator for PrefixIter<'t> {
    type Item = Result<(&'t [u8], &'t [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        // The first step seeks the first key at or after the prefix (LMDB
        // refuses to seek an empty key: then the first key of all).
        let (mut key, op) = match (self.started, self.prefix.is_empty()) {
            (true, _) => (empty_val(), ffi::MDB_NEXT),
            (false, true) => (empty_val(), ffi::MDB_FIRST),
            (false, false) => (val(&self.prefix), ffi::MDB_SET_RANGE),
        };
        self.started = true;
        let mut data = empty_val();
        // SAFETY: a live cursor; LMDB sets key and data (it reads `key` for SET_RANGE).
        let rc = unsafe { ffi::mdb_cursor_get(self.cursor.as_ptr(), &mut key, &mut data, op) };
        let item = match rc {
            // SAFETY: read in the transaction borrowed for 't.
            0 => Some(Ok(unsafe { (slice(&key), slice(&data)) }))
                .filter(|r| r.as_ref().is_ok_and(|(k, _)| k.starts_with(&self.prefix))),
            ffi::MDB_NOTFOUND => None,
            rc => Some(Err(Error(rc))),
        };
        self.done = !matches!(item, Some(Ok(_)));
        item
    }
}

impl Drop for PrefixIter<'_> {
    fn drop(&mut self) {
        // SAFETY: opened in a transaction that outlives this iterator ('t).
        unsafe { ffi::mdb_cursor_close(self.cursor.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::lock::LockFile;

    struct TempFile(std::path::PathBuf, LockFile);

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
            let _ = std::fs::remove_file(crate::files::with_suffix(&self.0, "-lock"));
        }
    }

    fn temp(tag: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("lmdb-{tag}-{}", std::process::id()));
        let lock = LockFile::open(&path).unwrap();
        TempFile(path, lock)
    }

    fn open(file: &TempFile) -> Result<Env> {
        let held = file.1.exclusive().unwrap();
        // SAFETY: a file of this test alone, one environment, under its lock.
        unsafe { Env::open(&file.0, NO_SUB_DIR | NO_SYNC | NO_LOCK | NO_TLS, 1 << 20, &held) }
    }

    /// The lock, for a transaction.
    fn held(file: &TempFile) -> Held<'_> {
        file.1.exclusive().unwrap()
    }

    #[test]
    fn writes_read_back_and_prefix_scans_stop_at_the_prefix() {
        let file = temp("scan");
        let env = open(&file).unwrap();
        let mut txn = env.write_txn(held(&file)).unwrap();
        let db = txn.main_db().unwrap();
        for key in ["a1", "b2", "b1", "b3", "c1"] {
            db.put(&mut txn, key.as_bytes(), key.to_uppercase().as_bytes()).unwrap();
        }
        assert_eq!(db.put_new(&mut txn, b"b1", b"again"), Err(Error(ffi::MDB_KEYEXIST)));
        assert!(db.delete(&mut txn, b"b3").unwrap());
        assert!(!db.delete(&mut txn, b"b3").unwrap());
        txn.commit().unwrap();
        assert!(is_meta_page(&std::fs::read(&file.0).unwrap()), "LMDB's marker is recognised");
        let txn = env.read_txn(held(&file)).unwrap();
        let scanned: Vec<(&[u8], &[u8])> =
            db.prefix_iter(&txn, b"b").unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(scanned, [(&b"b1"[..], &b"B1"[..]), (&b"b2"[..], &b"B2"[..])]);
        assert_eq!(db.prefix_iter(&txn, b"d").unwrap().count(), 0);
        assert!(db.prefix_iter(&txn, b"").unwrap().all(|r| r.is_ok()));
        assert_eq!(db.prefix_iter(&txn, b"").unwrap().count(), 4);
        assert_eq!(db.get(&txn, b"c1").unwrap(), Some(&b"C1"[..]));
        assert_eq!(db.get(&txn, b"zz").unwrap(), None);
    }

    #[test]
    fn an_uncommitted_write_is_dropped_and_clear_empties() {
        let file = temp("abort");
        let env = open(&file).unwrap();
        let mut txn = env.write_txn(held(&file)).unwrap();
        let db = txn.main_db().unwrap();
        db.put(&mut txn, b"k", b"v").unwrap();
        drop(txn);
        assert_eq!(db.get(&env.read_txn(held(&file)).unwrap(), b"k").unwrap(), None);
        let mut txn = env.write_txn(held(&file)).unwrap();
        db.put(&mut txn, b"k", b"v").unwrap();
        db.clear(&mut txn).unwrap();
        txn.commit().unwrap();
        let txn = env.read_txn(held(&file)).unwrap();
        assert_eq!(db.prefix_iter(&txn, b"").unwrap().count(), 0);
    }

    #[test]
    fn a_file_that_is_not_lmdb_is_told_apart() {
        let file = temp("garbage");
        std::fs::write(&file.0, "not a database, but long enough to have a header".repeat(100))
            .unwrap();
        let Err(e) = open(&file) else { panic!("garbage opened") };
        assert!(e.is_unreadable_file(), "{e}");
        assert!(!is_meta_page(&std::fs::read(&file.0).unwrap()));
        assert!(!Error(libc::ENOENT).is_unreadable_file());
        assert_eq!(Error(libc::ENOENT).to_string(), "No such file or directory");
    }
}
