//! Answers echo requests to the gateway (169.254.0.1, fe80::1), so `ping` to the default gateway
//! works inside a VM. Everything else addressed to the gateway is dropped and counted.
//!
//! dpservice has no such node (its gateway does not answer pings). The lookup nodes have already
//! validated the IP header and the source; here the ICMP message is checked in full (length, code,
//! checksum) before it is turned around in place: addresses swapped, TTL/hop limit reset to 64,
//! type changed and the checksum patched incrementally (RFC 1624), Ethernet back to the VM.

use dp_packet::checksum;
use dp_packet::icmpv4::Icmpv4Type;
use dp_packet::icmpv6::Icmpv6Type;
use dp_packet::{
    Error, EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet,
    IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
};

use crate::buffer::PacketBuf;
use crate::config::{GATEWAY_IPV4, GATEWAY_IPV6};
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{Ctx, Node, Verdict};
use crate::worker_ctx::WorkerCtx;

use super::common::{vm_port, ETH_HEADER_LEN, IPV4_HEADER_LEN, IPV6_HEADER_LEN, REPLY_TTL};

#[derive(Debug, Default)]
pub struct GatewayIcmp;

impl Node for GatewayIcmp {
    const NAME: &'static str = "gateway_icmp";
    const NEXT: &'static [NodeId] = &[];
    const TRANSMITS: bool = true;

    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, _worker: &mut WorkerCtx) -> Verdict {
        crate::offload::settle(pkt); // an answer goes back without the request's offload
        let result = match EthernetFrame::new_unchecked(pkt.data()).ethertype() {
            EtherType::IPV4 => echo_v4(pkt, ctx),
            EtherType::IPV6 => echo_v6(pkt, ctx),
            _ => Err(DropReason::UnknownEthertype),
        };
        match result {
            Ok(()) => Verdict::Tx(pkt.meta.in_port),
            Err(reason) => Verdict::Drop(reason),
        }
    }
}

fn echo_v4(pkt: &mut PacketBuf, ctx: &Ctx<'_>) -> Result<(), DropReason> {
    let (port, _) = vm_port(ctx, pkt.meta.in_port)?;
    let frame = EthernetFrame::new_checked(pkt.data()).map_err(|_| DropReason::EthTruncated)?;
    let vm_mac = frame.src_addr();
    let ip = Ipv4Packet::new_checked(frame.payload()).map_err(|_| DropReason::Ipv4Malformed)?;
    if ip.is_fragment() {
        return Err(DropReason::Ipv4Fragment);
    }
    if ip.protocol() != IpProtocol::ICMP {
        return Err(DropReason::GatewayNotIcmp);
    }
    let src = ip.src_addr();
    let header_len = ip.header_len();
    let icmp = Icmpv4Packet::new_checked(ip.payload()).map_err(|_| DropReason::L4Malformed)?;
    // Checksum, then the message (dp-packet's one ICMP parser): only an echo request is answered.
    match Icmpv4Repr::parse(&icmp) {
        Ok(Icmpv4Repr::EchoRequest { .. }) => {}
        Err(Error::Checksum) => return Err(DropReason::L4BadChecksum),
        Ok(_) | Err(_) => return Err(DropReason::IcmpUnhandled),
    }
    let icmp_len = ip.payload().len();
    let old_check = icmp.checksum();

    // The reply has a plain 20-byte header: IP options of the request are not echoed.
    let icmp_at = ETH_HEADER_LEN + header_len;
    let reply_icmp_at = ETH_HEADER_LEN + IPV4_HEADER_LEN;
    let data = pkt.data_mut();
    if icmp_at + icmp_len > data.len() {
        return Err(DropReason::Ipv4Malformed);
    }
    data.copy_within(icmp_at..icmp_at + icmp_len, reply_icmp_at);
    pkt.truncate(reply_icmp_at + icmp_len);
    let frame = pkt.data_mut();
    EthernetRepr {
        src_addr: port.own_mac,
        dst_addr: vm_mac,
        ethertype: EtherType::IPV4,
    }
    .emit_into(frame)
    .map_err(|_| DropReason::NoRoom)?;
    let l3 = frame.get_mut(ETH_HEADER_LEN..).ok_or(DropReason::NoRoom)?;
    Ipv4Repr::new(GATEWAY_IPV4, src, IpProtocol::ICMP, icmp_len, REPLY_TTL)
        .emit_into(l3)
        .map_err(|_| DropReason::NoRoom)?;
    let msg = frame.get_mut(reply_icmp_at..).ok_or(DropReason::NoRoom)?;
    let mut icmp = Icmpv4Packet::new_unchecked(msg);
    icmp.set_msg_type(Icmpv4Type::ECHO_REPLY);
    icmp.set_checksum(checksum::update_u16(
        old_check,
        u16::from(Icmpv4Type::ECHO_REQUEST.0) << 8,
        u16::from(Icmpv4Type::ECHO_REPLY.0) << 8,
    ));
    Ok(())
}

fn echo_v6(pkt: &mut PacketBuf, ctx: &Ctx<'_>) -> Result<(), DropReason> {
    let (port, _) = vm_port(ctx, pkt.meta.in_port)?;
    let frame = EthernetFrame::new_checked(pkt.data()).map_err(|_| DropReason::EthTruncated)?;
    let vm_mac = frame.src_addr();
    let ip = Ipv6Packet::new_checked(frame.payload()).map_err(|_| DropReason::Ipv6Malformed)?;
    if ip.next_header() != IpProtocol::ICMPV6 {
        return Err(DropReason::GatewayNotIcmp);
    }
    let src = ip.src_addr();
    let dst = ip.dst_addr();
    let icmp = Icmpv6Packet::new_checked(ip.payload()).map_err(|_| DropReason::L4Malformed)?;
    if !icmp.verify_checksum(&src, &dst) {
        return Err(DropReason::L4BadChecksum);
    }
    if icmp.msg_type() != Icmpv6Type::ECHO_REQUEST || icmp.msg_code() != 0 {
        return Err(DropReason::IcmpUnhandled);
    }
    let icmp_len = ip.payload().len();
    let old_check = icmp.checksum();

    let icmp_at = ETH_HEADER_LEN + IPV6_HEADER_LEN;
    pkt.truncate(icmp_at + icmp_len);
    let frame = pkt.data_mut();
    EthernetRepr {
        src_addr: port.own_mac,
        dst_addr: vm_mac,
        ethertype: EtherType::IPV6,
    }
    .emit_into(frame)
    .map_err(|_| DropReason::NoRoom)?;
    let l3 = frame.get_mut(ETH_HEADER_LEN..).ok_or(DropReason::NoRoom)?;
    Ipv6Repr::new(GATEWAY_IPV6, src, IpProtocol::ICMPV6, icmp_len, REPLY_TTL)
        .emit_into(l3)
        .map_err(|_| DropReason::NoRoom)?;
    let msg = frame.get_mut(icmp_at..).ok_or(DropReason::NoRoom)?;
    let mut icmp = Icmpv6Packet::new_unchecked(msg);
    icmp.set_msg_type(Icmpv6Type::ECHO_REPLY);
    // The pseudo header is unchanged: the request went to fe80::1, the reply comes from it.
    icmp.set_checksum(checksum::update_u16(
        old_check,
        u16::from(Icmpv6Type::ECHO_REQUEST.0) << 8,
        u16::from(Icmpv6Type::ECHO_REPLY.0) << 8,
    ));
    Ok(())
}
