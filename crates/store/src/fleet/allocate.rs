//! Allocation and release on a fleet network (see the module above): the
//! lease renewal, the leasing of a block with its spares, the claim of a
//! spare for an endpoint, and its return.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use nicslice_model::FleetSpec;
use nicslice_model::ipam::{LeaseBook, Pool};

use super::etcd::{Cmp, Etcd, LeaseId, Op, range_reply};
use super::holder::FleetHolder;
use super::local::{self, Clock, HostRow};
use super::{AddressRecord, BlockRecord, Keys};
use crate::book::TxBook;
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
/// itself lets it go. `Ok(true)` when `host/<name>` had to be put (a new
/// lease, or the key went missing): other hosts may have taken back this
/// host's addresses meanwhile, so its list must be read back from etcd
/// before it serves. `Err` when etcd did not answer.
fn renew_if_due(
    etcd: &Etcd,
    fleet: &FleetSpec,
    keys: &Keys,
    host: &mut HostRow,
    clock: &Clock,
) -> Result<bool, StoreError> {
    let ttl = Duration::from_secs(fleet.ttl_s);
    let same_boot = host.boot_id == clock.boot_id;
    if host.lease != 0 && same_boot && clock.now_ms < host.renewed_ms + ms(ttl) / 3 {
        return Ok(false);
    }
    if host.lease != 0 && same_boot {
        if let Some(left) = etcd.keep_alive(LeaseId(host.lease))? {
            let put = keep_alive_key(etcd, keys, &host.host, LeaseId(host.lease))?;
            host.renewed_ms = clock.now_ms;
            host.valid_until_ms = clock.now_ms + ms(left);
            return Ok(put);
        }
        tracing::info!(host = %host.host, "this host's etcd lease expired: taking a new one");
    }
    let lease = etcd.grant(ttl)?;
    keep_alive_key(etcd, keys, &host.host, lease)?;
    *host = HostRow {
        lease: lease.0,
        boot_id: clock.boot_id.clone(),
        renewed_ms: clock.now_ms,
        valid_until_ms: clock.now_ms + ms(ttl),
        host: std::mem::take(&mut host.host),
    };
    Ok(true)
}

/// Makes `host/<name>` hold `lease`, put with it (so it goes when the lease
/// does), and ends the cool-down of a host seen gone; whether it had to be
/// put.
fn keep_alive_key(
    etcd: &Etcd,
    keys: &Keys,
    host: &str,
    lease: LeaseId,
) -> Result<bool, StoreError> {
    let key = keys.host(host);
    let value = lease.0.to_string().into_bytes();
    let (held, _) = etcd.txn(
        &[Cmp::Holds(key.clone(), value.clone())],
        &[],
        &[Op::Put { key, value, lease: Some(lease) }, Op::Delete(keys.gone(host))],
    )?;
    Ok(!held)
}

