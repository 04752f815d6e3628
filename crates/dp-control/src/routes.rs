//! One VNI's routing tables as the control plane keeps them: up to three copies, so that
//! publishing a change costs O(change), not O(routes in the VNI).
//!
//! The published [`VniTable`] (`live`) is shared with the packet path and immutable while a
//! snapshot holds it. Older copies (`spares`, previously published versions) are kept together
//! with the log of operations they lack. To change the VNI:
//!
//! * if no snapshot holds `live` (it has not been published since the last change, e.g. while
//!   the service coalesces several requests into one publish), the operations are applied to it
//!   in place;
//! * otherwise the oldest spare no reader holds any more is brought up to date by replaying the
//!   log, the new operations are applied to it, and it becomes the new `live`; the old `live`
//!   becomes a spare.
//!
//! A worker holds the snapshot of its current batch, so the table published just before the
//! current one is often still held when the next change comes: with only one spare (double
//! buffering) that change would have to clone the whole table. A second spare (triple
//! buffering) is created the first time that happens and from then on the three copies rotate,
//! each applying every operation once. Only when every copy is held (several workers holding
//! different old snapshots, or one preempted for long) is `live` cloned, which is correct but
//! O(n) — counted in [`VniRoutes::copies`]. A spare held so long that it lags by more
//! operations than the table holds (plus [`LOG_SLACK`]) is forgotten, which bounds the log.

use std::collections::VecDeque;
use std::mem;
use std::sync::Arc;

use dp_tables::{LpmKey, RouteTarget, VniTable};

/// Old copies kept besides the live table (2: triple buffering).
pub(crate) const SPARES: usize = 2;

/// A spare may lag by this many operations beyond the table's size before it is dropped: a
/// reader holding an old snapshot for long must not make the log grow without bound, and
/// replaying more operations than the table holds costs more than cloning it.
const LOG_SLACK: usize = 1024;

/// One change to a VNI's tables. Addresses are masked to the prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteOp {
    Insert4(u32, u8, RouteTarget),
    Remove4(u32, u8),
    Insert6(u128, u8, RouteTarget),
    Remove6(u128, u8),
}

impl RouteOp {
    pub(crate) fn apply(self, t: &mut VniTable) {
        // Every operation was validated against the live table, which a spare equals once its
        // log has been replayed: inserts cannot collide and removes find their prefix.
        match self {
            RouteOp::Insert4(a, l, v) => {
                let _ = t.v4.insert(a, l, v);
            }
            RouteOp::Remove4(a, l) => {
                let _ = t.v4.remove(a, l);
            }
            RouteOp::Insert6(a, l, v) => {
                let _ = t.v6.insert(a, l, v);
            }
            RouteOp::Remove6(a, l) => {
                let _ = t.v6.remove(a, l);
            }
        }
    }
}

/// An old copy of the tables: the live table as it was at `version`.
#[derive(Debug)]
struct Spare {
    table: Arc<VniTable>,
    version: u64,
}

/// The routing tables of one VNI, see the module docs.
#[derive(Debug, Default)]
pub(crate) struct VniRoutes {
    live: Arc<VniTable>,
    /// Operations applied since the version `log_start`: `live` is at version
    /// `log_start + log.len()`, a spare at `version` lacks `log[version - log_start..]`.
    log: VecDeque<RouteOp>,
    log_start: u64,
    /// Oldest first (ascending versions).
    spares: Vec<Spare>,
    /// How many times a change had to clone the whole table.
    copies: u64,
}

impl VniRoutes {
    /// The current tables (published, or to be published with the next snapshot).
    pub(crate) fn table(&self) -> &VniTable {
        &self.live
    }

    /// The `Arc` to publish in a snapshot.
    pub(crate) fn live(&self) -> Arc<VniTable> {
        Arc::clone(&self.live)
    }

    pub(crate) fn copies(&self) -> u64 {
        self.copies
    }

    fn version(&self) -> u64 {
        self.log_start + self.log.len() as u64
    }

