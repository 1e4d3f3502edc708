//! `doctor --wire`: the checks that ask the wire rather than the kernel, run
//! only when asked (each costs up to [`ANSWER_WAIT`] of waiting, and sends
//! frames to the segment):
//!
//! - an endpoint's address that another MAC answers for, every endpoint at
//!   once. IPv4: RFC 5227 probes (sender 0.0.0.0, so no neighbour's cache
//!   changes) from the endpoint's own link (ipvlan: from the parent, whose
//!   MAC its children share). IPv6 (macvlan only): a neighbour solicitation
//!   for the address from the link's link-local address, kept from the
//!   endpoint's own stack; an advertisement with another MAC is a conflict;
//! - frames from new MACs dropped on the way (a hypervisor's "forged
//!   transmits" policy, a cloud network, switch port security): the parent
//!   asks the gateway, then a scratch macvlan with a MAC of the kernel's
//!   choosing asks the same; answered only from the parent's MAC, macvlan
//!   cannot work there. The scratch link lives in a namespace of its own
//!   that nothing but this process holds, so it is gone when the check
//!   ends, however it ends (a killed process included);
//! - a physical parent's unicast MAC filter overflowed into promiscuous
//!   mode (the kernel's promiscuity count is above zero while no one set
//!   the flag): cheap, read from the link, no frame sent.
//!
//! An ipvlan endpoint's IPv6 addresses are not asked for: its link-local
//! address is the parent's, so answers cannot be told apart.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use nicslice_kernel::address_claim::AddressProbe;
use nicslice_kernel::{
    Link, MacvlanLinkRequest, NeighbourProber, Netns, NetnsTarget, RouteSocket, netns, sysctl,
};
use nicslice_model::{IfName, LinkMode, MacAddr, MacvlanMode};
use nicslice_store::{NetworkRecord, StoreRead};

use super::{Finding, Repair, finding};
use crate::Engine;
use crate::error::Result;

/// How long an address may go unanswered before no one is taken to have it.
const ANSWER_WAIT: Duration = Duration::from_millis(500);
/// Requests sent within [`ANSWER_WAIT`] (one lost frame is no verdict).
const REQUESTS: u32 = 3;

/// One address to ask for, and from where.
struct Ask {
    network: String,
    subject: String,
    address: IpAddr,
    asker: Asker,
}

enum Asker {
    Arp(AddressProbe),
    Ndp(NeighbourProber),
}

impl Ask {
    /// The MAC of another host that answers for the address.
    fn claimant(&self) -> nicslice_kernel::Result<Option<MacAddr>> {
        match (&self.asker, self.address) {
            (Asker::Arp(p), IpAddr::V4(ip)) => p.probe(ip, REQUESTS, ANSWER_WAIT),
            (Asker::Ndp(p), IpAddr::V6(ip)) => p.advertiser_of(ip, REQUESTS as u16, ANSWER_WAIT),
            _ => Ok(None),
        }
    }
}

impl Engine {
    /// The wire's findings, for one network or all (none is repairable).
    pub fn doctor_wire(&mut self, network: Option<&str>) -> Result<Vec<Finding>> {
        let networks = match network {
            Some(name) => vec![self.network_record(name)?],
            None => self.store.read()?.list_networks()?,
        };
        let mut findings = Vec::new();
        for record in &networks {
            // Before the scratch macvlan of the forged-transmits probe,
            // which raises the count on a parent without a filter.
            self.filter_overflow(record, &mut findings)?;
        }
        let asks = self.conflict_asks(&networks, network)?;
        findings.extend(answered_by_others(asks));
        for record in &networks {
            findings.extend(self.forged_transmits(record)?);
        }
        Ok(findings)
    }

    fn filter_overflow(&mut self, record: &NetworkRecord, out: &mut Vec<Finding>) -> Result<()> {
        let name = record.spec.parent.as_str();
        let Some(parent) = RouteSocket::open_in(&self.host)?.link_by_name(name)? else {
            return Ok(()); // the kernel checks report a missing parent
        };
        if let Some(count) = overflowed(&parent) {
            out.push(finding(
                record.spec.name.as_str(),
                format!("parent {name}"),
                format!(
                    "{name} is promiscuous (count {count}) though no one set it: its unicast MAC filter cannot hold its children's MACs (or a sniffer holds it open), so it takes every frame of the segment"
                ),
                "fewer children on it, a NIC with a larger filter, or ipvlan (one MAC for all)"
                    .into(),
                Repair::None,
            ));
        }
        Ok(())
    }

