//! Never cut the host off: what the host reaches before a shim is made (the
//! routes of its namespace with their devices, the device its routes choose
//! for each gateway and on-link peer of the parent, and which of those
//! answer ARP/NDP), compared with what it reaches once the shim, its
//! addresses and routes are in place. Any difference is named, and the
//! caller undoes everything.
//!
//! The probes go out of the parent itself (a packet socket), so a route
//! through the shim to the address of a gateway or peer that answered (an
//! endpoint given an address the LAN already uses, a `--route-range` over a
//! LAN machine's) does not silence them: the path check catches that one,
//! with the main table's longest match (policy routing aside, as `explain`
//! reads routes).

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use nicslice_kernel::{NeighbourProber, Netns, Route, RouteSocket};

use crate::error::{EngineError, Result};

/// At most this many on-link neighbours are probed besides the gateways.
const MAX_PEERS: usize = 16;
/// Requests per probe, spread over the timeout.
const ATTEMPTS: u16 = 3;
const TIMEOUT: Duration = Duration::from_millis(300);

/// A route as the guard compares it: destination, gateway, device.
type RouteKey = (IpNet, Option<IpAddr>, Option<u32>);

/// The host's view before the change.
pub struct Snapshot {
    routes: Vec<RouteKey>,
    /// Each gateway and peer that answered, with the device the host's
    /// routes choose for it.
    paths: Vec<(IpAddr, Option<u32>)>,
    /// Neighbours that answered, with the address they were asked from.
    answered: Vec<(IpAddr, IpAddr)>,
}

fn routes(host: &mut RouteSocket) -> Result<Vec<RouteKey>> {
    Ok(host.routes()?.into_iter().map(|r| (r.destination, r.gateway, r.oif)).collect())
}

/// The device the main table sends `ip` through: the longest prefix that
/// holds it, the lowest metric among equals.
fn device_for(routes: &[Route], ip: IpAddr) -> Option<u32> {
    routes
        .iter()
        .filter(|r| r.destination.contains(&ip))
        .max_by_key(|r| (r.destination.prefix_len(), std::cmp::Reverse(r.metric.unwrap_or(0))))
        .and_then(|r| r.oif)
}

/// The device each of `targets` is reached through now.
fn paths(host: &mut RouteSocket, targets: &[IpAddr]) -> Result<Vec<(IpAddr, Option<u32>)>> {
    let routes = host.routes()?;
    Ok(targets.iter().map(|t| (*t, device_for(&routes, *t))).collect())
}

/// What to probe from each of the parent's addresses: the gateways of the
/// routes through the parent, then neighbours in the parent's subnets.
fn targets(host: &mut RouteSocket, parent: u32) -> Result<Vec<(IpAddr, Vec<IpAddr>)>> {
    let own = crate::topology::global(host.addresses(Some(parent))?);
    let gateways: Vec<IpAddr> = host
        .routes()?
        .into_iter()
        .filter(|r| r.oif == Some(parent))
        .filter_map(|r| r.gateway)
        .collect();
    let peers: Vec<IpAddr> = host.neighbours()?.into_iter().map(|(ip, _)| ip).collect();
    let mut out = Vec::new();
    for addr in own {
        let mut asked: Vec<IpAddr> =
            gateways.iter().copied().filter(|g| addr.contains(g) && *g != addr.addr()).collect();
        for p in &peers {
            if asked.len() >= MAX_PEERS {
                break;
            }
            if addr.contains(p) && *p != addr.addr() && !asked.contains(p) {
                asked.push(*p);
            }
        }
        if !asked.is_empty() {
            out.push((addr.addr(), asked));
        }
    }
    Ok(out)
}

fn probe(host_ns: &Netns, from: IpAddr, targets: &[IpAddr]) -> Result<Vec<IpAddr>> {
    let Some(prober) = NeighbourProber::open_in(host_ns, from)? else { return Ok(Vec::new()) };
    let answers = prober.ask(targets, ATTEMPTS, TIMEOUT)?;
    Ok(targets.iter().zip(answers).filter(|(_, a)| *a).map(|(t, _)| *t).collect())
}

impl Snapshot {
    /// Reads the routes and probes the neighbours from the parent `parent`.
    pub fn take(host_ns: &Netns, host: &mut RouteSocket, parent: u32) -> Result<Snapshot> {
        let mut answered = Vec::new();
        for (from, asked) in targets(host, parent)? {
            answered.extend(probe(host_ns, from, &asked)?.into_iter().map(|t| (from, t)));
        }
        // Only what answered: the host reached it. A neighbour entry that
        // did not answer may be a child's address (seen through a hairpin
        // switch), which the shim is meant to take.
        let live: Vec<IpAddr> = answered.iter().map(|(_, t)| *t).collect();
        Ok(Snapshot { routes: routes(host)?, paths: paths(host, &live)?, answered })
    }

    /// Errors with what broke: a route of the host gone or moved to another
    /// device, a gateway or peer now reached through another device (the
    /// shim), or a neighbour that answered before and no longer does.
    pub fn still_holds(&self, host_ns: &Netns, host: &mut RouteSocket) -> Result<()> {
        let targets: Vec<IpAddr> = self.paths.iter().map(|(t, _)| *t).collect();
        for ((target, before), (_, now)) in self.paths.iter().zip(paths(host, &targets)?) {
            if now != *before {
                let mut name = |i: Option<u32>| -> Result<String> {
                    let Some(i) = i else { return Ok("no device".into()) };
                    let link = host.links()?.into_iter().find(|l| l.index == i);
                    Ok(link.map_or_else(|| format!("interface {i}"), |l| l.name))
                };
                let (before, now) = (name(*before)?, name(now)?);
                return Err(EngineError::Invalid(format!(
                    "the shim would have cut the host off from {target}: its route would have \
                     gone through {now} instead of {before}; undone, nothing changed"
                )));
            }
        }
        let now = routes(host)?;
        for (dst, gw, oif) in &self.routes {
            if !now.iter().any(|(d, g, o)| d == dst && g == gw && o == oif) {
                let via = gw.map_or(String::new(), |g| format!(" via {g}"));
                return Err(EngineError::Invalid(format!(
                    "the shim would have cut the host off: it changed the host's route to {dst}{via}; undone, nothing changed"
                )));
            }
        }
        for (from, target) in &self.answered {
            if probe(host_ns, *from, &[*target])?.is_empty() {
                return Err(EngineError::Invalid(format!(
                    "the shim would have cut the host off from {target}: it no longer answered the host (asked from {from}); undone, nothing changed"
                )));
            }
        }
        Ok(())
    }
}
