//! Immutable snapshots of the tables, swapped atomically (RCU style).

use std::net::Ipv6Addr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use rustc_hash::FxHashMap;

use crate::lb::{lb_key, LbKey, LoadBalancer};
use crate::{Iface, NeighborNat, PortId, PublicTarget, Vni, VniTable};

/// What an underlay (outer IPv6 destination) address of ours delivers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnderlayTarget {
    /// A VM interface: decapsulated packets go to its port, in its VNI.
    Iface { port: PortId, vni: Vni },
    /// An interface's VIP (CreateVip's underlay route): packets for the VIP, translated to the
    /// interface's own address, go to its port.
    Vip { port: PortId, vni: Vni },
    /// An interface's NAT (CreateNat's underlay route): replies of its flows, found in the flow
    /// table, or relayed to a neighbor NAT.
    Nat { port: PortId, vni: Vni },
    /// A load balancer's (CreateLoadBalancer's underlay route): packets for the balancer at `ip`
    /// in `vni`, sent on to a target.
    LoadBalancer { vni: Vni, ip: std::net::IpAddr },
}

/// Everything the packet path reads, frozen at one instant.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Interfaces indexed by their port id (`None`: no interface bound to that port). Shared
    /// between snapshots until an interface changes, so a route change publishes in O(1) here.
    pub ifaces_by_port: Arc<Vec<Option<Arc<Iface>>>>,
    pub vnis: FxHashMap<Vni, Arc<VniTable>>,
    /// Our underlay addresses (every interface's; later VIPs, NAT and load balancers) and what
    /// packets arriving for them are delivered to. The host's own `--ipv6` is not in here.
    ///
    /// Keyed by the address as a `u128`: Fx hashing of `Ipv6Addr`'s bytes spreads sequential
    /// addresses (a counter in the low bits) badly, the integer mixes well. Shared between
    /// snapshots until an underlay address changes.
    pub underlay: Arc<FxHashMap<u128, UnderlayTarget>>,
    /// The public IPv4 addresses (VIPs and NAT addresses) of each VNI, keyed `(vni, address)`:
    /// what traffic to them translates back to.
    pub public: Arc<FxHashMap<(Vni, u32), PublicTarget>>,
    /// Neighbor NAT ranges, keyed `(vni, NAT address)`, sorted by `min_port`.
    pub neighbor_nats: Arc<FxHashMap<(Vni, u32), Vec<NeighborNat>>>,
    /// The load balancers, keyed by VNI and address ([`lb_key`]).
    pub load_balancers: Arc<FxHashMap<LbKey, Arc<LoadBalancer>>>,
    /// Changes whenever a balancer's targets change (or a balancer goes): a load-balanced
    /// flow whose target was confirmed under another generation checks it again.
    pub lb_generation: u64,
    /// Changes whenever a firewall rule or an interface is added or removed: a flow whose
    /// verdict was made under another generation is decided again. 32 bits, as flows keep it
    /// (a flow's hot line has room for no more); it steps over `u32::MAX`, the flows' "never
    /// decided" ([`crate::next_firewall_generation`]). A flow that lived through exactly 2^32 − 1
    /// firewall changes would keep its verdict: at a thousand changes a second that is seven
    /// weeks, far past any flow's timeout.
    pub firewall_generation: u32,
    /// The active packet capture (CaptureStart), `None` when capture is off: the packet path
    /// looks at it once per batch.
    pub capture: Option<crate::CaptureConfig>,
    /// Bumped on every publish; lets workers notice a change cheaply.
    pub generation: u64,
}

impl Snapshot {
    #[inline]
    pub fn iface(&self, port: PortId) -> Option<&Iface> {
        self.ifaces_by_port
            .get(usize::from(port))
            .and_then(|slot| slot.as_deref())
    }

    #[inline]
    pub fn vni(&self, vni: Vni) -> Option<&VniTable> {
        self.vnis.get(&vni).map(|t| &**t)
    }

    /// What arrives for this underlay address, if it is one of ours.
    #[inline]
    pub fn underlay_target(&self, addr: Ipv6Addr) -> Option<UnderlayTarget> {
        self.underlay.get(&u128::from(addr)).copied()
    }

    /// Whether this underlay address is one of ours (an interface's or a prefix's).
    #[inline]
    pub fn owns_underlay(&self, addr: Ipv6Addr) -> bool {
        self.underlay.contains_key(&u128::from(addr))
    }

