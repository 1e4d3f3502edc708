//! How a fleet pool is cut, recorded in etcd (`geometry`) by the first host
//! that leases a block: the first address of its range and the block size.
//! An address's record is keyed by its block (`addr/<block>/<address>`), so
//! two hosts that cut the range differently (another `--etcd-block`,
//! `--ip-range` or CNI `rangeStart`, or a CLI network and a CNI network of
//! one name) would key one address twice and could both hand it out: a host
//! whose cut differs is refused before it leases a block. The record is
//! replaced only when the pool holds no address record at all (every host
//! left it).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Keys;
use super::etcd::{Cmp, Etcd, Op};
use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Geometry {
    first: IpAddr,
    block_size: u32,
}

/// Checks that `network`'s pool in etcd is cut from `first` in blocks of
/// `block_size`, recording that cut if no host did yet.
pub(super) fn agree(
    etcd: &Etcd,
    keys: &Keys,
    network: &str,
    first: IpAddr,
    block_size: u32,
) -> Result<(), StoreError> {
    let mine = Geometry { first, block_size };
    let bytes = serde_json::to_vec(&mine).unwrap_or_default();
    let key = keys.geometry();
    if etcd.create(&key, &bytes, None)? {
        return Ok(());
    }
    let Some(found) = etcd.get(&key)? else {
        return etcd.create(&key, &bytes, None).map(drop);
    };
    let theirs: Option<Geometry> = serde_json::from_slice(&found).ok();
    if theirs.as_ref() == Some(&mine) {
        return Ok(());
    }
    // A pool every host left may be cut anew.
    if etcd.get_prefix(&keys.addresses())?.is_empty()
        && etcd
            .txn(
                &[Cmp::Holds(key.clone(), found)],
                &[Op::Put { key, value: bytes, lease: None }],
                &[],
            )?
            .0
    {
        return Ok(());
    }
    let theirs = theirs.map_or("in a way this nicslice cannot read".to_string(), |g| {
        format!("in blocks of {} from {}", g.block_size, g.first)
    });
    Err(StoreError::Model(nicslice_model::ModelError::InvalidNetwork {
        network: network.to_string(),
        reason: format!(
            "its pool in etcd is cut {theirs}, and this host's configuration cuts it in blocks of {block_size} from {first}; give every host the same subnet, range and block size (or use another network name)"
        ),
    }))
}
