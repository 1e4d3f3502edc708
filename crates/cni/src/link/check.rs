//! CHECK for the link plugins: IPAM checks its lease, then the engine's
//! `endpoint::check` compares the kernel with the interface of `prevResult`
//! (kind, mode, MAC, broadcast cutoff, an MTU configured, every address and
//! route, the master).

use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_engine::endpoint::{self, Expected, ExpectedMtu, Place};
use nicslice_model::MacAddr;

use super::{child_spec, open_netns, parent_name};
use crate::conf::NetConf;
use crate::delegate;
use crate::env::{CallEnv, Verb};
use crate::error::{CniError, Result};
use crate::linkconf::{Family, LinkConf};

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
    let mac = match intf.mac.as_str() {
        "" => None,
        text => Some(text.parse::<MacAddr>().map_err(|e| {
            CniError::config(format!("prevResult's MAC {text} of {}: {e}", env.ifname))
        })?),
    };
    let addresses: Vec<IpAddr> = prev
        .ips
        .iter()
        .filter(|i| i.interface.is_none_or(|n| n == index))
        .map(|i| i.address.addr())
        .collect();
    let routes: Vec<(IpNet, Option<IpAddr>)> = prev.routes.iter().map(|r| (r.dst, r.gw)).collect();
    let mut place = Place::here(open_netns(&env.netns)?, conf.link_in_container)?;
    let parent = parent_name(&conf, &mut place)?;
    let child = child_spec(&conf);
    let expected = Expected {
        parent: &parent,
        ifname: &env.ifname,
        kind: conf.driver.kind(),
        mode: child.mode,
        mac,
        bclim: child.bclim,
        // Only an MTU the configuration names: a later plugin of the chain
        // (`tuning`) may set another.
        mtu: child.mtu.map_or(ExpectedMtu::Unchecked, ExpectedMtu::Of),
        addresses: &addresses,
        routes: &routes,
        // Another plugin of the chain may add addresses of its own.
        only_these_addresses: false,
    };
    Ok(endpoint::check(&mut place, &expected)?)
}
