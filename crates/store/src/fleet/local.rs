//! This host's side of the fleet pool in state.db: its name and etcd lease
//! per network, and the addresses etcd records as its own. Times are of the
//! boot clock, which every process of one boot shares and no one sets.

use std::net::IpAddr;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Context;
use crate::{NetworkId, StoreError};

/// This host in one fleet network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostRow {
    pub host: String,
    /// 0: none.
    pub lease: i64,
    pub boot_id: String,
    pub renewed_ms: i64,
    pub valid_until_ms: i64,
}

impl HostRow {
    /// Whether the lease surely still lives, blocks and spares with it.
    pub fn lease_lives(&self, clock: &Clock) -> bool {
        self.lease != 0 && self.boot_id == clock.boot_id && clock.now_ms < self.valid_until_ms
    }
}

/// The boot clock, read once per call.
pub(crate) struct Clock {
    pub boot_id: String,
    pub now_ms: i64,
}

impl Clock {
    pub fn read() -> Result<Clock, StoreError> {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map_err(|e| StoreError::Etcd(format!("cannot read the boot id ({e})")))?
            .trim()
            .to_string();
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid timespec the call writes into.
        if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
            return Err(StoreError::Etcd("cannot read the boot clock".into()));
        }
        Ok(Clock { boot_id, now_ms: ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000 })
    }
}

/// A name for this host in etcd: its hostname and a random part, so that
/// several state databases on one machine (tests, or hosts cloned from one
/// image) are told apart.
fn new_host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut random = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut random);
    }
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{suffix}", name.trim())
}

/// This host's row for `network`, made (with a new name) if missing.
pub(crate) fn host(conn: &Connection, network: NetworkId) -> Result<HostRow, StoreError> {
    if let Some(row) = host_if_any(conn, network)? {
        return Ok(row);
    }
    let row = HostRow {
        host: new_host_name(),
        lease: 0,
        boot_id: String::new(),
        renewed_ms: 0,
        valid_until_ms: 0,
    };
    save_host(conn, network, &row)?;
    Ok(row)
}

pub(crate) fn host_if_any(
    conn: &Connection,
    network: NetworkId,
) -> Result<Option<HostRow>, StoreError> {
    conn.prepare_cached(
        "SELECT host, lease_id, boot_id, renewed_ms, valid_until_ms FROM fleet_hosts WHERE network_id = ?1",
    )
    .and_then(|mut s| {
        s.query_row([network.0], |r| {
            Ok(HostRow {
                host: r.get(0)?,
                lease: r.get(1)?,
                boot_id: r.get(2)?,
                renewed_ms: r.get(3)?,
                valid_until_ms: r.get(4)?,
            })
        })
        .optional()
    })
    .ctx("reading this host's fleet lease")
}

pub(crate) fn save_host(
    conn: &Connection,
    network: NetworkId,
    row: &HostRow,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO fleet_hosts (network_id, host, lease_id, boot_id, renewed_ms, valid_until_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            network.0,
            row.host,
            row.lease,
            row.boot_id,
            row.renewed_ms,
            row.valid_until_ms
        ])
    })
    .ctx("recording this host's fleet lease")
    .map(drop)
}

/// The addresses etcd records as this host's, as (address, block), in
/// address order.
pub(crate) fn addresses(
    conn: &Connection,
    network: NetworkId,
) -> Result<Vec<(IpAddr, IpAddr)>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT ip, block FROM fleet_addresses WHERE network_id = ?1")
        .ctx("reading this host's fleet addresses")?;
    let rows = stmt
        .query_map([network.0], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .ctx("reading this host's fleet addresses")?;
    let mut out = Vec::new();
    for row in rows {
        let (ip, block) = row.ctx("reading this host's fleet addresses")?;
        let corrupt = || StoreError::corrupt(format!("fleet address {ip} of block {block}"));
        out.push((ip.parse().map_err(|_| corrupt())?, block.parse().map_err(|_| corrupt())?));
    }
    out.sort();
    Ok(out)
}

/// The block of `ip` if etcd records it as this host's.
pub(crate) fn block_of(
    conn: &Connection,
    network: NetworkId,
    ip: IpAddr,
) -> Result<Option<IpAddr>, StoreError> {
    let block: Option<String> = conn
        .prepare_cached("SELECT block FROM fleet_addresses WHERE network_id = ?1 AND ip = ?2")
        .and_then(|mut s| s.query_row(params![network.0, ip.to_string()], |r| r.get(0)).optional())
        .ctx("reading this host's fleet addresses")?;
    block
        .map(|b| b.parse().map_err(|_| StoreError::corrupt(format!("fleet block {b} of {ip}"))))
        .transpose()
}

pub(crate) fn add_addresses(
    conn: &Connection,
    network: NetworkId,
    block: IpAddr,
    ips: &[IpAddr],
) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT OR REPLACE INTO fleet_addresses (network_id, ip, block) VALUES (?1, ?2, ?3)",
        )
        .ctx("recording this host's fleet addresses")?;
    for ip in ips {
        stmt.execute(params![network.0, ip.to_string(), block.to_string()])
            .ctx("recording this host's fleet addresses")?;
    }
    Ok(())
}

