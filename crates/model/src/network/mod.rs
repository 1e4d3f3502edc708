//! Networks: a named slice of one parent interface with its driver, mode, flags
//! and subnets. `spec` holds what the user asked for (serde, stored as JSON);
//! `valid` checks it once and yields `ValidNetwork`, the only form the allocator
//! and the engine accept. Cross-network rules live in `crate::rules`.

mod name;
mod route;
mod spec;
mod subnet;
mod valid;

pub use name::NetworkName;
pub use route::RouteRequest;
pub use spec::{EtcdTls, FleetSpec, Ipam, NetworkSpec, ProbeSpec, SubnetSpec};
pub use subnet::ValidSubnet;
pub use valid::ValidNetwork;
