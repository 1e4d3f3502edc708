//! Network namespaces: naming a target (iproute2 name, path or pid), opening it,
//! entering it on the current thread behind a guard that always switches back,
//! and creating or deleting named and throwaway namespaces.
//!
//! This module never changes the namespace the process started in; it only
//! switches the *current thread* for the length of a guard.

use std::cell::Cell;
use std::fmt;
use std::fs::File;
use std::marker::PhantomData;
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
    /// Opens `path` and checks that it is a network namespace: a missing
    /// file is [`KernelError::NoSuchNetns`]; a file that exists but is
    /// something else (a regular file, a directory, a device, a namespace of
    /// another type) is [`KernelError::NotANetns`], saying what it is.
    fn open_path(path: &Path, label: String) -> Result<Netns> {
        let netns = Netns::open_unchecked(path, label)?;
        // One ioctl answers both "is it a namespace" and "of which type"
        // (NS_GET_NSTYPE, Linux 4.11); a file that is no namespace at all
        // refuses it (ENOTTY).
        // SAFETY: NS_GET_NSTYPE takes no argument and only reads the descriptor.
        let ns_type = unsafe { libc::ioctl(netns.file.as_raw_fd(), libc::NS_GET_NSTYPE as _) };
        if ns_type == libc::CLONE_NEWNET {
            return Ok(netns);
        }
        let what = if ns_type >= 0 {
            format!("{} namespace", namespace_kind(ns_type))
        } else if is_nsfs(&netns.file)? {
            // A kernel without NS_GET_NSTYPE: any namespace file passes, as
            // it did before the ioctl existed; setns tells the rest.
            return Ok(netns);
        } else {
            file_kind(&netns.file)
        };
        Err(KernelError::NotANetns { path: path.to_path_buf(), what })
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

    /// Whether this is the namespace the calling thread is in now (for a
    /// plugin, the host's: the one it was started in). One `stat` of the
    /// kernel's own file for the thread's namespace, nothing opened.
    pub fn is_current(&self) -> Result<bool> {
        let meta = std::fs::metadata("/proc/thread-self/ns/net")
            .map_err(|e| KernelError::io("stat the current netns", e))?;
        Ok(NetnsId { dev: meta.dev(), ino: meta.ino() } == self.id)
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
    /// `previous` must be that namespace (the guard returns there): callers
    /// prove it, as [`RouteSocket::open_beside_in`](crate::RouteSocket::open_beside_in)
    /// does with a [`ThreadNsStamp`].
    pub(crate) fn enter_from(&self, previous: Netns) -> Result<NetnsGuard> {
        if previous.id == self.id {
            return Ok(NetnsGuard { previous: None, pinned: PhantomData });
        }
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| KernelError::io(format!("enter {}", self.label), e.into()))?;
        note_switch();
        Ok(NetnsGuard { previous: Some(previous), pinned: PhantomData })
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

/// Whether `file` is on nsfs, the namespaces' file system.
fn is_nsfs(file: &File) -> Result<bool> {
    let fs =
        nix::sys::statfs::fstatfs(file).map_err(|e| KernelError::io("statfs netns", e.into()))?;
    Ok(fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// The name of a namespace type NS_GET_NSTYPE answers (a `CLONE_NEW*` flag).
fn namespace_kind(ns_type: libc::c_int) -> &'static str {
    match ns_type {
        libc::CLONE_NEWNS => "a mount",
        libc::CLONE_NEWUTS => "a UTS",
        libc::CLONE_NEWIPC => "an IPC",
        libc::CLONE_NEWUSER => "a user",
        libc::CLONE_NEWPID => "a PID",
        libc::CLONE_NEWCGROUP => "a cgroup",
        libc::CLONE_NEWTIME => "a time",
        _ => "another kind of",
    }
}

/// What an open file that is not a namespace is, for an error message.
fn file_kind(file: &File) -> String {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = file.metadata() else { return "not a namespace file".into() };
    let t = meta.file_type();
    let kind = if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a pipe"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a namespace file"
    };
    kind.into()
}

/// Puts the thread back into the namespace it was in, whatever happens.
/// Not `Send`: dropped on another thread it would move that thread instead.
#[must_use]
pub struct NetnsGuard {
    previous: Option<Netns>,
    pinned: PhantomData<*const ()>,
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
            note_switch();
        }
    }
}

thread_local! {
    /// How many times this thread has changed network namespace. Every
    /// change nicslice makes to a thread's namespace goes through this
    /// module (the guard, and `unshare` on the fresh threads that make a
    /// namespace), and each one counts here.
    static SWITCHES: Cell<u64> = const { Cell::new(0) };
}

fn note_switch() {
    SWITCHES.with(|n| n.set(n.get().wrapping_add(1)));
}

/// Where a thread stood at one moment: which thread, and how many
/// namespace changes it had made by then. Two equal stamps mean the same
/// thread has not changed namespace in between, so it is still in the
/// namespace it was in at the first (a socket opened then is in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ThreadNsStamp {
    thread: std::thread::ThreadId,
    switches: u64,
}

