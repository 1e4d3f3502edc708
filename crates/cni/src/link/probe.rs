//! ADD with `"probe"` (issue 14): the engine's claim-then-configure
//! (`nicslice_engine::probe`) in place of a plain configure. An answered
//! address is replaced through nicslice-ipam's lease database or its fleet
//! pool (`store.etcd`), or refused when the addresses come from another
//! IPAM plugin or `prevResult`.

use ipnet::IpNet;
use nicslice_engine::Faults;
use nicslice_engine::endpoint::{
    ChildLink, EndpointPlan, LinkBrief, ParentRef, Place, Policy, Route,
};
use nicslice_engine::probe::fleet_cni::FleetCniClaim;
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
    let conf = match net.ipam_type() {
        Some("nicslice-ipam") => {
            Some(IpamConf::parse(net.ipam.as_ref().unwrap_or(&serde_json::Value::Null))?)
        }
        _ => None,
    };
    let fixed = match &conf {
        Some(c) if c.etcd.is_none() => ipam::requested_ips(net, env)?,
        _ => Vec::new(),
    };
    let mut replace: Box<dyn Replace + '_> = match &conf {
        Some(conf) => match &conf.etcd {
            Some(etcd) => Box::new(FleetCniClaim {
                state: ipam::dhcp::nicslice_state(etcd.state.as_ref()),
                pool: ipam::fleet::pool(net, conf, etcd)?.0,
                container_id: &env.container_id,
                ifname: &env.ifname,
                faults,
            }),
            None => Box::new(LeaseBookClaim {
                store: ipam::state_path(conf),
                network: &net.name,
                owner: CniOwner {
                    container_id: env.container_id.clone(),
                    ifname: env.ifname.clone(),
                },
                range_sets: &conf.range_sets,
                fixed: &fixed,
            }),
        },
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
