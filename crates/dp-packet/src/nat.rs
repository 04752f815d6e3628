//! In-place IPv4 NAT rewriting with incremental checksums (RFC 1624), and reading the packet an
//! ICMP error quotes (RFC 792 / RFC 4443) to find the flow it belongs to.
//!
//! The rewriting functions take `l3`, an IPv4 datagram starting at its header, already validated by
//! the caller; they check again what they rely on, and never panic or allocate. Every function
//! checks first and writes after: on `Err` the packet is unchanged. They patch, never recompute:
//! a checksum that was wrong before stays exactly as wrong after, so NAT does not launder corrupted
//! packets.
//!
//! * The IPv4 header checksum follows the address change.
//! * TCP and UDP checksums follow the address change (their pseudo header) and the port change. A
//!   UDP checksum of 0 means "none" over IPv4 and stays 0; a patched UDP checksum that comes out 0
//!   is written 0xffff (RFC 768).
//! * An ICMP echo request/reply has its identifier rewritten in place of a port; the ICMP checksum
//!   has no pseudo header, so only the identifier change counts.
//! * A non-first fragment (fragment offset ≠ 0) has no L4 header: only the IP header is rewritten.
//!   A first fragment (MF set, offset 0) carries the L4 header and is handled as a whole datagram
//!   (the transport checksum covers the reassembled datagram; the incremental patch is still right).
//! * Other protocols have only their IP header rewritten when no port is asked for (their own
//!   checksums, if any covers a pseudo header, are not patched); asking for a port there is
//!   `Unsupported`.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::bytes::{read_u16_be, read_u32_be, u8_at, write_u16_be, write_u32_be};
use crate::checksum::{update_u16, update_u32};
use crate::flow::{has_ports, FlowKey};
use crate::ip::IpProtocol;

/// Why a packet could not be rewritten or translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatError {
    /// The packet (or the output buffer) is shorter than a header or a length field needs.
    Truncated,
    /// Well-formed enough to read, but not something this module rewrites: another IP version or
    /// protocol, a fragment where none can be handled, an ICMP type without a translation, a port
    /// asked for where the packet has none, or a length field that contradicts the header.
    Unsupported,
}

impl core::fmt::Display for NatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            NatError::Truncated => "truncated packet",
            NatError::Unsupported => "packet not supported by NAT",
        })
    }
}

impl std::error::Error for NatError {}

/// ICMPv4 echo reply and request types.
pub(crate) const ICMPV4_ECHO_REPLY: u8 = 0;
pub(crate) const ICMPV4_ECHO_REQUEST: u8 = 8;
/// ICMPv6 echo request and reply types.
pub(crate) const ICMPV6_ECHO_REQUEST: u8 = 128;
pub(crate) const ICMPV6_ECHO_REPLY: u8 = 129;

/// ICMPv4 error types: destination unreachable, source quench, redirect, time exceeded, parameter
/// problem.
pub fn is_icmpv4_error(msg_type: u8) -> bool {
    matches!(msg_type, 3 | 4 | 5 | 11 | 12)
}

/// ICMPv6 error types handled here: destination unreachable, packet too big, time exceeded,
/// parameter problem.
pub fn is_icmpv6_error(msg_type: u8) -> bool {
    matches!(msg_type, 1..=4)
}

/// Offsets in an IPv4 header.
const V4_CHECKSUM: usize = 10;
const V4_SRC: usize = 12;
const V4_DST: usize = 16;
/// Offsets in an ICMP (v4 or v6) header.
const ICMP_CHECKSUM: usize = 2;
const ICMP_IDENT: usize = 4;
const ICMP_HEADER_LEN: usize = 8;
const TCP_CHECKSUM: usize = 16;
const UDP_CHECKSUM: usize = 6;

/// What [`v4_header`] reads of an IPv4 header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct V4Header {
    /// Header length (IHL × 4).
    pub header_len: usize,
    /// Total length: where the datagram ends in the buffer.
    pub total_len: usize,
    pub protocol: u8,
    /// More fragments set.
    pub more_frags: bool,
    /// Fragment offset nonzero: no L4 header.
    pub later_fragment: bool,
}

