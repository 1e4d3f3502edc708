//! What the user asked for: `NetworkSpec` and its `SubnetSpec`s, as plain serde
//! data (the store keeps them as JSON). Nothing here is checked beyond the types;
//! call `NetworkSpec::validate` to get a `ValidNetwork`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::NetworkName;
use crate::{Driver, IfName, IpvlanFlag, LinkMode, MacvlanFlags, MacvlanMode};

/// One subnet of a network, as `docker network create --subnet/--gateway/--ip-range/--aux-address`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetSpec {
    pub subnet: IpNet,
    /// Defaults to the first usable address of the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Addresses handed out automatically come from here (default: the whole subnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<IpNet>,
    /// The automatic range's first and last address when it is no CIDR
    /// block (CNI's `rangeStart`/`rangeEnd`, for the fleet pool); inside
    /// `ip_range` or the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<(IpAddr, IpAddr)>,
    /// Addresses reserved under a name (routers, hosts outside nicslice).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, IpAddr>,
    /// Set by validation when it chose the gateway (none was asked for): an
    /// ipvlan l3/l3s child then routes through its device, as seed 001
    /// does, rather than via an address nobody named.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gateway_default: bool,
    /// The user asked for an IPv4 link-local subnet (169.254.0.0/16), which
    /// is refused otherwise: such addresses are what a host takes when
    /// nothing gave it one, rarely what a network is meant to hand out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub link_local: bool,
}

impl SubnetSpec {
    /// A subnet with the default gateway, no range and no reserved addresses.
    pub fn new(subnet: IpNet) -> Self {
        SubnetSpec {
            subnet,
            gateway: None,
            ip_range: None,
            window: None,
            aux_addresses: BTreeMap::new(),
            gateway_default: false,
            link_local: false,
        }
    }
}

/// A network: a named slice of `parent` made with `driver` in `mode`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub name: NetworkName,
    pub driver: Driver,
    pub parent: IfName,
    /// A macvlan mode for macvlan/macvtap, an ipvlan mode for ipvlan/ipvtap.
    pub mode: LinkMode,
    /// macvlan flags (macvlan/macvtap only).
    #[serde(default)]
    pub flags: MacvlanFlags,
    /// The ipvlan port flag (ipvlan/ipvtap only).
    #[serde(default, skip_serializing_if = "IpvlanFlag::is_bridge")]
    pub ipvlan_flag: IpvlanFlag,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Broadcast queue length of the parent's macvlan port (`bcqueuelen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bcqueuelen: Option<u32>,
    /// Broadcast limit (`bclim`); negative disables broadcast queueing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bclim: Option<i32>,
    /// Put the parent into promiscuous mode while the network exists.
    #[serde(default)]
    pub promisc: bool,
    #[serde(default)]
    pub subnets: Vec<SubnetSpec>,
    /// Ask the wire before an address is used (`--probe-conflicts`); absent
    /// in records made before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeSpec>,
    /// Where endpoint addresses come from (records made before DHCP: the pool).
    #[serde(default, skip_serializing_if = "Ipam::is_pool")]
    pub ipam: Ipam,
    /// The shared pool's etcd cluster and how the subnet is cut (`--ipam etcd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetSpec>,
}

/// A subnet shared by several hosts through etcd (`--ipam etcd`): each host
/// leases blocks of `block_size` addresses, with a lease of `ttl_s` seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSpec {
    /// Client URLs of the etcd cluster (`http://host:2379`).
    pub endpoints: Vec<String>,
    #[serde(default = "FleetSpec::default_block_size")]
    pub block_size: u32,
    /// How long this host's blocks outlive its last contact with etcd.
    #[serde(default = "FleetSpec::default_ttl")]
    pub ttl_s: u64,
    /// TLS to etcd (`https://` endpoints); absent for plain HTTP and in
    /// records made before it existed.
    #[serde(default, skip_serializing_if = "EtcdTls::is_plain")]
    pub tls: EtcdTls,
    /// How long the addresses of a host whose lease expired stay in its
    /// name before another host may probe them on the wire and take back
    /// those no one answers.
    #[serde(default = "FleetSpec::default_cooldown")]
    pub cooldown_s: u64,
}

/// The PEM files of TLS to etcd (`--etcd-ca`, `--etcd-cert`, `--etcd-key`),
/// by absolute path: they are read at every command that talks to etcd, so a
/// renewed certificate is taken up without touching the network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdTls {
    /// The CA that signed etcd's server certificate: the only root trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// This host's client certificate (etcd's `--client-cert-auth`), and its
    /// key: both or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

