//! The records the store hands out and takes in, all serde so the CLI can
//! print them with `--json`. Plain data: no database access here.

use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_model::{IfName, MacAddr, ModelError, NetworkName, NetworkSpec, ValidNetwork};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NetworkId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EndpointId(pub i64);

/// The identity of a network namespace: device and inode of its nsfs file.
/// Two paths naming one namespace have the same `NetnsId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

/// A stored network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkRecord {
    pub id: NetworkId,
    pub spec: NetworkSpec,
    /// The parent's promiscuous state before nicslice changed it, if it did.
    pub promisc_prev: Option<bool>,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// The parent's interface index when the network was made (or when
    /// `doctor` last recorded it); `None` when not known.
    pub parent_index: Option<u32>,
    /// The parent's MAC then: what follows it through a rename.
    pub parent_mac: Option<MacAddr>,
}

impl NetworkRecord {
    pub fn name(&self) -> &NetworkName {
        &self.spec.name
    }

    /// The stored spec, checked again (it was valid when stored).
    pub fn validate(&self) -> Result<ValidNetwork, ModelError> {
        self.spec.clone().validate()
    }
}

/// Where an endpoint is in its life. A row is written before the kernel is
/// touched; `Attaching` and `Detaching` rows name the process doing the work,
/// and one found with that process gone is finished or undone by whoever
/// finds it (the kernel work of a killed command).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointState {
    Attached,
    /// Leases taken, link maybe made: undone if its process is gone.
    Attaching,
    /// Link maybe deleted: finished (deleted, leases released) if its process is gone.
    Detaching,
}

impl EndpointState {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Attached => "attached",
            EndpointState::Attaching => "attaching",
            EndpointState::Detaching => "detaching",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<EndpointState> {
        [EndpointState::Attached, EndpointState::Attaching, EndpointState::Detaching]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

/// The process working on an endpoint: its pid and start time (clock ticks
/// after boot), which no later process shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    pub start: u64,
}

/// An endpoint to record: a child interface placed in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEndpoint {
    /// The namespace as the user named it (a path), for display.
    pub netns: String,
    pub netns_id: NetnsId,
    /// The kernel's cookie of the namespace (`SO_NETNS_COOKIE`), never reused
    /// while the kernel runs; the inode of `netns_id` is.
    pub netns_cookie: Option<u64>,
    pub ifname: IfName,
    pub mac: Option<MacAddr>,
    /// Driver-specific facts (tap device, source MACs, ...); `null` if none.
    pub details: serde_json::Value,
    pub state: EndpointState,
    /// The process attaching or detaching it; `None` once attached.
    pub owner: Option<Owner>,
}

/// A stored endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointRecord {
    pub id: EndpointId,
    pub network_id: NetworkId,
    pub netns: String,
    pub netns_id: NetnsId,
    /// `None` for endpoints recorded before nicslice kept it.
    pub netns_cookie: Option<u64>,
    pub ifname: IfName,
    pub mac: Option<MacAddr>,
    pub details: serde_json::Value,
    pub created_at: i64,
    pub state: EndpointState,
    pub owner: Option<Owner>,
}

/// A leased address with what an endpoint needs to configure it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseRecord {
    pub network_id: NetworkId,
    pub subnet_index: usize,
    pub ip: IpAddr,
    pub subnet: IpNet,
    pub gateway: IpAddr,
    pub endpoint_id: Option<EndpointId>,
}

impl LeaseRecord {
    /// The address with the subnet's prefix length, as `ip addr add` takes it.
    pub fn address(&self) -> IpNet {
        // The subnet's prefix length is valid for its own family.
        IpNet::new(self.ip, self.subnet.prefix_len()).unwrap_or(self.subnet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_address_carries_the_prefix() {
        let lease = LeaseRecord {
            network_id: NetworkId(1),
            subnet_index: 0,
            ip: "10.0.0.7".parse().unwrap(),
            subnet: "10.0.0.0/24".parse().unwrap(),
            gateway: "10.0.0.1".parse().unwrap(),
            endpoint_id: None,
        };
        assert_eq!(lease.address().to_string(), "10.0.0.7/24");
        let json = serde_json::to_value(&lease).unwrap();
        assert_eq!(json["ip"], "10.0.0.7");
        assert_eq!(json["network_id"], 1);
    }
}
