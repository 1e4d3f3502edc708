//! ADD with `"probe"` (issue 14): the engine's claim-then-configure
//! (`nicslice_engine::probe`) in place of a plain configure. An answered
//! address is replaced through nicslice-ipam's lease database, or refused
//! when the addresses come from another IPAM plugin, nicslice-ipam's fleet
//! pool or `prevResult`.

use ipnet::IpNet;
use nicslice_engine::Faults;
use nicslice_engine::endpoint::{
    ChildLink, EndpointPlan, LinkBrief, ParentRef, Place, Policy, Route,
};
use nicslice_engine::probe::lease_book::{LeaseBookClaim, RefuseAnswered};
use nicslice_engine::probe::{self, Probing, Replace};
use nicslice_engine::undo::UndoLog;
use nicslice_kernel::Netns;
use nicslice_model::ProbeSpec;
use nicslice_store::cni_ipam::CniOwner;

use crate::conf::NetConf;
use crate::env::CallEnv;
use crate::error::Result;
use crate::ipam::{self, IpamConf};

/// The link made for this ADD and what it is to hold.
pub struct NewLink<'a> {
    pub link: &'a LinkBrief,
    pub request: &'a ChildLink,
    pub parent: &'a ParentRef,
    /// Where the parent is: this process's namespace, or the container's
    /// (`linkInContainer`).
    pub parent_in_target: bool,
}

/// Claims `addresses` on the wire, then configures the link with them and
/// `routes`; an answered address is replaced in `addresses`.
#[allow(clippy::too_many_arguments)]
pub fn configure_claiming(
    spec: ProbeSpec,
    new: &NewLink<'_>,
    addresses: &mut Vec<IpNet>,
    routes: &[Route],
    net: &NetConf,
    env: &CallEnv,
    place: &mut Place,
    faults: Faults,
    undo: &mut UndoLog,
) -> Result<Vec<Route>> {
    // ipvlan probes leave from the parent, in its namespace.
    let parent_ns =
        if new.parent_in_target { super::open_netns(&env.netns)? } else { Netns::current()? };
    let probing = Probing { spec, parent_ns: &parent_ns };
    let mut plan = EndpointPlan {
        link: new.request.clone(),
        parent: new.parent.clone(),
        addresses: addresses.clone(),
        routes: routes.to_vec(),
    };
    // The fleet pool (`store.etcd`) has no lease database to replace an
    // answered address from: it is refused, as another plugin's would be.
    let conf = match net.ipam_type() {
        Some("nicslice-ipam") => {
            Some(IpamConf::parse(net.ipam.as_ref().unwrap_or(&serde_json::Value::Null))?)
                .filter(|c| c.etcd.is_none())
        }
        _ => None,
    };
    let fixed = if conf.is_some() { ipam::requested_ips(net, env)? } else { Vec::new() };
    let mut replace: Box<dyn Replace + '_> = match &conf {
        Some(conf) => Box::new(LeaseBookClaim {
            store: ipam::state_path(conf),
            network: &net.name,
            owner: CniOwner { container_id: env.container_id.clone(), ifname: env.ifname.clone() },
            range_sets: &conf.range_sets,
            fixed: &fixed,
        }),
        None => Box::new(RefuseAnswered { ipam: net.ipam_type().unwrap_or("none (prevResult)") }),
    };
    let link = new.link;
    let added = probe::claim_and_configure(
        link,
        &mut plan,
        probing,
        replace.as_mut(),
        Policy::CNI,
        place,
        faults,
        undo,
    )?;
    *addresses = plan.addresses;
    Ok(added)
}
