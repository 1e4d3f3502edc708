//! The worlds the lab leaves up on purpose (`nicslice lab --keep`) and the ones
//! a killed run left behind: a marker file per kept world, the reaper that
//! removes stale worlds but never a kept one, and the cleaner behind
//! `nicslice lab --clean`. Only names of the lab's own scheme
//! (`nsl-TAG-PID-N-ROLE`) are ever touched.

use std::path::{Path, PathBuf};

use nicslice_kernel::netns;

/// Where the markers of kept worlds live by default.
pub const KEPT_DIR: &str = "/run/nicslice/lab-kept";

/// The record of kept worlds: one empty file per world in a directory, named
/// after the world's prefix (`nsl-TAG-PID-N`).
#[derive(Debug, Clone)]
pub struct KeptWorlds {
    dir: PathBuf,
}

impl Default for KeptWorlds {
    fn default() -> Self {
        KeptWorlds::new(KEPT_DIR)
    }
}

/// What [`KeptWorlds::clean`] removed, and what it could not.
#[derive(Debug, Default)]
pub struct Cleaned {
    /// Namespaces of kept worlds removed.
    pub removed: Vec<String>,
    /// Namespaces of killed labs removed.
    pub stale: Vec<String>,
    /// How many kept worlds were forgotten (their markers removed).
    pub worlds: usize,
    /// One line per failure: what, and the kernel's or the file system's word.
    pub errors: Vec<String>,
}

/// The world prefix and owning PID of a namespace name of the lab's scheme.
fn parse_name(name: &str) -> Option<(&str, u32)> {
    let role_at = name.match_indices('-').nth(3)?.0;
    let prefix = &name[..role_at];
    let mut parts = prefix.split('-');
    parts.next().filter(|p| *p == "nsl")?;
    let _tag = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u32>().ok()?;
    (role_at + 1 < name.len()).then_some((prefix, pid))
}

fn alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
}

/// The lab's namespaces in `/run/netns`, by name.
fn lab_namespaces() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(netns::NETNS_RUN_DIR) else { return Vec::new() };
    let mut names: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| parse_name(n).is_some())
        .collect();
    names.sort();
    names
}

impl KeptWorlds {
    pub fn new(dir: impl Into<PathBuf>) -> KeptWorlds {
        KeptWorlds { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records the world `prefix` as kept.
    pub fn mark(&self, prefix: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::write(self.dir.join(prefix), b"")
    }

    pub fn is_kept(&self, prefix: &str) -> bool {
        self.dir.join(prefix).exists()
    }

    /// The prefixes of every kept world.
    pub fn prefixes(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut out: Vec<String> = dir
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("nsl-"))
            .collect();
        out.sort();
        out
    }

    /// Deletes namespaces a crashed or killed earlier run left behind: names
    /// of the lab's scheme whose PID is no longer a running process and whose
    /// world is not kept. Returns the names removed (`stale`) and, for each
    /// one that could not be, why (`errors`): a namespace that will not go
    /// is said, never skipped in silence.
    pub fn reap_stale(&self) -> Cleaned {
        let mut out = Cleaned::default();
        for name in lab_namespaces() {
            let Some((prefix, pid)) = parse_name(&name) else { continue };
            if alive(pid) || self.is_kept(prefix) {
                continue;
            }
            match netns::delete_named(&name) {
                Ok(()) => out.stale.push(name),
                Err(e) => out.errors.push(format!("namespace {name}: {e}")),
            }
        }
        out
    }

    /// Removes the kept world `prefix`: its namespaces, then its marker
    /// (left in place if a namespace could not be removed, so a later clean
    /// tries again). Keeps going after an error and reports them all.
    pub fn forget(&self, prefix: &str) -> Cleaned {
        let mut out = Cleaned::default();
        for name in lab_namespaces() {
            if parse_name(&name).is_none_or(|(p, _)| p != prefix) {
                continue;
            }
            match netns::delete_named(&name) {
                Ok(()) => out.removed.push(name),
                Err(e) => out.errors.push(format!("namespace {name}: {e}")),
            }
        }
        if out.errors.is_empty() {
            let marker = self.dir.join(prefix);
            match std::fs::remove_file(&marker) {
                Ok(()) => out.worlds = 1,
                Err(e) => out.errors.push(format!("{}: {e}", marker.display())),
            }
        }
        out
    }

    /// Removes every kept world and every stale namespace.
    pub fn clean(&self) -> Cleaned {
        let mut out = Cleaned::default();
        for prefix in self.prefixes() {
            let one = self.forget(&prefix);
            out.removed.extend(one.removed);
            out.worlds += one.worlds;
            out.errors.extend(one.errors);
        }
        let reaped = self.reap_stale();
        out.stale = reaped.stale;
        out.errors.extend(reaped.errors);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::parse_name;

    #[test]
    fn names_of_the_scheme_and_nothing_else() {
        assert_eq!(parse_name("nsl-labbridge-42-0-sw"), Some(("nsl-labbridge-42-0", 42)));
        assert_eq!(parse_name("nsl-t-7-12-c0_1"), Some(("nsl-t-7-12", 7)));
        assert_eq!(parse_name("nsl-t-7-12"), None, "no role");
        assert_eq!(parse_name("nsl-t-x-0-sw"), None, "no PID");
        assert_eq!(parse_name("nsl-t-7-x-sw"), None, "no sequence number");
        assert_eq!(parse_name("pbc"), None);
        assert_eq!(parse_name("mine-t-7-0-sw"), None);
    }
}
