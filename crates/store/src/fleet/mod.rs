//! The fleet pool (`--ipam etcd`, issue 14): one subnet shared by several
//! hosts through etcd, with etcd off the hot path.
//!
//! A host (one state database) holds an etcd lease of the network's TTL,
//! renewed by the commands that allocate (at most every third of the TTL).
//! With it the host leases blocks of the subnet (`block/<first address>`,
//! created only if absent, gone when the lease expires) and, in the same
//! etcd transaction, records every address of the block no one has recorded
//! as its own spare (`addr/<block>/<address>`, no lease; and
//! `hostblock/<host>/<block>` says where its records are). It then hands out
//! its spares itself, in its own SQLite transaction. etcd is to record
//! each address handed out as its holder's (compare-and-swap from the spare
//! value) with an owner key naming the holder (`owner/cli/<host>/<namespace
//! identity>/<ifname>`; a CNI attachment's `owner/cni/<host>/<container
//! ID>/<ifname>`, see `cni`), and each address released as this host's
//! spare again (compare-and-swap from that holder's value, the owner key
//! deleted). Those writes are batched, a CLI attach's and a CNI ADD's alike:
//! an allocation notes its record in its SQLite transaction
//! (`fleet_unrecorded`), a release (detach, CNI DEL and GC) its give-back
//! (`fleet_unreturned`), and the command that brings this host's notes to a
//! multiple of 16 writes them all after its commit: the give-backs in one etcd transaction, then the records in another (an
//! address released and handed out again before the batch thus ends with its
//! new holder's record, never the old one's). An attach writes them on a
//! thread beside its kernel work; `network inspect` writes them too, before
//! it reads. An allocation whose host holds a spare thus makes no etcd round
//! trip (1 in 16 makes one), nor does a release, and what an allocation
//! looks up locally is one indexed statement whatever the pool's size (the
//! spares are the pool's `freed` list; those outside the range as now
//! configured, after a CNI configuration narrowed it, stay there unused).
//!
//! Never a duplicate, whatever the batch has not written yet: an address
//! is recorded in etcd for one host at a time, and a host hands out only
//! addresses etcd records as its own, each recorded so (with its block, in
//! one etcd transaction) before the host lists it as a spare, so before it
//! is used. No other host takes one while this host's lease lives: a block
//! lives with the lease, and a dead host's records are taken back only past
//! the lease and a cool-down, after a probe on the wire (`reclaim`). A host
//! serves its spares only while its lease surely lives (measured from
//! before its last renewal): cut off from etcd, it keeps serving them that
//! long, then refuses; and a host that has to take a new lease reads back
//! which addresses etcd still records as its own before it serves. So a
//! record that still says "spare" while the address is in use here, or
//! names a holder that released it, misleads no host: it is this host's
//! either way, and only this host hands it out. A batch that finds an
//! address recorded for another host (which only a lost lease explains)
//! forgets it here. A command killed between the etcd record and its
//! SQLite commit leaves a record in this host's name that no local lease
//! holds: the next allocation that meets it takes it over.
//!
//! A host's lease also keeps `host/<name>` alive. Once it is gone, the
//! host's addresses stay in its name for the network's cool-down, then a
//! host whose pool ran out probes them on the wire and takes back those no
//! one answers ([`reclaim`]); a host that gets a new lease first reads back
//! which addresses etcd still records in its name.

mod allocate;
mod cni;
pub mod etcd;
mod geometry;
mod holder;
mod local;
mod reclaim;
mod tls;
mod view;

use std::net::IpAddr;
use std::time::Duration;

use nicslice_model::FleetSpec;
use serde::{Deserialize, Serialize};

use crate::StoreError;
pub use view::{FleetAnswered, FleetBlock, FleetHostView, FleetView, view};

/// Each request to one etcd member gives up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);
/// A call tries the members again for this long: a leader election takes
/// about a second, several on a busy machine (the tests kill the leader
/// under 64 concurrent attaches).
const PATIENCE: Duration = Duration::from_secs(5);

/// A client of the network's etcd cluster.
pub(crate) fn client(fleet: &FleetSpec) -> Result<etcd::Etcd, StoreError> {
    etcd::Etcd::with_tls(&fleet.endpoints, &fleet.tls, REQUEST_TIMEOUT, PATIENCE)
}

/// A client for what can wait or be done later (a detach's record, which
/// a later allocation takes over; `network inspect`): one round over the
/// members and a second of retries, not an election's worth.
pub(crate) fn client_brief(fleet: &FleetSpec) -> Result<etcd::Etcd, StoreError> {
    etcd::Etcd::with_tls(&fleet.endpoints, &fleet.tls, REQUEST_TIMEOUT, Duration::from_secs(1))
}

/// A client that waits for etcd at most a quarter of `lease_left`: a host
/// cut off spends a little of its lease finding out, then serves from its
/// spares while the lease lives.
pub(crate) fn client_within(
    fleet: &FleetSpec,
    lease_left: Duration,
) -> Result<etcd::Etcd, StoreError> {
    let patience = PATIENCE.min(lease_left / 4);
    etcd::Etcd::with_tls(
        &fleet.endpoints,
        &fleet.tls,
        REQUEST_TIMEOUT.min(patience.max(Duration::from_millis(200))),
        patience,
    )
}

