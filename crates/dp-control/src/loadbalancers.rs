//! The load balancer domain: balancers (Create/Get/List/DeleteLoadBalancer), their targets
//! (Create/List/DeleteLoadBalancerTarget) and the target prefixes of interfaces
//! (Create/List/DeleteLoadBalancerPrefix).
//!
//! As in dpservice (`src/dp_lb.c`, `src/grpc/dp_grpc_impl.c`):
//! * a balancer is a VIP (IPv4 or IPv6) of a VNI with up to [`crate::Limits::lb_ports`]
//!   protocol/port pairs, and an underlay address of its own (`UnderlayTarget::LoadBalancer`);
//!   it keeps its VNI in use, as an interface does. Its id and its (VNI, address) are unique
//!   (ALREADY_EXISTS); a full table is OUT_OF_MEMORY (dpservice's hash table refusing it);
//! * a target is an underlay IPv6 address — of a target prefix, on this host or another: the
//!   traffic of a flow is sent there through the underlay. Targets are kept sorted (dpservice
//!   sorts them too), so every host with the same set builds the same Maglev table; an IPv4
//!   target is BAD_IPVER, a duplicate ALREADY_EXISTS, one too many BACKIP_ADD, an unknown one
//!   NOT_FOUND, an unknown balancer NO_LB;
//! * a target prefix is a prefix of an interface with an underlay address, delivered to the
//!   interface like an alias prefix but with no route in the VNI (the VM answers its clients
//!   from the balancer's address, which the prefix lets it send from).
//!
//! The balancers are published in the snapshot's `load_balancers`, each with its Maglev table
//! (built here, off the packet path); `lb_generation` changes with every change of targets or
//! balancers, which makes the packet path check the target of a flow again (a removed target's
//! flows move, the others stay).

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use dp_tables::lb::{lb_key, LbKey};
use dp_tables::{LbPort, LoadBalancer, Vni};
use rustc_hash::FxHashMap;

use crate::errors::DpError;
use crate::prefixes::{position, PrefixInfo};
use crate::routes::max_len;
use crate::state::State;
use crate::underlay::UnderlayUse;

/// A balancer as GetLoadBalancer and ListLoadBalancers report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadBalancerInfo {
    pub id: String,
    pub vni: Vni,
    pub ip: IpAddr,
    pub ports: Vec<LbPort>,
    pub underlay: Ipv6Addr,
}

impl LoadBalancerInfo {
    fn of(lb: &LoadBalancer) -> Self {
        LoadBalancerInfo {
            id: lb.id.clone(),
            vni: lb.vni,
            ip: lb.ip,
            ports: lb.ports.clone(),
            underlay: lb.underlay,
        }
    }
}

/// The balancers in creation order, and the snapshot's part built from them.
#[derive(Debug, Default)]
pub(crate) struct LoadBalancers {
    list: Vec<Arc<LoadBalancer>>,
    published: Arc<FxHashMap<LbKey, Arc<LoadBalancer>>>,
    generation: u64,
}

impl LoadBalancers {
    /// The snapshot's parts: `load_balancers` and `lb_generation`.
    pub(crate) fn published(&self) -> (Arc<FxHashMap<LbKey, Arc<LoadBalancer>>>, u64) {
        (Arc::clone(&self.published), self.generation)
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.list.iter().position(|lb| lb.id == id)
    }

    fn get(&self, id: &str) -> Option<&LoadBalancer> {
        self.list.iter().find(|lb| lb.id == id).map(|lb| &**lb)
    }

    /// Rebuilds the published map (O(balancers): a few hundred at most) after a change.
    fn republish(&mut self) {
        self.generation += 1;
        self.published = Arc::new(
            self.list
                .iter()
                .map(|lb| (lb_key(lb.vni, lb.ip), Arc::clone(lb)))
                .collect(),
        );
    }
}

