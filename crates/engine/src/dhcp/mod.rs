//! DHCP for endpoints of a `--ipam dhcp` network (IPv4): the engine steps
//! that attach and detach run instead of the pool's.
//!
//! Attach ([`realize`]): the child is made and brought up without an
//! address, the exchange runs on a socket opened inside the endpoint's
//! namespace on the new link ([`nicslice_kernel::DhcpSocket`]), and only then
//! do the granted address and the default route via the server's router go
//! on, through the same [`endpoint::configure`] every endpoint uses, on the
//! same undo log; the address carries the lease's lifetime in the kernel,
//! so it cannot outlive the lease whatever runs. The DNS servers go to the namespace's resolv.conf where
//! iproute2 looks for it ([`resolv`]). The caller records the lease
//! ([`Held::record`]) in its store transaction; if anything after the grant
//! fails, it gives the lease back ([`Held::give_back`]) before the undo
//! deletes the link.
//!
//! Detach ([`release`]): RELEASE to the server from the leased address, the
//! resolv.conf removed, the lease row marked released (kept, so the client
//! asks for the same address next time).
//!
//! Renewal (`renew`, [`Engine::renew_dhcp_leases`](crate::Engine::renew_dhcp_leases)):
//! `nicslice dhcp-agent` renews at T1, rebinds at T2 and takes an expired or
//! refused address off its link, from what the store says; the endpoint
//! then asks for a lease again, backing off (`reacquire`).
//!
//! CNI (`cni`, [`CniAttachment`]): nicslice-ipam's `"dhcp": {}` runs the
//! same exchange on the link the CNI plugin made, its lease kept in the same
//! store for the same agent ([`agent`], started on demand by either front end).
//!
//! The client identifier (`identity`) is what tells ipvlan children apart
//! (seed 001); the wire format is dhcproto's, the socket the kernel crate's.

pub mod agent;
mod client;
mod cni;
mod cni_retry;
mod identity;
mod reacquire;
mod renew;
mod resolv;
pub mod v6;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use nicslice_kernel::{DhcpSocket, Netns, NetnsTarget};
use nicslice_model::MacAddr;
use nicslice_store::{DhcpLeaseRecord, EndpointId, EndpointRecord, StoreRead, WriteTx};
use serde::{Deserialize, Serialize};

use client::Exchange;
pub use client::Granted;
pub use cni::{CniAttachment, CniDhcpCheck, CniGrants, CniRoute, DhcpFamilies, cni_client_id};
pub use reacquire::DhcpRetry;
pub use renew::RenewReport;

use crate::endpoint::{
    self, AddressPlan, EndpointPlan, LinkBrief, Place, Policy, Realized, Route, RouteSpec,
    plan_routes,
};
use crate::error::{EngineError, Result};
use crate::fault::Faults;
use crate::undo::UndoLog;

/// How long `attach` waits for a server unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a RELEASE may wait for the server's ARP answer before the link
/// goes (and the message with it).
pub(crate) const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// What the user may say about an endpoint's DHCP.
#[derive(Debug, Clone)]
pub struct DhcpRequest {
    /// `--client-id`; default: derived from network, namespace and ifname.
    pub client_id: Option<String>,
    /// `--dhcp-timeout`: how long to wait for the server.
    pub timeout: Duration,
}

impl Default for DhcpRequest {
    fn default() -> Self {
        DhcpRequest { client_id: None, timeout: DEFAULT_TIMEOUT }
    }
}

/// What a lease row keeps besides its columns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct LeaseDetails {
    #[serde(default)]
    pub(crate) routers: Vec<Ipv4Addr>,
    #[serde(default)]
    pub(crate) dns: Vec<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resolv_conf: Option<resolv::Written>,
}

/// A lease an attach holds and has not recorded yet.
pub struct Held {
    pub granted: Granted,
    client_id: Vec<u8>,
    ifname: String,
    mac: MacAddr,
    resolv_conf: Option<resolv::Written>,
    network: String,
    /// Unix seconds of the grant, from which the lease's times count.
    granted_at: i64,
}

