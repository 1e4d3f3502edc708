//! DEL, STATUS and GC for the link plugins. DEL removes the link through the
//! engine's teardown (which succeeds when the namespace or the link is
//! already gone and leaves a link that is not the plugin's kind alone),
//! then releases the lease; both run, and both errors are reported. The
//! lease was once released on a second thread while the kernel waited out
//! the link's unregistering: measured, the thread saved nothing (0.15 ms of
//! IPAM against its own start and the other vCPU's wake-up).

use nicslice_engine::Faults;
use nicslice_engine::endpoint::{self, Ours, Place};
use nicslice_engine::shim;
use nicslice_kernel::Netns;

use super::{open_netns, parent_name};
use crate::conf::NetConf;
use crate::delegate;
use crate::env::{CallEnv, Verb};
use crate::error::{CniError, Code, Result};
use crate::linkconf::{Family, LinkConf};
use crate::result::CniResult;

fn kinds(family: Family) -> &'static [&'static str] {
    match family {
        Family::Macvlan => &["macvlan", "macvtap"],
        Family::Ipvlan => &["ipvlan", "ipvtap"],
    }
}

/// Deletes `ifname` in the namespace at `netns_path` if it is ours; a
/// namespace that is not given or gone is the goal reached. With
/// `hostAccess`, the pod's routes through the master's shim go too (the
/// addresses from `prevResult`, else from the link before it goes).
fn delete_link(family: Family, net: &NetConf, env: &CallEnv, faults: Faults) -> Result<()> {
    let (netns_path, ifname) = (env.netns.as_str(), env.ifname.as_str());
    let ns = match netns_path {
        "" => None,
        path => match open_netns(path) {
            Ok(ns) => Some(ns),
            Err(e) if e.code == Code::UnknownContainer => None,
            Err(e) => return Err(e),
        },
    };
    let host_access = host_access(family, net, env);
    let routed = match (&host_access, &net.prev_result) {
        (None, _) => Vec::new(),
        (Some(_), Some(prev)) => pod_addresses(prev, env),
        (Some(_), None) => endpoint::child_addresses(ns.as_ref(), ifname)?,
    };
    let ours = Ours { kinds: kinds(family), mac: None };
    let removed = endpoint::delete_child(ns.as_ref(), ifname, ours, faults)?;
    if let Some(reason) = removed.not_ours_reason(ifname, netns_path) {
        eprintln!("nicslice: {reason}");
    }
    if let Some(master) = host_access {
        shim::shared::leave(master.as_deref(), &routed)?;
    }
    Ok(())
}

/// With `hostAccess`, the master to find the shim by (`None`: the interface
/// of the default route).
/// A configuration too broken to parse has made no shim: DEL stays lenient.
fn host_access(family: Family, net: &NetConf, env: &CallEnv) -> Option<Option<String>> {
    let conf = LinkConf::parse(family, net, env).ok()?;
    conf.host_access.then(|| conf.master.as_deref().map(|m| conf.parent_name(m)))
}

/// The addresses `prev` gave the interface this DEL removes.
fn pod_addresses(prev: &CniResult, env: &CallEnv) -> Vec<std::net::IpAddr> {
    let ours = prev.interfaces.iter().position(|i| i.name == env.ifname && i.sandbox == env.netns);
    prev.ips
        .iter()
        .filter(|i| i.interface.is_none() || i.interface == ours)
        .map(|i| i.address.addr())
        .collect()
}

/// DEL: both halves run, the link first, and both errors are reported.
pub fn del(family: Family, net: &NetConf, env: &CallEnv, faults: Faults) -> Result<()> {
    let ipam = net.ipam_type().map(|t| delegate::find(t, env)).transpose()?;
    let link = delete_link(family, net, env, faults);
    let lease = ipam.as_ref().map(|ipam| delegate::run(ipam, Verb::Del, net, env));
    match (link, lease.transpose()) {
        (Ok(()), Ok(_)) => Ok(()),
        (Err(e), Ok(_)) | (Ok(()), Err(e)) => Err(e),
        (Err(a), Err(b)) => {
            Err(CniError { msg: format!("{}; and IPAM DEL: {}", a.msg, b.msg), ..a })
        }
    }
}

/// STATUS: the master exists here, with `hostAccess` its shim if pods were
/// routed through it, and IPAM is ready.
pub fn status(family: Family, net: &NetConf, env: &CallEnv) -> Result<()> {
    let unavailable = |e: CniError| CniError::new(Code::NotAvailable, e.msg);
    let conf = LinkConf::parse(family, net, env)?;
    if !conf.link_in_container {
        let here = Netns::current().map_err(|e| unavailable(e.into()))?;
        let mut place = Place::here(here, false).map_err(|e| unavailable(e.into()))?;
        let parent = parent_name(&conf, &mut place).map_err(unavailable)?;
        let parent =
            place.resolve_parent(&parent, None, None).map_err(|e| unavailable(e.into()))?;
        if conf.host_access {
            // The pods are there but the host lost its way to them: ADD
            // still works (and makes the shim again), existing pods are cut
            // off from the host, which is code 51's meaning.
            let missing = shim::shared::missing(&mut place.host, parent.index, &parent.name)
                .map_err(|e| unavailable(e.into()))?;
            if let Some(why) = missing {
                return Err(CniError::new(Code::NotAvailableLimited, why));
            }
        }
    }
    if let Some(t) = net.ipam_type() {
        let ipam = delegate::find(t, env).map_err(unavailable)?;
        delegate::run(&ipam, Verb::Status, net, env)?;
    }
    Ok(())
}

/// GC: links go with their namespaces; with `hostAccess`, the routes of the
/// attachments of this network that the runtime no longer lists go from the
/// master's shim (and the shim with the last of them); leases are IPAM's,
/// so delegate.
pub fn gc(family: Family, net: &NetConf, env: &CallEnv) -> Result<()> {
    if let Some(master) = host_access(family, net, env) {
        let keep = crate::ipam::kept_by_gc(net)?;
        shim::shared::collect(master.as_deref(), &net.name, keep)?;
    }
    if let Some(t) = net.ipam_type() {
        let ipam = delegate::find(t, env)?;
        delegate::run(&ipam, Verb::Gc, net, env)?;
    }
    Ok(())
}
