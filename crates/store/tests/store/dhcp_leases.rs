//! DHCP lease rows: recorded per client identifier and family, listed per
//! endpoint and soonest renewal first, kept (released) after their endpoint
//! is detached or deleted so the client asks for its address again.

use nicslice_store::{DhcpLeaseRecord, EndpointId, StoreRead};

use crate::common::{TempDir, endpoint, network, open};

fn lease(
    client: &[u8],
    endpoint: Option<EndpointId>,
    address: &str,
    renew_at: i64,
) -> DhcpLeaseRecord {
    DhcpLeaseRecord {
        client_id: client.to_vec(),
        family: 4,
        endpoint_id: endpoint,
        address: address.parse().unwrap(),
        server: "192.168.0.1".parse().unwrap(),
        lease_secs: 120,
        acquired_at: 1000,
        renew_at,
        rebind_at: 1105,
        expires_at: 1120,
        details: serde_json::json!({ "routers": ["192.168.0.1"] }),
    }
}

#[test]
fn leases_are_recorded_listed_released_and_kept() {
    let dir = TempDir::new("dhcp");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let net = tx.insert_network(&network("lan", "eth0", &[]), None).unwrap();
    let a = tx.insert_endpoint(net, &endpoint(1, "eth0")).unwrap();
    let b = tx.insert_endpoint(net, &endpoint(2, "eth0")).unwrap();
    tx.record_dhcp_lease(&lease(b"\0a", Some(a), "192.168.0.100/24", 1090)).unwrap();
    tx.record_dhcp_lease(&lease(b"\0b", Some(b), "192.168.0.101/24", 1060)).unwrap();
    tx.commit().unwrap();

    assert_eq!(
        store.dhcp_leases_of(a).unwrap(),
        vec![lease(b"\0a", Some(a), "192.168.0.100/24", 1090)]
    );
    let held: Vec<Vec<u8>> =
        store.held_dhcp_leases().unwrap().into_iter().map(|l| l.client_id).collect();
    assert_eq!(held, vec![b"\0b".to_vec(), b"\0a".to_vec()], "soonest renewal first");

    // A renewal replaces the row of its client and family.
    let tx = store.write().unwrap();
    tx.record_dhcp_lease(&lease(b"\0a", Some(a), "192.168.0.100/24", 1150)).unwrap();
    assert_eq!(tx.release_dhcp_leases(b).unwrap(), 1);
    tx.commit().unwrap();
    assert_eq!(store.dhcp_leases_of(a).unwrap()[0].renew_at, 1150);
    assert_eq!(store.held_dhcp_leases().unwrap().len(), 1);
    // Released, but remembered for the client's next attach.
    let kept = store.dhcp_lease_of_client(b"\0b", 4).unwrap().unwrap();
    assert_eq!((kept.endpoint_id, kept.address.to_string()), (None, "192.168.0.101/24".into()));
    assert!(store.dhcp_lease_of_client(b"\0b", 6).unwrap().is_none());

    // Deleting an endpoint keeps its client's row, released.
    let tx = store.write().unwrap();
    tx.delete_endpoint(a).unwrap();
    tx.commit().unwrap();
    assert_eq!(store.dhcp_lease_of_client(b"\0a", 4).unwrap().unwrap().endpoint_id, None);
    assert!(store.held_dhcp_leases().unwrap().is_empty());
}

#[test]
fn one_family_of_a_dual_stack_endpoint_is_released_alone() {
    let dir = TempDir::new("dhcp46");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let net = tx.insert_network(&network("lan", "eth0", &[]), None).unwrap();
    let a = tx.insert_endpoint(net, &endpoint(1, "eth0")).unwrap();
    tx.record_dhcp_lease(&lease(b"\0a", Some(a), "192.168.0.100/24", 1090)).unwrap();
    let v6 = DhcpLeaseRecord {
        family: 6,
        address: "fd00:db8::100/128".parse().unwrap(),
        server: "fd00:db8::1".parse().unwrap(),
        ..lease(b"\0\0\0\x01\0\x04", Some(a), "192.168.0.100/24", 1060)
    };
    tx.record_dhcp_lease(&v6).unwrap();
    tx.commit().unwrap();
    let families: Vec<u8> = store.dhcp_leases_of(a).unwrap().iter().map(|l| l.family).collect();
    assert_eq!(families, vec![4, 6]);

    // The IPv6 lease lost (its server no longer binds it): the IPv4 one stays held.
    let tx = store.write().unwrap();
    assert_eq!(tx.release_dhcp_lease(&v6.client_id, 6).unwrap(), 1);
    tx.commit().unwrap();
    let held = store.dhcp_leases_of(a).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].family, 4);
    let kept = store.dhcp_lease_of_client(&v6.client_id, 6).unwrap().unwrap();
    assert_eq!((kept.endpoint_id, kept.address.to_string()), (None, "fd00:db8::100/128".into()));
}
