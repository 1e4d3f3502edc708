//! Address offsets as 16-byte big-endian BLOBs: SQLite compares BLOBs with
//! memcmp, so byte order equals numeric order and `MIN()`/`ORDER BY` work;
//! and the arithmetic between an offset and its address in a subnet.

use std::net::IpAddr;

use ipnet::IpNet;
use nicslice_model::to_u128;

use crate::StoreError;

pub(crate) fn to_blob(offset: u128) -> [u8; 16] {
    offset.to_be_bytes()
}

pub(crate) fn from_blob(bytes: &[u8]) -> Result<u128, StoreError> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| StoreError::corrupt(format!("address offset of {} bytes", bytes.len())))?;
    Ok(u128::from_be_bytes(array))
}

/// The address `offset` places after the first address of `net`, if inside it.
pub(crate) fn ip_at(net: IpNet, offset: u128) -> Option<IpAddr> {
    let ip = match net.network() {
        IpAddr::V4(base) => {
            let n = u32::try_from(offset).ok()?.checked_add(u32::from(base))?;
            IpAddr::V4(n.into())
        }
        IpAddr::V6(base) => IpAddr::V6(u128::from(base).checked_add(offset)?.into()),
    };
    net.contains(&ip).then_some(ip)
}

/// How far `ip` lies after the first address of `subnet`.
pub(crate) fn offset_of(subnet: IpNet, ip: IpAddr) -> u128 {
    to_u128(ip).wrapping_sub(to_u128(subnet.network()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order() {
        for n in [0, 1, 255, 256, u128::from(u64::MAX) + 7, u128::MAX] {
            assert_eq!(from_blob(&to_blob(n)).unwrap(), n);
        }
        assert!(to_blob(255) < to_blob(256));
        assert!(to_blob(u128::from(u64::MAX)) < to_blob(u128::from(u64::MAX) + 1));
        assert!(matches!(from_blob(&[1, 2, 3]), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn ip_at_stays_inside_the_subnet() {
        let net: IpNet = "10.0.0.0/24".parse().unwrap();
        assert_eq!(ip_at(net, 7), Some("10.0.0.7".parse().unwrap()));
        assert_eq!(ip_at(net, 256), None);
        assert_eq!(ip_at(net, 1u128 << 40), None);
        let net: IpNet = "fd00::/64".parse().unwrap();
        assert_eq!(ip_at(net, 0x1_0000), Some("fd00::1:0".parse().unwrap()));
        assert_eq!(ip_at(net, 1u128 << 64), None);
    }

    #[test]
    fn offsets_and_addresses_agree() {
        let v6: IpNet = "fd00::/64".parse().unwrap();
        let ip: IpAddr = "fd00::1:2".parse().unwrap();
        assert_eq!(ip_at(v6, offset_of(v6, ip)), Some(ip));
        assert_eq!(ip_at("10.0.0.0/30".parse().unwrap(), 4), None);
    }
}
