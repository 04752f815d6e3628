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

/// Whether the IPv4 header at the start of `l3` (already length-checked, `header_len` bytes)
/// has a valid checksum: [`Ipv4Packet::verify_checksum`] with a fast path for the usual 20-byte
/// header (five 32-bit words summed without a loop).
#[inline]
pub(crate) fn ipv4_checksum_ok(l3: &[u8], header_len: usize) -> bool {
    if header_len == IPV4_HEADER_LEN {
        if let Some(h) = l3.first_chunk::<IPV4_HEADER_LEN>() {
            let (words, _) = h.as_chunks::<4>();
            let sum: u64 = words
                .iter()
                .map(|w| u64::from(u32::from_ne_bytes(*w)))
                .sum();
            // Ones' complement sums are byte-order independent: all ones either way.
            return fold_u64(sum) == 0xffff;
        }
    }
    Ipv4Packet::new_unchecked(l3).verify_checksum()
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
    let proto = h[9];
    let new = ttl.saturating_sub(1);
    let check = u16::from_be_bytes([h[10], h[11]]);
    let old_word = u16::from_be_bytes([ttl, proto]);
    let new_word = u16::from_be_bytes([new, proto]);
    let sum = u64::from(!check) + u64::from(!old_word) + u64::from(new_word);
    let [hi, lo] = (!fold_u64(sum)).to_be_bytes();
    h[8] = new;
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
    fn fast_checksum_and_ttl_match_dp_packet() {
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
            assert_eq!(
                ipv4_checksum_ok(&h, 20),
                Ipv4Packet::new_unchecked(&h[..]).verify_checksum(),
                "seed {seed}"
            );
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
}
