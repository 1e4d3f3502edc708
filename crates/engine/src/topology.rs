//! The live state as a reachability-model topology, for `nicslice explain`:
//! one host per parent (with the addresses the kernel reports on it, and any
//! macvlan shim beside it), one child per endpoint with its mode, addresses
//! and default route.

use std::collections::BTreeMap;
use std::path::Path;

use ipnet::IpNet;
use nicslice_model::reach::{self, Child, ChildKind, ChildMode, Host, MacRef, Shim, Topology};
use nicslice_model::{Driver, NetworkSpec};
use nicslice_store::StoreRead;

use crate::Engine;
use crate::attach::EndpointDetails;
use crate::error::Result;

fn global(addrs: Vec<(u32, IpNet)>) -> Vec<IpNet> {
    addrs
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| match a {
            IpNet::V4(v4) => !v4.addr().is_loopback(),
            IpNet::V6(v6) => v6.addr().segments()[0] & 0xffc0 != 0xfe80 && !v6.addr().is_loopback(),
        })
        .collect()
}

impl Engine {
    /// Describes nicslice's networks and the kernel state around them.
    pub fn live_topology(&mut self) -> Result<Topology> {
        let tx = self.store.read()?;
        let mut by_parent: BTreeMap<String, Vec<(NetworkSpec, Vec<Child>)>> = BTreeMap::new();
        for net in tx.list_networks()? {
            let mut children = Vec::new();
            for ep in tx.endpoints(net.id)? {
                let details: EndpointDetails =
                    serde_json::from_value(ep.details.clone()).unwrap_or_default();
                let netns = Path::new(&ep.netns)
                    .file_name()
                    .map_or(ep.netns.clone(), |n| n.to_string_lossy().into());
                children.push(Child {
                    name: format!("{}@{netns}", ep.ifname),
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
                        .chain(crate::dhcp::view_of(&tx, ep.id)?.0)
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
            let addresses = match link {
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
                        Ok(Shim {
                            name: l.name.clone(),
                            addresses: global(host_sock.addresses(Some(l.index))?),
                            mac: l.mac,
                            routes: through(l.index),
                        })
                    })
                    .transpose()?,
                None => None,
            };
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
        Ok(Topology {
            description: format!("live state of nicslice's networks in {}", self.host.label()),
            hosts,
            ..Topology::default()
        })
    }
}
