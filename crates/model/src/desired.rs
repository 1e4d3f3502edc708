//! The desired state `nicslice apply FILE` converges to: networks (every
//! option of `network create`), shims (`shim add`) and endpoints (`attach`)
//! in named namespaces, as the file declares them (serde, unknown keys
//! refused), and their checks: each value parsed into the model's own types
//! with an error that names the key, and the rules between entries (names
//! unique, a shim or endpoint only on a network the file declares).
//!
//! Pure: the file's text is parsed by the caller; nothing here looks at the
//! kernel or the record (the engine's `converge` does).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    Driver, EtcdTls, FleetSpec, IfName, IpvlanMode, LinkMode, MacAddr, NetworkName, NetworkSpec,
    ProbeSpec, RouteRequest, SubnetSpec, ValidNetwork,
};

/// The whole file: `[[network]]`, `[[shim]]` and `[[endpoint]]` tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredFile {
    #[serde(default, rename = "network")]
    pub networks: Vec<NetworkDecl>,
    #[serde(default, rename = "shim")]
    pub shims: Vec<ShimDecl>,
    #[serde(default, rename = "endpoint")]
    pub endpoints: Vec<EndpointDecl>,
}

/// One `[[network]]`: the options of `nicslice network create`, by the same
/// names (`ip-range` is `ip_range`, `--subnet/--gateway` a `[[network.subnet]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkDecl {
    pub name: String,
    #[serde(default = "NetworkDecl::default_driver")]
    pub driver: String,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub vlan: Option<u16>,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default, rename = "subnet")]
    pub subnets: Vec<SubnetDecl>,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub bcqueuelen: Option<u32>,
    #[serde(default)]
    pub bclim: Option<i32>,
    #[serde(default)]
    pub promisc: bool,
    /// Shorthand for a `[[shim]]` with the defaults.
    #[serde(default)]
    pub host_access: bool,
    /// Milliseconds to wait for an answer when probing an address.
    #[serde(default)]
    pub probe_conflicts: Option<u32>,
    #[serde(default)]
    pub probe_cooldown: Option<u64>,
    /// One source or several, as `--ipam` takes them: `"dhcp,dhcp6"` or
    /// `["dhcp", "dhcp6"]`.
    #[serde(default = "NetworkDecl::default_ipam", deserialize_with = "one_or_many")]
    pub ipam: String,
    /// With `ipam = "etcd"`: the etcd cluster's client URLs (`--etcd`), a
    /// list or one comma-separated string.
    #[serde(default, deserialize_with = "urls")]
    pub etcd: Vec<String>,
    #[serde(default)]
    pub etcd_block: Option<u32>,
    #[serde(default)]
    pub etcd_ttl: Option<u64>,
    #[serde(default)]
    pub etcd_cooldown: Option<u64>,
    /// TLS files (PEM); a relative path is taken from the file's directory
    /// (see [`DesiredFile::resolve_paths`]).
    #[serde(default)]
    pub etcd_cert: Option<PathBuf>,
    #[serde(default)]
    pub etcd_key: Option<PathBuf>,
    #[serde(default)]
    pub etcd_ca: Option<PathBuf>,
}

/// A string or a list of strings, joined with commas: `ipam = "dhcp,dhcp6"`
/// and `ipam = ["dhcp", "dhcp6"]` are the same, as `--ipam` takes both.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn joined(self) -> String {
        match self {
            OneOrMany::One(s) => s,
            OneOrMany::Many(v) => v.join(","),
        }
    }
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    OneOrMany::deserialize(d).map(OneOrMany::joined)
}

fn urls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let joined = OneOrMany::deserialize(d)?.joined();
    Ok(joined.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect())
}

/// One `[[network.subnet]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetDecl {
    pub subnet: IpNet,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    #[serde(default)]
    pub ip_range: Option<IpNet>,
    /// Reserved addresses by name: `aux_addresses = { router = "192.168.0.2" }`.
    #[serde(default)]
    pub aux_addresses: BTreeMap<String, IpAddr>,
    #[serde(default)]
    pub link_local: bool,
}

