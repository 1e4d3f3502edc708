//! `NetworkSpec::validate` and its result `ValidNetwork`: every rule of one
//! network on its own (subnets, mode and flag consistency, MTU bounds). Code
//! that needs a checked network takes `&ValidNetwork`, so it cannot be handed
//! an unchecked spec. Rules between networks live in `crate::rules`.

use std::ops::Deref;

use super::NetworkSpec;
use super::subnet::ValidSubnet;
use crate::{ModelError, addr};

/// A network spec that passed `validate`; derefs to the (normalized) spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidNetwork {
    spec: NetworkSpec,
    subnets: Vec<ValidSubnet>,
}

/// The smallest MTU the kernel accepts for IPv4 and Ethernet children.
const MIN_MTU_V4: u32 = 68;
/// IPv6 needs links of at least 1280 bytes (RFC 8200).
const MIN_MTU_V6: u32 = 1280;
/// ETH_MAX_MTU: the largest MTU a macvlan child may have.
const MAX_MTU: u32 = 65535;

impl NetworkSpec {
    /// Checks every rule of this network on its own and returns the validated,
    /// normalized form: subnets in canonical form with their gateways resolved.
    pub fn validate(self) -> Result<ValidNetwork, ModelError> {
        let invalid =
            |reason: String| ModelError::InvalidNetwork { network: self.name.to_string(), reason };
        check_mode_and_flags(&self).map_err(invalid)?;
        check_dhcp(&self).map_err(invalid)?;
        check_fleet(&self).map_err(invalid)?;
        let subnets = self
            .subnets
            .iter()
            .cloned()
            .map(ValidSubnet::check)
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        check_no_overlap(&subnets).map_err(invalid)?;
        check_mtu_bounds(&self, &subnets).map_err(invalid)?;
        let spec =
            NetworkSpec { subnets: subnets.iter().map(|s| s.spec().clone()).collect(), ..self };
        Ok(ValidNetwork { spec, subnets })
    }
}

impl ValidNetwork {
    pub fn spec(&self) -> &NetworkSpec {
        &self.spec
    }

    /// The validated subnets, in the order of `spec().subnets`.
    pub fn subnets(&self) -> &[ValidSubnet] {
        &self.subnets
    }

    pub fn subnet(&self, index: usize) -> Option<&ValidSubnet> {
        self.subnets.get(index)
    }

    pub fn into_spec(self) -> NetworkSpec {
        self.spec
    }
}

impl Deref for ValidNetwork {
    type Target = NetworkSpec;
    fn deref(&self) -> &NetworkSpec {
        &self.spec
    }
}

fn check_mode_and_flags(spec: &NetworkSpec) -> Result<(), String> {
    crate::rules::check_link_settings(&crate::rules::LinkSettings {
        driver: spec.driver,
        mode: spec.mode,
        flags: spec.flags,
        ipvlan_flag: spec.ipvlan_flag,
        bcqueuelen: spec.bcqueuelen,
        bclim: spec.bclim,
    })?;
    if spec.flags.nopromisc && spec.promisc {
        return Err(
            "flag nopromisc and promisc contradict each other; keep one of them".to_string()
        );
    }
    Ok(())
}

/// DHCP gets its addresses from the server, on a link that can take its
/// broadcasts (`rules::check_dhcp_link`).
fn check_dhcp(spec: &NetworkSpec) -> Result<(), String> {
    if !spec.ipam.is_dhcp() {
        return Ok(());
    }
    let ipam = spec.ipam;
    if !spec.subnets.is_empty() {
        return Err(format!(
            "--ipam {ipam} takes the addresses from the DHCP server; drop --subnet"
        ));
    }
    crate::rules::check_dhcp_link(spec.driver, spec.mode).map_err(|e| format!("--ipam {ipam}: {e}"))
}

