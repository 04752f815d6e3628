//! Stateless IP/ICMP header translation between IPv6 and IPv4 (RFC 7915), the per-packet half of
//! stateful NAT64 (RFC 6146), with the well-known prefix 64:ff9b::/96 (RFC 6052).
//!
//! The translating functions read an IP datagram and write the translated datagram at the start of
//! a caller's buffer (so it can sit after the caller's own Ethernet header), returning its length;
//! they never allocate or panic. On `Err` the output buffer holds unspecified bytes.
//!
//! Checksums:
//! * TCP and UDP checksums, and the checksum of a translated ICMP echo, are *patched* for the
//!   pseudo-header, port/identifier and type changes (RFC 1624), never recomputed: a wrong checksum
//!   stays wrong by the same amount. The one exception is an IPv4 UDP checksum of 0 ("none"),
//!   computed fresh over IPv6, where it is mandatory.
//! * A translated ICMP error is recomputed whole (its length and contents change); the caller that
//!   wants corrupted errors dropped checks the incoming checksum first.
//! * The IPv4 header checksum is computed.
//!
//! Translated ICMP errors carry as much of the quoted packet as fits within 576 bytes (IPv4,
//! RFC 1812 §4.3.2.3) or 1280 bytes (IPv6, RFC 4443 §2.4).

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::bytes::{read_u16_be, read_u32_be, u8_at, write_u16_be, write_u32_be};
use crate::checksum::{self, update_u16};
use crate::ip::IpProtocol;
use crate::ipv4::Ipv4Repr;
use crate::ipv6::Ipv6Repr;
use crate::nat::{
    v4_header, NatError, ICMPV4_ECHO_REPLY, ICMPV4_ECHO_REQUEST, ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
};

/// The well-known NAT64 prefix 64:ff9b::/96 (RFC 6052 §2.1).
pub const NAT64_PREFIX: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);

/// Length of [`NAT64_PREFIX`] in bits.
pub const NAT64_PREFIX_LEN: u8 = 96;

const V4_HEADER_LEN: usize = crate::ipv4::HEADER_LEN;
const V6_HEADER_LEN: usize = crate::ipv6::HEADER_LEN;
const ICMP_HEADER_LEN: usize = 8;
/// The largest translated ICMPv4 error datagram.
const MAX_ICMPV4_ERROR: usize = 576;
/// The largest translated ICMPv6 error datagram.
const MAX_ICMPV6_ERROR: usize = 1280;

/// Whether `addr` is in 64:ff9b::/96.
pub fn is_nat64(addr: Ipv6Addr) -> bool {
    u128::from(addr) >> 32 == u128::from(NAT64_PREFIX) >> 32
}

/// The IPv4-embedded IPv6 address of `v4`: 64:ff9b::a.b.c.d.
pub fn embed(v4: Ipv4Addr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(NAT64_PREFIX) | u128::from(u32::from(v4)))
}

/// The IPv4 address in the low 32 bits of `v6` (the prefix is not checked: see [`is_nat64`]).
pub fn extract(v6: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from(u128::from(v6) as u32)
}

fn map_err(e: crate::Error) -> NatError {
    match e {
        crate::Error::Truncated => NatError::Truncated,
        _ => NatError::Unsupported,
    }
}

/// Writes a 20-byte IPv4 header as RFC 7915 §5.1 builds it: identification 0, DF set.
fn emit_v4(
    out: &mut [u8],
    tos: u8,
    ttl: u8,
    protocol: IpProtocol,
    payload_len: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> Result<(), NatError> {
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol,
        payload_len,
        ttl,
        dscp_ecn: tos,
        ident: 0,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    }
    .emit_into(out)
    .map(|_| ())
    .map_err(map_err)
}

/// Writes a 40-byte IPv6 header as RFC 7915 §4.1 builds it: flow label 0.
fn emit_v6(
    out: &mut [u8],
    traffic_class: u8,
    hop_limit: u8,
    next_header: IpProtocol,
    payload_len: usize,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> Result<(), NatError> {
    Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header,
        payload_len,
        hop_limit,
        traffic_class,
        flow_label: 0,
    }
    .emit_into(out)
    .map(|_| ())
    .map_err(map_err)
}

/// The L4 protocols translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum L4Kind {
    Tcp,
    Udp,
    /// An ICMP echo, whose type becomes `to_type`.
    Echo {
        to_type: u8,
    },
}

impl L4Kind {
    fn checksum_at(self) -> usize {
        match self {
            L4Kind::Tcp => 16,
            L4Kind::Udp => 6,
            L4Kind::Echo { .. } => 2,
        }
    }

    fn header_len(self) -> usize {
        match self {
            L4Kind::Tcp => crate::tcp::HEADER_LEN,
            L4Kind::Udp => crate::udp::HEADER_LEN,
            L4Kind::Echo { .. } => ICMP_HEADER_LEN,
        }
    }
}

/// How one L4 header is translated.
#[derive(Clone, Copy, Debug)]
struct L4Xlate {
    kind: L4Kind,
    /// Offset of the port to replace (TCP/UDP: 0 source, 2 destination; echo: the identifier).
    port_at: usize,
    new_port: Option<u16>,
    /// Sum of the pseudo header the checksum covered (0 for ICMPv4) and will cover.
    old_pseudo: u16,
    new_pseudo: u16,
}