/// One `[[shim]]`: host access to a network's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShimDecl {
    pub network: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    /// Route the network's allocation ranges through the shim (`shim add
    /// --route-range`).
    #[serde(default)]
    pub route_range: bool,
}

/// One `[[endpoint]]`: an interface in a named namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointDecl {
    pub network: String,
    /// An iproute2 name, or the path of a namespace file.
    pub netns: String,
    /// nicslice makes the namespace (as `ip netns add`) if it is missing.
    #[serde(default)]
    pub create: bool,
    #[serde(default = "EndpointDecl::default_ifname")]
    pub ifname: String,
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub source_macs: Vec<String>,
    #[serde(default = "EndpointDecl::default_route")]
    pub default_route: bool,
    /// As `--route`: `DEST` or `DEST,via=GATEWAY`.
    #[serde(default)]
    pub routes: Vec<String>,
}

impl NetworkDecl {
    fn default_driver() -> String {
        "macvlan".into()
    }
    fn default_ipam() -> String {
        "pool".into()
    }
}

impl EndpointDecl {
    fn default_ifname() -> String {
        "eth0".into()
    }
    fn default_route() -> bool {
        true
    }
}

/// A value of the file that is wrong: `key` names it as a path
/// (`network[0].mode`, `endpoint[2].ips`), `message` says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for DeclError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for DeclError {}

fn at(key: String) -> impl Fn(String) -> DeclError {
    move |message| DeclError { key: key.clone(), message }
}

/// How the parent of a declared network comes to exist (the engine names
/// the parent: `eth0.50` for a VLAN, `nsl-NAME` for an internal one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentChoice {
    /// The named interface (`eth0.50` missing on an existing `eth0` is made).
    Existing(IfName),
    /// An 802.1Q sub-interface `id` on `lower`.
    Vlan { lower: IfName, id: u16 },
    /// A dummy link nicslice makes: named as given, or after the network.
    Dummy(Option<IfName>),
}

/// A declared network, checked: its name, how its parent comes to exist,
/// and everything else of its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredNetwork {
    pub name: NetworkName,
    pub parent: ParentChoice,
    /// The spec with a placeholder parent; [`DesiredNetwork::spec`] puts the real one.
    template: NetworkSpec,
}

impl DesiredNetwork {
    /// The network's spec on `parent`, validated as `network create` does.
    pub fn spec(&self, parent: IfName) -> Result<ValidNetwork, crate::ModelError> {
        NetworkSpec { parent, ..self.template.clone() }.validate()
    }
}

/// A declared shim, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredShim {
    pub network: NetworkName,
    pub name: Option<IfName>,
    pub ips: Vec<IpAddr>,
    pub route_range: bool,
}

/// A declared endpoint, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredEndpoint {
    pub network: NetworkName,
    pub netns: String,
    pub create: bool,
    pub ifname: IfName,
    pub ips: Vec<IpAddr>,
    pub mac: Option<MacAddr>,
    pub source_macs: Vec<MacAddr>,
    pub default_route: bool,
    pub routes: Vec<RouteRequest>,
}

/// The whole desired state, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub networks: Vec<DesiredNetwork>,
    pub shims: Vec<DesiredShim>,
    pub endpoints: Vec<DesiredEndpoint>,
}

impl DesiredFile {
    /// Makes the TLS files' relative paths relative to `dir` (the file's
    /// own directory): the record keeps absolute paths, read by every later
    /// command from wherever it runs.
    pub fn resolve_paths(&mut self, dir: &Path) {
        for net in &mut self.networks {
            for path in
                [&mut net.etcd_cert, &mut net.etcd_key, &mut net.etcd_ca].into_iter().flatten()
            {
                if path.is_relative() {
                    *path = dir.join(&*path);
                }
            }
        }
    }

