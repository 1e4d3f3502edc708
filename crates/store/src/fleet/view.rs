//! What `network inspect` shows of a fleet network: the blocks of the pool
//! with their holders and age, and the addresses each host has in use, as
//! etcd records them now; and this host's name and lease.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use super::local::{self, Clock};
use super::{AddressRecord, BlockRecord, Keys};
use crate::{NetworkRecord, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct FleetView {
    pub etcd: Vec<String>,
    pub block_size: u32,
    pub ttl_s: u64,
    /// This host's name in etcd (none before its first allocation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub this_host: Option<String>,
    /// How long this host's lease surely lives without a renewal (0: not).
    pub lease_left_ms: i64,
    pub blocks: Vec<FleetBlock>,
    pub hosts: Vec<FleetHostView>,
}

/// A block leased by a host.
#[derive(Debug, Clone, Serialize)]
pub struct FleetBlock {
    pub first: IpAddr,
    pub holder: String,
    /// Seconds since the holder took it (by the holder's clock).
    pub age_s: i64,
}

/// The addresses etcd records in one host's name.
#[derive(Debug, Clone, Serialize)]
pub struct FleetHostView {
    pub host: String,
    /// Addresses in use by its endpoints.
    pub in_use: Vec<IpAddr>,
    /// How many addresses it keeps to hand out.
    pub spare: usize,
}

/// The fleet view of `network`, read from etcd and the local state.
pub fn view(store: &crate::Store, network: &NetworkRecord) -> Result<FleetView, StoreError> {
    let fleet = super::allocate::fleet_of(network)?;
    let host = local::host_if_any(store.conn(), network.id)?;
    let clock = Clock::read()?;
    let lease_left_ms = host
        .as_ref()
        .filter(|h| h.lease_lives(&clock))
        .map_or(0, |h| h.valid_until_ms - clock.now_ms);
    let etcd = super::client_brief(&fleet)?;
    let keys = Keys::new(network.spec.name.as_str());
    let now = crate::store::now();
    let prefix_len = keys.blocks().len();
    let mut blocks = Vec::new();
    for kv in etcd.get_prefix(&keys.blocks())? {
        let first = String::from_utf8_lossy(&kv.key[prefix_len..]).parse();
        let record: Option<BlockRecord> = serde_json::from_slice(&kv.value).ok();
        if let (Ok(first), Some(r)) = (first, record) {
            blocks.push(FleetBlock { first, holder: r.host, age_s: (now - r.taken_at).max(0) });
        }
    }
    blocks.sort_by_key(|b| b.first);
    let mut hosts: BTreeMap<String, FleetHostView> = BTreeMap::new();
    for kv in etcd.get_prefix(&keys.addresses())? {
        let key = String::from_utf8_lossy(&kv.key).into_owned();
        let (Some(ip), Some(r)) = (
            key.rsplit('/').next().and_then(|s| s.parse::<IpAddr>().ok()),
            AddressRecord::parse(&kv.value),
        ) else {
            continue;
        };
        let entry = hosts.entry(r.host.clone()).or_insert_with(|| FleetHostView {
            host: r.host.clone(),
            in_use: Vec::new(),
            spare: 0,
        });
        match r.owner {
            Some(_) => entry.in_use.push(ip),
            None => entry.spare += 1,
        }
    }
    let mut hosts: Vec<FleetHostView> = hosts.into_values().collect();
    for h in &mut hosts {
        h.in_use.sort();
    }
    Ok(FleetView {
        etcd: fleet.endpoints,
        block_size: fleet.block_size,
        ttl_s: fleet.ttl_s,
        this_host: host.map(|h| h.host),
        lease_left_ms,
        blocks,
        hosts,
    })
}
