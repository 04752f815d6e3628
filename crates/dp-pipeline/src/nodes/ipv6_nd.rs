//! Neighbor discovery for the gateway fe80::1: a neighbor solicitation for it gets a neighbor
//! advertisement, a router solicitation gets a router advertisement. Other ND messages are dropped
//! (a neighbor advertisement for the interface's own address — the answer to a
//! [`VmProbe`](super::VmProbe), which sets the VM's MAC — as `vm_na_consumed`). A solicitation for
//! the gateway sets the VM's MAC too (as dpservice's), a router solicitation does not.
//!
//! As dpservice's `ipv6_nd_node`:
//! * nothing is answered unless the IPv6 overlay is enabled;
//! * only solicitations whose target is fe80::1 are answered (a VM's duplicate address detection for
//!   its own address must stay unanswered);
//! * the NA carries R, S and O flags and a target link-layer address option with our MAC on the port;
//! * the RA says: current hop limit 255, M and O set (addresses and DNS by DHCPv6), router lifetime
//!   65535 s, reachable time and retransmission timer 0, a source link-layer address option, and no
//!   prefix information or MTU option (the VM's address comes from DHCPv6 only).
//!
//! Replies go from fe80::1 to the solicitor, or to ff02::1 when it had no address yet (then the NA's S
//! flag is clear, RFC 4861 §7.2.4, where dpservice sets it anyway). Unlike dpservice, which rewrites
//! the request's bytes and so can leave stray options behind, the reply is written from scratch.
//! Messages are validated as RFC 4861 §6.1.1 / §7.1.1 require: hop limit 255, code 0, ICMPv6
//! checksum, well-formed options, and for an unspecified source no link-layer option (and, for an
//! NS, a solicited-node destination).

use dp_packet::ipv6::{is_solicited_node, multicast_mac, ALL_NODES};
use dp_packet::{
    Error, EtherType, EthernetFrame, EthernetRepr, Icmpv6Packet, Icmpv6Repr, IpProtocol,
    Ipv6Packet, Ipv6Repr, MacAddr, NdiscRepr,
};

use crate::buffer::PacketBuf;
use crate::config::GATEWAY_IPV6;
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{Ctx, Node, Verdict};
use crate::worker_ctx::WorkerCtx;

use super::common::{vm_port, ETH_HEADER_LEN, IPV6_HEADER_LEN};

/// RFC 4861: ND messages are sent, and must arrive, with hop limit 255 (proof they are on-link).
const ND_HOP_LIMIT: u8 = 255;
/// Router advertisement fields, as dpservice sends them.
const RA_CUR_HOP_LIMIT: u8 = 255;
const RA_ROUTER_LIFETIME: u16 = 0xffff;

#[derive(Debug, Default)]
pub struct Ipv6Nd;

impl Node for Ipv6Nd {
    const NAME: &'static str = "ipv6_nd";
    const NEXT: &'static [NodeId] = &[];
    const TRANSMITS: bool = true;

    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, _worker: &mut WorkerCtx) -> Verdict {
        crate::offload::settle(pkt); // an answer goes back without the request's offload
        match answer(pkt, ctx) {
            Ok(()) => Verdict::Tx(pkt.meta.in_port),
            Err(reason) => Verdict::Drop(reason),
        }
    }
}

