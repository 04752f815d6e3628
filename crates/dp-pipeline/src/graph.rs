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
use crate::node::{Ctx, Emit, Node, Verdict};
use crate::nodes::*;
use crate::summary::FrameSummary;
use crate::trace::{self, TraceTap};
use crate::worker_ctx::WorkerCtx;

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

/// Most times a packet may go back to an earlier node ([`Node::NEXT`]'s recirculation edges)
/// before it is dropped as `recirculation_limit` (dpservice's LB goes encap → classify once).
pub const MAX_RECIRCULATIONS: u8 = 4;

/// Most recirculated packets waiting for the next pass of one [`Graph::run`].
pub const RECIRC_CAPACITY: usize = 2 * BATCH_SIZE;

/// Most passes of one [`Graph::run`] (the first and those for recirculated packets).
const MAX_PASSES: usize = 16;

/// Where the graph sends a port's transmit batch when it fills up in the middle of a run (a node
/// that makes packets, or a burst that all goes to one port with more packets than a batch): the
/// worker's transmit path. Cold: the batches are otherwise drained after [`Graph::run`].
pub trait TxSink {
    /// Transmits `batch` out of `port` and leaves it empty: what cannot be sent is freed to
    /// `pool` and counted by the sink in `counters` (the graph's).
    fn flush(
        &mut self,
        port: PortId,
        batch: &mut Vec<PacketBuf>,
        pool: &mut BufferPool,
        counters: &GraphCounters,
    );
}

/// What one graph run needs besides the graph: the shared context, the worker's own, the buffer
/// pool and the transmit path for full batches.
struct Env<'e, 'a> {
    ctx: &'e Ctx<'a>,
    worker: &'e mut WorkerCtx,
    pool: &'e mut BufferPool,
    sink: &'e mut dyn TxSink,
}

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

            /// The nodes this one declares it sends packets to ([`Node::NEXT`]).
            pub const fn next_nodes(self) -> &'static [NodeId] {
                match self {
                    $(NodeId::$variant => <$ty as Node>::NEXT,)*
                }
            }

            /// Whether this node declares it transmits ([`Node::TRANSMITS`]).
            pub const fn transmits(self) -> bool {
                match self {
                    $(NodeId::$variant => <$ty as Node>::TRANSMITS,)*
                }
            }

            /// Whether this node declares it hands packets to other workers ([`Node::HANDS_OFF`]).
            pub const fn hands_off(self) -> bool {
                match self {
                    $(NodeId::$variant => <$ty as Node>::HANDS_OFF,)*
                }
            }

            /// [`NodeId::next_nodes`] as a bit mask over node indices, per node, computed at
            /// compile time (checked per packet only for edges going backwards).
            const NEXT_MASKS: [u64; Self::COUNT] = {
                let mut masks = [0u64; Self::COUNT];
                let mut nodes: &[NodeId] = Self::ORDER;
                while let [node, rest @ ..] = nodes {
                    let mut next = node.next_nodes();
                    let mut mask = 0u64;
                    while let [to, more @ ..] = next {
                        mask |= 1 << (*to as u64);
                        next = more;
                    }
                    #[allow(clippy::indexing_slicing)] // compile time: out of range fails the build
                    {
                        masks[*node as usize] = mask;
                    }
                    nodes = rest;
                }
                masks
            };

            /// Whether the graph sends this node's packets for the encapsulation or the rewrite
            /// through the hand-off node when several workers forward: it declares the edge.
            #[inline]
            pub fn via_handoff(self) -> bool {
                !matches!(self, NodeId::Handoff) && self.declares(NodeId::Handoff)
            }

            /// Whether the graph sends this node's packets for connection tracking through the
            /// meter while an interface is metered: it declares the edge.
            #[inline]
            pub fn via_meter(self) -> bool {
                !matches!(self, NodeId::Meter) && self.declares(NodeId::Meter)
            }

            /// Whether this node declared an edge to `to`.
            #[inline]
            fn declares(self, to: NodeId) -> bool {
                Self::NEXT_MASKS
                    .get(self.index())
                    .is_some_and(|m| m & (1 << to.index()) != 0)
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
            /// One pass: every node over its batch, in order.
            fn run_pass(&mut self, env: &mut Env<'_, '_>) {
                $(
                    self.$field(env);
                )*
            }

            /// Runs one node now (its input batch is full and a packet must go in).
            fn run_by_id(&mut self, id: NodeId, env: &mut Env<'_, '_>) {
                match id {
                    $(NodeId::$variant => self.$field(env),)*
                }
            }

            /// Every node's periodic work that is due.
            fn timeouts(&mut self, env: &mut Env<'_, '_>) {
                let now = env.ctx.now_ns;
                $(
                    if self.nodes.$field.poll_timeout().is_some_and(|t| t <= now) {
                        self.timeout_node(NodeId::$variant, env, |nodes| &mut nodes.$field);
                    }
                )*
            }

            // One function per node (named after it), not inlined: each node is its own entry
            // in profiles (callgrind's inclusive cost per node), for one call per batch.
            $(
                #[inline(never)]
                fn $field(&mut self, env: &mut Env<'_, '_>) {
                    self.run_node(NodeId::$variant, env, |nodes| &mut nodes.$field);
                }
            )*
        }
    };
}

node_ids! {
    Classify => classify: Classify,
    Arp => arp: Arp,
    Dhcpv6 => dhcpv6: Dhcpv6,
    Ipv6Nd => ipv6_nd: Ipv6Nd,
    UnderlayNd => underlay_nd: UnderlayNd,
    IpipDecap => ipip_decap: IpipDecap,
    Ipv4Lookup => ipv4_lookup: Ipv4Lookup,
    Dhcp => dhcp: Dhcp,
    Ipv6Lookup => ipv6_lookup: Ipv6Lookup,
    Meter => meter: Meter,
    Handoff => handoff: Handoff,
    Virtsvc => virtsvc: Virtsvc,
    Conntrack => conntrack: Conntrack,
    Firewall => firewall: Firewall,
    Nat => nat: Nat,
    PacketRelay => packet_relay: PacketRelay,
    Lb => lb: Lb,
    GatewayIcmp => gateway_icmp: GatewayIcmp,
    IpipEncap => ipip_encap: IpipEncap,
    L2Rewrite => l2_rewrite: L2Rewrite,
    VmProbe => vm_probe: VmProbe,
}

