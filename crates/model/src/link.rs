//! Link-level vocabulary shared by every layer: drivers, macvlan modes and flags,
//! interface names and MAC addresses, with their parsing and validation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// The kernel driver a network's endpoints are made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    Macvlan,
    Macvtap,
    Ipvlan,
    Ipvtap,
}

impl Driver {
    pub const ALL: [Driver; 4] = [Driver::Macvlan, Driver::Macvtap, Driver::Ipvlan, Driver::Ipvtap];

    /// The kernel's `IFLA_INFO_KIND` string.
    pub fn kind(self) -> &'static str {
        match self {
            Driver::Macvlan => "macvlan",
            Driver::Macvtap => "macvtap",
            Driver::Ipvlan => "ipvlan",
            Driver::Ipvtap => "ipvtap",
        }
    }

    /// ipvlan or ipvtap: children share the parent's MAC, mode and flag.
    pub fn is_ipvlan(self) -> bool {
        matches!(self, Driver::Ipvlan | Driver::Ipvtap)
    }

    /// macvtap or ipvtap: each child has a tap character device.
    pub fn has_tap(self) -> bool {
        matches!(self, Driver::Macvtap | Driver::Ipvtap)
    }

    /// The mode a network gets when none is asked for.
    pub fn default_mode(self) -> LinkMode {
        if self.is_ipvlan() {
            LinkMode::Ipvlan(IpvlanMode::L2)
        } else {
            LinkMode::Macvlan(MacvlanMode::Bridge)
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

impl FromStr for Driver {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Driver::ALL.into_iter().find(|d| d.kind() == s).ok_or_else(|| ModelError::UnknownValue {
            what: "driver",
            value: s.to_string(),
            expected: "macvlan, macvtap, ipvlan, ipvtap",
        })
    }
}

/// A macvlan/macvtap mode. The kernel's default when none is sent is VEPA, so
/// nicslice always sends one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MacvlanMode {
    Private,
    Vepa,
    Bridge,
    Passthru,
    Source,
}

impl MacvlanMode {
    pub const ALL: [MacvlanMode; 5] = [
        MacvlanMode::Bridge,
        MacvlanMode::Vepa,
        MacvlanMode::Private,
        MacvlanMode::Passthru,
        MacvlanMode::Source,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MacvlanMode::Private => "private",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Passthru => "passthru",
            MacvlanMode::Source => "source",
        }
    }

    /// The value of `IFLA_MACVLAN_MODE`.
    pub fn kernel_value(self) -> u32 {
        match self {
            MacvlanMode::Private => 1,
            MacvlanMode::Vepa => 2,
            MacvlanMode::Bridge => 4,
            MacvlanMode::Passthru => 8,
            MacvlanMode::Source => 16,
        }
    }

    pub fn from_kernel_value(v: u32) -> Option<Self> {
        MacvlanMode::ALL.into_iter().find(|m| m.kernel_value() == v)
    }
}

impl fmt::Display for MacvlanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MacvlanMode {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MacvlanMode::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            ModelError::UnknownValue {
                what: "macvlan mode",
                value: s.to_string(),
                expected: "bridge, vepa, private, passthru, source",
            }
        })
    }
}

/// An ipvlan port mode (`IFLA_IPVLAN_MODE`). It belongs to the parent: the
/// last child created sets it for all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpvlanMode {
    #[default]
    L2,
    L3,
    L3s,
}

impl IpvlanMode {
    pub const ALL: [IpvlanMode; 3] = [IpvlanMode::L2, IpvlanMode::L3, IpvlanMode::L3s];

    pub fn as_str(self) -> &'static str {
        match self {
            IpvlanMode::L2 => "l2",
            IpvlanMode::L3 => "l3",
            IpvlanMode::L3s => "l3s",
        }
    }

    /// The value of `IFLA_IPVLAN_MODE`.
    pub fn kernel_value(self) -> u16 {
        match self {
            IpvlanMode::L2 => 0,
            IpvlanMode::L3 => 1,
            IpvlanMode::L3s => 2,
        }
    }
}

impl fmt::Display for IpvlanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ipvlan port flag (`IFLA_IPVLAN_FLAGS`: bridge is no flag). Like the
/// mode, it belongs to the parent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpvlanFlag {
    #[default]
    Bridge,
    Private,
    Vepa,
}

impl IpvlanFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            IpvlanFlag::Bridge => "bridge",
            IpvlanFlag::Private => "private",
            IpvlanFlag::Vepa => "vepa",
        }
    }

    pub fn kernel_value(self) -> u16 {
        match self {
            IpvlanFlag::Bridge => 0,
            IpvlanFlag::Private => 1,
            IpvlanFlag::Vepa => 2,
        }
    }

    pub fn is_bridge(&self) -> bool {
        *self == IpvlanFlag::Bridge
    }
}

