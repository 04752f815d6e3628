//! Small helpers the nodes share: finding the VM behind a port, and writing the fixed headers of the
//! replies the dataplane builds in place.

use dp_packet::{
    EtherType, EthernetFrame, IpProtocol, Ipv4Addr, Ipv4Packet, Ipv6Addr, Ipv6Packet, MacAddr,
};
use dp_tables::{Iface, PortId};

use crate::drop::DropReason;
use crate::node::Ctx;
use crate::port_table::PortEntry;

pub(crate) const ETH_HEADER_LEN: usize = dp_packet::ethernet::HEADER_LEN;
pub(crate) const IPV4_HEADER_LEN: usize = dp_packet::ipv4::HEADER_LEN;
pub(crate) const IPV6_HEADER_LEN: usize = dp_packet::ipv6::HEADER_LEN;
pub(crate) const UDP_HEADER_LEN: usize = dp_packet::udp::HEADER_LEN;

/// TTL / hop limit of the packets the gateway originates (replies, errors).
pub(crate) const REPLY_TTL: u8 = 64;

/// What encapsulation adds in front of an overlay packet: the outer IPv6 header (the Ethernet
/// header is replaced, not added).
pub const OUTER_HEADER_LEN: usize = IPV6_HEADER_LEN;

/// Our IPv6 link-local address on a port: fe80::/64 with the modified EUI-64 of our MAC there
/// (RFC 4291 appendix A), as Linux would derive it for the same MAC.
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// Reads a big-endian u16 at `at`, if it is there.
#[inline]
pub(crate) fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

/// The port a packet came in on and the VM interface bound to it.
#[inline]
pub(crate) fn vm_port<'a>(
    ctx: &Ctx<'a>,
    port: PortId,
) -> Result<(&'a PortEntry, &'a Iface), DropReason> {
    let entry = ctx.ports.get(port).ok_or(DropReason::NoInterface)?;
    let iface = ctx.tables.iface(port).ok_or(DropReason::NoInterface)?;
    Ok((entry, iface))
}

/// Writes an Ethernet header at the start of `frame` (which must hold at least 14 bytes).
#[inline]
pub(crate) fn write_eth(frame: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: EtherType) {
    let mut eth = EthernetFrame::new_unchecked(frame);
    eth.set_dst_addr(dst);
    eth.set_src_addr(src);
    eth.set_ethertype(ethertype);
}

/// Writes a 20-byte IPv4 header (no options, not a fragment) with its checksum at the start of `buf`.
/// `payload_len` is the length of what follows the header.
pub(crate) fn write_ipv4(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    payload_len: usize,
) -> Result<(), DropReason> {
    let total = u16::try_from(IPV4_HEADER_LEN + payload_len).map_err(|_| DropReason::NoRoom)?;
    let header = buf.get_mut(..IPV4_HEADER_LEN).ok_or(DropReason::NoRoom)?;
    header.fill(0);
    let mut ip = Ipv4Packet::new_unchecked(header);
    ip.set_version(4);
    ip.set_header_len(IPV4_HEADER_LEN);
    ip.set_total_len(total);
    ip.set_ttl(REPLY_TTL);
    ip.set_protocol(protocol);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    Ok(())
}

/// Writes a 40-byte IPv6 header (traffic class and flow label zero) at the start of `buf`.
pub(crate) fn write_ipv6(
    buf: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: IpProtocol,
    hop_limit: u8,
    payload_len: usize,
) -> Result<(), DropReason> {
    let len = u16::try_from(payload_len).map_err(|_| DropReason::NoRoom)?;
    let header = buf.get_mut(..IPV6_HEADER_LEN).ok_or(DropReason::NoRoom)?;
    header.fill(0);
    let mut ip = Ipv6Packet::new_unchecked(header);
    ip.set_version(6);
    ip.set_payload_len(len);
    ip.set_next_header(next_header);
    ip.set_hop_limit(hop_limit);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    Ok(())
}

/// The fields of an IPv4 header the forwarding paths need, read once by [`parse_ipv4`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ipv4Fields {
    pub header_len: usize,
    pub total_len: usize,
    pub ttl: u8,
    pub protocol: u8,
    /// Flags and fragment offset (bytes 6–7).
    pub flags_frag: u16,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// DSCP and ECN (the TOS byte).
    pub dscp_ecn: u8,
}

