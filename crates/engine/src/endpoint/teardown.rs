//! Removing an endpoint's link, with the rules both front ends share: a
//! namespace or link already gone is the goal reached (a container that
//! exited, a parent deleted with its children), and a link of that name
//! that is not the one nicslice made is never deleted.

use nicslice_kernel::{KernelError, Netns, RouteSocket};
use nicslice_model::MacAddr;

use crate::error::Result;
use crate::fault::{Faults, Step};

/// What makes a link the endpoint nicslice made.
#[derive(Debug, Clone, Copy)]
pub struct Ours<'a> {
    /// Link kinds it may have ("macvlan", "macvtap"...).
    pub kinds: &'a [&'a str],
    /// Its MAC, where it was recorded.
    pub mac: Option<MacAddr>,
}

/// How a removal ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Teardown {
    Deleted,
    /// The namespace or the link was gone already.
    AlreadyGone,
    /// A link of that name exists but is not ours: left alone.
    NotOurs {
        kind: Option<String>,
        mac: Option<MacAddr>,
    },
}

impl Teardown {
    /// The sentence a front end prints for [`Teardown::NotOurs`].
    pub fn not_ours_reason(&self, ifname: &str, netns: &str) -> Option<String> {
        let Teardown::NotOurs { kind, mac } = self else { return None };
        Some(format!(
            "interface {ifname} in {netns} is not the endpoint nicslice made (it is a {} link with MAC {}); left it alone",
            kind.as_deref().unwrap_or("physical"),
            mac.map_or("none".to_string(), |m| m.to_string())
        ))
    }
}

/// The addresses on `ifname` in `netns` (none when either is gone), read
/// before a teardown that must undo something per address.
pub fn child_addresses(netns: Option<&Netns>, ifname: &str) -> Result<Vec<std::net::IpAddr>> {
    let Some(ns) = netns else { return Ok(Vec::new()) };
    let mut target = RouteSocket::open_in(ns)?;
    let Some(index) = target.index_of(ifname)? else { return Ok(Vec::new()) };
    Ok(target.addresses(Some(index))?.into_iter().map(|(_, a)| a.addr()).collect())
}

/// Deletes `ifname` in `netns` if it is [`Ours`]. `None` for the namespace
/// means it is gone (or was never given, as a CNI DEL may come without one).
pub fn delete_child(
    netns: Option<&Netns>,
    ifname: &str,
    ours: Ours<'_>,
    faults: Faults,
) -> Result<Teardown> {
    faults.check(Step::DeleteLink)?;
    let Some(ns) = netns else { return Ok(Teardown::AlreadyGone) };
    delete_child_on(&mut RouteSocket::open_in(ns)?, ifname, ours, Faults::none())
}

/// [`delete_child`] on a socket already open in the endpoint's namespace.
pub fn delete_child_on(
    target: &mut RouteSocket,
    ifname: &str,
    ours: Ours<'_>,
    faults: Faults,
) -> Result<Teardown> {
    faults.check(Step::DeleteLink)?;
    let Some(link) = target.link_by_name(ifname)? else { return Ok(Teardown::AlreadyGone) };
    let kind_ok = link.kind.as_deref().is_some_and(|k| ours.kinds.contains(&k));
    let mac_ok = ours.mac.is_none() || link.mac == ours.mac;
    if !kind_ok || !mac_ok {
        return Ok(Teardown::NotOurs { kind: link.kind, mac: link.mac });
    }
    tracing::debug!(link = %ifname, "delete link");
    match target.delete_link(link.index) {
        Ok(()) => Ok(Teardown::Deleted),
        Err(KernelError::Netlink { errno, .. }) if errno == libc::ENODEV => {
            Ok(Teardown::AlreadyGone)
        }
        Err(e) => Err(e.into()),
    }
}
