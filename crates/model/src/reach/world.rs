//! The derived view the walkers use: namespaces, the interfaces in them ("stations")
//! on their L2 segment, MAC identities, switch ports and routing tables, built from a
//! validated [`Topology`]. Lookups only; the kernel behaviour lives in `l2.rs`/`l3.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::error::TopologyError;
use super::topology::{ChildMode, IpvlanFlag, IpvlanMode, MacRef, Route, Topology};
use super::validate::{self, on_link};
use crate::link::{MacAddr, MacvlanMode};

pub(crate) type StId = usize;
pub(crate) type NsId = usize;

/// An L2 broadcast domain: the switch LAN, or the far side of router `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Segment {
    Lan,
    Far(usize),
}

/// Who a MAC address is: a configured value, or the automatic one of a station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MacId {
    Given(MacAddr),
    Auto(StId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Driver {
    Macvlan { mode: MacvlanMode, nodst: bool, list: Vec<MacId> },
    Ipvlan { mode: IpvlanMode, flag: IpvlanFlag },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    Bridge,
    RouterLan(usize),
    RouterFar(usize),
    Remote(usize),
    Parent(usize),
    /// A child of host `host`'s parent (the shim too).
    Slave { host: usize, driver: Driver, shim: bool },
}

/// One interface: where it lives, what it is, where it plugs in, its addresses.
#[derive(Debug, Clone)]
pub(crate) struct Station {
    pub label: String,
    pub ns: NsId,
    pub role: Role,
    pub seg: Segment,
    pub port: Option<usize>,
    pub addrs: Vec<IpNet>,
    pub mac: MacId,
}

#[derive(Debug, Clone)]
pub(crate) struct RouteEntry {
    pub to: IpNet,
    pub via: Option<IpAddr>,
    pub st: StId,
}

#[derive(Debug, Clone)]
pub(crate) struct Ns {
    pub stations: Vec<StId>,
    pub routes: Vec<RouteEntry>,
    pub forwarding: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct HostView {
    pub name: String,
    pub parent_if: String,
    pub up: bool,
    pub port: usize,
    pub parent: StId,
    pub slaves: Vec<StId>,
    pub shim: Option<StId>,
}

#[derive(Debug, Clone)]
pub(crate) struct PortView {
    pub name: String,
    pub hairpin: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EpKind {
    Switch,
    Host(usize),
    Child(usize),
    Router(usize),
    Remote,
}

/// An endpoint: a name the user pings from or to, its namespace and MAC station.
#[derive(Debug, Clone)]
pub(crate) struct EpView {
    pub name: String,
    pub kind: EpKind,
    pub ns: NsId,
    pub st: StId,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct World {
    pub stations: Vec<Station>,
    pub nss: Vec<Ns>,
    pub hosts: Vec<HostView>,
    pub ports: Vec<PortView>,
    pub eps: Vec<EpView>,
}

impl World {
    pub fn build(t: &Topology) -> Result<World, TopologyError> {
        validate::check(t)?;
        let mut w = World::default();
        w.ports = t.switch.ports.iter().map(|p| PortView { name: p.name.clone(), hairpin: p.hairpin }).collect();
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
            w.hosts.push(HostView { name, parent_if, up, port, parent, slaves, shim });
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
        for (st, refs) in lists {
            let list: Vec<MacId> = refs.iter().filter_map(|r| w.resolve_mac(r)).collect();
            if let Role::Slave { driver: Driver::Macvlan { list: l, .. }, .. } =
                &mut w.stations[st].role
            {
                *l = list;
            }
        }
        Ok(w)
    }

    fn add_ns(&mut self, forwarding: bool) -> NsId {
        self.nss.push(Ns { stations: Vec::new(), routes: Vec::new(), forwarding });
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
        let (label, addrs, seg, mac) = (label.to_string(), addrs.to_vec(), Segment::Lan, MacId::Auto(id));
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

    fn resolve_mac(&self, r: &MacRef) -> Option<MacId> {
        match r {
            MacRef::Mac(m) => Some(MacId::Given(*m)),
            MacRef::Endpoint(n) => {
                self.eps.iter().find(|e| &e.name == n).map(|e| self.stations[e.st].mac)
            }
        }
    }

    pub fn st(&self, id: StId) -> &Station {
        &self.stations[id]
    }

    pub fn host_of(&self, st: StId) -> Option<usize> {
        match self.stations[st].role {
            Role::Parent(h) | Role::Slave { host: h, .. } => Some(h),
            _ => None,
        }
    }

    /// The host whose parent is down, when `st` belongs to one.
    pub fn down_host(&self, st: StId) -> Option<usize> {
        self.host_of(st).filter(|h| !self.hosts[*h].up)
    }

    pub fn driver(&self, st: StId) -> Option<&Driver> {
        match &self.stations[st].role {
            Role::Slave { driver, .. } => Some(driver),
            _ => None,
        }
    }

    pub fn macvlan_mode(&self, st: StId) -> Option<MacvlanMode> {
        match self.driver(st) {
            Some(Driver::Macvlan { mode, .. }) => Some(*mode),
            _ => None,
        }
    }

    pub fn is_shim(&self, st: StId) -> bool {
        matches!(self.stations[st].role, Role::Slave { shim: true, .. })
    }

    /// ipvlan l3/l3s children: NOARP, routed through the parent's namespace.
    pub fn l3_slave(&self, st: StId) -> Option<(usize, IpvlanFlag)> {
        match &self.stations[st].role {
            Role::Slave { host, driver: Driver::Ipvlan { mode, flag }, .. }
                if *mode != IpvlanMode::L2 =>
            {
                Some((*host, *flag))
            }
            _ => None,
        }
    }

    /// The child (or shim) of host `h` that carries `ip` (ipvlan delivers by address).
    pub fn slave_with(&self, h: usize, ip: Option<IpAddr>) -> Option<StId> {
        let ip = ip?;
        self.hosts[h].slaves.iter().copied().find(|s| self.has_addr(*s, ip))
    }

    pub fn has_addr(&self, st: StId, ip: IpAddr) -> bool {
        self.stations[st].addrs.iter().any(|a| a.addr() == ip)
    }

    pub fn ns_owns(&self, ns: NsId, ip: IpAddr) -> bool {
        self.nss[ns].stations.iter().any(|s| self.has_addr(*s, ip))
    }

    /// Longest-prefix match; on a tie the route created first wins (the kernel keeps
    /// the older of two equal routes first).
    pub fn lookup(&self, ns: NsId, dst: IpAddr, oif: Option<StId>) -> Option<&RouteEntry> {
        let fits = |r: &&RouteEntry| r.to.contains(&dst) && oif.is_none_or(|o| r.st == o);
        let mut best: Option<&RouteEntry> = None;
        for r in self.nss[ns].routes.iter().filter(fits) {
            if best.is_none_or(|b| r.to.prefix_len() > b.to.prefix_len()) {
                best = Some(r);
            }
        }
        best
    }

    pub fn addr_on(&self, st: StId, v4: bool) -> Option<IpAddr> {
        self.stations[st].addrs.iter().map(|a| a.addr()).find(|a| a.is_ipv4() == v4)
    }

    pub fn any_addr(&self, ns: NsId, v4: bool) -> Option<IpAddr> {
        self.nss[ns].stations.iter().find_map(|s| self.addr_on(*s, v4))
    }

    pub fn endpoint(&self, name: &str) -> Result<&EpView, TopologyError> {
        self.eps.iter().find(|e| e.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.eps.iter().map(|e| e.name.as_str()).collect();
            TopologyError::UnknownEndpoint(name.to_string(), known.join(", "))
        })
    }

    /// The address a probe to this endpoint is sent to: its first address (a host's
    /// parent first, then its shim; a router's LAN leg).
    pub fn target_addr(&self, ep: &EpView) -> Option<IpAddr> {
        if let EpKind::Host(h) = ep.kind {
            let host = &self.hosts[h];
            let parent = self.stations[host.parent].addrs.first();
            let shim = host.shim.and_then(|s| self.stations[s].addrs.first());
            return parent.or(shim).map(|a| a.addr());
        }
        self.stations[ep.st].addrs.first().map(|a| a.addr())
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