impl Ipv4Fields {
    /// The fragment offset in bytes (as [`Ipv4Packet::frag_offset`]).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_frag & 0x1fff) * 8
    }
}

/// Why [`parse_ipv4`] refused a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ipv4Refusal {
    /// Truncated, not version 4, IHL below 5, or a total length outside header..buffer
    /// ([`Ipv4Packet::check_len`]).
    Malformed,
    BadChecksum,
}

/// Validates the IPv4 header at the start of `l3` as [`Ipv4Packet::check_len`] and
/// [`Ipv4Packet::verify_checksum`] do, and returns its fields — one pass over a fixed 20-byte
/// array instead of a bounds-checked accessor per field (the hot path's header check).
#[inline(always)]
pub(crate) fn parse_ipv4(l3: &[u8]) -> Result<Ipv4Fields, Ipv4Refusal> {
    let Some(h) = l3.first_chunk::<IPV4_HEADER_LEN>() else {
        return Err(Ipv4Refusal::Malformed);
    };
    // The five words are loaded once and serve both the checksum and the fields (read
    // little-endian: the byte order a ones' complement sum does not care about, and the cheap one
    // on the machines this runs on; `swap_bytes` gives the big-endian field values).
    let (words, _) = h.as_chunks::<4>();
    let [w0, w1, w2, w3, w4] =
        [0, 1, 2, 3, 4].map(|i| words.get(i).map_or(0, |w| u32::from_le_bytes(*w)));
    let ver_ihl = w0 as u8;
    let header_len = usize::from(ver_ihl & 0x0f) * 4;
    let total_len = usize::from(((w0 >> 16) as u16).swap_bytes());
    if ver_ihl >> 4 != 4
        || header_len < IPV4_HEADER_LEN
        || header_len > l3.len()
        || total_len < header_len
        || total_len > l3.len()
    {
        return Err(Ipv4Refusal::Malformed);
    }
    let checksum_ok = if header_len == IPV4_HEADER_LEN {
        let sum = u64::from(w0) + u64::from(w1) + u64::from(w2) + u64::from(w3) + u64::from(w4);
        fold_u64(sum) == 0xffff
    } else {
        Ipv4Packet::new_unchecked(l3).verify_checksum()
    };
    if !checksum_ok {
        return Err(Ipv4Refusal::BadChecksum);
    }
    Ok(Ipv4Fields {
        header_len,
        total_len,
        ttl: w2 as u8,
        protocol: (w2 >> 8) as u8,
        flags_frag: ((w1 >> 16) as u16).swap_bytes(),
        src: Ipv4Addr::from(w3.swap_bytes()),
        dst: Ipv4Addr::from(w4.swap_bytes()),
        dscp_ecn: (w0 >> 8) as u8,
    })
}

/// [`dp_packet::checksum::fold`] for any u64, without a loop (four folds always suffice).
#[inline(always)]
fn fold_u64(sum: u64) -> u16 {
    let s = (sum & 0xffff_ffff) + (sum >> 32); // < 2^33
    let s = (s & 0xffff) + (s >> 16); // < 2^17 + 2^16
    let s = (s & 0xffff) + (s >> 16); // ≤ 0xffff + 2
    let s = (s & 0xffff) + (s >> 16); // ≤ 0xffff
    s as u16
}

/// Decrements the TTL of the IPv4 header at the start of `l3` and patches its checksum
/// incrementally: the same bytes as [`Ipv4Packet::decrement_ttl`] (RFC 1624 with the same
/// arithmetic as [`dp_packet::checksum::update_u16`]), without the generic accessors.
#[inline(always)]
pub(crate) fn ipv4_decrement_ttl(l3: &mut [u8]) {
    let Some(h) = l3.first_chunk_mut::<IPV4_HEADER_LEN>() else {
        return;
    };
    let ttl = h[8];
    let check = u32::from(u16::from_be_bytes([h[10], h[11]]));
    let check = if ttl != 0 {
        // RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), where the 16-bit word m = TTL·256 + protocol
        // becomes m' = m − 256: in ones' complement arithmetic that is HC' = HC + 256, which is
        // the add with end-around carry below (as Linux's `ip_decrease_ttl`). Eqn. 3 never
        // gives 0xffff, so a sum of exactly 0xffff wraps to 0 as well.
        let sum = check + 0x100;
        sum + u32::from(sum >= 0xffff)
    } else {
        // A TTL of 0 stays 0 (~m + m' = 0xffff): only ones' complement's two zeros can change.
        let sum = (!check & 0xffff) + 0xffff;
        !((sum & 0xffff) + (sum >> 16))
    };
    let [hi, lo] = (check as u16).to_be_bytes();
    h[8] = ttl.saturating_sub(1);
    h[10] = hi;
    h[11] = lo;
}

