//! The shim of the CNI plugins (`"hostAccess": true`): one per parent in the
//! runtime's host namespace, shared by every pod on that parent and kept by
//! the kernel alone (a CNI plugin has no state of its own to record it in).
//! The first ADD on a parent makes it, each ADD routes its pod's IPv4
//! addresses through it with the host's address on the parent as source,
//! each DEL removes them, and the DEL that removes the last route removes
//! the shim. Calls on one parent queue on a `flock` of a file in
//! /run/nicslice, so concurrent ADDs make exactly one shim and a DEL never
//! deletes a shim an ADD is routing through.
//!
//! IPv6 needs an address of the shim's own (see the module above), which
//! only the CLI's pool can give; a CNI shim carries IPv4.

use std::fs::File;
use std::net::IpAddr;
use std::path::PathBuf;

use nicslice_kernel::{KernelError, Netns};
use nicslice_model::IfName;

use super::host_address;
use crate::endpoint::{ChildSpec, ParentRef, Place};
use crate::error::{EngineError, Result};
use crate::undo::{UndoAction, UndoLog};

/// Where the per-parent lock files live (a tmpfs: they last one boot).
const LOCK_DIR: &str = "/run/nicslice";

/// The shim's name on the parent with index `parent` (an index is unique in
/// its namespace; a recreated parent gets a new one, and its old shim went
/// with the old parent).
pub fn shim_name(parent: u32) -> String {
    format!("nsh{parent:x}")
}

/// Holds the parent's lock: the flock lasts as long as the file is open.
struct ParentLock {
    _file: File,
}

impl ParentLock {
    fn take(host_ns: &Netns, parent: u32) -> Result<ParentLock> {
        let dir = PathBuf::from(LOCK_DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|e| KernelError::io(format!("create {LOCK_DIR}"), e))?;
        let path = dir.join(format!("shim-{}-{parent}.lock", host_ns.id().ino));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| KernelError::io(format!("open {}", path.display()), e))?;
        file.lock().map_err(|e| KernelError::io(format!("lock {}", path.display()), e))?;
        Ok(ParentLock { _file: file })
    }
}

/// Makes (if needed) the shim of `parent` in `host`'s namespace and routes
/// `addresses` through it; every change is pushed on `undo`.
pub fn join(
    place: &mut Place,
    parent: &ParentRef,
    child: &ChildSpec,
    addresses: &[IpAddr],
    undo: &mut UndoLog,
) -> Result<()> {
    let v4: Vec<IpAddr> = addresses.iter().copied().filter(IpAddr::is_ipv4).collect();
    if v4.is_empty() {
        return Ok(());
    }
    // A CNI plugin runs in the runtime's host namespace, where the parent is.
    let host_ns = &Netns::current()?;
    let host = &mut place.host;
    let source = host_address(host, parent.index, false)?.ok_or_else(|| {
        EngineError::Invalid(format!(
            "hostAccess: parent {} has no IPv4 address for the host to reach its pods from",
            parent.name
        ))
    })?;
    let _lock = ParentLock::take(host_ns, parent.index)?;
    let name = shim_name(parent.index);
    let index = match host.index_of(&name)? {
        Some(index) => index,
        None => {
            let ifname = IfName::new(&name)?;
            super::create_shim_link(host, (child.mode, child.ipvlan_flag), &ifname, parent.index)?;
            let index = host.index_of(&name)?.ok_or_else(|| KernelError::NoSuchLink {
                name: name.clone(),
                netns: host_ns.label().to_string(),
            })?;
            undo.push(UndoAction::DeleteHostLink { index });
            host.set_up(index, true)?;
            index
        }
    };
    for ip in v4 {
        match host.add_host_route(ip, index, Some(source)) {
            Ok(()) => undo.push(UndoAction::DeleteHostRoute { to: ip, oif: index }),
            // A pod's address released without its DEL (a crashed runtime)
            // and leased again: the route is already the right one.
            Err(e) if e.errno() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Removes the routes of `addresses` through the shim of the parent named
/// `parent` in this process's namespace, and the shim once no route goes
/// through it. A parent, shim or route already gone is not an error.
/// `None` for the parent: the interface of the default route, as at ADD.
pub fn leave(parent: Option<&str>, addresses: &[IpAddr]) -> Result<()> {
    if !addresses.iter().any(IpAddr::is_ipv4) {
        return Ok(());
    }
    let mut place = Place::here(Netns::current()?, false)?;
    let parent = match parent {
        Some(p) => p.to_string(),
        None => place.default_route_interface()?,
    };
    let host = &mut place.host;
    let Some(parent) = host.index_of(&parent)? else { return Ok(()) };
    let name = shim_name(parent);
    let _lock = ParentLock::take(&Netns::current()?, parent)?;
    let Some(index) = host.index_of(&name)? else { return Ok(()) };
    for ip in addresses.iter().filter(|ip| ip.is_ipv4()) {
        match host.delete_host_route(*ip, index) {
            Ok(()) => {}
            Err(KernelError::Netlink { errno, .. })
                if errno == libc::ESRCH || errno == libc::ENOENT => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !host.routes()?.iter().any(|r| r.oif == Some(index) && r.destination.prefix_len() == 32) {
        match host.delete_link(index) {
            Ok(()) => {}
            Err(KernelError::Netlink { errno, .. }) if errno == libc::ENODEV => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
