//! The CNI result in its newest form (1.1.0) and its conversion to every
//! version these plugins speak: 1.0.0 drops the 1.1 fields, 0.4.0 and 0.3.x
//! add `"version"` to each IP config. Parsing accepts any of these forms, as
//! a delegated IPAM plugin may answer in any of them.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conf::null_as_default;
use crate::error::{CniError, Code, Result};
use crate::version::CniVersion;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// 1.1.0
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    /// 1.1.0
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    /// 1.1.0
    #[serde(default, rename = "pciID", skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// The address with its prefix length: `10.1.2.3/24`.
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteConfig {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// 1.1.0
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// 1.1.0
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// 1.1.0
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// 1.1.0
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// 1.1.0
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

impl RouteConfig {
    pub fn to(dst: IpNet, gw: Option<IpAddr>) -> RouteConfig {
        RouteConfig { dst, gw, mtu: None, advmss: None, priority: None, table: None, scope: None }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub domain: String,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

impl CniResult {
    /// Parses a result of any supported version (a prevResult or an IPAM answer).
    pub fn parse(value: &Value) -> Result<CniResult> {
        if value.get("ip4").is_some() || value.get("ip6").is_some() {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                "result in the pre-0.3.0 format (ip4/ip6); configure the plugin for cniVersion 0.3.0 or newer",
            ));
        }
        CniResult::deserialize(value)
            .map_err(|e| CniError::new(Code::Decode, format!("cannot decode result: {e}")))
    }

    /// The result as `version` writes it, as text. 1.0.0 and 1.1.0 results
    /// are written straight from the structs, without the `Value` tree of
    /// [`CniResult::to_value`] (a tenth of an ADD's user time went into
    /// building and walking it); the older forms, which add a field, go
    /// through it.
    pub fn to_json(&self, version: CniVersion) -> String {
        if version.ips_carry_version() {
            return self.to_value(version).to_string();
        }
        #[derive(Serialize)]
        struct Tagged<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'static str,
            #[serde(flatten)]
            result: &'a CniResult,
        }
        let older;
        let result = if version < CniVersion::V1_1_0 {
            older = self.without_1_1_fields();
            &older
        } else {
            self
        };
        serde_json::to_string(&Tagged { cni_version: version.as_str(), result }).unwrap_or_default()
    }

    /// A copy without the fields 1.1.0 added (1.0.0's form).
    fn without_1_1_fields(&self) -> CniResult {
        let mut r = self.clone();
        for i in &mut r.interfaces {
            i.mtu = None;
            i.socket_path.clear();
            i.pci_id.clear();
        }
        for route in &mut r.routes {
            *route = RouteConfig::to(route.dst, route.gw);
        }
        r
    }

    /// The result as `version` writes it.
    pub fn to_value(&self, version: CniVersion) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        let Value::Object(map) = &mut v else { return v };
        map.insert("cniVersion".into(), Value::String(version.as_str().into()));
        if version < CniVersion::V1_1_0 {
            strip(map.get_mut("interfaces"), &["mtu", "socketPath", "pciID"]);
            strip(map.get_mut("routes"), &["mtu", "advmss", "priority", "table", "scope"]);
        }
        if version.ips_carry_version()
            && let Some(Value::Array(ips)) = map.get_mut("ips")
        {
            for ip in ips.iter_mut() {
                let family = match ip.get("address").and_then(Value::as_str) {
                    Some(a) if a.contains(':') => "6",
                    _ => "4",
                };
                if let Value::Object(o) = ip {
                    o.insert("version".into(), Value::String(family.into()));
                }
            }
        }
        v
    }
}

fn strip(list: Option<&mut Value>, keys: &[&str]) {
    if let Some(Value::Array(items)) = list {
        for item in items.iter_mut() {
            if let Value::Object(o) = item {
                for k in keys {
                    o.remove(*k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "02:00:00:00:00:01".into(),
                mtu: Some(1500),
                sandbox: "/run/netns/x".into(),
                ..Default::default()
            }],
            ips: vec![
                IpConfig {
                    address: "10.1.2.3/24".parse().unwrap(),
                    gateway: Some("10.1.2.1".parse().unwrap()),
                    interface: Some(0),
                },
                IpConfig {
                    address: "fd00::3/64".parse().unwrap(),
                    gateway: None,
                    interface: Some(0),
                },
            ],
            routes: vec![RouteConfig {
                table: Some(100),
                ..RouteConfig::to("0.0.0.0/0".parse().unwrap(), Some("10.1.2.1".parse().unwrap()))
            }],
            dns: Dns { nameservers: vec!["10.1.2.53".into()], ..Default::default() },
        }
    }

    #[test]
    fn newest_form_keeps_everything() {
        let v = sample().to_value(CniVersion::V1_1_0);
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["interfaces"][0]["mtu"], 1500);
        assert_eq!(v["routes"][0]["table"], 100);
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(v["ips"][0]["address"], "10.1.2.3/24");
        assert_eq!(CniResult::parse(&v).unwrap(), sample());
    }

    #[test]
    fn older_forms_drop_and_add_fields() {
        let v = sample().to_value(CniVersion::V1_0_0);
        assert!(v["interfaces"][0].get("mtu").is_none());
        assert!(v["routes"][0].get("table").is_none());
        let v = sample().to_value(CniVersion::V0_3_1);
        assert_eq!(v["ips"][0]["version"], "4");
        assert_eq!(v["ips"][1]["version"], "6");
        assert_eq!(v["cniVersion"], "0.3.1");
        // An old-form answer parses back (the version key is ignored).
        let back = CniResult::parse(&v).unwrap();
        assert_eq!(back.ips, sample().ips);
    }

    #[test]
    fn the_text_is_the_value_in_every_version() {
        for version in CniVersion::ALL {
            let text: Value = serde_json::from_str(&sample().to_json(version)).unwrap();
            assert_eq!(text, sample().to_value(version), "{version}");
        }
    }

    #[test]
    fn legacy_and_garbage_results_are_refused() {
        let e = CniResult::parse(&serde_json::json!({"ip4": {"ip": "10.0.0.2/24"}})).unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion);
        let e = CniResult::parse(&serde_json::json!({"ips": [{"address": "nope"}]})).unwrap_err();
        assert_eq!(e.code, Code::Decode);
    }
}
