//! `nicslice check`: what this kernel supports and whether we may use it.

use nicslice_lab::capabilities::{self, Capability, Privileges};
use serde::Serialize;

use crate::output;

#[derive(Serialize)]
struct Report {
    kernel: String,
    privileges: Privileges,
    features: Vec<Capability>,
}

pub fn run(json: bool) -> anyhow::Result<()> {
    let privileges = Privileges::read();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let features = if privileges.cap_sys_admin && privileges.cap_net_admin {
        capabilities::probe_kernel()?
    } else {
        Vec::new()
    };
    if json {
        return output::json(&Report { kernel, privileges, features });
    }
    println!("kernel {kernel}");
    let yes = |b: bool| if b { "yes" } else { "NO" };
    println!(
        "privileges: CAP_NET_ADMIN {}, CAP_SYS_ADMIN {}, CAP_NET_RAW {}",
        yes(privileges.cap_net_admin),
        yes(privileges.cap_sys_admin),
        yes(privileges.cap_net_raw)
    );
    if !privileges.sufficient() {
        println!("nicslice needs all three (run as root); link kinds were not tried");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = features
        .iter()
        .map(|c| {
            vec![
                c.feature.clone(),
                if c.available { "available".into() } else { "missing".into() },
                c.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(&["FEATURE", "STATUS", "DETAIL"], &rows);
    Ok(())
}
