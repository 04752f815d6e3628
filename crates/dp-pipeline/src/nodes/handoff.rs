//! Flow affinity: sends a packet to the worker that owns its flow, so that both directions of a
//! flow meet one worker (see [`crate::affinity`]).
//!
//! Only on the path of a dataplane with several workers: what the lookups (a VM's packets,
//! routed) and the decapsulation (the underlay's, the inner packet) send to the encapsulation or
//! the rewrite comes here first when `WorkerCtx::count() > 1` (the graph redirects their
//! verdicts, [`via_handoff_all`]; they declare the edge). The owner is
//! [`affinity::owner`] of the flow's [`symmetric_hash`](dp_packet::FlowKey::symmetric_hash), the
//! same for both directions. A packet of its own flow goes on; another's is marked
//! [`handed_off`](crate::buffer::PacketMeta::handed_off) and handed to its owner
//! ([`Verdict::Handoff`]), whose graph takes it here again: marked, it goes on (never handed
//! twice). "Going on" is the encapsulation when a remote route set the underlay destination,
//! else the rewrite for the VM port the lookup or the decapsulation chose.

use std::net::Ipv6Addr;

use crate::affinity;
use crate::buffer::PacketBuf;
use crate::graph::NodeId;
use crate::node::{Ctx, Node, Verdict};
use crate::worker_ctx::WorkerCtx;

#[derive(Debug, Default)]
pub struct Handoff;

impl Node for Handoff {
    const NAME: &'static str = "handoff";
    const NEXT: &'static [NodeId] = &[NodeId::IpipEncap, NodeId::L2Rewrite];
    const HANDS_OFF: bool = true;

    #[inline]
    fn process(&mut self, pkt: &mut PacketBuf, _ctx: &Ctx<'_>, worker: &mut WorkerCtx) -> Verdict {
        if pkt.meta.handed_off {
            pkt.meta.handed_off = false;
            return go_on(pkt);
        }
        let owner = affinity::owner(pkt.flow().symmetric_hash(), worker.count());
        if owner == worker.index() {
            return go_on(pkt);
        }
        pkt.meta.handed_off = true;
        Verdict::Handoff(u16::try_from(owner).unwrap_or(u16::MAX))
    }
}

/// Where a packet of this worker's flow goes: encapsulated when a remote route set its underlay
/// destination, else rewritten for its VM port (a local route, or decapsulated).
#[inline]
fn go_on(pkt: &PacketBuf) -> Verdict {
    if pkt.meta.underlay_dst != Ipv6Addr::UNSPECIFIED {
        Verdict::Next(NodeId::IpipEncap)
    } else {
        Verdict::Next(NodeId::L2Rewrite)
    }
}

/// A node's decided verdicts, through the hand-off node (several workers): a packet that would
/// go to the encapsulation or the rewrite goes to [`Handoff`] first. The graph calls it after
/// the batch of a node that declares the edge to `handoff` ([`NodeId::via_handoff`]), only with
/// several workers: one branch per batch, none per packet, and the node's own loop unchanged
/// (a check per packet in `ipv4_lookup`'s loop, or after it in the same function, changed its
/// code generation: 11 to 15 instructions per packet more for a single worker in callgrind).
#[inline(never)]
pub(crate) fn via_handoff_all(verdicts: &mut [Verdict]) {
    for verdict in verdicts {
        if matches!(
            *verdict,
            Verdict::Next(NodeId::IpipEncap | NodeId::L2Rewrite)
        ) {
            *verdict = Verdict::Next(NodeId::Handoff);
        }
    }
}
