//! LMDB's return codes as an error type. Its own module, below both the
//! LMDB layer (`cni_ipam::lmdb`) and the store's error enum (`error.rs`),
//! so that each depends on it and neither on the other.

use std::ffi::{CStr, c_int};
use std::fmt;

use lmdb_master_sys as ffi;

/// An LMDB return code (or an errno, which LMDB passes through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error(pub c_int);

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub const MAP_FULL: Error = Error(ffi::MDB_MAP_FULL);

    /// The file is not an LMDB environment this library can read.
    pub fn is_unreadable_file(self) -> bool {
        matches!(self.0, ffi::MDB_INVALID | ffi::MDB_VERSION_MISMATCH | ffi::MDB_CORRUPTED)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: mdb_strerror returns a static NUL-terminated string for
        // every code (strerror's for an errno).
        let text = unsafe { CStr::from_ptr(ffi::mdb_strerror(self.0)) };
        f.write_str(&text.to_string_lossy())
    }
}

impl std::error::Error for Error {}
