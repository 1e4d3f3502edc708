//! Creating macvlan and macvtap links (every mode and flag, source-mode MAC
//! lists, broadcast queue settings, MTU and MAC), directly in their target
//! namespace, and changing a source-mode list afterwards.

use std::os::fd::AsRawFd;

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkInfo, LinkMessage, MacVlanFlags,
    MacVlanMacAddressMode, MacVlanMode,
};
use nicslice_model::{Driver, IfName, MacAddr, MacvlanFlags, MacvlanMode};

use crate::error::Result;
use crate::link::{link_message, macvlan_to_macvtap};
use crate::netlink::{CREATE_EXCL, RouteSocket};
use crate::netns::Netns;

/// Everything needed to create one macvlan or macvtap child.
#[derive(Debug, Clone)]
pub struct MacvlanLinkRequest {
    pub driver: Driver,
    pub name: IfName,
    /// The parent's index in the namespace of the socket that creates the link.
    pub parent_index: u32,
    pub mode: MacvlanMode,
    pub flags: MacvlanFlags,
    pub mtu: Option<u32>,
    pub mac: Option<MacAddr>,
    pub bcqueuelen: Option<u32>,
    pub bclim: Option<i32>,
    /// Source mode only: the MACs whose frames this child receives.
    pub source_macs: Vec<MacAddr>,
}

impl MacvlanLinkRequest {
    /// A child in `mode` with every other setting at the kernel's default.
    pub fn new(driver: Driver, name: IfName, parent_index: u32, mode: MacvlanMode) -> Self {
        MacvlanLinkRequest {
            driver,
            name,
            parent_index,
            mode,
            flags: MacvlanFlags::default(),
            mtu: None,
            mac: None,
            bcqueuelen: None,
            bclim: None,
            source_macs: Vec::new(),
        }
    }
}

/// The broadcast cutoff a macvlan port has unless told otherwise; kernels
/// that know the setting leave it out of their replies while it is this.
pub const DEFAULT_BCLIM: i32 = 1;

/// How a source-mode MAC list changes (`IFLA_MACVLAN_MACADDR_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceMacOp {
    Add,
    Del,
    /// Replace the whole list.
    Set,
    /// Empty the list.
    Flush,
}

fn mac_list(macs: &[MacAddr]) -> InfoMacVlan {
    InfoMacVlan::MacAddrData(macs.iter().map(|m| InfoMacVlan::MacAddr(m.0)).collect())
}

/// Wraps macvlan attributes in the link-info of the right kind: macvtap for
/// drivers with a tap device, macvlan otherwise.
fn link_info(driver: Driver, data: Vec<InfoMacVlan>) -> LinkAttribute {
    let (kind, data) = if driver.has_tap() {
        (InfoKind::MacVtap, InfoData::MacVtap(data.into_iter().map(macvlan_to_macvtap).collect()))
    } else {
        (InfoKind::MacVlan, InfoData::MacVlan(data))
    };
    LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind), LinkInfo::Data(data)])
}

impl RouteSocket {
    /// Creates the child on the parent this socket's namespace holds. With
    /// `target`, the kernel creates it directly inside that namespace. Recent
    /// kernels check the name only there; 6.1 also checks it beside the
    /// parent, which `placement` handles with a temporary name and a rename.
    pub fn create_macvlan(
        &mut self,
        req: &MacvlanLinkRequest,
        target: Option<&Netns>,
    ) -> Result<()> {
        let mut data = vec![InfoMacVlan::Mode(MacVlanMode::from(req.mode.kernel_value()))];
        let flags = req.flags.kernel_value();
        if flags != 0 {
            data.push(InfoMacVlan::Flags(MacVlanFlags::from_bits_retain(flags)));
        }
        if let Some(q) = req.bcqueuelen {
            data.push(InfoMacVlan::BcQueueLen(q));
        }
        if let Some(c) = req.bclim {
            data.push(InfoMacVlan::BcCutoff(c));
        }
        if req.mode == MacvlanMode::Source && !req.source_macs.is_empty() {
            data.push(InfoMacVlan::MacAddrMode(MacVlanMacAddressMode::Set));
            data.push(mac_list(&req.source_macs));
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(req.name.to_string()));
        msg.attributes.push(LinkAttribute::Link(req.parent_index));
        if let Some(mtu) = req.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = req.mac {
            msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        }
        if let Some(ns) = target {
            msg.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        }
        msg.attributes.push(link_info(req.driver, data));
        let op = format!("create {} {} ({} mode)", req.driver, req.name, req.mode);
        self.execute(&op, RouteNetlinkMessage::NewLink(msg), CREATE_EXCL)
    }

    /// Changes the MAC list of a source-mode child.
    pub fn change_source_macs(
        &mut self,
        index: u32,
        driver: Driver,
        op: SourceMacOp,
        macs: &[MacAddr],
    ) -> Result<()> {
        // The kernel's ADD and DEL take one MACADDR per request.
        let requests: Vec<Vec<InfoMacVlan>> = match op {
            SourceMacOp::Flush => {
                vec![vec![InfoMacVlan::MacAddrMode(MacVlanMacAddressMode::Flush)]]
            }
            SourceMacOp::Set => {
                vec![vec![InfoMacVlan::MacAddrMode(MacVlanMacAddressMode::Set), mac_list(macs)]]
            }
            SourceMacOp::Add | SourceMacOp::Del => {
                let mode = if op == SourceMacOp::Add {
                    MacVlanMacAddressMode::Add
                } else {
                    MacVlanMacAddressMode::Del
                };
                macs.iter()
                    .map(|m| vec![InfoMacVlan::MacAddrMode(mode), InfoMacVlan::MacAddr(m.0)])
                    .collect()
            }
        };
        for data in requests {
            let mut msg = link_message(index);
            msg.attributes.push(link_info(driver, data));
            self.execute("change source-mode MAC list", RouteNetlinkMessage::NewLink(msg), 0)?;
        }
        Ok(())
    }
}

/// Whether this kernel keeps a macvlan's broadcast cutoff (`bclim`, Linux
/// 6.4+; older kernels accept the attribute and drop it silently). Tried on
/// a veth in a throwaway namespace, so no interface of the caller's is used,
/// with a cutoff of 2: the kernel reports the attribute only when it is not
/// its default, [`DEFAULT_BCLIM`].
pub fn broadcast_cutoff_supported() -> Result<bool> {
    let ns = crate::netns::create_anonymous()?;
    let mut sock = RouteSocket::open_in(&ns)?;
    sock.create_veth("probe0", "probe1", None)?;
    let parent = sock.require_link("probe0", "probe netns")?.index;
    let name = IfName::new("probe2").map_err(|e| crate::KernelError::Protocol {
        op: "probe bclim".into(),
        detail: e.to_string(),
    })?;
    let mut req = MacvlanLinkRequest::new(Driver::Macvlan, name, parent, MacvlanMode::Bridge);
    req.bclim = Some(DEFAULT_BCLIM + 1);
    sock.create_macvlan(&req, None)?;
    let child = sock.require_link("probe2", "probe netns")?;
    Ok(child.macvlan.is_some_and(|m| m.bclim.is_some()))
}