/// Copies `l4` to the start of `out` and translates it. `whole`: `l4` is a full segment whose
/// header must fit; otherwise a quote, where the checksum is patched only if present.
fn translate_l4(l4: &[u8], out: &mut [u8], x: &L4Xlate, whole: bool) -> Result<(), NatError> {
    let out = out.get_mut(..l4.len()).ok_or(NatError::Truncated)?;
    out.copy_from_slice(l4);
    if whole && l4.len() < x.kind.header_len() {
        return Err(NatError::Truncated);
    }
    let port_at = match x.kind {
        L4Kind::Echo { .. } => 4,
        _ => x.port_at,
    };
    let port = match x.new_port {
        Some(new) => Some((read_u16_be(l4, port_at).ok_or(NatError::Truncated)?, new)),
        None => None,
    };
    let type_word = match x.kind {
        L4Kind::Echo { to_type } => {
            let msg_type = *l4.first().ok_or(NatError::Truncated)?;
            let code = u8_at(l4, 1);
            Some((
                u16::from_be_bytes([msg_type, code]),
                u16::from_be_bytes([to_type, code]),
            ))
        }
        _ => None,
    };
    let udp = x.kind == L4Kind::Udp;
    let checksum_at = x.kind.checksum_at();
    if let Some(old) = read_u16_be(l4, checksum_at) {
        if !(udp && old == 0) {
            let mut check = update_u16(old, x.old_pseudo, x.new_pseudo);
            for (from, to) in port.iter().chain(type_word.iter()) {
                check = update_u16(check, *from, *to);
            }
            if udp && check == 0 {
                check = 0xffff;
            }
            write_u16_be(out, checksum_at, check);
        }
    }
    if let Some((_, new)) = port {
        write_u16_be(out, port_at, new);
    }
    if let Some((_, to)) = type_word {
        if let Some(b) = out.first_mut() {
            *b = to.to_be_bytes()[0];
        }
    }
    Ok(())
}

/// The fixed IPv6 header at the start of `l3` and its payload.
fn v6_header(l3: &[u8]) -> Result<(crate::ipv6::Ipv6Fields, &[u8]), NatError> {
    match l3.first() {
        None => return Err(NatError::Truncated),
        Some(b) if b >> 4 != 6 => return Err(NatError::Unsupported),
        Some(_) => {}
    }
    let h = crate::ipv6::parse_fixed(l3).ok_or(NatError::Truncated)?;
    let payload = l3
        .get(V6_HEADER_LEN..V6_HEADER_LEN + h.payload_len)
        .ok_or(NatError::Truncated)?;
    Ok((h, payload))
}

/// The IPv4 protocol and translation of an IPv6 upper layer (`l4` starts with it: the ICMPv6 type
/// says whether it is an echo).
fn kind_6to4(next_header: IpProtocol, l4: &[u8]) -> Result<(IpProtocol, L4Kind), NatError> {
    kind(
        next_header,
        l4,
        (IpProtocol::ICMPV6, IpProtocol::ICMP),
        [
            (ICMPV6_ECHO_REQUEST, ICMPV4_ECHO_REQUEST),
            (ICMPV6_ECHO_REPLY, ICMPV4_ECHO_REPLY),
        ],
    )
}

/// The IPv6 next header and translation of an IPv4 upper layer.
fn kind_4to6(protocol: IpProtocol, l4: &[u8]) -> Result<(IpProtocol, L4Kind), NatError> {
    kind(
        protocol,
        l4,
        (IpProtocol::ICMP, IpProtocol::ICMPV6),
        [
            (ICMPV4_ECHO_REQUEST, ICMPV6_ECHO_REQUEST),
            (ICMPV4_ECHO_REPLY, ICMPV6_ECHO_REPLY),
        ],
    )
}

/// The translated protocol and kind of an upper layer: TCP and UDP as they are, an echo of
/// `icmp.0` as one of `icmp.1` (the types mapped by `echo`), anything else unsupported.
fn kind(
    protocol: IpProtocol,
    l4: &[u8],
    icmp: (IpProtocol, IpProtocol),
    echo: [(u8, u8); 2],
) -> Result<(IpProtocol, L4Kind), NatError> {
    match protocol {
        IpProtocol::TCP => Ok((IpProtocol::TCP, L4Kind::Tcp)),
        IpProtocol::UDP => Ok((IpProtocol::UDP, L4Kind::Udp)),
        p if p == icmp.0 => {
            let ty = l4.first().copied().ok_or(NatError::Truncated)?;
            echo.iter()
                .find(|(from, _)| *from == ty)
                .map(|&(_, to_type)| (icmp.1, L4Kind::Echo { to_type }))
                .ok_or(NatError::Unsupported)
        }
        _ => Err(NatError::Unsupported),
    }
}

fn pseudo_v4(kind: L4Kind, src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, len: usize) -> u16 {
    match kind {
        L4Kind::Echo { .. } => 0,
        _ => checksum::pseudo_header_v4(&src, &dst, proto, len as u32),
    }
}

fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: IpProtocol, len: usize) -> u16 {
    checksum::pseudo_header_v6(&src, &dst, next_header, len as u32)
}

/// ICMPv6 error type, code and rest-of-header to ICMPv4 (RFC 7915 §5.2).
fn icmp_error_6to4(msg_type: u8, code: u8, rest: u32) -> Result<(u8, u8, u32), NatError> {
    Ok(match (msg_type, code) {
        // Destination unreachable: no route, beyond scope, address unreachable -> host
        // unreachable; administratively prohibited -> host administratively prohibited; port
        // unreachable -> port unreachable.
        (1, 0 | 2 | 3) => (3, 1, 0),
        (1, 1) => (3, 10, 0),
        (1, 4) => (3, 3, 0),
        // Packet too big -> fragmentation needed, the MTU less the header size difference.
        (2, _) => (3, 4, rest.saturating_sub(20).min(0xffff)),
        // Time exceeded: codes unchanged.
        (3, 0 | 1) => (11, code, 0),
        // Parameter problem: erroneous header field -> parameter problem with the pointer
        // translated; unrecognized next header -> protocol unreachable.
        (4, 0) => {
            let pointer: u32 = match rest {
                0 => 0,
                1 => 1,
                4 | 5 => 2,
                6 => 9,
                7 => 8,
                8..=23 => 12,
                24..=39 => 16,
                _ => return Err(NatError::Unsupported),
            };
            (12, 0, pointer << 24)
        }
        (4, 1) => (3, 2, 0),
        _ => return Err(NatError::Unsupported),
    })
}