/// A fleet network: one subnet, an etcd cluster reached over HTTP, or over
/// TLS with the CA given (and a client certificate when etcd asks for one).
fn check_fleet(spec: &NetworkSpec) -> Result<(), String> {
    let Some(fleet) = &spec.fleet else {
        return match spec.ipam {
            super::Ipam::Etcd => Err("--ipam etcd needs --etcd URL (or NICSLICE_ETCD)".into()),
            _ => Ok(()),
        };
    };
    if spec.ipam != super::Ipam::Etcd {
        return Err("--etcd applies to --ipam etcd only".into());
    }
    if spec.subnets.len() != 1 {
        return Err(format!(
            "--ipam etcd shares exactly one --subnet between the hosts, and {} were given",
            spec.subnets.len()
        ));
    }
    if fleet.endpoints.is_empty() {
        return Err("--etcd: give at least one client URL".into());
    }
    for url in &fleet.endpoints {
        check_etcd_url(url, &fleet.tls)?;
    }
    check_etcd_tls(&fleet.tls)?;
    // etcd takes at most 128 operations in one transaction, and a block is
    // leased with one put per address.
    if !(1..=64).contains(&fleet.block_size) {
        return Err(format!("--etcd-block {}: expected 1 to 64 addresses", fleet.block_size));
    }
    if fleet.ttl_s == 0 {
        return Err("--etcd-ttl: expected at least one second".into());
    }
    Ok(())
}

/// One client URL, and whether its scheme agrees with the TLS files given.
fn check_etcd_url(url: &str, tls: &super::EtcdTls) -> Result<(), String> {
    let (host, https) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(host), _) => (host, false),
        (_, Some(host)) => (host, true),
        _ => ("", false),
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("--etcd {url}: expected a client URL like http://10.0.0.5:2379"));
    }
    if https && tls.ca.is_none() {
        return Err(format!(
            "--etcd {url}: TLS needs --etcd-ca FILE, the CA that signed etcd's server certificate (the system's CAs are not used)"
        ));
    }
    if !https && !tls.is_plain() {
        return Err(format!(
            "--etcd {url}: plain HTTP, yet --etcd-ca/--etcd-cert/--etcd-key were given; use https:// or drop them"
        ));
    }
    Ok(())
}

/// The TLS files: a certificate with its key, and absolute paths (every
/// later command reads them, from wherever it runs).
fn check_etcd_tls(tls: &super::EtcdTls) -> Result<(), String> {
    if tls.cert.is_some() != tls.key.is_some() {
        return Err("--etcd-cert and --etcd-key go together: give both (etcd's --client-cert-auth) or neither".into());
    }
    for (option, path) in tls.files() {
        if !path.is_absolute() {
            return Err(format!("{option} {}: expected an absolute path", path.display()));
        }
    }
    Ok(())
}

fn check_no_overlap(subnets: &[ValidSubnet]) -> Result<(), String> {
    for (i, a) in subnets.iter().enumerate() {
        for b in &subnets[i + 1..] {
            if addr::overlaps(&a.subnet(), &b.subnet()) {
                return Err(format!(
                    "subnets {} and {} overlap; give each subnet its own addresses",
                    a.subnet(),
                    b.subnet()
                ));
            }
        }
    }
    Ok(())
}

