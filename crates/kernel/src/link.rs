//! Links: reading what the kernel reports about an interface, and the generic
//! operations every kind shares (up/down, rename, MTU, MAC, promiscuous mode,
//! master, delete). Kind-specific creation lives elsewhere: macvlan and
//! macvtap in `macvlan.rs`, ipvlan and ipvtap in `ipvlan.rs`, veth, bridge,
//! dummy and 802.1Q in `topology.rs`; `placement.rs` puts a child straight
//! into its namespace under its final name.

use netlink_packet_core::{Emitable, NlasIterator};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    AfSpecInet, AfSpecUnspec, InetDevConf, InfoData, InfoKind, InfoMacVlan, InfoMacVtap, InfoVlan,
    LinkAttribute, LinkExtentMask, LinkFlags, LinkHeader, LinkInfo, LinkLayerType, LinkMessage,
    State,
};
use nicslice_model::{MacAddr, MacvlanFlags, MacvlanMode};
use serde::Serialize;

use crate::error::{KernelError, Result};
use crate::netlink::RouteSocket;

/// What the kernel reports about one interface, in nicslice's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND`: "macvlan", "veth", "bridge"...; `None` for physical NICs and `lo`.
    pub kind: Option<String>,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present and operational (`IFF_LOWER_UP`).
    pub lower_up: bool,
    pub oper_state: String,
    /// The promiscuity counter; above zero means the device is promiscuous.
    pub promiscuity: u32,
    /// `IFF_PROMISC` as set by a user (not counting the kernel's own references).
    pub promisc_flag: bool,
    pub ethernet: bool,
    pub loopback: bool,
    /// The lower device's index (`IFLA_LINK`), in the namespace of `link_netnsid`.
    pub parent_index: Option<u32>,
    pub link_netnsid: Option<i32>,
    pub master_index: Option<u32>,
    pub macvlan: Option<MacvlanState>,
    /// An 802.1Q sub-interface's VLAN id.
    pub vlan_id: Option<u16>,
}

/// A link as a caller needs it right after making it: what later requests
/// address (its index) and what a CNI result reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkBrief {
    pub index: u32,
    pub name: String,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
}

impl LinkBrief {
    /// Reads the header and three attributes of a GETLINK reply's payload,
    /// walking the rest undecoded (netlink-packet-route's `NlasIterator`):
    /// decoding a new macvlan's every nested attribute (its IPv4 and IPv6
    /// settings, link info) is most of a lookup's cost.
    fn from_payload(payload: &[u8]) -> Result<LinkBrief> {
        let bad = |e: netlink_packet_core::DecodeError| KernelError::Protocol {
            op: "read an interface".into(),
            detail: e.to_string(),
        };
        let header = LinkHeader::parse(payload).map_err(bad)?;
        let mut link = LinkBrief { index: header.index, name: String::new(), mac: None, mtu: 0 };
        let attributes = payload.get(header.buffer_len()..).unwrap_or_default();
        for nla in NlasIterator::new(attributes) {
            let nla = nla.map_err(bad)?;
            let value = nla.value();
            match nla.kind() {
                libc::IFLA_IFNAME => {
                    let name = value.split(|b| *b == 0).next().unwrap_or_default();
                    link.name = String::from_utf8_lossy(name).into_owned();
                }
                libc::IFLA_ADDRESS => {
                    if let Ok(mac) = <[u8; 6]>::try_from(value) {
                        link.mac = Some(MacAddr(mac));
                    }
                }
                libc::IFLA_MTU => {
                    if let Ok(mtu) = <[u8; 4]>::try_from(value) {
                        link.mtu = u32::from_ne_bytes(mtu);
                    }
                }
                _ => {}
            }
        }
        Ok(link)
    }
}

/// The macvlan/macvtap part of a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MacvlanState {
    pub mode: Option<MacvlanMode>,
    pub flags: MacvlanFlags,
    pub source_macs: Vec<MacAddr>,
    pub bcqueuelen: Option<u32>,
    /// The broadcast cutoff as reported: absent while it is the default
    /// ([`DEFAULT_BCLIM`](crate::macvlan::DEFAULT_BCLIM)) and on kernels
    /// before 6.4, which have none.
    pub bclim: Option<i32>,
}

