//! CHECK for the link plugins: the interface of `prevResult` exists in the
//! container with the plugin's kind, mode and MAC, on an existing master,
//! with every address and route the result lists; IPAM checks its lease.

use nicslice_kernel::{Netns, RouteSocket};

use super::add::has_address;
use super::{open_netns, parent_name};
use crate::conf::NetConf;
use crate::delegate;
use crate::env::{CallEnv, Verb};
use crate::error::{CniError, Result};
use crate::linkconf::{Family, KindConf, LinkConf};

pub fn check(family: Family, net: &NetConf, env: &CallEnv) -> Result<()> {
    let conf = LinkConf::parse(family, net, env)?;
    if let Some(t) = net.ipam_type() {
        let ipam = delegate::find(t, env)?;
        delegate::run(&ipam, Verb::Check, net, env)?;
    }
    let prev =
        net.prev_result.as_ref().ok_or_else(|| CniError::config("required prevResult missing"))?;
    let (index, intf) = prev
        .interfaces
        .iter()
        .enumerate()
        .find(|(_, i)| i.name == env.ifname && i.sandbox == env.netns)
        .ok_or_else(|| {
            CniError::config(format!(
                "prevResult lists no interface {} in sandbox {}",
                env.ifname, env.netns
            ))
        })?;
    let ns = open_netns(&env.netns)?;
    let mut host = if conf.link_in_container {
        RouteSocket::open_in(&ns)?
    } else {
        RouteSocket::open_in(&Netns::current()?)?
    };
    let parent = parent_name(&conf, &mut host)?;
    if host.link_by_name(&parent)?.is_none() {
        return Err(CniError::config(format!("master {parent} does not exist")));
    }
    let mut sock = RouteSocket::open_in(&ns)?;
    let link = sock.link_by_name(&env.ifname)?.ok_or_else(|| {
        CniError::config(format!("interface {} not found in {}", env.ifname, env.netns))
    })?;
    let kind = conf.driver.kind();
    if link.kind.as_deref() != Some(kind) {
        return Err(CniError::config(format!(
            "interface {} is a {} link, not {kind}",
            env.ifname,
            link.kind.as_deref().unwrap_or("physical")
        )));
    }
    if let KindConf::Macvlan { mode, .. } = conf.kind {
        let actual = link.macvlan.as_ref().and_then(|m| m.mode);
        if actual != Some(mode) {
            return Err(CniError::config(format!(
                "container macvlan mode {actual:?} does not match expected value {mode}"
            )));
        }
    }
    if !intf.mac.is_empty() && link.mac.map(|m| m.to_string()) != Some(intf.mac.to_lowercase()) {
        return Err(CniError::config(format!(
            "interface {} MAC {:?} does not match prevResult's {}",
            env.ifname, link.mac, intf.mac
        )));
    }
    let addrs = sock.addresses(Some(link.index))?;
    for ip in prev.ips.iter().filter(|i| i.interface.is_none_or(|n| n == index)) {
        if !has_address(&addrs, link.index, ip.address.addr()) {
            return Err(CniError::config(format!(
                "address {} is missing on {}",
                ip.address, env.ifname
            )));
        }
    }
    let routes = sock.routes()?;
    for r in &prev.routes {
        if !routes.iter().any(|k| k.destination == r.dst && (r.gw.is_none() || k.gateway == r.gw)) {
            return Err(CniError::config(format!(
                "route to {} is missing in {}",
                r.dst, env.netns
            )));
        }
    }
    Ok(())
}
