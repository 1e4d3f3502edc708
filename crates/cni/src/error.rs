//! `CniError`: every failure of a plugin call, with the CNI error code the
//! spec assigns (1 to 11, 50 and 51) or one of nicslice's own (100 and up),
//! and its rendering as the spec's error JSON. Nothing here prints.

use serde::Serialize;
use thiserror::Error;

/// The spec's well-known codes (1 to 11, 50, 51) and nicslice's own (100 to 104).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    IncompatibleVersion,
    UnsupportedField,
    UnknownContainer,
    InvalidEnvironment,
    Io,
    Decode,
    InvalidConfig,
    TryAgainLater,
    /// STATUS: the plugin cannot serve ADD now.
    NotAvailable,
    /// STATUS: not available, and existing attachments may lose connectivity.
    NotAvailableLimited,
    /// The kernel refused a request (the message says which and why).
    Kernel,
    /// The address range has no free address left.
    PoolExhausted,
    /// The address asked for is taken, or the attachment already has one.
    AddressInUse,
    /// The lease database failed.
    Store,
    /// The delegated IPAM plugin failed or answered nonsense.
    Ipam,
    /// A code some other plugin chose (the reference plugins use 999).
    Other(u32),
}

impl Code {
    /// The codes with a name, for mapping numbers back.
    pub const NAMED: [Code; 15] = [
        Code::IncompatibleVersion,
        Code::UnsupportedField,
        Code::UnknownContainer,
        Code::InvalidEnvironment,
        Code::Io,
        Code::Decode,
        Code::InvalidConfig,
        Code::TryAgainLater,
        Code::NotAvailable,
        Code::NotAvailableLimited,
        Code::Kernel,
        Code::PoolExhausted,
        Code::AddressInUse,
        Code::Store,
        Code::Ipam,
    ];

    pub fn number(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::UnknownContainer => 3,
            Code::InvalidEnvironment => 4,
            Code::Io => 5,
            Code::Decode => 6,
            Code::InvalidConfig => 7,
            Code::TryAgainLater => 11,
            Code::NotAvailable => 50,
            Code::NotAvailableLimited => 51,
            Code::Kernel => 100,
            Code::PoolExhausted => 101,
            Code::AddressInUse => 102,
            Code::Store => 103,
            Code::Ipam => 104,
            Code::Other(n) => n,
        }
    }

    pub fn from_number(n: u32) -> Code {
        Code::NAMED.into_iter().find(|c| c.number() == n).unwrap_or(Code::Other(n))
    }
}

/// One failed call: a code, one line of message, optional details.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{msg}")]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    code: u32,
    msg: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    details: &'a str,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> CniError {
        CniError { code, msg: msg.into(), details: String::new() }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    pub fn config(msg: impl Into<String>) -> CniError {
        CniError::new(Code::InvalidConfig, msg)
    }

    pub fn env(msg: impl Into<String>) -> CniError {
        CniError::new(Code::InvalidEnvironment, msg)
    }

    pub fn code_number(&self) -> u32 {
        self.code.number()
    }

    /// The spec's error JSON, tagged with the version the call used.
    pub fn to_json(&self, cni_version: &str) -> String {
        let json = ErrorJson {
            cni_version,
            code: self.code_number(),
            msg: &self.msg,
            details: &self.details,
        };
        serde_json::to_string(&json).unwrap_or_else(|_| {
            format!(r#"{{"cniVersion":"{cni_version}","code":{},"msg":"error"}}"#, json.code)
        })
    }
}

impl From<nicslice_kernel::KernelError> for CniError {
    fn from(e: nicslice_kernel::KernelError) -> CniError {
        CniError::new(Code::Kernel, chain(&e))
    }
}

impl From<nicslice_store::StoreError> for CniError {
    fn from(e: nicslice_store::StoreError) -> CniError {
        let code = match &e {
            nicslice_store::StoreError::Busy { .. } => Code::TryAgainLater,
            // The fleet pool: etcd did not answer, or every address of the
            // pool is held (blocks of hosts gone come back after their TTL).
            nicslice_store::StoreError::Etcd(_) => Code::TryAgainLater,
            nicslice_store::StoreError::TooLong { .. } => Code::InvalidConfig,
            nicslice_store::StoreError::Model(m) => return m.clone().into(),
            _ => Code::Store,
        };
        CniError::new(code, chain(&e))
    }
}

impl From<nicslice_model::ModelError> for CniError {
    fn from(e: nicslice_model::ModelError) -> CniError {
        use nicslice_model::ModelError as M;
        let code = match &e {
            M::PoolExhausted { .. } => Code::PoolExhausted,
            M::AddressInUse { .. } => Code::AddressInUse,
            _ => Code::InvalidConfig,
        };
        CniError::new(code, chain(&e))
    }
}

impl From<nicslice_engine::EngineError> for CniError {
    fn from(e: nicslice_engine::EngineError) -> CniError {
        use nicslice_engine::EngineError as E;
        let code = match e {
            E::Model(m) => return m.into(),
            E::Store(s) => return s.into(),
            E::Invalid(_) | E::NotFound(_) => Code::InvalidConfig,
            E::PoolExhausted(_) => Code::PoolExhausted,
            E::AddressInUse(_) => Code::AddressInUse,
            _ => Code::Kernel,
        };
        CniError::new(code, chain(&e))
    }
}

/// The error and its causes on one line, outermost first, without repeats.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

pub type Result<T, E = CniError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_spec_fields() {
        let e = CniError::config("bad master").with_details("eth9 not found");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.1.0")).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["code"], 7);
        assert_eq!(v["msg"], "bad master");
        assert_eq!(v["details"], "eth9 not found");
        let v: serde_json::Value =
            serde_json::from_str(&CniError::env("x").to_json("0.3.1")).unwrap();
        assert!(v.get("details").is_none());
        assert_eq!(v["code"], 4);
    }
}
