//! nicslice-ipam's configuration: host-local's keys (`ranges`, or `subnet`,
//! `rangeStart`, `rangeEnd` and `gateway` at the top; `routes`,
//! `resolvConf`, `dataDir`) plus `state`, the lease database's path. Checked
//! into range sets: one address is handed out per set, from its first range
//! with room. Or `dhcp` (an object, instead of ranges): the addresses come
//! from DHCP servers, DHCPv4, DHCPv6 or both ([`DhcpConf`]). Or `store`
//! with `etcd` beside one range: the range is a fleet pool shared with
//! other hosts ([`EtcdConf`]).

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use nicslice_engine::dhcp::DhcpFamilies;
use nicslice_model::ipam::AddressRange;
use nicslice_model::{from_u128, to_u128};
use nicslice_store::cni_ipam::CNI_IPAM_FILE;
use serde::Deserialize;

use crate::conf::null_as_default;
use crate::error::{CniError, Result};
use crate::result::RouteConfig;

/// The checked IPAM configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConf {
    pub range_sets: Vec<Vec<AddressRange>>,
    pub routes: Vec<RouteConfig>,
    pub resolv_conf: Option<PathBuf>,
    /// `state`, else `dataDir/cni-leases.mdb`, else `None` (the default applies).
    pub state: Option<PathBuf>,
    /// `dhcp`: addresses from a DHCP server instead of `ranges`.
    pub dhcp: Option<DhcpConf>,
    /// `store.etcd`: the one range is a fleet pool shared through etcd.
    pub etcd: Option<EtcdConf>,
}

/// `"store": {...}`: where the leases live. `{}` is the lease database of
/// this host (the default); `etcd` shares the range with other hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreConf {
    #[serde(default)]
    etcd: Option<EtcdConf>,
}

/// `"store": {"etcd": {...}}`: the fleet pool, as `nicslice network create
/// --ipam etcd` makes it (`--etcd`, `--etcd-block`, `--etcd-ttl`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EtcdConf {
    /// Client URLs of the etcd cluster (`http://host:2379`).
    pub endpoints: Vec<String>,
    /// Addresses per block a host leases (default 16, at most 64).
    #[serde(default)]
    pub block_size: Option<u32>,
    /// Seconds this host's blocks outlive its last contact with etcd
    /// (default 60).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Seconds a dead host's addresses stay in its name before they are
    /// probed on the wire and taken back (default 300; `--etcd-cooldown`).
    #[serde(default)]
    pub cooldown_seconds: Option<u64>,
    /// nicslice's state database, where this host's part of the pool is
    /// kept (default: `NICSLICE_STATE`, else nicslice's default).
    #[serde(default)]
    pub state: Option<PathBuf>,
    /// TLS (`https://` endpoints): the CA that signed etcd's certificate,
    /// the only root trusted (`--etcd-ca`).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// This host's client certificate and its key, both or neither, for
    /// etcd's `--client-cert-auth` (`--etcd-cert`, `--etcd-key`).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
}

/// `"dhcp": {}` and its optional keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DhcpConf {
    /// nicslice's state database, where the lease is kept for the agent
    /// that renews it (default: `NICSLICE_STATE`, else nicslice's default).
    #[serde(default)]
    pub state: Option<PathBuf>,
    /// Seconds to wait for the server (default 10).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// `families`: `[4]` (the default), `[6]` or `[4, 6]`, the IP versions
    /// whose addresses come from a server (4: DHCPv4, 6: DHCPv6 IA_NA).
    #[serde(default, deserialize_with = "families")]
    pub families: DhcpFamilies,
}

/// `dhcp.families`: a list of 4 and 6, each at most once, not empty.
fn families<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DhcpFamilies, D::Error> {
    use serde::de::Error;
    let raw = serde_json::Value::deserialize(d)?;
    let bad = |why: String| {
        D::Error::custom(format!("dhcp.families {raw}: {why}; give [4], [6] or [4, 6]"))
    };
    let list = raw.as_array().ok_or_else(|| bad("not a list".into()))?;
    if list.is_empty() {
        return Err(bad("no family".into()));
    }
    let mut families = DhcpFamilies { v4: false, v6: false };
    for item in list {
        let slot = match item.as_u64() {
            Some(4) => &mut families.v4,
            Some(6) => &mut families.v6,
            _ => return Err(bad(format!("{item} is not an IP version (4 or 6)"))),
        };
        if std::mem::replace(slot, true) {
            return Err(bad(format!("{item} is listed twice")));
        }
    }
    Ok(families)
}

