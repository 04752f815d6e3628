//! DHCPv6 (RFC 8415): the client/server message header, option TLVs, IA_NA and IA Address views, and
//! an option writer with nested options. Relay-agent messages (RELAY-FORW/REPL) have a different
//! header and are only recognised ([`Dhcpv6Packet::is_relay`]), not parsed.

use core::net::Ipv6Addr;

use crate::bytes::{
    array, set_bytes, set_u16, set_u32, set_u8, slice_from, slice_from_mut, u16_at, u32_at, u8_at,
};
use crate::{Error, Result};

/// UDP port of the client.
pub const CLIENT_PORT: u16 = 546;
/// UDP port of servers and relays.
pub const SERVER_PORT: u16 = 547;
/// ff02::1:2, where clients send.
pub const ALL_RELAY_AGENTS_AND_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

wire_enum! {
    /// DHCPv6 message type. Unknown values are kept.
    pub struct Dhcpv6MessageType(u8) {
        /// Client looks for servers.
        SOLICIT = 1,
        /// Server offers.
        ADVERTISE = 2,
        /// Client requests addresses.
        REQUEST = 3,
        /// Client checks its addresses still fit the link.
        CONFIRM = 4,
        /// Client extends leases with its server.
        RENEW = 5,
        /// Client extends leases with any server.
        REBIND = 6,
        /// Server answers.
        REPLY = 7,
        /// Client gives addresses back.
        RELEASE = 8,
        /// Client says an address is in use.
        DECLINE = 9,
        /// Server asks the client to renew.
        RECONFIGURE = 10,
        /// Client asks for configuration only.
        INFORMATION_REQUEST = 11,
        /// Relay to server (different header).
        RELAY_FORW = 12,
        /// Server to relay (different header).
        RELAY_REPL = 13,
    }
}

/// Option codes (RFC 8415 unless noted).
pub mod option {
    /// Client identifier (DUID).
    pub const CLIENTID: u16 = 1;
    /// Server identifier (DUID).
    pub const SERVERID: u16 = 2;
    /// Identity association for non-temporary addresses.
    pub const IA_NA: u16 = 3;
    /// Identity association for temporary addresses.
    pub const IA_TA: u16 = 4;
    /// IA address (nested in IA_NA/IA_TA).
    pub const IAADDR: u16 = 5;
    /// Option request option: list of option codes.
    pub const ORO: u16 = 6;
    /// Server preference.
    pub const PREFERENCE: u16 = 7;
    /// Elapsed time in hundredths of a second.
    pub const ELAPSED_TIME: u16 = 8;
    /// Status code.
    pub const STATUS_CODE: u16 = 13;
    /// Rapid commit (empty).
    pub const RAPID_COMMIT: u16 = 14;
    /// User class: a list of 2-byte-length-prefixed opaque strings (e.g. `iPXE`).
    pub const USER_CLASS: u16 = 15;
    /// Vendor class: enterprise number, then 2-byte-length-prefixed opaque strings (e.g.
    /// `PXEClient:Arch:00007:…`).
    pub const VENDOR_CLASS: u16 = 16;
    /// DNS recursive name servers (RFC 3646).
    pub const DNS_SERVERS: u16 = 23;
    /// Domain search list (RFC 3646).
    pub const DOMAIN_LIST: u16 = 24;
    /// Identity association for prefix delegation.
    pub const IA_PD: u16 = 25;
    /// IA prefix (nested in IA_PD).
    pub const IAPREFIX: u16 = 26;
    /// Client FQDN (RFC 4704).
    pub const CLIENT_FQDN: u16 = 39;
    /// Boot file URL (RFC 5970).
    pub const BOOTFILE_URL: u16 = 59;
}

