//! The repairs `doctor --fix`, `restore` and `apply` make of a finding:
//! each puts back what nicslice made, through the engine's own commands
//! (attach, detach, shim add) where one does the job.

use nicslice_kernel::{NetnsTarget, Route, RouteSocket};
use nicslice_model::IfName;
use nicslice_store::StoreRead;

use super::Repair;
use crate::detach::DetachRequest;
use crate::endpoint::Place;
use crate::error::Result;
use crate::{EndpointView, Engine, ShimRequest};

/// A detach of an endpoint as it was recorded (by its namespace's path).
fn recorded(ep: &EndpointView) -> Result<DetachRequest> {
    Ok(DetachRequest {
        network: ep.network.clone(),
        netns: NetnsTarget::Path(ep.netns.clone().into()),
        ifname: IfName::new(&ep.ifname)?,
    })
}

/// The routes an endpoint was given, as the kernel takes them.
fn recorded_routes(ep: &EndpointView) -> Vec<Route> {
    let defaults = ep.gateways.iter().map(|gw| Route::default_via(*gw, 0));
    let extra = ep.routes.iter().map(|r| Route {
        destination: r.destination,
        gateway: r.via,
        oif: None,
        metric: None,
    });
    defaults.chain(extra).collect()
}

impl Engine {
    pub(super) fn repair(&mut self, repair: &Repair) -> Result<()> {
        match repair {
            Repair::None => Ok(()),
            Repair::RecreateParent(name) => {
                let tx = self.store.write()?;
                let owned = tx.owned_link(name)?;
                drop(tx);
                let Some(owned) = owned else { return Ok(()) };
                let mut host = RouteSocket::open_in(&self.host)?;
                crate::parent::recreate(&mut host, &owned)?;
                // A new link starts without promiscuous mode: put back what
                // a network on it asked for (after a reboot, restore's case).
                let networks = self.store.read()?.list_networks()?;
                let on_it: Vec<_> =
                    networks.iter().filter(|n| n.spec.parent.as_str() == name).collect();
                let link = host.require_link(name, self.host.label())?;
                if on_it.iter().any(|n| n.spec.promisc) {
                    host.set_promisc(link.index, true)?;
                }
                // The networks on it know it by its new index.
                let tx = self.store.write()?;
                for n in on_it {
                    tx.set_parent_link(n.id, link.index, link.mac)?;
                }
                Ok(tx.commit()?)
            }
            Repair::AdoptParent { network, index, mac } => {
                let tx = self.store.write()?;
                tx.set_parent_link(*network, *index, *mac)?;
                Ok(tx.commit()?)
            }
            Repair::SetPromisc(name) => {
                let mut host = RouteSocket::open_in(&self.host)?;
                let link = host.require_link(name, self.host.label())?;
                Ok(host.set_promisc(link.index, true)?)
            }
            Repair::RecreateShim { network, name, ips, route_range } => {
                // The record goes (its link, if any is ours, with it), then
                // the shim is made as `shim add` makes it.
                let _ = self.remove_shim(network);
                self.add_shim(ShimRequest {
                    network: network.clone(),
                    name: Some(IfName::new(name)?),
                    ips: ips.clone(),
                    route_range: *route_range,
                })
                .map(|_| ())
            }
            Repair::Release(ep) => self.detach(recorded(ep)?).map(|_| ()),
            Repair::Reattach(ep) => {
                self.detach(recorded(ep)?)?;
                self.attach(crate::converge::reattach(ep)?).map(|_| ())
            }
            Repair::PutBack(ep) => {
                let ns = NetnsTarget::Path(ep.netns.clone().into()).open()?;
                let mut place = Place::between(&self.host, ns)?;
                let routes = recorded_routes(ep);
                crate::endpoint::put_back(&mut place, &ep.ifname, &ep.addresses, &routes)
                    .map(|_| ())
            }
        }
    }
}
