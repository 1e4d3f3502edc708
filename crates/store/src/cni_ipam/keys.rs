//! The byte layout of the CNI lease database. One LMDB database holds every
//! table: a key starts with its table's tag, then its parts. Text parts carry
//! a one-byte length, so a key reads back unambiguously and every leading
//! run of parts is one range of keys (an owner's leases in a network, a
//! pool's released offsets lowest first). Numbers are big-endian, so byte
//! order is numeric order.
//!
//! | tag | key                                      | value                                  |
//! |-----|------------------------------------------|----------------------------------------|
//! | `M` | meta name (`format`, `boot`, `next-pool`) | its value                              |
//! | `P` | network, subnet, range key               | pool id                                |
//! | `I` | pool id                                  | high-water offset, network, subnet     |
//! | `L` | network, subnet, offset                  | pool id, container ID, interface name  |
//! | `O` | container ID, interface name, network, subnet, offset | pool id                   |
//! | `F` | pool id, offset                          | (empty)                                |
//!
//! A quarantined address (issue 14, `quarantine`) is an `L` lease whose
//! container ID is empty and whose interface name is `SECONDS MAC`.
//!
//! A lease is keyed by its subnet, not its pool, so that "taken in any range
//! of this subnet" is one lookup; `O` is the owner index of `L`.

use crate::StoreError;

pub(super) const META: u8 = b'M';
pub(super) const POOL_BY_NAME: u8 = b'P';
pub(super) const POOL: u8 = b'I';
pub(super) const LEASE: u8 = b'L';
pub(super) const BY_OWNER: u8 = b'O';
pub(super) const FREED: u8 = b'F';

/// LMDB's largest key (its default build).
const MAX_KEY: usize = 511;

/// A key or value being written.
#[derive(Debug, Clone)]
pub(super) struct Bytes(Vec<u8>);

impl Bytes {
    pub fn key(tag: u8) -> Bytes {
        let mut v = Vec::with_capacity(96);
        v.push(tag);
        Bytes(v)
    }

    pub fn value() -> Bytes {
        Bytes(Vec::with_capacity(64))
    }

    /// Appends a length-prefixed text; `what` names it in the error when it
    /// is longer than 255 bytes.
    pub fn text(mut self, what: &'static str, s: &str) -> Result<Bytes, StoreError> {
        let len = u8::try_from(s.len()).map_err(|_| StoreError::TooLong { what, len: s.len() })?;
        self.0.push(len);
        self.0.extend_from_slice(s.as_bytes());
        Ok(self)
    }

    pub fn id(mut self, id: i64) -> Bytes {
        self.0.extend_from_slice(&id.to_be_bytes());
        self
    }

    pub fn offset(mut self, offset: u128) -> Bytes {
        self.0.extend_from_slice(&offset.to_be_bytes());
        self
    }

    /// The finished key, checked against LMDB's key size.
    pub fn done(self) -> Result<Vec<u8>, StoreError> {
        if self.0.len() > MAX_KEY {
            return Err(StoreError::TooLong {
                what: "a lease's names together",
                len: self.0.len(),
            });
        }
        Ok(self.0)
    }

