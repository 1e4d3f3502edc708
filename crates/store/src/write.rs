//! `WriteTx`: one `BEGIN IMMEDIATE` transaction and the writes on networks
//! and endpoints. Rolls back when dropped unless committed. Address
//! allocation lives in `leases`.

use nicslice_model::{MacAddr, ValidNetwork};
use rusqlite::{Transaction, params};

use crate::blob::to_blob;
use crate::error::{Context, is_unique_violation};
use crate::store::now;
use crate::{EndpointId, EndpointState, NetworkId, NewEndpoint, Owner, StoreError, StoreRead};

/// An endpoint's state and the process that owns it (an intent), by id.
const SET_ENDPOINT_STATE: &str =
    "UPDATE endpoints SET state = ?2, owner_pid = ?3, owner_start = ?4 WHERE id = ?1";

/// A write transaction. Reads through `StoreRead` see its own writes.
pub struct WriteTx<'a> {
    pub(crate) tx: Transaction<'a>,
    /// The writers' queue, left after the transaction ends (declared after it).
    pub(crate) _queued: crate::store::Queued<'a>,
}

impl WriteTx<'_> {
    /// Makes every write of this transaction durable and visible to others.
    pub fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().ctx("committing")
    }

    /// Records a network and creates one address pool per subnet.
    /// `promisc_prev` is the parent's promiscuous state before nicslice changed it.
    pub fn insert_network(
        &self,
        network: &ValidNetwork,
        promisc_prev: Option<bool>,
    ) -> Result<NetworkId, StoreError> {
        self.insert_network_as(
            network.name.as_str(),
            network.parent.as_str(),
            network,
            promisc_prev,
        )
    }

    /// `insert_network` with the row's name and parent columns given: a
    /// hidden network (`fleet::cni`) is named and parented apart from the
    /// CLI's networks.
    pub(crate) fn insert_network_as(
        &self,
        name: &str,
        parent: &str,
        network: &ValidNetwork,
        promisc_prev: Option<bool>,
    ) -> Result<NetworkId, StoreError> {
        let json = serde_json::to_string(network.spec())
            .map_err(|e| StoreError::corrupt(format!("network spec ({e})")))?;
        self.tx
            .execute(
                "INSERT INTO networks (name, parent, spec_json, promisc_prev, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![name, parent, json, promisc_prev, now()],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::NetworkExists(name.to_string())
                } else {
                    StoreError::Sqlite { context: "recording a network", source: e }
                }
            })?;
        let id = NetworkId(self.tx.last_insert_rowid());
        let mut stmt = self
            .tx
            .prepare_cached(
                "INSERT INTO pools (network_id, subnet_index, subnet, gateway, high_water) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .ctx("creating address pools")?;
        for (index, subnet) in network.subnets().iter().enumerate() {
            let index = i64::try_from(index).unwrap_or(i64::MAX);
            stmt.execute(params![
                id.0,
                index,
                subnet.subnet().to_string(),
                subnet.gateway().to_string(),
                to_blob(0).as_slice()
            ])
            .ctx("creating address pools")?;
        }
        Ok(id)
    }

    /// Deletes a network together with `endpoints`, its endpoints whose links
    /// are gone (`network rm --force`). Their leases go with the network's
    /// pools instead of being released one by one into free lists that are
    /// deleted a moment later (an endpoint's release reads its network and
    /// pool, for 100 endpoints a few hundred statements for nothing).
    /// Refuses, as `delete_network` does, while any other endpoint is left.
    pub fn delete_network_with_endpoints(
        &self,
        id: NetworkId,
        endpoints: &[EndpointId],
    ) -> Result<bool, StoreError> {
        let mut leases = self
            .tx
            .prepare_cached(
                "DELETE FROM leases WHERE endpoint_id = ?1 \
                 AND pool_id IN (SELECT id FROM pools WHERE network_id = ?2)",
            )
            .ctx("deleting an endpoint's leases")?;
        let mut rows = self
            .tx
            .prepare_cached("DELETE FROM endpoints WHERE id = ?1 AND network_id = ?2")
            .ctx("deleting an endpoint")?;
        for endpoint in endpoints {
            leases.execute([endpoint.0, id.0]).ctx("deleting an endpoint's leases")?;
            rows.execute([endpoint.0, id.0]).ctx("deleting an endpoint")?;
        }
        self.delete_network(id)
    }

    /// Deletes a network with its pools and leases. Refuses while it has
    /// endpoints. Returns whether it existed.
    pub fn delete_network(&self, id: NetworkId) -> Result<bool, StoreError> {
        let Some(network) = self.network(id)? else { return Ok(false) };
        let count: i64 = self
            .tx
            .query_row("SELECT count(*) FROM endpoints WHERE network_id = ?1", [id.0], |r| r.get(0))
            .ctx("counting endpoints")?;
        if count > 0 {
            return Err(StoreError::NetworkInUse {
                network: network.name().to_string(),
                count: count.unsigned_abs(),
            });
        }
        let n = self
            .tx
            .execute("DELETE FROM networks WHERE id = ?1", [id.0])
            .ctx("deleting a network")?;
        Ok(n > 0)
    }

    /// Records which promiscuous state of the parent to restore when the
    /// network goes (`None`: nicslice did not change it), e.g. when another
    /// network on the parent inherits it. Returns whether the network exists.
    pub fn set_promisc_prev(
        &self,
        id: NetworkId,
        promisc_prev: Option<bool>,
    ) -> Result<bool, StoreError> {
        let n = self
            .tx
            .execute(
                "UPDATE networks SET promisc_prev = ?2 WHERE id = ?1",
                params![id.0, promisc_prev],
            )
            .ctx("updating a network")?;
        Ok(n > 0)
    }

    /// Records the link that is network `id`'s parent now: its index and
    /// MAC (when a network is made, and when `doctor` adopts a parent
    /// recreated under its name). Returns whether the network exists.
    pub fn set_parent_link(
        &self,
        id: NetworkId,
        index: u32,
        mac: Option<MacAddr>,
    ) -> Result<bool, StoreError> {
        let n = self
            .tx
            .execute(
                "UPDATE networks SET parent_ifindex = ?2, parent_mac = ?3 WHERE id = ?1",
                params![id.0, index, mac.map(|m| m.to_string())],
            )
            .ctx("updating a network")?;
        Ok(n > 0)
    }

    /// Replaces a network's spec (`apply` changing a setting that needs no
    /// new link: promiscuous mode, conflict probing) and the promiscuous
    /// state to restore. The pools stay: their subnets must not change.
    /// Returns whether the network exists.
    pub fn update_network(
        &self,
        id: NetworkId,
        network: &ValidNetwork,
        promisc_prev: Option<bool>,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(network.spec())
            .map_err(|e| StoreError::corrupt(format!("network spec ({e})")))?;
        let n = self
            .tx
            .execute(
                "UPDATE networks SET spec_json = ?2, promisc_prev = ?3 WHERE id = ?1",
                params![id.0, json, promisc_prev],
            )
            .ctx("updating a network")?;
        Ok(n > 0)
    }

    /// Records an endpoint of `network`.
    pub fn insert_endpoint(
        &self,
        network: NetworkId,
        endpoint: &NewEndpoint,
    ) -> Result<EndpointId, StoreError> {
        if self.network(network)?.is_none() {
            return Err(StoreError::NoSuchNetwork(format!("with id {}", network.0)));
        }
        let details = serde_json::to_string(&endpoint.details)
            .map_err(|e| StoreError::corrupt(format!("endpoint details ({e})")))?;
        self.tx
            .execute(
                "INSERT INTO endpoints (network_id, netns, netns_dev, netns_ino, ifname, mac, \
                 details_json, created_at, netns_cookie, state, owner_pid, owner_start) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    network.0,
                    endpoint.netns,
                    // Bit for bit: SQLite integers are signed.
                    endpoint.netns_id.dev as i64,
                    endpoint.netns_id.ino as i64,
                    endpoint.ifname.as_str(),
                    endpoint.mac.map(|m| m.to_string()),
                    details,
                    now(),
                    endpoint.netns_cookie.map(|c| c as i64),
                    endpoint.state.as_str(),
                    endpoint.owner.map(|o| o.pid),
                    endpoint.owner.map(|o| o.start as i64),
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::EndpointExists {
                        netns: endpoint.netns.clone(),
                        ifname: endpoint.ifname.to_string(),
                    }
                } else {
                    StoreError::Sqlite { context: "recording an endpoint", source: e }
                }
            })?;
        Ok(EndpointId(self.tx.last_insert_rowid()))
    }

    /// Sets the MAC address and driver-specific details of an endpoint (known
    /// only once the kernel made the link). Returns whether it exists.
    pub fn update_endpoint(
        &self,
        id: EndpointId,
        mac: Option<MacAddr>,
        details: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let details = serde_json::to_string(details)
            .map_err(|e| StoreError::corrupt(format!("endpoint details ({e})")))?;
        let n = self
            .tx
            .execute(
                "UPDATE endpoints SET mac = ?2, details_json = ?3 WHERE id = ?1",
                params![id.0, mac.map(|m| m.to_string()), details],
            )
            .ctx("updating an endpoint")?;
        Ok(n > 0)
    }

    /// Marks an attaching endpoint attached with what the kernel made (its
    /// MAC and details): `update_endpoint` and `set_endpoint_state(..,
    /// Attached, None)` in one statement, for the attach's last commit.
    /// Returns whether it exists.
    pub fn mark_attached(
        &self,
        id: EndpointId,
        mac: Option<MacAddr>,
        details: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let details = serde_json::to_string(details)
            .map_err(|e| StoreError::corrupt(format!("endpoint details ({e})")))?;
        let n = self
            .tx
            .execute(
                "UPDATE endpoints SET mac = ?2, details_json = ?3, state = 'attached', \
                 owner_pid = NULL, owner_start = NULL WHERE id = ?1",
                params![id.0, mac.map(|m| m.to_string()), details],
            )
            .ctx("marking an endpoint attached")?;
        Ok(n > 0)
    }

    /// Moves an endpoint to `state`, worked on by `owner` (`None` once
    /// attached). Returns whether it exists.
    pub fn set_endpoint_state(
        &self,
        id: EndpointId,
        state: EndpointState,
        owner: Option<Owner>,
    ) -> Result<bool, StoreError> {
        let n = self
            .tx
            .prepare_cached(SET_ENDPOINT_STATE)
            .and_then(|mut s| {
                s.execute(params![
                    id.0,
                    state.as_str(),
                    owner.map(|o| o.pid),
                    owner.map(|o| o.start as i64)
                ])
            })
            .ctx("updating an endpoint's state")?;
        Ok(n > 0)
    }

    /// `set_endpoint_state` for many endpoints, one statement compiled once.
    pub fn set_endpoints_state(
        &self,
        ids: &[EndpointId],
        state: EndpointState,
        owner: Option<Owner>,
    ) -> Result<(), StoreError> {
        let mut update =
            self.tx.prepare_cached(SET_ENDPOINT_STATE).ctx("updating endpoints' states")?;
        let (pid, start) = (owner.map(|o| o.pid), owner.map(|o| o.start as i64));
        for id in ids {
            update
                .execute(params![id.0, state.as_str(), pid, start])
                .ctx("updating endpoints' states")?;
        }
        Ok(())
    }

    /// Releases the endpoint's addresses and forgets it. Returns whether it existed.
    pub fn delete_endpoint(&self, id: EndpointId) -> Result<bool, StoreError> {
        self.release_endpoint_leases(id)?;
        let n = self
            .tx
            .prepare_cached("DELETE FROM endpoints WHERE id = ?1")
            .and_then(|mut s| s.execute([id.0]))
            .ctx("deleting an endpoint")?;
        Ok(n > 0)
    }
}