impl WriteTx<'_> {
    /// Takes (or renews) this host's etcd lease for fleet network `network`
    /// and records it: `network create` checks this way that etcd answers.
    pub fn fleet_join(&self, network: NetworkId) -> Result<(), StoreError> {
        let record =
            self.network(network)?.ok_or(StoreError::NoSuchNetwork(network.0.to_string()))?;
        let fleet = fleet_of(&record)?;
        let keys = Keys::new(record.spec.name.as_str());
        let pool = self.pool(&record.validate()?, network, 0)?;
        let mut host = local::host(&self.tx, network)?;
        let etcd = super::client(&fleet)?;
        if renew_if_due(&etcd, &fleet, &keys, &mut host, &Clock::read()?)? {
            spares_in_freed(self, network, &pool)?;
            adopt(self, &etcd, &keys, &host.host, network, &pool, true)?;
        }
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
        spares_in_freed(self, network, &pool)?;
        let contact = match renew_if_due(&etcd, &fleet, &keys, &mut host, &clock) {
            // Nothing served before the list is read back.
            Ok(true) => adopt(self, &etcd, &keys, &host.host, network, &pool, true),
            other => other.map(drop),
        };
        if contact.is_err() && host != before {
            return Err(cut_off(&name, contact.err()));
        }
        if host != before {
            local::save_host(&self.tx, network, &host)?;
        }
        if !host.lease_lives(&clock) {
            return Err(cut_off(&name, contact.err()));
        }
        let owner = holder.owner_key(self, &keys, &host.host)?;
        // Once per allocation: what it adopts and then cannot claim is not
        // adopted again, round after round.
        let mut adopted = false;
        loop {
            let (ip, block) = match (next_spare(self, network, &pool)?, &contact) {
                (Some(found), _) => found,
                (None, Ok(())) if !adopted => {
                    adopted = true;
                    adopt(self, &etcd, &keys, &host.host, network, &pool, false)?;
                    continue;
                }
                (None, Ok(())) => {
                    lease_block(self, &etcd, &keys, &pool, &fleet, &host, network)?;
                    continue;
                }
                (None, Err(e)) => {
                    return Err(StoreError::Etcd(format!(
                        "network {name}: this host has no spare address left and etcd does not answer, so it cannot lease another block ({e})"
                    )));
                }
            };
            let lease = holder.lease(self, network, ip)?;
            // etcd's record of it as the endpoint's is noted here, and
            // written with the others noted at every `BACKLOG`th note,
            // in one transaction, after the commit and off the lock
            // (`PendingClaim`): the other allocations make no etcd round
            // trip at all. While etcd does not answer, the spare is this
            // host's all the same, and the notes wait.
            local::add_unrecorded(&self.tx, network, ip, &owner)?;
            // Each 16th note, not each one past 16: attaches running at once
            // would write the same records side by side. (A writer that
            // fails leaves its notes to the next 16th.)
            let noted = local::unrecorded_count(&self.tx, network)?;
            // A CNI ADD writes at once, and waits for it: its answer is the
            // container's address, which etcd then records as the
            // attachment's (DEL, GC and the owner keys go by it).
            let at_once = matches!(holder, FleetHolder::Cni { .. });
            if contact.is_err() || (noted % BACKLOG != 0 && !at_once) {
                return Ok((lease, None));
            }
            let mut claims = vec![Claim { key: keys.address(block, ip), ip, owner }];
            claims.extend(backlog(&self.tx, network, &keys, &pool, ip, true)?);
            let pending = PendingClaim { etcd, host: host.host.clone(), network, claims };
            return Ok((lease, Some(pending)));
        }
    }

    /// Forgets the notes of the records `done` wrote: etcd has them.
    pub fn fleet_recorded(&self, done: &Recorded) -> Result<(), StoreError> {
        for (ip, owner) in &done.written {
            local::recorded(&self.tx, done.network, *ip, owner)?;
        }
        Ok(())
    }

    /// Forgets `ip` as this host's: etcd records it for another host.
    pub fn fleet_forget(&self, network: NetworkId, ip: IpAddr) -> Result<(), StoreError> {
        local::forget_address(&self.tx, network, ip)?;
        let record =
            self.network(network)?.ok_or(StoreError::NoSuchNetwork(network.0.to_string()))?;
        let pool = self.pool(&record.validate()?, network, 0)?;
        if let Some(offset) = pool.offset_of(ip) {
            TxBook { conn: &self.tx }.remove_freed(pool.id(), offset)?;
        }
        Ok(())
    }
}

/// How many addresses etcd may lack the record of before an attach writes
/// them all (1 attach in 16, then, waits for one batched transaction; the
/// others make none).
const BACKLOG: usize = 16;

/// Claims written in one etcd transaction, at most: two puts each, and
/// etcd takes 128 operations per transaction (`--max-txn-ops`).
const CLAIMS_PER_TXN: usize = 32;

/// One address's record to write: its key, the address, its owner key.
struct Claim {
    key: Vec<u8>,
    ip: IpAddr,
    owner: Vec<u8>,
}

/// The noted records other than `except`'s, as claims; a note of an
/// address no endpoint holds any more is skipped, and dropped if `drop`
/// (its record stays a spare, or is taken over by the address's next
/// allocation here).
fn backlog(
    conn: &rusqlite::Connection,
    network: NetworkId,
    keys: &Keys,
    pool: &Pool,
    except: IpAddr,
    drop: bool,
) -> Result<Vec<Claim>, StoreError> {
    let mut claims = Vec::new();
    let mut book = TxBook { conn };
    for (ip, owner) in local::unrecorded(conn, network)? {
        if ip == except {
            continue;
        }
        let leased = match pool.offset_of(ip) {
            Some(offset) => book.is_leased(pool.id(), offset)?,
            None => false,
        };
        match local::block_of(conn, network, ip)? {
            Some(block) if leased => claims.push(Claim { key: keys.address(block, ip), ip, owner }),
            _ if drop => local::recorded(conn, network, ip, &owner)?,
            _ => {}
        }
    }
    Ok(claims)
}

