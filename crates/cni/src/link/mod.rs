//! nicslice-macvlan and nicslice-ipvlan: the verbs of a link plugin, as CNI
//! protocol around the engine's one realize, teardown and check
//! (`nicslice_engine::endpoint`, which `nicslice attach` runs too). This
//! module turns the configuration and environment into the engine's
//! requests, delegates the addresses to IPAM between making the link and
//! configuring it, converts the outcome into a result of the call's version,
//! and maps errors to CNI codes. It holds no netlink, address or route code.

mod add;
mod check;
mod del;
mod probe;

use nicslice_engine::endpoint::{ChildSpec, ParentRef, Place};
use nicslice_engine::undo::UndoLog;
use nicslice_kernel::{KernelError, Netns, NetnsTarget};
use nicslice_model::{IpvlanFlag, LinkMode, MacvlanFlags};

use crate::error::{CniError, Code, Result};
use crate::linkconf::{KindConf, LinkConf};

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

/// The parent's name: the configured master (with its VLAN) or the
/// interface of the default route where the parent lives.
fn parent_name(conf: &LinkConf, place: &mut Place) -> Result<String> {
    let master = match &conf.master {
        Some(m) => m.clone(),
        None => place.default_route_interface()?,
    };
    Ok(conf.parent_name(&master))
}

/// The configured link's parent, checked against its MTU and MAC.
fn resolve_parent(conf: &LinkConf, place: &mut Place) -> Result<ParentRef> {
    let name = parent_name(conf, place)?;
    Ok(place.resolve_parent(&name, conf.mtu, conf.mac)?)
}

/// The child the configuration asks for, in the engine's terms.
fn child_spec(conf: &LinkConf) -> ChildSpec {
    let (mode, flags, ipvlan_flag, bcqueuelen, bclim, source_macs) = match &conf.kind {
        KindConf::Macvlan { mode, flags, bcqueuelen, bclim, source_macs } => (
            LinkMode::Macvlan(*mode),
            *flags,
            IpvlanFlag::default(),
            *bcqueuelen,
            *bclim,
            source_macs.clone(),
        ),
        KindConf::Ipvlan { mode, flag } => {
            (LinkMode::Ipvlan(*mode), MacvlanFlags::default(), *flag, None, None, Vec::new())
        }
    };
    ChildSpec {
        driver: conf.driver,
        mode,
        flags,
        ipvlan_flag,
        mtu: conf.mtu,
        mac: conf.mac,
        bcqueuelen,
        bclim,
        source_macs,
    }
}

/// Undoes `undo` and joins the undo's own errors to `e`.
fn undo_all(place: &mut Place, undo: UndoLog, e: CniError) -> CniError {
    match place.rollback(undo) {
        Ok(()) => e,
        Err(undo) => CniError { msg: format!("{}; undoing also failed: {undo}", e.msg), ..e },
    }
}