/// Reads and checks the IPv4 header at the start of `l3`: 20 bytes, version 4, IHL ≥ 5,
/// header ≤ total length ≤ buffer.
#[inline]
pub(crate) fn v4_header(l3: &[u8]) -> Result<V4Header, NatError> {
    let Some(h) = l3.first_chunk::<20>() else {
        return Err(NatError::Truncated);
    };
    if h[0] >> 4 != 4 {
        return Err(NatError::Unsupported);
    }
    let header_len = usize::from(h[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if header_len < 20 || total_len < header_len {
        return Err(NatError::Unsupported);
    }
    if total_len > l3.len() {
        return Err(NatError::Truncated);
    }
    let flags = u16::from_be_bytes([h[6], h[7]]);
    Ok(V4Header {
        header_len,
        total_len,
        protocol: h[9],
        more_frags: flags & 0x2000 != 0,
        later_fragment: flags & 0x1fff != 0,
    })
}

/// Where a port (or echo identifier) and the checksum covering it sit in an L4 header, relative to
/// the L4 start.
#[derive(Clone, Copy, Debug)]
struct L4Patch {
    /// Offset of the 16-bit field to replace, with its new value.
    port: Option<(usize, u16)>,
    /// Offset of the checksum.
    checksum_at: usize,
    /// The checksum covers the IP addresses (TCP, UDP).
    pseudo: bool,
    /// UDP rules: 0 means none and stays 0; a computed 0 is written 0xffff.
    udp: bool,
}

/// Plans the L4 part of a rewrite: `port_at` is the offset of the port to replace in TCP/UDP
/// (0 for the source, 2 for the destination). `None` when the L4 header is left alone.
#[inline]
fn plan_l4(
    protocol: u8,
    l4: &[u8],
    port_at: usize,
    new_port: Option<u16>,
) -> Result<Option<L4Patch>, NatError> {
    match IpProtocol(protocol) {
        IpProtocol::TCP => {
            if l4.len() < crate::tcp::HEADER_LEN {
                return Err(NatError::Truncated);
            }
            Ok(Some(L4Patch {
                port: new_port.map(|p| (port_at, p)),
                checksum_at: TCP_CHECKSUM,
                pseudo: true,
                udp: false,
            }))
        }
        IpProtocol::UDP => {
            if l4.len() < crate::udp::HEADER_LEN {
                return Err(NatError::Truncated);
            }
            Ok(Some(L4Patch {
                port: new_port.map(|p| (port_at, p)),
                checksum_at: UDP_CHECKSUM,
                pseudo: true,
                udp: true,
            }))
        }
        IpProtocol::ICMP => {
            let Some(port) = new_port else {
                // No pseudo header: an address change leaves the ICMP message alone.
                return Ok(None);
            };
            if l4.len() < ICMP_HEADER_LEN {
                return Err(NatError::Truncated);
            }
            if !matches!(u8_at(l4, 0), ICMPV4_ECHO_REQUEST | ICMPV4_ECHO_REPLY) {
                return Err(NatError::Unsupported);
            }
            Ok(Some(L4Patch {
                port: Some((ICMP_IDENT, port)),
                checksum_at: ICMP_CHECKSUM,
                pseudo: false,
                udp: false,
            }))
        }
        _ => match new_port {
            None => Ok(None),
            Some(_) => Err(NatError::Unsupported),
        },
    }
}

/// The patched checksum of `l4` for the planned changes (reading the old values from `l4`), or
/// `None` when a UDP checksum of 0 is to stay 0.
#[inline]
fn patched_checksum(l4: &[u8], patch: &L4Patch, old_addr: u32, new_addr: u32) -> Option<u16> {
    let old = read_u16_be(l4, patch.checksum_at)?;
    if patch.udp && old == 0 {
        return None;
    }
    let mut check = old;
    if patch.pseudo {
        check = update_u32(check, old_addr, new_addr);
    }
    if let Some((at, port)) = patch.port {
        check = update_u16(check, read_u16_be(l4, at).unwrap_or(0), port);
    }
    if patch.udp && check == 0 {
        check = 0xffff;
    }
    Some(check)
}

/// Rewrites the source (`addr_at` = 12) or destination (16) address and the matching port.
#[inline]
fn rewrite_v4(
    l3: &mut [u8],
    addr_at: usize,
    port_at: usize,
    new_addr: Ipv4Addr,
    new_port: Option<u16>,
) -> Result<(), NatError> {
    let h = v4_header(l3)?;
    let old_addr = read_u32_be(l3, addr_at).ok_or(NatError::Truncated)?;
    let new_addr = u32::from(new_addr);
    let l4_range = h.header_len..h.total_len;
    if !h.later_fragment {
        let l4 = l3.get(l4_range.clone()).ok_or(NatError::Truncated)?;
        if let Some(patch) = plan_l4(h.protocol, l4, port_at, new_port)? {
            let check = patched_checksum(l4, &patch, old_addr, new_addr);
            let l4 = l3.get_mut(l4_range).ok_or(NatError::Truncated)?;
            if let Some((at, port)) = patch.port {
                write_u16_be(l4, at, port);
            }
            if let Some(check) = check {
                write_u16_be(l4, patch.checksum_at, check);
            }
        }
    }
    let ip_check = read_u16_be(l3, V4_CHECKSUM).unwrap_or(0);
    write_u16_be(l3, V4_CHECKSUM, update_u32(ip_check, old_addr, new_addr));
    write_u32_be(l3, addr_at, new_addr);
    Ok(())
}

/// SNAT: rewrites the source address and, if `new_port` is `Some`, the TCP/UDP source port or the
/// ICMP echo identifier, patching the IPv4 header checksum and the TCP/UDP/ICMP checksum.
///
/// `Truncated` when a header does not fit; `Unsupported` for a non-IPv4 packet, a malformed header,
/// or a port asked for where there is none (an ICMP message other than echo, a protocol other than
/// TCP/UDP/ICMP) — except in a non-first fragment, whose IP header alone is rewritten.
#[inline]
pub fn rewrite_src_v4(
    l3: &mut [u8],
    new_src: Ipv4Addr,
    new_port: Option<u16>,
) -> Result<(), NatError> {
    rewrite_v4(l3, V4_SRC, 0, new_src, new_port)
}

/// DNAT: [`rewrite_src_v4`] for the destination address and the TCP/UDP destination port (or the
/// ICMP echo identifier).
#[inline]
pub fn rewrite_dst_v4(
    l3: &mut [u8],
    new_dst: Ipv4Addr,
    new_port: Option<u16>,
) -> Result<(), NatError> {
    rewrite_v4(l3, V4_DST, 2, new_dst, new_port)
}

/// Which end of a packet a NAT rewrite changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The source address and port.
    Source,
    /// The destination address and port.
    Destination,
}

/// [`rewrite_src_v4`] / [`rewrite_dst_v4`] for the packet path's common case, a TCP or UDP
/// datagram (not a fragment) whose IPv4 header the caller validated (`header_len` from it, the
/// datagram cut to its total length): the address and port of `end` become `new_addr` and
/// `new_port`, and both checksums are patched with one update each. Anything else — another
/// protocol, a fragment, a short L4 header — is `Unsupported` and left unchanged for the
/// general functions. The same bytes as the general functions (a test compares them); 40
/// instructions where they take 290 (callgrind), as they validate the header again and plan
/// the L4 change generically.
#[inline]
pub fn rewrite_tcp_udp_v4(
    l3: &mut [u8],
    header_len: usize,
    end: End,
    new_addr: Ipv4Addr,
    new_port: u16,
) -> Result<(), NatError> {
    let (addr_at, port_at) = match end {
        End::Source => (V4_SRC, 0),
        End::Destination => (V4_DST, 2),
    };
    let Some(h) = l3.first_chunk::<20>() else {
        return Err(NatError::Truncated);
    };
    let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
    let (checksum_at, udp) = match IpProtocol(h[9]) {
        IpProtocol::TCP => (TCP_CHECKSUM, false),
        IpProtocol::UDP => (UDP_CHECKSUM, true),
        _ => return Err(NatError::Unsupported),
    };
    if fragment || l3.len() < header_len + checksum_at + 2 || header_len < 20 {
        return Err(NatError::Unsupported);
    }
    let old_addr = read_u32_be(l3, addr_at).ok_or(NatError::Truncated)?;
    let new_addr = u32::from(new_addr);
    let l4 = header_len;
    let old_port = read_u16_be(l3, l4 + port_at).ok_or(NatError::Truncated)?;
    let old_check = read_u16_be(l3, l4 + checksum_at).ok_or(NatError::Truncated)?;
    if !(udp && old_check == 0) {
        let mut check = update_u32(old_check, old_addr, new_addr);
        check = update_u16(check, old_port, new_port);
        if udp && check == 0 {
            check = 0xffff;
        }
        write_u16_be(l3, l4 + checksum_at, check);
    }
    write_u16_be(l3, l4 + port_at, new_port);
    let ip_check = read_u16_be(l3, V4_CHECKSUM).unwrap_or(0);
    write_u16_be(l3, V4_CHECKSUM, update_u32(ip_check, old_addr, new_addr));
    write_u32_be(l3, addr_at, new_addr);
    Ok(())
}

/// Rewrites an ICMPv4 error (types 3, 4, 5, 11, 12) that arrived for a NAT'd flow, back to the
/// inside: the outer destination becomes `new_dst` (the VM); the quoted (inner) IPv4 header's
/// source becomes `inner_new_src`, with the quoted header checksum patched; the quoted TCP/UDP
/// source port or quoted ICMP echo identifier becomes `inner_new_src_port` if `Some`. The quoted
/// TCP/UDP/ICMP checksum is patched when the quote includes it (the quote holds at least 8 bytes
/// of L4 per RFC 792, which is enough for UDP and ICMP but not for TCP's); the outer ICMP checksum
/// is patched for every word changed in the ICMP message.
///
/// `Unsupported` for a fragmented outer datagram, a non-ICMP packet, an ICMP type that is not an
/// error, a quote that is not IPv4, or a port asked for where the quote has none (a quoted
/// non-first fragment, a quoted ICMP message other than echo, another protocol). `Truncated` when
/// the ICMP header, the quoted IPv4 header, or the quoted port or identifier is cut.
pub fn rewrite_icmp_error_v4(
    l3: &mut [u8],
    new_dst: Ipv4Addr,
    inner_new_src: Ipv4Addr,
    inner_new_src_port: Option<u16>,
) -> Result<(), NatError> {
    let outer = v4_header(l3)?;
    if IpProtocol(outer.protocol) != IpProtocol::ICMP || outer.later_fragment || outer.more_frags {
        return Err(NatError::Unsupported);
    }
    let icmp_range = outer.header_len..outer.total_len;
    let icmp = l3.get(icmp_range.clone()).ok_or(NatError::Truncated)?;
    if icmp.len() < ICMP_HEADER_LEN {
        return Err(NatError::Truncated);
    }
    if !is_icmpv4_error(u8_at(icmp, 0)) {
        return Err(NatError::Unsupported);
    }
    // The quoted datagram, as far as the quote goes.
    let inner_at = ICMP_HEADER_LEN;
    let inner = icmp.get(inner_at..).ok_or(NatError::Truncated)?;
    let Some(ih) = inner.first_chunk::<20>() else {
        return Err(NatError::Truncated);
    };
    if ih[0] >> 4 != 4 {
        return Err(NatError::Unsupported);
    }
    let inner_hl = usize::from(ih[0] & 0x0f) * 4;
    if inner_hl < 20 {
        return Err(NatError::Unsupported);
    }
    if inner_hl > inner.len() {
        return Err(NatError::Truncated);
    }
    let inner_later_fragment = u16::from_be_bytes([ih[6], ih[7]]) & 0x1fff != 0;
    let inner_proto = IpProtocol(ih[9]);
    let old_src = u32::from_be_bytes([ih[12], ih[13], ih[14], ih[15]]);
    let new_src = u32::from(inner_new_src);
    let old_inner_ip_check = u16::from_be_bytes([ih[10], ih[11]]);
    let new_inner_ip_check = update_u32(old_inner_ip_check, old_src, new_src);

    // The quoted L4 header, relative to the ICMP message: (port offset, old, new), (checksum
    // offset, old, new).
    let l4_at = inner_at + inner_hl;
    let l4 = icmp.get(l4_at..).unwrap_or_default();
    let mut port_change: Option<(usize, u16, u16)> = None;
    let mut check_change: Option<(usize, u16, u16)> = None;
    if inner_later_fragment {
        if inner_new_src_port.is_some() {
            return Err(NatError::Unsupported);
        }
    } else {
        match inner_proto {
            IpProtocol::TCP | IpProtocol::UDP => {
                let (checksum_at, udp) = if inner_proto == IpProtocol::TCP {
                    (TCP_CHECKSUM, false)
                } else {
                    (UDP_CHECKSUM, true)
                };
                if let Some(port) = inner_new_src_port {
                    let old = read_u16_be(l4, 0).ok_or(NatError::Truncated)?;
                    port_change = Some((l4_at, old, port));
                }
                if let Some(old) = read_u16_be(l4, checksum_at) {
                    if !(udp && old == 0) {
                        let mut check = update_u32(old, old_src, new_src);
                        if let Some((_, from, to)) = port_change {
                            check = update_u16(check, from, to);
                        }
                        if udp && check == 0 {
                            check = 0xffff;
                        }
                        check_change = Some((l4_at + checksum_at, old, check));
                    }
                }
            }
            IpProtocol::ICMP => {
                if let Some(ident) = inner_new_src_port {
                    if !matches!(
                        l4.first().copied(),
                        Some(ICMPV4_ECHO_REQUEST | ICMPV4_ECHO_REPLY)
                    ) {
                        return Err(NatError::Unsupported);
                    }
                    let old = read_u16_be(l4, ICMP_IDENT).ok_or(NatError::Truncated)?;
                    port_change = Some((l4_at + ICMP_IDENT, old, ident));
                    let old_check = read_u16_be(l4, ICMP_CHECKSUM).ok_or(NatError::Truncated)?;
                    check_change = Some((
                        l4_at + ICMP_CHECKSUM,
                        old_check,
                        update_u16(old_check, old, ident),
                    ));
                }
            }
            _ => {
                if inner_new_src_port.is_some() {
                    return Err(NatError::Unsupported);
                }
            }
        }
    }

    // The outer ICMP checksum, for every word changed in the message (all at even offsets).
    let mut icmp_check = read_u16_be(icmp, ICMP_CHECKSUM).unwrap_or(0);
    icmp_check = update_u32(icmp_check, old_src, new_src);
    icmp_check = update_u16(icmp_check, old_inner_ip_check, new_inner_ip_check);
    for (_, from, to) in port_change.iter().chain(check_change.iter()) {
        icmp_check = update_u16(icmp_check, *from, *to);
    }

    // Everything checked: write.
    let old_dst = read_u32_be(l3, V4_DST).unwrap_or(0);
    let new_dst = u32::from(new_dst);
    let ip_check = read_u16_be(l3, V4_CHECKSUM).unwrap_or(0);
    write_u16_be(l3, V4_CHECKSUM, update_u32(ip_check, old_dst, new_dst));
    write_u32_be(l3, V4_DST, new_dst);
    let icmp = l3.get_mut(icmp_range).ok_or(NatError::Truncated)?;
    write_u16_be(icmp, ICMP_CHECKSUM, icmp_check);
    write_u16_be(icmp, inner_at + V4_CHECKSUM, new_inner_ip_check);
    write_u32_be(icmp, inner_at + V4_SRC, new_src);
    for (at, _, to) in port_change.iter().chain(check_change.iter()) {
        write_u16_be(icmp, *at, *to);
    }
    Ok(())
}

/// The packet an ICMPv4 error quotes: what names its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotedV4 {
    /// Quoted source address (for an error about our own outgoing packet: our NAT address).
    pub src: Ipv4Addr,
    /// Quoted destination address.
    pub dst: Ipv4Addr,
    /// Quoted protocol.
    pub proto: IpProtocol,
    /// Quoted source port, or the echo identifier of a quoted ICMP echo; 0 for other protocols and
    /// quoted fragments ([`FlowKey`]'s convention).
    pub src_port: u16,
    /// Quoted destination port, or the echo identifier again; 0 as for `src_port`.
    pub dst_port: u16,
}

