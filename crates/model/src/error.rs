//! The one error type of the model layer: every message says what is wrong and,
//! where there is one, what to do about it.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidIfName { name: String, reason: &'static str },
    #[error("invalid MAC address {0:?}: expected six hex bytes like 02:42:c0:a8:00:0c")]
    InvalidMac(String),
    #[error("MAC address {0} is not usable for an interface: {1}")]
    UnusableMac(String, &'static str),
    #[error("unknown {what} {value:?}; expected one of: {expected}")]
    UnknownValue { what: &'static str, value: String, expected: &'static str },
    #[error("{0}")]
    Invalid(String),
}
