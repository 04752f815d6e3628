//! Tests of [`VersionedTable`]: the generic behaviour on a small model table, then the
//! triple buffering as the VNI route tables use it.

use super::*;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use dp_tables::{RouteTarget, VniTable};

use crate::routes::{RouteOp, VniRoutes};

// ----- the generic table ------------------------------------------------------------------------

thread_local! {
    /// Operations applied to any [`Model`] copy on this test's thread (the cost of commits).
    static APPLIED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn applied() -> u64 {
    APPLIED.with(|a| a.get())
}

/// A small table: key → value, plus how many operations this copy has applied (a copy at
/// version `v` must have applied exactly the first `v` operations).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    map: BTreeMap<u32, u32>,
    version: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ModelOp {
    Set(u32, u32),
    Del(u32),
}

impl Apply for Model {
    type Op = ModelOp;

    fn apply(&mut self, op: &ModelOp) {
        APPLIED.with(|a| a.set(a.get() + 1));
        self.version += 1;
        match *op {
            ModelOp::Set(k, v) => {
                self.map.insert(k, v);
            }
            ModelOp::Del(k) => {
                self.map.remove(&k);
            }
        }
    }

    fn entries(&self) -> usize {
        self.map.len()
    }
}

#[test]
fn starts_as_given_and_empty_commits_change_nothing() {
    let mut start = Model::default();
    start.map.insert(1, 10);
    let mut t = VersionedTable::new(start.clone());
    assert_eq!(t.table(), &start);
    let held = t.live();
    t.commit(&[]);
    assert!(
        Arc::ptr_eq(&held, &t.live()),
        "an empty commit replaced the table"
    );
    assert_eq!((t.copies(), t.tables(), t.log.len()), (0, 1, 0));
    assert_eq!(applied(), 0);
    let d = VersionedTable::<Model>::default();
    assert_eq!(d.table(), &Model::default());
}

#[test]
fn an_unheld_table_changes_in_place() {
    let mut t = VersionedTable::<Model>::default();
    let before = Arc::as_ptr(&t.live());
    for k in 0..100 {
        t.commit(&[ModelOp::Set(k, k), ModelOp::Set(k, k + 1)]);
    }
    t.commit(&[ModelOp::Del(0)]);
    assert_eq!(Arc::as_ptr(&t.live()), before);
    assert_eq!(applied(), 201, "each operation applied once");
    assert_eq!(t.table().map.len(), 99);
    assert_eq!(t.table().map.get(&5), Some(&6));
    assert_eq!((t.copies(), t.tables(), t.log.len()), (0, 1, 0));
}

#[test]
fn published_tables_keep_their_version_and_the_live_one_moves_on() {
    let mut t = VersionedTable::<Model>::default();
    t.commit(&[ModelOp::Set(1, 1)]);
    let v1 = t.live(); // published, held by a reader
    t.commit(&[ModelOp::Set(2, 2)]);
    let v2 = t.live();
    t.commit(&[ModelOp::Set(1, 3), ModelOp::Del(2)]);
    // Readers still see what was published to them; the next snapshot gets the changes.
    assert_eq!(v1.map, BTreeMap::from([(1, 1)]));
    assert_eq!(v2.map, BTreeMap::from([(1, 1), (2, 2)]));
    assert_eq!(t.table().map, BTreeMap::from([(1, 3)]));
    assert_eq!((v1.version, v2.version, t.table().version), (1, 2, 4));
    assert!(Arc::ptr_eq(&t.live(), &t.live()));
    // Both older copies were held: each change needed a clone.
    assert_eq!(t.copies(), 2);
    drop((v1, v2));
    // Now a spare is free: it catches up by replaying the log instead of being cloned.
    let v4 = t.live();
    t.commit(&[ModelOp::Set(9, 9)]);
    assert_eq!(t.copies(), 2);
    assert_eq!(v4.map, BTreeMap::from([(1, 3)]));
    assert_eq!(t.table().map, BTreeMap::from([(1, 3), (9, 9)]));
    assert_eq!(t.table().version, 5);
}

#[test]
fn rotating_copies_apply_every_operation_once_each() {
    let mut t = VersionedTable::<Model>::default();
    let mut published = t.live();
    let mut worker = t.live();
    const N: u64 = 1000;
    for k in 0..N as u32 {
        t.commit(&[ModelOp::Set(k % 50, k)]);
        // A worker still holds the snapshot before the one being replaced.
        worker = mem::replace(&mut published, t.live());
        assert_eq!(worker.version + 1, published.version);
    }
    drop(worker);
    assert_eq!(t.copies(), 2);
    assert_eq!(t.tables(), 1 + SPARES);
    // Three copies, each applying each operation at most once (none is cloned after warm-up).
    assert!(
        applied() <= 3 * N,
        "{} applications for {N} operations",
        applied()
    );
    assert!(t.log.len() <= 2, "log of {}", t.log.len());
    assert_eq!(t.table().version, N);
}

#[test]
fn random_changes_and_readers_see_consistent_tables() {
    // xorshift, deterministic.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut t = VersionedTable::<Model>::default();
    let mut model = Model::default();
    let mut held: Vec<(Arc<Model>, Model)> = Vec::new();
    for _ in 0..5000 {
        let ops: Vec<ModelOp> = (0..=rnd(4))
            .map(|_| {
                let k = rnd(40) as u32;
                if rnd(3) == 0 {
                    ModelOp::Del(k)
                } else {
                    ModelOp::Set(k, rnd(1000) as u32)
                }
            })
            .collect();
        for op in &ops {
            model.apply(op);
        }
        t.commit(&ops);
        assert_eq!(t.table(), &model);
        if rnd(2) == 0 {
            held.push((t.live(), model.clone()));
        }
        while held.len() > rnd(5) as usize {
            let (table, want) = held.swap_remove(rnd(held.len() as u64) as usize);
            assert_eq!(*table, want, "a published table changed");
        }
        assert!(t.tables() <= 1 + SPARES);
        assert!(t.log.len() <= t.table().entries() + LOG_SLACK + ops.len());
    }
    for (table, want) in held {
        assert_eq!(*table, want);
    }
}

#[test]
fn replace_starts_over() {
    let mut t = VersionedTable::<Model>::default();
    t.commit(&[ModelOp::Set(1, 1)]);
    let _held = t.live();
    t.commit(&[ModelOp::Set(2, 2)]);
    let mut fresh = Model::default();
    fresh.map.insert(7, 7);
    t.replace(fresh.clone());
    assert_eq!(t.table(), &fresh);
    assert_eq!((t.tables(), t.log.len()), (1, 0));
    let held = t.live();
    t.commit(&[ModelOp::Del(7)]);
    assert_eq!(held.map.len(), 1);
    assert!(t.table().map.is_empty());
}

// ----- VNI route tables -------------------------------------------------------------------------

fn remote(n: u8) -> RouteTarget {
    RouteTarget::Remote {
        vni: 1,
        underlay: Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, u16::from(n)),
        public: false,
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
