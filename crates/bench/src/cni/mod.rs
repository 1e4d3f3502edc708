//! The CNI benchmark (`nicslice-bench cni`): ADD and DEL of the reference
//! plugins (macvlan + host-local), Podman's netavark where it is installed
//! (its macvlan setup and teardown, which take the same place in a container
//! start), nicslice's (nicslice-macvlan + nicslice-ipam, the given binary
//! under those names) and the lower bound, side by side in one run on the
//! same private namespace set-up; then IPAM at scale (the first and the
//! 10,000th allocation in a /16). A benchmark, not a test: it reports, it
//! does not judge.

pub mod fleet;
mod lower;
mod scale;
pub(crate) mod spawn;
pub(crate) mod stats;

use std::path::{Path, PathBuf};

use nicslice_kernel::{Netns, Route, RouteSocket, netns};
use serde::Serialize;
use serde_json::json;

use anyhow::{Context, Result, anyhow};
pub use stats::Stats;

/// The names the nicslice binary answers to as a CNI plugin.
const PLUGINS: [&str; 3] = ["nicslice-macvlan", "nicslice-ipvlan", "nicslice-ipam"];

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
    pub reference_dir: PathBuf,
    /// The nicslice binary to install as the plugins.
    pub nicslice: PathBuf,
    /// Leases before the allocation measured at scale (0: skip that part).
    pub leases: usize,
    /// Podman's netavark (measured when the file exists).
    pub netavark: PathBuf,
}

/// Where Debian's netavark package puts the binary.
pub const DEFAULT_NETAVARK: &str = "/usr/lib/podman/netavark";

/// ADD and DEL of one contender.
#[derive(Debug, Clone, Serialize)]
pub struct Contender {
    pub name: String,
    pub add: Stats,
    pub del: Stats,
    /// Peak RSS of the plugin's process tree, KiB (0: not a process).
    pub peak_rss_kib: u64,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub contenders: Vec<Contender>,
    pub exec_nothing: Stats,
    pub exec_nothing_static: bool,
    pub kernel_add: Stats,
    pub kernel_del: Stats,
    pub lower_bound_add_ms: f64,
    pub scale: Option<scale::Scale>,
    pub notes: Vec<String>,
}

/// A private world for the benchmark: switch, host with `eth0` and a default
/// route, one container namespace. Deleted on drop.
pub(crate) struct Bench {
    names: Vec<String>,
    /// The switch's namespace (its bridge has 192.168.0.1).
    switch: String,
    pub(crate) host: Netns,
    container: Netns,
    container_path: String,
    pub(crate) tmp: PathBuf,
}

