//! The plan: the file against the record and the kernel, one step per
//! network, shim, namespace and endpoint. Reads only.
//!
//! - A network absent from the record is created; one recorded with other
//!   settings is changed in place where no link carries the setting
//!   (`change`), and otherwise refused with the setting named, unless
//!   `prune` allows making it again (its endpoints with it). A kept network
//!   gets the repairs `doctor --fix` would make to its parent and shim.
//! - A shim absent is made; one with another name or addresses is made again.
//! - An endpoint (planned in `endpoints.rs`) absent is attached (its
//!   namespace made first if the file says `create = true`); one whose
//!   link drifted, whose namespace is gone or whose settings differ from
//!   the file is detached and attached again, keeping its recorded
//!   addresses (and MAC, while its namespace lives) where the file names
//!   none.
//! - What the record holds and the file does not list is kept, or with
//!   `prune` removed. Only recorded things are ever removed: the record
//!   holds nothing nicslice did not make.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use nicslice_kernel::NetnsTarget;
use nicslice_model::desired::{DesiredEndpoint, DesiredNetwork, ParentChoice};
use nicslice_model::{IfName, NetworkSpec, SubnetSpec, ValidNetwork};
use nicslice_store::{NetworkRecord, StoreRead};

use super::change::in_place;
use super::endpoints::key_of;
use super::{Action, Desired, Op, Phase, Plan, PlanStep};
use crate::error::{EngineError, Result};
use crate::verify::EndpointHealth;
use crate::{EndpointView, Engine, ParentRequest, ShimRequest, internal_parent_name, vlan_name};

pub(super) fn step(
    action: Action,
    kind: &'static str,
    subject: impl Into<String>,
    reason: impl Into<String>,
    ops: Vec<Op>,
    phase: Phase,
) -> PlanStep {
    PlanStep { action, kind, subject: subject.into(), reason: reason.into(), ops, phase }
}

pub(super) const KEEP_UNLISTED: &str = "not in the file; --prune removes it";

/// The parent's name and how it comes to exist, as `network create` decides.
fn parent_of(d: &DesiredNetwork) -> Result<(IfName, ParentRequest)> {
    Ok(match &d.parent {
        ParentChoice::Existing(p) => (p.clone(), ParentRequest::Existing),
        ParentChoice::Vlan { lower, id } => {
            (vlan_name(lower, *id)?, ParentRequest::Vlan { lower: lower.clone(), id: *id })
        }
        ParentChoice::Dummy(Some(p)) => (p.clone(), ParentRequest::Dummy),
        ParentChoice::Dummy(None) => (internal_parent_name(d.name.as_str()), ParentRequest::Dummy),
    })
}

fn subnets_text(subnets: &[SubnetSpec]) -> String {
    let one = |s: &SubnetSpec| {
        let mut t = s.subnet.to_string();
        if let Some(g) = s.gateway {
            t.push_str(&format!(" gateway {g}"));
        }
        if let Some(r) = s.ip_range {
            t.push_str(&format!(" range {r}"));
        }
        for (name, ip) in &s.aux_addresses {
            t.push_str(&format!(" {name}={ip}"));
        }
        t
    };
    if subnets.is_empty() {
        "none".into()
    } else {
        subnets.iter().map(one).collect::<Vec<_>>().join(", ")
    }
}

pub(super) fn shown<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("unset".into(), |v| v.to_string())
}

/// Each setting that differs between the record's spec and the file's, as
/// "SETTING (record: X, file: Y)".
fn differences(rec: &NetworkSpec, file: &NetworkSpec) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |what: &str, r: String, f: String| {
        if r != f {
            out.push(format!("{what} (record: {r}, file: {f})"));
        }
    };
    cmp("driver", rec.driver.to_string(), file.driver.to_string());
    cmp("parent", rec.parent.to_string(), file.parent.to_string());
    cmp("mode", rec.mode.to_string(), file.mode.to_string());
    cmp("flags", rec.flags.names().join(","), file.flags.names().join(","));
    cmp("ipvlan flag", rec.ipvlan_flag.as_str().into(), file.ipvlan_flag.as_str().into());
    cmp("mtu", shown(rec.mtu), shown(file.mtu));
    cmp("bcqueuelen", shown(rec.bcqueuelen), shown(file.bcqueuelen));
    cmp("bclim", shown(rec.bclim), shown(file.bclim));
    cmp("subnets", subnets_text(&rec.subnets), subnets_text(&file.subnets));
    cmp("ipam", rec.ipam.to_string(), file.ipam.to_string());
    cmp("promisc", rec.promisc.to_string(), file.promisc.to_string());
    let probe = |s: &NetworkSpec| {
        s.probe
            .map_or("off".into(), |p| format!("{} ms, cooldown {} s", p.timeout_ms, p.cooldown_s))
    };
    cmp("probe_conflicts", probe(rec), probe(file));
    cmp("etcd", fleet_text(rec), fleet_text(file));
    out
}

