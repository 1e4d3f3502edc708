//! The live state as a reachability-model topology, for `nicslice explain`:
//! one host per parent (with the addresses the kernel reports on it, and any
//! macvlan shim beside it), one child per endpoint with its mode, addresses
//! and default route; and the probes of what lies beyond it: a next hop no
//! endpoint carries (the LAN's gateway) is asked for by ARP/NDP from the
//! endpoint's own interface inside its namespace, cold (a raw request, whatever
//! its neighbour cache holds).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use nicslice_kernel::neighbour_probe::{ask_all, close_all};
use nicslice_kernel::{NeighbourProber, Netns, NetnsTarget};
use nicslice_model::reach::{
    self, Beyond, Child, ChildKind, ChildMode, Host, MacRef, Seen, Shim, Sighting, Topology,
};
use nicslice_model::{Driver, NetworkSpec};
use nicslice_store::{NetnsId, StoreRead};

use crate::Engine;
use crate::attach::EndpointDetails;
use crate::error::Result;

/// The addresses that are neither loopback nor IPv6 link-local.
pub(crate) fn global(addrs: Vec<(u32, IpNet)>) -> Vec<IpNet> {
    addrs
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| match a {
            IpNet::V4(v4) => !v4.addr().is_loopback(),
            IpNet::V6(v6) => v6.addr().segments()[0] & 0xffc0 != 0xfe80 && !v6.addr().is_loopback(),
        })
        .collect()
}

/// Requests per next hop, spread over [`PROBE_TIMEOUT`]: a gateway on the LAN
/// answers within milliseconds; the retries cover a lost frame or a busy machine.
const PROBE_ATTEMPTS: u16 = 3;
const PROBE_TIMEOUT: Duration = Duration::from_millis(600);

/// The live state as a topology, and where each of its endpoints lives.
pub struct LiveTopology {
    pub topology: Topology,
    /// A child's namespace (as recorded, with its identity) by endpoint name;
    /// the hosts live in the engine's host namespace.
    places: HashMap<String, Place>,
}

struct Place {
    path: PathBuf,
    id: NetnsId,
    /// Children with the same key (parent, network, mode) hear the same answer
    /// from a next hop outside: it comes back over the same wire to a MAC on that
    /// parent. `None` for a source-mode child, which hears only the MACs it lists.
    beside: Option<String>,
}

