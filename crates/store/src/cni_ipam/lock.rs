//! The lock of the CNI lease database: `flock` on a file beside it (`-lock`
//! appended). LMDB runs without its own lock file (`NO_LOCK`), whose set-up
//! a process living for one call pays in full each time (mapping the lock
//! file, re-initialising its robust mutexes as its first user, two `fcntl`
//! locks: a fifth of opening the database). What LMDB then asks of the
//! caller, this lock gives: one transaction at a time. Every transaction,
//! and the opening of the file (which may create it), holds it: `lmdb`'s
//! transactions take a [`Held`] and keep it until they end, so one cannot
//! begin without it. The kernel drops a `flock` when its holder dies, so a
//! plugin killed mid-call blocks nobody, and LMDB's copy-on-write pages keep
//! its unfinished transaction unseen. A wait longer than
//! `NICSLICE_LOCK_TIMEOUT` fails naming the holder (`crate::flock`).
//!
//! The lock file is never removed: a process waiting on it must lock the
//! same file as the one holding it. Its absence marks the database's first
//! use, when the path is checked before anything is created (`first_use`).

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{legacy, lmdb};
use crate::StoreError;
use crate::files::{self, with_suffix};
use crate::flock::{self, Taken};

/// The open lock file of one database handle. Each handle opens its own:
/// `flock` excludes open files from each other, so two handles in one
/// process (two threads) wait for each other as two processes do.
#[derive(Debug)]
pub(super) struct LockFile {
    file: File,
    path: PathBuf,
    /// Whether it lies on a file system in memory (tmpfs, ramfs), which a
    /// reboot empties.
    in_memory: bool,
}

/// The lock, held until dropped (by the transaction it was given to).
#[must_use]
pub(crate) struct Held<'a> {
    lock: &'a LockFile,
    taken: Option<Taken>,
}

impl LockFile {
    /// Opens the lock file of the database at `db_path`, making it (and the
    /// directory) on the database's first use, after `first_use`'s checks.
    /// An existing lock file must be the caller's and writable by nobody else.
    pub fn open(db_path: &Path) -> Result<LockFile, StoreError> {
        let path = with_suffix(db_path, "-lock");
        let file = match files::open_existing(&path) {
            Ok(file) => {
                let meta = file
                    .metadata()
                    .map_err(|source| StoreError::Lock { path: path.clone(), source })?;
                files::check_file_meta(&path, &meta)?;
                file
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                first_use(db_path)?;
                files::open_lock_file(&path)?
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(StoreError::UnsafePath {
                    path,
                    reason: "it is a symbolic link; a lock file must not be one".into(),
                });
            }
            Err(source) => return Err(StoreError::Lock { path, source }),
        };
        // ramfs's magic (linux/magic.h), which libc does not name.
        const RAMFS_MAGIC: libc::__fsword_t = 0x8584_58f6;
        // SAFETY: statfs is plain old data; all zeroes is a valid value.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: fstatfs writes into the struct given, on a descriptor owned here.
        let known = unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } == 0;
        // Unknown counts as a disk: its boot is then checked.
        let in_memory = known && [libc::TMPFS_MAGIC, RAMFS_MAGIC].contains(&fs.f_type);
        Ok(LockFile { file, path, in_memory })
    }

    /// Whether the database's directory is in memory (the lock file lies beside it).
    pub fn in_memory(&self) -> bool {
        self.in_memory
    }

    /// Waits for the lock (every transaction, and opening the file), at
    /// most `NICSLICE_LOCK_TIMEOUT`.
    pub fn exclusive(&self) -> Result<Held<'_>, StoreError> {
        self.exclusive_within(None)
    }

    /// [`LockFile::exclusive`], waiting at most `timeout` (`None`: the
    /// variable's bound).
    pub fn exclusive_within(&self, timeout: Option<Duration>) -> Result<Held<'_>, StoreError> {
        let taken = flock::lock(&self.file, &self.path, timeout)?;
        Ok(Held { lock: self, taken: Some(taken) })
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(taken) = self.taken.take() {
            flock::unlock(&self.lock.file, taken);
        }
    }
}

/// The checks of the database's first use, before the lock file or the
/// directory is made: a directory, device or someone else's file at the
/// path is refused (so that `ipam.state` naming a directory leaves no
/// `<dir>-lock` beside it), and so is a file that is not an LMDB database,
/// which nicslice will not write into (an empty one only if it made it).
fn first_use(db_path: &Path) -> Result<(), StoreError> {
    if let Some(meta) = files::check_file(db_path)? {
        if meta.len() == 0 {
            files::check_empty_is_ours(db_path, &meta)?;
        } else if !starts_with_lmdb_meta(db_path)? {
            if legacy::is_sqlite(db_path) {
                return Err(StoreError::LeaseDbIsSqlite { path: db_path.to_owned() });
            }
            return Err(StoreError::NotALeaseDb { path: db_path.to_owned() });
        }
    }
    let dir = db_path.parent().unwrap_or(Path::new(""));
    files::prepare_dir(dir)
}

/// Whether the file at `path` starts with an LMDB meta page (its format marker).
pub(super) fn starts_with_lmdb_meta(path: &Path) -> Result<bool, StoreError> {
    let inspect = |source| StoreError::Inspect { path: path.to_owned(), source };
    let mut head = [0u8; 64];
    let mut file = File::open(path).map_err(inspect)?;
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(inspect(e)),
        }
    }
    Ok(lmdb::is_meta_page(&head[..read]))
}
