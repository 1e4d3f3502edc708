//! doctor's findings about an endpoint, from the engine's check of it
//! (`verify::EndpointHealth`): one finding per kind of difference, each
//! with the repair `--fix` makes, if any is safe.

use nicslice_kernel::NetnsTarget;

use super::{Finding, Mode, Repair, finding};
use crate::endpoint::DriftKind;
use crate::verify::EndpointHealth;

/// What to do about an endpoint the kernel holds otherwise than recorded:
/// one finding per kind of difference.
pub(super) fn endpoint_findings(health: EndpointHealth, mode: Mode, out: &mut Vec<Finding>) {
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
