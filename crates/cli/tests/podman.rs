//! A real CNI runtime: Podman (Debian's, with its CNI backend) starts a
//! container on a network whose configuration says `"type":
//! "nicslice-macvlan"`, and the container gets its interface, its address from
//! nicslice-ipam and the default route, and reaches the switch (not the parent:
//! a macvlan child never does). Podman runs inside the test's host namespace,
//! so the master is that namespace's veth; its storage lives in a temporary
//! directory and the container's root is a directory holding busybox.
//!
//! `scripts/test.sh` installs podman, runc and conmon and sets
//! `NICSLICE_REQUIRE_PODMAN=1`; without podman and that variable the test
//! says so and returns.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn podman() -> Option<PathBuf> {
    let found = ["/usr/bin/podman", "/usr/local/bin/podman"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("NICSLICE_REQUIRE_PODMAN").is_none(),
            "NICSLICE_REQUIRE_PODMAN is set but podman is not installed"
        );
        println!("podman is not installed; skipped (scripts/test.sh installs it)");
    }
    found
}

/// A container root: static busybox and the directories Podman mounts on.
fn rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("static busybox (busybox-static)");
    for tool in ["sh", "ip", "ping"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).unwrap();
    }
    root
}

#[test]
fn podman_with_a_nicslice_macvlan_network_gets_address_route_and_reach() {
    let Some(podman) = podman() else { return };
    let lab = Lab::new("podman");
    let dir = std::env::temp_dir().join(format!("{}-podman", lab.world.prefix()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("net")).unwrap();
    for plugin in ["nicslice-macvlan", "nicslice-ipam"] {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nicslice"), dir.join("bin").join(plugin))
            .unwrap();
    }
    let conf = dir.join("containers.conf");
    std::fs::write(
        &conf,
        format!(
            "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\"]\nnetwork_config_dir = \"{}\"\n",
            dir.join("bin").display(),
            dir.join("net").display()
        ),
    )
    .unwrap();
    // A configuration written for the reference plugins, with only `type` changed.
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0", "name": "nsl", "plugins": [{
            "type": "nicslice-macvlan", "master": "eth0", "mode": "bridge",
            "ipam": {"type": "nicslice-ipam", "subnet": "192.168.0.0/24",
                     "rangeStart": "192.168.0.100", "rangeEnd": "192.168.0.199",
                     "gateway": "192.168.0.1", "dataDir": dir.join("ipam")}
        }]
    });
    std::fs::write(dir.join("net/nsl.conflist"), conflist.to_string()).unwrap();
    let root = rootfs(&dir);

    let ns_file = std::fs::File::open(format!("/run/netns/{}", lab.host.netns_name)).unwrap();
    let mut cmd = Command::new(&podman);
    cmd.env("CONTAINERS_CONF", &conf)
        .arg("--root")
        .arg(dir.join("storage"))
        .arg("--runroot")
        .arg(dir.join("run"))
        // This machine's hybrid cgroups and limits: runc on cgroupfs, no
        // journald, limits within the hard ones a sandbox grants.
        .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "none"])
        .args(["run", "--rm", "--network", "nsl", "--ulimit", "nofile=1024:1024"])
        .args(["--ulimit", "nproc=1024:1024", "--rootfs"])
        .arg(&root)
        .args(["/bin/sh", "-c", "ip -o -4 addr show eth0; ip route; ping -c 1 -W 2 192.168.0.1"]);
    // SAFETY: setns is async-signal-safe and touches only the child, which
    // then runs Podman in the test's host namespace (the master lives there).
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::setns(&ns_file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
        });
    }
    let out = cmd.output().expect("run podman");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "podman run failed: {text}");
    assert!(text.contains("inet 192.168.0.100/24"), "the first address of the range: {text}");
    assert!(text.contains("default via 192.168.0.1 dev eth0"), "seed 000's default route: {text}");
    assert!(text.contains("1 packets received"), "the container reaches the switch: {text}");
}
