//! IPv4 (RFC 791). The header checksum (RFC 1071) is verified and filled here; options are exposed as
//! raw bytes. The payload ends at `total_length`, so Ethernet padding of short frames is not part of it.

use core::net::Ipv4Addr;

use crate::bytes::{array, set_bytes, set_u16, set_u8, slice, slice_mut, u16_at, u8_at};
use crate::checksum;
use crate::ip::IpProtocol;
use crate::{Error, Result};

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

const FLAG_DONT_FRAG: u16 = 0x4000;
const FLAG_MORE_FRAGS: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header (options included) fits, version is 4, IHL ≥ 5 and
    /// header length ≤ total length ≤ buffer length. The buffer may be longer (Ethernet padding).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 || self.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len < self.header_len() {
            return Err(Error::Truncated);
        }
        let total = usize::from(self.total_len());
        if total < self.header_len() {
            return Err(Error::Malformed);
        }
        if total > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version nibble (4 for a checked packet).
    pub fn version(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(u8_at(self.buffer.as_ref(), field::VER_IHL) & 0x0f) * 4
    }

    /// The whole DSCP/ECN (former TOS) byte.
    pub fn dscp_ecn(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::DSCP_ECN)
    }

    /// Differentiated services code point (upper 6 bits).
    pub fn dscp(&self) -> u8 {
        self.dscp_ecn() >> 2
    }

    /// Explicit congestion notification (lower 2 bits).
    pub fn ecn(&self) -> u8 {
        self.dscp_ecn() & 0x03
    }

    /// Total length field: header + payload.
    pub fn total_len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::IDENT)
    }

    fn flags_offset(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::FLG_OFF)
    }

    /// DF flag.
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DONT_FRAG != 0
    }

    /// MF flag.
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MORE_FRAGS != 0
    }

    /// Fragment offset in bytes (the field × 8).
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & FRAG_OFFSET_MASK) << 3
    }

    /// Part of a fragmented datagram (MF set or non-zero offset): no transport header may be present.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::TTL)
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(u8_at(self.buffer.as_ref(), field::PROTOCOL))
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buffer.as_ref(), field::SRC_ADDR))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buffer.as_ref(), field::DST_ADDR))
    }

    fn header_bytes(&self) -> &[u8] {
        slice(self.buffer.as_ref(), 0..self.header_len())
    }

    /// Whether the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        let header = self.header_bytes();
        header.len() >= HEADER_LEN && checksum::data(header) == 0xffff
    }
}

