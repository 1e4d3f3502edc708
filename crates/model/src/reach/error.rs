//! Errors of the reachability model: a topology that cannot be built as described,
//! or a question about an endpoint it does not have. Each message names the thing
//! and says what to change.

use std::net::IpAddr;

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TopologyError {
    #[error("{what} has an empty name; give every switch, host, child, router and remote a name")]
    EmptyName { what: &'static str },
    #[error(
        "two endpoints are named {0:?}; switch, hosts, children, routers and remotes share one name space"
    )]
    DuplicateName(String),
    #[error("{0:?} is not an endpoint of this topology; known endpoints: {1}")]
    UnknownEndpoint(String, String),
    #[error("switch port {0:?} is declared twice in [switch.ports]")]
    DuplicatePort(String),
    #[error("{who} is plugged into switch port {port:?}, which is not in [switch.ports]")]
    UnknownPort { who: String, port: String },
    #[error(
        "switch port {port:?} is used by both {first} and {second}; plug one thing into each port"
    )]
    PortShared { port: String, first: String, second: String },
    #[error("remote {remote}: {problem}")]
    RemoteRouter { remote: String, problem: String },
    #[error("host {host}: invalid parent name {parent:?}: {reason}")]
    ParentName { host: String, parent: String, reason: String },
    #[error("child {child}: mode {mode} is not a {kind} mode; expected one of {expected}")]
    ModeKind { child: String, mode: &'static str, kind: &'static str, expected: &'static str },
    #[error("child {child}: {what} only applies to {applies}")]
    Misplaced { child: String, what: &'static str, applies: &'static str },
    #[error(
        "host {host}: passthru child {child} must be the only child of {parent} (the kernel refuses any other child, shim included, with EINVAL)"
    )]
    PassthruNotAlone { host: String, child: String, parent: String },
    #[error("host {host}: macvlan and ipvlan children cannot share parent {parent} (EBUSY)")]
    MixedDrivers { host: String, parent: String },
    #[error(
        "host {host}: ipvlan children {a} and {b} want different modes or flags on {parent}; the mode belongs to the parent, so give one of them another parent"
    )]
    IpvlanModeMismatch { host: String, parent: String, a: String, b: String },
    #[error("{who}: the shim needs at least one address")]
    ShimWithoutAddress { who: String },
    #[error("address {addr} is used by both {first} and {second}; every address must be unique")]
    DuplicateAddress { addr: IpAddr, first: String, second: String },
    #[error(
        "MAC {mac} is used by both {first} and {second} (the kernel refuses it with EADDRINUSE)"
    )]
    DuplicateMac { mac: String, first: String, second: String },
    #[error(
        "{who}: {what} {addr} is not inside any subnet on link ({nets}); the kernel refuses it with ENETUNREACH"
    )]
    OffLink { who: String, what: &'static str, addr: IpAddr, nets: String },
    #[error("{who}: route to {to} goes via {via}, an address of the other IP family")]
    RouteFamily { who: String, to: String, via: IpAddr },
    #[error("{who}: set either gateway or default_dev, not both")]
    TwoDefaults { who: String },
    #[error("{who}: {problem}")]
    Invalid { who: String, problem: String },
    #[error(
        "child {child}: source list entry {entry:?} is neither a MAC address nor an endpoint name"
    )]
    UnknownSourceEntry { child: String, entry: String },
}
