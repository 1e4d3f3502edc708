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

mod wire;

use std::net::IpAddr;
use std::path::Path;

use nicslice_kernel::{Netns, NetnsTarget, Route, RouteSocket};
use nicslice_model::{IfName, MacAddr};
use nicslice_store::{NetworkId, NetworkRecord, StoreRead};
use serde::Serialize;

use crate::detach::DetachRequest;
use crate::endpoint::{DriftKind, Place};
use crate::error::Result;
use crate::verify::EndpointHealth;
use crate::{EndpointView, Engine, ShimRequest};

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

/// What to do about an endpoint the kernel holds otherwise than recorded:
/// one finding per kind of difference.
fn endpoint_findings(health: EndpointHealth, mode: Mode, out: &mut Vec<Finding>) {
    let Some(problem) = health.problem else { return };
    let ep = health.endpoint;
    let subject = format!("endpoint {} in {}", ep.ifname, ep.netns);
    let net = ep.network.clone();
    let by_hand = format!(
        "put it back by hand, or `nicslice detach {} --netns {}` and attach again",
        ep.network, ep.netns
    );
    let now = NetnsTarget::Path(ep.netns.clone().into()).open();
    if ep.state == "stale" || now.is_err() {
        // The recorded namespace (inode and cookie) is gone; another may
        // answer to its path (see `Mode`). Only a name counts: a
        // /proc/PID/ns/net path answering again is another process's.
        let again = now.is_ok() && !ep.netns.starts_with("/proc/");
        let (problem, fix, repair) = match (again, mode) {
            (true, Mode::Restore) => (
                format!("its namespace {} is a new one under the recorded name", ep.netns),
                "make its link in the new namespace with its recorded addresses and MAC".into(),
                Repair::Reattach(ep),
            ),
            (true, Mode::Doctor) => (
                format!("its namespace {} is gone, and a new namespace has its name", ep.netns),
                "release its addresses (after a reboot, `nicslice restore` makes it again in the new namespace instead)".into(),
                Repair::Release(ep),
            ),
            (false, _) => {
                (problem, "release its addresses (the container is gone)".into(), Repair::Release(ep))
            }
        };
        out.push(finding(&net, subject, problem, fix, repair));
        return;
    }
    if health.drifts.is_empty() {
        // Not compared (its parent is missing: that finding says what to do).
        out.push(finding(&net, subject, problem, by_hand, Repair::None));
        return;
    }
    let of = |kind: DriftKind| -> Vec<String> {
        health.drifts.iter().filter(|d| d.kind == kind).map(|d| d.message.clone()).collect()
    };
    for message in of(DriftKind::LinkMissing) {
        let fix = "make its link again with its recorded addresses and MAC".to_string();
        out.push(finding(&net, subject.clone(), message, fix, Repair::Reattach(ep.clone())));
    }
    for message in of(DriftKind::LinkDiffers) {
        out.push(finding(&net, subject.clone(), message, by_hand.clone(), Repair::None));
    }
    for message in of(DriftKind::Mtu) {
        // Setting it back would overwrite a choice someone made by hand.
        let fix = format!(
            "set the MTU back by hand (`ip link set {} mtu N` in its namespace), or detach and attach again",
            ep.ifname
        );
        out.push(finding(&net, subject.clone(), message, fix, Repair::None));
    }
    let missing = of(DriftKind::Missing);
    if !missing.is_empty() {
        // A DHCP address has its lease's lifetime on the link, which only a
        // new attach (a new exchange) sets right.
        let (fix, repair) = match ep.dhcp {
            None => (
                "add the recorded addresses and routes again (nothing else on the link is touched)"
                    .to_string(),
                Repair::PutBack(ep.clone()),
            ),
            Some(_) => (by_hand.clone(), Repair::None),
        };
        out.push(finding(&net, subject.clone(), missing.join("; "), fix, repair));
    }
    for message in of(DriftKind::Foreign) {
        // Not nicslice's to remove: the user may rely on it. It is reported
        // (an address of the pool there may be given to another endpoint).
        let fix = format!(
            "nicslice leaves addresses it did not give; remove it by hand (`ip address del ADDRESS dev {}` in its namespace) if it is not meant to be there",
            ep.ifname
        );
        out.push(finding(&net, subject.clone(), message, fix, Repair::None));
    }
}

