//! Executing a plan, all or nothing: each operation is one engine call that
//! is all or nothing by itself; for each one done its inverse is kept, and
//! when a later one fails the inverses run newest first. A repair of drift
//! (`doctor --fix`'s) puts back what the record already says and has no
//! inverse: undoing it would break what it mended.
//!
//! A process killed between two operations leaves the ones done in place,
//! each whole (an operation killed part-way is ended by the next command,
//! as its intent says); applying the file again finishes the work.

use nicslice_kernel::NetnsTarget;
use nicslice_model::{IfName, NetworkSpec, ValidNetwork};

use super::{Action, Op, Plan, PlanStep};
use crate::error::{EngineError, Result};
use crate::fault::Step;
use crate::{AttachRequest, DetachRequest, EndpointView, Engine, ParentRequest, ShimRequest};

/// The inverse of one operation done.
#[derive(Debug)]
enum Inverse {
    DeleteNamespace(String),
    RemoveNetwork(String),
    ChangeNetwork { name: String, spec: ValidNetwork },
    CreateNetwork { spec: NetworkSpec, parent: ParentRequest },
    RemoveShim(String),
    AddShim(ShimRequest),
    Detach(DetachRequest),
    Attach(Box<AttachRequest>),
}

/// An attach that makes `ep` again as it was recorded: its addresses, MAC,
/// routes, in its namespace (by path). `doctor --fix` makes a missing link
/// again with it too.
pub(crate) fn reattach(ep: &EndpointView) -> Result<AttachRequest> {
    Ok(AttachRequest {
        network: ep.network.clone(),
        netns: NetnsTarget::Path(ep.netns.clone().into()),
        ifname: IfName::new(&ep.ifname)?,
        ips: ep.addresses.iter().map(|a| a.addr()).collect(),
        mac: ep.mac,
        source_macs: ep.source_macs.clone(),
        default_route: !ep.gateways.is_empty(),
        routes: ep.routes.clone(),
        dhcp: Default::default(),
    })
}

impl Engine {
    /// Makes every change of `plan`; on a failure, undoes the changes made
    /// and returns the failure, naming the step. Returns how many steps changed
    /// something.
    pub fn converge(&mut self, plan: &Plan) -> Result<usize> {
        let changes: Vec<&PlanStep> =
            plan.steps.iter().filter(|s| s.action != Action::Keep).collect();
        let mut done = Vec::new();
        for (i, step) in changes.iter().enumerate() {
            let outcome =
                if i + 1 == changes.len() { self.faults.check(Step::Converge) } else { Ok(()) }
                    .and_then(|()| {
                        step.ops
                            .iter()
                            .try_for_each(|op| self.run_op(op).map(|inverse| done.extend(inverse)))
                    });
            if let Err(error) = outcome {
                let error = EngineError::Invalid(format!(
                    "apply stopped at \"{step}\": {error}; the {i} change(s) made before it were undone"
                ));
                return Err(match self.undo_all(done) {
                    Ok(()) => error,
                    Err(undo) => EngineError::UndoFailed { error: Box::new(error), undo },
                });
            }
        }
        Ok(changes.len())
    }

    fn run_op(&mut self, op: &Op) -> Result<Option<Inverse>> {
        Ok(match op {
            Op::CreateNamespace(name) => {
                nicslice_kernel::netns::create_named(name)?;
                Some(Inverse::DeleteNamespace(name.clone()))
            }
            Op::CreateNetwork { spec, parent } => {
                self.create_network(spec.clone(), parent.clone())?;
                Some(Inverse::RemoveNetwork(spec.name.to_string()))
            }
            Op::ChangeNetwork { name, spec } => {
                let before = self.network_record(name)?.validate()?;
                self.change_network(name, spec)?;
                Some(Inverse::ChangeNetwork { name: name.clone(), spec: before })
            }
            Op::RemoveNetwork(name) => {
                let record = self.network_record(name)?;
                let parent = self.parent_request_of(&record.spec)?;
                self.remove_network(name, false)?;
                Some(Inverse::CreateNetwork { spec: record.spec, parent })
            }
            Op::AddShim(req) => {
                self.add_shim(req.clone())?;
                Some(Inverse::RemoveShim(req.network.clone()))
            }
            Op::RemoveShim(network) => {
                let view = self.remove_shim(network)?;
                Some(Inverse::AddShim(ShimRequest {
                    network: network.clone(),
                    name: Some(IfName::new(&view.name)?),
                    ips: view.addresses,
                    route_range: !view.ranges.is_empty(),
                }))
            }
            Op::Attach(req) => {
                let view = self.attach(req.clone())?;
                Some(Inverse::Detach(DetachRequest {
                    network: view.network,
                    netns: NetnsTarget::Path(view.netns.into()),
                    ifname: req.ifname.clone(),
                }))
            }
            Op::Detach(ep) => {
                self.detach(DetachRequest {
                    network: ep.network.clone(),
                    netns: NetnsTarget::Path(ep.netns.clone().into()),
                    ifname: IfName::new(&ep.ifname)?,
                })?;
                // The record of an endpoint whose namespace is gone cannot
                // be made again, nor needs to be: nothing of it was left.
                (ep.state != "stale")
                    .then(|| reattach(ep).map(|r| Inverse::Attach(Box::new(r))))
                    .transpose()?
            }
            Op::Repair(finding) => {
                self.repair_finding(finding)?;
                None
            }
        })
    }

    /// Runs the inverses newest first, past failures; returns them all as one line.
    fn undo_all(&mut self, done: Vec<Inverse>) -> std::result::Result<(), String> {
        let mut errors = Vec::new();
        for inverse in done.into_iter().rev() {
            tracing::debug!(?inverse, "apply: undo");
            let outcome = match &inverse {
                Inverse::DeleteNamespace(name) => {
                    nicslice_kernel::netns::delete_named(name).map_err(EngineError::from)
                }
                Inverse::RemoveNetwork(name) => self.remove_network(name, false).map(drop),
                Inverse::ChangeNetwork { name, spec } => self.change_network(name, spec),
                Inverse::CreateNetwork { spec, parent } => {
                    self.create_network(spec.clone(), parent.clone()).map(drop)
                }
                Inverse::RemoveShim(network) => self.remove_shim(network).map(drop),
                Inverse::AddShim(req) => self.add_shim(req.clone()).map(drop),
                Inverse::Detach(req) => self.detach(req.clone()).map(drop),
                Inverse::Attach(req) => self.attach((**req).clone()).map(drop),
            };
            if let Err(e) = outcome {
                errors.push(format!("{inverse:?}: {e}"));
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
    }

    /// How the parent of a recorded network came to exist, to make it the
    /// same way again: a VLAN or dummy nicslice owns, or the user's link.
    pub(super) fn parent_request_of(&mut self, spec: &NetworkSpec) -> Result<ParentRequest> {
        let owned = self.store.write()?.owned_link(spec.parent.as_str())?;
        Ok(match owned {
            Some(o) if o.kind == "vlan" => match (o.lower.as_deref(), o.vlan_id) {
                (Some(lower), Some(id)) => ParentRequest::Vlan { lower: IfName::new(lower)?, id },
                _ => ParentRequest::Existing,
            },
            Some(o) if o.kind == "dummy" => ParentRequest::Dummy,
            _ => ParentRequest::Existing,
        })
    }
}