impl MacvlanState {
    /// Whether the port's broadcast cutoff is `requested`. A kernel without
    /// the setting reads as holding only the default.
    pub fn holds_bclim(&self, requested: i32) -> bool {
        self.bclim.unwrap_or(crate::macvlan::DEFAULT_BCLIM) == requested
    }
}

impl Link {
    pub(crate) fn from_message(msg: LinkMessage) -> Link {
        let header = &msg.header;
        let mut link = Link {
            index: header.index,
            name: String::new(),
            kind: None,
            mac: None,
            mtu: 0,
            up: header.flags.contains(LinkFlags::Up),
            lower_up: header.flags.contains(LinkFlags::LowerUp),
            oper_state: String::new(),
            promiscuity: 0,
            promisc_flag: header.flags.contains(LinkFlags::Promisc),
            ethernet: header.link_layer_type == LinkLayerType::Ether,
            loopback: header.link_layer_type == LinkLayerType::Loopback,
            parent_index: None,
            link_netnsid: None,
            master_index: None,
            macvlan: None,
            vlan_id: None,
        };
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n,
                LinkAttribute::Address(a) if a.len() == 6 => {
                    link.mac = Some(MacAddr([a[0], a[1], a[2], a[3], a[4], a[5]]))
                }
                LinkAttribute::Mtu(m) => link.mtu = m,
                LinkAttribute::Promiscuity(p) => link.promiscuity = p,
                LinkAttribute::Link(i) => link.parent_index = Some(i),
                LinkAttribute::LinkNetNsId(id) => link.link_netnsid = Some(id),
                LinkAttribute::Controller(i) => link.master_index = Some(i),
                LinkAttribute::OperState(s) => link.oper_state = oper_state_name(s).into(),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(kind) => link.kind = Some(kind.to_string()),
                            LinkInfo::Data(InfoData::Vlan(data)) => {
                                link.vlan_id = data.iter().find_map(|v| match v {
                                    InfoVlan::Id(id) => Some(*id),
                                    _ => None,
                                })
                            }
                            LinkInfo::Data(InfoData::MacVlan(data)) => {
                                link.macvlan = Some(MacvlanState::from_attrs(&data))
                            }
                            LinkInfo::Data(InfoData::MacVtap(data)) => {
                                let data: Vec<InfoMacVlan> =
                                    data.into_iter().map(macvtap_to_macvlan).collect();
                                link.macvlan = Some(MacvlanState::from_attrs(&data))
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }

    pub fn is_promiscuous(&self) -> bool {
        self.promiscuity > 0
    }
}

impl MacvlanState {
    fn from_attrs(attrs: &[InfoMacVlan]) -> MacvlanState {
        let mut st = MacvlanState {
            mode: None,
            flags: MacvlanFlags::default(),
            source_macs: Vec::new(),
            bcqueuelen: None,
            bclim: None,
        };
        for a in attrs {
            match a {
                InfoMacVlan::Mode(m) => st.mode = MacvlanMode::from_kernel_value(u32::from(*m)),
                InfoMacVlan::Flags(f) => st.flags = MacvlanFlags::from_kernel_value(f.bits()),
                InfoMacVlan::MacAddrData(list) => {
                    st.source_macs = list
                        .iter()
                        .filter_map(|m| match m {
                            InfoMacVlan::MacAddr(b) => Some(MacAddr(*b)),
                            _ => None,
                        })
                        .collect()
                }
                InfoMacVlan::BcQueueLen(q) => st.bcqueuelen = Some(*q),
                InfoMacVlan::BcCutoff(c) => st.bclim = Some(*c),
                _ => {}
            }
        }
        st
    }
}

/// macvtap shares macvlan's attribute layout; the crate models them as two
/// enums, so convert to use one code path.
pub(crate) fn macvtap_to_macvlan(a: InfoMacVtap) -> InfoMacVlan {
    match a {
        InfoMacVtap::Mode(m) => InfoMacVlan::Mode(m),
        InfoMacVtap::Flags(f) => InfoMacVlan::Flags(f),
        InfoMacVtap::MacAddrMode(m) => InfoMacVlan::MacAddrMode(m),
        InfoMacVtap::MacAddr(m) => InfoMacVlan::MacAddr(m),
        InfoMacVtap::MacAddrData(d) => {
            InfoMacVlan::MacAddrData(d.into_iter().map(macvtap_to_macvlan).collect())
        }
        InfoMacVtap::MacAddrCount(c) => InfoMacVlan::MacAddrCount(c),
        InfoMacVtap::BcQueueLen(q) => InfoMacVlan::BcQueueLen(q),
        InfoMacVtap::BcQueueLenUsed(q) => InfoMacVlan::BcQueueLenUsed(q),
        InfoMacVtap::BcCutoff(c) => InfoMacVlan::BcCutoff(c),
        InfoMacVtap::Other(o) => InfoMacVlan::Other(o),
        _ => InfoMacVlan::Other(netlink_packet_core::DefaultNla::new(0, vec![])),
    }
}

pub(crate) fn macvlan_to_macvtap(a: InfoMacVlan) -> InfoMacVtap {
    match a {
        InfoMacVlan::Mode(m) => InfoMacVtap::Mode(m),
        InfoMacVlan::Flags(f) => InfoMacVtap::Flags(f),
        InfoMacVlan::MacAddrMode(m) => InfoMacVtap::MacAddrMode(m),
        InfoMacVlan::MacAddr(m) => InfoMacVtap::MacAddr(m),
        InfoMacVlan::MacAddrData(d) => {
            InfoMacVtap::MacAddrData(d.into_iter().map(macvlan_to_macvtap).collect())
        }
        InfoMacVlan::MacAddrCount(c) => InfoMacVtap::MacAddrCount(c),
        InfoMacVlan::BcQueueLen(q) => InfoMacVtap::BcQueueLen(q),
        InfoMacVlan::BcQueueLenUsed(q) => InfoMacVtap::BcQueueLenUsed(q),
        InfoMacVlan::BcCutoff(c) => InfoMacVtap::BcCutoff(c),
        InfoMacVlan::Other(o) => InfoMacVtap::Other(o),
        _ => InfoMacVtap::Other(netlink_packet_core::DefaultNla::new(0, vec![])),
    }
}

fn oper_state_name(s: State) -> &'static str {
    match s {
        State::Up => "up",
        State::Down => "down",
        State::LowerLayerDown => "lowerlayerdown",
        State::Dormant => "dormant",
        State::NotPresent => "notpresent",
        State::Testing => "testing",
        _ => "unknown",
    }
}

