//! The routes domain: external routes (CreateRoute, DeleteRoute, ListRoutes) and how a VNI's
//! routing tables are kept and changed.
//!
//! A VNI's tables are a `VersionedTable` of its [`VniTable`] (see `versioned.rs` for the triple
//! buffering and operation log that make publishing a change cost O(change), not O(routes in the
//! VNI)), changed by `RouteOp`s; the VNIs themselves are [`crate::vnis`]'.
//!
//! As in dpservice (`src/dp_lpm.c`), an external route is a `Remote{vni, underlay}` route in
//! the VNI's table; only those are listed by `ListRoutes`, and, as in dpservice, only the IPv4
//! ones. Interfaces' and alias prefixes' routes are `Local{port}` routes in the same tables.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dp_tables::{LpmKey, RouteTarget, Vni, VniTable};

use crate::errors::DpError;
use crate::state::State;
use crate::versioned::{Apply, VersionedTable};

/// An external route as ListRoutes reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    /// The VNI whose table holds the route.
    pub vni: Vni,
    /// The (masked) prefix.
    pub addr: IpAddr,
    pub len: u8,
    pub nexthop_vni: Vni,
    pub nexthop: Ipv6Addr,
}

/// One change to a VNI's tables. Addresses are masked to the prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteOp {
    Insert4(u32, u8, RouteTarget),
    Remove4(u32, u8),
    Insert6(u128, u8, RouteTarget),
    Remove6(u128, u8),
}

impl RouteOp {
    /// Inserts `addr/len` (masked) routed to `target`.
    pub(crate) fn insert(addr: IpAddr, len: u8, target: RouteTarget) -> RouteOp {
        match addr {
            IpAddr::V4(a) => RouteOp::Insert4(u32::from(a).masked(len), len, target),
            IpAddr::V6(a) => RouteOp::Insert6(u128::from(a).masked(len), len, target),
        }
    }

    /// Removes `addr/len` (masked).
    pub(crate) fn remove(addr: IpAddr, len: u8) -> RouteOp {
        match addr {
            IpAddr::V4(a) => RouteOp::Remove4(u32::from(a).masked(len), len),
            IpAddr::V6(a) => RouteOp::Remove6(u128::from(a).masked(len), len),
        }
    }

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

/// The longest prefix of `addr`'s family (32 or 128).
pub(crate) fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// `addr` with the host bits beyond `len` cleared.
pub(crate) fn masked(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).masked(len))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).masked(len))),
    }
}

/// The route stored for exactly `addr/len` (`None` also for a length beyond the family's).
pub(crate) fn exact(t: &VniTable, addr: IpAddr, len: u8) -> Option<RouteTarget> {
    if len > max_len(addr) {
        return None;
    }
    match addr {
        IpAddr::V4(a) => t.v4.get_exact(u32::from(a), len).copied(),
        IpAddr::V6(a) => t.v6.get_exact(u128::from(a), len).copied(),
    }
}

impl State {
    /// Adds an external route `addr/len → (nexthop_vni, nexthop)` to the VNI's table.
    ///
    /// Errors: IPv4 next hop → BAD_IPVER; no interface in the VNI → NO_VNI; length beyond
    /// 32/128 → ROUTE_INSERT; prefix routed already → ROUTE_EXISTS.
    pub fn create_route(
        &mut self,
        vni: Vni,
        addr: IpAddr,
        len: u8,
        nexthop_vni: Vni,
        nexthop: IpAddr,
    ) -> Result<(), DpError> {
        let IpAddr::V6(underlay) = nexthop else {
            return Err(DpError::BadIpVer);
        };
        let routes = self.vnis.routes_mut(vni).ok_or(DpError::NoVni)?;
        if len > max_len(addr) {
            return Err(DpError::RouteInsert);
        }
        if exact(routes.table(), addr, len).is_some() {
            return Err(DpError::RouteExists);
        }
        let target = RouteTarget::Remote {
            vni: nexthop_vni,
            underlay,
            // dpservice translates (VIP, NAT) what takes the default route.
            public: len == 0,
        };
        routes.commit(&[RouteOp::insert(addr, len, target)]);
        self.changed();
        Ok(())
    }

    /// Removes an external route.
    ///
    /// Errors: no interface in the VNI → NO_VNI; no such prefix → ROUTE_NOT_FOUND; the prefix
    /// is an interface's or alias prefix's route → ROUTE_BAD_PORT.
    pub fn delete_route(&mut self, vni: Vni, addr: IpAddr, len: u8) -> Result<(), DpError> {
        let routes = self.vnis.routes_mut(vni).ok_or(DpError::NoVni)?;
        match exact(routes.table(), addr, len) {
            None => return Err(DpError::RouteNotFound),
            Some(RouteTarget::Local { .. }) => return Err(DpError::RouteBadPort),
            Some(RouteTarget::Remote { .. }) => {}
        }
        routes.commit(&[RouteOp::remove(addr, len)]);
        self.changed();
        Ok(())
    }

    /// The external IPv4 routes of one VNI (of every VNI for `vni` 0), in dpservice's order.
    /// Unknown VNI → NO_VNI.
    pub fn list_routes(&self, vni: Vni) -> Result<Vec<RouteInfo>, DpError> {
        let mut out = Vec::new();
        if vni == 0 {
            for (id, table) in self.vnis.tables() {
                external_routes_v4(id, table, &mut out);
            }
        } else {
            let table = self.vnis.table(vni).ok_or(DpError::NoVni)?;
            external_routes_v4(vni, table, &mut out);
        }
        Ok(out)
    }
}

/// Appends the VNI's external IPv4 routes to `out`, in dpservice's listing order.
fn external_routes_v4(vni: Vni, t: &VniTable, out: &mut Vec<RouteInfo>) {
    let mut routes: Vec<(u32, u8, Vni, Ipv6Addr)> =
        t.v4.iter()
            .filter_map(|(addr, len, target)| match *target {
                RouteTarget::Remote { vni, underlay, .. } => Some((addr, len, vni, underlay)),
                RouteTarget::Local { .. } => None,
            })
            .collect();
    routes.sort_unstable_by_key(|&(addr, len, _, _)| list_order_v4(addr, len));
    out.extend(
        routes
            .into_iter()
            .map(|(addr, len, nexthop_vni, nexthop)| RouteInfo {
                vni,
                addr: IpAddr::V4(Ipv4Addr::from(addr)),
                len,
                nexthop_vni,
                nexthop,
            }),
    );
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
