use nicslice_model::{IfName, MacvlanMode, NetworkSpec, SubnetSpec};
use nicslice_store::{StoreError, StoreRead};

use crate::common::{TempDir, endpoint, network, open};

#[test]
fn network_round_trip() {
    let dir = TempDir::new("net-round");
    let mut store = open(&dir);
    let mut spec = NetworkSpec::new(
        "lan".parse().unwrap(),
        nicslice_model::Driver::Macvtap,
        "ens160".parse().unwrap(),
        MacvlanMode::Source,
    );
    spec.flags.nodst = true;
    spec.mtu = Some(1400);
    let mut sub = SubnetSpec::new("192.168.179.5/24".parse().unwrap());
    sub.aux_addresses.insert("router".into(), "192.168.179.2".parse().unwrap());
    spec.subnets = vec![sub, SubnetSpec::new("fd00::/64".parse().unwrap())];
    let valid = spec.validate().unwrap();
    let tx = store.write().unwrap();
    let id = tx.insert_network(&valid, None).unwrap();
    tx.commit().unwrap();

    let rec = store.network_by_name(&"lan".parse().unwrap()).unwrap().unwrap();
    assert_eq!(rec.id, id);
    assert_eq!(&rec.spec, valid.spec());
    assert_eq!(rec.spec.subnets[0].subnet.to_string(), "192.168.179.0/24");
    assert_eq!(rec.promisc_prev, None);
    assert!(rec.created_at > 1_600_000_000);
    assert_eq!(rec.validate().unwrap(), valid);
    assert_eq!(store.network(id).unwrap().unwrap(), rec);
    assert!(store.network_by_name(&"wan".parse().unwrap()).unwrap().is_none());
    let json = serde_json::to_value(&rec).unwrap();
    assert_eq!(json["spec"]["name"], "lan");
    // The parent's link: unknown until recorded, then read back.
    assert_eq!((rec.parent_index, rec.parent_mac), (None, None));
    let tx = store.write().unwrap();
    let mac: nicslice_model::MacAddr = "02:00:00:00:00:07".parse().unwrap();
    assert!(tx.set_parent_link(id, 7, Some(mac)).unwrap());
    tx.commit().unwrap();
    let rec = store.network(id).unwrap().unwrap();
    assert_eq!((rec.parent_index, rec.parent_mac), (Some(7), Some(mac)));
}

#[test]
fn duplicate_names_are_refused_clearly() {
    let dir = TempDir::new("net-dup");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    tx.insert_network(&network("lan", "ens160", &["10.0.0.0/24"]), None).unwrap();
    let err = tx.insert_network(&network("lan", "ens192", &[]), None).unwrap_err();
    assert!(matches!(err, StoreError::NetworkExists(_)));
    assert_eq!(err.to_string(), "network lan already exists");
}

