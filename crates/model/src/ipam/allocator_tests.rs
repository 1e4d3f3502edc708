//! Tests of the allocator against the in-memory book: order, exhaustion,
//! reuse, static addresses, reserved addresses, IPv6, and the constant cost
//! per allocation.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::memory::{MemoryBook, pool_of};
use super::{Pool, allocate, allocate_next, allocate_static, release};
use crate::ModelError;
use crate::network::SubnetSpec;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn subnet(s: &str) -> SubnetSpec {
    SubnetSpec::new(s.parse().unwrap())
}

fn next(pool: &Pool, book: &mut MemoryBook) -> Result<IpAddr, ModelError> {
    allocate_next(pool, book, 7)
}

#[test]
fn hands_out_addresses_in_order_skipping_reserved() {
    let mut sub = subnet("10.0.0.0/24");
    sub.aux_addresses.insert("router".into(), ip("10.0.0.3"));
    let pool = pool_of(sub);
    let mut book = MemoryBook::default();
    let got: Vec<IpAddr> = (0..3).map(|_| next(&pool, &mut book).unwrap()).collect();
    // .0 network, .1 gateway, .3 aux
    assert_eq!(got, [ip("10.0.0.2"), ip("10.0.0.4"), ip("10.0.0.5")]);
    assert_eq!(book.leases.get(&(pool.id(), 4)), Some(&7));
}

#[test]
fn ten_thousand_allocations_cost_a_constant_number_of_book_calls() {
    let pool = pool_of(subnet("10.1.0.0/16"));
    let mut book = MemoryBook::default();
    let mut seen = BTreeSet::new();
    for i in 0..10_000 {
        let before = book.calls;
        let got = next(&pool, &mut book).unwrap();
        let cost = book.calls - before;
        // high_water, is_leased, set_high_water, insert_lease
        assert_eq!(cost, 4, "allocation {i} cost {cost} book calls");
        assert!(seen.insert(got), "{got} handed out twice");
    }
    assert_eq!(book.leases.len(), 10_000);
}

#[test]
fn reuse_after_exhaustion_also_costs_a_constant() {
    let pool = pool_of(subnet("10.1.0.0/16"));
    let mut book = MemoryBook::default();
    let all: Vec<IpAddr> = (0..65_533).map(|_| next(&pool, &mut book).unwrap()).collect();
    for a in &all[..1000] {
        assert!(release(&pool, *a, &mut book).unwrap());
    }
    for a in &all[..1000] {
        let before = book.calls;
        assert_eq!(next(&pool, &mut book).unwrap(), *a);
        assert!(book.calls - before <= 5, "reuse cost {}", book.calls - before);
    }
}

#[test]
fn exhaustion_says_which_pool_and_what_to_do() {
    let pool = pool_of(subnet("192.168.179.0/29"));
    let mut book = MemoryBook::default();
    for _ in 0..5 {
        next(&pool, &mut book).unwrap();
    }
    let err = next(&pool, &mut book).unwrap_err();
    assert_eq!(
        err.to_string(),
        "address pool 192.168.179.0/29 of network lan is exhausted (5 addresses in use); \
         widen --ip-range or remove endpoints"
    );
    // A failed allocation changes nothing and fails again the same way.
    assert_eq!(book.leases.len(), 5);
    assert!(next(&pool, &mut book).is_err());
}

#[test]
fn released_addresses_are_reused_only_after_the_range_is_walked() {
    let pool = pool_of(subnet("10.0.0.0/29"));
    let mut book = MemoryBook::default();
    let a = next(&pool, &mut book).unwrap();
    let b = next(&pool, &mut book).unwrap();
    assert!(release(&pool, a, &mut book).unwrap());
    assert!(!release(&pool, a, &mut book).unwrap(), "second release reports nothing to do");
    // Not reused at once: the walk continues upward.
    assert_eq!(next(&pool, &mut book).unwrap(), ip("10.0.0.4"));
    assert_eq!(next(&pool, &mut book).unwrap(), ip("10.0.0.5"));
    assert_eq!(next(&pool, &mut book).unwrap(), ip("10.0.0.6"));
    release(&pool, b, &mut book).unwrap();
    // Range used up: lowest released first.
    assert_eq!(next(&pool, &mut book).unwrap(), a);
    assert_eq!(next(&pool, &mut book).unwrap(), b);
    assert!(matches!(next(&pool, &mut book), Err(ModelError::PoolExhausted { .. })));
}