/// The graph's edges as declared by the nodes, one `from -> to` per line (`to` is `tx` for a
/// node that transmits, `worker` for one that hands packets to another worker), in node order: what docs/architecture.md draws.
pub fn edge_list() -> String {
    let mut out = String::new();
    for &node in NodeId::ORDER {
        for next in node.next_nodes() {
            let kind = if next.index() <= node.index() {
                " (recirculation)"
            } else {
                ""
            };
            out.push_str(&format!("{} -> {}{kind}\n", node.name(), next.name()));
        }
        if node.transmits() {
            out.push_str(&format!("{} -> tx\n", node.name()));
        }
        if node.hands_off() {
            out.push_str(&format!("{} -> worker\n", node.name()));
        }
    }
    out
}

/// An edge a packet took that its node did not declare ([`Graph::undeclared_edges`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// To a node.
    Node(NodeId),
    /// Out of a port.
    Tx,
    /// To another worker.
    Handoff,
}

/// Where a drop was counted: at a node, or outside the nodes (by a port or the worker).
pub const DROP_SITES: usize = NodeId::COUNT + 1;

/// Counters of one worker's graph, readable from other threads (metrics, stats).
#[derive(Debug)]
pub struct GraphCounters {
    pub node_packets: [AtomicU64; NodeId::COUNT],
    /// Per node: the batches it ran (DPDK's graph `call_count`).
    pub node_calls: [AtomicU64; NodeId::COUNT],
    /// Per node: time-stamp counter ticks spent in it ([`crate::cycles`]; DPDK's
    /// `cycle_count`), the dispatch of its batch included.
    pub node_cycles: [AtomicU64; NodeId::COUNT],
    /// Drops per (site, reason): a row per node ([`NodeId::index`]), the last row for drops
    /// outside the nodes. One increment per drop; the totals per reason are summed when read.
    drops: [[AtomicU64; DropReason::COUNT]; DROP_SITES],
    /// Frames handed to the ports for transmission (counted by the worker).
    pub tx_packets: AtomicU64,
    /// Frames the graph made itself rather than received: neighbor discovery probes, the
    /// extra fragments of a fragmented packet. Every frame is received or originated, then
    /// sent or dropped.
    pub originated: AtomicU64,
    /// Packets handed to another worker, the owner of their flow ([`Verdict::Handoff`]).
    pub handed_off: AtomicU64,
    /// Packets other workers handed to this one ([`Graph::receive_handoffs`]). Over a worker:
    /// received + originated + handed in = sent + dropped + handed off.
    pub handed_in: AtomicU64,
    /// The worker's flow table, as of its last tick (written by [`Graph::tick`]).
    pub flows: FlowCounters,
    /// The worker loop's polls: those that found work and those that did not (written by the
    /// worker loop, not the graph).
    pub polls: PollCounters,
    /// Packet capture: copies made, truncated, skipped ([`crate::capture`]).
    pub capture: crate::capture::CaptureCounters,
}

/// A worker loop's polls of its ports and rings: busy (something was received or handed in)
/// and idle, and the time spent in each (idle: polling in vain, spinning and sleeping); their
/// ratio is the worker's load.
#[derive(Debug, Default)]
pub struct PollCounters {
    pub busy: AtomicU64,
    pub idle: AtomicU64,
    pub busy_ns: AtomicU64,
    pub idle_ns: AtomicU64,
}

/// A worker's flow-table figures (connection tracking), refreshed every tick.
#[derive(Debug)]
pub struct FlowCounters {
    pub live: AtomicU64,
    pub capacity: AtomicU64,
    pub created: AtomicU64,
    pub expired: AtomicU64,
    /// Closed before they expired (their VIP, NAT or interface went away).
    pub removed: AtomicU64,
    /// New flows refused because the table was full (also counted as `flow_table_full` drops).
    pub refused_full: AtomicU64,
    /// Per VM port (index: its port id, [`dp_tables::conntrack::NAT_COUNTED_PORTS`] of them):
    /// live flows holding one of its NAT ports ([`dp_tables::FlowTable::nat_ports_in_use`]).
    pub nat_ports_in_use: Box<[AtomicU64]>,
}

