//! DHCPv6 (IA_NA) for endpoints of a `--ipam dhcp6` or `--ipam dhcp,dhcp6`
//! network: the engine steps attach, detach and the agent run for the IPv6
//! lease, beside (or instead of) the IPv4 one in `dhcp`.
//!
//! Identity: one DUID for the host ([`host_duid`], kept beside the state
//! database, so stable across runs and reboots), one IAID per endpoint,
//! derived from network, namespace and interface name (the IAID of the
//! endpoint's DHCPv4 client identifier too), so a re-attached endpoint is
//! the same identity association and gets its address back. The lease row's
//! key is IAID then DUID ([`Identity6::key`]).
//!
//! Attach: the child gets a link-local address of its own ([`link_local`];
//! why, there), the exchange runs from it on a socket opened inside the
//! endpoint's namespace, and the granted address goes on as a /128 carrying
//! the lease's lifetime in the kernel. IA_NA says nothing of prefixes or
//! routers: the on-link prefix and the default route come from the router's
//! Router Advertisements, which the namespace accepts by default.
//!
//! Detach: RELEASE from the endpoint's link-local address while its link
//! exists, else through the parent on its behalf ([`release`]). DNS servers
//! go to the namespace's resolv.conf as DHCPv4's do ([`Held6::write_resolv_conf`]).
//!
//! CNI (`cni`): the same exchange on the link a CNI plugin made, for
//! nicslice-ipam's `"dhcp": {"families": [6]}` (or `[4, 6]`).

mod client;
mod cni;
mod dad;
mod release;
mod renew;

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use ipnet::{IpNet, Ipv6Net};
use nicslice_kernel::{Dhcp6Socket, LinkBrief, Netns, sysctl};
use nicslice_model::ProbeSpec;
use nicslice_store::{DhcpLeaseRecord, EndpointId, StoreRead, WriteTx};
use serde::{Deserialize, Serialize};

use super::{DhcpRequest, Who, identity, iproute2_name, resolv, unix_now};
use crate::endpoint::{self, EndpointPlan, Place, Policy, Route};
use crate::error::{EngineError, Result};
use crate::fault::Faults;
use crate::undo::{UndoAction, UndoLog};
use client::Exchange6;
pub use client::Granted6;
pub(crate) use release::release;

/// How long a RELEASE waits for the server's REPLY before the link goes.
const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// Who an endpoint is to a DHCPv6 server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity6 {
    pub duid: Vec<u8>,
    pub iaid: u32,
}

impl Identity6 {
    /// The lease row's client identifier: the IAID (4 bytes) then the DUID.
    pub fn key(&self) -> Vec<u8> {
        let mut key = self.iaid.to_be_bytes().to_vec();
        key.extend(&self.duid);
        key
    }

    /// Back from a lease row's client identifier.
    pub fn from_key(key: &[u8]) -> Option<Identity6> {
        let iaid = u32::from_be_bytes(key.get(..4)?.try_into().ok()?);
        let duid = key.get(4..).filter(|d| d.len() >= 2)?.to_vec();
        Some(Identity6 { duid, iaid })
    }
}

/// The host's DUID: DUID-UUID (RFC 6355) of /etc/machine-id, or of random
/// bytes on a host without one, made once and kept beside the state
/// database at `state`.
pub fn host_duid(state: &Path) -> Result<Vec<u8>> {
    Ok(nicslice_store::host_duid(state, || {
        let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
        identity::host_duid(&machine_id).unwrap_or_else(|| {
            let random: [u8; 16] = nicslice_kernel::identity::random_bytes().unwrap_or_default();
            [&[0, 4][..], &random[..]].concat()
        })
    })?)
}

