//! The `nicslice` binary as a CNI plugin: `install-cni` creates the links,
//! and a run under a plugin's name is a CNI call (argv[0] dispatch before any
//! command-line parsing). The plugins' behaviour is crates/cni's conformance suite.

use std::io::Write;
use std::process::{Command, Stdio};

fn nicslice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nicslice"))
}

#[test]
fn install_cni_links_the_plugins_and_each_answers_as_a_plugin() {
    let dir = std::env::temp_dir().join(format!("nsl-install-cni-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for _ in 0..2 {
        let out = nicslice().arg("install-cni").arg(&dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_nicslice")).unwrap();
    for name in ["nicslice-macvlan", "nicslice-ipvlan", "nicslice-ipam"] {
        let link = dir.join(name);
        assert_eq!(std::fs::canonicalize(&link).unwrap(), exe, "{name}");
        let mut child = Command::new(&link)
            .env("CNI_COMMAND", "VERSION")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(br#"{"cniVersion":"1.0.0"}"#).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{name}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0", "{name}");
        assert!(v["supportedVersions"].as_array().unwrap().contains(&"1.1.0".into()), "{name}");
    }
    // A plugin run without CNI_COMMAND answers with the spec's error JSON, not clap's help.
    let out = Command::new(dir.join("nicslice-macvlan")).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], 4);
    // A file that is not a link is never replaced.
    std::fs::remove_file(dir.join("nicslice-ipam")).unwrap();
    std::fs::write(dir.join("nicslice-ipam"), b"someone else's").unwrap();
    let out = nicslice().arg("install-cni").arg(&dir).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a link"));
    let _ = std::fs::remove_dir_all(&dir);
}
