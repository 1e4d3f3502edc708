//! `nicslice-bench cni-fleet`: CNI ADD and DEL of nicslice-macvlan with
//! nicslice-ipam on the fleet pool (`"store": {"etcd": ...}`) beside the
//! same plugins on nicslice-ipam's local range (the LMDB lease book), in
//! one run, interleaved, on the `cni` benchmark's namespaces (see
//! [`setup`](super::setup)) with one etcd member in the switch's namespace.
//! The host holds a block of the fleet pool throughout (a first ADD and DEL,
//! not timed, leases it): issue 14's target is the fleet ADD's median
//! within 1.2 times the local one's. Each fleet ADD notes its record for
//! the host's batch, and its DEL trades that note (the record was never
//! written) for a give-back: the ADD of every 16th round writes the batch
//! to etcd, and shows in the maximum.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

use super::{Bench, Contender, Plugins, conf, install, ratio, setup};
use crate::fleet::Etcd;

/// Where etcd listens: the switch's bridge, which the host reaches over eth0.
const URL: &str = "http://192.168.0.1:2379";

pub struct Options {
    pub runs: usize,
    pub nicslice: PathBuf,
    /// Addresses per block of the fleet pool.
    pub block: u32,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub fleet: Contender,
    pub local: Contender,
    /// Median fleet ADD over median local ADD.
    pub add_ratio: f64,
    pub del_ratio: f64,
    /// /proc/loadavg when the run ended.
    pub load: String,
}

pub fn run(opts: &Options) -> Result<Report> {
    let b = setup()?;
    let bin_dir = b.tmp.join("bin");
    install(&opts.nicslice, &bin_dir)?;
    let _etcd = Etcd::start(&b.switch, b.tmp.join("etcd"), URL)?;
    let local = conf("nicslice-macvlan", "nicslice-ipam", &b.tmp.join("nsl-data"));
    let mut fleet = local.clone();
    let ipam = fleet["ipam"].as_object_mut().context("ipam")?;
    ipam.remove("dataDir");
    ipam.insert("rangeStart".into(), json!("192.168.0.2"));
    ipam.insert("rangeEnd".into(), json!("192.168.0.99"));
    let state = b.tmp.join("fleet-state.db");
    ipam.insert(
        "store".into(),
        json!({"etcd": {"endpoints": [URL], "blockSize": opts.block, "state": state}}),
    );
    let name = "nicslice-macvlan + nicslice-ipam";
    let mut sets = [
        Plugins::new(&format!("{name}, fleet pool"), &bin_dir, "nicslice-macvlan", &fleet),
        Plugins::new(&format!("{name}, local range"), &bin_dir, "nicslice-macvlan", &local),
    ];
    warm_up(&b, &mut sets)?;
    for i in 0..opts.runs.max(1) {
        // Alternately first, so that what follows a DEL falls on both alike.
        for s in [i % 2, 1 - i % 2] {
            sets[s].round(&b, i)?;
        }
    }
    let [fleet, local] = sets.map(|s| s.report());
    Ok(Report {
        add_ratio: fleet.add.median_ms / local.add.median_ms,
        del_ratio: fleet.del.median_ms / local.del.median_ms,
        fleet,
        local,
        load: std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string(),
    })
}

/// One untimed ADD and DEL of each set: the fleet pool's takes the host's
/// lease and a block (waiting for etcd to come up), the local one makes its
/// lease book.
fn warm_up(b: &Bench, sets: &mut [Plugins]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    for set in sets.iter_mut() {
        while let Err(e) = set.round(b, usize::MAX) {
            if Instant::now() > deadline {
                return Err(e.context("the first ADD and DEL (is etcd up?)"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        set.adds.clear();
        set.dels.clear();
    }
    Ok(())
}

impl Report {
    pub fn table(&self) -> String {
        let runs = self.fleet.add.runs;
        let mut t = format!(
            "CNI ADD and DEL, {runs} runs each, interleaved, the host holding a block: median (min..max) in ms\n\n"
        );
        t.push_str(&format!("{:<48} {:<24} {}\n", "contender", "ADD", "DEL"));
        for c in [&self.fleet, &self.local] {
            t.push_str(&format!("{:<48} {:<24} {}\n", c.name, c.add.show(), c.del.show()));
        }
        t.push_str(&format!(
            "\nfleet / local: ADD {}, DEL {} (issue 14's target: ADD within 1.20x)\nload average at the end: {}\n",
            ratio(self.fleet.add.median_ms, self.local.add.median_ms),
            ratio(self.fleet.del.median_ms, self.local.del.median_ms),
            self.load
        ));
        t
    }
}
