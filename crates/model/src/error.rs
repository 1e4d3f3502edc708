//! The one error type of the model layer: every message says what is wrong and,
//! where there is one, what to do about it.

use std::net::IpAddr;

use ipnet::IpNet;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidIfName { name: String, reason: &'static str },
    #[error("invalid MAC address {0:?}: expected six hex bytes like 02:42:c0:a8:00:0c")]
    InvalidMac(String),
    #[error("MAC address {0} is not usable for an interface: {1}")]
    UnusableMac(String, &'static str),
    #[error("MAC address {0} cannot be listed as a source: {1}")]
    UnlistableSourceMac(String, &'static str),
    #[error("unknown {what} {value:?}; expected one of: {expected}")]
    UnknownValue { what: &'static str, value: String, expected: &'static str },
    #[error("{0}")]
    Invalid(String),

    #[error("invalid network name {name:?}: {reason}")]
    InvalidNetworkName { name: String, reason: &'static str },
    /// A network spec that breaks one of its own rules; `reason` says which and what to do.
    #[error("network {network}: {reason}")]
    InvalidNetwork { network: String, reason: String },
    /// A new network that cannot share its parent with an existing one.
    #[error("network {network} cannot use parent {parent}: {reason}")]
    ParentConflict { network: String, parent: String, reason: String },
    #[error(
        "parent {parent} is used by passthru network {network}, which already has an endpoint; \
         a passthru parent holds exactly one child, remove it first"
    )]
    PassthruParentBusy { parent: String, network: String },
    #[error(
        "MTU {requested} is above the parent {parent}'s MTU {parent_mtu}; \
         macvlan children cannot exceed their parent"
    )]
    MtuAboveParent { requested: u32, parent: String, parent_mtu: u32 },
    #[error(
        "address pool {range} of network {network} is exhausted ({in_use} addresses in use); \
         widen --ip-range or remove endpoints"
    )]
    PoolExhausted { network: String, range: IpNet, in_use: u128 },
    #[error("{ip} is already in use in network {network}")]
    AddressInUse { ip: IpAddr, network: String },
    #[error(
        "{ip} is the {what} of network {network} and cannot be given to an endpoint; choose another address"
    )]
    AddressReserved { ip: IpAddr, network: String, what: String },
    #[error("{ip} is outside subnet {subnet} of network {network}; choose an address inside it")]
    AddressOutsideSubnet { ip: IpAddr, subnet: IpNet, network: String },
}
