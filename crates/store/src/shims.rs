//! Host-access shims: the one link per network nicslice makes in the
//! parent's namespace so the host reaches its own children. Recorded so that
//! `network rm` removes exactly it, a later convergence can restore it after
//! a reboot, and its `--ip` addresses stay leased to it.

use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_model::MacAddr;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::Context;
use crate::store::now;
use crate::{NetworkId, StoreError, WriteTx};

/// A shim as nicslice made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimRecord {
    #[serde(skip, default = "no_network")]
    pub network_id: NetworkId,
    pub name: String,
    pub mac: Option<MacAddr>,
    /// Addresses on the shim itself, leased from the network's pool.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// The host's own addresses on the parent, borrowed as the source of the
    /// routes through the shim (no address of the pool spent).
    #[serde(default)]
    pub sources: Vec<IpAddr>,
    /// The network's allocation ranges routed through the shim as a whole
    /// (`shim add --route-range`) instead of a host route per endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<IpNet>,
}

fn no_network() -> NetworkId {
    NetworkId(0)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String)> {
    Ok((r.get(0)?, r.get(1)?))
}

fn record((network_id, json): (i64, String)) -> Result<ShimRecord, StoreError> {
    let mut shim: ShimRecord = serde_json::from_str(&json)
        .map_err(|e| StoreError::corrupt(format!("shim of network {network_id} ({e})")))?;
    shim.network_id = NetworkId(network_id);
    Ok(shim)
}

/// The shim of `network`.
pub(crate) fn of_network(
    conn: &Connection,
    network: NetworkId,
) -> Result<Option<ShimRecord>, StoreError> {
    conn.query_row(
        "SELECT network_id, details_json FROM shims WHERE network_id = ?1",
        params![network.0],
        row,
    )
    .optional()
    .ctx("reading a shim")?
    .map(record)
    .transpose()
}

/// Every shim.
pub(crate) fn all(conn: &Connection) -> Result<Vec<ShimRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT network_id, details_json FROM shims ORDER BY network_id")
        .ctx("listing shims")?;
    let rows = stmt.query_map(params![], row).ctx("listing shims")?;
    rows.map(|r| r.ctx("listing shims").and_then(record)).collect()
}

impl WriteTx<'_> {
    pub fn insert_shim(&self, shim: &ShimRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(shim)
            .map_err(|e| StoreError::corrupt(format!("shim {} ({e})", shim.name)))?;
        self.tx
            .execute(
                "INSERT INTO shims (network_id, name, details_json, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![shim.network_id.0, shim.name, json, now()],
            )
            .ctx("recording a shim")?;
        Ok(())
    }

    pub fn delete_shim(&self, network: NetworkId) -> Result<bool, StoreError> {
        let n = self
            .tx
            .execute("DELETE FROM shims WHERE network_id = ?1", params![network.0])
            .ctx("forgetting a shim")?;
        Ok(n > 0)
    }
}
