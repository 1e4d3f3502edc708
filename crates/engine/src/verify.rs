//! `endpoint check`: each recorded endpoint compared with the kernel through
//! the same `endpoint::drifts` a CNI CHECK runs: its namespace, link, kind,
//! mode, MAC, broadcast cutoff, MTU, addresses (none missing, none added by
//! hand) and routes, on its parent. It
//! reads only; repairing is for the caller to decide.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use nicslice_kernel::NetnsTarget;
use serde::Serialize;

use crate::endpoint::{self, Drift, Expected, ExpectedMtu, Place};
use crate::error::{EngineError, Result};
use crate::{EndpointView, Engine};

/// One endpoint and what differs, if anything.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointHealth {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// `None` when the kernel holds the endpoint as recorded; else the
    /// first difference, or why it could not be compared.
    pub problem: Option<String>,
    /// Every difference found (none when it could not be compared).
    #[serde(skip)]
    pub drifts: Vec<Drift>,
}

impl Engine {
    /// Checks the endpoints of one network, or of all.
    pub fn check_endpoints(&mut self, network: Option<&str>) -> Result<Vec<EndpointHealth>> {
        let mut out = Vec::new();
        for view in self.endpoints(network)? {
            let (problem, drifts) = match self.check_one(&view) {
                Ok(drifts) => (drifts.first().map(|d| d.message.clone()), drifts),
                Err(EngineError::Invalid(p) | EngineError::NotFound(p)) => (Some(p), Vec::new()),
                Err(e) => return Err(e),
            };
            out.push(EndpointHealth { endpoint: view, problem, drifts });
        }
        Ok(out)
    }

    fn check_one(&mut self, view: &EndpointView) -> Result<Vec<Drift>> {
        let spec = self.network_record(&view.network)?.spec;
        let gone = || {
            EngineError::NotFound(format!(
                "its namespace {} is gone; `nicslice detach {} --netns {}` releases its addresses",
                view.netns, view.network, view.netns
            ))
        };
        // Stale: the recorded namespace (inode and cookie) is gone, even if
        // another now answers to its path.
        if view.state == "stale" {
            return Err(gone());
        }
        let ns = NetnsTarget::Path(PathBuf::from(&view.netns)).open().map_err(|_| gone())?;
        // Its address and routes went with the lease, on purpose.
        if !view.dhcp_lost.is_empty() {
            let what = match view.dhcp_retry.is_empty() {
                false => {
                    "nicslice dhcp-agent asks for a new lease (`endpoint ls` says when)".into()
                }
                true => format!(
                    "`nicslice detach {} --netns {}` and attach again for a new lease",
                    view.network, view.netns
                ),
            };
            return Err(EngineError::Invalid(format!("{}; {what}", view.dhcp_lost.join("; "))));
        }
        let mut place = Place::between(&self.host, ns)?;
        let addresses: Vec<IpAddr> = view.addresses.iter().map(IpNet::addr).collect();
        let mut routes: Vec<(IpNet, Option<IpAddr>)> = view
            .gateways
            .iter()
            .map(|gw| {
                let any = if gw.is_ipv6() {
                    IpNet::V6(Default::default())
                } else {
                    IpNet::V4(Default::default())
                };
                (any, Some(*gw))
            })
            .collect();
        routes.extend(view.routes.iter().map(|r| (r.destination, r.via)));
        let expected = Expected {
            parent: spec.parent.as_str(),
            ifname: &view.ifname,
            kind: spec.driver.kind(),
            mode: spec.mode,
            mac: view.mac,
            bclim: spec.bclim,
            mtu: spec.mtu.map_or(ExpectedMtu::Parents, ExpectedMtu::Of),
            addresses: &addresses,
            routes: &routes,
            only_these_addresses: true,
        };
        endpoint::drifts(&mut place, &expected)
    }
}