/// RFC 1191 plateaus of at least 1280 (RFC 7915 §4.2 uses them when a router gave MTU 0).
const PLATEAUS: [u32; 7] = [65535, 32000, 17914, 8166, 4352, 2002, 1492];

/// ICMPv4 error type, code and rest-of-header to ICMPv6 (RFC 7915 §4.2); `quoted_total` is the
/// quoted datagram's total length (for an MTU of 0).
fn icmp_error_4to6(
    msg_type: u8,
    code: u8,
    rest: u32,
    quoted_total: u16,
) -> Result<(u8, u8, u32), NatError> {
    Ok(match (msg_type, code) {
        (3, 0 | 1 | 5 | 6 | 7 | 8 | 11 | 12) => (1, 0, 0),
        (3, 2) => (4, 1, 6),
        (3, 3) => (1, 4, 0),
        (3, 4) => {
            let mtu = rest & 0xffff;
            let mtu = if mtu == 0 {
                PLATEAUS
                    .iter()
                    .copied()
                    .find(|&p| p < u32::from(quoted_total))
                    .unwrap_or(1280)
            } else {
                mtu + 20
            };
            (2, 0, mtu)
        }
        (3, 9 | 10 | 13 | 15) => (1, 1, 0),
        (11, 0 | 1) => (3, code, 0),
        (12, 0 | 2) => {
            let pointer: u32 = match rest >> 24 {
                0 => 0,
                1 => 1,
                2 | 3 => 4,
                8 => 7,
                9 => 6,
                12..=15 => 8,
                16..=19 => 24,
                _ => return Err(NatError::Unsupported),
            };
            (4, 0, pointer)
        }
        _ => return Err(NatError::Unsupported),
    })
}

/// Translates an IPv6 packet from a VM to IPv4 (RFC 7915 §5): source `new_src` (the NAT address),
/// destination [`extract`]`(dst)`, TTL = hop limit (already decremented by the caller), TOS =
/// traffic class, identification 0, DF set. The payload must follow the fixed header directly
/// (an extension header, the Fragment header included, is `Unsupported`) and be:
///
/// * TCP or UDP: the source port becomes `new_src_port` if `Some`; the checksum is patched for the
///   pseudo header and port (an IPv6 UDP checksum of 0, invalid, is left 0 — "none" over IPv4);
/// * an ICMPv6 echo request/reply: ICMPv4 echo request/reply, identifier `new_src_port` if `Some`;
/// * an ICMPv6 error about a packet that came in through NAT64 (destination unreachable, packet too
///   big, time exceeded, parameter problem, with RFC 7915 §5.2's types and codes; the rest is
///   `Unsupported`): the quoted IPv6 packet is translated too, its source becoming
///   [`extract`]`(quoted src)` and its destination `new_src`, and its destination port (echo:
///   identifier) becoming `new_src_port` if `Some` — the mirror image of what [`v4_to_v6`] did
///   to the packet on its way in.
///
/// Writes the IPv4 datagram at the start of `out` and returns its length; `Truncated` if `out` is
/// too short or the packet is cut.
pub fn v6_to_v4(
    l3: &[u8],
    new_src: Ipv4Addr,
    new_src_port: Option<u16>,
    out: &mut [u8],
) -> Result<usize, NatError> {
    let (h, l4) = v6_header(l3)?;
    let src6 = Ipv6Addr::from(h.src);
    let dst6 = Ipv6Addr::from(h.dst);
    let dst4 = extract(dst6);
    if h.next_header == IpProtocol::ICMPV6 {
        let msg_type = *l4.first().ok_or(NatError::Truncated)?;
        if crate::nat::is_icmpv6_error(msg_type) {
            return icmp6_error_to_v4(&h, l4, new_src, dst4, new_src_port, out);
        }
    }
    let (protocol, kind) = kind_6to4(h.next_header, l4)?;
    let total = V4_HEADER_LEN + l4.len();
    if total > usize::from(u16::MAX) {
        return Err(NatError::Unsupported);
    }
    let out = out.get_mut(..total).ok_or(NatError::Truncated)?;
    emit_v4(
        out,
        h.traffic_class,
        h.hop_limit,
        protocol,
        l4.len(),
        new_src,
        dst4,
    )?;
    let x = L4Xlate {
        kind,
        port_at: 0,
        new_port: new_src_port,
        old_pseudo: pseudo_v6(src6, dst6, h.next_header, l4.len()),
        new_pseudo: pseudo_v4(kind, new_src, dst4, protocol, l4.len()),
    };
    let out_l4 = out.get_mut(V4_HEADER_LEN..).ok_or(NatError::Truncated)?;
    translate_l4(l4, out_l4, &x, true)?;
    Ok(total)
}

