//! Hostile inputs for the CNI plugins, kept from the attack campaign of
//! issue 16 as tables: every configuration key with a wrong type, a wrong
//! value or `null`, every CNI variable missing or malformed, oversize
//! values, broken stdin. Each row runs the real plugin binary in a private
//! namespace world, as a runtime does, and asserts the exit status, the
//! spec's error code with a one-line message, and that nothing is left
//! behind: no link in the container's or the host's namespace, no lease in
//! the book, no file in the directory the plugin was started in.
//! Needs root (it creates namespaces).

#[path = "conformance/harness.rs"]
mod harness;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use harness::{Container, Net};
use nicslice_kernel::{Netns, RouteSocket};
use nicslice_store::cni_ipam::CniIpamStore;
use serde_json::{Value, json};

/// What a row expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Success (an ADD is then undone by a DEL, which must succeed too).
    Ok,
    /// Failure with this spec code.
    Code(u64),
}

/// The world one table runs in: a host whose `eth0` is wired to a switch,
/// one container, an empty directory the plugin is started in, and the
/// lease book's path.
struct Bench {
    net: Net,
    container: Container,
    plugin_dir: PathBuf,
    cwd: PathBuf,
    state_dir: PathBuf,
    host_links: Vec<String>,
}

impl Bench {
    fn new(tag: &str) -> Bench {
        let mut net = Net::new(tag);
        let container = net.container();
        let plugin_dir = harness::nicslice().dir;
        let base = std::env::temp_dir().join(format!("{}-hostile", net.world.prefix()));
        let cwd = base.join("cwd");
        let state_dir = base.join("state");
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::create_dir_all(&state_dir).unwrap();
        let host_links = links_of(&net.host.netns);
        Bench { net, container, plugin_dir, cwd, state_dir, host_links }
    }

    fn leases_path(&self) -> PathBuf {
        self.state_dir.join("leases.mdb")
    }

    /// The valid configuration each row spoils.
    fn conf(&self) -> Value {
        json!({
            "cniVersion": "1.1.0",
            "name": "hostile",
            "type": "nicslice-macvlan",
            "master": "eth0",
            "mode": "bridge",
            "ipam": {
                "type": "nicslice-ipam",
                "subnet": "192.168.0.0/24",
                "rangeStart": "192.168.0.100",
                "rangeEnd": "192.168.0.120",
                "gateway": "192.168.0.1",
                "state": self.leases_path(),
            }
        })
    }

