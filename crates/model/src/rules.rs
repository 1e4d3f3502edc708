//! Rules between a network and the world around it: other networks on the same
//! parent, endpoints already attached, the parent's MTU. Pure functions over
//! facts the engine gathers (from the store and the kernel); no I/O here.

use crate::network::NetworkSpec;
use crate::{Driver, IfName, IpvlanFlag, LinkMode, MacvlanFlags, MacvlanMode, ModelError, addr};

/// A child link's driver, mode and settings, as a network (`network create`)
/// or a CNI configuration asks for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSettings {
    pub driver: Driver,
    pub mode: LinkMode,
    pub flags: MacvlanFlags,
    pub ipvlan_flag: IpvlanFlag,
    pub bcqueuelen: Option<u32>,
    pub bclim: Option<i32>,
}

/// DHCP needs broadcast both ways on the link, and a link the host
/// configures: refused on macvtap/ipvtap (the VM behind the tap runs its
/// own client) and on ipvlan l3/l3s (seed 001: those children receive no
/// broadcast at all). Whichever front end asks (`--ipam dhcp`, or CNI's
/// nicslice-ipam with `"dhcp"`).
pub fn check_dhcp_link(driver: Driver, mode: LinkMode) -> Result<(), String> {
    if driver.has_tap() {
        return Err(format!(
            "DHCP does not apply to {driver}: the VM behind the tap runs its own DHCP client"
        ));
    }
    if matches!(mode, LinkMode::Ipvlan(crate::IpvlanMode::L3 | crate::IpvlanMode::L3s)) {
        return Err(format!(
            "DHCP needs broadcast, which ipvlan {mode} children never receive; use mode l2"
        ));
    }
    Ok(())
}

/// The rules of modes, flags and broadcast settings that hold whichever
/// front end asks (the CLI and the CNI plugins refuse with these words):
/// the mode fits the driver, each flag fits the mode, and ipvlan and
/// passthru children have no broadcast queue.
pub fn check_link_settings(spec: &LinkSettings) -> Result<(), String> {
    let mode = spec.mode;
    if !mode.fits(spec.driver) {
        let family = if spec.driver.is_ipvlan() {
            "l2, l3 or l3s"
        } else {
            "bridge, vepa, private, passthru or source"
        };
        return Err(format!(
            "mode {mode} is not a mode of the {} driver; use {family}, or another driver",
            spec.driver
        ));
    }
    if spec.driver.is_ipvlan() {
        if spec.flags != Default::default() {
            return Err(
                "flags nopromisc and nodst are macvlan flags; ipvlan takes bridge, private or vepa"
                    .into(),
            );
        }
        if spec.bcqueuelen.is_some() || spec.bclim.is_some() {
            return Err(
                "bcqueuelen and bclim are macvlan settings; ipvlan has no broadcast queue".into()
            );
        }
    } else if !spec.ipvlan_flag.is_bridge() {
        return Err(format!(
            "flag {} is an ipvlan flag; macvlan's private and vepa are modes",
            spec.ipvlan_flag
        ));
    }
    if spec.flags.nodst && mode != MacvlanMode::Source {
        return Err(format!(
            "flag nodst only applies to source mode, but the mode is {mode}; drop nodst or use mode source"
        ));
    }
    if spec.flags.nopromisc && mode != MacvlanMode::Passthru {
        return Err(format!(
            "flag nopromisc only applies to passthru mode, but the mode is {mode}; drop nopromisc or use mode passthru"
        ));
    }
    if mode == MacvlanMode::Passthru {
        let name = match (spec.bcqueuelen, spec.bclim) {
            (Some(_), _) => Some("bcqueuelen"),
            (None, Some(_)) => Some("bclim"),
            (None, None) => None,
        };
        if let Some(name) = name {
            return Err(format!(
                "{name} does not apply to passthru mode (a passthru child has no broadcast queue); drop it"
            ));
        }
    }
    Ok(())
}

