//! The fleet pool for CNI attachments (nicslice-ipam with `"store":
//! {"etcd": ...}): the allocator of `--ipam etcd` networks over a network
//! row of its own per CNI network name and subnet, hidden from the CLI: it
//! is named `cni:NAME:SUBNET` and its parent column is empty, which no
//! network name and no interface can be. In etcd the pool is named by the
//! CNI network's name, so hosts configured alike share it (as would a CLI
//! fleet network of that name on the same cluster: addresses are recorded
//! one by one, whoever holds them).
//!
//! An attachment's address is a lease with no endpoint, held by a row of
//! `fleet_cni_holders` under (CNI network, container ID, interface): one
//! per attachment, whatever the subnet, which DEL and GC find.

use std::net::IpAddr;

use nicslice_model::ValidNetwork;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Keys, local};
use crate::error::Context;
use crate::{NetworkId, NetworkRecord, Store, StoreError, StoreRead, WriteTx};

/// What the name of a CNI fleet pool's row starts with.
pub(crate) const CNI_POOL_PREFIX: &str = "cni:";

/// The address a CNI attachment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniFleetHold {
    /// The pool's hidden network row.
    pub network_id: NetworkId,
    /// The CNI network's name.
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    pub ip: IpAddr,
}

fn row_name(pool: &ValidNetwork) -> String {
    let subnet = pool.subnets().first().map(|s| s.subnet().to_string()).unwrap_or_default();
    format!("{CNI_POOL_PREFIX}{}:{subnet}", pool.name)
}

const HOLD_COLS: &str = "network_id, network, container_id, ifname, ip";

fn hold_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn into_hold(
    (id, network, container_id, ifname, ip): (i64, String, String, String, String),
) -> Result<CniFleetHold, StoreError> {
    let ip = ip.parse().map_err(|_| {
        StoreError::corrupt(format!("fleet address {ip} of CNI attachment {container_id}"))
    })?;
    Ok(CniFleetHold { network_id: NetworkId(id), network, container_id, ifname, ip })
}

fn hold_of(
    conn: &Connection,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<Option<CniFleetHold>, StoreError> {
    let context = "reading a CNI attachment's fleet address";
    let row = conn
        .prepare_cached(&format!(
            "SELECT {HOLD_COLS} FROM fleet_cni_holders \
             WHERE network = ?1 AND container_id = ?2 AND ifname = ?3"
        ))
        .and_then(|mut s| s.query_row(params![network, container_id, ifname], hold_row).optional())
        .ctx(context)?;
    row.map(into_hold).transpose()
}

impl WriteTx<'_> {
    /// The row of CNI fleet pool `pool` (a validated fleet network named as
    /// the CNI network), made now if missing; its spec follows the
    /// configuration of the latest call.
    pub fn cni_fleet_pool(&self, pool: &ValidNetwork) -> Result<NetworkRecord, StoreError> {
        let name = row_name(pool);
        let found: Option<i64> = self
            .tx
            .prepare_cached("SELECT id FROM networks WHERE name = ?1")
            .and_then(|mut s| s.query_row([&name], |r| r.get(0)).optional())
            .ctx("reading a CNI fleet pool")?;
        let id = match found.map(NetworkId) {
            Some(id) => match self.network(id)? {
                Some(record) if record.spec == *pool.spec() => return Ok(record),
                _ => {
                    self.update_network(id, pool, None)?;
                    id
                }
            },
            None => self.insert_network_as(&name, "", pool, None)?,
        };
        self.network(id)?.ok_or(StoreError::NoSuchNetwork(name))
    }

    /// The address CNI attachment (`container_id`, `ifname`) of `network`
    /// holds, if any.
    pub fn cni_fleet_hold(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CniFleetHold>, StoreError> {
        hold_of(&self.tx, network, container_id, ifname)
    }

    /// Every address the attachments of CNI network `network` hold.
    pub fn cni_fleet_holds(&self, network: &str) -> Result<Vec<CniFleetHold>, StoreError> {
        let context = "listing CNI attachments' fleet addresses";
        let mut stmt = self
            .tx
            .prepare_cached(&format!(
                "SELECT {HOLD_COLS} FROM fleet_cni_holders WHERE network = ?1"
            ))
            .ctx(context)?;
        let rows: Vec<_> = stmt
            .query_map([network], hold_row)
            .ctx(context)?
            .collect::<rusqlite::Result<_>>()
            .ctx(context)?;
        rows.into_iter().map(into_hold).collect()
    }

    /// Releases the address `hold` names in this host's state, and notes
    /// that etcd's record of it goes back to this host's spares with the
    /// next batch; whether [`fleet_batch`](Self::fleet_batch) is due once
    /// committed (see [`fleet_release`](Self::fleet_release)).
    pub fn cni_fleet_release(&self, hold: &CniFleetHold) -> Result<bool, StoreError> {
        self.release_address(hold.network_id, hold.ip)?;
        self.tx
            .prepare_cached(
                "DELETE FROM fleet_cni_holders WHERE network = ?1 AND container_id = ?2 AND ifname = ?3",
            )
            .and_then(|mut s| s.execute(params![hold.network, hold.container_id, hold.ifname]))
            .ctx("releasing a CNI attachment's fleet address")?;
        let Some(host) = local::host_if_any(&self.tx, hold.network_id)? else { return Ok(false) };
        // The pool is named in etcd as the CNI network.
        let keys = Keys::new(&hold.network);
        let owner = keys.cni_owner(&host.host, &hold.container_id, &hold.ifname);
        self.fleet_note_release(hold.network_id, &owner, &[hold.ip])
    }

    /// Takes the address `hold` names from its attachment into quarantine
    /// (someone answered for it on the wire: `answered_by`): released as by
    /// DEL (etcd's record noted to go back to this host's spares: the host
    /// keeps it), then held by no one, out of the pool until the network's
    /// cool-down returns it. Returns whether the host's notes are due, as
    /// [`cni_fleet_release`](Self::cni_fleet_release).
    pub fn cni_fleet_quarantine(
        &self,
        hold: &CniFleetHold,
        answered_by: Option<nicslice_model::MacAddr>,
    ) -> Result<bool, StoreError> {
        let due = self.cni_fleet_release(hold)?;
        // A CNI pool has one subnet.
        if !self.quarantine_address(hold.network_id, 0, hold.ip, answered_by)? {
            return Err(StoreError::corrupt(format!(
                "{} of CNI network {} could not be quarantined once released",
                hold.ip, hold.network
            )));
        }
        Ok(due)
    }
}

impl Store {
    /// [`WriteTx::cni_fleet_hold`] without a write transaction (CHECK).
    pub fn cni_fleet_hold(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CniFleetHold>, StoreError> {
        hold_of(self.conn(), network, container_id, ifname)
    }
}
