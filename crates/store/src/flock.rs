//! Exclusive `flock`s with a bounded wait, and who holds one when the wait
//! runs out. Both databases queue their writers on such a lock: the CNI
//! lease database (every transaction, `cni_ipam::lock`) and the SQLite state
//! (every write transaction, in front of SQLite's own lock, `store`).
//!
//! Why a `flock` queue in front of SQLite: SQLite's busy handler polls, with
//! sleeps growing to 100 ms, so under a crowd the newest waiter often wins
//! and an old one starves (27 of 288 concurrent detaches gave up after 5 s).
//! A process blocked in `flock` is woken by the kernel the moment the lock is
//! free, and nobody sleeps past a release.
//!
//! The wait is bounded by `NICSLICE_LOCK_TIMEOUT` (seconds, default 30); past
//! it the call fails naming the holder's pid, read from `/proc/locks`. The
//! uncontended path is one `flock(LOCK_NB)` call: the variable is read and a
//! waiting thread made only when the lock is taken (see `wait`).

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::StoreError;

/// The environment variable bounding every lock wait, in seconds.
pub const LOCK_TIMEOUT_VAR: &str = "NICSLICE_LOCK_TIMEOUT";

/// How long a lock is waited for unless `NICSLICE_LOCK_TIMEOUT` says otherwise.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The bound on lock waits: `NICSLICE_LOCK_TIMEOUT` (seconds, fractions
/// allowed), else [`DEFAULT_LOCK_TIMEOUT`].
pub fn lock_timeout() -> Result<Duration, StoreError> {
    let Some(value) = std::env::var_os(LOCK_TIMEOUT_VAR) else {
        return Ok(DEFAULT_LOCK_TIMEOUT);
    };
    let text = value.to_string_lossy().into_owned();
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or(StoreError::BadLockTimeout { value: text })
}

/// A lock taken by [`lock`]: on the caller's own file, or on a second open
/// of the same file made by the thread that waited for it (see `wait`).
#[must_use]
pub(crate) enum Taken {
    /// Held through the caller's descriptor: released by `unlock`.
    OnCaller,
    /// Held through this descriptor of the same file: released when dropped.
    OnOwn(File),
}

/// Takes the exclusive lock of `file` (at `path`, named in errors), waiting
/// up to `timeout` (`None`: [`lock_timeout`], read only when the lock is taken).
pub(crate) fn lock(
    file: &File,
    path: &Path,
    timeout: Option<Duration>,
) -> Result<Taken, StoreError> {
    loop {
        // SAFETY: flock on a descriptor the caller keeps open across the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Taken::OnCaller);
        }
        let source = std::io::Error::last_os_error();
        match source.kind() {
            ErrorKind::Interrupted => continue,
            ErrorKind::WouldBlock => break,
            _ => return Err(StoreError::Lock { path: path.to_owned(), source }),
        }
    }
    let timeout = match timeout {
        Some(t) => t,
        None => lock_timeout()?,
    };
    wait(file, path, timeout)
}

/// Releases a lock [`lock`] took.
pub(crate) fn unlock(file: &File, taken: Taken) {
    match taken {
        // SAFETY: flock on the caller's open descriptor; unlocking cannot
        // fail on one, and closing it would release the lock anyway.
        Taken::OnCaller => unsafe {
            libc::flock(file.as_raw_fd(), libc::LOCK_UN);
        },
        Taken::OnOwn(own) => drop(own),
    }
}

