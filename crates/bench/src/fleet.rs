//! `nicslice-bench fleet`: the fleet pool (`--ipam etcd`) beside the local
//! pool, in one run. Four hosts (namespaces whose parents are veths into one
//! bridge, each with its own state database) and an etcd cluster on the lo
//! of a namespace of its own, where the measured `nicslice` runs (with
//! `--host-netns`). Reports attaches (each one allocation) per second across
//! the hosts, several at a time, and the median attach on one host alone,
//! for each pool; then allocations alone per second (the store's call an
//! attach makes, in threads of this process over the hosts' databases:
//! IPAM without the process and the link), and with `--grow N` the first
//! and last hundred of N more such allocations one at a time (allocation
//! must not slow as the pool fills). Needs root and Debian's etcd-server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nicslice_kernel::Netns;
use nicslice_lab::World;
use nicslice_model::IfName;
use nicslice_store::{EndpointState, NetnsId, NetworkRecord, NewEndpoint, Store, StoreRead};
use serde::Serialize;

use crate::cni::stats::Stats;

pub struct Options {
    pub nicslice: PathBuf,
    /// Attaches across the hosts, per pool.
    pub attaches: usize,
    /// How many run at once.
    pub at_once: usize,
    /// Attaches one after the other on one host, per pool.
    pub alone: usize,
    pub block: u32,
    /// Allocations alone one after the other, over the hosts, after the
    /// rest: the first and the last hundred compared (0: not measured).
    pub grow: usize,
    /// Allocations alone (no process, no link), per pool.
    pub allocations: usize,
}

/// Threads making allocations alone, spread over the hosts.
const ALLOCATING_THREADS: usize = 16;

/// Attaches compared at each end of the growth run.
const ENDS: usize = 100;

const HOSTS: usize = 4;

#[derive(Debug, Serialize)]
pub struct PoolReport {
    pub pool: &'static str,
    pub attaches: usize,
    pub at_once: usize,
    pub per_second: f64,
    /// Allocations alone per second across the hosts: the store's call an
    /// attach makes (for the fleet pool with etcd's record of the address),
    /// without the process and the link around it.
    pub allocations_per_second: f64,
    /// Each attach's own time, under that load.
    pub loaded: Stats,
    /// One host, one attach at a time.
    pub alone: Stats,
    /// The growth run, if measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub growth: Option<Growth>,
}

/// `grow` allocations alone one after the other over the hosts, in a pool
/// that fills up: the first hundred beside the last hundred.
#[derive(Debug, Serialize)]
pub struct Growth {
    pub allocations: usize,
    pub first: Stats,
    pub last: Stats,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub pools: Vec<PoolReport>,
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = String::from(
            "pool    attaches  at once  per second  allocations/s  attach under load ms  attach alone ms\n",
        );
        for p in &self.pools {
            out.push_str(&format!(
                "{:<7} {:>8}  {:>7}  {:>10.0}  {:>13.0}  {:<20}  {}\n",
                p.pool,
                p.attaches,
                p.at_once,
                p.per_second,
                p.allocations_per_second,
                p.loaded.show(),
                p.alone.show()
            ));
        }
        for p in &self.pools {
            if let Some(g) = &p.growth {
                out.push_str(&format!(
                    "{}: {} allocations alone one at a time: first {} {}, last {} {} ms ({:.2}x)\n",
                    p.pool,
                    g.allocations,
                    ENDS.min(g.allocations),
                    g.first.show(),
                    ENDS.min(g.allocations),
                    g.last.show(),
                    g.last.median_ms / g.first.median_ms
                ));
            }
        }
        if let [local, fleet] = &self.pools[..] {
            out.push_str(&format!(
                "fleet/local: median attach alone {:.2}x, throughput {:.2}x\n",
                fleet.alone.median_ms / local.alone.median_ms,
                fleet.per_second / local.per_second
            ));
        }
        out
    }
}

/// One etcd member of namespace `netns` (its clients' URL `url`, its
/// peers' on that namespace's lo), killed by its pid and its data removed
/// when dropped.
pub(crate) struct Etcd {
    child: Child,
    dir: PathBuf,
}

