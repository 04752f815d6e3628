//! The NAT domain: interfaces' shares of NAT addresses (CreateNat, GetNat, DeleteNat,
//! ListLocalNats), the ranges other hypervisors use (CreateNeighborNat, DeleteNeighborNat,
//! ListNeighborNats), and the public addresses of each VNI (the snapshot's `public`, shared
//! with the VIP domain, [`crate::vip`]) and its `neighbor_nats`.
//!
//! As in dpservice (`src/dp_nat.c`, `src/grpc/dp_grpc_impl.c`):
//!
//! * a NAT address is shared by several interfaces of a VNI, each with its own port range
//!   `min_port..max_port` (upper bound excluded); an interface has at most one NAT (a second
//!   one is SNAT_EXISTS), with an underlay address of its own, allocated as an interface's is
//!   (`UnderlayTarget::Nat`);
//! * the address is a public address of the VNI (`PublicTarget::Nat`) while a local or
//!   neighbor NAT uses it;
//! * a neighbor NAT is identified by (address, VNI, min, max); its range may not overlap the
//!   range of another neighbor NAT of the same address, in any VNI (ALREADY_EXISTS);
//! * Initialize removes every neighbor NAT, and a VNI's neighbor NATs go away with the VNI
//!   (its last interface);
//! * ListLocalNats / ListNeighborNats with address `0.0.0.0` list every entry.
//!
//! Stricter than dpservice (see docs/compatibility.md): local ranges on one address in a VNI
//! may not overlap each other or a neighbor NAT's range (ALREADY_EXISTS), and a NAT or neighbor
//! NAT on an address that is a VIP of the VNI is refused (DNAT_EXISTS) instead of silently
//! breaking that VIP.
//!
//! Limits ([`crate::Limits`]): the public addresses of all VNIs together (dpservice's DNAT
//! table, `DP_NAT_TABLE_MAX` = 126 · 32 = 4032; a new address beyond it is DNAT_CREATE, as in
//! dpservice), and the neighbor NATs (4032; dpservice has no limit of its own; LIMIT_REACHED).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use dp_tables::{NatRange, NeighborNat, PortId, PublicTarget, Vni};
use rustc_hash::FxHashMap;

use crate::errors::DpError;
use crate::interfaces::IfaceEntry;
use crate::state::State;
use crate::underlay::UnderlayUse;

/// An interface's NAT as GetNat reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatInfo {
    pub ip: Ipv4Addr,
    pub min_port: u16,
    /// Exclusive.
    pub max_port: u16,
    pub underlay: Ipv6Addr,
}

/// One interface's share of a NAT address, as ListLocalNats reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalNatInfo {
    pub iface_id: String,
    /// The interface's own IPv4 address (reported as `nat_ip`, as dpservice does).
    pub iface_ipv4: Ipv4Addr,
    pub vni: Vni,
    /// The NAT address (reported as `actual_nat_ip`).
    pub nat_ip: Ipv4Addr,
    pub min_port: u16,
    pub max_port: u16,
}

/// A neighbor NAT: ports of a NAT address used on another hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborNatInfo {
    pub nat_ip: Ipv4Addr,
    pub vni: Vni,
    pub min_port: u16,
    /// Exclusive.
    pub max_port: u16,
    /// The hypervisor's underlay address the range's traffic is relayed to.
    pub underlay: Ipv6Addr,
}

/// An interface's NAT with its creation number (ListLocalNats order).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocalNat {
    pub(crate) info: NatInfo,
    seq: u64,
}

fn overlaps(min_a: u16, max_a: u16, min_b: u16, max_b: u16) -> bool {
    max_a > min_b && min_a < max_b
}

/// What a public address of a VNI is used by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PublicUse {
    Vip {
        port: PortId,
        private: Ipv4Addr,
    },
    /// A NAT address, used by `users` local and neighbor NATs (at least one).
    Nat {
        users: u32,
    },
}

/// The public addresses of all VNIs, and the snapshot's `public` map built from them.
#[derive(Debug, Default)]
pub(crate) struct PublicAddrs {
    by_key: HashMap<(Vni, u32), PublicUse>,
    published: Arc<FxHashMap<(Vni, u32), PublicTarget>>,
}

impl PublicAddrs {
    pub(crate) fn published(&self) -> Arc<FxHashMap<(Vni, u32), PublicTarget>> {
        Arc::clone(&self.published)
    }

    pub(crate) fn get(&self, vni: Vni, ip: Ipv4Addr) -> Option<PublicUse> {
        self.by_key.get(&(vni, u32::from(ip))).copied()
    }

