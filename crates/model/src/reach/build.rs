//! Builds the [`World`] from a validated topology: one namespace per switch, host,
//! child, router and remote, their interfaces with addresses and MAC identities, the
//! switch ports, and each namespace's routing table (connected routes first).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::error::TopologyError;
use super::topology::{ChildMode, IpvlanMode, MacRef, Route, Topology};
use super::validate::{self, on_link};
use super::world::{
    Driver, EpKind, EpView, HostView, MacId, Ns, NsId, PortView, Role, RouteEntry, Segment, StId,
    Station, World,
};
use crate::link::{MacAddr, MacvlanMode};

impl World {
    pub fn build(t: &Topology) -> Result<World, TopologyError> {
        validate::check(t)?;
        let ports = t.switch.ports.iter();
        let ports = ports.map(|p| PortView { name: p.name.clone(), hairpin: p.hairpin }).collect();
        let mut w = World { ports, ..World::default() };
        let sw_ns = w.add_ns(false);
        let sw = w.add_station(&t.switch.name, sw_ns, Role::Bridge, None, &t.switch.addresses);
        w.set_mac(sw, t.switch.mac);
        w.add_ep(&t.switch.name, EpKind::Switch, sw_ns, sw);
        w.add_routes(sw_ns, &[sw], t.switch.gateway, &t.switch.routes, sw);
        let mut lists: Vec<(StId, Vec<MacRef>)> = Vec::new();
        for (hi, h) in t.hosts.iter().enumerate() {
            let port = w.port(validate::port_name(&h.name, h.port.as_deref()));
            let ns = w.add_ns(false);
            let parent = w.add_station(&h.name, ns, Role::Parent(hi), Some(port), &h.addresses);
            w.set_mac(parent, h.mac);
            w.add_ep(&h.name, EpKind::Host(hi), ns, parent);
            let ipvlan = h.children.first().filter(|c| c.kind.is_ipvlan()).map(|c| {
                let mode = match c.mode {
                    Some(ChildMode::L3) => IpvlanMode::L3,
                    Some(ChildMode::L3s) => IpvlanMode::L3s,
                    _ => IpvlanMode::L2,
                };
                Driver::Ipvlan { mode, flag: c.flag.unwrap_or_default() }
            });
            let mut slaves = Vec::new();
            for c in &h.children {
                let mode = macvlan_mode(c.mode);
                let driver = ipvlan.clone().unwrap_or(Driver::Macvlan {
                    mode,
                    nodst: c.nodst,
                    list: Vec::new(),
                });
                let cns = w.add_ns(false);
                let role = Role::Slave { host: hi, driver, shim: false };
                let st = w.add_station(&c.name, cns, role, Some(port), &c.addresses);
                if ipvlan.is_some() || mode == MacvlanMode::Passthru {
                    w.stations[st].mac = w.stations[parent].mac;
                } else {
                    w.set_mac(st, c.mac);
                }
                lists.push((st, c.source_macs.clone()));
                w.add_ep(&c.name, EpKind::Child(st), cns, st);
                let mut routes = c.routes.clone();
                if c.default_dev {
                    routes.extend(default_dev_routes(&c.addresses));
                }
                w.add_routes(cns, &[st], c.gateway, &routes, st);
                slaves.push(st);
            }
            let mut shim = None;
            let mut ifaces = vec![parent];
            if let Some(s) = &h.shim {
                let driver = ipvlan.clone().unwrap_or(Driver::Macvlan {
                    mode: MacvlanMode::Bridge,
                    nodst: false,
                    list: Vec::new(),
                });
                let role = Role::Slave { host: hi, driver, shim: true };
                let st = w.add_station(&s.name, ns, role, Some(port), &s.addresses);
                match ipvlan {
                    Some(_) => w.stations[st].mac = w.stations[parent].mac,
                    None => w.set_mac(st, s.mac),
                }
                slaves.push(st);
                ifaces.push(st);
                shim = Some(st);
            }
            w.add_routes(ns, &ifaces, h.gateway, &h.routes, parent);
            if let (Some(st), Some(s)) = (shim, &h.shim) {
                w.add_routes(ns, &[], None, &s.routes, st);
            }
            let (name, parent_if, up) = (h.name.clone(), h.parent.clone(), h.up);
            w.hosts.push(HostView {
                name,
                parent_if,
                up,
                port,
                parent,
                slaves,
                shim,
                ipvlan: None,
                passthru: None,
                macvlan_by_mac: HashMap::new(),
                listeners: HashMap::new(),
            });
        }
        let mut fars = Vec::new();
        for (ri, r) in t.routers.iter().enumerate() {
            let port = w.port(validate::port_name(&r.name, r.port.as_deref()));
            let ns = w.add_ns(true);
            let lan = w.add_station(&r.name, ns, Role::RouterLan(ri), Some(port), &[r.lan]);
            w.set_mac(lan, r.mac);
            let far = w.add_station(&r.name, ns, Role::RouterFar(ri), None, &[r.far]);
            w.stations[far].seg = Segment::Far(ri);
            w.add_ep(&r.name, EpKind::Router(ri), ns, lan);
            w.add_routes(ns, &[lan, far], r.gateway, &r.routes, lan);
            fars.push(far);
        }
        for (xi, x) in t.remotes.iter().enumerate() {
            let ri = validate::remote_router(t, &x.name, x.router.as_deref())?;
            let ns = w.add_ns(false);
            let st = w.add_station(&x.name, ns, Role::Remote(xi), None, &x.addresses);
            w.stations[st].seg = Segment::Far(ri);
            w.add_ep(&x.name, EpKind::Remote, ns, st);
            w.add_routes(ns, &[st], x.gateway, &x.routes, st);
        }
        let by_name: HashMap<String, StId> = w.eps.iter().map(|e| (e.name.clone(), e.st)).collect();
        for (st, refs) in lists {
            let list: Vec<MacId> = refs.iter().filter_map(|r| w.resolve_mac(r, &by_name)).collect();
            if let Role::Slave { driver: Driver::Macvlan { list: l, .. }, .. } =
                &mut w.stations[st].role
            {
                *l = list;
            }
        }
        w.index();
        Ok(w)
    }

