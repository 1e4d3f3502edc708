//! The call's environment: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`,
//! `CNI_IFNAME`, `CNI_ARGS` and `CNI_PATH`, read once into `CallEnv` and
//! checked per verb (the spec requires different variables for each).

use std::collections::BTreeMap;
use std::path::PathBuf;

use nicslice_model::IfName;

use crate::error::{CniError, Result};

/// The longest container ID (and network name) an attachment can have: the
/// lease book records each name in at most 255 bytes (`nicslice_store`'s
/// length-prefixed keys), so ADD refuses a longer one and nothing can have
/// been made for it.
pub const MAX_NAME_LEN: usize = 255;

/// The spec's verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Verb {
    pub fn parse(s: &str) -> Result<Verb> {
        Ok(match s {
            "ADD" => Verb::Add,
            "DEL" => Verb::Del,
            "CHECK" => Verb::Check,
            "STATUS" => Verb::Status,
            "GC" => Verb::Gc,
            "VERSION" => Verb::Version,
            "" => return Err(CniError::env("CNI_COMMAND is not set")),
            other => {
                return Err(CniError::env(format!(
                    "unknown CNI_COMMAND {other:?}; expected ADD, DEL, CHECK, STATUS, GC or VERSION"
                )));
            }
        })
    }
}

