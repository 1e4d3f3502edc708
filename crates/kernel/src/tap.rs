//! The character device of a macvtap (or ipvtap) link: `/dev/tapN`, where N is
//! the link's index in its own namespace. devtmpfs creates the node when the
//! kernel registers the device; this module finds it and checks it is really
//! the tap driver's (its major is the `macvtap` entry of `/proc/devices`).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{KernelError, Result};

/// Where a VM or user program opens the tap queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TapDevice {
    pub path: PathBuf,
    pub major: u32,
    pub minor: u32,
}

/// The major number the kernel gave a character driver, from `/proc/devices`.
fn char_major(driver: &str) -> Result<Option<u32>> {
    let text = std::fs::read_to_string("/proc/devices")
        .map_err(|e| KernelError::io("read /proc/devices", e))?;
    let chars = text.split("Block devices:").next().unwrap_or("");
    Ok(chars.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let major = it.next()?.parse().ok()?;
        (it.next()? == driver).then_some(major)
    }))
}

/// The tap device of the link with index `index` (in its own namespace).
pub fn tap_device(index: u32, driver: &str) -> Result<TapDevice> {
    let path = PathBuf::from(format!("/dev/tap{index}"));
    let meta = std::fs::metadata(&path)
        .map_err(|e| KernelError::io(format!("find {}", path.display()), e))?;
    if !meta.file_type().is_char_device() {
        return Err(KernelError::Protocol {
            op: format!("find {}", path.display()),
            detail: "not a character device".into(),
        });
    }
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let expected = char_major(driver)?;
    if expected != Some(major) {
        return Err(KernelError::Protocol {
            op: format!("find {}", path.display()),
            detail: format!(
                "its major {major} is not the {driver} driver's ({expected:?}); another namespace's tap with the same index may own the name"
            ),
        });
    }
    Ok(TapDevice { path, major, minor })
}