    /// Applies `ops` (already validated against [`Self::table`]) to the live tables: in place
    /// when no snapshot holds them, else on a copy that replaces them.
    pub(crate) fn commit(&mut self, ops: &[RouteOp]) {
        if ops.is_empty() {
            return;
        }
        if Arc::get_mut(&mut self.live).is_none() {
            let next = self.take_free_spare().unwrap_or_else(|| {
                self.copies += 1;
                Arc::new((*self.live).clone())
            });
            let old = mem::replace(&mut self.live, next);
            let version = self.version();
            self.spares.push(Spare {
                table: old,
                version,
            });
            if self.spares.len() > SPARES {
                // Every copy was held: forget the oldest (its readers free it).
                self.spares.remove(0);
            }
        }
        if let Some(t) = Arc::get_mut(&mut self.live) {
            for &op in ops {
                op.apply(t);
            }
        }
        self.log.extend(ops.iter().copied());
        self.trim_log();
    }

    /// The oldest spare no reader holds, brought up to the live version.
    fn take_free_spare(&mut self) -> Option<Arc<VniTable>> {
        let i = self
            .spares
            .iter_mut()
            .position(|s| Arc::get_mut(&mut s.table).is_some())?;
        let mut spare = self.spares.remove(i);
        let from = usize::try_from(spare.version - self.log_start).unwrap_or(usize::MAX);
        if let Some(t) = Arc::get_mut(&mut spare.table) {
            for &op in self.log.iter().skip(from) {
                op.apply(t);
            }
        }
        Some(spare.table)
    }

    /// Drops the operations every spare has already applied, and the spares lagging too far.
    fn trim_log(&mut self) {
        let limit = self.live.v4.len() + self.live.v6.len() + LOG_SLACK;
        loop {
            let oldest = self
                .spares
                .first()
                .map_or_else(|| self.version(), |s| s.version);
            let done = usize::try_from(oldest.saturating_sub(self.log_start))
                .unwrap_or(usize::MAX)
                .min(self.log.len());
            self.log.drain(..done);
            self.log_start += done as u64;
            if self.log.len() <= limit || self.spares.is_empty() {
                break;
            }
            // The oldest spare is held for long: forget it (its reader frees it).
            self.spares.remove(0);
        }
    }

    /// Replaces the tables wholesale (ResetVni, Initialize).
    pub(crate) fn replace(&mut self, table: VniTable) {
        self.live = Arc::new(table);
        self.spares.clear();
        self.log_start = self.version();
        self.log.clear();
    }

    /// How many copies of the tables this VNI keeps (live included).
    #[cfg(test)]
    fn tables(&self) -> usize {
        1 + self.spares.len()
    }
}

/// The last address of `addr/len` (all host bits set).
fn last_address(addr: u32, len: u8) -> u32 {
    addr.masked(len) | !u32::MAX.masked(len)
}

