//! Load balancing: packets from the underlay for a load balancer (its underlay address, a VIP of
//! its VNI as inner destination) are sent on, unchanged inside, to one of its targets — an
//! underlay address of a target prefix, on another hypervisor (encapsulated again towards it,
//! as dpservice's `lb` node does) or on this one (delivered to the VM at once, where dpservice
//! recirculates the packet).
//!
//! * **Target choice.** A new flow on a protocol/port the balancer serves gets the target its
//!   Maglev table gives for the flow's hash ([`balance`], called by
//!   [`Conntrack`](super::Conntrack) when it makes the flow); the target is kept in the flow's
//!   reply key (`dp_tables::lb`) for the flow's life. The hash is the flow key's, the same on
//!   every host, so every balancer host with the same targets picks the same target for a flow.
//! * **Target changes.** A flow's target is checked again when the balancers' generation
//!   changed (`Flow::lb_stamp`): a flow whose target is still there stays on it; one whose target
//!   was removed is made again on the target Maglev now gives ([`rebalance`]). The sweep removes
//!   such flows as well ([`target_still_valid`]). So removing a target moves only its flows.
//! * **ICMP.** An echo request to the balancer is answered (back to the request's outer source).
//!   An error about a flow (e.g. "fragmentation needed" from a client's router) goes to the
//!   flow's target: found in the flow table, or, if this host never saw the flow, chosen by
//!   Maglev for the flow the error quotes — which is the target that flow has everywhere.
//!   Nothing else of ICMP is balanced (`lb_port_closed`).
//!
//! The target answers the client itself (its target prefix lets it send from the balancer's
//! address): a remote target's answers never come here; a local target's are the flow's reply
//! direction and routed as the lookup decided (never translated, even if the VM has a NAT).

use dp_packet::nat::{is_icmpv4_error, is_icmpv6_error};
use dp_packet::{IpProtocol, Ipv6Addr};
use dp_tables::lb::{lb_reply_key, lb_stamp, lb_target_of};
use dp_tables::{
    Direction, FirewallVerdict, Flow, FlowId, FlowTable, InsertError, LoadBalancer, PortId,
    Snapshot, Translation, UnderlayTarget, Vni, NO_PORT,
};

use crate::buffer::{FlowRef, PacketBuf};
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{Ctx, Node, Verdict};
use crate::worker_ctx::WorkerCtx;

use super::common::answer_echo;
use super::conntrack::icmp_error_key;

#[derive(Debug, Default)]
pub struct Lb;

impl Node for Lb {
    const NAME: &'static str = "lb";
    const NEXT: &'static [NodeId] = &[NodeId::IpipEncap, NodeId::L2Rewrite];

    #[inline]
    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, worker: &mut WorkerCtx) -> Verdict {
        match pkt.parsed.flow_ref.get() {
            Some((id, Direction::Original)) => forward(pkt, id, ctx, worker),
            // A local target's answer: routed as the lookup decided.
            Some((_, Direction::Reply)) => super::conntrack::go_on(pkt),
            None => icmp_without_flow(pkt, ctx),
        }
    }
}

/// Makes `flow` (a new flow to `lb`, its original key set) a balanced one: its target chosen,
/// kept in its reply key, and the target's VM port if the target is on this host.
pub(crate) fn balance(
    flow: &mut Flow,
    lb: &LoadBalancer,
    ctx: &Ctx<'_>,
    flows: &FlowTable,
) -> Result<(), DropReason> {
    let key = flow.original;
    if !lb.serves(key.proto, key.dst_port) {
        return Err(DropReason::LbPortClosed);
    }
    let target = lb.pick(key.hash()).ok_or(DropReason::LbNoTarget)?;
    let port = local_port(ctx.tables, target, key.vni);
    flow.translation = Translation::Lb;
    // A local target's VM answers through this host: its replies are the flow's — unless
    // another flow has that reply already (a client of this host whose NAT'd flow came back
    // through the router: its answer is that flow's reply, translated back to it). A remote
    // target's never come here, and the reply key holds the target instead.
    let reversed = key.reversed();
    flow.reply = if port == NO_PORT || flows.contains(&reversed) {
        lb_reply_key(&key, target)
    } else {
        reversed
    };
    flow.ports[1] = port;
    flow.lb_stamp = lb_stamp(ctx.tables.lb_generation);
    Ok(())
}

/// Whether a balanced flow's balancer still exists and still has the flow's target (for a
/// local target: a target that is this VM's).
pub(crate) fn target_still_valid(flow: &Flow, tables: &Snapshot) -> bool {
    let Some(lb) = tables.load_balancer_of(&flow.original) else {
        return false;
    };
    match flow.ports[1] {
        NO_PORT => lb.has_target(lb_target_of(&flow.reply)),
        port => lb
            .targets
            .iter()
            .any(|&t| local_port(tables, t, flow.original.vni) == port),
    }
}