impl ThreadNsStamp {
    pub(crate) fn now() -> ThreadNsStamp {
        ThreadNsStamp { thread: std::thread::current().id(), switches: SWITCHES.with(Cell::get) }
    }
}

/// Creates a namespace on a fresh thread and returns it open. Nothing is
/// mounted: the namespace lives as long as the returned handle (used by
/// `check` to try link kinds without leaving anything behind).
pub fn create_anonymous() -> Result<Netns> {
    std::thread::spawn(|| -> Result<Netns> {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| KernelError::io("unshare(CLONE_NEWNET)", e.into()))?;
        note_switch();
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
    share_run_dir(dir)?;
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
        note_switch();
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

/// iproute2's first step before it mounts a namespace: `dir` becomes a
/// shared mount (recursively), after being bind-mounted onto itself if it
/// is not a mount point yet (the first attempt then fails with EINVAL).
/// Shared, an unmount of a namespace file propagates to every mount
/// namespace that copied it (so the namespace is freed at once). Done by
/// everyone who mounts there, it also keeps every namespace file on one
/// mount: had nicslice mounted files on the plain directory and `ip netns`
/// or Podman then bound the directory onto itself, nicslice's mounts would
/// be hidden under that bind, out of reach of any unmount.
///
/// Two processes that both find `dir` unmounted would bind it twice (as
/// two `ip netns add` would); nicslice's callers take turns on a lock of
/// the directory for that step.
fn share_run_dir(dir: &Path) -> Result<()> {
    let share = || {
        mount(None::<&str>, dir, Some("none"), MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>)
    };
    let failed = |what: &str, e: nix::errno::Errno| {
        KernelError::io(format!("{what} {}", dir.display()), e.into())
    };
    match share() {
        Ok(()) => return Ok(()),
        Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(failed("make shared", e)),
    }
    let lock =
        File::open(dir).map_err(|e| KernelError::io(format!("open {}", dir.display()), e))?;
    nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| failed("lock", e))
        .and_then(|_held| match share() {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EINVAL) => {
                mount(
                    Some(dir),
                    dir,
                    Some("none"),
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| failed("bind-mount onto itself", e))?;
                share().map_err(|e| failed("make shared", e))
            }
            Err(e) => Err(failed("make shared", e)),
        })
}