/// The etcd side of the allocations of a host once `BACKLOG` of them are
/// noted, done after the transaction is committed so that the host's other
/// commands need not wait for etcd: the addresses' records made their
/// endpoints'.
pub struct PendingClaim {
    etcd: Etcd,
    host: String,
    network: NetworkId,
    /// This allocation's first.
    claims: Vec<Claim>,
}

/// What [`PendingClaim::record`] wrote, for [`WriteTx::fleet_recorded`],
/// and the addresses etcd records for another host.
pub struct Recorded {
    network: NetworkId,
    written: Vec<(IpAddr, Vec<u8>)>,
    pub foreign: Vec<IpAddr>,
}

impl PendingClaim {
    /// The address of this allocation.
    pub fn ip(&self) -> IpAddr {
        self.claims[0].ip
    }

    /// Writes the records: all in one etcd transaction when each is still
    /// this host's spare; else, with what that transaction read back, those
    /// still spares in a second one, and the rest one by one.
    pub fn record(&self) -> Result<Recorded, StoreError> {
        let mut done = Recorded { network: self.network, written: Vec::new(), foreign: Vec::new() };
        for chunk in self.claims.chunks(CLAIMS_PER_TXN) {
            self.record_chunk(chunk, &mut done)?;
        }
        Ok(done)
    }

    /// [`record`](Self::record) of at most `CLAIMS_PER_TXN` claims.
    fn record_chunk(&self, claims: &[Claim], done: &mut Recorded) -> Result<(), StoreError> {
        let spare = AddressRecord::spare(&self.host).bytes();
        let mut rest: Vec<&Claim> = claims.iter().collect();
        for _ in 0..2 {
            if rest.len() < 2 {
                break;
            }
            let compare: Vec<Cmp> =
                rest.iter().map(|c| Cmp::Holds(c.key.clone(), spare.clone())).collect();
            let puts: Vec<Op> = rest.iter().flat_map(|c| self.take(c)).collect();
            let gets: Vec<Op> = rest.iter().map(|c| Op::Get(c.key.clone())).collect();
            let (took, replies) = self.etcd.txn(&compare, &puts, &gets)?;
            if took {
                done.written.extend(rest.iter().map(|c| (c.ip, c.owner.clone())));
                return Ok(());
            }
            let mut still = Vec::new();
            for (i, c) in rest.into_iter().enumerate() {
                let found = range_reply(&replies, i)?.map(|kv| kv.value);
                if found.as_deref() == Some(&self.owned(c)[..]) {
                    done.written.push((c.ip, c.owner.clone()));
                } else {
                    still.push(c);
                }
            }
            rest = still;
        }
        for c in rest {
            match self.record_one(c)? {
                true => done.written.push((c.ip, c.owner.clone())),
                false => done.foreign.push(c.ip),
            }
        }
        Ok(())
    }

    fn owned(&self, c: &Claim) -> Vec<u8> {
        AddressRecord::owned(&self.host, &c.owner).bytes()
    }

    /// The puts that make `c`'s record its endpoint's, with its owner key.
    fn take(&self, c: &Claim) -> [Op; 2] {
        [
            Op::Put { key: c.key.clone(), value: self.owned(c), lease: None },
            Op::Put { key: c.owner.clone(), value: c.ip.to_string().into_bytes(), lease: None },
        ]
    }

