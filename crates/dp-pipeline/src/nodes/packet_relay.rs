//! Neighbor NAT: a packet from the underlay for one of our NAT addresses that is no flow's reply
//! here may belong to a port range of the same address used on another hypervisor
//! (CreateNeighborNat); it is relayed there through the underlay, unchanged inside, encapsulated
//! again towards that hypervisor's underlay address (dpservice's `packet_relay` node). An ICMP
//! echo request to the NAT address is answered, as dpservice's `packet_relay` does: the echo
//! reply (addresses swapped, type 0, checksum patched, TTL kept) goes back encapsulated to the
//! request's outer source, from the host's underlay address. Anything else for a NAT address is
//! dropped (`nat_no_flow`): a NAT never accepts a flow from outside.
//!
//! Stateless: every packet of a relayed flow is looked up in the snapshot's neighbor ranges
//! (few per address), so relaying needs no flow-table entry and survives a restart.

use dp_packet::{IpProtocol, Ipv4Addr};

use crate::buffer::{Origin, PacketBuf};
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{Ctx, Node, Verdict};
use crate::worker_ctx::WorkerCtx;

use super::common::answer_echo;

#[derive(Debug, Default)]
pub struct PacketRelay;

impl Node for PacketRelay {
    const NAME: &'static str = "packet_relay";
    const NEXT: &'static [NodeId] = &[NodeId::IpipEncap];

    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, _worker: &mut WorkerCtx) -> Verdict {
        if pkt.meta.origin != Origin::UnderlayNat {
            return Verdict::Drop(DropReason::NatNoFlow);
        }
        let key = *pkt.flow();
        if !key.is_v6 && key.proto == IpProtocol::ICMP && answer_echo(pkt) {
            // `underlay_dst` is the request's outer source (IpipDecap).
            return Verdict::Next(NodeId::IpipEncap);
        }
        let has_port = matches!(key.proto, IpProtocol::TCP | IpProtocol::UDP)
            || (key.proto == IpProtocol::ICMP && key.dst_port != 0);
        if key.is_v6 || !has_port {
            return Verdict::Drop(DropReason::NatNoFlow);
        }
        let nat_ip = Ipv4Addr::from(key.dst as u32);
        match ctx
            .tables
            .neighbor_nat(pkt.parsed.vni, nat_ip, key.dst_port)
        {
            Some(neighbor) => {
                pkt.meta.underlay_dst = neighbor.underlay;
                Verdict::Next(NodeId::IpipEncap)
            }
            None => Verdict::Drop(DropReason::NatNoFlow),
        }
    }
}
