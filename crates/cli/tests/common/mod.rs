//! Shared set-up of the CLI's black-box tests: a private namespace world
//! (switch namespace with bridge br0 at 192.168.0.1/24, host namespace whose
//! parent `eth0` is a veth into the switch at 192.168.0.254/24), a state
//! database of the test's own, and a way to run the real `nicslice` binary
//! against them. Assertions read the kernel back through nicslice-kernel.

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use nicslice_kernel::{Link, Netns, Pinger, Route, RouteSocket};
use nicslice_lab::{Host, World};

pub struct Lab {
    pub world: World,
    pub switch: Netns,
    pub host: Host,
    pub state: PathBuf,
}

impl Drop for Lab {
    /// The state database is the test's own: it goes with the world.
    fn drop(&mut self) {
        nicslice_store::Store::remove_files(&self.state);
        let mut agent_lock = self.state.clone().into_os_string();
        agent_lock.push(".dhcp-agent.lock");
        let _ = std::fs::remove_file(agent_lock);
    }
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        let mut world = World::new(tag);
        let switch = world.switch(Some("192.168.0.1/24".parse().unwrap())).unwrap();
        let host =
            world.host(&switch, "host", "eth0", Some("192.168.0.254/24".parse().unwrap())).unwrap();
        let state = std::env::temp_dir().join(format!("{}.db", world.prefix()));
        Lab { world, switch, host, state }
    }

    /// Runs `nicslice ARGS` against this lab's host namespace and state.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nicslice"));
        cmd.arg("--state").arg(&self.state).arg("--host-netns").arg(&self.host.netns_name);
        cmd.args(args);
        cmd.env_remove("NICSLICE_FAIL_AT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run nicslice")
    }

    /// Runs and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "nicslice {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and insists on failure with one line on stderr containing `needle`.
    pub fn fails(&self, args: &[&str], needle: &str) -> String {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success(),
            "nicslice {args:?} succeeded; expected an error about {needle:?}"
        );
        assert!(err.contains(needle), "nicslice {args:?}: expected {needle:?} in: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "error must be one line: {err}");
        assert!(!err.contains("panicked"), "{err}");
        err
    }

    /// `network create NAME` on the host's eth0 with the switch's subnet
    /// 192.168.0.0/24 and its address as gateway, plus `extra` options.
    pub fn lan(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["network", "create", name, "--parent", "eth0"];
        args.extend_from_slice(&["--subnet", "192.168.0.0/24", "--gateway", "192.168.0.1"]);
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    /// A new namespace of this world, by its full iproute2 name.
    pub fn netns(&mut self, role: &str) -> (Netns, String) {
        let ns = self.world.netns(role).unwrap();
        (ns, self.world.name_of(role))
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// The pids of the `nicslice dhcp-agent` processes running for this
    /// lab's state database, found by their command lines.
    pub fn dhcp_agent_pids(&self) -> Vec<u32> {
        let state = self.state.display().to_string();
        let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
        procs
            .filter_map(|e| {
                let e = e.ok()?;
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                (cmdline.contains(" dhcp-agent") && cmdline.contains(&state)).then_some(pid)
            })
            .collect()
    }

    /// Whether a process holds this lab's agent lock (`STATE.dhcp-agent.lock`,
    /// which a running agent keeps locked).
    pub fn dhcp_agent_lock_held(&self) -> bool {
        let mut path = self.state.clone().into_os_string();
        path.push(".dhcp-agent.lock");
        match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(file) => file.try_lock().is_err(),
            Err(_) => false,
        }
    }

    /// No agent was started or left for this lab's state database, and an
    /// agent's pass finds no lease to keep.
    pub fn assert_no_dhcp_agent(&self) {
        assert_eq!(self.dhcp_agent_pids(), Vec::<u32>::new(), "no dhcp-agent running");
        assert!(!self.dhcp_agent_lock_held(), "nothing holds the agent's lock");
        let report = self.json(&["dhcp-agent", "--once", "--now"]);
        assert!(report["next_due"].is_null(), "no lease held: {report}");
        let touched = ["renewed", "replaced", "lost", "failed"];
        assert!(touched.iter().all(|k| report[k] == serde_json::json!([])), "{report}");
    }
}