#[test]
fn list_and_filter_by_parent() {
    let dir = TempDir::new("net-parent");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    tx.insert_network(&network("b", "ens160", &["10.0.1.0/24"]), None).unwrap();
    tx.insert_network(&network("a", "ens160", &["10.0.0.0/24"]), None).unwrap();
    tx.insert_network(&network("c", "ens192", &[]), None).unwrap();
    tx.commit().unwrap();
    let names = |v: Vec<nicslice_store::NetworkRecord>| {
        v.into_iter().map(|n| n.spec.name.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(names(store.list_networks().unwrap()), ["a", "b", "c"]);
    let ens160: IfName = "ens160".parse().unwrap();
    assert_eq!(names(store.networks_on_parent(&ens160).unwrap()), ["a", "b"]);
    let none: IfName = "eth9".parse().unwrap();
    assert!(store.networks_on_parent(&none).unwrap().is_empty());
}

#[test]
fn deleting_a_network_cascades_to_pools_and_leases() {
    let dir = TempDir::new("net-cascade");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let id =
        tx.insert_network(&network("lan", "ens160", &["10.0.0.0/24", "fd00::/64"]), None).unwrap();
    for _ in 0..3 {
        tx.allocate(id, 0, None, None).unwrap();
    }
    let ip = tx.allocate(id, 1, None, None).unwrap().ip;
    tx.release_address(id, ip).unwrap();
    assert_eq!(tx.leases_in(id).unwrap().len(), 3);
    assert!(tx.delete_network(id).unwrap());
    assert!(!tx.delete_network(id).unwrap(), "already gone");
    tx.commit().unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    for table in ["networks", "pools", "leases", "freed"] {
        let n: i64 =
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0, "{table} still has rows");
    }
}

#[test]
fn a_network_with_endpoints_cannot_be_deleted() {
    let dir = TempDir::new("net-in-use");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let id = tx.insert_network(&network("lan", "ens160", &["10.0.0.0/24"]), None).unwrap();
    let ep = tx.insert_endpoint(id, &endpoint(1, "eth0")).unwrap();
    let err = tx.delete_network(id).unwrap_err();
    assert_eq!(err.to_string(), "network lan still has 1 endpoint(s); remove them first");
    assert!(tx.delete_endpoint(ep).unwrap());
    assert!(tx.delete_network(id).unwrap());
}

/// `network rm --force`'s one step: the named endpoints, their leases and
/// the network go together; another endpoint left refuses it all (the
/// transaction then rolls back whole), and another network's leases stay.
#[test]
fn a_network_goes_with_the_endpoints_named_and_refuses_with_others_left() {
    let dir = TempDir::new("net-with-eps");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let id = tx.insert_network(&network("lan", "ens160", &["10.0.0.0/24"]), None).unwrap();
    let other = tx.insert_network(&network("wan", "ens161", &["10.1.0.0/24"]), None).unwrap();
    let (a, b) = (endpoint(1, "eth0"), endpoint(2, "eth0"));
    let (a, b) = (tx.insert_endpoint(id, &a).unwrap(), tx.insert_endpoint(id, &b).unwrap());
    let kept = tx.insert_endpoint(other, &endpoint(3, "eth0")).unwrap();
    for ep in [a, b] {
        tx.allocate(id, 0, None, Some(ep)).unwrap();
    }
    let kept_lease = tx.allocate(other, 0, None, Some(kept)).unwrap();
    tx.commit().unwrap();

    let tx = store.write().unwrap();
    let err = tx.delete_network_with_endpoints(id, &[a]).unwrap_err();
    assert_eq!(err.to_string(), "network lan still has 1 endpoint(s); remove them first");
    drop(tx);
    assert_eq!(store.endpoints(id).unwrap().len(), 2, "rolled back whole");
    assert_eq!(store.leases_in(id).unwrap().len(), 2);

    let tx = store.write().unwrap();
    // An endpoint of another network named by mistake is not touched.
    assert!(tx.delete_network_with_endpoints(id, &[a, b, kept]).unwrap());
    tx.commit().unwrap();
    assert!(store.network(id).unwrap().is_none());
    assert!(store.endpoint(a).unwrap().is_none() && store.endpoint(b).unwrap().is_none());
    assert_eq!(store.leases_of(kept).unwrap(), [kept_lease]);
}

#[test]
fn promisc_prev_can_be_handed_to_another_network() {
    let dir = TempDir::new("net-promisc");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let id = tx.insert_network(&network("lan", "ens160", &[]), None).unwrap();
    assert!(tx.set_promisc_prev(id, Some(false)).unwrap());
    assert_eq!(tx.network(id).unwrap().unwrap().promisc_prev, Some(false));
    assert!(tx.set_promisc_prev(id, None).unwrap());
    assert_eq!(tx.network(id).unwrap().unwrap().promisc_prev, None);
    assert!(!tx.set_promisc_prev(nicslice_store::NetworkId(77), Some(true)).unwrap());
}