impl fmt::Display for IpvlanFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IpvlanFlag {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bridge" => Ok(IpvlanFlag::Bridge),
            "private" => Ok(IpvlanFlag::Private),
            "vepa" => Ok(IpvlanFlag::Vepa),
            _ => Err(ModelError::UnknownValue {
                what: "ipvlan flag",
                value: s.to_string(),
                expected: "bridge, private, vepa",
            }),
        }
    }
}

/// A network's mode: a macvlan mode for macvlan/macvtap, an ipvlan mode for
/// ipvlan/ipvtap. Written as the kernel's own word (`bridge`, `l3`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LinkMode {
    Macvlan(MacvlanMode),
    Ipvlan(IpvlanMode),
}

impl LinkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkMode::Macvlan(m) => m.as_str(),
            LinkMode::Ipvlan(m) => m.as_str(),
        }
    }

    pub fn macvlan(self) -> Option<MacvlanMode> {
        match self {
            LinkMode::Macvlan(m) => Some(m),
            LinkMode::Ipvlan(_) => None,
        }
    }

    pub fn ipvlan(self) -> Option<IpvlanMode> {
        match self {
            LinkMode::Ipvlan(m) => Some(m),
            LinkMode::Macvlan(_) => None,
        }
    }

    /// Whether this mode is one `driver` has.
    pub fn fits(self, driver: Driver) -> bool {
        matches!(self, LinkMode::Ipvlan(_)) == driver.is_ipvlan()
    }
}

impl PartialEq<MacvlanMode> for LinkMode {
    fn eq(&self, other: &MacvlanMode) -> bool {
        *self == LinkMode::Macvlan(*other)
    }
}

impl From<MacvlanMode> for LinkMode {
    fn from(m: MacvlanMode) -> Self {
        LinkMode::Macvlan(m)
    }
}

impl From<IpvlanMode> for LinkMode {
    fn from(m: IpvlanMode) -> Self {
        LinkMode::Ipvlan(m)
    }
}

impl fmt::Display for LinkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LinkMode {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(m) = MacvlanMode::ALL.into_iter().find(|m| m.as_str() == s) {
            return Ok(LinkMode::Macvlan(m));
        }
        IpvlanMode::ALL.into_iter().find(|m| m.as_str() == s).map(LinkMode::Ipvlan).ok_or_else(
            || ModelError::UnknownValue {
                what: "mode",
                value: s.to_string(),
                expected: "bridge, vepa, private, passthru, source (macvlan); l2, l3, l3s (ipvlan)",
            },
        )
    }
}

impl TryFrom<String> for LinkMode {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<LinkMode> for String {
    fn from(m: LinkMode) -> String {
        m.as_str().to_string()
    }
}

/// macvlan flags (`IFLA_MACVLAN_FLAGS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MacvlanFlags {
    /// Do not force the parent into promiscuous mode (passthru only).
    #[serde(default)]
    pub nopromisc: bool,
    /// Source mode: frames from listed MACs go only to this child.
    #[serde(default)]
    pub nodst: bool,
}

impl MacvlanFlags {
    pub fn kernel_value(self) -> u16 {
        (self.nopromisc as u16) | ((self.nodst as u16) << 1)
    }

    pub fn from_kernel_value(v: u16) -> Self {
        MacvlanFlags { nopromisc: v & 1 != 0, nodst: v & 2 != 0 }
    }

    /// Sets one flag by its name as `ip link` spells it.
    pub fn set_by_name(&mut self, name: &str) -> Result<(), ModelError> {
        match name {
            "nopromisc" => self.nopromisc = true,
            "nodst" => self.nodst = true,
            _ => {
                return Err(ModelError::UnknownValue {
                    what: "macvlan flag",
                    value: name.to_string(),
                    expected: "nopromisc, nodst",
                });
            }
        }
        Ok(())
    }

    pub fn names(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.nopromisc {
            v.push("nopromisc");
        }
        if self.nodst {
            v.push("nodst");
        }
        v
    }
}

/// A Linux interface name: 1 to 15 bytes, no `/`, `:` or whitespace, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(String);

impl IfName {
    /// IFNAMSIZ is 16 including the terminating NUL.
    pub const MAX_LEN: usize = 15;

    pub fn new(name: &str) -> Result<Self, ModelError> {
        let bad = |reason| Err(ModelError::InvalidIfName { name: name.to_string(), reason });
        if name.is_empty() {
            return bad("it is empty");
        }
        if name.len() > Self::MAX_LEN {
            return bad("it is longer than 15 bytes");
        }
        if name == "." || name == ".." {
            return bad("`.` and `..` are reserved");
        }
        if name.contains('/') || name.contains(':') || name.chars().any(char::is_whitespace) {
            return bad("it may not contain `/`, `:` or whitespace");
        }
        if name.chars().any(|c| c.is_control()) {
            return bad("it may not contain control characters");
        }
        Ok(IfName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for IfName {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IfName::new(s)
    }
}

impl TryFrom<String> for IfName {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        IfName::new(&s)
    }
}

impl From<IfName> for String {
    fn from(n: IfName) -> String {
        n.0
    }
}

/// A 48-bit Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A locally administered unicast address made from six random bytes
    /// (the caller supplies the randomness; the model does no I/O).
    pub fn local_from_random(mut bytes: [u8; 6]) -> Self {
        bytes[0] = (bytes[0] & 0xfc) | 0x02;
        MacAddr(bytes)
    }

    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 != 0
    }

    pub fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }

    /// Refuses addresses no interface may carry (multicast, broadcast, all zero).
    pub fn ensure_unicast(self) -> Result<Self, ModelError> {
        if self.is_zero() {
            return Err(ModelError::UnusableMac(self.to_string(), "it is all zeros"));
        }
        if self.is_multicast() {
            return Err(ModelError::UnusableMac(
                self.to_string(),
                "it is a multicast or broadcast address (lowest bit of the first byte set)",
            ));
        }
        Ok(self)
    }
}

