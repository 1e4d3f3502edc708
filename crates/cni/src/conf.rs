//! The parts of a network configuration every plugin shares: `cniVersion`,
//! `name`, `type`, `ipam`, `dns`, `prevResult`, `runtimeConfig` and `args`,
//! parsed from stdin. The raw bytes are kept: a delegated IPAM plugin gets
//! the full configuration exactly as the runtime sent it, and a plugin's own
//! keys are read from them (no tree of the whole configuration is built: a
//! one-call process pays for every allocation and every page it touches).

use serde::Deserialize;
use serde_json::Value;
use serde_json::error::Category;

use crate::error::{CniError, Code, Result};
use crate::result::{CniResult, Dns};
use crate::version::CniVersion;

/// What every plugin reads from the configuration.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub version: CniVersion,
    pub name: String,
    pub plugin_type: String,
    /// The `ipam` object; `None` when absent or without a `type` (L2 only).
    pub ipam: Option<Value>,
    pub dns: Dns,
    pub prev_result: Option<CniResult>,
    /// `runtimeConfig.mac`.
    pub runtime_mac: Option<String>,
    /// `runtimeConfig.ips` and `args.cni.ips`, in that order.
    pub requested_ips: Vec<String>,
    /// `args.cni.mac` (the reference plugins' convention for args).
    pub args_mac: Option<String>,
    /// The bytes as received: for delegation, and the plugin-specific keys.
    pub bytes: Vec<u8>,
}

/// The common keys. Every one may be `null`, which means "not given", as it
/// does to the reference plugins (Go's decoder leaves the field unset).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Common {
    #[serde(default)]
    cni_version: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "type")]
    plugin_type: Option<String>,
    #[serde(default)]
    ipam: Option<Value>,
    #[serde(default)]
    dns: Option<Dns>,
    #[serde(default)]
    prev_result: Option<Value>,
    #[serde(default)]
    runtime_config: Option<RuntimeConfig>,
    #[serde(default)]
    args: Option<Args>,
}

#[derive(Deserialize, Default)]
struct RuntimeConfig {
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    ips: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
struct Args {
    #[serde(default)]
    cni: Option<CniArgs>,
}

#[derive(Deserialize, Default)]
struct CniArgs {
    #[serde(default)]
    ips: Option<Vec<String>>,
    #[serde(default)]
    mac: Option<String>,
}

impl NetConf {
    /// Parses stdin. Bad JSON is error 6; a bad version error 1; a missing
    /// name error 7 (so is a key given twice).
    pub fn parse(bytes: Vec<u8>) -> Result<NetConf> {
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(CniError::new(
                Code::Decode,
                "the network configuration is not a JSON object",
            ));
        }
        let common: Common = serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
            Category::Data => CniError::config(format!("network configuration: {e}")),
            _ => {
                CniError::new(Code::Decode, format!("cannot decode the network configuration: {e}"))
            }
        })?;
        let version = CniVersion::parse(common.cni_version.as_deref().unwrap_or_default())?;
        let name = common.name.unwrap_or_default();
        if name.is_empty() {
            return Err(CniError::config("the network configuration has no \"name\""));
        }
        let ipam = common.ipam.map(checked_ipam).transpose()?.flatten();
        let prev_result = common.prev_result.as_ref().map(CniResult::parse).transpose()?;
        let runtime = common.runtime_config.unwrap_or_default();
        let cni_args = common.args.and_then(|a| a.cni).unwrap_or_default();
        let mut requested_ips = runtime.ips.unwrap_or_default();
        requested_ips.extend(cni_args.ips.unwrap_or_default());
        Ok(NetConf {
            version,
            name,
            plugin_type: common.plugin_type.unwrap_or_default(),
            ipam,
            dns: common.dns.unwrap_or_default(),
            prev_result,
            runtime_mac: runtime.mac.filter(|m| !m.is_empty()),
            requested_ips,
            args_mac: cni_args.mac.filter(|m| !m.is_empty()),
            bytes,
        })
    }

    /// The `ipam.type`, if IPAM is configured.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam.as_ref().and_then(|i| i.get("type")).and_then(Value::as_str)
    }

    /// The plugin-specific keys, typed (the others are skipped).
    pub fn specific<T: for<'de> Deserialize<'de>>(&self) -> Result<T> {
        serde_json::from_slice(&self.bytes)
            .map_err(|e| CniError::config(format!("network configuration {:?}: {e}", self.name)))
    }

    /// The whole configuration as a tree (for keys no struct names).
    pub fn tree(&self) -> Result<Value> {
        self.specific()
    }
}

/// The `ipam` value as IPAM to delegate to: an object with a non-empty
/// string `type`. `null`, `{}` or an empty or `null` type mean no IPAM (an
/// interface without addresses, as the reference plugins do); anything else
/// (a string, number, list or boolean, or a `type` that is not a string) is
/// refused, as the reference plugins' decoder refuses it: taken as "no IPAM",
/// it made an interface without the addresses the configuration meant to ask.
fn checked_ipam(ipam: Value) -> Result<Option<Value>> {
    let Value::Object(fields) = &ipam else {
        return Err(CniError::config(format!(
            "\"ipam\" must be an object with a \"type\" (the IPAM plugin), not {}",
            json_kind(&ipam)
        )));
    };
    match fields.get("type") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) if t.is_empty() => Ok(None),
        Some(Value::String(_)) => Ok(Some(ipam)),
        Some(other) => Err(CniError::config(format!(
            "\"ipam.type\" must be a string naming the IPAM plugin, not {}",
            json_kind(other)
        ))),
    }
}