/// Forgets `ip` as this host's, with the notes of its records (etcd's
/// record is another host's, which no batch of this host may touch).
pub(crate) fn forget_address(
    conn: &Connection,
    network: NetworkId,
    ip: IpAddr,
) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM fleet_addresses WHERE network_id = ?1 AND ip = ?2",
        "DELETE FROM fleet_unrecorded WHERE network_id = ?1 AND ip = ?2",
        "DELETE FROM fleet_unreturned WHERE network_id = ?1 AND ip = ?2",
    ] {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute(params![network.0, ip.to_string()]))
            .ctx("forgetting a fleet address")?;
    }
    Ok(())
}

/// Notes that etcd may not record `ip` as `owner`'s yet.
pub(crate) fn add_unrecorded(
    conn: &Connection,
    network: NetworkId,
    ip: IpAddr,
    owner: &[u8],
) -> Result<bool, StoreError> {
    let sql = "INSERT OR REPLACE INTO fleet_unrecorded (network_id, ip, owner) VALUES (?1, ?2, ?3)";
    on_note(conn, sql, network, ip, owner, "noting a fleet record to write")
}

/// Runs `sql` on the note of `ip` for `owner`; whether it changed a row.
fn on_note(
    conn: &Connection,
    sql: &str,
    network: NetworkId,
    ip: IpAddr,
    owner: &[u8],
    what: &'static str,
) -> Result<bool, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute(params![network.0, ip.to_string(), owner]))
        .ctx(what)
        .map(|n| n > 0)
}

/// The addresses whose record etcd may lack, with their owner keys.
pub(crate) fn unrecorded(
    conn: &Connection,
    network: NetworkId,
) -> Result<Vec<(IpAddr, Vec<u8>)>, StoreError> {
    let sql = "SELECT ip, owner FROM fleet_unrecorded WHERE network_id = ?1";
    notes(conn, sql, network, "reading the fleet records to write")
}

/// The notes `sql` selects, as (address, owner key).
fn notes(
    conn: &Connection,
    sql: &str,
    network: NetworkId,
    what: &'static str,
) -> Result<Vec<(IpAddr, Vec<u8>)>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).ctx(what)?;
    let rows = stmt
        .query_map([network.0], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .ctx(what)?;
    let mut out = Vec::new();
    for row in rows {
        let (ip, owner) = row.ctx(what)?;
        let ip = ip.parse().map_err(|_| StoreError::corrupt(format!("fleet record of {ip}")))?;
        out.push((ip, owner));
    }
    Ok(out)
}

/// Whether etcd may lack a record of this host or hold one to give back.
pub(crate) fn any_note(conn: &Connection, network: NetworkId) -> Result<bool, StoreError> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM fleet_unrecorded WHERE network_id = ?1) \
         OR EXISTS (SELECT 1 FROM fleet_unreturned WHERE network_id = ?1)",
    )
    .and_then(|mut s| s.query_row([network.0], |r| r.get(0)))
    .ctx("looking for fleet records to write")
}

/// Forgets the note of `ip` once etcd records it as `owner`'s (a newer
/// note of the address, for another owner, stays); whether there was one.
pub(crate) fn recorded(
    conn: &Connection,
    network: NetworkId,
    ip: IpAddr,
    owner: &[u8],
) -> Result<bool, StoreError> {
    let sql = "DELETE FROM fleet_unrecorded WHERE network_id = ?1 AND ip = ?2 AND owner = ?3";
    on_note(conn, sql, network, ip, owner, "forgetting a written fleet record")
}

/// How many notes this host has on `network`: records to write and
/// give-backs.
pub(crate) fn note_count(conn: &Connection, network: NetworkId) -> Result<u64, StoreError> {
    conn.prepare_cached(
        "SELECT (SELECT count(*) FROM fleet_unrecorded WHERE network_id = ?1) \
         + (SELECT count(*) FROM fleet_unreturned WHERE network_id = ?1)",
    )
    .and_then(|mut s| s.query_row([network.0], |r| r.get::<_, i64>(0)))
    .ctx("counting the fleet records to write")
    .map(|n| u64::try_from(n).unwrap_or(0))
}

/// Notes that etcd may still record `ip` as `owner`'s, which released it:
/// the record goes back to this host's spare with the next batch; whether
/// that note is new.
pub(crate) fn add_unreturned(
    conn: &Connection,
    network: NetworkId,
    ip: IpAddr,
    owner: &[u8],
) -> Result<bool, StoreError> {
    let sql = "INSERT OR IGNORE INTO fleet_unreturned (network_id, ip, owner) VALUES (?1, ?2, ?3)";
    on_note(conn, sql, network, ip, owner, "noting a fleet record to give back")
}

/// The addresses released whose record etcd may still give their former
/// owner, with that owner's key.
pub(crate) fn unreturned(
    conn: &Connection,
    network: NetworkId,
) -> Result<Vec<(IpAddr, Vec<u8>)>, StoreError> {
    let sql = "SELECT ip, owner FROM fleet_unreturned WHERE network_id = ?1";
    notes(conn, sql, network, "reading the fleet records to give back")
}

/// Forgets the note of `ip`'s give-back by `owner`: etcd no longer records
/// it as `owner`'s.
pub(crate) fn returned(
    conn: &Connection,
    network: NetworkId,
    ip: IpAddr,
    owner: &[u8],
) -> Result<bool, StoreError> {
    let sql = "DELETE FROM fleet_unreturned WHERE network_id = ?1 AND ip = ?2 AND owner = ?3";
    on_note(conn, sql, network, ip, owner, "forgetting a fleet record given back")
}
