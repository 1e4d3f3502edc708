//! Leasing from host-local style range sets (nicslice-ipam's configuration):
//! one address per range set, through the model's allocator
//! (`nicslice_model::ipam`) over the CNI lease book, in the caller's write
//! transaction.
//! A host-local range's window (`rangeStart`..`rangeEnd`, any two addresses)
//! is laid over the model's subnet-wide pool by a `Window` book: the walk
//! starts at the window, and the first step past its end stops the walk
//! (the mark is parked past the window, then the allocator is asked once more
//! and goes straight to released addresses). Cost stays flat as leases grow,
//! and a huge IPv6 subnet is never walked.

use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_model::ipam::{self, AddressRange, LeaseBook, Pool, PoolId};
use nicslice_model::{
    Driver, IfName, MacvlanMode, ModelError, NetworkName, NetworkSpec, SubnetSpec, to_u128,
};
use nicslice_store::StoreError;
use nicslice_store::cni_ipam::{CniIpamTx, CniOwner};

use crate::error::{EngineError, Result};

/// One address leased from a range, with its range's gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeLease {
    pub address: IpNet,
    pub gateway: IpAddr,
}

/// A book that only offers the offsets `first..=last`.
struct Window<B> {
    inner: B,
    first: u128,
    last: u128,
    /// Set when the walk stepped past `last` (and was stopped).
    walked_out: bool,
}

/// The high-water mark a window reports once its walk is done: above any
/// pool's last offset, so the allocator goes straight to released addresses.
const WALK_DONE: u128 = u128::MAX;

impl<B: LeaseBook> LeaseBook for Window<B> {
    type Owner = B::Owner;
    type Error = B::Error;

    fn is_leased(&mut self, pool: PoolId, offset: u128) -> Result<bool, B::Error> {
        if offset > self.last {
            // Park the mark past the window and stop this walk; the caller asks again.
            self.inner.set_high_water(pool, self.last.saturating_add(1))?;
            self.walked_out = true;
            return Err(ModelError::Invalid("walked past the range".into()).into());
        }
        if offset < self.first {
            return Ok(true);
        }
        self.inner.is_leased(pool, offset)
    }
    fn high_water(&mut self, pool: PoolId) -> Result<u128, B::Error> {
        // Start the walk at the window, not at the subnet's first address.
        let mark = self.inner.high_water(pool)?;
        Ok(if mark > self.last { WALK_DONE } else { mark.max(self.first) })
    }
    fn set_high_water(&mut self, pool: PoolId, offset: u128) -> Result<(), B::Error> {
        self.inner.set_high_water(pool, offset)
    }
    fn pop_lowest_freed(&mut self, pool: PoolId) -> Result<Option<u128>, B::Error> {
        self.inner.pop_lowest_freed(pool)
    }
    fn remove_freed(&mut self, pool: PoolId, offset: u128) -> Result<(), B::Error> {
        self.inner.remove_freed(pool, offset)
    }
    fn push_freed(&mut self, pool: PoolId, offset: u128) -> Result<(), B::Error> {
        self.inner.push_freed(pool, offset)
    }
    fn insert_lease(
        &mut self,
        pool: PoolId,
        offset: u128,
        owner: B::Owner,
    ) -> Result<(), B::Error> {
        self.inner.insert_lease(pool, offset, owner)
    }
    fn remove_lease(&mut self, pool: PoolId, offset: u128) -> Result<bool, B::Error> {
        self.inner.remove_lease(pool, offset)
    }
}

/// The model's pool for `range` (its subnet and gateway) under store id `id`.
fn model_pool(network: &str, range: &AddressRange, id: PoolId) -> Result<Pool> {
    let name = NetworkName::new(network).or_else(|_| NetworkName::new("cni"))?;
    let parent = IfName::new("cni")?;
    let mut spec = NetworkSpec::new(name.clone(), Driver::Macvlan, parent, MacvlanMode::Bridge);
    let mut subnet = SubnetSpec::new(range.subnet);
    subnet.gateway = Some(range.gateway);
    spec.subnets.push(subnet);
    let valid = spec.validate()?;
    let subnet = valid
        .subnet(0)
        .ok_or_else(|| EngineError::Invalid(format!("range {range} has no subnet")))?;
    Ok(Pool::new(id, name, subnet))
}

