use nicslice_model::IfName;
use nicslice_store::{EndpointId, NetnsId, NetworkId, StoreError, StoreRead};

use crate::common::{TempDir, endpoint, network, open};

#[test]
fn endpoint_round_trip_and_lookups() {
    let dir = TempDir::new("ep-round");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let net = tx.insert_network(&network("lan", "ens160", &["10.0.0.0/24"]), None).unwrap();
    let mut new = endpoint(u64::MAX - 1, "eth0");
    new.netns_id.dev = u64::MAX;
    new.details = serde_json::json!({ "source_macs": ["02:00:00:00:00:01"] });
    let id = tx.insert_endpoint(net, &new).unwrap();
    let id2 = tx.insert_endpoint(net, &endpoint(2, "eth0")).unwrap();
    tx.commit().unwrap();

    let rec = store.endpoint(id).unwrap().unwrap();
    assert_eq!(rec.network_id, net);
    assert_eq!(rec.netns, new.netns);
    assert_eq!(rec.netns_id, new.netns_id, "u64 identities survive the signed column");
    assert_eq!(rec.netns_cookie, new.netns_cookie, "so do cookies");
    assert_eq!(rec.ifname, new.ifname);
    assert_eq!(rec.mac, new.mac);
    assert_eq!(rec.details, new.details);
    let eth0: IfName = "eth0".parse().unwrap();
    assert_eq!(store.endpoint_by_netns_ifname(new.netns_id, &eth0).unwrap(), Some(rec.clone()));
    let other = NetnsId { dev: 4, ino: 99 };
    assert_eq!(store.endpoint_by_netns_ifname(other, &eth0).unwrap(), None);
    let ids: Vec<EndpointId> = store.endpoints(net).unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids, [id, id2]);
    let json = serde_json::to_value(&rec).unwrap();
    assert_eq!(json["ifname"], "eth0");
    assert_eq!(json["mac"], "02:42:c0:a8:00:0c");
}

#[test]
fn one_ifname_per_namespace() {
    let dir = TempDir::new("ep-dup");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let net = tx.insert_network(&network("lan", "ens160", &[]), None).unwrap();
    tx.insert_endpoint(net, &endpoint(1, "eth0")).unwrap();
    let err = tx.insert_endpoint(net, &endpoint(1, "eth0")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "an endpoint named eth0 already exists in namespace /run/netns/ns1"
    );
    tx.insert_endpoint(net, &endpoint(1, "eth1")).unwrap();
}

#[test]
fn endpoint_of_a_missing_network_is_refused() {
    let dir = TempDir::new("ep-nonet");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let err = tx.insert_endpoint(NetworkId(42), &endpoint(1, "eth0")).unwrap_err();
    assert!(matches!(err, StoreError::NoSuchNetwork(_)), "{err:?}");
}

#[test]
fn deleting_an_endpoint_releases_its_addresses() {
    let dir = TempDir::new("ep-delete");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let net =
        tx.insert_network(&network("lan", "ens160", &["10.0.0.0/29", "fd00::/64"]), None).unwrap();
    let ep = tx.insert_endpoint(net, &endpoint(1, "eth0")).unwrap();
    let v4 = tx.allocate(net, 0, None, Some(ep)).unwrap();
    let v6 = tx.allocate(net, 1, None, Some(ep)).unwrap();
    assert_eq!(v4.address().to_string(), "10.0.0.2/29");
    assert_eq!(v4.gateway.to_string(), "10.0.0.1");
    assert_eq!(v6.ip.to_string(), "fd00::2");
    assert_eq!(tx.leases_of(ep).unwrap(), [v4.clone(), v6.clone()]);
    assert!(tx.delete_endpoint(ep).unwrap());
    assert!(tx.leases_of(ep).unwrap().is_empty());
    assert!(tx.leases_in(net).unwrap().is_empty());
    assert!(!tx.delete_endpoint(ep).unwrap());
    // The released address comes back once the range is walked.
    let rest: Vec<_> = (0..4).map(|_| tx.allocate(net, 0, None, None).unwrap().ip).collect();
    assert!(!rest.contains(&v4.ip));
    assert_eq!(tx.allocate(net, 0, None, None).unwrap().ip, v4.ip);
}