    /// What a public IPv4 address of a VNI translates back to, if it is one.
    #[inline]
    pub fn public_target(&self, vni: Vni, addr: std::net::Ipv4Addr) -> Option<PublicTarget> {
        self.public.get(&(vni, u32::from(addr))).copied()
    }

    /// The load balancer of `vni` at `ip`, if there is one.
    #[inline]
    pub fn load_balancer(&self, vni: Vni, ip: std::net::IpAddr) -> Option<&LoadBalancer> {
        self.load_balancers.get(&lb_key(vni, ip)).map(|lb| &**lb)
    }

    /// The load balancer of a connection key's destination, if there is one.
    #[inline]
    pub fn load_balancer_of(&self, key: &crate::ConnKey) -> Option<&LoadBalancer> {
        self.load_balancers
            .get(&(key.vni, key.dst, key.is_v6))
            .map(|lb| &**lb)
    }

    /// The neighbor NAT whose range holds `port` of the NAT address `addr` in `vni`.
    #[inline]
    pub fn neighbor_nat(
        &self,
        vni: Vni,
        addr: std::net::Ipv4Addr,
        port: u16,
    ) -> Option<NeighborNat> {
        self.neighbor_nats
            .get(&(vni, u32::from(addr)))?
            .iter()
            .find(|n| n.min_port <= port && port < n.max_port)
            .copied()
    }

    /// Registers an underlay address (copies the map if another snapshot shares it).
    pub fn set_underlay(&mut self, addr: Ipv6Addr, target: UnderlayTarget) {
        Arc::make_mut(&mut self.underlay).insert(u128::from(addr), target);
    }

    /// Binds (or with `None` unbinds) an interface to its port, growing the table as needed.
    pub fn set_iface(&mut self, port: PortId, iface: Option<Arc<Iface>>) {
        let slots = Arc::make_mut(&mut self.ifaces_by_port);
        let index = usize::from(port);
        if slots.len() <= index {
            slots.resize(index + 1, None);
        }
        if let Some(slot) = slots.get_mut(index) {
            *slot = iface;
        }
    }
}

/// The writer side: the control plane replaces the snapshot; readers never block it.
#[derive(Debug, Default)]
pub struct Publisher {
    current: Arc<ArcSwap<Snapshot>>,
}

impl Publisher {
    pub fn new(initial: Snapshot) -> Self {
        Publisher {
            current: Arc::new(ArcSwap::from_pointee(initial)),
        }
    }

    /// Makes `next` visible to every reader; its generation is set to one past the current one.
    pub fn publish(&self, mut next: Snapshot) {
        next.generation = self.current.load().generation + 1;
        self.current.store(Arc::new(next));
    }

    /// The snapshot currently published.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn reader(&self) -> SnapshotReader {
        SnapshotReader {
            current: Arc::clone(&self.current),
        }
    }
}

/// The reader side, one per worker.
#[derive(Clone, Debug)]
pub struct SnapshotReader {
    current: Arc<ArcSwap<Snapshot>>,
}

impl SnapshotReader {
    /// A cheap guard on the current snapshot; load it once per batch.
    #[inline]
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_published_snapshots() {
        let publisher = Publisher::new(Snapshot::default());
        let reader = publisher.reader();
        let before = reader.load();
        assert_eq!(before.generation, 0);
        let mut next = Snapshot::default();
        next.vnis.insert(100, Arc::new(VniTable::default()));
        publisher.publish(next);
        // A guard taken earlier keeps its snapshot alive and unchanged.
        assert!(before.vni(100).is_none());
        let after = reader.load();
        assert_eq!(after.generation, 1);
        assert!(after.vni(100).is_some());
        assert!(after.iface(7).is_none());
    }

    #[test]
    fn shared_parts_are_copied_on_write() {
        let mut a = Snapshot::default();
        let target = UnderlayTarget::Iface { port: 2, vni: 100 };
        let ul: Ipv6Addr = "fc00:1::d000:1:0:1".parse().unwrap();
        a.set_underlay(ul, target);
        a.set_iface(3, None);
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.underlay, &b.underlay));
        a.set_underlay("fc00:1::d000:1:0:2".parse().unwrap(), target);
        assert!(b.owns_underlay(ul) && !b.owns_underlay("fc00:1::d000:1:0:2".parse().unwrap()));
        assert_eq!(a.underlay_target(ul), Some(target));
        assert_eq!(a.ifaces_by_port.len(), 4);
    }
}
