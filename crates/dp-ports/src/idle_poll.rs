//! When a worker reads a port that costs a system call per read and stays idle.
//!
//! A worker reads every port every round. An idle TAP costs a `readv` that finds nothing
//! (~0.5 µs in a VM), paid once per uplink per round: with vhost-user traffic (~8 µs per round
//! of 64 frames) the two idle TAP uplinks took ~12% of the worker's time in the PVP benchmark
//! (BENCHMARKS.md, "vhost-user PVP"). After [`IdlePoll::IDLE_AFTER`] empty reads in a row such a
//! port is read at most every [`IdlePoll::GAP_NS`]; a frame, or the worker waking from a sleep
//! (which the port's descriptor may have ended), makes it read every round again. A frame
//! arriving on an idle TAP while the worker is busy elsewhere waits at most that gap longer.

/// The read schedule of one port (see the module docs). Ports read from memory (vhost-user,
/// AF_XDP, AF_PACKET rings) are read every round: [`crate::PortQueue::reads_by_syscall`].
#[derive(Clone, Copy, Debug, Default)]
pub struct IdlePoll {
    /// Empty reads in a row.
    empty: u32,
    /// When it was last read.
    last_ns: u64,
}

impl IdlePoll {
    /// Empty reads in a row after which the port is idle.
    pub const IDLE_AFTER: u32 = 4;
    /// The longest an idle port goes unread (two to three rounds of a busy worker).
    pub const GAP_NS: u64 = 20_000;

    /// Whether the port is to be read in the round starting at `now_ns`.
    #[inline]
    pub fn due(&self, now_ns: u64) -> bool {
        self.empty < Self::IDLE_AFTER || now_ns.saturating_sub(self.last_ns) >= Self::GAP_NS
    }

    /// The port was read at `now_ns` and gave `received` frames.
    #[inline]
    pub fn read(&mut self, now_ns: u64, received: usize) {
        self.last_ns = now_ns;
        self.empty = if received == 0 {
            self.empty.saturating_add(1)
        } else {
            0
        };
    }

    /// The worker woke from a sleep: read the port in the next round.
    #[inline]
    pub fn wake(&mut self) {
        self.empty = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_port_is_read_once_per_gap_until_a_frame_or_a_wake_up() {
        let mut p = IdlePoll::default();
        let mut reads = 0;
        // Rounds of 1 µs for 100 µs, nothing arriving.
        for round in 0..100u64 {
            let now = round * 1_000;
            if p.due(now) {
                p.read(now, 0);
                reads += 1;
            }
        }
        // The first IDLE_AFTER rounds, then once per gap.
        assert_eq!(reads, 4 + (100 - 4) / 20);
        assert!(!p.due(100_000 - 1_000 + 1));
        // A wake-up makes it due at once.
        p.wake();
        assert!(p.due(100_001));
        // A frame keeps it read every round.
        let mut p = IdlePoll::default();
        for round in 0..10u64 {
            assert!(p.due(round));
            p.read(round, usize::from(round % 3 == 0));
        }
        assert!(
            p.due(11),
            "fewer than IDLE_AFTER empty reads since the last frame"
        );
    }
}
