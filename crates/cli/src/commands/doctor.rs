//! `nicslice doctor [NET] [--fix]`: findings, one line each, and their fixes.

use super::Globals;
use crate::output;

pub fn run(g: &Globals, network: Option<&str>, fix: bool) -> anyhow::Result<()> {
    let mut engine = g.engine()?;
    let findings = engine.doctor(network, fix)?;
    let left = findings.iter().filter(|f| f.repaired != Some(true)).count();
    if g.json {
        output::json(&findings)?;
    } else if findings.is_empty() {
        println!("nicslice doctor: everything is as nicslice made it");
    } else {
        for f in &findings {
            let state = match (f.repaired, &f.repair_error) {
                (Some(true), _) => "repaired: ".to_string(),
                (Some(false), Some(e)) => format!("repair failed ({e}); "),
                _ if f.repairable => "--fix would ".to_string(),
                _ => "fix: ".to_string(),
            };
            println!("{}: {}: {}; {state}{}", f.network, f.subject, f.problem, f.fix);
        }
    }
    if left > 0 {
        anyhow::bail!("{left} finding(s) left to fix");
    }
    Ok(())
}
