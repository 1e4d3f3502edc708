//! Address offsets as 16-byte big-endian BLOBs: SQLite compares BLOBs with
//! memcmp, so byte order equals numeric order and `MIN()`/`ORDER BY` work.

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
}
