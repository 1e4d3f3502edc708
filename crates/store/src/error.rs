//! `StoreError`: every way the store can fail, with the context a user needs.
//! SQLite's and LMDB's own errors are kept as the `#[source]`, never repeated
//! in the message.

use std::path::PathBuf;

use nicslice_model::ModelError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot create the directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create {path}")]
    CreateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not an SQLite database, which nicslice's state is, and nicslice writes only \
         into files it made; point --state (or NICSLICE_STATE) at another path"
    )]
    NotAStateDb { path: PathBuf },
    #[error("cannot open the state database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the state database {path} has schema version {found}, newer than version {supported} \
         that this nicslice understands; upgrade nicslice or point --state elsewhere"
    )]
    SchemaTooNew { path: PathBuf, found: i64, supported: i64 },
    #[error("cannot bring the state database {path} to schema version {version}")]
    Migrate {
        path: PathBuf,
        version: i64,
        #[source]
        source: rusqlite::Error,
    },
    /// etcd (the fleet pool) failed or could not be reached.
    #[error("etcd: {0}")]
    Etcd(String),
    /// The fleet pool has no block left for this host (what dead hosts
    /// hold may be taken back: `fleet::reclaimable`).
    #[error("{0}")]
    FleetFull(String),
    #[error("network {0} already exists")]
    NetworkExists(String),
    #[error("network {0} does not exist")]
    NoSuchNetwork(String),
    #[error("network {network} still has {count} endpoint(s); remove them first")]
    NetworkInUse { network: String, count: u64 },
    #[error("an endpoint named {ifname} already exists in namespace {netns}")]
    EndpointExists { netns: String, ifname: String },
    #[error("endpoint {0} does not exist")]
    NoSuchEndpoint(i64),
    #[error("endpoint {endpoint} belongs to another network than {network}")]
    EndpointNotInNetwork { endpoint: i64, network: String },
    #[error("network {network} has no subnet number {index}")]
    NoSuchSubnet { network: String, index: usize },
    #[error("the state database holds a corrupt {what}; inspect it or restore a backup")]
    Corrupt { what: String },
    #[error(
        "the state database stayed locked by another process longer than NICSLICE_LOCK_TIMEOUT \
         allows (seconds, default 30) while {context}; try again"
    )]
    Busy {
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state database error while {context}")]
    Sqlite {
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot open the CNI lease database {path}")]
    LeaseDbOpen {
        path: PathBuf,
        #[source]
        source: crate::lmdb_error::Error,
    },
    #[error("cannot lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "gave up after {:.1} s waiting for the lock {path}, held by {holder}; wait for it to \
         finish, or set NICSLICE_LOCK_TIMEOUT (seconds, default 30) to wait longer",
        waited.as_secs_f64()
    )]
    LockTimeout { path: PathBuf, waited: std::time::Duration, holder: String },
    #[error("NICSLICE_LOCK_TIMEOUT={value:?} is not a number of seconds")]
    BadLockTimeout { value: String },
    #[error("refusing {path}: {reason}")]
    UnsafePath { path: PathBuf, reason: String },
    #[error("cannot inspect {path}")]
    Inspect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the CNI lease database {path} is unreadable ({reason}); no address is handed out while \
         the leases it holds are unknown: `nicslice cni-leases recover {path}` sets it aside and \
         starts a new one"
    )]
    LeaseDbUnreadable { path: PathBuf, reason: String },
    #[error(
        "{path} is not a CNI lease database (it does not start with an LMDB meta page), and \
         nicslice writes only into files it made; point ipam.state at another path"
    )]
    NotALeaseDb { path: PathBuf },
    #[error("cannot set {path} aside as {aside}")]
    SetAside {
        path: PathBuf,
        aside: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CNI lease database error while {context}")]
    LeaseDb {
        context: &'static str,
        #[source]
        source: crate::lmdb_error::Error,
    },
    #[error(
        "the CNI lease database is full while {context}; release stale leases (CNI GC) or \
         move the file aside"
    )]
    LeaseDbFull { context: &'static str },
    #[error(
        "the CNI lease database {path} has format {found}, newer than format {supported} that \
         this nicslice understands; upgrade nicslice or point ipam.state elsewhere"
    )]
    LeaseDbTooNew { path: PathBuf, found: u32, supported: u32 },
    #[error(
        "{path} is the SQLite lease database of an earlier nicslice; point ipam.state at another \
         file (an earlier cni-ipam.db beside the new file has its leases taken over)"
    )]
    LeaseDbIsSqlite { path: PathBuf },
    #[error("cannot take over the leases of the earlier lease database {path}")]
    LeaseDbImport {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{what} is {len} bytes long, more than the CNI lease database keeps")]
    TooLong { what: &'static str, len: usize },
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl StoreError {
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Corrupt { what: what.into() }
    }
}

/// Adds what the store was doing to a SQLite error.
pub(crate) trait Context<T> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| {
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
                StoreError::Busy { context, source }
            } else {
                StoreError::Sqlite { context, source }
            }
        })
    }
}

impl<T> Context<T> for Result<T, crate::lmdb_error::Error> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| match source {
            crate::lmdb_error::Error::MAP_FULL => StoreError::LeaseDbFull { context },
            source => StoreError::LeaseDb { context, source },
        })
    }
}

/// Whether `e` is a UNIQUE or PRIMARY KEY constraint violation.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    e.sqlite_error().is_some_and(|e| {
        e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    })
}
