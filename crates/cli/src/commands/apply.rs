//! `nicslice apply FILE [--dry-run] [--prune]`: the file read and checked
//! (one line naming the file, the key and what is wrong), the engine's plan
//! printed, one line per step, and made unless `--dry-run`.

use nicslice_model::desired::DesiredFile;
use serde::Serialize;

use super::{Globals, toml_file};
use crate::args::ApplyArgs;
use crate::output;

/// `apply --json`.
#[derive(Serialize)]
struct Report<'a> {
    file: String,
    dry_run: bool,
    /// How many steps change something.
    changes: usize,
    /// Whether the changes were made (not with --dry-run, nor when none).
    applied: bool,
    steps: &'a [nicslice_engine::converge::PlanStep],
}

pub fn run(g: &Globals, a: &ApplyArgs) -> anyhow::Result<()> {
    let shown = a.file.display().to_string();
    let text = toml_file::read_bounded(&a.file, "an apply file")?;
    let mut file: DesiredFile = toml_file::parse(&a.file, &text, "apply file")?;
    // The file's TLS paths are relative to where it is, not to where apply runs.
    let dir = std::path::absolute(&a.file)
        .ok()
        .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_default();
    file.resolve_paths(&dir);
    let desired = file.check().map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let mut engine = g.engine()?;
    // A refusal here is about what the file asks for: it names the file too.
    let plan = engine.plan(&desired, a.prune).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let changes = plan.changes();
    if !g.json {
        for step in &plan.steps {
            println!("{step}");
        }
    }
    let applied = changes > 0 && !a.dry_run;
    if applied {
        engine.converge(&plan)?;
        // As `attach` does: DHCP leases need the agent that renews them.
        // Any DHCP family ("dhcp", "dhcp6", "dhcp,dhcp6", ...).
        let dhcp = |net: &str| {
            let is_dhcp =
                |ipam: &str| ipam.parse::<nicslice_model::Ipam>().is_ok_and(|i| i.is_dhcp());
            file.networks.iter().any(|n| n.name == net && is_dhcp(&n.ipam))
        };
        if file.endpoints.iter().any(|e| dhcp(&e.network)) {
            super::dhcp_agent::ensure_running(g);
        }
    }
    if g.json {
        return output::json(&Report {
            file: shown,
            dry_run: a.dry_run,
            changes,
            applied,
            steps: &plan.steps,
        });
    }
    match (changes, a.dry_run) {
        (0, _) => println!("nothing to do: everything is as {shown} declares"),
        (n, true) => println!("dry run: {n} change(s) planned, none made"),
        (n, false) => println!("applied {n} change(s)"),
    }
    Ok(())
}
