//! `nicslice events [--fix] [--json]`: one line (or JSON object) per event.

use std::io::Write;
use std::time::Duration;

use super::Globals;

pub fn run(g: &Globals, fix: bool, idle_exit: Option<u64>) -> anyhow::Result<()> {
    let mut engine = g.engine()?;
    let stdout = std::io::stdout();
    engine.watch(fix, idle_exit.map(Duration::from_secs), |e| {
        let mut out = stdout.lock();
        let line = if g.json {
            serde_json::to_string(e).unwrap_or_default()
        } else {
            let affects = if e.endpoints.is_empty() {
                format!("network {}", e.networks.join(", "))
            } else {
                format!("network {} ({})", e.networks.join(", "), e.endpoints.join(", "))
            };
            format!("{}: {} [{affects}]", e.event, e.message)
        };
        // A closed stdout (the reader went away) ends the watch.
        writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
    })?;
    Ok(())
}
