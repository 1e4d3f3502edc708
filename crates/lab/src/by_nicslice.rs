//! A host whose children and shim nicslice makes, for the scenarios that
//! prove what nicslice builds rather than a copy made by hand: the host's
//! network is created, its children attached and its shim added through the
//! engine (what `nicslice network create`, `attach` and `shim add` run), in
//! a state database of the world's own that is removed once the world is
//! built. Where the scenario says the model must refuse the shim, `shim add`
//! must fail with the model's reason, and the world stays without one.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use nicslice_engine::{AttachRequest, Engine, EngineError, Faults, ParentRequest, ShimRequest};
use nicslice_kernel::{KernelError, Netns, NetnsTarget, Result};
use nicslice_model::reach::{self, ChildKind, ChildMode, IpvlanMode};
use nicslice_model::{Driver, IfName, LinkMode, MacvlanMode, NetworkSpec, SubnetSpec};

/// Who makes the first host's children and shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAccess {
    /// The lab, as the topology says (seed 000's hand-made mac0).
    ByHand,
    /// nicslice: the topology's shim is what `shim add` (with the shim's
    /// addresses as `--ip`) must make, its routes one per child address.
    Nicslice,
    /// nicslice, whose `shim add` must be refused with a reason containing
    /// these words; the topology has no shim.
    Refused(&'static str),
}

/// The network nicslice's engine knows the host's children by.
const NETWORK: &str = "lab";

fn bad(what: String) -> KernelError {
    KernelError::Protocol { op: "build the lab topology with nicslice".into(), detail: what }
}

fn engine_error(what: &str) -> impl Fn(EngineError) -> KernelError + '_ {
    move |e| bad(format!("{what}: {e}"))
}

/// The state database, removed with its companions when dropped.
struct State(PathBuf);

