//! nicslice's CNI plugins (spec 0.3.0 to 1.1.0): `nicslice-macvlan`,
//! `nicslice-ipvlan` and the IPAM plugin `nicslice-ipam`. The one `nicslice`
//! binary becomes one of them when run under its name ([`Plugin::from_argv0`])
//! and calls [`main`]: read the environment and stdin, run the verb, print
//! the result or the spec's error JSON, return the exit code.
//!
//! This crate speaks CNI: environment, configuration keys, result versions,
//! error codes and IPAM delegation. The link work is the engine's
//! (`nicslice_engine::endpoint`, the realize, teardown and check that
//! `nicslice attach` runs too); leases are the store's.

pub mod conf;
pub mod delegate;
pub mod env;
pub mod error;
pub mod ipam;
pub mod link;
pub mod linkconf;
pub mod result;
pub mod version;

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;

use nicslice_engine::Faults;

use crate::conf::{NetConf, peek_version};
use crate::env::{CallEnv, Verb};
use crate::error::{CniError, Code, Result};
use crate::linkconf::Family;
use crate::version::{CniVersion, version_json};

/// The plugins this binary can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    Macvlan,
    Ipvlan,
    Ipam,
}

impl Plugin {
    pub const ALL: [Plugin; 3] = [Plugin::Macvlan, Plugin::Ipvlan, Plugin::Ipam];

    /// The file name the plugin is installed under.
    pub fn name(self) -> &'static str {
        match self {
            Plugin::Macvlan => "nicslice-macvlan",
            Plugin::Ipvlan => "nicslice-ipvlan",
            Plugin::Ipam => "nicslice-ipam",
        }
    }

    /// The plugin `argv[0]` names (by its file name), if any.
    pub fn from_argv0(arg0: &OsStr) -> Option<Plugin> {
        let file = Path::new(arg0).file_name()?;
        Plugin::ALL.into_iter().find(|p| OsStr::new(p.name()) == file)
    }
}

/// What one call prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub exit_code: i32,
}

/// Runs the plugin on the process's environment and stdin, writes stdout,
/// and returns the exit code for the process.
pub fn main(plugin: Plugin) -> i32 {
    let read = read_all(0);
    let outcome = match (read, CallEnv::from_process()) {
        (Err(e), _) => failure(&CniError::new(Code::Io, format!("cannot read stdin: {e}")), None),
        (Ok(stdin), Err(e)) => failure(&e, peek_version(&stdin).as_deref()),
        (Ok(stdin), Ok(env)) => run(plugin, &env, stdin),
    };
    // One write of the whole answer, unbuffered: nothing is left to flush
    // at exit (the binary ends a plugin call with `_exit`).
    let _ = standard_fd(1).write_all(outcome.stdout.as_bytes());
    outcome.exit_code
}

/// Everything readable from descriptor `fd` until its end. Room for a
/// typical configuration first: one read, then the one that sees the end.
/// Straight from the descriptor: std's `stdin()` would set up a locked,
/// buffered reader, and `read_to_end` on a file asks its size and position
/// first (two system calls for a pipe, which has neither). Into spare
/// capacity, not zeroes: zeroing would touch every page of the buffer, and
/// each first touch is a page fault.
fn read_all(fd: std::os::fd::RawFd) -> std::io::Result<Vec<u8>> {
    let mut data: Vec<u8> = Vec::with_capacity(8192);
    loop {
        if data.len() == data.capacity() {
            data.reserve(data.capacity());
        }
        let spare = data.spare_capacity_mut();
        // SAFETY: read writes at most `spare.len()` bytes into the spare
        // capacity of `data`; the length grows by what it wrote.
        let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
        match n {
            0 => return Ok(data),
            // SAFETY: the first n bytes of the spare capacity were just written.
            n if n > 0 => unsafe { data.set_len(data.len() + n as usize) },
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Standard descriptor `fd` as a file that is not closed when dropped.
fn standard_fd(fd: std::os::fd::RawFd) -> std::mem::ManuallyDrop<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: 0 and 1 are open for the whole process (the binary's entry
    // opens /dev/null on any that is closed); ManuallyDrop never closes them.
    std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) })
}

fn failure(e: &CniError, version: Option<&str>) -> Outcome {
    let version = version.and_then(|v| CniVersion::parse(v).ok()).unwrap_or(CniVersion::LATEST);
    Outcome { stdout: e.to_json(version.as_str()), exit_code: 1 }
}