/// The VM port behind a target that is a target prefix of this host in the flow's VNI, else
/// [`NO_PORT`] (a target elsewhere, reached through the underlay).
fn local_port(tables: &Snapshot, target: Ipv6Addr, vni: Vni) -> PortId {
    match tables.underlay_target(target) {
        Some(UnderlayTarget::Iface { port, vni: v })
            if v == vni && tables.iface(port).is_some() =>
        {
            port
        }
        _ => NO_PORT,
    }
}

/// A packet of a balanced flow: to the flow's target, checked first if the balancers changed.
#[inline]
fn forward(pkt: &mut PacketBuf, id: FlowId, ctx: &Ctx<'_>, worker: &mut WorkerCtx) -> Verdict {
    let stamp = lb_stamp(ctx.tables.lb_generation);
    let Some(flow) = worker.flows.get_mut(id) else {
        return Verdict::Drop(DropReason::NoFlow);
    };
    if flow.lb_stamp != stamp {
        if !target_still_valid(flow, ctx.tables) {
            return rebalance(pkt, id, ctx, worker);
        }
        flow.lb_stamp = stamp;
    }
    send(pkt, lb_target_of(&flow.reply), flow.ports[1])
}

/// Sends a packet to a target: into the VM at `port`, or through the underlay.
#[inline]
fn send(pkt: &mut PacketBuf, target: Ipv6Addr, port: PortId) -> Verdict {
    if port != NO_PORT {
        pkt.meta.out_port = port;
        pkt.meta.underlay_dst = Ipv6Addr::UNSPECIFIED;
        Verdict::Next(NodeId::L2Rewrite)
    } else {
        pkt.meta.underlay_dst = target;
        Verdict::Next(NodeId::IpipEncap)
    }
}

/// The flow's target was removed: the flow is made again on the target the balancer gives it
/// now (its TCP state and expiry kept), decided by the firewall of a local target here.
#[cold]
#[inline(never)]
fn rebalance(pkt: &mut PacketBuf, id: FlowId, ctx: &Ctx<'_>, worker: &mut WorkerCtx) -> Verdict {
    let Some(old) = worker.flows.close(id) else {
        return Verdict::Drop(DropReason::NoFlow);
    };
    pkt.parsed.flow_ref = FlowRef::NONE;
    let key = old.original;
    let Some(lb) = ctx.tables.load_balancer_of(&key) else {
        return Verdict::Drop(DropReason::LbNoBalancer);
    };
    let mut flow = Flow::new(key, key.reversed(), old.expires_ns);
    flow.tcp = old.tcp;
    flow.ports[0] = old.ports[0];
    if let Err(reason) = balance(&mut flow, lb, ctx, &worker.flows) {
        return Verdict::Drop(reason);
    }
    let accept = super::firewall::decide(&flow, ctx.tables, None);
    flow.firewall = FirewallVerdict {
        generation: ctx.tables.firewall_generation,
        accept,
    };
    let (target, port) = (lb_target_of(&flow.reply), flow.ports[1]);
    match worker.flows.insert(flow) {
        Ok(id) => pkt.parsed.flow_ref = FlowRef::new(id, Direction::Original),
        Err(InsertError::Full) => return Verdict::Drop(DropReason::FlowTableFull),
        Err(InsertError::KeyInUse) => return Verdict::Drop(DropReason::FlowKeyInUse),
    }
    if !accept {
        return Verdict::Drop(DropReason::FirewallDenied);
    }
    send(pkt, target, port)
}

/// ICMP for a balancer that is no flow's: an echo request is answered, an error about a flow
/// goes to the target Maglev gives that flow.
#[cold]
#[inline(never)]
fn icmp_without_flow(pkt: &mut PacketBuf, ctx: &Ctx<'_>) -> Verdict {
    let l4 = usize::from(pkt.parsed.l4_offset);
    let Some(&msg_type) = pkt.data().get(l4) else {
        return Verdict::Drop(DropReason::LbPortClosed);
    };
    let is_error = match pkt.flow().proto {
        IpProtocol::ICMP => is_icmpv4_error(msg_type),
        IpProtocol::ICMPV6 => is_icmpv6_error(msg_type),
        _ => return Verdict::Drop(DropReason::LbPortClosed),
    };
    if !is_error {
        // `underlay_dst` is the request's outer source (IpipDecap).
        return if answer_echo(pkt) {
            Verdict::Next(NodeId::IpipEncap)
        } else {
            Verdict::Drop(DropReason::LbPortClosed)
        };
    }
    let vni = pkt.parsed.vni;
    // The quoted packet (target → client) reversed: the flow's original key.
    let Some(flow_key) = icmp_error_key(pkt, vni) else {
        return Verdict::Drop(DropReason::IcmpErrorNoFlow);
    };
    let Some(lb) = ctx.tables.load_balancer_of(&flow_key) else {
        return Verdict::Drop(DropReason::IcmpErrorNoFlow);
    };
    if !lb.serves(flow_key.proto, flow_key.dst_port) {
        return Verdict::Drop(DropReason::LbPortClosed);
    }
    let Some(target) = lb.pick(flow_key.hash()) else {
        return Verdict::Drop(DropReason::LbNoTarget);
    };
    send(pkt, target, local_port(ctx.tables, target, vni))
}
