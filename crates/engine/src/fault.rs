//! Fault injection: make a named step fail on purpose, so tests can prove that
//! every step already done is undone. Set by the `NICSLICE_FAIL_AT` variable
//! (a step name, see [`Step`]).
//!
//! Only in test builds: the injection is compiled in under the cargo feature
//! `fault-injection` (which the tests of nicslice and nicslice-cni turn on
//! through their dev-dependencies) and in this crate's own unit tests. A
//! build without it, the release binary users get among them, never reads
//! the variable (a stray one in a container runtime's environment must not
//! make real calls fail), and its [`Faults`] fail nothing: the checks at
//! every step compile to nothing.

use std::fmt;

use crate::EngineError;

/// The steps of every operation that changes the system, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// network create: put the parent into promiscuous mode.
    SetPromisc,
    /// network create / attach / detach / rm: write the state row.
    StoreCommit,
    /// attach: lease the addresses.
    Allocate,
    /// attach: create the link in the target namespace.
    CreateLink,
    /// attach: add an address.
    AddAddress,
    /// attach: bring `lo` and the link up.
    LinkUp,
    /// attach: add the default route or another route.
    AddRoute,
    /// attach: gratuitous ARP / unsolicited NA.
    Announce,
    /// detach / network rm: delete the link.
    DeleteLink,
    /// network rm: restore the parent's promiscuous mode.
    RestorePromisc,
    /// network create: make the VLAN or dummy parent nicslice owns.
    CreateParent,
    /// network rm: delete the VLAN or dummy parent nicslice owns.
    DeleteParent,
    /// apply: before the last change of the plan, every other one made.
    Converge,
    /// dhcp-agent: after the server granted a renewal, before the store
    /// records it. The process dies there ([`Faults::die_at`]), as a
    /// killed agent would.
    RenewRecord,
    /// CNI ADD with hostAccess: make the master's shared shim.
    HostShim,
    /// CNI ADD with hostAccess: route the pod through the master's shim.
    HostRoute,
    /// dhcp-agent: a lost lease granted again and put on the link, before
    /// the store records it whole. The process dies there.
    ReacquireRecord,
}

impl Step {
    pub const ALL: [Step; 17] = [
        Step::SetPromisc,
        Step::StoreCommit,
        Step::Allocate,
        Step::CreateLink,
        Step::AddAddress,
        Step::LinkUp,
        Step::AddRoute,
        Step::Announce,
        Step::DeleteLink,
        Step::RestorePromisc,
        Step::CreateParent,
        Step::DeleteParent,
        Step::Converge,
        Step::RenewRecord,
        Step::HostShim,
        Step::HostRoute,
        Step::ReacquireRecord,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::SetPromisc => "set-promisc",
            Step::StoreCommit => "store-commit",
            Step::Allocate => "allocate",
            Step::CreateLink => "create-link",
            Step::AddAddress => "add-address",
            Step::LinkUp => "link-up",
            Step::AddRoute => "add-route",
            Step::Announce => "announce",
            Step::DeleteLink => "delete-link",
            Step::RestorePromisc => "restore-promisc",
            Step::CreateParent => "create-parent",
            Step::DeleteParent => "delete-parent",
            Step::Converge => "converge",
            Step::RenewRecord => "renew-record",
            Step::HostShim => "host-shim",
            Step::HostRoute => "host-route",
            Step::ReacquireRecord => "reacquire-record",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which step, if any, must fail (none, always, without the feature).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    #[cfg(any(test, feature = "fault-injection"))]
    fail_at: Option<Step>,
}

impl Faults {
    pub const ENV: &'static str = "NICSLICE_FAIL_AT";

    pub fn none() -> Faults {
        Faults::default()
    }

    /// `step` fails; without the feature, nothing does.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn at(step: Step) -> Faults {
        Faults { fail_at: Some(step) }
    }

    /// `step` fails; without the feature, nothing does.
    #[cfg(not(any(test, feature = "fault-injection")))]
    pub fn at(_step: Step) -> Faults {
        Faults::none()
    }

    /// Reads `NICSLICE_FAIL_AT`; an unknown step name is an error, so a typo in
    /// a test cannot pass silently.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn from_env() -> Result<Faults, EngineError> {
        match std::env::var(Self::ENV) {
            Err(_) => Ok(Faults::none()),
            Ok(v) if v.is_empty() => Ok(Faults::none()),
            Ok(v) => {
                Step::ALL.into_iter().find(|s| s.name() == v).map(Faults::at).ok_or_else(|| {
                    EngineError::Invalid(format!(
                        "{}={v} names no step; steps: {}",
                        Self::ENV,
                        Step::ALL.map(Step::name).join(", ")
                    ))
                })
            }
        }
    }

    /// Without the feature the variable is not read: no step fails.
    #[cfg(not(any(test, feature = "fault-injection")))]
    pub fn from_env() -> Result<Faults, EngineError> {
        Ok(Faults::none())
    }

    /// Fails if `step` is the one chosen to fail.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn check(&self, step: Step) -> Result<(), EngineError> {
        if self.fail_at == Some(step) { Err(EngineError::Injected(step)) } else { Ok(()) }
    }

    /// Never fails without the feature.
    #[cfg(not(any(test, feature = "fault-injection")))]
    #[inline(always)]
    pub fn check(&self, _step: Step) -> Result<(), EngineError> {
        Ok(())
    }

    /// Ends the process at once if `step` is the one chosen: no further
    /// step, no destructor, no undo runs, as when the process is killed
    /// there (exit status 137, a SIGKILL's as a shell reports it; exit
    /// rather than a signal, so that no core file is left). For the points
    /// where what matters is what the next run finds.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn die_at(&self, step: Step) {
        if self.fail_at == Some(step) {
            eprintln!("nicslice: injected death at {step}");
            std::process::exit(137);
        }
    }

    /// Never dies without the feature.
    #[cfg(not(any(test, feature = "fault-injection")))]
    #[inline(always)]
    pub fn die_at(&self, _step: Step) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_chosen_step_fails() {
        let faults = Faults::at(Step::AddRoute);
        assert!(matches!(faults.check(Step::AddRoute), Err(EngineError::Injected(Step::AddRoute))));
        assert!(
            Step::ALL.into_iter().filter(|s| *s != Step::AddRoute).all(|s| faults.check(s).is_ok())
        );
        assert!(Step::ALL.into_iter().all(|s| Faults::none().check(s).is_ok()));
    }
}