/// A DHCP endpoint's lease of one family as `endpoint ls` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseView {
    pub server: IpAddr,
    pub client_id: String,
    pub lease_secs: u32,
    /// Unix seconds.
    pub acquired_at: i64,
    pub renew_at: i64,
    pub rebind_at: i64,
    pub expires_at: i64,
    /// The DNS servers the server named.
    pub dns: Vec<IpAddr>,
}

/// Who the endpoint is, for its client identifier and its resolv.conf.
pub struct Who<'a> {
    pub network: &'a str,
    pub netns: &'a NetnsTarget,
    pub ifname: &'a str,
}

/// The iproute2 name of a target, if it has one (`/run/netns/NAME`).
fn iproute2_name(target: &NetnsTarget) -> Option<String> {
    match target {
        NetnsTarget::Named(name) => Some(name.clone()),
        NetnsTarget::Path(p) if p.parent() == Some(Path::new("/run/netns")) => {
            p.file_name().map(|n| n.to_string_lossy().into_owned())
        }
        _ => None,
    }
}

/// The client identifier of an endpoint.
pub fn client_id(who: &Who<'_>, given: Option<&str>) -> Result<Vec<u8>> {
    match given {
        Some(text) => identity::given(text).map_err(EngineError::Invalid),
        None => {
            Ok(identity::derived(who.network, &who.netns.path().display().to_string(), who.ifname))
        }
    }
}

/// An attach's hold on a client identifier, taken in the transaction that
/// records its intent: no other endpoint holds the identifier (a second
/// endpoint presenting it would be handed the first one's address), and the
/// intent row names it ([`Claim::intent_details`]) so that an attach running
/// at the same time sees it taken while the exchange runs outside the lock.
pub struct Claim {
    client_id: Vec<u8>,
    /// The address this client held last, asked for again.
    previous: Option<Ipv4Addr>,
}

/// The key of an intent row's details naming the identifier it claims.
const INTENT_CLIENT_ID: &str = "dhcp_client_id";

/// Takes `who`'s client identifier for an attach, in its intent's transaction.
pub fn claim(tx: &impl StoreRead, who: &Who<'_>, req: &DhcpRequest) -> Result<Claim> {
    let client_id = client_id(who, req.client_id.as_deref())?;
    let hex = identity::to_hex(&client_id);
    let last = tx.dhcp_lease_of_client(&client_id, 4)?;
    let holder = match last.as_ref().and_then(|l| l.endpoint_id) {
        Some(id) => tx.endpoint(id)?,
        None => tx.endpoints_in_flight()?.into_iter().find(|ep| {
            ep.details.get(INTENT_CLIENT_ID).and_then(serde_json::Value::as_str) == Some(&hex)
        }),
    };
    if let Some(holder) = holder {
        return Err(EngineError::Invalid(format!(
            "client identifier {hex} is already used by {} in {}; give this endpoint another --client-id",
            holder.ifname, holder.netns
        )));
    }
    let previous = last.as_ref().and_then(held_v4);
    Ok(Claim { client_id, previous })
}

impl Claim {
    /// What the intent row keeps until the endpoint is attached: the
    /// identifier it claims.
    pub fn intent_details(&self) -> serde_json::Value {
        serde_json::json!({ INTENT_CLIENT_ID: identity::to_hex(&self.client_id) })
    }
}

