//! The explicit way out of an unreadable CNI lease database (`nicslice
//! cni-leases recover FILE`): under the database's lock, the file is set
//! aside under a new name (never replacing anything) and a new, empty
//! database is made in its place, so that CNI calls work again.
//!
//! What it cannot do is rebuild the leases. The old file is not read: LMDB
//! trusts its file, and a damaged page makes it abort the process (an
//! assertion in its cursor code), so the copy is kept aside for whoever
//! wants to inspect it. Nor is the kernel a source: a CNI lease is keyed by
//! network name, container ID and interface name, none of which a link in
//! a namespace tells (and the store does not talk to the kernel). The
//! command says so to the user.

use std::path::{Path, PathBuf};

use super::lock::{self, LockFile};
use super::{FORMAT, OPEN, main_db, open_env, put_meta, this_boot};
use crate::StoreError;
use crate::error::Context;
use crate::files;

/// What [`recover`] did.
#[derive(Debug)]
pub struct Recovered {
    /// Where the unreadable file now is.
    pub set_aside: PathBuf,
}

/// Sets the lease database `path` aside and starts a new, empty one in its
/// place (module docs). Refused when the file opens (nothing to recover)
/// unless `force` (for a file that opens but fails in transactions), when
/// it is no lease database (nicslice does not move files it did not make),
/// or when this process has it open.
pub fn recover(path: &Path, force: bool) -> Result<Recovered, StoreError> {
    let refuse =
        |reason: &str| StoreError::UnsafePath { path: path.to_owned(), reason: reason.into() };
    if files::check_file(path)?.is_none() {
        return Err(refuse("there is no such file"));
    }
    if !lock::starts_with_lmdb_meta(path)? {
        return Err(StoreError::NotALeaseDb { path: path.to_owned() });
    }
    let in_use = OPEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|(p, e)| p == path && e.strong_count() > 0);
    if in_use {
        return Err(refuse("this process has it open"));
    }
    let lock = LockFile::open(path)?;
    let held = lock.exclusive()?;
    // Opening reads only the meta pages, which LMDB checks without asserting.
    if !force && open_env(path, &held).is_ok() {
        return Err(refuse(
            "it opens: there is nothing to recover (--force sets aside a file that opens but \
             fails in use)",
        ));
    }
    let set_aside = files::set_aside(path, "unreadable")?;
    let env = open_env(path, &held)
        .map_err(|source| StoreError::LeaseDbOpen { path: path.to_owned(), source })?;
    let mut txn = env.write_txn(held).ctx("starting a write transaction")?;
    let db = main_db(&txn)?;
    put_meta(&mut txn, db, "format", &FORMAT.to_be_bytes())?;
    put_meta(&mut txn, db, "boot", this_boot().as_bytes())?;
    txn.commit().ctx("committing")?;
    Ok(Recovered { set_aside })
}