slice_accessors!(Ipv4Packet {
    /// The header bytes (options included).
    pub fn header(&self) -> &'a [u8] {
        slice(self.buffer.as_ref(), 0..self.header_len())
    }

    /// Raw options (between the fixed header and the payload).
    pub fn options(&self) -> &'a [u8] {
        slice(self.buffer.as_ref(), HEADER_LEN..self.header_len())
    }

    /// Payload, from the end of the header up to `total_length` (trailing padding excluded).
    pub fn payload(&self) -> &'a [u8] {
        slice(
            self.buffer.as_ref(),
            self.header_len()..usize::from(self.total_len()),
        )
    }
});

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version nibble.
    pub fn set_version(&mut self, version: u8) {
        let b = u8_at(self.buffer.as_ref(), field::VER_IHL);
        set_u8(
            self.buffer.as_mut(),
            field::VER_IHL,
            (b & 0x0f) | (version << 4),
        );
    }

    /// Sets the header length in bytes (rounded down to a multiple of 4, at most 60).
    pub fn set_header_len(&mut self, len: usize) {
        let ihl = (len / 4).min(15) as u8;
        let b = u8_at(self.buffer.as_ref(), field::VER_IHL);
        set_u8(self.buffer.as_mut(), field::VER_IHL, (b & 0xf0) | ihl);
    }

    /// Sets the DSCP/ECN byte.
    pub fn set_dscp_ecn(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::DSCP_ECN, value);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    fn update_flags_offset(&mut self, mask: u16, bits: u16) {
        let v = (self.flags_offset() & !mask) | (bits & mask);
        set_u16(self.buffer.as_mut(), field::FLG_OFF, v);
    }

    /// Clears DF, MF and the fragment offset.
    pub fn clear_flags(&mut self) {
        self.update_flags_offset(0xffff, 0);
    }

    /// Sets or clears DF.
    pub fn set_dont_frag(&mut self, value: bool) {
        self.update_flags_offset(FLAG_DONT_FRAG, if value { FLAG_DONT_FRAG } else { 0 });
    }

    /// Sets or clears MF.
    pub fn set_more_frags(&mut self, value: bool) {
        self.update_flags_offset(FLAG_MORE_FRAGS, if value { FLAG_MORE_FRAGS } else { 0 });
    }

    /// Sets the fragment offset in bytes (must be a multiple of 8; lower bits are dropped).
    pub fn set_frag_offset(&mut self, bytes: u16) {
        self.update_flags_offset(FRAG_OFFSET_MASK, bytes >> 3);
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::TTL, value);
    }

    /// Sets the protocol.
    pub fn set_protocol(&mut self, value: IpProtocol) {
        set_u8(self.buffer.as_mut(), field::PROTOCOL, value.0);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the source address (checksum not updated; see [`set_src_addr_incremental`](Self::set_src_addr_incremental)).
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::SRC_ADDR, &addr.octets());
    }

    /// Sets the destination address (checksum not updated).
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::DST_ADDR, &addr.octets());
    }

    /// Rewrites the source address and patches the header checksum (RFC 1624), for NAT.
    /// The transport checksum (which also covers the address) is the caller's to patch.
    pub fn set_src_addr_incremental(&mut self, addr: Ipv4Addr) {
        let old = u32::from(self.src_addr());
        let check = checksum::update_u32(self.checksum(), old, u32::from(addr));
        self.set_src_addr(addr);
        self.set_checksum(check);
    }

    /// Rewrites the destination address and patches the header checksum (RFC 1624).
    pub fn set_dst_addr_incremental(&mut self, addr: Ipv4Addr) {
        let old = u32::from(self.dst_addr());
        let check = checksum::update_u32(self.checksum(), old, u32::from(addr));
        self.set_dst_addr(addr);
        self.set_checksum(check);
    }

    /// Decrements the TTL (not below zero), patches the checksum, and returns the new TTL.
    pub fn decrement_ttl(&mut self) -> u8 {
        let ttl = self.ttl();
        let new = ttl.saturating_sub(1);
        let proto = self.protocol().0;
        let check = checksum::update_u16(
            self.checksum(),
            u16::from_be_bytes([ttl, proto]),
            u16::from_be_bytes([new, proto]),
        );
        self.set_ttl(new);
        self.set_checksum(check);
        new
    }

    /// Computes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let check = checksum::finish(checksum::data(self.header_bytes()));
        self.set_checksum(check);
    }

    /// Mutable options.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        slice_mut(self.buffer.as_mut(), HEADER_LEN..end)
    }

    /// Mutable payload, up to `total_length`.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        slice_mut(self.buffer.as_mut(), range)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An IPv4 header without options, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub protocol: IpProtocol,
    /// Payload length (total length − header length).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP/ECN byte.
    pub dscp_ecn: u8,
    /// Identification.
    pub ident: u16,
    /// DF.
    pub dont_frag: bool,
    /// MF.
    pub more_frags: bool,
    /// Fragment offset in bytes.
    pub frag_offset: u16,
}

impl Ipv4Repr {
    /// A plain header as the dataplane originates it (replies, errors): DSCP/ECN 0, identification
    /// 0, no flags, not a fragment.
    pub const fn new(
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        protocol: IpProtocol,
        payload_len: usize,
        ttl: u8,
    ) -> Ipv4Repr {
        Ipv4Repr {
            src_addr,
            dst_addr,
            protocol,
            payload_len,
            ttl,
            dscp_ecn: 0,
            ident: 0,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
        }
    }

    /// Reads the header of a packet, checking lengths and the header checksum; options are skipped.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()).saturating_sub(packet.header_len()),
            ttl: packet.ttl(),
            dscp_ecn: packet.dscp_ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
        })
    }

    /// Header length written by `emit`: 20.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with a valid checksum. `Truncated` if the buffer is shorter than the
    /// header, `Malformed` if the payload length does not fit the 16-bit total length.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) -> Result<()> {
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let total = self
            .payload_len
            .checked_add(HEADER_LEN)
            .and_then(|t| u16::try_from(t).ok())
            .ok_or(Error::Malformed)?;
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN);
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len(total);
        packet.set_ident(self.ident);
        packet.clear_flags();
        packet.set_dont_frag(self.dont_frag);
        packet.set_more_frags(self.more_frags);
        packet.set_frag_offset(self.frag_offset);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
        Ok(())
    }

    /// Writes the header at the start of `buf`, returning its length (20).
    pub fn emit_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.emit(&mut Ipv4Packet::new_unchecked(buf))?;
        Ok(HEADER_LEN)
    }
}

