//! ICMP for IPv6 (RFC 4443). The checksum covers the IPv6 pseudo header, so verifying and filling take
//! the source and destination addresses. Neighbor Discovery messages (types 133–137) have their own
//! views in [`crate::ndisc`]; they are reached through [`Icmpv6Repr::Ndisc`] here.
//!
//! The view's buffer must be exactly the ICMPv6 message (the IPv6 payload).

use core::net::Ipv6Addr;

use crate::bytes::{
    copy_to, set_u16, set_u32, set_u8, slice_from, slice_from_mut, u16_at, u32_at, u8_at,
};
use crate::checksum;
use crate::ip::IpProtocol;
use crate::ndisc::NdiscRepr;
use crate::{Error, Result};

wire_enum! {
    /// ICMPv6 message type. Unknown values are kept.
    pub struct Icmpv6Type(u8) {
        /// Destination unreachable.
        DEST_UNREACHABLE = 1,
        /// Packet too big (carries the MTU).
        PACKET_TOO_BIG = 2,
        /// Time exceeded.
        TIME_EXCEEDED = 3,
        /// Parameter problem.
        PARAM_PROBLEM = 4,
        /// Echo request.
        ECHO_REQUEST = 128,
        /// Echo reply.
        ECHO_REPLY = 129,
        /// Multicast listener query (RFC 2710).
        MLD_QUERY = 130,
        /// Router solicitation (RFC 4861).
        ROUTER_SOLICIT = 133,
        /// Router advertisement (RFC 4861).
        ROUTER_ADVERT = 134,
        /// Neighbor solicitation (RFC 4861).
        NEIGHBOR_SOLICIT = 135,
        /// Neighbor advertisement (RFC 4861).
        NEIGHBOR_ADVERT = 136,
        /// Redirect (RFC 4861).
        REDIRECT = 137,
        /// Multicast listener report v2 (RFC 3810).
        MLDV2_REPORT = 143,
    }
}

impl Icmpv6Type {
    /// Error messages have the high bit clear (RFC 4443 §2.1); they must never be sent in answer to
    /// another error.
    pub fn is_error(self) -> bool {
        self.0 & 0x80 == 0
    }
}

/// Codes of destination-unreachable and time-exceeded messages.
pub mod code {
    /// Destination unreachable: no route to destination.
    pub const NO_ROUTE: u8 = 0;
    /// Destination unreachable: administratively prohibited.
    pub const ADMIN_PROHIBITED: u8 = 1;
    /// Destination unreachable: address unreachable.
    pub const ADDR_UNREACHABLE: u8 = 3;
    /// Destination unreachable: port unreachable.
    pub const PORT_UNREACHABLE: u8 = 4;
    /// Time exceeded: hop limit exceeded in transit.
    pub const HOP_LIMIT_EXCEEDED: u8 = 0;
}

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const REST: Range<usize> = 4..8;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
    pub const MTU: Range<usize> = 4..8;
    pub const BODY: usize = 4;
    pub const DATA: usize = 8;
}

/// Length of the type/code/checksum prefix every ICMPv6 message has.
pub const MIN_LEN: usize = 4;
/// Length of the header including the 4-byte type-specific word.
pub const HEADER_LEN: usize = field::DATA;

/// A view of an ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wraps a buffer after checking that the 8-byte header fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` unless the 8-byte header (type, code, checksum, type-specific word) fits; every
    /// message type defined so far has it.
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
    pub fn msg_type(&self) -> Icmpv6Type {
        Icmpv6Type(u8_at(self.buffer.as_ref(), field::TYPE))
    }

    /// Message code.
    pub fn msg_code(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::CODE)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The type-specific word (bytes 4..8), raw.
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

    /// MTU of a packet-too-big message.
    pub fn mtu(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::MTU)
    }

    /// Whether the checksum (with the IPv6 pseudo header) is right.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.buffer.as_ref().len() >= MIN_LEN
            && checksum::transport_v6(src, dst, IpProtocol::ICMPV6, self.buffer.as_ref()) == 0
    }
}