pub fn links(ns: &Netns) -> Vec<Link> {
    RouteSocket::open_in(ns).unwrap().links().unwrap()
}

pub fn link(ns: &Netns, name: &str) -> Option<Link> {
    RouteSocket::open_in(ns).unwrap().link_by_name(name).unwrap()
}

pub fn addresses(ns: &Netns, name: &str) -> Vec<String> {
    let mut sock = RouteSocket::open_in(ns).unwrap();
    let Some(l) = sock.link_by_name(name).unwrap() else { return vec![] };
    sock.addresses(Some(l.index))
        .unwrap()
        .into_iter()
        .filter(|(_, a)| !a.addr().is_loopback() && !is_link_local(a.addr()))
        .map(|(_, a)| a.to_string())
        .collect()
}

pub fn routes(ns: &Netns) -> Vec<Route> {
    RouteSocket::open_in(ns).unwrap().routes().unwrap()
}

pub fn default_gateway(ns: &Netns) -> Option<IpAddr> {
    routes(ns).into_iter().find(|r| r.is_default()).and_then(|r| r.gateway)
}

/// One cold probe, as the lab does: `from`'s neighbour cache is flushed
/// first, so an ARP entry left half-resolved by an earlier assertion (a
/// source-mode child whose replies were dropped, say) cannot decide this one.
/// Under emulation a nicslice command can outlast the kernel's ARP retries,
/// and a stale INCOMPLETE entry then swallows every echo of the window.
pub fn ping(from: &Netns, to: &str) -> bool {
    RouteSocket::open_in(from).unwrap().flush_neighbours().unwrap();
    Pinger::open_in(from).unwrap().ping(to.parse().unwrap(), 3, Duration::from_millis(900)).unwrap()
}

/// `ping` given 3 s instead of 0.9: long enough for the kernel to send a
/// neighbour solicitation again (it waits 1 s for an answer), for a first
/// exchange over a link just made, where a loaded machine can lose the
/// first one. Only for reachability asserted; a refusal is `!ping`.
pub fn ping_patiently(from: &Netns, to: &str) -> bool {
    RouteSocket::open_in(from).unwrap().flush_neighbours().unwrap();
    Pinger::open_in(from).unwrap().ping(to.parse().unwrap(), 10, Duration::from_secs(3)).unwrap()
}

/// Interfaces in `ns` other than `lo`.
pub fn non_lo(ns: &Netns) -> Vec<String> {
    links(ns).into_iter().map(|l| l.name).filter(|n| n != "lo").collect()
}

fn is_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// Brings `lo` of `ns` down (namespaces of a World start with it up).
pub fn lo_down(ns: &Netns) {
    let mut s = RouteSocket::open_in(ns).unwrap();
    let lo = s.require_link("lo", "test").unwrap();
    s.set_up(lo.index, false).unwrap();
}

/// Runs CNI plugin `plugin` (a file in `dir`, the CNI_PATH) as a runtime
/// does, in `lab`'s host namespace: `cmd` for container `id` in `netns`
/// (a path), interface `ifname`, `conf` on stdin. (success, stdout JSON.)
pub fn cni_plugin(
    lab: &Lab,
    dir: &std::path::Path,
    plugin: &str,
    (cmd, netns, id, ifname): (&str, &str, &str, &str),
    conf: &serde_json::Value,
) -> (bool, serde_json::Value) {
    use std::io::Write;
    use std::process::Stdio;
    let _inside = lab.host.netns.enter().unwrap();
    let mut child = Command::new(dir.join(plugin))
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", dir)
        .env_remove("NICSLICE_FAIL_AT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null))
}