impl EtcdTls {
    /// No TLS file given: plain HTTP.
    pub fn is_plain(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    /// The files given, each with the option that names it.
    pub fn files(&self) -> impl Iterator<Item = (&'static str, &PathBuf)> {
        [("--etcd-ca", &self.ca), ("--etcd-cert", &self.cert), ("--etcd-key", &self.key)]
            .into_iter()
            .filter_map(|(option, path)| path.as_ref().map(|p| (option, p)))
    }
}

impl FleetSpec {
    /// 16: a /16 is 4,096 blocks; a host wastes at most 15 spare addresses.
    pub const DEFAULT_BLOCK_SIZE: u32 = 16;
    /// A minute: a host renews at most every third of it, while it allocates.
    pub const DEFAULT_TTL_S: u64 = 60;
    /// Five minutes past the lease: a host cut off by a network fault is
    /// back, or dead, by then (and its endpoints still answer if they live).
    pub const DEFAULT_COOLDOWN_S: u64 = 300;

    fn default_block_size() -> u32 {
        Self::DEFAULT_BLOCK_SIZE
    }

    fn default_ttl() -> u64 {
        Self::DEFAULT_TTL_S
    }

    fn default_cooldown() -> u64 {
        Self::DEFAULT_COOLDOWN_S
    }
}

/// Conflict probing: an ARP probe (IPv4) or the kernel's DAD (IPv6) for each
/// address before it is used; an answered one is quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSpec {
    /// How long to wait for an answer, in milliseconds.
    pub timeout_ms: u32,
    /// How long an answered address stays out of the pool before it is
    /// probed again, in seconds.
    #[serde(default = "ProbeSpec::default_cooldown")]
    pub cooldown_s: u64,
}

impl ProbeSpec {
    /// 200 ms: an answer on a LAN takes well under a millisecond; the rest is
    /// room for a busy host.
    pub const DEFAULT_TIMEOUT_MS: u32 = 200;
    /// An hour: a host that answered once is likely to be there for a while.
    pub const DEFAULT_COOLDOWN_S: u64 = 3600;

    fn default_cooldown() -> u64 {
        Self::DEFAULT_COOLDOWN_S
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.timeout_ms))
    }
}

/// Where a network's endpoints get their addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ipam {
    /// nicslice's own allocator over the network's subnets.
    #[default]
    Pool,
    /// A DHCPv4 server on the parent's link, asked by each endpoint.
    Dhcp,
    /// A DHCPv6 server on the parent's link (IA_NA), asked by each endpoint.
    Dhcp6,
    /// Both: an IPv4 and an IPv6 lease for each endpoint (`--ipam dhcp,dhcp6`).
    #[serde(rename = "dhcp,dhcp6")]
    DhcpDual,
    /// The subnet shared with other hosts through etcd (`fleet`).
    Etcd,
}

impl Ipam {
    pub fn is_pool(&self) -> bool {
        *self == Ipam::Pool
    }

    /// Addresses come from a DHCP server, of either family.
    pub fn is_dhcp(&self) -> bool {
        self.dhcp4() || self.dhcp6()
    }

    /// Endpoints ask a DHCPv4 server.
    pub fn dhcp4(&self) -> bool {
        matches!(self, Ipam::Dhcp | Ipam::DhcpDual)
    }

    /// Endpoints ask a DHCPv6 server.
    pub fn dhcp6(&self) -> bool {
        matches!(self, Ipam::Dhcp6 | Ipam::DhcpDual)
    }
}

impl std::str::FromStr for Ipam {
    type Err = crate::ModelError;
    fn from_str(s: &str) -> Result<Ipam, crate::ModelError> {
        match s {
            "pool" | "static" => Ok(Ipam::Pool),
            "dhcp" | "dhcp4" => Ok(Ipam::Dhcp),
            "dhcp6" => Ok(Ipam::Dhcp6),
            // Both families, in either order (`--ipam dhcp --ipam dhcp6`
            // reaches here joined by a comma).
            "dhcp,dhcp6" | "dhcp6,dhcp" | "dhcp4,dhcp6" | "dhcp6,dhcp4" => Ok(Ipam::DhcpDual),
            "etcd" => Ok(Ipam::Etcd),
            other => Err(crate::ModelError::Invalid(format!(
                "--ipam {other}: expected pool (nicslice's allocator over --subnet), dhcp \
                 (DHCPv4), dhcp6 (DHCPv6), dhcp,dhcp6 (both) or etcd (the fleet pool)"
            ))),
        }
    }
}

