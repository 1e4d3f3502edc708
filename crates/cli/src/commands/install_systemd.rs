//! `nicslice install-systemd [DIR]`: the unit that runs `nicslice restore`
//! at boot. A file of that name nicslice did not write is never replaced.

use std::path::Path;

use anyhow::Context;

use super::Globals;

/// The first line of every unit nicslice writes: what makes it ours.
const MARK: &str = "# Written by `nicslice install-systemd`; it replaces this file when run again.";

const RESTORE: &str = "nicslice-restore.service";

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

pub fn run(dir: &Path, g: &Globals) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(RESTORE);
    match std::fs::read_to_string(&path) {
        Ok(old) if !old.starts_with(MARK) => anyhow::bail!(
            "{} exists and nicslice did not write it; remove it first if it should be nicslice's",
            path.display()
        ),
        _ => {}
    }
    std::fs::write(&path, restore_unit(&exe, &g.state))
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "{} written; enable it with `systemctl daemon-reload && systemctl enable {RESTORE}`",
        path.display()
    );
    Ok(())
}