impl Engine {
    /// Describes nicslice's networks and the kernel state around them.
    pub fn live_topology(&mut self) -> Result<LiveTopology> {
        let mut places = HashMap::new();
        let tx = self.store.read()?;
        let mut by_parent: BTreeMap<String, Vec<(NetworkSpec, Vec<Child>)>> = BTreeMap::new();
        for net in tx.list_networks()? {
            let mut children = Vec::new();
            for ep in tx.endpoints(net.id)? {
                let details: EndpointDetails =
                    serde_json::from_value(ep.details.clone()).unwrap_or_default();
                let netns = netns_label(&ep.netns);
                let name = format!("{}@{netns}", ep.ifname);
                let mode = ChildMode::from(net.spec.mode);
                let beside = (mode != ChildMode::Source)
                    .then(|| format!("{} {:?} {mode:?}", net.spec.parent, net.id));
                let (path, id) = (PathBuf::from(&ep.netns), ep.netns_id);
                places.insert(name.clone(), Place { path, id, beside });
                children.push(Child {
                    name,
                    kind: match net.spec.driver {
                        Driver::Macvlan => ChildKind::Macvlan,
                        Driver::Macvtap => ChildKind::Macvtap,
                        Driver::Ipvlan => ChildKind::Ipvlan,
                        Driver::Ipvtap => ChildKind::Ipvtap,
                    },
                    mode: Some(ChildMode::from(net.spec.mode)),
                    flag: net.spec.driver.is_ipvlan().then_some(net.spec.ipvlan_flag),
                    nopromisc: net.spec.flags.nopromisc,
                    nodst: net.spec.flags.nodst,
                    source_macs: details.source_macs.iter().map(|m| MacRef::Mac(*m)).collect(),
                    mac: ep.mac,
                    addresses: tx
                        .leases_of(ep.id)?
                        .iter()
                        .map(|l| l.address())
                        .chain(crate::dhcp::view_of(&tx, ep.id)?.addresses)
                        .collect(),
                    gateway: details.gateways.first().copied(),
                    default_dev: details.default_dev,
                    routes: details
                        .routes
                        .iter()
                        .map(|r| reach::Route { to: r.destination, via: r.via })
                        .collect(),
                });
            }
            by_parent.entry(net.spec.parent.to_string()).or_default().push((net.spec, children));
        }
        // Shims nicslice made that borrow the host's address as their routes'
        // source: to the model, that address is the shim's, as in seed 000's
        // fixed world (the host answers ARP for it there, and its traffic to
        // the children leaves through the shim).
        let borrowed: BTreeMap<String, Vec<std::net::IpAddr>> =
            tx.shims()?.into_iter().map(|s| (s.name, s.sources)).collect();
        drop(tx);
        let mut host_sock = self.host_socket()?;
        let links = host_sock.links()?;
        let routes = host_sock.routes()?;
        // Routes through one interface, as the model spells them (the default
        // route is the host's gateway, kept apart).
        let through = |index: u32| -> Vec<reach::Route> {
            routes
                .iter()
                .filter(|r| r.oif == Some(index) && !r.is_default())
                .map(|r| reach::Route { to: r.destination, via: r.gateway })
                .collect()
        };
        let gateway = routes.iter().find(|r| r.is_default()).and_then(|r| r.gateway);
        let single = by_parent.len() == 1;
        let mut hosts = Vec::new();
        for (parent, nets) in by_parent {
            let link = links.iter().find(|l| l.name == parent);
            let mut addresses = match link {
                Some(l) => global(host_sock.addresses(Some(l.index))?),
                None => Vec::new(),
            };
            // A macvlan beside the children, in the host, with an address: a shim.
            let shim = match link {
                Some(p) => links
                    .iter()
                    .filter(|l| l.parent_index == Some(p.index) && l.link_netnsid.is_none())
                    .find(|l| l.kind.as_deref() == Some("macvlan"))
                    .map(|l| -> Result<Shim> {
                        let mut own = global(host_sock.addresses(Some(l.index))?);
                        let lent = borrowed.get(&l.name).cloned().unwrap_or_default();
                        own.extend(addresses.iter().filter(|a| lent.contains(&a.addr())));
                        Ok(Shim {
                            name: l.name.clone(),
                            addresses: own,
                            mac: l.mac,
                            routes: through(l.index),
                        })
                    })
                    .transpose()?,
                None => None,
            };
            if let Some(shim) = &shim {
                addresses.retain(|a| !shim.addresses.contains(a));
            }
            hosts.push(Host {
                name: if single { "host".to_string() } else { format!("host-{parent}") },
                port: None,
                parent: parent.clone(),
                addresses,
                mac: link.and_then(|l| l.mac),
                up: link.is_some_and(|l| l.up && l.lower_up),
                gateway,
                routes: link.map(|l| through(l.index)).unwrap_or_default(),
                children: nets.into_iter().flat_map(|(_, c)| c).collect(),
                shim,
            });
        }
        let topology = Topology {
            description: format!("live state of nicslice's networks in {}", self.host.label()),
            hosts,
            ..Topology::default()
        };
        Ok(LiveTopology { topology, places })
    }

