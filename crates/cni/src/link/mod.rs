//! nicslice-macvlan and nicslice-ipvlan: the verbs of a link plugin. ADD
//! checks everything, asks IPAM, then `plumb::realize` makes the link with
//! the engine's undo log, so a failure at any step leaves nothing
//! behind (no link, address, route or lease). DEL succeeds when the
//! namespace, the link or the master is already gone.

mod add;
mod check;
mod del;
mod plumb;

use nicslice_kernel::{KernelError, Netns, NetnsTarget, RouteSocket};

use crate::error::{CniError, Code, Result};
use crate::linkconf::LinkConf;

pub use add::add;
pub use check::check;
pub use del::{del, gc, status};

/// Opens the container's namespace (`CNI_NETNS`, a path). A path that does
/// not exist is code 3 (the container is gone: DEL then has nothing to do);
/// one that exists but is no network namespace, or is the namespace the
/// plugin runs in (the host's: a link, address and default route added
/// there would change the host, and DEL would delete the host's own
/// interface of that name), is code 4, an invalid `CNI_NETNS`.
fn open_netns(path: &str) -> Result<Netns> {
    let netns = NetnsTarget::Path(path.into()).open().map_err(|e| match e {
        KernelError::NoSuchNetns(_) => CniError::new(
            Code::UnknownContainer,
            format!("network namespace {path} does not exist"),
        ),
        other => CniError::new(
            Code::InvalidEnvironment,
            format!("CNI_NETNS: {}", crate::error::chain(&other)),
        ),
    })?;
    if netns.is_current()? {
        return Err(CniError::new(
            Code::InvalidEnvironment,
            format!(
                "CNI_NETNS {path} is the namespace the plugin runs in (the host's), not a \
                 container's; nothing is made or deleted there"
            ),
        ));
    }
    Ok(netns)
}

/// The interface of the first default route in the socket's namespace, as the
/// reference plugins choose a master when none is configured.
fn default_route_interface(sock: &mut RouteSocket) -> Result<String> {
    let routes = sock.routes()?;
    for route in routes.iter().filter(|r| r.is_default()) {
        if let Some(link) = route.oif.map(|i| sock.link_by_index(i)).transpose()?.flatten() {
            return Ok(link.name);
        }
    }
    Err(CniError::config(
        "no master given and no default route to take it from; set \"master\" in the configuration",
    ))
}

/// The parent's name: the configured master (with its VLAN) or the interface
/// of the default route in `sock`'s namespace.
fn parent_name(conf: &LinkConf, sock: &mut RouteSocket) -> Result<String> {
    let master = match &conf.master {
        Some(m) => m.clone(),
        None => default_route_interface(sock)?,
    };
    Ok(conf.parent_name(&master))
}
