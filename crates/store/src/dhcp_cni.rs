//! Holders of DHCP leases made through CNI: a container's attachment has no
//! endpoint row, so its lease (in `dhcp_leases`, `endpoint_id` NULL) is
//! marked held by a row here, keyed like the lease by client identifier and
//! family, with the CNI network's name and what the engine needs to renew
//! and release it (as JSON the engine shapes). Removing the row and marking
//! the lease expired is releasing it. A lease the agent lost is marked
//! expired with the row kept and its retry state set (`retry_json`): the
//! attachment is asking for a lease again, and DEL or GC still find it.

use rusqlite::{Connection, OptionalExtension, params};

use crate::dhcp_leases::of_client;
use crate::error::Context;
use crate::store::now;
use crate::{DhcpLeaseRecord, StoreError, WriteTx};

/// A lease held by a CNI attachment.
#[derive(Debug, Clone, PartialEq)]
pub struct CniDhcpHold {
    pub lease: DhcpLeaseRecord,
    /// The CNI network's name.
    pub network: String,
    pub holder: serde_json::Value,
    /// Set while the lease is lost and asked for again (the engine's
    /// retry state); `None` while it is held.
    pub retry: Option<serde_json::Value>,
}

fn hold_of(
    conn: &Connection,
    client_id: Vec<u8>,
    family: u8,
    network: String,
    holder: String,
    retry: Option<String>,
) -> Result<Option<CniDhcpHold>, StoreError> {
    let corrupt = || StoreError::corrupt(format!("CNI DHCP holder in network {network}"));
    let holder = serde_json::from_str(&holder).map_err(|_| corrupt())?;
    let retry = retry.map(|r| serde_json::from_str(&r)).transpose().map_err(|_| corrupt())?;
    Ok(of_client(conn, &client_id, family)?.map(|lease| CniDhcpHold {
        lease,
        network,
        holder,
        retry,
    }))
}

/// Every lease a CNI attachment holds or asks for again, soonest renewal
/// first.
pub(crate) fn held(conn: &Connection) -> Result<Vec<CniDhcpHold>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT client_id, family, network, holder_json, retry_json FROM dhcp_cni_holders",
        )
        .ctx("listing CNI DHCP holders")?;
    type Row = (Vec<u8>, u8, String, String, Option<String>);
    let rows: Vec<Row> = stmt
        .query_map(params![], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .ctx("listing CNI DHCP holders")?
        .collect::<rusqlite::Result<_>>()
        .ctx("listing CNI DHCP holders")?;
    let mut out = Vec::new();
    for (client_id, family, network, holder, retry) in rows {
        out.extend(hold_of(conn, client_id, family, network, holder, retry)?);
    }
    out.sort_by_key(|h| h.lease.renew_at);
    Ok(out)
}

/// The lease `client_id` holds (or asks for again) through CNI in
/// `family`, if any.
pub(crate) fn of_client_held(
    conn: &Connection,
    client_id: &[u8],
    family: u8,
) -> Result<Option<CniDhcpHold>, StoreError> {
    let row: Option<(String, String, Option<String>)> = conn
        .query_row(
            "SELECT network, holder_json, retry_json FROM dhcp_cni_holders \
             WHERE client_id = ?1 AND family = ?2",
            params![client_id, family],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .ctx("reading a CNI DHCP holder")?;
    match row {
        Some((network, holder, retry)) => {
            hold_of(conn, client_id.to_vec(), family, network, holder, retry)
        }
        None => Ok(None),
    }
}

impl WriteTx<'_> {
    /// Records `lease` as held by a CNI attachment of `network` (replacing
    /// the lease this client held before, and any retry state).
    pub fn record_cni_dhcp_lease(
        &self,
        lease: &DhcpLeaseRecord,
        network: &str,
        holder: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.record_dhcp_lease(lease)?;
        self.tx
            .execute(
                "INSERT OR REPLACE INTO dhcp_cni_holders (client_id, family, network, holder_json) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![lease.client_id, lease.family, network, holder.to_string()],
            )
            .ctx("recording a CNI DHCP holder")?;
        Ok(())
    }

    /// Marks the CNI lease of `client_id` in `family` lost and asked for
    /// again: expired now, its holder row kept with `retry` (the engine's
    /// state of the tries). Nothing when no holder row is left (a DEL came
    /// first).
    pub fn wait_cni_dhcp_lease(
        &self,
        client_id: &[u8],
        family: u8,
        retry: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let changed = self
            .tx
            .execute(
                "UPDATE dhcp_cni_holders SET retry_json = ?3 WHERE client_id = ?1 AND family = ?2",
                params![client_id, family, retry.to_string()],
            )
            .ctx("noting a CNI DHCP lease lost")?;
        if changed > 0 {
            self.tx
                .execute(
                    "UPDATE dhcp_leases SET expires_at = MIN(expires_at, ?3) \
                     WHERE client_id = ?1 AND family = ?2",
                    params![client_id, family, now()],
                )
                .ctx("noting a CNI DHCP lease lost")?;
        }
        Ok(())
    }

    /// Releases the CNI lease of `client_id` in `family`: no longer held,
    /// expired now (the row stays, so the client asks for the address again).
    pub fn release_cni_dhcp_lease(&self, client_id: &[u8], family: u8) -> Result<(), StoreError> {
        self.tx
            .execute(
                "DELETE FROM dhcp_cni_holders WHERE client_id = ?1 AND family = ?2",
                params![client_id, family],
            )
            .ctx("releasing a CNI DHCP lease")?;
        self.tx
            .execute(
                "UPDATE dhcp_leases SET expires_at = ?3 WHERE client_id = ?1 AND family = ?2",
                params![client_id, family, now()],
            )
            .ctx("releasing a CNI DHCP lease")?;
        Ok(())
    }
}