    /// Checks every entry and the rules between them.
    pub fn check(&self) -> Result<Desired, DeclError> {
        let mut out = Desired::default();
        let mut names = BTreeSet::new();
        for (i, net) in self.networks.iter().enumerate() {
            let desired = net.check(i)?;
            if !names.insert(desired.name.clone()) {
                return Err(at(format!("network[{i}].name"))(format!(
                    "network {} is declared twice",
                    desired.name
                )));
            }
            if net.host_access {
                out.shims.push(DesiredShim {
                    network: desired.name.clone(),
                    name: None,
                    ips: Vec::new(),
                    route_range: false,
                });
            }
            out.networks.push(desired);
        }
        let declared = |key: String, name: &str| -> Result<NetworkName, DeclError> {
            let name = NetworkName::new(name).map_err(|e| at(key.clone())(e.to_string()))?;
            if names.contains(&name) {
                Ok(name)
            } else {
                Err(at(key)(format!(
                    "network {name} is not declared in this file (no [[network]] with that name)"
                )))
            }
        };
        for (i, shim) in self.shims.iter().enumerate() {
            let network = declared(format!("shim[{i}].network"), &shim.network)?;
            if out.shims.iter().any(|s| s.network == network) {
                return Err(at(format!("shim[{i}].network"))(format!(
                    "network {network} has a shim already (another [[shim]] or host_access = true); it has at most one"
                )));
            }
            let name = shim
                .name
                .as_deref()
                .map(IfName::new)
                .transpose()
                .map_err(|e| at(format!("shim[{i}].name"))(e.to_string()))?;
            out.shims.push(DesiredShim {
                network,
                name,
                ips: shim.ips.clone(),
                route_range: shim.route_range,
            });
        }
        let mut places = BTreeSet::new();
        for (i, ep) in self.endpoints.iter().enumerate() {
            let network = declared(format!("endpoint[{i}].network"), &ep.network)?;
            let desired = ep.check(i, network)?;
            if !places.insert((desired.netns.clone(), desired.ifname.clone())) {
                return Err(at(format!("endpoint[{i}]"))(format!(
                    "{} in {} is declared twice",
                    desired.ifname, desired.netns
                )));
            }
            out.endpoints.push(desired);
        }
        Ok(out)
    }
}

impl NetworkDecl {
    fn check(&self, i: usize) -> Result<DesiredNetwork, DeclError> {
        let key = |k: &str| format!("network[{i}].{k}");
        let name = NetworkName::new(&self.name).map_err(|e| at(key("name"))(e.to_string()))?;
        let driver: Driver = self.driver.parse().map_err(|e| at(key("driver"))(format!("{e}")))?;
        let mode: LinkMode = match &self.mode {
            Some(m) => m.parse().map_err(|e| at(key("mode"))(format!("{e}")))?,
            None => driver.default_mode(),
        };
        let parent = self
            .parent
            .as_deref()
            .map(IfName::new)
            .transpose()
            .map_err(|e| at(key("parent"))(e.to_string()))?;
        let parent = match (parent, self.vlan, self.internal) {
            (_, Some(_), true) => {
                return Err(at(key("vlan"))("a VLAN network cannot be internal".into()));
            }
            (None, Some(_), _) => {
                return Err(at(key("vlan"))("needs a parent (the VLAN's lower device)".into()));
            }
            (Some(lower), Some(id), false) => ParentChoice::Vlan { lower, id },
            (Some(p), None, false) => ParentChoice::Existing(p),
            (p, None, _) => ParentChoice::Dummy(p),
        };
        // A placeholder the engine replaces; valid, so building the spec cannot fail.
        let placeholder = IfName::new("lo").map_err(|e| at(key("parent"))(e.to_string()))?;
        let mut spec = NetworkSpec::new(name.clone(), driver, placeholder, mode);
        for f in &self.flags {
            if driver.is_ipvlan() {
                spec.ipvlan_flag = f.parse().map_err(|e| at(key("flags"))(format!("{e}")))?;
            } else {
                spec.flags.set_by_name(f).map_err(|e| at(key("flags"))(e.to_string()))?;
            }
        }
        spec.mtu = self.mtu;
        spec.bcqueuelen = self.bcqueuelen;
        spec.bclim = self.bclim;
        spec.promisc = self.promisc;
        spec.ipam = self.ipam.parse().map_err(|e| at(key("ipam"))(format!("{e}")))?;
        spec.fleet = self.fleet(&key)?;
        if self.probe_cooldown.is_some() && self.probe_conflicts.is_none() {
            return Err(at(key("probe_cooldown"))("needs probe_conflicts".into()));
        }
        if self.probe_conflicts.is_some_and(|ms| !(1..=60_000).contains(&ms)) {
            return Err(at(key("probe_conflicts"))("give milliseconds from 1 to 60000".into()));
        }
        spec.probe = self.probe_conflicts.map(|timeout_ms| ProbeSpec {
            timeout_ms,
            cooldown_s: self.probe_cooldown.unwrap_or(ProbeSpec::DEFAULT_COOLDOWN_S),
        });
        let noarp = matches!(spec.mode, LinkMode::Ipvlan(IpvlanMode::L3 | IpvlanMode::L3s));
        if spec.probe.is_some() && noarp && self.subnets.iter().any(|s| s.subnet.addr().is_ipv6()) {
            return Err(at(key("probe_conflicts"))(format!(
                "ipvlan {} children are NOARP and the kernel runs no duplicate address detection on them, so IPv6 addresses cannot be probed",
                spec.mode
            )));
        }
        for (j, s) in self.subnets.iter().enumerate() {
            let skey = |k: &str| key(&format!("subnet[{j}].{k}"));
            if let Some(range) = s.ip_range
                && !s.subnet.contains(&range)
            {
                return Err(at(skey("ip_range"))(format!("{range} is not inside {}", s.subnet)));
            }
            if let Some((aux, ip)) = s.aux_addresses.iter().find(|(_, ip)| !s.subnet.contains(*ip))
            {
                return Err(at(skey("aux_addresses"))(format!(
                    "{aux} = {ip} is not inside {}",
                    s.subnet
                )));
            }
            spec.subnets.push(SubnetSpec {
                gateway: s.gateway,
                ip_range: s.ip_range,
                aux_addresses: s.aux_addresses.clone(),
                link_local: s.link_local,
                ..SubnetSpec::new(s.subnet)
            });
        }
        // Every rule of one network on its own, named by this entry.
        spec.clone().validate().map_err(|e| at(format!("network[{i}]"))(e.to_string()))?;
        Ok(DesiredNetwork { name, parent, template: spec })
    }
}

