//! The undo log: every step that changed the kernel pushes the action that
//! reverts it; on failure the log runs backwards, keeps going past errors
//! (best effort, like netavark's teardown) and reports all of them.

use ipnet::IpNet;
use nicslice_kernel::{Route, RouteSocket};

use crate::EngineError;

/// One revert. Link, address, route and up/down actions act in the target
/// namespace (where the endpoint went); promiscuous mode and parents nicslice
/// created act in the host namespace.
#[derive(Debug, Clone)]
pub enum UndoAction {
    DeleteLink {
        index: u32,
    },
    DeleteAddress {
        index: u32,
        addr: IpNet,
    },
    DeleteRoute {
        route: Route,
    },
    SetUp {
        index: u32,
        up: bool,
    },
    SetPromisc {
        index: u32,
        on: bool,
    },
    /// A parent link nicslice created in the host namespace.
    DeleteHostLink {
        index: u32,
    },
    /// A route through a shim (to one address, or to a network's range),
    /// in the host namespace.
    DeleteHostRoute {
        to: IpNet,
        oif: u32,
    },
}

/// The sockets undo actions run on.
pub struct Sockets<'a> {
    pub host: &'a mut RouteSocket,
    pub target: Option<&'a mut RouteSocket>,
}

impl Sockets<'_> {
    fn target(&mut self) -> Option<&mut RouteSocket> {
        self.target.as_deref_mut()
    }
}

#[derive(Debug, Default)]
pub struct UndoLog {
    actions: Vec<UndoAction>,
}

impl UndoLog {
    pub fn push(&mut self, action: UndoAction) {
        self.actions.push(action);
    }

    /// Drops the revert of an address that was removed again on purpose (an
    /// IPv6 address whose DAD failed), so a later rollback does not miss it.
    pub fn forget_address(&mut self, index: u32, addr: IpNet) {
        self.actions.retain(|a| {
            !matches!(a, UndoAction::DeleteAddress { index: i, addr: x } if *i == index && *x == addr)
        });
    }

    /// Forgets the log: the operation succeeded.
    pub fn commit(mut self) {
        self.actions.clear();
    }

    /// Runs every action, newest first, and joins the undo's own errors, if
    /// any, to `error`, the failure that made it necessary.
    pub fn abort(self, error: EngineError, sockets: &mut Sockets<'_>) -> EngineError {
        match self.rollback(sockets) {
            Ok(()) => error,
            Err(undo) => EngineError::UndoFailed { error: Box::new(error), undo },
        }
    }

    /// Runs every action, newest first. Returns the errors, if any, as one line.
    pub fn rollback(mut self, sockets: &mut Sockets<'_>) -> Result<(), String> {
        let mut errors = Vec::new();
        // A deleted link takes its addresses and routes with it; skip actions on
        // a link already deleted so they do not report spurious ENODEV.
        let mut deleted: Vec<u32> = Vec::new();
        while let Some(action) = self.actions.pop() {
            tracing::debug!(?action, "undo");
            let result = match &action {
                UndoAction::DeleteLink { index } => {
                    deleted.push(*index);
                    sockets.target().map(|s| s.delete_link(*index))
                }
                UndoAction::DeleteAddress { index, addr } => {
                    if deleted.contains(index) {
                        continue;
                    }
                    sockets.target().map(|s| s.delete_address(*index, *addr))
                }
                UndoAction::DeleteRoute { route } => {
                    if route.oif.is_some_and(|oif| deleted.contains(&oif)) {
                        continue;
                    }
                    sockets.target().map(|s| s.delete_route(route))
                }
                UndoAction::SetUp { index, up } => {
                    if deleted.contains(index) {
                        continue;
                    }
                    sockets.target().map(|s| s.set_up(*index, *up))
                }
                UndoAction::SetPromisc { index, on } => Some(sockets.host.set_promisc(*index, *on)),
                UndoAction::DeleteHostLink { index } => {
                    deleted.push(*index);
                    Some(sockets.host.delete_link(*index))
                }
                UndoAction::DeleteHostRoute { to, oif } => {
                    if deleted.contains(oif) {
                        continue;
                    }
                    Some(sockets.host.delete_device_route(*to, *oif))
                }
            };
            match result {
                Some(Ok(())) => {}
                Some(Err(e)) => errors.push(e.to_string()),
                None => errors.push(format!("no socket to undo {action:?}")),
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
    }
}