impl Etcd {
    pub(crate) fn start(netns: &str, dir: PathBuf, url: &str) -> Result<Etcd> {
        if !Path::new("/usr/bin/etcd").exists() {
            bail!("this benchmark needs Debian's etcd-server (apt-get install etcd-server)");
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::File::create(dir.join("etcd.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "/usr/bin/etcd", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", url, "--advertise-client-urls", url])
            .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd")?;
        Ok(Etcd { child, dir })
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const URL: &str = "http://127.0.0.1:2379";

struct Bench<'a> {
    opts: &'a Options,
    etcd_ns: String,
    /// The same, to enter (the allocating threads reach etcd from there).
    etcd_netns: Netns,
    hosts: Vec<String>,
    kids: Vec<String>,
    states: Vec<PathBuf>,
}

impl Drop for Bench<'_> {
    fn drop(&mut self) {
        for state in &self.states {
            nicslice_store::Store::remove_files(state);
        }
    }
}

impl Bench<'_> {
    /// Runs `nicslice ARGS` as host `h`; its time, or its error.
    fn nicslice(&self, h: usize, args: &[&str]) -> Result<Duration> {
        let started = Instant::now();
        let out = Command::new("ip")
            .args(["netns", "exec", &self.etcd_ns])
            .arg(&self.opts.nicslice)
            .arg("--state")
            .arg(&self.states[h])
            .args(["--host-netns", &self.hosts[h]])
            .args(args)
            .env_remove("NICSLICE_ETCD")
            .output()?;
        let took = started.elapsed();
        if !out.status.success() {
            bail!("host {h}: nicslice {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(took)
    }

    fn attach(&self, h: usize, pool: &str, ifname: &str) -> Result<Duration> {
        self.nicslice(h, &["attach", pool, "--netns", &self.kids[h], "--ifname", ifname])
    }

    /// `attaches` spread over the hosts, `at_once` at a time, then `alone`
    /// on host 0 one after the other.
    fn measure(&self, pool: &'static str, tag: &str) -> Result<PoolReport> {
        let next = AtomicUsize::new(0);
        let times = Mutex::new(Vec::new());
        let failure = Mutex::new(None);
        let started = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..self.opts.at_once {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= self.opts.attaches {
                            return;
                        }
                        match self.attach(i % HOSTS, pool, &format!("{tag}{}", i / HOSTS)) {
                            Ok(took) => times.lock().unwrap().push(took),
                            Err(e) => *failure.lock().unwrap() = Some(e),
                        }
                    }
                });
            }
        });
        let wall = started.elapsed();
        if let Some(e) = failure.into_inner().unwrap() {
            return Err(e);
        }
        let mut alone = Vec::new();
        for i in 0..self.opts.alone {
            alone.push(self.attach(0, pool, &format!("{tag}a{i}"))?);
        }
        let growth = (self.opts.grow > 0).then(|| self.grow(pool)).transpose()?;
        let allocations_per_second = self.allocations(pool)?;
        Ok(PoolReport {
            pool,
            attaches: self.opts.attaches,
            at_once: self.opts.at_once,
            per_second: self.opts.attaches as f64 / wall.as_secs_f64(),
            allocations_per_second,
            loaded: Stats::of(&times.into_inner().unwrap()),
            alone: Stats::of(&alone),
            growth,
        })
    }

    /// `allocations` allocations alone, `ALLOCATING_THREADS` at a time over
    /// the hosts' state databases; per second.
    fn allocations(&self, pool: &str) -> Result<f64> {
        let next = AtomicUsize::new(0);
        let failure = Mutex::new(None);
        let started = Instant::now();
        std::thread::scope(|s| {
            for t in 0..ALLOCATING_THREADS {
                let (next, failure) = (&next, &failure);
                s.spawn(move || {
                    if let Err(e) = self.allocate_some(t % HOSTS, pool, next) {
                        *failure.lock().unwrap() = Some(e);
                    }
                });
            }
        });
        let wall = started.elapsed();
        if let Some(e) = failure.into_inner().unwrap() {
            return Err(e);
        }
        Ok(self.opts.allocations as f64 / wall.as_secs_f64())
    }

    /// Allocations on host `h` until `next` reaches the count: each an
    /// endpoint row (of a namespace that does not exist) and its address,
    /// committed, then for the fleet pool etcd's record of it, as an
    /// attach makes them.
    fn allocate_some(&self, h: usize, pool: &str, next: &AtomicUsize) -> Result<()> {
        let _in_etcd_ns = self.etcd_netns.enter()?;
        let (mut store, network) = open_pool(&self.states[h], pool)?;
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= self.opts.allocations {
                return Ok(());
            }
            allocate_one(&mut store, &network, i)?;
        }
    }

    /// `grow` allocations alone one at a time, round the hosts, each timed.
    fn grow(&self, pool: &str) -> Result<Growth> {
        let _in_etcd_ns = self.etcd_netns.enter()?;
        let mut hosts = Vec::new();
        for state in &self.states {
            hosts.push(open_pool(state, pool)?);
        }
        let mut times = Vec::with_capacity(self.opts.grow);
        for i in 0..self.opts.grow {
            let (store, network) = &mut hosts[i % HOSTS];
            let started = Instant::now();
            // Past the numbers `allocations` uses.
            allocate_one(store, network, GROWTH_FIRST + i)?;
            times.push(started.elapsed());
        }
        let ends = ENDS.min(times.len());
        Ok(Growth {
            allocations: times.len(),
            first: Stats::of(&times[..ends]),
            last: Stats::of(&times[times.len() - ends..]),
        })
    }
}

