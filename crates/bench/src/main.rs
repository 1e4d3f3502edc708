//! `nicslice-bench`: the workspace's benchmarks, a development tool that is
//! not part of the product (the `nicslice` binary users install contains
//! none of it). It measures the release `nicslice` binary of its own target
//! directory, the one `cargo build --release` (or README's `cargo run
//! --release -p nicslice`) made beside it:
//!
//! ```text
//! cargo build --release -p nicslice
//! cargo run --release -p nicslice-bench -- cni [--runs N] [--leases N] [--netavark PATH]
//! ```
//!
//! `cni` (module [`cni`]) times CNI ADD and DEL of the reference plugins,
//! netavark, nicslice's plugins and the lower bound side by side in private
//! namespaces (needs root). `remove` (module [`remove`]) times `nicslice
//! network rm --force` of many endpoints beside the kernel's own floor for
//! deleting their links. `fleet` (module [`fleet`]) measures the fleet
//! pool on etcd beside the local pool (needs root and etcd-server);
//! `cni-fleet` (module [`cni::fleet`]) a CNI ADD and DEL with the fleet
//! pool beside nicslice-ipam's local range.

mod cni;
mod fleet;
mod remove;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "nicslice-bench", about = "nicslice's benchmarks (a development tool)")]
struct Cli {
    /// Print the report as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Time CNI ADD and DEL of the reference plugins, netavark, nicslice's
    /// and the lower bound side by side in private namespaces.
    Cni(CniArgs),
    /// Time `nicslice network rm --force` of N endpoints beside one link
    /// delete and the kernel's floor for deleting N links concurrently.
    Remove(RemoveArgs),
    /// Attaches per second across four hosts and the median attach, with
    /// the fleet pool on etcd beside the local pool.
    Fleet(FleetArgs),
    /// CNI ADD and DEL with nicslice-ipam's fleet pool beside its local
    /// range, interleaved, the host holding a block.
    CniFleet(CniFleetArgs),
}

#[derive(Debug, Args)]
struct CniFleetArgs {
    /// ADD/DEL pairs per pool.
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Addresses per block of the fleet pool.
    #[arg(long, default_value_t = 16)]
    block: u32,
    /// The nicslice binary measured [default: as for `cni`].
    #[arg(long)]
    nicslice: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RemoveArgs {
    /// Endpoints, each in a namespace of its own.
    #[arg(long, default_value_t = 100)]
    endpoints: usize,
    /// Rounds (each makes and removes all the endpoints three times).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The nicslice binary measured [default: as for `cni`].
    #[arg(long)]
    nicslice: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct FleetArgs {
    /// Attaches spread over the four hosts, per pool.
    #[arg(long, default_value_t = 400)]
    attaches: usize,
    /// How many attaches run at once.
    #[arg(long, default_value_t = 64)]
    at_once: usize,
    /// Attaches on one host one after the other, per pool (the median attach).
    #[arg(long, default_value_t = 50)]
    alone: usize,
    /// Addresses per block of the fleet pool.
    #[arg(long, default_value_t = 16)]
    block: u32,
    /// Allocations alone one after the other over the hosts after the rest,
    /// per pool, the first hundred compared with the last (0: none; 10000
    /// checks that allocation does not slow as the pool fills).
    #[arg(long, default_value_t = 0)]
    grow: usize,
    /// Allocations alone (the store's call, no process, no link) across the
    /// hosts, per pool.
    #[arg(long, default_value_t = 2000)]
    allocations: usize,
    /// The nicslice binary measured [default: `nicslice` beside this program].
    #[arg(long)]
    nicslice: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CniArgs {
    /// ADD/DEL pairs per contender.
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Directory of the reference plugins (Debian's containernetworking-plugins).
    #[arg(long, default_value = "/usr/lib/cni")]
    reference: PathBuf,
    /// Leases before the IPAM allocation measured at scale (0 skips that part).
    #[arg(long, default_value_t = 10_000)]
    leases: usize,
    /// Podman's netavark, measured beside the CNI plugins when present.
    #[arg(long, default_value = cni::DEFAULT_NETAVARK)]
    netavark: PathBuf,
    /// The nicslice binary measured [default: `nicslice` beside this program,
    /// the release build of the same target directory].
    #[arg(long)]
    nicslice: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli) {
        eprintln!("nicslice-bench: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Cni(args) => {
            let nicslice = measured_binary(args.nicslice)?;
            let opts = cni::Options {
                runs: args.runs,
                reference_dir: args.reference,
                nicslice,
                leases: args.leases,
                netavark: args.netavark,
            };
            let report = cni::run(&opts)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
        }
        Command::Remove(args) => {
            let nicslice = measured_binary(args.nicslice)?;
            let opts = remove::Options { endpoints: args.endpoints, runs: args.runs, nicslice };
            let report = remove::run(&opts)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
        }
        Command::Fleet(args) => {
            let opts = fleet::Options {
                nicslice: measured_binary(args.nicslice)?,
                attaches: args.attaches,
                at_once: args.at_once,
                alone: args.alone,
                block: args.block,
                grow: args.grow,
                allocations: args.allocations,
            };
            let report = fleet::run(&opts)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
        }
        Command::CniFleet(args) => {
            let opts = cni::fleet::Options {
                runs: args.runs,
                nicslice: measured_binary(args.nicslice)?,
                block: args.block,
            };
            let report = cni::fleet::run(&opts)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
        }
    }
    Ok(())
}

/// The nicslice binary to measure: `given`, or the release build beside
/// this program; an error if it is not there.
fn measured_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let nicslice = match given {
        Some(path) => path,
        None => beside_this_program("nicslice")?,
    };
    if !nicslice.is_file() {
        bail!(
            "{} not found: build the binary measured first with \
             `cargo build --release -p nicslice`",
            nicslice.display()
        );
    }
    eprintln!("nicslice-bench: measuring {}", describe(&nicslice));
    Ok(nicslice)
}

/// `name` in the directory of this program: for `cargo run --release -p
/// nicslice-bench`, the release build of the same target directory.
fn beside_this_program(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find this program's own path")?;
    Ok(me.with_file_name(name))
}

/// The binary's path and age, so that a stale build is not measured unseen.
fn describe(path: &Path) -> String {
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map(|d| format!(" (built {} min ago)", d.as_secs() / 60))
        .unwrap_or_default();
    format!("{}{age}", path.display())
}
