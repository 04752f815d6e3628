//! Flow affinity: sends a packet to the worker that owns its flow, so that both directions of a
//! flow meet one worker's connection tracking (see [`crate::affinity`]).
//!
//! Only on the path of a dataplane with several workers: what the lookups (a VM's packets,
//! routed) and the decapsulation (the underlay's, the inner packet) send to
//! [`Conntrack`](super::Conntrack) comes here first when `WorkerCtx::count() > 1` (the graph
//! redirects their verdicts, [`via_handoff_all`]; they declare the edge). A packet of its own
//! flow goes on; another's is marked [`handed_off`](crate::buffer::PacketMeta::handed_off) and
//! handed to its owner ([`Verdict::Handoff`]), whose graph takes it here again: marked, it goes
//! on (never handed twice).
//!
//! The owner is [`affinity::owner`] of the flow's *inside* key — as the VM sees it — by its
//! [`symmetric_hash`](dp_packet::FlowKey::symmetric_hash), the same for both directions:
//! * a packet for a VIP (from the underlay, or from a VM of the VNI) is hashed with the VIP
//!   replaced by the interface's own address, which is what the reply comes from;
//! * a packet from the underlay for a NAT address belongs to the worker that owns its
//!   destination port ([`affinity::nat_port_owner`]): a worker only gives its flows NAT ports it
//!   owns, so the reply, whose key names only the NAT address and port, finds its flow;
//! * an ICMP error is hashed (or, for a NAT address, owned) by the packet it quotes.

use dp_packet::{nat, FlowKey, IpProtocol, Ipv4Addr};
use dp_tables::PublicTarget;

use crate::affinity;
use crate::buffer::{Origin, PacketBuf};
use crate::graph::NodeId;
use crate::node::{Ctx, Node, Verdict};
use crate::worker_ctx::WorkerCtx;

#[derive(Debug, Default)]
pub struct Handoff;

impl Node for Handoff {
    const NAME: &'static str = "handoff";
    // `Virtsvc`: a virtual service's packet handed in by the worker that received it (the
    // `virtsvc` node hands its packets off itself; they come back to it here).
    const NEXT: &'static [NodeId] = &[NodeId::Virtsvc, NodeId::Conntrack];
    const HANDS_OFF: bool = true;

    #[inline]
    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, worker: &mut WorkerCtx) -> Verdict {
        if pkt.meta.handed_off {
            pkt.meta.handed_off = false;
            if pkt.meta.virtsvc != 0 {
                return Verdict::Next(NodeId::Virtsvc);
            }
            return Verdict::Next(NodeId::Conntrack);
        }
        let owner = owner_of(pkt, ctx, worker.count());
        if owner == worker.index() {
            return Verdict::Next(NodeId::Conntrack);
        }
        pkt.meta.handed_off = true;
        Verdict::Handoff(u16::try_from(owner).unwrap_or(u16::MAX))
    }
}

/// The worker that owns the packet's flow (see the module docs).
#[inline]
fn owner_of(pkt: &mut PacketBuf, ctx: &Ctx<'_>, count: usize) -> usize {
    let mut key = *pkt.flow();
    if matches!(key.proto, IpProtocol::ICMP | IpProtocol::ICMPV6) {
        if let Some(quoted) = quoted_key(pkt) {
            if pkt.meta.origin == Origin::UnderlayNat {
                // The quote went out from the NAT address and port.
                return affinity::nat_port_owner(quoted.src_port, count);
            }
            key = quoted;
        }
    }
    match pkt.meta.origin {
        Origin::UnderlayNat => return affinity::nat_port_owner(key.dst_port, count),
        Origin::UnderlayVip => inside_of_vip(&mut key, ctx, pkt.parsed.vni),
        Origin::Vm if pkt.meta.route_public => inside_of_vip(&mut key, ctx, pkt.parsed.vni),
        _ => {}
    }
    affinity::owner(key.symmetric_hash(), count)
}

/// Replaces a VIP destination by its interface's own address.
#[inline]
fn inside_of_vip(key: &mut FlowKey, ctx: &Ctx<'_>, vni: u32) {
    if key.is_v6 {
        return;
    }
    let dst = Ipv4Addr::from(key.dst as u32);
    if let Some(PublicTarget::Vip { private, .. }) = ctx.tables.public_target(vni, dst) {
        key.dst = u128::from(u32::from(private));
    }
}

/// The key of the packet an ICMP error quotes, if it is one.
#[cold]
fn quoted_key(pkt: &PacketBuf) -> Option<FlowKey> {
    let start = usize::from(pkt.parsed.l3_offset);
    let l3 = pkt.data().get(start..start + pkt.parsed.l3_len as usize)?;
    if l3.first()? >> 4 == 4 {
        nat::icmp_error_quote_v4(l3).map(|q| q.flow_key())
    } else {
        nat::icmp_error_quote_v6(l3).map(|q| q.flow_key())
    }
}

/// A node's decided verdicts, through the hand-off node (several workers): a packet that would
/// go to connection tracking goes to [`Handoff`] first. The graph calls it after the batch of a
/// node that declares the edge to `handoff` ([`NodeId::via_handoff`]), only with several
/// workers: one branch per batch, none per packet, and the node's own loop unchanged (a check
/// per packet in `ipv4_lookup`'s loop, or after it in the same function, changed its code
/// generation: 11 to 15 instructions per packet more for a single worker in callgrind).
#[inline(never)]
pub(crate) fn via_handoff_all(verdicts: &mut [Verdict]) {
    for verdict in verdicts {
        if *verdict == Verdict::Next(NodeId::Conntrack) {
            *verdict = Verdict::Next(NodeId::Handoff);
        }
    }
}
