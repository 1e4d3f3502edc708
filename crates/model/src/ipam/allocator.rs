//! The allocator: hands out, pins and releases addresses of one `Pool`
//! through a `LeaseBook`. Automatic allocation walks upward from the pool's
//! high-water mark and only when the range is used up reuses the lowest
//! released address, so a released address is not handed out again at once.
//! Each call costs a constant number of book operations, plus one per
//! reserved or statically leased address it steps over (each is stepped
//! over at most once, as the mark passes it); no call scans the leases.

use std::net::IpAddr;

use super::{LeaseBook, Pool};
use crate::ModelError;

/// `allocate_static` when `ip` is given, `allocate_next` otherwise.
pub fn allocate<B: LeaseBook>(
    pool: &Pool,
    ip: Option<IpAddr>,
    book: &mut B,
    owner: B::Owner,
) -> Result<IpAddr, B::Error> {
    match ip {
        Some(ip) => allocate_static(pool, ip, book, owner),
        None => allocate_next(pool, book, owner),
    }
}

/// Leases the next free address of the pool's automatic range.
pub fn allocate_next<B: LeaseBook>(
    pool: &Pool,
    book: &mut B,
    owner: B::Owner,
) -> Result<IpAddr, B::Error> {
    let id = pool.id();
    let (first, last) = (pool.range_first(), pool.range_last());
    let stored = book.high_water(id)?;
    let mut candidate = stored.max(first);
    while candidate <= last {
        if pool.reserved(candidate).is_none() && !book.is_leased(id, candidate)? {
            book.set_high_water(id, candidate.saturating_add(1))?;
            return lease(pool, book, candidate, owner);
        }
        match candidate.checked_add(1) {
            Some(next) => candidate = next,
            None => break,
        }
    }
    if candidate > stored {
        // Remember the walk so the next call does not repeat it.
        book.set_high_water(id, candidate)?;
    }
    while let Some(offset) = book.pop_lowest_freed(id)? {
        // Entries are kept exact by allocate_static and release; the checks
        // only guard against a book edited by hand (a stale entry is dropped).
        if pool.in_range(offset)
            && pool.reserved(offset).is_none()
            && !book.is_leased(id, offset)?
        {
            return lease(pool, book, offset, owner);
        }
    }
    Err(ModelError::PoolExhausted {
        network: pool.network().to_string(),
        range: pool.range(),
        in_use: pool.allocatable_in_range(),
    }
    .into())
}

/// Leases exactly `ip`. It must be inside the subnet, not reserved and not
/// leased; it may lie outside `ip_range` (as Docker allows).
pub fn allocate_static<B: LeaseBook>(
    pool: &Pool,
    ip: IpAddr,
    book: &mut B,
    owner: B::Owner,
) -> Result<IpAddr, B::Error> {
    let id = pool.id();
    let offset = offset_in_subnet(pool, ip)?;
    if let Some(why) = pool.reserved(offset) {
        return Err(ModelError::AddressReserved {
            ip,
            network: pool.network().to_string(),
            what: why.to_string(),
        }
        .into());
    }
    if book.is_leased(id, offset)? {
        return Err(ModelError::AddressInUse { ip, network: pool.network().to_string() }.into());
    }
    if pool.in_range(offset) && offset < book.high_water(id)? {
        // It may have been released earlier; it must not be handed out twice.
        book.remove_freed(id, offset)?;
    }
    lease(pool, book, offset, owner)
}

/// Releases `ip`; returns whether it was leased. Released addresses of the
/// automatic range below the high-water mark become reusable.
pub fn release<B: LeaseBook>(pool: &Pool, ip: IpAddr, book: &mut B) -> Result<bool, B::Error> {
    let id = pool.id();
    let offset = offset_in_subnet(pool, ip)?;
    if !book.remove_lease(id, offset)? {
        return Ok(false);
    }
    // Above the mark the upward walk reaches it anyway; outside the range it
    // is never handed out automatically.
    if pool.in_range(offset) && offset < book.high_water(id)? {
        book.push_freed(id, offset)?;
    }
    Ok(true)
}

fn offset_in_subnet(pool: &Pool, ip: IpAddr) -> Result<u128, ModelError> {
    pool.offset_of(ip).ok_or_else(|| ModelError::AddressOutsideSubnet {
        ip,
        subnet: pool.subnet(),
        network: pool.network().to_string(),
    })
}

fn lease<B: LeaseBook>(
    pool: &Pool,
    book: &mut B,
    offset: u128,
    owner: B::Owner,
) -> Result<IpAddr, B::Error> {
    // Offsets come from the pool's own range, so this cannot fail; stay total anyway.
    let ip = pool.ip_at(offset).ok_or_else(|| {
        ModelError::Invalid(format!(
            "offset {offset} lies outside subnet {} of network {}; the state database is inconsistent",
            pool.subnet(),
            pool.network()
        ))
    })?;
    book.insert_lease(pool.id(), offset, owner)?;
    Ok(ip)
}
