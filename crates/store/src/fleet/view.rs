//! What `network inspect` shows of a fleet network: the blocks of the pool
//! with their holders and age, and the addresses each host has in use, as
//! etcd records them now; and this host's name and lease.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use super::local::{self, Clock};
use super::{AddressRecord, BlockRecord, GoneRecord, HeardRecord, Keys};
use crate::{NetworkRecord, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct FleetView {
    pub etcd: Vec<String>,
    pub block_size: u32,
    pub ttl_s: u64,
    pub cooldown_s: u64,
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
    /// Whether its lease lives (`host/<name>`).
    pub alive: bool,
    /// Seconds since another host saw it without a lease (its cool-down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gone_for_s: Option<i64>,
    /// Its addresses someone answered on the wire after it died: held.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub answered: Vec<FleetAnswered>,
}

/// A dead host's address that answered a probe.
#[derive(Debug, Clone, Serialize)]
pub struct FleetAnswered {
    pub ip: IpAddr,
    pub mac: String,
    pub age_s: i64,
}

/// The fleet view of `network`, read from etcd and the local state.
pub fn view(store: &mut crate::Store, network: &NetworkRecord) -> Result<FleetView, StoreError> {
    let fleet = super::allocate::fleet_of(network)?;
    // What this host's attaches and detaches left for etcd to write, first.
    if let Err(e) = super::allocate::write_unrecorded(store, network) {
        tracing::warn!("this host's latest records may be missing from etcd: {e}");
    }
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
            alive: false,
            gone_for_s: None,
            answered: Vec::new(),
        });
        match r.owner {
            Some(_) => entry.in_use.push(ip),
            None => entry.spare += 1,
        }
    }
    for kv in etcd.get_prefix(&keys.hosts())? {
        let name = String::from_utf8_lossy(&kv.key[keys.hosts().len()..]).into_owned();
        if let Some(h) = hosts.get_mut(&name) {
            h.alive = true;
        }
    }
    for kv in etcd.get_prefix(&keys.gones())? {
        let name = String::from_utf8_lossy(&kv.key[keys.gones().len()..]).into_owned();
        let gone: Option<GoneRecord> = serde_json::from_slice(&kv.value).ok();
        if let (Some(h), Some(g)) = (hosts.get_mut(&name), gone) {
            h.gone_for_s = Some((now - g.since).max(0));
        }
    }
    for kv in etcd.get_prefix(&keys.heards())? {
        let ip = String::from_utf8_lossy(&kv.key[keys.heards().len()..]).parse::<IpAddr>();
        let heard: Option<HeardRecord> = serde_json::from_slice(&kv.value).ok();
        if let (Ok(ip), Some(r)) = (ip, heard)
            && let Some(h) = hosts.get_mut(&r.host)
        {
            h.answered.push(FleetAnswered { ip, mac: r.mac, age_s: (now - r.at).max(0) });
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
        cooldown_s: fleet.cooldown_s,
        this_host: host.map(|h| h.host),
        lease_left_ms,
        blocks,
        hosts,
    })
}
