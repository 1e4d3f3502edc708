//! Builds a reachability-model [`Topology`] on the real kernel, inside a
//! [`World`] of private namespaces: the switch (a bridge with its ports and
//! hairpin settings), hosts with their veth parent, children of every kind and
//! mode created straight into their own namespace, the shim, routers with a
//! second subnet, and the remotes behind them. The same description the model
//! predicts from is what gets built, so observations and predictions compare.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_kernel::ipvlan::IpvlanLinkRequest;
use nicslice_kernel::placement::ChildLink;
use nicslice_kernel::{
    KernelError, MacvlanLinkRequest, Netns, Result, Route, RouteSocket, SimpleKind, SourceMacOp,
    sysctl,
};
use nicslice_model::reach::{self, ChildKind, ChildMode, MacRef, Topology};
use nicslice_model::{Driver, IfName, MacAddr, MacvlanFlags, MacvlanMode};

use crate::by_nicslice::{self, HostAccess};
use crate::world::{World, wait_oper_up};

/// A built topology: which namespace each endpoint lives in.
pub struct Built {
    pub world: World,
    /// Endpoint name to its namespace (switch, host, child, router, remote).
    pub endpoints: HashMap<String, Netns>,
    /// Namespace names (iproute2) per endpoint, for `--keep`.
    pub netns_names: HashMap<String, String>,
    /// Why nicslice refused the first host's shim, when the scenario asked
    /// it to be refused.
    pub shim_refused: Option<String>,
}

fn bad(what: String) -> KernelError {
    KernelError::Protocol { op: "build the lab topology".into(), detail: what }
}

fn ifname(name: &str) -> Result<IfName> {
    IfName::new(name).map_err(|e| bad(e.to_string()))
}

/// Sysctls as in a fresh namespace, written out so that a distribution's
/// defaults (inherited by some kernels) cannot change the experiment.
fn neutral_sysctls(ns: &Netns, forward: bool) -> Result<()> {
    ns.run(|| -> Result<()> {
        for scope in ["all", "default"] {
            sysctl::write(&format!("net/ipv4/conf/{scope}/rp_filter"), "0")?;
            sysctl::write(&format!("net/ipv4/conf/{scope}/arp_ignore"), "0")?;
            sysctl::write(&format!("net/ipv4/conf/{scope}/arp_announce"), "0")?;
        }
        let f = if forward { "1" } else { "0" };
        sysctl::write("net/ipv4/ip_forward", f)?;
        // IPv6 may be disabled in the kernel; forwarding then does not matter.
        let _ = sysctl::write("net/ipv6/conf/all/forwarding", f);
        // A down parent keeps its IPv6 addresses as it keeps its IPv4 ones, so
        // that probes from it are sent (and go unanswered).
        for scope in ["all", "default"] {
            let _ = sysctl::write(&format!("net/ipv6/conf/{scope}/keep_addr_on_down"), "1");
        }
        Ok(())
    })?
}

fn add_routes(
    sock: &mut RouteSocket,
    oif: u32,
    gateway: Option<IpAddr>,
    routes: &[reach::Route],
) -> Result<()> {
    if let Some(gw) = gateway {
        sock.add_route(&Route::default_via(gw, oif))?;
    }
    for r in routes {
        sock.add_route(&Route { destination: r.to, gateway: r.via, oif: Some(oif), metric: None })?;
    }
    Ok(())
}

fn configure(
    sock: &mut RouteSocket,
    index: u32,
    mac: Option<MacAddr>,
    addrs: &[IpNet],
) -> Result<()> {
    if let Some(mac) = mac {
        sock.set_mac(index, mac)?;
    }
    for a in addrs {
        sock.add_address(index, *a)?;
    }
    sock.set_up(index, true)
}

struct Builder<'a> {
    t: &'a Topology,
    built: Built,
    /// Endpoint name to the interface whose MAC a source list means by it.
    mac_of: HashMap<String, String>,
    switch: Netns,
    bridge: String,
    ports: usize,
    /// Veth ends to wait for: the kernel activates their queues only when its
    /// link watcher handles the carrier change, up to a second later, and
    /// drops frames sent before. Waiting once for all of them is one second
    /// at most instead of one per veth.
    pending: Vec<(Netns, u32)>,
    /// Who makes the first host's children and shim.
    access: HostAccess,
    /// The children nicslice attaches once the world is up, with the names
    /// of their namespaces.
    by_nicslice: Vec<(usize, String)>,
}

