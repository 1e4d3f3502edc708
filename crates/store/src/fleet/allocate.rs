//! Allocation and release on a fleet network (see the module above): the
//! lease renewal, the leasing of a block with its spares, the claim of a
//! spare for an endpoint, and its return.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use nicslice_model::FleetSpec;
use nicslice_model::ipam::Pool;

use super::etcd::{Cmp, Etcd, LeaseId, Op, range_reply};
use super::holder::FleetHolder;
use super::local::{self, Clock, HostRow};
use super::{AddressRecord, BlockRecord, Keys};
use crate::{
    EndpointRecord, LeaseRecord, NetworkId, NetworkRecord, StoreError, StoreRead, WriteTx,
};

fn cut_off(network: &str, why: Option<StoreError>) -> StoreError {
    StoreError::Etcd(format!(
        "network {network}: this host is cut off from etcd and its lease may have expired, so its addresses may be handed to other hosts; refusing to allocate rather than risk a duplicate{}",
        why.map(|e| format!(" ({e})")).unwrap_or_default()
    ))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Renews this host's lease when a third of the TTL has passed since the
/// last renewal (or takes one): the lease counts as alive until the time
/// the renewal was asked plus what etcd said is left, never later than etcd
/// itself lets it go. `Err` when etcd did not answer.
fn renew_if_due(
    etcd: &Etcd,
    fleet: &FleetSpec,
    host: &mut HostRow,
    clock: &Clock,
) -> Result<(), StoreError> {
    let ttl = Duration::from_secs(fleet.ttl_s);
    let same_boot = host.boot_id == clock.boot_id;
    if host.lease != 0 && same_boot && clock.now_ms < host.renewed_ms + ms(ttl) / 3 {
        return Ok(());
    }
    if host.lease != 0 && same_boot {
        if let Some(left) = etcd.keep_alive(LeaseId(host.lease))? {
            host.renewed_ms = clock.now_ms;
            host.valid_until_ms = clock.now_ms + ms(left);
            return Ok(());
        }
        tracing::info!(host = %host.host, "this host's etcd lease expired: taking a new one");
    }
    let lease = etcd.grant(ttl)?;
    *host = HostRow {
        lease: lease.0,
        boot_id: clock.boot_id.clone(),
        renewed_ms: clock.now_ms,
        valid_until_ms: clock.now_ms + ms(ttl),
        host: std::mem::take(&mut host.host),
    };
    Ok(())
}

impl WriteTx<'_> {
    /// Takes (or renews) this host's etcd lease for fleet network `network`
    /// and records it: `network create` checks this way that etcd answers.
    pub fn fleet_join(&self, network: NetworkId) -> Result<(), StoreError> {
        let record =
            self.network(network)?.ok_or(StoreError::NoSuchNetwork(network.0.to_string()))?;
        let fleet = fleet_of(&record)?;
        let mut host = local::host(&self.tx, network)?;
        renew_if_due(&super::client(&fleet)?, &fleet, &mut host, &Clock::read()?)?;
        local::save_host(&self.tx, network, &host)
    }

    /// Leases an address of fleet network `network` to `holder` (an
    /// endpoint, or a CNI attachment): one of
    /// this host's spares, after leasing a block when none is left. The
    /// claim returned, when etcd answers, makes etcd's record of the address
    /// the holder's once this transaction is committed; while etcd does
    /// not answer, the spare (recorded as this host's already) is used as
    /// long as this host's lease surely lives.
    pub fn fleet_allocate<'h>(
        &self,
        network: NetworkId,
        holder: impl Into<FleetHolder<'h>>,
    ) -> Result<(LeaseRecord, Option<PendingClaim>), StoreError> {
        let holder = holder.into();
        let record =
            self.network(network)?.ok_or(StoreError::NoSuchNetwork(network.0.to_string()))?;
        let fleet = fleet_of(&record)?;
        let name = record.spec.name.to_string();
        let valid = record.validate()?;
        let pool = self.pool(&valid, network, 0)?;
        let keys = Keys::new(&name);
        let clock = Clock::read()?;
        let mut host = local::host(&self.tx, network)?;
        let before = host.clone();
        let etcd = if host.lease_lives(&clock) {
            let left = (host.valid_until_ms - clock.now_ms).max(0).unsigned_abs();
            super::client_within(&fleet, Duration::from_millis(left))?
        } else {
            super::client(&fleet)?
        };
        let contact = renew_if_due(&etcd, &fleet, &mut host, &clock);
        if host != before {
            local::save_host(&self.tx, network, &host)?;
        }
        if !host.lease_lives(&clock) {
            return Err(cut_off(&name, contact.err()));
        }
        let leased: BTreeSet<IpAddr> = self.leases_in(network)?.iter().map(|l| l.ip).collect();
        let owner = holder.owner_key(self, &keys, &host.host)?;
        // Once per allocation: what it adopts and then cannot claim is not
        // adopted again, round after round.
        let mut adopted = false;
        loop {
            let free = local::addresses(&self.tx, network)?
                .into_iter()
                .find(|(ip, _)| !leased.contains(ip));
            let (ip, block) = match (free, &contact) {
                (Some(found), _) => found,
                (None, Ok(())) if !adopted => {
                    adopted = true;
                    adopt(self, &etcd, &keys, &host.host, network)?;
                    continue;
                }
                (None, Ok(())) => lease_block(self, &etcd, &keys, &pool, &fleet, &host, network)?,
                (None, Err(e)) => {
                    return Err(StoreError::Etcd(format!(
                        "network {name}: this host has no spare address left and etcd does not answer, so it cannot lease another block ({e})"
                    )));
                }
            };
            let lease = holder.lease(self, network, ip)?;
            // Written after the commit, off the lock (`PendingClaim`); while
            // etcd does not answer, the spare is this host's all the same.
            let pending = contact.is_ok().then(|| PendingClaim {
                etcd,
                key: keys.address(block, ip),
                host: host.host.clone(),
                owner,
                ip,
            });
            return Ok((lease, pending));
        }
    }

    /// Forgets `ip` as this host's: etcd records it for another host.
    pub fn fleet_forget(&self, network: NetworkId, ip: IpAddr) -> Result<(), StoreError> {
        local::forget_address(&self.tx, network, ip)
    }
}

