//! `doctor`: the record compared with the kernel, finding by finding, each
//! with its fix; with `fix`, the repairs that are safe are made. Parents
//! (missing, down, without carrier, a port of a bridge or bond, wireless,
//! promiscuous mode asked but off), the shims nicslice made, and every
//! endpoint through the one check a CNI CHECK runs (`endpoint::check`).
//!
//! Safe repairs are those that put back what nicslice made, where it made
//! it: a VLAN or dummy parent nicslice owns, promiscuous mode it was asked
//! for, a shim, an endpoint's link missing from a namespace that still
//! exists (made again with its recorded addresses and MAC), an endpoint's
//! recorded addresses and routes lost from its link (added again), the
//! record of a parent recreated under its name (its children, gone with the
//! old link, are made again by their own findings), and the leases of
//! endpoints whose namespace is gone (released). Nothing the user made is
//! removed or overwritten (an address added by hand, an MTU set by hand, a
//! renamed parent): those are reported with what to do, and left to them.
//!
//! `restore` is the same after a reboot, with one difference: an endpoint
//! whose namespace exists again (a new namespace under the recorded path)
//! is made again in it, where `doctor` releases it (see `Mode`).

mod endpoints;
mod parent;
mod repair;
mod wire;

use std::net::IpAddr;

use nicslice_kernel::RouteSocket;
use nicslice_model::MacAddr;
use nicslice_store::{NetworkId, NetworkRecord, StoreRead};
use serde::Serialize;

use crate::error::Result;
use crate::{EndpointView, Engine};

/// What `fix` would do about a finding.
#[derive(Debug, Clone)]
enum Repair {
    None,
    RecreateParent(String),
    /// Record the link now named as the parent (recreated under its name).
    AdoptParent {
        network: NetworkId,
        index: u32,
        mac: Option<MacAddr>,
    },
    SetPromisc(String),
    RecreateShim {
        network: String,
        name: String,
        ips: Vec<IpAddr>,
        route_range: bool,
    },
    Release(EndpointView),
    Reattach(EndpointView),
    /// Add the endpoint's recorded addresses and routes it lacks.
    PutBack(EndpointView),
}

/// Which repairs `fix` makes of an endpoint whose recorded namespace is gone
/// while a new namespace answers to its path.
///
/// `doctor` releases it: while the machine runs, a namespace made again
/// under the same name is someone's new one (a container started with the
/// old one's name), and the old endpoint's addresses and MAC do not belong
/// in it. `restore` makes the endpoint again in it: after a reboot every
/// namespace is new, and the one found under a recorded name was made again
/// by whoever owns that name (a unit running `ip netns add`) for the
/// endpoints it had, which is what restore is run to bring back. It is run
/// once at boot (`nicslice-restore.service`), not at every drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Doctor,
    Restore,
}

/// One thing that differs from what was made, and what fixes it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub network: String,
    /// What the finding is about: "parent eth0", "shim nsh-1", "endpoint
    /// eth0 in /run/netns/c1".
    pub subject: String,
    pub problem: String,
    /// What fixes it: what `--fix` does, or what the user must.
    pub fix: String,
    /// `--fix` repairs it.
    pub repairable: bool,
    /// With `--fix`: whether the repair worked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired: Option<bool>,
    /// Why the repair failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair_error: Option<String>,
    #[serde(skip)]
    repair: Repair,
}

fn finding(
    network: &str,
    subject: String,
    problem: String,
    fix: String,
    repair: Repair,
) -> Finding {
    Finding {
        network: network.to_string(),
        subject,
        problem,
        fix,
        repairable: !matches!(repair, Repair::None),
        repaired: None,
        repair_error: None,
        repair,
    }
}

impl Engine {
    /// Every finding, for one network or all; with `fix`, repaired where safe.
    pub fn doctor(&mut self, network: Option<&str>, fix: bool) -> Result<Vec<Finding>> {
        self.doctor_in(network, fix, Mode::Doctor)
    }

    /// `doctor --fix` at boot: every network, and an endpoint whose
    /// namespace exists again is made again in it (see [`Mode`]).
    pub fn restore(&mut self) -> Result<Vec<Finding>> {
        self.doctor_in(None, true, Mode::Restore)
    }

    fn doctor_in(&mut self, network: Option<&str>, fix: bool, mode: Mode) -> Result<Vec<Finding>> {
        let networks = match network {
            Some(name) => vec![self.network_record(name)?],
            None => self.store.read()?.list_networks()?,
        };
        let mut findings = Vec::new();
        for record in &networks {
            findings.extend(self.network_drift(record)?);
        }
        for health in self.check_endpoints(network)? {
            endpoints::endpoint_findings(health, mode, &mut findings);
        }
        if fix {
            // In passes: a repair that failed is tried again after a pass in
            // which another one succeeded, since one may need another first
            // (a VLAN parent nicslice owns needs the dummy under it, made by
            // another network's repair whichever name sorts first).
            let mut pending: Vec<usize> =
                (0..findings.len()).filter(|&i| findings[i].repairable).collect();
            loop {
                let mut failed = Vec::new();
                for &i in &pending {
                    let outcome = self.repair(&findings[i].repair);
                    findings[i].repaired = Some(outcome.is_ok());
                    findings[i].repair_error = outcome.err().map(|e| e.to_string());
                    if findings[i].repair_error.is_some() {
                        failed.push(i);
                    }
                }
                if failed.is_empty() || failed.len() == pending.len() {
                    break;
                }
                pending = failed;
            }
        }
        Ok(findings)
    }

    fn shim_findings(&mut self, record: &NetworkRecord, out: &mut Vec<Finding>) -> Result<()> {
        let Some(shim) = self.store.read()?.shim(record.id)? else { return Ok(()) };
        let net = record.spec.name.as_str();
        let mut host = RouteSocket::open_in(&self.host)?;
        let problem = match host.link_by_name(&shim.name)? {
            None => {
                Some(format!("shim {} is missing: the host cannot reach the endpoints", shim.name))
            }
            Some(l) if l.mac != shim.mac => {
                Some(format!("{} is no longer the shim nicslice made (another MAC)", shim.name))
            }
            Some(l) if !l.up => Some(format!("shim {} is down", shim.name)),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            out.push(finding(
                net,
                format!("shim {}", shim.name),
                problem,
                "make the shim again with its addresses and routes".into(),
                Repair::RecreateShim {
                    network: net.to_string(),
                    name: shim.name.clone(),
                    ips: shim.addresses.clone(),
                    route_range: !shim.ranges.is_empty(),
                },
            ));
        }
        Ok(())
    }
}

// Shared with `converge` (`nicslice apply`), so that doctor, restore and
// apply compare a network's record with the kernel in one place: the
// network's own findings (parent, shim) and the repair of one finding.
// Endpoints are compared by `check_endpoints` (verify.rs) for all three.
impl Engine {
    /// What differs between network `record` and the kernel: its parent and its shim.
    pub(crate) fn network_drift(&mut self, record: &NetworkRecord) -> Result<Vec<Finding>> {
        let mut findings = Vec::new();
        self.parent_findings(record, &mut findings)?;
        self.shim_findings(record, &mut findings)?;
        Ok(findings)
    }

    /// Makes the repair `--fix` would make for `finding` (none if it has none).
    pub(crate) fn repair_finding(&mut self, finding: &Finding) -> Result<()> {
        self.repair(&finding.repair)
    }
}

impl Finding {
    /// Whether the finding is about the network's shim.
    pub(crate) fn is_about_shim(&self) -> bool {
        matches!(self.repair, Repair::RecreateShim { .. }) || self.subject.starts_with("shim ")
    }
}