/// Builds `t` in a new world tagged `tag`; `access` says who makes the first
/// host's children and shim.
pub fn build(t: &Topology, tag: &str, access: HostAccess) -> Result<Built> {
    t.validate().map_err(|e| bad(e.to_string()))?;
    let mut world = World::new(tag);
    let switch = world.netns("sw")?;
    neutral_sysctls(&switch, false)?;
    let bridge =
        if IfName::new(&t.switch.name).is_ok() { t.switch.name.clone() } else { "br0".into() };
    let mut sock = RouteSocket::open_in(&switch)?;
    sock.create_simple(SimpleKind::Bridge, &bridge, None)?;
    let br = sock.require_link(&bridge, "switch")?;
    configure(&mut sock, br.index, t.switch.mac, &t.switch.addresses)?;
    add_routes(&mut sock, br.index, t.switch.gateway, &t.switch.routes)?;
    let mut mac_of = HashMap::new();
    mac_of.insert(t.switch.name.clone(), bridge.clone());
    let mut netns_names = HashMap::new();
    netns_names.insert(t.switch.name.clone(), world.name_of("sw"));
    let mut endpoints = HashMap::new();
    endpoints.insert(t.switch.name.clone(), switch.clone_handle()?);
    let mut b = Builder {
        t,
        built: Built { world, endpoints, netns_names, shim_refused: None },
        mac_of,
        switch,
        bridge,
        ports: 0,
        pending: Vec::new(),
        access,
        by_nicslice: Vec::new(),
    };
    for (i, host) in t.hosts.iter().enumerate() {
        b.host(i, host)?;
    }
    for (i, router) in t.routers.iter().enumerate() {
        b.router(i, router)?;
    }
    b.source_lists()?;
    for (ns, index) in &b.pending {
        wait_oper_up(&mut RouteSocket::open_in(ns)?, *index)?;
    }
    b.nicslice_host()?;
    b.parents_down()?;
    Ok(b.built)
}

