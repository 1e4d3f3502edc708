//! Which routes an endpoint gets: the ones asked for, then one default
//! route per family (seed 000: without it nothing crosses subnets) unless
//! the caller turned it off or a listed route already is one.

use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_kernel::Route;
use nicslice_model::RouteRequest;

/// One address of the endpoint and the gateway of its subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPlan {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    /// The user named this gateway: a NOARP child (ipvlan l3/l3s) uses it
    /// as given rather than its device (on a NOARP device it needs no
    /// neighbour).
    pub gateway_named: bool,
}

/// How a requested route leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Gateway(IpAddr),
    /// Through the device, no gateway.
    Device,
    /// Through the gateway of the destination's family (a CNI route without
    /// `gw`, as the reference plugins read it); the device when there is none.
    FamilyGateway,
}

/// A route asked for besides the default ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub destination: IpNet,
    pub via: Via,
    pub metric: Option<u32>,
}

impl From<&RouteRequest> for RouteSpec {
    /// A `--route DEST[,via=GW]` of `attach` (kept on the endpoint's record):
    /// through its gateway, else straight through the device.
    fn from(r: &RouteRequest) -> RouteSpec {
        RouteSpec {
            destination: r.destination,
            via: r.via.map_or(Via::Device, Via::Gateway),
            metric: None,
        }
    }
}

/// The routes to add: `extra` first, then, with `default_route`, one default
/// route per family that has an address and no listed default: through the
/// device for a NOARP child (`noarp`) whose gateway nobody named, else
/// through that family's gateway (none when it has no gateway).
pub fn plan_routes(
    addresses: &[AddressPlan],
    extra: &[RouteSpec],
    default_route: bool,
    noarp: bool,
) -> Vec<Route> {
    let family_gateway = |v6: bool| {
        addresses.iter().filter(|a| a.address.addr().is_ipv6() == v6).find_map(|a| a.gateway)
    };
    let mut routes: Vec<Route> = extra
        .iter()
        .map(|r| Route {
            destination: r.destination,
            gateway: match r.via {
                Via::Gateway(gw) => Some(gw),
                Via::Device => None,
                Via::FamilyGateway => family_gateway(r.destination.addr().is_ipv6()),
            },
            oif: None,
            metric: r.metric,
        })
        .collect();
    if !default_route {
        return routes;
    }
    for v6 in [false, true] {
        let Some(first) = addresses.iter().find(|a| a.address.addr().is_ipv6() == v6) else {
            continue;
        };
        if routes.iter().any(|r| r.is_default() && r.destination.addr().is_ipv6() == v6) {
            continue;
        }
        if noarp && !first.gateway_named {
            routes.push(Route::default_dev(v6, 0));
        } else if let Some(gw) = family_gateway(v6) {
            routes.push(Route::default_via(gw, 0));
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(a: &str, gw: Option<&str>) -> AddressPlan {
        AddressPlan {
            address: a.parse().unwrap(),
            gateway: gw.map(|g| g.parse().unwrap()),
            gateway_named: false,
        }
    }

    fn shown(routes: &[Route]) -> Vec<String> {
        routes
            .iter()
            .map(|r| match r.gateway {
                Some(gw) => format!("{} via {gw}", r.destination),
                None => format!("{} dev", r.destination),
            })
            .collect()
    }

    #[test]
    fn one_default_route_per_family_through_its_gateway() {
        let a = [addr("10.0.0.2/24", Some("10.0.0.1")), addr("fd00::2/64", Some("fd00::1"))];
        assert_eq!(
            shown(&plan_routes(&a, &[], true, false)),
            ["0.0.0.0/0 via 10.0.0.1", "::/0 via fd00::1"]
        );
        assert!(plan_routes(&a, &[], false, false).is_empty());
    }

    #[test]
    fn a_listed_default_wins_and_family_gateways_fill_in() {
        let a = [addr("10.0.0.2/24", Some("10.0.0.1"))];
        let extra = [
            RouteSpec {
                destination: "0.0.0.0/0".parse().unwrap(),
                via: Via::FamilyGateway,
                metric: None,
            },
            RouteSpec {
                destination: "10.9.0.0/16".parse().unwrap(),
                via: Via::Gateway("10.0.0.254".parse().unwrap()),
                metric: Some(5),
            },
            RouteSpec {
                destination: "10.8.0.0/16".parse().unwrap(),
                via: Via::Device,
                metric: None,
            },
        ];
        assert_eq!(
            shown(&plan_routes(&a, &extra, true, false)),
            ["0.0.0.0/0 via 10.0.0.1", "10.9.0.0/16 via 10.0.0.254", "10.8.0.0/16 dev"]
        );
    }

    #[test]
    fn noarp_children_route_through_the_device_unless_a_gateway_was_named() {
        let a = [addr("10.0.0.2/24", Some("10.0.0.1"))];
        assert_eq!(shown(&plan_routes(&a, &[], true, true)), ["0.0.0.0/0 dev"]);
        let named = [AddressPlan { gateway_named: true, ..a[0] }];
        assert_eq!(shown(&plan_routes(&named, &[], true, true)), ["0.0.0.0/0 via 10.0.0.1"]);
        // No gateway known: no default route; no address: none either.
        assert!(plan_routes(&[addr("10.0.0.2/24", None)], &[], true, false).is_empty());
        assert!(plan_routes(&[], &[], true, false).is_empty());
    }
}
