//! Running experiments: build each topology in its own world, probe every
//! ordered pair the model predicts for (ICMP echo from inside the source
//! namespace, neighbour caches flushed first so each probe starts cold), then
//! the ARP/NDP pairs (`neighbours.rs`), compare, and tear the world down.
//! Scenarios run in parallel; echo probes inside one scenario run one after the
//! other so they cannot influence each other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nicslice_kernel::{KernelError, Pinger, RouteSocket};
use nicslice_model::reach::{self, Reach, Verdict};
use serde::Serialize;

use crate::kept::KeptWorlds;
use crate::neighbours::{self, NeighbourCheck};
use crate::realize;
use crate::scenarios::Scenario;

/// How long a probe waits for a reply in all, over two requests. Everything is
/// on one machine: a reply that comes at all comes within a millisecond.
const PROBE_TIMEOUT: Duration = Duration::from_millis(400);
/// The second look at a pair observed blocked though predicted to pass.
const RECHECK_TIMEOUT: Duration = Duration::from_millis(1500);

/// One probed pair.
#[derive(Debug, Clone, Serialize)]
pub struct Observation {
    pub from: String,
    pub to: String,
    pub address: Option<std::net::IpAddr>,
    /// What the probe saw; `None` when the pair could not be probed.
    pub observed: Option<Reach>,
    /// Why the pair was not probed, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_probed: Option<String>,
    pub predicted: Reach,
    pub verdict: Verdict,
}

impl Observation {
    /// The echo was probed, and seen as predicted. A pair that was not probed
    /// never matches.
    pub fn matches(&self) -> bool {
        self.observed == Some(self.predicted)
    }

    /// The echo was probed, and seen otherwise than predicted.
    pub fn mismatches(&self) -> bool {
        self.observed.is_some_and(|o| o != self.predicted)
    }
}

/// Why the probe `from -> to` cannot be sent: the target has no address to
/// ping, or the source has no socket open in its namespace.
fn why_not_probed(
    from: &str,
    to: &str,
    address: Option<std::net::IpAddr>,
    has_socket: bool,
) -> Option<String> {
    if address.is_none() {
        Some(format!("{to} has no address to probe"))
    } else if !has_socket {
        Some(format!("no probe socket in {from}'s namespace"))
    } else {
        None
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
    /// The ARP (NDP) requests between endpoints that share a subnet.
    pub neighbours: Vec<NeighbourCheck>,
    pub seconds: f64,
    /// `--keep`: the namespaces, endpoint to iproute2 name.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub namespaces: HashMap<String, String>,
}

impl ScenarioResult {
    /// A result with nothing observed yet.
    pub fn new(name: &str, mode: &str, description: &str, endpoints: Vec<String>) -> Self {
        ScenarioResult {
            name: name.to_string(),
            mode: mode.to_string(),
            description: description.to_string(),
            endpoints,
            skipped: None,
            error: None,
            observations: Vec::new(),
            neighbours: Vec::new(),
            seconds: 0.0,
            namespaces: HashMap::new(),
        }
    }

    /// Echo, ARP and NDP observations otherwise than predicted.
    pub fn mismatches(&self) -> usize {
        let neighbours = self.neighbour_checks().filter(|c| c.mismatches()).count();
        self.observations.iter().filter(|o| o.mismatches()).count() + neighbours
    }

    /// Echo, ARP and NDP probes the model predicted for that could not be sent.
    pub fn not_probed(&self) -> usize {
        let neighbours = self.neighbour_checks().filter(|c| c.observed.is_none()).count();
        self.observations.iter().filter(|o| o.observed.is_none()).count() + neighbours
    }

    pub fn neighbour_checks(&self) -> impl Iterator<Item = &NeighbourCheck> {
        self.neighbours.iter()
    }

    /// The ARP and NDP checks of the pair `from -> to`.
    pub fn neighbours_of(&self, from: &str, to: &str) -> impl Iterator<Item = &NeighbourCheck> {
        self.neighbours.iter().filter(move |c| c.from == from && c.to == to)
    }

    /// (echo, ARP, NDP) probes sent.
    pub fn probes(&self) -> (usize, usize, usize) {
        let sent = self.neighbours.iter().filter(|c| c.observed.is_some());
        let arp = sent.clone().filter(|c| c.target.is_ipv4()).count();
        let ndp = sent.count() - arp;
        (self.observations.iter().filter(|o| o.observed.is_some()).count(), arp, ndp)
    }

    /// Built, every pair probed, every observation as predicted.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.mismatches() == 0 && self.not_probed() == 0
    }
}