fn icmp6_error_to_v4(
    h: &crate::ipv6::Ipv6Fields,
    icmp: &[u8],
    new_src: Ipv4Addr,
    dst4: Ipv4Addr,
    new_src_port: Option<u16>,
    out: &mut [u8],
) -> Result<usize, NatError> {
    if icmp.len() < ICMP_HEADER_LEN {
        return Err(NatError::Truncated);
    }
    let rest = read_u32_be(icmp, 4).unwrap_or(0);
    let (msg_type, code, rest) = icmp_error_6to4(u8_at(icmp, 0), u8_at(icmp, 1), rest)?;
    let inner = icmp.get(ICMP_HEADER_LEN..).unwrap_or_default();
    let ih = inner
        .first_chunk::<V6_HEADER_LEN>()
        .ok_or(NatError::Truncated)?;
    if ih[0] >> 4 != 6 {
        return Err(NatError::Unsupported);
    }
    let inner_tc = (u16::from_be_bytes([ih[0], ih[1]]) >> 4) as u8;
    let orig_len = usize::from(u16::from_be_bytes([ih[4], ih[5]]));
    let inner_nh = IpProtocol(ih[6]);
    let inner_hop = ih[7];
    let addr = |at: usize| {
        inner
            .get(at..at + 16)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map_or(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from)
    };
    let (inner_src6, inner_dst6) = (addr(8), addr(24));
    let inner_l4 = inner.get(V6_HEADER_LEN..).unwrap_or_default();
    let (inner_proto, kind) = kind_6to4(inner_nh, inner_l4)?;
    if V4_HEADER_LEN + orig_len > usize::from(u16::MAX) {
        return Err(NatError::Unsupported);
    }
    let room = MAX_ICMPV4_ERROR - 2 * V4_HEADER_LEN - ICMP_HEADER_LEN;
    let present = inner_l4.len().min(orig_len).min(room);
    let inner_l4 = inner_l4.get(..present).unwrap_or_default();

    let msg_len = ICMP_HEADER_LEN + V4_HEADER_LEN + present;
    let total = V4_HEADER_LEN + msg_len;
    let out = out.get_mut(..total).ok_or(NatError::Truncated)?;
    emit_v4(
        out,
        h.traffic_class,
        h.hop_limit,
        IpProtocol::ICMP,
        msg_len,
        new_src,
        dst4,
    )?;
    let msg = out.get_mut(V4_HEADER_LEN..).ok_or(NatError::Truncated)?;
    msg.get_mut(..ICMP_HEADER_LEN)
        .ok_or(NatError::Truncated)?
        .copy_from_slice(&[msg_type, code, 0, 0, 0, 0, 0, 0]);
    write_u32_be(msg, 4, rest);
    let inner_src4 = extract(inner_src6);
    let inner_out = msg.get_mut(ICMP_HEADER_LEN..).ok_or(NatError::Truncated)?;
    emit_v4(
        inner_out,
        inner_tc,
        inner_hop,
        inner_proto,
        orig_len,
        inner_src4,
        new_src,
    )?;
    let x = L4Xlate {
        kind,
        port_at: 2,
        new_port: new_src_port,
        old_pseudo: pseudo_v6(inner_src6, inner_dst6, inner_nh, orig_len),
        new_pseudo: pseudo_v4(kind, inner_src4, new_src, inner_proto, orig_len),
    };
    let inner_l4_out = inner_out
        .get_mut(V4_HEADER_LEN..)
        .ok_or(NatError::Truncated)?;
    translate_l4(inner_l4, inner_l4_out, &x, false)?;
    let check = checksum::finish(checksum::data(msg));
    write_u16_be(msg, 2, check);
    Ok(total)
}

/// Translates an IPv4 packet to IPv6 (RFC 7915 §4), for the reply direction of NAT64: source
/// `new_src` (normally [`embed`]`(src)`), destination `new_dst` (the VM), traffic class = TOS, hop
/// limit = TTL, flow label 0; IPv4 options are dropped; a fragment is `Unsupported`. The payload
/// must be:
///
/// * TCP or UDP: the destination port becomes `new_dst_port` if `Some`; the checksum is patched for
///   the IPv6 pseudo header and the port (an IPv4 UDP checksum of 0 is computed fresh);
/// * an ICMP echo request/reply: ICMPv6 echo request/reply, identifier `new_dst_port` if `Some`,
///   the checksum patched to cover the IPv6 pseudo header;
/// * an ICMPv4 error about a packet that went out through NAT64 (RFC 7915 §4.2: destination
///   unreachable, time exceeded, parameter problem; "fragmentation needed" becomes packet too big
///   with the MTU + 20; the rest is `Unsupported`): the quoted IPv4 packet is translated too, its
///   source becoming `new_dst` (the VM), its destination [`embed`]`(quoted dst)`, and its source
///   port (echo: identifier) `new_dst_port` if `Some`.
///
/// Writes the IPv6 packet at the start of `out` and returns its length; `Truncated` if `out` is too
/// short or the packet is cut.
pub fn v4_to_v6(
    l3: &[u8],
    new_src: Ipv6Addr,
    new_dst: Ipv6Addr,
    new_dst_port: Option<u16>,
    out: &mut [u8],
) -> Result<usize, NatError> {
    let h = v4_header(l3)?;
    if h.more_frags || h.later_fragment {
        return Err(NatError::Unsupported);
    }
    let l4 = l3
        .get(h.header_len..h.total_len)
        .ok_or(NatError::Truncated)?;
    let protocol = IpProtocol(h.protocol);
    let tos = u8_at(l3, 1);
    let ttl = u8_at(l3, 8);
    let src4 = Ipv4Addr::from(read_u32_be(l3, 12).unwrap_or(0));
    let dst4 = Ipv4Addr::from(read_u32_be(l3, 16).unwrap_or(0));
    if protocol == IpProtocol::ICMP {
        let msg_type = *l4.first().ok_or(NatError::Truncated)?;
        if crate::nat::is_icmpv4_error(msg_type) {
            return icmp4_error_to_v6(tos, ttl, l4, new_src, new_dst, new_dst_port, out);
        }
    }
    let (next_header, kind) = kind_4to6(protocol, l4)?;
    let total = V6_HEADER_LEN + l4.len();
    let out = out.get_mut(..total).ok_or(NatError::Truncated)?;
    emit_v6(out, tos, ttl, next_header, l4.len(), new_src, new_dst)?;
    let x = L4Xlate {
        kind,
        port_at: 2,
        new_port: new_dst_port,
        old_pseudo: pseudo_v4(kind, src4, dst4, protocol, l4.len()),
        new_pseudo: pseudo_v6(new_src, new_dst, next_header, l4.len()),
    };
    let out_l4 = out.get_mut(V6_HEADER_LEN..).ok_or(NatError::Truncated)?;
    translate_l4(l4, out_l4, &x, true)?;
    if kind == L4Kind::Udp && read_u16_be(l4, 6) == Some(0) {
        // No checksum over IPv4; mandatory over IPv6 (RFC 8200 §8.1).
        let check = checksum::transport_v6(
            &new_src,
            &new_dst,
            IpProtocol::UDP,
            out_l4.get(..l4.len()).unwrap_or_default(),
        );
        write_u16_be(out_l4, 6, if check == 0 { 0xffff } else { check });
    }
    Ok(total)
}

