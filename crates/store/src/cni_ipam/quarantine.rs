//! Quarantined addresses in the CNI lease database (issue 14): addresses a
//! host nicslice does not manage answered for when a link plugin probed
//! them. A quarantined address is a lease like any other (its `L` and `O`
//! entries), so the allocator skips it, held by no container: its container
//! ID is empty, which a runtime never gives, and its interface name records
//! when and who answered, `SECONDS MAC` (`SECONDS -` when IPv6 DAD failed,
//! which does not say who). GC keeps it (`release_unless`); the cool-down
//! returns it to the pool ([`CniIpamTx::release_quarantine`]).

use std::net::IpAddr;

use nicslice_model::MacAddr;
use nicslice_model::ipam::LeaseBook;

use super::{CniIpamTx, CniOwner};
use crate::StoreError;
use crate::blob::offset_of;

/// The container ID of a quarantined address.
const NO_CONTAINER: &str = "";

/// An address held out of a CNI network's pools.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CniQuarantined {
    pub ip: IpAddr,
    /// `None` when IPv6 DAD failed.
    pub answered_by: Option<MacAddr>,
    /// Seconds since the Unix epoch.
    pub answered_at: i64,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl CniOwner {
    /// The owner of a quarantined address answered by `by` at `at`.
    fn quarantine(by: Option<MacAddr>, at: i64) -> CniOwner {
        let who = by.map_or("-".to_string(), |m| m.to_string());
        CniOwner { container_id: NO_CONTAINER.into(), ifname: format!("{at} {who}") }
    }

    /// Whether this owner is the quarantine, not a container.
    pub fn is_quarantine(&self) -> bool {
        self.container_id == NO_CONTAINER
    }

    /// When and by whom, for a quarantine owner.
    fn answered(&self) -> Result<(i64, Option<MacAddr>), StoreError> {
        let corrupt = || StoreError::corrupt(format!("quarantine record {:?}", self.ifname));
        let (at, who) = self.ifname.split_once(' ').ok_or_else(corrupt)?;
        let at = at.parse().map_err(|_| corrupt())?;
        let by = match who {
            "-" => None,
            mac => Some(mac.parse().map_err(|_| corrupt())?),
        };
        Ok((at, by))
    }
}

impl CniIpamTx<'_> {
    /// Moves `owner`'s lease of `ip` in `network` into quarantine, answered
    /// by `by` now. Returns whether `owner` held it.
    pub fn quarantine(
        &mut self,
        network: &str,
        owner: &CniOwner,
        ip: IpAddr,
        by: Option<MacAddr>,
    ) -> Result<bool, StoreError> {
        let Some(lease) = self.leases(network, Some(owner))?.into_iter().find(|l| l.ip == ip)
        else {
            return Ok(false);
        };
        let offset = offset_of(lease.subnet, ip);
        let mut book = self.book();
        book.remove_lease(lease.pool, offset)?;
        book.insert_lease(lease.pool, offset, CniOwner::quarantine(by, now()))?;
        Ok(true)
    }

    /// The quarantined addresses of `network`, by pool and address.
    pub fn quarantined(&self, network: &str) -> Result<Vec<CniQuarantined>, StoreError> {
        let mut out = Vec::new();
        for lease in self.leases(network, None)?.into_iter().filter(|l| l.owner.is_quarantine()) {
            let (answered_at, answered_by) = lease.owner.answered()?;
            out.push(CniQuarantined { ip: lease.ip, answered_by, answered_at });
        }
        Ok(out)
    }

    /// Returns to the pool every address of `network` quarantined at least
    /// `cooldown_s` seconds ago; returns them.
    pub fn release_quarantine(
        &mut self,
        network: &str,
        cooldown_s: u64,
    ) -> Result<Vec<IpAddr>, StoreError> {
        let cutoff = now().saturating_sub(i64::try_from(cooldown_s).unwrap_or(i64::MAX));
        let mut released = Vec::new();
        for lease in self.leases(network, None)?.into_iter().filter(|l| l.owner.is_quarantine()) {
            if lease.owner.answered()?.0 <= cutoff {
                self.release(&lease)?;
                released.push(lease.ip);
            }
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_owner_round_trip() {
        let mac: MacAddr = "02:00:00:00:00:07".parse().unwrap();
        let owner = CniOwner::quarantine(Some(mac), 1_700_000_000);
        assert!(owner.is_quarantine());
        assert_eq!(owner.answered().unwrap(), (1_700_000_000, Some(mac)));
        let dad = CniOwner::quarantine(None, 5);
        assert_eq!(dad.answered().unwrap(), (5, None));
        let container = CniOwner { container_id: "abc".into(), ifname: "eth0".into() };
        assert!(!container.is_quarantine());
    }
}