/// Removes `/run/netns/NAME` as `ip netns del` does. The namespace itself goes
/// away, with every interface in it, when nothing else holds it.
///
/// Every mount on the file is taken off (lazily, MNT_DETACH: a process
/// inside keeps it alive, as with iproute2), then the file is unlinked. A
/// file that is still a mount point after that (EBUSY) has a mount nobody
/// can reach: one made on the plain directory before it was bound onto
/// itself (by nicslice before it did iproute2's first step, see
/// [`share_run_dir`]). That is said, with what frees it.
pub fn delete_named(name: &str) -> Result<()> {
    let path = Path::new(NETNS_RUN_DIR).join(name);
    // Mounts may be stacked on one file (two binds of the same name); at
    // most a few, but never loop for ever.
    for _ in 0..16 {
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => break,
            Err(e) => {
                return Err(KernelError::io(format!("unmount {}", path.display()), e.into()));
            }
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(KernelError::io(
            format!(
                "remove {}: unmounted, but an older mount of it lies hidden under the bind \
                 mount of {NETNS_RUN_DIR} (made by ip netns or Podman after it); the namespace \
                 and the file stay until that bind is unmounted or the machine reboots",
                path.display()
            ),
            e,
        )),
        Err(e) => Err(KernelError::io(format!("remove {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RouteSocket;

    #[test]
    fn a_file_that_is_no_network_namespace_is_told_from_a_missing_one() {
        let dir = std::env::temp_dir().join(format!("nsl-notns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("plain");
        std::fs::write(&file, b"").unwrap();
        let open = |p: &Path| NetnsTarget::Path(p.to_path_buf()).open().unwrap_err().to_string();
        assert_eq!(
            open(&file),
            format!("{} is a regular file, not a network namespace", file.display())
        );
        assert!(open(&dir).ends_with("is a directory, not a network namespace"));
        assert!(
            open(Path::new("/dev/null"))
                .ends_with("is a character device, not a network namespace")
        );
        assert!(
            open(Path::new("/proc/self/ns/mnt"))
                .ends_with("is a mount namespace, not a network namespace")
        );
        assert!(matches!(
            NetnsTarget::Path(dir.join("missing")).open(),
            Err(KernelError::NoSuchNetns(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn is_current_tells_the_callers_namespace_from_another() {
        let here = NetnsTarget::Path("/proc/self/ns/net".into()).open().unwrap();
        assert!(here.is_current().unwrap());
        let other = create_anonymous().unwrap();
        assert!(!other.is_current().unwrap());
        let _inside = other.enter().unwrap();
        assert!(other.is_current().unwrap());
    }

    /// The way back of `open_beside_in` is where the thread is, not where
    /// the socket was opened: a thread inside a third namespace comes back
    /// there, not to the socket's.
    #[test]
    fn open_beside_in_returns_the_thread_where_it_was() {
        std::thread::spawn(|| {
            let home = Netns::current().unwrap();
            let (b, c) = (create_anonymous().unwrap(), create_anonymous().unwrap());
            let host = RouteSocket::open_here().unwrap();
            {
                let _in_b = b.enter().unwrap();
                let beside = host.open_beside_in(&c).unwrap();
                assert_eq!(Netns::of_socket(beside.raw_fd()).unwrap().id(), c.id());
                assert_eq!(Netns::current().unwrap().id(), b.id(), "still in b, where it was");
            }
            assert_eq!(Netns::current().unwrap().id(), home.id());
            // A socket used on another thread than the one that opened it.
            let moved = std::thread::spawn(move || {
                let _in_b = b.enter().unwrap();
                host.open_beside_in(&c).unwrap();
                Netns::current().unwrap().id() == b.id()
            });
            assert!(moved.join().unwrap(), "the other thread stayed in b");
        })
        .join()
        .unwrap();
    }

    /// Runs `f` on a thread with a private mount namespace whose /run is an
    /// empty tmpfs: a fresh machine's /run, where /run/netns does not exist
    /// yet. Programs it starts (`ip`) see the same mounts; nothing of it is
    /// seen outside, and it all goes with the thread.
    fn on_a_fresh_run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            unshare(CloneFlags::CLONE_NEWNS).unwrap();
            // Private first, so that nothing below propagates back out.
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .unwrap();
            mount(Some("tmpfs"), "/run", Some("tmpfs"), MsFlags::empty(), None::<&str>).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    /// The lines of this thread's mount table, less those of `before`
    /// (the machine's own namespaces under /run/netns are copied into the
    /// private world too, hidden under its /run: they are not the test's).
    fn mounts_since(before: &[String]) -> Vec<String> {
        std::fs::read_to_string("/proc/thread-self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| !before.iter().any(|b| b == l))
            .map(String::from)
            .collect()
    }

    fn ip_netns(verb: &str, name: &str) -> std::process::Output {
        std::process::Command::new("ip").args(["netns", verb, name]).output().unwrap()
    }

    /// Defect 13: nicslice's named namespaces and iproute2's, made and
    /// deleted in turns by both, on a machine where /run/netns is new.
    #[test]
    fn named_namespaces_interleaved_with_iproute2() {
        on_a_fresh_run(|| {
            let before = mounts_since(&[]);
            let ours_a = create_named("nsl-a").unwrap();
            let ip_b = ip_netns("add", "nsl-b");
            assert!(ip_b.status.success(), "{}", String::from_utf8_lossy(&ip_b.stderr));
            let ours_c = create_named("nsl-c").unwrap();
            assert!(ip_netns("add", "nsl-d").status.success());
            let ids: Vec<NetnsId> = ["nsl-a", "nsl-b", "nsl-c", "nsl-d"]
                .iter()
                .map(|n| NetnsTarget::Named(n.to_string()).open().unwrap().id())
                .collect();
            assert_eq!(ids[0], ours_a.id());
            assert_eq!(ids[2], ours_c.id());
            let distinct: std::collections::HashSet<_> = ids.iter().collect();
            assert_eq!(distinct.len(), 4, "four namespaces");
            // Each side deletes one of the other's and one of its own.
            let del_a = ip_netns("del", "nsl-a");
            assert!(
                del_a.status.success(),
                "ip netns del of ours: {}",
                String::from_utf8_lossy(&del_a.stderr)
            );
            delete_named("nsl-b").unwrap();
            delete_named("nsl-c").unwrap();
            assert!(ip_netns("del", "nsl-d").status.success());
            let left: Vec<_> = std::fs::read_dir(NETNS_RUN_DIR).unwrap().collect();
            assert!(left.is_empty(), "files left in /run/netns: {left:?}");
            let mounts = mounts_since(&before);
            let stray: Vec<&String> = mounts.iter().filter(|l| l.contains("/run/netns/")).collect();
            assert!(stray.is_empty(), "mounts left: {stray:?}");
            // The handles still held keep their namespaces, unmounted.
            assert!(!ours_a.is_current().unwrap() && !ours_c.is_current().unwrap());
        });
    }

    #[test]
    fn run_netns_becomes_a_shared_mount_as_iproute2_makes_it() {
        on_a_fresh_run(|| {
            let before = mounts_since(&[]);
            let ns = create_named("nsl-shared").unwrap();
            let mounts = mounts_since(&before);
            let run_netns =
                mounts.iter().find(|l| l.split(' ').nth(4) == Some(NETNS_RUN_DIR)).unwrap();
            assert!(run_netns.contains(" shared:"), "{run_netns}");
            delete_named("nsl-shared").unwrap();
            drop(ns);
        });
    }
}