    /// Whether `(vni, ip)` is known or there is room for one more address.
    pub(crate) fn admits(&self, vni: Vni, ip: Ipv4Addr, limit: usize) -> bool {
        self.by_key.contains_key(&(vni, u32::from(ip))) || self.by_key.len() < limit
    }

    pub(crate) fn set_vip(&mut self, vni: Vni, ip: Ipv4Addr, port: PortId, private: Ipv4Addr) {
        let key = (vni, u32::from(ip));
        self.by_key.insert(key, PublicUse::Vip { port, private });
        Arc::make_mut(&mut self.published).insert(key, PublicTarget::Vip { port, private });
    }

    pub(crate) fn remove_vip(&mut self, vni: Vni, ip: Ipv4Addr) {
        let key = (vni, u32::from(ip));
        if let Some(PublicUse::Vip { .. }) = self.by_key.get(&key) {
            self.by_key.remove(&key);
            Arc::make_mut(&mut self.published).remove(&key);
        }
    }

    fn add_nat_user(&mut self, vni: Vni, ip: Ipv4Addr) {
        let key = (vni, u32::from(ip));
        match self.by_key.get_mut(&key) {
            Some(PublicUse::Nat { users }) => *users += 1,
            // Refused before (DNAT_EXISTS); never overwrite a VIP.
            Some(PublicUse::Vip { .. }) => {}
            None => {
                self.by_key.insert(key, PublicUse::Nat { users: 1 });
                Arc::make_mut(&mut self.published).insert(key, PublicTarget::Nat);
            }
        }
    }

    fn drop_nat_user(&mut self, vni: Vni, ip: Ipv4Addr) {
        let key = (vni, u32::from(ip));
        if let Some(PublicUse::Nat { users }) = self.by_key.get_mut(&key) {
            *users = users.saturating_sub(1);
            if *users == 0 {
                self.by_key.remove(&key);
                Arc::make_mut(&mut self.published).remove(&key);
            }
        }
    }
}

/// The neighbor NATs in creation order, and the snapshot's `neighbor_nats` built from them.
#[derive(Debug, Default)]
pub(crate) struct NeighborNats {
    list: Vec<NeighborNatInfo>,
    published: Arc<FxHashMap<(Vni, u32), Vec<NeighborNat>>>,
}

impl NeighborNats {
    pub(crate) fn published(&self) -> Arc<FxHashMap<(Vni, u32), Vec<NeighborNat>>> {
        Arc::clone(&self.published)
    }

    /// Rebuilds the published ranges of `(vni, ip)`, sorted by `min_port`.
    fn republish(&mut self, vni: Vni, ip: Ipv4Addr) {
        let mut ranges: Vec<NeighborNat> = self
            .list
            .iter()
            .filter(|n| n.vni == vni && n.nat_ip == ip)
            .map(|n| NeighborNat {
                min_port: n.min_port,
                max_port: n.max_port,
                underlay: n.underlay,
            })
            .collect();
        ranges.sort_by_key(|n| n.min_port);
        let key = (vni, u32::from(ip));
        let map = Arc::make_mut(&mut self.published);
        if ranges.is_empty() {
            map.remove(&key);
        } else {
            map.insert(key, ranges);
        }
    }

    fn in_range_of(&self, vni: Vni, ip: Ipv4Addr) -> impl Iterator<Item = &NeighborNatInfo> {
        self.list
            .iter()
            .filter(move |n| n.vni == vni && n.nat_ip == ip)
    }
}

/// The NAT domain's state.
#[derive(Debug, Default)]
pub(crate) struct Nats {
    pub(crate) public: PublicAddrs,
    pub(crate) neighbors: NeighborNats,
    /// Creation numbers of local NATs.
    seq: u64,
}

fn ipv4_of(ip: IpAddr) -> Result<Ipv4Addr, DpError> {
    match ip {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(_) => Err(DpError::BadIpVer),
    }
}