/// Everything the runtime passed in the environment.
#[derive(Debug, Clone, Default)]
pub struct CallEnv {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS`, as `K=V;K=V` pairs in order.
    pub args: Vec<(String, String)>,
    /// `CNI_ARGS` as received, for delegation.
    pub args_raw: String,
    pub path: Vec<PathBuf>,
}

impl CallEnv {
    /// Reads the process environment.
    pub fn from_process() -> Result<CallEnv> {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        CallEnv::from_vars(&[
            ("CNI_COMMAND", var("CNI_COMMAND")),
            ("CNI_CONTAINERID", var("CNI_CONTAINERID")),
            ("CNI_NETNS", var("CNI_NETNS")),
            ("CNI_IFNAME", var("CNI_IFNAME")),
            ("CNI_ARGS", var("CNI_ARGS")),
            ("CNI_PATH", var("CNI_PATH")),
        ])
    }

    /// Builds from name/value pairs (tests pass their own).
    pub fn from_vars(vars: &[(&str, String)]) -> Result<CallEnv> {
        let map: BTreeMap<&str, &str> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let get = |k: &str| map.get(k).copied().unwrap_or("").to_string();
        Ok(CallEnv {
            command: get("CNI_COMMAND"),
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            args: parse_args(&get("CNI_ARGS"))?,
            args_raw: get("CNI_ARGS"),
            path: std::env::split_paths(&get("CNI_PATH"))
                .filter(|p| !p.as_os_str().is_empty())
                .collect(),
        })
    }

    /// Checks the variables `verb` requires (spec "Parameters" per operation).
    pub fn require_for(&self, verb: Verb) -> Result<()> {
        let need = |name: &str, value: &str| {
            if value.is_empty() {
                Err(CniError::env(format!("{name} is required for {verb:?} but is not set")))
            } else {
                Ok(())
            }
        };
        match verb {
            Verb::Add | Verb::Check => {
                need("CNI_CONTAINERID", &self.container_id)?;
                need("CNI_NETNS", &self.netns)?;
                need("CNI_IFNAME", &self.ifname)?;
                self.check_container_id()?;
                if self.container_id.len() > MAX_NAME_LEN {
                    return Err(CniError::env(format!(
                        "CNI_CONTAINERID is {} bytes long; at most {MAX_NAME_LEN} are supported",
                        self.container_id.len()
                    )));
                }
                self.valid_ifname().map(|_| ())
            }
            Verb::Del => {
                need("CNI_CONTAINERID", &self.container_id)?;
                need("CNI_IFNAME", &self.ifname)?;
                self.check_container_id()
            }
            Verb::Status | Verb::Gc | Verb::Version => Ok(()),
        }
    }

    /// Whether a DEL names an attachment no ADD can have made (its container
    /// ID or network name is longer than ADD accepts): such a DEL has
    /// nothing to undo and succeeds at once, as the spec asks of a DEL of
    /// what is gone (a runtime retries a failed DEL for ever).
    pub fn del_of_the_impossible(&self, network_name: &str) -> bool {
        self.container_id.len() > MAX_NAME_LEN || network_name.len() > MAX_NAME_LEN
    }

    /// `CNI_IFNAME` as a Linux interface name, or error code 4.
    pub fn valid_ifname(&self) -> Result<IfName> {
        IfName::new(&self.ifname).map_err(|e| CniError::env(format!("CNI_IFNAME: {e}")))
    }

    /// The spec: alphanumeric, then alphanumeric, `_`, `.` or `-`.
    fn check_container_id(&self) -> Result<()> {
        let mut chars = self.container_id.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if ok {
            Ok(())
        } else {
            Err(CniError::env(format!(
                "CNI_CONTAINERID {:?} is not a valid container ID (letters, digits, _ . -)",
                self.container_id
            )))
        }
    }

    /// The value of `key` in `CNI_ARGS` (the last one wins).
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// `CNI_ARGS`: `K=V` pairs separated by `;`. An item without `=` is an error,
/// as in the reference plugins; unknown keys are ignored (as with their
/// `IgnoreUnknown=1`, which every runtime passes).
pub fn parse_args(s: &str) -> Result<Vec<(String, String)>> {
    s.split(';')
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CniError::env(format!("CNI_ARGS: invalid item {item:?}; expected KEY=VALUE"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    fn env(pairs: &[(&str, &str)]) -> Result<CallEnv> {
        let vars: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        CallEnv::from_vars(&vars)
    }

    #[test]
    fn verbs_and_required_variables() {
        assert_eq!(Verb::parse("GC").unwrap(), Verb::Gc);
        assert_eq!(Verb::parse("add").unwrap_err().code, Code::InvalidEnvironment);
        let e = env(&[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0")]).unwrap();
        assert!(e.require_for(Verb::Del).is_ok());
        let err = e.require_for(Verb::Add).unwrap_err();
        assert_eq!(err.code, Code::InvalidEnvironment);
        assert!(err.msg.contains("CNI_NETNS"));
        assert!(e.require_for(Verb::Status).is_ok());
    }

    #[test]
    fn invalid_names_are_environment_errors() {
        for bad in ["", "a/b", "0123456789abcdef", "..", "with space"] {
            let e =
                env(&[("CNI_CONTAINERID", "c"), ("CNI_NETNS", "/x"), ("CNI_IFNAME", bad)]).unwrap();
            assert_eq!(
                e.require_for(Verb::Add).unwrap_err().code,
                Code::InvalidEnvironment,
                "{bad}"
            );
        }
        let e = env(&[("CNI_CONTAINERID", "-bad"), ("CNI_IFNAME", "eth0")]).unwrap();
        assert_eq!(e.require_for(Verb::Del).unwrap_err().code, Code::InvalidEnvironment);
    }

    #[test]
    fn container_ids_past_the_limit() {
        let long = "c".repeat(MAX_NAME_LEN + 1);
        let at_limit = "c".repeat(MAX_NAME_LEN);
        let call = |id: &str| {
            env(&[("CNI_CONTAINERID", id), ("CNI_NETNS", "/x"), ("CNI_IFNAME", "eth0")]).unwrap()
        };
        assert_eq!(call(&long).require_for(Verb::Add).unwrap_err().code, Code::InvalidEnvironment);
        assert!(call(&long).require_for(Verb::Del).is_ok());
        assert!(call(&long).del_of_the_impossible("n"));
        assert!(call(&at_limit).require_for(Verb::Add).is_ok());
        assert!(!call(&at_limit).del_of_the_impossible("n"));
        assert!(call("c").del_of_the_impossible(&long));
    }

    #[test]
    fn cni_args_parse() {
        let e = env(&[("CNI_ARGS", "IgnoreUnknown=1;IP=10.0.0.5,fd00::5;MAC=02:00:00:00:00:01")])
            .unwrap();
        assert_eq!(e.arg("IP"), Some("10.0.0.5,fd00::5"));
        assert_eq!(e.arg("MAC"), Some("02:00:00:00:00:01"));
        assert_eq!(e.arg("K8S_POD_NAME"), None);
        assert!(env(&[("CNI_ARGS", "novalue")]).is_err());
        let e = env(&[("CNI_PATH", "/opt/cni/bin:/usr/lib/cni")]).unwrap();
        assert_eq!(e.path.len(), 2);
    }
}
