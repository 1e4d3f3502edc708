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
    // Trying link kinds needs a throwaway namespace (CAP_SYS_ADMIN) and
    // links in it (CAP_NET_ADMIN); CAP_NET_RAW is for the probes of the lab.
    let can_probe = privileges.cap_sys_admin && privileges.cap_net_admin;
    let features = if can_probe { capabilities::probe_kernel()? } else { Vec::new() };
    if json {
        output::json(&Report { kernel, privileges: privileges.clone(), features })?;
        return insufficient(&privileges);
    }
    println!("kernel {kernel}");
    let yes = |b: bool| if b { "yes" } else { "NO" };
    println!(
        "privileges: CAP_NET_ADMIN {}, CAP_SYS_ADMIN {}, CAP_NET_RAW {}",
        yes(privileges.cap_net_admin),
        yes(privileges.cap_sys_admin),
        yes(privileges.cap_net_raw)
    );
    if !can_probe {
        println!(
            "link kinds were not tried: that needs CAP_NET_ADMIN and CAP_SYS_ADMIN (run as root)"
        );
        return insufficient(&privileges);
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
    insufficient(&privileges)
}

/// Exits non-zero (after the report) when nicslice could not do its work here.
fn insufficient(privileges: &Privileges) -> anyhow::Result<()> {
    if privileges.sufficient() {
        Ok(())
    } else {
        anyhow::bail!(
            "missing privileges: nicslice needs CAP_NET_ADMIN, CAP_SYS_ADMIN and CAP_NET_RAW (run as root)"
        )
    }
}
