//! `nicslice-bench remove`: what removing many endpoints at once costs.
//! Beside `nicslice network rm --force` of N endpoints (each in a namespace
//! of its own), the same N link deletions done in-process on open sockets,
//! once one after another and once concurrently the way `network rm`
//! does them (a thread per link, a socket each in the link's namespace, the
//! link looked up by name, then deleted): the kernel's floor for the job;
//! and that again with each link read whole first (`RTM_GETLINK`, what
//! nicslice does to make sure a link is its own before deleting it).
//! And one link delete on its own, the unit the target is counted in.
//!
//! Why a floor and not only the unit: the kernel deletes a link under the
//! rtnl lock, with an expedited RCU grace period inside it, so concurrent
//! deletions of links in different namespaces queue on that lock; only
//! their waits after it overlap. (A batch, `unregister_netdevice_many`, is
//! what the kernel gives a parent's or a namespace's own removal, not links
//! of many namespaces named one by one.) How far nicslice is from that floor
//! is its own cost; how far the floor is from one delete is the kernel's.

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nicslice_kernel::{MacvlanLinkRequest, Netns, RouteSocket, netns};
use nicslice_model::{Driver, IfName, MacvlanMode};
use serde::Serialize;

use crate::cni::{Stats, setup, spawn};

/// At most this many deleting threads (one per link up to here), as
/// `network rm --force` uses.
const THREADS: usize = 1024;

/// What to run.
pub struct Options {
    pub endpoints: usize,
    pub runs: usize,
    pub nicslice: PathBuf,
}

/// Everything measured, in ms.
#[derive(Debug, Serialize)]
pub struct Report {
    pub endpoints: usize,
    pub one_delete: Stats,
    pub kernel_sequential: Stats,
    pub kernel_concurrent: Stats,
    pub kernel_concurrent_checked: Stats,
    pub nicslice_rm_force: Stats,
}

/// The endpoint namespaces, deleted on drop.
struct Namespaces {
    names: Vec<String>,
    handles: Vec<Netns>,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = netns::delete_named(n);
        }
    }
}

pub fn run(opts: &Options) -> Result<Report> {
    if opts.endpoints == 0 {
        bail!("--endpoints must be at least 1");
    }
    let bench = setup()?;
    let prefix = format!("nsl-rmb-{}", std::process::id());
    let mut spaces = Namespaces { names: Vec::new(), handles: Vec::new() };
    for i in 0..opts.endpoints {
        let name = format!("{prefix}-e{i}");
        spaces.handles.push(netns::create_named(&name)?);
        spaces.names.push(name);
    }
    let mut host = RouteSocket::open_in(&bench.host)?;
    let parent = host
        .link_by_name("eth0")?
        .ok_or_else(|| anyhow!("the benchmark's host namespace has no eth0"))?;
    let req = MacvlanLinkRequest::new(
        Driver::Macvlan,
        IfName::new("eth0")?,
        parent.index,
        MacvlanMode::Bridge,
    );
    let make_all = |host: &mut RouteSocket| -> Result<()> {
        for ns in &spaces.handles {
            host.create_macvlan(&req, Some(ns))?;
        }
        Ok(())
    };

    let (mut one, mut sequential, mut concurrent, mut checked, mut rm) =
        (vec![], vec![], vec![], vec![], vec![]);
    for round in 0..opts.runs.max(1) {
        for _ in 0..5 {
            host.create_macvlan(&req, Some(&spaces.handles[0]))?;
            one.push(delete_in(&spaces.handles[0], Lookup::Index)?);
        }
        make_all(&mut host)?;
        let start = Instant::now();
        for ns in &spaces.handles {
            delete_in(ns, Lookup::Index)?;
        }
        sequential.push(start.elapsed());
        make_all(&mut host)?;
        concurrent.push(delete_concurrently(&spaces.handles, Lookup::Index)?);
        make_all(&mut host)?;
        checked.push(delete_concurrently(&spaces.handles, Lookup::WholeLink)?);
        rm.push(nicslice_rm(opts, &bench, &spaces, round)?);
    }
    Ok(Report {
        endpoints: opts.endpoints,
        one_delete: Stats::of(&one),
        kernel_sequential: Stats::of(&sequential),
        kernel_concurrent: Stats::of(&concurrent),
        kernel_concurrent_checked: Stats::of(&checked),
        nicslice_rm_force: Stats::of(&rm),
    })
}

