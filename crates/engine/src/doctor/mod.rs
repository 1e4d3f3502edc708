//! `doctor`: the record compared with the kernel, finding by finding, each
//! with its fix; with `fix`, the repairs that are safe are made. Parents
//! (missing, down, without carrier, a port of a bridge or bond, wireless,
//! promiscuous mode asked but off), the shims nicslice made, and every
//! endpoint through the one check a CNI CHECK runs (`endpoint::check`).
//!
//! Safe repairs are those that put back what nicslice made, where it made
//! it: a VLAN or dummy parent nicslice owns, promiscuous mode it was asked
//! for, a shim, an endpoint's link missing from a namespace that still
//! exists (made again with its recorded addresses and MAC), and the leases
//! of endpoints whose namespace is gone (released). Everything else is
//! reported with what to do, and left to the user.

mod wire;

use std::net::IpAddr;
use std::path::Path;

use nicslice_kernel::{Netns, NetnsTarget, RouteSocket};
use nicslice_model::IfName;
use nicslice_store::{NetworkRecord, StoreRead};
use serde::Serialize;

use crate::detach::DetachRequest;
use crate::error::Result;
use crate::{EndpointView, Engine, ShimRequest};

/// What `fix` would do about a finding.
#[derive(Debug, Clone)]
enum Repair {
    None,
    RecreateParent(String),
    SetPromisc(String),
    RecreateShim { network: String, name: String, ips: Vec<IpAddr>, route_range: bool },
    Release(EndpointView),
    Reattach(EndpointView),
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

/// A detach of an endpoint as it was recorded (by its namespace's path).
fn recorded(ep: &EndpointView) -> Result<DetachRequest> {
    Ok(DetachRequest {
        network: ep.network.clone(),
        netns: NetnsTarget::Path(ep.netns.clone().into()),
        ifname: IfName::new(&ep.ifname)?,
    })
}

/// Whether `name` is a wireless interface of the namespace this process
/// runs in (sysfs shows the namespace it was mounted in).
fn is_wireless(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).join("wireless").exists()
        || Path::new("/sys/class/net").join(name).join("phy80211").exists()
}

impl Engine {
    /// Every finding, for one network or all; with `fix`, repaired where safe.
    pub fn doctor(&mut self, network: Option<&str>, fix: bool) -> Result<Vec<Finding>> {
        let networks = match network {
            Some(name) => vec![self.network_record(name)?],
            None => self.store.read()?.list_networks()?,
        };
        let mut findings = Vec::new();
        for record in &networks {
            findings.extend(self.network_drift(record)?);
        }
        for health in self.check_endpoints(network)? {
            let Some(problem) = health.problem else { continue };
            let ep = health.endpoint;
            let subject = format!("endpoint {} in {}", ep.ifname, ep.netns);
            let gone =
                ep.state == "stale" || NetnsTarget::Path(ep.netns.clone().into()).open().is_err();
            let link_missing = !gone && problem.contains("not found");
            let (fix, repair) = if gone {
                (
                    "release its addresses (the container is gone)".to_string(),
                    Repair::Release(ep.clone()),
                )
            } else if link_missing {
                (
                    "make its link again with its recorded addresses and MAC".to_string(),
                    Repair::Reattach(ep.clone()),
                )
            } else {
                (
                    format!(
                        "put it back by hand, or `nicslice detach {} --netns {}` and attach again",
                        ep.network, ep.netns
                    ),
                    Repair::None,
                )
            };
            findings.push(finding(&ep.network, subject, problem, fix, repair));
        }
        if fix {
            for f in findings.iter_mut().filter(|f| f.repairable) {
                let outcome = self.repair(&f.repair);
                f.repaired = Some(outcome.is_ok());
                f.repair_error = outcome.err().map(|e| e.to_string());
            }
        }
        Ok(findings)
    }

