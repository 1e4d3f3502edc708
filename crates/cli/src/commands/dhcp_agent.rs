//! `nicslice dhcp-agent`: the engine's renewal pass in a loop, sleeping
//! until the next lease is due or the next try for a lost one (at most
//! 30 s, so that leases attached meanwhile are seen in time). One agent per state database, held by a
//! lock file beside it (`STATE.dhcp-agent.lock`, holding the agent's pid;
//! `nicslice_engine::dhcp::agent`). `attach` and the CNI plugin start one
//! when a DHCP endpoint was made and none runs.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use nicslice_engine::dhcp::{RenewReport, agent};

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
    let path = agent::lock_path(&g.state);
    let mut lock =
        agent::open_lock(&g.state).with_context(|| format!("opening {}", path.display()))?;
    if lock.try_lock().is_err() {
        bail!(
            "another dhcp-agent is running for {} (it holds {})",
            g.state.display(),
            path.display()
        );
    }
    // Who holds it, for a service manager or a test to stop it by pid.
    lock.set_len(0)
        .and_then(|()| writeln!(lock, "{}", std::process::id()))
        .with_context(|| format!("writing {}", path.display()))?;
    let mut force = a.now;
    loop {
        let report = engine.renew_dhcp_leases(force, timeout)?;
        force = false;
        if g.json {
            output::json(&report)?;
        } else {
            print_report(&report);
        }
        if a.once || (a.exit_when_idle && report.next_due.is_none()) {
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
    for line in &r.replaced {
        println!("replaced {line}");
    }
    for line in &r.reacquired {
        println!("reacquired {line}");
    }
    for line in &r.lost {
        println!("lost {line}");
    }
    for line in &r.failed {
        eprintln!("nicslice dhcp-agent: {line}; will try again");
    }
}

/// Starts an agent for this state database unless one runs (see
/// `nicslice_engine::dhcp::agent`). Best effort: the endpoint is made either
/// way, and a failure only warns (the lease then lasts until its expiry
/// unless an agent is started).
pub fn ensure_running(g: &Globals) {
    if let Err(e) = agent::ensure_running(&g.state, g.host_netns.as_deref()) {
        tracing::warn!("could not start nicslice dhcp-agent: {e}; run it to renew DHCP leases");
    }
}
