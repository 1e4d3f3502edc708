//! `nicslice install-cni [DIR]`: link nicslice-macvlan, nicslice-ipvlan and
//! nicslice-ipam in DIR to this binary, replacing older links of ours.

use std::path::Path;

use anyhow::Context;

use crate::args::InstallCniArgs;

pub fn run(args: &InstallCniArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    for plugin in nicslice_cni::Plugin::ALL {
        let link = args.dir.join(plugin.name());
        replace_link(&exe, &link)?;
        println!("{} -> {}", link.display(), exe.display());
    }
    Ok(())
}

/// Points `link` at `exe`; an existing file there is replaced only if it is a symlink.
fn replace_link(exe: &Path, link: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(link) {
        Ok(meta) if meta.file_type().is_symlink() => {
            std::fs::remove_file(link).with_context(|| format!("replacing {}", link.display()))?
        }
        Ok(_) => anyhow::bail!(
            "{} exists and is not a link; remove it first if it should be nicslice's",
            link.display()
        ),
        Err(_) => {}
    }
    std::os::unix::fs::symlink(exe, link).with_context(|| format!("creating {}", link.display()))
}
