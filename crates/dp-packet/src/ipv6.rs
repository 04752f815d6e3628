//! IPv6 (RFC 8200) fixed header, plus the multicast address helpers Neighbor Discovery needs
//! (solicited-node groups, RFC 4291 §2.7.1; Ethernet mapping, RFC 2464 §7).
//!
//! Extension headers are not parsed: `next_header` is whatever follows the fixed header.

use core::net::Ipv6Addr;

use crate::bytes::{
    array, set_bytes, set_u16, set_u32, set_u8, slice, slice_mut, u16_at, u32_at, u8_at,
};
use crate::ethernet::MacAddr;
use crate::ip::IpProtocol;
use crate::{Error, Result};

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

/// ff02::1, all nodes on the link.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::2, all routers on the link.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// The solicited-node multicast group of `addr`: ff02::1:ffXX:XXXX with its low 24 bits.
pub fn solicited_node(addr: &Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// The Ethernet multicast MAC of an IPv6 multicast group: 33:33 + its low 32 bits.
pub fn multicast_mac(group: &Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The fields of a fixed IPv6 header the forwarding paths need, read once by [`parse_fixed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Fields {
    /// Traffic class (DSCP and ECN).
    pub traffic_class: u8,
    /// Payload length: what follows the fixed header, within the buffer.
    pub payload_len: usize,
    /// Next header.
    pub next_header: IpProtocol,
    /// Hop limit.
    pub hop_limit: u8,
    /// Source address.
    pub src: u128,
    /// Destination address.
    pub dst: u128,
}

/// Checks the fixed IPv6 header at the start of `l3` as [`Ipv6Packet::check_len`] does
/// (40 bytes, version 6, payload length within the buffer) and returns its fields: one pass over
/// a fixed 40-byte array instead of a bounds-checked accessor per field (the decapsulation's
/// hot path). `None` for what `check_len` refuses.
#[inline(always)]
pub fn parse_fixed(l3: &[u8]) -> Option<Ipv6Fields> {
    let h = l3.first_chunk::<HEADER_LEN>()?;
    let addr = |at: usize| {
        h.get(at..at + 16)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map_or(0, u128::from_be_bytes)
    };
    let first = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    if first >> 28 != 6 || payload_len > l3.len() - HEADER_LEN {
        return None;
    }
    Some(Ipv6Fields {
        traffic_class: (first >> 20) as u8,
        payload_len,
        next_header: IpProtocol(h[6]),
        hop_limit: h[7],
        src: addr(8),
        dst: addr(24),
    })
}

/// fe80::/10 (`Ipv6Addr::is_unicast_link_local` needs a newer Rust than the workspace minimum).
pub fn is_link_local(addr: &Ipv6Addr) -> bool {
    addr.segments()[0] & 0xffc0 == 0xfe80
}

/// ff02::1:ff00:0/104.
pub fn is_solicited_node(addr: &Ipv6Addr) -> bool {
    let o = addr.octets();
    o[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff]
}

/// A view of an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the 40-byte header fits, the version is 6 and the payload length fits the buffer
    /// (which may be longer: Ethernet padding).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        if usize::from(self.payload_len()) > len - HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn ver_tc_flow(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::VER_TC_FLOW)
    }

    /// Version nibble (6 for a checked packet).
    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    /// Traffic class (DSCP + ECN).
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// 20-bit flow label.
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    /// Payload length (everything after the fixed header, extension headers included).
    pub fn payload_len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Next header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(u8_at(self.buffer.as_ref(), field::NXT_HDR))
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::HOP_LIMIT)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.buffer.as_ref(), field::SRC_ADDR))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.buffer.as_ref(), field::DST_ADDR))
    }
}

slice_accessors!(Ipv6Packet {
    /// Payload, bounded by `payload_length` (trailing padding excluded).
    pub fn payload(&self) -> &'a [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        slice(self.buffer.as_ref(), HEADER_LEN..end)
    }

    /// Header plus payload: the bytes to encapsulate or forward.
    pub fn packet(&self) -> &'a [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        slice(self.buffer.as_ref(), 0..end)
    }
});

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn set_ver_tc_flow(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::VER_TC_FLOW, value);
    }

    /// Sets the version nibble.
    pub fn set_version(&mut self, version: u8) {
        let v = (self.ver_tc_flow() & 0x0fff_ffff) | (u32::from(version & 0x0f) << 28);
        self.set_ver_tc_flow(v);
    }

    /// Sets the traffic class.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let v = (self.ver_tc_flow() & 0xf00f_ffff) | (u32::from(tc) << 20);
        self.set_ver_tc_flow(v);
    }

    /// Sets the flow label (low 20 bits used).
    pub fn set_flow_label(&mut self, label: u32) {
        let v = (self.ver_tc_flow() & 0xfff0_0000) | (label & 0x000f_ffff);
        self.set_ver_tc_flow(v);
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        set_u8(self.buffer.as_mut(), field::NXT_HDR, value.0);
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::HOP_LIMIT, value);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        set_bytes(self.buffer.as_mut(), field::SRC_ADDR, &addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        set_bytes(self.buffer.as_mut(), field::DST_ADDR, &addr.octets());
    }

    /// Mutable payload, bounded by `payload_length`.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        slice_mut(self.buffer.as_mut(), HEADER_LEN..end)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv6Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The IPv6 fixed header as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header.
    pub next_header: IpProtocol,
    /// Payload length.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// A header as the dataplane originates it (replies, errors, ND): traffic class and flow label
    /// zero.
    pub const fn new(
        src_addr: Ipv6Addr,
        dst_addr: Ipv6Addr,
        next_header: IpProtocol,
        payload_len: usize,
        hop_limit: u8,
    ) -> Ipv6Repr {
        Ipv6Repr {
            src_addr,
            dst_addr,
            next_header,
            payload_len,
            hop_limit,
            traffic_class: 0,
            flow_label: 0,
        }
    }

    /// Reads the fixed header of a packet, checking lengths.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr> {
        packet.check_len()?;
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Header length written by `emit`: 40.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header. `Truncated` if the buffer is shorter than 40 bytes, `Malformed` if the
    /// payload length exceeds 65535 (jumbograms are not supported).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) -> Result<()> {
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = u16::try_from(self.payload_len).map_err(|_| Error::Malformed)?;
        packet.set_ver_tc_flow(0x6000_0000);
        packet.set_traffic_class(self.traffic_class);
        packet.set_flow_label(self.flow_label);
        packet.set_payload_len(len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        Ok(())
    }

    /// Writes the header at the start of `buf`, returning its length (40).
    pub fn emit_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.emit(&mut Ipv6Packet::new_unchecked(buf))?;
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parse_fixed` refuses what the view refuses and reads the same fields.
    #[test]
    fn parse_fixed_matches_the_view() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..20_000usize {
            let mut buf = vec![0u8; i % 90];
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if i % 3 != 0 && buf.len() >= 6 {
                buf[0] = 0x60 | (buf[0] & 0x0f);
                let room = (buf.len().saturating_sub(40) + 3) as u16;
                let payload = u16::from_be_bytes([buf[4], buf[5]]) % room.max(1);
                buf[4..6].copy_from_slice(&payload.to_be_bytes());
            }
            let view = Ipv6Packet::new_checked(&buf[..]);
            match parse_fixed(&buf) {
                None => assert!(view.is_err(), "{buf:02x?}"),
                Some(f) => {
                    let v = view.unwrap();
                    assert_eq!(
                        (f.traffic_class, f.payload_len, f.next_header, f.hop_limit),
                        (
                            v.traffic_class(),
                            usize::from(v.payload_len()),
                            v.next_header(),
                            v.hop_limit()
                        )
                    );
                    assert_eq!(
                        (f.src, f.dst),
                        (u128::from(v.src_addr()), u128::from(v.dst_addr()))
                    );
                }
            }
        }
    }

    // scapy: IPv6(src='fc00:1::1', dst='fc00:2::5', tc=0xb8, fl=0x12345, hlim=63, nh=4)/b'\xaa\xbb\xcc\xdd'
    const PACKET: [u8; 44] = [
        0x6b, 0x81, 0x23, 0x45, 0x00, 0x04, 0x04, 0x3f, // ver/tc/flow, len, nh, hlim
        0xfc, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, //
        0xfc, 0x00, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x05, //
        0xaa, 0xbb, 0xcc, 0xdd,
    ];

    fn repr() -> Ipv6Repr {
        Ipv6Repr {
            src_addr: "fc00:1::1".parse().unwrap(),
            dst_addr: "fc00:2::5".parse().unwrap(),
            next_header: IpProtocol::IPV4_IN_IP,
            payload_len: 4,
            hop_limit: 63,
            traffic_class: 0xb8,
            flow_label: 0x12345,
        }
    }

    #[test]
    fn parse_fields() {
        let mut padded = [0u8; 50];
        padded[..44].copy_from_slice(&PACKET);
        let packet = Ipv6Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(packet.version(), 6);
        assert_eq!(packet.traffic_class(), 0xb8);
        assert_eq!(packet.flow_label(), 0x12345);
        assert_eq!(packet.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(packet.packet(), &PACKET[..]);
        assert_eq!(Ipv6Repr::parse(&packet), Ok(repr()));
    }

    #[test]
    fn emit_exact_bytes() {
        let mut buf = [0xffu8; 44];
        buf[40..].copy_from_slice(&PACKET[40..]);
        assert_eq!(repr().emit_into(&mut buf), Ok(40));
        assert_eq!(buf, PACKET);
        let jumbo = Ipv6Repr {
            payload_len: 65536,
            ..repr()
        };
        assert_eq!(jumbo.emit_into(&mut buf), Err(Error::Malformed));
        assert_eq!(repr().emit_into(&mut buf[..39]), Err(Error::Truncated));
    }

    /// `new` is the header the dataplane's replies carry: a zeroed header with only version,
    /// payload length, next header, hop limit and addresses set.
    #[test]
    fn new_has_zero_traffic_class_and_flow_label() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "fe80::5".parse().unwrap();
        let repr = Ipv6Repr::new(src, dst, IpProtocol::ICMPV6, 32, 255);
        assert_eq!((repr.traffic_class, repr.flow_label), (0, 0));
        let mut want = [0u8; 40];
        let mut packet = Ipv6Packet::new_unchecked(&mut want[..]);
        packet.set_version(6);
        packet.set_payload_len(32);
        packet.set_next_header(IpProtocol::ICMPV6);
        packet.set_hop_limit(255);
        packet.set_src_addr(src);
        packet.set_dst_addr(dst);
        let mut got = [0xa5u8; 40];
        assert_eq!(repr.emit_into(&mut got), Ok(40));
        assert_eq!(got, want);
    }

    #[test]
    fn setters_keep_neighbouring_bits() {
        let mut buf = PACKET;
        let mut packet = Ipv6Packet::new_unchecked(&mut buf[..]);
        packet.set_flow_label(0xfffff);
        assert_eq!((packet.version(), packet.traffic_class()), (6, 0xb8));
        packet.set_traffic_class(0x01);
        assert_eq!((packet.version(), packet.flow_label()), (6, 0xfffff));
        packet.set_hop_limit(1);
        packet.payload_mut()[0] = 0x11;
        assert_eq!(buf[7], 1);
        assert_eq!(buf[40], 0x11);
    }

    #[test]
    fn length_validation() {
        for len in 0..PACKET.len() {
            assert_eq!(
                Ipv6Packet::new_checked(&PACKET[..len]).unwrap_err(),
                Error::Truncated,
                "{len}"
            );
        }
        let mut bytes = PACKET;
        bytes[0] = 0x4b;
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn multicast_helpers() {
        let addr: Ipv6Addr = "2000:1:2::1234:5678".parse().unwrap();
        let group = solicited_node(&addr);
        assert_eq!(group, "ff02::1:ff34:5678".parse::<Ipv6Addr>().unwrap());
        assert!(is_solicited_node(&group) && !is_solicited_node(&addr));
        assert_eq!(
            multicast_mac(&group),
            MacAddr::new(0x33, 0x33, 0xff, 0x34, 0x56, 0x78)
        );
        assert_eq!(
            multicast_mac(&ALL_NODES),
            MacAddr::new(0x33, 0x33, 0, 0, 0, 1)
        );
        assert!(is_link_local(&"fe80::1".parse().unwrap()));
        assert!(is_link_local(&"febf::1".parse().unwrap()));
        assert!(!is_link_local(&"fec0::1".parse().unwrap()));
    }
}
