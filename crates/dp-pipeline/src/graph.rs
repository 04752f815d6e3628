//! The packet graph: a fixed set of nodes, each with an input batch, run in topological order.
//!
//! A worker pushes received frames into the graph, calls [`Graph::run`], and then drains the
//! per-port transmit batches. Nodes only pass packets forward (to a node later in [`NodeId::ORDER`]),
//! so one pass over the nodes empties every batch.
//!
//! Periodic work (neighbor discovery of the underlay router) is done by [`Graph::tick`], which the
//! worker calls every [`TICK_INTERVAL_NS`] or so; it may queue frames of its own to the transmit
//! batches, which the worker drains the same way.

use std::sync::atomic::{AtomicU64, Ordering};

use dp_tables::PortId;

use crate::buffer::{BufferPool, PacketBuf};
use crate::drop::DropReason;
use crate::node::{Ctx, Node, Verdict};
use crate::nodes::*;

/// Most packets a node's batch holds; a port burst must not be larger.
///
/// 64 rather than VPP's 256: every node walks the whole batch, and 64 packets' slots and first
/// data lines (about 16 KiB) stay in the L1 cache from node to node, where 256 (about 64 KiB) do
/// not, and each node then waits on L2 for every packet (`perf annotate` showed the first load of
/// each header and the replay copy's stores as the hottest instructions). See BENCHMARKS.md.
pub const BATCH_SIZE: usize = 64;

/// Most extra packets a node may make out of one (see [`Node::process_alloc`]).
pub const MAX_EXTRA_PACKETS: usize = 64;

/// How often the worker should call [`Graph::tick`].
pub const TICK_INTERVAL_NS: u64 = 100_000_000;

macro_rules! node_ids {
    ($($variant:ident => $field:ident : $ty:ty,)*) => {
        /// Every node, in topological order.
        // Two bytes, as a port id and a drop reason: a `Verdict` is then one 32-bit word.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum NodeId {
            $($variant,)*
        }

        impl NodeId {
            pub const ORDER: &'static [NodeId] = &[$(NodeId::$variant,)*];
            pub const COUNT: usize = Self::ORDER.len();

            pub const fn name(self) -> &'static str {
                match self {
                    $(NodeId::$variant => <$ty as Node>::NAME,)*
                }
            }

            #[inline]
            pub const fn index(self) -> usize {
                self as usize
            }
        }

        /// The node instances (their per-worker state).
        #[derive(Debug, Default)]
        pub struct Nodes {
            $(pub $field: $ty,)*
        }

        impl Graph {
            /// Runs every node over its batch, in order.
            pub fn run(&mut self, ctx: &Ctx<'_>, pool: &mut BufferPool) {
                $(
                    self.$field(ctx, pool);
                )*
            }

            // One function per node (named after it), not inlined: each node is its own entry
            // in profiles (callgrind's inclusive cost per node), for one call per batch.
            $(
                #[inline(never)]
                fn $field(&mut self, ctx: &Ctx<'_>, pool: &mut BufferPool) {
                    self.run_node(NodeId::$variant, ctx, pool, |nodes| &mut nodes.$field);
                }
            )*
        }
    };
}

node_ids! {
    Classify => classify: Classify,
    Arp => arp: Arp,
    Dhcp => dhcp: Dhcp,
    Dhcpv6 => dhcpv6: Dhcpv6,
    Ipv6Nd => ipv6_nd: Ipv6Nd,
    UnderlayNd => underlay_nd: UnderlayNd,
    IpipDecap => ipip_decap: IpipDecap,
    Ipv4Lookup => ipv4_lookup: Ipv4Lookup,
    Ipv6Lookup => ipv6_lookup: Ipv6Lookup,
    GatewayIcmp => gateway_icmp: GatewayIcmp,
    IpipEncap => ipip_encap: IpipEncap,
    L2Rewrite => l2_rewrite: L2Rewrite,
}

/// Counters of one worker's graph, readable from other threads (metrics, stats).
#[derive(Debug)]
pub struct GraphCounters {
    pub node_packets: [AtomicU64; NodeId::COUNT],
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Frames handed to the ports for transmission (counted by the worker).
    pub tx_packets: AtomicU64,
    /// Frames the graph made itself rather than received: neighbor discovery probes, the
    /// extra fragments of a fragmented packet. Every frame is received or originated, then
    /// sent or dropped.
    pub originated: AtomicU64,
}

impl Default for GraphCounters {
    fn default() -> Self {
        GraphCounters {
            node_packets: std::array::from_fn(|_| AtomicU64::new(0)),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            tx_packets: AtomicU64::new(0),
            originated: AtomicU64::new(0),
        }
    }
}