fn check_mtu_bounds(spec: &NetworkSpec, subnets: &[ValidSubnet]) -> Result<(), String> {
    let Some(mtu) = spec.mtu else { return Ok(()) };
    if mtu < MIN_MTU_V4 {
        return Err(format!("MTU {mtu} is below {MIN_MTU_V4}, the smallest the kernel accepts"));
    }
    if mtu > MAX_MTU {
        return Err(format!("MTU {mtu} is above {MAX_MTU}, the largest a macvlan child may have"));
    }
    let v6 = subnets.iter().find(|s| s.subnet().addr().is_ipv6());
    if let Some(v6) = v6.filter(|_| mtu < MIN_MTU_V6) {
        return Err(format!(
            "MTU {mtu} is below {MIN_MTU_V6}, the IPv6 minimum, and subnet {} is IPv6; raise the MTU",
            v6.subnet()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::SubnetSpec;
    use crate::{Driver, MacvlanFlags, MacvlanMode};

    fn spec(mode: MacvlanMode, subnets: &[&str]) -> NetworkSpec {
        let mut s = NetworkSpec::new(
            "lan".parse().unwrap(),
            Driver::Macvlan,
            "ens160".parse().unwrap(),
            mode,
        );
        s.subnets = subnets.iter().map(|n| SubnetSpec::new(n.parse().unwrap())).collect();
        s
    }

    fn reason(spec: NetworkSpec) -> String {
        match spec.validate() {
            Err(ModelError::InvalidNetwork { network, reason }) => {
                assert_eq!(network, "lan");
                reason
            }
            other => panic!("expected InvalidNetwork, got {other:?}"),
        }
    }

    fn fleet(subnets: &[&str], endpoints: &[&str]) -> NetworkSpec {
        let mut s = spec(MacvlanMode::Bridge, subnets);
        s.ipam = crate::Ipam::Etcd;
        s.fleet = Some(crate::FleetSpec {
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            block_size: 16,
            ttl_s: 60,
            tls: crate::EtcdTls::default(),
            cooldown_s: 300,
        });
        s
    }

    fn with_tls(
        mut s: NetworkSpec,
        ca: Option<&str>,
        cert: Option<&str>,
        key: Option<&str>,
    ) -> NetworkSpec {
        s.fleet.as_mut().unwrap().tls = crate::EtcdTls {
            ca: ca.map(Into::into),
            cert: cert.map(Into::into),
            key: key.map(Into::into),
        };
        s
    }

    #[test]
    fn fleet_networks_share_one_subnet_over_plain_http() {
        fleet(&["10.0.0.0/16"], &["http://10.1.0.1:2379", "http://10.1.0.2:2379"])
            .validate()
            .unwrap();
        assert!(
            reason(fleet(&["10.0.0.0/16", "fd00::/64"], &["http://e:2379"]))
                .contains("exactly one")
        );
        assert!(reason(fleet(&["10.0.0.0/16"], &["https://e:2379"])).contains("--etcd-ca FILE"));
        assert!(reason(fleet(&["10.0.0.0/16"], &["e:2379"])).contains("client URL"));
        assert!(reason(fleet(&["10.0.0.0/16"], &[])).contains("at least one"));
        let mut big = fleet(&["10.0.0.0/16"], &["http://e:2379"]);
        big.fleet.as_mut().unwrap().block_size = 65;
        assert!(reason(big).contains("1 to 64"));
        let mut bare = fleet(&["10.0.0.0/16"], &[]);
        bare.fleet = None;
        assert!(reason(bare).contains("--etcd URL"));
        let mut pool = spec(MacvlanMode::Bridge, &["10.0.0.0/16"]);
        pool.fleet = fleet(&["10.0.0.0/16"], &["http://e:2379"]).fleet;
        assert!(reason(pool).contains("--ipam etcd only"));
    }

    #[test]
    fn fleet_tls_needs_a_ca_a_key_with_the_certificate_and_https() {
        let https = || fleet(&["10.0.0.0/16"], &["https://10.1.0.1:2379", "https://e:2379"]);
        with_tls(https(), Some("/etc/etcd/ca.pem"), None, None).validate().unwrap();
        with_tls(https(), Some("/ca.pem"), Some("/c.pem"), Some("/k.pem")).validate().unwrap();
        assert!(
            reason(with_tls(https(), None, Some("/c.pem"), Some("/k.pem"))).contains("--etcd-ca")
        );
        let lone = reason(with_tls(https(), Some("/ca.pem"), Some("/c.pem"), None));
        assert!(lone.contains("go together"), "{lone}");
        assert!(
            reason(with_tls(https(), Some("/ca.pem"), None, Some("/k.pem")))
                .contains("go together")
        );
        assert!(reason(with_tls(https(), Some("ca.pem"), None, None)).contains("absolute path"));
        let plain = fleet(&["10.0.0.0/16"], &["http://e:2379"]);
        let contradiction = reason(with_tls(plain, Some("/ca.pem"), None, None));
        assert!(contradiction.contains("plain HTTP"), "{contradiction}");
        let mixed = fleet(&["10.0.0.0/16"], &["https://a:2379", "http://b:2379"]);
        assert!(reason(with_tls(mixed, Some("/ca.pem"), None, None)).contains("plain HTTP"));
    }

    #[test]
    fn fleet_records_without_tls_still_load() {
        let old = r#"{"endpoints":["http://e:2379"],"block_size":16,"ttl_s":60}"#;
        let spec: crate::FleetSpec = serde_json::from_str(old).unwrap();
        assert!(spec.tls.is_plain());
        assert_eq!(spec.cooldown_s, 300, "the cool-down's default");
        // And a plain record is written without a tls field.
        assert!(!serde_json::to_string(&spec).unwrap().contains("tls"));
    }

    #[test]
    fn valid_network_resolves_gateways_and_normalizes() {
        let v = spec(MacvlanMode::Bridge, &["192.168.0.5/16", "fd00::/64"]).validate().unwrap();
        assert_eq!(v.subnets().len(), 2);
        assert_eq!(v.subnet(0).unwrap().gateway().to_string(), "192.168.0.1");
        assert_eq!(v.subnet(1).unwrap().gateway().to_string(), "fd00::1");
        // The spec seen through Deref is the normalized one, gateway included.
        assert_eq!(v.subnets[0].subnet().to_string(), "192.168.0.0/16");
        assert_eq!(v.spec().subnets[0].subnet.to_string(), "192.168.0.0/16");
        assert_eq!(v.spec().subnets[0].gateway, Some("192.168.0.1".parse().unwrap()));
        assert_eq!(v.name.as_str(), "lan");
        assert!(v.subnet(2).is_none());
    }

    #[test]
    fn several_subnets_per_family_are_allowed_but_not_overlapping() {
        assert!(spec(MacvlanMode::Bridge, &["10.0.0.0/24", "10.0.1.0/24"]).validate().is_ok());
        let r = reason(spec(MacvlanMode::Bridge, &["10.0.0.0/16", "10.0.9.0/24"]));
        assert!(r.contains("10.0.0.0/16 and 10.0.9.0/24 overlap"), "{r}");
    }

    #[test]
    fn subnet_errors_carry_the_network_name() {
        let r = reason(spec(MacvlanMode::Bridge, &["10.0.0.0/31"]));
        assert!(r.contains("no room"), "{r}");
    }

    #[test]
    fn mode_must_fit_the_driver() {
        let mut s = spec(MacvlanMode::Bridge, &[]);
        s.driver = crate::Driver::Ipvlan;
        assert!(
            reason(s.clone()).contains("not a mode of the ipvlan driver"),
            "{}",
            reason(s.clone())
        );
        s.mode = crate::IpvlanMode::L3.into();
        assert!(s.clone().validate().is_ok());
        s.flags.nodst = true;
        assert!(reason(s).contains("macvlan flags"));
        let mut m = spec(MacvlanMode::Bridge, &[]);
        m.ipvlan_flag = crate::IpvlanFlag::Private;
        assert!(reason(m).contains("ipvlan flag"));
    }

    #[test]
    fn flags_must_match_the_mode() {
        let mut s = spec(MacvlanMode::Bridge, &[]);
        s.flags = MacvlanFlags { nodst: true, nopromisc: false };
        assert!(reason(s).contains("nodst only applies to source mode"));
        let mut s = spec(MacvlanMode::Source, &[]);
        s.flags = MacvlanFlags { nodst: true, nopromisc: false };
        assert!(s.validate().is_ok());

        let mut s = spec(MacvlanMode::Vepa, &[]);
        s.flags.nopromisc = true;
        assert!(reason(s).contains("nopromisc only applies to passthru"));
        let mut s = spec(MacvlanMode::Passthru, &[]);
        s.flags.nopromisc = true;
        assert!(s.clone().validate().is_ok());
        s.promisc = true;
        assert!(reason(s).contains("contradict"));
    }

    #[test]
    fn broadcast_settings_are_refused_for_passthru() {
        let mut s = spec(MacvlanMode::Passthru, &[]);
        s.bcqueuelen = Some(1000);
        assert!(reason(s).starts_with("bcqueuelen does not apply"));
        let mut s = spec(MacvlanMode::Passthru, &[]);
        s.bclim = Some(-1);
        assert!(reason(s).starts_with("bclim does not apply"));
        let mut s = spec(MacvlanMode::Bridge, &[]);
        s.bcqueuelen = Some(1000);
        s.bclim = Some(-1);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn mtu_bounds() {
        let with_mtu = |mtu, subnets: &[&str]| {
            let mut s = spec(MacvlanMode::Bridge, subnets);
            s.mtu = Some(mtu);
            s
        };
        assert!(with_mtu(1500, &["fd00::/64"]).validate().is_ok());
        assert!(with_mtu(576, &["10.0.0.0/24"]).validate().is_ok());
        assert!(reason(with_mtu(576, &["10.0.0.0/24", "fd00::/64"])).contains("IPv6 minimum"));
        assert!(reason(with_mtu(0, &[])).contains("below 68"));
        assert!(reason(with_mtu(70_000, &[])).contains("above 65535"));
    }
}