impl NetworkDecl {
    /// The fleet pool's settings, checked as `network create`'s flags are:
    /// the etcd options only with `etcd`, the block size and lease within
    /// bounds (the URLs and TLS files are the spec's own rules).
    fn fleet(&self, key: &impl Fn(&str) -> String) -> Result<Option<FleetSpec>, DeclError> {
        let tls = EtcdTls {
            ca: self.etcd_ca.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
        };
        let etcd_ipam = self.ipam.split(',').any(|i| i.trim() == "etcd");
        match (etcd_ipam, self.etcd.is_empty()) {
            (true, true) => {
                return Err(at(key("etcd"))(
                    "ipam = \"etcd\" needs the etcd cluster's client URLs: etcd = [\"http://HOST:2379\"]".into(),
                ));
            }
            (false, false) => {
                return Err(at(key("etcd"))("applies to ipam = \"etcd\" only".into()));
            }
            _ => {}
        }
        if self.etcd.is_empty() {
            let given = [
                ("etcd_block", self.etcd_block.is_some()),
                ("etcd_ttl", self.etcd_ttl.is_some()),
                ("etcd_cooldown", self.etcd_cooldown.is_some()),
                ("etcd_ca", tls.ca.is_some()),
                ("etcd_cert", tls.cert.is_some()),
                ("etcd_key", tls.key.is_some()),
            ];
            if let Some((option, _)) = given.iter().find(|(_, given)| *given) {
                return Err(at(key(option))(
                    "applies to ipam = \"etcd\" with etcd = [URL, ...]; give etcd too".into(),
                ));
            }
            return Ok(None);
        }
        if let Some(n) = self.etcd_block.filter(|n| !(1..=64).contains(n)) {
            return Err(at(key("etcd_block"))(format!("{n}: expected 1 to 64 addresses")));
        }
        if self.etcd_ttl == Some(0) {
            return Err(at(key("etcd_ttl"))("expected at least one second".into()));
        }
        Ok(Some(FleetSpec {
            endpoints: self.etcd.clone(),
            block_size: self.etcd_block.unwrap_or(FleetSpec::DEFAULT_BLOCK_SIZE),
            ttl_s: self.etcd_ttl.unwrap_or(FleetSpec::DEFAULT_TTL_S),
            tls,
            cooldown_s: self.etcd_cooldown.unwrap_or(FleetSpec::DEFAULT_COOLDOWN_S),
        }))
    }
}

