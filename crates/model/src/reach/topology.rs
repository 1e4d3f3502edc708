//! The serde description of a topology for the reachability model: a switch (a Linux
//! bridge) with ports, hosts with one parent and their children, an optional shim,
//! routers and the remote endpoints behind them. Plain data with defaults; checks
//! live in `validate.rs`, the derived view in `world.rs`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use crate::link::{IpvlanFlag, IpvlanMode};
use crate::link::{MacAddr, MacvlanMode};

/// An endpoint by name: the switch, a host, a child, a router or a remote.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EndpointRef(pub String);

impl From<&str> for EndpointRef {
    fn from(s: &str) -> Self {
        EndpointRef(s.to_string())
    }
}

impl fmt::Display for EndpointRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A whole topology, as read from TOML or JSON by `nicslice explain` and built on the
/// real kernel by `nicslice lab`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topology {
    /// Free text shown by the CLI.
    pub description: String,
    pub switch: Switch,
    pub hosts: Vec<Host>,
    pub routers: Vec<Router>,
    pub remotes: Vec<Remote>,
}

/// The switch: a Linux bridge. Its own interface may carry addresses (seed 003's br0
/// with 192.168.0.1/24), which makes it an endpoint named `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Switch {
    pub name: String,
    pub addresses: Vec<IpNet>,
    pub mac: Option<MacAddr>,
    pub gateway: Option<IpAddr>,
    pub routes: Vec<Route>,
    pub ports: Vec<Port>,
}

impl Default for Switch {
    fn default() -> Self {
        Switch {
            name: "switch".to_string(),
            addresses: Vec::new(),
            mac: None,
            gateway: None,
            routes: Vec::new(),
            ports: Vec::new(),
        }
    }
}

/// A bridge port. `hairpin` reflects frames back out of the port they came in on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub name: String,
    #[serde(default)]
    pub hairpin: bool,
}

/// A host: a namespace whose one Ethernet parent is plugged into a switch port.
/// The host endpoint pings the parent's first address (else the shim's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
    /// Switch port name; when absent the host gets its own port (named after it,
    /// hairpin off).
    #[serde(default)]
    pub port: Option<String>,
    /// The parent's interface name.
    #[serde(default = "default_parent")]
    pub parent: String,
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// false: the parent (or its link to the switch) is down.
    #[serde(default = "yes")]
    pub up: bool,
    /// Default route of the host namespace, through the parent or the shim
    /// (whichever has the gateway on link).
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Extra routes through the parent.
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub children: Vec<Child>,
    #[serde(default)]
    pub shim: Option<Shim>,
}

/// One child of a host's parent, in a namespace of its own (macvtap/ipvtap children
/// stand for the guest behind the tap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Child {
    pub name: String,
    #[serde(default)]
    pub kind: ChildKind,
    /// Default: bridge for macvlan/macvtap, l2 for ipvlan/ipvtap.
    #[serde(default)]
    pub mode: Option<ChildMode>,
    /// ipvlan only; default bridge (no flag).
    #[serde(default)]
    pub flag: Option<IpvlanFlag>,
    #[serde(default)]
    pub nopromisc: bool,
    /// Source mode only.
    #[serde(default)]
    pub nodst: bool,
    /// Source mode only: MAC addresses or endpoint names whose frames it receives.
    #[serde(default)]
    pub source_macs: Vec<MacRef>,
    /// macvlan only (ipvlan children share the parent's; passthru takes it).
    #[serde(default)]
    pub mac: Option<MacAddr>,
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// A default route through the device itself (`ip route add default dev X`,
    /// seed 001's ipvlan l3 children).
    #[serde(default)]
    pub default_dev: bool,
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// A child in the host's own namespace on the same parent, with an address and routes
/// to the children's range: the fix for host <-> child. Bridge-mode macvlan on a
/// macvlan parent; on an ipvlan parent an ipvlan child in the parent's mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shim {
    #[serde(default = "default_shim")]
    pub name: String,
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    #[serde(default)]
    pub mac: Option<MacAddr>,
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// A router namespace: one leg on the switch LAN, one on a second subnet where the
/// remote endpoints live. It forwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Router {
    pub name: String,
    #[serde(default)]
    pub port: Option<String>,
    pub lan: IpNet,
    pub far: IpNet,
    #[serde(default)]
    pub mac: Option<MacAddr>,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// An endpoint on a router's second subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remote {
    pub name: String,
    /// Default: the only router.
    #[serde(default)]
    pub router: Option<String>,
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// A static route; without `via` it is on link through the interface it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub to: IpNet,
    #[serde(default)]
    pub via: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildKind {
    #[default]
    Macvlan,
    Macvtap,
    Ipvlan,
    Ipvtap,
}

impl ChildKind {
    pub fn is_ipvlan(self) -> bool {
        matches!(self, ChildKind::Ipvlan | ChildKind::Ipvtap)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::Macvlan => "macvlan",
            ChildKind::Macvtap => "macvtap",
            ChildKind::Ipvlan => "ipvlan",
            ChildKind::Ipvtap => "ipvtap",
        }
    }
}

/// Every mode name a child may give; which ones fit depends on its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildMode {
    Bridge,
    Vepa,
    Private,
    Passthru,
    Source,
    L2,
    L3,
    L3s,
}

impl ChildMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildMode::Bridge => "bridge",
            ChildMode::Vepa => "vepa",
            ChildMode::Private => "private",
            ChildMode::Passthru => "passthru",
            ChildMode::Source => "source",
            ChildMode::L2 => "l2",
            ChildMode::L3 => "l3",
            ChildMode::L3s => "l3s",
        }
    }
}

impl From<MacvlanMode> for ChildMode {
    fn from(m: MacvlanMode) -> Self {
        match m {
            MacvlanMode::Bridge => ChildMode::Bridge,
            MacvlanMode::Vepa => ChildMode::Vepa,
            MacvlanMode::Private => ChildMode::Private,
            MacvlanMode::Passthru => ChildMode::Passthru,
            MacvlanMode::Source => ChildMode::Source,
        }
    }
}

impl From<crate::LinkMode> for ChildMode {
    fn from(m: crate::LinkMode) -> Self {
        match m {
            crate::LinkMode::Macvlan(m) => m.into(),
            crate::LinkMode::Ipvlan(m) => m.into(),
        }
    }
}

impl From<IpvlanMode> for ChildMode {
    fn from(m: IpvlanMode) -> Self {
        match m {
            IpvlanMode::L2 => ChildMode::L2,
            IpvlanMode::L3 => ChildMode::L3,
            IpvlanMode::L3s => ChildMode::L3s,
        }
    }
}

/// A source-mode list entry: a MAC address, or the name of an endpoint whose MAC is
/// meant (`"br0"`, `"node2"`); names keep topologies independent of random MACs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum MacRef {
    Mac(MacAddr),
    Endpoint(String),
}

impl FromStr for MacRef {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(MacRef::from(s.to_string()))
    }
}

impl From<String> for MacRef {
    fn from(s: String) -> Self {
        match s.parse::<MacAddr>() {
            Ok(m) => MacRef::Mac(m),
            Err(_) => MacRef::Endpoint(s),
        }
    }
}

impl From<MacRef> for String {
    fn from(m: MacRef) -> String {
        m.to_string()
    }
}

impl fmt::Display for MacRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MacRef::Mac(m) => m.fmt(f),
            MacRef::Endpoint(n) => f.write_str(n),
        }
    }
}

fn default_parent() -> String {
    "eth0".to_string()
}

fn default_shim() -> String {
    "shim".to_string()
}

fn yes() -> bool {
    true
}
