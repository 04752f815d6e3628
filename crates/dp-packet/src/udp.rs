//! UDP (RFC 768) with checksums over the IPv4 pseudo header (where 0 means "none") and the IPv6
//! pseudo header (RFC 8200 §8.1, where 0 is invalid).

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::bytes::{set_u16, slice, slice_mut, u16_at};
use crate::checksum;
use crate::ip::IpProtocol;
use crate::{Error, Result};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header fits and 8 ≤ length field ≤ buffer length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if field_len > len {
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

    /// Length field: header + payload.
    pub fn len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the length field announces an empty payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    fn datagram_bytes(&self) -> &[u8] {
        slice(self.buffer.as_ref(), 0..usize::from(self.len()))
    }

    /// Whether the checksum is right for an IPv4 carrier; a zero checksum (none sent) is accepted.
    pub fn verify_checksum_v4(&self, src: &Ipv4Addr, dst: &Ipv4Addr) -> bool {
        self.checksum() == 0
            || checksum::transport_v4(src, dst, IpProtocol::UDP, self.datagram_bytes()) == 0
    }

    /// Whether the checksum is right for an IPv6 carrier; zero is invalid there.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.checksum() != 0
            && checksum::transport_v6(src, dst, IpProtocol::UDP, self.datagram_bytes()) == 0
    }
}

slice_accessors!(UdpPacket {
    /// The datagram as the length field bounds it (header included).
    pub fn datagram(&self) -> &'a [u8] {
        slice(self.buffer.as_ref(), 0..usize::from(self.len()))
    }

    /// Payload, bounded by the length field.
    pub fn payload(&self) -> &'a [u8] {
        slice(self.buffer.as_ref(), HEADER_LEN..usize::from(self.len()))
    }
});

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Computes the checksum for an IPv4 carrier (length field and payload must be final).
    pub fn fill_checksum_v4(&mut self, src: &Ipv4Addr, dst: &Ipv4Addr) {
        self.set_checksum(0);
        let check = checksum::transport_v4(src, dst, IpProtocol::UDP, self.datagram_bytes());
        self.set_checksum(nonzero(check));
    }

    /// Computes the checksum for an IPv6 carrier (length field and payload must be final).
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let check = checksum::transport_v6(src, dst, IpProtocol::UDP, self.datagram_bytes());
        self.set_checksum(nonzero(check));
    }

    /// Mutable payload, bounded by the length field.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        slice_mut(self.buffer.as_mut(), HEADER_LEN..end)
    }
}

/// A computed zero is sent as 0xffff, since 0 means "no checksum" (RFC 768).
fn nonzero(check: u16) -> u16 {
    if check == 0 {
        0xffff
    } else {
        check
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for UdpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A UDP header as values; the payload is written by the caller after the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length (without the header).
    pub payload_len: usize,
}

impl UdpRepr {
    /// Reads the header of a checked datagram (the checksum needs the IP addresses: verify it on the
    /// packet).
    pub fn parse<T: AsRef<[u8]>>(packet: &UdpPacket<T>) -> Result<UdpRepr> {
        packet.check_len()?;
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.len()).saturating_sub(HEADER_LEN),
        })
    }

    /// Header length written by `emit`: 8.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with a zero checksum; fill it with `fill_checksum_v4/v6` once the payload is in.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut UdpPacket<T>) -> Result<()> {
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = self
            .payload_len
            .checked_add(HEADER_LEN)
            .and_then(|l| u16::try_from(l).ok())
            .ok_or(Error::Malformed)?;
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        packet.set_checksum(0);
        Ok(())
    }

    /// Writes the header at the start of `buf`, returning its length (8).
    pub fn emit_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.emit(&mut UdpPacket::new_unchecked(buf))?;
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // scapy: UDP(sport=68, dport=67)/b'hello' between 10.0.0.1 -> 10.0.0.2, and the same over
    // fe80::1 -> ff02::1:2.
    const V4: [u8; 13] = [
        0x00, 0x44, 0x00, 0x43, 0x00, 0x0d, 0xa7, 0x78, b'h', b'e', b'l', b'l', b'o',
    ];
    const V6: [u8; 13] = [
        0x00, 0x44, 0x00, 0x43, 0x00, 0x0d, 0xbd, 0xf3, b'h', b'e', b'l', b'l', b'o',
    ];
    const SRC4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const SRC6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    const DST6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

    #[test]
    fn parse_and_verify() {
        let packet = UdpPacket::new_checked(&V4[..]).unwrap();
        assert_eq!(
            (packet.src_port(), packet.dst_port(), packet.len()),
            (68, 67, 13)
        );
        assert_eq!(packet.payload(), b"hello");
        assert!(packet.verify_checksum_v4(&SRC4, &DST4));
        assert!(!packet.verify_checksum_v4(&SRC4, &Ipv4Addr::new(10, 0, 0, 3)));
        let packet = UdpPacket::new_checked(&V6[..]).unwrap();
        assert!(packet.verify_checksum_v6(&SRC6, &DST6));
        assert!(!packet.verify_checksum_v6(&DST6, &DST6));
    }

    #[test]
    fn zero_checksum_means_none_only_over_ipv4() {
        let mut bytes = V4;
        bytes[6] = 0;
        bytes[7] = 0;
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert!(packet.verify_checksum_v4(&SRC4, &DST4));
        assert!(!packet.verify_checksum_v6(&SRC6, &DST6));
    }

    #[test]
    fn emit_and_fill_exact_bytes() {
        let repr = UdpRepr {
            src_port: 68,
            dst_port: 67,
            payload_len: 5,
        };
        let mut buf = [0u8; 13];
        buf[8..].copy_from_slice(b"hello");
        assert_eq!(repr.emit_into(&mut buf), Ok(8));
        let mut packet = UdpPacket::new_checked(&mut buf[..]).unwrap();
        packet.fill_checksum_v4(&SRC4, &DST4);
        assert_eq!(buf, V4);
        let mut packet = UdpPacket::new_checked(&mut buf[..]).unwrap();
        packet.fill_checksum_v6(&SRC6, &DST6);
        assert_eq!(buf, V6);
        assert_eq!(
            UdpRepr::parse(&UdpPacket::new_checked(&buf[..]).unwrap()),
            Ok(repr)
        );
        assert_eq!(repr.emit_into(&mut buf[..7]), Err(Error::Truncated));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose a payload word that makes the sum come out at 0xffff, so the checksum is 0.
        let mut buf = [0x00, 0x01, 0x00, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00];
        let base = checksum::combine(&[
            checksum::pseudo_header_v4(&SRC4, &DST4, IpProtocol::UDP, 10),
            checksum::data(&buf),
        ]);
        buf[8..].copy_from_slice(&(!base).to_be_bytes());
        let mut packet = UdpPacket::new_checked(&mut buf[..]).unwrap();
        packet.fill_checksum_v4(&SRC4, &DST4);
        assert_eq!(packet.checksum(), 0xffff);
        assert!(packet.verify_checksum_v4(&SRC4, &DST4));
    }

    #[test]
    fn length_validation() {
        for len in 0..V4.len() {
            assert_eq!(
                UdpPacket::new_checked(&V4[..len]).unwrap_err(),
                Error::Truncated,
                "{len}"
            );
        }
        let mut bytes = V4;
        bytes[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&bytes[..]).unwrap_err(),
            Error::Malformed
        );
        // Longer buffer than the length field: payload is bounded by the field.
        let mut padded = [0u8; 20];
        padded[..13].copy_from_slice(&V4);
        assert_eq!(
            UdpPacket::new_checked(&padded[..]).unwrap().payload(),
            b"hello"
        );
    }
}
