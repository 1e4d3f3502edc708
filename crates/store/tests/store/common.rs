//! Test helpers: a temporary directory removed on drop, and network specs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use nicslice_model::{Driver, MacvlanMode, NetworkSpec, SubnetSpec, ValidNetwork};
use nicslice_store::{EndpointState, NetnsId, NewEndpoint, Store};

pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("nicslice-store-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// A database path below directories that do not exist yet.
    pub fn db(&self) -> PathBuf {
        self.0.join("var/lib/nicslice/state.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn network(name: &str, parent: &str, subnets: &[&str]) -> ValidNetwork {
    let mut spec = NetworkSpec::new(
        name.parse().unwrap(),
        Driver::Macvlan,
        parent.parse().unwrap(),
        MacvlanMode::Bridge,
    );
    spec.subnets = subnets.iter().map(|s| SubnetSpec::new(s.parse().unwrap())).collect();
    spec.validate().unwrap()
}

pub fn endpoint(ino: u64, ifname: &str) -> NewEndpoint {
    NewEndpoint {
        netns: format!("/run/netns/ns{ino}"),
        netns_id: NetnsId { dev: 4, ino },
        netns_cookie: Some(ino.wrapping_add(1000)),
        ifname: ifname.parse().unwrap(),
        mac: Some("02:42:c0:a8:00:0c".parse().unwrap()),
        details: serde_json::json!({ "tap": null }),
        state: EndpointState::Attached,
        owner: None,
    }
}

/// A fresh store in `dir`.
pub fn open(dir: &TempDir) -> Store {
    Store::open(dir.db()).unwrap()
}