impl State {
    /// Creates a balancer of `vni` at `ip` serving `ports`, with an underlay address (the
    /// preferred one, else a generated one), which is returned.
    ///
    /// Errors: preferred underlay taken → VNF_INSERT; the id or the (VNI, address) is a
    /// balancer's already → ALREADY_EXISTS; the table is full → OUT_OF_MEMORY. Port lists are
    /// checked by the caller (the RPC's argument errors).
    pub fn create_load_balancer(
        &mut self,
        id: &str,
        vni: Vni,
        ip: IpAddr,
        ports: Vec<LbPort>,
        preferred_underlay: Option<Ipv6Addr>,
    ) -> Result<Ipv6Addr, DpError> {
        let underlay = self.underlays.take(preferred_underlay)?;
        let key = lb_key(vni, ip);
        if self.lbs.position(id).is_some() || self.lbs.published.contains_key(&key) {
            return Err(DpError::AlreadyExists);
        }
        if self.lbs.list.len() >= self.limits.load_balancers {
            return Err(DpError::OutOfMemory);
        }
        let lb = LoadBalancer::new(id.to_owned(), vni, ip, ports, underlay);
        self.lbs.list.push(Arc::new(lb));
        self.lbs.republish();
        self.underlays
            .insert(underlay, UnderlayUse::LoadBalancer { vni, ip });
        // A balancer keeps its VNI in use (dpservice creates the VNI's tables for it).
        self.vnis.attach(vni);
        self.changed();
        Ok(underlay)
    }

    /// The balancer `id`. Unknown → NOT_FOUND.
    pub fn get_load_balancer(&self, id: &str) -> Result<LoadBalancerInfo, DpError> {
        self.lbs
            .get(id)
            .map(LoadBalancerInfo::of)
            .ok_or(DpError::NotFound)
    }

    /// Every balancer, in creation order.
    pub fn list_load_balancers(&self) -> Vec<LoadBalancerInfo> {
        self.lbs
            .list
            .iter()
            .map(|lb| LoadBalancerInfo::of(lb))
            .collect()
    }

    /// Removes a balancer with its targets and its underlay address; its VNI goes away if
    /// nothing else uses it (with the VNI's neighbor NATs, as when its last interface goes).
    /// Unknown → NOT_FOUND.
    pub fn delete_load_balancer(&mut self, id: &str) -> Result<LoadBalancerInfo, DpError> {
        let at = self.lbs.position(id).ok_or(DpError::NotFound)?;
        let lb = self.lbs.list.remove(at);
        self.lbs.republish();
        self.underlays.remove(&lb.underlay);
        if self.vnis.detach(lb.vni).is_none() {
            self.remove_vni_neighbor_nats(lb.vni);
        }
        self.changed();
        Ok(LoadBalancerInfo::of(&lb))
    }

    /// Adds a target (an underlay IPv6 address) to balancer `id`.
    ///
    /// Errors: unknown balancer → NO_LB; IPv4 address → BAD_IPVER; a target already →
    /// ALREADY_EXISTS; [`crate::Limits::lb_targets`] reached → BACKIP_ADD.
    pub fn create_lb_target(&mut self, id: &str, target: IpAddr) -> Result<(), DpError> {
        let at = self.lbs.position(id).ok_or(DpError::NoLb)?;
        let IpAddr::V6(target) = target else {
            return Err(DpError::BadIpVer);
        };
        let lb = &self.lbs.list[at];
        if lb.has_target(target) {
            return Err(DpError::AlreadyExists);
        }
        if lb.targets.len() >= self.limits.lb_targets {
            return Err(DpError::BackipAdd);
        }
        let mut targets = lb.targets.clone();
        targets.push(target);
        self.set_lb_targets(at, targets);
        Ok(())
    }

    /// Removes a target of balancer `id`; its flows move to the remaining targets.
    ///
    /// Errors: unknown balancer → NO_LB; IPv4 address → BAD_IPVER; not a target → NOT_FOUND.
    pub fn delete_lb_target(&mut self, id: &str, target: IpAddr) -> Result<(), DpError> {
        let at = self.lbs.position(id).ok_or(DpError::NoLb)?;
        let IpAddr::V6(target) = target else {
            return Err(DpError::BadIpVer);
        };
        let lb = &self.lbs.list[at];
        if !lb.has_target(target) {
            return Err(DpError::NotFound);
        }
        let targets = lb
            .targets
            .iter()
            .copied()
            .filter(|&t| t != target)
            .collect();
        self.set_lb_targets(at, targets);
        Ok(())
    }

