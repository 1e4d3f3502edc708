//! The kernel layer's error type: which operation failed, on what, and the
//! errno the kernel answered, so the engine can map it to advice.

use std::io;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum KernelError {
    /// The kernel refused a netlink request.
    #[error("{op}: {}", describe_errno(*errno))]
    Netlink { op: String, errno: i32 },
    /// A system call or file operation failed.
    #[error("{op}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
    /// The kernel's answer could not be decoded or made no sense.
    #[error("{op}: unexpected netlink reply: {detail}")]
    Protocol { op: String, detail: String },
    #[error("no interface {name:?} in {netns}")]
    NoSuchLink { name: String, netns: String },
    #[error("network namespace {0} does not exist")]
    NoSuchNetns(String),
    /// The path exists but is no network namespace (`what` says what it is).
    #[error("{} is {what}, not a network namespace", path.display())]
    NotANetns { path: std::path::PathBuf, what: String },
    /// A test asked for this step to fail (see the engine's fault injection).
    #[error("injected failure at step {0}")]
    Injected(String),
}

impl KernelError {
    pub fn io(op: impl Into<String>, source: io::Error) -> Self {
        KernelError::Io { op: op.into(), source }
    }

    /// The errno behind this error, if the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Netlink { errno, .. } => Some(*errno),
            KernelError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

pub type Result<T, E = KernelError> = std::result::Result<T, E>;

/// `strerror` plus the errno's name, e.g. "Device or resource busy (EBUSY)".
fn describe_errno(errno: i32) -> String {
    let name = match errno {
        libc::EEXIST => "EEXIST",
        libc::EBUSY => "EBUSY",
        libc::EINVAL => "EINVAL",
        libc::ENODEV => "ENODEV",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ERANGE => "ERANGE",
        _ => "",
    };
    let text = io::Error::from_raw_os_error(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    if name.is_empty() { text } else { format!("{text} ({name})") }
}