    /// Makes `c`'s record the endpoint's: from this host's spare, or from a
    /// record in this host's name that no endpoint holds any more (the
    /// address is leased to this endpoint in the host's state, which no
    /// other endpoint of the host can be: what a killed command or a
    /// detach that did not reach etcd left). `false` when etcd records it
    /// for another host.
    fn record_one(&self, c: &Claim) -> Result<bool, StoreError> {
        let owned = self.owned(c);
        let mut take = self.take(c).to_vec();
        let spare = AddressRecord::spare(&self.host).bytes();
        let (took, replies) =
            self.etcd.txn(&[Cmp::Holds(c.key.clone(), spare)], &take, &[Op::Get(c.key.clone())])?;
        if took {
            return Ok(true);
        }
        let Some(found) = range_reply(&replies, 0)? else {
            // No record at all: create it as the endpoint's, if still absent.
            return Ok(self.etcd.txn(&[Cmp::Absent(c.key.clone())], &take, &[])?.0);
        };
        if found.value == owned {
            return Ok(true); // an earlier try of this very claim
        }
        match AddressRecord::parse(&found.value) {
            Some(r) if r.host == self.host => {
                tracing::info!(ip = %c.ip, "taking over an address left recorded in use");
                if let Some(old) = r.owner.filter(|o| o.as_bytes() != c.owner) {
                    take.push(Op::Delete(old.into_bytes()));
                }
                Ok(self.etcd.txn(&[Cmp::Holds(c.key.clone(), found.value)], &take, &[])?.0)
            }
            _ => Ok(false),
        }
    }
}

/// Writes every record etcd may lack on this host's part of `network`
/// (what `network inspect` shows is then whole); the notes stay until an
/// attach sees them written.
pub(super) fn write_unrecorded(
    store: &crate::Store,
    network: &NetworkRecord,
    fleet: &FleetSpec,
) -> Result<(), StoreError> {
    let Some(host) = local::host_if_any(store.conn(), network.id)? else { return Ok(()) };
    if local::unrecorded_count(store.conn(), network.id)? == 0 {
        return Ok(());
    }
    let valid = network.validate()?;
    let subnet = valid.subnet(0).ok_or_else(|| StoreError::corrupt("a fleet network's subnet"))?;
    let pool_id: i64 = store
        .conn()
        .prepare_cached("SELECT id FROM pools WHERE network_id = ?1 AND subnet_index = 0")
        .and_then(|mut s| s.query_row([network.id.0], |r| r.get(0)))
        .map_err(|_| StoreError::corrupt("a fleet network's pool"))?;
    let pool = Pool::new(nicslice_model::ipam::PoolId(pool_id), valid.name.clone(), subnet);
    let keys = Keys::new(network.spec.name.as_str());
    let unspecified = IpAddr::from([0u8; 4]);
    let claims = backlog(store.conn(), network.id, &keys, &pool, unspecified, false)?;
    if claims.is_empty() {
        return Ok(());
    }
    let pending = PendingClaim {
        etcd: super::client_brief(fleet)?,
        host: host.host,
        network: network.id,
        claims,
    };
    pending.record().map(drop)
}

pub(super) fn fleet_of(record: &NetworkRecord) -> Result<FleetSpec, StoreError> {
    record.spec.fleet.clone().ok_or_else(|| {
        StoreError::Etcd(format!(
            "network {} is not a fleet network (--ipam etcd)",
            record.spec.name
        ))
    })
}

/// A fleet network's pool keeps this host's spares that no endpoint uses in
/// its `freed` list, and its high-water mark past the range: the allocator
/// never walks upward (what lies there belongs to no one yet, or to other
/// hosts), and a released address goes back to the list by the ordinary
/// release. An allocation then takes the lowest spare in one indexed
/// statement, whatever the number of addresses the host holds. A pool not
/// set up so yet (a new network, or a database of schema 8) gets its list
/// from this host's addresses once.
fn spares_in_freed(tx: &WriteTx<'_>, network: NetworkId, pool: &Pool) -> Result<(), StoreError> {
    let mut book = TxBook { conn: &tx.tx };
    let past_range = pool.range_last().saturating_add(1);
    if book.high_water(pool.id())? >= past_range {
        return Ok(());
    }
    book.set_high_water(pool.id(), past_range)?;
    for (ip, _) in local::addresses(&tx.tx, network)? {
        list_spare(&mut book, pool, ip)?;
    }
    Ok(())
}

/// Puts `ip`, an address of this host, on the pool's list of spares unless
/// an endpoint uses it.
pub(super) fn list_spare(book: &mut TxBook<'_>, pool: &Pool, ip: IpAddr) -> Result<(), StoreError> {
    if let Some(offset) = pool.offset_of(ip)
        && !book.is_leased(pool.id(), offset)?
    {
        book.push_freed(pool.id(), offset)?;
    }
    Ok(())
}