impl EndpointDecl {
    fn check(&self, i: usize, network: NetworkName) -> Result<DesiredEndpoint, DeclError> {
        let key = |k: &str| format!("endpoint[{i}].{k}");
        if self.netns.is_empty() || self.netns == "." || self.netns == ".." {
            return Err(at(key("netns"))(format!(
                "{:?} names no namespace; give an iproute2 name or the path of a namespace file",
                self.netns
            )));
        }
        if self.create && self.netns.contains('/') {
            return Err(at(key("create"))(
                "nicslice creates only named namespaces (/run/netns/NAME); give a name, not a path"
                    .into(),
            ));
        }
        let ifname = IfName::new(&self.ifname).map_err(|e| at(key("ifname"))(e.to_string()))?;
        let mut families = [false, false];
        for ip in &self.ips {
            let slot = &mut families[usize::from(ip.is_ipv6())];
            if std::mem::replace(slot, true) {
                return Err(at(key("ips"))("give at most one address per family".into()));
            }
        }
        let mac = self
            .mac
            .as_deref()
            .map(str::parse::<MacAddr>)
            .transpose()
            .map_err(|e| at(key("mac"))(e.to_string()))?;
        let source_macs = self
            .source_macs
            .iter()
            .map(|m| m.parse::<MacAddr>())
            .collect::<Result<_, _>>()
            .map_err(|e| at(key("source_macs"))(e.to_string()))?;
        let routes = self
            .routes
            .iter()
            .map(|r| r.parse::<RouteRequest>())
            .collect::<Result<_, _>>()
            .map_err(at(key("routes")))?;
        Ok(DesiredEndpoint {
            network,
            netns: self.netns.clone(),
            create: self.create,
            ifname,
            ips: self.ips.clone(),
            mac,
            source_macs,
            default_route: self.default_route,
            routes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Desired, String> {
        let file: DesiredFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        file.check().map_err(|e| e.to_string())
    }

    const EXAMPLE: &str = r#"
[[network]]
name = "lan"
parent = "eth0"
mode = "private"
promisc = true
[[network.subnet]]
subnet = "192.168.0.0/24"
gateway = "192.168.0.1"
ip_range = "192.168.0.128/25"
aux_addresses = { router = "192.168.0.2" }

[[network]]
name = "inner"
internal = true
[[network.subnet]]
subnet = "10.9.0.0/24"

[[shim]]
network = "inner"
name = "inner-shim"

[[endpoint]]
network = "lan"
netns = "web"
create = true
ips = ["192.168.0.10"]
routes = ["10.1.0.0/16,via=192.168.0.254"]
"#;

    #[test]
    fn an_example_file_gives_what_it_says() {
        let d = parse(EXAMPLE).unwrap();
        assert_eq!(d.networks.len(), 2);
        let lan = &d.networks[0];
        assert_eq!(lan.parent, ParentChoice::Existing("eth0".parse().unwrap()));
        let spec = lan.spec("eth0".parse().unwrap()).unwrap();
        assert!(spec.spec().promisc);
        assert_eq!(spec.spec().mode.as_str(), "private");
        assert_eq!(spec.spec().subnets[0].aux_addresses.len(), 1);
        assert_eq!(d.networks[1].parent, ParentChoice::Dummy(None));
        assert_eq!(d.shims[0].name.as_ref().map(IfName::as_str), Some("inner-shim"));
        let ep = &d.endpoints[0];
        assert!(ep.create && ep.default_route);
        assert_eq!(ep.ifname.as_str(), "eth0");
        assert_eq!(ep.routes[0].via, Some("192.168.0.254".parse().unwrap()));
    }

    #[test]
    fn each_mistake_names_its_key() {
        let cases = [
            ("[[network]]\nname = \"a\"\ncolour = \"red\"\n", "unknown field `colour`"),
            ("[[network]]\nname = \"a\"\nmode = \"fast\"\n", "network[0].mode: unknown mode"),
            ("[[network]]\nname = \"-a\"\n", "network[0].name"),
            (
                "[[network]]\nname = \"a\"\n[[network.subnet]]\nsubnet = \"10.0.0.0/24\"\nip_range = \"10.1.0.0/24\"\n",
                "network[0].subnet[0].ip_range: 10.1.0.0/24 is not inside",
            ),
            ("[[network]]\nname = \"a\"\n[[network]]\nname = \"a\"\n", "declared twice"),
            ("[[shim]]\nnetwork = \"x\"\n", "shim[0].network: network x is not declared"),
            (
                "[[network]]\nname = \"a\"\n[[endpoint]]\nnetwork = \"a\"\nnetns = \"n\"\nips = [\"10.0.0.1\", \"10.0.0.2\"]\n",
                "endpoint[0].ips: give at most one address per family",
            ),
            (
                "[[network]]\nname = \"a\"\n[[endpoint]]\nnetwork = \"a\"\nnetns = \"/x/y\"\ncreate = true\n",
                "endpoint[0].create",
            ),
            ("[[network]]\nname = \"a\"\nvlan = 5\n", "network[0].vlan: needs a parent"),
            (
                "[[network]]\nname = \"a\"\nhost_access = true\n[[shim]]\nnetwork = \"a\"\n",
                "has a shim already",
            ),
            ("[[network]]\nname = \"a\"\netcd_block = 8\n", "network[0].etcd_block: applies to"),
            (
                "[[network]]\nname = \"a\"\nipam = \"etcd\"\netcd = \"http://e:2379\"\netcd_block = 65\n[[network.subnet]]\nsubnet = \"10.0.0.0/16\"\n",
                "network[0].etcd_block: 65: expected 1 to 64",
            ),
            (
                "[[network]]\nname = \"a\"\nipam = \"etcd\"\n[[network.subnet]]\nsubnet = \"10.0.0.0/16\"\n",
                "network[0].etcd: ipam = \"etcd\" needs the etcd cluster's client URLs",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err:?} lacks {needle:?}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn a_fleet_network_takes_the_options_of_network_create() {
        let text = r#"
[[network]]
name = "fleet"
parent = "eth0"
ipam = ["etcd"]
etcd = "https://10.1.0.1:2379, https://10.1.0.2:2379"
etcd_block = 8
etcd_ttl = 30
etcd_cooldown = 60
etcd_ca = "pki/ca.pem"
etcd_cert = "/etc/nicslice/host.pem"
etcd_key = "/etc/nicslice/host.key"
[[network.subnet]]
subnet = "10.0.0.0/16"
"#;
        let mut file: DesiredFile = toml::from_str(text).unwrap();
        let relative = file.clone().check().expect_err("a relative CA path is refused");
        assert!(relative.to_string().contains("absolute"), "{relative}");
        file.resolve_paths(Path::new("/srv/apply"));
        let d = file.check().unwrap();
        let spec = d.networks[0].spec("eth0".parse().unwrap()).unwrap();
        let fleet = spec.spec().fleet.clone().unwrap();
        assert_eq!(fleet.endpoints, ["https://10.1.0.1:2379", "https://10.1.0.2:2379"]);
        assert_eq!((fleet.block_size, fleet.ttl_s, fleet.cooldown_s), (8, 30, 60));
        assert_eq!(fleet.tls.ca.as_deref(), Some(Path::new("/srv/apply/pki/ca.pem")));
        assert_eq!(fleet.tls.key.as_deref(), Some(Path::new("/etc/nicslice/host.key")));
        // A list of sources, as `--ipam dhcp,dhcp6` takes it.
        let both =
            parse("[[network]]\nname = \"a\"\nparent = \"eth0\"\nipam = [\"dhcp\", \"dhcp6\"]\n")
                .unwrap();
        let spec = both.networks[0].spec("eth0".parse().unwrap()).unwrap();
        assert_eq!(spec.spec().ipam.to_string(), "dhcp,dhcp6");
    }

    #[test]
    fn an_empty_file_declares_nothing() {
        assert_eq!(parse("").unwrap(), Desired::default());
    }
}
