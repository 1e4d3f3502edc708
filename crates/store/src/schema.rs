//! The database schema as an ordered list of migrations. `PRAGMA user_version`
//! records how many have run; opening a database applies the missing ones in
//! one transaction and refuses a database from a newer nicslice. Never edit a
//! migration once released: append a new one.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;
use crate::error::Context;

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: networks, pools, endpoints, leases, freed offsets.
    r#"
    CREATE TABLE networks (
        id           INTEGER PRIMARY KEY,
        name         TEXT    NOT NULL UNIQUE,
        parent       TEXT    NOT NULL,
        spec_json    TEXT    NOT NULL,
        promisc_prev INTEGER NULL,
        created_at   INTEGER NOT NULL
    );
    CREATE INDEX networks_by_parent ON networks(parent);

    CREATE TABLE pools (
        id           INTEGER PRIMARY KEY,
        network_id   INTEGER NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
        subnet_index INTEGER NOT NULL,
        subnet       TEXT    NOT NULL,
        gateway      TEXT    NOT NULL,
        high_water   BLOB    NOT NULL CHECK (length(high_water) = 16),
        UNIQUE (network_id, subnet_index)
    );

    CREATE TABLE endpoints (
        id           INTEGER PRIMARY KEY,
        network_id   INTEGER NOT NULL REFERENCES networks(id) ON DELETE RESTRICT,
        netns        TEXT    NOT NULL,
        netns_dev    INTEGER NOT NULL,
        netns_ino    INTEGER NOT NULL,
        ifname       TEXT    NOT NULL,
        mac          TEXT    NULL,
        details_json TEXT    NOT NULL,
        created_at   INTEGER NOT NULL,
        UNIQUE (netns_dev, netns_ino, ifname)
    );
    CREATE INDEX endpoints_by_network ON endpoints(network_id);

    CREATE TABLE leases (
        pool_id      INTEGER NOT NULL REFERENCES pools(id) ON DELETE CASCADE,
        ip_offset    BLOB    NOT NULL CHECK (length(ip_offset) = 16),
        endpoint_id  INTEGER NULL REFERENCES endpoints(id) ON DELETE RESTRICT,
        PRIMARY KEY (pool_id, ip_offset)
    ) WITHOUT ROWID;
    CREATE INDEX leases_by_endpoint ON leases(endpoint_id);

    CREATE TABLE freed (
        pool_id      INTEGER NOT NULL REFERENCES pools(id) ON DELETE CASCADE,
        ip_offset    BLOB    NOT NULL CHECK (length(ip_offset) = 16),
        PRIMARY KEY (pool_id, ip_offset)
    ) WITHOUT ROWID;
    "#,
    // 2: links nicslice created to serve as parents (802.1Q sub-interfaces,
    // dummies), so it deletes exactly those and never one it did not create.
    r#"
    CREATE TABLE owned_links (
        name         TEXT    PRIMARY KEY,
        kind         TEXT    NOT NULL,
        lower        TEXT    NULL,
        vlan_id      INTEGER NULL,
        created_at   INTEGER NOT NULL
    );
    "#,
    // 3: the namespace's cookie (its inode is reused at once, the cookie
    // never while the kernel runs), and intents: an endpoint row is written
    // and committed before the kernel is touched, in state "attaching" or
    // "detaching" with the process doing it, so that whoever finds it with
    // that process gone finishes or undoes the work.
    r#"
    ALTER TABLE endpoints ADD COLUMN netns_cookie INTEGER NULL;
    ALTER TABLE endpoints ADD COLUMN state TEXT NOT NULL DEFAULT 'attached'
        CHECK (state IN ('attached', 'attaching', 'detaching'));
    ALTER TABLE endpoints ADD COLUMN owner_pid INTEGER NULL;
    ALTER TABLE endpoints ADD COLUMN owner_start INTEGER NULL;
    CREATE INDEX endpoints_in_flight ON endpoints(state) WHERE state != 'attached';
    "#,
    // 4: host-access shims, one per network, made in the parent's namespace.
    r#"
    CREATE TABLE shims (
        network_id   INTEGER PRIMARY KEY REFERENCES networks(id) ON DELETE CASCADE,
        name         TEXT    NOT NULL,
        details_json TEXT    NOT NULL,
        created_at   INTEGER NOT NULL
    );
    "#,
    // 5 (issue 14): addresses a host nicslice does not manage answered on
    // the wire. Each holds its lease (owned by no endpoint) so the allocator
    // skips it; the row goes with the lease when the cool-down releases it.
    r#"
    CREATE TABLE quarantine (
        pool_id      INTEGER NOT NULL,
        ip_offset    BLOB    NOT NULL CHECK (length(ip_offset) = 16),
        answered_by  TEXT    NULL,
        answered_at  INTEGER NOT NULL,
        PRIMARY KEY (pool_id, ip_offset),
        FOREIGN KEY (pool_id, ip_offset) REFERENCES leases(pool_id, ip_offset) ON DELETE CASCADE
    ) WITHOUT ROWID;
    "#,
    // 6: DHCP leases, by client identifier and family. A row outlives its
    // endpoint (endpoint_id NULL once released) so that the same client
    // asks for the same address again when it is attached again.
    r#"
    CREATE TABLE dhcp_leases (
        client_id    BLOB    NOT NULL,
        family       INTEGER NOT NULL CHECK (family IN (4, 6)),
        endpoint_id  INTEGER NULL REFERENCES endpoints(id) ON DELETE SET NULL,
        address      TEXT    NOT NULL,
        server       TEXT    NOT NULL,
        lease_secs   INTEGER NOT NULL,
        acquired_at  INTEGER NOT NULL,
        renew_at     INTEGER NOT NULL,
        rebind_at    INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        details_json TEXT    NOT NULL,
        PRIMARY KEY (client_id, family)
    );
    CREATE INDEX dhcp_leases_by_endpoint ON dhcp_leases(endpoint_id);
    "#,
    // 7: who holds a DHCP lease made through CNI (nicslice-ipam "dhcp"),
    // which has no endpoint row: the container's attachment, as the engine
    // shapes it. No foreign key: the lease row is replaced at each renewal.
    r#"
    CREATE TABLE dhcp_cni_holders (
        client_id    BLOB    NOT NULL,
        family       INTEGER NOT NULL CHECK (family IN (4, 6)),
        network      TEXT    NOT NULL,
        holder_json  TEXT    NOT NULL,
        PRIMARY KEY (client_id, family)
    );
    "#,
    // 8 (issue 14): the fleet pool (`--ipam etcd`). This host's name in
    // etcd and its etcd lease per network, with the times of the boot
    // clock (CLOCK_BOOTTIME, in ms, valid for `boot_id` only) when it was
    // last renewed and until when it surely lives; and the addresses etcd
    // records as this host's (its spares and those in use).
    r#"
    CREATE TABLE fleet_hosts (
        network_id     INTEGER PRIMARY KEY REFERENCES networks(id) ON DELETE CASCADE,
        host           TEXT    NOT NULL,
        lease_id       INTEGER NOT NULL DEFAULT 0,
        boot_id        TEXT    NOT NULL DEFAULT '',
        renewed_ms     INTEGER NOT NULL DEFAULT 0,
        valid_until_ms INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE fleet_addresses (
        network_id   INTEGER NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
        ip           TEXT    NOT NULL,
        block        TEXT    NOT NULL,
        PRIMARY KEY (network_id, ip)
    ) WITHOUT ROWID;
    "#,
    // 9 (issue 14): the fleet pool for CNI attachments (nicslice-ipam with
    // "store": {"etcd": ...}). Each pool is a network row hidden from the
    // CLI (named `cni:NAME:SUBNET`, which no network name can be), and the
    // address of each attachment (a lease with no endpoint) is held by a row
    // here, by the CNI network's name, the container ID and the interface:
    // one address per attachment, found by DEL and GC.
    r#"
    CREATE TABLE fleet_cni_holders (
        network      TEXT    NOT NULL,
        container_id TEXT    NOT NULL,
        ifname       TEXT    NOT NULL,
        network_id   INTEGER NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
        ip           TEXT    NOT NULL,
        PRIMARY KEY (network, container_id, ifname)
    ) WITHOUT ROWID;
    "#,
    // 10 (issue 14): fleet addresses handed out whose record in etcd as
    // their endpoint's (`owner`, the owner key) may not be written yet: an
    // attach writes it beside its kernel work and does not wait for etcd,
    // so a later command writes what is still listed here, in one batch.
    r#"
    CREATE TABLE fleet_unrecorded (
        network_id   INTEGER NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
        ip           TEXT    NOT NULL,
        owner        TEXT    NOT NULL,
        PRIMARY KEY (network_id, ip)
    ) WITHOUT ROWID;
    "#,
    // 11 (issue 14): fleet addresses released whose record in etcd may
    // still name their former owner (`owner`): a detach, CNI DEL or GC
    // notes the give-back here and does not wait for etcd; the batch of
    // `fleet_unrecorded` writes it.
    r#"
    CREATE TABLE fleet_unreturned (
        network_id   INTEGER NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
        ip           TEXT    NOT NULL,
        owner        TEXT    NOT NULL,
        PRIMARY KEY (network_id, ip, owner)
    ) WITHOUT ROWID;
    "#,
    // 12 (issue 13): the parent as it was when the network was made (or
    // last found healthy): its interface index and MAC. A name alone cannot
    // tell the parent recreated (same name, new index: its children went
    // with the old link) or renamed (the index, with its MAC, under another
    // name). NULL: not known yet (a network of an older nicslice; `doctor`
    // records the parent it finds).
    r#"
    ALTER TABLE networks ADD COLUMN parent_ifindex INTEGER NULL;
    ALTER TABLE networks ADD COLUMN parent_mac TEXT NULL;
    "#,
    // 13: a CNI attachment whose DHCP lease was lost, asked for again by
    // the agent: the time of its next try and the wait after it, as the
    // engine shapes them (JSON). NULL: the lease is held.
    r#"
    ALTER TABLE dhcp_cni_holders ADD COLUMN retry_json TEXT NULL;
    "#,
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Brings the database at `path` to `SCHEMA_VERSION`, or refuses a newer one.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let too_new = |found| StoreError::SchemaTooNew {
        path: path.to_owned(),
        found,
        supported: SCHEMA_VERSION,
    };
    let found = user_version(conn).ctx("reading the schema version")?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    if found > SCHEMA_VERSION {
        return Err(too_new(found));
    }
    let failed =
        |source| StoreError::Migrate { path: path.to_owned(), version: SCHEMA_VERSION, source };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(failed)?;
    // Another process may have migrated while we waited for the lock.
    let found = user_version(&tx).map_err(failed)?;
    if found > SCHEMA_VERSION {
        return Err(too_new(found));
    }
    let start = usize::try_from(found).unwrap_or(0);
    for (done, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        tracing::debug!(version = done + 1, "applying state database migration");
        tx.execute_batch(sql).map_err(failed)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(failed)?;
    tx.commit().map_err(failed)
}