/// The etcd side of a fleet allocation, done after its transaction is
/// committed so that the host's other commands need not wait for etcd: the
/// address's record made the endpoint's.
pub struct PendingClaim {
    etcd: Etcd,
    key: Vec<u8>,
    host: String,
    owner: Vec<u8>,
    ip: IpAddr,
}

impl PendingClaim {
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Makes the record the endpoint's: from this host's spare, or from a
    /// record in this host's name that no endpoint holds any more (the
    /// address is leased to this endpoint in the host's state, which no
    /// other endpoint of the host can be: what a killed command or a
    /// detach that did not reach etcd left). `false` when etcd records it
    /// for another host.
    pub fn record(&self) -> Result<bool, StoreError> {
        let owned = AddressRecord::owned(&self.host, &self.owner).bytes();
        let mut take = vec![
            Op::Put { key: self.key.clone(), value: owned.clone(), lease: None },
            Op::Put {
                key: self.owner.clone(),
                value: self.ip.to_string().into_bytes(),
                lease: None,
            },
        ];
        let spare = AddressRecord::spare(&self.host).bytes();
        let (took, replies) = self.etcd.txn(
            &[Cmp::Holds(self.key.clone(), spare)],
            &take,
            &[Op::Get(self.key.clone())],
        )?;
        if took {
            return Ok(true);
        }
        let Some(found) = range_reply(&replies, 0)? else {
            // No record at all: create it as the endpoint's, if still absent.
            return Ok(self.etcd.txn(&[Cmp::Absent(self.key.clone())], &take, &[])?.0);
        };
        if found.value == owned {
            return Ok(true); // an earlier try of this very claim
        }
        match AddressRecord::parse(&found.value) {
            Some(r) if r.host == self.host => {
                tracing::info!(ip = %self.ip, "taking over an address left recorded in use");
                if let Some(old) = r.owner.filter(|o| o.as_bytes() != self.owner) {
                    take.push(Op::Delete(old.into_bytes()));
                }
                Ok(self.etcd.txn(&[Cmp::Holds(self.key.clone(), found.value)], &take, &[])?.0)
            }
            _ => Ok(false),
        }
    }
}