/// The link-local address of the endpoint whose lease key is `key`.
///
/// Why not the kernel's: an ipvlan child has its parent's MAC, so its
/// EUI-64 link-local (`addr_gen_mode` eui64) is the parent's, and the same
/// on every child, unless the kernel tells children apart: Debian's 6.1
/// does (measured in the VM stage: fe80::925d:a600:112:8bc, ...:212:...,
/// ...:312:... for three children of a parent at fe80::905d:a6ff:fe12:8bc,
/// the per-port `dev_id` in place of ff:fe), kernels before ipvlan numbered
/// its children did not (and ipvlan refuses one address on two children).
/// Even where they differ, they depend on the order children were made, so
/// an endpoint attached again may come back with another. `stable_secret`
/// hashes the MAC too (a secret per child would be needed), and `random`
/// changes at every link up. So nicslice turns the kernel's generation off
/// on the child (`addr_gen_mode` none) and gives it fe80::/64 with an
/// interface identifier hashed from the host's DUID and the endpoint's
/// IAID: distinct per child and per host on any kernel, the same every time
/// the endpoint is attached, and computable again from the lease row alone
/// (detach and the agent bind to it). Added without DAD, as nicslice adds
/// every address on a network that does not probe: 64 hashed bits leave no
/// realistic collision. Being the same on a new link with a new MAC (a
/// macvlan endpoint attached again), it is announced ([`announce`]).
pub fn link_local(key: &[u8]) -> Ipv6Addr {
    let hex = identity::to_hex(key);
    let high = identity::fnv1a32(&[&hex, "link-local"]);
    let low = identity::fnv1a32(&[&hex, "link-local", "low"]);
    let iid = (u64::from(high) << 32) | u64::from(low);
    let segments =
        [0xfe80, 0, 0, 0, (iid >> 48) as u16, (iid >> 32) as u16, (iid >> 16) as u16, iid as u16];
    Ipv6Addr::from(segments.map(u16::to_be_bytes).concat().try_into().unwrap_or([0; 16]))
}

/// What an attach knows before it touches the kernel: the identity and the
/// address this identity held last, asked for again.
pub struct Lookup6 {
    pub identity: Identity6,
    pub previous: Option<Ipv6Addr>,
}

/// The DHCPv6 identity of `who` (its IAID hashed from `--client-id` when
/// the user gave one, so it can follow the endpoint to another namespace)
/// and its last address; refused when another endpoint holds it (it would
/// be handed the other's address).
pub fn identify(
    who: &Who<'_>,
    client_id: Option<&str>,
    state: &Path,
    tx: &impl StoreRead,
) -> Result<Lookup6> {
    let netns = who.netns.path().display().to_string();
    let iaid = match client_id {
        Some(given) => identity::fnv1a32(&["client-id", given]),
        None => identity::iaid(who.network, &netns, who.ifname),
    };
    let identity = Identity6 { duid: host_duid(state)?, iaid };
    let last = tx.dhcp_lease_of_client(&identity.key(), 6)?;
    if let Some(holder) = last.as_ref().and_then(|l| l.endpoint_id) {
        let who = tx
            .endpoint(holder)?
            .map_or("another endpoint".to_string(), |e| format!("{} in {}", e.ifname, e.netns));
        return Err(EngineError::Invalid(format!(
            "DHCPv6 IAID {:08x} of this host is already used by {who}; give this endpoint \
             another --client-id",
            identity.iaid
        )));
    }
    let previous = last.as_ref().and_then(super::held_v6);
    Ok(Lookup6 { identity, previous })
}

/// The link of a DHCPv6-only endpoint: made, the kernel's link-local
/// generation turned off while it is still down, then up with `routes` (the
/// user's; the default route comes from the router's RA). [`realize`] puts
/// the endpoint's own link-local on.
pub fn make_link(
    plan: &EndpointPlan,
    routes: &[Route],
    place: &mut Place,
    faults: Faults,
    undo: &mut UndoLog,
) -> Result<LinkBrief> {
    let link = endpoint::create_link(&plan.link, &plan.parent, place, faults, undo)?;
    ipv6_settings(&link, place)?;
    endpoint::configure(&link, &[], routes, Policy::CLI, place, faults, undo)?;
    Ok(link)
}

/// Turns the kernel's link-local generation off on `link` (`addr_gen_mode`
/// none) and its unsolicited NAs on; refuses a link without IPv6. Before
/// the link first comes up, so the kernel makes no link-local of its own.
pub(super) fn ipv6_settings(link: &LinkBrief, place: &mut Place) -> Result<()> {
    let ifname = link.name.clone();
    let label = place.target_ns.label().to_string();
    let no_ipv6 = |why: String| {
        EngineError::Invalid(format!(
            "{ifname} in {label} cannot take part in DHCPv6: {why}; enable IPv6 in that \
             namespace (net.ipv6.conf.default.disable_ipv6=0 before the attach)"
        ))
    };
    let conf = format!("net/ipv6/conf/{ifname}");
    let disabled = place
        .target_ns
        .run(|| -> nicslice_kernel::Result<bool> {
            if sysctl::read(&format!("{conf}/disable_ipv6"))? == "1" {
                return Ok(true);
            }
            sysctl::write(&format!("{conf}/addr_gen_mode"), "1")?;
            // Unsolicited NAs when the MAC is set ([`announce`]).
            sysctl::write(&format!("{conf}/ndisc_notify"), "1")?;
            Ok(false)
        })?
        .map_err(|e| no_ipv6(e.to_string()))?;
    if disabled {
        return Err(no_ipv6(format!("IPv6 is disabled on it ({conf}/disable_ipv6 is 1)")));
    }
    Ok(())
}

