//! Tests of the store against real SQLite files in unique temporary directories.

mod allocation;
mod common;
mod concurrency;
mod endpoints;
mod files;
mod networks;
mod quarantine;
mod schema;
