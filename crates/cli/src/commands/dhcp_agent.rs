//! `nicslice dhcp-agent`: the engine's renewal pass in a loop, sleeping
//! until the next lease is due (at most 30 s, so that leases attached
//! meanwhile are seen in time). One agent per state database, held by a
//! lock file beside it.

use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use nicslice_engine::dhcp::RenewReport;

use super::Globals;
use crate::args::DhcpAgentArgs;
use crate::output;

/// The longest sleep between passes.
const MAX_SLEEP: Duration = Duration::from_secs(30);

pub fn run(g: &Globals, a: &DhcpAgentArgs) -> anyhow::Result<()> {
    if !(a.timeout > 0.0 && a.timeout <= 600.0) {
        bail!("--timeout {}: give a number of seconds above 0, at most 600", a.timeout);
    }
    let timeout = Duration::from_secs_f64(a.timeout);
    let mut engine = g.engine()?;
    let mut lock_path = g.state.clone().into_os_string();
    lock_path.push(".dhcp-agent.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .mode(0o600)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.to_string_lossy()))?;
    if lock.try_lock().is_err() {
        bail!(
            "another dhcp-agent is running for {} (it holds {})",
            g.state.display(),
            lock_path.to_string_lossy()
        );
    }
    let mut force = a.now;
    loop {
        let report = engine.renew_dhcp_leases(force, timeout)?;
        force = false;
        if g.json {
            output::json(&report)?;
        } else {
            print_report(&report);
        }
        if a.once {
            return Ok(());
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let until_due = report.next_due.map_or(MAX_SLEEP, |at| {
            Duration::from_secs(u64::try_from(at - now).unwrap_or(0).max(1))
        });
        std::thread::sleep(until_due.min(MAX_SLEEP));
    }
}

fn print_report(r: &RenewReport) {
    for line in &r.renewed {
        println!("renewed {line}");
    }
    for line in &r.lost {
        println!("lost {line}");
    }
    for line in &r.failed {
        eprintln!("nicslice dhcp-agent: {line}; will try again");
    }
}