/// Puts the endpoint's own link-local ([`link_local`]) on `link` (up), and
/// takes off any other the kernel made (dual-stack: the DHCPv4 step brought
/// the link up before [`ipv6_settings`]). Added to the up link, not before:
/// an address added to a link that is down stays tentative for up to
/// `router_solicitation_delay` after it comes up, even without DAD, and
/// the server's first answers to it are dropped meanwhile.
fn own_link_local(link: &LinkBrief, identity: &Identity6, place: &mut Place) -> Result<Ipv6Addr> {
    ipv6_settings(link, place)?;
    let ll = link_local(&identity.key());
    for (_, addr) in place.target.addresses(Some(link.index))? {
        if let IpNet::V6(v6) = addr
            && v6.addr().is_unicast_link_local()
            && v6.addr() != ll
        {
            // On the link nicslice just made: the kernel's, not anyone's.
            place.target.delete_address(link.index, addr)?;
        }
    }
    let addr = IpNet::V6(Ipv6Net::new(ll, 64).map_err(|e| EngineError::Invalid(e.to_string()))?);
    // No undo of its own: the link is this attach's (its undo deletes it,
    // and the address with it), and a link-local does not outlive the
    // link going down, which the undo does first.
    match place.target.add_address(link.index, addr) {
        Err(e) if e.errno() == Some(libc::EEXIST) => {}
        other => other?,
    }
    Ok(ll)
}

/// Announces the addresses of `link` (up) to the link's neighbours with
/// unsolicited NAs, by setting its own MAC again (NETDEV_CHANGEADDR, with
/// `ndisc_notify` on): an endpoint attached again has the same link-local
/// and address on a new link with a new MAC, and the server's neighbour
/// entry for the old one would swallow its answers until it went stale. An
/// ipvlan child refuses to have its MAC set, and needs nothing: its MAC is
/// its parent's, the one neighbours know.
fn announce(link: &LinkBrief, place: &mut Place) {
    if let Some(mac) = link.mac {
        let _ = place.target.set_mac(link.index, mac);
    }
}

/// A DHCPv6 lease an attach holds and has not recorded yet.
pub struct Held6 {
    granted: Granted6,
    identity: Identity6,
    ifname: String,
    /// The resolv.conf this lease wrote, with the network its marker names
    /// (none when the DHCPv4 lease's took its DNS servers, or there was
    /// nothing to write).
    resolv_conf: Option<(resolv::Written, String)>,
}

/// What a DHCPv6 lease row keeps besides its columns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Lease6Details {
    /// The server's DUID, in hex (RENEW and RELEASE name it).
    server_id: String,
    #[serde(default)]
    dns6: Vec<Ipv6Addr>,
    #[serde(default)]
    preferred_secs: u32,
    /// The same key as DHCPv4's `LeaseDetails`, so that detach and the
    /// agent remove it the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resolv_conf: Option<resolv::Written>,
}

/// The DNS servers a DHCPv6 lease row records.
pub(super) fn dns_of(lease: &DhcpLeaseRecord) -> Vec<IpAddr> {
    serde_json::from_value::<Lease6Details>(lease.details.clone())
        .map(|d| d.dns6.into_iter().map(IpAddr::V6).collect())
        .unwrap_or_default()
}

fn from_hex(hex: &str) -> Vec<u8> {
    hex.split(':').filter_map(|b| u8::from_str_radix(b, 16).ok()).collect()
}

/// The /128 the endpoint holds (IA_NA gives addresses, not prefixes: the
/// on-link prefix comes from the router's RA).
pub(super) fn host_net(ip: Ipv6Addr) -> IpNet {
    IpNet::V6(Ipv6Net::from(ip))
}

