//! A table the control plane publishes to the packet path and keeps changing: up to three
//! copies plus a log of operations, so that publishing a change costs O(change), not
//! O(entries in the table). Every table that goes into the snapshot and changes per request
//! can use it: the VNI route tables ([`crate::routes`]) do; NAT, load-balancer and firewall
//! tables are meant to (implement [`Apply`] for the table, then keep a
//! [`VersionedTable`] of it and publish [`VersionedTable::live`]).
//!
//! The published table (`live`) is shared with the packet path and immutable while a
//! snapshot holds it. Older copies (`spares`, previously published versions) are kept together
//! with the log of operations they lack. To change the table:
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
//! O(n) — counted in [`VersionedTable::copies`]. A spare held so long that it lags by more
//! operations than the table holds (plus [`LOG_SLACK`]) is forgotten, which bounds the log.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::mem;
use std::sync::Arc;

/// A table changed by replaying operations: every copy that applies the same operations in the
/// same order ends up equal.
pub(crate) trait Apply: Clone + Debug {
    /// One change to the table.
    type Op: Clone + Debug;

    /// Applies `op`. Operations are validated against the live table before they are
    /// committed, and a spare equals the live table once its log has been replayed, so `apply`
    /// never sees an operation that does not fit (an insert that collides, a remove that finds
    /// nothing); it must not panic if it does.
    fn apply(&mut self, op: &Self::Op);

    /// How many entries the table holds: a spare lagging by more operations than this (plus
    /// [`LOG_SLACK`]) is dropped, as replaying them would cost more than a clone.
    fn entries(&self) -> usize;
}

/// Old copies kept besides the live table (2: triple buffering).
pub(crate) const SPARES: usize = 2;

/// A spare may lag by this many operations beyond the table's size before it is dropped: a
/// reader holding an old snapshot for long must not make the log grow without bound, and
/// replaying more operations than the table holds costs more than cloning it.
pub(crate) const LOG_SLACK: usize = 1024;

/// An old copy of the table: the live table as it was at `version`.
#[derive(Debug)]
struct Spare<T> {
    table: Arc<T>,
    version: u64,
}

/// A published table with its spare copies and operation log, see the module docs.
#[derive(Debug)]
pub(crate) struct VersionedTable<T: Apply> {
    live: Arc<T>,
    /// Operations applied since the version `log_start`: `live` is at version
    /// `log_start + log.len()`, a spare at `version` lacks `log[version - log_start..]`.
    log: VecDeque<T::Op>,
    log_start: u64,
    /// Oldest first (ascending versions).
    spares: Vec<Spare<T>>,
    /// How many times a change had to clone the whole table.
    copies: u64,
}

impl<T: Apply + Default> Default for VersionedTable<T> {
    fn default() -> Self {
        VersionedTable::new(T::default())
    }
}

impl<T: Apply> VersionedTable<T> {
    /// A table starting out as `table`, with no spare copies yet.
    pub(crate) fn new(table: T) -> Self {
        VersionedTable {
            live: Arc::new(table),
            log: VecDeque::new(),
            log_start: 0,
            spares: Vec::new(),
            copies: 0,
        }
    }

    /// The current table (published, or to be published with the next snapshot).
    pub(crate) fn table(&self) -> &T {
        &self.live
    }

    /// The `Arc` to publish in a snapshot.
    pub(crate) fn live(&self) -> Arc<T> {
        Arc::clone(&self.live)
    }

    /// How many times a change had to clone the whole table because every copy was held.
    pub(crate) fn copies(&self) -> u64 {
        self.copies
    }

    fn version(&self) -> u64 {
        self.log_start + self.log.len() as u64
    }

    /// Applies `ops` (already validated against [`Self::table`]) to the live table: in place
    /// when no snapshot holds it, else on a copy that replaces it.
    pub(crate) fn commit(&mut self, ops: &[T::Op]) {
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
            for op in ops {
                t.apply(op);
            }
        }
        self.log.extend(ops.iter().cloned());
        self.trim_log();
    }

    /// The oldest spare no reader holds, brought up to the live version.
    fn take_free_spare(&mut self) -> Option<Arc<T>> {
        let i = self
            .spares
            .iter_mut()
            .position(|s| Arc::get_mut(&mut s.table).is_some())?;
        let mut spare = self.spares.remove(i);
        let from = usize::try_from(spare.version - self.log_start).unwrap_or(usize::MAX);
        if let Some(t) = Arc::get_mut(&mut spare.table) {
            for op in self.log.iter().skip(from) {
                t.apply(op);
            }
        }
        Some(spare.table)
    }

    /// Drops the operations every spare has already applied, and the spares lagging too far.
    fn trim_log(&mut self) {
        let limit = self.live.entries() + LOG_SLACK;
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

    /// Replaces the table wholesale (e.g. ResetVni, Initialize).
    pub(crate) fn replace(&mut self, table: T) {
        self.live = Arc::new(table);
        self.spares.clear();
        self.log_start = self.version();
        self.log.clear();
    }

    /// How many copies of the table this keeps (live included).
    #[cfg(test)]
    pub(crate) fn tables(&self) -> usize {
        1 + self.spares.len()
    }
}

#[cfg(test)]
#[path = "versioned_tests.rs"]
mod tests;
