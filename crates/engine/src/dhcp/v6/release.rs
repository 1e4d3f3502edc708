//! Giving a DHCPv6 lease back (RELEASE, RFC 8415 18.2.7), for detach, the
//! agent, an attach that failed after its grant, and CNI DEL and GC.
//!
//! From the endpoint's own link-local address on its link while the link is
//! there. When it is gone (a namespace deleted without detach, a CNI link
//! the plugin deleted before IPAM's DEL), through the parent in the host
//! namespace, from the parent's own link-local address, on the endpoint's
//! behalf: the server knows the binding by the DUID (the host's, the same)
//! and the IAID the message carries, not by the address it came from, so
//! it frees the endpoint's address as if the endpoint had sent it. Without
//! an IPv6 link-local on the parent (IPv6 off there) nothing can be sent,
//! and the server keeps the address until its lease ends.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nicslice_kernel::address_claim::Dad;
use nicslice_kernel::{Dhcp6Socket, Netns, RouteSocket};
use nicslice_store::DhcpLeaseRecord;

use super::client::Exchange6;
use super::{Identity6, Lease6Details, RELEASE_WAIT, from_hex, link_local};
use crate::error::{EngineError, Result};

/// How long a RELEASE through the parent waits for the parent's link-local
/// to pass duplicate address detection (one second by default).
const PARENT_DAD_WAIT: Duration = Duration::from_secs(3);

/// RELEASE of the lease row `lease`: from its link (`on_link`: the
/// namespace and the interface) if it is there, else through `parent` (the
/// host namespace and the parent's name). False if it could not be sent.
pub(crate) fn release(
    on_link: Option<(&Netns, &str)>,
    parent: Option<(&Netns, &str)>,
    lease: &DhcpLeaseRecord,
) -> bool {
    let (Some(identity), IpAddr::V6(address)) =
        (Identity6::from_key(&lease.client_id), lease.address.addr())
    else {
        return false;
    };
    let details: Lease6Details = serde_json::from_value(lease.details.clone()).unwrap_or_default();
    send(on_link, parent, &identity, address, &from_hex(&details.server_id))
}

/// RELEASE of `address`, which `identity` holds from the server `server_id`
/// names: see [`release`].
pub(super) fn send(
    on_link: Option<(&Netns, &str)>,
    parent: Option<(&Netns, &str)>,
    identity: &Identity6,
    address: Ipv6Addr,
    server_id: &[u8],
) -> bool {
    if let Some((ns, ifname)) = on_link {
        match Dhcp6Socket::open_in(ns, ifname, link_local(&identity.key())) {
            Ok(socket) => {
                let label = format!("{ifname} in {}", ns.label());
                return give_back(&socket, &label, identity, address, server_id);
            }
            // The link went (or its address with it): the parent's turn.
            Err(e) => tracing::debug!("DHCPv6 RELEASE of {address} from {ifname}: {e}"),
        }
    }
    let Some((host, parent)) = parent else {
        tracing::warn!(
            "cannot release {address} to its DHCPv6 server: the endpoint's link is gone and \
             its parent is unknown; the server keeps it until its lease ends"
        );
        return false;
    };
    let socket = match parent_link_local(host, parent) {
        Ok(Some(source)) => Dhcp6Socket::open_in(host, parent, source).map_err(EngineError::from),
        Ok(None) => {
            tracing::warn!(
                "cannot release {address} to its DHCPv6 server through {parent}: {parent} has \
                 no IPv6 link-local address; the server keeps it until its lease ends"
            );
            return false;
        }
        Err(e) => Err(e),
    };
    match socket {
        Ok(socket) => {
            let label = format!("{parent} in {} for IAID {:08x}", host.label(), identity.iaid);
            give_back(&socket, &label, identity, address, server_id)
        }
        Err(e) => {
            tracing::warn!("cannot release {address} to its DHCPv6 server through {parent}: {e}");
            false
        }
    }
}

fn give_back(
    socket: &Dhcp6Socket,
    label: &str,
    identity: &Identity6,
    address: Ipv6Addr,
    server_id: &[u8],
) -> bool {
    let exchange = Exchange6 { socket, duid: &identity.duid, iaid: identity.iaid, label };
    let sent = exchange.release(address, server_id, RELEASE_WAIT);
    if !sent {
        tracing::warn!(
            "the DHCPv6 RELEASE of {address} from {label} may not have reached its server"
        );
    }
    sent
}

/// The parent's own IPv6 link-local address, if it has one, once the
/// kernel's duplicate address detection has passed (a parent that just came
/// up: until then the kernel will not send from it), waiting at most
/// [`PARENT_DAD_WAIT`].
fn parent_link_local(host: &Netns, parent: &str) -> Result<Option<Ipv6Addr>> {
    let mut sock = RouteSocket::open_in(host)?;
    let Some(index) = sock.index_of(parent)? else { return Ok(None) };
    let found = sock.addresses(Some(index))?.into_iter().find_map(|(_, a)| match a {
        IpNet::V6(v6) if v6.addr().is_unicast_link_local() => Some(v6.addr()),
        _ => None,
    });
    let Some(ll) = found else { return Ok(None) };
    let deadline = Instant::now() + PARENT_DAD_WAIT;
    while sock.dad_state(index, IpAddr::V6(ll))? == Some(Dad::Tentative) {
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Some(ll))
}
