//! Where `nicslice dhcp-agent` is found and how it is started on demand.
//! One agent per state database, held by a lock file beside it
//! (`STATE.dhcp-agent.lock`, holding the agent's pid); the first DHCP
//! endpoint, from `attach` or from the CNI plugin, starts one when none
//! holds the lock. The agent's loop is the CLI's (`dhcp-agent`); this owns
//! only its lock and its start, which both front ends share.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The agent's lock file for the state database at `state`.
pub fn lock_path(state: &Path) -> PathBuf {
    let mut path: OsString = state.as_os_str().to_owned();
    path.push(".dhcp-agent.lock");
    PathBuf::from(path)
}

/// Opens (creating it) the agent's lock file of `state`.
pub fn open_lock(state: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(lock_path(state))
}

/// Whether an agent holds the lock of `state`; an error when the lock file
/// cannot be opened (then no agent can run either).
pub fn is_running(state: &Path) -> std::io::Result<bool> {
    let lock = open_lock(state)?;
    Ok(lock.try_lock().is_err())
}

/// Starts `nicslice dhcp-agent --exit-when-idle` for `state` unless one
/// runs, from this very executable (the `nicslice` binary, whatever name it
/// was run under: argv[0] says `nicslice`, so a plugin copied rather than
/// linked still starts the agent, not itself). `host_netns` is passed on as
/// `--host-netns`. Best effort: an error says why it could not be started.
pub fn ensure_running(state: &Path, host_netns: Option<&str>) -> std::io::Result<()> {
    if is_running(state)? {
        return Ok(());
    }
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg0("nicslice").arg("--state").arg(state);
    if let Some(host) = host_netns {
        cmd.arg("--host-netns").arg(host);
    }
    cmd.args(["dhcp-agent", "--exit-when-idle"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a Ctrl-C at the terminal that ran
        // `attach` does not reach it.
        .process_group(0)
        .spawn()
        .map(drop)
}

/// Waits up to `wait` for an agent to hold the lock of `state`.
pub fn wait_running(state: &Path, wait: Duration) -> std::io::Result<bool> {
    let deadline = Instant::now() + wait;
    loop {
        if is_running(state)? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
