//! Network namespaces: naming a target (iproute2 name, path or pid), opening it,
//! entering it on the current thread behind a guard that always switches back,
//! and creating or deleting named and throwaway namespaces.
//!
//! This module never changes the namespace the process started in; it only
//! switches the *current thread* for the length of a guard.

use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use crate::error::{KernelError, Result};

/// Where iproute2 keeps named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// A network namespace as a user names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsTarget {
    /// `ip netns` name: `/run/netns/NAME`.
    Named(String),
    /// Any file that is a network namespace (a bind mount or `/proc/PID/ns/net`).
    Path(PathBuf),
    /// The network namespace of a running process (a container).
    Pid(u32),
    /// The namespace this process was started in.
    Current,
}

impl NetnsTarget {
    pub fn path(&self) -> PathBuf {
        match self {
            NetnsTarget::Named(name) => Path::new(NETNS_RUN_DIR).join(name),
            NetnsTarget::Path(p) => p.clone(),
            NetnsTarget::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
            NetnsTarget::Current => PathBuf::from("/proc/self/ns/net"),
        }
    }

    /// Parses what a user typed after `--netns`: a path if it contains `/`,
    /// else an iproute2 name.
    pub fn parse_user(s: &str) -> NetnsTarget {
        if s.contains('/') {
            NetnsTarget::Path(PathBuf::from(s))
        } else {
            NetnsTarget::Named(s.to_string())
        }
    }

    pub fn open(&self) -> Result<Netns> {
        Netns::open_path(&self.path(), self.to_string())
    }
}

impl fmt::Display for NetnsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetnsTarget::Named(n) => write!(f, "netns {n}"),
            NetnsTarget::Path(p) => write!(f, "netns {}", p.display()),
            NetnsTarget::Pid(pid) => write!(f, "netns of pid {pid}"),
            NetnsTarget::Current => f.write_str("the current netns"),
        }
    }
}

/// The identity of a namespace: the device and inode of its nsfs file. Two
/// paths name the same namespace exactly when their identities are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

/// An open network namespace. Holding it keeps the namespace alive.
#[derive(Debug)]
pub struct Netns {
    file: File,
    id: NetnsId,
    label: String,
}

