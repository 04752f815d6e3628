//! ICMP for IPv4 (RFC 792), with the "fragmentation needed" next-hop MTU of RFC 1191.
//!
//! The checksum covers the whole ICMP message (no pseudo header); the view's buffer must be exactly
//! the message (the IPv4 payload).

use crate::bytes::{copy_to, set_u16, set_u8, slice_from, slice_from_mut, u16_at, u32_at, u8_at};
use crate::checksum;
use crate::{Error, Result};

wire_enum! {
    /// ICMPv4 message type. Unknown values are kept.
    pub struct Icmpv4Type(u8) {
        /// Echo reply.
        ECHO_REPLY = 0,
        /// Destination unreachable (codes in [`code`]).
        DEST_UNREACHABLE = 3,
        /// Redirect.
        REDIRECT = 5,
        /// Echo request.
        ECHO_REQUEST = 8,
        /// Time exceeded (codes in [`code`]).
        TIME_EXCEEDED = 11,
        /// Parameter problem.
        PARAM_PROBLEM = 12,
    }
}

/// Codes of destination-unreachable and time-exceeded messages.
pub mod code {
    /// Destination unreachable: network unreachable.
    pub const NET_UNREACHABLE: u8 = 0;
    /// Destination unreachable: host unreachable.
    pub const HOST_UNREACHABLE: u8 = 1;
    /// Destination unreachable: protocol unreachable.
    pub const PROTO_UNREACHABLE: u8 = 2;
    /// Destination unreachable: port unreachable.
    pub const PORT_UNREACHABLE: u8 = 3;
    /// Destination unreachable: fragmentation needed and DF set (carries the next-hop MTU).
    pub const FRAG_NEEDED: u8 = 4;
    /// Destination unreachable: communication administratively prohibited (RFC 1812).
    pub const ADMIN_PROHIBITED: u8 = 13;
    /// Time exceeded: TTL exceeded in transit.
    pub const TTL_EXCEEDED: u8 = 0;
    /// Time exceeded: fragment reassembly time exceeded.
    pub const REASSEMBLY_EXCEEDED: u8 = 1;
}

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const REST: Range<usize> = 4..8;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
    pub const DATA: usize = 8;
}

/// Length of the ICMP header (type, code, checksum, rest-of-header).
pub const HEADER_LEN: usize = field::DATA;

