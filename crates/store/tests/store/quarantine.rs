//! Quarantined addresses (issue 14) in state.db: out of the pool with who
//! answered, kept by the allocator's skip, back after the cool-down.

use std::net::IpAddr;

use nicslice_model::MacAddr;
use nicslice_store::StoreRead;

use crate::common::{TempDir, endpoint, network, open};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const THEIRS: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x50]);

#[test]
fn a_quarantined_lease_leaves_its_endpoint_and_the_pool_until_released() {
    let dir = TempDir::new("quarantine");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let net = tx.insert_network(&network("lan", "ens160", &["10.0.0.0/24"]), None).unwrap();
    let ep = tx.insert_endpoint(net, &endpoint(1, "eth0")).unwrap();
    let lease = tx.allocate(net, 0, None, Some(ep)).unwrap();
    assert_eq!(lease.ip, ip("10.0.0.2"));
    tx.quarantine(&lease, Some(THEIRS)).unwrap();
    assert!(tx.leases_of(ep).unwrap().is_empty(), "no longer the endpoint's");
    let next = tx.allocate(net, 0, None, Some(ep)).unwrap();
    assert_eq!(next.ip, ip("10.0.0.3"), "the allocator skips it");
    tx.commit().unwrap();

    let q = store.read().unwrap().quarantined(net).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].ip, q[0].answered_by), (ip("10.0.0.2"), Some(THEIRS)));

    // Within the cool-down nothing returns; once it is over, the address does.
    let tx = store.write().unwrap();
    assert!(tx.release_quarantine(net, 3600).unwrap().is_empty());
    assert_eq!(tx.release_quarantine(net, 0).unwrap(), vec![ip("10.0.0.2")]);
    assert!(tx.quarantined(net).unwrap().is_empty());
    // Free again (reused once the upward walk has used up the range).
    assert!(!tx.leases_in(net).unwrap().iter().any(|l| l.ip == ip("10.0.0.2")));
}

#[test]
fn quarantine_after_a_failed_attach_never_takes_an_address_in_use() {
    let dir = TempDir::new("quarantine-after");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let net = tx.insert_network(&network("lan", "ens160", &["10.0.0.0/24"]), None).unwrap();
    let ep = tx.insert_endpoint(net, &endpoint(1, "eth0")).unwrap();
    let used = tx.allocate(net, 0, None, Some(ep)).unwrap().ip;
    let reserved = tx.allocate(net, 0, None, None).unwrap().ip; // a shim's, say
    // A free address: leased to no one and quarantined.
    assert!(tx.quarantine_address(net, 0, ip("10.0.0.9"), Some(THEIRS)).unwrap());
    // Renewed when it is quarantined already.
    assert!(tx.quarantine_address(net, 0, ip("10.0.0.9"), None).unwrap());
    // An endpoint's address and a reservation are left alone.
    assert!(!tx.quarantine_address(net, 0, used, Some(THEIRS)).unwrap());
    assert!(!tx.quarantine_address(net, 0, reserved, Some(THEIRS)).unwrap());
    let q = tx.quarantined(net).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].ip, q[0].answered_by), (ip("10.0.0.9"), None));
    assert_eq!(tx.leases_of(ep).unwrap()[0].ip, used);
    // Removing the network takes its quarantine with it.
    tx.delete_endpoint(ep).unwrap();
    tx.release_address(net, used).unwrap();
    assert!(tx.delete_network(net).unwrap());
    tx.commit().unwrap();
}
