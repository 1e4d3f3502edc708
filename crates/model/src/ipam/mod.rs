//! Address management (IPAM): which addresses of a subnet may be handed out
//! (`pool`), the storage interface the allocator works through (`book`), and
//! the allocator itself (`allocator`). Pure and generic over storage: the store
//! implements `LeaseBook` inside a write transaction of its database;
//! tests use a map.

mod allocator;
#[cfg(test)]
mod allocator_tests;
mod book;
#[cfg(test)]
mod memory;
mod pool;
mod range;

pub use allocator::{allocate, allocate_next, allocate_static, release};
pub use book::LeaseBook;
pub use pool::{Pool, PoolId, Reserved};
pub use range::AddressRange;
