use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Barrier};

use nicslice_store::{Store, StoreRead};

use crate::common::{TempDir, network, open};

#[test]
fn eight_processes_allocate_distinct_addresses_without_busy_errors() {
    const THREADS: usize = 8;
    const EACH: usize = 50;
    let dir = TempDir::new("concurrent");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    let net = tx.insert_network(&network("lan", "ens160", &["10.8.0.0/16"]), None).unwrap();
    tx.commit().unwrap();
    drop(store);

    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (path, barrier) = (dir.db(), Arc::clone(&barrier));
            std::thread::spawn(move || -> Result<Vec<IpAddr>, String> {
                barrier.wait();
                let mut store = Store::open(&path).map_err(|e| format!("open: {e:?}"))?;
                (0..EACH)
                    .map(|_| {
                        let tx = store.write().map_err(|e| format!("begin: {e:?}"))?;
                        let lease =
                            tx.allocate(net, 0, None, None).map_err(|e| format!("alloc: {e:?}"))?;
                        tx.commit().map_err(|e| format!("commit: {e:?}"))?;
                        Ok(lease.ip)
                    })
                    .collect()
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for h in handles {
        let ips = h.join().expect("thread panicked").expect("store error");
        assert_eq!(ips.len(), EACH);
        all.extend(ips);
    }
    assert_eq!(all.len(), THREADS * EACH, "an address was handed out twice");
    let store = open(&dir);
    assert_eq!(store.leases_in(net).unwrap().len(), THREADS * EACH);
}

#[test]
fn concurrent_first_opens_of_a_new_database_all_succeed() {
    let dir = TempDir::new("concurrent-open");
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (path, barrier) = (dir.db(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                Store::open(&path).map(|s| s.list_networks().map(|n| n.len()))
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap().unwrap(), 0);
    }
}

/// Child side of the multi-process test: allocates from the pool named in the
/// environment and prints the addresses. Runs only when spawned by the parent.
#[test]
#[ignore = "spawned by separate_processes_allocate_distinct_addresses"]
fn child_allocator() {
    let Ok(path) = std::env::var("NICSLICE_STORE_TEST_DB") else { return };
    let mut store = Store::open(&path).unwrap();
    let net = store.network_by_name(&"lan".parse().unwrap()).unwrap().unwrap().id;
    for _ in 0..50 {
        let tx = store.write().unwrap();
        let ip = tx.allocate(net, 0, None, None).unwrap().ip;
        tx.commit().unwrap();
        println!("LEASE {ip}");
    }
}

#[test]
fn separate_processes_allocate_distinct_addresses() {
    const PROCESSES: usize = 4;
    let dir = TempDir::new("processes");
    let mut store = open(&dir);
    let tx = store.write().unwrap();
    tx.insert_network(&network("lan", "ens160", &["10.9.0.0/16"]), None).unwrap();
    tx.commit().unwrap();
    drop(store);

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["--exact", "concurrency::child_allocator", "--ignored", "--nocapture"])
                .env("NICSLICE_STORE_TEST_DB", dir.db())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut all = BTreeSet::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ips: Vec<IpAddr> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("LEASE "))
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(ips.len(), 50, "child output: {stdout}");
        all.extend(ips);
    }
    assert_eq!(all.len(), PROCESSES * 50, "an address was handed out twice");
}
