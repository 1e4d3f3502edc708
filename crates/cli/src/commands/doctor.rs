//! `nicslice doctor [NET] [--fix] [--wire]`: findings, one line each, and their
//! fixes; `nicslice restore`: the same repairs after a reboot, quietly.

use super::Globals;
use crate::output;

pub fn run(g: &Globals, network: Option<&str>, fix: bool, wire: bool) -> anyhow::Result<()> {
    let mut engine = g.engine()?;
    let mut findings = engine.doctor(network, fix)?;
    if wire {
        findings.extend(engine.doctor_wire(network)?);
    }
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

/// `nicslice restore`: every safe repair, one line per thing restored or
/// released; what could not be is an error.
pub fn restore(g: &Globals) -> anyhow::Result<()> {
    let mut engine = g.engine()?;
    let findings = engine.restore()?;
    if g.json {
        output::json(&findings)?;
    }
    let mut left = 0;
    for f in &findings {
        match (f.repaired, &f.repair_error) {
            (Some(true), _) if !g.json => {
                println!("restored: {}: {}: {}", f.network, f.subject, f.fix)
            }
            (Some(true), _) => {}
            (_, error) => {
                left += 1;
                let why = error.as_deref().unwrap_or(&f.fix);
                eprintln!(
                    "nicslice: not restored: {}: {}: {} ({why})",
                    f.network, f.subject, f.problem
                );
            }
        }
    }
    if left > 0 {
        anyhow::bail!("{left} thing(s) could not be restored; `nicslice doctor` lists them");
    }
    Ok(())
}