impl Drop for State {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal", "-lock", ".dhcp-agent.lock"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

fn link_mode(c: &reach::Child) -> Result<(Driver, LinkMode)> {
    let mode = c.mode.unwrap_or(if c.kind.is_ipvlan() { ChildMode::L2 } else { ChildMode::Bridge });
    let macvlan = |driver, mode| Ok((driver, LinkMode::Macvlan(mode)));
    let ipvlan = |driver, mode| Ok((driver, LinkMode::Ipvlan(mode)));
    let driver = match c.kind {
        ChildKind::Macvlan => Driver::Macvlan,
        ChildKind::Macvtap => Driver::Macvtap,
        ChildKind::Ipvlan => Driver::Ipvlan,
        ChildKind::Ipvtap => Driver::Ipvtap,
    };
    match mode {
        ChildMode::Bridge => macvlan(driver, MacvlanMode::Bridge),
        ChildMode::Vepa => macvlan(driver, MacvlanMode::Vepa),
        ChildMode::Private => macvlan(driver, MacvlanMode::Private),
        ChildMode::Passthru => macvlan(driver, MacvlanMode::Passthru),
        ChildMode::Source => macvlan(driver, MacvlanMode::Source),
        ChildMode::L2 => ipvlan(driver, IpvlanMode::L2),
        ChildMode::L3 => ipvlan(driver, IpvlanMode::L3),
        ChildMode::L3s => ipvlan(driver, IpvlanMode::L3s),
    }
}

/// The network of `host`'s children: their kind, mode and flag (one for
/// all), a subnet per family of their addresses, and their gateway.
fn network_spec(host: &reach::Host) -> Result<NetworkSpec> {
    let first = host.children.first().ok_or_else(|| bad(format!("{} has no child", host.name)))?;
    let (driver, mode) = link_mode(first)?;
    let parent = IfName::new(&host.parent).map_err(|e| bad(e.to_string()))?;
    let name = NETWORK.parse().map_err(|e| bad(format!("{e}")))?;
    let mut spec = NetworkSpec::new(name, driver, parent, mode);
    spec.ipvlan_flag = first.flag.unwrap_or_default();
    for c in &host.children {
        let plain = c.routes.is_empty() && c.source_macs.is_empty() && !c.nodst && !c.nopromisc;
        if link_mode(c)? != (driver, mode) || c.flag != first.flag || !plain {
            return Err(bad(format!(
                "{}: nicslice makes the children of one network alike, without routes, source lists or flags",
                c.name
            )));
        }
        // An l3 child's `default dev` is the engine's default route on a
        // network without a gateway.
        if c.default_dev && c.gateway.is_some() {
            return Err(bad(format!("{}: a gateway and `default dev` both", c.name)));
        }
    }
    for v6 in [false, true] {
        let Some(address) =
            host.children.iter().flat_map(|c| &c.addresses).find(|a| a.addr().is_ipv6() == v6)
        else {
            continue;
        };
        let mut subnet = SubnetSpec::new(address.trunc());
        let gateways: Vec<IpAddr> =
            host.children.iter().filter_map(|c| c.gateway).filter(|g| g.is_ipv6() == v6).collect();
        if gateways.windows(2).any(|w| w[0] != w[1]) {
            return Err(bad(format!("{}'s children have different gateways", host.name)));
        }
        subnet.gateway = gateways.first().copied();
        spec.subnets.push(subnet);
    }
    Ok(spec)
}

/// Makes `host`'s network in `host_ns`, attaches each child (with the
/// namespace named beside it), and adds or must be refused the shim as
/// `access` says. Returns the refusal's words, when refused. `tag` names the
/// state database.
pub fn make(
    host: &reach::Host,
    host_ns: &Netns,
    children: &[(&reach::Child, String)],
    access: HostAccess,
    tag: &str,
) -> Result<Option<String>> {
    let state = State(std::env::temp_dir().join(format!("{tag}-nicslice.db")));
    let mut engine = Engine::open(&state.0, host_ns.clone_handle()?, Faults::none())
        .map_err(engine_error("open nicslice's state"))?;
    engine
        .create_network(network_spec(host)?, ParentRequest::Existing)
        .map_err(engine_error("nicslice network create"))?;
    for (c, netns) in children {
        let req = AttachRequest {
            network: NETWORK.to_string(),
            netns: NetnsTarget::Named(netns.clone()),
            ifname: IfName::new("eth0").map_err(|e| bad(e.to_string()))?,
            ips: c.addresses.iter().map(IpNet::addr).collect(),
            mac: c.mac,
            source_macs: Vec::new(),
            default_route: c.gateway.is_some() || c.default_dev,
            routes: Vec::new(),
            dhcp: Default::default(),
        };
        engine.attach(req).map_err(engine_error(&format!("nicslice attach {}", c.name)))?;
    }
    match (access, &host.shim) {
        (HostAccess::ByHand, _) => Ok(None),
        (HostAccess::Nicslice, None) => Err(bad(format!("{} has no shim to make", host.name))),
        (HostAccess::Nicslice, Some(shim)) => {
            let req = ShimRequest {
                network: NETWORK.to_string(),
                name: Some(IfName::new(&shim.name).map_err(|e| bad(e.to_string()))?),
                ips: shim.addresses.iter().map(IpNet::addr).collect(),
                route_range: false,
            };
            let made = engine.add_shim(req).map_err(engine_error("nicslice shim add"))?;
            // What nicslice made is what the model is asked about.
            let mut routed = made.routes.clone();
            let mut expected: Vec<IpAddr> = shim.routes.iter().map(|r| r.to.addr()).collect();
            routed.sort();
            expected.sort();
            if routed != expected || made.addresses.len() != shim.addresses.len() {
                return Err(bad(format!(
                    "nicslice shim add routed {routed:?} with addresses {:?}; the topology says {expected:?} and {:?}",
                    made.addresses, shim.addresses
                )));
            }
            Ok(None)
        }
        (HostAccess::Refused(_), Some(_)) => {
            Err(bad(format!("{}: a shim the model must refuse is not in the topology", host.name)))
        }
        (HostAccess::Refused(words), None) => {
            let req = ShimRequest {
                network: NETWORK.to_string(),
                name: None,
                ips: Vec::new(),
                route_range: false,
            };
            match engine.add_shim(req) {
                Err(EngineError::Invalid(why)) if why.contains(words) => Ok(Some(why)),
                Err(e) => Err(bad(format!(
                    "nicslice shim add failed otherwise than refused for {words:?}: {e}"
                ))),
                Ok(v) => Err(bad(format!(
                    "nicslice shim add made {} where the model refuses it",
                    v.name
                ))),
            }
        }
    }
}
