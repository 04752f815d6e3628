//! ICMP errors from the gateway, built in place over the packet that caused them: "time exceeded"
//! for a packet whose TTL/hop limit runs out, and "fragmentation needed" / "packet too big" for a
//! packet that no longer fits the underlay once encapsulated (path-MTU discovery).
//!
//! dpservice never decrements the TTL (VM to VM looks like one L2 segment there), so it never sends
//! time-exceeded errors; this dataplane routes like a router (TTL/hop limit decremented), and answers
//! an expiring packet so that `traceroute` from a VM shows the gateway as the first hop instead of a
//! silent drop. dpservice leaves the MTU to the NIC; here the encapsulation node checks it and
//! answers as a router on the path would (RFC 1191, RFC 8201), so the VM's TCP lowers its segment
//! size instead of seeing its large packets vanish.
//!
//! The error comes from the gateway (169.254.0.1, fe80::1) — the VM's first hop, and an address its
//! kernel accepts errors from (Linux matches an error to a socket by the quoted header, whatever the
//! error's source) — and goes back out of the port the packet came from, to the VM's MAC; the quoted
//! datagram is moved forward in the buffer, nothing is allocated.

use dp_packet::icmpv4::{self, Icmpv4Type};
use dp_packet::icmpv6::{self, Icmpv6Type};
use dp_packet::{
    EtherType, EthernetRepr, Icmpv4Packet, Icmpv6Packet, IpProtocol, Ipv4Addr, Ipv4Repr, Ipv6Addr,
    Ipv6Repr, MacAddr,
};

use crate::buffer::PacketBuf;
use crate::config::{GATEWAY_IPV4, GATEWAY_IPV6};
use crate::drop::DropReason;

use super::common::{ETH_HEADER_LEN, IPV4_HEADER_LEN, IPV6_HEADER_LEN, REPLY_TTL};

/// RFC 1812 §4.3.2.3: quote as much as fits in a 576-byte datagram.
const ICMPV4_MAX_QUOTE: usize = 576 - IPV4_HEADER_LEN - icmpv4::HEADER_LEN;
/// RFC 4443 §2.4(c): as much as fits in the minimum IPv6 MTU.
const ICMPV6_MAX_QUOTE: usize = 1280 - IPV6_HEADER_LEN - icmpv6::HEADER_LEN;

/// What the offending IPv4 packet looked like (read before the buffer is rewritten).
pub(crate) struct Offender4 {
    /// The VM's MAC (the frame's source).
    pub vm_mac: MacAddr,
    /// Our MAC on the VM's port.
    pub own_mac: MacAddr,
    pub src: Ipv4Addr,
    /// Length of the datagram (IPv4 total length), which starts right after the Ethernet header.
    pub datagram_len: usize,
}

/// Turns the frame into an ICMP time exceeded (TTL exceeded in transit) for the VM.
pub(crate) fn time_exceeded_v4(pkt: &mut PacketBuf, off: &Offender4) -> Result<(), DropReason> {
    error_v4(
        pkt,
        off,
        Icmpv4Type::TIME_EXCEEDED,
        icmpv4::code::TTL_EXCEEDED,
        0,
    )
}

/// Turns the frame into an ICMP destination unreachable / fragmentation needed and DF set, with
/// the next-hop MTU (RFC 1191), for the VM.
pub(crate) fn frag_needed_v4(
    pkt: &mut PacketBuf,
    off: &Offender4,
    mtu: u16,
) -> Result<(), DropReason> {
    error_v4(
        pkt,
        off,
        Icmpv4Type::DEST_UNREACHABLE,
        icmpv4::code::FRAG_NEEDED,
        u32::from(mtu),
    )
}