/// Runs one call: testable without a process.
pub fn run(plugin: Plugin, env: &CallEnv, stdin: Vec<u8>) -> Outcome {
    // The version asked for is read on its own only where the full parse has
    // not happened or failed: a successful call takes it from the parse.
    let verb = match Verb::parse(&env.command) {
        Ok(v) => v,
        Err(e) => return failure(&e, peek_version(&stdin).as_deref()),
    };
    if verb == Verb::Version {
        return Outcome { stdout: version_json(peek_version(&stdin).as_deref()), exit_code: 0 };
    }
    // A copy (a few hundred bytes) keeps the input for an error's version.
    let net = match NetConf::parse(stdin.clone()) {
        Ok(n) => n,
        Err(e) => return failure(&e, peek_version(&stdin).as_deref()),
    };
    match dispatch(plugin, verb, &net, env) {
        Ok(Some(result)) => Outcome { stdout: result.to_json(net.version), exit_code: 0 },
        Ok(None) => Outcome { stdout: String::new(), exit_code: 0 },
        Err(e) => Outcome { stdout: e.to_json(net.version.as_str()), exit_code: 1 },
    }
}

fn dispatch(
    plugin: Plugin,
    verb: Verb,
    net: &NetConf,
    env: &CallEnv,
) -> Result<Option<result::CniResult>> {
    match verb {
        Verb::Check if !net.version.has_check() => {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                format!("config version {} does not allow CHECK (0.4.0 and newer do)", net.version),
            ));
        }
        Verb::Status | Verb::Gc if !net.version.has_status_and_gc() => {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "config version {} does not allow {verb:?} (1.1.0 and newer do)",
                    net.version
                ),
            ));
        }
        _ => {}
    }
    env.require_for(verb)?;
    if verb == Verb::Del && env.del_of_the_impossible(&net.name) {
        return Ok(None);
    }
    if matches!(verb, Verb::Add | Verb::Check) && net.name.len() > env::MAX_NAME_LEN {
        return Err(CniError::config(format!(
            "the network name is {} bytes long; at most {} are supported",
            net.name.len(),
            env::MAX_NAME_LEN
        )));
    }
    let faults = Faults::from_env().map_err(|e| CniError::config(e.to_string()))?;
    let family = match plugin {
        Plugin::Ipam => return ipam::handle(verb, net, env),
        Plugin::Macvlan => Family::Macvlan,
        Plugin::Ipvlan => Family::Ipvlan,
    };
    match verb {
        Verb::Add => link::add(family, net, env, faults).map(Some),
        Verb::Del => link::del(family, net, env, faults).map(|()| None),
        Verb::Check => link::check(family, net, env).map(|()| None),
        Verb::Status => link::status(family, net, env).map(|()| None),
        Verb::Gc => link::gc(family, net, env).map(|()| None),
        Verb::Version => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(plugin: Plugin, command: &str, stdin: &str) -> (serde_json::Value, i32) {
        let env = CallEnv::from_vars(&[("CNI_COMMAND", command.to_string())]).unwrap();
        let out = run(plugin, &env, stdin.as_bytes().to_vec());
        let v = if out.stdout.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&out.stdout).unwrap()
        };
        (v, out.exit_code)
    }

    #[test]
    fn argv0_names_the_plugin() {
        assert_eq!(
            Plugin::from_argv0(OsStr::new("/opt/cni/bin/nicslice-macvlan")),
            Some(Plugin::Macvlan)
        );
        assert_eq!(Plugin::from_argv0(OsStr::new("nicslice-ipam")), Some(Plugin::Ipam));
        assert_eq!(Plugin::from_argv0(OsStr::new("/usr/bin/nicslice")), None);
    }

    #[test]
    fn version_and_spec_errors() {
        let (v, code) = call(Plugin::Macvlan, "VERSION", r#"{"cniVersion":"0.3.1"}"#);
        assert_eq!((v["cniVersion"].as_str(), code), (Some("0.3.1"), 0));
        let (v, code) = call(Plugin::Macvlan, "VERSION", "");
        assert_eq!((v["cniVersion"].as_str(), code), (Some("1.1.0"), 0));
        let (v, code) = call(Plugin::Macvlan, "ADD", "{bad");
        assert_eq!((v["code"].as_u64(), code), (Some(6), 1));
        let (v, _) = call(Plugin::Macvlan, "ADD", r#"{"cniVersion":"0.2.0","name":"n"}"#);
        assert_eq!(v["code"], 1);
        let (v, _) = call(Plugin::Macvlan, "FROB", r#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_eq!((v["code"].as_u64(), v["cniVersion"].as_str()), (Some(4), Some("1.0.0")));
        let (v, _) = call(
            Plugin::Macvlan,
            "ADD",
            r#"{"cniVersion":"1.0.0","name":"n","type":"nicslice-macvlan"}"#,
        );
        assert_eq!(v["code"], 4, "missing CNI_CONTAINERID etc.: {v}");
        let (v, _) = call(Plugin::Macvlan, "CHECK", r#"{"cniVersion":"0.3.1","name":"n"}"#);
        assert_eq!(v["code"], 1);
        let (v, _) = call(Plugin::Ipam, "GC", r#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_eq!(v["code"], 1);
    }
}