/// The fake endpoints of the growth run are numbered from here.
const GROWTH_FIRST: usize = 1 << 32;

/// Host state database `state` and its network `pool`.
fn open_pool(state: &Path, pool: &str) -> Result<(Store, NetworkRecord)> {
    let mut store = Store::open(state)?;
    let network = store
        .read()?
        .network_by_name(&pool.parse()?)?
        .with_context(|| format!("no network {pool}"))?;
    Ok((store, network))
}

/// One allocation as an attach makes it: an endpoint row (number `i`, of a
/// namespace that does not exist) and its address, committed; for the
/// fleet pool, 1 allocation in 16 then writes the records noted to etcd.
fn allocate_one(store: &mut Store, network: &NetworkRecord, i: usize) -> Result<()> {
    let pool = network.spec.name.as_str();
    let tx = store.write()?;
    let endpoint = tx.insert_endpoint(
        network.id,
        &NewEndpoint {
            netns: format!("/nonexistent/{pool}{i}"),
            netns_id: NetnsId { dev: 0, ino: i as u64 + 1 },
            netns_cookie: None,
            ifname: IfName::new(pool)?,
            mac: None,
            details: serde_json::Value::Null,
            state: EndpointState::Attached,
            owner: None,
        },
    )?;
    let claim = if network.spec.fleet.is_some() {
        tx.fleet_allocate(network.id, endpoint)?.1
    } else {
        tx.allocate(network.id, 0, None, Some(endpoint))?;
        None
    };
    tx.commit()?;
    if let Some(claim) = claim {
        let recorded = claim.record()?;
        let tx = store.write()?;
        tx.fleet_recorded(&recorded)?;
        tx.commit()?;
    }
    Ok(())
}

pub fn run(opts: &Options) -> Result<Report> {
    let mut world = World::new("benchfleet");
    let switch = world.switch(None)?;
    let etcd_netns = world.netns("etcd")?;
    let etcd_ns = world.name_of("etcd");
    let mut hosts = Vec::new();
    let mut kids = Vec::new();
    let mut states = Vec::new();
    for h in 0..HOSTS {
        hosts.push(world.host(&switch, &format!("h{h}"), "eth0", None)?.netns_name);
        world.netns(&format!("kid{h}"))?;
        kids.push(world.name_of(&format!("kid{h}")));
        states.push(std::env::temp_dir().join(format!("{}-h{h}.db", world.prefix())));
    }
    let _etcd =
        Etcd::start(&etcd_ns, std::env::temp_dir().join(format!("{}-etcd", world.prefix())), URL)?;
    let bench = Bench { opts, etcd_ns, etcd_netns, hosts, kids, states };

    // The local pool and the fleet pool, side by side on each host's eth0.
    let block = opts.block.to_string();
    for h in 0..HOSTS {
        bench.nicslice(
            h,
            &["network", "create", "local", "--parent", "eth0", "--subnet", "10.80.0.0/16"],
        )?;
        let fleet = ["network", "create", "fleet", "--parent", "eth0", "--subnet", "10.81.0.0/16"];
        let fleet =
            [&fleet[..], &["--ipam", "etcd", "--etcd", URL, "--etcd-block", &block]].concat();
        // etcd may still be starting: the first create waits for it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(e) = bench.nicslice(h, &fleet) {
            if Instant::now() > deadline {
                return Err(e.context("etcd did not come up"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let local = bench.measure("local", "l")?;
    let fleet = bench.measure("fleet", "f")?;
    Ok(Report { pools: vec![local, fleet] })
}