    /// The finished value (values have no size limit that matters here).
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

/// `P`: a pool by its names.
pub(super) fn pool_name_key(
    network: &str,
    subnet: &str,
    range_key: &str,
) -> Result<Vec<u8>, StoreError> {
    Bytes::key(POOL_BY_NAME)
        .text("the network name", network)?
        .text("the subnet", subnet)?
        .text("the range", range_key)?
        .done()
}

/// `I`: a pool's row, by id.
pub(super) fn pool_key(id: i64) -> Result<Vec<u8>, StoreError> {
    Bytes::key(POOL).id(id).done()
}

pub(super) fn pool_value(
    high_water: u128,
    network: &str,
    subnet: &str,
) -> Result<Vec<u8>, StoreError> {
    Ok(Bytes::value()
        .offset(high_water)
        .text("the network name", network)?
        .text("the subnet", subnet)?
        .into_vec())
}

/// `L`: the lease of `offset` in `subnet` of `network`.
pub(super) fn lease_key(network: &str, subnet: &str, offset: u128) -> Result<Vec<u8>, StoreError> {
    lease_prefix(network)?.text("the subnet", subnet)?.offset(offset).done()
}

/// The start of every `L` key of a network.
pub(super) fn lease_prefix(network: &str) -> Result<Bytes, StoreError> {
    Bytes::key(LEASE).text("the network name", network)
}

pub(super) fn lease_value(
    pool: i64,
    container_id: &str,
    ifname: &str,
) -> Result<Vec<u8>, StoreError> {
    Ok(Bytes::value()
        .id(pool)
        .text("the container ID", container_id)?
        .text("the interface name", ifname)?
        .into_vec())
}

/// What [`lease_value`] wrote: the pool id, the container ID, the interface name.
pub(super) fn read_lease_value(value: &[u8]) -> Result<(i64, &str, &str), StoreError> {
    let mut v = Reader::value(value);
    Ok((v.id()?, v.text()?, v.text()?))
}

/// `O`: the owner index's entry of a lease (its value: the pool id).
pub(super) fn owner_key(
    container_id: &str,
    ifname: &str,
    network: &str,
    subnet: &str,
    offset: u128,
) -> Result<Vec<u8>, StoreError> {
    owner_prefix(container_id, ifname, network)?.text("the subnet", subnet)?.offset(offset).done()
}

/// The start of every `O` key of an owner in a network.
pub(super) fn owner_prefix(
    container_id: &str,
    ifname: &str,
    network: &str,
) -> Result<Bytes, StoreError> {
    Bytes::key(BY_OWNER)
        .text("the container ID", container_id)?
        .text("the interface name", ifname)?
        .text("the network name", network)
}

/// `F`: a released offset of a pool.
pub(super) fn freed_key(pool: i64, offset: u128) -> Result<Vec<u8>, StoreError> {
    Bytes::key(FREED).id(pool).offset(offset).done()
}

/// Reads back what [`Bytes`] wrote; every read fails as corruption when the
/// bytes run short.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over a key, past its tag.
    pub fn key(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes.get(1..).unwrap_or_default() }
    }

    pub fn value(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.rest.len() < n {
            return Err(StoreError::corrupt("CNI lease record (cut short)"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub fn text(&mut self) -> Result<&'a str, StoreError> {
        let len = usize::from(self.take(1)?[0]);
        std::str::from_utf8(self.take(len)?)
            .map_err(|_| StoreError::corrupt("CNI lease record (text not UTF-8)"))
    }

    pub fn id(&mut self) -> Result<i64, StoreError> {
        let bytes: [u8; 8] = self.take(8)?.try_into().unwrap_or_default();
        Ok(i64::from_be_bytes(bytes))
    }

    pub fn offset(&mut self) -> Result<u128, StoreError> {
        let bytes: [u8; 16] = self.take(16)?.try_into().unwrap_or_default();
        Ok(u128::from_be_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_read_back_and_prefixes_are_ranges() {
        let key = Bytes::key(LEASE)
            .text("network", "net")
            .unwrap()
            .text("subnet", "10.0.0.0/24")
            .unwrap()
            .offset(258)
            .done()
            .unwrap();
        let mut r = Reader::key(&key);
        assert_eq!((r.text().unwrap(), r.text().unwrap()), ("net", "10.0.0.0/24"));
        assert_eq!(r.offset().unwrap(), 258);
        assert!(r.id().is_err(), "nothing is left to read");
        // "net" is not a prefix of "net2" once lengths are written.
        let net2 = Bytes::key(LEASE).text("network", "net2").unwrap().done().unwrap();
        let net = Bytes::key(LEASE).text("network", "net").unwrap().done().unwrap();
        assert!(!net2.starts_with(&net));
        assert!(key.starts_with(&net));
        let low = Bytes::key(FREED).id(1).offset(255).done().unwrap();
        let high = Bytes::key(FREED).id(1).offset(256).done().unwrap();
        assert!(low < high, "byte order is numeric order");
    }

    #[test]
    fn oversized_parts_are_refused() {
        let long = "x".repeat(256);
        assert!(matches!(
            Bytes::key(BY_OWNER).text("container ID", &long),
            Err(StoreError::TooLong { what: "container ID", len: 256 })
        ));
        let mut key = Bytes::key(BY_OWNER);
        for _ in 0..3 {
            key = key.text("part", &"y".repeat(200)).unwrap();
        }
        assert!(matches!(key.done(), Err(StoreError::TooLong { .. })));
    }
}
