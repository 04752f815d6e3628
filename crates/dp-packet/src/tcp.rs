//! TCP (RFC 9293) segment header: ports, sequence numbers, flags, window, checksum over the IPv4 or
//! IPv6 pseudo header. Options are exposed as raw bytes.
//!
//! TCP has no length field: the view's buffer must be exactly the segment (the IP payload).

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};

use crate::bytes::{
    set_u16, set_u32, slice, slice_from, slice_from_mut, slice_mut, u16_at, u32_at,
};
use crate::checksum;
use crate::ip::IpProtocol;
use crate::{Error, Result};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const OFFSET_FLAGS: Range<usize> = 12..14;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// TCP control flags (the low 9 bits of the offset/flags word).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x001);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x002);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x004);
    /// Push function.
    pub const PSH: TcpFlags = TcpFlags(0x008);
    /// Acknowledgment field significant.
    pub const ACK: TcpFlags = TcpFlags(0x010);
    /// Urgent pointer field significant.
    pub const URG: TcpFlags = TcpFlags(0x020);
    /// ECN echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x040);
    /// Congestion window reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x080);
    /// ECN nonce (RFC 3540, historic).
    pub const NS: TcpFlags = TcpFlags(0x100);

    const MASK: u16 = 0x1ff;
    const NAMES: [(TcpFlags, &'static str); 9] = [
        (Self::FIN, "FIN"),
        (Self::SYN, "SYN"),
        (Self::RST, "RST"),
        (Self::PSH, "PSH"),
        (Self::ACK, "ACK"),
        (Self::URG, "URG"),
        (Self::ECE, "ECE"),
        (Self::CWR, "CWR"),
        (Self::NS, "NS"),
    ];

    /// Whether all flags of `other` are set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// No flag set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl core::ops::BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("(empty)")?;
        }
        Ok(())
    }
}

/// A view of a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the 20-byte header fits, data offset ≥ 5 and the header (options included) fits.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if self.header_len() > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::SEQ_NUM)
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(u16_at(self.buffer.as_ref(), field::OFFSET_FLAGS) >> 12) * 4
    }

    /// Control flags.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(u16_at(self.buffer.as_ref(), field::OFFSET_FLAGS) & TcpFlags::MASK)
    }

    /// Receive window.
    pub fn window(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::WINDOW)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    pub fn urgent_pointer(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::URGENT)
    }

    /// Length of the segment as the checksum sees it (header + payload, i.e. the whole buffer).
    pub fn segment_len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    /// Whether the checksum is right for an IPv4 carrier.
    pub fn verify_checksum_v4(&self, src: &Ipv4Addr, dst: &Ipv4Addr) -> bool {
        self.buffer.as_ref().len() >= HEADER_LEN
            && checksum::transport_v4(src, dst, IpProtocol::TCP, self.buffer.as_ref()) == 0
    }

    /// Whether the checksum is right for an IPv6 carrier.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.buffer.as_ref().len() >= HEADER_LEN
            && checksum::transport_v6(src, dst, IpProtocol::TCP, self.buffer.as_ref()) == 0
    }
}