impl QuotedV4 {
    /// The flow key of the quoted packet, as [`FlowKey::ipv4`] gave it when the packet was sent.
    pub fn flow_key(&self) -> FlowKey {
        FlowKey {
            src: u128::from(u32::from(self.src)),
            dst: u128::from(u32::from(self.dst)),
            proto: self.proto,
            is_v6: false,
            src_port: self.src_port,
            dst_port: self.dst_port,
        }
    }
}

/// The packet an ICMPv6 error quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotedV6 {
    /// Quoted source address.
    pub src: Ipv6Addr,
    /// Quoted destination address.
    pub dst: Ipv6Addr,
    /// Quoted next header (extension headers are not walked, as in [`FlowKey::ipv6`]).
    pub proto: IpProtocol,
    /// Quoted source port, or the identifier of a quoted ICMPv6 echo; else 0.
    pub src_port: u16,
    /// Quoted destination port, or the echo identifier again; else 0.
    pub dst_port: u16,
}

impl QuotedV6 {
    /// The flow key of the quoted packet, as [`FlowKey::ipv6`] gave it when the packet was sent.
    pub fn flow_key(&self) -> FlowKey {
        FlowKey {
            src: u128::from(self.src),
            dst: u128::from(self.dst),
            proto: self.proto,
            is_v6: true,
            src_port: self.src_port,
            dst_port: self.dst_port,
        }
    }
}