#[test]
fn static_addresses_are_checked_and_skipped_by_the_walk() {
    let mut sub = subnet("192.168.179.0/24");
    sub.aux_addresses.insert("printer".into(), ip("192.168.179.9"));
    let pool = pool_of(sub);
    let mut book = MemoryBook::default();
    assert_eq!(allocate_static(&pool, ip("192.168.179.3"), &mut book, 1), Ok(ip("192.168.179.3")));
    assert_eq!(
        allocate_static(&pool, ip("192.168.179.3"), &mut book, 2).unwrap_err().to_string(),
        "192.168.179.3 is already in use in network lan"
    );
    let reserved = |s: &str| allocate_static(&pool, ip(s), &mut MemoryBook::default(), 1);
    for (addr, what) in [
        ("192.168.179.0", "network address"),
        ("192.168.179.255", "broadcast address"),
        ("192.168.179.1", "gateway"),
        ("192.168.179.9", "aux address printer"),
    ] {
        let msg = reserved(addr).unwrap_err().to_string();
        assert!(msg.starts_with(&format!("{addr} is the {what} of network lan")), "{msg}");
    }
    let msg = reserved("192.168.180.3").unwrap_err().to_string();
    assert!(msg.contains("outside subnet 192.168.179.0/24"), "{msg}");
    assert!(reserved("fd00::3").is_err());
    // The walk steps over the static lease, paying one extra call for it.
    assert_eq!(next(&pool, &mut book).unwrap(), ip("192.168.179.2"));
    let before = book.calls;
    assert_eq!(next(&pool, &mut book).unwrap(), ip("192.168.179.4"));
    assert_eq!(book.calls - before, 5);
}

#[test]
fn static_outside_ip_range_is_allowed_and_never_reused_automatically() {
    let mut sub = subnet("10.0.0.0/24");
    sub.ip_range = Some("10.0.0.240/30".parse().unwrap());
    let pool = pool_of(sub);
    let mut book = MemoryBook::default();
    assert_eq!(allocate(&pool, Some(ip("10.0.0.7")), &mut book, 1), Ok(ip("10.0.0.7")));
    assert_eq!(allocate(&pool, None, &mut book, 1), Ok(ip("10.0.0.240")));
    assert!(release(&pool, ip("10.0.0.7"), &mut book).unwrap());
    assert!(book.freed.is_empty(), "an out-of-range address must not enter the free list");
    for expect in ["10.0.0.241", "10.0.0.242", "10.0.0.243"] {
        assert_eq!(next(&pool, &mut book).unwrap(), ip(expect));
    }
    let msg = next(&pool, &mut book).unwrap_err().to_string();
    assert!(msg.contains("pool 10.0.0.240/30"), "{msg}");
    assert!(msg.contains("(4 addresses in use)"), "{msg}");
}

#[test]
fn taking_a_released_address_statically_removes_it_from_the_free_list() {
    let pool = pool_of(subnet("10.0.0.0/29"));
    let mut book = MemoryBook::default();
    let a = next(&pool, &mut book).unwrap();
    release(&pool, a, &mut book).unwrap();
    assert_eq!(book.freed.len(), 1);
    allocate_static(&pool, a, &mut book, 3).unwrap();
    assert!(book.freed.is_empty());
    let rest: Vec<_> = std::iter::from_fn(|| next(&pool, &mut book).ok()).collect();
    assert_eq!(rest.len(), 4);
    assert!(!rest.contains(&a));
}

#[test]
fn ipv6_slash_64_works_at_both_ends_without_iterating() {
    let pool = pool_of(subnet("fd00:1::/64"));
    let mut book = MemoryBook::default();
    assert_eq!(next(&pool, &mut book).unwrap(), ip("fd00:1::2"));
    let far = ip("fd00:1::ffff:ffff:ffff:fff0");
    assert_eq!(allocate_static(&pool, far, &mut book, 1), Ok(far));
    // Jump the mark to the top of the range: the last two addresses, then done.
    book.high_water.insert(pool.id(), pool.range_last() - 1);
    assert_eq!(next(&pool, &mut book).unwrap(), ip("fd00:1::ffff:ffff:ffff:fffe"));
    assert_eq!(next(&pool, &mut book).unwrap(), ip("fd00:1::ffff:ffff:ffff:ffff"));
    let before = book.calls;
    let err = next(&pool, &mut book).unwrap_err();
    assert!(book.calls - before <= 3, "exhaustion must not walk the range");
    assert!(err.to_string().contains("(18446744073709551614 addresses in use)"), "{err}");
    // Released addresses below the mark are found again.
    release(&pool, far, &mut book).unwrap();
    assert_eq!(next(&pool, &mut book).unwrap(), far);
}

#[test]
fn release_outside_the_subnet_is_an_error() {
    let pool = pool_of(subnet("10.0.0.0/24"));
    let err = release(&pool, ip("10.9.0.1"), &mut MemoryBook::default()).unwrap_err();
    assert!(matches!(err, ModelError::AddressOutsideSubnet { .. }));
}
