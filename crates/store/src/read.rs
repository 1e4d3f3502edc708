//! `StoreRead`: every query that only reads, shared by `Store` (each read on
//! its own), `ReadTx` (a snapshot) and `WriteTx` (inside the write), plus the
//! conversions from rows to records. Nothing here writes.

use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_model::{IfName, MacAddr, NetworkName, NetworkSpec};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::blob::{from_blob, ip_at};
use crate::error::Context;
use crate::{
    EndpointId, EndpointRecord, EndpointState, LeaseRecord, NetnsId, NetworkId, NetworkRecord,
    Owner, ReadTx, Store, StoreError, WriteTx,
};

mod sealed {
    /// Gives the read queries a connection without exposing it to users.
    pub trait Conn {
        fn conn(&self) -> &rusqlite::Connection;
    }
}

impl sealed::Conn for Store {
    fn conn(&self) -> &Connection {
        Store::conn(self)
    }
}
impl sealed::Conn for ReadTx<'_> {
    fn conn(&self) -> &Connection {
        &self.tx
    }
}
impl sealed::Conn for WriteTx<'_> {
    fn conn(&self) -> &Connection {
        &self.tx
    }
}
impl StoreRead for Store {}
impl StoreRead for ReadTx<'_> {}
impl StoreRead for WriteTx<'_> {}

const NETWORK_COLS: &str = "id, spec_json, promisc_prev, created_at, parent_ifindex, parent_mac";
const ENDPOINT_COLS: &str = "id, network_id, netns, netns_dev, netns_ino, ifname, mac, \
     details_json, created_at, netns_cookie, state, owner_pid, owner_start";
const LEASE_SELECT: &str = "SELECT p.network_id, p.subnet_index, p.subnet, p.gateway, \
     l.ip_offset, l.endpoint_id FROM leases l JOIN pools p ON p.id = l.pool_id";

/// Read queries. Implemented by `Store`, `ReadTx` and `WriteTx`.
pub trait StoreRead: sealed::Conn {
    fn network(&self, id: NetworkId) -> Result<Option<NetworkRecord>, StoreError> {
        let sql = format!("SELECT {NETWORK_COLS} FROM networks WHERE id = ?1");
        one(self.conn(), &sql, params![id.0], network_row, "reading a network")
    }

    fn network_by_name(&self, name: &NetworkName) -> Result<Option<NetworkRecord>, StoreError> {
        let sql = format!("SELECT {NETWORK_COLS} FROM networks WHERE name = ?1");
        one(self.conn(), &sql, params![name.as_str()], network_row, "reading a network")
    }

    /// All networks, by name (not the CNI fleet pools: `fleet::cni`).
    fn list_networks(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        let sql = format!(
            "SELECT {NETWORK_COLS} FROM networks WHERE substr(name, 1, 4) != 'cni:' ORDER BY name"
        );
        many(self.conn(), &sql, params![], network_row, "listing networks")
    }

    /// The networks whose parent interface is `parent`, by name.
    fn networks_on_parent(&self, parent: &IfName) -> Result<Vec<NetworkRecord>, StoreError> {
        let sql = format!("SELECT {NETWORK_COLS} FROM networks WHERE parent = ?1 ORDER BY name");
        many(self.conn(), &sql, params![parent.as_str()], network_row, "listing networks")
    }

    fn endpoint(&self, id: EndpointId) -> Result<Option<EndpointRecord>, StoreError> {
        let sql = format!("SELECT {ENDPOINT_COLS} FROM endpoints WHERE id = ?1");
        one(self.conn(), &sql, params![id.0], endpoint_row, "reading an endpoint")
    }

    /// The endpoints of `network`, oldest first.
    fn endpoints(&self, network: NetworkId) -> Result<Vec<EndpointRecord>, StoreError> {
        let sql =
            format!("SELECT {ENDPOINT_COLS} FROM endpoints WHERE network_id = ?1 ORDER BY id");
        many(self.conn(), &sql, params![network.0], endpoint_row, "listing endpoints")
    }

    /// The endpoint called `ifname` inside namespace `netns`, if nicslice made one.
    fn endpoint_by_netns_ifname(
        &self,
        netns: NetnsId,
        ifname: &IfName,
    ) -> Result<Option<EndpointRecord>, StoreError> {
        let sql = format!(
            "SELECT {ENDPOINT_COLS} FROM endpoints \
             WHERE netns_dev = ?1 AND netns_ino = ?2 AND ifname = ?3"
        );
        let p = params![netns.dev as i64, netns.ino as i64, ifname.as_str()];
        one(self.conn(), &sql, p, endpoint_row, "reading an endpoint")
    }

