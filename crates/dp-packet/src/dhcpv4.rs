//! DHCPv4 (RFC 2131) on the BOOTP header (RFC 951), with the options of RFC 2132, user class
//! (RFC 3004), client identifier (RFC 4361) and classless static routes (RFC 3442).
//!
//! [`DhcpPacket`] views a message (the UDP payload); [`DhcpPacket::options`] walks its options.
//! A reply is built with [`emit_reply_header`] followed by an [`OptionWriter`] on the rest of the buffer.
//! Option overload (52) and long-option concatenation (RFC 3396) are not interpreted when parsing:
//! each TLV is reported as it is.

use core::net::Ipv4Addr;

use crate::bytes::{
    array, copy_to, set_bytes, set_u16, set_u32, set_u8, slice, slice_from, slice_from_mut,
    slice_mut, u16_at, u32_at, u8_at,
};
use crate::ethernet::MacAddr;
use crate::{Error, Result};

/// UDP port of the server (and relays).
pub const SERVER_PORT: u16 = 67;
/// UDP port of the client.
pub const CLIENT_PORT: u16 = 68;
/// The magic cookie 99.130.83.99 that marks DHCP options after the BOOTP header.
pub const MAGIC_COOKIE: u32 = 0x6382_5363;
/// BOOTP header + magic cookie: the shortest valid message.
pub const MIN_LEN: usize = field::OPTIONS;
/// Old BOOTP relays and clients drop messages shorter than 300 bytes (RFC 1542 §2.1); pad replies to it.
pub const BOOTP_MIN_LEN: usize = 300;

wire_enum! {
    /// BOOTP `op`.
    pub struct DhcpOp(u8) {
        /// From a client.
        BOOTREQUEST = 1,
        /// From a server.
        BOOTREPLY = 2,
    }
}

wire_enum! {
    /// DHCP message type (option 53).
    pub struct DhcpMessageType(u8) {
        /// Client looks for servers.
        DISCOVER = 1,
        /// Server offers an address.
        OFFER = 2,
        /// Client requests the offered (or its previous) address.
        REQUEST = 3,
        /// Client says the address is already in use.
        DECLINE = 4,
        /// Server commits the lease.
        ACK = 5,
        /// Server refuses the request.
        NAK = 6,
        /// Client gives the address back.
        RELEASE = 7,
        /// Client asks for configuration only.
        INFORM = 8,
    }
}

/// Option codes (RFC 2132 unless noted).
pub mod option {
    /// Padding, no length byte.
    pub const PAD: u8 = 0;
    /// Subnet mask.
    pub const SUBNET_MASK: u8 = 1;
    /// Routers.
    pub const ROUTER: u8 = 3;
    /// Domain name servers.
    pub const DNS_SERVERS: u8 = 6;
    /// Host name.
    pub const HOSTNAME: u8 = 12;
    /// Domain name.
    pub const DOMAIN_NAME: u8 = 15;
    /// Interface MTU.
    pub const INTERFACE_MTU: u8 = 26;
    /// Broadcast address.
    pub const BROADCAST_ADDR: u8 = 28;
    /// Requested IP address.
    pub const REQUESTED_IP: u8 = 50;
    /// IP address lease time.
    pub const LEASE_TIME: u8 = 51;
    /// Option overload.
    pub const OPTION_OVERLOAD: u8 = 52;
    /// DHCP message type.
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier.
    pub const SERVER_ID: u8 = 54;
    /// Parameter request list.
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    /// Maximum DHCP message size.
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    /// Renewal (T1) time.
    pub const RENEWAL_TIME: u8 = 58;
    /// Rebinding (T2) time.
    pub const REBINDING_TIME: u8 = 59;
    /// Vendor class identifier.
    pub const VENDOR_CLASS_ID: u8 = 60;
    /// Client identifier (RFC 4361 for DUID-based ones).
    pub const CLIENT_ID: u8 = 61;
    /// TFTP server name (PXE).
    pub const TFTP_SERVER_NAME: u8 = 66;
    /// Boot file name (PXE).
    pub const BOOTFILE_NAME: u8 = 67;
    /// User class (RFC 3004; iPXE sends "iPXE").
    pub const USER_CLASS: u8 = 77;
    /// Classless static route (RFC 3442).
    pub const CLASSLESS_STATIC_ROUTE: u8 = 121;
    /// End of options, no length byte.
    pub const END: u8 = 255;
}

