//! The fleet pool (issue 14, part 2; not yet wired into a front end): one
//! address range shared by several hosts through etcd, with etcd off the
//! hot path. A host holds a lease of `ttl`, kept alive while it works, and
//! leases blocks of the range with it (`block/<first address>`, created only
//! if absent, gone when the lease expires); it hands out the addresses of its
//! blocks itself, and records each one it hands out (`addr/<address>`,
//! created only if absent, with no lease: an address in use outlives its
//! host's lease, so a block taken over skips it).
//!
//! Never a duplicate: a block belongs to one host at a time. A host cut off
//! from etcd keeps serving from its blocks only while its lease is surely
//! still alive (measured from before its last successful renewal), then
//! refuses. What is not done yet: reclaiming the addresses of a dead host
//! after a cool-down (with a probe on the wire), TLS, and the CLI and CNI
//! wiring (`network create --ipam etcd`); the host's used addresses live in
//! memory here, where the front ends' stores would keep them.

pub mod etcd;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use nicslice_model::{from_u128, to_u128};
use serde_json::json;

use crate::StoreError;
use etcd::{Etcd, LeaseId};

/// A shared range and how it is cut.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The network's name, the first part of every key.
    pub network: String,
    pub first: IpAddr,
    pub last: IpAddr,
    /// Addresses per block.
    pub block_size: u32,
    /// How long a host's blocks outlive its last renewal.
    pub ttl: Duration,
}

/// One host's share of the pool.
pub struct FleetHost {
    etcd: Etcd,
    conf: FleetConfig,
    host: String,
    lease: Option<(LeaseId, Instant)>,
    /// First offsets (from `conf.first`) of the blocks held.
    blocks: Vec<u128>,
    /// Offsets not to hand out: handed out by this host, or recorded in
    /// etcd as in use when a block was taken.
    used: BTreeSet<u128>,
}

fn cut_off(e: &StoreError) -> StoreError {
    StoreError::Etcd(format!(
        "cut off from etcd and this host's blocks may have expired: refusing to allocate rather than risk a duplicate address ({e})"
    ))
}

impl FleetHost {
    /// Host `host` (its name in the records) of the pool `conf` on `etcd`.
    pub fn new(etcd: Etcd, conf: FleetConfig, host: &str) -> FleetHost {
        FleetHost {
            etcd,
            conf,
            host: host.into(),
            lease: None,
            blocks: Vec::new(),
            used: BTreeSet::new(),
        }
    }

    fn key(&self, kind: &str, offset: u128) -> Result<Vec<u8>, StoreError> {
        let ip = self.ip(offset)?;
        Ok(format!("/nicslice/fleet/{}/{kind}/{ip}", self.conf.network).into_bytes())
    }

    fn ip(&self, offset: u128) -> Result<IpAddr, StoreError> {
        from_u128(self.conf.first, to_u128(self.conf.first) + offset)
            .ok_or_else(|| StoreError::Etcd(format!("offset {offset} is outside the range")))
    }

    fn size(&self) -> u128 {
        to_u128(self.conf.last).saturating_sub(to_u128(self.conf.first)) + 1
    }

    /// Renews this host's lease (or takes one). The blocks count as held
    /// until the time the renewal was asked plus what etcd said is left:
    /// never later than etcd itself lets them go.
    pub fn renew(&mut self) -> Result<(), StoreError> {
        let asked = Instant::now();
        match self.lease {
            Some((id, _)) => match self.etcd.keep_alive(id)? {
                Some(left) => self.lease = Some((id, asked + left)),
                None => {
                    // Expired: its blocks are gone, perhaps to another host.
                    self.lease = None;
                    self.blocks.clear();
                    return Err(StoreError::Etcd(
                        "this host's lease expired: its blocks are released".into(),
                    ));
                }
            },
            None => {
                let id = self.etcd.grant(self.conf.ttl)?;
                self.lease = Some((id, asked + self.conf.ttl));
            }
        }
        Ok(())
    }

