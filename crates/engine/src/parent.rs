//! Parents nicslice makes for a network and removes with the last network
//! using them: an 802.1Q sub-interface (`--parent eth0.50`, Docker's
//! convention, or `--vlan 50`) and a dummy for an internal network. Ownership
//! is recorded in the store so that a link nicslice did not create is never
//! deleted.

use nicslice_kernel::{RouteSocket, SimpleKind};
use nicslice_model::IfName;
use nicslice_store::{OwnedLink, WriteTx};

use crate::error::{EngineError, Result};
use crate::fault::{Faults, Step};
use crate::undo::{UndoAction, UndoLog};

/// How the parent of a new network comes to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentRequest {
    /// Use the parent as named; `X.N` that does not exist on an existing `X`
    /// is created as VLAN N on X (Docker's convention).
    Existing,
    /// An 802.1Q sub-interface with this id on `lower` (the spec's parent is its name).
    Vlan { lower: IfName, id: u16 },
    /// A dummy link of the spec's parent name: an internal network.
    Dummy,
}

/// The name Docker's convention gives VLAN `id` on `lower`.
pub fn vlan_name(lower: &IfName, id: u16) -> Result<IfName> {
    IfName::new(&format!("{lower}.{id}")).map_err(|e| {
        EngineError::Invalid(format!(
            "the VLAN interface name would be too long ({e}); name the parent differently"
        ))
    })
}

/// The dummy parent's name for internal network `network`: `nsl-NAME`, or,
/// when that is longer than an interface name may be, a shortened name with a
/// hash of the whole so two long names do not collide.
pub fn internal_parent_name(network: &str) -> IfName {
    let full = format!("nsl-{network}");
    if let Ok(name) = IfName::new(&full) {
        return name;
    }
    // FNV-1a: stable across runs and versions, unlike std's hasher.
    let hash =
        network.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    let short: String = network.chars().take(6).collect();
    IfName::new(&format!("nsl-{short}-{:04x}", hash & 0xffff))
        .unwrap_or_else(|_| unreachable_name())
}

/// Network names are ASCII letters, digits and `_.-`, so the shortened name
/// is always valid; this is the fallback the type system asks for.
fn unreachable_name() -> IfName {
    IfName::new("nsl-internal").unwrap_or_else(|_| unreachable!("a constant valid name"))
}

/// `eth0.50` as (eth0, 50), if the name has that shape.
fn split_vlan(name: &IfName) -> Option<(IfName, u16)> {
    let (lower, id) = name.as_str().rsplit_once('.')?;
    let id: u16 = id.parse().ok()?;
    Some((IfName::new(lower).ok()?, id))
}

/// Makes sure the parent exists, creating (and recording, and logging the
/// undo of) the link nicslice owns when it must.
pub(crate) fn provision(
    sock: &mut RouteSocket,
    tx: &WriteTx<'_>,
    parent: &IfName,
    request: &ParentRequest,
    undo: &mut UndoLog,
    faults: Faults,
) -> Result<()> {
    let existing = sock.link_by_name(parent.as_str())?;
    let exists = existing.is_some();
    let owned = tx.owned_link(parent.as_str())?;
    let request = match request {
        ParentRequest::Existing if !exists => match split_vlan(parent) {
            Some((lower, id)) if sock.link_by_name(lower.as_str())?.is_some() => {
                ParentRequest::Vlan { lower, id }
            }
            _ => return Ok(()), // check_parent reports the missing parent
        },
        other => other.clone(),
    };
    if exists {
        return match (&request, owned) {
            (ParentRequest::Existing, _) => Ok(()),
            // Already made by nicslice for another network: share it.
            (_, Some(_)) => Ok(()),
            (ParentRequest::Dummy, None) => Err(EngineError::Invalid(format!(
                "{parent} already exists and nicslice did not create it; an internal network needs a name of its own (--parent)"
            ))),
            // The user's own VLAN interface: use it, never delete it, but
            // only if it is what --vlan asks for (a VLAN on that lower device).
            (ParentRequest::Vlan { lower, id }, None) => {
                let Some(link) = existing.as_ref() else { return Ok(()) };
                let lower_index = sock.link_by_name(lower.as_str())?.map(|l| l.index);
                let on_lower = link.kind.as_deref() == Some("vlan")
                    && link.parent_index.is_some()
                    && link.parent_index == lower_index;
                match (on_lower, link.vlan_id) {
                    (true, Some(have)) if have == *id => Ok(()),
                    (true, have) => Err(EngineError::Invalid(format!(
                        "{parent} already exists as VLAN {} on {lower}, not VLAN {id}; remove it or name another parent",
                        have.map_or_else(|| "?".to_string(), |h| h.to_string())
                    ))),
                    (false, _) => Err(EngineError::Invalid(format!(
                        "{parent} already exists but is not a VLAN on {lower} (it is a {} link); remove it or choose another VLAN id than {id}",
                        link.kind.as_deref().unwrap_or("physical")
                    ))),
                }
            }
        };
    }
    let (kind, lower_index, record) = match &request {
        ParentRequest::Vlan { lower, id } => {
            if !(1..=4094).contains(id) {
                return Err(EngineError::Invalid(format!("VLAN id {id} is outside 1..4094")));
            }
            let l = sock.link_by_name(lower.as_str())?.ok_or_else(|| {
                EngineError::NotFound(format!(
                    "{lower}, the lower device of VLAN {id}, does not exist"
                ))
            })?;
            let record = OwnedLink {
                name: parent.to_string(),
                kind: "vlan".into(),
                lower: Some(lower.to_string()),
                vlan_id: Some(*id),
            };
            (SimpleKind::Vlan(*id), Some(l.index), record)
        }
        _ => {
            let record = OwnedLink {
                name: parent.to_string(),
                kind: "dummy".into(),
                lower: None,
                vlan_id: None,
            };
            (SimpleKind::Dummy, None, record)
        }
    };
    faults.check(Step::CreateParent)?;
    sock.create_simple(kind, parent.as_str(), lower_index).map_err(|e| match e.errno() {
        Some(libc::EOPNOTSUPP) => EngineError::Invalid(format!(
            "{e}: this kernel lacks that link kind (see `nicslice check`); give an existing --parent"
        )),
        _ => e.into(),
    })?;
    let link = sock.require_link(parent.as_str(), "the host namespace")?;
    undo.push(UndoAction::DeleteHostLink { index: link.index });
    sock.set_up(link.index, true)?;
    tx.insert_owned_link(&record)?;
    Ok(())
}

