//! The conformance suite's harness: the implementations under test (by path,
//! so the same cases run against Debian's reference plugins and nicslice's),
//! a private namespace set-up per case (switch with bridge br0 at
//! 192.168.0.1/24, host namespace whose `eth0` is a veth into it at
//! 192.168.0.254/24 with a default route, container namespaces), and a way to
//! call a plugin as a runtime does: in the host namespace, with the CNI
//! variables and the configuration on stdin.

#![allow(dead_code)]

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nicslice_kernel::{Link, Netns, Pinger, Route, RouteSocket};
use nicslice_lab::{Host, World};
use serde_json::{Value, json};

// The etcd clusters of the CLI's fleet tests (one helper for both suites).
#[path = "../../../cli/tests/etcd/mod.rs"]
mod etcd;

/// Where Debian's containernetworking-plugins put the reference plugins.
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// One implementation under test and the ways it is known to differ.
pub struct Impl {
    pub label: &'static str,
    /// CNI_PATH: holds the link plugin and the IPAM plugin.
    pub dir: PathBuf,
    pub macvlan: &'static str,
    pub ipam: &'static str,
    pub known: Deviations,
    /// nicslice-ipam's fleet pool: every configuration gets `store.etcd`,
    /// an etcd of the case's own (on the switch's address).
    pub fleet: bool,
}

/// Known deviations of the reference plugins (REFERENCE.md), named so a case
/// asserts each side's real behaviour instead of skipping it.
#[derive(Clone, Copy)]
pub struct Deviations {
    /// Adds a default route through the IPAM gateway without `routes` in the config.
    pub default_route_without_routes: bool,
    /// A failed ADD removes the link it made.
    pub failed_add_removes_link: bool,
    /// Speaks spec 1.1.0 (STATUS, GC, cniVersion 1.1.0).
    pub spec_1_1: bool,
    /// DEL succeeds when the master is gone.
    pub del_without_master: bool,
    /// Knows `linkInContainer` (a master inside the container's namespace).
    pub link_in_container: bool,
    /// Honours requested IPs and hands out one address per range set (the
    /// fleet pool shares one range and chooses the address itself).
    pub requested_ips_and_range_sets: bool,
}

const NICSLICE: Deviations = Deviations {
    default_route_without_routes: true,
    failed_add_removes_link: true,
    spec_1_1: true,
    del_without_master: true,
    link_in_container: true,
    requested_ips_and_range_sets: true,
};

const REFERENCE: Deviations = Deviations {
    default_route_without_routes: false,
    failed_add_removes_link: false,
    spec_1_1: false,
    del_without_master: false,
    link_in_container: false,
    requested_ips_and_range_sets: true,
};

/// The nicslice plugins: links named as installed to the binary under test
/// (`NICSLICE_CNI_BIN`, else this crate's `nicslice-cni` test vehicle).
pub fn nicslice() -> Impl {
    let bin = std::env::var_os("NICSLICE_CNI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nicslice-cni")));
    let dir = std::env::temp_dir().join(format!("nsl-cni-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["nicslice-macvlan", "nicslice-ipvlan", "nicslice-ipam"] {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            // Parallel cases may race to create the same link; either wins.
            let _ = std::os::unix::fs::symlink(&bin, &link);
        }
    }
    Impl {
        label: "nicslice",
        dir,
        macvlan: "nicslice-macvlan",
        ipam: "nicslice-ipam",
        known: NICSLICE,
        fleet: false,
    }
}

/// nicslice's plugins with the fleet pool (`"store": {"etcd": ...}`), when
/// Debian's etcd-server is installed.
pub fn nicslice_fleet() -> Option<Impl> {
    if !Path::new("/usr/bin/etcd").exists() {
        eprintln!("conformance: /usr/bin/etcd not installed; the fleet pool's cases do not run");
        return None;
    }
    let known = Deviations { requested_ips_and_range_sets: false, ..NICSLICE };
    Some(Impl { label: "nicslice-fleet", fleet: true, known, ..nicslice() })
}

