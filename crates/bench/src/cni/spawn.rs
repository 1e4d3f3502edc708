//! Timed plugin runs for the benchmark: spawn in the calling thread's
//! namespace with the CNI variables and stdin, collect stdout, reap. (Peak
//! RSS is not read here: see `lower::rss_probe` for why.)

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// One timed run.
#[derive(Debug, Clone)]
pub struct Run {
    pub elapsed: Duration,
    pub ok: bool,
    pub stdout: String,
}

/// Runs `program` with exactly `vars` as environment and `stdin`.
pub fn timed(program: &Path, vars: &[(&str, String)], stdin: &[u8]) -> Result<Run> {
    timed_with_args(program, &[], vars, stdin)
}

/// [`timed`] with command-line arguments (netavark takes its verb there).
pub fn timed_with_args(
    program: &Path,
    args: &[String],
    vars: &[(&str, String)],
    stdin: &[u8],
) -> Result<Run> {
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| program.display().to_string())?;
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin);
    }
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    let status = child.wait().with_context(|| program.display().to_string())?;
    let elapsed = start.elapsed();
    Ok(Run { elapsed, ok: status.success(), stdout })
}