/// Makes the link of `plan` (which has no addresses), brings it up, asks
/// the server, then puts the granted address and routes on it. `extra` are
/// the user's routes besides the default one. Takes no lock: the caller's
/// `record` commits the lease as soon as it is granted (so that an attach
/// killed afterwards leaves a row saying what to release), and the caller
/// records it again, with the resolv.conf written, when it commits the
/// endpoint.
#[allow(clippy::too_many_arguments)]
pub fn realize(
    plan: &EndpointPlan,
    claim: &Claim,
    who: &Who<'_>,
    req: &DhcpRequest,
    extra: &[RouteSpec],
    default_route: bool,
    noarp: bool,
    place: &mut Place,
    faults: Faults,
    undo: &mut UndoLog,
    record: impl FnOnce(&Held) -> Result<()>,
) -> Result<(Realized, Held)> {
    let Claim { client_id, previous } = claim;
    let previous = *previous;
    let link = endpoint::create_link(&plan.link, &plan.parent, place, faults, undo)?;
    endpoint::configure(&link, &[], &[], Policy::CLI, place, faults, undo)?;
    let mac = link.mac.ok_or_else(|| {
        EngineError::Invalid(format!("{} has no MAC address; DHCP needs one", link.name))
    })?;
    let label = format!("{} in {}", link.name, place.target_ns.label());
    let socket = DhcpSocket::open_in(&place.target_ns, &link.name)?;
    let exchange = Exchange { socket: &socket, mac, client_id, previous, label: &label };
    let granted = exchange.acquire(req.timeout)?;
    tracing::debug!(address = %granted.address, server = %granted.server, "DHCP lease");
    let mut held = Held {
        granted: granted.clone(),
        client_id: client_id.clone(),
        ifname: link.name.clone(),
        mac,
        resolv_conf: None,
        network: who.network.to_string(),
        granted_at: unix_now(),
    };
    if let Err(e) = record(&held) {
        drop(socket);
        held.give_back(&place.target_ns);
        return Err(e);
    }

    let macvlan = matches!(plan.link, endpoint::ChildLink::Macvlan(_));
    let routes = grant_routes(&granted, extra, default_route, noarp);
    match apply_grant(&link, &granted, &routes, macvlan, who, place, faults, undo) {
        Ok((routes, written)) => {
            held.resolv_conf = written;
            Ok((Realized { link, routes }, held))
        }
        Err(e) => {
            drop(socket);
            held.give_back(&place.target_ns);
            Err(e)
        }
    }
}

/// The routes of an endpoint holding `granted`: `extra` (the user's), and
/// with `default_route` the default one via the server's first router (for
/// a NOARP child, through the device).
pub(crate) fn grant_routes(
    granted: &Granted,
    extra: &[RouteSpec],
    default_route: bool,
    noarp: bool,
) -> Vec<Route> {
    let planned = AddressPlan {
        address: IpNet::V4(granted.address),
        gateway: granted.routers.first().copied().map(IpAddr::V4),
        gateway_named: !granted.routers.is_empty(),
    };
    plan_routes(&[planned], extra, default_route, noarp)
}

/// Puts `granted` on `link`, which is up without an IPv4 address: the
/// address with the lease's lifetime, `routes`, the announcement and the
/// DNS servers in the namespace's resolv.conf. What attach does once the
/// server answered, and what the agent does again for an endpoint whose
/// lease was lost (`reacquire`): one code for both. Every kernel change is
/// on `undo`; the resolv.conf written is returned with the routes added,
/// and is the caller's to remove should it fail later.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_grant(
    link: &LinkBrief,
    granted: &Granted,
    routes: &[Route],
    macvlan: bool,
    who: &Who<'_>,
    place: &mut Place,
    faults: Faults,
    undo: &mut UndoLog,
) -> Result<(Vec<Route>, Option<resolv::Written>)> {
    let address = IpNet::V4(granted.address);
    endpoint::add_addresses(link, &[address], place, faults, undo)?;
    let routes = endpoint::add_routes(link, routes, place, faults, undo)?;
    // The kernel drops the address when the lease runs out unrenewed.
    place.target.set_address_lifetime(link.index, address, granted.lease_secs)?;
    // The link came up before it had the address, so the kernel's
    // arp_notify announced nothing: setting its own MAC again makes the
    // kernel send the gratuitous ARP (NETDEV_CHANGEADDR), and neighbours
    // that knew this address at another MAC (an endpoint attached again)
    // learn the new one at once. An ipvlan child has its parent's MAC,
    // which neighbours know already.
    if macvlan && let Some(mac) = link.mac {
        place.target.set_mac(link.index, mac)?;
    }
    let mut written = None;
    if let Some(name) = iproute2_name(who.netns) {
        let domain = granted.domain.as_deref();
        let dns: Vec<IpAddr> = granted.dns.iter().copied().map(IpAddr::V4).collect();
        written = resolv::write(&name, who.network, who.ifname, &dns, domain).map_err(|e| {
            EngineError::Invalid(format!("writing /etc/netns/{name}/resolv.conf: {e}"))
        })?;
    }
    Ok((routes, written))
}

