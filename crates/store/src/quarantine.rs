//! Quarantined addresses (issue 14): addresses of a pool that someone
//! nicslice does not manage answered on the wire when they were probed. The
//! lease stays, owned by no endpoint, so the allocator never hands the
//! address out; the quarantine row says who answered and when. After the
//! network's cool-down [`WriteTx::release_quarantine`] returns the address to
//! the pool, to be probed again when it next comes up.

use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_model::MacAddr;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::blob::{from_blob, ip_at, offset_of, to_blob};
use crate::error::Context;
use crate::store::now;
use crate::{LeaseRecord, NetworkId, StoreError, WriteTx};

/// An address held out of its pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quarantined {
    pub ip: IpAddr,
    /// The MAC that answered (IPv4); `None` for an IPv6 address whose DAD
    /// failed (the kernel does not say who answered).
    pub answered_by: Option<MacAddr>,
    /// When, in seconds since the Unix epoch.
    pub answered_at: i64,
}

type RawRow = (String, Vec<u8>, Option<String>, i64);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn record((subnet, offset, mac, at): RawRow) -> Result<Quarantined, StoreError> {
    let corrupt = || StoreError::corrupt(format!("quarantined address in subnet {subnet}"));
    let net: IpNet = subnet.parse().map_err(|_| corrupt())?;
    let ip = ip_at(net, from_blob(&offset)?).ok_or_else(corrupt)?;
    let answered_by = mac.map(|m| m.parse().map_err(|_| corrupt())).transpose()?;
    Ok(Quarantined { ip, answered_by, answered_at: at })
}

/// The quarantined addresses of `network`, by subnet and address.
pub(crate) fn of_network(
    conn: &Connection,
    network: NetworkId,
) -> Result<Vec<Quarantined>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT p.subnet, q.ip_offset, q.answered_by, q.answered_at FROM quarantine q \
             JOIN pools p ON p.id = q.pool_id WHERE p.network_id = ?1 \
             ORDER BY p.subnet_index, q.ip_offset",
        )
        .ctx("listing quarantined addresses")?;
    let rows = stmt.query_map(params![network.0], row).ctx("listing quarantined addresses")?;
    rows.map(|r| r.ctx("listing quarantined addresses").and_then(record)).collect()
}

impl WriteTx<'_> {
    /// Moves `lease` (just allocated to an endpoint) into quarantine: it is
    /// no longer the endpoint's, stays out of the pool, and records who
    /// answered for it.
    pub fn quarantine(
        &self,
        lease: &LeaseRecord,
        answered_by: Option<MacAddr>,
    ) -> Result<(), StoreError> {
        let missing = || StoreError::corrupt(format!("lease of {} to quarantine", lease.ip));
        let index = i64::try_from(lease.subnet_index).map_err(|_| missing())?;
        let pool: i64 = self
            .tx
            .prepare_cached("SELECT id FROM pools WHERE network_id = ?1 AND subnet_index = ?2")
            .and_then(|mut s| s.query_row(params![lease.network_id.0, index], |r| r.get(0)))
            .optional()
            .ctx("reading an address pool")?
            .ok_or_else(missing)?;
        let offset = to_blob(offset_of(lease.subnet, lease.ip));
        let moved = self
            .tx
            .execute(
                "UPDATE leases SET endpoint_id = NULL WHERE pool_id = ?1 AND ip_offset = ?2",
                params![pool, offset.as_slice()],
            )
            .ctx("quarantining an address")?;
        if moved != 1 {
            return Err(missing());
        }
        self.tx
            .execute(
                "INSERT OR REPLACE INTO quarantine (pool_id, ip_offset, answered_by, answered_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![pool, offset.as_slice(), answered_by.map(|m| m.to_string()), now()],
            )
            .ctx("quarantining an address")?;
        Ok(())
    }

    /// Quarantines `ip` of `network` outside an attach (one that failed
    /// after someone answered for it): leased to no one if free, its
    /// quarantine renewed if it already is. An address leased to an endpoint
    /// is left alone; returns whether `ip` is now quarantined.
    pub fn quarantine_address(
        &self,
        network: NetworkId,
        subnet_index: usize,
        ip: IpAddr,
        answered_by: Option<MacAddr>,
    ) -> Result<bool, StoreError> {
        let missing = || StoreError::corrupt(format!("pool of {ip} to quarantine"));
        let index = i64::try_from(subnet_index).map_err(|_| missing())?;
        let (pool, subnet, gateway): (i64, String, String) = self
            .tx
            .prepare_cached(
                "SELECT id, subnet, gateway FROM pools WHERE network_id = ?1 AND subnet_index = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![network.0, index], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            })
            .optional()
            .ctx("reading an address pool")?
            .ok_or_else(missing)?;
        let subnet: IpNet = subnet.parse().map_err(|_| missing())?;
        let gateway: IpAddr = gateway.parse().map_err(|_| missing())?;
        let offset = to_blob(offset_of(subnet, ip));
        let leased_to: Option<Option<i64>> = self
            .tx
            .prepare_cached("SELECT endpoint_id FROM leases WHERE pool_id = ?1 AND ip_offset = ?2")
            .and_then(|mut s| s.query_row(params![pool, offset.as_slice()], |r| r.get(0)))
            .optional()
            .ctx("looking up a lease")?;
        let quarantined = || {
            self.tx
                .prepare_cached("SELECT 1 FROM quarantine WHERE pool_id = ?1 AND ip_offset = ?2")
                .and_then(|mut s| s.exists(params![pool, offset.as_slice()]))
                .ctx("looking up a quarantined address")
        };
        let lease = match leased_to {
            // An endpoint's, or held by no one for another reason (a shim's).
            Some(Some(_)) => return Ok(false),
            Some(None) if !quarantined()? => return Ok(false),
            Some(None) => LeaseRecord {
                network_id: network,
                subnet_index,
                ip,
                subnet,
                gateway,
                endpoint_id: None,
            },
            None => self.allocate(network, subnet_index, Some(ip), None)?,
        };
        self.quarantine(&lease, answered_by)?;
        Ok(true)
    }

    /// Returns to the pool every address of `network` quarantined at least
    /// `cooldown_s` seconds ago; returns them.
    pub fn release_quarantine(
        &self,
        network: NetworkId,
        cooldown_s: u64,
    ) -> Result<Vec<IpAddr>, StoreError> {
        let cutoff = now().saturating_sub(i64::try_from(cooldown_s).unwrap_or(i64::MAX));
        let due: Vec<IpAddr> = of_network(&self.tx, network)?
            .into_iter()
            .filter(|q| q.answered_at <= cutoff)
            .map(|q| q.ip)
            .collect();
        for ip in &due {
            // The quarantine row goes with its lease (ON DELETE CASCADE).
            self.release_address(network, *ip)?;
        }
        Ok(due)
    }
}
