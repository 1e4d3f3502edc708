//! Validation of one subnet on its own: normalization, prefix length, gateway,
//! ip range and reserved addresses. Produces `ValidSubnet`; rules that involve
//! several subnets or the network's mode live in `valid`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use super::SubnetSpec;
use crate::addr;

/// A subnet that passed every single-subnet rule. `subnet` and `ip_range` are in
/// canonical form (host bits cleared) and the gateway is resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ValidSubnet {
    spec: SubnetSpec,
}

impl ValidSubnet {
    /// Checks `spec`. A subnet written with host bits set (`192.168.1.5/24`) is
    /// normalized to its network (`192.168.1.0/24`), as the CNI reference
    /// plugins do; so is `ip_range`. The error is a reason without the network name.
    pub(super) fn check(mut spec: SubnetSpec) -> Result<ValidSubnet, String> {
        spec.subnet = spec.subnet.trunc();
        let subnet = spec.subnet;
        check_prefix(&subnet)?;
        check_scope(&subnet, spec.link_local)?;
        let gateway = match spec.gateway {
            Some(gw) => check_gateway(&subnet, gw)?,
            None => {
                spec.gateway_default = true;
                first_usable(&subnet)?
            }
        };
        spec.gateway = Some(gateway);
        if let Some(range) = spec.ip_range {
            spec.ip_range = Some(check_range(&subnet, range)?);
        }
        if let Some(window) = spec.window {
            check_window(&spec.ip_range.unwrap_or(subnet), window)?;
        }
        for (name, ip) in &spec.aux_addresses {
            if name.is_empty() {
                return Err(format!(
                    "aux address {ip} has an empty name; name it like router={ip}"
                ));
            }
            if !subnet.contains(ip) {
                return Err(format!(
                    "aux address {name}={ip} is outside subnet {subnet}; choose an address inside it"
                ));
            }
        }
        Ok(ValidSubnet { spec })
    }

    pub fn spec(&self) -> &SubnetSpec {
        &self.spec
    }

    /// The subnet in canonical form.
    pub fn subnet(&self) -> IpNet {
        self.spec.subnet
    }

    /// Whether the gateway was chosen by validation, not asked for.
    pub fn gateway_is_default(&self) -> bool {
        self.spec.gateway_default
    }

    /// The gateway: the one asked for or the first usable address.
    pub fn gateway(&self) -> IpAddr {
        // check() always sets it; the subnet's network address is a safe fallback.
        self.spec.gateway.unwrap_or_else(|| self.spec.subnet.network())
    }

    /// The range automatic allocation draws from: `ip_range` or the whole subnet.
    pub fn allocation_range(&self) -> IpNet {
        self.spec.ip_range.unwrap_or(self.spec.subnet)
    }

    pub fn into_spec(self) -> SubnetSpec {
        self.spec
    }
}

fn check_prefix(subnet: &IpNet) -> Result<(), String> {
    let len = subnet.prefix_len();
    if len == 0 {
        return Err(format!("subnet {subnet} covers the whole address space; give a real subnet"));
    }
    let (limit, wider) = match subnet {
        IpNet::V4(_) => (31, "/30"),
        IpNet::V6(_) => (127, "/126"),
    };
    if len >= limit {
        return Err(format!(
            "subnet {subnet} leaves no room for a gateway and endpoints; use {wider} or wider"
        ));
    }
    Ok(())
}

/// Address blocks no interface of a network can live in, and why.
const NEVER_A_NETWORK: [(&str, &str); 6] = [
    ("0.0.0.0/8", "\"this network\" (0.0.0.0/8), which no interface may use"),
    ("127.0.0.0/8", "loopback (127.0.0.0/8), which stays inside each host"),
    ("224.0.0.0/4", "multicast (224.0.0.0/4): group addresses, never an interface's own"),
    ("240.0.0.0/4", "reserved (240.0.0.0/4, with the broadcast address), which hosts drop"),
    ("ff00::/8", "IPv6 multicast (ff00::/8): group addresses, never an interface's own"),
    ("::/127", "the IPv6 unspecified and loopback addresses (::/127)"),
];

