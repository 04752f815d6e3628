//! The worker-local context: state that several nodes of one worker share and mutate — no locks,
//! no atomics, because only this worker's thread ever sees it: the flow table of the stateful
//! services is here (conntrack makes and finds flows, the firewall and NAT nodes read them).

use dp_tables::{FlowTable, PortId, VirtsvcTables, VirtualServices};

use crate::affinity::Rings;

/// One worker's mutable context, handed to every node with the shared read-only [`crate::Ctx`].
#[derive(Debug)]
pub struct WorkerCtx {
    /// This worker's index, `0..count`.
    index: usize,
    /// How many workers forward packets.
    count: usize,
    /// The rings to and from the other workers (flow affinity); none: never hand off.
    rings: Option<Rings>,
    /// This worker's flows (connection tracking).
    pub flows: FlowTable,
    /// This worker's mapped ports of every virtual service (empty without services; see
    /// [`WorkerCtx::with_virtual_services`]).
    pub virtsvc: VirtsvcTables,
}

/// Flows of a worker made with [`WorkerCtx::new`] (tests, tools); the daemon sizes its
/// workers' tables with [`WorkerCtx::with_flow_capacity`].
pub const DEFAULT_WORKER_FLOWS: usize = 1 << 14;

impl WorkerCtx {
    /// The context of worker `index` of `count` (`count` at least 1).
    pub fn new(index: usize, count: usize) -> Self {
        let count = count.max(1);
        WorkerCtx {
            index: index.min(count - 1),
            count,
            rings: None,
            flows: FlowTable::new(DEFAULT_WORKER_FLOWS),
            virtsvc: VirtsvcTables::default(),
        }
    }

    /// The same context with this worker's port maps of `services` (all allocated here: a
    /// map per service of the ports this worker owns, see [`dp_tables::PortMap`]).
    #[must_use]
    pub fn with_virtual_services(mut self, services: &VirtualServices) -> Self {
        self.virtsvc = VirtsvcTables::new(services, self.index, self.count);
        self
    }

    /// The same context with a flow table of `capacity` flows (empty).
    #[must_use]
    pub fn with_flow_capacity(mut self, capacity: usize) -> Self {
        self.flows = FlowTable::new(capacity);
        self
    }

    /// The context of worker `rings.index()` of `rings.count()`, handing packets of the flows
    /// the others own to them through `rings` (from [`crate::affinity::mesh`]).
    pub fn with_rings(rings: Rings) -> Self {
        let mut ctx = WorkerCtx::new(rings.index(), rings.count());
        ctx.rings = Some(rings);
        ctx
    }

    /// The rings to the other workers, if this worker has them.
    #[inline]
    pub fn rings(&self) -> Option<&Rings> {
        self.rings.as_ref()
    }

    /// The rings to the other workers, if this worker has them, to send, receive and settle.
    #[inline]
    pub fn rings_mut(&mut self) -> Option<&mut Rings> {
        self.rings.as_mut()
    }

    /// The only worker: the context of a single-threaded graph (tests, benchmarks).
    pub fn single() -> Self {
        WorkerCtx::new(0, 1)
    }

    pub fn index(&self) -> usize {
        self.index
    }

    #[inline]
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether this worker does the work there is one of per dataplane (router discovery).
    pub fn is_leader(&self) -> bool {
        self.index == 0
    }

    /// Whether per-port periodic work for `port` (probing its VM) is this worker's: ports are
    /// shared out round-robin, so every port is probed by exactly one worker.
    pub fn owns_port(&self, port: PortId) -> bool {
        usize::from(port) % self.count == self.index
    }
}

impl Default for WorkerCtx {
    fn default() -> Self {
        WorkerCtx::single()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_port_is_owned_by_exactly_one_worker() {
        for count in 1..=4 {
            let workers: Vec<_> = (0..count).map(|i| WorkerCtx::new(i, count)).collect();
            assert_eq!(workers.iter().filter(|w| w.is_leader()).count(), 1);
            for port in 0..16u16 {
                assert_eq!(workers.iter().filter(|w| w.owns_port(port)).count(), 1);
            }
        }
        // Nonsense arguments are clamped, never a division by zero.
        let w = WorkerCtx::new(5, 0);
        assert_eq!((w.index(), w.count()), (0, 1));
    }
}