mod field {
    use core::ops::Range;
    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const HOPS: usize = 3;
    pub const XID: Range<usize> = 4..8;
    pub const SECS: Range<usize> = 8..10;
    pub const FLAGS: Range<usize> = 10..12;
    pub const CIADDR: Range<usize> = 12..16;
    pub const YIADDR: Range<usize> = 16..20;
    pub const SIADDR: Range<usize> = 20..24;
    pub const GIADDR: Range<usize> = 24..28;
    pub const CHADDR: Range<usize> = 28..44;
    pub const SNAME: Range<usize> = 44..108;
    pub const FILE: Range<usize> = 108..236;
    pub const MAGIC: Range<usize> = 236..240;
    pub const OPTIONS: usize = 240;
}

const FLAG_BROADCAST: u16 = 0x8000;

/// A view of a DHCPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> DhcpPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        DhcpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if shorter than 240 bytes (BOOTP header + cookie), `Malformed` if the magic cookie is
    /// wrong (a plain BOOTP message, which the dataplane does not serve).
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < MIN_LEN {
            return Err(Error::Truncated);
        }
        if self.magic_cookie() != MAGIC_COOKIE {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Request or reply.
    pub fn op(&self) -> DhcpOp {
        DhcpOp(u8_at(self.buffer.as_ref(), field::OP))
    }

    /// Hardware type (1 = Ethernet).
    pub fn htype(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::HTYPE)
    }

    /// Hardware address length (6 for Ethernet).
    pub fn hlen(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::HLEN)
    }

    /// Relay hop count.
    pub fn hops(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::HOPS)
    }

    /// Transaction id.
    pub fn xid(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::XID)
    }

    /// Seconds since the client started.
    pub fn secs(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::SECS)
    }

    /// The flags word.
    pub fn flags(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::FLAGS)
    }

    /// Broadcast flag: the client cannot receive unicast before it has an address.
    pub fn broadcast(&self) -> bool {
        self.flags() & FLAG_BROADCAST != 0
    }

    /// Client address (when renewing).
    pub fn ciaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buffer.as_ref(), field::CIADDR))
    }

    /// "Your" address (offered/assigned).
    pub fn yiaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buffer.as_ref(), field::YIADDR))
    }

    /// Next server (TFTP for PXE).
    pub fn siaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buffer.as_ref(), field::SIADDR))
    }

    /// Relay agent address.
    pub fn giaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buffer.as_ref(), field::GIADDR))
    }

    /// The 16-byte client hardware address field.
    pub fn chaddr(&self) -> [u8; 16] {
        array(self.buffer.as_ref(), field::CHADDR)
    }

    /// The client's MAC address: the first 6 bytes of `chaddr` (meaningful when htype 1, hlen 6).
    pub fn client_mac(&self) -> MacAddr {
        MacAddr(array(self.buffer.as_ref(), 28..34))
    }

    /// The magic cookie field.
    pub fn magic_cookie(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::MAGIC)
    }

    /// Message type (option 53); `None` for plain BOOTP or a malformed option.
    pub fn message_type(&self) -> Option<DhcpMessageType> {
        match self.option_data(option::MESSAGE_TYPE)? {
            &[t] => Some(DhcpMessageType(t)),
            _ => None,
        }
    }

    /// Requested IP address (option 50).
    pub fn requested_ip(&self) -> Option<Ipv4Addr> {
        self.ipv4_option(option::REQUESTED_IP)
    }

    /// Server identifier (option 54).
    pub fn server_identifier(&self) -> Option<Ipv4Addr> {
        self.ipv4_option(option::SERVER_ID)
    }

    /// Maximum message size the client accepts (option 57).
    pub fn max_message_size(&self) -> Option<u16> {
        match self.option_data(option::MAX_MESSAGE_SIZE)? {
            &[a, b] => Some(u16::from_be_bytes([a, b])),
            _ => None,
        }
    }

    /// Option lookup for the scalar getters (borrowing the view, so it works for any buffer type).
    fn option_data(&self, code: u8) -> Option<&[u8]> {
        DhcpOptions::new(slice_from(self.buffer.as_ref(), field::OPTIONS)).find_option(code)
    }

    fn ipv4_option(&self, code: u8) -> Option<Ipv4Addr> {
        match self.option_data(code)? {
            &[a, b, c, d] => Some(Ipv4Addr::new(a, b, c, d)),
            _ => None,
        }
    }
}

