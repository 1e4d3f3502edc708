//! The store layer of nicslice: the only place that persists. Networks, their
//! address pools and leases, endpoints and their DHCP leases live in one SQLite database (WAL,
//! safe for many concurrent processes). The CNI plugin's leases live apart,
//! in an LMDB file (`cni_ipam`: a process per call, which must not spend its
//! time parsing SQL). A fleet network's shared pool lives in etcd (`fleet`),
//! with this host's part of it in state.db.
//!
//! Writes happen in `WriteTx` (`BEGIN IMMEDIATE`, behind a `flock` queue:
//! concurrent writers wait their turn instead of failing half-way, at most
//! `NICSLICE_LOCK_TIMEOUT`, `flock`); reads through `StoreRead`, which
//! `Store`, `ReadTx` and `WriteTx` all implement. What files and directories
//! the store accepts and how it makes them is `files`'s. No kernel access
//! and no policy here: the model decides, the store records.

mod blob;
mod book;
pub mod cni_ipam;
mod dhcp_cni;
mod dhcp_leases;
mod error;
mod files;
pub mod fleet;
mod flock;
mod host_duid;
mod leases;
mod lmdb_error;
mod owned;
mod quarantine;
mod read;
mod records;
mod schema;
mod shims;
mod store;
mod write;

pub use dhcp_cni::CniDhcpHold;
pub use dhcp_leases::DhcpLeaseRecord;
pub use error::StoreError;
pub use flock::{DEFAULT_LOCK_TIMEOUT, LOCK_TIMEOUT_VAR, lock_timeout};
pub use host_duid::{host_duid, host_duid_path};
pub use owned::OwnedLink;
pub use quarantine::Quarantined;
pub use read::StoreRead;
pub use records::{
    EndpointId, EndpointRecord, EndpointState, LeaseRecord, NetnsId, NetworkId, NetworkRecord,
    NewEndpoint, Owner,
};
pub use schema::SCHEMA_VERSION;
pub use shims::ShimRecord;
pub use store::{DEFAULT_STATE_PATH, ReadTx, Store};
pub use write::WriteTx;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
