//! Duplicate address detection of a DHCPv6 address on a network that probes
//! for conflicts (`--probe-conflicts`): the kernel's DAD, tuned to the
//! network's probe timeout as `probe` tunes it for pool addresses, and its
//! verdict read back. A server can hand out an address a host it does not
//! know about already uses (a static one); this catches it before use.

use std::time::{Duration, Instant};

use ipnet::IpNet;
use nicslice_kernel::LinkBrief;
use nicslice_kernel::address_claim::{Dad, restore_dad, tune_dad};

use crate::endpoint::Place;
use crate::error::{EngineError, Result};
use crate::undo::{UndoAction, UndoLog};

/// How often the tentative address is looked at.
const POLL: Duration = Duration::from_millis(2);
/// Room beyond the timeout for the kernel's timers.
const SLACK: Duration = Duration::from_millis(500);

/// Adds `address` to `link` through DAD and waits for the verdict: true
/// when it is unique (it stays on, its undo pushed), false when someone
/// answered (it is taken off again).
pub fn claim(
    link: &LinkBrief,
    address: IpNet,
    timeout: Duration,
    place: &mut Place,
    undo: &mut UndoLog,
) -> Result<bool> {
    let previous = tune_dad(&place.target_ns, &link.name, timeout)?;
    let judged = (|| -> Result<Dad> {
        place.target.add_address_with_dad(link.index, address)?;
        undo.push(UndoAction::DeleteAddress { index: link.index, addr: address });
        let deadline = Instant::now() + timeout + SLACK;
        loop {
            let state = place.target.dad_state(link.index, address.addr())?.ok_or_else(|| {
                EngineError::Refused(format!(
                    "{} vanished from {} during duplicate address detection",
                    address.addr(),
                    link.name
                ))
            })?;
            if state != Dad::Tentative || Instant::now() >= deadline {
                return Ok(state);
            }
            std::thread::sleep(POLL);
        }
    })();
    restore_dad(&place.target_ns, &link.name, &previous)?;
    match judged? {
        Dad::Done => Ok(true),
        Dad::Failed => {
            place.target.delete_address(link.index, address)?;
            undo.forget_address(link.index, address);
            Ok(false)
        }
        Dad::Tentative => Err(EngineError::Refused(format!(
            "duplicate address detection of {} did not finish in {} ms (no carrier on the \
             parent?); the address was not used",
            address.addr(),
            (timeout + SLACK).as_millis()
        ))),
    }
}
