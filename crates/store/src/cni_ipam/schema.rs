//! The CNI lease database's schema, and the way an older file is brought to
//! it. Laid out for the plugin's cost, which is mostly SQLite compiling SQL
//! in a process that lives for one call: every lookup of a call is a single
//! table's key or index (no joins), and no table declares a foreign key or a
//! CHECK, which every write statement would compile code for. The code of
//! this module keeps what those constraints kept (see `CniIpamTx`).

use rusqlite::Connection;

/// The version this build writes (`PRAGMA user_version`).
pub(super) const VERSION: i64 = 2;

/// A lease carries its network and subnet, so that "is this address taken
/// in any range of its subnet" and "what does this owner hold in this
/// network" are each one key or index lookup.
const TABLES: &str = r#"
CREATE TABLE pools (
    id          INTEGER PRIMARY KEY,
    network     TEXT    NOT NULL,
    subnet      TEXT    NOT NULL,
    range_key   TEXT    NOT NULL,
    high_water  BLOB    NOT NULL,
    UNIQUE (network, subnet, range_key)
);
CREATE TABLE leases (
    network      TEXT    NOT NULL,
    subnet       TEXT    NOT NULL,
    ip_offset    BLOB    NOT NULL,
    pool_id      INTEGER NOT NULL,
    container_id TEXT    NOT NULL,
    ifname       TEXT    NOT NULL,
    PRIMARY KEY (network, subnet, ip_offset)
) WITHOUT ROWID;
CREATE INDEX leases_by_owner ON leases (container_id, ifname);
CREATE TABLE freed (
    pool_id      INTEGER NOT NULL,
    ip_offset    BLOB    NOT NULL,
    PRIMARY KEY (pool_id, ip_offset)
) WITHOUT ROWID;
CREATE TABLE meta (
    key          TEXT    PRIMARY KEY,
    value        TEXT    NOT NULL
) WITHOUT ROWID;
"#;

/// Version 1 (leases keyed by pool, found through a join; foreign keys and
/// CHECKs) to version 2, keeping every row: a file of this boot still holds
/// live leases. Children are dropped before `pools`, whose ON DELETE CASCADE
/// would otherwise empty them.
const FROM_V1: &str = r#"
ALTER TABLE pools RENAME TO pools_v1;
ALTER TABLE leases RENAME TO leases_v1;
ALTER TABLE freed RENAME TO freed_v1;
ALTER TABLE meta RENAME TO meta_v1;
DROP INDEX leases_by_owner;
"#;

const COPY_V1: &str = r#"
INSERT INTO pools SELECT id, network, subnet, range_key, high_water FROM pools_v1;
INSERT INTO leases SELECT p.network, p.subnet, l.ip_offset, l.pool_id, l.container_id, l.ifname
    FROM leases_v1 l JOIN pools_v1 p ON p.id = l.pool_id;
INSERT INTO freed SELECT pool_id, ip_offset FROM freed_v1;
INSERT INTO meta SELECT key, value FROM meta_v1;
DROP TABLE leases_v1;
DROP TABLE freed_v1;
DROP TABLE meta_v1;
DROP TABLE pools_v1;
"#;

/// Brings the database from `found` to [`VERSION`], inside the caller's
/// write transaction (SQLite's DDL is transactional: a failure leaves the
/// file as it was).
pub(super) fn upgrade(conn: &Connection, found: i64) -> rusqlite::Result<()> {
    if found == 1 {
        conn.execute_batch(FROM_V1)?;
    }
    conn.execute_batch(TABLES)?;
    if found == 1 {
        conn.execute_batch(COPY_V1)?;
    }
    conn.pragma_update(None, "user_version", VERSION)
}

/// The schema of version 1, for the test that upgrades such a file.
#[cfg(test)]
pub(super) const V1_FOR_TESTS: &str = r#"
CREATE TABLE pools (
    id INTEGER PRIMARY KEY, network TEXT NOT NULL, subnet TEXT NOT NULL,
    range_key TEXT NOT NULL,
    high_water BLOB NOT NULL CHECK (length(high_water) = 16),
    UNIQUE (network, subnet, range_key)
);
CREATE TABLE leases (
    pool_id INTEGER NOT NULL REFERENCES pools(id) ON DELETE CASCADE,
    ip_offset BLOB NOT NULL CHECK (length(ip_offset) = 16),
    container_id TEXT NOT NULL, ifname TEXT NOT NULL,
    PRIMARY KEY (pool_id, ip_offset)
) WITHOUT ROWID;
CREATE INDEX leases_by_owner ON leases(container_id, ifname);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE freed (
    pool_id INTEGER NOT NULL REFERENCES pools(id) ON DELETE CASCADE,
    ip_offset BLOB NOT NULL CHECK (length(ip_offset) = 16),
    PRIMARY KEY (pool_id, ip_offset)
) WITHOUT ROWID;
PRAGMA user_version = 1;
"#;
