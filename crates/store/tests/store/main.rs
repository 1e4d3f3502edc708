//! Tests of the store against real SQLite files in unique temporary directories.

mod allocation;
mod common;
mod concurrency;
mod dhcp_leases;
mod endpoints;
mod files;
mod networks;
mod quarantine;
mod schema;
mod wal;
