//! The link plugins' own keys, checked into a `LinkConf` before anything is
//! touched. nicslice-macvlan takes every key of the reference macvlan plugin
//! (`master`, `mode`, `mtu`, `mac`, `linkInContainer`, `bcqueuelen`) plus
//! `flags`, `sourceMacs`, `bclim`, `tap`, `vlan` and `noDefaultRoute`;
//! nicslice-ipvlan the reference ipvlan keys plus `flag`, `tap`, `vlan` and
//! `noDefaultRoute`. The MAC comes from `mac`, then `CNI_ARGS MAC=`, then
//! `args.cni.mac`, then `runtimeConfig.mac` (the last one given wins).

use std::str::FromStr;

use nicslice_model::rules::{self, LinkSettings};
use nicslice_model::{
    Driver, IpvlanFlag, IpvlanMode, LinkMode, MacAddr, MacvlanFlags, MacvlanMode, ProbeSpec,
};
use serde::Deserialize;

use crate::conf::{NetConf, null_as_default};
use crate::env::CallEnv;
use crate::error::{CniError, Result};
use crate::result::CniResult;

/// Which link plugin is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Macvlan,
    Ipvlan,
}

/// The kind-specific part of a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindConf {
    Macvlan {
        mode: MacvlanMode,
        flags: MacvlanFlags,
        bcqueuelen: Option<u32>,
        bclim: Option<i32>,
        source_macs: Vec<MacAddr>,
    },
    Ipvlan {
        mode: IpvlanMode,
        flag: IpvlanFlag,
    },
}

/// A checked link configuration: what ADD and CHECK take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConf {
    pub driver: Driver,
    /// `None`: the interface of the default route, found at ADD.
    pub master: Option<String>,
    /// 802.1Q: the parent is `master.vlan` (it must exist).
    pub vlan: Option<u16>,
    pub link_in_container: bool,
    /// ipvlan chained after another plugin: no `master` but a `prevResult`,
    /// whose interface in the container is the master (as the reference
    /// ipvlan plugin does); its addresses serve when there is no IPAM.
    pub chained: bool,
    /// `None` or 0 in the config: the parent's MTU.
    pub mtu: Option<u32>,
    pub mac: Option<MacAddr>,
    pub kind: KindConf,
    pub no_default_route: bool,
    /// `hostAccess`: route the pod's IPv4 addresses from the host through a
    /// shim on the master (the engine's `shim::shared`).
    pub host_access: bool,
    /// `probe`: claim each address on the wire before it is used.
    pub probe: Option<ProbeSpec>,
}

/// The keys as given. Each may be `null`, meaning "not given", as for the
/// reference plugins.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Keys {
    #[serde(default, deserialize_with = "null_as_default")]
    master: String,
    #[serde(default, deserialize_with = "null_as_default")]
    mode: String,
    #[serde(default, deserialize_with = "null_as_default")]
    mtu: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    mac: String,
    #[serde(default, deserialize_with = "null_as_default")]
    link_in_container: bool,
    #[serde(default)]
    bcqueuelen: Option<u32>,
    #[serde(default)]
    bclim: Option<i32>,
    #[serde(default)]
    flags: Flags,
    #[serde(default, deserialize_with = "null_as_default")]
    flag: String,
    #[serde(default, deserialize_with = "null_as_default")]
    source_macs: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    tap: bool,
    #[serde(default)]
    vlan: Option<u16>,
    #[serde(default, deserialize_with = "null_as_default")]
    no_default_route: bool,
    #[serde(default)]
    host_access: bool,
}

/// `"probe": {"timeoutMs": N, "cooldownSeconds": N}` (issue 14).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProbeKeys {
    #[serde(default = "default_probe_timeout")]
    timeout_ms: u32,
    #[serde(default = "default_probe_cooldown")]
    cooldown_seconds: u64,
}

fn default_probe_timeout() -> u32 {
    ProbeSpec::DEFAULT_TIMEOUT_MS
}

fn default_probe_cooldown() -> u64 {
    ProbeSpec::DEFAULT_COOLDOWN_S
}