/// Status codes of the STATUS_CODE option.
pub mod status {
    /// Success.
    pub const SUCCESS: u16 = 0;
    /// Unspecified failure.
    pub const UNSPEC_FAIL: u16 = 1;
    /// No addresses available.
    pub const NO_ADDRS_AVAIL: u16 = 2;
    /// Binding unknown.
    pub const NO_BINDING: u16 = 3;
    /// Address not appropriate for the link.
    pub const NOT_ON_LINK: u16 = 4;
    /// Client must use multicast.
    pub const USE_MULTICAST: u16 = 5;
    /// No prefixes available.
    pub const NO_PREFIX_AVAIL: u16 = 6;
}

mod field {
    use core::ops::Range;
    pub const MSG_TYPE: usize = 0;
    pub const XID: Range<usize> = 1..4;
    pub const OPTIONS: usize = 4;
}

/// Length of the client/server message header.
pub const HEADER_LEN: usize = field::OPTIONS;
/// Length of an option's code + length header.
pub const OPTION_HEADER_LEN: usize = 4;

/// A view of a client/server DHCPv6 message (the UDP payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dhcpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Dhcpv6Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Dhcpv6Packet { buffer }
    }

    /// Wraps a buffer after checking that the 4-byte header fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` unless the 4-byte header fits.
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
    pub fn msg_type(&self) -> Dhcpv6MessageType {
        Dhcpv6MessageType(u8_at(self.buffer.as_ref(), field::MSG_TYPE))
    }

    /// A relay message, whose header this view does not describe.
    pub fn is_relay(&self) -> bool {
        matches!(
            self.msg_type(),
            Dhcpv6MessageType::RELAY_FORW | Dhcpv6MessageType::RELAY_REPL
        )
    }

    /// 24-bit transaction id.
    pub fn transaction_id(&self) -> u32 {
        let [a, b, c] = array::<3>(self.buffer.as_ref(), field::XID);
        u32::from_be_bytes([0, a, b, c])
    }

    /// Option lookup for the scalar getters (borrowing the view, so it works for any buffer type).
    fn option_data(&self, code: u16) -> Option<&[u8]> {
        Dhcpv6Options::new(slice_from(self.buffer.as_ref(), field::OPTIONS)).find_option(code)
    }

    /// Elapsed time in hundredths of a second.
    pub fn elapsed_time(&self) -> Option<u16> {
        match self.option_data(option::ELAPSED_TIME)? {
            &[a, b] => Some(u16::from_be_bytes([a, b])),
            _ => None,
        }
    }

    /// Whether the client asked for rapid commit (two-message exchange).
    pub fn rapid_commit(&self) -> bool {
        self.option_data(option::RAPID_COMMIT).is_some()
    }
}

slice_accessors!(Dhcpv6Packet {
    /// The raw option area.
    pub fn options_bytes(&self) -> &'a [u8] {
        slice_from(self.buffer.as_ref(), field::OPTIONS)
    }

    /// Iterator over the top-level options.
    pub fn options(&self) -> Dhcpv6Options<'a> {
        Dhcpv6Options::new(self.options_bytes())
    }

    /// Data of the first top-level option with `code`.
    pub fn find_option(&self, code: u16) -> Option<&'a [u8]> {
        self.options().find_option(code)
    }

    /// Client DUID.
    pub fn client_id(&self) -> Option<&'a [u8]> {
        self.find_option(option::CLIENTID)
    }

    /// Server DUID.
    pub fn server_id(&self) -> Option<&'a [u8]> {
        self.find_option(option::SERVERID)
    }

    /// The first IA_NA, if present and at least 12 bytes long.
    pub fn ia_na(&self) -> Option<IaNa<&'a [u8]>> {
        IaNa::new_checked(self.find_option(option::IA_NA)?).ok()
    }

    /// Option codes the client requests (ORO); empty if absent. An odd trailing byte is ignored.
    pub fn requested_options(&self) -> impl Iterator<Item = u16> + 'a {
        self.find_option(option::ORO)
            .unwrap_or(&[])
            .chunks_exact(2)
            .map(|pair| u16_at(pair, 0..2))
    }
});

