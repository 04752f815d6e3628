//! ARP (RFC 826). The view handles any hardware/protocol address sizes; [`ArpRepr`] only
//! Ethernet + IPv4, the one combination the dataplane answers (for its gateway address).

use core::net::Ipv4Addr;

use crate::bytes::{set_bytes, set_u16, set_u8, slice, u16_at, u8_at};
use crate::ethernet::{EtherType, MacAddr};
use crate::{Error, Result};

wire_enum! {
    /// ARP hardware type. Unknown values are kept.
    pub struct ArpHardware(u16) {
        /// Ethernet (10Mb), used by every Ethernet-like link.
        ETHERNET = 1,
    }
}

wire_enum! {
    /// ARP operation. Unknown values are kept.
    pub struct ArpOperation(u16) {
        /// Who has `target_protocol_addr`?
        REQUEST = 1,
        /// `source_protocol_addr` is at `source_hardware_addr`.
        REPLY = 2,
    }
}

mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const ADDRESSES: usize = 8;
}

/// Length of the fixed part, before the variable-size addresses.
pub const FIXED_HEADER_LEN: usize = field::ADDRESSES;
/// Length of an Ethernet/IPv4 ARP packet.
pub const ETHERNET_IPV4_LEN: usize = 28;

/// A view of an ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps a buffer after checking that the fixed header and the four addresses fit.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` unless the fixed header and the addresses its length fields announce fit.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < FIXED_HEADER_LEN || len < self.total_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Length announced by the header: 8 + 2 × (hardware + protocol address lengths).
    pub fn total_len(&self) -> usize {
        FIXED_HEADER_LEN + 2 * (usize::from(self.hardware_len()) + usize::from(self.protocol_len()))
    }

    /// Hardware type.
    pub fn hardware_type(&self) -> ArpHardware {
        ArpHardware(u16_at(self.buffer.as_ref(), field::HTYPE))
    }

    /// Protocol type (an EtherType).
    pub fn protocol_type(&self) -> EtherType {
        EtherType(u16_at(self.buffer.as_ref(), field::PTYPE))
    }

    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::HLEN)
    }

    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::PLEN)
    }

    /// Operation.
    pub fn operation(&self) -> ArpOperation {
        ArpOperation(u16_at(self.buffer.as_ref(), field::OPER))
    }

    fn sha_range(&self) -> core::ops::Range<usize> {
        let start = field::ADDRESSES;
        start..start + usize::from(self.hardware_len())
    }

    fn spa_range(&self) -> core::ops::Range<usize> {
        let start = self.sha_range().end;
        start..start + usize::from(self.protocol_len())
    }

    fn tha_range(&self) -> core::ops::Range<usize> {
        let start = self.spa_range().end;
        start..start + usize::from(self.hardware_len())
    }

    fn tpa_range(&self) -> core::ops::Range<usize> {
        let start = self.tha_range().end;
        start..start + usize::from(self.protocol_len())
    }

    fn bytes_in(&self, range: core::ops::Range<usize>) -> &[u8] {
        slice(self.buffer.as_ref(), range)
    }

    /// Whether this is the Ethernet/IPv4 flavour [`ArpRepr`] handles.
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.hardware_type() == ArpHardware::ETHERNET
            && self.protocol_type() == EtherType::IPV4
            && self.hardware_len() == 6
            && self.protocol_len() == 4
    }
}

