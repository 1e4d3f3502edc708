//! Creating a child link (macvlan family or ipvlan family) straight inside
//! another namespace under its final name.
//! Recent kernels check the name only in the target namespace; older ones
//! (Debian's 6.1) also refuse a name the creating namespace has, such as the
//! host's own `eth0`. Then the link is created under a temporary name and
//! renamed inside the target: one more request, only when needed.

use nicslice_model::IfName;

use crate::error::Result;
use crate::ipvlan::IpvlanLinkRequest;
use crate::macvlan::MacvlanLinkRequest;
use crate::netlink::RouteSocket;
use crate::netns::Netns;

/// A child link to create, of either family.
#[derive(Debug, Clone)]
pub enum ChildLink {
    Macvlan(MacvlanLinkRequest),
    Ipvlan(IpvlanLinkRequest),
}

impl ChildLink {
    pub fn name(&self) -> &IfName {
        match self {
            ChildLink::Macvlan(r) => &r.name,
            ChildLink::Ipvlan(r) => &r.name,
        }
    }

    /// Creates the link on its parent (in `host`'s namespace) straight inside
    /// `target_ns`, under its final name.
    pub fn create_in(
        &self,
        host: &mut RouteSocket,
        target_ns: &Netns,
        target: &mut RouteSocket,
    ) -> Result<()> {
        create_in(host, target_ns, target, self.name(), |host, name| match self {
            ChildLink::Macvlan(r) => host.create_macvlan(
                &MacvlanLinkRequest { name: name.clone(), ..r.clone() },
                Some(target_ns),
            ),
            ChildLink::Ipvlan(r) => host.create_ipvlan(
                &IpvlanLinkRequest { name: name.clone(), ..r.clone() },
                Some(target_ns),
            ),
        })
    }
}

/// A name no one else uses: `nsl` and eight hex digits from the pid, the
/// time and a counter.
fn temporary_name() -> IfName {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mix = std::process::id().wrapping_mul(0x9e37_79b9)
        ^ nanos
        ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    IfName::new(&format!("nsl{mix:08x}")).unwrap_or_else(|_| unreachable!("11 ASCII characters"))
}

/// Runs `create(host, name)` (which sends the creation with `target_ns` as
/// the destination) with `name`, falling back to a temporary name and a
/// rename in `target` when the kernel reports the name taken.
pub fn create_in(
    host: &mut RouteSocket,
    target_ns: &Netns,
    target: &mut RouteSocket,
    name: &IfName,
    mut create: impl FnMut(&mut RouteSocket, &IfName) -> Result<()>,
) -> Result<()> {
    match create(host, name) {
        Err(e)
            if e.errno() == Some(libc::EEXIST) && target.link_by_name(name.as_str())?.is_none() =>
        {
            let temp = temporary_name();
            create(host, &temp)?;
            let link = target.require_link(temp.as_str(), target_ns.label())?;
            if let Err(rename) = target.rename(link.index, name.as_str()) {
                let _ = target.delete_link(link.index);
                return Err(rename);
            }
            Ok(())
        }
        other => other,
    }
}