slice_accessors!(Icmpv6Packet {
    /// Message body after type/code/checksum (where Neighbor Discovery fields start).
    pub fn body(&self) -> &'a [u8] {
        slice_from(self.buffer.as_ref(), field::BODY)
    }

    /// Data after the 8-byte header: echo data, or the offending packet of an error.
    pub fn data(&self) -> &'a [u8] {
        slice_from(self.buffer.as_ref(), field::DATA)
    }
});

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: Icmpv6Type) {
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

    /// Sets the type-specific word.
    pub fn set_rest_of_header(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::REST, value);
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQ, value);
    }

    /// Sets the packet-too-big MTU.
    pub fn set_mtu(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::MTU, value);
    }

    /// Computes and stores the checksum over the pseudo header and the whole buffer.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let check = checksum::transport_v6(src, dst, IpProtocol::ICMPV6, self.buffer.as_ref());
        self.set_checksum(check);
    }

    /// Mutable body after type/code/checksum.
    pub fn body_mut(&mut self) -> &mut [u8] {
        slice_from_mut(self.buffer.as_mut(), field::BODY)
    }

    /// Mutable data after the 8-byte header.
    pub fn data_mut(&mut self) -> &mut [u8] {
        slice_from_mut(self.buffer.as_mut(), field::DATA)
    }

    /// Same as [`data_mut`](Self::data_mut), named like the other views.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv6Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The ICMPv6 messages the dataplane answers or generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Repr<'a> {
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
    /// Packet too big.
    PacketTooBig {
        /// MTU of the next hop.
        mtu: u32,
        /// As much of the offending packet as fits in the minimum MTU.
        data: &'a [u8],
    },
    /// Destination unreachable.
    DestUnreachable {
        /// Reason code.
        code: u8,
        /// As much of the offending packet as fits in the minimum MTU.
        data: &'a [u8],
    },
    /// Time exceeded.
    TimeExceeded {
        /// Reason code.
        code: u8,
        /// As much of the offending packet as fits in the minimum MTU.
        data: &'a [u8],
    },
    /// Neighbor Discovery (router/neighbor solicitation/advertisement).
    Ndisc(NdiscRepr),
}