/// How the link to delete is found.
#[derive(Clone, Copy)]
enum Lookup {
    /// Its index only (an ioctl).
    Index,
    /// The whole link (`RTM_GETLINK`), as a check that it is one's own needs.
    WholeLink,
}

/// Opens a socket in `ns`, finds `eth0` and deletes it: one endpoint's
/// share of `network rm --force`, timed.
fn delete_in(ns: &Netns, lookup: Lookup) -> Result<Duration> {
    let start = Instant::now();
    let mut sock = RouteSocket::open_in(ns)?;
    let index = match lookup {
        Lookup::Index => sock.index_of("eth0")?,
        Lookup::WholeLink => sock.link_by_name("eth0")?.map(|l| l.index),
    };
    sock.delete_link(index.ok_or_else(|| anyhow!("no eth0 to delete"))?)?;
    Ok(start.elapsed())
}

fn delete_concurrently(spaces: &[Netns], lookup: Lookup) -> Result<Duration> {
    let per_thread = spaces.len().div_ceil(THREADS);
    let start = Instant::now();
    thread::scope(|scope| {
        let workers: Vec<_> = spaces
            .chunks(per_thread)
            .map(|batch| {
                scope.spawn(move || batch.iter().try_for_each(|ns| delete_in(ns, lookup).map(drop)))
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().map_err(|_| anyhow!("a thread panicked"))?)
    })?;
    Ok(start.elapsed())
}

/// A network with an endpoint in each namespace, made by the nicslice
/// binary (untimed), then `network rm --force` (timed).
fn nicslice_rm(
    opts: &Options,
    bench: &crate::cni::Bench,
    spaces: &Namespaces,
    round: usize,
) -> Result<Duration> {
    let _inside = bench.host.enter()?;
    let state = bench.tmp.join(format!("rm-state-{round}.db"));
    let vars = [
        ("NICSLICE_STATE", state.display().to_string()),
        ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_string()),
    ];
    let nicslice = |args: &[&str]| -> Result<Duration> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let run = spawn::timed_with_args(&opts.nicslice, &args, &vars, b"")?;
        if !run.ok {
            bail!("nicslice {}: failed", args.join(" "));
        }
        Ok(run.elapsed)
    };
    nicslice(&["network", "create", "big", "--parent", "eth0", "--subnet", "10.77.0.0/16"])?;
    for name in &spaces.names {
        let path = format!("{}/{name}", netns::NETNS_RUN_DIR);
        nicslice(&["attach", "big", "--netns", &path]).context("attach")?;
    }
    nicslice(&["network", "rm", "big", "--force"])
}

impl Report {
    pub fn table(&self) -> String {
        let n = self.endpoints;
        let one = self.one_delete.median_ms;
        let ratio = |s: &Stats| s.median_ms / one;
        let mut out = format!(
            "Removing {n} endpoints (each in its own namespace): median (min..max) in ms\n\n"
        );
        let rows = [
            ("one link delete (in-process)", &self.one_delete),
            ("kernel, one after another", &self.kernel_sequential),
            ("kernel, concurrently (the floor)", &self.kernel_concurrent),
            ("the same, each link read first", &self.kernel_concurrent_checked),
            ("nicslice network rm --force", &self.nicslice_rm_force),
        ];
        for (name, s) in rows {
            out += &format!("{name:34} {:26} {:6.2}x one delete\n", s.show(), ratio(s));
        }
        out += &format!(
            "\nnicslice network rm --force: {:.2}x the kernel's concurrent floor\n",
            self.nicslice_rm_force.median_ms / self.kernel_concurrent.median_ms
        );
        out
    }
}