impl Eq for DhcpConf {}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawRange {
    #[serde(default)]
    subnet: Option<IpNet>,
    #[serde(default)]
    range_start: Option<IpAddr>,
    #[serde(default)]
    range_end: Option<IpAddr>,
    #[serde(default)]
    gateway: Option<IpAddr>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    #[serde(flatten)]
    top: RawRange,
    #[serde(default, deserialize_with = "null_as_default")]
    ranges: Vec<Vec<RawRange>>,
    #[serde(default, deserialize_with = "null_as_default")]
    routes: Vec<RawRoute>,
    #[serde(default)]
    resolv_conf: Option<PathBuf>,
    #[serde(default)]
    data_dir: Option<PathBuf>,
    #[serde(default)]
    state: Option<PathBuf>,
    #[serde(default)]
    dhcp: Option<DhcpConf>,
    #[serde(default, deserialize_with = "null_as_default")]
    store: StoreConf,
}

#[derive(Deserialize)]
struct RawRoute {
    dst: IpNet,
    #[serde(default)]
    gw: Option<IpAddr>,
}

impl IpamConf {
    /// Checks the `ipam` object.
    pub fn parse(ipam: &serde_json::Value) -> Result<IpamConf> {
        let raw: RawIpam =
            RawIpam::deserialize(ipam).map_err(|e| CniError::config(format!("ipam: {e}")))?;
        if let Some(dhcp) = raw.dhcp {
            if raw.store.etcd.is_some() {
                return Err(CniError::config(
                    "ipam: \"dhcp\" and \"store\": {\"etcd\"} exclude each other; keep one",
                ));
            }
            return dhcp_only(raw.top, raw.ranges, raw.routes, dhcp);
        }
        let mut raw_sets = raw.ranges;
        if raw.top.subnet.is_some() {
            raw_sets.insert(0, vec![raw.top]);
        } else if raw.top.range_start.is_some()
            || raw.top.range_end.is_some()
            || raw.top.gateway.is_some()
        {
            return Err(CniError::config("ipam: rangeStart, rangeEnd and gateway need a subnet"));
        }
        if raw_sets.is_empty() {
            return Err(CniError::config("ipam: no IP ranges specified; give subnet or ranges"));
        }
        let mut range_sets = Vec::new();
        for set in raw_sets {
            if set.is_empty() {
                return Err(CniError::config("ipam: empty range set"));
            }
            let set = set.into_iter().map(check_range).collect::<Result<Vec<_>>>()?;
            if set.iter().any(|r| r.first.is_ipv4() != set[0].first.is_ipv4()) {
                return Err(CniError::config("ipam: a range set mixes IPv4 and IPv6"));
            }
            range_sets.push(set);
        }
        let all: Vec<&AddressRange> = range_sets.iter().flatten().collect();
        for (i, a) in all.iter().enumerate() {
            if let Some(b) = all[i + 1..].iter().find(|b| a.overlaps(b)) {
                return Err(CniError::config(format!("ipam: range {a} overlaps range {b}")));
            }
        }
        // An empty path means "not given", not the current directory: the
        // default applies (a lease book must not land wherever the runtime
        // happened to start the plugin).
        let given = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
        let state = given(raw.state).or_else(|| given(raw.data_dir).map(|d| d.join(CNI_IPAM_FILE)));
        if let Some(etcd) = &raw.store.etcd {
            check_etcd(etcd, &range_sets)?;
        }
        Ok(IpamConf {
            range_sets,
            routes: raw.routes.into_iter().map(|r| RouteConfig::to(r.dst, r.gw)).collect(),
            resolv_conf: raw.resolv_conf.filter(|p| !p.as_os_str().is_empty()),
            state,
            dhcp: None,
            etcd: raw.store.etcd,
        })
    }
}

