//! nicslice-ipam with `"dhcp": {}`: the verbs as CNI around the engine's DHCP
//! for CNI attachments (`nicslice_engine::dhcp::cni`, the exchanges, lease
//! rows and agent `nicslice attach` uses). The leases live in nicslice's
//! state database (`dhcp.state`, else `NICSLICE_STATE`, else nicslice's
//! default), where `nicslice dhcp-agent` renews them; the first ADD starts
//! an agent when none runs.
//!
//! ADD asks the servers of `dhcp.families` (DHCPv4 by default, DHCPv6 or
//! both) on the link the link plugin made (it has no address yet) and
//! returns the addresses: DHCPv4's with the server's router as gateway,
//! DHCPv6's as a /128 without one (the router's Router Advertisements give
//! the on-link prefix and the default route), and the DNS servers of both.
//! DEL and GC send RELEASE and drop every lease held; CHECK finds each
//! family's lease held and its address on the link; STATUS fails with code
//! 50 when the agent cannot be reached (no agent runs while leases are
//! held, and none could be started).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use nicslice_engine::dhcp::{CniAttachment, CniDhcpCheck, CniRoute, agent};
use nicslice_engine::{Engine, Faults};
use nicslice_kernel::Netns;
use nicslice_store::DEFAULT_STATE_PATH;

use super::conf::{DhcpConf, IpamConf};
use crate::conf::NetConf;
use crate::env::{CallEnv, Verb};
use crate::error::{CniError, Code, Result};
use crate::result::{CniResult, Dns, IpConfig};

/// How long ADD waits for a server unless `dhcp.timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = nicslice_engine::dhcp::DEFAULT_TIMEOUT;
/// How long STATUS waits for an agent it started to take its lock.
const AGENT_START_WAIT: Duration = Duration::from_secs(2);