/// A fleet network's pool settings as one value: the cluster, the blocks,
/// the lease and the TLS files.
fn fleet_text(s: &NetworkSpec) -> String {
    let Some(f) = &s.fleet else { return "unset".into() };
    let tls: Vec<String> = f.tls.files().map(|(o, p)| format!("{o} {}", p.display())).collect();
    let mut text = format!(
        "{}, blocks of {}, ttl {} s, cooldown {} s",
        f.endpoints.join(","),
        f.block_size,
        f.ttl_s,
        f.cooldown_s
    );
    if !tls.is_empty() {
        text.push_str(&format!(", {}", tls.join(" ")));
    }
    text
}

/// What the plan is being built from, and what it has decided so far.
pub(super) struct Planning {
    pub(super) prune: bool,
    pub(super) steps: Vec<PlanStep>,
    /// Networks whose record is gone by the time shims and endpoints are
    /// made: new ones, and those made again.
    pub(super) fresh: BTreeSet<String>,
    /// Endpoints (by key) the plan removes or makes again.
    pub(super) claimed: BTreeSet<(String, String)>,
    /// Namespaces the plan makes.
    pub(super) namespaces: BTreeSet<String>,
}

impl Planning {
    /// The removal of recorded endpoint `ep` for `why`.
    pub(super) fn remove_endpoint(&mut self, ep: &EndpointView, why: &str) {
        self.claimed.insert(key_of(&ep.netns, &ep.ifname));
        self.steps.push(step(
            Action::Remove,
            "endpoint",
            format!("{} in {} on {}", ep.ifname, ep.netns, ep.network),
            why,
            vec![Op::Detach(ep.clone())],
            Phase::RemoveEndpoint,
        ));
    }

    /// The removal of network `record`, its endpoints and shim first.
    fn remove_network(
        &mut self,
        record: &NetworkRecord,
        shim: Option<String>,
        endpoints: &[EndpointHealth],
        why: &str,
    ) {
        let name = record.spec.name.to_string();
        for h in endpoints.iter().filter(|h| h.endpoint.network == name) {
            self.remove_endpoint(&h.endpoint, &format!("network {name} goes"));
        }
        if let Some(shim) = shim {
            self.steps.push(step(
                Action::Remove,
                "shim",
                format!("{shim} of {name}"),
                format!("network {name} goes"),
                vec![Op::RemoveShim(name.clone())],
                Phase::RemoveShim,
            ));
        }
        self.steps.push(step(
            Action::Remove,
            "network",
            &name,
            why,
            vec![Op::RemoveNetwork(name.clone())],
            Phase::RemoveNetwork,
        ));
    }

    /// Makes sure the namespace of `d` will exist: there, made by the plan,
    /// or an error saying how to get it.
    pub(super) fn namespace_for(&mut self, d: &DesiredEndpoint) -> Result<bool> {
        if NetnsTarget::parse_user(&d.netns).open().is_ok() {
            return Ok(true);
        }
        if !d.create {
            return Err(EngineError::NotFound(format!(
                "endpoint {} in {}: namespace {} does not exist; add `create = true` to the file to have nicslice make it, or `ip netns add {}`",
                d.ifname, d.netns, d.netns, d.netns
            )));
        }
        if self.namespaces.insert(d.netns.clone()) {
            self.steps.push(step(
                Action::Create,
                "namespace",
                &d.netns,
                "missing; the file says create = true",
                vec![Op::CreateNamespace(d.netns.clone())],
                Phase::Namespace,
            ));
        }
        Ok(false)
    }
}

