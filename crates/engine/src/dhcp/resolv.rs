//! The DNS servers of a DHCP lease, where programs in the namespace find
//! them: for a namespace named by iproute2, `/etc/netns/NAME/resolv.conf`,
//! which `ip netns exec NAME` mounts over `/etc/resolv.conf`. Other targets
//! (a container's pid, a namespace file) keep their own resolver
//! configuration; their DNS servers are only recorded and shown.
//!
//! Never overwrites or deletes a file nicslice did not write: a resolv.conf
//! already there is left alone (the user's), and the one written carries a
//! first line that marks it as nicslice's, checked before it is removed or
//! added to (a dual-stack endpoint's DHCPv6 servers join its DHCPv4 ones).

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

const NETNS_ETC: &str = "/etc/netns";

fn marker(network: &str, ifname: &str) -> String {
    format!("# written by nicslice for {ifname} on network {network}; removed at detach")
}

/// What was written, to be removed at detach.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Written {
    pub path: PathBuf,
    /// The directory /etc/netns/NAME was made too, and goes with the file.
    pub made_dir: bool,
}

/// Where the resolv.conf of the iproute2 namespace `netns_name` goes.
pub fn path_of(netns_name: &str) -> PathBuf {
    Path::new(NETNS_ETC).join(netns_name).join("resolv.conf")
}

/// Writes the resolv.conf of the iproute2 namespace `netns_name`, unless
/// one is there already or there is nothing to write.
pub fn write(
    netns_name: &str,
    network: &str,
    ifname: &str,
    dns: &[IpAddr],
    domain: Option<&str>,
) -> std::io::Result<Option<Written>> {
    write_under(Path::new(NETNS_ETC), netns_name, network, ifname, dns, domain)
}

fn write_under(
    base: &Path,
    netns_name: &str,
    network: &str,
    ifname: &str,
    dns: &[IpAddr],
    domain: Option<&str>,
) -> std::io::Result<Option<Written>> {
    if dns.is_empty() {
        return Ok(None);
    }
    let dir = base.join(netns_name);
    let made_dir = match std::fs::create_dir(&dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(base)?;
            std::fs::create_dir(&dir)?;
            true
        }
        Err(e) => return Err(e),
    };
    let path = dir.join("resolv.conf");
    let mut text = marker(network, ifname) + "\n";
    if let Some(domain) = domain {
        text += &format!("search {domain}\n");
    }
    for server in dns {
        text += &format!("nameserver {server}\n");
    }
    // create_new: a file already there is the user's and stays as it is.
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(mut file) => {
            file.write_all(text.as_bytes())?;
            Ok(Some(Written { path, made_dir }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            tracing::warn!(
                "{} exists; leaving it (DNS servers from DHCP: {})",
                path.display(),
                dns.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            );
            if made_dir {
                let _ = std::fs::remove_dir(&dir);
            }
            Ok(None)
        }
        Err(e) => {
            if made_dir {
                let _ = std::fs::remove_dir(&dir);
            }
            Err(e)
        }
    }
}

/// Whether the file at `path` is the one nicslice wrote for `ifname` on
/// `network` (its marker line).
fn is_ours(path: &Path, network: &str, ifname: &str) -> bool {
    std::fs::read_to_string(path)
        .is_ok_and(|text| text.lines().next() == Some(marker(network, ifname).as_str()))
}

/// Adds `dns` to what [`write`] wrote, if it is still nicslice's file (the
/// servers already in it are not repeated). A file that is not nicslice's
/// is left alone, as [`write`] leaves one.
pub fn append(
    written: &Written,
    network: &str,
    ifname: &str,
    dns: &[IpAddr],
) -> std::io::Result<()> {
    if !is_ours(&written.path, network, ifname) {
        return Ok(());
    }
    let text = std::fs::read_to_string(&written.path)?;
    let mut more = String::new();
    for server in dns {
        let line = format!("nameserver {server}");
        if !text.lines().any(|l| l == line) {
            more += &line;
            more.push('\n');
        }
    }
    std::fs::OpenOptions::new().append(true).open(&written.path)?.write_all(more.as_bytes())
}

/// Removes what [`write`] wrote, if it is still nicslice's file.
pub fn remove(written: &Written, network: &str, ifname: &str) {
    if !is_ours(&written.path, network, ifname) {
        return;
    }
    if let Err(e) = std::fs::remove_file(&written.path) {
        tracing::warn!("removing {}: {e}", written.path.display());
        return;
    }
    if written.made_dir
        && let Some(dir) = written.path.parent()
    {
        // Only if empty: whatever else is there now is someone's.
        let _ = std::fs::remove_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nsl-resolv-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn written_then_removed_with_its_directory() {
        let base = scratch("rm");
        let dns = [IpAddr::from([192, 168, 0, 1])];
        let w = write_under(&base, "ns1", "lan", "eth0", &dns, Some("lan.test")).unwrap().unwrap();
        let text = std::fs::read_to_string(&w.path).unwrap();
        assert!(text.contains("nameserver 192.168.0.1\n") && text.contains("search lan.test"));
        // A dual-stack endpoint's DHCPv6 servers join the DHCPv4 ones, once.
        let v6: IpAddr = "fd00::53".parse().unwrap();
        append(&w, "lan", "eth0", &[v6, dns[0]]).unwrap();
        append(&w, "lan", "eth0", &[v6]).unwrap();
        let text = std::fs::read_to_string(&w.path).unwrap();
        assert!(text.ends_with("nameserver 192.168.0.1\nnameserver fd00::53\n"), "{text}");
        remove(&w, "lan", "eth0");
        assert!(!base.join("ns1").exists());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_users_file_is_neither_replaced_nor_removed() {
        let base = scratch("keep");
        std::fs::create_dir_all(base.join("ns1")).unwrap();
        std::fs::write(base.join("ns1/resolv.conf"), "nameserver 9.9.9.9\n").unwrap();
        let dns = [IpAddr::from([192, 168, 0, 1])];
        assert_eq!(write_under(&base, "ns1", "lan", "eth0", &dns, None).unwrap(), None);
        let theirs = Written { path: base.join("ns1/resolv.conf"), made_dir: true };
        append(&theirs, "lan", "eth0", &["fd00::53".parse().unwrap()]).unwrap();
        remove(&theirs, "lan", "eth0");
        assert_eq!(std::fs::read_to_string(&theirs.path).unwrap(), "nameserver 9.9.9.9\n");
        let _ = std::fs::remove_dir_all(&base);
    }
}