impl State {
    /// Gives the interface ports `min_port..max_port` (`min_port < max_port`, which the gRPC
    /// layer checks) of NAT address `ip`, with an underlay address (the preferred one, else a
    /// generated one), which is returned.
    ///
    /// Errors, in dpservice's order: unknown interface → NO_VM; IPv6 address → BAD_IPVER;
    /// preferred underlay taken → VNF_INSERT; the interface has a NAT → SNAT_EXISTS; then
    /// (ours) the range overlaps another interface's or a neighbor NAT's range on this address
    /// in the VNI → ALREADY_EXISTS; the address is a VIP of the VNI → DNAT_EXISTS; the public
    /// address table is full → DNAT_CREATE.
    pub fn create_nat(
        &mut self,
        iface_id: &str,
        ip: IpAddr,
        min_port: u16,
        max_port: u16,
        preferred_underlay: Option<Ipv6Addr>,
    ) -> Result<Ipv6Addr, DpError> {
        let e = self.interfaces.get(iface_id).ok_or(DpError::NoVm)?;
        let (port, vni) = (e.info.port, e.info.vni);
        let ip = ipv4_of(ip)?;
        let underlay = self.underlays.take(preferred_underlay)?;
        if e.nat.is_some() {
            return Err(DpError::SnatExists);
        }
        let local_overlap = self.interfaces.in_vni(vni).any(|o| {
            o.nat.is_some_and(|n| {
                n.info.ip == ip && overlaps(min_port, max_port, n.info.min_port, n.info.max_port)
            })
        });
        let neighbor_overlap = self
            .nat
            .neighbors
            .in_range_of(vni, ip)
            .any(|n| overlaps(min_port, max_port, n.min_port, n.max_port));
        if local_overlap || neighbor_overlap {
            return Err(DpError::AlreadyExists);
        }
        if let Some(PublicUse::Vip { .. }) = self.nat.public.get(vni, ip) {
            return Err(DpError::DnatExists);
        }
        if !self
            .nat
            .public
            .admits(vni, ip, self.limits.public_addresses)
        {
            return Err(DpError::DnatCreate);
        }

        self.nat.seq += 1;
        let nat = LocalNat {
            info: NatInfo {
                ip,
                min_port,
                max_port,
                underlay,
            },
            seq: self.nat.seq,
        };
        self.interfaces.update(iface_id, |e| {
            e.nat = Some(nat);
            e.services.nat = Some(NatRange {
                ip,
                min_port,
                max_port,
            });
        });
        self.underlays
            .insert(underlay, UnderlayUse::Nat { port, vni });
        self.nat.public.add_nat_user(vni, ip);
        self.changed();
        Ok(underlay)
    }

    /// The interface's NAT. Errors: unknown interface → NO_VM; no NAT → SNAT_NO_DATA.
    pub fn get_nat(&self, iface_id: &str) -> Result<NatInfo, DpError> {
        let e = self.interfaces.get(iface_id).ok_or(DpError::NoVm)?;
        e.nat.map(|n| n.info).ok_or(DpError::SnatNoData)
    }

    /// Removes the interface's NAT with its underlay address (and the public address with its
    /// last user). Errors: unknown interface → NO_VM; no NAT → SNAT_NO_DATA.
    pub fn delete_nat(&mut self, iface_id: &str) -> Result<NatInfo, DpError> {
        let nat = self.get_nat(iface_id)?;
        let vni = self.interfaces.get(iface_id).map(|e| e.info.vni);
        self.interfaces.update(iface_id, |e| {
            e.nat = None;
            e.services.nat = None;
        });
        self.underlays.remove(&nat.underlay);
        if let Some(vni) = vni {
            self.nat.public.drop_nat_user(vni, nat.ip);
        }
        self.changed();
        Ok(nat)
    }

    /// The interfaces' shares of NAT address `ip` in every VNI (`0.0.0.0`: of every NAT
    /// address), newest first. IPv6 address → BAD_IPVER.
    ///
    /// dpservice lists them in its hash table's order; newest first reproduces the order its
    /// own tests see for two interfaces.
    pub fn list_local_nats(&self, ip: IpAddr) -> Result<Vec<LocalNatInfo>, DpError> {
        let ip = ipv4_of(ip)?;
        let mut found: Vec<(u64, LocalNatInfo)> = self
            .interfaces
            .all()
            .filter_map(|e| {
                let n = e.nat?;
                (ip.is_unspecified() || n.info.ip == ip).then(|| {
                    (
                        n.seq,
                        LocalNatInfo {
                            iface_id: e.info.id.clone(),
                            iface_ipv4: e.info.ipv4,
                            vni: e.info.vni,
                            nat_ip: n.info.ip,
                            min_port: n.info.min_port,
                            max_port: n.info.max_port,
                        },
                    )
                })
            })
            .collect();
        found.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        Ok(found.into_iter().map(|(_, n)| n).collect())
    }

