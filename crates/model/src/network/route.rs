//! Extra routes an endpoint asks for (`attach --route DEST[,via=GW]`): the
//! parsed request and its check against the network, before the kernel is
//! touched. A route without `via` goes straight through the device, as
//! `ip route add DEST dev eth0` does; the default route stays the network's
//! business (its gateway, or `--no-default-route`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::ValidNetwork;

/// One extra route of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRequest {
    pub destination: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<IpAddr>,
}

impl fmt::Display for RouteRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.via {
            Some(gw) => write!(f, "{} via {gw}", self.destination),
            None => write!(f, "{} through the device", self.destination),
        }
    }
}

impl FromStr for RouteRequest {
    type Err = String;

    /// `10.9.0.0/16` or `10.9.0.0/16,via=192.168.0.254` (host bits are cleared).
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "write a route as DEST or DEST,via=GATEWAY (10.9.0.0/16,via=192.168.0.254)";
        let mut parts = s.split(',');
        let dest = parts.next().unwrap_or_default().trim();
        let destination: IpNet =
            dest.parse().map_err(|_| format!("route {s:?}: {dest:?} is not a CIDR; {usage}"))?;
        let mut via = None;
        for part in parts {
            let gw = part
                .trim()
                .strip_prefix("via=")
                .ok_or_else(|| format!("route {s:?}: unknown part {part:?}; {usage}"))?;
            if via.is_some() {
                return Err(format!("route {s:?} names two gateways; {usage}"));
            }
            via = Some(
                gw.parse::<IpAddr>()
                    .map_err(|_| format!("route {s:?}: {gw:?} is not an IP address"))?,
            );
        }
        Ok(RouteRequest { destination: destination.trunc(), via })
    }
}

impl RouteRequest {
    /// Checks the route against the endpoint's network: a family the network
    /// has, a gateway on one of its subnets (the kernel wants it on-link), and
    /// not the default route.
    pub fn check(&self, network: &ValidNetwork) -> Result<(), String> {
        let name = &network.spec().name;
        if self.destination.prefix_len() == 0 {
            return Err(format!(
                "--route {self}: the default route comes from the network's gateway; give the network a --gateway, or attach with --no-default-route and a narrower --route"
            ));
        }
        let v6 = self.destination.addr().is_ipv6();
        let family: Vec<IpNet> = network
            .subnets()
            .iter()
            .map(|s| s.subnet())
            .filter(|n| n.addr().is_ipv6() == v6)
            .collect();
        if family.is_empty() {
            return Err(format!(
                "--route {self}: network {name} has no IPv{} subnet, so the endpoint has no address of that family",
                if v6 { 6 } else { 4 }
            ));
        }
        if let Some(gw) = self.via {
            if gw.is_ipv6() != v6 {
                return Err(format!(
                    "--route {self}: the gateway is not of the destination's family"
                ));
            }
            if !family.iter().any(|n| n.contains(&gw)) {
                let list: Vec<String> = family.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "--route {self}: gateway {gw} is on no subnet of network {name} ({}); the next hop must be reachable without a route",
                    list.join(", ")
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{NetworkSpec, SubnetSpec};

    fn lan() -> ValidNetwork {
        let mut spec = NetworkSpec::new(
            "lan".parse().unwrap(),
            crate::Driver::Macvlan,
            "eth0".parse().unwrap(),
            crate::MacvlanMode::Bridge,
        );
        spec.subnets.push(SubnetSpec::new("192.168.0.0/24".parse().unwrap()));
        spec.validate().unwrap()
    }

    fn route(s: &str) -> RouteRequest {
        s.parse().unwrap()
    }

    #[test]
    fn parses_destination_and_gateway() {
        assert_eq!(route("10.9.0.5/16").to_string(), "10.9.0.0/16 through the device");
        let r = route("10.9.0.0/16,via=192.168.0.254");
        assert_eq!(r.via, Some("192.168.0.254".parse().unwrap()));
        assert_eq!(route("fd00:9::/64,via=fd00::1").to_string(), "fd00:9::/64 via fd00::1");
        for bad in ["10.9.0.0", "10.9.0.0/16,gw=1.2.3.4", "10.9.0.0/16,via=x", "x/8", ""] {
            assert!(bad.parse::<RouteRequest>().is_err(), "{bad}");
        }
        let two = "10.9.0.0/16,via=192.168.0.1,via=192.168.0.2".parse::<RouteRequest>();
        assert!(two.unwrap_err().contains("two gateways"));
    }

    #[test]
    fn checks_family_gateway_and_default() {
        let lan = lan();
        assert!(route("10.9.0.0/16,via=192.168.0.254").check(&lan).is_ok());
        assert!(route("10.9.0.0/16").check(&lan).is_ok());
        let off = route("10.9.0.0/16,via=10.0.0.1").check(&lan).unwrap_err();
        assert!(off.contains("on no subnet of network lan"), "{off}");
        let v6 = route("fd00:9::/64").check(&lan).unwrap_err();
        assert!(v6.contains("no IPv6 subnet"), "{v6}");
        let default = route("0.0.0.0/0,via=192.168.0.254").check(&lan).unwrap_err();
        assert!(default.contains("--no-default-route"), "{default}");
        assert!(route("10.9.0.0/16,via=fd00::1").check(&lan).is_err());
    }
}
