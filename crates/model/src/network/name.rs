//! `NetworkName`: the user-facing name of a network, checked on construction and
//! on deserialization, so every `NetworkName` in the program is valid.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// 1 to 64 characters: an ASCII letter or digit, then letters, digits, `_`, `.`, `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NetworkName(String);

impl NetworkName {
    pub const MAX_LEN: usize = 64;

    pub fn new(name: &str) -> Result<Self, ModelError> {
        let bad = |reason| Err(ModelError::InvalidNetworkName { name: name.to_string(), reason });
        let mut chars = name.chars();
        let Some(first) = chars.next() else {
            return bad("it is empty");
        };
        if name.chars().count() > Self::MAX_LEN {
            return bad("it is longer than 64 characters");
        }
        if !first.is_ascii_alphanumeric() {
            return bad("it must start with an ASCII letter or digit");
        }
        if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return bad("only ASCII letters, digits, `_`, `.` and `-` are allowed");
        }
        Ok(NetworkName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NetworkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NetworkName {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NetworkName::new(s)
    }
}

impl TryFrom<String> for NetworkName {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        NetworkName::new(&s)
    }
}

impl From<NetworkName> for String {
    fn from(n: NetworkName) -> String {
        n.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_docker_style_names() {
        for good in ["lan", "a", "9", "my_net.v2-b", &"x".repeat(64)] {
            assert_eq!(NetworkName::new(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn refuses_bad_names_with_a_reason() {
        for bad in ["", "-lan", "_lan", ".lan", "la n", "lan/x", "lan:1", "é", &"x".repeat(65)] {
            let err = NetworkName::new(bad).unwrap_err();
            assert!(matches!(err, ModelError::InvalidNetworkName { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn serde_checks_the_name() {
        let n: NetworkName = serde_json::from_str("\"lan\"").unwrap();
        assert_eq!(n.as_str(), "lan");
        assert!(serde_json::from_str::<NetworkName>("\"-bad\"").is_err());
    }
}