#[test]
fn endpoint_details_can_be_updated() {
    let dir = TempDir::new("ep-update");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let net = tx.insert_network(&network("lan", "ens160", &[]), None).unwrap();
    let mut new = endpoint(1, "eth0");
    new.mac = None;
    let id = tx.insert_endpoint(net, &new).unwrap();
    let mac = "02:11:22:33:44:55".parse().unwrap();
    let details = serde_json::json!({ "tap_device": "/dev/tap7" });
    assert!(tx.update_endpoint(id, Some(mac), &details).unwrap());
    let rec = tx.endpoint(id).unwrap().unwrap();
    assert_eq!((rec.mac, rec.details), (Some(mac), details.clone()));
    assert!(tx.update_endpoint(id, Some(mac), &details).unwrap());
    assert!(!tx.update_endpoint(EndpointId(99), None, &details).unwrap());
}

#[test]
fn an_intent_is_listed_in_flight_until_it_is_attached() {
    use nicslice_store::{EndpointState, Owner};
    let dir = TempDir::new("ep-intent");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let net = tx.insert_network(&network("lan", "ens160", &[]), None).unwrap();
    let mut new = endpoint(1, "eth0");
    new.state = EndpointState::Attaching;
    new.owner = Some(Owner { pid: 4242, start: u64::MAX - 1 });
    let id = tx.insert_endpoint(net, &new).unwrap();
    tx.insert_endpoint(net, &endpoint(2, "eth0")).unwrap();
    tx.commit().unwrap();

    let flying = store.endpoints_in_flight().unwrap();
    assert_eq!(flying.len(), 1);
    assert_eq!((flying[0].id, flying[0].state, flying[0].owner), (id, new.state, new.owner));
    assert_eq!(flying[0].netns_cookie, Some(1001));

    let tx = store.write().unwrap();
    assert!(tx.set_endpoint_state(id, EndpointState::Attached, None).unwrap());
    tx.commit().unwrap();
    assert!(store.endpoints_in_flight().unwrap().is_empty());
    let rec = store.endpoint(id).unwrap().unwrap();
    assert_eq!((rec.state, rec.owner), (EndpointState::Attached, None));
}

#[test]
fn marking_an_intent_attached_records_the_link_and_ends_the_intent() {
    use nicslice_store::{EndpointState, Owner};
    let dir = TempDir::new("ep-mark");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let net = tx.insert_network(&network("lan", "ens160", &[]), None).unwrap();
    let mut new = endpoint(1, "eth0");
    new.mac = None;
    new.state = EndpointState::Attaching;
    new.owner = Some(Owner { pid: 4242, start: 7 });
    let id = tx.insert_endpoint(net, &new).unwrap();
    tx.commit().unwrap();

    let mac = "02:11:22:33:44:55".parse().unwrap();
    let details = serde_json::json!({ "kind": "macvlan", "gateways": ["10.0.0.1"] });
    let tx = store.write().unwrap();
    assert!(tx.mark_attached(id, Some(mac), &details).unwrap());
    assert!(!tx.mark_attached(EndpointId(99), None, &details).unwrap());
    tx.commit().unwrap();
    assert!(store.endpoints_in_flight().unwrap().is_empty());
    let rec = store.endpoint(id).unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.owner, rec.mac, rec.details),
        (EndpointState::Attached, None, Some(mac), details)
    );
}

#[test]
fn endpoints_on_a_parent_are_counted_and_found_by_mac() {
    let dir = TempDir::new("ep-parent");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let a = tx.insert_network(&network("a", "ens160", &["10.0.0.0/24"]), None).unwrap();
    let b = tx.insert_network(&network("b", "ens160", &["10.1.0.0/24"]), None).unwrap();
    let c = tx.insert_network(&network("c", "ens192", &["10.2.0.0/24"]), None).unwrap();
    tx.insert_endpoint(a, &endpoint(1, "eth0")).unwrap();
    let mut other = endpoint(2, "eth1");
    other.mac = Some("02:00:00:00:00:02".parse().unwrap());
    tx.insert_endpoint(b, &other).unwrap();
    tx.insert_endpoint(c, &endpoint(3, "eth0")).unwrap();
    tx.commit().unwrap();

    let ens160: IfName = "ens160".parse().unwrap();
    assert_eq!(store.endpoint_count_on_parent(&ens160).unwrap(), 2);
    assert_eq!(store.endpoint_count_on_parent(&"eth9".parse().unwrap()).unwrap(), 0);
    let (ep, net) =
        store.endpoint_with_mac_on_parent(&ens160, other.mac.unwrap()).unwrap().unwrap();
    assert_eq!((ep.ifname.as_str(), net.as_str()), ("eth1", "b"));
    let unused = "02:00:00:00:00:09".parse().unwrap();
    assert!(store.endpoint_with_mac_on_parent(&ens160, unused).unwrap().is_none());
}
