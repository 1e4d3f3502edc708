//! Identities the kernel does not hand out twice: a network namespace's
//! cookie (a counter the kernel never rewinds while it runs, unlike the nsfs
//! inode, which the next namespace may get at once) and a process's start
//! time (a pid is reused; a pid with its start time is not). Plus random
//! bytes from the kernel, for MAC addresses nicslice picks itself.

use crate::RouteSocket;
use crate::error::{KernelError, Result};

/// `SO_NETNS_COOKIE` (Linux 5.14), the value asm-generic gives it (x86_64,
/// aarch64, riscv, ...); the libc crate lists it only for its raw uapi.
const SO_NETNS_COOKIE: libc::c_int = 71;

impl RouteSocket {
    /// The cookie of the namespace this socket lives in: unique for as long
    /// as the kernel runs, whatever namespaces come and go.
    pub fn netns_cookie(&self) -> Result<u64> {
        socket_netns_cookie(self.raw_fd())
    }
}

fn socket_netns_cookie(fd: std::os::fd::RawFd) -> Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `cookie`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if rc < 0 {
        return Err(KernelError::io(
            "read the netns cookie (SO_NETNS_COOKIE needs Linux 5.14)",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(cookie)
}

/// A process as no other process can be: its pid and the time it started
/// (clock ticks after boot, field 22 of `/proc/PID/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    pub start: u64,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Result<ProcessId> {
        let pid = std::process::id();
        ProcessId::of(pid)?.ok_or_else(|| KernelError::Protocol {
            op: "read /proc/self/stat".into(),
            detail: "no start time".into(),
        })
    }

    /// The process now running as `pid`, if any.
    pub fn of(pid: u32) -> Result<Option<ProcessId>> {
        let path = format!("/proc/{pid}/stat");
        let stat = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            // ESRCH: the process exited while being read.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
            Err(e) => return Err(KernelError::io(format!("read {path}"), e)),
        };
        // The command name (field 2) is in parentheses and may hold anything:
        // the fields after the last ')' are plain, starting with field 3.
        let start = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_ascii_whitespace().nth(22 - 3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| KernelError::Protocol {
                op: format!("read {path}"),
                detail: "no start time in it".into(),
            })?;
        Ok(Some(ProcessId { pid, start }))
    }

    /// Whether this very process still runs (a zombie counts as gone: it
    /// will never act again).
    pub fn is_alive(&self) -> bool {
        match ProcessId::of(self.pid) {
            Ok(Some(now)) => now.start == self.start && !is_zombie(self.pid),
            Ok(None) => false,
            // Unreadable: assume alive, the safe side (nothing is undone).
            Err(_) => true,
        }
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')').and_then(|(_, rest)| rest.split_ascii_whitespace().next()) == Some("Z")
    })
}

/// `N` random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    let mut filled = 0;
    while filled < N {
        // SAFETY: the kernel writes at most N - filled bytes from that offset.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), N - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(KernelError::io("getrandom", e));
        }
        filled += n as usize;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessId::current().unwrap();
        assert!(me.is_alive());
        assert!(!ProcessId { start: me.start + 1, ..me }.is_alive());
    }

    #[test]
    fn every_new_namespace_has_a_new_cookie() {
        let here = RouteSocket::open_here().unwrap().netns_cookie().unwrap();
        assert_eq!(RouteSocket::open_here().unwrap().netns_cookie().unwrap(), here, "stable");
        let mut cookies = vec![here];
        for _ in 0..3 {
            let ns = crate::netns::create_anonymous().unwrap();
            let cookie = RouteSocket::open_in(&ns).unwrap().netns_cookie().unwrap();
            assert!(!cookies.contains(&cookie), "{cookie} seen before: {cookies:?}");
            cookies.push(cookie);
        }
    }
}
