//! The node seam: a node looks at one packet of its batch and says where it goes next.

use dp_tables::{PortId, Snapshot};

use crate::buffer::{BufferPool, PacketBuf};
use crate::config::DpConfig;
use crate::drop::DropReason;
use crate::graph::{NodeId, MAX_EXTRA_PACKETS};
use crate::port_table::PortTable;
use crate::worker_ctx::WorkerCtx;

/// What a node decided for a packet.
///
/// A 16-bit tag and a 16-bit value, so that a verdict is one 32-bit word ([`Verdict::word`]): a
/// node writes it with one store, and the graph checks a whole batch's verdicts for "all the
/// same" with vector compares instead of a tag and a field compare per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Verdict {
    /// Hand the packet to a later node.
    Next(NodeId),
    /// Send the packet out of a port as it is now.
    Tx(PortId),
    /// Drop it, counted under the reason.
    Drop(DropReason),
    /// Hand it to another worker (its index), the owner of its flow ([`crate::affinity`]): into
    /// the ring to that worker, or dropped as `handoff_ring_full` when the ring is full.
    Handoff(u16),
}

impl Verdict {
    /// The verdict as one word. Two verdicts are equal exactly when their words are.
    #[inline(always)]
    pub const fn word(self) -> u32 {
        // SAFETY: `Verdict` is `repr(u16)` and every variant holds one 16-bit value (`NodeId` and
        // `DropReason` are `repr(u16)`, `PortId` and the worker index of `Handoff` are `u16`), so its 4 bytes are a tag and a value,
        // all initialised, with no padding (the size is asserted below). A safe `match` building
        // the same word is not reduced to a load by the compiler, and keeps the "all the same"
        // check of `Graph::dispatch_all` from being vectorised.
        unsafe { std::mem::transmute::<Verdict, u32>(self) }
    }
}

const _: () = assert!(std::mem::size_of::<Verdict>() == 4);

/// Read-only context of one graph run: the tables as of this batch, the settings, the ports and
/// the time. Nodes never see a socket or the clock (sans-IO).
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub tables: &'a Snapshot,
    pub config: &'a DpConfig,
    pub ports: &'a PortTable,
    pub now_ns: u64,
}

/// Where a node's extra packets go: frames it makes (fragments, probes, replies) are staged here,
/// each with its own verdict — any node or port — and dispatched by the graph right after the
/// packet that made them (or after the timer that made them).
///
/// The staging area is pre-allocated ([`MAX_EXTRA_PACKETS`]); [`Emit::send`] hands the packet
/// back when it is full rather than grow it, and the node drops it, counted.
pub struct Emit<'a> {
    pool: &'a mut BufferPool,
    staged: &'a mut Vec<(PacketBuf, Verdict)>,
}

impl<'a> Emit<'a> {
    pub(crate) fn new(pool: &'a mut BufferPool, staged: &'a mut Vec<(PacketBuf, Verdict)>) -> Self {
        Emit { pool, staged }
    }

    /// The pool to allocate new packets from (and to free them to).
    #[inline]
    pub fn pool(&mut self) -> &mut BufferPool {
        self.pool
    }

    /// A fresh buffer from the pool, or `None` when it is exhausted.
    #[inline]
    pub fn alloc(&mut self) -> Option<PacketBuf> {
        self.pool.alloc()
    }

    /// Whether packets were staged since the last dispatch.
    #[inline]
    pub fn made_any(&self) -> bool {
        !self.staged.is_empty()
    }

    /// How many more packets can be staged.
    #[inline]
    pub fn room(&self) -> usize {
        MAX_EXTRA_PACKETS.saturating_sub(self.staged.len())
    }

    /// Stages `pkt` to go where `verdict` says. Hands it back when the staging area is full.
    #[inline]
    pub fn send(&mut self, pkt: PacketBuf, verdict: Verdict) -> Result<(), PacketBuf> {
        if self.staged.len() >= MAX_EXTRA_PACKETS.min(self.staged.capacity()) {
            return Err(pkt);
        }
        self.staged.push((pkt, verdict));
        Ok(())
    }

    /// Frees what was staged since the last dispatch (a node that gives up on a packet after it
    /// made some of its pieces).
    pub fn discard(&mut self) {
        for (pkt, _) in self.staged.drain(..) {
            self.pool.free(pkt);
        }
    }
}

/// A graph node. The graph calls `process` for every packet of the node's batch in turn, so a
/// node's code and data stay hot in cache for the whole batch (vector processing).
///
/// A node gets the shared read-only [`Ctx`] and the worker's own mutable [`WorkerCtx`] (state
/// several nodes share on one worker: no locks, no atomics). Its own fields are per-worker state
/// too: every worker has its own graph.
pub trait Node {
    /// The node's name in stats and traces.
    const NAME: &'static str;

    /// The nodes this one may send packets to ([`Verdict::Next`]); VPP's `.next_nodes`. An edge
    /// to a later node is a forward edge; one to this node or an earlier one is a recirculation
    /// (bounded by [`crate::graph::MAX_RECIRCULATIONS`]). The graph counts what a node sends to
    /// a node not listed here as `graph_loop`, and debug builds record every edge taken so the
    /// conservation test checks them against this list.
    const NEXT: &'static [NodeId];

    /// Whether the node may send packets out of a port ([`Verdict::Tx`]).
    const TRANSMITS: bool = false;

    /// Whether the node may hand packets to another worker ([`Verdict::Handoff`]).
    const HANDS_OFF: bool = false;

    /// Whether the node may turn one packet into several; only then does the graph call
    /// [`Node::process_alloc`] instead of [`Node::process_batch`].
    const MAKES_PACKETS: bool = false;