pub(super) fn fleet_of(record: &NetworkRecord) -> Result<FleetSpec, StoreError> {
    record.spec.fleet.clone().ok_or_else(|| {
        StoreError::Etcd(format!(
            "network {} is not a fleet network (--ipam etcd)",
            record.spec.name
        ))
    })
}

/// Adds to this host's local list the addresses etcd records in its name
/// that the list lacks: those of a block leased by a command whose own
/// transaction then failed or was killed (etcd is the truth, the list its
/// copy). Reads the records of the blocks this host ever
/// took (`hostblock/`), only when it has no spare left.
fn adopt(
    tx: &WriteTx<'_>,
    etcd: &Etcd,
    keys: &Keys,
    host: &str,
    network: NetworkId,
) -> Result<(), StoreError> {
    let known: BTreeSet<IpAddr> =
        local::addresses(&tx.tx, network)?.into_iter().map(|(ip, _)| ip).collect();
    let prefix = keys.addresses().len();
    let index = keys.host_blocks(host);
    let mut records = Vec::new();
    for block in etcd.get_prefix(&index)? {
        let first = String::from_utf8_lossy(&block.key[index.len()..]).parse::<IpAddr>();
        if let Ok(first) = first {
            records.extend(etcd.get_prefix(&keys.addresses_of_block(first))?);
        }
    }
    let mut adopted = 0;
    for kv in records {
        if AddressRecord::parse(&kv.value).is_none_or(|r| r.host != host) {
            continue;
        }
        let key = String::from_utf8_lossy(&kv.key[prefix..]).into_owned();
        let Some((Ok(block), Ok(ip))) =
            key.split_once('/').map(|(b, ip)| (b.parse::<IpAddr>(), ip.parse::<IpAddr>()))
        else {
            continue;
        };
        if !known.contains(&ip) {
            local::add_addresses(&tx.tx, network, block, &[ip])?;
            adopted += 1;
        }
    }
    if adopted > 0 {
        tracing::info!(adopted, "found addresses etcd records for this host that it had lost");
    }
    Ok(())
}

/// Leases the first block of the subnet no host holds that has addresses
/// no one has recorded, and records those as this host's spares, in one
/// etcd transaction (raced by another host: the next block). Returns the
/// first of them and its block.
fn lease_block(
    tx: &WriteTx<'_>,
    etcd: &Etcd,
    keys: &Keys,
    pool: &Pool,
    fleet: &FleetSpec,
    host: &HostRow,
    network: NetworkId,
) -> Result<(IpAddr, IpAddr), StoreError> {
    if let Some(first) = pool.ip_at(pool.range_first()) {
        super::geometry::agree(etcd, keys, pool.network().as_str(), first, fleet.block_size)?;
    }
    let held: BTreeSet<Vec<u8>> =
        etcd.get_prefix(&keys.blocks())?.into_iter().map(|kv| kv.key).collect();
    let size = u128::from(fleet.block_size);
    let taken_at = crate::store::now();
    let mut first = pool.range_first();
    while first <= pool.range_last() {
        let last = (first + size - 1).min(pool.range_last());
        let Some(block) = pool.ip_at(first) else { break };
        first += size;
        let block_key = keys.block(block);
        if held.contains(&block_key) {
            continue;
        }
        let recorded: BTreeSet<Vec<u8>> = etcd
            .get_prefix(&keys.addresses_of_block(block))?
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        let free: Vec<IpAddr> = (first - size..=last)
            .filter_map(|o| pool.ip_at(o))
            .filter(|ip| pool.is_allocatable(*ip) && !recorded.contains(&keys.address(block, *ip)))
            .collect();
        let Some(&first_free) = free.first() else { continue };
        let record = BlockRecord { host: host.host.clone(), taken_at };
        let mut compare = vec![Cmp::Absent(block_key.clone())];
        let mut puts = vec![Op::Put {
            key: block_key,
            value: serde_json::to_vec(&record).unwrap_or_default(),
            lease: Some(LeaseId(host.lease)),
        }];
        let spare = AddressRecord::spare(&host.host).bytes();
        let index = keys.host_block(&host.host, block);
        puts.push(Op::Put { key: index, value: Vec::new(), lease: None });
        for ip in &free {
            compare.push(Cmp::Absent(keys.address(block, *ip)));
            puts.push(Op::Put { key: keys.address(block, *ip), value: spare.clone(), lease: None });
        }
        if etcd.txn(&compare, &puts, &[])?.0 {
            tracing::debug!(%block, spares = free.len(), "leased a block of the fleet pool");
            local::add_addresses(&tx.tx, network, block, &free)?;
            return Ok((first_free, block));
        }
    }
    Err(StoreError::Etcd(format!(
        "the fleet pool {} is full: every block is held by a host or has no address left",
        pool.range()
    )))
}

