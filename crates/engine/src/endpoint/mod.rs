//! Endpoints: the one realize, teardown and check that both front ends run.
//! `nicslice attach` and the CNI ADD make a child link through
//! [`create_link`] and [`configure`] (or [`realize`], both at once), undo it
//! through the same [`UndoLog`](crate::undo::UndoLog), remove it through
//! [`delete_child`] and compare it with what was asked through
//! [`check`] (or [`drifts`], every difference), and put back its lost
//! addresses and routes through [`put_back`]. The refusals they print come
//! from [`crate::refuse`], so a request one front end refuses, the other
//! refuses with the same words.
//!
//! Where the callers truly differ, a [`Policy`] says so. Everything else is
//! the CNI path's choice, made for speed and taken by the CLI too:
//! neighbours learn a new MAC through the kernel's own
//! `arp_notify`/`ndisc_notify` as the link comes up (a packet socket's close
//! waits out an RCU grace period, 10 to 20 ms, longer than a whole ADD), and
//! a default route the namespace already has is found by the kernel's
//! EEXIST rather than by a route dump first.
//!
//! What it must not do: decide addresses (the caller's lease book or IPAM
//! does) or record anything (the caller's store does).

mod check;
mod place;
mod put_back;
mod realize;
mod routes;
mod teardown;

pub use check::{Drift, DriftKind, Expected, ExpectedMtu, check, drifts};
pub use nicslice_kernel::placement::ChildLink;
pub use nicslice_kernel::{LinkBrief, Route};
pub use place::{ParentRef, Place};
pub use put_back::put_back;
pub use realize::{
    EndpointPlan, NO_BCLIM, Realized, add_addresses, add_routes, configure, create_link, realize,
};
pub use routes::{AddressPlan, RouteSpec, Via, plan_routes};
pub use teardown::{Ours, Teardown, child_addresses, delete_child, delete_child_on};

use nicslice_kernel::MacvlanLinkRequest;
use nicslice_kernel::ipvlan::IpvlanLinkRequest;
use nicslice_model::{Driver, IfName, IpvlanFlag, LinkMode, MacAddr, MacvlanFlags};

/// How a caller's endpoints differ from another caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Bring the namespace's `lo` up if it is down. The CLI does (a
    /// namespace made by `ip netns add` has it down, and users expect
    /// 127.0.0.1 to work); a CNI plugin leaves it to the loopback plugin,
    /// which the runtime runs in the same chain.
    pub loopback_up: bool,
}

impl Policy {
    /// `nicslice attach`.
    pub const CLI: Policy = Policy { loopback_up: true };
    /// nicslice-macvlan and nicslice-ipvlan.
    pub const CNI: Policy = Policy { loopback_up: false };
}

/// The child to make, in the model's terms, whichever front end asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSpec {
    pub driver: Driver,
    pub mode: LinkMode,
    pub flags: MacvlanFlags,
    pub ipvlan_flag: IpvlanFlag,
    pub mtu: Option<u32>,
    pub mac: Option<MacAddr>,
    pub bcqueuelen: Option<u32>,
    pub bclim: Option<i32>,
    pub source_macs: Vec<MacAddr>,
}

impl ChildSpec {
    /// The kernel request for this child named `name` on `parent`.
    pub fn link(&self, name: IfName, parent: &ParentRef) -> ChildLink {
        match self.mode {
            LinkMode::Macvlan(mode) => ChildLink::Macvlan(MacvlanLinkRequest {
                driver: self.driver,
                name,
                parent_index: parent.index,
                mode,
                flags: self.flags,
                mtu: self.mtu,
                mac: self.mac,
                bcqueuelen: self.bcqueuelen,
                bclim: self.bclim,
                source_macs: self.source_macs.clone(),
            }),
            LinkMode::Ipvlan(mode) => ChildLink::Ipvlan(IpvlanLinkRequest {
                tap: self.driver.has_tap(),
                name,
                parent_index: parent.index,
                mode,
                flag: self.ipvlan_flag,
                mtu: self.mtu,
            }),
        }
    }

    /// ipvlan l3/l3s children are NOARP and leave through the parent's
    /// routing: a default route through the device is what works (seed 001).
    pub fn is_noarp(&self) -> bool {
        matches!(
            self.mode,
            LinkMode::Ipvlan(nicslice_model::IpvlanMode::L3 | nicslice_model::IpvlanMode::L3s)
        )
    }
}
