//! VM smoke test: inside the qemu VM of `vmtest/run.sh` (Debian's stock
//! kernel, `NICSLICE_VM=1`) the kernel must offer every link kind nicslice
//! uses, including those the development and CI kernels lack (ipvlan,
//! ipvtap, 802.1Q, dummy). On the host it only says so and returns.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

/// True inside the VM: its init sets `NICSLICE_VM=1`.
fn in_vm() -> bool {
    std::env::var_os("NICSLICE_VM").is_some()
}

/// Every feature `nicslice check` must report as available in the VM, by the
/// names it prints. Spelled out rather than derived from the model's lists,
/// so that a renamed or dropped probe fails here instead of passing unseen.
fn required_features() -> Vec<String> {
    let mut names: Vec<String> =
        ["veth", "bridge", "dummy", "ipvlan", "ipvtap", "802.1Q"].map(String::from).to_vec();
    for driver in ["macvlan", "macvtap"] {
        for mode in ["bridge", "vepa", "private", "passthru", "source"] {
            names.push(format!("{driver} {mode}"));
        }
    }
    names
}

#[test]
fn vm_kernel_offers_every_link_kind() {
    if !in_vm() {
        println!("vm_smoke runs only in the VM (vmtest/run.sh sets NICSLICE_VM=1); skipped");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .args(["check", "--json"])
        .output()
        .expect("run nicslice check --json");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "nicslice check --json failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("check --json prints JSON");
    println!("VM kernel {}", report["kernel"]);

    for cap in ["cap_net_admin", "cap_sys_admin", "cap_net_raw"] {
        assert_eq!(report["privileges"][cap], true, "{cap} in the VM: {report}");
    }

    // feature name -> (available, detail)
    let features: BTreeMap<String, (bool, String)> = report["features"]
        .as_array()
        .expect("features is an array")
        .iter()
        .map(|f| {
            let name = f["feature"].as_str().expect("feature name").to_string();
            let available = f["available"].as_bool().expect("available is a bool");
            let detail = f["detail"].as_str().unwrap_or_default().to_string();
            (name, (available, detail))
        })
        .collect();

    let absent: Vec<String> =
        required_features().into_iter().filter(|n| !features.contains_key(n)).collect();
    assert!(absent.is_empty(), "nicslice check did not report {absent:?}: {report}");

    // Every feature, not only the required ones: the VM exists to offer them all.
    let missing: Vec<String> = features
        .iter()
        .filter(|(_, (available, _))| !available)
        .map(|(name, (_, detail))| format!("{name}: {detail}"))
        .collect();
    assert!(missing.is_empty(), "unavailable in the VM kernel: {missing:#?}");
}
