//! Waking a sleeping worker from another thread: an eventfd the worker keeps in its epoll set
//! ([`RxEpoll::from_fds`](crate::RxEpoll::from_fds)), written by whoever has work for it (another
//! worker that handed it packets).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd (non-blocking, close-on-exec): [`Wakeup::wake`] makes it readable,
/// [`Wakeup::clear`] reads it back to not readable.
#[derive(Debug)]
pub struct Wakeup {
    fd: OwnedFd,
}

impl Wakeup {
    pub fn new() -> io::Result<Wakeup> {
        // SAFETY: eventfd has no memory preconditions; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Wakeup { fd })
    }

    /// Makes the descriptor readable (wakes an epoll set it is in). Never blocks: a counter at
    /// its maximum is already readable.
    pub fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a valid buffer to our descriptor.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// Reads the counter back to zero (not readable); whether it had been woken.
    pub fn clear(&self) -> bool {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a valid buffer from our descriptor.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
        n == 8 && u64::from_ne_bytes(count) > 0
    }

    /// The descriptor, for an epoll set.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RxEpoll;
    use std::time::Duration;

    #[test]
    fn a_wake_makes_the_set_readable_until_cleared() {
        let w = Wakeup::new().unwrap();
        assert!(!w.clear(), "not woken yet");
        let mut set = RxEpoll::from_fds(vec![(w.fd(), u64::MAX)]).unwrap();
        assert!(set.arm());
        assert!(!set.wait(Duration::from_millis(1)));
        w.wake();
        w.wake();
        assert!(set.wait(Duration::from_millis(1000)));
        assert!(w.clear());
        assert!(!set.wait(Duration::from_millis(1)));
        assert!(!w.clear());
    }
}