impl MacAddr {
    /// Refuses what a source-mode list cannot hold: it lists the senders
    /// whose frames a child takes, and a sender's address is unicast (the
    /// kernel answers "Cannot assign requested address" otherwise).
    pub fn ensure_listable_source(self) -> Result<Self, ModelError> {
        if self.is_multicast() {
            return Err(ModelError::UnlistableSourceMac(
                self.to_string(),
                "multicast and broadcast MACs cannot be listed; a source-mode list holds the \
                 unicast addresses of senders",
            ));
        }
        if self.is_zero() {
            return Err(ModelError::UnlistableSourceMac(
                self.to_string(),
                "the all-zero MAC is no sender's address",
            ));
        }
        Ok(self)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl FromStr for MacAddr {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ModelError::InvalidMac(s.to_string());
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(err());
        }
        let mut out = [0u8; 6];
        for (slot, part) in out.iter_mut().zip(parts) {
            if part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        Ok(MacAddr(out))
    }
}

impl TryFrom<String> for MacAddr {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_rules() {
        assert!(IfName::new("eth0").is_ok());
        assert!(IfName::new("abcdefghijklmno").is_ok());
        assert!(IfName::new("abcdefghijklmnop").is_err());
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "a\tb"] {
            assert!(IfName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn mac_round_trip_and_rules() {
        let m: MacAddr = "02:42:C0:a8:8e:0c".parse().unwrap();
        assert_eq!(m.to_string(), "02:42:c0:a8:8e:0c");
        assert!("02:42:c0:a8:8e".parse::<MacAddr>().is_err());
        assert!("02:42:c0:a8:8e:zz".parse::<MacAddr>().is_err());
        assert!("ff:ff:ff:ff:ff:ff".parse::<MacAddr>().unwrap().ensure_unicast().is_err());
        assert!("00:00:00:00:00:00".parse::<MacAddr>().unwrap().ensure_unicast().is_err());
        let local = MacAddr::local_from_random([0xff; 6]);
        assert_eq!(local.0[0], 0xfe);
        assert!(local.ensure_unicast().is_ok());
        assert!(local.ensure_listable_source().is_ok());
        let group = "01:00:5e:00:00:01".parse::<MacAddr>().unwrap().ensure_listable_source();
        assert!(
            group
                .unwrap_err()
                .to_string()
                .contains("multicast and broadcast MACs cannot be listed")
        );
    }

    #[test]
    fn link_modes_parse_by_family() {
        assert_eq!("bridge".parse::<LinkMode>().unwrap(), LinkMode::Macvlan(MacvlanMode::Bridge));
        assert_eq!("l3s".parse::<LinkMode>().unwrap(), LinkMode::Ipvlan(IpvlanMode::L3s));
        assert!("l4".parse::<LinkMode>().is_err());
        assert!(LinkMode::Ipvlan(IpvlanMode::L3).fits(Driver::Ipvtap));
        assert!(!LinkMode::Ipvlan(IpvlanMode::L3).fits(Driver::Macvlan));
        assert!(!LinkMode::Macvlan(MacvlanMode::Vepa).fits(Driver::Ipvlan));
        let json = serde_json::to_string(&LinkMode::Ipvlan(IpvlanMode::L2)).unwrap();
        assert_eq!(json, "\"l2\"");
        assert_eq!(IpvlanFlag::Vepa.kernel_value(), 2);
        assert_eq!(IpvlanMode::L3s.kernel_value(), 2);
    }

    #[test]
    fn modes_and_flags_match_the_kernel() {
        for m in MacvlanMode::ALL {
            assert_eq!(MacvlanMode::from_kernel_value(m.kernel_value()), Some(m));
            assert_eq!(m.as_str().parse::<MacvlanMode>().unwrap(), m);
        }
        assert_eq!(MacvlanMode::Bridge.kernel_value(), 4);
        let f = MacvlanFlags { nopromisc: true, nodst: true };
        assert_eq!(f.kernel_value(), 3);
        assert_eq!(
            MacvlanFlags::from_kernel_value(2),
            MacvlanFlags { nopromisc: false, nodst: true }
        );
    }
}