impl<T: AsRef<[u8]> + AsMut<[u8]>> Dhcpv6Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: Dhcpv6MessageType) {
        set_u8(self.buffer.as_mut(), field::MSG_TYPE, value.0);
    }

    /// Sets the transaction id (low 24 bits).
    pub fn set_transaction_id(&mut self, xid: u32) {
        let [_, a, b, c] = xid.to_be_bytes();
        set_bytes(self.buffer.as_mut(), field::XID, &[a, b, c]);
    }

    /// Mutable option area, for an [`OptionWriter`].
    pub fn options_mut(&mut self) -> &mut [u8] {
        slice_from_mut(self.buffer.as_mut(), field::OPTIONS)
    }

    /// Same as [`options_mut`](Self::options_mut), named like the other views.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.options_mut()
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Dhcpv6Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Writes a message header (type and transaction id) at the start of `buf`; returns its length (4).
pub fn emit_header(
    buf: &mut [u8],
    msg_type: Dhcpv6MessageType,
    transaction_id: u32,
) -> Result<usize> {
    let header = buf.get_mut(..HEADER_LEN).ok_or(Error::Truncated)?;
    let mut packet = Dhcpv6Packet::new_unchecked(header);
    packet.set_msg_type(msg_type);
    packet.set_transaction_id(transaction_id);
    Ok(HEADER_LEN)
}

/// Iterator over DHCPv6 options as `(code, data)` (also for the options nested in IA_NA etc.).
///
/// An option header or body running past the buffer yields `Err(Malformed)` once, then the iterator
/// stops.
#[derive(Debug, Clone)]
pub struct Dhcpv6Options<'a> {
    rest: &'a [u8],
}

impl<'a> Dhcpv6Options<'a> {
    /// Iterates over an option area.
    pub fn new(bytes: &'a [u8]) -> Self {
        Dhcpv6Options { rest: bytes }
    }

    /// Data of the first option with `code`, looking no further than the first malformed option.
    pub fn find_option(&self, code: u16) -> Option<&'a [u8]> {
        self.clone()
            .map_while(|o| o.ok())
            .find_map(|(c, data)| (c == code).then_some(data))
    }

    /// Checks that the options are well formed (nested ones are not visited).
    pub fn validate(&self) -> Result<()> {
        self.clone().try_for_each(|o| o.map(|_| ()))
    }
}

impl<'a> Iterator for Dhcpv6Options<'a> {
    type Item = Result<(u16, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = self
            .rest
            .split_at_checked(OPTION_HEADER_LEN)
            .and_then(|(hdr, body)| {
                let code = u16_at(hdr, 0..2);
                let len = usize::from(u16_at(hdr, 2..4));
                body.split_at_checked(len)
                    .map(|(data, rest)| (code, data, rest))
            });
        let Some((code, data, rest)) = parsed else {
            self.rest = &[];
            return Some(Err(Error::Malformed));
        };
        self.rest = rest;
        Some(Ok((code, data)))
    }
}

/// Splits a STATUS_CODE option's data into the code and the UTF-8 message.
pub fn parse_status_code(data: &[u8]) -> Option<(u16, &[u8])> {
    let (code, message) = data.split_at_checked(2)?;
    Some((u16_at(code, 0..2), message))
}

mod ia_field {
    use core::ops::Range;
    pub const IAID: Range<usize> = 0..4;
    pub const T1: Range<usize> = 4..8;
    pub const T2: Range<usize> = 8..12;
    pub const IA_OPTIONS: usize = 12;
    pub const ADDR: Range<usize> = 0..16;
    pub const PREFERRED: Range<usize> = 16..20;
    pub const VALID: Range<usize> = 20..24;
    pub const ADDR_OPTIONS: usize = 24;
}

/// A view of an IA_NA option's data: IAID, T1, T2, nested options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IaNa<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IaNa<T> {
    /// Length of the fixed part.
    pub const HEADER_LEN: usize = ia_field::IA_OPTIONS;

    /// Wraps option data without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        IaNa { buffer }
    }

    /// Wraps option data after checking that the 12-byte fixed part fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let ia = Self::new_unchecked(buffer);
        if ia.buffer.as_ref().len() < Self::HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(ia)
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Identity association id, chosen by the client.
    pub fn iaid(&self) -> u32 {
        u32_at(self.buffer.as_ref(), ia_field::IAID)
    }

    /// Renewal time (seconds).
    pub fn t1(&self) -> u32 {
        u32_at(self.buffer.as_ref(), ia_field::T1)
    }

    /// Rebinding time (seconds).
    pub fn t2(&self) -> u32 {
        u32_at(self.buffer.as_ref(), ia_field::T2)
    }
}

