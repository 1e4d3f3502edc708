//! A network's settings changed in place, for the settings that no link of
//! the network carries: promiscuous mode of the parent and conflict probing.
//! Everything else is fixed in the links the kernel made (driver, mode,
//! flags, MTU, parent, broadcast settings) or in the address pools (subnets,
//! IPAM), and changing it means making the network again (`diff` refuses).

use nicslice_model::{NetworkSpec, ValidNetwork};

use crate::Engine;
use crate::error::Result;
use crate::fault::Step;
use crate::network::{give_back_promisc, take_promisc};
use crate::undo::{Sockets, UndoLog};

/// Whether a network with spec `from` can become `to` without touching a
/// link: every setting but promiscuous mode and probing is the same.
pub(super) fn in_place(from: &NetworkSpec, to: &NetworkSpec) -> bool {
    let settled = |s: &NetworkSpec| NetworkSpec { promisc: false, probe: None, ..s.clone() };
    settled(from) == settled(to)
}

impl Engine {
    /// Gives network `name` the spec `to`, which [`in_place`] allows; the
    /// parent's promiscuous mode taken or given back as `network create`
    /// and `network rm` do. All or nothing.
    pub(super) fn change_network(&mut self, name: &str, to: &ValidNetwork) -> Result<()> {
        let record = self.network_record(name)?;
        let faults = self.faults;
        let mut host = self.host_socket()?;
        let host_label = self.host.label().to_string();
        let mut undo = UndoLog::default();
        let result = (|| -> Result<()> {
            let tx = self.store.write()?;
            let mut promisc_prev = record.promisc_prev;
            match (record.spec.promisc, to.spec().promisc) {
                (false, true) => {
                    let parent = host.require_link(record.spec.parent.as_str(), &host_label)?;
                    promisc_prev = take_promisc(&mut host, &parent, &mut undo, faults)?;
                }
                (true, false) => {
                    give_back_promisc(&tx, &mut host, &record, &mut undo, faults)?;
                    promisc_prev = None;
                }
                _ => {}
            }
            tx.update_network(record.id, to, promisc_prev)?;
            faults.check(Step::StoreCommit)?;
            tx.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                undo.commit();
                Ok(())
            }
            Err(error) => Err(undo.abort(error, &mut Sockets { host: &mut host, target: None })),
        }
    }
}

#[cfg(test)]
mod tests {
    use nicslice_model::{Driver, MacvlanMode, ProbeSpec};

    use super::*;

    #[test]
    fn only_promisc_and_probing_change_in_place() {
        let base = NetworkSpec::new(
            "lan".parse().unwrap(),
            Driver::Macvlan,
            "eth0".parse().unwrap(),
            MacvlanMode::Bridge,
        );
        let promisc = NetworkSpec { promisc: true, ..base.clone() };
        let probing = NetworkSpec {
            probe: Some(ProbeSpec { timeout_ms: 100, cooldown_s: 5 }),
            ..base.clone()
        };
        let mtu = NetworkSpec { mtu: Some(1400), ..base.clone() };
        let mode = NetworkSpec { mode: MacvlanMode::Private.into(), ..base.clone() };
        assert!(in_place(&base, &promisc) && in_place(&promisc, &probing));
        assert!(!in_place(&base, &mtu) && !in_place(&base, &mode));
    }
}
