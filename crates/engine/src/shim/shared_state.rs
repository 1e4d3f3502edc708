//! What the CNI plugins know of a master's shared shim between calls: a file
//! per master in /run/nicslice (a tmpfs: it lasts one boot, as the shim
//! does), `flock`ed for the whole call, holding the shim's index, the
//! host's address its routes take as source, and the pod addresses routed
//! through it. The lock queues calls on one master (exactly one shim for
//! concurrent ADDs, no DEL removing a shim an ADD routes through); the
//! contents let an ADD skip looking the shim and the host's address up
//! (one route request instead of an address dump, a lookup and the route),
//! tell STATUS which pods lost their routes when the shim went missing, and
//! let the ADD that makes the shim again route all of them.
//!
//! The format is text, one item a line: `shim INDEX SOURCE`, then one pod
//! address a line. Anything unreadable reads as nothing known, which only
//! sends the next ADD the long way round.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::PathBuf;

use nicslice_kernel::{KernelError, RouteSocket};

use crate::error::Result;

/// Where the per-master files live.
const DIR: &str = "/run/nicslice";

/// The shim as the last call that made or found it saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KnownShim {
    pub index: u32,
    pub source: IpAddr,
}

/// The master's file, locked while this lives.
pub(super) struct MasterState {
    file: File,
    path: PathBuf,
    pub shim: Option<KnownShim>,
    /// Pod addresses routed through the shim, without repeats.
    pub routed: Vec<IpAddr>,
}

impl MasterState {
    /// Opens (making it if need be) and locks the file of master `parent`
    /// in the namespace of `host`, and reads it, for a call that changes the
    /// shim or its routes. An index is unique only in its namespace, so the
    /// namespace's cookie is in the name: unlike its inode, which the next
    /// namespace may get at once, no later namespace has it, so no
    /// namespace ever reads the state of one that is gone.
    pub fn lock(host: &RouteSocket, parent: u32) -> Result<MasterState> {
        let path = path(host, parent)?;
        let open =
            || File::options().create(true).truncate(false).read(true).write(true).open(&path);
        // The directory exists but on the first call of a boot: create it
        // only then (one open instead of a mkdir and a stat every call).
        let file = match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(DIR)
                    .map_err(|e| KernelError::io(format!("create {DIR}"), e))?;
                open()
            }
            other => other,
        }
        .map_err(|e| KernelError::io(format!("open {}", path.display()), e))?;
        file.lock().map_err(|e| KernelError::io(format!("lock {}", path.display()), e))?;
        let (shim, routed) = parse(&read_all(&file, &path)?);
        Ok(MasterState { file, path, shim, routed })
    }

    /// The pods routed through the shim of master `parent`, read under a
    /// shared lock (STATUS): none when no call ever made the file.
    pub fn routed_pods(host: &RouteSocket, parent: u32) -> Result<Vec<IpAddr>> {
        let path = path(host, parent)?;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(KernelError::io(format!("open {}", path.display()), e).into()),
        };
        file.lock_shared().map_err(|e| KernelError::io(format!("lock {}", path.display()), e))?;
        Ok(parse(&read_all(&file, &path)?).1)
    }

    /// Records `added` as routed through the shim, which is still `shim`:
    /// one write at the end of the file when nothing else changed.
    pub fn append(&mut self, added: &[IpAddr]) -> Result<()> {
        let new: Vec<IpAddr> =
            added.iter().copied().filter(|ip| !self.routed.contains(ip)).collect();
        if new.is_empty() {
            return Ok(());
        }
        self.routed.extend(&new);
        let text: String = new.iter().map(|ip| format!("{ip}\n")).collect();
        // The read left the offset at the end of the file.
        (&self.file)
            .write_all(text.as_bytes())
            .map_err(|e| KernelError::io(format!("write {}", self.path.display()), e).into())
    }

    /// Writes the whole state again (the shim made or found anew, or
    /// addresses removed).
    pub fn save(&mut self) -> Result<()> {
        let text = render(self.shim, &self.routed);
        let io = |e| KernelError::io(format!("write {}", self.path.display()), e);
        let mut file = &self.file;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.set_len(text.len() as u64).map_err(io)?;
        Ok(())
    }
}

fn path(host: &RouteSocket, parent: u32) -> Result<PathBuf> {
    let netns = host.netns_cookie()?;
    Ok(PathBuf::from(DIR).join(format!("shim-{netns:x}-{parent}.lock")))
}

/// The whole file in one read for up to a few hundred pods (read_to_string
/// would stat, seek and read twice); a larger one takes more reads.
fn read_all(file: &File, path: &std::path::Path) -> Result<String> {
    let mut bytes = vec![0u8; 8192];
    let mut len = 0;
    loop {
        let n = (&*file)
            .read(&mut bytes[len..])
            .map_err(|e| KernelError::io(format!("read {}", path.display()), e))?;
        len += n;
        // A regular file reads short only at its end.
        if n == 0 || len < bytes.len() {
            break;
        }
        bytes.resize(bytes.len() * 2, 0);
    }
    Ok(String::from_utf8_lossy(&bytes[..len]).into_owned())
}

fn parse(text: &str) -> (Option<KnownShim>, Vec<IpAddr>) {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("none");
    let mut words = first.split(' ');
    let shim = match (words.next(), words.next(), words.next(), words.next()) {
        (Some("none"), None, None, None) => None,
        (Some("shim"), Some(index), Some(source), None) => match (index.parse(), source.parse()) {
            (Ok(index), Ok(source)) => Some(KnownShim { index, source }),
            _ => return (None, Vec::new()),
        },
        _ => return (None, Vec::new()),
    };
    let mut routed: Vec<IpAddr> = Vec::new();
    for ip in lines.filter_map(|l| l.parse().ok()) {
        if !routed.contains(&ip) {
            routed.push(ip);
        }
    }
    (shim, routed)
}

fn render(shim: Option<KnownShim>, routed: &[IpAddr]) -> String {
    let mut text = match shim {
        Some(s) => format!("shim {} {}\n", s.index, s.source),
        None => "none\n".to_string(),
    };
    for ip in routed {
        text.push_str(&format!("{ip}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_reads_back_what_was_written_and_garbage_as_nothing() {
        let shim = Some(KnownShim { index: 7, source: "192.168.0.254".parse().unwrap() });
        let routed: Vec<IpAddr> =
            vec!["192.168.0.100".parse().unwrap(), "192.168.0.101".parse().unwrap()];
        let text = render(shim, &routed);
        assert_eq!(text, "shim 7 192.168.0.254\n192.168.0.100\n192.168.0.101\n");
        assert_eq!(parse(&text), (shim, routed.clone()));
        assert_eq!(parse(&render(None, &routed)), (None, routed.clone()));
        assert_eq!(parse(&(text + "192.168.0.100\n")).1, routed, "no repeats");
        assert_eq!(parse(""), (None, Vec::new()));
        assert_eq!(parse("shim x 1.2.3.4\n10.0.0.1\n"), (None, Vec::new()));
        assert_eq!(parse("\u{0}\u{1}garbage\n10.0.0.1\n"), (None, Vec::new()));
    }
}