fn icmp4_error_to_v6(
    tos: u8,
    ttl: u8,
    icmp: &[u8],
    new_src: Ipv6Addr,
    new_dst: Ipv6Addr,
    new_dst_port: Option<u16>,
    out: &mut [u8],
) -> Result<usize, NatError> {
    if icmp.len() < ICMP_HEADER_LEN {
        return Err(NatError::Truncated);
    }
    let inner = icmp.get(ICMP_HEADER_LEN..).unwrap_or_default();
    let ih = inner
        .first_chunk::<V4_HEADER_LEN>()
        .ok_or(NatError::Truncated)?;
    if ih[0] >> 4 != 4 {
        return Err(NatError::Unsupported);
    }
    let inner_hl = usize::from(ih[0] & 0x0f) * 4;
    let inner_total = u16::from_be_bytes([ih[2], ih[3]]);
    if inner_hl < V4_HEADER_LEN || usize::from(inner_total) < inner_hl {
        return Err(NatError::Unsupported);
    }
    if u16::from_be_bytes([ih[6], ih[7]]) & 0x1fff != 0 {
        return Err(NatError::Unsupported);
    }
    let rest = read_u32_be(icmp, 4).unwrap_or(0);
    let (msg_type, code, rest) =
        icmp_error_4to6(u8_at(icmp, 0), u8_at(icmp, 1), rest, inner_total)?;
    let orig_len = usize::from(inner_total) - inner_hl;
    let inner_tos = ih[1];
    let inner_ttl = ih[8];
    let inner_proto = IpProtocol(ih[9]);
    let inner_src4 = Ipv4Addr::new(ih[12], ih[13], ih[14], ih[15]);
    let inner_dst4 = Ipv4Addr::new(ih[16], ih[17], ih[18], ih[19]);
    let inner_l4 = inner.get(inner_hl..).ok_or(NatError::Truncated)?;
    let (inner_nh, kind) = kind_4to6(inner_proto, inner_l4)?;
    let room = MAX_ICMPV6_ERROR - 2 * V6_HEADER_LEN - ICMP_HEADER_LEN;
    let present = inner_l4.len().min(orig_len).min(room);
    let inner_l4 = inner_l4.get(..present).unwrap_or_default();

    let msg_len = ICMP_HEADER_LEN + V6_HEADER_LEN + present;
    let total = V6_HEADER_LEN + msg_len;
    let out = out.get_mut(..total).ok_or(NatError::Truncated)?;
    emit_v6(out, tos, ttl, IpProtocol::ICMPV6, msg_len, new_src, new_dst)?;
    let msg = out.get_mut(V6_HEADER_LEN..).ok_or(NatError::Truncated)?;
    msg.get_mut(..ICMP_HEADER_LEN)
        .ok_or(NatError::Truncated)?
        .copy_from_slice(&[msg_type, code, 0, 0, 0, 0, 0, 0]);
    write_u32_be(msg, 4, rest);
    let inner_dst6 = embed(inner_dst4);
    let inner_out = msg.get_mut(ICMP_HEADER_LEN..).ok_or(NatError::Truncated)?;
    emit_v6(
        inner_out, inner_tos, inner_ttl, inner_nh, orig_len, new_dst, inner_dst6,
    )?;
    let x = L4Xlate {
        kind,
        port_at: 0,
        new_port: new_dst_port,
        old_pseudo: pseudo_v4(kind, inner_src4, inner_dst4, inner_proto, orig_len),
        new_pseudo: pseudo_v6(new_dst, inner_dst6, inner_nh, orig_len),
    };
    let inner_l4_out = inner_out
        .get_mut(V6_HEADER_LEN..)
        .ok_or(NatError::Truncated)?;
    translate_l4(inner_l4, inner_l4_out, &x, false)?;
    let check = checksum::transport_v6(&new_src, &new_dst, IpProtocol::ICMPV6, msg);
    write_u16_be(msg, 2, check);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::build::*;
    use crate::TcpFlags;
    use proptest::prelude::*;

    const NAT: Ipv4Addr = Ipv4Addr::new(45, 86, 6, 6);
    const REMOTE: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);
    const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

    fn vm() -> Ipv6Addr {
        "2001:db8::5".parse().unwrap()
    }

    /// The IPv4 header fields a v6→v4 translation gives for hop limit 63 / traffic class 0x28.
    fn h4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol) -> V4 {
        V4 {
            ident: 0,
            ..V4::new(src, dst, proto)
        }
    }

    fn xlate64(p: &[u8], port: Option<u16>) -> Vec<u8> {
        let mut out = vec![0u8; 1600];
        let n = v6_to_v4(p, NAT, port, &mut out).unwrap();
        out.truncate(n);
        check4(&out);
        out
    }

    fn xlate46(p: &[u8], port: Option<u16>) -> Vec<u8> {
        let mut out = vec![0u8; 1600];
        let n = v4_to_v6(p, embed(extract_src(p)), vm(), port, &mut out).unwrap();
        out.truncate(n);
        check6(&out);
        out
    }

    fn extract_src(p: &[u8]) -> Ipv4Addr {
        Ipv4Addr::new(p[12], p[13], p[14], p[15])
    }

    #[test]
    fn prefix_helpers() {
        assert_eq!(
            embed(REMOTE),
            "64:ff9b::5db8:d822".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(extract(embed(REMOTE)), REMOTE);
        assert!(is_nat64(embed(REMOTE)));
        assert!(!is_nat64(vm()));
        assert!(!is_nat64("64:ff9b:1::1".parse().unwrap()));
    }

    #[test]
    fn tcp_both_directions() {
        let p6 = ip6(
            vm(),
            embed(REMOTE),
            IpProtocol::TCP,
            63,
            &tcp(40000, 443, TcpFlags::SYN, b"syn data"),
            true,
        );
        check6(&p6);
        let p4 = xlate64(&p6, Some(1025));
        assert_eq!(
            p4,
            ip4(
                h4(NAT, REMOTE, IpProtocol::TCP),
                &tcp(1025, 443, TcpFlags::SYN, b"syn data"),
                true
            )
        );
        // Without a port.
        let p4 = xlate64(&p6, None);
        assert_eq!(
            p4,
            ip4(
                h4(NAT, REMOTE, IpProtocol::TCP),
                &tcp(40000, 443, TcpFlags::SYN, b"syn data"),
                true
            )
        );

        let reply4 = ip4(
            V4::new(REMOTE, NAT, IpProtocol::TCP),
            &tcp(443, 1025, TcpFlags::SYN | TcpFlags::ACK, b"hi"),
            true,
        );
        let reply6 = xlate46(&reply4, Some(40000));
        assert_eq!(
            reply6,
            ip6(
                embed(REMOTE),
                vm(),
                IpProtocol::TCP,
                63,
                &tcp(443, 40000, TcpFlags::SYN | TcpFlags::ACK, b"hi"),
                true
            )
        );
    }

    #[test]
    fn udp_both_directions() {
        let p6 = ip6(
            vm(),
            embed(REMOTE),
            IpProtocol::UDP,
            63,
            &udp(40000, 53, b"query"),
            true,
        );
        let p4 = xlate64(&p6, Some(1025));
        assert_eq!(
            p4,
            ip4(
                h4(NAT, REMOTE, IpProtocol::UDP),
                &udp(1025, 53, b"query"),
                true
            )
        );

        let reply = V4::new(REMOTE, NAT, IpProtocol::UDP);
        let expected = ip6(
            embed(REMOTE),
            vm(),
            IpProtocol::UDP,
            63,
            &udp(53, 40000, b"answer"),
            true,
        );
        assert_eq!(
            xlate46(&ip4(reply, &udp(53, 1025, b"answer"), true), Some(40000)),
            expected
        );
        // No checksum over IPv4: computed over IPv6.
        assert_eq!(
            xlate46(&ip4(reply, &udp(53, 1025, b"answer"), false), Some(40000)),
            expected
        );
    }

    #[test]
    fn echo_both_directions() {
        let p6 = ip6(
            vm(),
            embed(REMOTE),
            IpProtocol::ICMPV6,
            63,
            &echo6(true, 0x1111, 3, b"ping"),
            true,
        );
        let p4 = xlate64(&p6, Some(0x2222));
        assert_eq!(
            p4,
            ip4(
                h4(NAT, REMOTE, IpProtocol::ICMP),
                &echo4(true, 0x2222, 3, b"ping"),
                false
            )
        );

        let r4 = ip4(
            V4::new(REMOTE, NAT, IpProtocol::ICMP),
            &echo4(false, 0x2222, 3, b"ping"),
            false,
        );
        let r6 = xlate46(&r4, Some(0x1111));
        assert_eq!(
            r6,
            ip6(
                embed(REMOTE),
                vm(),
                IpProtocol::ICMPV6,
                63,
                &echo6(false, 0x1111, 3, b"ping"),
                true
            )
        );
        // A request from outside, the reply from the VM.
        let q4 = ip4(
            V4::new(REMOTE, NAT, IpProtocol::ICMP),
            &echo4(true, 7, 1, b""),
            false,
        );
        assert_eq!(xlate46(&q4, None)[40], 128);
    }

    /// The VM's ICMPv6 error about an inbound packet that came through NAT64.
    #[test]
    fn icmpv6_errors_to_v4() {
        // The inbound packet as the remote sent it, and as the VM got it.
        let in4 = ip4(
            V4::new(REMOTE, NAT, IpProtocol::UDP),
            &udp(53, 1025, b"answer"),
            true,
        );
        let in6 = xlate46(&in4, Some(40000));
        for (t6, c6, rest6, t4, c4, rest4) in [
            (1u8, 4u8, 0u32, 3u8, 3u8, 0u32),
            (1, 0, 0, 3, 1, 0),
            (1, 1, 0, 3, 10, 0),
            (2, 0, 1400, 3, 4, 1380),
            (3, 0, 0, 11, 0, 0),
            (4, 0, 7, 12, 0, 8 << 24),
            (4, 1, 6, 3, 2, 0),
        ] {
            let e6 = ip6(
                vm(),
                embed(REMOTE),
                IpProtocol::ICMPV6,
                63,
                &icmp6(t6, c6, rest6, &in6),
                true,
            );
            check6(&e6);
            let e4 = xlate64(&e6, Some(1025));
            // The quoted packet as the remote would recognize it (its own, with ID 0 and DF, and
            // the TTL and TOS it arrived with).
            let quoted = ip4(
                V4 {
                    ident: 0,
                    tos: 0x28,
                    ..V4::new(REMOTE, NAT, IpProtocol::UDP)
                },
                &udp(53, 1025, b"answer"),
                true,
            );
            let expected = ip4(
                h4(NAT, REMOTE, IpProtocol::ICMP),
                &error4(t4, c4, rest4, &quoted),
                false,
            );
            assert_eq!(e4, expected, "type {t6} code {c6}");
            let q = crate::nat::icmp_error_quote_v4(&e4).unwrap();
            assert_eq!(
                (q.src, q.dst, q.src_port, q.dst_port),
                (REMOTE, NAT, 53, 1025)
            );
        }
        // Unsupported codes and types.
        for (t, c) in [(1u8, 5u8), (4, 2), (3, 2)] {
            let e6 = ip6(
                vm(),
                embed(REMOTE),
                IpProtocol::ICMPV6,
                63,
                &icmp6(t, c, 0, &in6),
                true,
            );
            assert_eq!(
                v6_to_v4(&e6, NAT, None, &mut [0; 1600]),
                Err(NatError::Unsupported)
            );
        }
    }

    /// A router's ICMPv4 error about a packet the VM sent through NAT64.
    #[test]
    fn icmpv4_errors_to_v6() {
        let out6 = ip6(
            vm(),
            embed(REMOTE),
            IpProtocol::UDP,
            63,
            &udp(40000, 53, b"query"),
            true,
        );
        let out4 = xlate64(&out6, Some(1025));
        for (t4, c4, rest4, t6, c6, rest6) in [
            (3u8, 3u8, 0u32, 1u8, 4u8, 0u32),
            (3, 1, 0, 1, 0, 0),
            (3, 13, 0, 1, 1, 0),
            (3, 2, 0, 4, 1, 6),
            (3, 4, 1400, 2, 0, 1420),
            (3, 4, 0, 2, 0, 1280),
            (11, 0, 0, 3, 0, 0),
            (12, 0, 9 << 24, 4, 0, 6),
        ] {
            let e4 = ip4(
                V4::new(ROUTER, NAT, IpProtocol::ICMP),
                &error4(t4, c4, rest4, &out4),
                false,
            );
            let mut out = vec![0u8; 1600];
            let n = v4_to_v6(&e4, embed(ROUTER), vm(), Some(40000), &mut out).unwrap();
            let e6 = &out[..n];
            check6(e6);
            // The quoted packet: the VM's own, with the hop limit and class it left with.
            let quoted = ip6(
                vm(),
                embed(REMOTE),
                IpProtocol::UDP,
                63,
                &udp(40000, 53, b"query"),
                true,
            );
            let expected = ip6(
                embed(ROUTER),
                vm(),
                IpProtocol::ICMPV6,
                63,
                &icmp6(t6, c6, rest6, &quoted),
                true,
            );
            assert_eq!(e6, &expected[..], "type {t4} code {c4}");
            let q = crate::nat::icmp_error_quote_v6(e6).unwrap();
            assert_eq!(q.flow_key(), crate::FlowKey::of_header(&out6));
        }
        for (t, c) in [(3u8, 14u8), (5, 0), (4, 0), (12, 1)] {
            let e4 = ip4(
                V4::new(ROUTER, NAT, IpProtocol::ICMP),
                &error4(t, c, 0, &out4),
                false,
            );
            assert_eq!(
                v4_to_v6(&e4, embed(ROUTER), vm(), None, &mut [0; 1600]),
                Err(NatError::Unsupported)
            );
        }
    }

    #[test]
    fn quoted_tcp_without_checksum_and_echo() {
        let out6 = ip6(
            vm(),
            embed(REMOTE),
            IpProtocol::TCP,
            63,
            &tcp(40000, 443, TcpFlags::SYN, b""),
            true,
        );
        let out4 = xlate64(&out6, Some(1025));
        // Only 8 bytes of TCP quoted.
        let e4 = ip4(
            V4::new(ROUTER, NAT, IpProtocol::ICMP),
            &error4(11, 0, 0, &out4[..28]),
            false,
        );
        let mut out = vec![0u8; 1600];
        let n = v4_to_v6(&e4, embed(ROUTER), vm(), Some(40000), &mut out).unwrap();
        check6(&out[..n]);
        assert_eq!(&out[48..48 + 48], &out6[..48]);

        let ping6 = ip6(
            vm(),
            embed(REMOTE),
            IpProtocol::ICMPV6,
            63,
            &echo6(true, 0x1111, 1, b"abcd"),
            true,
        );
        let ping4 = xlate64(&ping6, Some(0x2222));
        let e4 = ip4(
            V4::new(ROUTER, NAT, IpProtocol::ICMP),
            &error4(11, 0, 0, &ping4),
            false,
        );
        let n = v4_to_v6(&e4, embed(ROUTER), vm(), Some(0x1111), &mut out).unwrap();
        check6(&out[..n]);
        assert_eq!(&out[48..n], &ping6[..]);
    }

    #[test]
    fn long_quotes_are_cut() {
        let payload = vec![0xabu8; 1400];
        let out6 = ip6(
            vm(),
            embed(REMOTE),
            IpProtocol::UDP,
            63,
            &udp(40000, 53, &payload),
            true,
        );
        let mut big4 = vec![0u8; 1600];
        let n = v6_to_v4(&out6, NAT, Some(1025), &mut big4).unwrap();
        let e4 = ip4(
            V4::new(ROUTER, NAT, IpProtocol::ICMP),
            &error4(3, 4, 1400, &big4[..n]),
            false,
        );
        let mut out = vec![0u8; 2000];
        let n = v4_to_v6(&e4, embed(ROUTER), vm(), Some(40000), &mut out).unwrap();
        assert_eq!(n, 1280);
        check6(&out[..n]);
        // Inner header keeps the original length.
        assert_eq!(u16::from_be_bytes([out[52], out[53]]), 1408);

        let in4 = ip4(
            V4::new(REMOTE, NAT, IpProtocol::UDP),
            &udp(53, 1025, &payload),
            true,
        );
        let in6 = xlate46(&in4, Some(40000));
        let e6 = ip6(
            vm(),
            embed(REMOTE),
            IpProtocol::ICMPV6,
            63,
            &icmp6(1, 4, 0, &in6),
            true,
        );
        let n = v6_to_v4(&e6, NAT, Some(1025), &mut out).unwrap();
        assert_eq!(n, 576);
        check4(&out[..n]);
    }

    #[test]
    fn unsupported_and_small_output() {
        // A Fragment header (or any extension header).
        let mut p6 = ip6(
            vm(),
            embed(REMOTE),
            IpProtocol::UDP,
            63,
            &udp(1, 2, b"x"),
            true,
        );
        p6[6] = 44;
        assert_eq!(
            v6_to_v4(&p6, NAT, None, &mut [0; 200]),
            Err(NatError::Unsupported)
        );
        p6[6] = 0;
        assert_eq!(
            v6_to_v4(&p6, NAT, None, &mut [0; 200]),
            Err(NatError::Unsupported)
        );
        // An IPv4 fragment.
        let mut p4 = ip4(
            V4::new(REMOTE, NAT, IpProtocol::UDP),
            &udp(1, 2, b"x"),
            true,
        );
        p4[6] |= 0x20;
        assert_eq!(
            v4_to_v6(&p4, vm(), vm(), None, &mut [0; 200]),
            Err(NatError::Unsupported)
        );
        // Other protocols, versions.
        let gre = ip4(V4::new(REMOTE, NAT, IpProtocol(47)), &[0; 8], false);
        assert_eq!(
            v4_to_v6(&gre, vm(), vm(), None, &mut [0; 200]),
            Err(NatError::Unsupported)
        );
        assert_eq!(
            v6_to_v4(&gre, NAT, None, &mut [0; 200]),
            Err(NatError::Unsupported)
        );
        assert_eq!(
            v4_to_v6(&p6, vm(), vm(), None, &mut [0; 200]),
            Err(NatError::Unsupported)
        );

        // Output one byte short, at every size.
        let t6 = ip6(
            vm(),
            embed(REMOTE),
            IpProtocol::TCP,
            63,
            &tcp(1, 2, TcpFlags::SYN, b"abc"),
            true,
        );
        let need = t6.len() - 20;
        for size in 0..need {
            assert_eq!(
                v6_to_v4(&t6, NAT, None, &mut vec![0; size]),
                Err(NatError::Truncated)
            );
        }
        assert_eq!(v6_to_v4(&t6, NAT, None, &mut vec![0; need]), Ok(need));
        let t4 = ip4(
            V4::new(REMOTE, NAT, IpProtocol::TCP),
            &tcp(1, 2, TcpFlags::SYN, b"abc"),
            true,
        );
        let need = t4.len() + 20;
        for size in 0..need {
            assert_eq!(
                v4_to_v6(&t4, vm(), vm(), None, &mut vec![0; size]),
                Err(NatError::Truncated)
            );
        }
        assert_eq!(
            v4_to_v6(&t4, vm(), vm(), None, &mut vec![0; need]),
            Ok(need)
        );
    }

    #[test]
    fn truncated_inputs_never_panic() {
        let in4 = ip4(
            V4::new(REMOTE, NAT, IpProtocol::UDP),
            &udp(53, 1025, b"answer"),
            true,
        );
        let in6 = xlate46(&in4, Some(40000));
        let e6 = ip6(
            vm(),
            embed(REMOTE),
            IpProtocol::ICMPV6,
            63,
            &icmp6(1, 4, 0, &in6),
            true,
        );
        let ping6 = ip6(
            vm(),
            embed(REMOTE),
            IpProtocol::ICMPV6,
            63,
            &echo6(true, 1, 1, b"abcd"),
            true,
        );
        let tcp6 = ip6(
            vm(),
            embed(REMOTE),
            IpProtocol::TCP,
            63,
            &tcp(1, 2, TcpFlags::SYN, b""),
            true,
        );
        let e4 = ip4(
            V4::new(ROUTER, NAT, IpProtocol::ICMP),
            &error4(3, 3, 0, &in4),
            false,
        );
        let ping4 = ip4(
            V4::new(REMOTE, NAT, IpProtocol::ICMP),
            &echo4(true, 1, 1, b"abcd"),
            false,
        );
        let mut out = vec![0u8; 1600];
        for p in [&in4, &in6, &e6, &ping6, &tcp6, &e4, &ping4] {
            for len in 0..=p.len() {
                for fix in [false, true] {
                    let mut cut = p[..len].to_vec();
                    if fix && len >= 6 {
                        if cut[0] >> 4 == 6 {
                            let l = len.saturating_sub(40) as u16;
                            cut[4..6].copy_from_slice(&l.to_be_bytes());
                        } else {
                            cut[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                        }
                    }
                    for port in [None, Some(9)] {
                        let r = v6_to_v4(&cut, NAT, port, &mut out);
                        if !fix && len < p.len() {
                            assert!(r.is_err());
                        }
                        let r = v4_to_v6(&cut, vm(), vm(), port, &mut out);
                        if !fix && len < p.len() {
                            assert!(r.is_err());
                        }
                        if let Ok(n) = r {
                            assert!(n <= out.len());
                        }
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn translations_keep_checksums_valid(
            v6 in any::<u128>(),
            v4 in any::<u32>(),
            sport in any::<u16>(),
            dport in any::<u16>(),
            port in any::<Option<u16>>(),
            kind in 0u8..3,
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let vm6 = Ipv6Addr::from(v6);
            let remote = Ipv4Addr::from(v4);
            let (nh, proto, l6, l4) = match kind {
                0 => (IpProtocol::TCP, IpProtocol::TCP, tcp(sport, dport, TcpFlags::ACK, &payload), tcp(dport, sport, TcpFlags::ACK, &payload)),
                1 => (IpProtocol::UDP, IpProtocol::UDP, udp(sport, dport, &payload), udp(dport, sport, &payload)),
                _ => (IpProtocol::ICMPV6, IpProtocol::ICMP, echo6(true, sport, dport, &payload), echo4(false, sport, dport, &payload)),
            };
            let p6 = ip6(vm6, embed(remote), nh, 9, &l6, true);
            let mut out = vec![0u8; 200];
            let n = v6_to_v4(&p6, NAT, port, &mut out).unwrap();
            check4(&out[..n]);
            let key = crate::FlowKey::of_header(&out[..n]);
            prop_assert_eq!((key.src_v4(), key.dst_v4()), (NAT, remote));
            prop_assert_eq!(key.src_port, port.unwrap_or(sport));

            let p4 = ip4(V4::new(remote, NAT, proto), &l4, kind != 1 || sport & 1 == 0);
            let n = v4_to_v6(&p4, embed(remote), vm6, port, &mut out).unwrap();
            check6(&out[..n]);
            let key = crate::FlowKey::of_header(&out[..n]);
            prop_assert_eq!((key.src, key.dst), (u128::from(embed(remote)), v6));
            prop_assert_eq!(key.dst_port, port.unwrap_or(sport));
        }
    }
}