/// The row of a lease `granted` to `client_id` at `now`, with its timers.
pub(crate) fn lease_record(
    client_id: Vec<u8>,
    endpoint_id: Option<EndpointId>,
    granted: &Granted,
    details: &LeaseDetails,
    now: i64,
) -> DhcpLeaseRecord {
    DhcpLeaseRecord {
        client_id,
        family: 4,
        endpoint_id,
        address: IpNet::V4(granted.address),
        server: IpAddr::V4(granted.server),
        lease_secs: granted.lease_secs,
        acquired_at: now,
        renew_at: now + i64::from(granted.renew_secs),
        rebind_at: now + i64::from(granted.rebind_secs),
        expires_at: now + i64::from(granted.lease_secs),
        details: serde_json::to_value(details).unwrap_or_default(),
    }
}

impl Held {
    /// The MAC of the link the lease was granted to (an ipvlan child's is
    /// its parent's, known only once the link is made).
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// The resolv.conf this lease wrote, if any (a dual-stack endpoint's
    /// DHCPv6 DNS servers join it: `v6::Held6::write_resolv_conf`).
    pub(crate) fn resolv_conf(&self) -> Option<&resolv::Written> {
        self.resolv_conf.as_ref()
    }

    /// Records the lease for `endpoint` in the caller's transaction.
    pub fn record(&self, tx: &WriteTx<'_>, endpoint: EndpointId) -> Result<()> {
        let g = &self.granted;
        let details = LeaseDetails {
            routers: g.routers.clone(),
            dns: g.dns.clone(),
            domain: g.domain.clone(),
            resolv_conf: self.resolv_conf.clone(),
        };
        tx.record_dhcp_lease(&lease_record(
            self.client_id.clone(),
            Some(endpoint),
            g,
            &details,
            self.granted_at,
        ))?;
        Ok(())
    }

    /// Gives the lease back (an attach that fails after the grant): RELEASE
    /// and the resolv.conf removed; the link is still there, its address
    /// perhaps not yet, so the RELEASE is broadcast.
    pub fn give_back(&self, target_ns: &Netns) {
        let address = self.granted.address.addr();
        let (mac, server) = (self.mac, self.granted.server);
        send_release(target_ns, &self.ifname, mac, &self.client_id, address, server, false);
        if let Some(written) = &self.resolv_conf {
            resolv::remove(written, &self.network, &self.ifname);
        }
    }
}

pub(crate) fn send_release(
    ns: &Netns,
    ifname: &str,
    mac: MacAddr,
    client_id: &[u8],
    address: Ipv4Addr,
    server: Ipv4Addr,
    unicast: bool,
) -> bool {
    let socket = match DhcpSocket::open_in(ns, ifname) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot release {address} to DHCP server {server}: {e}");
            return false;
        }
    };
    let label = format!("{ifname} in {}", ns.label());
    let exchange = Exchange { socket: &socket, mac, client_id, previous: None, label: &label };
    let sent = exchange.release(address, server, RELEASE_WAIT, unicast);
    if !sent {
        tracing::warn!(
            "DHCPRELEASE of {address} may not have reached {server} before {label} went"
        );
    }
    sent
}

