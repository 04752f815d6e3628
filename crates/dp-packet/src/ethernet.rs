//! Ethernet II frames (IEEE 802.3 / RFC 894): destination, source, EtherType, payload.
//!
//! VLAN tags are not parsed: a tagged frame simply has EtherType [`EtherType::VLAN`].

use core::fmt;
use core::str::FromStr;

use crate::bytes::{array, set_bytes, set_u16, slice_from, slice_from_mut, u16_at};
use crate::{Error, Result};

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00, e.g. the unknown target of an ARP request.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Builds an address from its six octets.
    pub const fn new(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8) -> MacAddr {
        MacAddr([a, b, c, d, e, f])
    }

    /// Reads an address from the start of `bytes`; `None` when shorter than 6.
    pub fn from_bytes(bytes: &[u8]) -> Option<MacAddr> {
        bytes.first_chunk::<6>().map(|b| MacAddr(*b))
    }

    /// The six octets.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Group bit set (broadcast included).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Group bit clear.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// Locally administered bit set.
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// All zero.
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }
}

impl From<MacAddr> for [u8; 6] {
    fn from(mac: MacAddr) -> Self {
        mac.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = Error;

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-` separators); each octet exactly two hex digits.
    fn from_str(s: &str) -> Result<MacAddr> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut octets = [0u8; 6];
        let mut parts = s.split(sep);
        for octet in octets.iter_mut() {
            let part = parts.next().ok_or(Error::Malformed)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::Malformed);
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| Error::Malformed)?;
        }
        if parts.next().is_some() {
            return Err(Error::Malformed);
        }
        Ok(MacAddr(octets))
    }
}

wire_enum! {
    /// The EtherType of an Ethernet II frame. Unknown values are kept.
    pub struct EtherType(u16) {
        /// IPv4.
        IPV4 = 0x0800,
        /// ARP.
        ARP = 0x0806,
        /// 802.1Q VLAN tag (not parsed by this crate).
        VLAN = 0x8100,
        /// IPv6.
        IPV6 = 0x86dd,
    }
}

mod field {
    use core::ops::Range;
    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after checking that the 14-byte header fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// `Truncated` unless the header fits.
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

    /// Destination address.
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(array(self.buffer.as_ref(), field::DESTINATION))
    }

    /// Source address.
    pub fn src_addr(&self) -> MacAddr {
        MacAddr(array(self.buffer.as_ref(), field::SOURCE))
    }

    /// EtherType.
    pub fn ethertype(&self) -> EtherType {
        EtherType(u16_at(self.buffer.as_ref(), field::ETHERTYPE))
    }
}

slice_accessors!(EthernetFrame {
    /// Everything after the header (including any trailing padding of short frames).
    pub fn payload(&self) -> &'a [u8] {
        slice_from(self.buffer.as_ref(), field::PAYLOAD)
    }
});

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        set_bytes(self.buffer.as_mut(), field::DESTINATION, &addr.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        set_bytes(self.buffer.as_mut(), field::SOURCE, &addr.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.0);
    }

    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        slice_from_mut(self.buffer.as_mut(), field::PAYLOAD)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for EthernetFrame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The Ethernet header as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Source address.
    pub src_addr: MacAddr,
    /// Destination address.
    pub dst_addr: MacAddr,
    /// EtherType.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Header length: always 14.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `frame`; `Truncated` if the frame is shorter than the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) -> Result<()> {
        frame.check_len()?;
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
        Ok(())
    }

    /// Writes the header at the start of `buf`, returning its length (14).
    pub fn emit_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.emit(&mut EthernetFrame::new_unchecked(buf))?;
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ARP request as captured on a veth: broadcast, from 52:54:00:12:34:56.
    const FRAME: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, 0xaa,
        0xbb,
    ];

    #[test]
    fn parse_fields() {
        let frame = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(frame.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(
            frame.src_addr(),
            MacAddr::new(0x52, 0x54, 0, 0x12, 0x34, 0x56)
        );
        assert_eq!(frame.ethertype(), EtherType::ARP);
        assert_eq!(frame.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn emit_matches_bytes() {
        let repr = EthernetRepr {
            dst_addr: MacAddr::BROADCAST,
            src_addr: MacAddr::new(0x52, 0x54, 0, 0x12, 0x34, 0x56),
            ethertype: EtherType::ARP,
        };
        let mut buf = [0u8; 16];
        buf[14..].copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(repr.emit_into(&mut buf), Ok(14));
        assert_eq!(buf, FRAME);
        assert_eq!(
            EthernetRepr::parse(&EthernetFrame::new_checked(&buf[..]).unwrap()),
            Ok(repr)
        );
        assert_eq!(repr.emit_into(&mut [0u8; 13]), Err(Error::Truncated));
    }

    #[test]
    fn setters_and_payload_mut() {
        let mut buf = [0u8; 20];
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        frame.set_ethertype(EtherType(0x88cc));
        frame.payload_mut()[0] = 7;
        assert_eq!(frame.ethertype(), EtherType(0x88cc));
        assert_eq!(format!("{:?}", frame.ethertype()), "EtherType(0x88cc)");
        assert_eq!(buf[14], 7);
    }

    #[test]
    fn truncated_prefixes() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&FRAME[..len]).unwrap_err(),
                Error::Truncated
            );
        }
        assert!(EthernetFrame::new_checked(&FRAME[..HEADER_LEN]).is_ok());
    }

    #[test]
    fn unchecked_short_buffer_never_panics() {
        let mut buf = [0u8; 3];
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        assert_eq!(frame.ethertype(), EtherType(0));
        assert!(frame.payload().is_empty());
        frame.set_src_addr(MacAddr::BROADCAST);
        assert!(frame.payload_mut().is_empty());
    }

    #[test]
    fn mac_addr_classes() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        let mcast = MacAddr::new(0x33, 0x33, 0, 0, 0, 1);
        assert!(mcast.is_multicast() && !mcast.is_broadcast() && !mcast.is_unicast());
        let unicast = MacAddr::new(0x52, 0x54, 0, 0x12, 0x34, 0x56);
        assert!(unicast.is_unicast() && unicast.is_local());
    }

    #[test]
    fn mac_addr_text() {
        let mac: MacAddr = "aa:BB:0c:dd:ee:0f".parse().unwrap();
        assert_eq!(mac, MacAddr::new(0xaa, 0xbb, 0x0c, 0xdd, 0xee, 0x0f));
        assert_eq!(mac.to_string(), "aa:bb:0c:dd:ee:0f");
        assert_eq!(format!("{mac:?}"), "aa:bb:0c:dd:ee:0f");
        assert_eq!("aa-bb-0c-dd-ee-0f".parse::<MacAddr>(), Ok(mac));
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "a:bb:cc:dd:ee:ff",
            "gg:bb:cc:dd:ee:ff",
            "+a:bb:cc:dd:ee:ff",
            "aa:bb:cc:dd:ee:fff",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(Error::Malformed), "{bad}");
        }
        assert_eq!(
            MacAddr::from_bytes(&[1, 2, 3, 4, 5, 6, 7]),
            Some(MacAddr::new(1, 2, 3, 4, 5, 6))
        );
        assert_eq!(MacAddr::from_bytes(&[1, 2, 3]), None);
    }
}