impl Default for FlowCounters {
    fn default() -> Self {
        FlowCounters {
            live: AtomicU64::new(0),
            capacity: AtomicU64::new(0),
            created: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            removed: AtomicU64::new(0),
            refused_full: AtomicU64::new(0),
            nat_ports_in_use: (0..dp_tables::conntrack::NAT_COUNTED_PORTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl FlowCounters {
    /// Live flows holding a NAT port of `port`, as of the last tick.
    pub fn nat_ports_in_use(&self, port: PortId) -> u64 {
        self.nat_ports_in_use
            .get(usize::from(port))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn store(&self, table: &dp_tables::FlowTable) {
        for (c, &n) in self
            .nat_ports_in_use
            .iter()
            .zip(table.nat_ports_in_use().iter())
        {
            c.store(u64::from(n), Ordering::Relaxed);
        }
        let s = table.stats();
        self.live.store(s.live, Ordering::Relaxed);
        self.capacity
            .store(table.capacity() as u64, Ordering::Relaxed);
        self.created.store(s.created, Ordering::Relaxed);
        self.expired.store(s.expired, Ordering::Relaxed);
        self.removed.store(s.removed, Ordering::Relaxed);
        self.refused_full.store(s.refused_full, Ordering::Relaxed);
    }
}

impl Default for GraphCounters {
    fn default() -> Self {
        GraphCounters {
            node_packets: std::array::from_fn(|_| AtomicU64::new(0)),
            node_calls: std::array::from_fn(|_| AtomicU64::new(0)),
            node_cycles: std::array::from_fn(|_| AtomicU64::new(0)),
            drops: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            tx_packets: AtomicU64::new(0),
            originated: AtomicU64::new(0),
            handed_off: AtomicU64::new(0),
            handed_in: AtomicU64::new(0),
            flows: FlowCounters::default(),
            polls: PollCounters::default(),
            capture: Default::default(),
        }
    }
}

impl GraphCounters {
    /// Counts `n` drops for `reason` at `node` (`None`: outside the nodes, by a port or the
    /// worker). The one place a drop is counted.
    #[inline]
    pub fn count_drop(&self, node: Option<NodeId>, reason: DropReason, n: u64) {
        let site = node.map_or(NodeId::COUNT, NodeId::index);
        if let Some(c) = self.drops.get(site).and_then(|r| r.get(reason.index())) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Drops for `reason`, wherever they were counted.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops
            .iter()
            .filter_map(|row| row.get(reason.index()))
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Drops for `reason` at `node` (`None`: outside the nodes).
    pub fn node_drops(&self, node: Option<NodeId>, reason: DropReason) -> u64 {
        let site = node.map_or(NodeId::COUNT, NodeId::index);
        self.drops
            .get(site)
            .and_then(|r| r.get(reason.index()))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn node_packets(&self, node: NodeId) -> u64 {
        self.node_packets
            .get(node.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Batches `node` ran.
    pub fn node_calls(&self, node: NodeId) -> u64 {
        self.node_calls
            .get(node.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Time-stamp counter ticks spent in `node` ([`crate::cycles::ticks_per_ns`] converts).
    pub fn node_cycles(&self, node: NodeId) -> u64 {
        self.node_cycles
            .get(node.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn total_drops(&self) -> u64 {
        self.drops
            .iter()
            .flatten()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn originated(&self) -> u64 {
        self.originated.load(Ordering::Relaxed)
    }

    pub fn handed_off(&self) -> u64 {
        self.handed_off.load(Ordering::Relaxed)
    }

    pub fn handed_in(&self) -> u64 {
        self.handed_in.load(Ordering::Relaxed)
    }
}

/// One worker's graph: nodes, their input batches and the transmit batches per port.
#[derive(Debug)]
pub struct Graph {
    pub nodes: Nodes,
    inputs: [Vec<PacketBuf>; NodeId::COUNT],
    tx: Vec<Vec<PacketBuf>>,
    /// Per node: the packets it made out of one (or in a timeout), before they are dispatched.
    /// Per node because a node's dispatch may run a later node (whose input is full) first.
    staged: [Vec<(PacketBuf, Verdict)>; NodeId::COUNT],
    /// Per node: its verdicts on its batch ([`Node::process_batch`]), `BATCH_SIZE` long.
    verdicts: [Vec<Verdict>; NodeId::COUNT],
    /// Packets sent back to an earlier node, for the next pass, and the spare for their swap.
    recirc: Vec<(PacketBuf, NodeId)>,
    recirc_spare: Vec<(PacketBuf, NodeId)>,
    /// Packets handed to other workers in this run: added to `counters.handed_off` once per
    /// run, not with an atomic add per packet.
    handed_off_in_run: u64,
    counters: std::sync::Arc<GraphCounters>,
    /// Packet capture: the copies waiting ([`crate::capture`]).
    capture: crate::capture::Capture,
    /// `--graphtrace-loglevel`: 0 off, 1 every verdict, 2 also the frame's first bytes.
    trace_level: u8,
    /// `dpservice-dump`'s tap ([`crate::trace`]), when the daemon gave one.
    tap: Option<TraceTap>,
    /// This run: whether verdicts are traced (logged or tapped), whether frames in and out are
    /// tapped, and the run's time for the records.
    tracing: bool,
    tap_ports: bool,
    run_now_ns: u64,
    /// Debug builds: the edges taken, per node (bit `i`: to node `i`; bit 63: to a port; bit 62:
    /// to another worker).
    #[cfg(debug_assertions)]
    edges_taken: [u64; NodeId::COUNT],
}

#[cfg(debug_assertions)]
const TX_EDGE_BIT: u64 = 1 << 63;
#[cfg(debug_assertions)]
const HANDOFF_EDGE_BIT: u64 = 1 << 62;
const _: () = assert!(
    NodeId::COUNT < 62,
    "edge masks: a bit per node, bit 63 for transmit, bit 62 for hand-off"
);

impl Graph {
    /// A graph for `port_count` ports; all batches are allocated here, once.
    pub fn new(port_count: usize, counters: std::sync::Arc<GraphCounters>) -> Self {
        let nodes = Nodes {
            vm_probe: VmProbe::new(port_count),
            meter: Meter::new(port_count),
            ..Nodes::default()
        };
        Graph {
            nodes,
            inputs: std::array::from_fn(|_| Vec::with_capacity(BATCH_SIZE)),
            tx: (0..port_count)
                .map(|_| Vec::with_capacity(BATCH_SIZE))
                .collect(),
            staged: std::array::from_fn(|_| Vec::with_capacity(MAX_EXTRA_PACKETS)),
            verdicts: std::array::from_fn(|_| {
                vec![Verdict::Drop(DropReason::GraphLoop); BATCH_SIZE]
            }),
            recirc: Vec::with_capacity(RECIRC_CAPACITY),
            recirc_spare: Vec::with_capacity(RECIRC_CAPACITY),
            handed_off_in_run: 0,
            counters,
            capture: crate::capture::Capture::new(),
            trace_level: 0,
            tap: None,
            tracing: false,
            tap_ports: false,
            run_now_ns: 0,
            #[cfg(debug_assertions)]
            edges_taken: [0; NodeId::COUNT],
        }
    }

    /// Sets `--graphtrace-loglevel`: 0 off, 1 logs every verdict (node, packet, where it goes),
    /// 2 also the frame's first bytes. Off costs one predictable branch per node and batch.
    pub fn set_trace_level(&mut self, level: u8) {
        self.trace_level = level;
    }

    /// Gives the graph `dpservice-dump`'s tap ([`crate::trace`]): off until a client attaches.
    pub fn set_trace_tap(&mut self, tap: TraceTap) {
        self.tap = Some(tap);
    }

    /// What this run traces: one load of the tap's flags (and a branch) per run.
    #[inline]
    fn begin_trace(&mut self, now_ns: u64) {
        let wants = match &mut self.tap {
            Some(tap) => tap.refresh(),
            None => 0,
        };
        self.tracing = self.trace_level > 0 || wants & (trace::WANT_DROPS | trace::WANT_NODES) != 0;
        // Frames in and out: tapped for dpservice-dump, and logged with the verdicts.
        self.tap_ports = wants & trace::WANT_PORTS != 0 || self.trace_level > 0;
        self.run_now_ns = now_ns;
    }

    /// Runs every node over its batch, in order — and again for packets that recirculated, up
    /// to a bound. Transmit batches that fill up on the way go to `sink`; the rest wait in
    /// [`Graph::tx_batch`] for the caller.
    pub fn run(
        &mut self,
        ctx: &Ctx<'_>,
        worker: &mut WorkerCtx,
        pool: &mut BufferPool,
        sink: &mut dyn TxSink,
    ) {
        self.begin_trace(ctx.now_ns);
        if self.tap_ports {
            self.tap_received();
        }
        let rx = self.inputs.get(NodeId::Classify.index());
        self.capture.begin(ctx, rx, pool, &self.counters);
        let mut env = Env {
            ctx,
            worker,
            pool,
            sink,
        };
        self.run_passes(&mut env);
    }

    /// The frames received this run, as the first node has them.
    #[cold]
    fn tap_received(&mut self) {
        let Some(batch) = self.inputs.get(NodeId::Classify.index()) else {
            return;
        };
        if let Some(tap) = self.tap.as_mut().filter(|t| t.wants_ports()) {
            tap.port_batch(trace::Event::Rx, None, batch, self.run_now_ns);
        }
        if self.trace_level > 0 {
            for pkt in batch {
                tracing::info!(target: "graphtrace", in_port = pkt.meta.in_port, len = pkt.len(),
                    "rx {}", FrameSummary(pkt.data()));
            }
        }
    }

    /// The frames of `batch`, about to go out of `port`.
    #[cold]
    fn tap_sent(
        tap: &mut Option<TraceTap>,
        trace_level: u8,
        port: PortId,
        batch: &[PacketBuf],
        now_ns: u64,
    ) {
        if let Some(tap) = tap.as_mut().filter(|t| t.wants_ports()) {
            tap.port_batch(trace::Event::Tx, Some(port), batch, now_ns);
        }
        if trace_level > 0 {
            for pkt in batch {
                tracing::info!(target: "graphtrace", out_port = port, len = pkt.len(),
                    "tx {}", FrameSummary(pkt.data()));
            }
        }
    }

    /// The periodic work due at `ctx.now_ns` of every node ([`Node::poll_timeout`]): router
    /// discovery on the uplinks (the leader only), probes of silent VMs (each worker its share of
    /// the ports). Frames it makes are counted as originated and sent as the nodes say; those
    /// that wait in the transmit batches are drained as after [`Graph::run`].
    pub fn tick(
        &mut self,
        ctx: &Ctx<'_>,
        worker: &mut WorkerCtx,
        pool: &mut BufferPool,
        sink: &mut dyn TxSink,
    ) {
        self.begin_trace(ctx.now_ns);
        self.capture.begin(ctx, None, pool, &self.counters);
        let mut env = Env {
            ctx,
            worker,
            pool,
            sink,
        };
        self.timeouts(&mut env);
        self.run_passes(&mut env);
        self.counters.flows.store(&env.worker.flows);
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

    /// The hand-off node's batch: the input of packets other workers handed to this one (as
    /// [`Graph::rx_batch`] is the ports'). [`Graph::receive_handoffs`] fills it.
    #[inline]
    pub fn handoff_batch(&mut self) -> Option<&mut Vec<PacketBuf>> {
        self.inputs.get_mut(NodeId::Handoff.index())
    }

    /// Takes the packets other workers handed to this one into the hand-off node's batch (as
    /// many as fit), gives their senders free buffers back for them and takes back those owed
    /// to this worker ([`crate::affinity::Rings::settle`]); counts them as handed in. Called
    /// every round by a worker with rings, before [`Graph::run`] (then
    /// [`Graph::notify_handoffs`] after it). Returns how many came; 0 without rings.
    #[inline]
    pub fn receive_handoffs(&mut self, worker: &mut WorkerCtx, pool: &mut BufferPool) -> usize {
        match worker.rings_mut() {
            Some(rings) => self.receive_from(rings, pool),
            None => 0,
        }
    }

    #[inline(never)]
    fn receive_from(&mut self, rings: &mut crate::affinity::Rings, pool: &mut BufferPool) -> usize {
        let Some(batch) = self.inputs.get_mut(NodeId::Handoff.index()) else {
            return 0;
        };
        let room = BATCH_SIZE.saturating_sub(batch.len());
        let n = rings.receive(batch, room, pool);
        // Before the run frees these packets into our pool: see `Rings::settle`.
        rings.settle(pool);
        if n > 0 {
            self.counters
                .handed_in
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        n
    }

    /// Wakes the workers this one handed packets to in the last run, if they sleep. Called
    /// after [`Graph::run`] by a worker with rings.
    #[inline]
    pub fn notify_handoffs(&mut self, worker: &mut WorkerCtx) {
        if let Some(rings) = worker.rings_mut() {
            rings.notify();
        }
    }

    /// The packets waiting to go out of `port`; the worker drains it after [`Graph::run`].
    #[inline]
    pub fn tx_batch(&mut self, port: PortId) -> Option<&mut Vec<PacketBuf>> {
        self.tx.get_mut(usize::from(port))
    }

    /// Hands `port`'s transmit batch to `sink` (seen by the trace tap and the capture first),
    /// leaving it empty: the one place a batch leaves the graph.
    fn send_batch(&mut self, port: PortId, pool: &mut BufferPool, sink: &mut dyn TxSink) {
        let Some(batch) = self.tx.get_mut(usize::from(port)) else {
            return;
        };
        if self.tap_ports {
            Self::tap_sent(
                &mut self.tap,
                self.trace_level,
                port,
                batch,
                self.run_now_ns,
            );
        }
        self.capture.flush(port, batch, pool, sink, &self.counters);
    }

    /// Hands every port's waiting transmit batch to `sink` (after [`Graph::run`] or
    /// [`Graph::tick`]), leaving them empty.
    pub fn flush_tx(&mut self, pool: &mut BufferPool, sink: &mut dyn TxSink) {
        for index in 0..self.tx.len() {
            if self.tx.get(index).is_some_and(|b| !b.is_empty()) {
                let port = PortId::try_from(index).unwrap_or(PortId::MAX);
                self.send_batch(port, pool, sink);
            }
        }
        self.capture.flush_copies(pool, sink, &self.counters);
    }

    /// Number of ports the graph transmits to.
    pub fn port_count(&self) -> usize {
        self.tx.len()
    }

    /// Counts and frees a packet dropped outside the nodes (by a port or the worker).
    pub fn drop_packet(&self, pkt: PacketBuf, reason: DropReason, pool: &mut BufferPool) {
        self.counters.count_drop(None, reason, 1);
        pool.free(pkt);
    }

    /// The edges taken so far that the nodes did not declare ([`Node::NEXT`],
    /// [`Node::TRANSMITS`], [`Node::HANDS_OFF`]). Always empty in release builds, which do not
    /// record edges.
    pub fn undeclared_edges(&self) -> Vec<(NodeId, Edge)> {
        #[cfg(debug_assertions)]
        {
            let mut out = Vec::new();
            for (&from, &taken) in NodeId::ORDER.iter().zip(self.edges_taken.iter()) {
                for &to in NodeId::ORDER {
                    if taken & (1 << to.index()) != 0 && !from.next_nodes().contains(&to) {
                        out.push((from, Edge::Node(to)));
                    }
                }
                if taken & TX_EDGE_BIT != 0 && !from.transmits() {
                    out.push((from, Edge::Tx));
                }
                if taken & HANDOFF_EDGE_BIT != 0 && !from.hands_off() {
                    out.push((from, Edge::Handoff));
                }
            }
            out
        }
        #[cfg(not(debug_assertions))]
        Vec::new()
    }

    /// The first pass and those for recirculated packets, bounded.
    fn run_passes(&mut self, env: &mut Env<'_, '_>) {
        self.run_passes_bounded(env);
        if self.handed_off_in_run > 0 {
            let n = std::mem::take(&mut self.handed_off_in_run);
            self.counters.handed_off.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn run_passes_bounded(&mut self, env: &mut Env<'_, '_>) {
        self.run_pass(env);
        let mut passes = 1;
        while !self.recirc.is_empty() {
            if passes >= MAX_PASSES {
                // Cannot happen with the hop limit (each pass feeds a batch per node); bounded
                // all the same.
                let n = self.recirc.len() as u64;
                for (pkt, _) in self.recirc.drain(..) {
                    env.pool.free(pkt);
                }
                self.counters.count_drop(None, DropReason::RecircLimit, n);
                break;
            }
            // Every input is empty after a pass: feed the recirculated packets to their nodes,
            // in order; what does not fit waits for the pass after.
            let mut pending = std::mem::take(&mut self.recirc);
            let mut rest = std::mem::take(&mut self.recirc_spare);
            for (pkt, to) in pending.drain(..) {
                let fed = match self.inputs.get_mut(to.index()) {
                    Some(batch) => push_bounded(batch, pkt),
                    None => Err(pkt),
                };
                if let Err(pkt) = fed {
                    rest.push((pkt, to));
                }
            }
            self.recirc = rest;
            self.recirc_spare = pending;
            self.run_pass(env);
            passes += 1;
        }
    }

    #[inline(always)]
    fn run_node<N: Node>(
        &mut self,
        id: NodeId,
        env: &mut Env<'_, '_>,
        select: impl Fn(&mut Nodes) -> &mut N,
    ) {
        let Some(input) = self.inputs.get_mut(id.index()) else {
            return;
        };
        if input.is_empty() {
            return;
        }
        // Take the batch out so the node's outputs can go into the other batches; the vector
        // (and its capacity) is put back afterwards, so nothing is allocated. No packet is sent
        // to this node meanwhile: the nodes this dispatch may run are all later ones.
        let mut batch = std::mem::take(input);
        let started = crate::cycles::now();
        if let Some(c) = self.counters.node_packets.get(id.index()) {
            c.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        if let Some(c) = self.counters.node_calls.get(id.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        select(&mut self.nodes).begin_batch(env.ctx, env.worker);
        // Two passes (as VPP): the node decides for the whole batch, its code and data hot,
        // then the packets move on. A batch never exceeds BATCH_SIZE, the verdicts' length.
        let mut verdicts = take_slot(&mut self.verdicts, id);
        if N::MAKES_PACKETS {
            let mut staged = take_slot(&mut self.staged, id);
            let mut i = 0;
            loop {
                let mut emit = Emit::new(env.pool, &mut staged);
                while let Some(pkt) = batch.get_mut(i) {
                    let verdict =
                        select(&mut self.nodes).process_alloc(pkt, env.ctx, env.worker, &mut emit);
                    if let Some(v) = verdicts.get_mut(i) {
                        *v = verdict;
                    }
                    i += 1;
                    if emit.made_any() {
                        break;
                    }
                }
                if id.via_meter() && self.nodes.meter.active(env.ctx.tables) {
                    let n = i.min(verdicts.len());
                    crate::nodes::via_meter_all(verdicts.get_mut(..n).unwrap_or_default());
                }
                if id.via_handoff() && env.worker.count() > 1 {
                    let n = i.min(verdicts.len());
                    crate::nodes::via_handoff_all(verdicts.get_mut(..n).unwrap_or_default());
                }
                if staged.is_empty() {
                    break;
                }
                // The extra packets go right after theirs: send what is decided so far, then
                // them, and go on with the rest (rare: fragmentation).
                self.dispatch_all(id, &mut batch, i, &verdicts, env);
                self.dispatch_staged(id, &mut staged, env);
                i = 0;
            }
            put_slot(&mut self.staged, id, staged);
        } else {
            select(&mut self.nodes).process_batch(&mut batch, env.ctx, env.worker, &mut verdicts);
            // A metered interface: what goes on to connection tracking goes through the meter
            // first (one branch per batch and a compare; `id` is a constant here).
            if id.via_meter() && self.nodes.meter.active(env.ctx.tables) {
                let n = batch.len().min(verdicts.len());
                crate::nodes::via_meter_all(verdicts.get_mut(..n).unwrap_or_default());
            }
            // Several workers: what goes on to the encapsulation or the rewrite goes through
            // the hand-off node first (one branch per batch; `id` is a constant here).
            if id.via_handoff() && env.worker.count() > 1 {
                let n = batch.len().min(verdicts.len());
                crate::nodes::via_handoff_all(verdicts.get_mut(..n).unwrap_or_default());
            }
        }
        let decided = batch.len();
        self.dispatch_all(id, &mut batch, decided, &verdicts, env);
        put_slot(&mut self.verdicts, id, verdicts);
        if let Some(slot) = self.inputs.get_mut(id.index()) {
            *slot = batch;
        }
        // A node that ran a later node (its input was full) includes that one's time: rare.
        if let Some(c) = self.counters.node_cycles.get(id.index()) {
            c.fetch_add(
                crate::cycles::now().wrapping_sub(started),
                Ordering::Relaxed,
            );
        }
    }

    /// A node's periodic work, then the packets it made.
    fn timeout_node<N: Node>(
        &mut self,
        id: NodeId,
        env: &mut Env<'_, '_>,
        select: impl Fn(&mut Nodes) -> &mut N,
    ) {
        let mut staged = take_slot(&mut self.staged, id);
        let mut emit = Emit::new(env.pool, &mut staged);
        select(&mut self.nodes).handle_timeout(env.ctx, env.worker, &mut emit);
        self.dispatch_staged(id, &mut staged, env);
        put_slot(&mut self.staged, id, staged);
    }

    /// Sends the packets a node made, in order, counted as originated.
    fn dispatch_staged(
        &mut self,
        id: NodeId,
        staged: &mut Vec<(PacketBuf, Verdict)>,
        env: &mut Env<'_, '_>,
    ) {
        self.counters
            .originated
            .fetch_add(staged.len() as u64, Ordering::Relaxed);
        for (pkt, verdict) in staged.drain(..) {
            self.dispatch(id, pkt, verdict, env);
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
        env: &mut Env<'_, '_>,
    ) {
        let decided = verdicts.get(..count).unwrap_or(verdicts);
        if self.tracing {
            self.trace(id, batch, decided);
        }
        if count == batch.len() {
            if let Some(&first) = decided.first() {
                // A fold without early exit, over words: the compiler vectorises it.
                let word = first.word();
                if decided.iter().fold(0, |diff, v| diff | (v.word() ^ word)) == 0 {
                    self.record_edge(id, first);
                    let target = match first {
                        Verdict::Next(next) if next.index() > id.index() => {
                            self.inputs.get_mut(next.index())
                        }
                        Verdict::Tx(port) => self.tx.get_mut(usize::from(port)),
                        Verdict::Drop(reason) => {
                            // A whole batch dropped for one reason: one count.
                            self.counters
                                .count_drop(Some(id), reason, batch.len() as u64);
                            for pkt in batch.drain(..) {
                                env.pool.free(pkt);
                            }
                            return;
                        }
                        // To other workers: packet by packet, below.
                        Verdict::Next(_) | Verdict::Handoff(_) => None,
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
            self.dispatch(id, pkt, verdict, env);
        }
    }

    #[inline]
    fn dispatch(&mut self, from: NodeId, pkt: PacketBuf, verdict: Verdict, env: &mut Env<'_, '_>) {
        self.record_edge(from, verdict);
        let result = match verdict {
            Verdict::Next(next) if next.index() > from.index() => self.push_next(next, pkt, env),
            Verdict::Next(next) if from.declares(next) => self.recirculate(pkt, next),
            Verdict::Next(_) => Err((pkt, DropReason::GraphLoop)),
            Verdict::Tx(port) => self.push_tx(port, pkt, env),
            Verdict::Drop(reason) => Err((pkt, reason)),
            Verdict::Handoff(to) => self.hand_off(to, pkt, env),
        };
        if let Err((pkt, reason)) = result {
            if self.tracing {
                if let Some(tap) = &mut self.tap {
                    tap.drop_one(from, reason, &pkt, self.run_now_ns);
                }
            }
            self.counters.count_drop(Some(from), reason, 1);
            env.pool.free(pkt);
        }
    }

    /// Into a later node's batch; a full batch is processed first (the node is later than every
    /// node running, so its batch is in place), so nothing is lost to a full batch.
    #[inline]
    fn push_next(
        &mut self,
        next: NodeId,
        pkt: PacketBuf,
        env: &mut Env<'_, '_>,
    ) -> Result<(), (PacketBuf, DropReason)> {
        let full = self
            .inputs
            .get(next.index())
            .is_some_and(|b| b.len() >= BATCH_SIZE);
        if full {
            self.run_by_id(next, env);
        }
        match self.inputs.get_mut(next.index()) {
            Some(batch) => push_bounded(batch, pkt).map_err(|p| (p, DropReason::QueueFull)),
            None => Err((pkt, DropReason::GraphLoop)),
        }
    }

    /// Into a port's batch; a full batch goes to the sink first.
    #[inline]
    fn push_tx(
        &mut self,
        port: PortId,
        pkt: PacketBuf,
        env: &mut Env<'_, '_>,
    ) -> Result<(), (PacketBuf, DropReason)> {
        match self.tx.get(usize::from(port)) {
            None => return Err((pkt, DropReason::DstPortDown)),
            Some(batch) if batch.len() >= BATCH_SIZE => self.send_batch(port, env.pool, env.sink),
            Some(_) => {}
        }
        let Some(batch) = self.tx.get_mut(usize::from(port)) else {
            return Err((pkt, DropReason::DstPortDown));
        };
        push_bounded(batch, pkt).map_err(|p| (p, DropReason::QueueFull))
    }

    /// Into the ring to worker `to`; a full ring (or none: a single worker) is a drop.
    #[inline]
    fn hand_off(
        &mut self,
        to: u16,
        pkt: PacketBuf,
        env: &mut Env<'_, '_>,
    ) -> Result<(), (PacketBuf, DropReason)> {
        let sent = match env.worker.rings_mut() {
            Some(rings) => rings.send(usize::from(to), pkt),
            None => Err(pkt),
        };
        match sent {
            Ok(()) => {
                self.handed_off_in_run += 1;
                Ok(())
            }
            Err(pkt) => Err((pkt, DropReason::HandoffRingFull)),
        }
    }

    /// Back to an earlier node, at the next pass: at most [`MAX_RECIRCULATIONS`] times a packet.
    fn recirculate(
        &mut self,
        mut pkt: PacketBuf,
        to: NodeId,
    ) -> Result<(), (PacketBuf, DropReason)> {
        if pkt.meta.hops >= MAX_RECIRCULATIONS {
            return Err((pkt, DropReason::RecircLimit));
        }
        if self.recirc.len() >= RECIRC_CAPACITY {
            return Err((pkt, DropReason::QueueFull));
        }
        pkt.meta.hops += 1;
        self.recirc.push((pkt, to));
        Ok(())
    }

    #[inline(always)]
    fn record_edge(&mut self, from: NodeId, verdict: Verdict) {
        #[cfg(debug_assertions)]
        if let Some(taken) = self.edges_taken.get_mut(from.index()) {
            match verdict {
                Verdict::Next(to) => *taken |= 1 << to.index(),
                Verdict::Tx(_) => *taken |= TX_EDGE_BIT,
                Verdict::Handoff(_) => *taken |= HANDOFF_EDGE_BIT,
                Verdict::Drop(_) => {}
            }
        }
        #[cfg(not(debug_assertions))]
        let _ = (from, verdict);
    }

    /// `--graphtrace-loglevel`: the verdicts of a node on (part of) its batch (formatted in
    /// place: tracing allocates nothing of its own).
    #[cold]
    #[inline(never)]
    fn trace(&mut self, id: NodeId, batch: &[PacketBuf], verdicts: &[Verdict]) {
        if let Some(tap) = &mut self.tap {
            if tap.wants_node(id) {
                tap.node_batch(id, batch, verdicts, self.run_now_ns);
            }
        }
        if self.trace_level == 0 {
            return;
        }
        for (pkt, &verdict) in batch.iter().zip(verdicts) {
            let to = Target(verdict);
            let what = FrameSummary(pkt.data());
            if self.trace_level >= 2 {
                let head = pkt.data().get(..64).unwrap_or(pkt.data());
                tracing::info!(target: "graphtrace", node = id.name(), in_port = pkt.meta.in_port,
                    len = pkt.len(), "-> {to} {what} {head:02x?}");
            } else {
                tracing::info!(target: "graphtrace", node = id.name(), in_port = pkt.meta.in_port,
                    len = pkt.len(), "-> {to} {what}");
            }
        }
    }
}

/// Where a verdict sends a packet, as the trace shows it.
struct Target(Verdict);

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Verdict::Next(next) => f.write_str(next.name()),
            Verdict::Tx(port) => write!(f, "tx port {port}"),
            Verdict::Drop(reason) => write!(f, "drop ({})", reason.name()),
            Verdict::Handoff(worker) => write!(f, "handoff -> worker {worker}"),
        }
    }
}

/// A node's slot of a per-node buffer, taken out while the node runs (and put back after).
#[inline(always)]
fn take_slot<T>(slots: &mut [Vec<T>; NodeId::COUNT], id: NodeId) -> Vec<T> {
    slots
        .get_mut(id.index())
        .map(std::mem::take)
        .unwrap_or_default()
}

#[inline(always)]
fn put_slot<T>(slots: &mut [Vec<T>; NodeId::COUNT], id: NodeId, v: Vec<T>) {
    if let Some(slot) = slots.get_mut(id.index()) {
        *slot = v;
    }
}

/// Pushes without ever growing the vector: not past a batch, nor past its capacity (a batch
/// taken out by a running node has none; nothing is ever pushed to one, but if it were, it would
/// be refused rather than allocated).
#[inline]
fn push_bounded(batch: &mut Vec<PacketBuf>, pkt: PacketBuf) -> Result<(), PacketBuf> {
    if batch.len() >= BATCH_SIZE || batch.len() >= batch.capacity() {
        return Err(pkt);
    }
    batch.push(pkt);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DpConfig;
    use crate::port_table::PortTable;
    use dp_tables::Snapshot;
    use std::sync::Arc;

    /// A transmit path that counts what it is given.
    #[derive(Default)]
    struct Count(usize);

    impl TxSink for Count {
        fn flush(
            &mut self,
            _: PortId,
            batch: &mut Vec<PacketBuf>,
            pool: &mut BufferPool,
            _: &GraphCounters,
        ) {
            self.0 += batch.len();
            for p in batch.drain(..) {
                pool.free(p);
            }
        }
    }

    /// A graph with nothing in its tables, a pool, and a runt frame maker (every node drops a
    /// 4-byte frame).
    fn setup() -> (Graph, Arc<GraphCounters>, BufferPool) {
        let counters = Arc::new(GraphCounters::default());
        (
            Graph::new(1, Arc::clone(&counters)),
            counters,
            BufferPool::new(2 * BATCH_SIZE, 256),
        )
    }

    /// Empty tables, default settings, no ports: the context of the tests below.
    #[derive(Default)]
    struct Empty {
        tables: Snapshot,
        config: DpConfig,
        ports: PortTable,
    }

    impl Empty {
        fn ctx(&self) -> Ctx<'_> {
            Ctx {
                tables: &self.tables,
                config: &self.config,
                ports: &self.ports,
                now_ns: 0,
            }
        }
    }

    fn runt(pool: &mut BufferPool) -> PacketBuf {
        let mut pkt = pool.alloc().expect("buffer");
        pkt.set_frame(&[0; 4]).expect("frame");
        pkt
    }

    #[test]
    fn declared_edges_never_point_at_their_own_node() {
        for &node in NodeId::ORDER {
            for next in node.next_nodes() {
                assert_ne!(*next, node, "{}: an edge to itself", node.name());
                assert!(node.declares(*next));
            }
        }
        assert!(!NodeId::L2Rewrite.declares(NodeId::Classify));
        let edges = edge_list();
        assert!(edges.contains("classify -> arp\n"), "{edges}");
        assert!(edges.contains("ipip_encap -> tx\n"), "{edges}");
    }

    #[test]
    fn recirculated_packets_run_again_within_the_hop_limit() {
        let (mut graph, counters, mut pool) = setup();
        let empty = Empty::default();
        let ctx = empty.ctx();
        let mut worker = WorkerCtx::single();
        // One packet back to classify: it runs there at the next pass of the same run.
        let pkt = runt(&mut pool);
        assert!(graph.recirculate(pkt, NodeId::Classify).is_ok());
        // One that has been around as often as allowed: refused, with the reason.
        let mut tired = runt(&mut pool);
        tired.meta.hops = MAX_RECIRCULATIONS;
        let (tired, reason) = graph.recirculate(tired, NodeId::Classify).unwrap_err();
        assert_eq!(reason, DropReason::RecircLimit);
        pool.free(tired);
        graph.run(&ctx, &mut worker, &mut pool, &mut Count::default());
        assert_eq!(counters.node_packets(NodeId::Classify), 1);
        let at_classify: u64 = DropReason::ALL
            .iter()
            .map(|&r| counters.node_drops(Some(NodeId::Classify), r))
            .sum();
        assert_eq!((at_classify, counters.total_drops()), (1, 1));
        assert_eq!(pool.available(), pool.capacity());
    }

    /// Runs `test` on a fresh graph with an empty context; returns what reached the sink and
    /// the pool, with what waited in the transmit batches freed to it.
    fn with_env(
        test: impl FnOnce(&mut Graph, &GraphCounters, &mut Env<'_, '_>),
    ) -> (usize, BufferPool) {
        let (mut graph, counters, mut pool) = setup();
        let empty = Empty::default();
        let ctx = empty.ctx();
        let mut worker = WorkerCtx::single();
        let mut sink = Count::default();
        let mut env = Env {
            ctx: &ctx,
            worker: &mut worker,
            pool: &mut pool,
            sink: &mut sink,
        };
        test(&mut graph, &counters, &mut env);
        for batch in graph.tx.iter_mut() {
            for p in batch.drain(..) {
                pool.free(p);
            }
        }
        (sink.0, pool)
    }

    #[test]
    fn backward_edges_not_declared_are_graph_loops() {
        let (_, pool) = with_env(|graph, counters, env| {
            let pkt = runt(env.pool);
            graph.dispatch(NodeId::L2Rewrite, pkt, Verdict::Next(NodeId::Classify), env);
            assert_eq!(
                counters.node_drops(Some(NodeId::L2Rewrite), DropReason::GraphLoop),
                1
            );
            assert!(graph.recirc.is_empty());
        });
        assert_eq!(pool.available(), pool.capacity());
    }

    #[test]
    fn a_full_node_batch_is_processed_before_more_goes_in() {
        let (flushed, pool) = with_env(|graph, counters, env| {
            let to_lookup = Verdict::Next(NodeId::Ipv4Lookup);
            for _ in 0..BATCH_SIZE {
                let pkt = runt(env.pool);
                graph.dispatch(NodeId::Classify, pkt, to_lookup, env);
            }
            assert_eq!(counters.node_packets(NodeId::Ipv4Lookup), 0);
            // The 65th: ipv4_lookup runs its full batch first, then takes it.
            let pkt = runt(env.pool);
            graph.dispatch(NodeId::Classify, pkt, to_lookup, env);
            assert_eq!(counters.node_packets(NodeId::Ipv4Lookup), 64);
            assert_eq!(graph.inputs[NodeId::Ipv4Lookup.index()].len(), 1);
            assert_eq!(counters.drops(DropReason::QueueFull), 0);
            // A full transmit batch goes to the sink first.
            for _ in 0..=BATCH_SIZE {
                let pkt = runt(env.pool);
                graph.dispatch(NodeId::L2Rewrite, pkt, Verdict::Tx(0), env);
            }
            assert_eq!(graph.tx[0].len(), 1);
            graph.run_passes(env);
            assert_eq!(counters.node_packets(NodeId::Ipv4Lookup), 65);
        });
        assert_eq!(flushed, 64);
        assert_eq!(pool.available(), pool.capacity());
    }
}