impl std::fmt::Display for Ipam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ipam::Pool => "pool",
            Ipam::Dhcp => "dhcp",
            Ipam::Dhcp6 => "dhcp6",
            Ipam::DhcpDual => "dhcp,dhcp6",
            Ipam::Etcd => "etcd",
        })
    }
}

impl NetworkSpec {
    /// The macvlan mode, for macvlan and macvtap networks.
    pub fn macvlan_mode(&self) -> Option<MacvlanMode> {
        self.mode.macvlan()
    }

    /// A passthru network: its parent holds exactly one child.
    pub fn is_passthru(&self) -> bool {
        self.mode == MacvlanMode::Passthru
    }
}

impl NetworkSpec {
    /// A spec with no subnets, flags, MTU or broadcast settings.
    pub fn new(
        name: NetworkName,
        driver: Driver,
        parent: IfName,
        mode: impl Into<LinkMode>,
    ) -> Self {
        NetworkSpec {
            name,
            driver,
            parent,
            mode: mode.into(),
            flags: MacvlanFlags::default(),
            ipvlan_flag: IpvlanFlag::default(),
            mtu: None,
            bcqueuelen: None,
            bclim: None,
            promisc: false,
            subnets: Vec::new(),
            probe: None,
            ipam: Ipam::Pool,
            fleet: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_json_fills_defaults() {
        let json = r#"{"name":"lan","driver":"macvlan","parent":"ens160","mode":"bridge",
                       "subnets":[{"subnet":"192.168.179.0/24"}]}"#;
        let spec: NetworkSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.flags, MacvlanFlags::default());
        assert_eq!(spec.mtu, None);
        assert!(!spec.promisc);
        assert_eq!(spec.subnets[0], SubnetSpec::new("192.168.179.0/24".parse().unwrap()));
        assert_eq!(spec.ipam, Ipam::Pool, "a record from before DHCP uses the pool");
    }

    #[test]
    fn ipam_names_for_each_family_and_both() {
        for (text, ipam, v4, v6) in [
            ("dhcp", Ipam::Dhcp, true, false),
            ("dhcp6", Ipam::Dhcp6, false, true),
            ("dhcp,dhcp6", Ipam::DhcpDual, true, true),
            ("dhcp6,dhcp", Ipam::DhcpDual, true, true),
        ] {
            let parsed: Ipam = text.parse().unwrap();
            assert_eq!(parsed, ipam, "{text}");
            assert_eq!((parsed.dhcp4(), parsed.dhcp6(), parsed.is_dhcp()), (v4, v6, true));
            let json = serde_json::to_string(&parsed).unwrap();
            assert_eq!(serde_json::from_str::<Ipam>(&json).unwrap(), parsed);
            assert_eq!(parsed.to_string().parse::<Ipam>().unwrap(), parsed);
        }
        assert!("dhcp7".parse::<Ipam>().is_err());
        assert!(!Ipam::Pool.is_dhcp());
    }

    #[test]
    fn json_round_trip_keeps_everything() {
        let mut spec = NetworkSpec::new(
            "lan".parse().unwrap(),
            Driver::Macvtap,
            "ens160".parse().unwrap(),
            MacvlanMode::Source,
        );
        spec.flags.nodst = true;
        spec.mtu = Some(1400);
        spec.bclim = Some(-1);
        let mut sub = SubnetSpec::new("fd00::/64".parse().unwrap());
        sub.gateway = Some("fd00::fe".parse().unwrap());
        sub.ip_range = Some("fd00::100/120".parse().unwrap());
        sub.aux_addresses.insert("router".into(), "fd00::2".parse().unwrap());
        spec.subnets.push(sub);
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<NetworkSpec>(&json).unwrap(), spec);
    }

    #[test]
    fn bad_fields_are_refused_by_serde() {
        let json = r#"{"name":"-x","driver":"macvlan","parent":"ens160","mode":"bridge"}"#;
        assert!(serde_json::from_str::<NetworkSpec>(json).is_err());
        let json = r#"{"name":"x","driver":"macvlan","parent":"ens160","mode":"nope"}"#;
        assert!(serde_json::from_str::<NetworkSpec>(json).is_err());
    }
}