/// The lowest spare of this host, and its block: an address on the list
/// that etcd still records as this host's (one it forgot since may have
/// come back to the list by a release) and no endpoint uses.
fn next_spare(
    tx: &WriteTx<'_>,
    network: NetworkId,
    pool: &Pool,
) -> Result<Option<(IpAddr, IpAddr)>, StoreError> {
    let mut book = TxBook { conn: &tx.tx };
    while let Some(offset) = book.pop_lowest_freed(pool.id())? {
        let Some(ip) = pool.ip_at(offset) else { continue };
        if book.is_leased(pool.id(), offset)? {
            continue;
        }
        if let Some(block) = local::block_of(&tx.tx, network, ip)? {
            return Ok(Some((ip, block)));
        }
    }
    Ok(None)
}

/// Reads back which addresses etcd records in this host's name (the truth;
/// the local list is its copy): adds those the list lacks (a block leased
/// by a command whose own transaction then failed or was killed) and
/// forgets those no longer recorded so (taken back by another host while
/// this one had no lease). After a new lease (`full`), reads the records
/// of every block this host ever took (`hostblock/`); when it has no spare
/// left, only of those blocks its list lacks, and adds only.
fn adopt(
    tx: &WriteTx<'_>,
    etcd: &Etcd,
    keys: &Keys,
    host: &str,
    network: NetworkId,
    pool: &Pool,
    full: bool,
) -> Result<(), StoreError> {
    let local = local::addresses(&tx.tx, network)?;
    let known: BTreeSet<IpAddr> = local.iter().map(|(ip, _)| *ip).collect();
    let known_blocks: BTreeSet<IpAddr> = local.iter().map(|(_, block)| *block).collect();
    let prefix = keys.addresses().len();
    let index = keys.host_blocks(host);
    let mut records = Vec::new();
    for block in etcd.get_keys(&index)? {
        let first = String::from_utf8_lossy(&block[index.len()..]).parse::<IpAddr>();
        // Out of spares, only the blocks the list lacks are read (those of
        // a killed command): the read stays one request as blocks add up.
        if let Ok(first) = first
            && (full || !known_blocks.contains(&first))
        {
            records.extend(etcd.get_prefix(&keys.addresses_of_block(first))?);
        }
    }
    let mut mine = BTreeSet::new();
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
        mine.insert(ip);
        if !known.contains(&ip) {
            local::add_addresses(&tx.tx, network, block, &[ip])?;
            list_spare(&mut TxBook { conn: &tx.tx }, pool, ip)?;
            adopted += 1;
        }
    }
    if adopted > 0 {
        tracing::info!(adopted, "found addresses etcd records for this host that it had lost");
    }
    if !full {
        return Ok(());
    }
    for ip in known.difference(&mine) {
        tracing::warn!(%ip, "etcd no longer records this address as this host's: forgotten");
        tx.fleet_forget(network, *ip)?;
    }
    Ok(())
}

/// Leases the first block of the subnet no host holds that has addresses
/// no one has recorded, and records those as this host's spares, in one
/// etcd transaction (raced by another host: the next block), then lists
/// them as this host's spares.
fn lease_block(
    tx: &WriteTx<'_>,
    etcd: &Etcd,
    keys: &Keys,
    pool: &Pool,
    fleet: &FleetSpec,
    host: &HostRow,
    network: NetworkId,
) -> Result<(), StoreError> {
    if let Some(first) = pool.ip_at(pool.range_first()) {
        super::geometry::agree(etcd, keys, pool.network().as_str(), first, fleet.block_size)?;
    }
    let held: BTreeSet<Vec<u8>> = etcd.get_keys(&keys.blocks())?.into_iter().collect();
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
        if free.is_empty() {
            continue;
        }
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
            let mut book = TxBook { conn: &tx.tx };
            for ip in &free {
                list_spare(&mut book, pool, *ip)?;
            }
            return Ok(());
        }
    }
    Err(StoreError::FleetFull(format!(
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
    let keys = Keys::new(network.spec.name.as_str());
    let owner = keys.cli_owner(&host.host, ep);
    let owned = AddressRecord::owned(&host.host, &owner).bytes();
    let etcd = super::client_brief(&fleet)?;
    for ip in ips {
        let Some(block) = local::block_of(store.conn(), network.id, *ip)? else { continue };
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