/// `dhcp` instead of ranges: the server's addresses, the configuration's
/// routes besides the server's default one.
fn dhcp_only(
    top: RawRange,
    ranges: Vec<Vec<RawRange>>,
    routes: Vec<RawRoute>,
    dhcp: DhcpConf,
) -> Result<IpamConf> {
    if top.subnet.is_some() || !ranges.is_empty() {
        return Err(CniError::config(
            "ipam: \"dhcp\" takes the addresses from the server; drop subnet and ranges",
        ));
    }
    if let Some(t) = dhcp.timeout
        && !(t > 0.0 && t <= 3600.0)
    {
        return Err(CniError::config(format!(
            "ipam: dhcp timeout {t}: give a number of seconds above 0, at most 3600"
        )));
    }
    Ok(IpamConf {
        range_sets: Vec::new(),
        routes: routes.into_iter().map(|r| RouteConfig::to(r.dst, r.gw)).collect(),
        resolv_conf: None,
        state: None,
        dhcp: Some(dhcp),
        etcd: None,
    })
}

/// The fleet pool shares one range, over plain HTTP (the CLI's rules, in
/// the configuration's words; the model checks the rest at ADD).
fn check_etcd(etcd: &EtcdConf, range_sets: &[Vec<AddressRange>]) -> Result<()> {
    if range_sets.len() != 1 || range_sets[0].len() != 1 {
        return Err(CniError::config(
            "ipam: store.etcd shares exactly one range between the hosts; give one subnet",
        ));
    }
    if etcd.endpoints.is_empty() {
        return Err(CniError::config("ipam: store.etcd.endpoints: give at least one client URL"));
    }
    if etcd.block_size.is_some_and(|b| !(1..=64).contains(&b)) {
        return Err(CniError::config("ipam: store.etcd.blockSize: expected 1 to 64 addresses"));
    }
    if etcd.ttl_seconds == Some(0) {
        return Err(CniError::config("ipam: store.etcd.ttlSeconds: expected at least one second"));
    }
    check_etcd_tls(etcd)
}

/// TLS to etcd: `https://` endpoints with the CA that signed etcd's
/// certificate (the system's CAs are never used), a client certificate
/// with its key; files named by absolute paths; no TLS file with plain
/// `http://`, which would silently not use it.
fn check_etcd_tls(etcd: &EtcdConf) -> Result<()> {
    let tls = [("ca", &etcd.ca), ("cert", &etcd.cert), ("key", &etcd.key)];
    let any_tls = tls.iter().any(|(_, path)| path.is_some());
    for url in &etcd.endpoints {
        let https = url.starts_with("https://");
        if https && etcd.ca.is_none() {
            return Err(CniError::config(format!(
                "ipam: store.etcd.endpoints {url}: TLS to etcd needs store.etcd.ca, the CA that signed etcd's server certificate (the system's CAs are not used)"
            )));
        }
        if !https && any_tls {
            return Err(CniError::config(format!(
                "ipam: store.etcd.endpoints {url}: plain HTTP, but TLS files are given; use https:// endpoints (all of them) or drop ca/cert/key"
            )));
        }
    }
    if etcd.cert.is_some() != etcd.key.is_some() {
        return Err(CniError::config("ipam: store.etcd.cert and store.etcd.key come together"));
    }
    for (key, path) in tls {
        if let Some(path) = path.as_ref().filter(|p| !p.is_absolute()) {
            return Err(CniError::config(format!(
                "ipam: store.etcd.{key} {}: give an absolute path",
                path.display()
            )));
        }
    }
    Ok(())
}