/// Whether `new` may be created on a parent that already carries
/// `existing_on_same_parent`. Refuses overlapping subnets, a passthru network
/// beside any other, and any network beside a passthru one (a passthru parent
/// holds exactly one child).
pub fn check_parent_sharing(
    new: &NetworkSpec,
    existing_on_same_parent: &[NetworkSpec],
) -> Result<(), ModelError> {
    let conflict = |reason: String| ModelError::ParentConflict {
        network: new.name.to_string(),
        parent: new.parent.to_string(),
        reason,
    };
    for old in existing_on_same_parent {
        if old.driver.is_ipvlan() != new.driver.is_ipvlan() {
            return Err(conflict(format!(
                "{} network {} already uses it, and macvlan and ipvlan cannot share a parent; \
                 choose another parent",
                old.driver, old.name
            )));
        }
        if new.driver.is_ipvlan() && (old.mode != new.mode || old.ipvlan_flag != new.ipvlan_flag) {
            return Err(conflict(format!(
                "ipvlan mode and flag belong to the parent, and network {} runs it in {} {}; \
                 use --mode {} --flag {} or another parent",
                old.name, old.mode, old.ipvlan_flag, old.mode, old.ipvlan_flag
            )));
        }
        if old.mode == MacvlanMode::Passthru {
            return Err(conflict(format!(
                "passthru network {} already holds it, and a passthru parent holds exactly one child; \
                 remove {} or choose another parent",
                old.name, old.name
            )));
        }
        if new.mode == MacvlanMode::Passthru {
            return Err(conflict(format!(
                "passthru mode needs the parent to itself, but network {} already uses it; \
                 choose another parent or another mode",
                old.name
            )));
        }
        for a in &new.subnets {
            for b in &old.subnets {
                let (a, b) = (a.subnet.trunc(), b.subnet.trunc());
                if addr::overlaps(&a, &b) {
                    return Err(conflict(format!(
                        "its subnet {a} overlaps subnet {b} of network {} on the same parent; \
                         choose a subnet that does not overlap",
                        old.name
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Whether one more endpoint may attach to a network in `mode` whose parent
/// already has `existing_endpoints_on_parent` children from `network`.
pub fn check_passthru_attach(
    parent: &IfName,
    network: &str,
    mode: impl Into<LinkMode>,
    existing_endpoints_on_parent: usize,
) -> Result<(), ModelError> {
    if mode.into() == MacvlanMode::Passthru && existing_endpoints_on_parent > 0 {
        return Err(ModelError::PassthruParentBusy {
            parent: parent.to_string(),
            network: network.to_string(),
        });
    }
    Ok(())
}

/// A child's MTU may not exceed its parent's.
pub fn check_mtu(requested: u32, parent: &IfName, parent_mtu: u32) -> Result<(), ModelError> {
    if requested > parent_mtu {
        return Err(ModelError::MtuAboveParent {
            requested,
            parent: parent.to_string(),
            parent_mtu,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Driver;
    use crate::network::SubnetSpec;

    fn net(name: &str, mode: MacvlanMode, subnets: &[&str]) -> NetworkSpec {
        let mut s = NetworkSpec::new(
            name.parse().unwrap(),
            Driver::Macvlan,
            "ens160".parse().unwrap(),
            mode,
        );
        s.subnets = subnets.iter().map(|n| SubnetSpec::new(n.parse().unwrap())).collect();
        s
    }

    fn ipvlan(
        name: &str,
        mode: crate::IpvlanMode,
        flag: crate::IpvlanFlag,
        subnet: &str,
    ) -> NetworkSpec {
        let mut s = net(name, MacvlanMode::Bridge, &[subnet]);
        s.driver = Driver::Ipvlan;
        s.mode = mode.into();
        s.ipvlan_flag = flag;
        s
    }

    #[test]
    fn ipvlan_mode_and_flag_belong_to_the_parent() {
        use crate::{IpvlanFlag, IpvlanMode};
        let l3 = ipvlan("a", IpvlanMode::L3, IpvlanFlag::Bridge, "10.0.1.0/24");
        let same = ipvlan("b", IpvlanMode::L3, IpvlanFlag::Bridge, "192.168.1.0/24");
        assert_eq!(check_parent_sharing(&same, std::slice::from_ref(&l3)), Ok(()));
        let l2 = ipvlan("c", IpvlanMode::L2, IpvlanFlag::Bridge, "192.168.2.0/24");
        let err = check_parent_sharing(&l2, std::slice::from_ref(&l3)).unwrap_err().to_string();
        assert!(err.contains("belong to the parent") && err.contains("--mode l3"), "{err}");
        let private = ipvlan("d", IpvlanMode::L3, IpvlanFlag::Private, "192.168.3.0/24");
        assert!(check_parent_sharing(&private, std::slice::from_ref(&l3)).is_err());
    }

    #[test]
    fn macvlan_and_ipvlan_never_share_a_parent() {
        use crate::{IpvlanFlag, IpvlanMode};
        let ip = ipvlan("a", IpvlanMode::L2, IpvlanFlag::Bridge, "10.0.1.0/24");
        let mac = net("b", MacvlanMode::Bridge, &["10.0.2.0/24"]);
        let err = check_parent_sharing(&mac, std::slice::from_ref(&ip)).unwrap_err().to_string();
        assert!(err.contains("macvlan and ipvlan cannot share a parent"), "{err}");
        assert!(check_parent_sharing(&ip, std::slice::from_ref(&mac)).is_err());
    }

    #[test]
    fn disjoint_networks_share_a_parent() {
        let new = net("b", MacvlanMode::Bridge, &["10.0.1.0/24"]);
        let old = [
            net("a", MacvlanMode::Bridge, &["10.0.0.0/24"]),
            net("c", MacvlanMode::Vepa, &["fd00::/64"]),
        ];
        assert_eq!(check_parent_sharing(&new, &old), Ok(()));
        assert_eq!(check_parent_sharing(&new, &[]), Ok(()));
    }

    #[test]
    fn overlap_names_both_networks_and_subnets() {
        let new = net("b", MacvlanMode::Bridge, &["10.0.0.128/25"]);
        let old = [net("a", MacvlanMode::Bridge, &["10.0.0.0/24"])];
        let msg = check_parent_sharing(&new, &old).unwrap_err().to_string();
        assert!(msg.contains("network b"), "{msg}");
        assert!(msg.contains("network a"), "{msg}");
        assert!(msg.contains("10.0.0.128/25 overlaps subnet 10.0.0.0/24"), "{msg}");
        assert!(msg.contains("ens160"), "{msg}");
    }

    #[test]
    fn passthru_holds_its_parent_alone() {
        let pass = net("p", MacvlanMode::Passthru, &[]);
        let bridge = net("b", MacvlanMode::Bridge, &[]);
        let msg = check_parent_sharing(&pass, std::slice::from_ref(&bridge)).unwrap_err();
        assert!(msg.to_string().contains("network b already uses it"), "{msg}");
        let msg = check_parent_sharing(&bridge, std::slice::from_ref(&pass)).unwrap_err();
        assert!(msg.to_string().contains("passthru network p already holds it"), "{msg}");
        assert_eq!(check_parent_sharing(&pass, &[]), Ok(()));
    }

    #[test]
    fn passthru_takes_one_endpoint() {
        let parent: IfName = "ens160".parse().unwrap();
        assert!(check_passthru_attach(&parent, "p", MacvlanMode::Passthru, 0).is_ok());
        let err = check_passthru_attach(&parent, "p", MacvlanMode::Passthru, 1).unwrap_err();
        assert!(err.to_string().contains("exactly one child"), "{err}");
        assert!(check_passthru_attach(&parent, "b", MacvlanMode::Bridge, 7).is_ok());
    }

    #[test]
    fn mtu_may_not_exceed_the_parent() {
        let parent: IfName = "ens160".parse().unwrap();
        assert!(check_mtu(1500, &parent, 1500).is_ok());
        assert_eq!(
            check_mtu(9000, &parent, 1500).unwrap_err().to_string(),
            "MTU 9000 is above the parent ens160's MTU 1500; macvlan children cannot exceed their parent"
        );
    }
}
