//! The other link kinds nicslice builds around its children: veth pairs (a
//! parent wired into a switch), bridges (the switch) with hairpin on a port,
//! and the plain kinds `check` tries (dummy, 802.1Q, ipvlan, ipvtap).

use std::os::fd::AsRawFd;

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoIpVlan, InfoIpVtap, InfoKind, InfoPortData, InfoPortKind,
    InfoVeth, InfoVlan, IpVlanMode, LinkAttribute, LinkInfo, LinkMessage,
};

use crate::error::Result;
use crate::link::link_message;
use crate::netlink::{CREATE_EXCL, RouteSocket};
use crate::netns::Netns;

/// A link kind without children semantics, as `check` and the lab create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimpleKind {
    Dummy,
    Bridge,
    /// 802.1Q sub-interface with this VLAN id on a parent.
    Vlan(u16),
    /// ipvlan L2 on a parent.
    Ipvlan,
    Ipvtap,
}

impl RouteSocket {
    /// Creates a veth pair; the peer goes straight into `peer_netns` if given.
    pub fn create_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: Option<&Netns>,
    ) -> Result<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.push(LinkAttribute::IfName(peer.to_string()));
        if let Some(ns) = peer_netns {
            peer_msg.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.execute(
            &format!("create veth {name}/{peer}"),
            RouteNetlinkMessage::NewLink(msg),
            CREATE_EXCL,
        )
    }

    /// Creates a link of a simple kind, on `parent` where the kind needs one.
    pub fn create_simple(
        &mut self,
        kind: SimpleKind,
        name: &str,
        parent: Option<u32>,
    ) -> Result<()> {
        let info = match kind {
            SimpleKind::Dummy => vec![LinkInfo::Kind(InfoKind::Dummy)],
            SimpleKind::Bridge => vec![LinkInfo::Kind(InfoKind::Bridge)],
            SimpleKind::Vlan(id) => {
                vec![
                    LinkInfo::Kind(InfoKind::Vlan),
                    LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(id)])),
                ]
            }
            SimpleKind::Ipvlan => vec![
                LinkInfo::Kind(InfoKind::IpVlan),
                LinkInfo::Data(InfoData::IpVlan(vec![InfoIpVlan::Mode(IpVlanMode::L2)])),
            ],
            SimpleKind::Ipvtap => vec![
                LinkInfo::Kind(InfoKind::IpVtap),
                LinkInfo::Data(InfoData::IpVtap(vec![InfoIpVtap::Mode(IpVlanMode::L2)])),
            ],
        };
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(p) = parent {
            msg.attributes.push(LinkAttribute::Link(p));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(info));
        self.execute(
            &format!("create {kind:?} {name}"),
            RouteNetlinkMessage::NewLink(msg),
            CREATE_EXCL,
        )
    }

    /// Sets hairpin (reflective relay) on a bridge port: frames that came in on
    /// the port may go back out of it, which VEPA children need to talk.
    pub fn set_bridge_port_hairpin(&mut self, index: u32, on: bool) -> Result<()> {
        let mut msg = link_message(index);
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(on)])),
        ]));
        self.execute("set bridge port hairpin", RouteNetlinkMessage::NewLink(msg), 0)
    }
}