/// The conflict probing a configuration asks for (`"probe"`), read by the
/// link plugins and by nicslice-ipam (for the cool-down).
pub fn probe_spec(conf: &NetConf) -> Result<Option<ProbeSpec>> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        probe: Option<ProbeKeys>,
    }
    let Probe { probe } =
        conf.specific().map_err(|e| CniError::config(format!("probe: {}", e.msg)))?;
    let Some(keys) = probe else { return Ok(None) };
    if !(1..=60_000).contains(&keys.timeout_ms) {
        return Err(CniError::config(format!(
            "probe.timeoutMs {} is out of range: use 1 to 60000",
            keys.timeout_ms
        )));
    }
    Ok(Some(ProbeSpec { timeout_ms: keys.timeout_ms, cooldown_s: keys.cooldown_seconds }))
}

/// `flags` as a list (`["nodst"]`) or one comma-separated string.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Flags {
    #[default]
    None,
    List(Vec<String>),
    One(String),
}

/// The master of a chained ipvlan: the one interface of `prev` in the
/// container other than the one being made (CHECK and DEL see it in
/// `prevResult` too). Where no interface names its sandbox, any other one.
fn chained_master(prev: &CniResult, ifname: &str) -> Result<String> {
    let candidates = || prev.interfaces.iter().filter(|i| !i.name.is_empty() && i.name != ifname);
    let others: Vec<&str> = candidates().map(|i| i.name.as_str()).collect();
    let in_container: Vec<&str> =
        candidates().filter(|i| !i.sandbox.is_empty()).map(|i| i.name.as_str()).collect();
    match (in_container.as_slice(), others.as_slice()) {
        ([one], _) | ([], [one]) => Ok(one.to_string()),
        _ => Err(CniError::config(format!(
            "chained ipvlan: prevResult must list exactly one interface in the container to be the master (found {:?}); or set master",
            if in_container.is_empty() { &others } else { &in_container }
        ))),
    }
}

fn parse_mac(what: &str, s: &str) -> Result<MacAddr> {
    MacAddr::from_str(s)
        .and_then(MacAddr::ensure_unicast)
        .map_err(|e| CniError::config(format!("{what}: {e}")))
}

impl LinkConf {
    /// Checks the configuration of `family`'s plugin and the call's MAC arguments.
    pub fn parse(family: Family, conf: &NetConf, env: &CallEnv) -> Result<LinkConf> {
        let keys: Keys = conf.specific()?;
        let kind = match family {
            Family::Macvlan => macvlan_kind(&keys)?,
            Family::Ipvlan => ipvlan_kind(&keys)?,
        };
        let driver = match (family, keys.tap) {
            (Family::Macvlan, false) => Driver::Macvlan,
            (Family::Macvlan, true) => Driver::Macvtap,
            (Family::Ipvlan, false) => Driver::Ipvlan,
            (Family::Ipvlan, true) => Driver::Ipvtap,
        };
        let mtu = match keys.mtu {
            0 => None,
            m if (68..=65535).contains(&m) => Some(m as u32),
            m => {
                return Err(CniError::config(format!(
                    "invalid MTU {m}; use 68 to 65535, or 0 for the master's"
                )));
            }
        };
        let mut mac = None;
        for (what, value) in [
            ("mac", Some(keys.mac.as_str())),
            ("CNI_ARGS MAC", env.arg("MAC")),
            ("args.cni.mac", conf.args_mac.as_deref()),
            ("runtimeConfig.mac", conf.runtime_mac.as_deref()),
        ] {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                mac = Some(parse_mac(what, v)?);
            }
        }
        if mac.is_some() && family == Family::Ipvlan {
            return Err(CniError::config(
                "ipvlan children share the master's MAC; remove mac / MAC / runtimeConfig.mac",
            ));
        }
        let settings = kind.settings(driver);
        rules::check_link_settings(&settings).map_err(CniError::config)?;
        if crate::ipam::asks_dhcp(conf) {
            rules::check_dhcp_link(driver, settings.mode).map_err(CniError::config)?;
        }
        if keys.vlan.is_some_and(|v| v == 0 || v > 4094) {
            return Err(CniError::config("vlan must be 1 to 4094"));
        }
        let mut master = Some(keys.master).filter(|m| !m.is_empty());
        let mut link_in_container = keys.link_in_container;
        let chained = family == Family::Ipvlan && master.is_none() && conf.prev_result.is_some();
        if let (true, Some(prev)) = (chained, &conf.prev_result) {
            master = Some(chained_master(prev, &env.ifname)?);
            link_in_container = true;
        }
        if keys.host_access && link_in_container {
            return Err(CniError::config(
                "hostAccess makes a shim beside the master in the host namespace; it does not apply to a master inside the container (linkInContainer, chained ipvlan)",
            ));
        }
        // The reachability model first, in `nicslice shim add`'s words:
        // private, vepa, source and passthru children never reach a shim.
        if keys.host_access
            && let Some(why) = nicslice_engine::shim::refusal(
                &conf.name,
                master.as_deref().unwrap_or("the master"),
                &settings,
            )
        {
            return Err(CniError::config(why));
        }
        if let KindConf::Ipvlan { mode, .. } = &kind
            && keys.host_access
            && !nicslice_engine::shim::can_borrow(nicslice_model::LinkMode::Ipvlan(*mode))
        {
            return Err(CniError::config(
                "hostAccess does not work on ipvlan l2: the shared shim sends from the host's address on the master, and ipvlan l2 hands the pods' replies to that address to the master, never the shim; use mode l3 or l3s, or `nicslice shim add` (its shim takes an address of the network's own)",
            ));
        }
        Ok(LinkConf {
            driver,
            master,
            vlan: keys.vlan,
            link_in_container,
            chained,
            mtu,
            mac,
            kind,
            no_default_route: keys.no_default_route,
            host_access: keys.host_access,
            probe: probe_spec(conf)?,
        })
    }

    /// The parent's name once the master is known.
    pub fn parent_name(&self, master: &str) -> String {
        match self.vlan {
            Some(id) => format!("{master}.{id}"),
            None => master.to_string(),
        }
    }
}

