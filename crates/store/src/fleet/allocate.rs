//! Allocation and release on a fleet network (see the module above): the
//! lease renewal, the leasing of a block with its spares, the claim of a
//! spare for an endpoint, and its return.

use std::collections::{BTreeMap, BTreeSet};
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
        let record =
            self.network(network)?.ok_or(StoreError::NoSuchNetwork(network.0.to_string()))?;
        self.fleet_allocate_in(&record, holder.into())
    }

    /// [`fleet_allocate`](Self::fleet_allocate) on `record`, read already
    /// in this transaction.
    pub fn fleet_allocate_in(
        &self,
        record: &NetworkRecord,
        holder: FleetHolder<'_>,
    ) -> Result<(LeaseRecord, Option<PendingClaim>), StoreError> {
        let network = record.id;
        let fleet = fleet_of(record)?;
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
            let lease = holder.lease(self, network, &pool, ip)?;
            // etcd's record of it as the holder's is noted here, and
            // written with the others noted at every `BACKLOG`th note,
            // in one transaction, after the commit and off the lock
            // (`PendingClaim`): the other allocations make no etcd round
            // trip at all, a CNI ADD's as a CLI attach's. While etcd does
            // not answer, the spare is this host's all the same, and the
            // notes wait.
            local::add_unrecorded(&self.tx, network, ip, &owner)?;
            let noted = local::note_count(&self.tx, network)?;
            if contact.is_err() || !noted.is_multiple_of(BACKLOG) {
                return Ok((lease, None));
            }
            let mut claims = vec![Claim { key: keys.address(block, ip), ip, owner }];
            let (more, give_backs) = backlog(&self.tx, network, &keys, &pool, ip, true)?;
            claims.extend(more);
            let host = host.host.clone();
            let pending = PendingClaim { etcd, host, network, claims, give_backs };
            return Ok((lease, Some(pending)));
        }
    }

    /// Forgets the notes of the records `done` wrote or gave back: etcd
    /// has them.
    pub fn fleet_recorded(&self, done: &Recorded) -> Result<(), StoreError> {
        for (ip, owner) in &done.written {
            local::recorded(&self.tx, done.network, *ip, owner)?;
        }
        for (ip, owner) in &done.returned {
            local::returned(&self.tx, done.network, *ip, owner)?;
        }
        Ok(())
    }

    /// Notes, in this transaction, that etcd's records of `ips`, released
    /// by CLI endpoint `ep` of fleet network `network`, go back to this
    /// host's spares with the next batch (no etcd round trip now); whether
    /// this made the `BACKLOG`th note, when [`fleet_batch`](Self::fleet_batch)
    /// is due once committed. Nothing for another network.
    pub fn fleet_release(
        &self,
        network: &NetworkRecord,
        ep: &EndpointRecord,
        ips: &[IpAddr],
    ) -> Result<bool, StoreError> {
        if network.spec.fleet.is_none() {
            return Ok(false);
        }
        let Some(host) = local::host_if_any(&self.tx, network.id)? else { return Ok(false) };
        let owner = Keys::new(network.spec.name.as_str()).cli_owner(&host.host, ep);
        self.fleet_note_release(network.id, &owner, ips)
    }

    /// [`fleet_release`](Self::fleet_release) of `ips` by the holder named
    /// `owner` in etcd. The note of a record not written yet goes (a write
    /// in flight, or done by a command killed before it forgot the note,
    /// is given back all the same: the give-back compares the record with
    /// `owner`'s, so it is harmless when etcd never had it).
    pub(super) fn fleet_note_release(
        &self,
        network: NetworkId,
        owner: &[u8],
        ips: &[IpAddr],
    ) -> Result<bool, StoreError> {
        let mut due = false;
        for ip in ips {
            if local::block_of(&self.tx, network, *ip)?.is_none() {
                continue;
            }
            // A note of its record that goes makes no new note: the count
            // did not grow, and its multiple of `BACKLOG`, if it is one,
            // was due already.
            let dropped = local::recorded(&self.tx, network, *ip, owner)?;
            if local::add_unreturned(&self.tx, network, *ip, owner)? && !dropped {
                due |= local::note_count(&self.tx, network)?.is_multiple_of(BACKLOG);
            }
        }
        Ok(due)
    }

    /// Every note of this host on fleet network `network`, as the batch to
    /// write once this transaction is committed (none: nothing noted, or
    /// not a fleet network).
    pub fn fleet_batch(&self, network: NetworkId) -> Result<Option<PendingClaim>, StoreError> {
        let Some(record) = self.network(network)? else { return Ok(None) };
        let Ok(fleet) = fleet_of(&record) else { return Ok(None) };
        let Some(host) = local::host_if_any(&self.tx, network)? else { return Ok(None) };
        let pool = self.pool(&record.validate()?, network, 0)?;
        let keys = Keys::new(record.spec.name.as_str());
        let (claims, give_backs) = backlog(&self.tx, network, &keys, &pool, None, true)?;
        if claims.is_empty() && give_backs.is_empty() {
            return Ok(None);
        }
        let etcd = super::client_brief(&fleet)?;
        Ok(Some(PendingClaim { etcd, host: host.host, network, claims, give_backs }))
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

/// Every how many notes (a record to write, at an allocation; one to give
/// back, at a release) the command writes them all (1 in 16, then, waits
/// for one batched transaction, two when it gives back too; the others make
/// none). When the notes number a multiple of 16, not whenever they are 16
/// or more: allocations running at once would write the same records side
/// by side. (A writer that fails leaves its notes to the next multiple.)
/// Each command adds one note at most (a release whose record was never
/// written trades its note for a give-back), so the count meets every
/// multiple on its way up.
const BACKLOG: u64 = 16;

/// Claims written in one etcd transaction, at most: two puts each, and
/// etcd takes 128 operations per transaction (`--max-txn-ops`).
const CLAIMS_PER_TXN: usize = 32;

/// One address's record to write: its key, the address, its owner key.
struct Claim {
    key: Vec<u8>,
    ip: IpAddr,
    owner: Vec<u8>,
}

/// The noted records other than `except`'s, as claims, and the noted
/// give-backs; a note of an address no holder has any more is skipped, and
/// dropped if `drop` (its record stays a spare, or is taken over by the
/// address's next allocation here), as is a give-back of an address etcd
/// no longer records as this host's.
fn backlog(
    conn: &rusqlite::Connection,
    network: NetworkId,
    keys: &Keys,
    pool: &Pool,
    except: impl Into<Option<IpAddr>>,
    drop: bool,
) -> Result<(Vec<Claim>, Vec<Claim>), StoreError> {
    let except = except.into();
    let mut give_backs: Vec<Claim> = Vec::new();
    for (ip, owner) in local::unreturned(conn, network)? {
        match local::block_of(conn, network, ip)? {
            Some(block) => give_backs.push(Claim { key: keys.address(block, ip), ip, owner }),
            None if drop => {
                local::returned(conn, network, ip, &owner)?;
            }
            None => {}
        }
    }
    let mut claims = Vec::new();
    let mut book = TxBook { conn };
    for (ip, owner) in local::unrecorded(conn, network)? {
        if Some(ip) == except {
            continue;
        }
        let leased = match pool.offset_of(ip) {
            Some(offset) => book.is_leased(pool.id(), offset)?,
            None => false,
        };
        match local::block_of(conn, network, ip)? {
            Some(block) if leased => claims.push(Claim { key: keys.address(block, ip), ip, owner }),
            _ if drop => {
                local::recorded(conn, network, ip, &owner)?;
            }
            _ => {}
        }
    }
    Ok((claims, give_backs))
}

/// The etcd side of the allocations and releases of a host once `BACKLOG`
/// of them are noted, done after the transaction is committed so that the
/// host's other commands need not wait for etcd: the released addresses'
/// records back to spares, then the allocated ones' made their holders'.
pub struct PendingClaim {
    etcd: Etcd,
    host: String,
    network: NetworkId,
    /// An allocation's first.
    claims: Vec<Claim>,
    /// Each with its former owner's key.
    give_backs: Vec<Claim>,
}

/// What [`PendingClaim::record`] wrote, for [`WriteTx::fleet_recorded`],
/// and the addresses etcd records for another host.
pub struct Recorded {
    network: NetworkId,
    written: Vec<(IpAddr, Vec<u8>)>,
    returned: Vec<(IpAddr, Vec<u8>)>,
    pub foreign: Vec<IpAddr>,
}

impl PendingClaim {
    /// The address of this allocation (of an allocation's batch).
    pub fn ip(&self) -> Option<IpAddr> {
        self.claims.first().map(|c| c.ip)
    }

    /// Gives the released addresses' records back, then writes the
    /// allocated ones': all in one etcd transaction each when etcd holds
    /// what the notes expect; else, with what that transaction read back,
    /// those still so in a second one, and (records to write) the rest one
    /// by one. Giving back first, an address released and allocated again
    /// ends with its new holder's record.
    pub fn record(&self) -> Result<Recorded, StoreError> {
        let mut done = Recorded {
            network: self.network,
            written: Vec::new(),
            returned: Vec::new(),
            foreign: Vec::new(),
        };
        let give_backs = self.one_give_back_per_address(&mut done)?;
        for chunk in give_backs.chunks(CLAIMS_PER_TXN) {
            self.give_back_chunk(chunk, &mut done)?;
        }
        for chunk in self.claims.chunks(CLAIMS_PER_TXN) {
            self.record_chunk(chunk, &mut done)?;
        }
        Ok(done)
    }

    /// The give-backs, one per address: of several (an address handed out
    /// and released more than once since the last batch; its record names
    /// one holder at most), the one whose holder etcd's record names, read
    /// in one transaction; the others need nothing (their records were
    /// never written, or given back already).
    fn one_give_back_per_address(&self, done: &mut Recorded) -> Result<Vec<&Claim>, StoreError> {
        let mut by_ip: BTreeMap<IpAddr, Vec<&Claim>> = BTreeMap::new();
        for g in &self.give_backs {
            by_ip.entry(g.ip).or_default().push(g);
        }
        let (mut single, several): (Vec<_>, Vec<_>) =
            by_ip.into_values().partition(|g| g.len() == 1);
        let mut out: Vec<&Claim> = single.iter_mut().filter_map(|g| g.pop()).collect();
        for chunk in several.chunks(CLAIMS_PER_TXN) {
            let gets: Vec<Op> = chunk.iter().map(|gs| Op::Get(gs[0].key.clone())).collect();
            let (_, replies) = self.etcd.txn(&[], &gets, &[])?;
            for (i, gs) in chunk.iter().enumerate() {
                let found = range_reply(&replies, i)?.map(|kv| kv.value);
                for g in gs {
                    match found.as_deref() == Some(&self.owned(g)[..]) {
                        true => out.push(g),
                        false => done.returned.push((g.ip, g.owner.clone())),
                    }
                }
            }
        }
        Ok(out)
    }

    /// Turns the records of `gives` that still name their former owner
    /// back into spares, deleting the owner keys; those that name no one
    /// of them need nothing (never written, or taken over since). Raced
    /// twice, a give-back waits for the next batch.
    fn give_back_chunk(&self, gives: &[&Claim], done: &mut Recorded) -> Result<(), StoreError> {
        let spare = AddressRecord::spare(&self.host).bytes();
        let mut rest: Vec<&Claim> = gives.to_vec();
        for _ in 0..2 {
            if rest.is_empty() {
                break;
            }
            let compare: Vec<Cmp> =
                rest.iter().map(|g| Cmp::Holds(g.key.clone(), self.owned(g))).collect();
            let puts: Vec<Op> = rest
                .iter()
                .flat_map(|g| {
                    [
                        Op::Put { key: g.key.clone(), value: spare.clone(), lease: None },
                        Op::Delete(g.owner.clone()),
                    ]
                })
                .collect();
            let gets: Vec<Op> = rest.iter().map(|g| Op::Get(g.key.clone())).collect();
            let (took, replies) = self.etcd.txn(&compare, &puts, &gets)?;
            if took {
                done.returned.extend(rest.iter().map(|g| (g.ip, g.owner.clone())));
                return Ok(());
            }
            let mut still = Vec::new();
            for (i, g) in rest.into_iter().enumerate() {
                let found = range_reply(&replies, i)?.map(|kv| kv.value);
                if found.as_deref() == Some(&self.owned(g)[..]) {
                    still.push(g);
                } else {
                    done.returned.push((g.ip, g.owner.clone()));
                }
            }
            rest = still;
        }
        Ok(())
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

/// Writes every record etcd may lack on this host's part of `network`,
/// and gives back those released (what `network inspect` shows is then
/// whole), then forgets the notes written.
pub(super) fn write_unrecorded(
    store: &mut crate::Store,
    network: &NetworkRecord,
) -> Result<(), StoreError> {
    if !local::any_note(store.conn(), network.id)? {
        return Ok(());
    }
    let pending = {
        let tx = store.write()?;
        let pending = tx.fleet_batch(network.id)?;
        tx.commit()?;
        pending
    };
    let Some(pending) = pending else { return Ok(()) };
    let done = pending.record()?;
    let tx = store.write()?;
    tx.fleet_recorded(&done)?;
    tx.commit()
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

/// The lowest spare of this host in the pool's range, and its block: an
/// address on the list that etcd still records as this host's (one it
/// forgot since may have come back to the list by a release) and no holder
/// uses. A spare outside the range as now configured, or reserved by it (a
/// CNI configuration's `rangeStart`/`rangeEnd` or gateway changed since the
/// block was leased), stays on the list, this host's, for a configuration
/// that includes it again.
fn next_spare(
    tx: &WriteTx<'_>,
    network: NetworkId,
    pool: &Pool,
) -> Result<Option<(IpAddr, IpAddr)>, StoreError> {
    let mut book = TxBook { conn: &tx.tx };
    let mut from = pool.range_first();
    while let Some(offset) = book.lowest_freed_in(pool.id(), from, pool.range_last())? {
        from = offset + 1;
        let Some(ip) = pool.ip_at(offset) else { continue };
        if !pool.is_allocatable(ip) {
            continue;
        }
        book.remove_freed(pool.id(), offset)?;
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
