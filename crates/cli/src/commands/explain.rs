//! `nicslice explain`: the reachability model's predictions, with the rule
//! behind each blocked pair and its usual fix, for a topology file (TOML or
//! JSON), one of the lab's scenarios, or the live state of nicslice's networks.
//! On the live state, a verdict that rests on a next hop outside nicslice's
//! namespaces (the LAN's gateway) is worded by what a probe of it saw.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use anyhow::Context;
use nicslice_engine::{Engine, LiveTopology};
use nicslice_lab::run::{Observation, ScenarioResult};
use nicslice_lab::scenarios;
use nicslice_model::reach::{self, Beyond, Endpoint, EndpointRef, MatrixEntry, Topology, Verdict};
use serde::Serialize;

use super::Globals;
use crate::args::ExplainArgs;
use crate::commands::{lab_report, toml_file};
use crate::output;

/// `explain --json` without `--from`/`--to`.
#[derive(Serialize)]
struct MatrixReport<'a> {
    description: &'a str,
    endpoints: Vec<Endpoint>,
    matrix: &'a [MatrixEntry],
}

/// The live state, with the engine that probes what lies beyond it.
struct Live {
    engine: Engine,
    state: LiveTopology,
}

/// The topology asked about, and the live state when that is what it describes.
fn load(args: &ExplainArgs, g: &Globals) -> anyhow::Result<(Topology, Option<Live>)> {
    if let Some(name) = &args.preset {
        return scenarios::all()
            .into_iter()
            .find(|s| s.name == name.as_str())
            .map(|s| (s.topology, None))
            .with_context(|| format!("no preset {name}; `nicslice lab --list` names them"));
    }
    let Some(path) = &args.file else {
        let mut engine = g.engine()?;
        let state = engine.live_topology()?;
        return Ok((state.topology.clone(), Some(Live { engine, state })));
    };
    parse(path).map(|t| (t, None))
}

/// A topology file, TOML or JSON.
fn parse(path: &Path) -> anyhow::Result<Topology> {
    let text = toml_file::read_bounded(path, "a topology")?;
    let is_json =
        path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    if is_json {
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid topology (JSON)", path.display()))
    } else {
        toml_file::parse(path, &text, "topology")
    }
}

/// On the live state, probes every next hop outside nicslice's namespaces that
/// `verdicts` rest on, once each, and words those verdicts by what was seen. A
/// topology file is the whole world: its verdicts stay as they are.
fn see_beyond<'a>(live: Option<&Live>, verdicts: impl Iterator<Item = &'a mut Verdict>) {
    let Some(live) = live else { return };
    let resting: Vec<&mut Verdict> = verdicts.filter(|v| v.beyond.is_some()).collect();
    // In the matrix's order, so that the same child asks for its neighbours each time.
    let mut once = HashSet::new();
    let asks: Vec<Beyond> = resting
        .iter()
        .filter_map(|v| v.beyond.as_ref())
        .filter(|b| once.insert(*b))
        .cloned()
        .collect();
    if asks.is_empty() {
        return;
    }
    let seen = live.engine.probe_beyond(&live.state, &asks);
    for v in resting {
        if let Some(sighting) = v.beyond.as_ref().and_then(|b| seen.get(b)) {
            *v = v.clone().seen(sighting);
        }
    }
}

pub fn run(args: ExplainArgs, g: &Globals) -> anyhow::Result<()> {
    let (topology, live) = load(&args, g)?;
    topology.validate()?;
    if let (Some(from), Some(to)) = (&args.from, &args.to) {
        let mut verdict =
            reach::predict(&topology, &EndpointRef(from.clone()), &EndpointRef(to.clone()))?;
        see_beyond(live.as_ref(), std::iter::once(&mut verdict));
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
    let mut entries = reach::matrix(&topology)?;
    see_beyond(live.as_ref(), entries.iter_mut().map(|e| &mut e.verdict));
    if g.json {
        // Written as it is serialised: a matrix of 400 endpoints is 45 MB of JSON,
        // which neither a `Value` tree nor a string in between should hold again.
        let report = MatrixReport {
            description: &topology.description,
            endpoints: topology.endpoints()?,
            matrix: &entries,
        };
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(out.flush()?);
    }
    // The lab's report shows predictions as observations that match.
    let endpoints = topology.endpoints()?;
    let names = endpoints.iter().map(|e| e.name.0.clone()).collect();
    let address: HashMap<&EndpointRef, Option<IpAddr>> =
        endpoints.iter().map(|e| (&e.name, e.address)).collect();
    let mut result = ScenarioResult::new("predicted", "", &topology.description, names);
    result.observations = entries
        .into_iter()
        .map(|e| Observation {
            address: address.get(&e.to).copied().flatten(),
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