/// The reference plugins, if installed (scripts/test.sh installs them). With
/// `NICSLICE_REQUIRE_REFERENCE=1` their absence fails the suite.
pub fn reference() -> Option<Impl> {
    if Path::new(REFERENCE_DIR).join("macvlan").exists() {
        return Some(Impl {
            label: "reference",
            dir: REFERENCE_DIR.into(),
            macvlan: "macvlan",
            ipam: "host-local",
            known: REFERENCE,
            fleet: false,
        });
    }
    assert!(
        std::env::var("NICSLICE_REQUIRE_REFERENCE").as_deref() != Ok("1"),
        "the reference plugins are not in {REFERENCE_DIR}: apt-get install containernetworking-plugins"
    );
    eprintln!(
        "conformance: reference plugins not installed in {REFERENCE_DIR}; running nicslice only"
    );
    None
}

/// Runs `case` for nicslice, with its fleet pool when etcd is installed,
/// and for the reference plugins when installed.
pub fn for_each_impl(case: impl Fn(&Impl)) {
    case(&nicslice());
    if let Some(f) = nicslice_fleet() {
        case(&f);
    }
    if let Some(r) = reference() {
        case(&r);
    }
}

/// One case's namespaces.
pub struct Net {
    /// The fleet pool's etcd (started by the first configuration that needs
    /// it), stopped before the namespaces go.
    etcd: std::sync::OnceLock<etcd::Cluster>,
    pub world: World,
    pub switch: Netns,
    pub host: Host,
    pub data_dir: PathBuf,
    containers: usize,
}

impl Net {
    pub fn new(tag: &str) -> Net {
        let mut world = World::new(tag);
        let switch = world.switch(Some("192.168.0.1/24".parse().unwrap())).unwrap();
        let host =
            world.host(&switch, "host", "eth0", Some("192.168.0.254/24".parse().unwrap())).unwrap();
        let mut sock = RouteSocket::open_in(&host.netns).unwrap();
        let eth0 = sock.require_link("eth0", "host").unwrap();
        sock.add_route(&Route::default_via("192.168.0.1".parse().unwrap(), eth0.index)).unwrap();
        let data_dir = std::env::temp_dir().join(format!("{}-data", world.prefix()));
        Net { etcd: std::sync::OnceLock::new(), world, switch, host, data_dir, containers: 0 }
    }

    /// A new container namespace: (handle, path for CNI_NETNS, container ID).
    pub fn container(&mut self) -> Container {
        self.containers += 1;
        let role = format!("c{}", self.containers);
        let netns = self.world.netns(&role).unwrap();
        let path = format!("/run/netns/{}", self.world.name_of(&role));
        Container { netns, path, id: format!("{}-{role}", self.world.prefix()) }
    }

    /// A configuration for `imp`: the reference keys with only `type` differing.
    pub fn conf(&self, imp: &Impl, version: &str, ipam: Value, extra: Value) -> Value {
        let mut conf = json!({
            "cniVersion": version,
            "name": "confnet",
            "type": imp.macvlan,
            "master": "eth0",
            "mode": "bridge",
        });
        if !ipam.is_null() {
            let mut ipam = ipam;
            ipam["type"] = json!(imp.ipam);
            ipam["dataDir"] = json!(self.data_dir.join(imp.label));
            if imp.fleet {
                let etcd = self.etcd.get_or_init(|| {
                    let name = self.world.name_of("sw");
                    etcd::Cluster::start_on(&self.switch, &name, 1, "192.168.0.1")
                });
                let state = self.data_dir.join(imp.label).join("state.db");
                ipam["store"] = json!({"etcd": {"endpoints": etcd.clients, "state": state}});
            }
            conf["ipam"] = ipam;
        } else {
            conf["ipam"] = json!({});
        }
        if let (Value::Object(c), Value::Object(e)) = (&mut conf, extra) {
            c.extend(e);
        }
        conf
    }

    /// Calls a plugin of `imp` in the host namespace as a runtime does.
    pub fn call(&self, imp: &Impl, cmd: &str, c: Option<&Container>, conf: &Value) -> Call {
        self.call_env(imp, cmd, c, conf, &[])
    }

