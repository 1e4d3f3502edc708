//! `LeaseBook`: the storage the allocator works through. Every operation is a
//! point lookup or update keyed by pool and offset, so an implementation can
//! make each one O(log n) and the allocator never scans the leases.

use super::PoolId;
use crate::ModelError;

/// Lease storage for address pools. Offsets count from the subnet's first
/// address (see `Pool`). The store implements it inside one write
/// transaction (SQLite for `state.db`, LMDB for the CNI leases), so a whole
/// allocation is atomic.
pub trait LeaseBook {
    /// Who holds a lease (an endpoint id in the store).
    type Owner;
    /// Storage failures; refusals of the allocator arrive as `ModelError`.
    type Error: From<ModelError>;

    /// Whether `offset` is leased.
    fn is_leased(&mut self, pool: PoolId, offset: u128) -> Result<bool, Self::Error>;
    /// The next never-handed-out offset (0 for a new pool).
    fn high_water(&mut self, pool: PoolId) -> Result<u128, Self::Error>;
    fn set_high_water(&mut self, pool: PoolId, offset: u128) -> Result<(), Self::Error>;
    /// Removes and returns the lowest released offset below the high-water mark.
    fn pop_lowest_freed(&mut self, pool: PoolId) -> Result<Option<u128>, Self::Error>;
    /// Forgets a released offset (because it was taken statically); no-op if absent.
    fn remove_freed(&mut self, pool: PoolId, offset: u128) -> Result<(), Self::Error>;
    fn push_freed(&mut self, pool: PoolId, offset: u128) -> Result<(), Self::Error>;
    fn insert_lease(
        &mut self,
        pool: PoolId,
        offset: u128,
        owner: Self::Owner,
    ) -> Result<(), Self::Error>;
    /// Removes a lease; returns whether there was one.
    fn remove_lease(&mut self, pool: PoolId, offset: u128) -> Result<bool, Self::Error>;
}