    /// The targets of balancer `id` (sorted), or with `None` of every balancer (in creation
    /// order). Unknown balancer → NO_LB.
    pub fn list_lb_targets(&self, id: Option<&str>) -> Result<Vec<Ipv6Addr>, DpError> {
        match id {
            Some(id) => self
                .lbs
                .get(id)
                .map(|lb| lb.targets.clone())
                .ok_or(DpError::NoLb),
            None => Ok(self
                .lbs
                .list
                .iter()
                .flat_map(|lb| lb.targets.iter().copied())
                .collect()),
        }
    }

    /// Replaces balancer `at`'s targets and rebuilds its Maglev table.
    fn set_lb_targets(&mut self, at: usize, targets: Vec<Ipv6Addr>) {
        let mut lb = LoadBalancer::clone(&self.lbs.list[at]);
        lb.set_targets(targets);
        self.lbs.list[at] = Arc::new(lb);
        self.lbs.republish();
        self.changed();
    }

    /// Gives interface `iface_id` the target prefix `addr/len` with an underlay address (the
    /// preferred one, else a generated one), which is returned.
    ///
    /// Errors: unknown interface → NO_VM; the interface has the prefix already →
    /// ALREADY_EXISTS; length beyond 32/128 → ROUTE_INSERT; preferred underlay taken →
    /// VNF_INSERT.
    pub fn create_lb_prefix(
        &mut self,
        iface_id: &str,
        addr: IpAddr,
        len: u8,
        preferred_underlay: Option<Ipv6Addr>,
    ) -> Result<Ipv6Addr, DpError> {
        let e = self.interfaces.get(iface_id).ok_or(DpError::NoVm)?;
        let (port, vni) = (e.info.port, e.info.vni);
        if position(&e.lb_prefixes, addr, len).is_some() {
            return Err(DpError::AlreadyExists);
        }
        if len > max_len(addr) {
            return Err(DpError::RouteInsert);
        }
        let underlay = self.underlays.take(preferred_underlay)?;
        self.interfaces.update(iface_id, |e| {
            e.lb_prefixes.push(PrefixInfo {
                addr,
                len,
                underlay,
            })
        });
        self.underlays.insert(
            underlay,
            UnderlayUse::LbPrefix {
                port,
                vni,
                addr,
                len,
            },
        );
        self.changed();
        Ok(underlay)
    }

    /// Removes a target prefix of an interface with its underlay address.
    /// Errors: unknown interface → NO_VM; no such prefix → NOT_FOUND.
    pub fn delete_lb_prefix(
        &mut self,
        iface_id: &str,
        addr: IpAddr,
        len: u8,
    ) -> Result<(), DpError> {
        let e = self.interfaces.get(iface_id).ok_or(DpError::NoVm)?;
        position(&e.lb_prefixes, addr, len).ok_or(DpError::NotFound)?;
        let removed = self.interfaces.update(iface_id, |e| {
            position(&e.lb_prefixes, addr, len).map(|i| e.lb_prefixes.remove(i).underlay)
        });
        if let Some(old) = removed.flatten() {
            self.underlays.remove(&old);
        }
        self.changed();
        Ok(())
    }

    /// The target prefixes of interface `iface_id`, in creation order. Unknown interface →
    /// NO_VM. (A listing of every interface's is the client's: dpservice refuses an empty id.)
    pub fn list_lb_prefixes(&self, iface_id: &str) -> Result<Vec<PrefixInfo>, DpError> {
        self.interfaces
            .get(iface_id)
            .map(|e| e.lb_prefixes.clone())
            .ok_or(DpError::NoVm)
    }
}