    pub fn call_env(
        &self,
        imp: &Impl,
        cmd: &str,
        c: Option<&Container>,
        conf: &Value,
        env: &[(&str, &str)],
    ) -> Call {
        let mut vars: Vec<(&str, String)> = vec![
            ("CNI_COMMAND", cmd.to_string()),
            ("CNI_PATH", imp.dir.display().to_string()),
            ("CNI_IFNAME", "eth0".to_string()),
        ];
        if let Some(c) = c {
            vars.push(("CNI_CONTAINERID", c.id.clone()));
            vars.push(("CNI_NETNS", c.path.clone()));
        }
        for (k, v) in env {
            vars.retain(|(name, _)| name != k);
            vars.push((k, v.to_string()));
        }
        let plugin = imp.dir.join(conf["type"].as_str().unwrap_or(imp.macvlan));
        run_plugin(&self.host.netns, &plugin, &vars, conf.to_string().as_bytes())
    }
}

/// Runs `plugin` inside `netns` with exactly the CNI variables given.
pub fn run_plugin(netns: &Netns, plugin: &Path, vars: &[(&str, String)], stdin: &[u8]) -> Call {
    let _inside = netns.enter().unwrap();
    let mut cmd = Command::new(plugin);
    for k in ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"] {
        cmd.env_remove(k);
    }
    cmd.env_remove("NICSLICE_FAIL_AT");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", plugin.display()));
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    Call {
        ok: out.status.success(),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// One plugin call's outcome.
#[derive(Debug)]
pub struct Call {
    pub ok: bool,
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl Call {
    pub fn expect_ok(self, what: &str) -> Value {
        assert!(self.ok, "{what} failed: {} {}", self.stdout, self.stderr);
        self.json
    }

    /// Insists on failure with the spec's error JSON; returns its code.
    pub fn expect_err(self, what: &str) -> u64 {
        assert!(!self.ok, "{what} succeeded but must fail: {}", self.stdout);
        assert!(
            self.json["msg"].is_string(),
            "{what}: no error JSON: {} {}",
            self.stdout,
            self.stderr
        );
        self.json["code"].as_u64().unwrap_or(0)
    }
}

pub struct Container {
    pub netns: Netns,
    pub path: String,
    pub id: String,
}

impl Container {
    pub fn link(&self, name: &str) -> Option<Link> {
        RouteSocket::open_in(&self.netns).unwrap().link_by_name(name).unwrap()
    }

    /// Global addresses on `name`, as `a.b.c.d/len`.
    pub fn addresses(&self, name: &str) -> Vec<String> {
        let mut sock = RouteSocket::open_in(&self.netns).unwrap();
        let Some(l) = sock.link_by_name(name).unwrap() else { return vec![] };
        sock.addresses(Some(l.index))
            .unwrap()
            .into_iter()
            .map(|(_, a)| a)
            .filter(|a| !matches!(a.addr(), IpAddr::V6(v) if v.segments()[0] & 0xffc0 == 0xfe80))
            .map(|a| a.to_string())
            .collect()
    }

    pub fn default_gateway(&self, v6: bool) -> Option<IpAddr> {
        RouteSocket::open_in(&self.netns)
            .unwrap()
            .routes()
            .unwrap()
            .into_iter()
            .find(|r| r.is_default() && r.destination.addr().is_ipv6() == v6)
            .and_then(|r| r.gateway)
    }

    pub fn non_lo(&self) -> Vec<String> {
        RouteSocket::open_in(&self.netns)
            .unwrap()
            .links()
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .filter(|n| n != "lo")
            .collect()
    }

    pub fn ping(&self, to: &str) -> bool {
        Pinger::open_in(&self.netns)
            .unwrap()
            .ping(to.parse().unwrap(), 3, Duration::from_millis(900))
            .unwrap()
    }
}

/// The host-local style IPAM section on the switch's subnet.
pub fn lan_ipam(start: &str, end: &str) -> Value {
    json!({"subnet": "192.168.0.0/24", "rangeStart": start, "rangeEnd": end, "gateway": "192.168.0.1"})
}