impl Netns {
    fn open_path(path: &Path, label: String) -> Result<Netns> {
        let netns = Netns::open_unchecked(path, label)?;
        // nsfs files have this magic; a regular file at /run/netns/x is not a namespace.
        let fs = nix::sys::statfs::fstatfs(&netns.file)
            .map_err(|e| KernelError::io("statfs netns", e.into()))?;
        if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
            return Err(KernelError::NoSuchNetns(format!(
                "{} ({} is not a namespace file)",
                netns.label,
                path.display()
            )));
        }
        Ok(netns)
    }

    /// Opens `path`, known to be a namespace file, without checking it.
    fn open_unchecked(path: &Path, label: String) -> Result<Netns> {
        let file = File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                KernelError::NoSuchNetns(label.clone())
            } else {
                KernelError::io(format!("open {}", path.display()), e)
            }
        })?;
        Netns::from_file(file, label)
    }

    /// An open namespace file, its identity read.
    fn from_file(file: File, label: String) -> Result<Netns> {
        let meta = file.metadata().map_err(|e| KernelError::io("stat netns", e))?;
        Ok(Netns { file, id: NetnsId { dev: meta.dev(), ino: meta.ino() }, label })
    }

    /// The namespace of the socket `fd` (`SIOCGSKNS`): no path to walk.
    pub(crate) fn of_socket(fd: std::os::fd::RawFd) -> Result<Netns> {
        use std::os::fd::FromRawFd;
        // SAFETY: SIOCGSKNS takes no argument and returns a new descriptor.
        let ns = unsafe { libc::ioctl(fd, libc::SIOCGSKNS as _) };
        if ns < 0 {
            return Err(KernelError::io("ask a socket its netns", std::io::Error::last_os_error()));
        }
        // SAFETY: a descriptor the kernel just opened for this process, owned from here.
        let file = unsafe { File::from_raw_fd(ns) };
        Netns::from_file(file, "the socket's netns".into())
    }

    /// The namespace the calling thread is in now.
    pub fn current() -> Result<Netns> {
        // The kernel's own file for it: a namespace, no check needed.
        Netns::open_unchecked(Path::new("/proc/thread-self/ns/net"), "the current netns".into())
    }

    /// A second handle on the same namespace (a duplicated descriptor).
    pub fn clone_handle(&self) -> Result<Netns> {
        let file =
            self.file.try_clone().map_err(|e| KernelError::io("duplicate netns handle", e))?;
        Ok(Netns { file, id: self.id, label: self.label.clone() })
    }

    pub fn id(&self) -> NetnsId {
        self.id
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Switches the current thread into this namespace until the guard drops.
    pub fn enter(&self) -> Result<NetnsGuard> {
        self.enter_from(Netns::current()?)
    }

    /// [`enter`](Self::enter), given the namespace the thread is in now.
    pub(crate) fn enter_from(&self, previous: Netns) -> Result<NetnsGuard> {
        if previous.id == self.id {
            return Ok(NetnsGuard { previous: None });
        }
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| KernelError::io(format!("enter {}", self.label), e.into()))?;
        Ok(NetnsGuard { previous: Some(previous) })
    }

    /// Runs `f` with the current thread inside this namespace.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let _guard = self.enter()?;
        Ok(f())
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for Netns {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

/// Puts the thread back into the namespace it was in, whatever happens.
#[must_use]
pub struct NetnsGuard {
    previous: Option<Netns>,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Some(prev) = self.previous.take() {
            // Failing to return would leave the thread in a foreign namespace and
            // every later operation on it would silently act there: abort instead.
            if let Err(e) = setns(prev.file.as_fd(), CloneFlags::CLONE_NEWNET) {
                eprintln!("nicslice: cannot return to the original network namespace: {e}");
                std::process::abort();
            }
        }
    }
}

/// Creates a namespace on a fresh thread and returns it open. Nothing is
/// mounted: the namespace lives as long as the returned handle (used by
/// `check` to try link kinds without leaving anything behind).
pub fn create_anonymous() -> Result<Netns> {
    std::thread::spawn(|| -> Result<Netns> {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| KernelError::io("unshare(CLONE_NEWNET)", e.into()))?;
        Netns::current()
    })
    .join()
    .map_err(|_| KernelError::Protocol {
        op: "create netns".into(),
        detail: "thread panicked".into(),
    })?
}

/// Creates `/run/netns/NAME` as `ip netns add` does and returns it open.
pub fn create_named(name: &str) -> Result<Netns> {
    let dir = Path::new(NETNS_RUN_DIR);
    std::fs::create_dir_all(dir)
        .map_err(|e| KernelError::io(format!("create {NETNS_RUN_DIR}"), e))?;
    let path = dir.join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| KernelError::io(format!("create {}", path.display()), e))?;
    let bind = path.clone();
    let made = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| KernelError::io("unshare(CLONE_NEWNET)", e.into()))?;
        mount(Some("/proc/thread-self/ns/net"), &bind, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| {
                KernelError::io(format!("bind-mount netns at {}", bind.display()), e.into())
            })
    })
    .join()
    .map_err(|_| KernelError::Protocol {
        op: "create netns".into(),
        detail: "thread panicked".into(),
    })?;
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    NetnsTarget::Named(name.to_string()).open()
}

/// Removes `/run/netns/NAME` as `ip netns del` does. The namespace itself goes
/// away, with every interface in it, when nothing else holds it.
pub fn delete_named(name: &str) -> Result<()> {
    let path = Path::new(NETNS_RUN_DIR).join(name);
    match umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(KernelError::io(format!("unmount {}", path.display()), e.into())),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(KernelError::io(format!("remove {}", path.display()), e)),
    }
}