    /// Called once before the node's batch is processed: a node reads per-batch state here
    /// (the uplinks' state, settings) instead of per packet.
    #[inline]
    fn begin_batch(&mut self, ctx: &Ctx<'_>, worker: &mut WorkerCtx) {
        let _ = (ctx, worker);
    }

    /// Decides the fate of one packet; may rewrite it in place.
    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, worker: &mut WorkerCtx) -> Verdict;

    /// Decides the fate of every packet of a batch, in order: `verdicts[i]` for `pkts[i]`
    /// (`verdicts` is at least as long as `pkts`). The graph calls this for nodes that do not
    /// make packets; the default calls [`Node::process`] for each. A node overrides it to do
    /// per-batch work once (e.g. look up the sender's tables once per run of packets from the
    /// same port); the outcome must be what `process` would decide packet by packet.
    #[inline]
    fn process_batch(
        &mut self,
        pkts: &mut [PacketBuf],
        ctx: &Ctx<'_>,
        worker: &mut WorkerCtx,
        verdicts: &mut [Verdict],
    ) {
        for (pkt, verdict) in pkts.iter_mut().zip(verdicts.iter_mut()) {
            *verdict = self.process(pkt, ctx, worker);
        }
    }

    /// [`Node::process`] for a node that may make more packets out of one (IPv4 fragmentation,
    /// ICMP errors, mirrors): the extra packets, allocated from `emit`'s pool, are staged with
    /// [`Emit::send`] to any node or port and dispatched right after `pkt`.
    fn process_alloc(
        &mut self,
        pkt: &mut PacketBuf,
        ctx: &Ctx<'_>,
        worker: &mut WorkerCtx,
        emit: &mut Emit<'_>,
    ) -> Verdict {
        let _ = emit;
        self.process(pkt, ctx, worker)
    }

    /// When the node next has periodic work (nanoseconds of the worker's clock), if ever; the
    /// graph calls [`Node::handle_timeout`] on the first tick at or after it (quinn-proto's
    /// `poll_timeout`). The caller owns the clock: the node is told the time, never reads it.
    #[inline]
    fn poll_timeout(&self) -> Option<u64> {
        None
    }

    /// The periodic work due at `ctx.now_ns`, bounded per call; frames it makes go to `emit`.
    #[inline]
    fn handle_timeout(&mut self, ctx: &Ctx<'_>, worker: &mut WorkerCtx, emit: &mut Emit<'_>) {
        let _ = (ctx, worker, emit);
    }
}

/// Decides a batch run by run, for a node whose work depends on a per-port look-up: `setup` is
/// called once for each run of consecutive packets with the same `key` (their input or output
/// port), then `decide` for every packet of the run, with what `setup` returned. `verdicts[i]` is
/// for `pkts[i]`, as in [`Node::process_batch`]. Batches mostly hold long runs, so a packet costs
/// one key compare here, not the "same port as the last one?" bookkeeping of a per-packet cache.
#[inline(always)]
pub(crate) fn decide_by_runs<K, S>(
    pkts: &mut [PacketBuf],
    verdicts: &mut [Verdict],
    key: impl Fn(&PacketBuf) -> K,
    mut setup: impl FnMut(K) -> S,
    mut decide: impl FnMut(&mut PacketBuf, &S) -> Verdict,
) where
    K: Copy + PartialEq,
{
    let n = pkts.len().min(verdicts.len());
    let mut i = 0;
    while let Some(first) = pkts.get(i).filter(|_| i < n) {
        let run_key = key(first);
        let state = setup(run_key);
        let start = i;
        let run_pkts = pkts.get_mut(i..n).unwrap_or_default();
        let run_verdicts = verdicts.get_mut(i..n).unwrap_or_default();
        for (pkt, verdict) in run_pkts.iter_mut().zip(run_verdicts.iter_mut()) {
            if key(pkt) != run_key {
                break;
            }
            *verdict = decide(pkt, &state);
            i += 1;
        }
        if i == start {
            break; // cannot happen (a packet's key equals itself); never loop without progress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drop::DropReason;

    #[test]
    fn runs_are_set_up_once_and_every_packet_decided_in_order() {
        let ports = [1u16, 1, 1, 2, 2, 1, 3];
        let mut pkts: Vec<PacketBuf> = ports
            .iter()
            .map(|&p| {
                let mut pkt = PacketBuf::new(64);
                pkt.meta.in_port = p;
                pkt
            })
            .collect();
        let mut verdicts = vec![Verdict::Drop(DropReason::GraphLoop); ports.len() + 2];
        let mut setups = Vec::new();
        let mut decided = 0u16;
        decide_by_runs(
            &mut pkts,
            &mut verdicts,
            |pkt| pkt.meta.in_port,
            |port| {
                setups.push(port);
                port * 100
            },
            |pkt, base| {
                decided += 1;
                Verdict::Tx(*base + pkt.meta.in_port + decided)
            },
        );
        assert_eq!(setups, [1, 2, 1, 3]);
        let expected: Vec<Verdict> = ports
            .iter()
            .zip(1u16..)
            .map(|(&p, i)| Verdict::Tx(p * 100 + p + i))
            .collect();
        assert_eq!(verdicts[..ports.len()], expected[..]);
        // Verdicts past the batch are left alone; fewer verdicts than packets decide only those.
        assert_eq!(verdicts[ports.len()], Verdict::Drop(DropReason::GraphLoop));
        let mut short = vec![Verdict::Drop(DropReason::GraphLoop); 2];
        decide_by_runs(
            &mut pkts,
            &mut short,
            |p| p.meta.in_port,
            |_| (),
            |_, _| Verdict::Drop(DropReason::Spoofed),
        );
        assert_eq!(short, [Verdict::Drop(DropReason::Spoofed); 2]);
    }
}
