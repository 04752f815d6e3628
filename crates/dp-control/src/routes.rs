//! One VNI's routing tables as the control plane keeps them: double-buffered so that publishing
//! a change costs O(change), not O(routes in the VNI).
//!
//! The published [`VniTable`] (`live`) is shared with the packet path and immutable. A second
//! copy (`spare`, the previously published version) is kept together with the operations it
//! lacks (`lag`). To change the VNI, the spare is brought up to date by replaying `lag`, the new
//! operations are applied to it, and it becomes the new live table; the old live table becomes
//! the spare, lagging by exactly the new operations. This only works once no reader holds the
//! spare any more (workers drop their snapshot between batches); otherwise the live table is
//! cloned, which is correct but O(n) — counted in [`VniRoutes::copies`].

use std::mem;
use std::sync::Arc;

use dp_tables::{LpmKey, RouteTarget, VniTable};

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
        // Every operation was validated against the live table, which the spare equals once
        // its lag has been replayed: inserts cannot collide and removes find their prefix.
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

/// The routing tables of one VNI, see the module docs.
#[derive(Debug, Default)]
pub(crate) struct VniRoutes {
    live: Arc<VniTable>,
    spare: Option<Arc<VniTable>>,
    lag: Vec<RouteOp>,
    /// How many times a change had to clone the whole table.
    copies: u64,
}

impl VniRoutes {
    /// The current (published) tables.
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

    /// Applies `ops` (already validated against [`Self::table`]) and makes the result live.
    pub(crate) fn commit(&mut self, ops: &[RouteOp]) {
        if ops.is_empty() {
            return;
        }
        let mut next = match self.spare.take() {
            Some(mut spare) => match Arc::get_mut(&mut spare) {
                Some(t) => {
                    for op in self.lag.drain(..) {
                        op.apply(t);
                    }
                    spare
                }
                None => self.copy_live(),
            },
            None => self.copy_live(),
        };
        if let Some(t) = Arc::get_mut(&mut next) {
            for op in ops {
                op.apply(t);
            }
        }
        let old = mem::replace(&mut self.live, next);
        self.spare = Some(old);
        self.lag.clear();
        self.lag.extend_from_slice(ops);
    }

    /// Replaces the tables wholesale (ResetVni, Initialize).
    pub(crate) fn replace(&mut self, table: VniTable) {
        self.live = Arc::new(table);
        self.spare = None;
        self.lag.clear();
    }

    fn copy_live(&mut self) -> Arc<VniTable> {
        self.copies += 1;
        self.lag.clear();
        Arc::new((*self.live).clone())
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

    #[test]
    fn changes_reuse_the_spare_when_unshared() {
        let mut r = VniRoutes::default();
        for i in 0..1000u32 {
            r.commit(&[RouteOp::Insert4(i << 8, 24, remote(1))]);
        }
        assert_eq!(r.table().v4.len(), 1000);
        // Only the very first change had no spare to reuse.
        assert_eq!(r.copies(), 1);
        r.commit(&[
            RouteOp::Remove4(5 << 8, 24),
            RouteOp::Insert6(1, 128, remote(2)),
        ]);
        assert_eq!(r.table().v4.len(), 999);
        assert_eq!(r.table().v6.len(), 1);
        assert_eq!(r.copies(), 1);
        // The spare catches up with everything it missed.
        r.commit(&[RouteOp::Remove6(1, 128)]);
        let spare = r.spare.as_ref().unwrap();
        assert_eq!(spare.v4.len(), 999);
        assert_eq!(spare.v6.len(), 1);
        assert_eq!(r.lag, vec![RouteOp::Remove6(1, 128)]);
    }

    #[test]
    fn a_held_snapshot_is_never_modified() {
        let mut r = VniRoutes::default();
        r.commit(&[RouteOp::Insert4(v4("10.0.0.0"), 8, remote(1))]);
        let held_old = r.live(); // a reader still holding the published table
        r.commit(&[RouteOp::Insert4(v4("11.0.0.0"), 8, remote(1))]);
        // The spare is held: the next change must copy, and the held table stays as it was.
        r.commit(&[RouteOp::Insert4(v4("12.0.0.0"), 8, remote(1))]);
        assert_eq!(held_old.v4.len(), 1);
        assert_eq!(r.table().v4.len(), 3);
        assert_eq!(r.copies(), 2);
        drop(held_old);
        r.commit(&[RouteOp::Remove4(v4("10.0.0.0"), 8)]);
        assert_eq!(r.copies(), 2);
        assert_eq!(r.table().v4.len(), 2);
        assert!(r.table().lookup_v4("10.1.1.1".parse().unwrap()).is_none());
    }

    #[test]
    fn replace_drops_the_spare() {
        let mut r = VniRoutes::default();
        r.commit(&[RouteOp::Insert4(1, 32, remote(1))]);
        r.commit(&[RouteOp::Insert4(2, 32, remote(1))]);
        r.replace(VniTable::default());
        assert!(r.table().v4.is_empty());
        r.commit(&[RouteOp::Insert4(3, 32, remote(1))]);
        assert_eq!(r.table().v4.len(), 1);
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
