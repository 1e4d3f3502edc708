//! The host's DHCPv6 DUID (RFC 8415 11): one per host, made once and kept in
//! a file beside the state database (`STATE.dhcp6-duid`, hex), so that every
//! DHCPv6 endpoint of this host presents the same DUID in every run, and a
//! server that keys its leases by DUID and IAID hands a re-attached endpoint
//! its address back. The bytes are the engine's to choose; this only keeps
//! them. A file it did not make (unreadable, not hex) is refused, never
//! overwritten.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::StoreError;

/// Where the DUID of the host whose state is at `state` is kept.
pub fn host_duid_path(state: &Path) -> PathBuf {
    let mut path = state.as_os_str().to_owned();
    path.push(".dhcp6-duid");
    PathBuf::from(path)
}

fn parse(text: &str) -> Option<Vec<u8>> {
    let hex = text.trim();
    if hex.is_empty() || !hex.len().is_multiple_of(2) || hex.len() > 2 * 130 {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

/// The DUID kept for the state at `state`; the first call makes it with
/// `make` and writes it (`O_EXCL`: of two processes making it at once, one
/// writes and both read that one).
pub fn host_duid(state: &Path, make: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let path = host_duid_path(state);
    let read = |path: &Path| -> Result<Vec<u8>, StoreError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| StoreError::Inspect { path: path.to_owned(), source })?;
        parse(&text).ok_or_else(|| StoreError::UnsafePath {
            path: path.to_owned(),
            reason: "it does not hold a DUID in hex, as nicslice writes it; move it away".into(),
        })
    };
    if path.exists() {
        return read(&path);
    }
    let duid = make();
    let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&path);
    match created {
        Ok(mut file) => {
            let hex: String = duid.iter().map(|b| format!("{b:02x}")).collect();
            file.write_all(format!("{hex}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|source| StoreError::CreateFile { path: path.clone(), source })?;
            Ok(duid)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Another process made it meanwhile: its bytes are the host's.
            // It may not have written them yet.
            for _ in 0..50 {
                if let Ok(duid) = read(&path) {
                    return Ok(duid);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            read(&path)
        }
        Err(source) => Err(StoreError::CreateFile { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_read_back() {
        let dir = std::env::temp_dir().join(format!("nsl-duid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.join("state.db");
        let first = host_duid(&state, || vec![0, 4, 1, 2, 3]).unwrap();
        assert_eq!(first, vec![0, 4, 1, 2, 3]);
        let again = host_duid(&state, || panic!("made twice")).unwrap();
        assert_eq!(again, first, "stable across runs");
        std::fs::write(host_duid_path(&state), "not hex").unwrap();
        assert!(host_duid(&state, Vec::new).is_err(), "a file it did not write is refused");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