/// Sort key reproducing dpservice's route listing order for IPv4 (`rte_rib_get_nxt()` walks
/// the binary trie in post-order after listing `0.0.0.0/0` first): the default route, then by
/// the prefix's last address ascending, longer prefixes before the shorter ones containing them.
pub(crate) fn list_order_v4(addr: u32, len: u8) -> (bool, u32, std::cmp::Reverse<u8>) {
    (len != 0, last_address(addr, len), std::cmp::Reverse(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn remote(n: u8) -> RouteTarget {
        RouteTarget::Remote {
            vni: 1,
            underlay: Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, u16::from(n)),
        }
    }

    fn v4(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    type Routes = Vec<(u32, u8, RouteTarget)>;

    /// The v4 routes of a table, sorted, to compare copies.
    fn dump(t: &VniTable) -> Routes {
        let mut v: Vec<_> = t.v4.iter().map(|(a, l, r)| (a, l, *r)).collect();
        v.sort_unstable_by_key(|&(a, l, _)| (a, l));
        v
    }

    fn ins(i: u32) -> RouteOp {
        RouteOp::Insert4(i << 8, 24, remote(1))
    }

    #[test]
    fn unpublished_changes_apply_in_place() {
        let mut r = VniRoutes::default();
        for i in 0..1000u32 {
            r.commit(&[ins(i)]);
        }
        assert_eq!(r.table().v4.len(), 1000);
        assert_eq!(r.copies(), 0);
        assert_eq!(r.tables(), 1);
        assert!(r.log.is_empty());
        // Published once: the next change needs a second copy, later ones reuse the spare.
        let published = r.live();
        r.commit(&[ins(1000)]);
        assert_eq!(r.copies(), 1);
        assert_eq!(published.v4.len(), 1000);
        drop(published);
        for i in 1001..1100u32 {
            r.commit(&[ins(i)]);
        }
        assert_eq!(r.copies(), 1);
        assert_eq!(r.table().v4.len(), 1100);
    }

    #[test]
    fn double_buffering_when_readers_let_go() {
        let mut r = VniRoutes::default();
        let mut snapshot = r.live();
        for i in 0..1000u32 {
            r.commit(&[ins(i)]);
            snapshot = r.live(); // publish; the previous snapshot is released
        }
        assert_eq!(snapshot.v4.len(), 1000);
        // Only the first change had no spare; two tables suffice.
        assert_eq!(r.copies(), 1);
        assert_eq!(r.tables(), 2);
        // The spare lags by the last change only.
        assert_eq!(r.log.len(), 1);
        r.commit(&[
            RouteOp::Remove4(5 << 8, 24),
            RouteOp::Insert6(1, 128, remote(2)),
        ]);
        assert_eq!(r.table().v4.len(), 999);
        assert_eq!(r.table().v6.len(), 1);
        assert_eq!(r.copies(), 1);
    }

    #[test]
    fn triple_buffering_reuses_the_third_table_while_a_worker_holds_the_previous() {
        let mut r = VniRoutes::default();
        let mut published = r.live();
        let mut worker = r.live();
        let mut seen = vec![dump(&published)];
        for i in 0..1000u32 {
            r.commit(&[ins(i)]);
            // The worker still holds the snapshot before the one being replaced.
            worker = mem::replace(&mut published, r.live());
            seen.push(dump(&published));
            assert_eq!(dump(&worker), seen[seen.len() - 2]);
        }
        drop(worker);
        // One copy for the second table, one for the third, then the three rotate.
        assert_eq!(r.copies(), 2);
        assert_eq!(r.tables(), 3);
        assert_eq!(r.table().v4.len(), 1000);
        assert!(r.log.len() <= 2, "log of {} operations", r.log.len());
    }

    #[test]
    fn held_tables_are_never_modified() {
        let mut r = VniRoutes::default();
        r.commit(&[RouteOp::Insert4(v4("10.0.0.0"), 8, remote(1))]);
        let held_a = r.live(); // readers still holding every published version
        r.commit(&[RouteOp::Insert4(v4("11.0.0.0"), 8, remote(1))]);
        let held_b = r.live();
        r.commit(&[RouteOp::Insert4(v4("12.0.0.0"), 8, remote(1))]);
        let held_c = r.live();
        // Every copy is held: the next change must clone, and nothing held changes.
        r.commit(&[RouteOp::Remove4(v4("10.0.0.0"), 8)]);
        assert_eq!(r.copies(), 3);
        assert_eq!(r.tables(), 3);
        assert_eq!(held_a.v4.len(), 1);
        assert_eq!(held_b.v4.len(), 2);
        assert_eq!(held_c.v4.len(), 3);
        assert_eq!(r.table().v4.len(), 2);
        assert!(r.table().lookup_v4("10.1.1.1".parse().unwrap()).is_none());
        drop((held_a, held_b, held_c));
        let held_d = r.live();
        r.commit(&[RouteOp::Remove4(v4("11.0.0.0"), 8)]);
        assert_eq!(r.copies(), 3);
        assert_eq!(held_d.v4.len(), 2);
        assert_eq!(dump(r.table()), vec![(v4("12.0.0.0"), 8, remote(1))]);
    }

    #[test]
    fn random_changes_and_readers_stay_consistent() {
        // A small deterministic generator (xorshift), no dependency needed.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut r = VniRoutes::default();
        let mut model = std::collections::BTreeMap::new();
        let mut held: Vec<(Arc<VniTable>, Routes)> = Vec::new();
        for _ in 0..5000 {
            let mut ops = Vec::new();
            for _ in 0..=rnd(3) {
                let key = (rnd(64) as u32) << 8;
                if model.remove(&key).is_some() {
                    ops.push(RouteOp::Remove4(key, 24));
                } else {
                    let target = remote(rnd(4) as u8);
                    model.insert(key, target);
                    ops.push(RouteOp::Insert4(key, 24, target));
                }
            }
            r.commit(&ops);
            let want: Vec<_> = model.iter().map(|(&a, &t)| (a, 24, t)).collect();
            assert_eq!(dump(r.table()), want);
            if rnd(2) == 0 {
                held.push((r.live(), want));
            }
            while held.len() > rnd(4) as usize {
                let i = rnd(held.len() as u64) as usize;
                let (t, want) = held.swap_remove(i);
                assert_eq!(dump(&t), want, "a held table changed");
            }
        }
        assert!(r.tables() <= 1 + SPARES);
    }

    #[test]
    fn a_spare_held_for_long_is_dropped_rather_than_logged_for_ever() {
        let mut r = VniRoutes::default();
        r.commit(&[ins(0)]);
        let stuck = r.live(); // a reader that never lets go
        let mut published = r.live();
        // Churn: the table stays small while the operations pile up.
        for i in 1..5000u32 {
            if i % 2 == 1 {
                r.commit(&[ins(1)]);
            } else {
                r.commit(&[RouteOp::Remove4(1 << 8, 24)]);
            }
            published = r.live();
        }
        assert_eq!(published.v4.len(), 2);
        assert_eq!(stuck.v4.len(), 1);
        // The log stays within the table size plus the slack, not 5000 operations.
        assert!(r.log.len() <= LOG_SLACK + 2, "log of {}", r.log.len());
        assert!(r.tables() <= 1 + SPARES);
        assert!(r.copies() <= 3, "{} copies", r.copies());
    }

    #[test]
    fn replace_drops_the_spares() {
        let mut r = VniRoutes::default();
        r.commit(&[RouteOp::Insert4(1, 32, remote(1))]);
        let _held = r.live();
        r.commit(&[RouteOp::Insert4(2, 32, remote(1))]);
        let _held2 = r.live();
        r.replace(VniTable::default());
        assert!(r.table().v4.is_empty());
        assert_eq!(r.tables(), 1);
        assert!(r.log.is_empty());
        r.commit(&[RouteOp::Insert4(3, 32, remote(1))]);
        assert_eq!(r.table().v4.len(), 1);
        let _held3 = r.live();
        r.commit(&[RouteOp::Insert4(4, 32, remote(1))]);
        assert_eq!(r.table().v4.len(), 2);
    }

    #[test]
    fn listing_order_is_rib_post_order() {
        let mut prefixes = vec![
            ("10.0.0.0", 8),
            ("0.0.0.0", 0),
            ("10.255.0.0", 16),
            ("10.1.0.0", 16),
            ("10.0.0.0", 16),
            ("192.168.1.0", 24),
            ("1.2.3.0", 24),
            ("1.2.3.0", 25),
        ];
        prefixes.sort_by_key(|(a, l)| list_order_v4(v4(a), *l));
        assert_eq!(
            prefixes,
            vec![
                ("0.0.0.0", 0),
                ("1.2.3.0", 25),
                ("1.2.3.0", 24),
                ("10.0.0.0", 16),
                ("10.1.0.0", 16),
                ("10.255.0.0", 16),
                ("10.0.0.0", 8),
                ("192.168.1.0", 24),
            ]
        );
        assert_eq!(last_address(v4("10.0.0.0"), 8), v4("10.255.255.255"));
        assert_eq!(last_address(v4("1.2.3.4"), 32), v4("1.2.3.4"));
        assert_eq!(last_address(0u32, 0), u32::MAX);
    }
}
