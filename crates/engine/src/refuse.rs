//! Refusals with advice, one wording for both front ends: what makes an
//! interface unusable as a parent (checked up front by `network create`, and
//! after the kernel's refusal by attach and the CNI ADD, which pay for no
//! check on their fast path), and the kernel's refusals of a new link,
//! turned from an errno ("Device or resource busy") into what to do.

use nicslice_kernel::placement::ChildLink;
use nicslice_kernel::{KernelError, Link, RouteSocket};
use nicslice_model::Driver;

use crate::EngineError;
use crate::error::Result;

/// Why `parent` cannot carry `driver` children, if it cannot: the loopback
/// device, a non-Ethernet device, a bridge or bond port, or the parent of
/// the other family's children (macvlan and ipvlan cannot share one).
pub(crate) fn parent_refusal(
    sock: &mut RouteSocket,
    parent: &Link,
    driver: Driver,
) -> Result<Option<String>> {
    let name = &parent.name;
    if parent.loopback {
        return Ok(Some(format!(
            "parent {name} is the loopback device; choose an Ethernet interface"
        )));
    }
    if !parent.ethernet {
        return Ok(Some(format!(
            "parent {name} is not an Ethernet device; {driver} needs an Ethernet parent"
        )));
    }
    if let Some(master) = parent.master_index {
        let port_of = sock.link_by_index(master)?.map_or(master.to_string(), |l| l.name);
        return Ok(Some(format!(
            "parent {name} is a port of {port_of}; a bridge or bond port cannot also be a {driver} parent. Use {port_of} itself or another interface"
        )));
    }
    // The other family's children on this parent, in its namespace.
    let other: &[&str] =
        if driver.is_ipvlan() { &["macvlan", "macvtap"] } else { &["ipvlan", "ipvtap"] };
    let other_child = sock.links()?.into_iter().find(|l| {
        l.parent_index == Some(parent.index)
            && l.link_netnsid.is_none()
            && l.kind.as_deref().is_some_and(|k| other.contains(&k))
    });
    Ok(other_child.map(|child| {
        format!(
            "parent {name} already carries {} child {}; macvlan and ipvlan cannot share a parent",
            child.kind.as_deref().unwrap_or("?"),
            child.name
        )
    }))
}

/// Explains the kernel's refusal to create `link` on the parent named
/// `parent` (index `parent_index` in `host`'s namespace): first what is
/// wrong with the parent, if anything ([`parent_refusal`]), else what the
/// errno means here.
pub fn explain_create(
    err: KernelError,
    host: &mut RouteSocket,
    (parent, parent_index): (&str, u32),
    link: &ChildLink,
    netns: &str,
) -> EngineError {
    let driver = match link {
        ChildLink::Macvlan(r) => r.driver,
        ChildLink::Ipvlan(r) => {
            if r.tap {
                Driver::Ipvtap
            } else {
                Driver::Ipvlan
            }
        }
    };
    if matches!(err.errno(), Some(libc::EBUSY | libc::EINVAL))
        && let Ok(Some(whole)) = host.link_by_index(parent_index)
        && let Ok(Some(reason)) = parent_refusal(host, &whole, driver)
    {
        return EngineError::Invalid(reason);
    }
    let (ifname, p) = (link.name(), parent);
    let advice = match err.errno() {
        Some(libc::EBUSY) => format!(
            "parent {p} is busy: a bridge port, a bond slave or the parent of the other family (macvlan and ipvlan cannot share one)"
        ),
        Some(libc::EEXIST) => {
            format!("an interface named {ifname} already exists in {netns}; choose another name")
        }
        Some(libc::EADDRINUSE) => {
            "that MAC address is already used by the parent or a sibling; choose another MAC"
                .to_string()
        }
        Some(libc::EINVAL) => format!(
            "the kernel refused the link; on a passthru parent only one child may exist, and {p} may have one already"
        ),
        Some(libc::EOPNOTSUPP) => {
            format!("this kernel has no {driver} support (see `nicslice check`)")
        }
        _ => return err.into(),
    };
    EngineError::Refused(format!("{err}: {advice}"))
}
