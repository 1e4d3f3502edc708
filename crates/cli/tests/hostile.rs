//! Hostile inputs for the CLI, kept from the attack campaign of issue 16 as
//! tables: every flag with bad values, namespaces that are not namespaces,
//! addresses no network can use, malformed topology files. Each row runs
//! the real binary against a private namespace world and asserts the exit
//! status, one clear line on stderr naming the problem (clap's usage errors
//! keep clap's format: the first line says what is wrong), and that
//! nothing is left: no link in the host's or the container's namespace, no
//! endpoint or network recorded, no file in the directory it ran in.
//! Needs root (it creates namespaces).

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{Lab, links};

/// What a row expects: clap's usage error (2) or nicslice's own (1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Usage,
    Refused,
}

struct Bench {
    lab: Lab,
    container: nicslice_kernel::Netns,
    container_name: String,
    cwd: PathBuf,
    host_links: Vec<String>,
}

impl Bench {
    fn new(tag: &str) -> Bench {
        let mut lab = Lab::new(tag);
        let (container, container_name) = lab.netns("c1");
        lab.lan("lan", &[]);
        lab.ok(&[
            "network",
            "create",
            "src",
            "--parent",
            "eth0",
            "--mode",
            "source",
            "--subnet",
            "10.50.0.0/24",
        ]);
        let cwd = std::env::temp_dir().join(format!("{}-cwd", lab.world.prefix()));
        std::fs::create_dir_all(&cwd).unwrap();
        let host_links = names(&lab.host.netns);
        Bench { lab, container, container_name, cwd, host_links }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_nicslice"))
            .arg("--state")
            .arg(&self.lab.state)
            .arg("--host-netns")
            .arg(&self.lab.host.netns_name)
            .args(args)
            .env_remove("NICSLICE_FAIL_AT")
            .env_remove("NICSLICE_LOG")
            .current_dir(&self.cwd)
            .output()
            .unwrap()
    }

    /// Runs one row; returns what was wrong with it, if anything.
    fn check(&self, args: &[&str], exit: Exit, needle: &str) -> Option<String> {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let code = out.status.code();
        let wrong = match exit {
            Exit::Usage if code != Some(2) => Some(format!("exit {code:?}, expected 2")),
            Exit::Refused if code != Some(1) => Some(format!("exit {code:?}, expected 1")),
            _ if err.contains("panicked") => Some("panicked".into()),
            _ if !err.lines().next().unwrap_or_default().contains(needle) => {
                Some(format!("first line lacks {needle:?}"))
            }
            Exit::Refused if err.trim_end().lines().count() != 1 => Some("not one line".into()),
            _ if err.contains('\u{1b}') => Some("colour codes in a pipe".into()),
            _ => self.leftover(),
        };
        wrong.map(|w| {
            self.clear();
            format!("nicslice {args:?}: {w}\n    stderr: {}", err.trim_end())
        })
    }

    /// Clears what a failed row may have left (a network it should not
    /// have made, links in the container), so later rows start clean.
    fn clear(&self) {
        let networks = self.run(&["network", "ls", "--json"]);
        let networks: serde_json::Value =
            serde_json::from_slice(&networks.stdout).unwrap_or_default();
        for name in networks.as_array().into_iter().flatten().filter_map(|n| n["name"].as_str()) {
            if name != "lan" && name != "src" {
                let _ = self.run(&["network", "rm", name, "--force"]);
            }
        }
        let mut sock = nicslice_kernel::RouteSocket::open_in(&self.container).unwrap();
        for link in sock.links().unwrap().into_iter().filter(|l| l.name != "lo") {
            let _ = sock.delete_link(link.index);
        }
    }

    /// What the row left behind, if anything.
    fn leftover(&self) -> Option<String> {
        let host = names(&self.lab.host.netns);
        if host != self.host_links {
            return Some(format!("host links {:?} -> {host:?}", self.host_links));
        }
        let inside = names(&self.container);
        if inside != ["lo"] {
            return Some(format!("links left in the container: {inside:?}"));
        }
        let stray: Vec<_> = std::fs::read_dir(&self.cwd).unwrap().collect();
        if !stray.is_empty() {
            return Some(format!("files left in the current directory: {stray:?}"));
        }
        let endpoints = self.run(&["endpoint", "ls", "--json"]);
        let endpoints: serde_json::Value =
            serde_json::from_slice(&endpoints.stdout).unwrap_or_default();
        if endpoints.as_array().is_none_or(|e| !e.is_empty()) {
            return Some(format!("endpoints recorded: {endpoints}"));
        }
        let networks = self.run(&["network", "ls", "--json"]);
        let networks: serde_json::Value =
            serde_json::from_slice(&networks.stdout).unwrap_or_default();
        if networks.as_array().is_none_or(|n| n.len() != 2) {
            return Some(format!("networks changed: {networks}"));
        }
        None
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.cwd);
    }
}

