//! The kernel layer of nicslice: the only code that talks to the kernel.
//!
//! Netlink (netlink-packet-route over synchronous netlink-sys sockets, one per
//! namespace), namespace handling, sysctls under `/proc/sys`, raw sockets for
//! probes (ICMP echo, ARP, NDP), the DHCP client's socket. No shelling out to `ip`,
//! `ping` or `sysctl`, and no policy: deciding what is allowed belongs to the
//! model and the engine.

pub mod addr;
pub mod address_claim;
pub mod arp;
pub mod dhcp6_socket;
pub mod dhcp_socket;
pub mod error;
pub mod events;
pub mod identity;
pub mod ipvlan;
pub mod link;
pub mod macvlan;
pub mod ndp_frame;
pub mod neighbour;
pub mod neighbour_probe;
pub mod netlink;
pub mod netns;
pub mod placement;
pub mod probe;
pub mod route;
pub mod signals;
pub mod sysctl;
pub mod tap;
pub mod topology;

pub use dhcp_socket::DhcpSocket;
pub use dhcp6_socket::Dhcp6Socket;
pub use error::{KernelError, Result};
pub use identity::ProcessId;
pub use link::{Link, LinkBrief, MacvlanState};
pub use macvlan::{MacvlanLinkRequest, SourceMacOp};
pub use neighbour_probe::NeighbourProber;
pub use netlink::RouteSocket;
pub use netns::{Netns, NetnsGuard, NetnsId, NetnsTarget};
pub use probe::Pinger;
pub use route::Route;
pub use topology::SimpleKind;
