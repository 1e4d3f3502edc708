//! nicslice-ipam with `"store": {"etcd": {...}}`: the verbs as CNI around
//! the engine's fleet pool for CNI attachments (`nicslice_engine::
//! cni_fleet`), the allocator `nicslice network create --ipam etcd` uses.
//! This host's part of the pool lives in nicslice's state database
//! (`store.etcd.state`, else `NICSLICE_STATE`, else nicslice's default);
//! the pool is shared with every host whose configuration names the same
//! network and etcd cluster.
//!
//! ADD returns an address of the range with the configured gateway, routes
//! and DNS; DEL and GC release it; CHECK fails with code 3 when the
//! attachment holds none. etcd not answering when it is needed is "try
//! again later" (11), and nothing is left held.

use std::net::IpAddr;

use nicslice_engine::cni_fleet::CniFleetPool;
use nicslice_model::ipam::AddressRange;
use nicslice_model::{EtcdTls, FleetSpec, SubnetSpec, to_u128};

use super::conf::{EtcdConf, IpamConf};
use super::dhcp::{nicslice_state, open};
use crate::conf::NetConf;
use crate::env::{CallEnv, Verb};
use crate::error::{CniError, Code, Result};
use crate::result::{CniResult, IpConfig};

/// Runs one verb of nicslice-ipam for a `store.etcd` configuration.
pub fn handle(
    verb: Verb,
    net: &NetConf,
    env: &CallEnv,
    conf: &IpamConf,
    etcd: &EtcdConf,
) -> Result<Option<CniResult>> {
    let state = nicslice_state(etcd.state.as_ref());
    match verb {
        Verb::Add => add(&state, net, env, conf, etcd).map(Some),
        Verb::Del => {
            open(&state)?.cni_fleet_del(&net.name, &env.container_id, &env.ifname)?;
            Ok(None)
        }
        Verb::Check => {
            match open(&state)?.cni_fleet_holds(&net.name, &env.container_id, &env.ifname)? {
                Some(_) => Ok(None),
                None => Err(CniError::new(
                    Code::UnknownContainer,
                    format!(
                        "nicslice-ipam: no fleet address is held for container {} interface {} in network {}",
                        env.container_id, env.ifname, net.name
                    ),
                )),
            }
        }
        Verb::Status => {
            open(&state).map_err(|e| CniError::new(Code::NotAvailable, e.msg))?;
            Ok(None)
        }
        Verb::Gc => {
            open(&state)?.cni_fleet_gc(&net.name, super::kept_by_gc(net)?)?;
            Ok(None)
        }
        Verb::Version => Ok(None),
    }
}

fn add(
    state: &std::path::Path,
    net: &NetConf,
    env: &CallEnv,
    conf: &IpamConf,
    etcd: &EtcdConf,
) -> Result<CniResult> {
    if !super::requested_ips(net, env)?.is_empty() {
        return Err(CniError::config(
            "ipam: store.etcd hands out the addresses of the shared range itself; a particular IP cannot be requested",
        ));
    }
    let (pool, range) = pool(net, conf, etcd)?;
    let dns = match &conf.resolv_conf {
        Some(path) => super::resolv::read(path)?,
        None => Default::default(),
    };
    let address = open(state)?.cni_fleet_add(&pool, &env.container_id, &env.ifname)?;
    Ok(CniResult {
        interfaces: Vec::new(),
        ips: vec![IpConfig { address, gateway: Some(range.gateway), interface: None }],
        routes: conf.routes.clone(),
        dns,
    })
}

/// The fleet pool a `store.etcd` configuration gives (with the cool-down of
/// its `"probe"`, if any), and its one range.
pub(crate) fn pool<'a>(
    net: &'a NetConf,
    conf: &'a IpamConf,
    etcd: &EtcdConf,
) -> Result<(CniFleetPool<'a>, &'a AddressRange)> {
    let range = conf
        .range_sets
        .first()
        .and_then(|set| set.first())
        .ok_or_else(|| CniError::config("ipam: store.etcd needs one range"))?;
    let pool = CniFleetPool {
        network: &net.name,
        subnet: subnet_of(range),
        fleet: FleetSpec {
            endpoints: etcd.endpoints.clone(),
            block_size: etcd.block_size.unwrap_or(FleetSpec::DEFAULT_BLOCK_SIZE),
            ttl_s: etcd.ttl_seconds.unwrap_or(FleetSpec::DEFAULT_TTL_S),
            cooldown_s: etcd.cooldown_seconds.unwrap_or(FleetSpec::DEFAULT_COOLDOWN_S),
            tls: EtcdTls { ca: etcd.ca.clone(), cert: etcd.cert.clone(), key: etcd.key.clone() },
        },
        quarantine_s: crate::linkconf::probe_spec(net)?.map(|p| p.cooldown_s),
    };
    Ok((pool, range))
}

/// The range as a fleet network's subnet: the whole subnet (host-local's
/// default window) or, when `rangeStart`/`rangeEnd` narrow it, that window
/// exactly; the gateway as configured.
fn subnet_of(range: &AddressRange) -> SubnetSpec {
    let subnet = range.subnet;
    let (base, top) = (to_u128(subnet.network()), to_u128(subnet.broadcast()));
    let (first, last) = (to_u128(range.first), to_u128(range.last));
    let whole = first <= base + 1 && last >= top - u128::from(subnet.addr().is_ipv4());
    SubnetSpec {
        gateway: Some(range.gateway),
        window: (!whole).then_some((range.first, range.last)),
        link_local: matches!(subnet.addr(), IpAddr::V4(a) if a.is_link_local()),
        ..SubnetSpec::new(subnet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn range(ipam: serde_json::Value) -> AddressRange {
        IpamConf::parse(&ipam).unwrap().range_sets[0][0].clone()
    }

    #[test]
    fn whole_subnets_and_windows_are_fleet_subnets() {
        let s = subnet_of(&range(json!({"subnet": "10.9.0.0/24"})));
        assert_eq!((s.window, s.gateway.unwrap().to_string()), (None, "10.9.0.1".into()));
        let s = subnet_of(&range(json!({"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.100",
            "rangeEnd": "10.9.0.110", "gateway": "10.9.0.254"})));
        let (first, last) = s.window.unwrap();
        assert_eq!(
            (first.to_string(), last.to_string()),
            ("10.9.0.100".into(), "10.9.0.110".into())
        );
        assert_eq!(s.gateway.unwrap().to_string(), "10.9.0.254");
        assert_eq!(subnet_of(&range(json!({"subnet": "fd00:9::/64"}))).window, None);
    }
}
