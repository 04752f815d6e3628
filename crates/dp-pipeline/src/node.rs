//! The node seam: a node looks at one packet of its batch and says where it goes next.

use dp_tables::{PortId, Snapshot};

use crate::buffer::{BufferPool, PacketBuf};
use crate::config::DpConfig;
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::port_table::PortTable;

/// What a node decided for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the packet to a later node.
    Next(NodeId),
    /// Send the packet out of a port as it is now.
    Tx(PortId),
    /// Drop it, counted under the reason.
    Drop(DropReason),
}

/// Read-only context of one graph run: the tables as of this batch, the settings, the ports and
/// the time. Nodes never see a socket or the clock (sans-IO).
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub tables: &'a Snapshot,
    pub config: &'a DpConfig,
    pub ports: &'a PortTable,
    pub now_ns: u64,
}

/// A graph node. The graph calls `process` for every packet of the node's batch in turn, so a
/// node's code and data stay hot in cache for the whole batch (vector processing).
pub trait Node {
    /// The node's name in stats and traces.
    const NAME: &'static str;

    /// Whether the node may turn one packet into several; only then does the graph call
    /// [`Node::process_alloc`] instead of [`Node::process`].
    const MAKES_PACKETS: bool = false;

    /// Called once before the node's batch is processed: a node reads per-batch state here
    /// (the uplinks' state, settings) instead of per packet.
    #[inline]
    fn begin_batch(&mut self, ctx: &Ctx<'_>) {
        let _ = ctx;
    }

    /// Decides the fate of one packet; may rewrite it in place.
    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>) -> Verdict;

    /// Decides the fate of every packet of a batch, in order: `verdicts[i]` for `pkts[i]`
    /// (`verdicts` is at least as long as `pkts`). The graph calls this for nodes that do not
    /// make packets; the default calls [`Node::process`] for each. A node overrides it to do
    /// per-batch work once (e.g. look up the sender's tables once per run of packets from the
    /// same port); the outcome must be what `process` would decide packet by packet.
    #[inline]
    fn process_batch(&mut self, pkts: &mut [PacketBuf], ctx: &Ctx<'_>, verdicts: &mut [Verdict]) {
        for (pkt, verdict) in pkts.iter_mut().zip(verdicts.iter_mut()) {
            *verdict = self.process(pkt, ctx);
        }
    }

    /// [`Node::process`] for a node that may make more packets out of one (IPv4 fragmentation):
    /// the extra packets, allocated from `pool`, are pushed to `extra` and go where the verdict
    /// sends `pkt`, right after it. `extra` never grows past its capacity (pushing beyond it
    /// would allocate): a node that needs more gives up and drops.
    fn process_alloc(
        &mut self,
        pkt: &mut PacketBuf,
        ctx: &Ctx<'_>,
        pool: &mut BufferPool,
        extra: &mut Vec<PacketBuf>,
    ) -> Verdict {
        let _ = (pool, extra);
        self.process(pkt, ctx)
    }
}