/// The routes an endpoint was given, as the kernel takes them.
fn recorded_routes(ep: &EndpointView) -> Vec<Route> {
    let defaults = ep.gateways.iter().map(|gw| Route::default_via(*gw, 0));
    let extra = ep.routes.iter().map(|r| Route {
        destination: r.destination,
        gateway: r.via,
        oif: None,
        metric: None,
    });
    defaults.chain(extra).collect()
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
            endpoint_findings(health, mode, &mut findings);
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
        let by_name = host.link_by_name(&name)?;
        // The recorded link under another name: the same index and (where
        // recorded) MAC. An index alone could be another link's after a
        // reboot, which numbers them anew.
        let renamed = match record.parent_index {
            Some(index) if by_name.as_ref().is_none_or(|l| l.index != index) => host
                .link_by_index(index)?
                .filter(|l| l.name != name && record.parent_mac.is_none_or(|m| l.mac == Some(m))),
            _ => None,
        };
        if let Some(old) = renamed {
            // No repair: renaming needs the link down (the kernel refuses to
            // rename most links while up), which cuts the host's own traffic
            // on it and every child; and the new name may be someone's choice.
            let taken = by_name.as_ref().map_or(String::new(), |l| {
                format!(", and another link (index {}) now has the name {name}", l.index)
            });
            out.push(finding(
                net,
                subject,
                format!(
                    "{name} was renamed {} (index {}){taken}: its children are still on {}, but nicslice finds the parent by name",
                    old.name, old.index, old.name
                ),
                format!(
                    "rename it back (`ip link set {now} down; ip link set {now} name {name}; ip link set {name} up`{first}), or `nicslice network rm {net} --force`",
                    now = old.name,
                    first = if by_name.is_some() { ", the other link renamed first" } else { "" }
                ),
                Repair::None,
            ));
            return Ok(());
        }
        let Some(parent) = by_name else {
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
        match record.parent_index {
            // Not known (a network of an older nicslice): the parent found
            // now is recorded, for the next look to compare with.
            None => {
                let tx = self.store.write()?;
                tx.set_parent_link(record.id, parent.index, parent.mac)?;
                tx.commit()?;
            }
            Some(index) if index != parent.index => out.push(finding(
                net,
                subject.clone(),
                format!(
                    "{name} was recreated (index {index} recorded, {} now): the children of the old link went with it",
                    parent.index
                ),
                format!(
                    "record the new {name}; its endpoints are made again on it (their own findings)"
                ),
                Repair::AdoptParent { network: record.id, index: parent.index, mac: parent.mac },
            )),
            Some(_) => {}
        }
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
                let on_it: Vec<_> =
                    networks.iter().filter(|n| n.spec.parent.as_str() == name).collect();
                let link = host.require_link(name, self.host.label())?;
                if on_it.iter().any(|n| n.spec.promisc) {
                    host.set_promisc(link.index, true)?;
                }
                // The networks on it know it by its new index.
                let tx = self.store.write()?;
                for n in on_it {
                    tx.set_parent_link(n.id, link.index, link.mac)?;
                }
                Ok(tx.commit()?)
            }
            Repair::AdoptParent { network, index, mac } => {
                let tx = self.store.write()?;
                tx.set_parent_link(*network, *index, *mac)?;
                Ok(tx.commit()?)
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
            Repair::PutBack(ep) => {
                let ns = NetnsTarget::Path(ep.netns.clone().into()).open()?;
                let mut place = Place::between(&self.host, ns)?;
                let routes = recorded_routes(ep);
                crate::endpoint::put_back(&mut place, &ep.ifname, &ep.addresses, &routes)
                    .map(|_| ())
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