/// A lost lease asked for again by the agent (an endpoint's or a CNI
/// attachment's): under the identity its record holds, asking for the
/// address it held, put on `ifname` in `place`'s target by [`realize`];
/// what an earlier try killed part-way left there (that address) is taken
/// off first. The caller records it, then commits `undo` or aborts it.
pub(in crate::dhcp) fn regain(
    last: &DhcpLeaseRecord,
    ifname: &str,
    req: &DhcpRequest,
    probe: Option<ProbeSpec>,
    place: &mut Place,
    undo: &mut UndoLog,
) -> Result<Held6> {
    let identity = Identity6::from_key(&last.client_id).ok_or_else(|| {
        let key = identity::to_hex(&last.client_id);
        EngineError::Invalid(format!("{key} is not a DHCPv6 identity"))
    })?;
    let previous = super::held_v6(last);
    let link = place.target.require_link_brief(ifname, place.target_ns.label())?;
    if let Some(ip) = previous {
        match place.target.delete_address(link.index, host_net(ip)) {
            Err(e) if e.errno() != Some(libc::EADDRNOTAVAIL) => return Err(e.into()),
            _ => {}
        }
    }
    realize(&link, &Lookup6 { identity, previous }, req, probe, place, undo)
}

/// Asks the server for an address for the endpoint on `link` (up, with its
/// addresses so far) and puts it on. On failure nothing of it is left but
/// what `undo` undoes; a lease granted but not put on is given back.
/// `probe`: the network probes for conflicts, and the address goes through
/// the kernel's DAD as a pool address would (one someone answers for is
/// DECLINEd); otherwise it goes on without, as every nicslice address does.
pub fn realize(
    link: &LinkBrief,
    lookup: &Lookup6,
    req: &DhcpRequest,
    probe: Option<ProbeSpec>,
    place: &mut Place,
    undo: &mut UndoLog,
) -> Result<Held6> {
    let identity = &lookup.identity;
    let asked = ask(link, lookup, req.timeout, place)?;
    let (exchange, granted, label) = (asked.exchange(identity), &asked.granted, &asked.label);
    let address = host_net(granted.address);
    let mut declined = false;
    let mut put_on = || -> Result<()> {
        match probe {
            Some(probe) => {
                if !dad::claim(link, address, probe.timeout(), place, undo)? {
                    exchange.decline(granted.address, &granted.server_id, RELEASE_WAIT);
                    declined = true;
                    return Err(EngineError::Refused(format!(
                        "DHCPv6 server {} handed {} {}, which another host on the link uses \
                         (duplicate address detection failed); declined it",
                        granted.server, label, granted.address
                    )));
                }
            }
            None => {
                place.target.add_address(link.index, address)?;
                undo.push(UndoAction::DeleteAddress { index: link.index, addr: address });
            }
        }
        // The kernel drops the address when the lease runs out unrenewed.
        place.target.set_address_lifetime(link.index, address, granted.valid_secs)?;
        announce(link, place);
        Ok(())
    };
    if let Err(e) = put_on() {
        if !declined {
            exchange.release(granted.address, &granted.server_id, RELEASE_WAIT);
        }
        return Err(e);
    }
    Ok(Held6 {
        granted: asked.granted,
        identity: identity.clone(),
        ifname: link.name.clone(),
        resolv_conf: None,
    })
}

/// A lease granted on a link, with the socket it came through (a lease the
/// caller does not keep is given back through it).
pub(super) struct Asked {
    socket: Dhcp6Socket,
    label: String,
    pub(super) granted: Granted6,
}

impl Asked {
    pub(super) fn exchange<'a>(&'a self, identity: &'a Identity6) -> Exchange6<'a> {
        Exchange6 {
            socket: &self.socket,
            duid: &identity.duid,
            iaid: identity.iaid,
            label: &self.label,
        }
    }
}

/// Puts the endpoint's own link-local on `link` (up) and announces it, then
/// runs SOLICIT to REPLY from it within `timeout`. The address is not put on.
pub(super) fn ask(
    link: &LinkBrief,
    lookup: &Lookup6,
    timeout: Duration,
    place: &mut Place,
) -> Result<Asked> {
    let identity = &lookup.identity;
    let ll = own_link_local(link, identity, place)?;
    announce(link, place);
    let label = format!("{} in {}", link.name, place.target_ns.label());
    let socket = Dhcp6Socket::open_in(&place.target_ns, &link.name, ll)?;
    let exchange =
        Exchange6 { socket: &socket, duid: &identity.duid, iaid: identity.iaid, label: &label };
    let granted = exchange.acquire(lookup.previous, timeout)?;
    tracing::debug!(address = %granted.address, server = %granted.server, "DHCPv6 lease");
    Ok(Asked { socket, label, granted })
}

