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
//! address a line with the attachment it belongs to (`ADDRESS NETWORK
//! CONTAINERID IFNAME`: GC of a network matches its pods against the
//! runtime's valid attachments, and leaves other networks' pods on the same
//! master alone; a line of a bare address, written before owners were
//! kept, is never collected by GC, only by its DEL). Anything unreadable reads as nothing known,
//! which only sends the next ADD the long way round.

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
    pub routed: Vec<Routed>,
}

/// A pod address routed through the shim, and the CNI attachment it was
/// routed for, when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub ip: IpAddr,
    pub owner: Option<Attachment>,
}

/// A CNI attachment: network name, container ID, interface. None of the
/// three holds a space (the CNI spec's rules and the kernel's), so a line
/// splits back into them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
}

impl Routed {
    /// Does the GC of CNI network `network` keep this route, given its test
    /// of the attachments it keeps? Another network's always, and one whose
    /// attachment is unknown.
    pub fn kept_by(&self, network: &str, keep: &impl Fn(&str, &str) -> bool) -> bool {
        self.owner.as_ref().is_none_or(|a| a.network != network || keep(&a.container_id, &a.ifname))
    }
}

/// The addresses of `routed`.
pub(super) fn addresses(routed: &[Routed]) -> Vec<IpAddr> {
    routed.iter().map(|r| r.ip).collect()
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
    pub fn routed_pods(host: &RouteSocket, parent: u32) -> Result<Vec<Routed>> {
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
    pub fn append(&mut self, added: &[Routed]) -> Result<()> {
        let new: Vec<Routed> = added.iter().filter(|a| !self.routes(a.ip)).cloned().collect();
        if new.is_empty() {
            return Ok(());
        }
        let text: String = new.iter().map(line).collect();
        self.routed.extend(new);
        // The read left the offset at the end of the file.
        (&self.file)
            .write_all(text.as_bytes())
            .map_err(|e| KernelError::io(format!("write {}", self.path.display()), e).into())
    }

    /// Is `ip` routed through the shim?
    pub fn routes(&self, ip: IpAddr) -> bool {
        self.routed.iter().any(|r| r.ip == ip)
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

fn parse(text: &str) -> (Option<KnownShim>, Vec<Routed>) {
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
    let mut routed: Vec<Routed> = Vec::new();
    for line in lines {
        let mut words = line.split(' ');
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else { continue };
        let owner = match (words.next(), words.next(), words.next(), words.next()) {
            (Some(network), Some(container_id), Some(ifname), None) => Some(Attachment {
                network: network.to_string(),
                container_id: container_id.to_string(),
                ifname: ifname.to_string(),
            }),
            _ => None,
        };
        if !routed.iter().any(|r| r.ip == ip) {
            routed.push(Routed { ip, owner });
        }
    }
    (shim, routed)
}

/// One pod's line.
fn line(r: &Routed) -> String {
    match &r.owner {
        Some(a) => format!("{} {} {} {}\n", r.ip, a.network, a.container_id, a.ifname),
        None => format!("{}\n", r.ip),
    }
}

fn render(shim: Option<KnownShim>, routed: &[Routed]) -> String {
    let mut text = match shim {
        Some(s) => format!("shim {} {}\n", s.index, s.source),
        None => "none\n".to_string(),
    };
    text.extend(routed.iter().map(line));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(network: &str, container_id: &str) -> Option<Attachment> {
        Some(Attachment {
            network: network.to_string(),
            container_id: container_id.to_string(),
            ifname: "eth0".to_string(),
        })
    }

    #[test]
    fn the_state_reads_back_what_was_written_and_garbage_as_nothing() {
        let shim = Some(KnownShim { index: 7, source: "192.168.0.254".parse().unwrap() });
        let routed = vec![
            Routed { ip: "192.168.0.100".parse().unwrap(), owner: attachment("lan", "c1") },
            Routed { ip: "192.168.0.101".parse().unwrap(), owner: None },
        ];
        let text = render(shim, &routed);
        assert_eq!(text, "shim 7 192.168.0.254\n192.168.0.100 lan c1 eth0\n192.168.0.101\n");
        assert_eq!(parse(&text), (shim, routed.clone()));
        assert_eq!(parse(&render(None, &routed)), (None, routed.clone()));
        assert_eq!(parse(&(text + "192.168.0.100 lan c2 eth0\n")).1, routed, "no repeats");
        assert_eq!(parse(""), (None, Vec::new()));
        assert_eq!(parse("shim x 1.2.3.4\n10.0.0.1\n"), (None, Vec::new()));
        assert_eq!(parse("\u{0}\u{1}garbage\n10.0.0.1\n"), (None, Vec::new()));
    }

    #[test]
    fn gc_collects_only_its_own_networks_pods_that_it_does_not_keep() {
        let bare = Routed { ip: "10.0.0.1".parse().unwrap(), owner: None };
        let ours = Routed { ip: "10.0.0.2".parse().unwrap(), owner: attachment("lan", "c") };
        let theirs = Routed { ip: "10.0.0.3".parse().unwrap(), owner: attachment("wan", "d") };
        let keep_none = |_: &str, _: &str| false;
        assert!(bare.kept_by("lan", &keep_none));
        assert!(!ours.kept_by("lan", &keep_none));
        assert!(theirs.kept_by("lan", &keep_none), "another network's pod");
        assert!(ours.kept_by("lan", &|c: &str, i: &str| c == "c" && i == "eth0"));
    }
}