    /// Whether the blocks held are surely still this host's.
    fn holds_blocks(&self) -> bool {
        self.lease.is_some_and(|(_, until)| Instant::now() < until)
    }

    /// The blocks held, as (first, last) addresses.
    pub fn blocks(&self) -> Result<Vec<(IpAddr, IpAddr)>, StoreError> {
        let size = u128::from(self.conf.block_size);
        let top = self.size() - 1;
        self.blocks.iter().map(|&b| Ok((self.ip(b)?, self.ip((b + size - 1).min(top))?))).collect()
    }

    /// An address for `owner`: renews the lease, then takes a free address
    /// of a block held, leasing a new block when none is left; records it
    /// in etcd when etcd answers.
    pub fn allocate(&mut self, owner: &str) -> Result<IpAddr, StoreError> {
        let mut renewed = self.renew();
        if renewed.is_err() && self.lease.is_none() {
            // The lease had expired, etcd answering: a new one (the old
            // blocks are gone, the addresses recorded stay recorded).
            renewed = self.renew();
        }
        if !self.holds_blocks() {
            self.blocks.clear();
            return Err(match renewed {
                Err(e) => cut_off(&e),
                Ok(()) => StoreError::Etcd("no lease".into()),
            });
        }
        loop {
            let offset = match self.free_in_blocks() {
                Some(offset) => offset,
                // A new block needs etcd.
                None => match &renewed {
                    Ok(()) => self.lease_block()?,
                    Err(e) => return Err(cut_off(e)),
                },
            };
            self.used.insert(offset);
            if renewed.is_err() {
                // The block is ours until the lease ends: the record can wait.
                return self.ip(offset);
            }
            let record = json!({ "host": self.host, "owner": owner }).to_string();
            if self.etcd.create(&self.key("addr", offset)?, record.as_bytes(), None)? {
                return self.ip(offset);
            }
            // Recorded by someone already (a previous holder's endpoint): skip it.
        }
    }

    /// Gives `ip` of `owner` back: free in its block again, its record gone.
    pub fn release(&mut self, ip: IpAddr, owner: &str) -> Result<(), StoreError> {
        let offset = to_u128(ip).wrapping_sub(to_u128(self.conf.first));
        self.used.remove(&offset);
        let record = json!({ "host": self.host, "owner": owner }).to_string();
        self.etcd.delete_if(&self.key("addr", offset)?, record.as_bytes()).map(drop)
    }

    fn free_in_blocks(&self) -> Option<u128> {
        let size = u128::from(self.conf.block_size);
        let top = self.size();
        self.blocks.iter().flat_map(|&b| b..(b + size).min(top)).find(|o| !self.used.contains(o))
    }

    /// Leases the first block no host holds; returns its first free offset.
    fn lease_block(&mut self) -> Result<u128, StoreError> {
        let (lease, _) = self.lease.ok_or_else(|| StoreError::Etcd("no lease".into()))?;
        let prefix = format!("/nicslice/fleet/{}/", self.conf.network);
        let taken: BTreeSet<Vec<u8>> = self
            .etcd
            .get_prefix(format!("{prefix}block/").as_bytes())?
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        let size = u128::from(self.conf.block_size.max(1));
        let mut first = 0;
        while first < self.size() {
            let key = self.key("block", first)?;
            if !taken.contains(&key) && self.etcd.create(&key, self.host.as_bytes(), Some(lease))? {
                // Addresses a previous holder's endpoints still use stay theirs.
                for kv in self.etcd.get_prefix(format!("{prefix}addr/").as_bytes())? {
                    let ip = String::from_utf8_lossy(&kv.key[prefix.len() + 5..]).parse();
                    if let Ok(ip) = ip {
                        self.used.insert(to_u128(ip).wrapping_sub(to_u128(self.conf.first)));
                    }
                }
                self.blocks.push(first);
                if let Some(offset) = self.free_in_blocks() {
                    return Ok(offset);
                }
            }
            first += size;
        }
        Err(StoreError::Etcd(format!(
            "no block of {}..{} is free: every one is held by a host",
            self.conf.first, self.conf.last
        )))
    }
}