/// Refuses subnets that overlap a block no network can use, and an IPv4
/// link-local subnet unless the user asked for one (`link_local`).
fn check_scope(subnet: &IpNet, link_local: bool) -> Result<(), String> {
    let overlaps = |block: &IpNet| block.contains(subnet) || subnet.contains(block);
    for (block, why) in NEVER_A_NETWORK {
        let block: IpNet = block.parse().map_err(|_| format!("bad block {block}"))?;
        if overlaps(&block) {
            return Err(format!("subnet {subnet} lies in {why}; give a unicast subnet"));
        }
    }
    let v4_link_local: IpNet = "169.254.0.0/16".parse().map_err(|_| "bad block".to_string())?;
    if !link_local && overlaps(&v4_link_local) {
        return Err(format!(
            "subnet {subnet} is IPv4 link-local (169.254.0.0/16), the addresses a host gives \
             itself when nothing else does; give another subnet, or ask for link-local \
             explicitly (--link-local)"
        ));
    }
    Ok(())
}

fn check_gateway(subnet: &IpNet, gw: IpAddr) -> Result<IpAddr, String> {
    if !addr::same_family(gw, subnet.addr()) || !subnet.contains(&gw) {
        return Err(format!(
            "gateway {gw} is outside subnet {subnet}; choose an address inside it"
        ));
    }
    let hint = first_usable(subnet)?;
    if gw == subnet.network() {
        return Err(format!(
            "gateway {gw} is the network address of subnet {subnet}; choose a host address such as {hint}"
        ));
    }
    if subnet.addr().is_ipv4() && gw == subnet.broadcast() {
        return Err(format!(
            "gateway {gw} is the broadcast address of subnet {subnet}; choose a host address such as {hint}"
        ));
    }
    Ok(gw)
}

fn check_range(subnet: &IpNet, range: IpNet) -> Result<IpNet, String> {
    let range = range.trunc();
    if !addr::same_family(range.addr(), subnet.addr()) {
        return Err(format!("ip range {range} is not of the address family of subnet {subnet}"));
    }
    if !subnet.contains(&range) {
        return Err(format!(
            "ip range {range} is not inside subnet {subnet}; choose a range inside it"
        ));
    }
    Ok(range)
}

/// A window (first, last) inside `range`, in order.
fn check_window(range: &IpNet, (first, last): (IpAddr, IpAddr)) -> Result<(), String> {
    for ip in [first, last] {
        if !addr::same_family(ip, range.addr()) || !range.contains(&ip) {
            return Err(format!("range bound {ip} is not inside {range}"));
        }
    }
    if addr::to_u128(first) > addr::to_u128(last) {
        return Err(format!("range start {first} is after range end {last}"));
    }
    Ok(())
}