/// The row of a DHCPv6 lease `granted` to `identity` at `now`, naming the
/// resolv.conf it wrote, if any.
fn lease_record(
    identity: &Identity6,
    endpoint_id: Option<EndpointId>,
    granted: &Granted6,
    resolv_conf: Option<&resolv::Written>,
    now: i64,
) -> DhcpLeaseRecord {
    let details = Lease6Details {
        server_id: identity::to_hex(&granted.server_id),
        dns6: granted.dns.clone(),
        preferred_secs: granted.preferred_secs,
        resolv_conf: resolv_conf.cloned(),
    };
    DhcpLeaseRecord {
        client_id: identity.key(),
        family: 6,
        endpoint_id,
        address: host_net(granted.address),
        server: IpAddr::V6(granted.server),
        lease_secs: granted.valid_secs,
        acquired_at: now,
        renew_at: now + i64::from(granted.renew_secs),
        rebind_at: now + i64::from(granted.rebind_secs),
        expires_at: now + i64::from(granted.valid_secs),
        details: serde_json::to_value(details).unwrap_or_default(),
    }
}

impl Held6 {
    /// The address as the endpoint holds it.
    pub fn address(&self) -> IpNet {
        host_net(self.granted.address)
    }

    /// Puts the lease's DNS servers where programs in `who`'s namespace find
    /// them, as DHCPv4's are (`dhcp::resolv`): added to the resolv.conf the
    /// endpoint's DHCPv4 lease wrote (`v4_file`, a dual-stack endpoint's;
    /// that lease owns the file), else in a file of this lease's own.
    pub(crate) fn write_resolv_conf(
        &mut self,
        who: &Who<'_>,
        v4_file: Option<&resolv::Written>,
    ) -> Result<()> {
        let dns: Vec<IpAddr> = self.granted.dns.iter().copied().map(IpAddr::V6).collect();
        let Some(name) = iproute2_name(who.netns).filter(|_| !dns.is_empty()) else {
            return Ok(());
        };
        let failed = |e: std::io::Error| {
            EngineError::Invalid(format!("writing /etc/netns/{name}/resolv.conf: {e}"))
        };
        match v4_file {
            Some(file) => resolv::append(file, who.network, who.ifname, &dns).map_err(failed)?,
            None => {
                let written = resolv::write(&name, who.network, who.ifname, &dns, None);
                self.resolv_conf = written.map_err(failed)?.map(|w| (w, who.network.to_string()));
            }
        }
        Ok(())
    }

    /// Records the lease for `endpoint` in the caller's transaction.
    pub fn record(&self, tx: &WriteTx<'_>, endpoint: EndpointId) -> Result<()> {
        let written = self.resolv_conf.as_ref().map(|(w, _)| w);
        let row = lease_record(&self.identity, Some(endpoint), &self.granted, written, unix_now());
        tx.record_dhcp_lease(&row)?;
        Ok(())
    }

    /// Gives the lease back (an attach that fails after the grant), while
    /// the link and its link-local address are still there, and removes the
    /// resolv.conf it wrote.
    pub fn give_back(&self, target_ns: &Netns) {
        let on_link = Some((target_ns, self.ifname.as_str()));
        release::send(on_link, None, &self.identity, self.granted.address, &self.granted.server_id);
        if let Some((written, network)) = &self.resolv_conf {
            resolv::remove(written, network, &self.ifname);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_carries_iaid_and_duid_back_and_forth() {
        let id = Identity6 { duid: vec![0, 4, 9, 9], iaid: 0x0102_0304 };
        assert_eq!(id.key(), vec![1, 2, 3, 4, 0, 4, 9, 9]);
        assert_eq!(Identity6::from_key(&id.key()), Some(id));
        assert_eq!(Identity6::from_key(&[1, 2, 3]), None);
    }

    #[test]
    fn link_locals_are_stable_and_differ_per_endpoint() {
        let a = Identity6 { duid: vec![0, 4, 1], iaid: 1 }.key();
        let b = Identity6 { duid: vec![0, 4, 1], iaid: 2 }.key();
        let other_host = Identity6 { duid: vec![0, 4, 2], iaid: 1 }.key();
        assert_eq!(link_local(&a), link_local(&a));
        assert!(link_local(&a).is_unicast_link_local());
        assert_ne!(link_local(&a), link_local(&b), "two children of one host");
        assert_ne!(link_local(&a), link_local(&other_host), "one endpoint name on two hosts");
    }
}