slice_accessors!(IaNa {
    /// Nested options (IAADDR, STATUS_CODE).
    pub fn options(&self) -> Dhcpv6Options<'a> {
        Dhcpv6Options::new(slice_from(self.buffer.as_ref(), ia_field::IA_OPTIONS))
    }

    /// The first nested IAADDR.
    pub fn address(&self) -> Option<IaAddr<&'a [u8]>> {
        IaAddr::new_checked(self.options().find_option(option::IAADDR)?).ok()
    }
});

impl<T: AsRef<[u8]> + AsMut<[u8]>> IaNa<T> {
    /// Sets the IAID.
    pub fn set_iaid(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), ia_field::IAID, value);
    }

    /// Sets T1.
    pub fn set_t1(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), ia_field::T1, value);
    }

    /// Sets T2.
    pub fn set_t2(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), ia_field::T2, value);
    }

    /// Mutable nested option area.
    pub fn options_mut(&mut self) -> &mut [u8] {
        slice_from_mut(self.buffer.as_mut(), ia_field::IA_OPTIONS)
    }
}

/// A view of an IAADDR option's data: address, lifetimes, nested options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IaAddr<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IaAddr<T> {
    /// Length of the fixed part.
    pub const HEADER_LEN: usize = ia_field::ADDR_OPTIONS;

    /// Wraps option data without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        IaAddr { buffer }
    }

    /// Wraps option data after checking that the 24-byte fixed part fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let addr = Self::new_unchecked(buffer);
        if addr.buffer.as_ref().len() < Self::HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(addr)
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The address.
    pub fn addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.buffer.as_ref(), ia_field::ADDR))
    }

    /// Preferred lifetime (seconds).
    pub fn preferred_lifetime(&self) -> u32 {
        u32_at(self.buffer.as_ref(), ia_field::PREFERRED)
    }

    /// Valid lifetime (seconds).
    pub fn valid_lifetime(&self) -> u32 {
        u32_at(self.buffer.as_ref(), ia_field::VALID)
    }
}

slice_accessors!(IaAddr {
    /// Nested options (STATUS_CODE).
    pub fn options(&self) -> Dhcpv6Options<'a> {
        Dhcpv6Options::new(slice_from(self.buffer.as_ref(), ia_field::ADDR_OPTIONS))
    }
});

/// Where a begun option's length field is, to patch it in [`OptionWriter::end`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a begun option must be closed with OptionWriter::end"]
pub struct Marker {
    header_at: usize,
}