/// The fields of an IPv4 header the forwarding paths need, read once by [`parse_fields`].
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Fields {
    /// Header length in bytes (IHL × 4).
    pub header_len: usize,
    /// Total length.
    pub total_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Payload protocol number.
    pub protocol: u8,
    /// Flags and fragment offset (bytes 6–7).
    pub flags_frag: u16,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
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

/// Why [`parse_fields`] refused a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv4Refusal {
    /// Truncated, not version 4, IHL below 5, or a total length outside header..buffer
    /// ([`Ipv4Packet::check_len`]).
    Malformed,
    /// The header checksum does not verify ([`Ipv4Packet::verify_checksum`]).
    BadChecksum,
}

/// Validates the IPv4 header at the start of `l3` as [`Ipv4Packet::check_len`] and
/// [`Ipv4Packet::verify_checksum`] do, and returns its fields — one pass over a fixed 20-byte
/// array instead of a bounds-checked accessor per field (the hot path's header check).
#[inline(always)]
pub fn parse_fields(l3: &[u8]) -> core::result::Result<Ipv4Fields, Ipv4Refusal> {
    let Some(h) = l3.first_chunk::<HEADER_LEN>() else {
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
        || header_len < HEADER_LEN
        || header_len > l3.len()
        || total_len < header_len
        || total_len > l3.len()
    {
        return Err(Ipv4Refusal::Malformed);
    }
    let checksum_ok = if header_len == HEADER_LEN {
        let sum = u64::from(w0) + u64::from(w1) + u64::from(w2) + u64::from(w3) + u64::from(w4);
        // Folding keeps the sum's value modulo 0xffff and gives 0xffff exactly for a nonzero
        // multiple of it; the sum is never 0 here (the version byte is 0x45). So the check is
        // one remainder by a constant (a multiply and a shift) instead of four folds: 10
        // instructions less per validated header.
        sum % 0xffff == 0
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

/// Decrements the TTL of the IPv4 header at the start of `l3` and patches its checksum
/// incrementally: the same bytes as [`Ipv4Packet::decrement_ttl`] (RFC 1624 with the same
/// arithmetic as [`checksum::update_u16`]), without the generic accessors. A buffer shorter than
/// the header is left alone.
#[inline(always)]
pub fn decrement_ttl_in_place(l3: &mut [u8]) {
    let Some(h) = l3.first_chunk_mut::<HEADER_LEN>() else {
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

    // 10.0.0.1 -> 10.0.0.2 ICMP echo request with 4 data bytes, DF, ttl 64, id 0x1c46 (bytes from scapy:
    // IP(src=..,dst=..,id=0x1c46,flags='DF')/ICMP(id=1,seq=1)/b'\xde\xad\xbe\xef'), followed by two
    // bytes of Ethernet padding that must not show up in the payload.
    const PACKET: [u8; 34] = [
        0x45, 0x00, 0x00, 0x20, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x0a, 0x95, 0x0a, 0x00, 0x00,
        0x01, 0x0a, 0x00, 0x00, 0x02, // header, checksum 0a95
        0x08, 0x00, 0x5a, 0x60, 0x00, 0x01, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, // icmp
        0x00, 0x00, // padding
    ];

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IpProtocol::ICMP,
            payload_len: 12,
            ttl: 64,
            dscp_ecn: 0,
            ident: 0x1c46,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
    }

    #[test]
    fn parse_fields_and_payload_excludes_padding() {
        let packet = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.total_len(), 32);
        assert!(packet.dont_frag() && !packet.more_frags() && !packet.is_fragment());
        assert_eq!(packet.protocol(), IpProtocol::ICMP);
        assert_eq!(packet.checksum(), 0x0a95);
        assert!(packet.verify_checksum());
        assert_eq!(packet.payload(), &PACKET[20..32]);
        assert!(packet.options().is_empty());
        assert_eq!(Ipv4Repr::parse(&packet), Ok(repr()));
    }

    #[test]
    fn emit_exact_bytes() {
        let mut buf = [0u8; 32];
        buf[20..].copy_from_slice(&PACKET[20..32]);
        assert_eq!(repr().emit_into(&mut buf), Ok(20));
        assert_eq!(buf, PACKET[..32]);
        let too_big = Ipv4Repr {
            payload_len: 65516,
            ..repr()
        };
        assert_eq!(too_big.emit_into(&mut buf), Err(Error::Malformed));
        assert_eq!(repr().emit_into(&mut buf[..19]), Err(Error::Truncated));
    }

    #[test]
    fn bad_checksum_is_reported() {
        let mut bytes = PACKET;
        bytes[11] ^= 1;
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(!packet.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&packet), Err(Error::Checksum));
    }

    #[test]
    fn length_validation() {
        for len in 0..32 {
            assert_eq!(
                Ipv4Packet::new_checked(&PACKET[..len]).unwrap_err(),
                Error::Truncated,
                "{len}"
            );
        }
        let mut bytes = PACKET;
        bytes[0] = 0x65; // version 6
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::Malformed
        );
        bytes[0] = 0x44; // IHL 4
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::Malformed
        );
        bytes[0] = 0x4f; // IHL 15 = 60 bytes > buffer
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::Truncated
        );
        bytes[0] = 0x45;
        bytes[3] = 19; // total length < header
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn options_and_fragments() {
        // IHL 6 with a 4-byte router alert option, MF set, offset 1480.
        let mut buf = [0u8; 28];
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
        packet.set_version(4);
        packet.set_header_len(24);
        packet.set_total_len(28);
        packet
            .options_mut()
            .copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        packet.set_more_frags(true);
        packet.set_frag_offset(1480);
        packet.set_ttl(1);
        packet.set_protocol(IpProtocol::UDP);
        packet.fill_checksum();
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.options(), &[0x94, 0x04, 0, 0]);
        assert!(packet.more_frags() && packet.is_fragment() && !packet.dont_frag());
        assert_eq!(packet.frag_offset(), 1480);
        assert_eq!(packet.payload().len(), 4);
        assert!(packet.verify_checksum());
        let repr = Ipv4Repr::parse(&packet).unwrap();
        assert_eq!(
            (repr.payload_len, repr.frag_offset, repr.more_frags),
            (4, 1480, true)
        );
    }

    #[test]
    fn incremental_rewrites_keep_checksum_valid() {
        let mut bytes = PACKET;
        let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        packet.set_src_addr_incremental(Ipv4Addr::new(172, 16, 3, 9));
        packet.set_dst_addr_incremental(Ipv4Addr::new(8, 8, 8, 8));
        assert_eq!(packet.decrement_ttl(), 63);
        assert!(packet.verify_checksum());
        let patched = packet.checksum();
        packet.fill_checksum();
        assert_eq!(packet.checksum(), patched);
        assert_eq!(packet.src_addr(), Ipv4Addr::new(172, 16, 3, 9));
    }

    #[test]
    fn unchecked_short_buffer_never_panics() {
        let mut buf = [0x4f, 0, 0xff, 0xff];
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
        assert!(packet.payload().is_empty());
        assert!(!packet.verify_checksum());
        packet.fill_checksum();
        packet.decrement_ttl();
        assert!(packet.payload_mut().is_empty());
        assert!(packet.options_mut().is_empty());
    }

    /// `new` is the header the dataplane's replies carry: the bytes of a zeroed header with only
    /// version, IHL, total length, TTL, protocol, addresses and checksum set.
    #[test]
    fn new_is_a_plain_unfragmented_header() {
        let src = Ipv4Addr::new(169, 254, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let repr = Ipv4Repr::new(src, dst, IpProtocol::UDP, 300, 64);
        assert_eq!(
            (
                repr.dscp_ecn,
                repr.ident,
                repr.dont_frag,
                repr.more_frags,
                repr.frag_offset
            ),
            (0, 0, false, false, 0)
        );
        let mut want = [0u8; 20];
        let mut packet = Ipv4Packet::new_unchecked(&mut want[..]);
        packet.set_version(4);
        packet.set_header_len(20);
        packet.set_total_len(320);
        packet.set_ttl(64);
        packet.set_protocol(IpProtocol::UDP);
        packet.set_src_addr(src);
        packet.set_dst_addr(dst);
        packet.fill_checksum();
        let mut got = [0xa5u8; 20];
        assert_eq!(repr.emit_into(&mut got), Ok(20));
        assert_eq!(got, want);
    }

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
    fn fast_ttl_matches_the_view() {
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
            decrement_ttl_in_place(&mut a);
            Ipv4Packet::new_unchecked(&mut b[..]).decrement_ttl();
            assert_eq!(a, b, "seed {seed}");
        }
        // The header check's shortcut: a nonzero sum folds to 0xffff exactly when it is a
        // multiple of 0xffff (five 32-bit words: below 2^35).
        let mut sum = 1u64;
        while sum < 5 << 32 {
            for s in [
                sum,
                sum - 1 + 0xffff - (sum % 0xffff),
                sum * 0xffff % (5 << 32),
            ] {
                if s > 0 {
                    assert_eq!(s % 0xffff == 0, checksum::fold(s) == 0xffff, "sum {s:#x}");
                }
            }
            sum = sum * 3 + 7;
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
                decrement_ttl_in_place(&mut a);
                let mut b = h;
                Ipv4Packet::new_unchecked(&mut b[..]).decrement_ttl();
                assert_eq!(a, b, "checksum {check:#06x} ttl {ttl}");
            }
        }
    }

    /// `parse_fields` refuses exactly what the `Ipv4Packet` view refuses, with the same fields.
    #[test]
    fn parse_fields_matches_the_view() {
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
            match parse_fields(&buf) {
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