/// A link message addressed to one interface, to fill with changes.
pub(crate) fn link_message(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

/// A GETLINK request: `Link` reads no counters, so the kernel is asked to
/// leave them out (less to fill, send and parse on every lookup).
fn get_link_request(mut msg: LinkMessage) -> RouteNetlinkMessage {
    msg.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    RouteNetlinkMessage::GetLink(msg)
}

/// A GETLINK request for the interface called `name`.
fn get_link_by_name(name: &str) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    get_link_request(msg)
}

impl RouteSocket {
    /// The interface called `name`, or `None` when there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        match self.get(&format!("look up interface {name}"), get_link_by_name(name)) {
            Ok(RouteNetlinkMessage::NewLink(m)) => Ok(Some(Link::from_message(m))),
            Ok(_) => Err(KernelError::Protocol {
                op: "look up interface".into(),
                detail: "not a link".into(),
            }),
            Err(KernelError::Netlink { errno, .. }) if errno == libc::ENODEV => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        match self.get("look up interface", get_link_request(link_message(index))) {
            Ok(RouteNetlinkMessage::NewLink(m)) => Ok(Some(Link::from_message(m))),
            Ok(_) => Err(KernelError::Protocol {
                op: "look up interface".into(),
                detail: "not a link".into(),
            }),
            Err(KernelError::Netlink { errno, .. }) if errno == libc::ENODEV => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Like [`link_by_name`](Self::link_by_name) but a missing link is an error.
    pub fn require_link(&mut self, name: &str, netns_label: &str) -> Result<Link> {
        self.link_by_name(name)?.ok_or_else(|| KernelError::NoSuchLink {
            name: name.to_string(),
            netns: netns_label.to_string(),
        })
    }

    /// The index of interface `name` in this socket's namespace (None if it
    /// has none): the SIOCGIFINDEX ioctl on this socket, for a caller that
    /// needs only the index, where a GETLINK reply is a kilobyte of
    /// attributes to parse (and `if_nametoindex` a socket of its own).
    pub fn index_of(&self, name: &str) -> Result<Option<u32>> {
        // SAFETY: ifreq is plain old data, for which all zeroes is valid.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        if name.len() >= req.ifr_name.len() || name.as_bytes().contains(&0) {
            return Ok(None); // no interface can have that name
        }
        for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
            *dst = *src as libc::c_char;
        }
        // SAFETY: SIOCGIFINDEX reads ifr_name (NUL-terminated: the rest is
        // zero) and writes ifr_ifindex inside `req`, which outlives the call;
        // the fd is this socket's, open for as long as `self`.
        let rc = unsafe { libc::ioctl(self.raw_fd(), libc::SIOCGIFINDEX, &mut req) };
        if rc == 0 {
            // SAFETY: the kernel filled the ifindex member of the union.
            return Ok(u32::try_from(unsafe { req.ifr_ifru.ifru_ifindex }).ok());
        }
        match std::io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            e => Err(KernelError::io("look up an interface index", e)),
        }
    }

    /// [`require_link`](Self::require_link) for a caller that needs only
    /// the link's index, name, MAC and MTU ([`LinkBrief`]).
    pub fn require_link_brief(&mut self, name: &str, netns_label: &str) -> Result<LinkBrief> {
        let op = format!("look up interface {name}");
        match self
            .get_raw(&op, get_link_by_name(name), |_, payload| LinkBrief::from_payload(payload))
        {
            Err(KernelError::Netlink { errno, .. }) if errno == libc::ENODEV => {
                Err(KernelError::NoSuchLink {
                    name: name.to_string(),
                    netns: netns_label.to_string(),
                })
            }
            other => other,
        }
    }

    pub fn links(&mut self) -> Result<Vec<Link>> {
        let parts = self.dump("list interfaces", get_link_request(LinkMessage::default()))?;
        Ok(parts
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
                _ => None,
            })
            .collect())
    }

    fn set_link(&mut self, op: &str, msg: LinkMessage) -> Result<()> {
        self.execute(op, RouteNetlinkMessage::SetLink(msg), 0)
    }

    pub fn set_up(&mut self, index: u32, up: bool) -> Result<()> {
        let mut msg = link_message(index);
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
        self.set_link(if up { "bring interface up" } else { "bring interface down" }, msg)
    }

    /// Turns on the link's IPv4 `arp_notify` (announce its addresses by
    /// gratuitous ARP when it comes up or changes MAC): the sysctl
    /// `net/ipv4/conf/IF/arp_notify`, set over this socket's namespace
    /// instead of through /proc/sys, which must be entered first. Before
    /// `set_up`: the kernel reads it at the moment the link comes up, and
    /// in one message with the flags it would apply the flags first. (The
    /// request carries only non-zero settings, so it cannot turn one off.)
    pub fn enable_arp_notify(&mut self, index: u32) -> Result<()> {
        let mut msg = link_message(index);
        let mut conf = InetDevConf::default();
        conf.arp_notify = 1;
        msg.attributes.push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
            AfSpecInet::DevConfRequest(conf),
        ])]));
        self.set_link("set arp_notify", msg)
    }

    /// Sets the user's `IFF_PROMISC` flag (what `ip link set X promisc on` does).
    pub fn set_promisc(&mut self, index: u32, on: bool) -> Result<()> {
        let mut msg = link_message(index);
        msg.header.change_mask = LinkFlags::Promisc;
        if on {
            msg.header.flags = LinkFlags::Promisc;
        }
        self.set_link("set promiscuous mode", msg)
    }

    pub fn rename(&mut self, index: u32, name: &str) -> Result<()> {
        let mut msg = link_message(index);
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.set_link(&format!("rename interface to {name}"), msg)
    }

    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        let mut msg = link_message(index);
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.set_link(&format!("set MTU {mtu}"), msg)
    }

    pub fn set_mac(&mut self, index: u32, mac: MacAddr) -> Result<()> {
        let mut msg = link_message(index);
        msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        self.set_link(&format!("set MAC {mac}"), msg)
    }

    /// Enslaves `index` to `master` (a bridge), or frees it with `None`.
    pub fn set_master(&mut self, index: u32, master: Option<u32>) -> Result<()> {
        let mut msg = link_message(index);
        msg.attributes.push(LinkAttribute::Controller(master.unwrap_or(0)));
        self.set_link("set bridge master", msg)
    }

    /// Moves a link into another namespace.
    pub fn move_to_netns(&mut self, index: u32, netns: &crate::netns::Netns) -> Result<()> {
        use std::os::fd::AsRawFd;
        let mut msg = link_message(index);
        msg.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        self.set_link(&format!("move interface to {}", netns.label()), msg)
    }

    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        self.execute("delete interface", RouteNetlinkMessage::DelLink(link_message(index)), 0)
    }

    /// Deletes a link by name; a link that is already gone is not an error.
    pub fn delete_link_by_name(&mut self, name: &str) -> Result<bool> {
        match self.link_by_name(name)? {
            Some(link) => match self.delete_link(link.index) {
                Ok(()) => Ok(true),
                Err(KernelError::Netlink { errno, .. }) if errno == libc::ENODEV => Ok(false),
                Err(e) => Err(e),
            },
            None => Ok(false),
        }
    }

    /// The kind a link was created with, from its `LinkInfo`.
    pub fn kind_of(msg: &LinkMessage) -> Option<InfoKind> {
        msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Kind(k) => Some(k.clone()),
                _ => None,
            }),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::Netns;

    #[test]
    fn a_brief_reads_index_name_mac_and_mtu_past_nested_attributes() {
        let mut msg = link_message(7);
        msg.attributes.push(LinkAttribute::IfName("eth0".into()));
        // A nested attribute between the ones read, as a real reply has.
        msg.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::MacVlan)]));
        msg.attributes.push(LinkAttribute::Address(vec![2, 0, 0, 0, 0, 9]));
        msg.attributes.push(LinkAttribute::Mtu(1400));
        let mut payload = vec![0u8; msg.buffer_len()];
        msg.emit(&mut payload);
        let brief = LinkBrief::from_payload(&payload).unwrap();
        assert_eq!(
            brief,
            LinkBrief {
                index: 7,
                name: "eth0".into(),
                mac: Some(MacAddr([2, 0, 0, 0, 0, 9])),
                mtu: 1400
            }
        );
        assert!(LinkBrief::from_payload(&payload[..8]).is_err(), "a cut header is refused");
    }

    #[test]
    fn a_socket_opened_beside_another_acts_in_its_netns_and_the_thread_comes_back() {
        let here = Netns::current().unwrap();
        let other = crate::netns::create_anonymous().unwrap();
        let host = RouteSocket::open_here().unwrap();
        let mut inside = host.open_beside_in(&other).unwrap();
        assert_eq!(Netns::current().unwrap().id(), here.id(), "the thread is back");
        assert_eq!(Netns::of_socket(inside.raw_fd()).unwrap().id(), other.id());
        // A new namespace has its loopback and nothing else.
        let names: Vec<String> = inside.links().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["lo"]);
    }

    #[test]
    fn index_of_answers_in_the_sockets_namespace() {
        // Read-only, in the namespace the tests run in: its loopback is 1.
        let sock = RouteSocket::open_here().unwrap();
        assert_eq!(sock.index_of("lo").unwrap(), Some(1));
        assert_eq!(sock.index_of("nsl-no-such0").unwrap(), None);
        assert_eq!(sock.index_of("a-name-longer-than-ifnamsiz").unwrap(), None);
    }
}