/// Makes again a parent nicslice owns that has gone missing (`doctor
/// --fix`), as its record says: a VLAN on its lower device, or a dummy.
pub(crate) fn recreate(sock: &mut RouteSocket, owned: &OwnedLink) -> Result<()> {
    let (kind, lower) = match (owned.kind.as_str(), &owned.lower, owned.vlan_id) {
        ("vlan", Some(lower), Some(id)) => {
            let l = sock.link_by_name(lower)?.ok_or_else(|| {
                EngineError::NotFound(format!(
                    "{lower}, the lower device of {}, does not exist",
                    owned.name
                ))
            })?;
            (SimpleKind::Vlan(id), Some(l.index))
        }
        _ => (SimpleKind::Dummy, None),
    };
    sock.create_simple(kind, &owned.name, lower)?;
    let link = sock.require_link(&owned.name, "the host namespace")?;
    Ok(sock.set_up(link.index, true)?)
}

/// Forgets the parent, inside the transaction that removes the network, if
/// nicslice owns it and no other network uses it; returns its name, for
/// [`delete`] once that transaction has committed.
pub(crate) fn forget(
    tx: &WriteTx<'_>,
    parent: &IfName,
    still_used: bool,
) -> Result<Option<String>> {
    if still_used || tx.owned_link(parent.as_str())?.is_none() {
        return Ok(None);
    }
    tx.delete_owned_link(parent.as_str())?;
    Ok(Some(parent.to_string()))
}

/// Deletes a parent nicslice no longer records. The network is gone by now;
/// a failure leaves only this link, and says so.
pub(crate) fn delete(sock: &mut RouteSocket, name: &str, faults: Faults) -> Result<()> {
    let deleted = faults
        .check(Step::DeleteParent)
        .and_then(|()| sock.delete_link_by_name(name).map_err(EngineError::from));
    deleted.map_err(|e| {
        EngineError::Invalid(format!(
            "the network was removed, but deleting its parent {name}, which nicslice made, failed: {e}; delete it by hand"
        ))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_vlan_names() {
        let eth0: IfName = "eth0".parse().unwrap();
        assert_eq!(split_vlan(&"eth0.50".parse().unwrap()), Some((eth0.clone(), 50)));
        assert_eq!(split_vlan(&"eth0".parse().unwrap()), None);
        assert_eq!(split_vlan(&"br.lan".parse().unwrap()), None);
        assert_eq!(vlan_name(&eth0, 50).unwrap().as_str(), "eth0.50");
        assert!(vlan_name(&"abcdefghijklm".parse().unwrap(), 4000).is_err());
        assert_eq!(internal_parent_name("lan").as_str(), "nsl-lan");
        let a = internal_parent_name("a-very-long-network-one");
        let b = internal_parent_name("a-very-long-network-two");
        assert!(a.as_str().len() <= 15 && a != b, "{a} {b}");
    }
}