    /// A probe for every address of every living endpoint, opened where
    /// its answers arrive.
    fn conflict_asks(
        &mut self,
        networks: &[NetworkRecord],
        network: Option<&str>,
    ) -> Result<Vec<Ask>> {
        let drivers: HashMap<&str, _> =
            networks.iter().map(|r| (r.spec.name.as_str(), &r.spec)).collect();
        let mut host = RouteSocket::open_in(&self.host)?;
        let mut asks = Vec::new();
        for ep in self.endpoints(network)? {
            let Some(spec) = drivers.get(ep.network.as_str()) else { continue };
            if ep.state != "attached" || ep.addresses.is_empty() {
                continue; // the kernel checks report stale and half-made ones
            }
            let Ok(ns) = NetnsTarget::Path(ep.netns.clone().into()).open() else { continue };
            let Some(own) = RouteSocket::open_in(&ns)?.link_by_name(&ep.ifname)? else { continue };
            let subject = format!("endpoint {} in {}", ep.ifname, ep.netns);
            let ipvlan = spec.driver.is_ipvlan();
            let v6: Vec<Ipv6Addr> = ep
                .addresses
                .iter()
                .filter_map(|a| match a.addr() {
                    IpAddr::V6(ip) if !ipvlan => Some(ip),
                    _ => None,
                })
                .collect();
            // One socket per address: answers to one are no answers to another.
            for ip in v6 {
                let Some(prober) = ndp_prober(&ns, own.index)? else { break };
                asks.push(ask(&ep.network, &subject, ip.into(), Asker::Ndp(prober)));
            }
            // ipvlan children share the parent's MAC and never see a reply
            // addressed to it: ask from the parent.
            let (ask_ns, link) = if ipvlan {
                (self.host.clone_handle()?, host.link_by_name(spec.parent.as_str())?)
            } else {
                (ns, Some(own))
            };
            let Some((index, Some(mac))) = link.map(|l| (l.index, l.mac)) else { continue };
            for a in &ep.addresses {
                if a.addr().is_ipv4() {
                    let probe = AddressProbe::open_in(&ask_ns, index, mac)?;
                    asks.push(ask(&ep.network, &subject, a.addr(), Asker::Arp(probe)));
                }
            }
        }
        Ok(asks)
    }

    /// Whether the gateway answers a new MAC on the parent as it answers
    /// the parent's own: a finding when only the parent is answered.
    fn forged_transmits(&mut self, record: &NetworkRecord) -> Result<Option<Finding>> {
        let spec = &record.spec;
        let gateway = spec.subnets.iter().find_map(|s| match s.gateway {
            Some(IpAddr::V4(gw)) if !s.gateway_default => Some(gw),
            _ => None,
        });
        let Some(gateway) = gateway else { return Ok(None) };
        // ipvlan children send with the parent's MAC; a passthru child owns
        // the parent, which takes no second child, not even for a moment.
        if spec.driver.is_ipvlan() || spec.mode == LinkMode::Macvlan(MacvlanMode::Passthru) {
            return Ok(None);
        }
        let name = spec.parent.as_str();
        let mut host = RouteSocket::open_in(&self.host)?;
        let Some(parent) = host.link_by_name(name)? else { return Ok(None) };
        let Some(mac) = parent.mac.filter(|_| parent.up && parent.lower_up) else {
            return Ok(None);
        };
        let own = AddressProbe::open_in(&self.host, parent.index, mac)?.probe(
            gateway,
            REQUESTS,
            ANSWER_WAIT,
        )?;
        if own.is_none() {
            tracing::info!(%gateway, parent = name, "the gateway does not answer the parent: no verdict on new MACs");
            return Ok(None);
        }
        match new_mac_answered(&mut host, parent.index, gateway) {
            Ok(true) => return Ok(None),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(parent = name, "no verdict on frames from new MACs: {e}");
                return Ok(None);
            }
        }
        Ok(Some(finding(
            spec.name.as_str(),
            format!("parent {name}"),
            format!(
                "the gateway {gateway} answers {name}'s own MAC but not a new MAC on it: frames from new MACs are dropped on the way (hypervisor forged transmits, a cloud network, or switch port security), so macvlan children cannot reach the wire"
            ),
            "use ipvlan (its children send with the parent's MAC), or allow new MACs on the port (vSphere: forged transmits and MAC address changes; a switch: its port-security MAC limit)".into(),
            Repair::None,
        )))
    }
}

/// The probes' verdicts, every address asked at once: one finding per
/// address another MAC claims. A probe that cannot be sent (the link went
/// down under it) is no verdict.
fn answered_by_others(asks: Vec<Ask>) -> Vec<Finding> {
    let verdicts: Vec<Option<MacAddr>> = std::thread::scope(|scope| {
        let running: Vec<_> = asks.iter().map(|a| scope.spawn(|| a.claimant())).collect();
        running
            .into_iter()
            .zip(&asks)
            .map(|(t, a)| match t.join() {
                Ok(Ok(by)) => by,
                Ok(Err(e)) => {
                    tracing::warn!(address = %a.address, "not asked on the wire: {e}");
                    None
                }
                Err(_) => None,
            })
            .collect()
    });
    asks.iter()
        .zip(verdicts)
        .filter_map(|(a, by)| {
            let by = by?;
            Some(finding(
                &a.network,
                a.subject.clone(),
                format!(
                    "its address {} is answered on the wire by another MAC, {by}: two hosts use it",
                    a.address
                ),
                format!(
                    "take {} off the host with MAC {by}, or detach this endpoint and attach it with another address",
                    a.address
                ),
                Repair::None,
            ))
        })
        .collect()
}