    fn parent_findings(&mut self, record: &NetworkRecord, out: &mut Vec<Finding>) -> Result<()> {
        let spec = &record.spec;
        let net = spec.name.as_str();
        let name = spec.parent.to_string();
        let subject = format!("parent {name}");
        let mut host = RouteSocket::open_in(&self.host)?;
        let owned = self.store.write()?.owned_link(&name)?;
        let Some(parent) = host.link_by_name(&name)? else {
            let (fix, repair) = match owned {
                Some(_) => (
                    format!("make {name} again (nicslice made it)"),
                    Repair::RecreateParent(name.clone()),
                ),
                None => (
                    format!("bring {name} back, or `nicslice network rm {net} --force`"),
                    Repair::None,
                ),
            };
            out.push(finding(
                net,
                subject,
                format!("{name} does not exist in {}", self.host.label()),
                fix,
                repair,
            ));
            return Ok(());
        };
        if !parent.up {
            out.push(finding(
                net,
                subject.clone(),
                format!("{name} is down: every child of it is without carrier"),
                format!("`ip link set {name} up`"),
                Repair::None,
            ));
        } else if !parent.lower_up {
            out.push(finding(
                net,
                subject.clone(),
                format!("{name} has no carrier: its children cannot reach the wire"),
                format!("check the cable or the switch port of {name}"),
                Repair::None,
            ));
        }
        if spec.promisc && !parent.promisc_flag {
            out.push(finding(
                net,
                subject.clone(),
                format!("promiscuous mode was asked for {name} but is off"),
                format!("turn it on again (`ip link set {name} promisc on`)"),
                Repair::SetPromisc(name.clone()),
            ));
        }
        if let Some(master) = parent.master_index {
            let port_of = host.link_by_index(master)?.map_or(master.to_string(), |l| l.name);
            out.push(finding(
                net,
                subject.clone(),
                format!(
                    "{name} has become a port of {port_of}: the kernel refuses new children on it"
                ),
                format!("take {name} out of {port_of}, or use {port_of} as the parent"),
                Repair::None,
            ));
        }
        if self.host.id() == Netns::current()?.id() && is_wireless(&name) {
            out.push(finding(
                net,
                subject,
                format!("{name} is a wireless interface: an 802.11 station sends only its own MAC, so macvlan children get no traffic"),
                "use ipvlan (its children share the parent's MAC, seed 001) or a wired parent".into(),
                Repair::None,
            ));
        }
        Ok(())
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

    fn repair(&mut self, repair: &Repair) -> Result<()> {
        match repair {
            Repair::None => Ok(()),
            Repair::RecreateParent(name) => {
                let tx = self.store.write()?;
                let owned = tx.owned_link(name)?;
                drop(tx);
                let Some(owned) = owned else { return Ok(()) };
                let mut host = RouteSocket::open_in(&self.host)?;
                crate::parent::recreate(&mut host, &owned)?;
                // A new link starts without promiscuous mode: put back what
                // a network on it asked for (after a reboot, restore's case).
                let networks = self.store.read()?.list_networks()?;
                if networks.iter().any(|n| n.spec.parent.as_str() == name && n.spec.promisc) {
                    let link = host.require_link(name, self.host.label())?;
                    host.set_promisc(link.index, true)?;
                }
                Ok(())
            }
            Repair::SetPromisc(name) => {
                let mut host = RouteSocket::open_in(&self.host)?;
                let link = host.require_link(name, self.host.label())?;
                Ok(host.set_promisc(link.index, true)?)
            }
            Repair::RecreateShim { network, name, ips, route_range } => {
                // The record goes (its link, if any is ours, with it), then
                // the shim is made as `shim add` makes it.
                let _ = self.remove_shim(network);
                self.add_shim(ShimRequest {
                    network: network.clone(),
                    name: Some(IfName::new(name)?),
                    ips: ips.clone(),
                    route_range: *route_range,
                })
                .map(|_| ())
            }
            Repair::Release(ep) => self.detach(recorded(ep)?).map(|_| ()),
            Repair::Reattach(ep) => {
                self.detach(recorded(ep)?)?;
                self.attach(crate::converge::reattach(ep)?).map(|_| ())
            }
        }
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
