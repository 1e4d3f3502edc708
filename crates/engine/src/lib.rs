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
pub mod cni_fleet;
pub mod converge;
mod detach;
mod detach_many;
pub mod dhcp;
mod doctor;
pub mod endpoint;
pub mod error;
mod events;
pub mod fault;
mod fleet;
mod intent;
mod network;
mod parent;
pub mod probe;
pub mod ranges;
pub mod refuse;
pub mod shim;
mod topology;
pub mod undo;
mod verify;
pub mod views;

use std::path::Path;

use nicslice_kernel::{Netns, RouteSocket};
use nicslice_model::NetworkName;
use nicslice_store::{NetworkRecord, Store, StoreRead};

pub use attach::AttachRequest;
pub use detach::DetachRequest;
pub use doctor::Finding;
pub use error::{EngineError, Result};
pub use events::Event;
pub use fault::{Faults, Step};
pub use parent::{ParentRequest, internal_parent_name, vlan_name};
pub use shim::{ShimRequest, ShimView};
pub use topology::LiveTopology;
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
    /// Opens the state and ends the work of commands killed part-way (see
    /// `intent`); an intent that cannot be ended now (no permission, say)
    /// is left for later, with a warning: it holds its addresses meanwhile.
    pub fn open(state: &Path, host: Netns, faults: Faults) -> Result<Engine> {
        let mut engine = Engine { store: Store::open(state)?, host, faults };
        if let Err(e) = engine.end_abandoned_intents() {
            tracing::warn!("cannot end the work of a command that did not finish: {e}");
        }
        Ok(engine)
    }

    pub fn host(&self) -> &Netns {
        &self.host
    }

    fn host_socket(&self) -> Result<RouteSocket> {
        Ok(RouteSocket::open_in(&self.host)?)
    }

    /// The record of network `name`, which every command starts from (here,
    /// below the commands, so that none depends on another's module for it).
    pub(crate) fn network_record(&mut self, name: &str) -> Result<NetworkRecord> {
        let missing = || {
            EngineError::NotFound(format!(
                "network {name} does not exist; `nicslice network ls` lists them"
            ))
        };
        // A name that is not even valid cannot name an existing network.
        let name = NetworkName::new(name).map_err(|_| missing())?;
        // One statement, outside a transaction (no snapshot to share).
        self.store.network_by_name(&name)?.ok_or_else(missing)
    }
}