impl<'a> Icmpv6Repr<'a> {
    /// Reads a message, verifying the checksum against `src`/`dst`. Types other than the above are
    /// `Unsupported`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        packet: &Icmpv6Packet<&'a T>,
    ) -> Result<Icmpv6Repr<'a>> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        let bytes: &'a [u8] = <T as AsRef<[u8]>>::as_ref(packet.buffer);
        let data = slice_from(bytes, field::DATA);
        match packet.msg_type() {
            Icmpv6Type::ECHO_REQUEST if packet.msg_code() == 0 => Ok(Icmpv6Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            Icmpv6Type::ECHO_REPLY if packet.msg_code() == 0 => Ok(Icmpv6Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            Icmpv6Type::PACKET_TOO_BIG => Ok(Icmpv6Repr::PacketTooBig {
                mtu: packet.mtu(),
                data,
            }),
            Icmpv6Type::DEST_UNREACHABLE => Ok(Icmpv6Repr::DestUnreachable {
                code: packet.msg_code(),
                data,
            }),
            Icmpv6Type::TIME_EXCEEDED => Ok(Icmpv6Repr::TimeExceeded {
                code: packet.msg_code(),
                data,
            }),
            Icmpv6Type::ROUTER_SOLICIT
            | Icmpv6Type::ROUTER_ADVERT
            | Icmpv6Type::NEIGHBOR_SOLICIT
            | Icmpv6Type::NEIGHBOR_ADVERT => NdiscRepr::parse(packet).map(Icmpv6Repr::Ndisc),
            _ => Err(Error::Unsupported),
        }
    }

    /// The message length.
    pub fn buffer_len(&self) -> usize {
        match self {
            Icmpv6Repr::EchoRequest { data, .. }
            | Icmpv6Repr::EchoReply { data, .. }
            | Icmpv6Repr::PacketTooBig { data, .. }
            | Icmpv6Repr::DestUnreachable { data, .. }
            | Icmpv6Repr::TimeExceeded { data, .. } => HEADER_LEN + data.len(),
            Icmpv6Repr::Ndisc(ndisc) => ndisc.buffer_len(),
        }
    }

    /// Writes the message with its checksum (for `src` → `dst`) at the start of `buf`; returns its
    /// length.
    pub fn emit_into(&self, buf: &mut [u8], src: &Ipv6Addr, dst: &Ipv6Addr) -> Result<usize> {
        let (msg_type, code, rest, data) = match *self {
            Icmpv6Repr::Ndisc(ndisc) => return ndisc.emit_into(buf, src, dst),
            Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => (
                Icmpv6Type::ECHO_REQUEST,
                0,
                u32::from(ident) << 16 | u32::from(seq_no),
                data,
            ),
            Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => (
                Icmpv6Type::ECHO_REPLY,
                0,
                u32::from(ident) << 16 | u32::from(seq_no),
                data,
            ),
            Icmpv6Repr::PacketTooBig { mtu, data } => (Icmpv6Type::PACKET_TOO_BIG, 0, mtu, data),
            Icmpv6Repr::DestUnreachable { code, data } => {
                (Icmpv6Type::DEST_UNREACHABLE, code, 0, data)
            }
            Icmpv6Repr::TimeExceeded { code, data } => (Icmpv6Type::TIME_EXCEEDED, code, 0, data),
        };
        let len = self.buffer_len();
        let buf = buf.get_mut(..len).ok_or(Error::Truncated)?;
        let mut packet = Icmpv6Packet::new_unchecked(buf);
        packet.set_msg_type(msg_type);
        packet.set_msg_code(code);
        packet.set_rest_of_header(rest);
        copy_to(packet.data_mut(), data)?;
        packet.fill_checksum(src, dst);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv6Addr = Ipv6Addr::new(0x2000, 1, 2, 0, 0, 0, 0, 5);
    const DST: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

    // scapy: IPv6(src='2000:1:2::5', dst='fe80::1')/ICMPv6EchoRequest(id=0x4242, seq=3, data=b'ping')
    const ECHO_REQUEST: [u8; 12] = [
        0x80, 0x00, 0x40, 0x19, 0x42, 0x42, 0x00, 0x03, b'p', b'i', b'n', b'g',
    ];
    // ... and the reply from fe80::1 back to 2000:1:2::5.
    const ECHO_REPLY: [u8; 12] = [
        0x81, 0x00, 0x3f, 0x19, 0x42, 0x42, 0x00, 0x03, b'p', b'i', b'n', b'g',
    ];
    // scapy: ICMPv6PacketTooBig(mtu=1280)/<8 bytes> from fe80::1 to 2000:1:2::5
    const TOO_BIG: [u8; 16] = [
        0x02, 0x00, 0x63, 0x23, 0x00, 0x00, 0x05, 0x00, 0x60, 0, 0, 0, 0x05, 0xc8, 0x11, 0x40,
    ];

    #[test]
    fn echo_request_to_reply() {
        let packet = Icmpv6Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(packet.msg_type(), Icmpv6Type::ECHO_REQUEST);
        assert!(packet.verify_checksum(&SRC, &DST));
        assert!(!packet.verify_checksum(&DST, &DST));
        let Icmpv6Repr::EchoRequest {
            ident,
            seq_no,
            data,
        } = Icmpv6Repr::parse(&SRC, &DST, &packet).unwrap()
        else {
            panic!("not an echo request");
        };
        assert_eq!((ident, seq_no, data), (0x4242, 3, &b"ping"[..]));
        let reply = Icmpv6Repr::EchoReply {
            ident,
            seq_no,
            data,
        };
        let mut buf = [0u8; 12];
        assert_eq!(reply.emit_into(&mut buf, &DST, &SRC), Ok(12));
        assert_eq!(buf, ECHO_REPLY);
        assert_eq!(
            reply.emit_into(&mut buf[..11], &DST, &SRC),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn packet_too_big() {
        let repr = Icmpv6Repr::PacketTooBig {
            mtu: 1280,
            data: &TOO_BIG[8..],
        };
        let mut buf = [0u8; 16];
        assert_eq!(repr.emit_into(&mut buf, &DST, &SRC), Ok(16));
        assert_eq!(buf, TOO_BIG);
        let packet = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.mtu(), 1280);
        assert_eq!(Icmpv6Repr::parse(&DST, &SRC, &packet), Ok(repr));
        assert!(packet.msg_type().is_error() && !Icmpv6Type::ECHO_REPLY.is_error());
    }

    #[test]
    fn bad_checksum_and_unknown_type() {
        let mut bytes = ECHO_REQUEST;
        bytes[11] ^= 1;
        let packet = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Icmpv6Repr::parse(&SRC, &DST, &packet), Err(Error::Checksum));
        let mut bytes = [0u8; 8];
        let mut packet = Icmpv6Packet::new_unchecked(&mut bytes[..]);
        packet.set_msg_type(Icmpv6Type::MLDV2_REPORT);
        packet.fill_checksum(&SRC, &DST);
        let packet = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            Icmpv6Repr::parse(&SRC, &DST, &packet),
            Err(Error::Unsupported)
        );
    }

    #[test]
    fn truncated_prefixes() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Icmpv6Packet::new_checked(&ECHO_REQUEST[..len]).unwrap_err(),
                Error::Truncated
            );
        }
    }
}