fn answer(pkt: &mut PacketBuf, ctx: &Ctx<'_>) -> Result<(), DropReason> {
    let (port, iface) = vm_port(ctx, pkt.meta.in_port)?;
    if !ctx.config.ipv6_overlay {
        return Err(DropReason::Ipv6OverlayDisabled);
    }
    let frame = EthernetFrame::new_checked(pkt.data()).map_err(|_| DropReason::EthTruncated)?;
    let vm_mac = frame.src_addr();
    let ip = Ipv6Packet::new_checked(frame.payload()).map_err(|_| DropReason::Ipv6Malformed)?;
    if ip.next_header() != IpProtocol::ICMPV6 {
        return Err(DropReason::NdUnhandled);
    }
    let src = ip.src_addr();
    let dst = ip.dst_addr();
    let icmp = Icmpv6Packet::new_checked(ip.payload()).map_err(|_| DropReason::NdMalformed)?;
    if ip.hop_limit() != ND_HOP_LIMIT {
        return Err(DropReason::NdMalformed);
    }
    // Checksum, then the message (dp-packet's one ICMPv6 parser).
    let request = match Icmpv6Repr::parse(&src, &dst, &icmp) {
        Ok(Icmpv6Repr::Ndisc(msg)) => msg,
        Ok(_) | Err(Error::Unsupported) => return Err(DropReason::NdUnhandled),
        Err(Error::Checksum) => return Err(DropReason::L4BadChecksum),
        Err(_) => return Err(DropReason::NdMalformed),
    };

    let unspecified_src = src.is_unspecified();
    let reply = match request {
        NdiscRepr::RouterSolicit { source_lladdr } => {
            if unspecified_src && source_lladdr.is_some() {
                return Err(DropReason::NdMalformed);
            }
            NdiscRepr::RouterAdvert {
                cur_hop_limit: RA_CUR_HOP_LIMIT,
                managed: true,
                other: true,
                router_lifetime: RA_ROUTER_LIFETIME,
                reachable_time: 0,
                retrans_timer: 0,
                source_lladdr: Some(port.own_mac),
                mtu: None,
                prefix_info: None,
            }
        }
        NdiscRepr::NeighborSolicit {
            target_addr,
            source_lladdr,
        } => {
            if unspecified_src && (source_lladdr.is_some() || !is_solicited_node(&dst)) {
                return Err(DropReason::NdMalformed);
            }
            if target_addr != GATEWAY_IPV6 {
                return Err(DropReason::NdNotForGateway);
            }
            // As dpservice: a solicitation for the gateway names the VM's MAC.
            port.learn_peer_mac(vm_mac);
            NdiscRepr::NeighborAdvert {
                router: true,
                solicited: !unspecified_src,
                override_: true,
                target_addr: GATEWAY_IPV6,
                target_lladdr: Some(port.own_mac),
            }
        }
        NdiscRepr::NeighborAdvert { target_addr, .. }
            if target_addr == iface.ipv6 && !target_addr.is_unspecified() =>
        {
            port.learn_peer_mac(vm_mac);
            return Err(DropReason::VmNaConsumed);
        }
        NdiscRepr::RouterAdvert { .. } | NdiscRepr::NeighborAdvert { .. } => {
            return Err(DropReason::NdUnhandled);
        }
    };

    let (reply_dst, reply_mac) = if unspecified_src {
        (ALL_NODES, multicast_mac(&ALL_NODES))
    } else {
        (src, vm_mac)
    };
    emit(pkt, &reply, port.own_mac, reply_mac, reply_dst)
}

fn emit(
    pkt: &mut PacketBuf,
    reply: &NdiscRepr,
    own_mac: MacAddr,
    dst_mac: MacAddr,
    dst: dp_packet::Ipv6Addr,
) -> Result<(), DropReason> {
    let icmp_len = reply.buffer_len();
    let icmp_at = ETH_HEADER_LEN + IPV6_HEADER_LEN;
    pkt.set_len(icmp_at + icmp_len)
        .map_err(|_| DropReason::NoRoom)?;
    let frame = pkt.data_mut();
    EthernetRepr {
        src_addr: own_mac,
        dst_addr: dst_mac,
        ethertype: EtherType::IPV6,
    }
    .emit_into(frame)
    .map_err(|_| DropReason::NoRoom)?;
    let l3 = frame.get_mut(ETH_HEADER_LEN..).ok_or(DropReason::NoRoom)?;
    Ipv6Repr::new(
        GATEWAY_IPV6,
        dst,
        IpProtocol::ICMPV6,
        icmp_len,
        ND_HOP_LIMIT,
    )
    .emit_into(l3)
    .map_err(|_| DropReason::NoRoom)?;
    let msg = frame.get_mut(icmp_at..).ok_or(DropReason::NoRoom)?;
    reply
        .emit_into(msg, &GATEWAY_IPV6, &dst)
        .map_err(|_| DropReason::NoRoom)?;
    Ok(())
}