impl GraphCounters {
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops
            .get(reason.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn node_packets(&self, node: NodeId) -> u64 {
        self.node_packets
            .get(node.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn originated(&self) -> u64 {
        self.originated.load(Ordering::Relaxed)
    }
}

/// One worker's graph: nodes, their input batches and the transmit batches per port.
#[derive(Debug)]
pub struct Graph {
    pub nodes: Nodes,
    inputs: [Vec<PacketBuf>; NodeId::COUNT],
    tx: Vec<Vec<PacketBuf>>,
    /// Extra packets a node made out of one, before they are dispatched.
    extra: Vec<PacketBuf>,
    /// The verdicts of a node on its batch ([`Node::process_batch`]), `BATCH_SIZE` long.
    verdicts: Vec<Verdict>,
    counters: std::sync::Arc<GraphCounters>,
    /// Probing of silent VMs by the tick (not a node: it handles no packets).
    vm_probe: VmProbe,
}

impl Graph {
    /// A graph for `port_count` ports; all batches are allocated here, once.
    pub fn new(port_count: usize, counters: std::sync::Arc<GraphCounters>) -> Self {
        Graph {
            nodes: Nodes::default(),
            inputs: std::array::from_fn(|_| Vec::with_capacity(BATCH_SIZE)),
            tx: (0..port_count)
                .map(|_| Vec::with_capacity(BATCH_SIZE))
                .collect(),
            extra: Vec::with_capacity(MAX_EXTRA_PACKETS),
            verdicts: vec![Verdict::Drop(DropReason::GraphLoop); BATCH_SIZE],
            counters,
            vm_probe: VmProbe::new(port_count),
        }
    }

    /// Periodic work at `ctx.now_ns`: probes for the underlay router on every uplink and for the
    /// MAC of every silent VM ([`VmProbe`]). Frames it makes are counted as originated and queued
    /// to the transmit batches (drain them as after [`Graph::run`]).
    pub fn tick(&mut self, ctx: &Ctx<'_>, pool: &mut BufferPool) {
        let tx = &mut self.tx;
        let counters = &self.counters;
        let mut emit = |port: PortId, pkt: PacketBuf, pool: &mut BufferPool| {
            counters.originated.fetch_add(1, Ordering::Relaxed);
            let result = match tx.get_mut(usize::from(port)) {
                Some(batch) => push_bounded(batch, pkt).map_err(|p| (p, DropReason::QueueFull)),
                None => Err((pkt, DropReason::DstPortDown)),
            };
            if let Err((pkt, reason)) = result {
                if let Some(c) = counters.drops.get(reason.index()) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                pool.free(pkt);
            }
        };
        self.nodes.underlay_nd.tick(ctx, pool, &mut emit);
        self.vm_probe.tick(ctx, pool, &mut emit);
    }

    pub fn counters(&self) -> &std::sync::Arc<GraphCounters> {
        &self.counters
    }

    /// Feeds a received packet to the first node. Returns it when the batch is full.
    #[inline]
    pub fn push_rx(&mut self, pkt: PacketBuf) -> Result<(), PacketBuf> {
        match self.inputs.get_mut(NodeId::Classify.index()) {
            Some(batch) => push_bounded(batch, pkt),
            None => Err(pkt),
        }
    }

    /// The first node's batch, for a port to receive into directly (`Port::rx_burst` appends);
    /// the caller keeps it at most [`BATCH_SIZE`] long and sets the new packets' metadata.
    #[inline]
    pub fn rx_batch(&mut self) -> Option<&mut Vec<PacketBuf>> {
        self.inputs.get_mut(NodeId::Classify.index())
    }

    /// The packets waiting to go out of `port`; the worker drains it after [`Graph::run`].
    #[inline]
    pub fn tx_batch(&mut self, port: PortId) -> Option<&mut Vec<PacketBuf>> {
        self.tx.get_mut(usize::from(port))
    }

    /// Number of ports the graph transmits to.
    pub fn port_count(&self) -> usize {
        self.tx.len()
    }

    /// Counts and frees a packet dropped outside the nodes (by a port or the worker).
    pub fn drop_packet(&self, pkt: PacketBuf, reason: DropReason, pool: &mut BufferPool) {
        self.count_drop(reason);
        pool.free(pkt);
    }

    #[inline]
    fn count_drop(&self, reason: DropReason) {
        if let Some(c) = self.counters.drops.get(reason.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[inline(always)]
    fn run_node<N: Node>(
        &mut self,
        id: NodeId,
        ctx: &Ctx<'_>,
        pool: &mut BufferPool,
        select: impl Fn(&mut Nodes) -> &mut N,
    ) {
        let Some(input) = self.inputs.get_mut(id.index()) else {
            return;
        };
        if input.is_empty() {
            return;
        }
        // Take the batch out so the node's outputs can go into the other batches; the vector
        // (and its capacity) is put back afterwards, so nothing is allocated.
        let mut batch = std::mem::take(input);
        if let Some(c) = self.counters.node_packets.get(id.index()) {
            c.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        select(&mut self.nodes).begin_batch(ctx);
        // Two passes (as VPP): the node decides for the whole batch, its code and data hot,
        // then the packets move on. A batch never exceeds BATCH_SIZE, the verdicts' length.
        let mut verdicts = std::mem::take(&mut self.verdicts);
        if N::MAKES_PACKETS {
            let mut i = 0;
            while let Some(pkt) = batch.get_mut(i) {
                let verdict =
                    select(&mut self.nodes).process_alloc(pkt, ctx, pool, &mut self.extra);
                if let Some(v) = verdicts.get_mut(i) {
                    *v = verdict;
                }
                i += 1;
                if !self.extra.is_empty() {
                    // The extra packets go right after theirs: send what is decided so far, then
                    // them, and go on with the rest (rare: fragmentation).
                    self.dispatch_all(id, &mut batch, i, &verdicts, pool);
                    let mut extra = std::mem::take(&mut self.extra);
                    self.counters
                        .originated
                        .fetch_add(extra.len() as u64, Ordering::Relaxed);
                    for pkt in extra.drain(..) {
                        self.dispatch(id, pkt, verdict, pool);
                    }
                    self.extra = extra;
                    i = 0;
                }
            }
        } else {
            select(&mut self.nodes).process_batch(&mut batch, ctx, &mut verdicts);
        }
        let decided = batch.len();
        self.dispatch_all(id, &mut batch, decided, &verdicts, pool);
        self.verdicts = verdicts;
        if let Some(slot) = self.inputs.get_mut(id.index()) {
            *slot = batch;
        }
    }

    /// Sends the first `count` packets of `batch` where `verdicts` say, in order, and removes
    /// them from it. When all of a whole batch go to the same place and that batch is empty, the
    /// two vectors are swapped instead (VPP does the same): the common case of a burst that all
    /// takes the same path costs nothing per packet here.
    #[inline(always)]
    fn dispatch_all(
        &mut self,
        id: NodeId,
        batch: &mut Vec<PacketBuf>,
        count: usize,
        verdicts: &[Verdict],
        pool: &mut BufferPool,
    ) {
        let decided = verdicts.get(..count).unwrap_or(verdicts);
        if count == batch.len() {
            if let Some(&first) = decided.first() {
                // A fold without early exit, over words: the compiler vectorises it.
                let word = first.word();
                if decided.iter().fold(0, |diff, v| diff | (v.word() ^ word)) == 0 {
                    let target = match first {
                        Verdict::Next(next) if next.index() > id.index() => {
                            self.inputs.get_mut(next.index())
                        }
                        Verdict::Tx(port) => self.tx.get_mut(usize::from(port)),
                        _ => None,
                    };
                    if let Some(target) = target.filter(|t| t.is_empty()) {
                        std::mem::swap(target, batch);
                        return;
                    }
                }
            }
        }
        let mut decided = decided.iter();
        for pkt in batch.drain(..count.min(batch.len())) {
            let verdict = decided
                .next()
                .copied()
                .unwrap_or(Verdict::Drop(DropReason::QueueFull));
            self.dispatch(id, pkt, verdict, pool);
        }
    }

    #[inline]
    fn dispatch(&mut self, from: NodeId, pkt: PacketBuf, verdict: Verdict, pool: &mut BufferPool) {
        let result = match verdict {
            Verdict::Next(next) if next.index() <= from.index() => {
                Err((pkt, DropReason::GraphLoop))
            }
            Verdict::Next(next) => match self.inputs.get_mut(next.index()) {
                Some(batch) => push_bounded(batch, pkt).map_err(|p| (p, DropReason::QueueFull)),
                None => Err((pkt, DropReason::GraphLoop)),
            },
            Verdict::Tx(port) => match self.tx.get_mut(usize::from(port)) {
                Some(batch) => push_bounded(batch, pkt).map_err(|p| (p, DropReason::QueueFull)),
                None => Err((pkt, DropReason::DstPortDown)),
            },
            Verdict::Drop(reason) => Err((pkt, reason)),
        };
        if let Err((pkt, reason)) = result {
            self.drop_packet(pkt, reason, pool);
        }
    }
}

/// Pushes without ever growing the vector past its batch capacity.
#[inline]
fn push_bounded(batch: &mut Vec<PacketBuf>, pkt: PacketBuf) -> Result<(), PacketBuf> {
    if batch.len() >= BATCH_SIZE {
        return Err(pkt);
    }
    batch.push(pkt);
    Ok(())
}
