//! The release binary users get (`cargo build --release`, the one README's
//! commands and `install-cni` give them) has no fault injection: a stray
//! `NICSLICE_FAIL_AT` in a runtime's environment changes nothing, in a CLI
//! command or a CNI call. Each case is run twice, on the test build (built
//! with the injection, so the step named really fails there: the variable
//! is not a dud) and on the release build (where the same call succeeds).
//! The release binary carries none of the benchmark either.
//!
//! The release binary is `release/nicslice` beside this test's own profile
//! directory (or `NICSLICE_RELEASE_BIN`); `scripts/test.sh` builds it first
//! and sets `NICSLICE_REQUIRE_RELEASE=1`, which makes its absence a failure.
//! Without both, the tests say so and return (the VM stage has no release
//! build).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::{Value, json};

const TEST_BUILD: &str = env!("CARGO_BIN_EXE_nicslice");

/// The release binary, if built; panics when it is required but missing.
fn release_binary() -> Option<PathBuf> {
    let path = std::env::var_os("NICSLICE_RELEASE_BIN").map(PathBuf::from).unwrap_or_else(|| {
        // <target>/<triple>/debug/nicslice -> <target>/<triple>/release/nicslice
        let profile_dir = Path::new(TEST_BUILD).parent().and_then(Path::parent).unwrap();
        profile_dir.join("release").join("nicslice")
    });
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("NICSLICE_REQUIRE_RELEASE").as_deref() != Ok("1"),
        "NICSLICE_REQUIRE_RELEASE=1 but {} is missing (cargo build --release -p nicslice)",
        path.display()
    );
    println!("{} not built (cargo build --release -p nicslice); skipped", path.display());
    None
}

/// `nicslice ARGS` by `binary` against the lab, with `NICSLICE_FAIL_AT=fail_at`.
fn cli(binary: &Path, lab: &Lab, fail_at: &str, args: &[&str]) -> Output {
    Command::new(binary)
        .arg("--state")
        .arg(&lab.state)
        .arg("--host-netns")
        .arg(&lab.host.netns_name)
        .args(args)
        .env("NICSLICE_FAIL_AT", fail_at)
        .output()
        .unwrap()
}

fn shows(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout))
}

#[test]
fn the_release_cli_ignores_nicslice_fail_at() {
    let Some(release) = release_binary() else { return };
    let mut lab = Lab::new("relcli");
    let (ns, name) = lab.netns("c1");
    let create = ["network", "create", "lan", "--parent", "eth0", "--subnet", "192.168.0.0/24"];
    let attach = ["attach", "lan", "--netns", name.as_str()];
    let detach = ["detach", "lan", "--netns", name.as_str()];

    // The test build: each named step fails, and an unknown name fails every command.
    let out = cli(Path::new(TEST_BUILD), &lab, "bogus", &["network", "ls"]);
    assert!(!out.status.success(), "test build ignored a bogus step: {}", shows(&out));
    let out = cli(Path::new(TEST_BUILD), &lab, "store-commit", &create);
    assert!(!out.status.success(), "test build ignored store-commit: {}", shows(&out));

    // The release build: the same commands succeed and do their work.
    let out = cli(&release, &lab, "bogus", &["network", "ls"]);
    assert!(out.status.success(), "release network ls: {}", shows(&out));
    let out = cli(&release, &lab, "store-commit", &create);
    assert!(out.status.success(), "release network create: {}", shows(&out));
    let out = cli(&release, &lab, "create-link", &attach);
    assert!(out.status.success(), "release attach: {}", shows(&out));
    assert_eq!(addresses(&ns, "eth0").len(), 1, "attach gave eth0 its address");
    let out = cli(&release, &lab, "delete-link", &detach);
    assert!(out.status.success(), "release detach: {}", shows(&out));
    assert!(link(&ns, "eth0").is_none(), "detach removed eth0");
    let out = cli(&release, &lab, "bogus", &["network", "ls", "--json"]);
    let nets: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nets.as_array().map(Vec::len), Some(1), "{nets}");
}

/// A directory of the test's own, removed on drop (failed or not).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `binary` linked as nicslice-macvlan and nicslice-ipam in `dir`.
fn plugins(dir: &Path, binary: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for name in ["nicslice-macvlan", "nicslice-ipam"] {
        std::os::unix::fs::symlink(binary, dir.join(name)).unwrap();
    }
    dir.to_path_buf()
}

/// One CNI call of nicslice-macvlan from `dir`, in the lab's host namespace.
fn cni(dir: &Path, lab: &Lab, verb: &str, netns: &str, fail_at: &str, conf: &Value) -> Output {
    let _inside = lab.host.netns.enter().unwrap();
    let mut child = Command::new(dir.join("nicslice-macvlan"))
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", "rel1")
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", dir)
        .env("NICSLICE_FAIL_AT", fail_at)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_release_cni_plugin_ignores_nicslice_fail_at() {
    let Some(release) = release_binary() else { return };
    let mut lab = Lab::new("relcni");
    let (ns, name) = lab.netns("c1");
    let path = format!("/run/netns/{name}");
    // The lease database and both builds' plugin directories.
    let tmp = TempDir(std::env::temp_dir().join(lab.world.prefix()));
    std::fs::create_dir_all(&tmp.0).unwrap();
    let conf = json!({
        "cniVersion": "1.1.0", "name": "rel", "type": "nicslice-macvlan",
        "master": "eth0", "mode": "bridge",
        "ipam": {"type": "nicslice-ipam", "subnet": "192.168.0.0/24", "rangeStart": "192.168.0.60",
                 "rangeEnd": "192.168.0.69", "gateway": "192.168.0.1",
                 "state": tmp.0.join("cni-leases.mdb")}
    });
    let test_build = plugins(&tmp.0.join("test"), Path::new(TEST_BUILD));
    let release_build = plugins(&tmp.0.join("release"), &release);

    // The test build fails the named step and leaves nothing.
    let out = cni(&test_build, &lab, "ADD", &path, "create-link", &conf);
    assert!(!out.status.success(), "test build ignored create-link: {}", shows(&out));
    assert!(link(&ns, "eth0").is_none());
    let out = cni(&test_build, &lab, "DEL", &path, "", &conf);
    assert!(out.status.success(), "DEL after the failed ADD: {}", shows(&out));

    // The release build: ADD and DEL succeed whatever the variable says.
    for fail_at in ["create-link", "bogus"] {
        let out = cni(&release_build, &lab, "ADD", &path, fail_at, &conf);
        assert!(out.status.success(), "release ADD ({fail_at}): {}", shows(&out));
        let got = addresses(&ns, "eth0");
        assert!(matches!(&got[..], [a] if a.starts_with("192.168.0.6")), "{fail_at}: {got:?}");
        let out = cni(&release_build, &lab, "DEL", &path, "delete-link", &conf);
        assert!(out.status.success(), "release DEL: {}", shows(&out));
        assert!(link(&ns, "eth0").is_none(), "DEL removed eth0");
    }
}

#[test]
fn the_release_binary_carries_no_benchmark() {
    let Some(release) = release_binary() else { return };
    let bytes = std::fs::read(&release).unwrap();
    // Strings of the benchmark's code: its C sources, its namespaces, its command.
    for needle in ["wait4(pid", "int main(void)", "nsl-bench-", "bench-cni", "lower bound"] {
        let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(!found, "{} contains {needle:?}", release.display());
    }
}
