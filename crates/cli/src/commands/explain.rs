//! `nicslice explain`: the reachability model's predictions, with the rule
//! behind each blocked pair and its usual fix, for a topology file (TOML or
//! JSON), one of the lab's scenarios, or the live state of nicslice's networks.

use anyhow::Context;
use nicslice_lab::run::{Observation, ScenarioResult};
use nicslice_lab::scenarios;
use nicslice_model::reach::{self, EndpointRef, Topology};

use super::Globals;
use crate::args::ExplainArgs;
use crate::commands::lab_report;
use crate::output;

fn load(args: &ExplainArgs, g: &Globals) -> anyhow::Result<Topology> {
    if let Some(name) = &args.preset {
        return scenarios::all()
            .into_iter()
            .find(|s| s.name == name.as_str())
            .map(|s| s.topology)
            .with_context(|| format!("no preset {name}; `nicslice lab --list` names them"));
    }
    let Some(path) = &args.file else {
        return Ok(g.engine()?.live_topology()?);
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let is_json =
        path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    if is_json {
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid topology (JSON)", path.display()))
    } else {
        toml::from_str(&text).map_err(|e| {
            // toml's own rendering quotes the line with a caret under it, on
            // four lines; an error is one line: where, then what.
            let at = e.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" at line {line}, column {column}")
            });
            anyhow::anyhow!(
                "{} is not a valid topology (TOML){}: {}",
                path.display(),
                at.unwrap_or_default(),
                e.message().trim_end()
            )
        })
    }
}

pub fn run(args: ExplainArgs, g: &Globals) -> anyhow::Result<()> {
    let topology = load(&args, g)?;
    topology.validate()?;
    if let (Some(from), Some(to)) = (&args.from, &args.to) {
        let verdict =
            reach::predict(&topology, &EndpointRef(from.clone()), &EndpointRef(to.clone()))?;
        if g.json {
            return output::json(&verdict);
        }
        println!("{from} → {to}: {}", verdict.reason);
        if let Some(fix) = &verdict.fix {
            println!("fix: {fix}");
        }
        return Ok(());
    }
    if args.from.is_some() || args.to.is_some() {
        anyhow::bail!("give both --from and --to, or neither for the whole matrix");
    }
    let entries = reach::matrix(&topology)?;
    if g.json {
        return output::json(&serde_json::json!({
            "description": topology.description,
            "endpoints": topology.endpoints()?,
            "matrix": entries,
        }));
    }
    // The lab's report shows predictions as observations that match.
    let endpoints = topology.endpoints()?;
    let names = endpoints.iter().map(|e| e.name.0.clone()).collect();
    let mut result = ScenarioResult::new("predicted", "", &topology.description, names);
    result.observations = entries
        .into_iter()
        .map(|e| Observation {
            address: endpoints.iter().find(|x| x.name == e.to).and_then(|x| x.address),
            from: e.from.0,
            to: e.to.0,
            observed: Some(e.verdict.reach),
            not_probed: None,
            predicted: e.verdict.reach,
            verdict: e.verdict,
        })
        .collect();
    if result.observations.is_empty() {
        println!("{}: nothing to predict (no endpoints with addresses)", topology.description);
        return Ok(());
    }
    print!("{}", lab_report::text(&[result], std::io::IsTerminal::is_terminal(&std::io::stdout())));
    Ok(())
}
