//! Sleeping until a port has a frame: an epoll set over the ports' receive descriptors
//! ([`PortQueue::rx_fd`](crate::PortQueue::rx_fd)), armed only around sleeps.
//!
//! A descriptor in an epoll set makes the kernel run the epoll callback for every frame or batch
//! it delivers — on the *sender's* core. So a worker keeps its ports out of the set while it
//! polls, and puts them in ([`RxEpoll::arm`]) only when it is about to sleep.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::Port;

/// An epoll set over receive descriptors, each with its port's index as the event's data.
#[derive(Debug)]
pub struct RxEpoll {
    fd: OwnedFd,
    fds: Vec<(RawFd, u64)>,
    /// Whether the descriptors are in the set.
    armed: bool,
}

impl RxEpoll {
    /// A set over the ports' receive descriptors (disarmed), or `None` when no port has one (or
    /// epoll is unavailable).
    pub fn new(ports: &[Box<dyn Port>]) -> Option<RxEpoll> {
        let fds = ports
            .iter()
            .enumerate()
            .filter_map(|(i, port)| port.rx_fd().map(|fd| (fd, i as u64)))
            .collect();
        Self::from_fds(fds)
    }

    /// A set over `fds` (descriptor, event data); the descriptors must stay open while it lives.
    pub fn from_fds(fds: Vec<(RawFd, u64)>) -> Option<RxEpoll> {
        if fds.is_empty() {
            return None;
        }
        // SAFETY: epoll_create1 has no memory preconditions; the result is checked.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Some(RxEpoll {
            fd,
            fds,
            armed: false,
        })
    }

    fn ctl(&self, op: libc::c_int, port_fd: RawFd, data: u64) -> bool {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: data,
        };
        // SAFETY: both descriptors are valid (the ports outlive the set); `ev` outlives the call.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, port_fd, &mut ev) };
        rc == 0
    }

    /// Puts the descriptors in the set (if not already); whether any is in it.
    pub fn arm(&mut self) -> bool {
        if !self.armed {
            let mut any = false;
            for &(fd, data) in &self.fds {
                any |= self.ctl(libc::EPOLL_CTL_ADD, fd, data);
            }
            self.armed = any;
        }
        self.armed
    }

    /// Takes the descriptors out of the set: the kernel stops waking it per frame.
    pub fn disarm(&mut self) {
        if self.armed {
            for &(fd, data) in &self.fds {
                self.ctl(libc::EPOLL_CTL_DEL, fd, data);
            }
            self.armed = false;
        }
    }

    pub fn is_armed(&self) -> bool {
        self.armed
    }

    /// Sleeps until a descriptor is readable or `timeout` passes; whether one is readable.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `events` is a valid buffer of the length passed.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                ms,
            )
        };
        n > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_when_armed_and_readable_only() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both are fresh descriptors we own from here on.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        assert!(RxEpoll::from_fds(Vec::new()).is_none());
        let mut set = RxEpoll::from_fds(vec![(rd.as_raw_fd(), 7)]).unwrap();
        assert!(!set.is_armed());
        assert!(set.arm() && set.arm(), "arming twice is harmless");
        assert!(!set.wait(Duration::from_millis(1)), "nothing to read yet");
        // SAFETY: writing one byte from a valid buffer to the pipe we own.
        let written = unsafe { libc::write(wr.as_raw_fd(), b"x".as_ptr().cast(), 1) };
        assert_eq!(written, 1);
        assert!(set.wait(Duration::from_millis(1000)));
        // Disarmed, a readable descriptor no longer wakes the set.
        set.disarm();
        assert!(!set.is_armed());
        assert!(!set.wait(Duration::from_millis(1)));
    }
}
