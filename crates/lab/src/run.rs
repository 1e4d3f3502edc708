//! Running experiments: build each topology in its own world, probe every
//! ordered pair the model predicts for (ICMP echo from inside the source
//! namespace, neighbour caches flushed first so each probe starts cold),
//! compare, and tear the world down. Scenarios run in parallel; probes inside
//! one scenario run one after the other so they cannot influence each other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nicslice_kernel::{KernelError, Pinger, RouteSocket};
use nicslice_model::reach::{self, Reach, Verdict};
use serde::Serialize;

use crate::realize;
use crate::scenarios::Scenario;

/// How long a probe waits for a reply in all, over two requests. Everything is
/// on one machine: a reply that comes at all comes within a millisecond.
const PROBE_TIMEOUT: Duration = Duration::from_millis(400);

/// One probed pair.
#[derive(Debug, Clone, Serialize)]
pub struct Observation {
    pub from: String,
    pub to: String,
    pub address: Option<std::net::IpAddr>,
    pub observed: Reach,
    pub predicted: Reach,
    pub verdict: Verdict,
}

impl Observation {
    pub fn matches(&self) -> bool {
        self.observed == self.predicted
    }
}

/// The outcome of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub mode: String,
    pub description: String,
    /// Endpoints in matrix order.
    pub endpoints: Vec<String>,
    /// Why it did not run (kernel lacks a feature), if it did not.
    pub skipped: Option<String>,
    /// Why it failed to build or probe, if it did.
    pub error: Option<String>,
    pub observations: Vec<Observation>,
    pub seconds: f64,
    /// `--keep`: the namespaces, endpoint to iproute2 name.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub namespaces: HashMap<String, String>,
}

impl ScenarioResult {
    pub fn mismatches(&self) -> usize {
        self.observations.iter().filter(|o| !o.matches()).count()
    }

    pub fn ok(&self) -> bool {
        self.error.is_none() && self.mismatches() == 0
    }
}

/// Runs one scenario to completion (or until `stop` is set).
pub fn run_one(
    s: &Scenario,
    ipvlan_available: bool,
    keep: bool,
    stop: &AtomicBool,
) -> ScenarioResult {
    let started = Instant::now();
    let endpoints = s
        .topology
        .endpoints()
        .map(|e| e.into_iter().map(|e| e.name.0).collect())
        .unwrap_or_default();
    let mut result = ScenarioResult {
        name: s.name.to_string(),
        mode: s.mode.to_string(),
        description: s.topology.description.clone(),
        endpoints,
        skipped: None,
        error: None,
        observations: Vec::new(),
        seconds: 0.0,
        namespaces: HashMap::new(),
    };
    if s.ipvlan && !ipvlan_available {
        result.skipped =
            Some("this kernel has no ipvlan (run the VM tests, or `nicslice check`)".into());
        return result;
    }
    match probe_all(s, keep, stop, &mut result) {
        Ok(()) => {}
        Err(e) => result.error = Some(e.to_string()),
    }
    result.seconds = started.elapsed().as_secs_f64();
    result
}

/// Why a scenario could not finish.
#[derive(Debug, thiserror::Error)]
enum LabError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("the model refused the topology: {0}")]
    Model(#[from] reach::TopologyError),
    #[error("interrupted")]
    Interrupted,
}

fn probe_all(
    s: &Scenario,
    keep: bool,
    stop: &AtomicBool,
    out: &mut ScenarioResult,
) -> Result<(), LabError> {
    let tag = format!("lab{}", s.name.replace('-', ""));
    let mut built = realize::build(&s.topology, &tag)?;
    if keep {
        built.world.keep();
        out.namespaces = built.netns_names.clone();
    }
    let addresses: HashMap<String, Option<std::net::IpAddr>> =
        s.topology.endpoints()?.into_iter().map(|e| (e.name.0, e.address)).collect();
    let entries = reach::matrix(&s.topology)?;
    let mut pingers = HashMap::new();
    let mut sockets = Vec::new();
    for (name, ns) in &built.endpoints {
        pingers.insert(name.clone(), Pinger::open_in(ns)?);
        sockets.push(RouteSocket::open_in(ns)?);
    }
    for entry in entries {
        if stop.load(Ordering::Relaxed) {
            return Err(LabError::Interrupted);
        }
        let address = addresses.get(&entry.to.0).copied().flatten();
        let observed = match (address, pingers.get(&entry.from.0)) {
            (Some(addr), Some(pinger)) => {
                for sock in &mut sockets {
                    sock.flush_neighbours()?;
                }
                if pinger.ping(addr, 2, PROBE_TIMEOUT)? { Reach::Pass } else { Reach::Blocked }
            }
            _ => Reach::Blocked,
        };
        out.observations.push(Observation {
            from: entry.from.0,
            to: entry.to.0,
            address,
            observed,
            predicted: entry.verdict.reach,
            verdict: entry.verdict,
        });
    }
    Ok(())
}

/// Runs scenarios in parallel; `progress` gets each result as it finishes.
pub fn run_all(
    scenarios: Vec<Scenario>,
    ipvlan_available: bool,
    keep: bool,
    stop: &AtomicBool,
    mut progress: impl FnMut(&ScenarioResult, usize, usize),
) -> Vec<ScenarioResult> {
    let total = scenarios.len();
    let (tx, rx) = mpsc::channel();
    let order: Vec<String> = scenarios.iter().map(|s| s.name.to_string()).collect();
    std::thread::scope(|scope| {
        for s in &scenarios {
            let tx = tx.clone();
            scope.spawn(move || {
                let r = run_one(s, ipvlan_available, keep, stop);
                let _ = tx.send(r);
            });
        }
        drop(tx);
        let mut done = Vec::new();
        for r in rx {
            progress(&r, done.len() + 1, total);
            done.push(r);
        }
        done.sort_by_key(|r| order.iter().position(|n| *n == r.name));
        done
    })
}