fn allocate_in(
    tx: &mut CniIpamTx<'_>,
    network: &str,
    range: &AddressRange,
    owner: &CniOwner,
    ip: Option<IpAddr>,
) -> Result<IpAddr, StoreError> {
    let id = tx.pool(network, range.subnet, &range.key())?;
    let pool = model_pool(network, range, id)
        .map_err(|e| StoreError::Model(ModelError::Invalid(e.to_string())))?;
    let base = to_u128(range.subnet.network());
    let mut book = Window {
        inner: tx.book(),
        first: to_u128(range.first) - base,
        last: to_u128(range.last) - base,
        walked_out: false,
    };
    match ipam::allocate(&pool, ip, &mut book, owner.clone()) {
        Err(_) if book.walked_out => {
            book.walked_out = false;
            ipam::allocate(&pool, ip, &mut book, owner.clone())
        }
        other => other,
    }
}

/// Leases one address in every range set (the requested one where a
/// requested address falls in the set). Returns the leases in set order.
pub fn allocate(
    tx: &mut CniIpamTx<'_>,
    network: &str,
    range_sets: &[Vec<AddressRange>],
    owner: &CniOwner,
    requested: &[IpAddr],
) -> Result<Vec<RangeLease>> {
    for ip in requested {
        if !range_sets.iter().flatten().any(|r| r.contains(*ip)) {
            return Err(EngineError::Invalid(format!(
                "requested IP {ip} is in no range of the ipam configuration"
            )));
        }
    }
    let mut out = Vec::new();
    for set in range_sets {
        let wanted: Vec<IpAddr> =
            requested.iter().copied().filter(|ip| set.iter().any(|r| r.contains(*ip))).collect();
        if wanted.len() > 1 {
            return Err(EngineError::Invalid(format!(
                "requested IPs {wanted:?} fall in one range set; ask for at most one per set"
            )));
        }
        let Some(first_range) = set.first() else { continue };
        let (ip, range) = match wanted.first() {
            Some(ip) => {
                let range = set.iter().find(|r| r.contains(*ip)).unwrap_or(first_range);
                let got =
                    allocate_in(tx, network, range, owner, Some(*ip)).map_err(|e| match e {
                        StoreError::Model(ModelError::AddressInUse { .. }) => {
                            EngineError::AddressInUse(format!(
                                "requested IP address {ip} is not available in range set {}",
                                set_label(set)
                            ))
                        }
                        other => other.into(),
                    })?;
                (got, range)
            }
            None => next_in_set(tx, network, set, owner)?,
        };
        let address = IpNet::new(ip, range.subnet.prefix_len())
            .map_err(|_| EngineError::Invalid(format!("range {range}: bad prefix")))?;
        out.push(RangeLease { address, gateway: range.gateway });
    }
    Ok(out)
}

