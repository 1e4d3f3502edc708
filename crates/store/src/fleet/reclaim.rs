//! Taking back the addresses of a dead host (issue 14). A host is dead for
//! the pool when its lease, and `host/<name>` with it, is gone; its blocks
//! went with the lease, but its addresses stay recorded in its name: its
//! endpoints may still be running (a host cut off from etcd, not down). The
//! first host to see it so writes `gone/<name>` with the time; once the
//! network's cool-down has passed since, a host whose pool ran out lists
//! the dead host's addresses ([`reclaimable`]), the engine probes them on
//! the wire (IPv4 and IPv6 together), and [`Reclaim::take_back`] makes
//! those no one answered this host's spares (each in one etcd transaction
//! that holds only while the dead host still has no lease and its record is
//! as read) and records who answered the others (`heard/<ip>`), which stay
//! in the dead host's name.
//! A dead host that comes back takes a new lease, puts `host/<name>` again
//! and reads back what etcd still records as its own before it serves.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use nicslice_model::FleetSpec;

use super::etcd::{Cmp, Etcd, Op};
use super::{AddressRecord, GoneRecord, HeardRecord, Keys, local};
use crate::book::TxBook;
use crate::{NetworkId, NetworkRecord, StoreError, StoreRead, WriteTx};

/// A dead host's address whose cool-down is over, as etcd records it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub ip: IpAddr,
    block: IpAddr,
    record: Vec<u8>,
    holder: String,
    /// `gone/<holder>` as read: the transaction holds only if it still is.
    gone: Vec<u8>,
}

/// What a host may take back from dead hosts on one fleet network.
pub struct Reclaim {
    fleet: FleetSpec,
    keys: Keys,
    me: String,
    /// Addresses to probe: their holder is dead past the cool-down.
    pub candidates: Vec<Candidate>,
    /// Seconds until the next cool-down of a dead host ends, if one runs.
    pub next_in_s: Option<i64>,
}

/// The addresses of `network`'s dead hosts this host may probe and take
/// back now; starts the cool-down of dead hosts seen for the first time.
pub fn reclaimable(store: &crate::Store, network: &NetworkRecord) -> Result<Reclaim, StoreError> {
    let fleet = super::allocate::fleet_of(network)?;
    let keys = Keys::new(network.spec.name.as_str());
    let me = local::host_if_any(store.conn(), network.id)?.map(|h| h.host).unwrap_or_default();
    let etcd = super::client(&fleet)?;
    let alive: BTreeSet<String> = names(&etcd, &keys.hosts())?.into_keys().collect();
    let gone = names(&etcd, &keys.gones())?;
    let now = crate::store::now();
    let cooldown = i64::try_from(fleet.cooldown_s).unwrap_or(i64::MAX);
    let mut candidates = Vec::new();
    let mut next_in_s: Option<i64> = None;
    let mut noticed = BTreeSet::new();
    let block_of = |key: &[u8]| -> Option<(IpAddr, IpAddr)> {
        let rest = String::from_utf8_lossy(&key[keys.addresses().len()..]).into_owned();
        let (block, ip) = rest.split_once('/')?;
        Some((block.parse().ok()?, ip.parse().ok()?))
    };
    for kv in etcd.get_prefix(&keys.addresses())? {
        let Some(record) = AddressRecord::parse(&kv.value) else { continue };
        if record.host == me || alive.contains(&record.host) {
            continue;
        }
        let Some((block, ip)) = block_of(&kv.key) else { continue };
        match gone.get(&record.host) {
            Some(value) => {
                let since = serde_json::from_slice::<GoneRecord>(value).map_or(now, |g| g.since);
                let left = since.saturating_add(cooldown) - now;
                if left > 0 {
                    next_in_s = Some(next_in_s.map_or(left, |n| n.min(left)));
                    continue;
                }
                candidates.push(Candidate {
                    ip,
                    block,
                    record: kv.value,
                    holder: record.host,
                    gone: value.clone(),
                });
            }
            None if noticed.insert(record.host.clone()) => {
                notice(&etcd, &keys, &record.host, now)?;
                next_in_s = Some(next_in_s.map_or(cooldown, |n| n.min(cooldown)));
            }
            None => {}
        }
    }
    Ok(Reclaim { fleet, keys, me, candidates, next_in_s })
}

