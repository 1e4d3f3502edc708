//! Convergence to a declared state (`nicslice apply FILE`): the plan, one
//! step per network, shim, namespace or endpoint (create, modify, remove or
//! keep, each with its reason), and its execution, all or nothing.
//!
//! The plan is the difference between the file ([`Desired`], checked by the
//! model), the record and the kernel. What the record holds is compared with
//! the kernel through the same code `doctor` and `restore` use: a network's
//! parent and shim by `network_drift` (doctor.rs), endpoints by
//! `check_endpoints` (verify.rs); so the three cannot disagree about what
//! drifted. Planning only reads: a plan of nothing but "keep" steps is made
//! without a single netlink request that changes anything.
//!
//! Every change is one engine operation that is itself all or nothing
//! (network create, shim add, attach, their removals, each with its own
//! undo log and intents). Executing a plan keeps the inverse of each
//! operation done; when one fails, those inverses run newest first, so a
//! failed apply leaves the record and the kernel as they were.

mod change;
mod diff;
mod endpoints;
mod run;

use std::fmt;

use nicslice_model::{NetworkSpec, ValidNetwork};
use serde::Serialize;

use crate::doctor::Finding;
use crate::{AttachRequest, EndpointView, ParentRequest, ShimRequest};

pub use nicslice_model::desired::Desired;
pub(crate) use run::reattach;

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Modify,
    Remove,
    Keep,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Create => "create",
            Action::Modify => "modify",
            Action::Remove => "remove",
            Action::Keep => "keep",
        })
    }
}

/// One line of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanStep {
    pub action: Action,
    /// "network", "shim", "namespace" or "endpoint".
    pub kind: &'static str,
    /// Which one: a network's name, "eth0 in web on lan" for an endpoint.
    pub subject: String,
    pub reason: String,
    /// The engine operations that make the step, in order.
    #[serde(skip)]
    ops: Vec<Op>,
    /// Where the step runs in the plan (removals first, endpoints last).
    #[serde(skip)]
    phase: Phase,
}

impl fmt::Display for PlanStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}: {}", self.action, self.kind, self.subject, self.reason)
    }
}

/// The whole plan, in the order it runs.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub steps: Vec<PlanStep>,
}

impl Plan {
    /// How many steps change something.
    pub fn changes(&self) -> usize {
        self.steps.iter().filter(|s| s.action != Action::Keep).count()
    }
}

/// The order steps run in: what goes first (freeing names and addresses
/// the new things may need), then what the rest stand on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    RemoveEndpoint,
    RemoveShim,
    RemoveNetwork,
    Namespace,
    Network,
    Shim,
    Endpoint,
}

/// One engine operation of a step.
#[derive(Debug, Clone)]
enum Op {
    /// `ip netns add NAME`.
    CreateNamespace(String),
    CreateNetwork {
        spec: NetworkSpec,
        parent: ParentRequest,
    },
    /// A change of settings that needs no new link (see `change`).
    ChangeNetwork {
        name: String,
        spec: ValidNetwork,
    },
    RemoveNetwork(String),
    AddShim(ShimRequest),
    RemoveShim(String),
    Attach(AttachRequest),
    /// A detach of a recorded endpoint, by its recorded namespace path.
    Detach(EndpointView),
    /// What `doctor --fix` does for this finding.
    Repair(Finding),
}
