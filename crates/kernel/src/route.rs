//! Routes in the main table: the default route via a gateway (or through the
//! device), extra routes, and listing them.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use serde::Serialize;

use crate::addr::family_of;
use crate::error::Result;
use crate::netlink::{CREATE_EXCL, RouteSocket};

/// One route as nicslice asks for it or reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub destination: IpNet,
    /// Next hop; `None` for a route straight through the device.
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub metric: Option<u32>,
}

impl Route {
    pub fn default_via(gateway: IpAddr, oif: u32) -> Route {
        let destination = match gateway {
            IpAddr::V4(_) => IpNet::V4(Default::default()),
            IpAddr::V6(_) => IpNet::V6(Default::default()),
        };
        Route { destination, gateway: Some(gateway), oif: Some(oif), metric: None }
    }

    /// A default route straight through the device (`ip route add default dev X`).
    pub fn default_dev(v6: bool, oif: u32) -> Route {
        let destination =
            if v6 { IpNet::V6(Default::default()) } else { IpNet::V4(Default::default()) };
        Route { destination, gateway: None, oif: Some(oif), metric: None }
    }

    pub fn is_default(&self) -> bool {
        self.destination.prefix_len() == 0
    }
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v) => RouteAddress::Inet(v),
        IpAddr::V6(v) => RouteAddress::Inet6(v),
    }
}

fn route_message(route: &Route) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family_of(route.destination.addr());
    msg.header.destination_prefix_length = route.destination.prefix_len();
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Static;
    msg.header.kind = RouteType::Unicast;
    msg.header.scope =
        if route.gateway.is_some() { RouteScope::Universe } else { RouteScope::Link };
    if route.destination.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(route_address(route.destination.network())));
    }
    if let Some(gw) = route.gateway {
        msg.attributes.push(RouteAttribute::Gateway(route_address(gw)));
    }
    if let Some(oif) = route.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(metric) = route.metric {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    msg
}

fn host_route(to: IpAddr, oif: u32) -> Route {
    let prefix = if to.is_ipv4() { 32 } else { 128 };
    let destination =
        IpNet::new(to, prefix).unwrap_or_else(|_| unreachable!("a full-length prefix"));
    Route { destination, gateway: None, oif: Some(oif), metric: None }
}

impl RouteSocket {
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        let op = match route.gateway {
            Some(gw) => format!("add route {} via {gw}", route.destination),
            None => format!("add route {} through the device", route.destination),
        };
        self.execute(&op, RouteNetlinkMessage::NewRoute(route_message(route)), CREATE_EXCL)
    }

    /// `ip route add ADDR/32 dev OIF [src SOURCE]` (`/128` for IPv6): a route
    /// to one address through a device, with the source address the host
    /// uses for it.
    pub fn add_host_route(&mut self, to: IpAddr, oif: u32, source: Option<IpAddr>) -> Result<()> {
        self.add_device_route(host_route(to, oif).destination, oif, source)
    }

    /// `ip route add PREFIX dev OIF [src SOURCE]`: a prefix straight
    /// through a device, with the source address the host uses for it.
    pub fn add_device_route(&mut self, to: IpNet, oif: u32, source: Option<IpAddr>) -> Result<()> {
        let route = Route { destination: to, gateway: None, oif: Some(oif), metric: None };
        let mut msg = route_message(&route);
        if let Some(src) = source {
            msg.attributes.push(RouteAttribute::PrefSource(route_address(src)));
        }
        let op = format!("add route {to} through interface {oif}");
        self.execute(&op, RouteNetlinkMessage::NewRoute(msg), CREATE_EXCL)
    }

    /// `ip route del PREFIX dev OIF`.
    pub fn delete_device_route(&mut self, to: IpNet, oif: u32) -> Result<()> {
        self.delete_route(&Route { destination: to, gateway: None, oif: Some(oif), metric: None })
    }

    /// `ip route del ADDR/32 dev OIF`.
    pub fn delete_host_route(&mut self, to: IpAddr, oif: u32) -> Result<()> {
        self.delete_route(&host_route(to, oif))
    }

    pub fn delete_route(&mut self, route: &Route) -> Result<()> {
        self.execute(
            &format!("delete route {}", route.destination),
            RouteNetlinkMessage::DelRoute(route_message(route)),
            0,
        )
    }

    /// Unicast routes of the main table, both families.
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        let mut out = Vec::new();
        for family in
            [netlink_packet_route::AddressFamily::Inet, netlink_packet_route::AddressFamily::Inet6]
        {
            let mut req = RouteMessage::default();
            req.header.address_family = family;
            req.header.table = RouteHeader::RT_TABLE_MAIN;
            for part in self.dump("list routes", RouteNetlinkMessage::GetRoute(req))? {
                let RouteNetlinkMessage::NewRoute(msg) = part else { continue };
                if msg.header.table != RouteHeader::RT_TABLE_MAIN
                    || msg.header.kind != RouteType::Unicast
                {
                    continue;
                }
                let mut dst = None;
                let mut gateway = None;
                let mut oif = None;
                let mut metric = None;
                for a in &msg.attributes {
                    match a {
                        RouteAttribute::Destination(RouteAddress::Inet(v)) => {
                            dst = Some(IpAddr::V4(*v))
                        }
                        RouteAttribute::Destination(RouteAddress::Inet6(v)) => {
                            dst = Some(IpAddr::V6(*v))
                        }
                        RouteAttribute::Gateway(RouteAddress::Inet(v)) => {
                            gateway = Some(IpAddr::V4(*v))
                        }
                        RouteAttribute::Gateway(RouteAddress::Inet6(v)) => {
                            gateway = Some(IpAddr::V6(*v))
                        }
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        RouteAttribute::Priority(p) => metric = Some(*p),
                        _ => {}
                    }
                }
                let unspecified = match family {
                    netlink_packet_route::AddressFamily::Inet6 => {
                        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                    }
                    _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                };
                let Ok(destination) =
                    IpNet::new(dst.unwrap_or(unspecified), msg.header.destination_prefix_length)
                else {
                    continue;
                };
                out.push(Route { destination, gateway, oif, metric });
            }
        }
        Ok(out)
    }
}