/// Detach of a DHCP endpoint, before its link is deleted: RELEASE, the
/// resolv.conf removed, the lease marked released. The detach's transaction
/// records it. From the endpoint's own link while its namespace exists;
/// when the namespace is gone (a container that exited without detach),
/// through the parent in `host` on the endpoint's behalf (DHCPv4: a
/// broadcast with its MAC and client identifier; DHCPv6: from the parent's
/// link-local with its DUID and IAID, `v6::release`), so the server does
/// not keep the address until the lease runs out.
pub fn release(
    tx: &WriteTx<'_>,
    ns: Option<&Netns>,
    host: (&Netns, &str),
    network: &str,
    endpoint: &EndpointRecord,
) -> Result<()> {
    for lease in tx.dhcp_leases_of(endpoint.id)? {
        if lease.family == 6 {
            v6::release(ns.map(|ns| (ns, endpoint.ifname.as_str())), Some(host), &lease);
        } else if let (Some(mac), IpAddr::V4(address), IpAddr::V4(server)) =
            (endpoint.mac, lease.address.addr(), lease.server)
        {
            match ns {
                Some(ns) => {
                    let ifname = endpoint.ifname.as_str();
                    send_release(ns, ifname, mac, &lease.client_id, address, server, true);
                }
                None => {
                    let (host_ns, parent) = host;
                    send_release(host_ns, parent, mac, &lease.client_id, address, server, false);
                }
            }
        }
        forget_resolv_conf(&lease, network, endpoint.ifname.as_str());
    }
    tx.release_dhcp_leases(endpoint.id)?;
    Ok(())
}

/// Removes the resolv.conf an attach that did not finish may have written
/// for `ep` and not yet recorded (the lease is recorded at its grant, the
/// file with the endpoint): the one at its namespace's place, if the
/// marker says nicslice wrote it for this interface and network. Its
/// directory stays (whether nicslice made it was not recorded).
pub(crate) fn forget_unrecorded_resolv_conf(ep: &EndpointRecord, network: &str) {
    if let Some(name) = iproute2_name(&NetnsTarget::Path(ep.netns.clone().into())) {
        let written = resolv::Written { path: resolv::path_of(&name), made_dir: false };
        resolv::remove(&written, network, ep.ifname.as_str());
    }
}

/// Removes the resolv.conf written for `lease`, if it is still nicslice's.
fn forget_resolv_conf(lease: &DhcpLeaseRecord, network: &str, ifname: &str) {
    let details: LeaseDetails = serde_json::from_value(lease.details.clone()).unwrap_or_default();
    if let Some(written) = &details.resolv_conf {
        resolv::remove(written, network, ifname);
    }
}

/// A DHCP endpoint's leases as its view shows them: a dual-stack endpoint
/// has one of each family.
pub struct LeaseViews {
    pub addresses: Vec<IpNet>,
    /// The DHCPv4 lease.
    pub v4: Option<LeaseView>,
    /// The DHCPv6 lease.
    pub v6: Option<LeaseView>,
}

/// The addresses and leases of a DHCP endpoint, for its view.
pub fn view_of(tx: &impl StoreRead, endpoint: EndpointId) -> Result<LeaseViews> {
    let leases = tx.dhcp_leases_of(endpoint)?;
    let addresses = leases.iter().map(|l| l.address).collect();
    let view = |l: &DhcpLeaseRecord| {
        let dns = match l.family {
            6 => v6::dns_of(l),
            _ => {
                let details: LeaseDetails =
                    serde_json::from_value(l.details.clone()).unwrap_or_default();
                details.dns.into_iter().map(IpAddr::V4).collect()
            }
        };
        LeaseView {
            server: l.server,
            client_id: identity::to_hex(&l.client_id),
            lease_secs: l.lease_secs,
            acquired_at: l.acquired_at,
            renew_at: l.renew_at,
            rebind_at: l.rebind_at,
            expires_at: l.expires_at,
            dns,
        }
    };
    let of = |family: u8| leases.iter().find(|l| l.family == family).map(view);
    Ok(LeaseViews { addresses, v4: of(4), v6: of(6) })
}

/// The IPv4 address a lease record holds: what a new exchange under its
/// identifier asks for again.
fn held_v4(lease: &DhcpLeaseRecord) -> Option<Ipv4Addr> {
    match lease.address.addr() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }
}

/// The IPv6 address a lease record holds (see [`held_v4`]).
fn held_v6(lease: &DhcpLeaseRecord) -> Option<std::net::Ipv6Addr> {
    match lease.address.addr() {
        IpAddr::V6(ip) => Some(ip),
        IpAddr::V4(_) => None,
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