/// Writes options, possibly nested, into a caller buffer.
#[derive(Debug)]
pub struct OptionWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> OptionWriter<'a> {
    /// Writes from the start of `buf` (typically after the 4-byte message header).
    pub fn new(buf: &'a mut [u8]) -> Self {
        OptionWriter { buf, len: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn reserve(&mut self, n: usize) -> Result<&mut [u8]> {
        let end = self.len.checked_add(n).ok_or(Error::Truncated)?;
        let slot = self.buf.get_mut(self.len..end).ok_or(Error::Truncated)?;
        self.len = end;
        Ok(slot)
    }

    /// Writes raw bytes, e.g. the fixed part of an option opened with [`begin`](Self::begin).
    pub fn put_raw(&mut self, data: &[u8]) -> Result<()> {
        self.reserve(data.len())?.copy_from_slice(data);
        Ok(())
    }

    /// Writes a whole option. `Malformed` if `data` is longer than 65535 bytes.
    pub fn put(&mut self, code: u16, data: &[u8]) -> Result<()> {
        let len = u16::try_from(data.len()).map_err(|_| Error::Malformed)?;
        let slot = self.reserve(OPTION_HEADER_LEN + data.len())?;
        set_u16(slot, 0..2, code);
        set_u16(slot, 2..4, len);
        set_bytes(
            slot,
            OPTION_HEADER_LEN..OPTION_HEADER_LEN + data.len(),
            data,
        );
        Ok(())
    }

    /// Writes a two-byte option (e.g. elapsed time).
    pub fn put_u16(&mut self, code: u16, value: u16) -> Result<()> {
        self.put(code, &value.to_be_bytes())
    }

    /// Writes a four-byte option.
    pub fn put_u32(&mut self, code: u16, value: u32) -> Result<()> {
        self.put(code, &value.to_be_bytes())
    }

    /// Writes an address list option (e.g. DNS servers).
    pub fn put_ipv6_list(&mut self, code: u16, addrs: &[Ipv6Addr]) -> Result<()> {
        let marker = self.begin(code)?;
        for addr in addrs {
            self.put_raw(&addr.octets())?;
        }
        self.end(marker)
    }

    /// Writes a STATUS_CODE option.
    pub fn put_status_code(&mut self, status: u16, message: &str) -> Result<()> {
        let marker = self.begin(option::STATUS_CODE)?;
        self.put_raw(&status.to_be_bytes())?;
        self.put_raw(message.as_bytes())?;
        self.end(marker)
    }

    /// Writes an IAADDR option without nested options.
    pub fn put_iaaddr(&mut self, addr: Ipv6Addr, preferred: u32, valid: u32) -> Result<()> {
        let marker = self.begin(option::IAADDR)?;
        self.put_raw(&addr.octets())?;
        self.put_raw(&preferred.to_be_bytes())?;
        self.put_raw(&valid.to_be_bytes())?;
        self.end(marker)
    }

    /// Opens an option whose data is written next (raw bytes and/or nested options).
    pub fn begin(&mut self, code: u16) -> Result<Marker> {
        let header_at = self.len;
        let slot = self.reserve(OPTION_HEADER_LEN)?;
        set_u16(slot, 0..2, code);
        set_u16(slot, 2..4, 0);
        Ok(Marker { header_at })
    }

    /// Opens an IA_NA and writes its fixed part; nested IAADDR/STATUS_CODE options follow.
    pub fn begin_ia_na(&mut self, iaid: u32, t1: u32, t2: u32) -> Result<Marker> {
        let marker = self.begin(option::IA_NA)?;
        let slot = self.reserve(IaNa::<&[u8]>::HEADER_LEN)?;
        set_u32(slot, 0..4, iaid);
        set_u32(slot, 4..8, t1);
        set_u32(slot, 8..12, t2);
        Ok(marker)
    }

    /// Closes an option opened with [`begin`](Self::begin), patching its length. `Malformed` if its
    /// data exceeds 65535 bytes.
    pub fn end(&mut self, marker: Marker) -> Result<()> {
        let data_start = marker.header_at + OPTION_HEADER_LEN;
        let len = self.len.checked_sub(data_start).ok_or(Error::Malformed)?;
        let len = u16::try_from(len).map_err(|_| Error::Malformed)?;
        let length_field = marker.header_at + 2..marker.header_at + 4;
        if self.buf.get(length_field.clone()).is_none() {
            return Err(Error::Malformed);
        }
        set_u16(self.buf, length_field, len);
        Ok(())
    }

    /// Returns the length of the option area.
    pub fn finish(self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::hex;
    use crate::{EthernetFrame, Ipv6Packet, UdpPacket};

    fn solicit() -> Vec<u8> {
        let frame = hex(include_str!("../testdata/dhclient6_solicit.hex"));
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.dst_addr(), ALL_RELAY_AGENTS_AND_SERVERS);
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port()), (CLIENT_PORT, SERVER_PORT));
        udp.payload().to_vec()
    }

    #[test]
    fn captured_checksum_is_unfinished_offload() {
        // dhclient sends through a UDP socket on a veth, which leaves the checksum to "hardware": the
        // captured field holds only the pseudo-header sum (CHECKSUM_PARTIAL). Verify must reject it,
        // and finishing it gives what scapy computes for the full checksum (0x5ce5).
        let mut frame = hex(include_str!("../testdata/dhclient6_solicit.hex"));
        let ip = Ipv6Packet::new_checked(&frame[14..]).unwrap();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        let udp_len = u32::from(udp.len());
        assert_eq!(
            udp.checksum(),
            crate::checksum::pseudo_header_v6(&src, &dst, crate::IpProtocol::UDP, udp_len)
        );
        assert!(!udp.verify_checksum_v6(&src, &dst));
        crate::checksum::finish_partial(&mut frame[14 + 40..], 0, 6).unwrap();
        let ip = Ipv6Packet::new_checked(&frame[14..]).unwrap();
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(udp.checksum(), 0x5ce5);
        assert!(udp.verify_checksum_v6(&src, &dst));
    }

    const CLIENT_DUID: [u8; 14] = [
        0x00, 0x01, 0x00, 0x01, 0x32, 0x94, 0xec, 0x91, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
    ];

    #[test]
    fn dhclient_solicit() {
        let bytes = solicit();
        let packet = Dhcpv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.msg_type(), Dhcpv6MessageType::SOLICIT);
        assert!(!packet.is_relay());
        assert_eq!(packet.transaction_id(), 0xdf1d02);
        assert_eq!(packet.client_id(), Some(&CLIENT_DUID[..]));
        assert_eq!(packet.server_id(), None);
        assert_eq!(
            packet.requested_options().collect::<Vec<_>>(),
            [23, 24, 39, 31]
        );
        assert_eq!(packet.elapsed_time(), Some(0));
        assert!(!packet.rapid_commit());
        let ia = packet.ia_na().unwrap();
        assert_eq!((ia.iaid(), ia.t1(), ia.t2()), (0x00123456, 3600, 5400));
        assert_eq!(ia.options().count(), 0);
        assert!(ia.address().is_none());
        let codes: Vec<u16> = packet.options().map(|o| o.unwrap().0).collect();
        assert_eq!(codes, [1, 6, 8, 3]);
    }

    #[test]
    fn reply_exact_bytes() {
        let request = solicit();
        let request = Dhcpv6Packet::new_checked(&request[..]).unwrap();
        let server_duid = [0x00, 0x03, 0x00, 0x01, 0x02, 0, 0, 0, 0, 0x01];
        let mut buf = [0u8; 200];
        let hdr =
            emit_header(&mut buf, Dhcpv6MessageType::REPLY, request.transaction_id()).unwrap();
        let mut w = OptionWriter::new(&mut buf[hdr..]);
        w.put(option::SERVERID, &server_duid).unwrap();
        w.put(option::CLIENTID, request.client_id().unwrap())
            .unwrap();
        let ia = request.ia_na().unwrap();
        let m = w.begin_ia_na(ia.iaid(), 3600, 5400).unwrap();
        w.put_iaaddr("2000:1:2::5".parse().unwrap(), 7200, 10800)
            .unwrap();
        w.end(m).unwrap();
        w.put_ipv6_list(
            option::DNS_SERVERS,
            &["2001:4860:4860::8888".parse().unwrap()],
        )
        .unwrap();
        w.put(option::RAPID_COMMIT, &[]).unwrap();
        let len = hdr + w.finish();
        assert_eq!(buf[..len], hex(REPLY)[..]);
        let reply = Dhcpv6Packet::new_checked(&buf[..len]).unwrap();
        let addr = reply.ia_na().unwrap().address().unwrap();
        assert_eq!(addr.addr(), "2000:1:2::5".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            (addr.preferred_lifetime(), addr.valid_lifetime()),
            (7200, 10800)
        );
        assert!(reply.rapid_commit());
        assert_eq!(
            emit_header(&mut [0u8; 3], Dhcpv6MessageType::REPLY, 1),
            Err(Error::Truncated)
        );
    }

    // scapy: DHCP6_Reply(trid=0xdf1d02)/DHCP6OptServerId(duid=DUID_LL(lladdr='02:00:00:00:00:01'))/
    //   DHCP6OptClientId(duid=<solicit's DUID>)/DHCP6OptIA_NA(iaid=0x123456, T1=3600, T2=5400,
    //   ianaopts=[DHCP6OptIAAddress(addr='2000:1:2::5', preflft=7200, validlft=10800)])/
    //   DHCP6OptDNSServers(dnsservers=['2001:4860:4860::8888'])/DHCP6OptRapidCommit()
    const REPLY: &str = concat!(
        "07df1d020002000a000300010200000000010001000e000100013294ec915254",
        "00123456000300280012345600000e1000001518000500182000000100020000",
        "000000000000000500001c2000002a3000170010200148604860000000000000",
        "00008888000e0000",
    );

    #[test]
    fn status_code_roundtrip() {
        let mut buf = [0u8; 32];
        let mut w = OptionWriter::new(&mut buf);
        w.put_status_code(status::NO_ADDRS_AVAIL, "none").unwrap();
        let len = w.finish();
        assert_eq!(buf[..len], [0, 13, 0, 6, 0, 2, b'n', b'o', b'n', b'e']);
        let (code, data) = Dhcpv6Options::new(&buf[..len]).next().unwrap().unwrap();
        assert_eq!(code, option::STATUS_CODE);
        assert_eq!(
            parse_status_code(data),
            Some((status::NO_ADDRS_AVAIL, &b"none"[..]))
        );
        assert_eq!(parse_status_code(&[1]), None);
    }

    #[test]
    fn option_iterator_edge_cases() {
        let mut it = Dhcpv6Options::new(&[0, 8, 0, 2, 0, 0, 0, 1, 0]);
        assert_eq!(it.next(), Some(Ok((8, &[0, 0][..]))));
        assert_eq!(it.next(), Some(Err(Error::Malformed)));
        assert_eq!(it.next(), None);
        assert_eq!(
            Dhcpv6Options::new(&[0, 1, 0, 9, 1]).validate(),
            Err(Error::Malformed)
        );
        assert_eq!(
            Dhcpv6Options::new(&[0, 14, 0, 0]).collect::<Vec<_>>(),
            vec![Ok((14, &[][..]))]
        );
        assert_eq!(Dhcpv6Options::new(&[]).next(), None);
    }

    #[test]
    fn writer_limits() {
        let mut buf = [0u8; 10];
        let mut w = OptionWriter::new(&mut buf);
        let m = w.begin(option::IA_NA).unwrap();
        assert_eq!(w.put_raw(&[0; 7]), Err(Error::Truncated));
        w.put_raw(&[1; 6]).unwrap();
        w.end(m).unwrap();
        assert_eq!(w.put(option::RAPID_COMMIT, &[]), Err(Error::Truncated));
        assert_eq!(w.finish(), 10);
        assert_eq!(buf, [0, 3, 0, 6, 1, 1, 1, 1, 1, 1]);
        let mut big = vec![0u8; 70_000];
        let mut w = OptionWriter::new(&mut big);
        assert_eq!(w.put(1, &[0; 65_536]), Err(Error::Malformed));
        let m = w.begin(1).unwrap();
        w.put_raw(&[0; 65_536]).unwrap();
        assert_eq!(w.end(m), Err(Error::Malformed));
    }

    #[test]
    fn truncated_and_relay() {
        let bytes = solicit();
        for len in 0..HEADER_LEN {
            assert_eq!(
                Dhcpv6Packet::new_checked(&bytes[..len]).unwrap_err(),
                Error::Truncated
            );
        }
        let relay = [12u8, 0, 0, 0];
        assert!(Dhcpv6Packet::new_checked(&relay[..]).unwrap().is_relay());
        assert_eq!(
            IaNa::new_checked(&[0u8; 11][..]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            IaAddr::new_checked(&[0u8; 23][..]).unwrap_err(),
            Error::Truncated
        );
    }
}
