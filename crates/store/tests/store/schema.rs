use nicslice_store::{SCHEMA_VERSION, Store, StoreError, StoreRead};

use crate::common::{TempDir, network, open};

#[test]
fn open_creates_directories_and_sets_the_pragmas() {
    let dir = TempDir::new("pragmas");
    let store = open(&dir);
    assert!(dir.db().exists());
    drop(store);
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn reopening_keeps_the_data() {
    let dir = TempDir::new("reopen");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    tx.insert_network(&network("lan", "ens160", &["10.0.0.0/24"]), Some(false)).unwrap();
    tx.commit().unwrap();
    drop(store);
    let store = open(&dir);
    let nets = store.list_networks().unwrap();
    assert_eq!(nets.len(), 1);
    assert_eq!(nets[0].promisc_prev, Some(false));
}

#[test]
fn a_database_from_a_newer_nicslice_is_refused() {
    let dir = TempDir::new("newer");
    drop(open(&dir));
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    drop(conn);
    let err = Store::open(dir.db()).err().expect("newer schema must be refused");
    assert!(matches!(err, StoreError::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1));
    let msg = err.to_string();
    assert!(msg.contains(&format!("newer than version {SCHEMA_VERSION}")), "{msg}");
    assert!(msg.contains("upgrade nicslice"), "{msg}");
}

#[test]
fn an_unopenable_path_says_which() {
    let dir = TempDir::new("badpath");
    let blocker = dir.db().parent().unwrap().parent().unwrap().to_owned();
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"a file where a directory should be").unwrap();
    let err = Store::open(dir.db()).err().expect("must fail");
    assert!(matches!(err, StoreError::UnsafePath { ref path, .. } if *path == blocker), "{err:?}");
    assert!(err.to_string().contains("a regular file, not a directory"), "{err}");
}

#[test]
fn an_uncommitted_write_rolls_back() {
    let dir = TempDir::new("rollback");
    let mut store = open(&dir);
    {
        let tx = store.write().unwrap();
        tx.insert_network(&network("lan", "ens160", &[]), None).unwrap();
        assert_eq!(tx.list_networks().unwrap().len(), 1, "a write sees itself");
    }
    assert!(store.list_networks().unwrap().is_empty());
}

#[test]
fn owned_links_are_recorded_and_forgotten() {
    let dir = TempDir::new("owned");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let link = nicslice_store::OwnedLink {
        name: "eth0.50".into(),
        kind: "vlan".into(),
        lower: Some("eth0".into()),
        vlan_id: Some(50),
    };
    tx.insert_owned_link(&link).unwrap();
    assert_eq!(tx.owned_link("eth0.50").unwrap(), Some(link));
    assert_eq!(tx.owned_link("eth0").unwrap(), None);
    assert!(tx.delete_owned_link("eth0.50").unwrap());
    assert!(!tx.delete_owned_link("eth0.50").unwrap());
}

#[test]
fn a_version_2_database_is_upgraded_and_its_endpoints_read_as_attached() {
    let dir = TempDir::new("upgrade2");
    std::fs::create_dir_all(dir.db().parent().unwrap()).unwrap();
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    // The tables of schema 2 that an endpoint row needs, as nicslice 2 made them.
    conn.execute_batch(
        "CREATE TABLE networks (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, \
           parent TEXT NOT NULL, spec_json TEXT NOT NULL, promisc_prev INTEGER NULL, \
           created_at INTEGER NOT NULL);
         CREATE TABLE endpoints (id INTEGER PRIMARY KEY, network_id INTEGER NOT NULL \
           REFERENCES networks(id) ON DELETE RESTRICT, netns TEXT NOT NULL, \
           netns_dev INTEGER NOT NULL, netns_ino INTEGER NOT NULL, ifname TEXT NOT NULL, \
           mac TEXT NULL, details_json TEXT NOT NULL, created_at INTEGER NOT NULL, \
           UNIQUE (netns_dev, netns_ino, ifname));
         PRAGMA user_version = 2;",
    )
    .unwrap();
    let spec = serde_json::to_string(network("lan", "ens160", &[]).spec()).unwrap();
    conn.execute(
        "INSERT INTO networks VALUES (1, 'lan', 'ens160', ?1, NULL, 0)",
        rusqlite::params![spec],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO endpoints VALUES (7, 1, '/run/netns/a', 4, 4026532000, 'eth0', NULL, 'null', 0)",
        [],
    )
    .unwrap();
    drop(conn);

    let store = open(&dir);
    let ep = store.endpoint(nicslice_store::EndpointId(7)).unwrap().expect("the row survives");
    assert_eq!(ep.state, nicslice_store::EndpointState::Attached);
    assert_eq!((ep.netns_cookie, ep.owner), (None, None));
    assert!(store.endpoints_in_flight().unwrap().is_empty());
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}