impl Engine {
    /// The plan that makes the record and the kernel what `desired` says;
    /// with `prune`, what it does not list goes. Refuses (before anything
    /// changes) what cannot be done safely.
    pub fn plan(&mut self, desired: &Desired, prune: bool) -> Result<Plan> {
        let records: BTreeMap<String, NetworkRecord> = self
            .store
            .read()?
            .list_networks()?
            .into_iter()
            .map(|r| (r.spec.name.to_string(), r))
            .collect();
        let endpoints = self.check_endpoints(None)?;
        let mut p = Planning {
            prune,
            steps: Vec::new(),
            fresh: BTreeSet::new(),
            claimed: BTreeSet::new(),
            namespaces: BTreeSet::new(),
        };
        let mut valid: BTreeMap<String, ValidNetwork> = BTreeMap::new();
        let mut kept: Vec<&NetworkRecord> = Vec::new();
        for d in &desired.networks {
            let name = d.name.to_string();
            let (parent_name, parent) = parent_of(d)?;
            let file = d.spec(parent_name)?;
            valid.insert(name.clone(), file.clone());
            let create = vec![Op::CreateNetwork { spec: file.spec().clone(), parent }];
            let Some(record) = records.get(&name) else {
                p.fresh.insert(name.clone());
                let why =
                    format!("not in the record ({} {} on {})", file.driver, file.mode, file.parent);
                p.steps.push(step(Action::Create, "network", &name, why, create, Phase::Network));
                continue;
            };
            let recorded = record.validate()?;
            let differ = differences(recorded.spec(), file.spec());
            if differ.is_empty() {
                p.steps.push(step(
                    Action::Keep,
                    "network",
                    &name,
                    "as the file says",
                    vec![],
                    Phase::Network,
                ));
                kept.push(record);
            } else if in_place(recorded.spec(), file.spec()) {
                let op = Op::ChangeNetwork { name: name.clone(), spec: file.clone() };
                let why = format!("{}, changed in place", differ.join(", "));
                p.steps.push(step(Action::Modify, "network", &name, why, vec![op], Phase::Network));
                kept.push(record);
            } else if prune {
                let shim = self.store.read()?.shim(record.id)?.map(|s| s.name);
                let why = format!("{}: made again (--prune)", differ[0]);
                p.remove_network(record, shim, &endpoints, &why);
                p.fresh.insert(name.clone());
                p.steps.push(step(
                    Action::Create,
                    "network",
                    &name,
                    "made again with the file's settings",
                    create,
                    Phase::Network,
                ));
            } else {
                return Err(EngineError::Invalid(format!(
                    "network {name}: {} differs, which cannot change without making the network and its endpoints again; rerun with --prune to make it again, or `nicslice network rm {name} --force` first",
                    differ
                        .iter()
                        .find(|d| !d.starts_with("promisc") && !d.starts_with("probe"))
                        .unwrap_or(&differ[0])
                )));
            }
        }
        for (name, record) in &records {
            if valid.contains_key(name) {
                continue;
            }
            if prune {
                let shim = self.store.read()?.shim(record.id)?.map(|s| s.name);
                p.remove_network(record, shim, &endpoints, "not in the file");
            } else {
                p.steps.push(step(
                    Action::Keep,
                    "network",
                    name,
                    KEEP_UNLISTED,
                    vec![],
                    Phase::Network,
                ));
            }
        }
        self.plan_shims(desired, &records, &mut p)?;
        for record in kept {
            self.plan_drift(record, &mut p)?;
        }
        super::endpoints::plan_endpoints(desired, &endpoints, &valid, &mut p)?;
        p.steps.sort_by_key(|s| s.phase);
        Ok(Plan { steps: p.steps })
    }