    /// How many endpoints the networks on `parent` have, all together.
    fn endpoint_count_on_parent(&self, parent: &IfName) -> Result<usize, StoreError> {
        let n: i64 = self
            .conn()
            .prepare_cached(
                "SELECT count(*) FROM endpoints e JOIN networks n ON n.id = e.network_id \
                 WHERE n.parent = ?1",
            )
            .and_then(|mut s| s.query_row(params![parent.as_str()], |r| r.get(0)))
            .ctx("counting endpoints")?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The endpoint with MAC `mac` on any network of `parent`, with the name
    /// of its network.
    fn endpoint_with_mac_on_parent(
        &self,
        parent: &IfName,
        mac: MacAddr,
    ) -> Result<Option<(EndpointRecord, String)>, StoreError> {
        let cols: Vec<String> = ENDPOINT_COLS.split(", ").map(|c| format!("e.{c}")).collect();
        let sql = format!(
            "SELECT {}, n.name FROM endpoints e JOIN networks n ON n.id = e.network_id \
             WHERE n.parent = ?1 AND e.mac = ?2 LIMIT 1",
            cols.join(", ")
        );
        let context = "reading an endpoint";
        let raw = self
            .conn()
            .query_row(&sql, params![parent.as_str(), mac.to_string()], |row| {
                Ok((endpoint_row(row)?, row.get::<_, String>(13)?))
            })
            .optional()
            .ctx(context)?;
        raw.map(|(ep, network)| Ok((ep.into_record()?, network))).transpose()
    }

    /// Endpoints being attached or detached (by a live process, or by one
    /// that died part-way), oldest first.
    fn endpoints_in_flight(&self) -> Result<Vec<EndpointRecord>, StoreError> {
        let sql =
            format!("SELECT {ENDPOINT_COLS} FROM endpoints WHERE state != 'attached' ORDER BY id");
        many(self.conn(), &sql, params![], endpoint_row, "listing endpoints in flight")
    }

    /// The addresses leased to `endpoint`, by subnet.
    fn leases_of(&self, endpoint: EndpointId) -> Result<Vec<LeaseRecord>, StoreError> {
        let sql = format!("{LEASE_SELECT} WHERE l.endpoint_id = ?1 ORDER BY p.subnet_index");
        many(self.conn(), &sql, params![endpoint.0], lease_row, "listing leases")
    }

    /// The DHCP leases `endpoint` holds.
    fn dhcp_leases_of(
        &self,
        endpoint: EndpointId,
    ) -> Result<Vec<crate::DhcpLeaseRecord>, StoreError> {
        crate::dhcp_leases::of_endpoint(self.conn(), endpoint)
    }

    /// Every DHCP lease an endpoint holds, soonest renewal first.
    fn held_dhcp_leases(&self) -> Result<Vec<crate::DhcpLeaseRecord>, StoreError> {
        crate::dhcp_leases::held(self.conn())
    }

    /// Every DHCP lease a CNI attachment holds, soonest renewal first.
    fn cni_dhcp_holds(&self) -> Result<Vec<crate::CniDhcpHold>, StoreError> {
        crate::dhcp_cni::held(self.conn())
    }

    /// The DHCP lease `client_id` holds through CNI in `family`, if any.
    fn cni_dhcp_hold(
        &self,
        client_id: &[u8],
        family: u8,
    ) -> Result<Option<crate::CniDhcpHold>, StoreError> {
        crate::dhcp_cni::of_client_held(self.conn(), client_id, family)
    }

    /// The DHCP lease last recorded for a client identifier, held or released.
    fn dhcp_lease_of_client(
        &self,
        client_id: &[u8],
        family: u8,
    ) -> Result<Option<crate::DhcpLeaseRecord>, StoreError> {
        crate::dhcp_leases::of_client(self.conn(), client_id, family)
    }

    /// The host-access shim of `network`, if it has one.
    fn shim(&self, network: NetworkId) -> Result<Option<crate::ShimRecord>, StoreError> {
        crate::shims::of_network(self.conn(), network)
    }

    /// The addresses of `network` held in quarantine, by address.
    fn quarantined(&self, network: NetworkId) -> Result<Vec<crate::Quarantined>, StoreError> {
        crate::quarantine::of_network(self.conn(), network)
    }

    /// Every host-access shim, by network.
    fn shims(&self) -> Result<Vec<crate::ShimRecord>, StoreError> {
        crate::shims::all(self.conn())
    }

    /// Every address leased in `network`, by subnet and address.
    fn leases_in(&self, network: NetworkId) -> Result<Vec<LeaseRecord>, StoreError> {
        let sql =
            format!("{LEASE_SELECT} WHERE p.network_id = ?1 ORDER BY p.subnet_index, l.ip_offset");
        many(self.conn(), &sql, params![network.0], lease_row, "listing leases")
    }
}

/// Columns of a row, read without interpretation (that may fail differently).
type RowReader<R> = fn(&Row<'_>) -> rusqlite::Result<R>;

fn one<R: Raw>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    read: RowReader<R>,
    context: &'static str,
) -> Result<Option<R::Record>, StoreError> {
    // Cached: a command that walks many records (`network rm --force` of a
    // hundred endpoints) asks the same question once per record.
    let mut stmt = conn.prepare_cached(sql).ctx(context)?;
    let raw = stmt.query_row(params, read).optional().ctx(context)?;
    raw.map(Raw::into_record).transpose()
}

fn many<R: Raw>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    read: RowReader<R>,
    context: &'static str,
) -> Result<Vec<R::Record>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).ctx(context)?;
    let rows = stmt.query_map(params, read).ctx(context)?;
    rows.map(|raw| raw.ctx(context).and_then(Raw::into_record)).collect()
}

