//! Flow affinity: sends a packet to the worker that owns its flow, so that both directions of a
//! flow meet one worker (see [`crate::affinity`]).
//!
//! Only on the path of a dataplane with several workers: the lookups (a VM's packets, routed)
//! and the decapsulation (the underlay's, the inner packet) send here instead of to the
//! encapsulation or the rewrite when `WorkerCtx::count() > 1`. The owner is
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

/// A lookup's or the decapsulation's verdict, through the hand-off node when several workers
/// forward (`many`, read once per batch): a packet that would go to the encapsulation or the
/// rewrite goes to [`Handoff`] first. One predictable branch for a single worker.
#[inline(always)]
pub(super) fn via_handoff(verdict: Verdict, many: bool) -> Verdict {
    if many
        && matches!(
            verdict,
            Verdict::Next(NodeId::IpipEncap | NodeId::L2Rewrite)
        )
    {
        Verdict::Next(NodeId::Handoff)
    } else {
        verdict
    }
}
