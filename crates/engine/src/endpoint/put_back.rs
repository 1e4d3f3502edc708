//! Putting back what an endpoint's link lost: its recorded addresses and
//! routes, added again where missing (`doctor --fix`). Nothing else on the
//! link is touched: an address someone added is theirs to remove. All or
//! nothing: a step that fails undoes the ones made before it.

use ipnet::IpNet;
use nicslice_kernel::Route;

use super::place::Place;
use crate::error::{EngineError, Result};
use crate::undo::{UndoAction, UndoLog};

/// Adds to the link `ifname` of `place`'s target every address of
/// `addresses` and every route of `routes` it lacks (a route matches by
/// destination, and gateway when one is given, as the check compares them).
/// Returns how many were added.
pub fn put_back(
    place: &mut Place,
    ifname: &str,
    addresses: &[IpNet],
    routes: &[Route],
) -> Result<usize> {
    let ns = place.target_ns.label().to_string();
    let link = place.target.require_link_brief(ifname, &ns)?;
    let mut undo = UndoLog::default();
    let result = (|| -> Result<usize> {
        let mut added = 0;
        let have = place.target.addresses(Some(link.index))?;
        for addr in addresses {
            if have.iter().any(|(i, a)| *i == link.index && a.addr() == addr.addr()) {
                continue;
            }
            place.target.add_address(link.index, *addr)?;
            undo.push(UndoAction::DeleteAddress { index: link.index, addr: *addr });
            added += 1;
        }
        // After the addresses: a gateway is reachable once its subnet is.
        let have = place.target.routes()?;
        for route in routes {
            let present = have.iter().any(|r| {
                r.destination == route.destination
                    && (route.gateway.is_none() || r.gateway == route.gateway)
            });
            if present {
                continue;
            }
            let route = Route { oif: Some(link.index), ..route.clone() };
            place.target.add_route(&route).map_err(|e| {
                EngineError::Invalid(format!("{e} (route to {} in {ns})", route.destination))
            })?;
            undo.push(UndoAction::DeleteRoute { route });
            added += 1;
        }
        Ok(added)
    })();
    match result {
        Ok(added) => {
            undo.commit();
            Ok(added)
        }
        Err(error) => Err(place.abort(undo, error)),
    }
}
