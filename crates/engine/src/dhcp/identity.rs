//! The client identifier an endpoint presents to the DHCP server (option 61).
//!
//! Derived, not random, so that an endpoint attached again (same network,
//! same namespace, same interface name) is the same client and gets its
//! address back, whatever MAC its new link has. In the form RFC 4361 gives
//! (which DHCPv6 will share): type 255, a 4-byte IAID for the endpoint and a
//! DUID for the host. The IAID is a hash of network, namespace and interface;
//! the DUID is DUID-UUID (RFC 6355) made of /etc/machine-id, one per host.
//!
//! This is what makes ipvlan work (seed 001): the children share the parent's
//! MAC, and a server that tells clients apart by MAC would give them all one
//! lease. A user may give an identifier of their own (`--client-id`).

/// FNV-1a, 32 bits: stable across builds and Rust versions (std's hasher
/// promises neither), and collisions among a host's endpoints are what the
/// DUID does not separate, a one-in-four-billion chance per pair.
pub(super) fn fnv1a32(parts: &[&str]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for part in parts {
        for byte in part.bytes().chain([0u8]) {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    hash
}

/// DUID-UUID from the machine id (32 hex digits), or `None` without one.
pub(super) fn host_duid(machine_id: &str) -> Option<Vec<u8>> {
    let hex = machine_id.trim();
    if hex.len() != 32 {
        return None;
    }
    let mut duid = vec![0, 4];
    for i in (0..32).step_by(2) {
        duid.push(u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()?);
    }
    Some(duid)
}

/// The endpoint's IAID: its DHCPv4 client identifier's, and its DHCPv6
/// identity association's.
pub(super) fn iaid(network: &str, netns: &str, ifname: &str) -> u32 {
    fnv1a32(&[network, netns, ifname])
}

/// The endpoint's derived identifier: 255, IAID, DUID.
pub fn derived(network: &str, netns: &str, ifname: &str) -> Vec<u8> {
    let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    derived_with(network, netns, ifname, &machine_id)
}

fn derived_with(network: &str, netns: &str, ifname: &str, machine_id: &str) -> Vec<u8> {
    let iaid = iaid(network, netns, ifname);
    // No machine id (a minimal container): DUID-EN under no enterprise
    // (number 0) with the hostname's hash, still stable on this host.
    let duid = host_duid(machine_id).unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let mut duid = vec![0, 2, 0, 0, 0, 0];
        duid.extend(fnv1a32(&[host.trim()]).to_be_bytes());
        duid
    });
    let mut id = vec![255];
    id.extend(iaid.to_be_bytes());
    id.extend(duid);
    id
}

/// An identifier the user gave: `hex:01:aa:...` (or `01:aa:...`, bytes as
/// given, the first being the type) or any other text (type 0, the text).
pub fn given(text: &str) -> Result<Vec<u8>, String> {
    let hex = text.strip_prefix("hex:").unwrap_or(text);
    let looks_hex = hex.contains(':')
        && hex.split(':').all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()));
    let id = if looks_hex {
        hex.split(':').map(|b| u8::from_str_radix(b, 16).unwrap_or(0)).collect()
    } else if text.starts_with("hex:") {
        return Err(format!("--client-id {text}: expected hex:XX:XX:..."));
    } else {
        let mut id = vec![0];
        id.extend(text.as_bytes());
        id
    };
    if id.len() < 2 || id.len() > 255 {
        return Err(format!("--client-id {text}: give 1 to 254 bytes"));
    }
    Ok(id)
}

/// As servers print it (dnsmasq's lease file): hex bytes joined by colons.
pub fn to_hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MID: &str = "0123456789abcdef0123456789abcdef\n";

    #[test]
    fn same_endpoint_same_id_other_endpoint_other_id() {
        let a = derived_with("lan", "/run/netns/ns1", "eth0", MID);
        assert_eq!(a, derived_with("lan", "/run/netns/ns1", "eth0", MID));
        assert_ne!(a, derived_with("lan", "/run/netns/ns2", "eth0", MID));
        assert_ne!(a, derived_with("lan", "/run/netns/ns1", "eth1", MID));
        assert_ne!(a, derived_with("lan2", "/run/netns/ns1", "eth0", MID));
        // Parts are separated: "ab"+"c" is not "a"+"bc".
        assert_ne!(derived_with("ab", "c", "x", MID), derived_with("a", "bc", "x", MID));
    }

    #[test]
    fn rfc4361_layout_with_duid_uuid() {
        let a = derived_with("lan", "/run/netns/ns1", "eth0", MID);
        assert_eq!(a.len(), 1 + 4 + 2 + 16);
        assert_eq!(a[0], 255);
        assert_eq!(&a[5..7], &[0, 4]);
        assert_eq!(a[7], 0x01);
        let fallback = derived_with("lan", "/run/netns/ns1", "eth0", "");
        assert_eq!(&fallback[5..7], &[0, 2]);
    }

    #[test]
    fn given_ids_as_text_or_hex() {
        assert_eq!(given("web-1").unwrap(), b"\0web-1".to_vec());
        assert_eq!(given("01:02:03:04:05:06:07").unwrap(), vec![1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(given("hex:ff:00").unwrap(), vec![255, 0]);
        assert!(given("hex:zz").is_err());
        assert!(given("").is_err());
        assert_eq!(to_hex(&[1, 0xab]), "01:ab");
    }
}