/// Whether the quoted L4 bytes hold what [`FlowKey`] reads for `proto`: the ports of a protocol
/// with ports, the identifier of an echo (`echo` are the protocol's echo types), the type of
/// another ICMP message.
fn quote_has_key(proto: IpProtocol, icmp: IpProtocol, echo: [u8; 2], l4: &[u8]) -> bool {
    if has_ports(proto) {
        l4.len() >= 4
    } else if proto == icmp {
        match l4.first() {
            None => false,
            Some(t) if echo.contains(t) => l4.len() >= ICMP_IDENT + 2,
            Some(_) => true,
        }
    } else {
        true
    }
}

/// If `l3` is an ICMPv4 error (types 3, 4, 5, 11, 12; not a non-first fragment), the quoted
/// packet's addresses, protocol and ports (echo: the identifier in both). `None` otherwise, or when
/// the quote is too short to hold them.
pub fn icmp_error_quote_v4(l3: &[u8]) -> Option<QuotedV4> {
    let outer = v4_header(l3).ok()?;
    if IpProtocol(outer.protocol) != IpProtocol::ICMP || outer.later_fragment {
        return None;
    }
    let icmp = l3.get(outer.header_len..outer.total_len)?;
    if icmp.len() < ICMP_HEADER_LEN || !is_icmpv4_error(u8_at(icmp, 0)) {
        return None;
    }
    let inner = icmp.get(ICMP_HEADER_LEN..)?;
    let ih = inner.first_chunk::<20>()?;
    let inner_hl = usize::from(ih[0] & 0x0f) * 4;
    if ih[0] >> 4 != 4 || inner_hl < 20 {
        return None;
    }
    let l4 = inner.get(inner_hl..)?;
    let proto = IpProtocol(ih[9]);
    let fragment = u16::from_be_bytes([ih[6], ih[7]]) & 0x3fff != 0;
    if !fragment && !quote_has_key(proto, IpProtocol::ICMP, [8, 0], l4) {
        return None;
    }
    let src = Ipv4Addr::new(ih[12], ih[13], ih[14], ih[15]);
    let dst = Ipv4Addr::new(ih[16], ih[17], ih[18], ih[19]);
    let key = FlowKey::ipv4(src, dst, proto, fragment, l4);
    Some(QuotedV4 {
        src,
        dst,
        proto,
        src_port: key.src_port,
        dst_port: key.dst_port,
    })
}

/// If `l3` is an IPv6 packet carrying an ICMPv6 error (types 1–4) right after its fixed header, the
/// quoted packet's addresses, next header and ports (echo: the identifier in both). `None`
/// otherwise, or when the quote is too short to hold them.
pub fn icmp_error_quote_v6(l3: &[u8]) -> Option<QuotedV6> {
    let outer = crate::ipv6::parse_fixed(l3)?;
    if outer.next_header != IpProtocol::ICMPV6 {
        return None;
    }
    let icmp = l3.get(crate::ipv6::HEADER_LEN..crate::ipv6::HEADER_LEN + outer.payload_len)?;
    if icmp.len() < ICMP_HEADER_LEN || !is_icmpv6_error(u8_at(icmp, 0)) {
        return None;
    }
    let inner = icmp.get(ICMP_HEADER_LEN..)?;
    let ih = inner.first_chunk::<{ crate::ipv6::HEADER_LEN }>()?;
    if ih[0] >> 4 != 6 {
        return None;
    }
    let l4 = inner.get(crate::ipv6::HEADER_LEN..)?;
    let proto = IpProtocol(ih[6]);
    if !quote_has_key(
        proto,
        IpProtocol::ICMPV6,
        [ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY],
        l4,
    ) {
        return None;
    }
    let addr = |at: usize| {
        inner
            .get(at..at + 16)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map_or(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from)
    };
    let (src, dst) = (addr(8), addr(24));
    let key = FlowKey::ipv6(src, dst, proto, l4);
    Some(QuotedV6 {
        src,
        dst,
        proto,
        src_port: key.src_port,
        dst_port: key.dst_port,
    })
}

/// Packet builders and checksum checks shared by the NAT and NAT64 tests.
#[cfg(test)]
pub(crate) mod build {
    use core::net::{Ipv4Addr, Ipv6Addr};

    use crate::checksum;
    use crate::ip::IpProtocol;
    use crate::{Icmpv4Repr, Icmpv6Repr, Ipv4Repr, Ipv6Repr, TcpFlags, TcpRepr, UdpRepr};

