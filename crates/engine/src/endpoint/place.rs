//! Where an endpoint goes: the target namespace with a socket in it, the
//! namespace that holds the parent with a socket there, and the parent
//! itself, found by name (or, as the reference CNI plugins do, as the
//! interface of the default route) and checked against the child's MTU and
//! MAC before anything is made.

use nicslice_kernel::{Netns, RouteSocket};
use nicslice_model::{IfName, MacAddr, rules};

use crate::error::{EngineError, Result};
use crate::undo::{Sockets, UndoLog};

/// The sockets an endpoint's steps run on.
pub struct Place {
    pub target_ns: Netns,
    /// In the namespace that holds the parent.
    pub host: RouteSocket,
    /// In the target namespace.
    pub target: RouteSocket,
    /// Where the parent is, for messages: "the host namespace" or the
    /// target's label.
    parent_label: String,
}

/// The parent a child is made on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentRef {
    pub name: String,
    /// Its index in the namespace of [`Place::host`].
    pub index: u32,
}

impl Place {
    /// The parent in the namespace this process runs in (a CNI plugin), or,
    /// with `parent_in_target`, in the target itself (CNI `linkInContainer`).
    pub fn here(target_ns: Netns, parent_in_target: bool) -> Result<Place> {
        if parent_in_target {
            let host = RouteSocket::open_in(&target_ns)?;
            let target = RouteSocket::open_in(&target_ns)?;
            let parent_label = target_ns.label().to_string();
            return Ok(Place { target_ns, host, target, parent_label });
        }
        // The host socket needs no namespace handle, and it tells the way
        // back from the target's (cheaper than a walk through /proc).
        let host = RouteSocket::open_here()?;
        let target = host.open_beside_in(&target_ns)?;
        Ok(Place { target_ns, host, target, parent_label: "the host namespace".into() })
    }

    /// The parent in `host_ns` (`nicslice attach`, `--host-netns`).
    pub fn between(host_ns: &Netns, target_ns: Netns) -> Result<Place> {
        let host = RouteSocket::open_in(host_ns)?;
        let target = RouteSocket::open_in(&target_ns)?;
        Ok(Place { target_ns, host, target, parent_label: host_ns.label().to_string() })
    }

    /// Finds the parent `name` in the parent's namespace. Only its index is read (one ioctl) unless
    /// the child's `mtu` or `mac` must be compared with the parent's; then
    /// the whole link is, and a larger MTU or the parent's own MAC is refused.
    pub fn resolve_parent(
        &mut self,
        name: &str,
        mtu: Option<u32>,
        mac: Option<MacAddr>,
    ) -> Result<ParentRef> {
        let name = name.to_string();
        let missing = || {
            EngineError::NotFound(format!(
                "parent {name} does not exist in {}; `ip link` lists the interfaces",
                self.parent_label
            ))
        };
        if mtu.is_none() && mac.is_none() {
            let index = self.host.index_of(&name)?.ok_or_else(missing)?;
            return Ok(ParentRef { name, index });
        }
        let parent = self.host.link_by_name(&name)?.ok_or_else(missing)?;
        if let Some(mtu) = mtu {
            let ifname = IfName::new(&name)?;
            rules::check_mtu(mtu, &ifname, parent.mtu)?;
        }
        if let Some(mac) = mac.filter(|m| Some(*m) == parent.mac) {
            return Err(EngineError::Invalid(format!(
                "MAC {mac} is the MAC of parent {name}; a child needs its own (the kernel would refuse it on up)"
            )));
        }
        Ok(ParentRef { name, index: parent.index })
    }

    /// The interface of the first default route in the parent's namespace,
    /// as the reference CNI plugins choose a master when none is configured.
    pub fn default_route_interface(&mut self) -> Result<String> {
        let routes = self.host.routes()?;
        for route in routes.iter().filter(|r| r.is_default()) {
            if let Some(link) = route.oif.map(|i| self.host.link_by_index(i)).transpose()?.flatten()
            {
                return Ok(link.name);
            }
        }
        Err(EngineError::Invalid(format!(
            "no parent given and no default route in {} to take it from; name the parent (CNI: \"master\")",
            self.parent_label
        )))
    }

    /// Undoes `undo` on these sockets; the undo's own errors as one line.
    pub fn rollback(&mut self, undo: UndoLog) -> Result<(), String> {
        undo.rollback(&mut Sockets { host: &mut self.host, target: Some(&mut self.target) })
    }

    /// Undoes `undo` and joins its errors to `error`.
    pub fn abort(&mut self, undo: UndoLog, error: EngineError) -> EngineError {
        undo.abort(error, &mut Sockets { host: &mut self.host, target: Some(&mut self.target) })
    }
}