/// The address right after the network address (`192.168.0.1` for `192.168.0.0/16`).
fn first_usable(subnet: &IpNet) -> Result<IpAddr, String> {
    let base = subnet.network();
    addr::from_u128(base, addr::to_u128(base) + 1)
        .filter(|ip| subnet.contains(ip))
        .ok_or_else(|| format!("subnet {subnet} has no usable address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(subnet: &str) -> SubnetSpec {
        SubnetSpec::new(subnet.parse().unwrap())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_window_lies_inside_the_range_in_order() {
        let mut s = spec("10.0.0.0/24");
        s.ip_range = Some("10.0.0.128/25".parse().unwrap());
        s.window = Some((ip("10.0.0.130"), ip("10.0.0.200")));
        assert!(ValidSubnet::check(s.clone()).is_ok());
        s.window = Some((ip("10.0.0.100"), ip("10.0.0.110")));
        assert!(ValidSubnet::check(s.clone()).unwrap_err().contains("not inside"));
        s.window = Some((ip("10.0.0.200"), ip("10.0.0.130")));
        assert!(ValidSubnet::check(s).unwrap_err().contains("after"));
    }

    #[test]
    fn gateway_defaults_to_first_usable() {
        let v = ValidSubnet::check(spec("192.168.0.0/16")).unwrap();
        assert_eq!(v.gateway(), ip("192.168.0.1"));
        let v = ValidSubnet::check(spec("fd00:1::/64")).unwrap();
        assert_eq!(v.gateway(), ip("fd00:1::1"));
        assert!(v.gateway_is_default());
        // Validating the validated spec again (as a stored network is) keeps knowing it.
        assert!(ValidSubnet::check(v.into_spec()).unwrap().gateway_is_default());
        let mut asked = spec("10.0.0.0/24");
        asked.gateway = Some(ip("10.0.0.254"));
        assert!(!ValidSubnet::check(asked).unwrap().gateway_is_default());
    }

    #[test]
    fn host_bits_are_normalized() {
        let mut s = spec("192.168.1.5/24");
        s.ip_range = Some("192.168.1.130/25".parse().unwrap());
        let v = ValidSubnet::check(s).unwrap();
        assert_eq!(v.subnet().to_string(), "192.168.1.0/24");
        assert_eq!(v.allocation_range().to_string(), "192.168.1.128/25");
        assert_eq!(v.gateway(), ip("192.168.1.1"));
    }

    #[test]
    fn prefixes_without_room_are_refused() {
        for bad in ["10.0.0.0/31", "10.0.0.0/32", "fd00::/127", "fd00::/128", "0.0.0.0/0", "::/0"] {
            let err = ValidSubnet::check(spec(bad)).unwrap_err();
            assert!(err.contains("subnet"), "{bad}: {err}");
        }
        assert!(ValidSubnet::check(spec("10.0.0.0/30")).is_ok());
        assert!(ValidSubnet::check(spec("fd00::/126")).is_ok());
    }

    #[test]
    fn multicast_loopback_and_link_local_are_refused() {
        for (bad, needle) in [
            ("224.0.0.0/24", "multicast"),
            ("239.1.0.0/16", "multicast"),
            ("127.0.0.0/24", "loopback"),
            ("0.0.0.0/24", "this network"),
            ("240.0.0.0/24", "reserved"),
            ("255.255.255.0/24", "reserved"),
            ("128.0.0.0/1", "multicast"),
            ("ff02::/64", "multicast"),
            ("::/64", "loopback"),
            ("169.254.0.0/24", "--link-local"),
            ("169.0.0.0/8", "--link-local"),
        ] {
            let err = ValidSubnet::check(spec(bad)).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
        let mut asked = spec("169.254.10.0/24");
        asked.link_local = true;
        assert!(ValidSubnet::check(asked).is_ok());
        for good in
            ["10.0.0.0/8", "192.168.0.0/16", "223.255.255.0/24", "fd00::/64", "2001:db8::/64"]
        {
            assert!(ValidSubnet::check(spec(good)).is_ok(), "{good}");
        }
    }

    #[test]
    fn gateway_rules() {
        let with_gw = |g: &str| {
            let mut s = spec("10.0.0.0/24");
            s.gateway = Some(ip(g));
            ValidSubnet::check(s)
        };
        assert_eq!(with_gw("10.0.0.254").unwrap().gateway(), ip("10.0.0.254"));
        assert!(with_gw("10.0.1.1").unwrap_err().contains("outside subnet"));
        assert!(with_gw("fd00::1").unwrap_err().contains("outside subnet"));
        assert!(with_gw("10.0.0.0").unwrap_err().contains("network address"));
        assert!(with_gw("10.0.0.255").unwrap_err().contains("broadcast address"));
        // IPv6 has no broadcast: the last address is a fine gateway.
        let mut s = spec("fd00::/120");
        s.gateway = Some(ip("fd00::ff"));
        assert!(ValidSubnet::check(s).is_ok());
    }

    #[test]
    fn range_and_aux_rules() {
        let mut s = spec("10.0.0.0/24");
        s.ip_range = Some("10.0.1.0/28".parse().unwrap());
        assert!(ValidSubnet::check(s).unwrap_err().contains("not inside subnet"));
        let mut s = spec("10.0.0.0/24");
        s.ip_range = Some("fd00::/120".parse().unwrap());
        assert!(ValidSubnet::check(s).unwrap_err().contains("address family"));
        let mut s = spec("10.0.0.0/24");
        s.aux_addresses.insert("router".into(), ip("10.9.0.1"));
        assert!(ValidSubnet::check(s).unwrap_err().contains("router=10.9.0.1"));
        let mut s = spec("10.0.0.0/24");
        s.aux_addresses.insert(String::new(), ip("10.0.0.9"));
        assert!(ValidSubnet::check(s).unwrap_err().contains("empty name"));
    }
}