slice_accessors!(DhcpPacket {
    /// Server host name field (NUL-padded).
    pub fn sname(&self) -> &'a [u8] {
        slice(self.buffer.as_ref(), field::SNAME)
    }

    /// Boot file name field (NUL-padded).
    pub fn file(&self) -> &'a [u8] {
        slice(self.buffer.as_ref(), field::FILE)
    }

    /// The raw option area after the cookie.
    pub fn options_bytes(&self) -> &'a [u8] {
        slice_from(self.buffer.as_ref(), field::OPTIONS)
    }

    /// Iterator over the options.
    pub fn options(&self) -> DhcpOptions<'a> {
        DhcpOptions::new(self.options_bytes())
    }

    /// Data of the first option with `code` (before any malformed option).
    pub fn find_option(&self, code: u8) -> Option<&'a [u8]> {
        self.options().find_option(code)
    }

    /// Option codes the client asks for (option 55).
    pub fn parameter_request_list(&self) -> Option<&'a [u8]> {
        self.find_option(option::PARAMETER_REQUEST_LIST)
    }

    /// User class (option 77), raw: iPXE sends the bare string "iPXE" rather than RFC 3004's
    /// length-prefixed list.
    pub fn user_class(&self) -> Option<&'a [u8]> {
        self.find_option(option::USER_CLASS)
    }

    /// Client identifier (option 61): type byte followed by the identifier.
    pub fn client_identifier(&self) -> Option<&'a [u8]> {
        self.find_option(option::CLIENT_ID)
    }

    /// Host name (option 12).
    pub fn hostname(&self) -> Option<&'a [u8]> {
        self.find_option(option::HOSTNAME)
    }
});

impl<T: AsRef<[u8]> + AsMut<[u8]>> DhcpPacket<T> {
    /// Sets `op`.
    pub fn set_op(&mut self, value: DhcpOp) {
        set_u8(self.buffer.as_mut(), field::OP, value.0);
    }