impl Drop for Bench {
    fn drop(&mut self) {
        for n in self.names.iter().rev() {
            let _ = netns::delete_named(n);
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

pub(crate) fn setup() -> Result<Bench> {
    let prefix = format!("nsl-bench-{}", std::process::id());
    // In /run (a tmpfs, where nicslice keeps CNI leases by default and
    // where IPAM state of one boot belongs) for every contender alike.
    let run = Path::new("/run");
    let tmp = if run.is_dir() { run.to_path_buf() } else { std::env::temp_dir() }.join(&prefix);
    std::fs::create_dir_all(&tmp).with_context(|| tmp.display().to_string())?;
    let mut names = Vec::new();
    let mut make = |role: &str| -> Result<Netns> {
        let name = format!("{prefix}-{role}");
        let ns = netns::create_named(&name)?;
        names.push(name);
        let mut s = RouteSocket::open_in(&ns)?;
        if let Some(lo) = s.link_by_name("lo")? {
            s.set_up(lo.index, true)?;
        }
        Ok(ns)
    };
    let sw = make("sw")?;
    let host = make("host")?;
    let container = make("c")?;
    let container_path = format!("{}/{prefix}-c", netns::NETNS_RUN_DIR);
    let mut s = RouteSocket::open_in(&sw)?;
    s.create_simple(nicslice_kernel::SimpleKind::Bridge, "br0", None)?;
    let br = s.require_link("br0", "switch")?;
    s.add_address(br.index, "192.168.0.1/24".parse()?)?;
    s.set_up(br.index, true)?;
    s.create_veth("p-host", "eth0", Some(&host))?;
    let port = s.require_link("p-host", "switch")?;
    s.set_master(port.index, Some(br.index))?;
    s.set_up(port.index, true)?;
    let mut h = RouteSocket::open_in(&host)?;
    let eth0 = h.require_link("eth0", "host")?;
    h.add_address(eth0.index, "192.168.0.254/24".parse()?)?;
    h.set_up(eth0.index, true)?;
    h.add_route(&Route::default_via("192.168.0.1".parse()?, eth0.index))?;
    let switch = format!("{prefix}-sw");
    Ok(Bench { names, switch, host, container, container_path, tmp })
}

/// How a contender is called: the CNI way (verb and container in the
/// environment), or netavark's (`setup`/`teardown NETNS` with its own JSON).
enum Calling {
    Cni { dir: PathBuf },
    Netavark { config: PathBuf },
}

/// One plugin set under test, accumulating its rounds.
struct Plugins {
    name: String,
    program: PathBuf,
    calling: Calling,
    stdin: String,
    adds: Vec<std::time::Duration>,
    dels: Vec<std::time::Duration>,
    rss: u64,
}

impl Plugins {
    fn new(name: &str, dir: &Path, plugin: &str, conf: &serde_json::Value) -> Plugins {
        Plugins {
            name: name.into(),
            program: dir.join(plugin),
            calling: Calling::Cni { dir: dir.into() },
            stdin: conf.to_string(),
            adds: Vec::new(),
            dels: Vec::new(),
            rss: 0,
        }
    }

    /// netavark's macvlan with a static address, as Podman calls it.
    fn netavark(program: &Path, config: &Path) -> Plugins {
        let options = json!({
            "container_id": "bench", "container_name": "bench",
            "networks": {"bench": {"static_ips": ["192.168.0.77"], "interface_name": "eth0"}},
            "network_info": {"bench": {
                "name": "bench",
                "id": "6e6963736c6963652062656e6368206e6574776f726b20666f72206e657461",
                "driver": "macvlan", "network_interface": "eth0",
                "subnets": [{"subnet": "192.168.0.0/24", "gateway": "192.168.0.1"}],
                "ipv6_enabled": false, "internal": false, "dns_enabled": false,
                "ipam_options": {"driver": "host-local"}, "options": {"mode": "bridge"}
            }}
        });
        Plugins {
            name: "netavark macvlan (static IP)".into(),
            program: program.into(),
            calling: Calling::Netavark { config: config.into() },
            stdin: options.to_string(),
            adds: Vec::new(),
            dels: Vec::new(),
            rss: 0,
        }
    }

    /// The arguments and environment of one verb ("ADD" or "DEL") of round `i`.
    fn call(&self, b: &Bench, i: usize, cmd: &str) -> (Vec<String>, Vec<(&'static str, String)>) {
        let path = ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_string());
        match &self.calling {
            Calling::Cni { dir } => (
                Vec::new(),
                vec![
                    ("CNI_COMMAND", cmd.to_string()),
                    ("CNI_CONTAINERID", format!("bench{i}")),
                    ("CNI_NETNS", b.container_path.clone()),
                    ("CNI_IFNAME", "eth0".to_string()),
                    ("CNI_PATH", dir.display().to_string()),
                    path,
                ],
            ),
            Calling::Netavark { config } => {
                let verb = if cmd == "ADD" { "setup" } else { "teardown" };
                let args = ["--config", &config.display().to_string(), verb, &b.container_path]
                    .map(String::from);
                (args.to_vec(), vec![path])
            }
        }
    }

    fn failed(&self, cmd: &str, run: &spawn::Run) -> anyhow::Error {
        anyhow!("{}: {cmd} failed: {}", self.name, run.stdout)
    }

    /// One timed ADD and its DEL, run in the bench's host namespace.
    fn round(&mut self, b: &Bench, i: usize) -> Result<()> {
        let add = self.verb(b, i, "ADD")?;
        self.adds.push(add);
        let del = self.verb(b, i, "DEL")?;
        self.dels.push(del);
        Ok(())
    }

    /// One timed ADD whose link the kernel's own delete then removes (timed,
    /// as the lower bound's DEL), followed by an untimed DEL that releases
    /// the lease and finds the link gone.
    fn round_for_kernel_delete(
        &mut self,
        b: &Bench,
        i: usize,
        kernel: &mut lower::KernelWork,
    ) -> Result<()> {
        let add = self.verb(b, i, "ADD")?;
        self.adds.push(add);
        kernel.delete_plugins_link()?;
        self.verb(b, i, "DEL").map(drop)
    }

    /// Runs verb `cmd` ("ADD" or "DEL") of round `i` in the bench's host
    /// namespace; how long it took, or its failure.
    fn verb(&self, b: &Bench, i: usize, cmd: &str) -> Result<std::time::Duration> {
        let _inside = b.host.enter()?;
        let (args, vars) = self.call(b, i, cmd);
        let run = spawn::timed_with_args(&self.program, &args, &vars, self.stdin.as_bytes())?;
        if !run.ok {
            return Err(self.failed(cmd, &run));
        }
        Ok(run.elapsed)
    }

    /// One untimed ADD and DEL through the RSS probe (see `lower::rss_probe`),
    /// for the peak RSS of the plugin's process tree alone.
    fn rss_round(&mut self, b: &Bench, i: usize, probe: &Path, out: &Path) -> Result<()> {
        let _inside = b.host.enter()?;
        for cmd in ["ADD", "DEL"] {
            let (args, vars) = self.call(b, i, cmd);
            let mut probe_args =
                vec![out.display().to_string(), self.program.display().to_string()];
            probe_args.extend(args);
            let run = spawn::timed_with_args(probe, &probe_args, &vars, self.stdin.as_bytes())?;
            if !run.ok {
                return Err(self.failed(cmd, &run));
            }
            let kib = std::fs::read_to_string(out).ok().and_then(|t| t.trim().parse().ok());
            self.rss = self.rss.max(kib.unwrap_or(0));
        }
        Ok(())
    }

    fn report(&self) -> Contender {
        Contender {
            name: self.name.clone(),
            add: Stats::of(&self.adds),
            del: Stats::of(&self.dels),
            peak_rss_kib: self.rss,
        }
    }
}

fn conf(plugin: &str, ipam: &str, data_dir: &Path) -> serde_json::Value {
    json!({
        "cniVersion": "1.0.0", "name": "bench", "type": plugin, "master": "eth0", "mode": "bridge",
        "ipam": {"type": ipam, "subnet": "192.168.0.0/24", "rangeStart": "192.168.0.100",
                 "rangeEnd": "192.168.0.199", "gateway": "192.168.0.1",
                 "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data_dir}
    })
}

/// Links the nicslice plugins to `binary` in `dir` (the benchmark's own).
fn install(binary: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    for name in PLUGINS {
        let link = dir.join(name);
        // A leftover of a killed run of the same pid, in this run's own directory.
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(binary, &link)
            .with_context(|| format!("{} -> {}", link.display(), binary.display()))?;
    }
    Ok(())
}

/// Runs every contender once per round, interleaved, so that drift of the
/// machine (the kernel's deferred work after deletions, other load) falls
/// on all of them alike, and in an order that rotates (see the loop).
pub fn run(opts: &Options) -> Result<Report> {
    let b = setup()?;
    let mut notes = Vec::new();
    let mut sets = Vec::new();
    let runs = opts.runs.max(1);
    if opts.reference_dir.join("macvlan").exists() {
        let conf = conf("macvlan", "host-local", &b.tmp.join("ref-data"));
        let name = "reference macvlan + host-local";
        sets.push(Plugins::new(name, &opts.reference_dir, "macvlan", &conf));
    } else {
        notes.push(format!("reference plugins not found in {}", opts.reference_dir.display()));
    }
    let bin_dir = b.tmp.join("bin");
    install(&opts.nicslice, &bin_dir)?;
    // Every other round, the kernel's own delete takes the place of this
    // set's DEL, on the link its ADD made (see `lower`).
    let nicslice = sets.len();
    let conf = conf("nicslice-macvlan", "nicslice-ipam", &b.tmp.join("nsl-data"));
    sets.push(Plugins::new(
        "nicslice-macvlan + nicslice-ipam",
        &bin_dir,
        "nicslice-macvlan",
        &conf,
    ));
    if opts.netavark.exists() {
        let config = b.tmp.join("netavark");
        std::fs::create_dir_all(&config).with_context(|| config.display().to_string())?;
        sets.push(Plugins::netavark(&opts.netavark, &config));
        notes.push(
            "netavark is handed its address (Podman allocates it): its ADD has no IPAM work".into(),
        );
    } else {
        notes.push(format!(
            "netavark: not measured ({} not found; Debian's package is netavark)",
            opts.netavark.display()
        ));
    }
    let (nothing, is_static) = lower::nothing_binary(&b.tmp);
    // ru_maxrss of a child spawned from this (bigger) process starts at this
    // process's RSS (exec keeps the high-water mark of the memory it
    // replaces), so peak RSS is read through a small static launcher.
    match lower::rss_probe(&b.tmp) {
        Some(probe) => {
            let out = b.tmp.join("rss");
            for set in &mut sets {
                set.rss_round(&b, runs, &probe, &out)?;
            }
        }
        None => notes.push("peak RSS not measured (gcc, for its probe, is missing)".into()),
    }
    let mut kernel = lower::KernelWork::new(&b.host, &b.container)?;
    let mut exec = Vec::new();
    // Each round runs every contender and both halves of the lower bound,
    // in an order rotated by one each round: what runs just after a DEL
    // shares the vCPUs with the kernel's deferred work of that delete, and
    // each measurement takes that place equally often.
    let slots = sets.len() + 2;
    for i in 0..runs {
        for slot in (0..slots).map(|k| (k + i) % slots) {
            match slot {
                s if s == nicslice && i % 2 == 1 => {
                    sets[s].round_for_kernel_delete(&b, i, &mut kernel)?
                }
                s if s < sets.len() => sets[s].round(&b, i)?,
                s if s == sets.len() => {
                    let _inside = b.host.enter()?;
                    exec.push(spawn::timed(&nothing, &[], b"")?.elapsed);
                }
                _ => kernel.round(&b.container, i)?,
            }
        }
    }
    let exec_nothing = Stats::of(&exec);
    let kernel_add = Stats::of(&kernel.adds);
    let scale = if opts.leases > 0 {
        Some(scale::measure(&b.tmp, &opts.reference_dir, &bin_dir, opts.leases)?)
    } else {
        None
    };
    Ok(Report {
        contenders: sets.iter().map(Plugins::report).collect(),
        exec_nothing,
        exec_nothing_static: is_static,
        kernel_add,
        kernel_del: Stats::of(&kernel.dels),
        lower_bound_add_ms: exec_nothing.median_ms + kernel_add.median_ms,
        scale,
        notes,
    })
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 { format!("{:.2}x", a / b) } else { "-".into() }
}

impl Report {
    /// The report as a text table (medians, then min..max).
    pub fn table(&self) -> String {
        let mut t = String::new();
        let runs = self.contenders.first().map_or(0, |c| c.add.runs);
        t.push_str(&format!("CNI ADD and DEL, {runs} runs each: median (min..max) in ms\n\n"));
        t.push_str(&format!("{:<36} {:<24} {:<24} {}\n", "contender", "ADD", "DEL", "peak RSS"));
        for c in &self.contenders {
            t.push_str(&format!(
                "{:<36} {:<24} {:<24} {:.1} MiB\n",
                c.name,
                c.add.show(),
                c.del.show(),
                c.peak_rss_kib as f64 / 1024.0
            ));
        }
        let kind = if self.exec_nothing_static { "static" } else { "dynamic /bin/true" };
        t.push_str(&format!(
            "{:<36} {:<24}\n",
            format!("exec of a do-nothing ({kind}) binary"),
            self.exec_nothing.show()
        ));
        t.push_str(&format!(
            "{:<36} {:<24} {:<24}\n",
            "kernel work of one ADD / link delete",
            self.kernel_add.show(),
            self.kernel_del.show()
        ));
        t.push_str(&format!(
            "{:<36} {:.2}\n\n",
            "lower bound of ADD (exec + kernel)", self.lower_bound_add_ms
        ));
        for c in &self.contenders {
            t.push_str(&format!(
                "{}: ADD {} the lower bound, DEL {} the kernel's link delete\n",
                c.name,
                ratio(c.add.median_ms, self.lower_bound_add_ms),
                ratio(c.del.median_ms, self.kernel_del.median_ms)
            ));
        }
        if let Some(s) = &self.scale {
            t.push_str(&s.table());
        }
        for n in &self.notes {
            t.push_str(&format!("note: {n}\n"));
        }
        t
    }
}