/// Waits for the lock in a thread of its own, blocked in `flock` (woken by
/// the kernel at the release, so no polling), while this thread waits on
/// the answer for at most `timeout`. The waiting thread locks a second open
/// of the file (a descriptor of its own, through /proc/self/fd): when this
/// thread gives up, the waiter may still get the lock later, and it then
/// releases it by closing that descriptor, never touching the caller's.
fn wait(file: &File, path: &Path, timeout: Duration) -> Result<Taken, StoreError> {
    let lock_err = |source| StoreError::Lock { path: path.to_owned(), source };
    let own = File::options()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(lock_err)?;
    let started = Instant::now();
    let (send, receive) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("nicslice-lock-wait".into())
        .spawn(move || {
            let taken = loop {
                // SAFETY: flock on the descriptor this thread owns.
                if unsafe { libc::flock(own.as_raw_fd(), libc::LOCK_EX) } == 0 {
                    break Ok(own);
                }
                let e = std::io::Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    break Err(e);
                }
            };
            // When the caller gave up, the lock goes with the dropped message.
            let _ = send.send(taken);
        })
        .map_err(lock_err)?;
    match receive.recv_timeout(timeout) {
        Ok(Ok(own)) => Ok(Taken::OnOwn(own)),
        Ok(Err(source)) => Err(lock_err(source)),
        Err(_) => Err(StoreError::LockTimeout {
            path: path.to_owned(),
            waited: started.elapsed(),
            holder: describe_holders(&holders(file)),
        }),
    }
}

/// The pids holding a lock (not waiting for one) on `file`, from /proc/locks.
pub(crate) fn holders(file: &File) -> Vec<u32> {
    let Ok(meta) = file.metadata() else { return Vec::new() };
    let Ok(table) = std::fs::read_to_string("/proc/locks") else { return Vec::new() };
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let wanted = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    holders_in(&table, &wanted)
}

/// The holders of `dev_ino` ("MAJ:MIN:INO", as /proc/locks writes it) in
/// /proc/locks' text: `1: FLOCK ADVISORY WRITE 1234 00:1a:567 0 EOF`; a
/// waiter's line has `->` after the number.
fn holders_in(table: &str, dev_ino: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_, kind, _, _, pid, file, ..] if *kind != "->" && *file == dev_ino => {
                    pid.parse().ok()
                }
                _ => None,
            }
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// "pid 1234 (nicslice)", for the error that names who holds a lock.
pub(crate) fn describe_holders(pids: &[u32]) -> String {
    if pids.is_empty() {
        return "a process /proc/locks does not show".into();
    }
    let one = |pid: &u32| match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => format!("pid {pid} ({})", comm.trim()),
        Err(_) => format!("pid {pid}"),
    };
    pids.iter().map(one).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_read_from_proc_locks_without_the_waiters() {
        let table = "1: FLOCK  ADVISORY  WRITE 4242 00:1a:1234 0 EOF\n\
                     1: -> FLOCK  ADVISORY  WRITE 777 00:1a:1234 0 EOF\n\
                     2: POSIX  ADVISORY  WRITE 99 08:01:1234 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 55 00:1a:12345 0 EOF\n";
        assert_eq!(holders_in(table, "00:1a:1234"), [4242]);
    }

    #[test]
    fn a_lock_held_elsewhere_times_out_naming_this_process() {
        let path = std::env::temp_dir().join(format!("flock-test-{}", std::process::id()));
        let first = File::create(&path).unwrap();
        let second = File::open(&path).unwrap();
        let taken = lock(&first, &path, Some(Duration::ZERO)).unwrap();
        let started = Instant::now();
        let err = lock(&second, &path, Some(Duration::from_millis(200))).err().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(200));
        let text = err.to_string();
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        unlock(&first, taken);
        // Released: the second handle gets it (after the abandoned waiter,
        // which may take it first and drops it at once), and a third waits.
        let taken = lock(&second, &path, Some(Duration::from_secs(10))).unwrap();
        let third = File::open(&path).unwrap();
        let waiter = std::thread::spawn(move || {
            let path = std::env::temp_dir().join(format!("flock-test-{}", std::process::id()));
            lock(&third, &path, Some(Duration::from_secs(10))).map(|t| unlock(&third, t)).is_ok()
        });
        std::thread::sleep(Duration::from_millis(50));
        unlock(&second, taken);
        assert!(waiter.join().unwrap(), "the waiter got the lock once released");
        std::fs::remove_file(&path).unwrap();
    }
}
