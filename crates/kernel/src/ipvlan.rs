//! Creating ipvlan and ipvtap links. Mode and flag belong to the parent port:
//! the kernel applies the last child's to every child of that parent, so the
//! engine refuses mixed requests before they get here.

use std::os::fd::AsRawFd;

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoIpVtap, InfoKind, IpVlanFlags, IpVlanMode, LinkAttribute, LinkInfo,
    LinkMessage,
};
use nicslice_model::IfName;
use nicslice_model::{IpvlanFlag, IpvlanMode};

use crate::error::Result;
use crate::netlink::{CREATE_EXCL, RouteSocket};
use crate::netns::Netns;

/// Everything needed to create one ipvlan or ipvtap child.
#[derive(Debug, Clone)]
pub struct IpvlanLinkRequest {
    /// ipvtap (with a tap queue) rather than ipvlan.
    pub tap: bool,
    pub name: IfName,
    pub parent_index: u32,
    pub mode: IpvlanMode,
    pub flag: IpvlanFlag,
    pub mtu: Option<u32>,
}

fn kernel_mode(mode: IpvlanMode) -> IpVlanMode {
    match mode {
        IpvlanMode::L2 => IpVlanMode::L2,
        IpvlanMode::L3 => IpVlanMode::L3,
        IpvlanMode::L3s => IpVlanMode::L3S,
    }
}

fn kernel_flags(flag: IpvlanFlag) -> IpVlanFlags {
    match flag {
        IpvlanFlag::Bridge => IpVlanFlags::empty(),
        IpvlanFlag::Private => IpVlanFlags::Private,
        IpvlanFlag::Vepa => IpVlanFlags::Vepa,
    }
}

impl RouteSocket {
    /// Creates the child on a parent of this socket's namespace, straight
    /// into `target` when given.
    pub fn create_ipvlan(&mut self, req: &IpvlanLinkRequest, target: Option<&Netns>) -> Result<()> {
        let (mode, flags) = (kernel_mode(req.mode), kernel_flags(req.flag));
        let info = if req.tap {
            vec![
                LinkInfo::Kind(InfoKind::IpVtap),
                LinkInfo::Data(InfoData::IpVtap(vec![
                    InfoIpVtap::Mode(mode),
                    InfoIpVtap::Flags(flags),
                ])),
            ]
        } else {
            vec![
                LinkInfo::Kind(InfoKind::IpVlan),
                LinkInfo::Data(InfoData::IpVlan(vec![
                    InfoIpVlan::Mode(mode),
                    InfoIpVlan::Flags(flags),
                ])),
            ]
        };
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(req.name.to_string()));
        msg.attributes.push(LinkAttribute::Link(req.parent_index));
        if let Some(mtu) = req.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(ns) = target {
            msg.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(info));
        let kind = if req.tap { "ipvtap" } else { "ipvlan" };
        let op = format!("create {kind} {} ({:?} {:?})", req.name, req.mode, req.flag);
        self.execute(&op, RouteNetlinkMessage::NewLink(msg), CREATE_EXCL)
    }
}