/// host-local's rules: the subnet leaves room (IPv4 /30, IPv6 /126 at most),
/// the window defaults to the subnet minus network and broadcast, the
/// gateway to the first address.
fn check_range(raw: RawRange) -> Result<AddressRange> {
    let subnet = raw.subnet.ok_or_else(|| CniError::config("ipam: a range has no subnet"))?.trunc();
    let limit = if subnet.addr().is_ipv4() { 30 } else { 126 };
    if subnet.prefix_len() > limit || subnet.prefix_len() == 0 {
        return Err(CniError::config(format!("ipam: network {subnet} too small to allocate from")));
    }
    let base = to_u128(subnet.network());
    let top = to_u128(match subnet {
        IpNet::V4(n) => IpAddr::V4(n.broadcast()),
        IpNet::V6(n) => IpAddr::V6(n.broadcast()),
    });
    let default_last = if subnet.addr().is_ipv4() { top - 1 } else { top };
    let at =
        |n| from_u128(subnet.addr(), n).ok_or_else(|| CniError::config("ipam: address overflow"));
    let inside = |what: &str, ip: IpAddr| {
        if subnet.contains(&ip) && ip.is_ipv4() == subnet.addr().is_ipv4() {
            Ok(ip)
        } else {
            Err(CniError::config(format!("ipam: {what} {ip} not in network {subnet}")))
        }
    };
    let first = match raw.range_start {
        Some(ip) => inside("rangeStart", ip)?,
        None => at(base + 1)?,
    };
    let last = match raw.range_end {
        Some(ip) => inside("rangeEnd", ip)?,
        None => at(default_last)?,
    };
    if to_u128(first) > to_u128(last) {
        return Err(CniError::config(format!("ipam: rangeStart {first} is after rangeEnd {last}")));
    }
    let gateway = match raw.gateway {
        Some(ip) => inside("gateway", ip)?,
        None => at(base + 1)?,
    };
    Ok(AddressRange { subnet, first, last, gateway })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_local_top_level_range() {
        let c = IpamConf::parse(&json!({"type":"nicslice-ipam","subnet":"10.1.2.0/24",
            "routes":[{"dst":"0.0.0.0/0"}],"dataDir":"/tmp/x"}))
        .unwrap();
        let r = &c.range_sets[0][0];
        assert_eq!(
            (r.first.to_string(), r.last.to_string()),
            ("10.1.2.1".into(), "10.1.2.254".into())
        );
        assert_eq!(r.gateway.to_string(), "10.1.2.1");
        assert_eq!(c.routes[0].gw, None);
        assert_eq!(c.state, Some(PathBuf::from("/tmp/x/cni-leases.mdb")));
    }

    #[test]
    fn empty_paths_mean_the_default() {
        let c = IpamConf::parse(&json!({"type":"x","subnet":"10.1.2.0/24","dataDir":""})).unwrap();
        assert_eq!(c.state, None);
        let c =
            IpamConf::parse(&json!({"type":"x","subnet":"10.1.2.0/24","state":"","dataDir":"/d"}))
                .unwrap();
        assert_eq!(c.state, Some(PathBuf::from("/d/cni-leases.mdb")));
        let c = IpamConf::parse(&json!({"type":"x","subnet":"10.1.2.0/24","routes":null,
            "ranges":null,"dataDir":null,"state":null,"resolvConf":null}))
        .unwrap();
        assert_eq!((c.state, c.routes.len()), (None, 0));
    }

    #[test]
    fn dual_stack_ranges_and_windows() {
        let c = IpamConf::parse(&json!({"type":"x","ranges":[
            [{"subnet":"10.1.2.0/24","rangeStart":"10.1.2.9","rangeEnd":"10.1.2.20","gateway":"10.1.2.254"}],
            [{"subnet":"2001:db8:1::/64"}]]}))
        .unwrap();
        assert_eq!(c.range_sets.len(), 2);
        let v4 = &c.range_sets[0][0];
        assert!(
            v4.contains("10.1.2.20".parse().unwrap()) && !v4.contains("10.1.2.21".parse().unwrap())
        );
        let v6 = &c.range_sets[1][0];
        assert_eq!(v6.last.to_string(), "2001:db8:1:0:ffff:ffff:ffff:ffff");
        assert_eq!(v6.gateway.to_string(), "2001:db8:1::1");
    }

    #[test]
    fn dhcp_instead_of_ranges() {
        let c = IpamConf::parse(&json!({"type":"nicslice-ipam","dhcp":{}})).unwrap();
        let v4 = DhcpFamilies { v4: true, v6: false };
        assert_eq!(c.dhcp, Some(DhcpConf { state: None, timeout: None, families: v4 }));
        assert!(c.range_sets.is_empty());
        let c =
            IpamConf::parse(&json!({"type":"x","dhcp":{"state":"/s.db","timeout":2.5}})).unwrap();
        assert_eq!(c.dhcp.unwrap().state, Some(PathBuf::from("/s.db")));
        for (given, v4, v6) in [(json!([6]), false, true), (json!([6, 4]), true, true)] {
            let c = IpamConf::parse(&json!({"type":"x","dhcp":{"families":given}})).unwrap();
            assert_eq!(c.dhcp.unwrap().families, DhcpFamilies { v4, v6 }, "{given}");
        }
        for (ipam, needle) in [
            (json!({"type":"x","dhcp":{},"subnet":"10.0.0.0/24"}), "drop subnet"),
            (json!({"type":"x","dhcp":{},"ranges":[[{"subnet":"10.0.0.0/24"}]]}), "drop subnet"),
            (json!({"type":"x","dhcp":{"timeout":0}}), "timeout"),
            (json!({"type":"x","dhcp":{"clientId":"x"}}), "unknown field `clientId`"),
            (json!({"type":"x","dhcp":{"families":[5]}}), "dhcp.families [5]: 5 is not"),
            (json!({"type":"x","dhcp":{"families":["6"]}}), "dhcp.families [\"6\"]"),
            (json!({"type":"x","dhcp":{"families":[]}}), "dhcp.families []: no family"),
            (json!({"type":"x","dhcp":{"families":[6, 6]}}), "listed twice"),
            (json!({"type":"x","dhcp":{"families":6}}), "dhcp.families 6: not a list"),
        ] {
            let e = IpamConf::parse(&ipam).unwrap_err();
            assert!(e.msg.contains(needle), "{ipam}: {}", e.msg);
        }
    }

    #[test]
    fn store_etcd_beside_one_range() {
        let c = IpamConf::parse(&json!({"type":"x","subnet":"10.1.2.0/24","store":{"etcd":{
            "endpoints":["http://10.0.0.5:2379"],"blockSize":8,"ttlSeconds":30,"state":"/s.db"}}}))
        .unwrap();
        let etcd = c.etcd.unwrap();
        assert_eq!((etcd.block_size, etcd.ttl_seconds), (Some(8), Some(30)));
        assert_eq!(etcd.state, Some(PathBuf::from("/s.db")));
        for store in [json!({}), json!(null)] {
            let c = IpamConf::parse(&json!({"type":"x","subnet":"10.1.2.0/24","store":store}));
            assert_eq!(c.unwrap().etcd, None, "the default store");
        }
    }

    #[test]
    fn refusals() {
        for (ipam, needle) in [
            (json!({"type":"x"}), "no IP ranges"),
            (json!({"type":"x","subnet":"10.0.0.0/31"}), "too small"),
            (json!({"type":"x","subnet":"10.0.0.0/24","rangeStart":"10.0.1.1"}), "not in network"),
            (
                json!({"type":"x","subnet":"10.0.0.0/24","rangeStart":"10.0.0.9","rangeEnd":"10.0.0.5"}),
                "after",
            ),
            (json!({"type":"x","subnet":"10.0.0.0/24","gateway":"fd00::1"}), "not in network"),
            (
                json!({"type":"x","ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.0.0.0/25"}]]}),
                "overlaps",
            ),
            (
                json!({"type":"x","ranges":[[{"subnet":"10.0.0.0/24"},{"subnet":"fd00::/64"}]]}),
                "mixes",
            ),
            (json!({"type":"x","ranges":[[]]}), "empty range set"),
            (json!({"type":"x","subnet":"nope"}), "ipam"),
            (json!({"type":"x","rangeStart":"10.0.0.1"}), "need a subnet"),
        ] {
            let e = IpamConf::parse(&ipam).unwrap_err();
            assert!(e.msg.contains(needle), "{ipam}: {}", e.msg);
        }
    }
}
