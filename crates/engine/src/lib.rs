//! The engine of nicslice: turns a request into steps, applies them, records
//! the result, and on any error undoes what it did, in reverse. Nothing leaks:
//! no interface, address, route, lease or state row survives a failed call.
//!
//! Requests are checked (model rules, facts from the kernel and the store)
//! before the kernel is touched. The CLI and the CNI plugins call this crate
//! and print; they hold no logic of their own: both make, remove and check
//! endpoints through [`endpoint`], and are refused in the same words
//! ([`refuse`]).

mod attach;
mod detach;
pub mod dhcp;
pub mod endpoint;
pub mod error;
pub mod fault;
mod network;
mod parent;
pub mod ranges;
pub mod refuse;
pub mod shim;
mod topology;
pub mod undo;
mod verify;
pub mod views;

use std::path::Path;

use nicslice_kernel::{Netns, RouteSocket};
use nicslice_store::Store;

pub use attach::AttachRequest;
pub use detach::DetachRequest;
pub use error::{EngineError, Result};
pub use fault::{Faults, Step};
pub use parent::{ParentRequest, internal_parent_name, vlan_name};
pub use shim::{ShimRequest, ShimView};
pub use verify::EndpointHealth;
pub use views::{EndpointView, NetworkDetail, NetworkView};

/// One engine per command: the state database and the namespace that holds
/// the parents (the "host").
pub struct Engine {
    store: Store,
    host: Netns,
    faults: Faults,
}

impl Engine {
    pub fn open(state: &Path, host: Netns, faults: Faults) -> Result<Engine> {
        Ok(Engine { store: Store::open(state)?, host, faults })
    }

    pub fn host(&self) -> &Netns {
        &self.host
    }

    fn host_socket(&self) -> Result<RouteSocket> {
        Ok(RouteSocket::open_in(&self.host)?)
    }
}