fn next_in_set<'r>(
    tx: &mut CniIpamTx<'_>,
    network: &str,
    set: &'r [AddressRange],
    owner: &CniOwner,
) -> Result<(IpAddr, &'r AddressRange)> {
    for range in set {
        match allocate_in(tx, network, range, owner, None) {
            Ok(ip) => return Ok((ip, range)),
            Err(StoreError::Model(ModelError::PoolExhausted { .. })) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(EngineError::PoolExhausted(format!(
        "no IP addresses available in range set: {}",
        set_label(set)
    )))
}

fn set_label(set: &[AddressRange]) -> String {
    set.iter().map(AddressRange::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nicslice_store::cni_ipam::CniIpamStore;

    fn owner(c: &str) -> CniOwner {
        CniOwner { container_id: c.into(), ifname: "eth0".into() }
    }

    /// A range set of one range: `subnet` with the window `first..=last`
    /// (the whole subnet when `None`) and its first address as gateway.
    fn set(subnet: &str, window: Option<(&str, &str)>) -> Vec<AddressRange> {
        let subnet: IpNet = subnet.parse().unwrap();
        let base = to_u128(subnet.network());
        let at = |n: u128| nicslice_model::from_u128(subnet.network(), n).unwrap();
        let (first, last) = match window {
            Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
            None => (at(base + 1), at(to_u128(subnet.broadcast()) - 1)),
        };
        vec![AddressRange { subnet, first, last, gateway: at(base + 1) }]
    }

    fn store(tag: &str) -> (CniIpamStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("nsl-cni-alloc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (CniIpamStore::open(dir.join("db")).unwrap(), dir)
    }

    #[test]
    fn window_gateway_exhaustion_and_reuse() {
        let (mut s, dir) = store("win");
        let conf = [set("10.0.0.0/24", Some(("10.0.0.1", "10.0.0.4")))];
        let mut tx = s.write().unwrap();
        let got: Vec<String> = (0..3)
            .map(|i| {
                allocate(&mut tx, "n", &conf[..], &owner(&format!("c{i}")), &[]).unwrap()[0]
                    .address
                    .to_string()
            })
            .collect();
        // .1 is the gateway.
        assert_eq!(got, ["10.0.0.2/24", "10.0.0.3/24", "10.0.0.4/24"]);
        let e = allocate(&mut tx, "n", &conf[..], &owner("c9"), &[]).unwrap_err();
        assert!(
            matches!(&e, EngineError::PoolExhausted(m) if m.contains("10.0.0.1-10.0.0.4")),
            "{e}"
        );
        tx.release_owner("n", &owner("c1")).unwrap();
        let again = allocate(&mut tx, "n", &conf[..], &owner("c9"), &[]).unwrap();
        assert_eq!(again[0].address.to_string(), "10.0.0.3/24");
        drop(tx);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_small_window_in_a_huge_subnet_is_not_walked() {
        let (mut s, dir) = store("v6");
        let conf = [set("fd00::/64", Some(("fd00::8000:0:0:0", "fd00::8000:0:0:1")))];
        let mut tx = s.write().unwrap();
        for c in ["a", "b"] {
            allocate(&mut tx, "n", &conf[..], &owner(c), &[]).unwrap();
        }
        assert!(matches!(
            allocate(&mut tx, "n", &conf[..], &owner("c"), &[]).unwrap_err(),
            EngineError::PoolExhausted(_)
        ));
        tx.release_owner("n", &owner("a")).unwrap();
        let ip = allocate(&mut tx, "n", &conf[..], &owner("c"), &[]).unwrap();
        assert_eq!(ip[0].address.to_string(), "fd00::8000:0:0:0/64");
        drop(tx);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn requested_ips_and_dual_stack() {
        let (mut s, dir) = store("req");
        let conf = [set("10.0.0.0/24", None), set("fd00::/64", None)];
        let mut tx = s.write().unwrap();
        let ips = allocate(&mut tx, "n", &conf[..], &owner("a"), &["10.0.0.77".parse().unwrap()])
            .unwrap();
        assert_eq!(ips[0].address.to_string(), "10.0.0.77/24");
        assert_eq!(ips[1].address.to_string(), "fd00::2/64");
        assert_eq!(ips[1].gateway, "fd00::1".parse::<IpAddr>().unwrap());
        let e = allocate(&mut tx, "n", &conf[..], &owner("b"), &["10.0.0.77".parse().unwrap()])
            .unwrap_err();
        assert!(matches!(e, EngineError::AddressInUse(_)), "{e}");
        let e = allocate(&mut tx, "n", &conf[..], &owner("b"), &["10.9.0.1".parse().unwrap()])
            .unwrap_err();
        assert!(matches!(e, EngineError::Invalid(_)), "{e}");
        let e = allocate(&mut tx, "n", &conf[..], &owner("b"), &["10.0.0.1".parse().unwrap()])
            .unwrap_err();
        assert!(e.to_string().contains("gateway"), "{e}");
        drop(tx);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn second_range_of_a_set_takes_over() {
        let (mut s, dir) = store("sets");
        let conf = [[
            set("10.0.0.0/24", Some(("10.0.0.2", "10.0.0.2"))),
            set("10.0.1.0/24", Some(("10.0.1.9", "10.0.1.9"))),
        ]
        .concat()];
        let mut tx = s.write().unwrap();
        let a = allocate(&mut tx, "n", &conf[..], &owner("a"), &[]).unwrap();
        let b = allocate(&mut tx, "n", &conf[..], &owner("b"), &[]).unwrap();
        assert_eq!(a[0].address.to_string(), "10.0.0.2/24");
        assert_eq!(b[0].address.to_string(), "10.0.1.9/24");
        assert_eq!(b[0].gateway, "10.0.1.1".parse::<IpAddr>().unwrap());
        drop(tx);
        let _ = std::fs::remove_dir_all(dir);
    }
}