fn ask(network: &str, subject: &str, address: IpAddr, asker: Asker) -> Ask {
    Ask { network: network.to_string(), subject: subject.to_string(), address, asker }
}

/// A solicitation sender on link `index` of `ns`, from its link-local
/// address (a global one would be answered to itself by the other holder);
/// `None` when the link has none.
fn ndp_prober(ns: &Netns, index: u32) -> Result<Option<NeighbourProber>> {
    let addresses = RouteSocket::open_in(ns)?.addresses(Some(index))?;
    let Some(link_local) = addresses.iter().find_map(|(_, a)| match a.addr() {
        IpAddr::V6(ip) if ip.is_unicast_link_local() => Some(ip),
        _ => None,
    }) else {
        return Ok(None);
    };
    // A link-local address still tentative (a link just up) cannot be sent
    // from yet: that endpoint is not asked this time.
    let opened = NeighbourProber::open_in(ns, link_local.into())
        .and_then(|p| p.map(|p| p.only_answers().map(|()| p)).transpose());
    match opened {
        Ok(prober) => Ok(prober),
        Err(e) => {
            tracing::warn!(%link_local, "IPv6 addresses not asked on the wire: {e}");
            Ok(None)
        }
    }
}

/// The promiscuity count of a physical parent that is promiscuous though
/// no one set the flag and it is no port of a bridge or bond: its unicast
/// filter overflowed. Virtual devices (veth, bridge...) have no filter to
/// overflow, and promiscuity costs them nothing.
fn overflowed(parent: &Link) -> Option<u32> {
    let physical = parent.kind.is_none() && parent.ethernet && !parent.loopback;
    (physical && parent.promiscuity > 0 && !parent.promisc_flag && parent.master_index.is_none())
        .then_some(parent.promiscuity)
}

/// Asks `gateway` from a scratch macvlan on `parent_index` (a MAC the
/// kernel picks), inside a namespace only this call holds: the link goes
/// with it when the call returns, whether it succeeds or fails.
fn new_mac_answered(host: &mut RouteSocket, parent_index: u32, gateway: Ipv4Addr) -> Result<bool> {
    let scratch = netns::create_anonymous()?;
    // No IPv6 on the scratch link: it would announce the new MAC (DAD,
    // router solicitation) to the segment for nothing.
    scratch.run(|| sysctl::write("net/ipv6/conf/default/disable_ipv6", "1"))??;
    // Kernels before 6.2 check the name beside the parent too.
    let name = IfName::new(&format!("nswire{}", std::process::id()))?;
    let req = MacvlanLinkRequest::new(
        nicslice_model::Driver::Macvlan,
        name.clone(),
        parent_index,
        MacvlanMode::Bridge,
    );
    host.create_macvlan(&req, Some(&scratch))?;
    let mut inside = RouteSocket::open_in(&scratch)?;
    let link = inside.require_link(name.as_str(), "the scratch namespace")?;
    inside.set_up(link.index, true)?;
    let Some(mac) = link.mac else { return Ok(false) };
    let answered = AddressProbe::open_in(&scratch, link.index, mac)?
        .probe(gateway, REQUESTS, ANSWER_WAIT)?
        .is_some();
    // Deleted now rather than with the namespace, whose end the kernel
    // defers to a worker.
    inside.delete_link(link.index)?;
    Ok(answered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(kind: Option<&str>, promiscuity: u32, flag: bool, master: Option<u32>) -> Link {
        Link {
            index: 2,
            name: "eth0".into(),
            kind: kind.map(String::from),
            mac: None,
            mtu: 1500,
            up: true,
            lower_up: true,
            oper_state: "up".into(),
            promiscuity,
            promisc_flag: flag,
            ethernet: true,
            loopback: false,
            parent_index: None,
            link_netnsid: None,
            master_index: master,
            macvlan: None,
            vlan_id: None,
        }
    }

    #[test]
    fn only_a_physical_nic_promiscuous_by_the_kernel_alone_has_overflowed() {
        assert_eq!(overflowed(&nic(None, 1, false, None)), Some(1));
        assert_eq!(overflowed(&nic(None, 0, false, None)), None, "not promiscuous");
        assert_eq!(overflowed(&nic(None, 2, true, None)), None, "a user set it");
        assert_eq!(overflowed(&nic(None, 1, false, Some(5))), None, "a bridge port");
        assert_eq!(overflowed(&nic(Some("veth"), 1, false, None)), None, "no filter");
    }
}
