//! Intents: the kernel work of attach and detach is announced in the state
//! before it starts (an endpoint row in state "attaching" or "detaching",
//! with the pid and start time of the process doing it, committed), so a
//! command killed part-way leaves a record of what it may have done. Every
//! engine opened afterwards finds the intents whose process is gone and ends
//! them: the link is deleted if it is still there and is nicslice's (same
//! kind, and same MAC, or same name where the MAC is the parent's), the
//! leases released (a DHCP lease the attach committed once granted is given
//! back to its server), the row dropped. An "attaching" intent is undone; a
//! "detaching" one is finished, which is the same work.
//!
//! Also the identity checks: a record names a namespace by path, inode and
//! cookie, and nothing is done to a namespace whose identity differs (the
//! one the record meant is gone: its record is stale).

use nicslice_kernel::{KernelError, Netns, NetnsTarget, ProcessId, RouteSocket};
use nicslice_store::{EndpointRecord, EndpointState, NetnsId, Owner, StoreRead, WriteTx};

use crate::Engine;
use crate::error::Result;

/// What identifies a namespace for good: its nsfs inode (which the kernel
/// hands to the next namespace once this one is gone) and its cookie (which
/// it never hands out again while it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NsIdentity {
    pub id: NetnsId,
    pub cookie: u64,
}

impl NsIdentity {
    /// The identity of `ns`, asked of a socket already open in it.
    pub fn of(ns: &Netns, sock: &RouteSocket) -> Result<NsIdentity> {
        let id = ns.id();
        Ok(NsIdentity { id: NetnsId { dev: id.dev, ino: id.ino }, cookie: sock.netns_cookie()? })
    }

    /// Whether `ep` was recorded for this very namespace (records made
    /// before cookies were kept are matched by inode alone).
    pub fn matches(&self, ep: &EndpointRecord) -> bool {
        ep.netns_id == self.id && ep.netns_cookie.is_none_or(|c| c == self.cookie)
    }
}

/// The namespace `ep` was recorded in, opened with a socket in it, if it is
/// still there under its recorded path; `None` if it is gone (path missing,
/// or naming another namespace now).
pub(crate) fn open_recorded(ep: &EndpointRecord) -> Result<Option<(Netns, RouteSocket)>> {
    let target = NetnsTarget::Path(ep.netns.clone().into());
    let ns = match target.open() {
        Ok(ns) => ns,
        Err(KernelError::NoSuchNetns(_)) => return Ok(None),
        // A /proc/PID/ns/net of a process gone between the lookup and the open.
        Err(e) if e.errno() == Some(libc::ENOENT) || e.errno() == Some(libc::ESRCH) => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let sock = RouteSocket::open_in(&ns)?;
    Ok(NsIdentity::of(&ns, &sock)?.matches(ep).then_some((ns, sock)))
}

/// Whether the namespace `ep` was recorded in is gone.
pub(crate) fn is_stale(ep: &EndpointRecord) -> bool {
    matches!(open_recorded(ep), Ok(None))
}

/// This process, as intents name it.
pub(crate) fn this_process() -> Result<Owner> {
    let me = ProcessId::current()?;
    Ok(Owner { pid: me.pid, start: me.start })
}

/// Whether the process that owns an intent is gone for good.
pub(crate) fn owner_gone(owner: Option<Owner>) -> bool {
    owner.is_none_or(|o| !ProcessId { pid: o.pid, start: o.start }.is_alive())
}

/// Deletes the link of `ep` in the namespace `sock` lives in, if it is there
/// and is nicslice's: of `kind`, and with the recorded MAC where one was
/// recorded (the link may still carry the temporary name of a rename the
/// command did not finish), else with the recorded name. Returns whether a
/// link was deleted.
pub(crate) fn delete_our_link(
    sock: &mut RouteSocket,
    ep: &EndpointRecord,
    kind: &str,
) -> Result<bool> {
    let ours = sock.links()?.into_iter().find(|l| {
        l.kind.as_deref() == Some(kind)
            && match ep.mac {
                Some(mac) => l.mac == Some(mac),
                None => l.name == ep.ifname.as_str(),
            }
    });
    let Some(link) = ours else { return Ok(false) };
    tracing::debug!(link = %link.name, netns = %ep.netns, "deleting the link of an abandoned intent");
    match sock.delete_link(link.index) {
        Ok(()) => Ok(true),
        Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Ends the intent `ep` inside `tx`: a DHCP lease it was granted given back
/// (through the parent in `host`, on its behalf: its link may not hold the
/// address yet), its link deleted if its namespace is still there, its
/// leases released, its row dropped.
pub(crate) fn end_intent(tx: &WriteTx<'_>, ep: &EndpointRecord, host: &Netns) -> Result<()> {
    let Some(net) = tx.network(ep.network_id)? else { return Ok(()) };
    let kind = net.spec.driver.kind();
    let parent = (host, net.spec.parent.as_str());
    crate::dhcp::release(tx, None, parent, net.spec.name.as_str(), ep)?;
    if net.spec.ipam.dhcp4() {
        crate::dhcp::forget_unrecorded_resolv_conf(ep, net.spec.name.as_str());
    }
    if let Some((_, mut sock)) = open_recorded(ep)? {
        delete_our_link(&mut sock, ep, kind)?;
    }
    tx.delete_endpoint(ep.id)?;
    Ok(())
}

impl Engine {
    /// Finishes or undoes every intent whose process is gone. Costs one
    /// query when there are none.
    pub(crate) fn end_abandoned_intents(&mut self) -> Result<usize> {
        let in_flight = self.store.endpoints_in_flight()?;
        if !in_flight.iter().any(|ep| owner_gone(ep.owner)) {
            return Ok(0);
        }
        // Decided again under the write lock: another process may have
        // ended them meanwhile, and none can start on them while we hold it.
        let tx = self.store.write()?;
        let mut ended = 0;
        for ep in tx.endpoints_in_flight()? {
            if owner_gone(ep.owner) {
                let what =
                    if ep.state == EndpointState::Detaching { "finishing" } else { "undoing" };
                tracing::info!(
                    ifname = %ep.ifname,
                    netns = %ep.netns,
                    pid = ep.owner.map(|o| o.pid),
                    "{what} the {} of a command that did not finish",
                    ep.state.as_str()
                );
                end_intent(&tx, &ep, &self.host)?;
                ended += 1;
            }
        }
        tx.commit()?;
        Ok(ended)
    }
}
