//! Immutable snapshots of the tables, swapped atomically (RCU style).

use std::net::Ipv6Addr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use rustc_hash::FxHashMap;

use crate::{Iface, PortId, Vni, VniTable};

/// What an underlay (outer IPv6 destination) address of ours delivers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnderlayTarget {
    /// A VM interface: decapsulated packets go to its port, in its VNI.
    Iface { port: PortId, vni: Vni },
}

/// Everything the packet path reads, frozen at one instant.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Interfaces indexed by their port id (`None`: no interface bound to that port).
    pub ifaces_by_port: Vec<Option<Arc<Iface>>>,
    pub vnis: FxHashMap<Vni, Arc<VniTable>>,
    /// Our underlay addresses (every interface's; later VIPs, NAT and load balancers) and what
    /// packets arriving for them are delivered to. The host's own `--ipv6` is not in here.
    pub underlay: FxHashMap<Ipv6Addr, UnderlayTarget>,
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
        self.underlay.get(&addr).copied()
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
}
