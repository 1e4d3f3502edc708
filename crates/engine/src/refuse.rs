//! Turning kernel refusals into advice: the errno alone ("Device or resource
//! busy") rarely tells a user what to do, the situation does.

use nicslice_kernel::KernelError;

use crate::EngineError;

/// Explains a failed link creation on `parent`.
pub fn explain_create(err: KernelError, parent: &str, ifname: &str, netns: &str) -> EngineError {
    let advice = match err.errno() {
        Some(libc::EBUSY) => format!(
            "parent {parent} is busy: it is a bridge port, a bond slave or an ipvlan parent, and a macvlan parent must be none of these"
        ),
        Some(libc::EEXIST) => format!(
            "an interface named {ifname} already exists in {netns}; choose another --ifname"
        ),
        Some(libc::EADDRINUSE) => {
            "that MAC address is already used by the parent or a sibling; choose another --mac"
                .to_string()
        }
        Some(libc::EINVAL) => format!(
            "the kernel refused the link; on a passthru parent only one child may exist, and {parent} may have one already"
        ),
        Some(libc::EOPNOTSUPP) => {
            "this kernel has no macvlan/macvtap support (see `nicslice check`)".to_string()
        }
        _ => return err.into(),
    };
    EngineError::Invalid(format!("{err}: {advice}"))
}