/// nicslice's state database: `given` (the configuration's `state`), else
/// `NICSLICE_STATE`, else nicslice's default.
pub(crate) fn nicslice_state(given: Option<&PathBuf>) -> PathBuf {
    given
        .filter(|p| !p.as_os_str().is_empty())
        .cloned()
        .or_else(|| std::env::var_os("NICSLICE_STATE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_PATH))
}

/// The engine over nicslice's state database `state`.
pub(super) fn open(state: &std::path::Path) -> Result<Engine> {
    let host = Netns::current().map_err(nicslice_engine::EngineError::from)?;
    let faults = Faults::from_env()?;
    Ok(Engine::open(state, host, faults)?)
}

/// Runs one verb of nicslice-ipam for a `dhcp` configuration.
pub fn handle(
    verb: Verb,
    net: &NetConf,
    env: &CallEnv,
    conf: &IpamConf,
    dhcp: &DhcpConf,
) -> Result<Option<CniResult>> {
    let state = nicslice_state(dhcp.state.as_ref());
    match verb {
        Verb::Add => add(&state, net, env, conf, dhcp).map(Some),
        Verb::Del => {
            open(&state)?.cni_dhcp_del(&env.container_id, &env.ifname)?;
            Ok(None)
        }
        Verb::Check => {
            let routes = routes_of(net, conf);
            let at = attachment(net, env, &routes);
            if let CniDhcpCheck::NotHeld(family) =
                open(&state)?.cni_dhcp_check(&at, dhcp.families)?
            {
                return Err(CniError::new(
                    Code::UnknownContainer,
                    format!(
                        "nicslice-ipam: no DHCPv{family} lease is held for container {} interface {}",
                        env.container_id, env.ifname
                    ),
                ));
            }
            Ok(None)
        }
        Verb::Status => {
            status(&state).map_err(|e| CniError::new(Code::NotAvailable, e.msg))?;
            Ok(None)
        }
        Verb::Gc => {
            open(&state)?.cni_dhcp_gc(&net.name, super::kept_by_gc(net)?)?;
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
    dhcp: &DhcpConf,
) -> Result<CniResult> {
    let timeout = dhcp.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64);
    let routes = routes_of(net, conf);
    let at = attachment(net, env, &routes);
    let grants = open(state)?.cni_dhcp_add(&at, dhcp.families, timeout)?;
    if let Err(e) = agent::ensure_running(state, None) {
        eprintln!(
            "nicslice: could not start nicslice dhcp-agent: {e}; run it to renew DHCP leases"
        );
    }
    let mut ips = Vec::new();
    let mut dns = Dns::default();
    if let Some(v4) = grants.v4 {
        ips.push(IpConfig {
            address: IpNet::V4(v4.address),
            gateway: v4.routers.first().copied().map(IpAddr::V4),
            interface: None,
        });
        dns.nameservers.extend(v4.dns.iter().map(ToString::to_string));
        dns.domain = v4.domain.unwrap_or_default();
    }
    if let Some(v6) = grants.v6 {
        // No gateway: IA_NA names no router; the RA gives the default route.
        let address = IpNet::V6(Ipv6Net::from(v6.address));
        ips.push(IpConfig { address, gateway: None, interface: None });
        dns.nameservers.extend(v6.dns.iter().map(ToString::to_string));
    }
    Ok(CniResult { interfaces: Vec::new(), ips, routes: conf.routes.clone(), dns })
}

fn attachment<'a>(net: &'a NetConf, env: &'a CallEnv, routes: &'a [CniRoute]) -> CniAttachment<'a> {
    CniAttachment {
        network: &net.name,
        container_id: &env.container_id,
        ifname: &env.ifname,
        netns: &env.netns,
        routes,
    }
}

/// The routes the link plugin adds after this ADD, which the agent puts
/// back with a lease granted again: IPAM's `routes`, and, behind
/// nicslice's own link plugins, the default route through the lease's
/// router unless `noDefaultRoute` (the reference plugins add IPAM's routes
/// only).
fn routes_of(net: &NetConf, conf: &IpamConf) -> Vec<CniRoute> {
    #[derive(serde::Deserialize)]
    struct Keys {
        #[serde(default, rename = "noDefaultRoute")]
        no_default_route: Option<bool>,
    }
    let mut routes: Vec<CniRoute> =
        conf.routes.iter().map(|r| CniRoute { dst: r.dst, gw: r.gw }).collect();
    let ours = matches!(net.plugin_type.as_str(), "nicslice-macvlan" | "nicslice-ipvlan");
    let no_default = net.specific::<Keys>().ok().and_then(|k| k.no_default_route).unwrap_or(false);
    let default = IpNet::V4(Ipv4Net::default());
    if ours && !no_default && !routes.iter().any(|r| r.dst == default) {
        routes.push(CniRoute { dst: default, gw: None });
    }
    routes
}

/// Whether the agent can be reached: it runs, or no lease needs it yet, or
/// one started now takes its lock in time.
fn status(state: &std::path::Path) -> Result<()> {
    let unreachable = |e: std::io::Error| {
        CniError::new(
            Code::NotAvailable,
            format!("nicslice dhcp-agent for {}: {e}", state.display()),
        )
    };
    // Opened first: it makes the database's directory, where the lock is.
    let mut engine = open(state)?;
    if agent::is_running(state).map_err(unreachable)? || !engine.cni_dhcp_holds_any()? {
        return Ok(());
    }
    agent::ensure_running(state, None).map_err(unreachable)?;
    if agent::wait_running(state, AGENT_START_WAIT).map_err(unreachable)? {
        return Ok(());
    }
    Err(CniError::new(
        Code::NotAvailable,
        format!(
            "nicslice dhcp-agent for {} is not running and did not start; DHCP leases are not renewed",
            state.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(conf: &str) -> Vec<String> {
        let net = NetConf::parse(conf.as_bytes().to_vec()).unwrap();
        let ipam = IpamConf::parse(net.ipam.as_ref().unwrap()).unwrap();
        routes_of(&net, &ipam).iter().map(|r| format!("{} {:?}", r.dst, r.gw)).collect()
    }

    #[test]
    fn a_regrant_puts_back_the_routes_the_link_plugin_added() {
        let ipam = r#""ipam":{"type":"nicslice-ipam","dhcp":{}}"#;
        let with = |head: &str| format!(r#"{{"cniVersion":"1.0.0","name":"n",{head},{ipam}}}"#);
        // nicslice's link plugins add the default route through the router.
        assert_eq!(routes(&with(r#""type":"nicslice-macvlan""#)), ["0.0.0.0/0 None"]);
        assert!(routes(&with(r#""type":"nicslice-ipvlan","noDefaultRoute":true"#)).is_empty());
        // The reference plugins add IPAM's routes only.
        let reference = r#"{"cniVersion":"1.0.0","name":"n","type":"macvlan","ipam":{"type":"nicslice-ipam","dhcp":{},"routes":[{"dst":"10.0.0.0/8","gw":"192.168.0.254"}]}}"#;
        assert_eq!(routes(reference), ["10.0.0.0/8 Some(192.168.0.254)"]);
        assert!(routes(&with(r#""type":"macvlan""#)).is_empty());
    }
}