slice_accessors!(TcpPacket {
    /// Raw options between the fixed header and the payload.
    pub fn options(&self) -> &'a [u8] {
        slice(self.buffer.as_ref(), HEADER_LEN..self.header_len())
    }

    /// Payload after the header (options included in the header).
    pub fn payload(&self) -> &'a [u8] {
        slice_from(self.buffer.as_ref(), self.header_len())
    }
});

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port (checksum not updated; see [`checksum::update_u16`]).
    pub fn set_src_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port (checksum not updated).
    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::SEQ_NUM, value);
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::ACK_NUM, value);
    }

    /// Sets the header length in bytes (rounded down to a multiple of 4, at most 60); flags kept.
    pub fn set_header_len(&mut self, len: usize) {
        let offset = (len / 4).min(15) as u16;
        let word = u16_at(self.buffer.as_ref(), field::OFFSET_FLAGS);
        set_u16(
            self.buffer.as_mut(),
            field::OFFSET_FLAGS,
            (word & 0x0fff) | (offset << 12),
        );
    }

    /// Sets the control flags; data offset kept.
    pub fn set_flags(&mut self, flags: TcpFlags) {
        let word = u16_at(self.buffer.as_ref(), field::OFFSET_FLAGS);
        let value = (word & !TcpFlags::MASK) | (flags.0 & TcpFlags::MASK);
        set_u16(self.buffer.as_mut(), field::OFFSET_FLAGS, value);
    }

    /// Sets the window.
    pub fn set_window(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::WINDOW, value);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_pointer(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// Rewrites the source port and patches the checksum (RFC 1624), for NAT.
    pub fn set_src_port_incremental(&mut self, port: u16) {
        let check = checksum::update_u16(self.checksum(), self.src_port(), port);
        self.set_src_port(port);
        self.set_checksum(check);
    }

    /// Rewrites the destination port and patches the checksum (RFC 1624).
    pub fn set_dst_port_incremental(&mut self, port: u16) {
        let check = checksum::update_u16(self.checksum(), self.dst_port(), port);
        self.set_dst_port(port);
        self.set_checksum(check);
    }

    /// Computes the checksum for an IPv4 carrier over the whole buffer.
    pub fn fill_checksum_v4(&mut self, src: &Ipv4Addr, dst: &Ipv4Addr) {
        self.set_checksum(0);
        let check = checksum::transport_v4(src, dst, IpProtocol::TCP, self.buffer.as_ref());
        self.set_checksum(check);
    }

    /// Computes the checksum for an IPv6 carrier over the whole buffer.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let check = checksum::transport_v6(src, dst, IpProtocol::TCP, self.buffer.as_ref());
        self.set_checksum(check);
    }

    /// Mutable options.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        slice_mut(self.buffer.as_mut(), HEADER_LEN..end)
    }

    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        slice_from_mut(self.buffer.as_mut(), start)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for TcpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A TCP header without options, as values (e.g. for a RST the dataplane generates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number.
    pub ack_number: u32,
    /// Control flags.
    pub flags: TcpFlags,
    /// Receive window.
    pub window: u16,
}