#[cfg(test)]
mod tests {
    use super::*;
    use dp_packet::checksum;

    fn header(seed: u32) -> [u8; 20] {
        let mut h = [0u8; 20];
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        for b in h.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        h[0] = 0x45;
        h
    }

    #[test]
    fn fast_ttl_matches_dp_packet() {
        for seed in 0..20_000u32 {
            let mut h = header(seed);
            // Valid and invalid checksums alike.
            if seed % 3 != 0 {
                h[10] = 0;
                h[11] = 0;
                let c = checksum::finish(checksum::data(&h));
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            if seed % 7 == 0 {
                h[8] = (seed % 3) as u8; // TTL 0, 1, 2
            }
            let mut a = h;
            let mut b = h;
            ipv4_decrement_ttl(&mut a);
            Ipv4Packet::new_unchecked(&mut b[..]).decrement_ttl();
            assert_eq!(a, b, "seed {seed}");
        }
        for sum in [0u64, 0xffff, 0x1_0000, u64::MAX, 0xffff_ffff, 0x3_fffd] {
            assert_eq!(fold_u64(sum), checksum::fold(sum));
        }
    }

    /// The TTL shortcut gives the bytes of the general RFC 1624 update for every checksum.
    #[test]
    fn ttl_decrement_is_exhaustively_rfc1624() {
        for check in 0..=u16::MAX {
            for (ttl, proto) in [(0u8, 17u8), (1, 6), (2, 17), (64, 1), (255, 255)] {
                let mut h = header(u32::from(check));
                h[8] = ttl;
                h[9] = proto;
                h[10..12].copy_from_slice(&check.to_be_bytes());
                let mut a = h;
                ipv4_decrement_ttl(&mut a);
                let mut b = h;
                Ipv4Packet::new_unchecked(&mut b[..]).decrement_ttl();
                assert_eq!(a, b, "checksum {check:#06x} ttl {ttl}");
            }
        }
    }

    /// `parse_ipv4` refuses exactly what the `Ipv4Packet` view refuses, with the same fields.
    #[test]
    fn parse_ipv4_matches_the_view() {
        for seed in 0..20_000u32 {
            let h = header(seed);
            let buf_len = (seed as usize * 7) % 70;
            let mut buf = vec![0u8; buf_len.max(20)];
            buf[..20].copy_from_slice(&h);
            buf[0] = [0x45, 0x46, 0x44, 0x55, 0x4f][(seed % 5) as usize];
            let total = ((seed >> 3) % 72) as u16;
            buf[2..4].copy_from_slice(&total.to_be_bytes());
            if seed % 4 != 0 {
                buf[10] = 0;
                buf[11] = 0;
                let hl = usize::from(buf[0] & 0x0f) * 4;
                if hl <= buf.len() {
                    let c = checksum::finish(checksum::data(&buf[..hl]));
                    buf[10..12].copy_from_slice(&c.to_be_bytes());
                }
            }
            buf.truncate(buf_len);
            let view = Ipv4Packet::new_checked(&buf[..]);
            match parse_ipv4(&buf) {
                Err(Ipv4Refusal::Malformed) => assert!(view.is_err(), "seed {seed}"),
                Err(Ipv4Refusal::BadChecksum) => {
                    assert!(view.is_ok_and(|v| !v.verify_checksum()), "seed {seed}")
                }
                Ok(f) => {
                    let v = view.unwrap();
                    assert!(v.verify_checksum(), "seed {seed}");
                    assert_eq!(
                        (f.header_len, f.total_len, f.ttl, f.protocol, f.src, f.dst),
                        (
                            v.header_len(),
                            usize::from(v.total_len()),
                            v.ttl(),
                            v.protocol().0,
                            v.src_addr(),
                            v.dst_addr()
                        )
                    );
                    assert_eq!(
                        (f.frag_offset(), f.dscp_ecn),
                        (v.frag_offset(), v.dscp_ecn())
                    );
                }
            }
        }
    }
}