    /// Sets the hardware type.
    pub fn set_htype(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::HTYPE, value);
    }

    /// Sets the hardware address length.
    pub fn set_hlen(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::HLEN, value);
    }

    /// Sets the hop count.
    pub fn set_hops(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::HOPS, value);
    }

    /// Sets the transaction id.
    pub fn set_xid(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::XID, value);
    }

    /// Sets the seconds field.
    pub fn set_secs(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::SECS, value);
    }

    /// Sets the flags word.
    pub fn set_flags(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::FLAGS, value);
    }

    /// Sets or clears the broadcast flag.
    pub fn set_broadcast(&mut self, value: bool) {
        let flags = self.flags() & !FLAG_BROADCAST;
        self.set_flags(flags | if value { FLAG_BROADCAST } else { 0 });
    }

    /// Sets `ciaddr`.
    pub fn set_ciaddr(&mut self, addr: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::CIADDR, &addr.octets());
    }

    /// Sets `yiaddr`.
    pub fn set_yiaddr(&mut self, addr: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::YIADDR, &addr.octets());
    }

    /// Sets `siaddr`.
    pub fn set_siaddr(&mut self, addr: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::SIADDR, &addr.octets());
    }

    /// Sets `giaddr`.
    pub fn set_giaddr(&mut self, addr: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::GIADDR, &addr.octets());
    }

    /// Sets the whole 16-byte `chaddr`.
    pub fn set_chaddr(&mut self, chaddr: &[u8; 16]) {
        set_bytes(self.buffer.as_mut(), field::CHADDR, chaddr);
    }

    /// Sets `chaddr` to an Ethernet address (zero-padded), with htype 1 and hlen 6.
    pub fn set_client_mac(&mut self, mac: MacAddr) {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&mac.0);
        self.set_chaddr(&chaddr);
        self.set_htype(1);
        self.set_hlen(6);
    }

    /// Sets the server name field, NUL-padded; `Malformed` if longer than 63 bytes (room for the NUL).
    pub fn set_sname(&mut self, name: &[u8]) -> Result<()> {
        set_padded(slice_mut(self.buffer.as_mut(), field::SNAME), name)
    }

    /// Sets the boot file field, NUL-padded; `Malformed` if longer than 127 bytes.
    pub fn set_file(&mut self, name: &[u8]) -> Result<()> {
        set_padded(slice_mut(self.buffer.as_mut(), field::FILE), name)
    }

    /// Writes the magic cookie.
    pub fn set_magic_cookie(&mut self) {
        set_u32(self.buffer.as_mut(), field::MAGIC, MAGIC_COOKIE);
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

fn set_padded(field: &mut [u8], value: &[u8]) -> Result<()> {
    if field.is_empty() {
        return Err(Error::Truncated);
    }
    if value.len() >= field.len() {
        return Err(Error::Malformed);
    }
    field.fill(0);
    copy_to(field, value)
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for DhcpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Iterator over DHCP options as `(code, data)`.
///
/// PAD is skipped, END stops. A TLV running past the buffer yields `Err(Malformed)` once and stops; so
/// does a missing END, which is tolerated by stopping silently at the end of the buffer instead.
#[derive(Debug, Clone)]
pub struct DhcpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> DhcpOptions<'a> {
    /// Iterates over an option area.
    pub fn new(bytes: &'a [u8]) -> Self {
        DhcpOptions { rest: bytes }
    }

    /// Data of the first option with `code`, looking no further than the first malformed option.
    pub fn find_option(&self, code: u8) -> Option<&'a [u8]> {
        self.clone()
            .map_while(|o| o.ok())
            .find_map(|(c, data)| (c == code).then_some(data))
    }

    /// Checks that the options are well formed.
    pub fn validate(&self) -> Result<()> {
        self.clone().try_for_each(|o| o.map(|_| ()))
    }
}

impl<'a> Iterator for DhcpOptions<'a> {
    type Item = Result<(u8, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (&code, after_code) = self.rest.split_first()?;
            match code {
                option::PAD => self.rest = after_code,
                option::END => {
                    self.rest = &[];
                    return None;
                }
                _ => {
                    let parsed = after_code
                        .split_first()
                        .and_then(|(&len, body)| body.split_at_checked(usize::from(len)));
                    let Some((data, rest)) = parsed else {
                        self.rest = &[];
                        return Some(Err(Error::Malformed));
                    };
                    self.rest = rest;
                    return Some(Ok((code, data)));
                }
            }
        }
    }
}

