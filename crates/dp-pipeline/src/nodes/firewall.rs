//! The firewall: decides a flow once — when it is made, and again when the snapshot's firewall
//! generation changed (a rule or an interface was added or removed) — and keeps the verdict in
//! the flow, which [`Conntrack`](super::Conntrack) then applies to every packet of both
//! directions without coming here: replies of an accepted flow always pass.
//!
//! Enforcing, unlike dpservice (whose node computes verdicts and never drops): the egress rules
//! of the VM that started the flow and the ingress rules of the VM it goes to (each end that is a
//! VM of this host) must both accept it; a direction without rules accepts everything
//! (`dp_tables::FirewallRules::decide`). Egress rules see the flow as the VM sent it (before
//! source NAT), ingress rules as the VM receives it (after destination NAT). A refused flow is
//! kept for [`DENIED_FLOW_NS`] (its packets do not refresh it), so that its later packets are
//! dropped at once (`firewall_denied`) until it expires or the rules change.

use dp_packet::IpProtocol;
use dp_tables::{
    Direction, FirewallAction, FirewallVerdict, Flow, FlowMatch, Snapshot, TrafficDirection,
    Translation, NO_PORT,
};

use crate::buffer::PacketBuf;
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{Ctx, Node, Verdict};
use crate::worker_ctx::WorkerCtx;

use super::conntrack::go_on;

/// How long a refused flow is kept (its packets do not refresh it): long enough to drop a
/// burst without deciding every packet again, short enough that a scan of a firewalled VM
/// cannot fill the flow table with flows that never pass.
pub const DENIED_FLOW_NS: u64 = 2_000_000_000;

#[derive(Debug, Default)]
pub struct Firewall;

impl Node for Firewall {
    const NAME: &'static str = "firewall";
    const NEXT: &'static [NodeId] = &[
        NodeId::Nat,
        NodeId::Lb,
        NodeId::IpipEncap,
        NodeId::L2Rewrite,
    ];

    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, worker: &mut WorkerCtx) -> Verdict {
        let Some((id, dir)) = pkt.parsed.flow_ref.get() else {
            return Verdict::Drop(DropReason::NoFlow);
        };
        let icmp = icmp_of(pkt, dir);
        let Some(flow) = worker.flows.get_mut(id) else {
            return Verdict::Drop(DropReason::NoFlow);
        };
        let accept = decide(flow, ctx.tables, icmp);
        flow.firewall = FirewallVerdict {
            generation: ctx.tables.firewall_generation,
            accept,
        };
        if !accept {
            // Kept briefly, so its next packets are dropped at once, and never refreshed.
            flow.expires_ns = ctx
                .now_ns
                .saturating_add(DENIED_FLOW_NS.min(ctx.config.flow_timeouts.default_ns));
            return Verdict::Drop(DropReason::FirewallDenied);
        }
        match flow.translation {
            Translation::None => go_on(pkt),
            Translation::Lb => Verdict::Next(NodeId::Lb),
            _ => Verdict::Next(NodeId::Nat),
        }
    }
}

/// The ICMP type and code the rules match: the packet's when it travels the original
/// direction, else the echo request an ICMP flow (keyed by its identifier) began with.
fn icmp_of(pkt: &mut PacketBuf, dir: Direction) -> Option<(u8, u8)> {
    let key = *pkt.flow();
    if !matches!(key.proto, IpProtocol::ICMP | IpProtocol::ICMPV6) {
        return None;
    }
    let l4 = usize::from(pkt.parsed.l4_offset);
    let header = pkt.data().get(l4..l4 + 2);
    match (dir, header) {
        (Direction::Original, Some(&[t, c])) => Some((t, c)),
        _ => Some((if key.is_v6 { 128 } else { 8 }, 0)),
    }
}

/// Whether the flow passes the rules of both its VM ends.
pub(crate) fn decide(flow: &Flow, tables: &Snapshot, icmp: Option<(u8, u8)>) -> bool {
    let [from, to] = flow.ports;
    // As the sending VM sent it, and as the receiving VM receives it.
    let sent = flow.original.flow_key();
    // A balanced flow reaches its target as it was sent (its reply key holds the target).
    let received = if flow.translation == Translation::Lb {
        sent
    } else {
        flow.reply.reversed().flow_key()
    };
    let passes = |port, direction, key| {
        if port == NO_PORT {
            return true;
        }
        match tables.iface(port) {
            Some(iface) => {
                let m = FlowMatch { key: &key, icmp };
                iface.services.firewall.decide(direction, &m) == FirewallAction::Accept
            }
            // The end's interface is gone: nothing to deliver to or send for.
            None => false,
        }
    };
    passes(from, TrafficDirection::Egress, sent) && passes(to, TrafficDirection::Ingress, received)
}