/// For `#[serde(default, deserialize_with = "null_as_default")]`: a key
/// given as `null` reads as if it were absent, as in the reference plugins
/// (Go's decoder leaves a field untouched for `null`).
pub(crate) fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// What kind of JSON value `v` is, for an error message.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Reads only `cniVersion` (for VERSION, and to tag an early error): the
/// other keys are skipped, not built into a tree.
pub fn peek_version(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Peek {
        #[serde(default, rename = "cniVersion")]
        version: Option<String>,
    }
    serde_json::from_slice::<Peek>(bytes).ok()?.version
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<NetConf> {
        NetConf::parse(json.as_bytes().to_vec())
    }

    #[test]
    fn common_keys() {
        let c = parse(
            r#"{"cniVersion":"1.0.0","name":"n","type":"nicslice-macvlan",
                "ipam":{"type":"host-local","subnet":"10.0.0.0/24"},
                "dns":{"nameservers":["1.1.1.1"]},
                "runtimeConfig":{"mac":"02:00:00:00:00:07","ips":["10.0.0.9/24"]},
                "args":{"cni":{"ips":["10.0.0.10"]}}}"#,
        )
        .unwrap();
        assert_eq!(c.version, CniVersion::V1_0_0);
        assert_eq!(c.ipam_type(), Some("host-local"));
        assert_eq!(c.dns.nameservers, vec!["1.1.1.1"]);
        assert_eq!(c.runtime_mac.as_deref(), Some("02:00:00:00:00:07"));
        assert_eq!(c.requested_ips, vec!["10.0.0.9/24", "10.0.0.10"]);
    }

    #[test]
    fn empty_ipam_means_l2_only() {
        let c = parse(r#"{"cniVersion":"0.3.1","name":"n","type":"x","ipam":{}}"#).unwrap();
        assert!(c.ipam.is_none());
    }

    #[test]
    fn errors_have_the_spec_codes() {
        assert_eq!(parse("{nope").unwrap_err().code, Code::Decode);
        assert_eq!(parse("[1]").unwrap_err().code, Code::Decode);
        assert_eq!(parse(" {} trailing").unwrap_err().code, Code::Decode);
        assert_eq!(
            parse(r#"{"cniVersion":"0.2.0","name":"n"}"#).unwrap_err().code,
            Code::IncompatibleVersion
        );
        assert_eq!(parse(r#"{"cniVersion":"1.1.0"}"#).unwrap_err().code, Code::InvalidConfig);
        assert_eq!(
            parse(r#"{"cniVersion":"1.1.0","name":"n","dns":"x"}"#).unwrap_err().code,
            Code::InvalidConfig
        );
        assert_eq!(peek_version(br#"{"cniVersion":"0.4.0"}"#).as_deref(), Some("0.4.0"));
    }

    #[test]
    fn malformed_ipam_and_type_are_config_errors() {
        for bad in [
            r#""ipam":"host-local""#,
            r#""ipam":7"#,
            r#""ipam":["host-local"]"#,
            r#""ipam":true"#,
            r#""ipam":{"type":7}"#,
            r#""ipam":{"type":["x"]}"#,
            r#""type":7"#,
            r#""name":7"#,
            r#""dns":{"nameservers":"1.1.1.1"}"#,
        ] {
            let e = parse(&format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"x",{bad}}}"#))
                .unwrap_err();
            assert_eq!(e.code, Code::InvalidConfig, "{bad}: {}", e.msg);
        }
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","ipam":"host-local"}"#).unwrap_err();
        assert!(e.msg.contains("\"ipam\" must be an object"), "{}", e.msg);
    }

    #[test]
    fn null_means_not_given() {
        let c = parse(
            r#"{"cniVersion":"1.0.0","name":"n","type":null,"ipam":null,"dns":null,
                "prevResult":null,"runtimeConfig":{"mac":null,"ips":null},
                "args":{"cni":{"ips":null,"mac":null}}}"#,
        )
        .unwrap();
        assert!(c.ipam.is_none() && c.plugin_type.is_empty() && c.requested_ips.is_empty());
        let c = parse(r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":null}}"#).unwrap();
        assert!(c.ipam.is_none());
        let c = parse(r#"{"cniVersion":"1.0.0","name":"n","dns":{"nameservers":null}}"#).unwrap();
        assert!(c.dns.is_empty());
        assert_eq!(
            parse(r#"{"cniVersion":"1.0.0","name":null}"#).unwrap_err().code,
            Code::InvalidConfig
        );
    }

    #[test]
    fn prev_result_of_an_older_version_parses() {
        let c = parse(
            r#"{"cniVersion":"0.4.0","name":"n","type":"x","prevResult":{"cniVersion":"0.4.0",
                "interfaces":[{"name":"eth0","sandbox":"/run/netns/a"}],
                "ips":[{"version":"4","address":"10.0.0.2/24","interface":0}]}}"#,
        )
        .unwrap();
        let prev = c.prev_result.unwrap();
        assert_eq!(prev.interfaces[0].name, "eth0");
        assert_eq!(prev.ips[0].address.to_string(), "10.0.0.2/24");
    }
}
