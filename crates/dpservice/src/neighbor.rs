//! The uplinks' router MAC from the kernel's IPv6 neighbour table, as dpservice takes it for its
//! PFs (`dp_acquire_neigh_mac` in its `src/dp_port.c`): with TAP uplinks and no `--router`
//! ([`uses_kernel_neighbors`]), a thread of its own reads each uplink's table by netlink
//! (`dp_ports::neighbor`, which says which entry is taken) and writes the MAC into the
//! [`PortTable`], where the encapsulation reads it. Nothing of this is on the packet path.
//!
//! When it reads ([`Schedule`]):
//! * at start-up, and while the link is up and no router entry was found: after 1 s, then
//!   doubling up to 60 s — dpservice's back-off (`DP_PORT_NEIGHMAC_INITIAL_PERIOD` 1,
//!   `_BACKOFF_COEF` 2, `_MAX_PERIOD` 60);
//! * once found: every [`REFRESH`] (10 s), so a replaced router is followed (dpservice stops
//!   asking once it has one). An entry that disappears leaves the last MAC in place, as in
//!   dpservice;
//! * while the link is down: not at all; when it comes back, at once and the back-off starts
//!   over (dpservice starts acquiring on the link-up event).
//!
//! Until a router entry is found the uplink is used with the all-zero MAC, dpservice's zeroed
//! `neigh_mac` (`dp_pipeline::DpConfig::router_mac_from_kernel`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dp_pipeline::PortTable;
use dp_tables::PortId;

use crate::options::{NicType, Options};

/// The first retry after nothing was found.
pub const INITIAL_PERIOD: Duration = Duration::from_secs(1);
/// The longest wait between two reads while nothing is found.
pub const MAX_PERIOD: Duration = Duration::from_secs(60);
/// How often a found router is read again.
pub const REFRESH: Duration = Duration::from_secs(10);
/// How often the thread looks at the clock, the links and the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Whether the router MAC comes from the kernel: TAP uplinks and no `--router`.
pub fn uses_kernel_neighbors(opts: &Options) -> bool {
    opts.nic_type == NicType::Tap && opts.router.is_none()
}

/// When one uplink's table is read next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    next: Instant,
    period: Duration,
    was_up: bool,
}

impl Schedule {
    /// Due at once.
    pub fn new(now: Instant) -> Self {
        Schedule {
            next: now,
            period: INITIAL_PERIOD,
            was_up: false,
        }
    }

    /// Whether a read is due now, given the link state (a link that came up makes it due).
    pub fn due(&mut self, now: Instant, up: bool) -> bool {
        let came_up = up && !self.was_up;
        self.was_up = up;
        if came_up {
            self.next = now;
            self.period = INITIAL_PERIOD;
        }
        up && now >= self.next
    }

    /// Records a read's outcome: found a router, or not (nothing, or an error).
    pub fn read(&mut self, now: Instant, found: bool) {
        if found {
            self.period = INITIAL_PERIOD;
            self.next = now + REFRESH;
        } else {
            self.next = now + self.period;
            self.period = (self.period * 2).min(MAX_PERIOD);
        }
    }
}

/// Starts the reader for `uplinks` (their names are in `table`); it ends when `stop` is set.
pub fn spawn(
    table: Arc<PortTable>,
    uplinks: Vec<PortId>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("dp-neigh".into())
        .spawn(move || run(&table, &uplinks, &stop))
}

fn run(table: &PortTable, uplinks: &[PortId], stop: &AtomicBool) {
    let start = Instant::now();
    let mut schedules: Vec<Schedule> = uplinks.iter().map(|_| Schedule::new(start)).collect();
    // Whether the last read failed, per uplink: an error is logged once, not every period.
    let mut failing = vec![false; uplinks.len()];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for ((&port, schedule), failing) in uplinks.iter().zip(&mut schedules).zip(&mut failing) {
            let Some(entry) = table.get(port) else {
                continue;
            };
            if !schedule.due(now, entry.link_up()) {
                continue;
            }
            let found = match dp_ports::neighbor::router_mac(&entry.name) {
                Ok(found) => {
                    *failing = false;
                    found
                }
                Err(e) => {
                    if !*failing {
                        tracing::warn!(device = %entry.name, "cannot read the kernel's neighbour table: {e}");
                    }
                    *failing = true;
                    None
                }
            };
            match found {
                Some(mac) => {
                    if entry.peer_mac() != Some(mac) {
                        tracing::info!(device = %entry.name, %mac, "setting the uplink's neighboring router (kernel neighbour table)");
                    }
                    entry.learn_peer_mac(mac);
                }
                None if entry.peer_mac().is_none() => {
                    tracing::debug!(device = %entry.name, retry_in = ?schedule.period,
                        "no neighboring router in the kernel's table yet; sending to 00:00:00:00:00:00");
                }
                None => {}
            }
            schedule.read(now, found.is_some());
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_off_like_dpservice_until_found_then_refresh() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        assert!(!s.due(t0, false), "not while the link is down");
        assert!(s.due(t0, true), "at once when up");
        let mut t = t0;
        let mut waits = Vec::new();
        for _ in 0..9 {
            s.read(t, false);
            let mut waited = Duration::ZERO;
            while !s.due(t, true) {
                t += Duration::from_millis(500);
                waited += Duration::from_millis(500);
            }
            waits.push(waited.as_secs());
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        s.read(t, true);
        assert!(!s.due(t + REFRESH - Duration::from_millis(1), true));
        assert!(s.due(t + REFRESH, true));
        // Lost again: the back-off starts over at 1 s.
        let t = t + REFRESH;
        s.read(t, false);
        assert!(s.due(t + INITIAL_PERIOD, true));
    }

    #[test]
    fn a_link_that_comes_back_is_read_at_once() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        assert!(s.due(t0, true));
        for _ in 0..5 {
            s.read(t0, false);
        }
        let t = t0 + Duration::from_secs(1);
        assert!(!s.due(t, true));
        assert!(!s.due(t, false));
        assert!(s.due(t, true), "came back up");
    }

    #[test]
    fn kernel_neighbors_only_for_taps_without_router() {
        let mut o = Options::default();
        assert!(uses_kernel_neighbors(&o));
        o.router = Some("fe80::ffff".parse().unwrap());
        assert!(!uses_kernel_neighbors(&o));
        o.router = None;
        o.nic_type = NicType::AfPacket;
        assert!(!uses_kernel_neighbors(&o));
    }
}
