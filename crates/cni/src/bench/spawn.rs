//! Timed plugin runs for the benchmark: spawn in the calling thread's
//! namespace with the CNI variables and stdin, collect stdout, and reap with
//! `wait4` for the peak RSS of the process tree (the plugin and the IPAM
//! plugin it waited for).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{CniError, Code, Result};

/// One timed run.
#[derive(Debug, Clone)]
pub struct Run {
    pub elapsed: Duration,
    pub ok: bool,
    pub stdout: String,
    /// `ru_maxrss` in KiB.
    pub max_rss_kib: u64,
}

/// Runs `program` with exactly `vars` as environment and `stdin`.
pub fn timed(program: &Path, vars: &[(&str, String)], stdin: &[u8]) -> Result<Run> {
    let io = |e: std::io::Error| CniError::new(Code::Io, format!("{}: {e}", program.display()));
    let start = Instant::now();
    let mut child = Command::new(program)
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io)?;
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin);
    }
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| CniError::new(Code::Io, "pid out of range"))?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all zeros is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unreaped child (std never waited for it); the
    // pointers are to live locals of the right types.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    if reaped != pid {
        return Err(io(std::io::Error::last_os_error()));
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok(Run { elapsed, ok, stdout, max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0) })
}
