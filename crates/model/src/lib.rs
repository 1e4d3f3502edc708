//! The model layer of nicslice: network, endpoint, mode and flag types with their
//! validation, the address allocator and the reachability model.
//!
//! Pure: no I/O of any kind (no files, sockets, clocks or randomness). Everything
//! here can be unit-tested without root.

mod addr;
pub mod desired;
pub mod error;
pub mod ipam;
pub mod link;
pub mod network;
pub mod reach;
pub mod rules;

pub use addr::{from_u128, to_u128};
pub use error::ModelError;
pub use link::{
    Driver, IfName, IpvlanFlag, IpvlanMode, LinkMode, MacAddr, MacvlanFlags, MacvlanMode,
};
pub use network::{
    EtcdTls, FleetSpec, Ipam, NetworkName, NetworkSpec, ProbeSpec, RouteRequest, SubnetSpec,
    ValidNetwork, ValidSubnet,
};