/// A view of an ICMPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Wraps a buffer after checking that the 8-byte header fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` unless the 8-byte header fits.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    pub fn msg_type(&self) -> Icmpv4Type {
        Icmpv4Type(u8_at(self.buffer.as_ref(), field::TYPE))
    }

    /// Message code.
    pub fn msg_code(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::CODE)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The type-specific second word, raw.
    pub fn rest_of_header(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::REST)
    }

    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number.
    pub fn echo_seq_no(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// Whether the checksum over the whole message is right.
    pub fn verify_checksum(&self) -> bool {
        self.buffer.as_ref().len() >= HEADER_LEN && checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

slice_accessors!(Icmpv4Packet {
    /// Everything after the 8-byte header: echo data, or the offending datagram of an error.
    pub fn data(&self) -> &'a [u8] {
        slice_from(self.buffer.as_ref(), field::DATA)
    }
});

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: Icmpv4Type) {
        set_u8(self.buffer.as_mut(), field::TYPE, value.0);
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::CODE, value);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the raw second word.
    pub fn set_rest_of_header(&mut self, value: u32) {
        crate::bytes::set_u32(self.buffer.as_mut(), field::REST, value);
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQ, value);
    }

    /// Sets the next-hop MTU.
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::NEXT_HOP_MTU, value);
    }

    /// Computes and stores the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let check = checksum::finish(checksum::data(self.buffer.as_ref()));
        self.set_checksum(check);
    }

    /// Mutable data after the header.
    pub fn data_mut(&mut self) -> &mut [u8] {
        slice_from_mut(self.buffer.as_mut(), field::DATA)
    }

    /// Same as [`data_mut`](Self::data_mut), named like the other views.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The ICMPv4 messages the dataplane answers or generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
    /// Echo request.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data to echo back.
        data: &'a [u8],
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echoed data.
        data: &'a [u8],
    },
    /// Destination unreachable; `next_hop_mtu` is meaningful for [`code::FRAG_NEEDED`] (else 0).
    DestUnreachable {
        /// Reason code.
        code: u8,
        /// Next-hop MTU.
        next_hop_mtu: u16,
        /// The offending IPv4 header and at least the first 8 bytes of its payload.
        data: &'a [u8],
    },
    /// Time exceeded.
    TimeExceeded {
        /// Reason code.
        code: u8,
        /// The offending IPv4 header and at least the first 8 bytes of its payload.
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Reads a message, verifying the checksum. Types other than the four above are `Unsupported`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Icmpv4Packet<&'a T>) -> Result<Icmpv4Repr<'a>> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        let bytes: &'a [u8] = <T as AsRef<[u8]>>::as_ref(packet.buffer);
        let data = slice_from(bytes, field::DATA);
        match packet.msg_type() {
            Icmpv4Type::ECHO_REQUEST if packet.msg_code() == 0 => Ok(Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            Icmpv4Type::ECHO_REPLY if packet.msg_code() == 0 => Ok(Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            Icmpv4Type::DEST_UNREACHABLE => Ok(Icmpv4Repr::DestUnreachable {
                code: packet.msg_code(),
                next_hop_mtu: packet.next_hop_mtu(),
                data,
            }),
            Icmpv4Type::TIME_EXCEEDED => Ok(Icmpv4Repr::TimeExceeded {
                code: packet.msg_code(),
                data,
            }),
            _ => Err(Error::Unsupported),
        }
    }

    /// The message length: 8 + data.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data().len()
    }

    fn data(&self) -> &'a [u8] {
        match *self {
            Icmpv4Repr::EchoRequest { data, .. }
            | Icmpv4Repr::EchoReply { data, .. }
            | Icmpv4Repr::DestUnreachable { data, .. }
            | Icmpv4Repr::TimeExceeded { data, .. } => data,
        }
    }

    /// Writes the message with its checksum at the start of `buf`, returning its length.
    pub fn emit_into(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        let buf = buf.get_mut(..len).ok_or(Error::Truncated)?;
        let mut packet = Icmpv4Packet::new_unchecked(&mut *buf);
        let (msg_type, code, rest) = match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no, .. } => (
                Icmpv4Type::ECHO_REQUEST,
                0,
                u32::from(ident) << 16 | u32::from(seq_no),
            ),
            Icmpv4Repr::EchoReply { ident, seq_no, .. } => (
                Icmpv4Type::ECHO_REPLY,
                0,
                u32::from(ident) << 16 | u32::from(seq_no),
            ),
            Icmpv4Repr::DestUnreachable {
                code, next_hop_mtu, ..
            } => (Icmpv4Type::DEST_UNREACHABLE, code, u32::from(next_hop_mtu)),
            Icmpv4Repr::TimeExceeded { code, .. } => (Icmpv4Type::TIME_EXCEEDED, code, 0),
        };
        packet.set_msg_type(msg_type);
        packet.set_msg_code(code);
        packet.set_rest_of_header(rest);
        copy_to(packet.data_mut(), self.data())?;
        packet.fill_checksum();
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // scapy: ICMP(type=8, id=0x1234, seq=7)/b'abcdefgh'
    const ECHO_REQUEST: [u8; 16] = [
        0x08, 0x00, 0x54, 0x2f, 0x12, 0x34, 0x00, 0x07, b'a', b'b', b'c', b'd', b'e', b'f', b'g',
        b'h',
    ];
    // scapy: ICMP(type=3, code=4, nexthopmtu=1400)/<28 bytes of the original datagram>
    const FRAG_NEEDED_HDR: [u8; 8] = [0x03, 0x04, 0x2d, 0xba, 0x00, 0x00, 0x05, 0x78];

    #[test]
    fn parse_echo_request_and_answer_it() {
        let packet = Icmpv4Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(packet.msg_type(), Icmpv4Type::ECHO_REQUEST);
        assert_eq!((packet.echo_ident(), packet.echo_seq_no()), (0x1234, 7));
        assert_eq!(packet.checksum(), 0x542f);
        assert!(packet.verify_checksum());
        let Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        } = Icmpv4Repr::parse(&packet).unwrap()
        else {
            panic!("not an echo request");
        };
        let reply = Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data,
        };
        let mut buf = [0u8; 16];
        assert_eq!(reply.emit_into(&mut buf), Ok(16));
        assert_eq!(buf, ECHO_REPLY);
        assert_eq!(reply.emit_into(&mut buf[..15]), Err(Error::Truncated));
    }

    const ECHO_REPLY: [u8; 16] = [
        0x00, 0x00, 0x5c, 0x2f, 0x12, 0x34, 0x00, 0x07, b'a', b'b', b'c', b'd', b'e', b'f', b'g',
        b'h',
    ];

    #[test]
    fn frag_needed_carries_mtu() {
        let original = [0x45u8; 28];
        let repr = Icmpv4Repr::DestUnreachable {
            code: code::FRAG_NEEDED,
            next_hop_mtu: 1400,
            data: &original,
        };
        let mut buf = [0u8; 36];
        assert_eq!(repr.emit_into(&mut buf), Ok(36));
        assert_eq!(buf[..2], FRAG_NEEDED_HDR[..2]);
        assert_eq!(buf[4..8], FRAG_NEEDED_HDR[4..8]);
        assert_eq!(&buf[2..4], &FRAG_NEEDED_CHECKSUM);
        let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.next_hop_mtu(), 1400);
        assert_eq!(Icmpv4Repr::parse(&packet), Ok(repr));
    }

    const FRAG_NEEDED_CHECKSUM: [u8; 2] = [0x2d, 0xba];

    #[test]
    fn corrupt_checksum_and_unknown_type() {
        let mut bytes = ECHO_REQUEST;
        bytes[15] ^= 0xff;
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet), Err(Error::Checksum));
        let mut bytes = [0u8; 8];
        let mut packet = Icmpv4Packet::new_unchecked(&mut bytes[..]);
        packet.set_msg_type(Icmpv4Type(13)); // timestamp
        packet.fill_checksum();
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet), Err(Error::Unsupported));
    }

    #[test]
    fn truncated_prefixes() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Icmpv4Packet::new_checked(&ECHO_REQUEST[..len]).unwrap_err(),
                Error::Truncated
            );
        }
    }
}
