use std::collections::BTreeSet;
use std::net::IpAddr;

use nicslice_model::ModelError;
use nicslice_store::{EndpointId, StoreError, StoreRead};

use crate::common::{TempDir, endpoint, network, open};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn allocation_continues_across_reopen() {
    let dir = TempDir::new("alloc-reopen");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let net = tx.insert_network(&network("lan", "ens160", &["10.0.0.0/24"]), None).unwrap();
    let first: Vec<IpAddr> = (0..3).map(|_| tx.allocate(net, 0, None, None).unwrap().ip).collect();
    assert!(tx.release_address(net, first[0]).unwrap());
    tx.commit().unwrap();
    drop(store);

    let mut store = open(&dir);
    let tx = store.write().unwrap();
    assert_eq!(tx.allocate(net, 0, None, None).unwrap().ip, ip("10.0.0.5"));
    assert_eq!(tx.leases_in(net).unwrap().len(), 3);
    assert!(!tx.release_address(net, first[0]).unwrap(), "already released");
    assert!(!tx.release_address(net, ip("172.16.0.1")).unwrap(), "in no subnet");
}

#[test]
fn a_rolled_back_allocation_leaves_no_trace() {
    let dir = TempDir::new("alloc-rollback");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let net = tx.insert_network(&network("lan", "ens160", &["10.0.0.0/24"]), None).unwrap();
    tx.commit().unwrap();
    let tx = store.write().unwrap();
    assert_eq!(tx.allocate(net, 0, None, None).unwrap().ip, ip("10.0.0.2"));
    drop(tx);
    let tx = store.write().unwrap();
    assert_eq!(tx.allocate(net, 0, None, None).unwrap().ip, ip("10.0.0.2"));
}

#[test]
fn exhaustion_is_reported_and_freed_addresses_are_reused() {
    let dir = TempDir::new("alloc-exhaust");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let net = tx.insert_network(&network("lan", "ens160", &["192.168.179.0/29"]), None).unwrap();
    let got: BTreeSet<IpAddr> =
        (0..5).map(|_| tx.allocate(net, 0, None, None).unwrap().ip).collect();
    assert_eq!(got.len(), 5);
    let err = tx.allocate(net, 0, None, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "address pool 192.168.179.0/29 of network lan is exhausted (5 addresses in use); \
         widen --ip-range or remove endpoints"
    );
    assert!(tx.release_address(net, ip("192.168.179.4")).unwrap());
    assert!(tx.release_address(net, ip("192.168.179.3")).unwrap());
    assert_eq!(tx.allocate(net, 0, None, None).unwrap().ip, ip("192.168.179.3"));
    assert_eq!(tx.allocate(net, 0, None, None).unwrap().ip, ip("192.168.179.4"));
    assert!(tx.allocate(net, 0, None, None).is_err());
}

#[test]
fn static_addresses_are_checked() {
    let dir = TempDir::new("alloc-static");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let net = tx.insert_network(&network("lan", "ens160", &["192.168.179.0/24"]), None).unwrap();
    let ep = tx.insert_endpoint(net, &endpoint(1, "eth0")).unwrap();
    let lease = tx.allocate(net, 0, Some(ip("192.168.179.13")), Some(ep)).unwrap();
    assert_eq!(lease.ip, ip("192.168.179.13"));
    assert_eq!(lease.endpoint_id, Some(ep));
    let err = tx.allocate(net, 0, Some(ip("192.168.179.13")), None).unwrap_err();
    assert_eq!(err.to_string(), "192.168.179.13 is already in use in network lan");
    let err = tx.allocate(net, 0, Some(ip("192.168.179.1")), None).unwrap_err();
    assert!(matches!(err, StoreError::Model(ModelError::AddressReserved { .. })), "{err:?}");
    let err = tx.allocate(net, 0, Some(ip("10.0.0.1")), None).unwrap_err();
    assert!(err.to_string().contains("outside subnet 192.168.179.0/24"), "{err}");
}

#[test]
fn bad_references_are_refused() {
    let dir = TempDir::new("alloc-refs");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let lan = tx.insert_network(&network("lan", "ens160", &["10.0.0.0/24"]), None).unwrap();
    let wan = tx.insert_network(&network("wan", "ens192", &["10.1.0.0/24"]), None).unwrap();
    let ep = tx.insert_endpoint(wan, &endpoint(1, "eth0")).unwrap();
    let err = tx.allocate(lan, 1, None, None).unwrap_err();
    assert_eq!(err.to_string(), "network lan has no subnet number 1");
    let err = tx.allocate(lan, 0, None, Some(ep)).unwrap_err();
    assert!(matches!(err, StoreError::EndpointNotInNetwork { .. }), "{err:?}");
    let err = tx.allocate(lan, 0, None, Some(EndpointId(999))).unwrap_err();
    assert!(matches!(err, StoreError::NoSuchEndpoint(999)), "{err:?}");
}

#[test]
fn ipv6_offsets_beyond_64_bits_round_trip() {
    let dir = TempDir::new("alloc-v6");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let net = tx.insert_network(&network("v6", "ens160", &["fd00::/48"]), None).unwrap();
    let far = ip("fd00:0:0:ffff:ffff:ffff:ffff:fffe");
    assert_eq!(tx.allocate(net, 0, Some(far), None).unwrap().ip, far);
    assert_eq!(tx.allocate(net, 0, None, None).unwrap().ip, ip("fd00::2"));
    let ips: Vec<IpAddr> = tx.leases_in(net).unwrap().iter().map(|l| l.ip).collect();
    assert_eq!(ips, [ip("fd00::2"), far], "ordered numerically");
}
