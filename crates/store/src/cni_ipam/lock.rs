//! The lock of the CNI lease database: `flock` on a file beside it (`-lock`
//! appended). LMDB runs without its own lock file (`NO_LOCK`), whose set-up
//! a process living for one call pays in full each time (mapping the lock
//! file, re-initialising its robust mutexes as its first user, two `fcntl`
//! locks: a fifth of opening the database). What LMDB then asks of the
//! caller, this lock gives: one transaction at a time. Every transaction,
//! and the opening of the file (which may create it), holds it; the kernel drops a `flock` when its holder dies, so a
//! plugin killed mid-call blocks nobody, and LMDB's copy-on-write pages keep
//! its unfinished transaction unseen.
//!
//! The lock file is never removed: a process waiting on it must lock the
//! same file as the one holding it.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::StoreError;

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

/// A lock held until dropped.
#[must_use]
pub(super) struct Held<'a>(&'a LockFile);

impl LockFile {
    pub fn open(db_path: &Path) -> Result<LockFile, StoreError> {
        let mut name = db_path.as_os_str().to_owned();
        name.push("-lock");
        let path = PathBuf::from(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StoreError::LeaseDbLock { path: path.clone(), source })?;
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

    /// Waits for the lock (every transaction, and opening the file).
    pub fn exclusive(&self) -> Result<Held<'_>, StoreError> {
        loop {
            // SAFETY: flock on a descriptor this struct owns, open as long as it.
            if unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Held(self));
            }
            let source = std::io::Error::last_os_error();
            if source.kind() != std::io::ErrorKind::Interrupted {
                return Err(StoreError::LeaseDbLock { path: self.path.clone(), source });
            }
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // SAFETY: as in `exclusive`; unlocking cannot fail on an open descriptor
        // that holds the lock, and closing the file would release it anyway.
        unsafe { libc::flock(self.0.file.as_raw_fd(), libc::LOCK_UN) };
    }
}
