//! CNI spec versions: which ones these plugins speak (0.3.0 to 1.1.0), which
//! verbs each allows, and the VERSION verb's answer.

use std::fmt;

use crate::error::{CniError, Code, Result};

/// A spec version these plugins support, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CniVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl CniVersion {
    pub const ALL: [CniVersion; 5] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Parses a config's `cniVersion`; an empty or missing one means 0.1.0 in
    /// the spec, which these plugins do not speak.
    pub fn parse(s: &str) -> Result<CniVersion> {
        CniVersion::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
            let shown = if s.is_empty() { "(none, meaning 0.1.0)" } else { s };
            CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "incompatible CNI versions; config is {shown:?}, plugin supports {}",
                    supported_list()
                ),
            )
        })
    }

    /// CHECK exists from 0.4.0 on.
    pub fn has_check(self) -> bool {
        self >= CniVersion::V0_4_0
    }

    /// STATUS and GC exist from 1.1.0 on.
    pub fn has_status_and_gc(self) -> bool {
        self >= CniVersion::V1_1_0
    }

    /// Results before 1.0.0 carry `"version"` in each IP config.
    pub fn ips_carry_version(self) -> bool {
        self < CniVersion::V1_0_0
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn supported_list() -> String {
    CniVersion::ALL.map(CniVersion::as_str).join(", ")
}

/// The VERSION verb's answer. `asked` is the version the runtime sent on
/// stdin, echoed when supported (spec 1.1), else the newest.
pub fn version_json(asked: Option<&str>) -> String {
    let echo = asked.and_then(|s| CniVersion::parse(s).ok()).unwrap_or(CniVersion::LATEST);
    serde_json::json!({
        "cniVersion": echo.as_str(),
        "supportedVersions": CniVersion::ALL.map(CniVersion::as_str),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        for v in CniVersion::ALL {
            assert_eq!(CniVersion::parse(v.as_str()).unwrap(), v);
        }
        let e = CniVersion::parse("0.2.0").unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion);
        assert!(e.msg.contains("1.1.0"));
        assert!(CniVersion::parse("").unwrap_err().msg.contains("0.1.0"));
        assert!(!CniVersion::V0_3_1.has_check() && CniVersion::V0_4_0.has_check());
        assert!(!CniVersion::V1_0_0.has_status_and_gc() && CniVersion::V1_1_0.has_status_and_gc());
    }

    #[test]
    fn version_answer_lists_everything() {
        let v: serde_json::Value = serde_json::from_str(&version_json(Some("0.4.0"))).unwrap();
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 5);
        let v: serde_json::Value = serde_json::from_str(&version_json(Some("9.9.9"))).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
    }
}
