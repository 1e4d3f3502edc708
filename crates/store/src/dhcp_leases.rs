//! DHCP leases as the server granted them: per client identifier and family,
//! the address, the server, the lease time and when to renew, rebind and give
//! up. A row stays after its endpoint is detached (released, `endpoint_id`
//! NULL) so that the same client identifier asks for its old address again.
//! What a lease means for the kernel is the engine's; this only records.

use std::net::IpAddr;

use ipnet::IpNet;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Context;
use crate::store::now;
use crate::{EndpointId, StoreError, WriteTx};

/// One lease, DHCPv4 (keyed by client identifier) or DHCPv6 (keyed by
/// IAID then DUID).
#[derive(Debug, Clone, PartialEq)]
pub struct DhcpLeaseRecord {
    pub client_id: Vec<u8>,
    /// 4 or 6.
    pub family: u8,
    /// The endpoint holding it; `None` once released.
    pub endpoint_id: Option<EndpointId>,
    pub address: IpNet,
    pub server: IpAddr,
    pub lease_secs: u32,
    /// Unix seconds.
    pub acquired_at: i64,
    pub renew_at: i64,
    pub rebind_at: i64,
    pub expires_at: i64,
    /// What else the server said (routers, DNS servers) and what nicslice
    /// made from it (a resolv.conf), as the engine shapes it.
    pub details: serde_json::Value,
}

const COLS: &str = "client_id, family, endpoint_id, address, server, lease_secs, acquired_at, \
                    renew_at, rebind_at, expires_at, details_json";

type Raw = (Vec<u8>, i64, Option<i64>, String, String, i64, i64, i64, i64, i64, String);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
    ))
}

fn record(raw: Raw) -> Result<DhcpLeaseRecord, StoreError> {
    let (client_id, family, endpoint, address, server, secs, acquired, renew, rebind, expires, js) =
        raw;
    let bad = |what: &str| StoreError::corrupt(format!("DHCP lease {address}: {what}"));
    Ok(DhcpLeaseRecord {
        family: u8::try_from(family).map_err(|_| bad("family"))?,
        endpoint_id: endpoint.map(EndpointId),
        address: address.parse().map_err(|_| bad("address"))?,
        server: server.parse().map_err(|_| bad("server"))?,
        lease_secs: u32::try_from(secs).map_err(|_| bad("lease time"))?,
        acquired_at: acquired,
        renew_at: renew,
        rebind_at: rebind,
        expires_at: expires,
        details: serde_json::from_str(&js).map_err(|_| bad("details"))?,
        client_id,
    })
}

/// The leases `endpoint` holds.
pub(crate) fn of_endpoint(
    conn: &Connection,
    endpoint: EndpointId,
) -> Result<Vec<DhcpLeaseRecord>, StoreError> {
    let sql = format!("SELECT {COLS} FROM dhcp_leases WHERE endpoint_id = ?1 ORDER BY family");
    let mut stmt = conn.prepare_cached(&sql).ctx("listing DHCP leases")?;
    let rows = stmt.query_map(params![endpoint.0], row).ctx("listing DHCP leases")?;
    rows.map(|r| r.ctx("listing DHCP leases").and_then(record)).collect()
}

/// Every lease an endpoint holds, soonest renewal first.
pub(crate) fn held(conn: &Connection) -> Result<Vec<DhcpLeaseRecord>, StoreError> {
    let sql =
        format!("SELECT {COLS} FROM dhcp_leases WHERE endpoint_id IS NOT NULL ORDER BY renew_at");
    let mut stmt = conn.prepare_cached(&sql).ctx("listing DHCP leases")?;
    let rows = stmt.query_map(params![], row).ctx("listing DHCP leases")?;
    rows.map(|r| r.ctx("listing DHCP leases").and_then(record)).collect()
}

/// The lease last recorded for `client_id` in `family`, held or released.
pub(crate) fn of_client(
    conn: &Connection,
    client_id: &[u8],
    family: u8,
) -> Result<Option<DhcpLeaseRecord>, StoreError> {
    let sql = format!("SELECT {COLS} FROM dhcp_leases WHERE client_id = ?1 AND family = ?2");
    conn.query_row(&sql, params![client_id, family], row)
        .optional()
        .ctx("reading a DHCP lease")?
        .map(record)
        .transpose()
}

impl WriteTx<'_> {
    /// Records `lease`, replacing what was recorded for its client and family.
    pub fn record_dhcp_lease(&self, lease: &DhcpLeaseRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT OR REPLACE INTO dhcp_leases ({COLS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        );
        self.tx
            .execute(
                &sql,
                params![
                    lease.client_id,
                    lease.family,
                    lease.endpoint_id.map(|e| e.0),
                    lease.address.to_string(),
                    lease.server.to_string(),
                    lease.lease_secs,
                    lease.acquired_at,
                    lease.renew_at,
                    lease.rebind_at,
                    lease.expires_at,
                    lease.details.to_string(),
                ],
            )
            .ctx("recording a DHCP lease")?;
        Ok(())
    }

    /// Marks the lease of `client_id` in `family` released now (one family
    /// of a dual-stack endpoint lost while the other is kept).
    pub fn release_dhcp_lease(&self, client_id: &[u8], family: u8) -> Result<usize, StoreError> {
        self.tx
            .execute(
                "UPDATE dhcp_leases SET endpoint_id = NULL, expires_at = ?3 \
                 WHERE client_id = ?1 AND family = ?2",
                params![client_id, family, now()],
            )
            .ctx("releasing a DHCP lease")
    }

    /// Marks every lease of `endpoint` released now (the row is kept for the
    /// client's next attach); returns how many there were.
    pub fn release_dhcp_leases(&self, endpoint: EndpointId) -> Result<usize, StoreError> {
        self.tx
            .execute(
                "UPDATE dhcp_leases SET endpoint_id = NULL, expires_at = ?2 WHERE endpoint_id = ?1",
                params![endpoint.0, now()],
            )
            .ctx("releasing DHCP leases")
    }
}