impl Builder<'_> {
    /// A veth from the bridge to `peer` in `ns`, with hairpin as the
    /// topology's port `port_name` says. Returns the peer's index.
    fn plug(&mut self, port_name: &str, ns: &Netns, peer: &str) -> Result<u32> {
        self.ports += 1;
        let port = format!("port{}", self.ports);
        let mut sw = RouteSocket::open_in(&self.switch)?;
        sw.create_veth(&port, peer, Some(ns))?;
        let p = sw.require_link(&port, "switch")?;
        let br = sw.require_link(&self.bridge, "switch")?;
        sw.set_master(p.index, Some(br.index))?;
        if self.t.switch.ports.iter().any(|x| x.name == port_name && x.hairpin) {
            sw.set_bridge_port_hairpin(p.index, true)?;
        }
        sw.set_up(p.index, true)?;
        self.pending.push((self.switch.clone_handle()?, p.index));
        let mut s = RouteSocket::open_in(ns)?;
        let index = s.require_link(peer, port_name)?.index;
        self.pending.push((ns.clone_handle()?, index));
        Ok(index)
    }

    fn namespace(&mut self, role: &str, endpoint: &str, forward: bool) -> Result<Netns> {
        let ns = self.built.world.netns(role)?;
        neutral_sysctls(&ns, forward)?;
        self.built.netns_names.insert(endpoint.to_string(), self.built.world.name_of(role));
        self.built.endpoints.insert(endpoint.to_string(), ns.clone_handle()?);
        Ok(ns)
    }

    fn host(&mut self, i: usize, host: &reach::Host) -> Result<()> {
        let ns = self.namespace(&format!("h{i}"), &host.name, false)?;
        let port_name = host.port.clone().unwrap_or_else(|| host.name.clone());
        let parent = self.plug(&port_name, &ns, &host.parent)?;
        let mut s = RouteSocket::open_in(&ns)?;
        configure(&mut s, parent, host.mac, &host.addresses)?;
        self.mac_of.insert(host.name.clone(), host.parent.clone());
        let by_nicslice = i == 0 && self.access != HostAccess::ByHand;
        if let Some(shim) = host.shim.as_ref().filter(|_| !by_nicslice) {
            // On an ipvlan parent the shim is an ipvlan in the children's mode
            // (a macvlan cannot share the parent with them).
            match host.children.first().filter(|c| c.kind.is_ipvlan()) {
                Some(c) => s.create_ipvlan(&ipvlan_request(&shim.name, parent, c)?, None)?,
                None => {
                    let req = macvlan_request(
                        Driver::Macvlan,
                        &shim.name,
                        parent,
                        MacvlanMode::Bridge,
                        shim.mac,
                    )?;
                    s.create_macvlan(&req, None)?;
                }
            }
            let l = s.require_link(&shim.name, &host.name)?;
            configure(&mut s, l.index, None, &shim.addresses)?;
            add_routes(&mut s, l.index, None, &shim.routes)?;
        }
        add_routes(&mut s, parent, None, &host.routes)?;
        if let Some(gw) = host.gateway {
            // Through whichever of parent and shim has the gateway on link.
            s.add_route(&Route { oif: None, ..Route::default_via(gw, 0) })?;
        }
        for (j, child) in host.children.iter().enumerate() {
            if by_nicslice {
                // Attached by nicslice once the world is up (`nicslice_host`).
                self.namespace(&format!("c{i}_{j}"), &child.name, false)?;
                self.mac_of.insert(child.name.clone(), "eth0".into());
                self.by_nicslice.push((j, self.built.world.name_of(&format!("c{i}_{j}"))));
            } else {
                self.child(i, j, parent, &ns, child)?;
            }
        }
        Ok(())
    }

    /// The first host's network, children and shim, made by nicslice after
    /// everything else is up (the shim's guard then sees the gateway and
    /// neighbours it must keep).
    fn nicslice_host(&mut self) -> Result<()> {
        let Some(host) = self.t.hosts.first().filter(|_| self.access != HostAccess::ByHand) else {
            return Ok(());
        };
        let children: Vec<(&reach::Child, String)> =
            self.by_nicslice.iter().map(|(j, ns)| (&host.children[*j], ns.clone())).collect();
        let host_ns = &self.built.endpoints[&host.name];
        let tag = self.built.world.prefix().to_string();
        self.built.shim_refused = by_nicslice::make(host, host_ns, &children, self.access, &tag)?;
        Ok(())
    }

    fn child(
        &mut self,
        i: usize,
        j: usize,
        parent: u32,
        host_ns: &Netns,
        c: &reach::Child,
    ) -> Result<()> {
        let ns = self.namespace(&format!("c{i}_{j}"), &c.name, false)?;
        let mut hs = RouteSocket::open_in(host_ns)?;
        let link = match c.kind {
            ChildKind::Macvlan | ChildKind::Macvtap => {
                let driver =
                    if c.kind == ChildKind::Macvtap { Driver::Macvtap } else { Driver::Macvlan };
                let mode = match c.mode.unwrap_or(ChildMode::Bridge) {
                    ChildMode::Bridge => MacvlanMode::Bridge,
                    ChildMode::Vepa => MacvlanMode::Vepa,
                    ChildMode::Private => MacvlanMode::Private,
                    ChildMode::Passthru => MacvlanMode::Passthru,
                    ChildMode::Source => MacvlanMode::Source,
                    other => {
                        return Err(bad(format!(
                            "{}: mode {} is not a macvlan mode",
                            c.name,
                            other.as_str()
                        )));
                    }
                };
                let mut req = macvlan_request(driver, "eth0", parent, mode, c.mac)?;
                req.flags = MacvlanFlags { nopromisc: c.nopromisc, nodst: c.nodst };
                ChildLink::Macvlan(req)
            }
            ChildKind::Ipvlan | ChildKind::Ipvtap => ChildLink::Ipvlan(IpvlanLinkRequest {
                tap: c.kind == ChildKind::Ipvtap,
                ..ipvlan_request("eth0", parent, c)?
            }),
        };
        link.create_in(&mut hs, &ns, &mut RouteSocket::open_in(&ns)?)?;
        let mut s = RouteSocket::open_in(&ns)?;
        let l = s.require_link("eth0", &c.name)?;
        configure(&mut s, l.index, None, &c.addresses)?;
        self.mac_of.insert(c.name.clone(), "eth0".into());
        if c.default_dev {
            for v6 in [false, true] {
                if c.addresses.iter().any(|a| a.addr().is_ipv6() == v6) {
                    let any = if v6 { "::/0" } else { "0.0.0.0/0" };
                    let destination: IpNet = any.parse().map_err(|_| bad("route".into()))?;
                    s.add_route(&Route {
                        destination,
                        gateway: None,
                        oif: Some(l.index),
                        metric: None,
                    })?;
                }
            }
        }
        add_routes(&mut s, l.index, c.gateway, &c.routes)
    }

    fn router(&mut self, i: usize, r: &reach::Router) -> Result<()> {
        let ns = self.namespace(&format!("r{i}"), &r.name, true)?;
        let port_name = r.port.clone().unwrap_or_else(|| r.name.clone());
        let lan = self.plug(&port_name, &ns, "lan0")?;
        let mut s = RouteSocket::open_in(&ns)?;
        configure(&mut s, lan, r.mac, &[r.lan])?;
        self.mac_of.insert(r.name.clone(), "lan0".into());
        s.create_simple(SimpleKind::Bridge, "far0", None)?;
        let far = s.require_link("far0", &r.name)?;
        configure(&mut s, far.index, None, &[r.far])?;
        add_routes(&mut s, lan, r.gateway, &r.routes)?;
        let remotes: Vec<(usize, &reach::Remote)> = self
            .t
            .remotes
            .iter()
            .enumerate()
            .filter(|(_, x)| x.router.as_deref().unwrap_or(&r.name) == r.name)
            .collect();
        for (k, remote) in remotes {
            let rns = self.namespace(&format!("x{k}"), &remote.name, false)?;
            let port = format!("rx{k}");
            s.create_veth(&port, "eth0", Some(&rns))?;
            let p = s.require_link(&port, &r.name)?;
            s.set_master(p.index, Some(far.index))?;
            s.set_up(p.index, true)?;
            let mut rs = RouteSocket::open_in(&rns)?;
            let e = rs.require_link("eth0", &remote.name)?;
            configure(&mut rs, e.index, None, &remote.addresses)?;
            self.pending.push((rns.clone_handle()?, e.index));
            self.pending.push((ns.clone_handle()?, p.index));
            add_routes(&mut rs, e.index, remote.gateway, &remote.routes)?;
        }
        Ok(())
    }

    /// Source-mode lists may name any endpoint, so they are set once every
    /// MAC is known.
    fn source_lists(&mut self) -> Result<()> {
        for host in &self.t.hosts {
            for c in host.children.iter().filter(|c| !c.source_macs.is_empty()) {
                let macs = c
                    .source_macs
                    .iter()
                    .map(|m| match m {
                        MacRef::Mac(mac) => Ok(*mac),
                        MacRef::Endpoint(name) => self.live_mac(name),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let ns = &self.built.endpoints[&c.name];
                let mut s = RouteSocket::open_in(ns)?;
                let l = s.require_link("eth0", &c.name)?;
                let driver =
                    if c.kind == ChildKind::Macvtap { Driver::Macvtap } else { Driver::Macvlan };
                s.change_source_macs(l.index, driver, SourceMacOp::Set, &macs)?;
            }
        }
        Ok(())
    }

    /// The MAC an endpoint has now: read live, because a bridge changes its
    /// MAC as ports join it (unless one was set).
    fn live_mac(&self, endpoint: &str) -> Result<MacAddr> {
        let missing = || bad(format!("no MAC known for endpoint {endpoint}"));
        let ifname = self.mac_of.get(endpoint).ok_or_else(missing)?;
        let ns = self.built.endpoints.get(endpoint).ok_or_else(missing)?;
        RouteSocket::open_in(ns)?.require_link(ifname, endpoint)?.mac.ok_or_else(missing)
    }

    /// Hosts marked down get their switch link cut last, after everything
    /// was built through it.
    fn parents_down(&mut self) -> Result<()> {
        for host in self.t.hosts.iter().filter(|h| !h.up) {
            let mut s = RouteSocket::open_in(&self.built.endpoints[&host.name])?;
            let p = s.require_link(&host.parent, &host.name)?;
            s.set_up(p.index, false)?;
        }
        Ok(())
    }
}

/// An ipvlan link `name` on `parent` in child `c`'s mode and flag.
fn ipvlan_request(name: &str, parent: u32, c: &reach::Child) -> Result<IpvlanLinkRequest> {
    let mode = match c.mode.unwrap_or(ChildMode::L2) {
        ChildMode::L2 => reach::IpvlanMode::L2,
        ChildMode::L3 => reach::IpvlanMode::L3,
        ChildMode::L3s => reach::IpvlanMode::L3s,
        other => {
            return Err(bad(format!("{}: mode {} is not an ipvlan mode", c.name, other.as_str())));
        }
    };
    Ok(IpvlanLinkRequest {
        tap: false,
        name: ifname(name)?,
        parent_index: parent,
        mode,
        flag: c.flag.unwrap_or_default(),
        mtu: None,
    })
}

fn macvlan_request(
    driver: Driver,
    name: &str,
    parent: u32,
    mode: MacvlanMode,
    mac: Option<MacAddr>,
) -> Result<MacvlanLinkRequest> {
    Ok(MacvlanLinkRequest { mac, ..MacvlanLinkRequest::new(driver, ifname(name)?, parent, mode) })
}