fn names(ns: &nicslice_kernel::Netns) -> Vec<String> {
    let mut n: Vec<String> = links(ns).into_iter().map(|l| l.name).collect();
    n.sort();
    n
}

fn report(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_flag_with_bad_values() {
    let b = Bench::new("hostile-cli");
    let c = b.container_name.as_str();
    let long_name = "n".repeat(65);
    let huge = "x".repeat(100_000);
    use Exit::{Refused, Usage};
    let rows: Vec<(Vec<&str>, Exit, &str)> = vec![
        // network create
        (vec!["network", "create"], Usage, "required"),
        (vec!["network", "create", "x", "--subnet", "nope"], Usage, "invalid value"),
        (vec!["network", "create", "x", "--gateway", "nope"], Usage, "invalid value"),
        (vec!["network", "create", "x", "--mtu", "-1"], Usage, "unexpected argument"),
        (vec!["network", "create", "x", "--mtu", "x"], Usage, "invalid value"),
        (vec!["network", "create", "x", "--vlan", "70000"], Usage, "invalid value"),
        (vec!["network", "create", "x", "--driver", "foo"], Usage, "invalid value"),
        (vec!["network", "create", "x", "--mode", "foo"], Usage, "invalid value"),
        (vec!["network", "create", "x", "--flag", "loud"], Usage, "invalid value"),
        (vec!["network", "create", "", "--parent", "eth0"], Refused, "network name"),
        (vec!["network", "create", &long_name, "--parent", "eth0"], Refused, "network name"),
        (vec!["network", "create", "a/b", "--parent", "eth0"], Refused, "network name"),
        (vec!["network", "create", "lan", "--parent", "eth0"], Refused, "lan"),
        (vec!["network", "create", "x", "--parent", "nsl-none0"], Refused, "nsl-none0"),
        (vec!["network", "create", "x", "--parent", &huge], Refused, "interface name"),
        (
            vec!["network", "create", "x", "--parent", "eth0", "--subnet", "224.0.0.0/24"],
            Refused,
            "multicast",
        ),
        (
            vec!["network", "create", "x", "--parent", "eth0", "--subnet", "127.0.0.0/24"],
            Refused,
            "loopback",
        ),
        (
            vec!["network", "create", "x", "--parent", "eth0", "--subnet", "169.254.0.0/16"],
            Refused,
            "link-local",
        ),
        (
            vec!["network", "create", "x", "--parent", "eth0", "--subnet", "ff02::/64"],
            Refused,
            "multicast",
        ),
        (
            vec!["network", "create", "x", "--parent", "eth0", "--subnet", "10.0.0.0/31"],
            Refused,
            "no room",
        ),
        (
            vec![
                "network",
                "create",
                "x",
                "--parent",
                "eth0",
                "--subnet",
                "10.0.0.0/24",
                "--gateway",
                "10.9.0.1",
            ],
            Refused,
            "outside",
        ),
        (
            vec![
                "network",
                "create",
                "x",
                "--parent",
                "eth0",
                "--subnet",
                "10.0.0.0/24",
                "--ip-range",
                "10.9.0.0/28",
            ],
            Refused,
            "inside no --subnet",
        ),
        (
            vec![
                "network",
                "create",
                "x",
                "--parent",
                "eth0",
                "--subnet",
                "10.0.0.0/24",
                "--aux-address",
                "x",
            ],
            Refused,
            "NAME=IP",
        ),
        (vec!["network", "create", "x", "--parent", "eth0", "--mtu", "70000"], Refused, "MTU"),
        (vec!["network", "create", "x", "--parent", "eth0", "--vlan", "0"], Refused, "VLAN"),
        // attach
        (vec!["attach", "lan"], Usage, "required"),
        (vec!["attach", "lan", "--netns", ""], Usage, "empty name"),
        (vec!["attach", "lan", "--netns", ".."], Usage, "not a namespace name"),
        (vec!["attach", "lan", "--pid", "x"], Usage, "invalid value"),
        (vec!["attach", "lan", "--pid", "-1"], Usage, "unexpected argument"),
        (vec!["attach", "lan", "--netns", c, "--pid", "1"], Usage, "cannot be used"),
        (vec!["attach", "nope", "--netns", c], Refused, "nope"),
        (vec!["attach", "lan", "--netns", "nsl-no-such-ns"], Refused, "does not exist"),
        (
            vec!["attach", "lan", "--netns", "/etc/passwd"],
            Refused,
            "regular file, not a network namespace",
        ),
        (vec!["attach", "lan", "--netns", "/tmp"], Refused, "directory, not a network namespace"),
        (
            vec!["attach", "lan", "--netns", "/dev/null"],
            Refused,
            "character device, not a network namespace",
        ),
        (
            vec!["attach", "lan", "--netns", "/proc/self/ns/mnt"],
            Refused,
            "mount namespace, not a network namespace",
        ),
        (vec!["attach", "lan", "--netns", c, "--ifname", "a/b"], Refused, "interface name"),
        (
            vec!["attach", "lan", "--netns", c, "--ifname", "0123456789abcdef"],
            Refused,
            "interface name",
        ),
        (vec!["attach", "lan", "--netns", c, "--mac", "zz"], Refused, "MAC"),
        (vec!["attach", "lan", "--netns", c, "--mac", "01:00:5e:00:00:01"], Refused, "multicast"),
        (vec!["attach", "lan", "--netns", c, "--ip", "nope"], Usage, "invalid value"),
        (vec!["attach", "lan", "--netns", c, "--ip", "10.9.9.9"], Refused, "10.9.9.9"),
        (vec!["attach", "lan", "--netns", c, "--route", "nope"], Refused, "nope"),
        (
            vec!["attach", "lan", "--netns", c, "--source-mac", "02:00:00:00:00:01"],
            Refused,
            "source",
        ),
        // detach, endpoint
        (vec!["detach", "lan", "--netns", ""], Usage, "empty name"),
        (
            vec!["endpoint", "macaddr", "src", "add", "01:00:5e:00:00:01", "--netns", c],
            Refused,
            "multicast and broadcast MACs cannot be listed",
        ),
        (vec!["endpoint", "macaddr", "src", "add", "zz", "--netns", c], Refused, "MAC"),
        (vec!["endpoint", "macaddr", "src", "frob", "--netns", c], Usage, "invalid value"),
    ];
    let mut failures: Vec<String> =
        rows.into_iter().filter_map(|(args, exit, needle)| b.check(&args, exit, needle)).collect();
    // The global --host-netns, which the bench sets for every other row.
    let out = Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .args(["--state", b.lab.state.to_str().unwrap(), "--host-netns", "", "network", "ls"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2)
        || !err.lines().next().unwrap_or_default().contains("empty name")
    {
        failures.push(format!("--host-netns \"\": {:?} {err}", out.status.code()));
    }
    report(failures);
}

#[test]
fn malformed_topology_files() {
    let b = Bench::new("hostile-topo");
    let dir = b.cwd.parent().unwrap().join(format!("{}-topo", b.lab.world.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, body: &[u8]| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let files: Vec<(PathBuf, &str)> = vec![
        (write("garbage.toml", b"\xff\xfe\x00garbage"), "not UTF-8"),
        (write("open.json", b"{"), "not a valid topology"),
        (write("list.json", b"[1,2]"), "not a valid topology"),
        (write("types.toml", b"[switch]\nname = 7\n"), "not a valid topology"),
        (write("hosts.toml", b"hosts = \"x\"\n"), "not a valid topology"),
        (
            write("addr.toml", b"[[hosts]]\nname = \"h\"\naddresses = [\"nope\"]\n"),
            "not a valid topology",
        ),
        (
            write(
                "mode.toml",
                b"[[hosts]]\nname = \"h\"\n[[hosts.children]]\nname = \"c\"\nmode = \"bridgy\"\n",
            ),
            "not a valid topology",
        ),
        (write("deep.json", "[".repeat(100_000).as_bytes()), "not a valid topology"),
        (dir.join("missing.toml"), "missing.toml"),
        (dir.clone(), "reading"),
    ];
    let failures = files.iter().filter_map(|(path, needle)| {
        b.check(&["explain", path.to_str().unwrap()], Exit::Refused, needle)
    });
    let failures: Vec<String> = failures.collect();
    let _ = std::fs::remove_dir_all(&dir);
    report(failures);
}