/// The network's keys in etcd.
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(network: &str) -> Keys {
        Keys { prefix: format!("/nicslice/fleet/{network}/") }
    }

    /// How the pool is cut (`geometry`).
    pub fn geometry(&self) -> Vec<u8> {
        format!("{}geometry", self.prefix).into_bytes()
    }

    pub fn blocks(&self) -> Vec<u8> {
        format!("{}block/", self.prefix).into_bytes()
    }

    pub fn block(&self, first: IpAddr) -> Vec<u8> {
        format!("{}block/{first}", self.prefix).into_bytes()
    }

    pub fn addresses(&self) -> Vec<u8> {
        format!("{}addr/", self.prefix).into_bytes()
    }

    /// The blocks whose addresses `host` recorded as its own (an index that
    /// outlives the blocks' leases: where to look for the host's records).
    pub fn host_blocks(&self, host: &str) -> Vec<u8> {
        format!("{}hostblock/{host}/", self.prefix).into_bytes()
    }

    pub fn host_block(&self, host: &str, first: IpAddr) -> Vec<u8> {
        format!("{}hostblock/{host}/{first}", self.prefix).into_bytes()
    }

    /// Who is alive: `host/<name>`, put with the host's lease (its value).
    pub fn hosts(&self) -> Vec<u8> {
        format!("{}host/", self.prefix).into_bytes()
    }

    pub fn host(&self, host: &str) -> Vec<u8> {
        format!("{}host/{host}", self.prefix).into_bytes()
    }

    /// Since when a host with records has been seen without a lease
    /// (`gone/<name>`, a [`GoneRecord`]): its cool-down starts there.
    pub fn gones(&self) -> Vec<u8> {
        format!("{}gone/", self.prefix).into_bytes()
    }

    pub fn gone(&self, host: &str) -> Vec<u8> {
        format!("{}gone/{host}", self.prefix).into_bytes()
    }

    /// A dead host's address someone answered on the wire (`heard/<ip>`, a
    /// [`HeardRecord`]): it stays in that host's name, reported.
    pub fn heards(&self) -> Vec<u8> {
        format!("{}heard/", self.prefix).into_bytes()
    }

    pub fn heard(&self, ip: IpAddr) -> Vec<u8> {
        format!("{}heard/{ip}", self.prefix).into_bytes()
    }

    /// The addresses recorded in the block that starts at `first`.
    pub fn addresses_of_block(&self, first: IpAddr) -> Vec<u8> {
        format!("{}addr/{first}/", self.prefix).into_bytes()
    }

    pub fn address(&self, block: IpAddr, ip: IpAddr) -> Vec<u8> {
        format!("{}addr/{block}/{ip}", self.prefix).into_bytes()
    }

    /// The owner key of a CLI endpoint: its host, the namespace's identity
    /// (device, inode, cookie) and the interface's name.
    pub fn cli_owner(&self, host: &str, ep: &crate::EndpointRecord) -> Vec<u8> {
        format!(
            "{}owner/cli/{host}/{}:{}:{}/{}",
            self.prefix,
            ep.netns_id.dev,
            ep.netns_id.ino,
            ep.netns_cookie.unwrap_or(0),
            ep.ifname
        )
        .into_bytes()
    }

    /// The owner key of a CNI attachment: its host, container ID and
    /// interface name (what the runtime's DEL and GC name it by).
    pub fn cni_owner(&self, host: &str, container_id: &str, ifname: &str) -> Vec<u8> {
        format!("{}owner/cni/{host}/{container_id}/{ifname}", self.prefix).into_bytes()
    }
}

/// What `addr/...` holds: the host whose address it is, and the owner key
/// of the endpoint using it (none: a spare). Serialized the same way every
/// time, so a transaction can compare it byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AddressRecord {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl AddressRecord {
    pub fn spare(host: &str) -> AddressRecord {
        AddressRecord { host: host.into(), owner: None }
    }

    pub fn owned(host: &str, owner: &[u8]) -> AddressRecord {
        AddressRecord { host: host.into(), owner: Some(String::from_utf8_lossy(owner).into()) }
    }

    pub fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn parse(bytes: &[u8]) -> Option<AddressRecord> {
        serde_json::from_slice(bytes).ok()
    }
}

/// What `block/...` holds: its holder, and since when (seconds since the
/// Unix epoch, the holder's clock).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BlockRecord {
    pub host: String,
    pub taken_at: i64,
}

/// What `gone/...` holds: when a host holding records was first seen
/// without a lease (seconds since the Unix epoch, the noticing host's clock).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GoneRecord {
    pub since: i64,
}

/// What `heard/...` holds: who answered a dead host's address, and when
/// (seconds since the Unix epoch).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HeardRecord {
    pub host: String,
    pub mac: String,
    pub at: i64,
}

pub use allocate::{Departure, PendingClaim, Recorded, departure};
pub use cni::CniFleetHold;
pub use holder::FleetHolder;
pub use reclaim::{Reclaim, reclaimable};