    /// A TCP segment with a zero checksum.
    pub fn tcp(sport: u16, dport: u16, flags: TcpFlags, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0u8; 20];
        TcpRepr {
            src_port: sport,
            dst_port: dport,
            seq_number: 0x1122_3344,
            ack_number: if flags.contains(TcpFlags::ACK) {
                0x5566_7788
            } else {
                0
            },
            flags,
            window: 64240,
        }
        .emit_into(&mut s)
        .unwrap();
        s.extend_from_slice(payload);
        s
    }

    /// A UDP datagram with a zero checksum.
    pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0u8; 8];
        UdpRepr {
            src_port: sport,
            dst_port: dport,
            payload_len: payload.len(),
        }
        .emit_into(&mut s)
        .unwrap();
        s.extend_from_slice(payload);
        s
    }

    /// An ICMPv4 echo request or reply with its checksum.
    pub fn echo4(request: bool, ident: u16, seq_no: u16, data: &[u8]) -> Vec<u8> {
        let repr = if request {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
        } else {
            Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            }
        };
        let mut s = vec![0u8; repr.buffer_len()];
        repr.emit_into(&mut s).unwrap();
        s
    }

    /// An ICMPv4 error of `msg_type`/`code` with `rest` quoting `quote`, with its checksum.
    pub fn error4(msg_type: u8, code: u8, rest: u32, quote: &[u8]) -> Vec<u8> {
        let mut s = vec![msg_type, code, 0, 0];
        s.extend_from_slice(&rest.to_be_bytes());
        s.extend_from_slice(quote);
        let check = checksum::finish(checksum::data(&s));
        s[2..4].copy_from_slice(&check.to_be_bytes());
        s
    }

    /// An ICMPv6 message of `msg_type`/`code` with `rest` and `body`, checksum zero.
    pub fn icmp6(msg_type: u8, code: u8, rest: u32, body: &[u8]) -> Vec<u8> {
        let mut s = vec![msg_type, code, 0, 0];
        s.extend_from_slice(&rest.to_be_bytes());
        s.extend_from_slice(body);
        s
    }

    /// An ICMPv6 echo, checksum zero (filled by [`ip6`]).
    pub fn echo6(request: bool, ident: u16, seq_no: u16, data: &[u8]) -> Vec<u8> {
        let repr = if request {
            Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
        } else {
            Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            }
        };
        let mut s = vec![0u8; repr.buffer_len()];
        let any = Ipv6Addr::UNSPECIFIED;
        repr.emit_into(&mut s, &any, &any).unwrap();
        s[2] = 0;
        s[3] = 0;
        s
    }

    /// The IPv4 header fields a test chooses.
    #[derive(Clone, Copy)]
    pub struct V4 {
        pub src: Ipv4Addr,
        pub dst: Ipv4Addr,
        pub proto: IpProtocol,
        pub ident: u16,
        pub ttl: u8,
        pub tos: u8,
    }

    impl V4 {
        pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol) -> V4 {
            V4 {
                src,
                dst,
                proto,
                ident: 0x1c46,
                ttl: 63,
                tos: 0x28,
            }
        }
    }

    /// An IPv4 datagram (DF set) carrying `l4`; with `fill`, the TCP/UDP checksum is computed.
    pub fn ip4(h: V4, l4: &[u8], fill: bool) -> Vec<u8> {
        let mut p = vec![0u8; 20 + l4.len()];
        Ipv4Repr {
            src_addr: h.src,
            dst_addr: h.dst,
            protocol: h.proto,
            payload_len: l4.len(),
            ttl: h.ttl,
            dscp_ecn: h.tos,
            ident: h.ident,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
        .emit_into(&mut p)
        .unwrap();
        p[20..].copy_from_slice(l4);
        if fill {
            let at = match h.proto {
                IpProtocol::TCP => 20 + 16,
                IpProtocol::UDP => 20 + 6,
                _ => return p,
            };
            p[at..at + 2].fill(0);
            let mut check = checksum::transport_v4(&h.src, &h.dst, h.proto, &p[20..]);
            if h.proto == IpProtocol::UDP && check == 0 {
                check = 0xffff;
            }
            p[at..at + 2].copy_from_slice(&check.to_be_bytes());
        }
        p
    }

    /// An IPv6 packet (traffic class 0x28, flow label 0) carrying `l4`; with `fill`, the
    /// TCP/UDP/ICMPv6 checksum is computed.
    pub fn ip6(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        nh: IpProtocol,
        hop: u8,
        l4: &[u8],
        fill: bool,
    ) -> Vec<u8> {
        let mut p = vec![0u8; 40 + l4.len()];
        Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: nh,
            payload_len: l4.len(),
            hop_limit: hop,
            traffic_class: 0x28,
            flow_label: 0,
        }
        .emit_into(&mut p)
        .unwrap();
        p[40..].copy_from_slice(l4);
        if fill {
            let at = match nh {
                IpProtocol::TCP => 40 + 16,
                IpProtocol::UDP => 40 + 6,
                IpProtocol::ICMPV6 => 40 + 2,
                _ => return p,
            };
            p[at..at + 2].fill(0);
            let mut check = checksum::transport_v6(&src, &dst, nh, &p[40..]);
            if nh == IpProtocol::UDP && check == 0 {
                check = 0xffff;
            }
            p[at..at + 2].copy_from_slice(&check.to_be_bytes());
        }
        p
    }

    fn addr4(p: &[u8], at: usize) -> Ipv4Addr {
        Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3])
    }

    fn addr6(p: &[u8], at: usize) -> Ipv6Addr {
        Ipv6Addr::from(<[u8; 16]>::try_from(&p[at..at + 16]).unwrap())
    }

    /// Asserts that every checksum of an IPv4 datagram is right: the header, TCP/UDP (a UDP 0
    /// passes), ICMP; for an ICMP error the quoted header, and the quoted TCP/UDP/ICMP checksum
    /// when the whole quoted datagram is there.
    pub fn check4(p: &[u8]) {
        let hl = usize::from(p[0] & 0x0f) * 4;
        assert_eq!(checksum::data(&p[..hl]), 0xffff, "IPv4 header checksum");
        let l4 = &p[hl..usize::from(u16::from_be_bytes([p[2], p[3]]))];
        let (src, dst, proto) = (addr4(p, 12), addr4(p, 16), IpProtocol(p[9]));
        match proto {
            IpProtocol::TCP => assert_eq!(checksum::transport_v4(&src, &dst, proto, l4), 0, "TCP"),
            IpProtocol::UDP => assert!(
                l4[6..8] == [0, 0] || checksum::transport_v4(&src, &dst, proto, l4) == 0,
                "UDP"
            ),
            IpProtocol::ICMP => {
                assert_eq!(checksum::data(l4), 0xffff, "ICMP");
                if super::is_icmpv4_error(l4[0]) {
                    let inner = &l4[8..];
                    let ihl = usize::from(inner[0] & 0x0f) * 4;
                    assert_eq!(checksum::data(&inner[..ihl]), 0xffff, "quoted IPv4 header");
                    if usize::from(u16::from_be_bytes([inner[2], inner[3]])) == inner.len() {
                        check4(inner);
                    }
                }
            }
            _ => {}
        }
    }

    /// [`check4`] for IPv6: TCP/UDP/ICMPv6 with the pseudo header, and the quoted packet of an
    /// ICMPv6 error when it is whole.
    pub fn check6(p: &[u8]) {
        let len = 40 + usize::from(u16::from_be_bytes([p[4], p[5]]));
        let l4 = &p[40..len];
        let (src, dst, nh) = (addr6(p, 8), addr6(p, 24), IpProtocol(p[6]));
        if matches!(nh, IpProtocol::TCP | IpProtocol::UDP | IpProtocol::ICMPV6) {
            assert_eq!(checksum::transport_v6(&src, &dst, nh, l4), 0, "{nh:?}");
        }
        if nh == IpProtocol::ICMPV6 && super::is_icmpv6_error(l4[0]) {
            let inner = &l4[8..];
            if 40 + usize::from(u16::from_be_bytes([inner[4], inner[5]])) == inner.len() {
                check6(inner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use crate::checksum;
    use crate::TcpFlags;
    use proptest::prelude::*;

    const VM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
    const NAT: Ipv4Addr = Ipv4Addr::new(45, 86, 6, 6);
    const REMOTE: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);
    const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

    fn syn(src: Ipv4Addr, sport: u16) -> Vec<u8> {
        ip4(
            V4::new(src, REMOTE, IpProtocol::TCP),
            &tcp(sport, 443, TcpFlags::SYN, b""),
            true,
        )
    }

    fn syn_ack(dst: Ipv4Addr, dport: u16) -> Vec<u8> {
        ip4(
            V4::new(REMOTE, dst, IpProtocol::TCP),
            &tcp(443, dport, TcpFlags::SYN | TcpFlags::ACK, b"hello"),
            true,
        )
    }

    #[test]
    fn tcp_syn_snat_then_reply_dnat() {
        let original = syn(VM, 40000);
        let mut p = original.clone();
        rewrite_src_v4(&mut p, NAT, Some(1025)).unwrap();
        check4(&p);
        // Exactly the packet the NAT address would have sent.
        assert_eq!(p, syn(NAT, 1025));
        // And back.
        rewrite_src_v4(&mut p, VM, Some(40000)).unwrap();
        assert_eq!(p, original);

        let mut reply = syn_ack(NAT, 1025);
        rewrite_dst_v4(&mut reply, VM, Some(40000)).unwrap();
        check4(&reply);
        assert_eq!(reply, syn_ack(VM, 40000));
        rewrite_dst_v4(&mut reply, NAT, Some(1025)).unwrap();
        assert_eq!(reply, syn_ack(NAT, 1025));

        // Address only: the port stays.
        let mut p = original.clone();
        rewrite_src_v4(&mut p, NAT, None).unwrap();
        assert_eq!(p, syn(NAT, 40000));
    }

    #[test]
    fn udp_checksum_zero_stays_zero() {
        let h = V4::new(VM, REMOTE, IpProtocol::UDP);
        let mut p = ip4(h, &udp(5353, 53, b"query"), false);
        assert_eq!(&p[26..28], &[0, 0]);
        rewrite_src_v4(&mut p, NAT, Some(2000)).unwrap();
        check4(&p);
        assert_eq!(&p[26..28], &[0, 0]);
        assert_eq!(
            p,
            ip4(V4 { src: NAT, ..h }, &udp(2000, 53, b"query"), false)
        );
        rewrite_dst_v4(&mut p, VM, Some(6000)).unwrap();
        assert_eq!(&p[26..28], &[0, 0]);
        assert_eq!(
            p,
            ip4(
                V4 {
                    src: NAT,
                    dst: VM,
                    ..h
                },
                &udp(2000, 6000, b"query"),
                false
            )
        );

        // With a checksum: patched to the same value a fresh computation gives.
        let mut p = ip4(h, &udp(5353, 53, b"query"), true);
        rewrite_src_v4(&mut p, NAT, Some(2000)).unwrap();
        check4(&p);
        assert_eq!(p, ip4(V4 { src: NAT, ..h }, &udp(2000, 53, b"query"), true));
    }

    #[test]
    fn udp_patched_checksum_zero_is_written_ffff() {
        // Find two payload bytes for which the rewritten datagram sums to a checksum of 0.
        let h = V4::new(VM, REMOTE, IpProtocol::UDP);
        let after = V4 { src: NAT, ..h };
        let word = (0..=u16::MAX)
            .find(|w| {
                let p = ip4(after, &udp(2000, 53, &w.to_be_bytes()), false);
                checksum::transport_v4(&NAT, &REMOTE, IpProtocol::UDP, &p[20..]) == 0
            })
            .unwrap();
        let mut p = ip4(h, &udp(5353, 53, &word.to_be_bytes()), true);
        rewrite_src_v4(&mut p, NAT, Some(2000)).unwrap();
        assert_eq!(&p[26..28], &[0xff, 0xff]);
        check4(&p);
        rewrite_src_v4(&mut p, VM, Some(5353)).unwrap();
        assert_eq!(p, ip4(h, &udp(5353, 53, &word.to_be_bytes()), true));
    }

    #[test]
    fn icmp_echo_identifier() {
        let h = V4::new(VM, REMOTE, IpProtocol::ICMP);
        let mut p = ip4(h, &echo4(true, 0x1111, 7, b"ping data"), false);
        rewrite_src_v4(&mut p, NAT, Some(0x2222)).unwrap();
        check4(&p);
        assert_eq!(
            p,
            ip4(
                V4 { src: NAT, ..h },
                &echo4(true, 0x2222, 7, b"ping data"),
                false
            )
        );
        assert_eq!(FlowKey::of_header(&p).src_port, 0x2222);

        let r = V4::new(REMOTE, NAT, IpProtocol::ICMP);
        let mut reply = ip4(r, &echo4(false, 0x2222, 7, b"ping data"), false);
        rewrite_dst_v4(&mut reply, VM, Some(0x1111)).unwrap();
        check4(&reply);
        assert_eq!(
            reply,
            ip4(
                V4 { dst: VM, ..r },
                &echo4(false, 0x1111, 7, b"ping data"),
                false
            )
        );

        // The address alone does not touch the ICMP message.
        let mut p = ip4(h, &echo4(true, 0x1111, 7, b"x"), false);
        rewrite_src_v4(&mut p, NAT, None).unwrap();
        assert_eq!(
            p,
            ip4(V4 { src: NAT, ..h }, &echo4(true, 0x1111, 7, b"x"), false)
        );
    }

    /// An ICMP error from ROUTER about `quoted` (cut to `quote_len` bytes) sent to `dst`.
    fn error_about(dst: Ipv4Addr, code: u8, quoted: &[u8], quote_len: usize) -> Vec<u8> {
        ip4(
            V4::new(ROUTER, dst, IpProtocol::ICMP),
            &error4(3, code, 0, &quoted[..quote_len]),
            false,
        )
    }

    #[test]
    fn port_unreachable_for_natted_udp() {
        let h = V4::new(VM, REMOTE, IpProtocol::UDP);
        let inside = ip4(h, &udp(40000, 53, b"dns?"), true);
        let mut outside = inside.clone();
        rewrite_src_v4(&mut outside, NAT, Some(1025)).unwrap();
        // The whole datagram quoted, and only the header plus 8 bytes (RFC 792's minimum).
        for quote_len in [outside.len(), 28] {
            let mut e = error_about(NAT, 3, &outside, quote_len);
            check4(&e);
            assert_eq!(
                icmp_error_quote_v4(&e),
                Some(QuotedV4 {
                    src: NAT,
                    dst: REMOTE,
                    proto: IpProtocol::UDP,
                    src_port: 1025,
                    dst_port: 53,
                })
            );
            rewrite_icmp_error_v4(&mut e, VM, VM, Some(40000)).unwrap();
            check4(&e);
            assert_eq!(e, error_about(VM, 3, &inside, quote_len));
            let q = icmp_error_quote_v4(&e).unwrap();
            assert_eq!((q.src, q.src_port), (VM, 40000));
            assert_eq!(q.flow_key(), FlowKey::of_header(&inside));
        }
    }

    #[test]
    fn icmp_error_quoting_tcp_and_echo() {
        let inside = syn(VM, 40000);
        let mut outside = inside.clone();
        rewrite_src_v4(&mut outside, NAT, Some(1025)).unwrap();
        // 8 bytes of TCP: the quoted checksum is not there; 20 bytes: it is and gets patched.
        for quote_len in [28, 40] {
            let mut e = error_about(NAT, 1, &outside, quote_len);
            rewrite_icmp_error_v4(&mut e, VM, VM, Some(40000)).unwrap();
            check4(&e);
            assert_eq!(e, error_about(VM, 1, &inside, quote_len));
        }
        // A time-exceeded quoting an echo request: the identifier is restored.
        let h = V4::new(VM, REMOTE, IpProtocol::ICMP);
        let inside = ip4(h, &echo4(true, 0x1111, 1, b"abcdefgh"), false);
        let mut outside = inside.clone();
        rewrite_src_v4(&mut outside, NAT, Some(0x2222)).unwrap();
        let te = |dst, q: &[u8]| {
            ip4(
                V4::new(ROUTER, dst, IpProtocol::ICMP),
                &error4(11, 0, 0, q),
                false,
            )
        };
        let mut e = te(NAT, &outside);
        let q = icmp_error_quote_v4(&e).unwrap();
        assert_eq!(
            (q.proto, q.src_port, q.dst_port),
            (IpProtocol::ICMP, 0x2222, 0x2222)
        );
        rewrite_icmp_error_v4(&mut e, VM, VM, Some(0x1111)).unwrap();
        check4(&e);
        assert_eq!(e, te(VM, &inside));
    }

    #[test]
    fn fragments_and_unsupported() {
        // A non-first fragment: only the IP header changes, whatever the port.
        let h = V4::new(VM, REMOTE, IpProtocol::UDP);
        let mut p = ip4(h, &udp(40000, 53, b"payload!"), true);
        p[6..8].copy_from_slice(&0x0001u16.to_be_bytes()); // offset 8 bytes
        p[10..12].fill(0);
        let c = checksum::finish(checksum::data(&p[..20]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let l4_before = p[20..].to_vec();
        rewrite_src_v4(&mut p, NAT, Some(1)).unwrap();
        assert_eq!(&p[20..], &l4_before[..]);
        assert_eq!(&p[12..16], &NAT.octets());
        assert_eq!(checksum::data(&p[..20]), 0xffff);

        // A port where there is none.
        let mut gre = ip4(V4::new(VM, REMOTE, IpProtocol(47)), &[0; 8], false);
        let before = gre.clone();
        assert_eq!(
            rewrite_src_v4(&mut gre, NAT, Some(1)),
            Err(NatError::Unsupported)
        );
        assert_eq!(gre, before);
        rewrite_src_v4(&mut gre, NAT, None).unwrap();
        check4(&gre);
        let mut err = error_about(NAT, 3, &syn(NAT, 1), 28);
        let before = err.clone();
        assert_eq!(
            rewrite_src_v4(&mut err, VM, Some(1)),
            Err(NatError::Unsupported)
        );
        assert_eq!(err, before);
        // Not an error.
        let mut echo = ip4(
            V4::new(VM, REMOTE, IpProtocol::ICMP),
            &echo4(true, 1, 1, b""),
            false,
        );
        assert_eq!(
            rewrite_icmp_error_v4(&mut echo, VM, VM, None),
            Err(NatError::Unsupported)
        );
        assert_eq!(icmp_error_quote_v4(&echo), None);
        // IPv6 is not IPv4.
        let mut v6 = [0x60u8; 60];
        assert_eq!(
            rewrite_src_v4(&mut v6, NAT, None),
            Err(NatError::Unsupported)
        );
    }

    #[test]
    fn quote_v6() {
        let vm: Ipv6Addr = "2001:db8::5".parse().unwrap();
        let remote: Ipv6Addr = "2001:db8:1::7".parse().unwrap();
        let router: Ipv6Addr = "2001:db8:ff::1".parse().unwrap();
        let inner = ip6(vm, remote, IpProtocol::UDP, 64, &udp(40000, 53, b"q"), true);
        let e = ip6(
            router,
            vm,
            IpProtocol::ICMPV6,
            64,
            &icmp6(1, 4, 0, &inner),
            true,
        );
        check6(&e);
        let q = icmp_error_quote_v6(&e).unwrap();
        assert_eq!(
            q,
            QuotedV6 {
                src: vm,
                dst: remote,
                proto: IpProtocol::UDP,
                src_port: 40000,
                dst_port: 53
            }
        );
        assert_eq!(q.flow_key(), FlowKey::of_header(&inner));
        let echo = ip6(
            vm,
            remote,
            IpProtocol::ICMPV6,
            64,
            &echo6(true, 9, 1, b""),
            true,
        );
        let e = ip6(
            router,
            vm,
            IpProtocol::ICMPV6,
            64,
            &icmp6(3, 0, 0, &echo),
            true,
        );
        let q = icmp_error_quote_v6(&e).unwrap();
        assert_eq!((q.src_port, q.dst_port), (9, 9));
        // Not an error, and cut quotes.
        assert_eq!(icmp_error_quote_v6(&echo), None);
        for len in 0..e.len() {
            let mut cut = e[..len].to_vec();
            assert_eq!(icmp_error_quote_v6(&cut), None);
            if len >= 40 {
                let plen = (len - 40) as u16;
                cut[4..6].copy_from_slice(&plen.to_be_bytes());
                // The ports need the quote's first 6 bytes of ICMPv6 (echo identifier).
                assert_eq!(icmp_error_quote_v6(&cut).is_some(), len >= 40 + 8 + 40 + 6);
            }
        }
    }

    /// Every prefix of `p`, as cut and with the total length made to agree: no panic, and an
    /// `Err` leaves the packet as it was.
    fn no_panic_on_prefixes(p: &[u8]) {
        for len in 0..=p.len() {
            for fix in [false, true] {
                let mut cut = p[..len].to_vec();
                if fix && len >= 4 {
                    let l = len as u16;
                    cut[2..4].copy_from_slice(&l.to_be_bytes());
                }
                let _ = icmp_error_quote_v4(&cut);
                let _ = icmp_error_quote_v6(&cut);
                for port in [None, Some(7)] {
                    let mut c = cut.clone();
                    if rewrite_src_v4(&mut c, NAT, port).is_err() {
                        assert_eq!(c, cut);
                    }
                    let mut c = cut.clone();
                    if rewrite_dst_v4(&mut c, NAT, port).is_err() {
                        assert_eq!(c, cut);
                    }
                    let mut c = cut.clone();
                    if rewrite_icmp_error_v4(&mut c, VM, VM, port).is_err() {
                        assert_eq!(c, cut);
                    }
                }
            }
        }
    }

    #[test]
    fn truncated_inputs_never_panic() {
        let h = V4::new(VM, REMOTE, IpProtocol::UDP);
        let udp_p = ip4(h, &udp(40000, 53, b"dns?"), true);
        let echo = ip4(
            V4::new(VM, REMOTE, IpProtocol::ICMP),
            &echo4(true, 1, 2, b"abc"),
            false,
        );
        let tcp_err = error_about(NAT, 3, &syn(NAT, 1025), 40);
        let udp_err = error_about(NAT, 3, &udp_p, udp_p.len());
        let echo_err = error_about(NAT, 3, &echo, echo.len());
        for p in [syn(VM, 1), udp_p, echo, tcp_err, udp_err, echo_err] {
            no_panic_on_prefixes(&p);
        }
        // Truncated full packets report Truncated.
        let p = syn(VM, 1);
        for len in 0..p.len() {
            let mut cut = p[..len].to_vec();
            assert_eq!(
                rewrite_src_v4(&mut cut, NAT, None),
                Err(NatError::Truncated)
            );
        }
    }

    fn packet_strategy() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<u16>(),
            0u8..4,
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(src, dst, sport, dport, kind, payload)| {
                let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
                match kind {
                    0 => ip4(
                        V4::new(src, dst, IpProtocol::TCP),
                        &tcp(sport, dport, TcpFlags::ACK, &payload),
                        true,
                    ),
                    1 => ip4(
                        V4::new(src, dst, IpProtocol::UDP),
                        &udp(sport, dport, &payload),
                        true,
                    ),
                    2 => ip4(
                        V4::new(src, dst, IpProtocol::UDP),
                        &udp(sport, dport, &payload),
                        false,
                    ),
                    _ => ip4(
                        V4::new(src, dst, IpProtocol::ICMP),
                        &echo4(sport & 1 == 0, dport, sport, &payload),
                        false,
                    ),
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn snat_then_back_is_identity(p in packet_strategy(), addr in any::<[u8; 4]>(), port in any::<u16>()) {
            let key = FlowKey::of_header(&p);
            let mut q = p.clone();
            rewrite_src_v4(&mut q, Ipv4Addr::from(addr), Some(port)).unwrap();
            check4(&q);
            let k = FlowKey::of_header(&q);
            prop_assert_eq!((k.src_v4(), k.src_port), (Ipv4Addr::from(addr), port));
            rewrite_src_v4(&mut q, key.src_v4(), Some(key.src_port)).unwrap();
            prop_assert_eq!(&q, &p);

            rewrite_dst_v4(&mut q, Ipv4Addr::from(addr), Some(port)).unwrap();
            check4(&q);
            let k = FlowKey::of_header(&q);
            prop_assert_eq!((k.dst_v4(), k.dst_port), (Ipv4Addr::from(addr), port));
            rewrite_dst_v4(&mut q, key.dst_v4(), Some(key.dst_port)).unwrap();
            prop_assert_eq!(&q, &p);
        }

        #[test]
        fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..120), port in any::<Option<u16>>()) {
            if bytes.len() >= 4 {
                bytes[0] = 0x45;
                let l = bytes.len() as u16;
                bytes[2..4].copy_from_slice(&l.to_be_bytes());
            }
            let _ = icmp_error_quote_v4(&bytes);
            let _ = icmp_error_quote_v6(&bytes);
            let mut c = bytes.clone();
            let _ = rewrite_src_v4(&mut c, NAT, port);
            let mut c = bytes.clone();
            let _ = rewrite_dst_v4(&mut c, NAT, port);
            let mut c = bytes.clone();
            let _ = rewrite_icmp_error_v4(&mut c, VM, VM, port);
        }
    }

    /// The fast path writes exactly what the general functions write.
    #[test]
    fn fast_tcp_udp_rewrite_matches_the_general_one() {
        let mut x: u64 = 0x2545_f491;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..5000u32 {
            let proto = if round % 2 == 0 { 6u8 } else { 17 };
            let payload_len = (next() % 40) as usize;
            let l4_len = if proto == 6 { 20 } else { 8 } + payload_len;
            let mut p = vec![0u8; 20 + l4_len];
            for b in p.iter_mut() {
                *b = next() as u8;
            }
            p[0] = 0x45;
            p[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            p[6] = 0x40;
            p[7] = 0;
            p[9] = proto;
            if proto == 17 {
                p[24..26].copy_from_slice(&(l4_len as u16).to_be_bytes());
                if round % 7 == 0 {
                    p[26] = 0;
                    p[27] = 0;
                }
            }
            let addr = Ipv4Addr::from(next() as u32);
            let port = next() as u16;
            for end in [End::Source, End::Destination] {
                let mut fast = p.clone();
                rewrite_tcp_udp_v4(&mut fast, 20, end, addr, port).unwrap();
                let mut slow = p.clone();
                match end {
                    End::Source => rewrite_src_v4(&mut slow, addr, Some(port)).unwrap(),
                    End::Destination => rewrite_dst_v4(&mut slow, addr, Some(port)).unwrap(),
                }
                assert_eq!(fast, slow, "round {round} {end:?}");
            }
        }
        // Not its case: left alone.
        let mut frag = vec![0x45, 0, 0, 28, 0, 0, 0x20, 0, 64, 17, 0, 0];
        frag.extend_from_slice(&[0; 16]);
        let before = frag.clone();
        assert_eq!(
            rewrite_tcp_udp_v4(&mut frag, 20, End::Source, Ipv4Addr::LOCALHOST, 1),
            Err(NatError::Unsupported)
        );
        assert_eq!(frag, before);
    }
}