    /// The variables of a valid call of `verb` on the container.
    fn env(&self, verb: &str) -> Vec<(String, String)> {
        [
            ("CNI_COMMAND", verb.to_string()),
            ("CNI_CONTAINERID", self.container.id.clone()),
            ("CNI_NETNS", self.container.path.clone()),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_PATH", self.plugin_dir.display().to_string()),
            // The default book would be /run/nicslice's: keep it here.
            ("NICSLICE_STATE", self.state_dir.join("state.db").display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Runs the plugin the configuration's `type` names (nicslice-macvlan
    /// when it names none of them) in the host namespace with exactly `env`.
    fn run(&self, env: &[(String, String)], stdin: &[u8]) -> Outcome {
        let named = serde_json::from_slice::<Value>(stdin).ok().and_then(|c| {
            let t = c["type"].as_str()?;
            ["nicslice-ipvlan", "nicslice-ipam"].contains(&t).then(|| t.to_string())
        });
        let plugin = named.unwrap_or_else(|| "nicslice-macvlan".into());
        let _inside = self.net.host.netns.enter().unwrap();
        let mut cmd = Command::new(self.plugin_dir.join(plugin));
        cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").current_dir(&self.cwd);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let _ = child.stdin.take().unwrap().write_all(stdin);
        }
        let out = child.wait_with_output().unwrap();
        Outcome {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs one row and checks its outcome and that nothing is left; a
    /// failed check is returned (and whatever it left is cleared, so the
    /// next rows start clean), so that one run lists every failing row.
    fn check(
        &self,
        what: &str,
        env: &[(String, String)],
        stdin: &[u8],
        expect: Expect,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        let out = self.run(env, stdin);
        match expect {
            Expect::Ok => {
                if out.status != Some(0) {
                    failures.push(format!("{what}: must succeed: {out:?}"));
                }
                let verb = env.iter().find(|(k, _)| k == "CNI_COMMAND").map(|(_, v)| v.as_str());
                if verb == Some("ADD") {
                    let del = set_env(env, "CNI_COMMAND", Some("DEL".into()));
                    let undo = self.run(&del, stdin);
                    if undo.status != Some(0) {
                        failures.push(format!("{what}: DEL after ADD: {undo:?}"));
                    }
                }
            }
            Expect::Code(code) => {
                let err: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
                let msg = err["msg"].as_str().unwrap_or_default();
                if out.status != Some(1) || err["code"].as_u64() != Some(code) {
                    failures.push(format!("{what}: must fail with code {code}: {out:?}"));
                } else if msg.is_empty() || msg.contains('\n') || !err["cniVersion"].is_string() {
                    failures.push(format!("{what}: not one clear line: {out:?}"));
                }
            }
        }
        if let Err(left) = self.nothing_left() {
            failures.push(format!("{what}: {left}"));
            self.clear();
        }
        failures
    }

    /// Nothing in the container, the host's links as they were, no file in
    /// the plugin's directory, no lease in the book.
    fn nothing_left(&self) -> Result<(), String> {
        let in_container = self.container.non_lo();
        if !in_container.is_empty() {
            return Err(format!("links left in the container: {in_container:?}"));
        }
        let host = links_of(&self.net.host.netns);
        if host != self.host_links {
            return Err(format!("host links changed: {:?} -> {host:?}", self.host_links));
        }
        let stray: Vec<_> = std::fs::read_dir(&self.cwd).unwrap().collect();
        if !stray.is_empty() {
            return Err(format!("files left in the plugin's directory: {stray:?}"));
        }
        if self.leases_path().exists() {
            let mut book = CniIpamStore::open(self.leases_path()).unwrap();
            let tx = book.write().unwrap();
            let held = tx.leases("hostile", None).unwrap();
            if !held.is_empty() {
                return Err(format!("leases left: {held:?}"));
            }
        }
        Ok(())
    }

    /// Clears what a failed row left: the container's links, stray files,
    /// the leases.
    fn clear(&self) {
        let mut sock = RouteSocket::open_in(&self.container.netns).unwrap();
        for link in sock.links().unwrap().into_iter().filter(|l| l.name != "lo") {
            let _ = sock.delete_link(link.index);
        }
        for entry in std::fs::read_dir(&self.cwd).unwrap().flatten() {
            let _ = std::fs::remove_dir_all(entry.path())
                .or_else(|_| std::fs::remove_file(entry.path()));
        }
        if self.leases_path().exists() {
            let mut book = CniIpamStore::open(self.leases_path()).unwrap();
            let mut tx = book.write().unwrap();
            tx.release_unless("hostile", |_| false).unwrap();
            tx.commit().unwrap();
        }
    }
}

/// Fails the test with every failing row, if any.
fn report(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

#[derive(Debug)]
struct Outcome {
    status: Option<i32>,
    stdout: String,
    #[allow(dead_code, reason = "shown by Debug when a row fails")]
    stderr: String,
}

fn links_of(ns: &Netns) -> Vec<String> {
    let mut names: Vec<String> =
        RouteSocket::open_in(ns).unwrap().links().unwrap().into_iter().map(|l| l.name).collect();
    names.sort();
    names
}

/// `conf` with the value at `path` (`a.b`) set, or removed when `value` is `None`.
fn with(mut conf: Value, path: &str, value: Option<Value>) -> Value {
    let mut at = &mut conf;
    let mut keys: Vec<&str> = path.split('.').collect();
    let last = keys.pop().unwrap();
    for k in keys {
        at = &mut at[k];
    }
    match value {
        Some(v) => at[last] = v,
        None => {
            at.as_object_mut().unwrap().remove(last);
        }
    }
    conf
}

fn set_env(env: &[(String, String)], key: &str, value: Option<String>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env.iter().filter(|(k, _)| k != key).cloned().collect();
    if let Some(v) = value {
        env.push((key.to_string(), v));
    }
    env
}

const C_VERSION: u64 = 1;
const C_UNKNOWN_CONTAINER: u64 = 3;
const C_ENV: u64 = 4;
const C_DECODE: u64 = 6;
const C_CONFIG: u64 = 7;

/// Every key of the configuration with wrong types and values, and `null`
/// where the reference plugins take it as "unset".
#[test]
fn every_configuration_key_spoiled() {
    let b = Bench::new("hostile-keys");
    let long = "x".repeat(100_000);
    let rows: Vec<(&str, Option<Value>, Expect)> = vec![
        // The common keys.
        ("cniVersion", Some(json!(7)), Expect::Code(C_CONFIG)),
        ("cniVersion", Some(json!("0.2.0")), Expect::Code(C_VERSION)),
        ("cniVersion", Some(json!("9.9.9")), Expect::Code(C_VERSION)),
        ("cniVersion", None, Expect::Code(C_VERSION)),
        ("name", Some(json!(7)), Expect::Code(C_CONFIG)),
        ("name", Some(json!("")), Expect::Code(C_CONFIG)),
        ("name", None, Expect::Code(C_CONFIG)),
        ("name", Some(json!(null)), Expect::Code(C_CONFIG)),
        ("name", Some(json!("n".repeat(300))), Expect::Code(C_CONFIG)),
        ("type", Some(json!(7)), Expect::Code(C_CONFIG)),
        ("type", Some(json!(null)), Expect::Ok),
        ("ipam", Some(json!("nicslice-ipam")), Expect::Code(C_CONFIG)),
        ("ipam", Some(json!(7)), Expect::Code(C_CONFIG)),
        ("ipam", Some(json!(["nicslice-ipam"])), Expect::Code(C_CONFIG)),
        ("ipam", Some(json!(true)), Expect::Code(C_CONFIG)),
        ("ipam.type", Some(json!(7)), Expect::Code(C_CONFIG)),
        ("ipam.type", Some(json!({})), Expect::Code(C_CONFIG)),
        ("ipam.type", Some(json!("no-such-ipam")), Expect::Code(C_CONFIG)),
        ("ipam.type", Some(json!("../nicslice-ipam")), Expect::Code(C_CONFIG)),
        ("ipam", Some(json!(null)), Expect::Ok),
        ("ipam", Some(json!({})), Expect::Ok),
        ("dns", Some(json!("1.1.1.1")), Expect::Code(C_CONFIG)),
        ("dns", Some(json!({"nameservers": "1.1.1.1"})), Expect::Code(C_CONFIG)),
        ("dns", Some(json!(null)), Expect::Ok),
        ("prevResult", Some(json!("x")), Expect::Code(C_DECODE)),
        ("prevResult", Some(json!({"ip4": {}})), Expect::Code(C_VERSION)),
        ("runtimeConfig", Some(json!("x")), Expect::Code(C_CONFIG)),
        ("runtimeConfig", Some(json!({"mac": 7})), Expect::Code(C_CONFIG)),
        ("runtimeConfig", Some(json!({"mac": "01:00:5e:00:00:01"})), Expect::Code(C_CONFIG)),
        ("args", Some(json!({"cni": {"ips": "x"}})), Expect::Code(C_CONFIG)),
        // The link keys.
        ("master", Some(json!(7)), Expect::Code(C_CONFIG)),
        ("master", Some(json!("lo")), Expect::Code(C_CONFIG)),
        ("master", Some(json!("nsl-none0")), Expect::Code(C_CONFIG)),
        ("master", Some(json!(long.clone())), Expect::Code(C_CONFIG)),
        ("master", Some(json!(null)), Expect::Ok),
        ("mode", Some(json!(7)), Expect::Code(C_CONFIG)),
        ("mode", Some(json!("bridgy")), Expect::Code(C_CONFIG)),
        ("mode", Some(json!("l3")), Expect::Code(C_CONFIG)),
        ("mode", Some(json!(null)), Expect::Ok),
        ("mtu", Some(json!("1400")), Expect::Code(C_CONFIG)),
        ("mtu", Some(json!(-1)), Expect::Code(C_CONFIG)),
        ("mtu", Some(json!(67)), Expect::Code(C_CONFIG)),
        ("mtu", Some(json!(1.5)), Expect::Code(C_CONFIG)),
        ("mtu", Some(json!(9000)), Expect::Code(C_CONFIG)),
        ("mtu", Some(json!(1e300)), Expect::Code(C_CONFIG)),
        ("mtu", Some(json!(null)), Expect::Ok),
        ("mac", Some(json!(7)), Expect::Code(C_CONFIG)),
        ("mac", Some(json!("zz")), Expect::Code(C_CONFIG)),
        ("mac", Some(json!("01:00:5e:00:00:01")), Expect::Code(C_CONFIG)),
        ("mac", Some(json!("00:00:00:00:00:00")), Expect::Code(C_CONFIG)),
        ("mac", Some(json!(null)), Expect::Ok),
        ("linkInContainer", Some(json!("yes")), Expect::Code(C_CONFIG)),
        ("linkInContainer", Some(json!(null)), Expect::Ok),
        ("bcqueuelen", Some(json!(-1)), Expect::Code(C_CONFIG)),
        ("bcqueuelen", Some(json!("x")), Expect::Code(C_CONFIG)),
        ("bclim", Some(json!("x")), Expect::Code(C_CONFIG)),
        ("flags", Some(json!(7)), Expect::Code(C_CONFIG)),
        ("flags", Some(json!(["loud"])), Expect::Code(C_CONFIG)),
        ("flag", Some(json!("private")), Expect::Code(C_CONFIG)),
        ("sourceMacs", Some(json!("02:00:00:00:00:01")), Expect::Code(C_CONFIG)),
        ("sourceMacs", Some(json!(["02:00:00:00:00:01"])), Expect::Code(C_CONFIG)),
        ("tap", Some(json!("yes")), Expect::Code(C_CONFIG)),
        ("tap", Some(json!(null)), Expect::Ok),
        ("vlan", Some(json!(0)), Expect::Code(C_CONFIG)),
        ("vlan", Some(json!(4095)), Expect::Code(C_CONFIG)),
        ("vlan", Some(json!(-5)), Expect::Code(C_CONFIG)),
        ("vlan", Some(json!("x")), Expect::Code(C_CONFIG)),
        ("noDefaultRoute", Some(json!("yes")), Expect::Code(C_CONFIG)),
        ("noDefaultRoute", Some(json!(null)), Expect::Ok),
        // The IPAM keys.
        ("ipam.subnet", Some(json!("nope")), Expect::Code(C_CONFIG)),
        ("ipam.subnet", Some(json!(7)), Expect::Code(C_CONFIG)),
        ("ipam.subnet", Some(json!("192.168.0.0/31")), Expect::Code(C_CONFIG)),
        ("ipam.subnet", None, Expect::Code(C_CONFIG)),
        ("ipam.rangeStart", Some(json!("10.9.9.9")), Expect::Code(C_CONFIG)),
        ("ipam.rangeEnd", Some(json!("192.168.0.50")), Expect::Code(C_CONFIG)),
        ("ipam.gateway", Some(json!("fd00::1")), Expect::Code(C_CONFIG)),
        ("ipam.routes", Some(json!("x")), Expect::Code(C_CONFIG)),
        ("ipam.routes", Some(json!([{"dst": "nope"}])), Expect::Code(C_CONFIG)),
        ("ipam.routes", Some(json!(null)), Expect::Ok),
        ("ipam.ranges", Some(json!("x")), Expect::Code(C_CONFIG)),
        ("ipam.ranges", Some(json!([[]])), Expect::Code(C_CONFIG)),
        ("ipam.state", Some(json!(7)), Expect::Code(C_CONFIG)),
        ("ipam.dataDir", Some(json!(7)), Expect::Code(C_CONFIG)),
        ("ipam.resolvConf", Some(json!(7)), Expect::Code(C_CONFIG)),
    ];
    let mut failures = Vec::new();
    for (key, value, expect) in rows {
        let what = format!("{key} = {value:?}");
        let conf = with(b.conf(), key, value);
        failures.extend(b.check(&what, &b.env("ADD"), conf.to_string().as_bytes(), expect));
    }
    report(failures);
}

/// The other two plugins' keys: nicslice-ipvlan's (refused before any
/// link is made: this kernel may lack ipvlan) and nicslice-ipam called on
/// its own.
#[test]
fn ipvlan_and_ipam_keys_spoiled() {
    let b = Bench::new("hostile-ipv");
    let ipvlan = with(b.conf(), "type", Some(json!("nicslice-ipvlan")));
    let ipam = with(b.conf(), "type", Some(json!("nicslice-ipam")));
    let rows: Vec<(&Value, &str, Option<Value>, u64)> = vec![
        (&ipvlan, "mode", Some(json!("bridge")), C_CONFIG),
        (&ipvlan, "mode", Some(json!(7)), C_CONFIG),
        (&ipvlan, "flag", Some(json!("loud")), C_CONFIG),
        (&ipvlan, "flags", Some(json!(["nodst"])), C_CONFIG),
        (&ipvlan, "mac", Some(json!("02:00:00:00:00:01")), C_CONFIG),
        (&ipvlan, "bcqueuelen", Some(json!(5)), C_CONFIG),
        (&ipvlan, "master", Some(json!("lo")), C_CONFIG),
        (&ipvlan, "ipam", Some(json!("x")), C_CONFIG),
        (&ipam, "ipam", None, C_CONFIG),
        (&ipam, "ipam", Some(json!({})), C_CONFIG),
        (&ipam, "ipam", Some(json!(["x"])), C_CONFIG),
        (&ipam, "ipam.subnet", Some(json!("::/0")), C_CONFIG),
        (&ipam, "ipam.ranges", Some(json!([[{"subnet": 7}]])), C_CONFIG),
    ];
    let mut failures = Vec::new();
    for (base, key, value, code) in rows {
        let what = format!("{} with {key} = {value:?}", base["type"]);
        let conf = with(base.clone(), key, value);
        failures.extend(b.check(
            &what,
            &b.env("ADD"),
            conf.to_string().as_bytes(),
            Expect::Code(code),
        ));
    }
    report(failures);
}

/// `ipam.dataDir: ""` means the default place, not the plugin's current
/// directory (issue 16, defect 10).
#[test]
fn an_empty_data_dir_is_the_default_not_the_current_directory() {
    let b = Bench::new("hostile-datadir");
    for key in ["ipam.dataDir", "ipam.state"] {
        let conf = with(with(b.conf(), "ipam.state", None), key, Some(json!("")));
        let out = b.run(&b.env("ADD"), conf.to_string().as_bytes());
        assert_eq!(out.status, Some(0), "{key}: {out:?}");
        let stray: Vec<_> = std::fs::read_dir(&b.cwd).unwrap().collect();
        assert!(stray.is_empty(), "{key} \"\": files in the current directory: {stray:?}");
        // The default: beside NICSLICE_STATE.
        assert!(b.state_dir.join("cni-leases.mdb").exists(), "{key}");
        let out = b.run(
            &set_env(&b.env("ADD"), "CNI_COMMAND", Some("DEL".into())),
            conf.to_string().as_bytes(),
        );
        assert_eq!(out.status, Some(0), "{key} DEL: {out:?}");
        report(b.nothing_left().err().into_iter().collect());
    }
}

/// Every CNI variable missing or malformed, and stdin broken.
#[test]
fn every_variable_spoiled() {
    let b = Bench::new("hostile-env");
    let conf = b.conf().to_string();
    let tmp = b.cwd.parent().unwrap().to_path_buf();
    let plain = tmp.join("plain-file");
    std::fs::write(&plain, b"").unwrap();
    let host_path = format!("/run/netns/{}", b.net.host.netns_name);
    let add = b.env("ADD");
    let id_300 = "c".repeat(300);
    let rows: Vec<(&str, &str, Option<String>, Expect)> = vec![
        ("ADD", "CNI_COMMAND", None, Expect::Code(C_ENV)),
        ("ADD", "CNI_COMMAND", Some("add".into()), Expect::Code(C_ENV)),
        ("ADD", "CNI_COMMAND", Some("FROB".into()), Expect::Code(C_ENV)),
        ("ADD", "CNI_COMMAND", Some("".into()), Expect::Code(C_ENV)),
        ("ADD", "CNI_CONTAINERID", None, Expect::Code(C_ENV)),
        ("ADD", "CNI_CONTAINERID", Some("-bad".into()), Expect::Code(C_ENV)),
        ("ADD", "CNI_CONTAINERID", Some("a b".into()), Expect::Code(C_ENV)),
        ("ADD", "CNI_CONTAINERID", Some(id_300.clone()), Expect::Code(C_ENV)),
        ("DEL", "CNI_CONTAINERID", Some(id_300.clone()), Expect::Ok),
        ("DEL", "CNI_CONTAINERID", Some("c".repeat(100_000)), Expect::Ok),
        ("ADD", "CNI_NETNS", None, Expect::Code(C_ENV)),
        ("ADD", "CNI_NETNS", Some("/nonexistent/ns".into()), Expect::Code(C_UNKNOWN_CONTAINER)),
        ("DEL", "CNI_NETNS", Some("/nonexistent/ns".into()), Expect::Ok),
        ("DEL", "CNI_NETNS", None, Expect::Ok),
        ("ADD", "CNI_NETNS", Some(plain.display().to_string()), Expect::Code(C_ENV)),
        ("ADD", "CNI_NETNS", Some(tmp.display().to_string()), Expect::Code(C_ENV)),
        ("ADD", "CNI_NETNS", Some("/dev/null".into()), Expect::Code(C_ENV)),
        ("ADD", "CNI_NETNS", Some("/proc/self/ns/mnt".into()), Expect::Code(C_ENV)),
        ("ADD", "CNI_NETNS", Some("/proc/self/ns/net".into()), Expect::Code(C_ENV)),
        ("ADD", "CNI_NETNS", Some(host_path.clone()), Expect::Code(C_ENV)),
        ("ADD", "CNI_NETNS", Some("x".repeat(5000)), Expect::Code(C_ENV)),
        ("ADD", "CNI_IFNAME", None, Expect::Code(C_ENV)),
        ("ADD", "CNI_IFNAME", Some("a/b".into()), Expect::Code(C_ENV)),
        ("ADD", "CNI_IFNAME", Some("0123456789abcdef".into()), Expect::Code(C_ENV)),
        ("ADD", "CNI_IFNAME", Some("..".into()), Expect::Code(C_ENV)),
        ("ADD", "CNI_ARGS", Some("novalue".into()), Expect::Code(C_ENV)),
        ("ADD", "CNI_ARGS", Some("=x".into()), Expect::Code(C_ENV)),
        ("ADD", "CNI_ARGS", Some("MAC=zz".into()), Expect::Code(C_CONFIG)),
        ("ADD", "CNI_ARGS", Some("IgnoreUnknown=1;IP=nope".into()), Expect::Code(C_CONFIG)),
        ("ADD", "CNI_ARGS", Some("IgnoreUnknown=1;IP=10.1.1.1".into()), Expect::Code(C_CONFIG)),
        ("ADD", "CNI_ARGS", Some(format!("K={}", "v".repeat(100_000))), Expect::Ok),
        ("ADD", "CNI_PATH", None, Expect::Code(C_ENV)),
        ("ADD", "CNI_PATH", Some("/nonexistent".into()), Expect::Code(C_CONFIG)),
    ];
    let mut failures = Vec::new();
    for (verb, key, value, expect) in rows {
        let what =
            format!("{verb} with {key} = {:?}", value.as_deref().map(|v| &v[..v.len().min(40)]));
        let env = set_env(&set_env(&add, "CNI_COMMAND", Some(verb.into())), key, value);
        failures.extend(b.check(&what, &env, conf.as_bytes(), expect));
    }
    // DEL in the host's own namespace deletes nothing there: not the host's
    // eth0, whose name it is given (issue 16, defect 6).
    let env =
        set_env(&set_env(&add, "CNI_COMMAND", Some("DEL".into())), "CNI_NETNS", Some(host_path));
    failures.extend(b.check("DEL of the host's eth0", &env, conf.as_bytes(), Expect::Code(C_ENV)));
    // Broken stdin.
    let huge_string = format!(r#"{{"cniVersion":"1.1.0","name":"{}"}}"#, "n".repeat(2 << 20));
    let stdins: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("empty", Vec::new(), Expect::Code(C_DECODE)),
        ("truncated", conf.as_bytes()[..conf.len() / 2].to_vec(), Expect::Code(C_DECODE)),
        ("a list", b"[]".to_vec(), Expect::Code(C_DECODE)),
        ("null", b"null".to_vec(), Expect::Code(C_DECODE)),
        (
            "not UTF-8",
            b"{\"cniVersion\":\"1.1.0\",\"name\":\"\xff\"}".to_vec(),
            Expect::Code(C_DECODE),
        ),
        ("trailing garbage", format!("{conf} x").into_bytes(), Expect::Code(C_DECODE)),
        (
            "a key twice",
            br#"{"cniVersion":"1.1.0","name":"a","name":"b"}"#.to_vec(),
            Expect::Code(C_CONFIG),
        ),
        ("1 MiB of spaces", vec![b' '; 1 << 20], Expect::Code(C_DECODE)),
        ("a 2 MiB name", huge_string.into_bytes(), Expect::Code(C_CONFIG)),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            Expect::Code(C_DECODE),
        ),
    ];
    for (what, stdin, expect) in stdins {
        failures.extend(b.check(&format!("stdin {what}"), &add, &stdin, expect));
    }
    report(failures);
}

/// Removes the bench's files (the namespaces go with the world).
impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(base) = self.cwd.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}
