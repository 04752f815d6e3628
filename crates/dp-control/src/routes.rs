//! One VNI's routing tables as the control plane keeps them: a [`VersionedTable`] of the
//! [`VniTable`] (see [`crate::versioned`] for the triple buffering and operation log that make
//! publishing a change cost O(change), not O(routes in the VNI)), changed by [`RouteOp`]s.

use dp_tables::{LpmKey, RouteTarget, VniTable};

use crate::versioned::{Apply, VersionedTable};

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

impl Apply for VniTable {
    type Op = RouteOp;

    fn apply(&mut self, op: &RouteOp) {
        op.apply(self);
    }

    fn entries(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// The routing tables of one VNI, see the module docs.
pub(crate) type VniRoutes = VersionedTable<VniTable>;

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
    use std::net::Ipv4Addr;

    fn v4(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
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
