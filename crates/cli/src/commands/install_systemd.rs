//! `nicslice install-systemd [DIR]`: the units that run `nicslice restore`
//! at boot and, optionally, `nicslice events --fix` after it and a resident
//! `nicslice dhcp-agent`. A file of any of those names nicslice did not
//! write is never replaced; no unit is enabled here (that is
//! `systemctl enable`, the user's choice).

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Globals;

/// The first line of every unit nicslice writes: what makes it ours.
const MARK: &str = "# Written by `nicslice install-systemd`; it replaces this file when run again.";

const RESTORE: &str = "nicslice-restore.service";
const EVENTS: &str = "nicslice-events.service";
const DHCP_AGENT: &str = "nicslice-dhcp-agent.service";

fn restore_unit(exe: &Path, state: &Path) -> String {
    format!(
        "{MARK}\n\
[Unit]\n\
Description=nicslice: make again the parents, promiscuous mode, shims and endpoints it recorded\n\
Documentation=man:nicslice(8)\n\
Wants=network-online.target\n\
After=network-online.target\n\
\n\
[Service]\n\
Type=oneshot\n\
RemainAfterExit=yes\n\
ExecStart={} --state {} restore\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n",
        exe.display(),
        state.display()
    )
}

/// A resident service (optional, neither enabled): `nicslice --state STATE
/// COMMAND` kept running, restarted on failure, started after `after`.
fn resident_unit(
    exe: &Path,
    state: &Path,
    description: &str,
    after: &str,
    command: &str,
) -> String {
    format!(
        "{MARK}\n\
[Unit]\n\
Description=nicslice: {description}\n\
Documentation=man:nicslice(8)\n\
After={after}\n\
\n\
[Service]\n\
Type=simple\n\
ExecStart={} --state {} {command}\n\
Restart=on-failure\n\
RestartSec=5\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n",
        exe.display(),
        state.display()
    )
}

/// Repairs drift as the kernel reports it. After restore, so that it starts
/// on what the record says, not on a half-restored boot.
fn events_unit(exe: &Path, state: &Path) -> String {
    let what = "watch parents, shims and endpoints and repair drift as it happens";
    resident_unit(exe, state, what, "nicslice-restore.service", "events --fix")
}

/// The DHCP agent as a service instead of started on demand by the first
/// DHCP `attach` (which then finds it holding the agent's lock). After
/// restore, whose endpoints' leases it renews.
fn dhcp_agent_unit(exe: &Path, state: &Path) -> String {
    let what = "renew the DHCP leases of its endpoints (T1, T2, expiry, asked for again when lost)";
    resident_unit(exe, state, what, "network-online.target nicslice-restore.service", "dhcp-agent")
}

pub fn run(dir: &Path, g: &Globals) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let units: [(PathBuf, String); 3] = [
        (dir.join(RESTORE), restore_unit(&exe, &g.state)),
        (dir.join(EVENTS), events_unit(&exe, &g.state)),
        (dir.join(DHCP_AGENT), dhcp_agent_unit(&exe, &g.state)),
    ];
    // Every file checked before any is written: all or none.
    for (path, _) in &units {
        match std::fs::read_to_string(path) {
            Ok(old) if !old.starts_with(MARK) => anyhow::bail!(
                "{} exists and nicslice did not write it; remove it first if it should be nicslice's",
                path.display()
            ),
            _ => {}
        }
    }
    for (path, text) in &units {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("{} written", path.display());
    }
    println!("enable the restore at boot: systemctl daemon-reload && systemctl enable {RESTORE}");
    println!("optional, to repair drift as it happens: systemctl enable --now {EVENTS}");
    println!(
        "optional, to keep DHCP leases renewed by a service rather than an agent started by \
         attach: systemctl enable --now {DHCP_AGENT}"
    );
    Ok(())
}
