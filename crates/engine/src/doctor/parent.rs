//! doctor's findings about a network's parent: missing (made again when
//! nicslice owns it), renamed or recreated (a new index under its name),
//! down, without carrier, promiscuous mode asked but off, a port of a
//! bridge or bond, wireless.

use std::path::Path;

use nicslice_kernel::{Netns, RouteSocket};
use nicslice_store::NetworkRecord;

use super::{Finding, Repair, finding};
use crate::Engine;
use crate::error::Result;

/// Whether `name` is a wireless interface of the namespace this process
/// runs in (sysfs shows the namespace it was mounted in).
fn is_wireless(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).join("wireless").exists()
        || Path::new("/sys/class/net").join(name).join("phy80211").exists()
}

impl Engine {
    pub(super) fn parent_findings(
        &mut self,
        record: &NetworkRecord,
        out: &mut Vec<Finding>,
    ) -> Result<()> {
        let spec = &record.spec;
        let net = spec.name.as_str();
        let name = spec.parent.to_string();
        let subject = format!("parent {name}");
        let mut host = RouteSocket::open_in(&self.host)?;
        let owned = self.store.write()?.owned_link(&name)?;
        let by_name = host.link_by_name(&name)?;
        // The recorded link under another name: the same index and (where
        // recorded) MAC. An index alone could be another link's after a
        // reboot, which numbers them anew.
        let renamed = match record.parent_index {
            Some(index) if by_name.as_ref().is_none_or(|l| l.index != index) => host
                .link_by_index(index)?
                .filter(|l| l.name != name && record.parent_mac.is_none_or(|m| l.mac == Some(m))),
            _ => None,
        };
        if let Some(old) = renamed {
            // No repair: renaming needs the link down (the kernel refuses to
            // rename most links while up), which cuts the host's own traffic
            // on it and every child; and the new name may be someone's choice.
            let taken = by_name.as_ref().map_or(String::new(), |l| {
                format!(", and another link (index {}) now has the name {name}", l.index)
            });
            out.push(finding(
                net,
                subject,
                format!(
                    "{name} was renamed {} (index {}){taken}: its children are still on {}, but nicslice finds the parent by name",
                    old.name, old.index, old.name
                ),
                format!(
                    "rename it back (`ip link set {now} down; ip link set {now} name {name}; ip link set {name} up`{first}), or `nicslice network rm {net} --force`",
                    now = old.name,
                    first = if by_name.is_some() { ", the other link renamed first" } else { "" }
                ),
                Repair::None,
            ));
            return Ok(());
        }
        let Some(parent) = by_name else {
            let (fix, repair) = match owned {
                Some(_) => (
                    format!("make {name} again (nicslice made it)"),
                    Repair::RecreateParent(name.clone()),
                ),
                None => (
                    format!("bring {name} back, or `nicslice network rm {net} --force`"),
                    Repair::None,
                ),
            };
            out.push(finding(
                net,
                subject,
                format!("{name} does not exist in {}", self.host.label()),
                fix,
                repair,
            ));
            return Ok(());
        };
        match record.parent_index {
            // Not known (a network of an older nicslice): the parent found
            // now is recorded, for the next look to compare with.
            None => {
                let tx = self.store.write()?;
                tx.set_parent_link(record.id, parent.index, parent.mac)?;
                tx.commit()?;
            }
            Some(index) if index != parent.index => out.push(finding(
                net,
                subject.clone(),
                format!(
                    "{name} was recreated (index {index} recorded, {} now): the children of the old link went with it",
                    parent.index
                ),
                format!(
                    "record the new {name}; its endpoints are made again on it (their own findings)"
                ),
                Repair::AdoptParent { network: record.id, index: parent.index, mac: parent.mac },
            )),
            Some(_) => {}
        }
        if !parent.up {
            out.push(finding(
                net,
                subject.clone(),
                format!("{name} is down: every child of it is without carrier"),
                format!("`ip link set {name} up`"),
                Repair::None,
            ));
        } else if !parent.lower_up {
            out.push(finding(
                net,
                subject.clone(),
                format!("{name} has no carrier: its children cannot reach the wire"),
                format!("check the cable or the switch port of {name}"),
                Repair::None,
            ));
        }
        if spec.promisc && !parent.promisc_flag {
            out.push(finding(
                net,
                subject.clone(),
                format!("promiscuous mode was asked for {name} but is off"),
                format!("turn it on again (`ip link set {name} promisc on`)"),
                Repair::SetPromisc(name.clone()),
            ));
        }
        if let Some(master) = parent.master_index {
            let port_of = host.link_by_index(master)?.map_or(master.to_string(), |l| l.name);
            out.push(finding(
                net,
                subject.clone(),
                format!(
                    "{name} has become a port of {port_of}: the kernel refuses new children on it"
                ),
                format!("take {name} out of {port_of}, or use {port_of} as the parent"),
                Repair::None,
            ));
        }
        if self.host.id() == Netns::current()?.id() && is_wireless(&name) {
            out.push(finding(
                net,
                subject,
                format!("{name} is a wireless interface: an 802.11 station sends only its own MAC, so macvlan children get no traffic"),
                "use ipvlan (its children share the parent's MAC, seed 001) or a wired parent".into(),
                Repair::None,
            ));
        }
        Ok(())
    }
}
