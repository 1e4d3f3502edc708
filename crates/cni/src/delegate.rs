//! Delegation to the IPAM plugin named by `ipam.type`, as the spec says: the
//! plugin is found in `CNI_PATH`, run with the same environment (the CNI
//! variables of this call, `CNI_COMMAND` set to the verb) and the full configuration on stdin; its
//! result or error JSON comes back on stdout, errors keep their code.
//!
//! When the plugin found is this very binary (`nicslice-ipam` linked to
//! `nicslice`), it runs in-process instead: same code, same input, no second
//! exec (half of an ADD's cost otherwise).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::conf::NetConf;
use crate::env::{CallEnv, Verb};
use crate::error::{CniError, Code, Result};
use crate::result::CniResult;

/// How an IPAM plugin is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ipam {
    /// nicslice-ipam inside this process.
    InProcess,
    /// Any other plugin (or another nicslice binary), by path.
    Exec(PathBuf),
}

/// Finds `plugin` in `CNI_PATH` (no `/` allowed in the name: it is a type, not a path).
pub fn find(plugin: &str, env: &CallEnv) -> Result<Ipam> {
    if plugin.contains('/') || plugin == "." || plugin == ".." {
        return Err(CniError::config(format!("ipam type {plugin:?} may not be a path")));
    }
    if env.path.is_empty() {
        return Err(CniError::env(format!(
            "CNI_PATH is not set; it must name the directory holding IPAM plugin {plugin:?}"
        )));
    }
    let found = env.path.iter().find_map(|dir| {
        let path = dir.join(plugin);
        executable(&path).map(|meta| (path, meta))
    });
    let Some((path, meta)) = found else {
        return Err(CniError::config(format!(
            "failed to find IPAM plugin {plugin:?} in path {:?}",
            env.path
        )));
    };
    if plugin == "nicslice-ipam" && is_this_binary(&meta) {
        return Ok(Ipam::InProcess);
    }
    Ok(Ipam::Exec(path))
}

/// The metadata of `p` (links followed) if it is an executable file.
fn executable(p: &Path) -> Option<std::fs::Metadata> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).ok().filter(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether the file of `meta` is the executable of this process: the file
/// the path this process was started by (`AT_EXECFN`) leads to, which
/// costs a third of a lookup in /proc (`/proc/self/exe`, the fallback).
/// Should that path have been replaced since, it leads to another nicslice
/// build; the lease database's format check stands between them.
fn is_this_binary(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getauxval has no preconditions; AT_EXECFN, when present, points
    // at a NUL-terminated string on the initial stack, there for the whole process.
    let execfn = unsafe { libc::getauxval(libc::AT_EXECFN) } as *const libc::c_char;
    let started_by = if execfn.is_null() {
        Path::new("/proc/self/exe")
    } else {
        // SAFETY: as above.
        Path::new(std::ffi::OsStr::from_bytes(
            unsafe { std::ffi::CStr::from_ptr(execfn) }.to_bytes(),
        ))
    };
    std::fs::metadata(started_by).is_ok_and(|b| meta.dev() == b.dev() && meta.ino() == b.ino())
}

/// Runs `verb` on the IPAM plugin. ADD returns its result; the others `None`.
pub fn run(ipam: &Ipam, verb: Verb, conf: &NetConf, env: &CallEnv) -> Result<Option<CniResult>> {
    match ipam {
        Ipam::InProcess => crate::ipam::handle(verb, conf, env),
        Ipam::Exec(path) => exec(path, verb, conf, env),
    }
}

fn verb_name(verb: Verb) -> &'static str {
    match verb {
        Verb::Add => "ADD",
        Verb::Del => "DEL",
        Verb::Check => "CHECK",
        Verb::Status => "STATUS",
        Verb::Gc => "GC",
        Verb::Version => "VERSION",
    }
}

fn exec(path: &Path, verb: Verb, conf: &NetConf, env: &CallEnv) -> Result<Option<CniResult>> {
    let name = path.display();
    let cni_path = std::env::join_paths(&env.path).unwrap_or_default();
    let mut child = Command::new(path)
        .env("CNI_COMMAND", verb_name(verb))
        .env("CNI_CONTAINERID", &env.container_id)
        .env("CNI_NETNS", &env.netns)
        .env("CNI_IFNAME", &env.ifname)
        .env("CNI_ARGS", &env.args_raw)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| CniError::new(Code::Ipam, format!("cannot run IPAM plugin {name}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading stdin closes the pipe; its exit status tells.
        let _ = stdin.write_all(&conf.bytes);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::new(Code::Ipam, format!("IPAM plugin {name}: {e}")))?;
    if !out.status.success() {
        return Err(plugin_error(&out.stdout, &name.to_string(), out.status.code()));
    }
    if verb != Verb::Add {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        CniError::new(
            Code::Ipam,
            format!("IPAM plugin {name} answered ADD with no JSON result: {e}"),
        )
    })?;
    CniResult::parse(&value).map(Some)
}

/// The plugin's error JSON, passed on with its code; anything else becomes code 104.
fn plugin_error(stdout: &[u8], name: &str, status: Option<i32>) -> CniError {
    let parsed: Option<Value> = serde_json::from_slice(stdout).ok();
    let code = parsed.as_ref().and_then(|v| v.get("code")).and_then(Value::as_u64);
    let msg = parsed.as_ref().and_then(|v| v.get("msg")).and_then(Value::as_str);
    let details = parsed.as_ref().and_then(|v| v.get("details")).and_then(Value::as_str);
    match (code, msg) {
        (Some(code), Some(msg)) => CniError {
            code: Code::from_number(u32::try_from(code).unwrap_or(u32::MAX)),
            msg: msg.to_string(),
            details: details.unwrap_or_default().to_string(),
        },
        _ => CniError::new(
            Code::Ipam,
            format!("IPAM plugin {name} failed (exit status {status:?}) without an error JSON"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_errors_keep_their_code() {
        let e = plugin_error(br#"{"code":7,"msg":"bad","details":"d"}"#, "p", Some(1));
        assert_eq!((e.code, e.msg.as_str(), e.details.as_str()), (Code::InvalidConfig, "bad", "d"));
        let e = plugin_error(br#"{"code":999,"msg":"no IP addresses available"}"#, "p", Some(1));
        assert_eq!(e.code, Code::Other(999));
        assert!(e.msg.contains("no IP"));
        assert_eq!(plugin_error(b"garbage", "p", Some(2)).code, Code::Ipam);
    }

    #[test]
    fn lookup_needs_cni_path_and_a_plain_name() {
        let env = CallEnv::default();
        assert_eq!(find("host-local", &env).unwrap_err().code, Code::InvalidEnvironment);
        assert_eq!(find("../x", &env).unwrap_err().code, Code::InvalidConfig);
        let env = CallEnv { path: vec!["/nonexistent-dir".into()], ..CallEnv::default() };
        assert!(find("host-local", &env).unwrap_err().msg.contains("failed to find"));
    }
}
