//! Per-namespace sysctls under `/proc/sys/net`. The kernel resolves those files
//! in the namespace of the thread that opens them, so callers enter the
//! namespace first (see [`crate::Netns::run`]).

use std::path::PathBuf;

use crate::error::{KernelError, Result};

fn path_of(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// Writes `value` to a sysctl such as `net/ipv4/conf/eth0/arp_notify`
/// (dots or slashes; interface names with dots need the slash form).
pub fn write(key: &str, value: &str) -> Result<()> {
    let path = if key.contains('/') { PathBuf::from("/proc/sys").join(key) } else { path_of(key) };
    std::fs::write(&path, value)
        .map_err(|e| KernelError::io(format!("write sysctl {}", path.display()), e))
}

pub fn read(key: &str) -> Result<String> {
    let path = if key.contains('/') { PathBuf::from("/proc/sys").join(key) } else { path_of(key) };
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| KernelError::io(format!("read sysctl {}", path.display()), e))
}