fn error_v4(
    pkt: &mut PacketBuf,
    off: &Offender4,
    ty: Icmpv4Type,
    code: u8,
    rest: u32,
) -> Result<(), DropReason> {
    crate::offload::settle(pkt);
    let quote = off.datagram_len.min(ICMPV4_MAX_QUOTE);
    let icmp_at = ETH_HEADER_LEN + IPV4_HEADER_LEN;
    let quote_at = icmp_at + icmpv4::HEADER_LEN;
    pkt.set_len(quote_at + quote)
        .map_err(|_| DropReason::NoRoom)?;
    let frame = pkt.data_mut();
    if quote_at + quote > frame.len() {
        return Err(DropReason::NoRoom);
    }
    frame.copy_within(ETH_HEADER_LEN..ETH_HEADER_LEN + quote, quote_at);
    EthernetRepr {
        src_addr: off.own_mac,
        dst_addr: off.vm_mac,
        ethertype: EtherType::IPV4,
    }
    .emit_into(frame)
    .map_err(|_| DropReason::NoRoom)?;
    let l3 = frame.get_mut(ETH_HEADER_LEN..).ok_or(DropReason::NoRoom)?;
    Ipv4Repr::new(
        GATEWAY_IPV4,
        off.src,
        IpProtocol::ICMP,
        icmpv4::HEADER_LEN + quote,
        REPLY_TTL,
    )
    .emit_into(l3)
    .map_err(|_| DropReason::NoRoom)?;
    let msg = frame.get_mut(icmp_at..).ok_or(DropReason::NoRoom)?;
    let mut icmp = Icmpv4Packet::new_unchecked(msg);
    icmp.set_msg_type(ty);
    icmp.set_msg_code(code);
    icmp.set_rest_of_header(rest);
    icmp.fill_checksum();
    Ok(())
}

/// Whether an ICMPv4 type is an error (RFC 1812 §4.3.2.7: no error about an error).
pub(crate) fn is_icmpv4_error(ty: u8) -> bool {
    // Destination unreachable, source quench, redirect, time exceeded, parameter problem.
    matches!(ty, 3 | 4 | 5 | 11 | 12)
}

/// What the offending IPv6 packet looked like.
pub(crate) struct Offender6 {
    pub vm_mac: MacAddr,
    pub own_mac: MacAddr,
    pub src: Ipv6Addr,
    /// Length of the packet (header + payload length), right after the Ethernet header.
    pub packet_len: usize,
}

/// Turns the frame into an ICMPv6 time exceeded (hop limit exceeded in transit) for the VM.
pub(crate) fn time_exceeded_v6(pkt: &mut PacketBuf, off: &Offender6) -> Result<(), DropReason> {
    error_v6(
        pkt,
        off,
        Icmpv6Type::TIME_EXCEEDED,
        icmpv6::code::HOP_LIMIT_EXCEEDED,
        0,
    )
}

/// Turns the frame into an ICMPv6 packet too big with the MTU (RFC 4443 §3.2), for the VM.
pub(crate) fn packet_too_big_v6(
    pkt: &mut PacketBuf,
    off: &Offender6,
    mtu: u32,
) -> Result<(), DropReason> {
    error_v6(pkt, off, Icmpv6Type::PACKET_TOO_BIG, 0, mtu)
}

fn error_v6(
    pkt: &mut PacketBuf,
    off: &Offender6,
    ty: Icmpv6Type,
    code: u8,
    rest: u32,
) -> Result<(), DropReason> {
    crate::offload::settle(pkt);
    let quote = off.packet_len.min(ICMPV6_MAX_QUOTE);
    let icmp_at = ETH_HEADER_LEN + IPV6_HEADER_LEN;
    let quote_at = icmp_at + icmpv6::HEADER_LEN;
    pkt.set_len(quote_at + quote)
        .map_err(|_| DropReason::NoRoom)?;
    let frame = pkt.data_mut();
    if quote_at + quote > frame.len() {
        return Err(DropReason::NoRoom);
    }
    frame.copy_within(ETH_HEADER_LEN..ETH_HEADER_LEN + quote, quote_at);
    EthernetRepr {
        src_addr: off.own_mac,
        dst_addr: off.vm_mac,
        ethertype: EtherType::IPV6,
    }
    .emit_into(frame)
    .map_err(|_| DropReason::NoRoom)?;
    let l3 = frame.get_mut(ETH_HEADER_LEN..).ok_or(DropReason::NoRoom)?;
    Ipv6Repr::new(
        GATEWAY_IPV6,
        off.src,
        IpProtocol::ICMPV6,
        icmpv6::HEADER_LEN + quote,
        REPLY_TTL,
    )
    .emit_into(l3)
    .map_err(|_| DropReason::NoRoom)?;
    let msg = frame.get_mut(icmp_at..).ok_or(DropReason::NoRoom)?;
    let mut icmp = Icmpv6Packet::new_unchecked(msg);
    icmp.set_msg_type(ty);
    icmp.set_msg_code(code);
    icmp.set_rest_of_header(rest);
    icmp.fill_checksum(&GATEWAY_IPV6, &off.src);
    Ok(())
}
