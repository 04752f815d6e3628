//! The alias prefixes domain (CreatePrefix, DeletePrefix, ListPrefixes).
//!
//! As in dpservice (`src/grpc/dp_grpc_impl.c`, `src/dp_vnf.c`), an alias prefix is a
//! `Local{port}` route in the interface's VNI plus a registered underlay address. The prefixes
//! own no part of the snapshot of their own: they are kept with their interface (and published
//! in its `Iface`), their routes in the VNI's tables, their addresses in the underlay map.

use std::net::{IpAddr, Ipv6Addr};

use dp_tables::RouteTarget;

use crate::errors::DpError;
use crate::routes::{exact, masked, max_len, RouteOp};
use crate::state::State;
use crate::underlay::UnderlayUse;

/// An alias prefix of an interface. `addr` is kept as given (host bits included), as
/// dpservice lists it; routing uses the masked prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixInfo {
    pub addr: IpAddr,
    pub len: u8,
    pub underlay: Ipv6Addr,
}

/// The position of the registration of `addr/len` (compared masked) among `prefixes` (alias
/// prefixes and load balancer target prefixes alike).
pub(crate) fn position(prefixes: &[PrefixInfo], addr: IpAddr, len: u8) -> Option<usize> {
    let key = masked(addr, len);
    prefixes
        .iter()
        .position(|p| p.len == len && masked(p.addr, p.len) == key)
}

impl State {
    /// Routes `addr/len` to the interface (in its VNI) and registers an underlay address for
    /// it, which is returned.
    ///
    /// Errors: unknown interface → NO_VM; length beyond 32/128 → ROUTE_INSERT; prefix routed
    /// already → ROUTE_EXISTS; preferred underlay taken → VNF_INSERT.
    pub fn create_prefix(
        &mut self,
        id: &str,
        addr: IpAddr,
        len: u8,
        preferred_underlay: Option<Ipv6Addr>,
    ) -> Result<Ipv6Addr, DpError> {
        let e = self.interfaces.get(id).ok_or(DpError::NoVm)?;
        let (port, vni) = (e.info.port, e.info.vni);
        if len > max_len(addr) {
            return Err(DpError::RouteInsert);
        }
        if let Some(t) = self.vnis.table(vni) {
            if exact(t, addr, len).is_some() {
                return Err(DpError::RouteExists);
            }
        }
        let underlay = self.underlays.take(preferred_underlay)?;

        if let Some(routes) = self.vnis.routes_mut(vni) {
            routes.commit(&[RouteOp::insert(addr, len, RouteTarget::Local { port })]);
        }
        let stale = self.interfaces.update(id, |e| {
            // A registration whose route was dropped by ResetVni/Initialize is replaced.
            let stale = position(&e.prefixes, addr, len).map(|i| e.prefixes.remove(i).underlay);
            e.prefixes.push(PrefixInfo {
                addr,
                len,
                underlay,
            });
            stale
        });
        if let Some(old) = stale.flatten() {
            self.underlays.remove(&old);
        }
        self.underlays.insert(
            underlay,
            UnderlayUse::Prefix {
                port,
                vni,
                addr,
                len,
            },
        );
        self.changed();
        Ok(underlay)
    }

    /// Removes an alias prefix: its route and its registration.
    ///
    /// Errors: unknown interface → NO_VM; no route for the prefix → ROUTE_NOT_FOUND; the route
    /// is not this interface's → ROUTE_BAD_PORT; route removed but no registration →
    /// NOT_FOUND. As in dpservice, a registration whose route is gone (after ResetVni) is
    /// still removed, and the route error is reported.
    pub fn delete_prefix(&mut self, id: &str, addr: IpAddr, len: u8) -> Result<(), DpError> {
        let e = self.interfaces.get(id).ok_or(DpError::NoVm)?;
        let (port, vni) = (e.info.port, e.info.vni);
        let record = position(&e.prefixes, addr, len);
        let route = match self.vnis.table(vni).and_then(|t| exact(t, addr, len)) {
            None => Err(DpError::RouteNotFound),
            Some(RouteTarget::Local { port: p }) if p == port => Ok(()),
            Some(_) => Err(DpError::RouteBadPort),
        };
        if route.is_err() && record.is_none() {
            return route;
        }

        if route.is_ok() {
            if let Some(routes) = self.vnis.routes_mut(vni) {
                routes.commit(&[RouteOp::remove(addr, len)]);
            }
        }
        if record.is_some() {
            let removed = self.interfaces.update(id, |e| {
                position(&e.prefixes, addr, len).map(|i| e.prefixes.remove(i).underlay)
            });
            if let Some(old) = removed.flatten() {
                self.underlays.remove(&old);
            }
        }
        self.changed();
        route.and(record.map(|_| ()).ok_or(DpError::NotFound))
    }

    /// The interface's alias prefixes in creation order. Unknown interface → NO_VM.
    pub fn list_prefixes(&self, id: &str) -> Result<Vec<PrefixInfo>, DpError> {
        self.interfaces
            .get(id)
            .map(|e| e.prefixes.clone())
            .ok_or(DpError::NoVm)
    }
}