    /// Probes each next hop the verdicts rest on (see [`Beyond`]) from the endpoint
    /// that asks for it: an ARP request (NDP solicitation) from its interface in its
    /// namespace, repeated a few times, all at once. Children beside each other (one
    /// parent, network and mode) share one probe, sent by the first of them: a
    /// request from each of 400 bridge-mode siblings at once is a broadcast storm
    /// (every request copied to 399 siblings) whose copies overflow the kernel's
    /// backlog and drop the gateway's answers. A probe that cannot be sent is
    /// reported with the reason, never an error: the verdict stands, unconfirmed.
    pub fn probe_beyond(&self, live: &LiveTopology, asks: &[Beyond]) -> HashMap<Beyond, Sighting> {
        let mut seen = HashMap::new();
        let not_probed =
            |why: String| Sighting { seen: Seen::NotProbed, asked_from: None, why_not: Some(why) };
        // The asks each probe answers, by who sends it and the next hop.
        let mut by_sender: BTreeMap<(&str, IpAddr), Vec<NextHopAsks>> = BTreeMap::new();
        let mut sent_by: HashMap<(&str, IpAddr), (&str, IpAddr)> = HashMap::new();
        for b in asks {
            let Some(sender) = b.sender else {
                seen.insert(b.clone(), not_probed(format!("{} has no address", b.interface)));
                continue;
            };
            let beside = live.places.get(&b.asker.0).and_then(|p| p.beside.as_deref());
            let who = *sent_by
                .entry((beside.unwrap_or(&b.asker.0), b.next_hop))
                .or_insert((&b.asker.0, sender));
            let hops = by_sender.entry(who).or_default();
            match hops.iter_mut().find(|(hop, _)| *hop == b.next_hop) {
                Some((_, members)) => members.push(b),
                None => hops.push((b.next_hop, vec![b])),
            }
        }
        let mut probers = Vec::new();
        for ((asker, sender), hops) in by_sender {
            match self.prober(live, asker, sender) {
                Ok(p) => probers.push((p, asker, hops)),
                Err(why) => {
                    for b in hops.iter().flat_map(|(_, m)| m) {
                        seen.insert((*b).clone(), not_probed(why.clone()));
                    }
                }
            }
        }
        let targets: Vec<(&NeighbourProber, Vec<IpAddr>)> =
            probers.iter().map(|(p, _, hops)| (p, hops.iter().map(|h| h.0).collect())).collect();
        let answers = ask_all(&targets, PROBE_ATTEMPTS, PROBE_TIMEOUT);
        drop(targets);
        for (i, (_, asker, hops)) in probers.iter().enumerate() {
            for (j, (_, members)) in hops.iter().enumerate() {
                let sighting = match &answers {
                    Ok(a) if a[i][j] => Sighting {
                        seen: Seen::Answered,
                        asked_from: Some(interface_of(asker, members)),
                        why_not: None,
                    },
                    Ok(_) => Sighting {
                        seen: Seen::Unanswered,
                        asked_from: Some(interface_of(asker, members)),
                        why_not: None,
                    },
                    Err(e) => not_probed(e.to_string()),
                };
                for b in members {
                    seen.insert((*b).clone(), sighting.clone());
                }
            }
        }
        close_all(probers.into_iter().map(|(p, _, _)| p).collect());
        seen
    }

    /// A prober on `asker`'s interface with address `sender`, in its namespace
    /// (the host's, or the child's as recorded, if it is still that namespace).
    fn prober(
        &self,
        live: &LiveTopology,
        asker: &str,
        sender: IpAddr,
    ) -> std::result::Result<NeighbourProber, String> {
        let opened;
        let ns: &Netns = match live.places.get(asker) {
            None => &self.host,
            Some(Place { path, id, .. }) => {
                let gone = || format!("{asker}'s namespace {} is gone", path.display());
                opened = NetnsTarget::Path(path.clone()).open().map_err(|_| gone())?;
                let now = opened.id();
                if (now.dev, now.ino) != (id.dev, id.ino) {
                    return Err(gone());
                }
                &opened
            }
        };
        match NeighbourProber::open_in(ns, sender) {
            Ok(Some(p)) => match p.only_answers() {
                Ok(()) => Ok(p),
                Err(e) => Err(format!("cannot probe from {asker}: {e}")),
            },
            Ok(None) => Err(format!("no interface in {asker}'s namespace has {sender}")),
            Err(e) => Err(format!("cannot probe from {asker}: {e}")),
        }
    }
}

/// How a child's namespace appears in its endpoint name: an iproute2 name, or
/// `pid1234` for `/proc/1234/ns/net` (whose file name, `net`, every such
/// namespace shares).
fn netns_label(recorded: &str) -> String {
    let path = Path::new(recorded);
    let pid = path.strip_prefix("/proc").ok().and_then(|p| p.iter().next());
    match (pid, path.ends_with("ns/net")) {
        (Some(pid), true) => format!("pid{}", pid.to_string_lossy()),
        _ => path.file_name().map_or(recorded.to_string(), |n| n.to_string_lossy().into()),
    }
}

/// A next hop one prober asks for, and the asks its answer settles.
type NextHopAsks<'a> = (IpAddr, Vec<&'a Beyond>);

/// The interface that asked, as the verdicts name it: that of the ask from
/// `asker` itself among `members` (the first member's otherwise).
fn interface_of(asker: &str, members: &[&Beyond]) -> String {
    let own = members.iter().find(|b| b.asker.0 == asker).or(members.first());
    own.map_or_else(|| asker.to_string(), |b| b.interface.clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn namespaces_by_pid_get_names_of_their_own() {
        assert_eq!(super::netns_label("/proc/1234/ns/net"), "pid1234");
        assert_eq!(super::netns_label("/run/netns/c1"), "c1");
        assert_eq!(super::netns_label("/var/run/netns/web"), "web");
    }
}
