//! What the engine reports back: networks and endpoints as users read them,
//! serde for `--json`.

use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_model::{MacAddr, NetworkSpec, RouteRequest};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct SubnetView {
    pub subnet: IpNet,
    pub gateway: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<IpNet>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkView {
    pub name: String,
    pub driver: String,
    pub parent: String,
    pub mode: String,
    pub flags: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    pub promisc: bool,
    pub subnets: Vec<SubnetView>,
    /// "pool" (the subnets above), "dhcp", "dhcp6" or "dhcp,dhcp6".
    pub ipam: String,
    pub endpoints: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointView {
    pub network: String,
    /// The namespace as the user named it.
    pub netns: String,
    pub ifname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    pub addresses: Vec<IpNet>,
    /// Default routes' next hops.
    pub gateways: Vec<IpAddr>,
    /// macvtap: where the tap queue is opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tap_device: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_macs: Vec<MacAddr>,
    /// Routes besides the default one, as asked for with `--route`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteRequest>,
    /// "attached"; "attaching" or "detaching" while a command works on it;
    /// "stale" when its namespace is gone (its addresses are still held:
    /// `detach` releases them, and so does an attach that needs the room).
    pub state: &'static str,
    /// The DHCPv4 lease of an endpoint on a `--ipam dhcp` network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<crate::dhcp::LeaseView>,
    /// The DHCPv6 lease of an endpoint on a `--ipam dhcp6` network (a
    /// dual-stack endpoint has both).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp6: Option<crate::dhcp::LeaseView>,
    /// DHCP leases the agent lost (expired, or refused with no new one to
    /// be had), and why: their addresses are off the link.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dhcp_lost: Vec<String>,
    /// Those leases the agent asks for again: when next, and the wait
    /// after that try should it find no server either.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dhcp_retry: Vec<crate::dhcp::DhcpRetry>,
}

/// The parent as the kernel reports it now.
#[derive(Debug, Clone, Serialize)]
pub struct ParentState {
    pub exists: bool,
    pub up: bool,
    pub lower_up: bool,
    pub promiscuity: u32,
    pub mtu: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkDetail {
    #[serde(flatten)]
    pub network: NetworkView,
    pub spec: NetworkSpec,
    pub parent_state: ParentState,
    pub endpoint_list: Vec<EndpointView>,
    /// Addresses someone outside nicslice answered for (`--probe-conflicts`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<nicslice_store::Quarantined>,
    /// A fleet network's pool as etcd holds it, or why etcd could not say.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "fleet_or_error")]
    pub fleet: Option<std::result::Result<nicslice_store::fleet::FleetView, String>>,
}

/// `{"fleet": {...}}`, or `{"fleet": {"error": "..."}}` when etcd did not answer.
fn fleet_or_error<S: serde::Serializer>(
    fleet: &Option<std::result::Result<nicslice_store::fleet::FleetView, String>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match fleet {
        Some(Ok(view)) => view.serialize(s),
        Some(Err(e)) => serde_json::json!({ "error": e }).serialize(s),
        None => s.serialize_none(),
    }
}