/// Turns the records of `ips`, used by the CLI endpoint `ep` of fleet
/// network `network`, back into this host's spares; called after the
/// detach is committed. A record left as it is (etcd not answering) is
/// taken over by a later allocation.
pub fn release(
    store: &crate::Store,
    network: &NetworkRecord,
    ep: &EndpointRecord,
    ips: &[IpAddr],
) -> Result<(), StoreError> {
    let Ok(fleet) = fleet_of(network) else { return Ok(()) };
    let Some(host) = local::host_if_any(store.conn(), network.id)? else { return Ok(()) };
    let blocks: std::collections::BTreeMap<IpAddr, IpAddr> =
        local::addresses(store.conn(), network.id)?.into_iter().collect();
    let keys = Keys::new(network.spec.name.as_str());
    let owner = keys.cli_owner(&host.host, ep);
    let owned = AddressRecord::owned(&host.host, &owner).bytes();
    let etcd = super::client_brief(&fleet)?;
    for ip in ips {
        let Some(&block) = blocks.get(ip) else { continue };
        give_back(&etcd, keys.address(block, *ip), &host.host, &owner, &owned)?;
    }
    Ok(())
}

/// Turns the record at `key`, if it still holds `owned` (the address used
/// by `owner`), back into a spare of `host`, and deletes the owner key.
pub(super) fn give_back(
    etcd: &Etcd,
    key: Vec<u8>,
    host: &str,
    owner: &[u8],
    owned: &[u8],
) -> Result<(), StoreError> {
    etcd.txn(
        &[Cmp::Holds(key.clone(), owned.to_vec())],
        &[
            Op::Put { key, value: AddressRecord::spare(host).bytes(), lease: None },
            Op::Delete(owner.to_vec()),
        ],
        &[],
    )
    .map(drop)
}

/// What a host leaving a fleet network gives back, read before the network's
/// rows go ([`departure`]); [`Departure::leave`] after they went.
pub struct Departure {
    fleet: FleetSpec,
    keys: Keys,
    host: HostRow,
}

/// This host's part of fleet network `network`, if it has one.
pub fn departure(
    store: &crate::Store,
    network: &NetworkRecord,
) -> Result<Option<Departure>, StoreError> {
    let Ok(fleet) = fleet_of(network) else { return Ok(None) };
    let Some(host) = local::host_if_any(store.conn(), network.id)? else { return Ok(None) };
    Ok(Some(Departure { fleet, keys: Keys::new(network.spec.name.as_str()), host }))
}

impl Departure {
    /// Ends this host's lease (its blocks go with it) and deletes every
    /// record in its name, each only if it still holds what was read.
    pub fn leave(&self) -> Result<(), StoreError> {
        let etcd = super::client(&self.fleet)?;
        if self.host.lease != 0 {
            etcd.revoke(LeaseId(self.host.lease))?;
        }
        for kv in etcd.get_prefix(&self.keys.addresses())? {
            let Some(record) = AddressRecord::parse(&kv.value).filter(|r| r.host == self.host.host)
            else {
                continue;
            };
            let mut delete = vec![Op::Delete(kv.key.clone())];
            delete.extend(record.owner.map(|o| Op::Delete(o.into_bytes())));
            etcd.txn(&[Cmp::Holds(kv.key, kv.value)], &delete, &[])?;
        }
        for kv in etcd.get_prefix(&self.keys.host_blocks(&self.host.host))? {
            etcd.txn(&[], &[Op::Delete(kv.key)], &[])?;
        }
        Ok(())
    }
}
