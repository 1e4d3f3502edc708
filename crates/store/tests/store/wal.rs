//! The write-ahead log across many short commands: it stays short, so that
//! no process reads back a long one at its start, and nothing is lost.

use nicslice_store::{Store, StoreRead};

use crate::common::{TempDir, endpoint, network, open};

/// Frames in the WAL file at `path` (its length: the header, then a page
/// and its frame header per frame; a WAL started over keeps its length).
fn wal_frames(db: &std::path::Path) -> u64 {
    let wal = db.with_file_name(format!("{}-wal", db.file_name().unwrap().to_str().unwrap()));
    std::fs::metadata(wal).map_or(0, |m| m.len().saturating_sub(32) / (4096 + 24))
}

#[test]
fn many_short_commands_keep_the_wal_short() {
    let dir = TempDir::new("wal-short");
    let net = {
        let mut store = open(&dir);
        let tx = store.write().unwrap();
        let net = tx.insert_network(&network("lan", "ens160", &["10.0.0.0/16"]), None).unwrap();
        tx.commit().unwrap();
        net
    };
    let mut longest = 0;
    for ino in 1..=200 {
        // One connection per command, each the only one: every open reads
        // the WAL back, as a new process does.
        let mut store = Store::open(dir.db()).unwrap();
        let tx = store.write().unwrap();
        let ep = tx.insert_endpoint(net, &endpoint(ino, "eth0")).unwrap();
        tx.allocate(net, 0, None, Some(ep)).unwrap();
        tx.commit().unwrap();
        drop(store);
        longest = longest.max(wal_frames(&dir.db()));
    }
    // 200 commands of several pages each would make a WAL of over a
    // thousand frames; checkpointed at 100, it stays below that and a
    // command's pages.
    assert!(longest <= 120, "the WAL grew to {longest} frames");
    let store = open(&dir);
    assert_eq!(store.endpoints(net).unwrap().len(), 200);
    assert_eq!(store.leases_in(net).unwrap().len(), 200);
}
