//! The lower bound of one CNI call: the exec of a static binary that does
//! nothing (built here with `gcc -static`), plus the kernel's own work for
//! one ADD (link straight into the container, address, the announcement
//! asked for, up, default route) or DEL (delete the link), done in-process
//! on open sockets.
//!
//! The announcement (`arp_notify`: the kernel sends a gratuitous ARP as the
//! link comes up, so that neighbours drop a stale MAC for a reused address)
//! is part of the ADD of nicslice-macvlan and of the reference macvlan
//! plugin alike (it sets the same `arp_notify`).
//!
//! The delete is timed on the link a plugin's ADD made, at the moment its
//! DEL would run: how long the kernel takes to unregister a link depends on
//! what the link has gathered since it came up (IPv6's first packets, route
//! cache entries), and one deleted at once, as in the ADD's round here, is
//! quicker to go than any a CNI DEL meets.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nicslice_kernel::{MacvlanLinkRequest, Netns, Route, RouteSocket};
use nicslice_model::{Driver, IfName, MacvlanMode};

use anyhow::{Result, anyhow};

/// Compiles the C program `code` into a static binary `dir/name`; None if
/// gcc is missing or fails.
fn static_c_binary(dir: &Path, name: &str, code: &str) -> Option<PathBuf> {
    let src = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    let built = std::fs::write(&src, code).is_ok()
        && Command::new("gcc")
            .args(["-static", "-O2", "-s", "-o"])
            .arg(&bin)
            .arg(&src)
            .status()
            .is_ok_and(|s| s.success());
    built.then_some(bin)
}

/// Builds the do-nothing static binary in `dir`; `/bin/true` (dynamic) if gcc is missing.
pub fn nothing_binary(dir: &Path) -> (PathBuf, bool) {
    match static_c_binary(dir, "nothing", "int main(void) { return 0; }\n") {
        Some(bin) => (bin, true),
        None => (PathBuf::from("/bin/true"), false),
    }
}

/// Builds the RSS probe in `dir`: `rss-probe OUT PROGRAM ARGS...` forks
/// (from a process of a few pages), runs PROGRAM with the same stdin, stdout
/// and environment, and writes the peak RSS of its process tree in KiB to
/// OUT; it exits with PROGRAM's status. None if gcc is missing.
pub fn rss_probe(dir: &Path) -> Option<PathBuf> {
    let code = r#"#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    pid_t pid = fork();
    if (pid == 0) { execv(argv[2], argv + 2); _exit(127); }
    int status; struct rusage ru;
    if (pid < 0 || wait4(pid, &status, 0, &ru) != pid) return 126;
    FILE *out = fopen(argv[1], "w");
    if (!out) return 125;
    fprintf(out, "%ld\n", ru.ru_maxrss);
    fclose(out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 124;
}
"#;
    static_c_binary(dir, "rss-probe", code)
}

/// One ADD's kernel work and one DEL's, timed separately, on open sockets.
pub struct KernelWork {
    host: RouteSocket,
    container: RouteSocket,
    req: MacvlanLinkRequest,
    pub adds: Vec<Duration>,
    pub dels: Vec<Duration>,
}

impl KernelWork {
    pub fn new(host: &Netns, container: &Netns) -> Result<KernelWork> {
        let mut h = RouteSocket::open_in(host)?;
        let c = RouteSocket::open_in(container)?;
        let parent = h
            .link_by_name("eth0")?
            .ok_or_else(|| anyhow!("the benchmark's host namespace has no eth0"))?;
        let name = IfName::new("eth0")?;
        let req = MacvlanLinkRequest::new(Driver::Macvlan, name, parent.index, MacvlanMode::Bridge);
        Ok(KernelWork { host: h, container: c, req, adds: Vec::new(), dels: Vec::new() })
    }

    /// Link into the container, address, announcement, up, default route
    /// (timed); then delete it (not timed: see the module docs).
    pub fn round(&mut self, container: &Netns, i: usize) -> Result<()> {
        let addr = format!("192.168.0.{}/24", 200 + (i % 50)).parse()?;
        let gw = "192.168.0.1".parse()?;
        let c = &mut self.container;
        let start = Instant::now();
        self.host.create_macvlan(&self.req, Some(container))?;
        let link = c.require_link_brief("eth0", "bench container")?;
        c.add_address(link.index, addr)?;
        c.enable_arp_notify(link.index)?;
        c.set_up(link.index, true)?;
        c.add_route(&Route::default_via(gw, link.index))?;
        self.adds.push(start.elapsed());
        c.delete_link(link.index)?;
        Ok(())
    }

    /// Deletes the container's `eth0`, made by a plugin's ADD (timed).
    pub fn delete_plugins_link(&mut self) -> Result<()> {
        let c = &mut self.container;
        let index = c.index_of("eth0")?.ok_or_else(|| anyhow!("the plugin's ADD left no eth0"))?;
        let start = Instant::now();
        c.delete_link(index)?;
        self.dels.push(start.elapsed());
        Ok(())
    }
}
