//! Answers a VM's ARP requests for the gateway (169.254.0.1) with our MAC on its port.
//!
//! As dpservice's `arp_node`: only a *request* whose target is the gateway is answered, whatever the
//! sender IP (an RFC 5227 probe with sender 0.0.0.0 included); the reply is the request rewritten in
//! place and sent back out of the port it came from. Everything else (gratuitous ARP, requests for
//! other addresses, replies) is dropped and counted. As in dpservice, a reply to the gateway about the
//! interface's own address (the answer to a [`VmProbe`](super::VmProbe)) sets the VM's MAC to its
//! Ethernet source and is counted as `arp_reply_consumed`; any other as `arp_not_for_gateway`.
//! A request does not change the MAC (dpservice's does not either).

use dp_packet::arp::ETHERNET_IPV4_LEN;
use dp_packet::{ArpOperation, ArpPacket, ArpRepr, EthernetFrame, MacAddr};

use crate::buffer::PacketBuf;
use crate::config::GATEWAY_IPV4;
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{Ctx, Node, Verdict};
use crate::worker_ctx::WorkerCtx;

use super::common::{vm_port, ETH_HEADER_LEN};

#[derive(Debug, Default)]
pub struct Arp;

impl Node for Arp {
    const NAME: &'static str = "arp";
    const NEXT: &'static [NodeId] = &[];
    const TRANSMITS: bool = true;

    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, _worker: &mut WorkerCtx) -> Verdict {
        crate::offload::settle(pkt); // an answer goes back without the request's offload
        let in_port = pkt.meta.in_port;
        let (port, iface) = match vm_port(ctx, in_port) {
            Ok(found) => found,
            Err(reason) => return Verdict::Drop(reason),
        };
        let request = {
            let Some(l3) = pkt.data().get(ETH_HEADER_LEN..) else {
                return Verdict::Drop(DropReason::ArpMalformed);
            };
            let Ok(arp) = ArpPacket::new_checked(l3) else {
                return Verdict::Drop(DropReason::ArpMalformed);
            };
            match ArpRepr::parse(&arp) {
                Ok(repr) => repr,
                Err(_) => return Verdict::Drop(DropReason::ArpMalformed),
            }
        };
        if !is_host_mac(request.source_hardware_addr) {
            return Verdict::Drop(DropReason::ArpMalformed);
        }
        if request.operation == ArpOperation::REPLY
            && request.target_protocol_addr == GATEWAY_IPV4
            && request.source_protocol_addr == iface.ipv4
            && !iface.ipv4.is_unspecified()
        {
            let src = EthernetFrame::new_unchecked(pkt.data()).src_addr();
            if is_host_mac(src) {
                port.learn_peer_mac(src);
            }
            return Verdict::Drop(DropReason::ArpReplyConsumed);
        }
        if request.operation != ArpOperation::REQUEST
            || request.target_protocol_addr != GATEWAY_IPV4
        {
            return Verdict::Drop(DropReason::ArpNotForGateway);
        }

        let reply = ArpRepr {
            operation: ArpOperation::REPLY,
            source_hardware_addr: port.own_mac,
            source_protocol_addr: GATEWAY_IPV4,
            target_hardware_addr: request.source_hardware_addr,
            target_protocol_addr: request.source_protocol_addr,
        };
        // Short frames are padded by whoever sends them; the reply carries no padding of its own.
        pkt.truncate(ETH_HEADER_LEN + ETHERNET_IPV4_LEN);
        let mut frame = EthernetFrame::new_unchecked(pkt.data_mut());
        frame.set_dst_addr(request.source_hardware_addr);
        frame.set_src_addr(port.own_mac);
        if reply.emit_into(frame.payload_mut()).is_err() {
            return Verdict::Drop(DropReason::ArpMalformed);
        }
        Verdict::Tx(in_port)
    }
}

/// A MAC a host can have: unicast and not all zeros.
fn is_host_mac(mac: MacAddr) -> bool {
    mac.is_unicast() && !mac.is_zero()
}
