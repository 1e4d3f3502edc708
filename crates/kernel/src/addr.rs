//! Interface addresses: add, delete and list IPv4 and IPv6 addresses.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::NLM_F_REPLACE;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage, AddressScope, CacheInfo,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::netlink::{CREATE_EXCL, RouteSocket};

/// An address as the kernel lists it, with what tells who put it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressEntry {
    pub index: u32,
    pub address: IpNet,
    /// Scope global (`scope global`), not link or host.
    pub global: bool,
    /// Without lifetimes (`ip address add` made it); SLAAC and DHCP
    /// addresses are not (`dynamic` in `ip address`).
    pub permanent: bool,
}

/// The interface and address an address message is about: the local
/// address where there is one (a point-to-point peer is `Address`).
pub(crate) fn address_of(msg: &AddressMessage) -> Option<(u32, IpNet)> {
    let attr = |local: bool| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) if local => Some(*ip),
            AddressAttribute::Address(ip) if !local => Some(*ip),
            _ => None,
        })
    };
    let ip = attr(true).or_else(|| attr(false))?;
    IpNet::new(ip, msg.header.prefix_len).ok().map(|net| (msg.header.index, net))
}

/// `IFA_F_PERMANENT`, in the header's 8 bits of flags or the wider
/// `IFA_FLAGS` attribute the kernel sends beside them.
pub(crate) fn is_permanent(msg: &AddressMessage) -> bool {
    let mut flags = AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits()));
    for a in &msg.attributes {
        if let AddressAttribute::Flags(f) = a {
            flags |= *f;
        }
    }
    flags.contains(AddressFlags::Permanent)
}

pub(crate) fn address_message(index: u32, addr: IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family_of(addr.addr());
    msg.header.prefix_len = addr.prefix_len();
    msg.header.index = index;
    msg.header.scope = AddressScope::Universe;
    msg.attributes.push(AddressAttribute::Local(addr.addr()));
    msg.attributes.push(AddressAttribute::Address(addr.addr()));
    if let IpNet::V4(v4) = addr
        && v4.prefix_len() < 31
    {
        msg.attributes.push(AddressAttribute::Broadcast(v4.broadcast()));
    }
    msg
}

pub(crate) fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

impl RouteSocket {
    /// Adds an address. IPv6 addresses skip duplicate address detection:
    /// nicslice's IPAM already made them unique, and a tentative address could
    /// not be announced or used for the first seconds.
    pub fn add_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        let mut msg = address_message(index, addr);
        if addr.addr().is_ipv6() {
            msg.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.execute(
            &format!("add address {addr}"),
            RouteNetlinkMessage::NewAddress(msg),
            CREATE_EXCL,
        )
    }

    /// Gives address `addr` on `index` a lifetime of `secs` seconds, after
    /// which the kernel removes it by itself (`ip address change ADDR dev
    /// DEV valid_lft SECS preferred_lft SECS`): a DHCP address then goes
    /// when its lease runs out unrenewed, whoever is running.
    pub fn set_address_lifetime(&mut self, index: u32, addr: IpNet, secs: u32) -> Result<()> {
        let mut msg = address_message(index, addr);
        let mut lifetime = CacheInfo::default();
        lifetime.ifa_preferred = secs;
        lifetime.ifa_valid = secs;
        msg.attributes.push(AddressAttribute::CacheInfo(lifetime));
        self.execute(
            &format!("set the lifetime of address {addr}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_REPLACE,
        )
    }

    pub fn delete_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        self.execute(
            &format!("delete address {addr}"),
            RouteNetlinkMessage::DelAddress(address_message(index, addr)),
            0,
        )
    }

    /// Every address on interface `index` (all of them when `None`).
    pub fn addresses(&mut self, index: Option<u32>) -> Result<Vec<(u32, IpNet)>> {
        Ok(self.address_entries(index)?.into_iter().map(|e| (e.index, e.address)).collect())
    }

    /// Every address on interface `index` (all when `None`), with its scope
    /// and whether it is permanent (`ip -d address show`).
    pub fn address_entries(&mut self, index: Option<u32>) -> Result<Vec<AddressEntry>> {
        let parts = self
            .dump("list addresses", RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
        let mut out = Vec::new();
        for part in parts {
            let RouteNetlinkMessage::NewAddress(msg) = part else { continue };
            if index.is_some_and(|i| i != msg.header.index) {
                continue;
            }
            if let Some((index, address)) = address_of(&msg) {
                out.push(AddressEntry {
                    index,
                    address,
                    global: msg.header.scope == AddressScope::Universe,
                    permanent: is_permanent(&msg),
                });
            }
        }
        Ok(out)
    }

    /// The valid lifetime left of address `ip` on interface `index`, in
    /// seconds (`ip address show`'s `valid_lft`; `u32::MAX` is forever).
    pub fn address_valid_lifetime(&mut self, index: u32, ip: IpAddr) -> Result<Option<u32>> {
        let parts = self
            .dump("list addresses", RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
        for part in parts {
            let RouteNetlinkMessage::NewAddress(msg) = part else { continue };
            let here = msg.header.index == index
                && msg.attributes.iter().any(|a| matches!(a, AddressAttribute::Local(a) | AddressAttribute::Address(a) if *a == ip));
            if here {
                return Ok(msg.attributes.iter().find_map(|a| match a {
                    AddressAttribute::CacheInfo(c) => Some(c.ifa_valid),
                    _ => None,
                }));
            }
        }
        Ok(None)
    }
}