/// The keys under `prefix` by the name after it, with their values.
fn names(etcd: &Etcd, prefix: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
    Ok(etcd
        .get_prefix(prefix)?
        .into_iter()
        .map(|kv| (String::from_utf8_lossy(&kv.key[prefix.len()..]).into_owned(), kv.value))
        .collect())
}

/// Starts `host`'s cool-down now, if it still has no lease and no one
/// started it.
fn notice(etcd: &Etcd, keys: &Keys, host: &str, now: i64) -> Result<(), StoreError> {
    let record = serde_json::to_vec(&GoneRecord { since: now }).unwrap_or_default();
    tracing::info!(host, "a host of the fleet pool has no lease: its cool-down starts");
    etcd.txn(
        &[Cmp::Absent(keys.host(host)), Cmp::Absent(keys.gone(host))],
        &[Op::Put { key: keys.gone(host), value: record, lease: None }],
        &[],
    )
    .map(drop)
}

impl Reclaim {
    /// Takes back the candidates `unanswered` on the wire as this host's
    /// spares in etcd, and records who answered the others (`answered`, by
    /// MAC); candidates in neither (not asked) stay as they are. Returns
    /// what it took, as (address, block), for [`WriteTx::fleet_add_spares`].
    pub fn take_back(
        &self,
        unanswered: &[IpAddr],
        answered: &BTreeMap<IpAddr, String>,
    ) -> Result<Vec<(IpAddr, IpAddr)>, StoreError> {
        let etcd = super::client(&self.fleet)?;
        let now = crate::store::now();
        let mut taken = Vec::new();
        for c in &self.candidates {
            if let Some(mac) = answered.get(&c.ip) {
                tracing::warn!(ip = %c.ip, holder = %c.holder, %mac, "an address of a dead host answers on the wire: it stays held");
                let heard = HeardRecord { host: c.holder.clone(), mac: mac.clone(), at: now };
                let value = serde_json::to_vec(&heard).unwrap_or_default();
                etcd.txn(&[], &[Op::Put { key: self.keys.heard(c.ip), value, lease: None }], &[])?;
                continue;
            }
            if !unanswered.contains(&c.ip) {
                continue;
            }
            let key = self.keys.address(c.block, c.ip);
            let mut ops = vec![
                Op::Put {
                    key: key.clone(),
                    value: AddressRecord::spare(&self.me).bytes(),
                    lease: None,
                },
                Op::Put {
                    key: self.keys.host_block(&self.me, c.block),
                    value: Vec::new(),
                    lease: None,
                },
                Op::Delete(self.keys.heard(c.ip)),
            ];
            if let Some(owner) = AddressRecord::parse(&c.record).and_then(|r| r.owner) {
                ops.push(Op::Delete(owner.into_bytes()));
            }
            let compare = [
                Cmp::Absent(self.keys.host(&c.holder)),
                Cmp::Holds(self.keys.gone(&c.holder), c.gone.clone()),
                Cmp::Holds(key, c.record.clone()),
            ];
            if etcd.txn(&compare, &ops, &[])?.0 {
                tracing::info!(ip = %c.ip, holder = %c.holder, "took back an address of a dead host");
                taken.push((c.ip, c.block));
            }
        }
        Ok(taken)
    }
}

impl WriteTx<'_> {
    /// Adds addresses etcd now records as this host's spares (taken back
    /// from a dead host) to its list.
    pub fn fleet_add_spares(
        &self,
        network: NetworkId,
        taken: &[(IpAddr, IpAddr)],
    ) -> Result<(), StoreError> {
        let record =
            self.network(network)?.ok_or(StoreError::NoSuchNetwork(network.0.to_string()))?;
        let pool = self.pool(&record.validate()?, network, 0)?;
        let mut book = TxBook { conn: &self.tx };
        for &(ip, block) in taken {
            local::add_addresses(&self.tx, network, block, &[ip])?;
            super::allocate::list_spare(&mut book, &pool, ip)?;
        }
        Ok(())
    }
}
