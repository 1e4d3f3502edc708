//! Test support only: an in-memory `LeaseBook` that counts its calls, and a
//! helper building a pool from one subnet spec.

use std::collections::{BTreeMap, BTreeSet};

use super::{LeaseBook, Pool, PoolId};
use crate::network::SubnetSpec;
use crate::{Driver, MacvlanMode, ModelError, NetworkSpec};

#[derive(Debug, Default)]
pub(crate) struct MemoryBook {
    pub leases: BTreeMap<(PoolId, u128), u32>,
    pub high_water: BTreeMap<PoolId, u128>,
    pub freed: BTreeSet<(PoolId, u128)>,
    /// Number of trait calls so far.
    pub calls: usize,
}

impl LeaseBook for MemoryBook {
    type Owner = u32;
    type Error = ModelError;

    fn is_leased(&mut self, pool: PoolId, offset: u128) -> Result<bool, ModelError> {
        self.calls += 1;
        Ok(self.leases.contains_key(&(pool, offset)))
    }
    fn high_water(&mut self, pool: PoolId) -> Result<u128, ModelError> {
        self.calls += 1;
        Ok(self.high_water.get(&pool).copied().unwrap_or(0))
    }
    fn set_high_water(&mut self, pool: PoolId, offset: u128) -> Result<(), ModelError> {
        self.calls += 1;
        self.high_water.insert(pool, offset);
        Ok(())
    }
    fn pop_lowest_freed(&mut self, pool: PoolId) -> Result<Option<u128>, ModelError> {
        self.calls += 1;
        let lowest = self.freed.range((pool, 0)..=(pool, u128::MAX)).next().copied();
        Ok(lowest.map(|key| {
            self.freed.remove(&key);
            key.1
        }))
    }
    fn remove_freed(&mut self, pool: PoolId, offset: u128) -> Result<(), ModelError> {
        self.calls += 1;
        self.freed.remove(&(pool, offset));
        Ok(())
    }
    fn push_freed(&mut self, pool: PoolId, offset: u128) -> Result<(), ModelError> {
        self.calls += 1;
        self.freed.insert((pool, offset));
        Ok(())
    }
    fn insert_lease(&mut self, pool: PoolId, offset: u128, owner: u32) -> Result<(), ModelError> {
        self.calls += 1;
        self.leases.insert((pool, offset), owner);
        Ok(())
    }
    fn remove_lease(&mut self, pool: PoolId, offset: u128) -> Result<bool, ModelError> {
        self.calls += 1;
        Ok(self.leases.remove(&(pool, offset)).is_some())
    }
}

/// The pool of `sub` as the only subnet of network "lan" (panics on an invalid spec:
/// tests only).
pub(crate) fn pool_of(sub: SubnetSpec) -> Pool {
    let mut spec = NetworkSpec::new(
        "lan".parse().unwrap(),
        Driver::Macvlan,
        "ens160".parse().unwrap(),
        MacvlanMode::Bridge,
    );
    spec.subnets.push(sub);
    let valid = spec.validate().unwrap();
    Pool::new(PoolId(1), valid.name.clone(), &valid.subnets()[0])
}