/// Runs one scenario to completion (or until `stop` is set); with `keep` its
/// world stays up, recorded there.
pub fn run_one(
    s: &Scenario,
    ipvlan_available: bool,
    keep: Option<&KeptWorlds>,
    stop: &AtomicBool,
) -> ScenarioResult {
    let started = Instant::now();
    let endpoints = s
        .topology
        .endpoints()
        .map(|e| e.into_iter().map(|e| e.name.0).collect())
        .unwrap_or_default();
    let mut result = ScenarioResult::new(s.name, s.mode, &s.topology.description, endpoints);
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
    #[error("could not record the kept world in {dir}")]
    Keep {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
}

fn probe_all(
    s: &Scenario,
    keep: Option<&KeptWorlds>,
    stop: &AtomicBool,
    out: &mut ScenarioResult,
) -> Result<(), LabError> {
    let tag = format!("lab{}", s.name.replace('-', ""));
    let mut built = realize::build(&s.topology, &tag, s.host_access)?;
    if let Some(why) = &built.shim_refused {
        out.description = format!("{}; nicslice shim add refused: {why}", out.description);
    }
    if let Some(kept) = keep {
        built
            .world
            .keep(kept)
            .map_err(|source| LabError::Keep { dir: kept.dir().display().to_string(), source })?;
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
        let pinger = pingers.get(&entry.from.0);
        let not_probed = why_not_probed(&entry.from.0, &entry.to.0, address, pinger.is_some());
        let observed = match (address, pinger) {
            (Some(addr), Some(pinger)) => {
                let mut probe = |timeout| -> Result<bool, LabError> {
                    for sock in &mut sockets {
                        sock.flush_neighbours()?;
                    }
                    Ok(pinger.ping(addr, 2, timeout)?)
                };
                let mut pass = probe(PROBE_TIMEOUT)?;
                // A pair found blocked though predicted to pass is probed once
                // more, cold and with more time, before it counts: a busy
                // machine (the whole lab at once on two vCPUs) can lose a
                // window, while a real mismatch repeats. A pass is never luck.
                if !pass && entry.verdict.reach == Reach::Pass {
                    pass = probe(RECHECK_TIMEOUT)?;
                }
                Some(if pass { Reach::Pass } else { Reach::Blocked })
            }
            _ => None,
        };
        out.observations.push(Observation {
            from: entry.from.0,
            to: entry.to.0,
            address,
            observed,
            not_probed,
            predicted: entry.verdict.reach,
            verdict: entry.verdict,
        });
    }
    if stop.load(Ordering::Relaxed) {
        return Err(LabError::Interrupted);
    }
    let pairs = reach::neighbour_pairs(&s.topology)?;
    out.neighbours = neighbours::probe(&built.endpoints, &pairs)?;
    Ok(())
}

/// Runs scenarios in parallel; `progress` gets each result as it finishes.
pub fn run_all(
    scenarios: Vec<Scenario>,
    ipvlan_available: bool,
    keep: Option<&KeptWorlds>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use nicslice_model::reach::Rule;

    fn observation(observed: Option<Reach>, predicted: Reach) -> Observation {
        Observation {
            from: "a".into(),
            to: "b".into(),
            address: None,
            observed,
            not_probed: observed.is_none().then(|| "b has no address to probe".into()),
            predicted,
            verdict: Verdict {
                reach: predicted,
                rule: Rule::NoAddress,
                reason: String::new(),
                fix: None,
                unconfirmed: false,
                beyond: None,
            },
        }
    }

    fn result(observations: Vec<Observation>) -> ScenarioResult {
        let endpoints = vec!["a".into(), "b".into()];
        ScenarioResult { observations, ..ScenarioResult::new("s", "bridge", "", endpoints) }
    }

    #[test]
    fn a_pair_without_address_or_socket_is_not_probed() {
        let addr = Some("10.0.0.1".parse().unwrap());
        assert_eq!(why_not_probed("a", "b", addr, true), None);
        assert_eq!(
            why_not_probed("a", "b", None, true).as_deref(),
            Some("b has no address to probe")
        );
        assert_eq!(
            why_not_probed("a", "b", addr, false).as_deref(),
            Some("no probe socket in a's namespace")
        );
    }

    #[test]
    fn an_unprobed_pair_is_neither_a_match_nor_a_mismatch_and_fails_the_scenario() {
        let unprobed = observation(None, Reach::Blocked);
        assert!(!unprobed.matches(), "a pair not probed must not count as seen blocked");
        assert!(!unprobed.mismatches());
        let r = result(vec![observation(Some(Reach::Pass), Reach::Pass), unprobed]);
        assert_eq!((r.mismatches(), r.not_probed()), (0, 1));
        assert!(!r.ok());
        let r = result(vec![observation(Some(Reach::Blocked), Reach::Blocked)]);
        assert!(r.ok());
        let json = serde_json::to_value(&r.observations[0]).unwrap();
        assert!(json.get("not_probed").is_none(), "{json}");
    }
}
