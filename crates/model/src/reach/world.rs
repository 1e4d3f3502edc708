//! The derived view the walkers use: namespaces, the interfaces in them ("stations")
//! on their L2 segment, MAC identities, switch ports and routing tables, built from a
//! validated topology (by `build.rs`), with the indexes `index.rs` adds so that every
//! lookup here costs the same whatever the number of children. Lookups only; the
//! kernel behaviour lives in `l2.rs` and `l3.rs`.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::error::TopologyError;
use super::topology::{IpvlanFlag, IpvlanMode};
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
    Slave {
        host: usize,
        driver: Driver,
        shim: bool,
    },
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
    /// The routes by destination, longest prefix first: (prefix length, IPv4,
    /// destination -> indexes into `routes` in creation order). Built by `index.rs`.
    pub by_prefix: Vec<(u8, bool, HashMap<IpNet, Vec<usize>>)>,
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
    /// Derived by `index.rs` from `slaves`:
    /// the mode of the host's ipvlan children, when they are ipvlan;
    pub ipvlan: Option<IpvlanMode>,
    /// its passthru child;
    pub passthru: Option<StId>,
    /// the first macvlan child (or shim) with each MAC;
    pub macvlan_by_mac: HashMap<MacId, StId>,
    /// the source-mode children listing each MAC, with their nodst flag.
    pub listeners: HashMap<MacId, Vec<(StId, bool)>>,
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
    /// Built by `index.rs`: the station carrying each address (validation makes
    /// addresses unique), ...
    pub owner: HashMap<IpAddr, StId>,
    /// ... each endpoint's index in `eps` by name, ...
    pub ep_by_name: HashMap<String, usize>,
    /// ... the first endpoint of each namespace, ...
    pub ns_ep: Vec<Option<usize>>,
    /// ... and every router's legs (LAN and far).
    pub router_legs: Vec<StId>,
    /// Steps the walkers took (frames decided, neighbours asked, route buckets and
    /// hops looked at): the cost of a prediction, which must not grow with the
    /// number of endpoints (a test holds a matrix to a constant per pair).
    pub steps: Cell<u64>,
}

impl World {
    /// Counts one step of a walk.
    pub fn step(&self) {
        self.steps.set(self.steps.get() + 1);
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
        let s = self.owner_of(ip?)?;
        matches!(self.stations[s].role, Role::Slave { host, .. } if host == h).then_some(s)
    }

    /// The station carrying `ip`.
    pub fn owner_of(&self, ip: IpAddr) -> Option<StId> {
        self.owner.get(&ip).copied()
    }

    pub fn has_addr(&self, st: StId, ip: IpAddr) -> bool {
        self.owner_of(ip) == Some(st)
    }

    pub fn ns_owns(&self, ns: NsId, ip: IpAddr) -> bool {
        self.owner_of(ip).is_some_and(|s| self.stations[s].ns == ns)
    }

    /// Longest-prefix match; on a tie the route created first wins (the kernel keeps
    /// the older of two equal routes first). With `oif`, only routes out of it.
    pub fn lookup(&self, ns: NsId, dst: IpAddr, oif: Option<StId>) -> Option<&RouteEntry> {
        let routes = &self.nss[ns].routes;
        for (len, v4, by_dst) in &self.nss[ns].by_prefix {
            self.step();
            if *v4 != dst.is_ipv4() {
                continue;
            }
            let Some(ids) = IpNet::new(dst, *len).ok().and_then(|n| by_dst.get(&n.trunc())) else {
                continue;
            };
            if let Some(i) = ids.iter().find(|i| oif.is_none_or(|o| routes[**i].st == o)) {
                return Some(&routes[*i]);
            }
        }
        None
    }

    pub fn addr_on(&self, st: StId, v4: bool) -> Option<IpAddr> {
        self.stations[st].addrs.iter().map(|a| a.addr()).find(|a| a.is_ipv4() == v4)
    }

    pub fn any_addr(&self, ns: NsId, v4: bool) -> Option<IpAddr> {
        self.nss[ns].stations.iter().find_map(|s| self.addr_on(*s, v4))
    }

    pub fn endpoint(&self, name: &str) -> Result<&EpView, TopologyError> {
        self.ep_by_name.get(name).map(|i| &self.eps[*i]).ok_or_else(|| {
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