    /// Adds a neighbor NAT: ports `min_port..max_port` (`min_port < max_port`) of `ip` in `vni`
    /// are used on the hypervisor at `underlay`.
    ///
    /// Errors, in dpservice's order: IPv6 address → BAD_IPVER; the range overlaps another
    /// neighbor NAT's range on this address (in any VNI) → ALREADY_EXISTS; then (ours) it
    /// overlaps a local NAT's range on this address in the VNI → ALREADY_EXISTS; there are
    /// [`crate::Limits::neighbor_nats`] neighbor NATs already → LIMIT_REACHED; the address is a
    /// VIP of the VNI → DNAT_EXISTS; the public address table is full → DNAT_CREATE.
    pub fn create_neighbor_nat(
        &mut self,
        ip: IpAddr,
        vni: Vni,
        min_port: u16,
        max_port: u16,
        underlay: Ipv6Addr,
    ) -> Result<(), DpError> {
        let ip = ipv4_of(ip)?;
        if self
            .nat
            .neighbors
            .list
            .iter()
            .any(|n| n.nat_ip == ip && overlaps(min_port, max_port, n.min_port, n.max_port))
        {
            return Err(DpError::AlreadyExists);
        }
        if self.interfaces.in_vni(vni).any(|o| {
            o.nat.is_some_and(|n| {
                n.info.ip == ip && overlaps(min_port, max_port, n.info.min_port, n.info.max_port)
            })
        }) {
            return Err(DpError::AlreadyExists);
        }
        if self.nat.neighbors.list.len() >= self.limits.neighbor_nats {
            return Err(DpError::LimitReached);
        }
        if let Some(PublicUse::Vip { .. }) = self.nat.public.get(vni, ip) {
            return Err(DpError::DnatExists);
        }
        if !self
            .nat
            .public
            .admits(vni, ip, self.limits.public_addresses)
        {
            return Err(DpError::DnatCreate);
        }

        self.nat.neighbors.list.push(NeighborNatInfo {
            nat_ip: ip,
            vni,
            min_port,
            max_port,
            underlay,
        });
        self.nat.neighbors.republish(vni, ip);
        self.nat.public.add_nat_user(vni, ip);
        self.changed();
        Ok(())
    }

    /// Removes the neighbor NAT (ip, vni, min_port, max_port). Errors: IPv6 address →
    /// BAD_IPVER; no such neighbor NAT → NOT_FOUND.
    pub fn delete_neighbor_nat(
        &mut self,
        ip: IpAddr,
        vni: Vni,
        min_port: u16,
        max_port: u16,
    ) -> Result<NeighborNatInfo, DpError> {
        let ip = ipv4_of(ip)?;
        let i = self
            .nat
            .neighbors
            .list
            .iter()
            .position(|n| {
                n.nat_ip == ip && n.vni == vni && n.min_port == min_port && n.max_port == max_port
            })
            .ok_or(DpError::NotFound)?;
        let removed = self.nat.neighbors.list.remove(i);
        self.nat.neighbors.republish(vni, ip);
        self.nat.public.drop_nat_user(vni, ip);
        self.changed();
        Ok(removed)
    }

    /// The neighbor NATs of address `ip` in every VNI (`0.0.0.0`: all), in creation order.
    /// IPv6 address → BAD_IPVER.
    pub fn list_neighbor_nats(&self, ip: IpAddr) -> Result<Vec<NeighborNatInfo>, DpError> {
        let ip = ipv4_of(ip)?;
        Ok(self
            .nat
            .neighbors
            .list
            .iter()
            .filter(|n| ip.is_unspecified() || n.nat_ip == ip)
            .copied()
            .collect())
    }

    /// Releases what a removed interface's NAT held: its underlay address and its use of the
    /// public address (no publish).
    pub(crate) fn release_nat(&mut self, entry: &IfaceEntry) {
        if let Some(n) = entry.nat {
            self.underlays.remove(&n.info.underlay);
            self.nat.public.drop_nat_user(entry.info.vni, n.info.ip);
        }
    }

    /// Removes the neighbor NATs of a VNI that went away (no publish).
    pub(crate) fn remove_vni_neighbor_nats(&mut self, vni: Vni) {
        self.remove_neighbor_nats_where(|n| n.vni == vni);
    }

    /// Removes every neighbor NAT, as dpservice's Initialize does (no publish). Returns
    /// whether there were any.
    pub(crate) fn clear_neighbor_nats(&mut self) -> bool {
        let any = !self.nat.neighbors.list.is_empty();
        self.remove_neighbor_nats_where(|_| true);
        any
    }

    fn remove_neighbor_nats_where(&mut self, f: impl Fn(&NeighborNatInfo) -> bool) {
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.nat.neighbors.list)
            .into_iter()
            .partition(|n| f(n));
        self.nat.neighbors.list = kept;
        for n in gone {
            self.nat.neighbors.republish(n.vni, n.nat_ip);
            self.nat.public.drop_nat_user(n.vni, n.nat_ip);
        }
    }
}
