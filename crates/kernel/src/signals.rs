//! Deferring the signals that ask a command to stop (SIGINT, SIGTERM, SIGHUP)
//! across work that must be finished or undone, not cut in half: a
//! [`Shield`] blocks them on the calling thread (and on threads it starts),
//! says whether one came so the work can undo itself at a step boundary (and
//! take the signal, to exit saying so), and when dropped unblocks them: a
//! signal that came and was not taken is then delivered and ends the process
//! as it would have, once the work is whole again.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

use crate::error::{KernelError, Result};

const STOPPING: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// Stop signals held back until dropped.
#[must_use]
pub struct Shield {
    previous: SigSet,
}

impl Shield {
    pub fn raise() -> Result<Shield> {
        let mut block = SigSet::empty();
        for signal in STOPPING {
            block.add(signal);
        }
        let mut previous = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&block), Some(&mut previous))
            .map_err(|e| KernelError::io("block stop signals", e.into()))?;
        Ok(Shield { previous })
    }

    /// Takes the stop signal that came while raised, if any: it will not
    /// end the process when the shield drops, and the caller, having undone
    /// its work, says why it stopped and exits.
    pub fn take(&self) -> Option<Signal> {
        let signal = self.interrupted()?;
        let mut only = SigSet::empty();
        only.add(signal);
        // Pending, so this returns at once.
        only.wait().ok()
    }

    /// The stop signal that came while raised, if any (it stays pending).
    pub fn interrupted(&self) -> Option<Signal> {
        let mut pending = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
        // SAFETY: sigpending fills the set it is given.
        if unsafe { libc::sigpending(pending.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: filled by sigpending above (and zeroed before).
        let pending = unsafe { pending.assume_init() };
        STOPPING.into_iter().find(|s| {
            // SAFETY: a valid set and a valid signal number.
            let is_pending = unsafe { libc::sigismember(&pending, *s as libc::c_int) } == 1;
            is_pending && !self.previous.contains(*s)
        })
    }
}

impl Drop for Shield {
    fn drop(&mut self) {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.previous), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_raised_under_the_shield_waits_and_is_seen() {
        // On a thread of its own: the mask is per thread, and the signal is
        // sent to that thread only, so the test process is never at risk.
        std::thread::spawn(|| {
            let shield = Shield::raise().unwrap();
            assert_eq!(shield.interrupted(), None);
            // SAFETY: a signal to this very thread, which blocks it.
            assert_eq!(unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGHUP) }, 0);
            assert_eq!(shield.interrupted(), Some(Signal::SIGHUP));
            // Taken: the drop does not deliver it to the test process.
            assert_eq!(shield.take(), Some(Signal::SIGHUP));
            assert_eq!(shield.interrupted(), None);
        })
        .join()
        .unwrap();
    }
}