impl TcpRepr {
    /// Reads the header of a checked segment (options skipped; checksum needs the IP addresses: verify
    /// it on the packet).
    pub fn parse<T: AsRef<[u8]>>(packet: &TcpPacket<T>) -> Result<TcpRepr> {
        packet.check_len()?;
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window: packet.window(),
        })
    }

    /// Header length written by `emit`: 20.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with a zero checksum and urgent pointer; fill the checksum with
    /// `fill_checksum_v4/v6` once the payload is in and the view covers exactly the segment.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>) -> Result<()> {
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        set_u16(packet.buffer.as_mut(), field::OFFSET_FLAGS, 0);
        packet.set_header_len(HEADER_LEN);
        packet.set_flags(self.flags);
        packet.set_window(self.window);
        packet.set_checksum(0);
        packet.set_urgent_pointer(0);
        Ok(())
    }

    /// Writes the header at the start of `buf`, returning its length (20).
    pub fn emit_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.emit(&mut TcpPacket::new_unchecked(buf))?;
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC4: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 2);
    const DST4: Ipv4Addr = Ipv4Addr::new(192, 168, 5, 9);
    const SRC6: Ipv6Addr = Ipv6Addr::new(0x2000, 1, 2, 0, 0, 0, 0, 5);
    const DST6: Ipv6Addr = Ipv6Addr::new(0x2000, 1, 3, 0, 0, 0, 0, 7);

    // scapy: TCP(sport=40000, dport=80, seq=0x01020304, ack=0, flags='S', window=64240,
    //   options=[('MSS', 1460), ('NOP', None), ('WScale', 7)]) from 10.1.1.2 to 192.168.5.9
    const SYN: [u8; 28] = [
        0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x70, 0x02, 0xfa,
        0xf0, 0x17, 0xdd, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x01, 0x03, 0x03, 0x07,
    ];
    // scapy: TCP(sport=80, dport=40000, seq=7, ack=0x01020305, flags='RA', window=0)/b'x'
    // from 192.168.5.9 to 10.1.1.2, and the same segment over 2000:1:3::7 -> 2000:1:2::5.
    const RST_V4: [u8; 21] = [
        0x00, 0x50, 0x9c, 0x40, 0, 0, 0, 7, 0x01, 0x02, 0x03, 0x05, 0x50, 0x14, 0x00, 0x00, 0xc6,
        0x7c, 0x00, 0x00, b'x',
    ];
    const RST_V6_CHECKSUM: u16 = 0x571e;

    #[test]
    fn parse_syn_with_options() {
        let packet = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!((packet.src_port(), packet.dst_port()), (40000, 80));
        assert_eq!(packet.seq_number(), 0x01020304);
        assert_eq!(packet.header_len(), 28);
        assert_eq!(packet.flags(), TcpFlags::SYN);
        assert_eq!(packet.window(), 64240);
        assert_eq!(
            packet.options(),
            &[0x02, 0x04, 0x05, 0xb4, 0x01, 0x03, 0x03, 0x07]
        );
        assert!(packet.payload().is_empty());
        assert!(packet.verify_checksum_v4(&SRC4, &DST4));
        assert!(!packet.verify_checksum_v4(&SRC4, &Ipv4Addr::new(192, 168, 5, 10)));
    }

    #[test]
    fn emit_rst_exact_bytes() {
        let repr = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            seq_number: 7,
            ack_number: 0x01020305,
            flags: TcpFlags::RST | TcpFlags::ACK,
            window: 0,
        };
        let mut buf = [0u8; 21];
        buf[20] = b'x';
        assert_eq!(repr.emit_into(&mut buf), Ok(20));
        let mut packet = TcpPacket::new_checked(&mut buf[..]).unwrap();
        packet.fill_checksum_v4(&DST4, &SRC4);
        assert_eq!(buf, RST_V4);
        let packet = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(TcpRepr::parse(&packet), Ok(repr));
        assert_eq!(packet.payload(), b"x");
        let mut packet = TcpPacket::new_checked(&mut buf[..]).unwrap();
        packet.fill_checksum_v6(&DST6, &SRC6);
        assert_eq!(packet.checksum(), RST_V6_CHECKSUM);
        assert!(packet.verify_checksum_v6(&DST6, &SRC6));
        assert_eq!(repr.emit_into(&mut buf[..19]), Err(Error::Truncated));
    }

    #[test]
    fn nat_port_rewrite_keeps_checksum_valid() {
        let mut bytes = SYN;
        let mut packet = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        packet.set_src_port_incremental(1024);
        packet.set_dst_port_incremental(8080);
        assert!(packet.verify_checksum_v4(&SRC4, &DST4));
        // Address rewrite: the pseudo header changes, patch with update_u32.
        let new_src = Ipv4Addr::new(45, 86, 6, 6);
        let check = checksum::update_u32(packet.checksum(), u32::from(SRC4), u32::from(new_src));
        packet.set_checksum(check);
        assert!(packet.verify_checksum_v4(&new_src, &DST4));
    }

    #[test]
    fn flags_setters_and_debug() {
        let mut bytes = SYN;
        let mut packet = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        packet.set_flags(TcpFlags::SYN | TcpFlags::ACK | TcpFlags::ECE);
        assert_eq!(packet.header_len(), 28);
        assert!(packet.flags().contains(TcpFlags::SYN | TcpFlags::ACK));
        assert!(!packet.flags().contains(TcpFlags::FIN));
        assert!(packet.flags().intersects(TcpFlags::FIN | TcpFlags::ECE));
        assert_eq!(format!("{:?}", packet.flags()), "SYN|ACK|ECE");
        assert_eq!(format!("{:?}", TcpFlags::default()), "(empty)");
        packet.set_header_len(20);
        assert_eq!(
            packet.flags(),
            TcpFlags::SYN | TcpFlags::ACK | TcpFlags::ECE
        );
        assert_eq!(packet.payload_mut().len(), 8);
    }

    #[test]
    fn length_validation() {
        for len in 0..SYN.len() {
            assert_eq!(
                TcpPacket::new_checked(&SYN[..len]).unwrap_err(),
                Error::Truncated,
                "{len}"
            );
        }
        let mut bytes = SYN;
        bytes[12] = 0x40; // data offset 4
        assert_eq!(
            TcpPacket::new_checked(&bytes[..]).unwrap_err(),
            Error::Malformed
        );
    }
}