impl KindConf {
    /// The settings the model's rules check, the same rules `network create`
    /// applies.
    fn settings(&self, driver: Driver) -> LinkSettings {
        match *self {
            KindConf::Macvlan { mode, flags, bcqueuelen, bclim, .. } => LinkSettings {
                driver,
                mode: LinkMode::Macvlan(mode),
                flags,
                ipvlan_flag: IpvlanFlag::Bridge,
                bcqueuelen,
                bclim,
            },
            KindConf::Ipvlan { mode, flag } => LinkSettings {
                driver,
                mode: LinkMode::Ipvlan(mode),
                flags: MacvlanFlags::default(),
                ipvlan_flag: flag,
                bcqueuelen: None,
                bclim: None,
            },
        }
    }
}

fn macvlan_kind(keys: &Keys) -> Result<KindConf> {
    if !keys.flag.is_empty() {
        return Err(CniError::config("\"flag\" is an ipvlan key; macvlan takes \"flags\""));
    }
    let mode = match keys.mode.as_str() {
        "" => MacvlanMode::Bridge,
        m => MacvlanMode::from_str(m).map_err(|e| CniError::config(e.to_string()))?,
    };
    let mut flags = MacvlanFlags::default();
    let names: Vec<String> = match &keys.flags {
        Flags::None => Vec::new(),
        Flags::List(l) => l.clone(),
        Flags::One(s) => {
            s.split(',').map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect()
        }
    };
    for name in &names {
        flags.set_by_name(name).map_err(|e| CniError::config(e.to_string()))?;
    }
    if !keys.source_macs.is_empty() && mode != MacvlanMode::Source {
        return Err(CniError::config("sourceMacs applies to mode source only"));
    }
    let source_macs = keys
        .source_macs
        .iter()
        .map(|m| {
            MacAddr::from_str(m)
                .and_then(MacAddr::ensure_listable_source)
                .map_err(|e| CniError::config(format!("sourceMacs: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(KindConf::Macvlan {
        mode,
        flags,
        bcqueuelen: keys.bcqueuelen,
        bclim: keys.bclim,
        source_macs,
    })
}

fn ipvlan_kind(keys: &Keys) -> Result<KindConf> {
    let macvlan_only = [
        ("flags", !matches!(keys.flags, Flags::None)),
        ("sourceMacs", !keys.source_macs.is_empty()),
        ("bcqueuelen", keys.bcqueuelen.is_some()),
        ("bclim", keys.bclim.is_some()),
    ];
    if let Some((key, _)) = macvlan_only.iter().find(|(_, set)| *set) {
        return Err(CniError::config(format!("{key:?} is a macvlan key; ipvlan takes \"flag\"")));
    }
    let mode = match keys.mode.as_str() {
        "" => IpvlanMode::L2,
        m => LinkMode::from_str(m).ok().and_then(LinkMode::ipvlan).ok_or_else(|| {
            CniError::config(format!("unknown ipvlan mode {m:?}; expected l2, l3, l3s"))
        })?,
    };
    let flag = match keys.flag.as_str() {
        "" => IpvlanFlag::Bridge,
        f => IpvlanFlag::from_str(f).map_err(|e| CniError::config(e.to_string()))?,
    };
    Ok(KindConf::Ipvlan { mode, flag })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(family: Family, keys: &str, cni_args: &str) -> Result<LinkConf> {
        let json = format!(r#"{{"cniVersion":"1.1.0","name":"n","type":"t"{keys}}}"#);
        let c = NetConf::parse(json.into_bytes()).unwrap();
        let env = CallEnv::from_vars(&[("CNI_ARGS", cni_args.to_string())]).unwrap();
        LinkConf::parse(family, &c, &env)
    }

    #[test]
    fn chained_ipvlan_takes_the_previous_interface_as_master() {
        let chained = |prev: &str, ifname: &str| {
            let json = format!(
                r#"{{"cniVersion":"1.1.0","name":"n","type":"t","prevResult":{{"cniVersion":"1.1.0",{prev}}}}}"#
            );
            let c = NetConf::parse(json.into_bytes()).unwrap();
            let env = CallEnv::from_vars(&[("CNI_IFNAME", ifname.to_string())]).unwrap();
            LinkConf::parse(Family::Ipvlan, &c, &env)
        };
        let one = r#""interfaces":[{"name":"eth0","sandbox":"/run/netns/c"}]"#;
        let c = chained(one, "ipv0").unwrap();
        assert_eq!(
            (c.master.as_deref(), c.chained, c.link_in_container),
            (Some("eth0"), true, true)
        );
        // CHECK's prevResult lists the ipvlan itself too, and host-side interfaces don't count.
        let check = r#""interfaces":[{"name":"veth1"},{"name":"eth0","sandbox":"/c"},{"name":"ipv0","sandbox":"/c"}]"#;
        assert_eq!(chained(check, "ipv0").unwrap().master.as_deref(), Some("eth0"));
        let two = r#""interfaces":[{"name":"a","sandbox":"/c"},{"name":"b","sandbox":"/c"}]"#;
        assert!(chained(two, "ipv0").unwrap_err().msg.contains("exactly one interface"));
        // macvlan has no chained mode: no master means the default route's interface.
        let json = format!(
            r#"{{"cniVersion":"1.1.0","name":"n","type":"t","prevResult":{{"cniVersion":"1.1.0",{one}}}}}"#
        );
        let c = NetConf::parse(json.into_bytes()).unwrap();
        let m = LinkConf::parse(Family::Macvlan, &c, &CallEnv::default()).unwrap();
        assert_eq!((m.master, m.chained), (None, false));
    }

    #[test]
    fn reference_macvlan_keys() {
        let c = conf(
            Family::Macvlan,
            r#","master":"eth0","mode":"vepa","mtu":1400,"mac":"02:00:00:00:00:09","linkInContainer":true,"bcqueuelen":100"#,
            "",
        )
        .unwrap();
        assert_eq!(c.master.as_deref(), Some("eth0"));
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:09");
        assert!(c.link_in_container);
        assert!(matches!(
            c.kind,
            KindConf::Macvlan { mode: MacvlanMode::Vepa, bcqueuelen: Some(100), .. }
        ));
        // Defaults: bridge mode, master from the default route, the master's MTU.
        let c = conf(Family::Macvlan, "", "").unwrap();
        assert_eq!(c.master, None);
        assert_eq!(c.mtu, None);
        assert_eq!(c.driver, Driver::Macvlan);
        assert!(matches!(c.kind, KindConf::Macvlan { mode: MacvlanMode::Bridge, .. }));
    }

    #[test]
    fn nicslice_macvlan_keys() {
        let c = conf(
            Family::Macvlan,
            r#","master":"eth0","mode":"source","flags":["nodst"],"sourceMacs":["02:00:00:00:00:01"],"bclim":-1,"tap":true,"vlan":50,"noDefaultRoute":true"#,
            "",
        )
        .unwrap();
        assert_eq!(c.driver, Driver::Macvtap);
        assert_eq!(c.parent_name("eth0"), "eth0.50");
        assert!(c.no_default_route);
        let KindConf::Macvlan { flags, source_macs, bclim, .. } = c.kind else { panic!() };
        assert!(flags.nodst);
        assert_eq!(source_macs.len(), 1);
        assert_eq!(bclim, Some(-1));
        let c = conf(Family::Macvlan, r#","mode":"passthru","flags":"nopromisc""#, "").unwrap();
        assert!(matches!(
            c.kind,
            KindConf::Macvlan { flags: MacvlanFlags { nopromisc: true, .. }, .. }
        ));
    }

    #[test]
    fn null_keys_mean_unset() {
        let keys = r#","master":null,"mode":null,"mtu":null,"mac":null,"linkInContainer":null,"tap":null,"noDefaultRoute":null,"flags":null,"flag":null,"sourceMacs":null,"bcqueuelen":null,"bclim":null,"vlan":null"#;
        let c = conf(Family::Macvlan, keys, "").unwrap();
        assert_eq!(c, conf(Family::Macvlan, "", "").unwrap());
        let c = conf(Family::Ipvlan, keys, "").unwrap();
        assert_eq!(c, conf(Family::Ipvlan, "", "").unwrap());
    }

    #[test]
    fn mac_precedence() {
        let c = conf(
            Family::Macvlan,
            r#","mac":"02:00:00:00:00:01""#,
            "IgnoreUnknown=1;MAC=02:00:00:00:00:02",
        )
        .unwrap();
        assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:02");
        let c = conf(
            Family::Macvlan,
            r#","runtimeConfig":{"mac":"02:00:00:00:00:03"}"#,
            "MAC=02:00:00:00:00:02",
        )
        .unwrap();
        assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:03");
    }

    #[test]
    fn bad_macvlan_configs() {
        for (keys, needle) in [
            (r#","mode":"bridgy""#, "macvlan mode"),
            (r#","mtu":-1"#, "MTU"),
            (r#","mtu":70000"#, "MTU"),
            (r#","mac":"01:00:5e:00:00:01""#, "mac"),
            (r#","mac":"zz""#, "mac"),
            (r#","flags":["nodst"]"#, "only applies to source mode"),
            (r#","flags":["loud"]"#, "macvlan flag"),
            (r#","sourceMacs":["02:00:00:00:00:01"]"#, "source only"),
            (r#","mode":"passthru","bcqueuelen":5"#, "passthru"),
            (r#","mode":"passthru","bclim":5"#, "does not apply to passthru mode"),
            (r#","flag":"private""#, "ipvlan key"),
            (r#","vlan":4095"#, "vlan"),
            (r#","mode":"source","sourceMacs":["01:00:5e:00:00:01"]"#, "cannot be listed"),
            (r#","master":7"#, "configuration"),
            (r#","mtu":"1400""#, "configuration"),
            (r#","tap":"yes""#, "configuration"),
            (r#","linkInContainer":1"#, "configuration"),
            (r#","flags":7"#, "configuration"),
        ] {
            let e = conf(Family::Macvlan, keys, "").unwrap_err();
            assert_eq!(e.code, crate::error::Code::InvalidConfig, "{keys}");
            assert!(e.msg.contains(needle), "{keys}: {}", e.msg);
        }
        let e = conf(Family::Macvlan, "", "MAC=nope").unwrap_err();
        assert!(e.msg.contains("CNI_ARGS MAC"));
    }

    #[test]
    fn ipvlan_keys() {
        let c = conf(
            Family::Ipvlan,
            r#","master":"eth0","mode":"l3s","flag":"private","mtu":1400"#,
            "",
        )
        .unwrap();
        assert_eq!(c.kind, KindConf::Ipvlan { mode: IpvlanMode::L3s, flag: IpvlanFlag::Private });
        assert_eq!(c.driver, Driver::Ipvlan);
        let c = conf(Family::Ipvlan, r#","tap":true"#, "").unwrap();
        assert_eq!(c.driver, Driver::Ipvtap);
        assert_eq!(c.kind, KindConf::Ipvlan { mode: IpvlanMode::L2, flag: IpvlanFlag::Bridge });
        for (keys, needle) in [
            (r#","mode":"bridge""#, "ipvlan mode"),
            (r#","flag":"loud""#, "ipvlan flag"),
            (r#","flags":["nodst"]"#, "macvlan key"),
            (r#","mac":"02:00:00:00:00:01""#, "share the master's MAC"),
        ] {
            let e = conf(Family::Ipvlan, keys, "").unwrap_err();
            assert!(e.msg.contains(needle), "{keys}: {}", e.msg);
        }
    }
}