slice_accessors!(ArpPacket {
    /// Sender hardware address, raw.
    pub fn source_hardware_addr(&self) -> &'a [u8] {
        slice(self.buffer.as_ref(), self.sha_range())
    }

    /// Sender protocol address, raw.
    pub fn source_protocol_addr(&self) -> &'a [u8] {
        slice(self.buffer.as_ref(), self.spa_range())
    }

    /// Target hardware address, raw.
    pub fn target_hardware_addr(&self) -> &'a [u8] {
        slice(self.buffer.as_ref(), self.tha_range())
    }

    /// Target protocol address, raw.
    pub fn target_protocol_addr(&self) -> &'a [u8] {
        slice(self.buffer.as_ref(), self.tpa_range())
    }
});

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the hardware type.
    pub fn set_hardware_type(&mut self, value: ArpHardware) {
        set_u16(self.buffer.as_mut(), field::HTYPE, value.0);
    }

    /// Sets the protocol type.
    pub fn set_protocol_type(&mut self, value: EtherType) {
        set_u16(self.buffer.as_mut(), field::PTYPE, value.0);
    }

    /// Sets the hardware address length (moves where the addresses are).
    pub fn set_hardware_len(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::HLEN, value);
    }

    /// Sets the protocol address length (moves where the addresses are).
    pub fn set_protocol_len(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::PLEN, value);
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, value: ArpOperation) {
        set_u16(self.buffer.as_mut(), field::OPER, value.0);
    }

    /// Sets the sender hardware address; ignored unless `addr` has the announced length.
    pub fn set_source_hardware_addr(&mut self, addr: &[u8]) {
        let range = self.sha_range();
        set_bytes(self.buffer.as_mut(), range, addr);
    }

    /// Sets the sender protocol address; ignored unless `addr` has the announced length.
    pub fn set_source_protocol_addr(&mut self, addr: &[u8]) {
        let range = self.spa_range();
        set_bytes(self.buffer.as_mut(), range, addr);
    }

    /// Sets the target hardware address; ignored unless `addr` has the announced length.
    pub fn set_target_hardware_addr(&mut self, addr: &[u8]) {
        let range = self.tha_range();
        set_bytes(self.buffer.as_mut(), range, addr);
    }

    /// Sets the target protocol address; ignored unless `addr` has the announced length.
    pub fn set_target_protocol_addr(&mut self, addr: &[u8]) {
        let range = self.tpa_range();
        set_bytes(self.buffer.as_mut(), range, addr);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for ArpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An Ethernet/IPv4 ARP packet as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request, reply, or another operation (kept as is).
    pub operation: ArpOperation,
    /// Sender MAC.
    pub source_hardware_addr: MacAddr,
    /// Sender IPv4 (0.0.0.0 in an address probe, RFC 5227).
    pub source_protocol_addr: Ipv4Addr,
    /// Target MAC (zero in requests).
    pub target_hardware_addr: MacAddr,
    /// Target IPv4.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Reads an Ethernet/IPv4 ARP packet; `Unsupported` for other hardware or protocol types.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        packet.check_len()?;
        if !packet.is_ethernet_ipv4() {
            return Err(Error::Unsupported);
        }
        let ip = |bytes: &[u8]| -> Result<Ipv4Addr> {
            bytes
                .first_chunk::<4>()
                .map(|b| Ipv4Addr::from(*b))
                .ok_or(Error::Truncated)
        };
        Ok(ArpRepr {
            operation: packet.operation(),
            source_hardware_addr: MacAddr::from_bytes(packet.bytes_in(packet.sha_range()))
                .ok_or(Error::Truncated)?,
            source_protocol_addr: ip(packet.bytes_in(packet.spa_range()))?,
            target_hardware_addr: MacAddr::from_bytes(packet.bytes_in(packet.tha_range()))
                .ok_or(Error::Truncated)?,
            target_protocol_addr: ip(packet.bytes_in(packet.tpa_range()))?,
        })
    }

    /// The reply to this request, from `our_mac` (which owns `target_protocol_addr`).
    pub fn reply(&self, our_mac: MacAddr) -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::REPLY,
            source_hardware_addr: our_mac,
            source_protocol_addr: self.target_protocol_addr,
            target_hardware_addr: self.source_hardware_addr,
            target_protocol_addr: self.source_protocol_addr,
        }
    }

    /// Length of the packet: 28.
    pub const fn buffer_len(&self) -> usize {
        ETHERNET_IPV4_LEN
    }

    /// Writes the packet; `Truncated` if the buffer is shorter than 28 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) -> Result<()> {
        if packet.buffer.as_ref().len() < ETHERNET_IPV4_LEN {
            return Err(Error::Truncated);
        }
        packet.set_hardware_type(ArpHardware::ETHERNET);
        packet.set_protocol_type(EtherType::IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(&self.source_hardware_addr.0);
        packet.set_source_protocol_addr(&self.source_protocol_addr.octets());
        packet.set_target_hardware_addr(&self.target_hardware_addr.0);
        packet.set_target_protocol_addr(&self.target_protocol_addr.octets());
        Ok(())
    }

    /// Writes the packet at the start of `buf`, returning its length (28).
    pub fn emit_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.emit(&mut ArpPacket::new_unchecked(buf))?;
        Ok(ETHERNET_IPV4_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // "who-has 169.254.0.1 tell 10.1.1.2" from 52:54:00:12:34:56 (ARP payload of an Ethernet frame,
    // as Linux sends it).
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype, ptype, hlen, plen, oper
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 10, 1, 1, 2, // sha, spa
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 169, 254, 0, 1, // tha, tpa
    ];

    // "169.254.0.1 is-at 02:00:00:00:00:01".
    const REPLY: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 169, 254, 0, 1, //
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 10, 1, 1, 2,
    ];

    const VM_MAC: MacAddr = MacAddr::new(0x52, 0x54, 0, 0x12, 0x34, 0x56);
    const GW_MAC: MacAddr = MacAddr::new(2, 0, 0, 0, 0, 1);

    #[test]
    fn parse_request() {
        let packet = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(packet.operation(), ArpOperation::REQUEST);
        assert_eq!(packet.hardware_type(), ArpHardware::ETHERNET);
        assert_eq!(packet.protocol_type(), EtherType::IPV4);
        assert_eq!(packet.source_protocol_addr(), &[10, 1, 1, 2]);
        let repr = ArpRepr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            ArpRepr {
                operation: ArpOperation::REQUEST,
                source_hardware_addr: VM_MAC,
                source_protocol_addr: Ipv4Addr::new(10, 1, 1, 2),
                target_hardware_addr: MacAddr::ZERO,
                target_protocol_addr: Ipv4Addr::new(169, 254, 0, 1),
            }
        );
    }

    #[test]
    fn reply_emits_exact_bytes() {
        let request = ArpRepr::parse(&ArpPacket::new_checked(&REQUEST[..]).unwrap()).unwrap();
        let mut buf = [0xeeu8; 30];
        assert_eq!(request.reply(GW_MAC).emit_into(&mut buf), Ok(28));
        assert_eq!(&buf[..28], &REPLY);
        assert_eq!(&buf[28..], &[0xee, 0xee]);
        assert_eq!(request.emit_into(&mut [0u8; 27]), Err(Error::Truncated));
    }

    #[test]
    fn truncated_prefixes() {
        for len in 0..REQUEST.len() {
            assert_eq!(
                ArpPacket::new_checked(&REQUEST[..len]).unwrap_err(),
                Error::Truncated
            );
        }
    }

    #[test]
    fn other_hardware_is_unsupported_but_viewable() {
        // An IPoIB-like ARP: htype 32, 20-byte hardware addresses.
        let mut buf = [0u8; 8 + 2 * (20 + 4)];
        buf[..8].copy_from_slice(&[0, 32, 8, 0, 20, 4, 0, 1]);
        buf[8 + 20..8 + 24].copy_from_slice(&[10, 0, 0, 1]);
        let packet = ArpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.source_hardware_addr().len(), 20);
        assert_eq!(packet.source_protocol_addr(), &[10, 0, 0, 1]);
        assert_eq!(ArpRepr::parse(&packet), Err(Error::Unsupported));
        assert_eq!(
            ArpPacket::new_checked(&buf[..buf.len() - 1]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn unchecked_short_buffer_never_panics() {
        let mut buf = [0x00, 0x01, 0x08, 0x00, 0xff, 0xff];
        let mut packet = ArpPacket::new_unchecked(&mut buf[..]);
        assert!(packet.target_protocol_addr().is_empty());
        packet.set_target_hardware_addr(&[1; 255]);
        assert_eq!(packet.operation(), ArpOperation(0));
    }
}