/// Writes options into a caller buffer, always keeping one byte for END.
#[derive(Debug)]
pub struct OptionWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> OptionWriter<'a> {
    /// Writes from the start of `buf` (typically the option area after the magic cookie).
    pub fn new(buf: &'a mut [u8]) -> Self {
        OptionWriter { buf, len: 0 }
    }

    /// Bytes written so far (END not included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reserves `n` bytes after what was written, keeping one byte for END.
    fn reserve(&mut self, n: usize) -> Result<&mut [u8]> {
        let end = self.len.checked_add(n).ok_or(Error::Truncated)?;
        if end >= self.buf.len() {
            return Err(Error::Truncated);
        }
        let slot = self.buf.get_mut(self.len..end).ok_or(Error::Truncated)?;
        self.len = end;
        Ok(slot)
    }

    /// Writes an option. Data longer than 255 bytes is split into consecutive options with the same
    /// code (RFC 3396). `Truncated` (and nothing written) if it does not fit.
    pub fn put(&mut self, code: u8, data: &[u8]) -> Result<()> {
        let chunks = data.len().div_ceil(255).max(1);
        let slot = self.reserve(data.len() + 2 * chunks)?;
        let mut at = 0;
        let mut pieces = data.chunks(255);
        for _ in 0..chunks {
            let piece = pieces.next().unwrap_or(&[]);
            set_u8(slot, at, code);
            set_u8(slot, at + 1, piece.len() as u8);
            set_bytes(slot, at + 2..at + 2 + piece.len(), piece);
            at += 2 + piece.len();
        }
        Ok(())
    }

    /// Writes a one-byte option.
    pub fn put_u8(&mut self, code: u8, value: u8) -> Result<()> {
        self.put(code, &[value])
    }

    /// Writes a two-byte option (e.g. interface MTU).
    pub fn put_u16(&mut self, code: u8, value: u16) -> Result<()> {
        self.put(code, &value.to_be_bytes())
    }

    /// Writes a four-byte option (e.g. lease time).
    pub fn put_u32(&mut self, code: u8, value: u32) -> Result<()> {
        self.put(code, &value.to_be_bytes())
    }

    /// Writes an address option (e.g. subnet mask, server identifier).
    pub fn put_ipv4(&mut self, code: u8, addr: Ipv4Addr) -> Result<()> {
        self.put(code, &addr.octets())
    }

    /// Writes an address list option (e.g. routers, DNS servers); `Malformed` for more than 63
    /// addresses.
    pub fn put_ipv4_list(&mut self, code: u8, addrs: &[Ipv4Addr]) -> Result<()> {
        let len = addrs.len() * 4;
        let len_byte = u8::try_from(len).map_err(|_| Error::Malformed)?;
        let slot = self.reserve(2 + len)?;
        set_u8(slot, 0, code);
        set_u8(slot, 1, len_byte);
        for (i, addr) in addrs.iter().enumerate() {
            set_bytes(slot, 2 + 4 * i..6 + 4 * i, &addr.octets());
        }
        Ok(())
    }

    /// Writes the message type option.
    pub fn put_message_type(&mut self, message_type: DhcpMessageType) -> Result<()> {
        self.put_u8(option::MESSAGE_TYPE, message_type.0)
    }

    /// Writes END and returns the length of the option area.
    pub fn finish(self) -> Result<usize> {
        let end = self.buf.get_mut(self.len).ok_or(Error::Truncated)?;
        *end = option::END;
        Ok(self.len + 1)
    }

    /// Writes END, then PAD up to `min_len` bytes of options (e.g. `BOOTP_MIN_LEN - MIN_LEN`), and
    /// returns the length of the option area.
    pub fn finish_padded(self, min_len: usize) -> Result<usize> {
        let OptionWriter { buf, len } = self;
        *buf.get_mut(len).ok_or(Error::Truncated)? = option::END;
        let written = len + 1;
        let padded = written.max(min_len);
        buf.get_mut(written..padded)
            .ok_or(Error::Truncated)?
            .fill(option::PAD);
        Ok(padded)
    }
}

