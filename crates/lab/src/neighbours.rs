//! The lab's neighbour phase: for every pair the model names (same segment, same
//! subnet) an ARP request (NDP solicitation for IPv6) from the asker's interface
//! inside its namespace, compared with the model's prediction. Runs after the
//! echo probes, whose cold caches it would spoil; the requests of one scenario go
//! out all at once (a reply goes straight to the asker's MAC and does not depend
//! on any cache, so concurrent requests cannot change each other's answers).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use nicslice_kernel::{NeighbourProber, Netns, Result};
use nicslice_model::reach::{NeighbourPrediction, Rule};
use serde::Serialize;

/// Requests per target, spread over [`TIMEOUT`]; a reply on one machine comes
/// within a millisecond, the retries cover a busy scheduler.
const ATTEMPTS: u16 = 3;
const TIMEOUT: Duration = Duration::from_millis(200);
/// The second, longer ask for a request unanswered though predicted answered.
const RECHECK_TIMEOUT: Duration = Duration::from_millis(1000);

/// What happened to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    Answered,
    Unanswered,
}

impl Answer {
    fn of(answered: bool) -> Answer {
        if answered { Answer::Answered } else { Answer::Unanswered }
    }
}

/// One ARP (or NDP) pair: observed beside predicted.
#[derive(Debug, Clone, Serialize)]
pub struct NeighbourCheck {
    pub from: String,
    pub to: String,
    /// "arp" or "ndp".
    pub protocol: &'static str,
    pub sender: IpAddr,
    pub target: IpAddr,
    /// `None` when the request could not be sent.
    pub observed: Option<Answer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_probed: Option<String>,
    pub predicted: Answer,
    /// Why the model expects no answer, when it does.
    pub rule: Option<Rule>,
    pub reason: String,
}

impl NeighbourCheck {
    pub fn matches(&self) -> bool {
        self.observed == Some(self.predicted)
    }

    pub fn mismatches(&self) -> bool {
        self.observed.is_some_and(|o| o != self.predicted)
    }
}

/// Probes every pair from the namespaces in `endpoints`; the checks come back in
/// the order of `pairs`.
pub fn probe(
    endpoints: &HashMap<String, Netns>,
    pairs: &[NeighbourPrediction],
) -> Result<Vec<NeighbourCheck>> {
    let mut checks: Vec<NeighbourCheck> = pairs
        .iter()
        .map(|p| NeighbourCheck {
            from: p.from.0.clone(),
            to: p.to.0.clone(),
            protocol: p.protocol(),
            sender: p.sender,
            target: p.target,
            observed: None,
            not_probed: None,
            predicted: Answer::of(p.answered),
            rule: p.rule,
            reason: p.reason.clone(),
        })
        .collect();
    // One prober per asking interface, asking for all its targets at once.
    let mut groups: Vec<((&str, IpAddr), Vec<usize>)> = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        let key = (p.from.0.as_str(), p.sender);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let mut probers = Vec::new();
    for ((from, sender), members) in groups {
        let prober = match endpoints.get(from) {
            Some(ns) => NeighbourProber::open_in(ns, sender)?,
            None => None,
        };
        match prober {
            Some(p) => probers.push((p, members)),
            None => {
                for i in members {
                    checks[i].not_probed = Some(format!("no interface with {sender} in {from}"));
                }
            }
        }
    }
    let answers = std::thread::scope(|scope| {
        let handles: Vec<_> = probers
            .iter()
            .map(|(p, members)| {
                let targets: Vec<IpAddr> = members.iter().map(|i| pairs[*i].target).collect();
                scope.spawn(move || p.ask(&targets, ATTEMPTS, TIMEOUT))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect::<Vec<_>>()
    });
    for ((_, members), answered) in probers.iter().zip(answers) {
        for (i, a) in members.iter().zip(answered?) {
            checks[*i].observed = Some(Answer::of(a));
        }
    }
    // As with the echo: an answer that should have come is asked for once
    // more with more time before it counts as a mismatch (a lost window on a
    // busy machine is not the kernel's verdict; a real mismatch repeats).
    for (prober, members) in &probers {
        let missing: Vec<usize> = members
            .iter()
            .copied()
            .filter(|i| {
                checks[*i].predicted == Answer::Answered
                    && checks[*i].observed == Some(Answer::Unanswered)
            })
            .collect();
        if missing.is_empty() {
            continue;
        }
        let targets: Vec<IpAddr> = missing.iter().map(|i| pairs[*i].target).collect();
        for (i, a) in missing.iter().zip(prober.ask(&targets, ATTEMPTS, RECHECK_TIMEOUT)?) {
            checks[*i].observed = Some(Answer::of(a));
        }
    }
    Ok(checks)
}