    fn plan_shims(
        &mut self,
        desired: &Desired,
        records: &BTreeMap<String, NetworkRecord>,
        p: &mut Planning,
    ) -> Result<()> {
        for d in &desired.networks {
            let name = d.name.to_string();
            let want = desired.shims.iter().find(|s| s.network == d.name);
            let request = |keep_name: Option<&str>| -> Result<ShimRequest> {
                let w = want.map_or((None, Vec::new(), false), |w| {
                    (w.name.clone(), w.ips.clone(), w.route_range)
                });
                let name_kept = keep_name.map(IfName::new).transpose()?;
                Ok(ShimRequest {
                    network: name.clone(),
                    name: w.0.or(name_kept),
                    ips: w.1,
                    route_range: w.2,
                })
            };
            let have = match records.get(&name) {
                Some(r) if !p.fresh.contains(&name) => self.store.read()?.shim(r.id)?,
                _ => None,
            };
            let (action, why, ops) = match (want, have) {
                (None, None) => continue,
                (Some(_), None) => (
                    Action::Create,
                    "not in the record".to_string(),
                    vec![Op::AddShim(request(None)?)],
                ),
                (Some(w), Some(h)) => {
                    let named = w.name.as_ref().is_some_and(|n| n.as_str() != h.name);
                    let ips: BTreeSet<IpAddr> = w.ips.iter().copied().collect();
                    let had: BTreeSet<IpAddr> = h.addresses.iter().copied().collect();
                    let had_ranges = !h.ranges.is_empty();
                    let ranged = w.route_range != had_ranges;
                    if named || ranged || (!ips.is_empty() && ips != had) {
                        let routed = if h.ranges.is_empty() {
                            "a route per endpoint".to_string()
                        } else {
                            format!("ranges {:?} routed", h.ranges)
                        };
                        let why = format!(
                            "recorded as {} with {had:?} and {routed}: made again as the file says",
                            h.name
                        );
                        (
                            Action::Modify,
                            why,
                            vec![
                                Op::RemoveShim(name.clone()),
                                Op::AddShim(request(Some(&h.name))?),
                            ],
                        )
                    } else {
                        (Action::Keep, "as the file says".to_string(), vec![])
                    }
                }
                (None, Some(_)) if p.prune => (
                    Action::Remove,
                    "not in the file".to_string(),
                    vec![Op::RemoveShim(name.clone())],
                ),
                (None, Some(_)) => (Action::Keep, KEEP_UNLISTED.to_string(), vec![]),
            };
            p.steps.push(step(action, "shim", format!("of {name}"), why, ops, Phase::Shim));
        }
        Ok(())
    }

    /// The repairs `doctor --fix` would make to a kept network's parent and
    /// shim (the same findings); what it cannot repair is kept and said.
    fn plan_drift(&mut self, record: &NetworkRecord, p: &mut Planning) -> Result<()> {
        let name = record.spec.name.to_string();
        let shim_changes = p.steps.iter().any(|s| {
            s.kind == "shim" && s.subject == format!("of {name}") && s.action != Action::Keep
        });
        for f in self.network_drift(record)? {
            let shim = f.is_about_shim();
            if shim && shim_changes {
                continue;
            }
            let (kind, phase) =
                if shim { ("shim", Phase::Shim) } else { ("network", Phase::Network) };
            let subject = if shim { format!("of {name}") } else { name.clone() };
            let why = format!("{}: {}; {}", f.subject, f.problem, f.fix);
            if shim {
                // The repair replaces the shim's "keep".
                p.steps.retain(|s| {
                    !(s.kind == "shim" && s.subject == subject && s.action == Action::Keep)
                });
            }
            p.steps.push(if f.repairable {
                step(Action::Modify, kind, subject, why, vec![Op::Repair(f)], phase)
            } else {
                step(Action::Keep, kind, subject, format!("left to you: {why}"), vec![], phase)
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use nicslice_model::{Driver, MacvlanMode};

    use super::*;

    #[test]
    fn differences_name_the_setting_and_both_values() {
        let rec = NetworkSpec::new(
            "lan".parse().unwrap(),
            Driver::Macvlan,
            "eth0".parse().unwrap(),
            MacvlanMode::Bridge,
        );
        let file = NetworkSpec { mtu: Some(1400), ..rec.clone() };
        assert_eq!(differences(&rec, &file), vec!["mtu (record: unset, file: 1400)".to_string()]);
        assert!(differences(&rec, &rec).is_empty());
    }
}