/// Writes the 240-byte BOOTP header (cookie included) of a reply to `request`: op BOOTREPLY, `xid`,
/// `flags`, `ciaddr`, `giaddr`, `htype`, `hlen` and `chaddr` copied; `yiaddr` and `siaddr` given; hops,
/// secs, sname and file zero. Returns 240; options follow (see [`OptionWriter`]).
///
/// RFC 2131 table 3 wants `ciaddr` zero in OFFER and NAK; a DISCOVER has it zero anyway, and a NAK
/// sender can clear it with [`DhcpPacket::set_ciaddr`].
pub fn emit_reply_header<T: AsRef<[u8]>>(
    request: &DhcpPacket<T>,
    yiaddr: Ipv4Addr,
    siaddr: Ipv4Addr,
    buf: &mut [u8],
) -> Result<usize> {
    let header = buf.get_mut(..MIN_LEN).ok_or(Error::Truncated)?;
    header.fill(0);
    let mut reply = DhcpPacket::new_unchecked(header);
    reply.set_op(DhcpOp::BOOTREPLY);
    reply.set_htype(request.htype());
    reply.set_hlen(request.hlen());
    reply.set_xid(request.xid());
    reply.set_flags(request.flags());
    reply.set_ciaddr(request.ciaddr());
    reply.set_yiaddr(yiaddr);
    reply.set_siaddr(siaddr);
    reply.set_giaddr(request.giaddr());
    reply.set_chaddr(&request.chaddr());
    reply.set_magic_cookie();
    Ok(MIN_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::hex;
    use crate::{EthernetFrame, Ipv4Packet, UdpPacket};

    const VM_MAC: MacAddr = MacAddr::new(0x52, 0x54, 0, 0x12, 0x34, 0x56);

    /// The DHCP message inside a captured Ethernet frame, with the UDP checksum checked on the way.
    fn dhcp_of(frame: &[u8]) -> Vec<u8> {
        let eth = EthernetFrame::new_checked(frame).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert!(udp.verify_checksum_v4(&ip.src_addr(), &ip.dst_addr()));
        assert_eq!((udp.src_port(), udp.dst_port()), (CLIENT_PORT, SERVER_PORT));
        udp.payload().to_vec()
    }

    #[test]
    fn udhcpc_discover() {
        let bytes = dhcp_of(&hex(include_str!("../testdata/udhcpc_discover.hex")));
        let packet = DhcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.op(), DhcpOp::BOOTREQUEST);
        assert_eq!((packet.htype(), packet.hlen(), packet.hops()), (1, 6, 0));
        assert_eq!(packet.xid(), 0xcbbb4a76);
        assert!(!packet.broadcast());
        assert_eq!(packet.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(packet.client_mac(), VM_MAC);
        assert_eq!(packet.message_type(), Some(DhcpMessageType::DISCOVER));
        assert_eq!(packet.max_message_size(), Some(576));
        assert_eq!(
            packet.parameter_request_list(),
            Some(&[1, 3, 6, 12, 15, 28, 42][..])
        );
        assert_eq!(packet.hostname(), Some(&b"vm1"[..]));
        assert_eq!(
            packet.client_identifier(),
            Some(&[1, 0x52, 0x54, 0, 0x12, 0x34, 0x56][..])
        );
        assert_eq!(
            packet.find_option(option::VENDOR_CLASS_ID),
            Some(&b"udhcp 1.35.0"[..])
        );
        assert_eq!(packet.requested_ip(), None);
        assert_eq!(packet.user_class(), None);
        let codes: Vec<u8> = packet.options().map(|o| o.unwrap().0).collect();
        assert_eq!(codes, [53, 57, 55, 12, 60, 61]);
    }

    #[test]
    fn dhclient_discover() {
        let bytes = dhcp_of(&hex(include_str!("../testdata/dhclient_discover.hex")));
        let packet = DhcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.xid(), 0x71834b27);
        assert_eq!(packet.message_type(), Some(DhcpMessageType::DISCOVER));
        assert_eq!(packet.hostname(), Some(&b"vm"[..]));
        assert_eq!(
            packet.parameter_request_list(),
            Some(&[1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42][..])
        );
        assert_eq!(packet.client_identifier(), None);
        assert!(packet.options().validate().is_ok());
    }

    #[test]
    fn option_iterator_edge_cases() {
        // PAD skipped, END stops even with garbage after it.
        let opts = [0, 0, 53, 1, 3, 0, 50, 4, 10, 0, 0, 7, 255, 99, 99];
        let parsed: Vec<_> = DhcpOptions::new(&opts).collect();
        assert_eq!(
            parsed,
            vec![Ok((53, &[3][..])), Ok((50, &[10, 0, 0, 7][..]))]
        );
        // Truncated TLV: one error, then nothing.
        let opts = [53, 1, 1, 61, 7, 1, 2];
        let mut it = DhcpOptions::new(&opts);
        assert_eq!(it.next(), Some(Ok((53, &[1][..]))));
        assert_eq!(it.next(), Some(Err(Error::Malformed)));
        assert_eq!(it.next(), None);
        // A code with no length byte.
        assert_eq!(
            DhcpOptions::new(&[53]).collect::<Vec<_>>(),
            vec![Err(Error::Malformed)]
        );
        // Missing END is tolerated.
        assert_eq!(DhcpOptions::new(&[12, 1, b'a']).count(), 1);
        // Options before the malformed one are still found.
        assert_eq!(DhcpOptions::new(&opts).find_option(53), Some(&[1][..]));
        assert_eq!(DhcpOptions::new(&opts).find_option(61), None);
    }

    #[test]
    fn message_type_with_wrong_length_is_none() {
        let mut bytes = [0u8; 250];
        let mut packet = DhcpPacket::new_unchecked(&mut bytes[..]);
        packet.set_magic_cookie();
        packet.options_mut()[..5].copy_from_slice(&[53, 2, 1, 1, 255]);
        let packet = DhcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.message_type(), None);
    }

    #[test]
    fn length_and_cookie_validation() {
        let bytes = dhcp_of(&hex(include_str!("../testdata/udhcpc_discover.hex")));
        for len in 0..MIN_LEN {
            assert_eq!(
                DhcpPacket::new_checked(&bytes[..len]).unwrap_err(),
                Error::Truncated
            );
        }
        assert!(DhcpPacket::new_checked(&bytes[..MIN_LEN]).is_ok());
        let mut bad = bytes.clone();
        bad[239] = 0x64;
        assert_eq!(
            DhcpPacket::new_checked(&bad[..]).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn offer_exact_bytes() {
        let request = dhcp_of(&hex(include_str!("../testdata/udhcpc_discover.hex")));
        let request = DhcpPacket::new_checked(&request[..]).unwrap();
        let mut buf = [0xeeu8; 400];
        let hdr = emit_reply_header(
            &request,
            Ipv4Addr::new(10, 1, 1, 2),
            Ipv4Addr::new(169, 254, 0, 1),
            &mut buf,
        )
        .unwrap();
        assert_eq!(hdr, 240);
        let mut w = OptionWriter::new(&mut buf[hdr..]);
        w.put_message_type(DhcpMessageType::OFFER).unwrap();
        w.put_ipv4(option::SERVER_ID, Ipv4Addr::new(169, 254, 0, 1))
            .unwrap();
        w.put_u32(option::LEASE_TIME, 86400).unwrap();
        w.put_ipv4(option::SUBNET_MASK, Ipv4Addr::new(255, 255, 255, 255))
            .unwrap();
        w.put_ipv4_list(option::ROUTER, &[Ipv4Addr::new(169, 254, 0, 1)])
            .unwrap();
        w.put_ipv4_list(
            option::DNS_SERVERS,
            &[Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(8, 8, 4, 4)],
        )
        .unwrap();
        w.put_u16(option::INTERFACE_MTU, 1450).unwrap();
        w.put(option::HOSTNAME, b"vm1").unwrap();
        let opts = w.finish_padded(BOOTP_MIN_LEN - MIN_LEN).unwrap();
        assert_eq!(opts, 60);
        let len = hdr + opts;
        assert_eq!(buf[..len], hex(OFFER)[..]);
        assert_eq!(buf[len], 0xee);
        let reply = DhcpPacket::new_checked(&buf[..len]).unwrap();
        assert_eq!(reply.message_type(), Some(DhcpMessageType::OFFER));
        assert_eq!(
            reply.server_identifier(),
            Some(Ipv4Addr::new(169, 254, 0, 1))
        );
        assert_eq!(reply.yiaddr(), Ipv4Addr::new(10, 1, 1, 2));
        assert_eq!(reply.xid(), request.xid());
    }

    // scapy: BOOTP(op=2, xid=0xcbbb4a76, yiaddr='10.1.1.2', siaddr='169.254.0.1',
    //   chaddr=bytes.fromhex('525400123456')+bytes(10))/DHCP(options=[('message-type', 2),
    //   ('server_id', '169.254.0.1'), ('lease_time', 86400), ('subnet_mask', '255.255.255.255'),
    //   ('router', '169.254.0.1'), ('name_server', '8.8.8.8', '8.8.4.4'), ('interface-mtu', 1450),
    //   ('hostname', b'vm1'), 'end']) padded with zeros to 300 bytes.
    const OFFER: &str = concat!(
        "02010600cbbb4a7600000000000000000a010102a9fe00010000000052540012",
        "3456000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000638253633501023604a9fe000133040001518001",
        "04ffffffff0304a9fe0001060808080808080804041a0205aa0c03766d31ff00",
        "000000000000000000000000",
    );

    #[test]
    fn option_writer_limits() {
        let mut buf = [0u8; 8];
        let mut w = OptionWriter::new(&mut buf);
        w.put_u32(option::LEASE_TIME, 1).unwrap();
        // 6 used, 1 left besides END: a 1-byte option needs 3.
        assert_eq!(w.put_u8(option::MESSAGE_TYPE, 1), Err(Error::Truncated));
        assert_eq!(w.len(), 6);
        assert_eq!(w.finish(), Ok(7));
        assert_eq!(buf[..7], [51, 4, 0, 0, 0, 1, 255]);
        let mut empty = [0u8; 0];
        assert_eq!(
            OptionWriter::new(&mut empty).finish(),
            Err(Error::Truncated)
        );
        let many = [Ipv4Addr::LOCALHOST; 64];
        let mut big = [0u8; 600];
        assert_eq!(
            OptionWriter::new(&mut big).put_ipv4_list(option::DNS_SERVERS, &many),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn long_option_is_split() {
        let data = [7u8; 300];
        let mut buf = [0u8; 400];
        let mut w = OptionWriter::new(&mut buf);
        w.put(option::CLASSLESS_STATIC_ROUTE, &data).unwrap();
        let len = w.finish().unwrap();
        assert_eq!(len, 2 + 255 + 2 + 45 + 1);
        let parts: Vec<_> = DhcpOptions::new(&buf[..len]).map(|o| o.unwrap()).collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].0, parts[0].1.len(), parts[1].1.len()),
            (121, 255, 45)
        );
        let mut w = OptionWriter::new(&mut buf);
        w.put(80, &[]).unwrap(); // rapid commit: empty option
        assert_eq!(w.finish(), Ok(3));
        assert_eq!(buf[..3], [80, 0, 255]);
    }

    #[test]
    fn sname_file_and_setters() {
        let mut buf = [0u8; 240];
        let mut packet = DhcpPacket::new_unchecked(&mut buf[..]);
        packet.set_magic_cookie();
        packet.set_client_mac(VM_MAC);
        packet.set_broadcast(true);
        packet.set_file(b"ipxe.efi").unwrap();
        assert_eq!(packet.set_sname(&[b'a'; 64]), Err(Error::Malformed));
        packet.set_sname(&[b'a'; 63]).unwrap();
        assert!(packet.broadcast());
        assert_eq!(packet.flags(), 0x8000);
        assert_eq!(&packet.file()[..9], b"ipxe.efi\0");
        assert_eq!(packet.sname()[63], 0);
        assert_eq!(packet.client_mac(), VM_MAC);
        assert_eq!((packet.htype(), packet.hlen()), (1, 6));
        packet.set_broadcast(false);
        assert_eq!(packet.flags(), 0);
    }
}