    fn add_ns(&mut self, forwarding: bool) -> NsId {
        self.nss.push(Ns {
            stations: Vec::new(),
            routes: Vec::new(),
            forwarding,
            by_prefix: Vec::new(),
        });
        self.nss.len() - 1
    }

    fn add_station(
        &mut self,
        label: &str,
        ns: NsId,
        role: Role,
        port: Option<usize>,
        addrs: &[IpNet],
    ) -> StId {
        let id = self.stations.len();
        let (label, addrs, seg, mac) =
            (label.to_string(), addrs.to_vec(), Segment::Lan, MacId::Auto(id));
        self.stations.push(Station { label, ns, role, seg, port, addrs, mac });
        self.nss[ns].stations.push(id);
        for a in &self.stations[id].addrs {
            if a.prefix_len() < a.max_prefix_len() {
                self.nss[ns].routes.push(RouteEntry { to: a.trunc(), via: None, st: id });
            }
        }
        id
    }

    fn set_mac(&mut self, st: StId, mac: Option<MacAddr>) {
        if let Some(m) = mac {
            self.stations[st].mac = MacId::Given(m);
        }
    }

    fn add_ep(&mut self, name: &str, kind: EpKind, ns: NsId, st: StId) {
        self.eps.push(EpView { name: name.to_string(), kind, ns, st });
    }

    fn port(&mut self, name: &str) -> usize {
        if let Some(i) = self.ports.iter().position(|p| p.name == name) {
            return i;
        }
        self.ports.push(PortView { name: name.to_string(), hairpin: false });
        self.ports.len() - 1
    }

    /// A route (the default one through `gw` too) goes out of `dev` when its gateway
    /// is on link there, else out of the first of `ifaces` that has it on link.
    fn add_routes(
        &mut self,
        ns: NsId,
        ifaces: &[StId],
        gw: Option<IpAddr>,
        routes: &[Route],
        dev: StId,
    ) {
        let out = |w: &World, via: Option<IpAddr>| match via {
            Some(g) if !on_link(&w.stations[dev].addrs, g) => {
                ifaces.iter().copied().find(|s| on_link(&w.stations[*s].addrs, g)).unwrap_or(dev)
            }
            _ => dev,
        };
        if let Some(g) = gw {
            let st = out(self, Some(g));
            self.nss[ns].routes.push(RouteEntry { to: any_net(g), via: Some(g), st });
        }
        for r in routes {
            let st = out(self, r.via);
            self.nss[ns].routes.push(RouteEntry { to: r.to.trunc(), via: r.via, st });
        }
    }

    /// A source list entry's MAC; `by_name` is each endpoint's station (the first
    /// of a name, as validation keeps names unique).
    fn resolve_mac(&self, r: &MacRef, by_name: &HashMap<String, StId>) -> Option<MacId> {
        match r {
            MacRef::Mac(m) => Some(MacId::Given(*m)),
            MacRef::Endpoint(n) => by_name.get(n).map(|st| self.stations[*st].mac),
        }
    }
}

fn macvlan_mode(m: Option<ChildMode>) -> MacvlanMode {
    match m {
        Some(ChildMode::Vepa) => MacvlanMode::Vepa,
        Some(ChildMode::Private) => MacvlanMode::Private,
        Some(ChildMode::Passthru) => MacvlanMode::Passthru,
        Some(ChildMode::Source) => MacvlanMode::Source,
        _ => MacvlanMode::Bridge,
    }
}

/// The default route (0.0.0.0/0 or ::/0) of `a`'s family.
fn any_net(a: IpAddr) -> IpNet {
    match a {
        IpAddr::V4(_) => IpNet::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        IpAddr::V6(_) => IpNet::new(Ipv6Addr::UNSPECIFIED.into(), 0),
    }
    .unwrap_or_default()
}

fn default_dev_routes(addrs: &[IpNet]) -> Vec<Route> {
    let mut fams: Vec<IpAddr> = vec![Ipv4Addr::UNSPECIFIED.into()];
    if addrs.iter().any(|a| a.addr().is_ipv6()) {
        fams.push(Ipv6Addr::UNSPECIFIED.into());
    }
    fams.into_iter().map(|a| Route { to: any_net(a), via: None }).collect()
}