/// A row's raw columns, turned into a record by parsing.
trait Raw {
    type Record;
    fn into_record(self) -> Result<Self::Record, StoreError>;
}

struct RawNetwork(i64, String, Option<bool>, i64, Option<u32>, Option<String>);

fn network_row(row: &Row<'_>) -> rusqlite::Result<RawNetwork> {
    Ok(RawNetwork(row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
}

impl Raw for RawNetwork {
    type Record = NetworkRecord;
    fn into_record(self) -> Result<NetworkRecord, StoreError> {
        let RawNetwork(id, json, promisc_prev, created_at, parent_index, parent_mac) = self;
        let spec: NetworkSpec = serde_json::from_str(&json)
            .map_err(|e| StoreError::corrupt(format!("network {id} ({e})")))?;
        let parent_mac = parent_mac
            .map(|m| m.parse::<MacAddr>())
            .transpose()
            .map_err(|e| StoreError::corrupt(format!("network {id}'s parent MAC ({e})")))?;
        Ok(NetworkRecord {
            id: NetworkId(id),
            spec,
            promisc_prev,
            created_at,
            parent_index,
            parent_mac,
        })
    }
}

struct RawEndpoint {
    id: i64,
    network_id: i64,
    netns: String,
    dev: i64,
    ino: i64,
    ifname: String,
    mac: Option<String>,
    details: String,
    created_at: i64,
    cookie: Option<i64>,
    state: String,
    owner_pid: Option<u32>,
    owner_start: Option<i64>,
}

fn endpoint_row(row: &Row<'_>) -> rusqlite::Result<RawEndpoint> {
    Ok(RawEndpoint {
        id: row.get(0)?,
        network_id: row.get(1)?,
        netns: row.get(2)?,
        dev: row.get(3)?,
        ino: row.get(4)?,
        ifname: row.get(5)?,
        mac: row.get(6)?,
        details: row.get(7)?,
        created_at: row.get(8)?,
        cookie: row.get(9)?,
        state: row.get(10)?,
        owner_pid: row.get(11)?,
        owner_start: row.get(12)?,
    })
}

impl Raw for RawEndpoint {
    type Record = EndpointRecord;
    fn into_record(self) -> Result<EndpointRecord, StoreError> {
        let id = self.id;
        let corrupt = |what: String| StoreError::corrupt(format!("endpoint {id} ({what})"));
        let ifname = IfName::new(&self.ifname).map_err(|e| corrupt(e.to_string()))?;
        let mac = match self.mac {
            Some(m) => Some(m.parse::<MacAddr>().map_err(|e| corrupt(e.to_string()))?),
            None => None,
        };
        let details = serde_json::from_str(&self.details).map_err(|e| corrupt(e.to_string()))?;
        Ok(EndpointRecord {
            id: EndpointId(id),
            network_id: NetworkId(self.network_id),
            netns: self.netns,
            // Stored bit for bit as i64 (SQLite integers are signed).
            netns_id: NetnsId { dev: self.dev as u64, ino: self.ino as u64 },
            ifname,
            mac,
            details,
            created_at: self.created_at,
            netns_cookie: self.cookie.map(|c| c as u64),
            state: EndpointState::parse(&self.state)
                .ok_or_else(|| corrupt(format!("state {}", self.state)))?,
            owner: match (self.owner_pid, self.owner_start) {
                (Some(pid), Some(start)) => Some(Owner { pid, start: start as u64 }),
                _ => None,
            },
        })
    }
}

struct RawLease(i64, i64, String, String, Vec<u8>, Option<i64>);

fn lease_row(row: &Row<'_>) -> rusqlite::Result<RawLease> {
    Ok(RawLease(row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
}

impl Raw for RawLease {
    type Record = LeaseRecord;
    fn into_record(self) -> Result<LeaseRecord, StoreError> {
        let RawLease(network_id, index, subnet, gateway, offset, endpoint) = self;
        let corrupt = || StoreError::corrupt(format!("lease in subnet {subnet}"));
        let net: IpNet = subnet.parse().map_err(|_| corrupt())?;
        let gateway: IpAddr = gateway.parse().map_err(|_| corrupt())?;
        let ip = ip_at(net, from_blob(&offset)?).ok_or_else(corrupt)?;
        Ok(LeaseRecord {
            network_id: NetworkId(network_id),
            subnet_index: usize::try_from(index).map_err(|_| corrupt())?,
            ip,
            subnet: net,
            gateway,
            endpoint_id: endpoint.map(EndpointId),
        })
    }
}
